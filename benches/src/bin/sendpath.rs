//! What Redis spends on each send, script by script: one worker walks 200,000 jobs through
//! the store calls a send makes — claim (500 at a time), then per round of 128 the plan, pair
//! spacing, start, and the settlement of their acceptance (with the message-id lookups) — and
//! reads the CPU Redis used over each call (`INFO cpu`, less what the asking itself
//! costs, measured first): the script, its commands, and reading and answering the call.
//! The sender's rounds make the same calls, side by side instead of in turn. As a yardstick
//! on the same server in the same minutes: the CPU per `SET` of a 128-command pipeline run
//! after every round, measured the same way.
//!
//! `cargo run --release -p herald-benches --bin sendpath [-- JOBS]` (REDIS_URL, default
//! redis://127.0.0.1:6379; everything under a random prefix, deleted after).

#![allow(clippy::print_stdout)]

use std::time::Duration;

use herald_benches::{PNID, new_campaign, recipients};
use herald_core::CampaignAction;
use herald_store::{ClaimRequest, JobRef, LeaseToken, Pace, Store};
use herald_store_redis::{RedisConfig, RedisStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUND: usize = 128;
const PHASES: [&str; 5] = ["claim", "plan", "pair", "start", "settle"];
/// The yardstick's phase: a pipeline of ROUND `SET`s after every round.
const SETS: usize = PHASES.len();

/// CPU µs the Redis server has used (`INFO cpu`, user + system). Each reading costs Redis
/// some itself: `main` measures that first and takes it off every phase.
async fn busy_us(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let cpu = herald_benches::redis_cpu_on(conn).await.expect("INFO cpu");
    (cpu * 1e6) as u64
}

/// Counts one call of a phase: the µs since `from` (one reading of the counter included);
/// answers `now`.
fn lap(phase: &mut (u64, u64), from: u64, now: u64) -> u64 {
    phase.0 += now.saturating_sub(from);
    phase.1 += 1;
    now
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-bench-sendpath-{:08x}", rand::random::<u32>());
    let store = RedisStore::connect(&RedisConfig::new(url.clone(), prefix.clone()))
        .await
        .expect("Redis (set REDIS_URL)");
    let mut info = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let id = new_campaign(&store, "sendpath").await;
    for chunk in recipients(0..jobs).chunks(1000) {
        store.enqueue_batch(&id, chunk).await.expect("enqueue");
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let pace = Pace::per_second(1_000_000.0, Duration::from_millis(3));
    // What one INFO costs Redis, to take off each reading.
    let n = 2000u64;
    let a = busy_us(&mut info).await;
    for _ in 0..n {
        busy_us(&mut info).await;
    }
    let overhead = (busy_us(&mut info).await - a) / (n + 1);
    // Per phase: µs, and readings taken (each costing `overhead`).
    let mut spent = [(0u64, 0u64); PHASES.len() + 1];
    let mut sets = 0u64;
    let mut done = 0u64;
    let mut token = 0u64;
    loop {
        token += 1;
        let t0 = busy_us(&mut info).await;
        let claimed = store
            .claim(&ClaimRequest {
                phone_number_id: Some(PNID.into()),
                max: 500,
                lease: Duration::from_secs(60),
                token: LeaseToken(token),
            })
            .await
            .expect("claim");
        lap(&mut spent[0], t0, busy_us(&mut info).await);
        if claimed.is_empty() {
            break;
        }
        for round in claimed.chunks(ROUND) {
            let mut t = busy_us(&mut info).await;
            let wants = vec![None; round.len()];
            let plan = store
                .plan_sends(
                    PNID,
                    pace,
                    &wants,
                    round.len(),
                    Duration::ZERO..Duration::from_millis(75),
                    token,
                )
                .await
                .expect("plan");
            assert!(plan.at.iter().all(Option::is_some), "unpaced: all granted");
            t = lap(&mut spent[1], t, busy_us(&mut info).await);
            let sends: Vec<_> = round
                .iter()
                .map(|j| (j.phone, j.id.campaign.clone()))
                .collect();
            store
                .reserve_pairs(PNID, &sends, Duration::from_millis(6500))
                .await
                .expect("pairs");
            t = lap(&mut spent[2], t, busy_us(&mut info).await);
            let refs: Vec<JobRef> = round.iter().map(JobRef::from).collect();
            let started = store.start(&refs).await.expect("start");
            assert!(started.iter().all(|s| *s), "every job started");
            t = lap(&mut spent[3], t, busy_us(&mut info).await);
            let settles = herald_benches::accepted(round);
            store.settle(&settles).await.expect("settle");
            t = lap(&mut spent[4], t, busy_us(&mut info).await);
            let mut pipe = redis::pipe();
            for i in 0..ROUND as u64 {
                pipe.cmd("SET")
                    .arg(format!("{prefix}:set:{}", (sets + i) % 10_000))
                    .arg(i)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut info).await.expect("sets");
            sets += ROUND as u64;
            lap(&mut spent[SETS], t, busy_us(&mut info).await);
        }
        done += claimed.len() as u64;
    }
    let stats = store.stats(&id).await.expect("stats");
    assert_eq!(stats.accepted, jobs, "every job settled once");
    let _ = store.purge_namespace().await;
    let spent = spent.map(|(us, readings)| us.saturating_sub(readings * overhead));
    let set_us = spent[SETS] as f64 / sets as f64;
    let total: u64 = spent[..SETS].iter().sum();
    let per = |us: u64| us as f64 / done as f64;
    println!(
        "Redis CPU per send, {done} sends: {:.2} µs in all ({:.1} SETs' worth; one SET {set_us:.2} µs, \
         one reading {overhead} µs, taken off)",
        per(total),
        per(total) / set_us
    );
    for (name, us) in PHASES.iter().zip(spent) {
        println!("  {name:7} {:5.2} µs", per(us));
    }
}
