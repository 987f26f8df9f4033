//! Pair spacing on Redis: reservations are native commands once the store knows its Redis's
//! clock, and go through `pair.lua` before that and where a reservation has run out. A user
//! that may not run scripts tells the two apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_core::{CampaignId, PhoneE164};
use herald_store::{Pace, PairReservation, Store};
use herald_store_redis::{RedisConfig, RedisStore, testing};

const PNID: &str = "106540352242922";

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL must point at a Redis for these tests (scripts/test.sh sets it)")
}

fn phone(n: u64) -> PhoneE164 {
    format!("+4477009{n:05}").parse().unwrap()
}

/// Redis's own time now.
async fn redis_time(url: &str) -> jiff::Timestamp {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    jiff::Timestamp::from_microsecond(s * 1_000_000 + us).unwrap()
}

async fn acl(url: &str, args: &[&str]) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg(args)
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_reservations_need_no_script_once_the_clock_is_known() {
    let url = redis_url();
    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    let user = format!("herald-noscript-{:016x}", rand::random::<u64>());
    acl(
        &url,
        &[
            "SETUSER",
            &user,
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-eval",
            "-evalsha",
            "-eval_ro",
            "-evalsha_ro",
            "-fcall",
            "-fcall_ro",
        ],
    )
    .await;
    let admin = RedisStore::connect(&RedisConfig::new(url.clone(), prefix.clone()))
        .await
        .unwrap();
    let no_scripts_url = url.replacen("redis://", &format!("redis://{user}:pw@"), 1);
    let limited = RedisStore::connect(&RedisConfig::new(no_scripts_url, prefix))
        .await
        .unwrap();
    let six = Duration::from_secs(6);
    let (a, b) = (phone(1), phone(2));
    let (c1, c2) = (
        CampaignId::new("one").unwrap(),
        CampaignId::new("two").unwrap(),
    );

    // Without a reading of the clock, reservations go through the script, which this user
    // may not run.
    let refused = limited.reserve_pairs(PNID, &[(a, c1.clone())], six).await;
    assert!(refused.is_err(), "{refused:?}");

    // With one, new recipients and standing reservations need no script: a, then b, then a
    // again for another campaign within the interval, in one call.
    let now = redis_time(&url).await;
    testing::learn_store_time(&limited, PNID, now);
    let r = limited
        .reserve_pairs(
            PNID,
            &[(a, c1.clone()), (b, c1.clone()), (a, c2.clone())],
            six,
        )
        .await
        .unwrap();
    assert_eq!(r[..2], [PairReservation::Ok, PairReservation::Ok]);
    let PairReservation::NotBefore(t) = r[2] else {
        panic!("a second send to a within 6 s is reserved: {r:?}");
    };
    let after = redis_time(&url).await;
    assert!(t > after && t <= after + six, "{t} against Redis's {after}");
    // Written as the script writes them: the campaign is remembered for replies, by either.
    assert_eq!(
        admin.last_campaign(PNID, b).await.unwrap(),
        Some(c1.clone())
    );
    // The script sees the native reservation standing.
    let r = admin
        .reserve_pairs(PNID, &[(b, c2.clone())], six)
        .await
        .unwrap();
    assert!(matches!(r[0], PairReservation::NotBefore(_)), "{r:?}");

    // A reservation given back has run out: replacing it takes the script.
    admin.release_pair(PNID, a, &c1).await.unwrap();
    let refused = limited.reserve_pairs(PNID, &[(a, c2.clone())], six).await;
    assert!(refused.is_err(), "{refused:?}");
    // A store that may run it, and knows the clock from a plan, replaces it; the recipient
    // now remembers the new campaign, and a new one beside it goes natively in the same call.
    let pace = Pace::exact(1000, Duration::from_secs(1));
    admin
        .plan_sends(PNID, pace, &[], 0, Duration::ZERO..Duration::ZERO, 1)
        .await
        .unwrap();
    let c = phone(3);
    let r = admin
        .reserve_pairs(PNID, &[(a, c2.clone()), (c, c2.clone())], six)
        .await
        .unwrap();
    assert_eq!(r, [PairReservation::Ok, PairReservation::Ok]);
    assert_eq!(
        admin.last_campaign(PNID, a).await.unwrap(),
        Some(c2.clone())
    );
    assert_eq!(admin.last_campaign(PNID, c).await.unwrap(), Some(c2));

    acl(&url, &["DELUSER", &user]).await;
    drop(limited);
    admin.purge_namespace().await.unwrap();
}
