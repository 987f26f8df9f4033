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

/// Calls of `SET` and of scripts a private Redis has run since it last counted.
async fn calls(conn: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["RESETSTAT"])
        .query_async(conn)
        .await
        .unwrap();
    let of = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|v| v.split(',').next())
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    (of("set"), of("evalsha") + of("eval"))
}

/// A follow-up campaign's recipients hold reservations that have run out (the earlier
/// campaign's, remembered for replies): once a call finds most of its recipients so, the next
/// calls go straight to the script instead of trying the native commands first, and after
/// `PAIR_SCRIPT_CALLS` of them the native commands are tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_campaigns_reservations_go_straight_to_the_script() {
    let server = testing::TestRedisServer::start();
    let url = server.url();
    let store = RedisStore::connect(&RedisConfig::new(url.clone(), "herald"))
        .await
        .unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The clock as a plan reads it: to within half its round trip, and the native path is
    // taken only within CLOCK_PRECISION (100 ms), so 150 ms makes a 1 ms reservation lapse
    // by the store's time and by the one this process keeps alike.
    // (A plan whose round trip took over 200 ms reads it too loosely to count: the next.)
    let pace = Pace::exact(1000, Duration::from_secs(1));
    for _ in 0..20 {
        store
            .plan_sends(PNID, pace, &[], 0, Duration::ZERO..Duration::ZERO, 1)
            .await
            .unwrap();
        if testing::knows_store_time(&store, PNID) {
            break;
        }
    }
    assert!(testing::knows_store_time(&store, PNID));
    let c = CampaignId::new("followup").unwrap();
    let first: Vec<(PhoneE164, CampaignId)> = (0..10).map(|n| (phone(n), c.clone())).collect();
    let tick = Duration::from_millis(1);
    let lapse = || tokio::time::sleep(Duration::from_millis(150));
    let reserve = |sends: Vec<(PhoneE164, CampaignId)>| {
        let store = &store;
        async move {
            let r = store.reserve_pairs(PNID, &sends, tick).await.unwrap();
            assert!(r.iter().all(|r| *r == PairReservation::Ok), "{r:?}");
        }
    };
    calls(&mut conn).await;

    // New recipients: native commands only.
    reserve(first.clone()).await;
    assert_eq!(calls(&mut conn).await, (10, 0));
    // Their reservations run out: the native commands find them so, and the script replaces
    // them (its SETs count too).
    lapse().await;
    reserve(first.clone()).await;
    assert_eq!(calls(&mut conn).await, (20, 1));
    // The next calls take the script alone, for lapsed and new recipients alike.
    lapse().await;
    reserve(first.clone()).await;
    assert_eq!(calls(&mut conn).await, (10, 1));
    for k in 1..testing::PAIR_SCRIPT_CALLS {
        let fresh = (0..10).map(|n| (phone(100 * u64::from(k) + n), c.clone()));
        reserve(fresh.collect()).await;
    }
    assert_eq!(
        calls(&mut conn).await,
        (
            10 * u64::from(testing::PAIR_SCRIPT_CALLS - 1),
            u64::from(testing::PAIR_SCRIPT_CALLS - 1)
        )
    );
    // Then the native commands again: these recipients are new, so they stay native.
    for k in 0..2 {
        let fresh = (0..10).map(|n| (phone(5000 + 100 * k + n), c.clone()));
        reserve(fresh.collect()).await;
    }
    assert_eq!(calls(&mut conn).await, (20, 0));
}
