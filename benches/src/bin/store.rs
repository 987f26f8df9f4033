//! Store throughput on Redis over loopback, with `redis-benchmark -q -P 16 -t set` on the same
//! server as the ceiling:
//!   - enqueue 1,000,000 jobs in batches of 1,000 (one writer, as an upload does; then four);
//!   - claim + settle(accepted) 1,000,000 jobs with 4 concurrent workers;
//!   - Redis memory per 1,000,000 pending jobs (`INFO memory`, before and after).
//!
//! `cargo run --release -p herald-benches --bin store [-- JOBS]` (REDIS_URL, default
//! redis://127.0.0.1:6379; everything is written under a random prefix and deleted after).
//! `HERALD_BENCH_BATCH` sets the claim size (default 500); `HERALD_BENCH_COMMANDSTATS=1`
//! prints Redis's per-command CPU for the claim + settle phase.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use herald_benches::{new_campaign, recipients};
use herald_core::{CampaignAction, WaMessageId};
use herald_store::{ClaimRequest, LeaseToken, Outcome, Settle, Store};
use herald_store_redis::{RedisConfig, RedisStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn used_memory(store_url: &str) -> u64 {
    let client = redis::Client::open(store_url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn redis_cmd(url: &str, args: &[&str]) -> String {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd.query_async(&mut conn).await.expect("command");
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}

fn redis_benchmark_ceiling(url: &str) -> Option<f64> {
    let rest = url.strip_prefix("redis://")?;
    let (host, port) = rest
        .trim_end_matches('/')
        .split_once(':')
        .unwrap_or((rest, "6379"));
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h", host, "-p", port, "-q", "-P", "16", "-t", "set", "-n", "2000000",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "SET: 1234567.00 requests per second, p50=..."; the -q output rewrites the line with \r.
    let line = text.split(['\r', '\n']).rfind(|l| l.starts_with("SET:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-bench-{:08x}", rand::random::<u32>());
    let store = RedisStore::connect(&RedisConfig::new(url.clone(), prefix))
        .await
        .expect("connect");

    let ceiling = redis_benchmark_ceiling(&url);
    match ceiling {
        Some(c) => println!("ceiling: redis-benchmark -q -P 16 -t set: {c:.0} SET/s"),
        None => println!("ceiling: redis-benchmark not found (install redis-tools)"),
    }
    let ratio = |rate: f64| {
        ceiling.map_or(String::new(), |c| {
            format!(" ({:.1}% of the SET ceiling)", 100.0 * rate / c)
        })
    };
    let all = recipients(0..jobs);

    // Enqueue, one writer.
    let before = used_memory(&url).await;
    let id = new_campaign(&store, "bench").await;
    let t = Instant::now();
    for chunk in all.chunks(1000) {
        store.enqueue_batch(&id, chunk).await.expect("enqueue");
    }
    let rate = jobs as f64 / t.elapsed().as_secs_f64();
    println!(
        "enqueue, 1 writer, batches of 1,000: {rate:>10.0} jobs/s{}",
        ratio(rate)
    );
    let after = used_memory(&url).await;
    let per_job = after.saturating_sub(before) as f64 / jobs as f64;
    println!(
        "memory for {jobs} pending jobs: {:.1} MB ({per_job:.0} bytes per job; {:.0} MB per million)",
        after.saturating_sub(before) as f64 / 1e6,
        per_job
    );

    // Enqueue, four writers into a second campaign.
    let id2 = new_campaign(&store, "bench").await;
    let t = Instant::now();
    let quarter = all.len().div_ceil(4);
    let writers = all.chunks(quarter).map(|part| {
        let (store, id2) = (&store, &id2);
        async move {
            for chunk in part.chunks(1000) {
                store.enqueue_batch(id2, chunk).await.expect("enqueue");
            }
        }
    });
    futures::future::join_all(writers).await;
    let rate = jobs as f64 / t.elapsed().as_secs_f64();
    println!(
        "enqueue, 4 writers, batches of 1,000: {rate:>10.0} jobs/s{}",
        ratio(rate)
    );

    // Claim + settle(accepted), four workers.
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let profile = std::env::var_os("HERALD_BENCH_COMMANDSTATS").is_some();
    if profile {
        redis_cmd(&url, &["CONFIG", "RESETSTAT"]).await;
    }
    let t = Instant::now();
    let workers = (0..4u64).map(|w| {
        let store = &store;
        async move {
            let req = ClaimRequest {
                phone_number_id: None,
                max: std::env::var("HERALD_BENCH_BATCH")
                    .ok()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(500),
                lease: std::time::Duration::from_secs(60),
                token: LeaseToken(w),
            };
            let mut done = 0u64;
            loop {
                let claimed = store.claim(&req).await.expect("claim");
                if claimed.is_empty() {
                    return done;
                }
                let settles: Vec<Settle> = claimed
                    .iter()
                    .map(|j| Settle {
                        job: j.into(),
                        outcome: Outcome::Accepted {
                            message_id: WaMessageId::new(&format!(
                                "wamid.HBgLNDQ3NzAwMDAwMDAwFQIAERgS{:012}",
                                j.id.seq
                            ))
                            .expect("id"),
                        },
                    })
                    .collect();
                store.settle(&settles).await.expect("settle");
                done += claimed.len() as u64;
            }
        }
    });
    let done: u64 = futures::future::join_all(workers).await.into_iter().sum();
    let rate = done as f64 / t.elapsed().as_secs_f64();
    println!(
        "claim + settle(accepted), 4 workers: {rate:>10.0} jobs/s{}",
        ratio(rate)
    );
    if profile {
        println!("{}", redis_cmd(&url, &["INFO", "commandstats"]).await);
    }
    let stats = store.stats(&id).await.expect("stats");
    assert_eq!(stats.accepted, jobs, "every job settled once");
    assert!(stats.invariant_holds());

    let removed = store.purge_namespace().await.expect("clean up");
    println!("cleaned up {removed} keys");
}
