//! A campaign's slot moves to another master while workers claim, start and settle its jobs
//! (the Cluster answers ASK for keys already moved and TRYAGAIN for scripts whose keys are
//! split between the two): every job is settled exactly once, and the counters add up.
//!
//! The test starts its own six-node cluster (`REDIS_SERVER_BIN`, `REDIS_CLI_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::{CampaignAction, WaMessageId};
use herald_store::conformance::{campaign, claim_req, recipients};
use herald_store::{JobRef, Outcome, Settle, Store, StoreError};
use herald_store_redis::testing::TestCluster;
use herald_store_redis::{RedisConfig, RedisStore};

const JOBS: u64 = 3_000;
/// Migration steps that each wait for the workers to make progress.
const INTERLEAVED: usize = 40;

/// Retries a call the store could not make now, as the sender does.
macro_rules! retried {
    ($call:expr) => {
        loop {
            match $call.await {
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.unwrap(),
            }
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_keeps_sending_while_its_slot_moves() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let prefix = format!("herald-reshard-{:08x}", rand::random::<u32>());
    let mut cfg = RedisConfig::new(cluster.url(), prefix.clone());
    cfg.cluster = true;
    let store = std::sync::Arc::new(RedisStore::connect(&cfg).await.unwrap());
    let id = campaign(&*store, "moving").await;
    for chunk in recipients(0..JOBS).chunks(500) {
        store.enqueue_batch(&id, chunk).await.unwrap();
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();
    let meta = format!("{prefix}:{{c:{id}}}:meta");
    let from = cluster.master_of(&meta).unwrap();
    let to = *cluster
        .nodes_that_are(true)
        .iter()
        .find(|&&p| p != from)
        .unwrap();

    // Jobs settled so far, by all workers.
    let progress = std::sync::Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let (store, progress) = (store.clone(), progress.clone());
            tokio::spawn(async move {
                let mut settled = 0u64;
                let mut round = 0u64;
                loop {
                    round += 1;
                    let jobs = retried!(store.claim(&claim_req(25, w * 1_000_000 + round)));
                    if jobs.is_empty() {
                        return settled;
                    }
                    let refs: Vec<JobRef> = jobs.iter().map(JobRef::from).collect();
                    let started = retried!(store.start(&refs));
                    let settles: Vec<Settle> = refs
                        .iter()
                        .zip(started)
                        .map(|(r, ok)| Settle {
                            job: r.clone(),
                            outcome: if ok {
                                Outcome::Accepted {
                                    message_id: WaMessageId::new(&format!(
                                        "wamid.reshard{:08}",
                                        r.id.seq
                                    ))
                                    .unwrap(),
                                }
                            } else {
                                Outcome::Released
                            },
                        })
                        .collect();
                    retried!(store.settle(&settles));
                    settled += settles.len() as u64;
                    progress.fetch_add(settles.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The slot moves while they work: its first steps each give the workers a moment to
    // settle more, so claims, starts and settles meet a slot half moved. (Only the pace of the
    // move depends on it: calls whose keys are split get TRYAGAIN until it ends.)
    let during = progress.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.move_slot(&meta, to, |step| {
            let seen = during.load(Ordering::Relaxed);
            let until = std::time::Instant::now() + Duration::from_millis(100);
            while step < INTERLEAVED
                && during.load(Ordering::Relaxed) == seen
                && std::time::Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert_eq!(cluster.master_of(&meta), Some(to));
        cluster
    })
    .await
    .unwrap();
    for w in workers {
        w.await.unwrap();
    }

    let s = store.stats(&id).await.unwrap();
    assert_eq!(s.accepted, JOBS, "{s:?}");
    assert_eq!((s.pending, s.in_flight, s.in_doubt), (0, 0, 0), "{s:?}");
    assert!(s.invariant_holds(), "{s:?}");
    store.purge_namespace().await.unwrap();
    drop(cluster);
}
