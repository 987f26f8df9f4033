//! What replication-safe starts cost (`store.replica_acks`): claim + start + settle of 50,000
//! jobs in batches of 50 by 4 workers, against a private master with one replica, first
//! without waiting for the replica and then with `WAIT 1` after each start, in one run.
//!
//! `cargo run --release -p herald-benches --bin replica [-- JOBS]` (starts its own master and
//! replica from `REDIS_SERVER_BIN`, else `redis-server` on the PATH, on free ports).

#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_benches::{new_campaign, recipients};
use herald_core::{CampaignAction, WaMessageId};
use herald_store::{ClaimRequest, JobRef, LeaseToken, Outcome, Settle, Store};
use herald_store_redis::{RedisConfig, RedisStore, ReplicaAck, ReplicaAckPolicy};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A `redis-server` child that is killed when dropped.
struct Server(Child, u16, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

fn server(extra: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("herald-bench-redis-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(&bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "everysec"])
        .args(["--dir", dir.to_str().expect("utf-8 dir")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child, port, dir)
}

async fn linked(url: &str) {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .expect("info");
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never linked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Jobs per second through claim + start + settle, 4 workers.
async fn run(url: &str, jobs: u64, ack: Option<ReplicaAck>) -> f64 {
    let prefix = format!("herald-bench-{:08x}", rand::random::<u32>());
    let mut cfg = RedisConfig::new(url, prefix);
    cfg.replica_ack = ack;
    let store = std::sync::Arc::new(RedisStore::connect(&cfg).await.expect("connect"));
    let id = new_campaign(&*store, "replica").await;
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let range = chunk[0]..chunk[chunk.len() - 1] + 1;
        store
            .enqueue_batch(&id, &recipients(range))
            .await
            .expect("enqueue");
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let t = Instant::now();
    let workers = (0..4u64).map(|w| {
        let store = store.clone();
        async move {
            let req = ClaimRequest {
                phone_number_id: None,
                max: 50,
                lease: Duration::from_secs(60),
                token: LeaseToken(w + 1),
            };
            loop {
                let claimed = store.claim(&req).await.expect("claim");
                if claimed.is_empty() {
                    return;
                }
                let refs: Vec<JobRef> = claimed.iter().map(JobRef::from).collect();
                store.start(&refs).await.expect("start");
                let settles: Vec<Settle> = claimed
                    .iter()
                    .map(|j| Settle {
                        job: j.into(),
                        outcome: Outcome::Accepted {
                            message_id: WaMessageId::new(&format!("wamid.BENCH{:012}", j.id.seq))
                                .expect("id"),
                        },
                    })
                    .collect();
                store.settle(&settles).await.expect("settle");
            }
        }
    });
    futures::future::join_all(workers).await;
    let rate = jobs as f64 / t.elapsed().as_secs_f64();
    assert_eq!(store.stats(&id).await.expect("stats").accepted, jobs);
    store.purge_namespace().await.expect("clean up");
    rate
}

#[tokio::main]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let master = server(&[]);
    let port = master.1.to_string();
    let replica = server(&["--replicaof", "127.0.0.1", &port]);
    linked(&format!("redis://127.0.0.1:{}", replica.1)).await;
    let url = format!("redis://127.0.0.1:{port}");
    let ack = Some(ReplicaAck {
        replicas: 1,
        timeout: Duration::from_millis(100),
        policy: ReplicaAckPolicy::Hold,
    });
    for round in 1..=2 {
        let without = run(&url, jobs, None).await;
        let with = run(&url, jobs, ack).await;
        println!(
            "round {round}: claim + start + settle, 4 workers, batches of 50: {without:>8.0} jobs/s without waiting; {with:>8.0} jobs/s with WAIT 1 after each start ({:.2}×)",
            with / without
        );
    }
}
