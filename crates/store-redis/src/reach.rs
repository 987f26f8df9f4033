//! What Meta allows, on Redis (ARCHITECTURE §13): a portfolio's users counted against its
//! messaging limit in the moving window (`reach.lua`, `unreach.lua`), Meta's limit as last
//! recorded, and each phone number's throughput level.

use std::time::Duration;

use herald_core::{MessagingLimit, PhoneE164, millis};
use herald_store::{Reach, ReachUse, Result, StoreError};
use jiff::Timestamp;

use crate::RedisStore;
use crate::conn::{Call, Run};

fn at(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|_| StoreError::Corrupt(format!("reach time {ms}")))
}

/// The use from a reply's first two numbers.
fn reach_use(used: i64, frees_ms: i64) -> Result<ReachUse> {
    Ok(ReachUse {
        used: u64::try_from(used).unwrap_or(0),
        frees_at: if frees_ms > 0 {
            Some(at(frees_ms)?)
        } else {
            None
        },
    })
}

pub(crate) async fn reserve_reach(
    store: &RedisStore,
    portfolio: &str,
    limit: u64,
    window: Duration,
    phones: &[PhoneE164],
) -> Result<(Vec<Reach>, ReachUse)> {
    let mut inv = Call::new(&store.scripts.reach);
    inv.key(store.keys.reach(portfolio))
        .arg(millis(window))
        .arg(limit);
    for p in phones {
        inv.arg(p.as_u64());
    }
    let reply: Vec<i64> = inv.run(&mut store.conn().await?).await?;
    let (Some(&used), Some(&frees)) = (reply.first(), reply.get(1)) else {
        return Err(StoreError::Corrupt("reach reply".into()));
    };
    let answers = reply[2..]
        .iter()
        .map(|&r| match r {
            0 => Ok(Reach::Counted),
            -1 => Ok(Reach::Full),
            ms => at(ms).map(Reach::Reserved),
        })
        .collect::<Result<Vec<_>>>()?;
    if answers.len() != phones.len() {
        return Err(StoreError::Corrupt("reach reply".into()));
    }
    Ok((answers, reach_use(used, frees)?))
}

pub(crate) async fn release_reach(
    store: &RedisStore,
    portfolio: &str,
    phone: PhoneE164,
    at: Timestamp,
) -> Result<()> {
    let _: i64 = Call::new(&store.scripts.unreach)
        .key(store.keys.reach(portfolio))
        .arg(phone.as_u64())
        .arg(at.as_millisecond())
        .run(&mut store.conn().await?)
        .await?;
    Ok(())
}

pub(crate) async fn reach_use_of(
    store: &RedisStore,
    portfolio: &str,
    window: Duration,
) -> Result<ReachUse> {
    // The same script with no users: it drops those out of the window and counts.
    let reply: Vec<i64> = Call::new(&store.scripts.reach)
        .key(store.keys.reach(portfolio))
        .arg(millis(window))
        .arg(0)
        .run(&mut store.conn().await?)
        .await?;
    match reply.as_slice() {
        [used, frees] => reach_use(*used, *frees),
        _ => Err(StoreError::Corrupt("reach reply".into())),
    }
}

pub(crate) async fn reach_frees(
    store: &RedisStore,
    portfolio: &str,
    window: Duration,
    n: u64,
) -> Result<Option<Timestamp>> {
    let Some(i) = n.checked_sub(1) else {
        return Ok(None);
    };
    // Users out of the window are dropped first, so the index counts those still in it.
    let use_now = reach_use_of(store, portfolio, window).await?;
    if i >= use_now.used {
        return Ok(None);
    }
    let found: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(store.keys.reach(portfolio))
        .arg(i)
        .arg(i)
        .arg("WITHSCORES")
        .run(&mut store.conn().await?)
        .await?;
    found
        .first()
        .map(|(_, ms)| at(ms.saturating_add(i64::try_from(millis(window)).unwrap_or(i64::MAX))))
        .transpose()
}

pub(crate) async fn set_throughput(
    store: &RedisStore,
    phone_number_id: &str,
    display: &str,
    mps: u32,
) -> Result<()> {
    // Two keys of their own slots, each written once: a crash between them leaves only the
    // display lookup missing, which the next start writes again.
    let mut conn = store.conn().await?;
    redis::Cmd::hset(store.keys.throughput(), phone_number_id, mps)
        .run::<()>(&mut conn)
        .await?;
    redis::Cmd::hset(
        store.keys.displays(),
        herald_store::digits(display),
        phone_number_id,
    )
    .run::<()>(&mut conn)
    .await
}

pub(crate) async fn set_throughput_by_display(
    store: &RedisStore,
    display: &str,
    mps: u32,
) -> Result<bool> {
    let mut conn = store.conn().await?;
    let pnid: Option<String> =
        redis::Cmd::hget(store.keys.displays(), herald_store::digits(display))
            .run(&mut conn)
            .await?;
    let Some(pnid) = pnid else {
        return Ok(false);
    };
    redis::Cmd::hset(store.keys.throughput(), pnid, mps)
        .run::<()>(&mut conn)
        .await?;
    Ok(true)
}

pub(crate) async fn throughput(store: &RedisStore, phone_number_id: &str) -> Result<Option<u32>> {
    redis::Cmd::hget(store.keys.throughput(), phone_number_id)
        .run(&mut store.conn().await?)
        .await
}

pub(crate) async fn set_messaging_limit(
    store: &RedisStore,
    portfolio: &str,
    limit: MessagingLimit,
) -> Result<()> {
    let value = limit
        .users()
        .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    redis::Cmd::hset(store.keys.limits(), portfolio, value)
        .run::<()>(&mut store.conn().await?)
        .await
}

pub(crate) async fn messaging_limit(
    store: &RedisStore,
    portfolio: &str,
) -> Result<Option<MessagingLimit>> {
    let v: Option<i64> = redis::Cmd::hget(store.keys.limits(), portfolio)
        .run(&mut store.conn().await?)
        .await?;
    Ok(v.map(MessagingLimit::from_daily))
}
