//! Store throughput on each backend in one run, in memory, on a standalone Redis and on a Redis
//! Cluster over loopback, with `redis-benchmark -q -P 16 -t set` on the standalone server as
//! the ceiling:
//!   - enqueue 1,000,000 jobs in batches of 1,000 (one writer, as an upload does; then four);
//!   - claim + settle(accepted) 1,000,000 jobs with 4 concurrent workers;
//!   - Redis memory per 1,000,000 pending jobs (`INFO memory`, before and after; standalone).
//!
//! `cargo run --release -p herald-benches --bin store [-- JOBS [BACKEND…]]` (backends:
//! memory, redis, cluster; all by default). REDIS_URL (default redis://127.0.0.1:6379) is the
//! standalone server; REDIS_CLUSTER_URL names a cluster's nodes, else a private six-node
//! cluster (three masters, three replicas) is started for the run. Everything is written under
//! a random prefix and deleted after. `HERALD_BENCH_BATCH` sets the claim size (default 500);
//! `HERALD_BENCH_COMMANDSTATS=1` prints Redis's per-command CPU for the standalone claim +
//! settle phase.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use herald_benches::{new_campaign, recipients};
use herald_core::CampaignAction;
use herald_core::Recipient;
use herald_store::{ClaimRequest, LeaseToken, MemoryStore, Store};
use herald_store_redis::testing::TestCluster;
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

/// Jobs per second in each phase.
#[derive(Debug, Clone, Copy)]
struct Rates {
    enqueue_one: f64,
    enqueue_four: f64,
    claim_settle: f64,
}

/// What to read from a standalone Redis while its store runs: its memory around the first
/// enqueue, and (`commandstats`) its per-command CPU around the claims and settles.
struct Watch<'a> {
    url: &'a str,
    commandstats: bool,
}

/// Enqueues `all` with one writer, then with four into a second campaign, then claims and
/// settles the first campaign's jobs with four workers; checks every job settled once.
async fn phases<S: Store>(store: &S, all: &[Recipient], watch: Option<&Watch<'_>>) -> Rates {
    let jobs = all.len() as f64;
    let id = new_campaign(store, "bench").await;
    let before = match watch {
        Some(w) => used_memory(w.url).await,
        None => 0,
    };
    let t = Instant::now();
    for chunk in all.chunks(1000) {
        store.enqueue_batch(&id, chunk).await.expect("enqueue");
    }
    let enqueue_one = jobs / t.elapsed().as_secs_f64();
    if let Some(w) = watch {
        let grew = used_memory(w.url).await.saturating_sub(before) as f64;
        println!(
            "memory for {jobs} pending jobs: {:.1} MB ({:.0} bytes per job; {:.0} MB per million)",
            grew / 1e6,
            grew / jobs,
            grew / jobs
        );
    }

    let id2 = new_campaign(store, "bench").await;
    let t = Instant::now();
    let quarter = all.len().div_ceil(4);
    let writers = all.chunks(quarter).map(|part| {
        let id2 = &id2;
        async move {
            for chunk in part.chunks(1000) {
                store.enqueue_batch(id2, chunk).await.expect("enqueue");
            }
        }
    });
    futures::future::join_all(writers).await;
    let enqueue_four = jobs / t.elapsed().as_secs_f64();

    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let profile = watch.filter(|w| w.commandstats).map(|w| w.url);
    if let Some(url) = profile {
        redis_cmd(url, &["CONFIG", "RESETSTAT"]).await;
    }
    let t = Instant::now();
    let workers = (0..4u64).map(|w| async move {
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
            let settles = herald_benches::accepted(&claimed);
            store.settle(&settles).await.expect("settle");
            done += claimed.len() as u64;
        }
    });
    let done: u64 = futures::future::join_all(workers).await.into_iter().sum();
    let claim_settle = done as f64 / t.elapsed().as_secs_f64();
    if let Some(url) = profile {
        println!("{}", redis_cmd(url, &["INFO", "commandstats"]).await);
    }
    let stats = store.stats(&id).await.expect("stats");
    assert_eq!(stats.accepted, all.len() as u64, "every job settled once");
    assert!(stats.invariant_holds());
    Rates {
        enqueue_one,
        enqueue_four,
        claim_settle,
    }
}

/// The Cluster client, chosen by measurement: 200,000 `HSET`s (4 tasks, keys spread over the
/// slots) through redis-rs's cluster connections shared by clone, as the store uses them, and
/// through deadpool-redis's cluster pool, one checkout per command.
async fn client_choice(nodes: &str) {
    const N: u64 = 200_000;
    let urls: Vec<String> = nodes.split(',').map(str::to_owned).collect();
    let prefix = format!("herald-bench-client-{:08x}", rand::random::<u32>());
    let key = |i: u64| format!("{prefix}:{}", i % 10_000);
    let client = redis::cluster::ClusterClient::new(urls.clone()).expect("cluster client");
    let shared = client.get_async_connection().await.expect("connect");
    let shared_rate = hsets_per_second(N, &key, || {
        let c = shared.clone();
        async move { c }
    })
    .await;
    let pool = deadpool_redis::cluster::Config::from_urls(urls)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("pool");
    let pool_rate =
        hsets_per_second(N, &key, || async { pool.get().await.expect("checkout") }).await;
    let mut c = shared.clone();
    for i in 0..10_000u64 {
        let _: () = redis::cmd("DEL")
            .arg(key(i))
            .query_async(&mut c)
            .await
            .expect("del");
    }
    println!(
        "cluster client: redis-rs connections shared by clone {shared_rate:.0} HSET/s; \
         deadpool-redis cluster pool, a checkout per command {pool_rate:.0} HSET/s ({:.2}x)",
        pool_rate / shared_rate
    );
}

/// `n` HSETs from 4 tasks, one at a time each, every one on a connection `connection` gives.
async fn hsets_per_second<C, F, Fut>(
    n: u64,
    key: &(dyn Fn(u64) -> String + Sync),
    connection: F,
) -> f64
where
    F: Fn() -> Fut + Sync,
    Fut: std::future::Future<Output = C>,
    C: redis::aio::ConnectionLike + Send,
{
    let t = Instant::now();
    let tasks = (0..4u64).map(|w| {
        let connection = &connection;
        async move {
            for i in (w..n).step_by(4) {
                let mut c = connection().await;
                let _: () = redis::cmd("HSET")
                    .arg(key(i))
                    .arg("f")
                    .arg(i)
                    .query_async(&mut c)
                    .await
                    .expect("hset");
            }
        }
    });
    futures::future::join_all(tasks).await;
    n as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut backends: Vec<String> = args.collect();
    if backends.is_empty() {
        backends = ["memory", "redis", "cluster"].map(String::from).to_vec();
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let ceiling = redis_benchmark_ceiling(&url);
    match ceiling {
        Some(c) => println!("ceiling: redis-benchmark -q -P 16 -t set (standalone): {c:.0} SET/s"),
        None => println!("ceiling: redis-benchmark not found (install redis-tools)"),
    }
    let all = recipients(0..jobs);
    let mut results: Vec<(&str, Rates)> = Vec::new();
    for backend in &backends {
        let prefix = format!("herald-bench-{:08x}", rand::random::<u32>());
        match backend.as_str() {
            "memory" => {
                let store = MemoryStore::new();
                results.push(("memory", phases(&store, &all, None).await));
            }
            "redis" => {
                let store = RedisStore::connect(&RedisConfig::new(url.clone(), prefix))
                    .await
                    .expect("connect");
                let watch = Watch {
                    url: &url,
                    commandstats: std::env::var_os("HERALD_BENCH_COMMANDSTATS").is_some(),
                };
                let rates = phases(&store, &all, Some(&watch)).await;
                let removed = store.purge_namespace().await.expect("clean up");
                println!("standalone: cleaned up {removed} keys");
                results.push(("redis (standalone)", rates));
            }
            "cluster" => {
                let (nodes, _private) = match std::env::var("REDIS_CLUSTER_URL") {
                    Ok(u) => (u, None),
                    Err(_) => {
                        let c = tokio::task::spawn_blocking(TestCluster::start)
                            .await
                            .expect("start a cluster");
                        (c.url(), Some(c))
                    }
                };
                let mut cfg = RedisConfig::new(nodes, prefix);
                cfg.cluster = true;
                let store = RedisStore::connect(&cfg)
                    .await
                    .expect("connect to the cluster");
                client_choice(&cfg.url).await;
                let rates = phases(&store, &all, None).await;
                let removed = store.purge_namespace().await.expect("clean up");
                println!("cluster: cleaned up {removed} keys");
                results.push(("redis cluster (3 masters)", rates));
            }
            other => panic!("unknown backend {other:?}: memory, redis or cluster"),
        }
    }
    let ratio = |rate: f64| ceiling.map_or(String::new(), |c| format!(" ({:.2}x)", rate / c));
    println!("\n{jobs} jobs; ratios against the standalone SET ceiling");
    println!(
        "{:<26} {:>24} {:>24} {:>24}",
        "backend", "enqueue, 1 writer", "enqueue, 4 writers", "claim+settle, 4 workers"
    );
    for (name, r) in &results {
        println!(
            "{name:<26} {:>24} {:>24} {:>24}",
            format!("{:.0}/s{}", r.enqueue_one, ratio(r.enqueue_one)),
            format!("{:.0}/s{}", r.enqueue_four, ratio(r.enqueue_four)),
            format!("{:.0}/s{}", r.claim_settle, ratio(r.claim_settle)),
        );
    }
}
