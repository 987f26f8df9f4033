//! What replication-safe writes cost (`store.replica_acks`), against a private master with one
//! replica, first without waiting for the replica and then with `WAIT 1`, in one run:
//! - claim + start + settle of 50,000 jobs in batches of 50 by 4 workers (`WAIT` after each
//!   start);
//! - 50,000 webhook deliveries stored by 16 concurrent requests, as receivers handle Meta's
//!   POSTs (`WAIT` after each, before Meta would be answered).
//!
//! `cargo run --release -p herald-benches --bin replica [-- JOBS]` (starts its own master and
//! replica from `REDIS_SERVER_BIN`, else `redis-server` on the PATH, on free ports).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use herald_benches::{new_campaign, recipients};
use herald_core::{CampaignAction, WaMessageId};
use herald_store::{ClaimRequest, JobRef, LeaseToken, Outcome, Settle, Store};
use herald_store_redis::testing::{TestRedisServer, until_replication};
use herald_store_redis::{RedisConfig, RedisStore, ReplicaAck, ReplicaAckPolicy};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A status delivery as Meta posts it (one `sent` status), about 1 KB.
fn delivery(i: u64) -> Vec<u8> {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"statuses":[{{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4{i:012}","status":"sent","timestamp":"1750263773","recipient_id":"16505551234","biz_opaque_callback_data":"c01jbench:{i}","conversation":{{"id":"CONVERSATION_ID","expiration_timestamp":"1750263773","origin":{{"type":"marketing"}}}},"pricing":{{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}}}}]}},"field":"messages"}}]}}]}}"#
    )
    .into_bytes()
}

/// Webhook deliveries stored per second, 16 at a time.
async fn webhooks(url: &str, n: u64, ack: Option<ReplicaAck>) -> f64 {
    let prefix = format!("herald-bench-{:08x}", rand::random::<u32>());
    let mut cfg = RedisConfig::new(url, prefix);
    cfg.replica_ack = ack;
    let store = std::sync::Arc::new(RedisStore::connect(&cfg).await.expect("connect"));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let tasks = (0..16).map(|_| {
        let (store, next) = (store.clone(), next.clone());
        async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                store.append_webhook(&delivery(i)).await.expect("append");
            }
        }
    });
    futures::future::join_all(tasks).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    store.purge_namespace().await.expect("clean up");
    rate
}

#[tokio::main]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    // AOF as Herald is advised to run it (everysec), on master and replica.
    let master = TestRedisServer::start_with(&["--appendfsync", "everysec"]);
    let port = master.port().to_string();
    let replica = TestRedisServer::start_with(&[
        "--appendfsync",
        "everysec",
        "--replicaof",
        "127.0.0.1",
        &port,
    ]);
    until_replication(&replica.url(), |i| i.contains("master_link_status:up")).await;
    let url = master.url();
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
        let without = webhooks(&url, jobs, None).await;
        let with = webhooks(&url, jobs, ack).await;
        println!(
            "round {round}: webhook deliveries stored, 16 at a time: {without:>8.0}/s without waiting; {with:>8.0}/s with WAIT 1 after each ({:.2}×)",
            with / without
        );
    }
}
