//! What Herald knows of each recipient of a phone number, on Redis: suppressions with their
//! reasons, business-scoped user ids, and open customer-service windows.

use herald_core::PhoneE164;
use herald_store::{Result, SuppressionScope};
use jiff::Timestamp;

use crate::RedisStore;
use crate::conn::{Call, Run};

pub(crate) async fn suppress(
    store: &RedisStore,
    phone_number_id: &str,
    scope: SuppressionScope,
    phones: &[PhoneE164],
    why: &herald_store::Why,
) -> Result<()> {
    if phones.is_empty() {
        return Ok(());
    }
    let mut conn = store.conn().await?;
    let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
    let value = format!("{}|{}", why.at.as_millisecond(), why.reason);
    // Both keys carry the number's hash tag: one transaction, on a cluster too.
    let (list, why_key) = store.keys.suppression_lists(phone_number_id, scope);
    let mut pipe = redis::pipe();
    pipe.atomic().sadd(list, &members).ignore();
    for m in &members {
        pipe.hset_nx(&why_key, m, &value).ignore();
    }
    let _: () = pipe.run(&mut conn).await?;
    Ok(())
}

pub(crate) async fn suppression_reasons(
    store: &RedisStore,
    phone_number_id: &str,
    scope: SuppressionScope,
    phones: &[PhoneE164],
) -> Result<Vec<Option<herald_store::Why>>> {
    if phones.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
    let (list, why_key) = store.keys.suppression_lists(phone_number_id, scope);
    let (on, values): (Vec<bool>, Vec<Option<String>>) = redis::pipe()
        .cmd("SMISMEMBER")
        .arg(list)
        .arg(&members)
        .cmd("HMGET")
        .arg(why_key)
        .arg(&members)
        .run(&mut conn)
        .await?;
    Ok(values
        .into_iter()
        .zip(on)
        .map(|(v, on)| {
            let v = v.filter(|_| on)?;
            let (ms, reason) = v.split_once('|')?;
            Some(herald_store::Why {
                reason: reason.to_owned(),
                at: Timestamp::from_millisecond(ms.parse().ok()?).ok()?,
            })
        })
        .collect())
}

pub(crate) async fn link_users(
    store: &RedisStore,
    phone_number_id: &str,
    links: &[(String, PhoneE164)],
) -> Result<u64> {
    if links.is_empty() {
        return Ok(0);
    }
    let mut conn = store.conn().await?;
    let mut inv = Call::new(&store.scripts.link);
    inv.key(store.keys.users(phone_number_id))
        .key(store.keys.unlinked_opt_outs(phone_number_id))
        .key(store.keys.suppression(phone_number_id))
        .key(store.keys.suppression_why(phone_number_id))
        .arg(format!(
            "{}|{}",
            herald_core::unix_ms(),
            herald_store::LINKED_OPT_OUT
        ));
    for (user, phone) in links {
        inv.arg(user.as_str()).arg(phone.as_u64());
    }
    inv.run(&mut conn).await
}

pub(crate) async fn user_phone(
    store: &RedisStore,
    phone_number_id: &str,
    user_id: &str,
) -> Result<Option<PhoneE164>> {
    let mut conn = store.conn().await?;
    let phone: Option<u64> = redis::Cmd::hget(store.keys.users(phone_number_id), user_id)
        .run(&mut conn)
        .await?;
    Ok(phone.and_then(|p| PhoneE164::from_u64(p).ok()))
}

/// Puts a business-scoped user id on the phone number's unlinked opt-outs (`opted_out`) or
/// takes it off; `true` when that changed the list.
pub(crate) async fn set_user_opt_out(
    store: &RedisStore,
    phone_number_id: &str,
    user_id: &str,
    opted_out: bool,
) -> Result<bool> {
    let key = store.keys.unlinked_opt_outs(phone_number_id);
    let cmd = if opted_out {
        redis::Cmd::sadd(key, user_id)
    } else {
        redis::Cmd::srem(key, user_id)
    };
    let changed: u64 = cmd.run(&mut store.conn().await?).await?;
    Ok(changed == 1)
}

pub(crate) async fn unsuppress(
    store: &RedisStore,
    phone_number_id: &str,
    phones: &[PhoneE164],
) -> Result<u64> {
    if phones.is_empty() {
        return Ok(0);
    }
    let mut conn = store.conn().await?;
    let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
    // Both lists carry the number's hash tag: one transaction, on a cluster too.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for scope in [SuppressionScope::All, SuppressionScope::Marketing] {
        let (list, why_key) = store.keys.suppression_lists(phone_number_id, scope);
        pipe.cmd("SMISMEMBER").arg(&list).arg(&members);
        pipe.srem(list, &members).ignore();
        pipe.hdel(why_key, &members).ignore();
    }
    let (all, marketing): (Vec<bool>, Vec<bool>) = pipe.run(&mut conn).await?;
    Ok(all
        .iter()
        .zip(&marketing)
        .filter(|(a, m)| **a || **m)
        .count() as u64)
}

pub(crate) async fn unlinked_opt_outs(
    store: &RedisStore,
    phone_number_id: &str,
    max: usize,
) -> Result<(u64, Vec<String>)> {
    let mut conn = store.conn().await?;
    let key = store.keys.unlinked_opt_outs(phone_number_id);
    let count: u64 = redis::Cmd::scard(&key).run(&mut conn).await?;
    let mut ids: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg(&key)
        .arg(max)
        .run(&mut conn)
        .await?;
    ids.sort_unstable();
    Ok((count, ids))
}

pub(crate) async fn suppressed(
    store: &RedisStore,
    phone_number_id: &str,
    scope: SuppressionScope,
    phones: &[PhoneE164],
) -> Result<Vec<bool>> {
    if phones.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
    redis::cmd("SMISMEMBER")
        .arg(store.keys.suppression_lists(phone_number_id, scope).0)
        .arg(members)
        .run(&mut conn)
        .await
}

pub(crate) async fn suppressions(
    store: &RedisStore,
    phone_number_id: &str,
    phones: &[PhoneE164],
) -> Result<Vec<Option<SuppressionScope>>> {
    if phones.is_empty() {
        return Ok(Vec::new());
    }
    let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
    let mut pipe = redis::pipe();
    for scope in [SuppressionScope::All, SuppressionScope::Marketing] {
        pipe.cmd("SMISMEMBER")
            .arg(store.keys.suppression_lists(phone_number_id, scope).0)
            .arg(&members);
    }
    let (all, marketing): (Vec<bool>, Vec<bool>) = pipe.run(&mut store.conn().await?).await?;
    Ok(herald_store::scopes(&all, &marketing))
}

pub(crate) async fn list_suppressed(
    store: &RedisStore,
    phone_number_id: &str,
    scope: SuppressionScope,
    cursor: u64,
) -> Result<(Vec<PhoneE164>, Option<u64>)> {
    let mut conn = store.conn().await?;
    let (next, members): (u64, Vec<u64>) = redis::cmd("SSCAN")
        .arg(store.keys.suppression_lists(phone_number_id, scope).0)
        .arg(cursor)
        .arg("COUNT")
        .arg(1000)
        .run(&mut conn)
        .await?;
    let phones = members
        .into_iter()
        .filter_map(|p| PhoneE164::from_u64(p).ok())
        .collect();
    Ok((phones, (next != 0).then_some(next)))
}

pub(crate) async fn open_window(
    store: &RedisStore,
    phone_number_id: &str,
    phone: PhoneE164,
    at: Timestamp,
) -> Result<()> {
    let at_unix = at.as_second();
    let expires = at_unix + 24 * 3600;
    if expires <= herald_core::unix_ms() / 1000 {
        return Ok(());
    }
    let mut conn = store.conn().await?;
    redis::cmd("SET")
        .arg(store.keys.window(phone_number_id, phone))
        .arg(at_unix)
        .arg("EXAT")
        .arg(expires)
        .run::<()>(&mut conn)
        .await
}

pub(crate) async fn windows_open(
    store: &RedisStore,
    phone_number_id: &str,
    phones: &[PhoneE164],
) -> Result<Vec<bool>> {
    if phones.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let mut pipe = redis::pipe();
    for p in phones {
        pipe.exists(store.keys.window(phone_number_id, *p));
    }
    pipe.run(&mut conn).await
}
