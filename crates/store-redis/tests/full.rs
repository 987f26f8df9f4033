//! A Redis that reached `maxmemory` (with `noeviction`, as Herald requires) refuses every
//! write. The store answers each refused call with a retryable error that names the cause and
//! the remedy (so the sender, the reconciler and the webhook receiver wait and retry, and the
//! API answers 503), nothing is half-applied, deleting an ended campaign (the remedy) still
//! works, and once there is room the same calls go through with every count exact.
//!
//! The test starts its own `redis-server` (`REDIS_SERVER_BIN`, else `redis-server` on the
//! PATH) and fills it by lowering `maxmemory` below what it holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_core::CampaignAction;
use herald_store::conformance::{all_accepted, claim_req, recipients, running, running_with};
use herald_store::{JobRef, Outcome, SettleResult, Store, StoreError};
use herald_store_redis::testing::TestRedisServer;
use herald_store_redis::{RedisConfig, RedisStore};

/// A call Redis refused for want of memory: retryable, and saying so.
#[track_caller]
fn out_of_memory<T: std::fmt::Debug>(what: &str, r: herald_store::Result<T>) {
    match r {
        Err(e @ StoreError::Full(_)) => {
            assert!(e.is_retryable());
            let text = e.to_string();
            assert!(
                text.contains("out of memory") && text.contains("maxmemory"),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected an out-of-memory refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_delays_writes_and_loses_nothing() {
    let server = TestRedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let store = RedisStore::connect(&RedisConfig::new(server.url(), "herald"))
        .await
        .unwrap();
    let id = running(&store, "full", 100).await;
    let jobs = store.claim(&claim_req(20, 1)).await.unwrap();
    assert_eq!(jobs.len(), 20);
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    let settles = all_accepted(&jobs, "full");
    // Claimed before Redis fills, started after.
    let later = store.claim(&claim_req(10, 2)).await.unwrap();
    let later_refs: Vec<JobRef> = later.iter().map(JobRef::from).collect();
    assert!(
        store
            .lead("full-test", "me", Duration::from_secs(30))
            .await
            .unwrap()
    );
    // An ended campaign, to delete while Redis is full.
    let ended = running_with(&store, "ended", &recipients(1000..1500)).await;
    store
        .transition(&ended, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let before = store.stats(&id).await.unwrap();
    assert_eq!((before.pending, before.in_flight), (70, 30));

    server.set_maxmemory(1).await;
    let memory = store.memory_use().await.unwrap().unwrap();
    assert_eq!(memory.max_bytes, Some(1), "{memory:?}");
    assert!(memory.share().unwrap() > 1.0, "{memory:?}");
    out_of_memory("settle", store.settle(&settles).await);
    out_of_memory("claim", store.claim(&claim_req(10, 3)).await);
    // No request goes out while its answer could not be recorded.
    out_of_memory("start", store.start(&later_refs).await);
    out_of_memory(
        "enqueue",
        store.enqueue_batch(&id, &recipients(100..150)).await,
    );
    out_of_memory("webhook intake", store.append_webhook(b"{}").await);
    out_of_memory(
        "create",
        store
            .create_campaign(herald_store::NewCampaign {
                spec: herald_store::conformance::spec("later"),
                phone_number_id: "1".into(),
                template: None,
            })
            .await,
    );
    // What only keeps existing state alive goes on: the leases of held jobs (so none falls
    // in doubt while memory is freed) and a role's lead.
    store
        .renew(&later_refs, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        store
            .lead("full-test", "me", Duration::from_secs(30))
            .await
            .unwrap()
    );
    // Reads go on, and nothing was half-applied.
    assert_eq!(store.stats(&id).await.unwrap(), before);
    // A process that starts now (a Pod rescheduled, the API restarted) connects, so that the
    // remedy can be reached, and it reads.
    let late = RedisStore::connect(&RedisConfig::new(server.url(), "herald"))
        .await
        .unwrap();
    assert_eq!(late.stats(&id).await.unwrap(), before);
    // The remedy works on a full Redis.
    late.delete_campaign(&ended).await.unwrap();
    assert!(matches!(
        store.campaign(&ended).await,
        Err(StoreError::NotFound(_))
    ));

    // Room again: the same calls go through, exactly once.
    server.set_maxmemory(0).await;
    assert_eq!(store.memory_use().await.unwrap().unwrap().max_bytes, None);
    assert!(store.start(&later_refs).await.unwrap().iter().all(|go| *go));
    let results = store.settle(&settles).await.unwrap();
    assert!(
        results.iter().all(|r| *r == SettleResult::Applied),
        "{results:?}"
    );
    let added = store
        .enqueue_batch(&id, &recipients(100..150))
        .await
        .unwrap();
    assert!(added.iter().all(|new| *new), "{added:?}");
    store.append_webhook(b"{}").await.unwrap();
    let stats = store.stats(&id).await.unwrap();
    assert!(stats.invariant_holds(), "{stats:#?}");
    assert_eq!(
        (
            stats.recipients,
            stats.accepted,
            stats.in_flight,
            stats.pending
        ),
        (150, 20, 10, 120)
    );
    for s in &settles {
        let message_id = match &s.outcome {
            Outcome::Accepted { message_id } => message_id,
            _ => unreachable!(),
        };
        assert_eq!(
            store.job_for_message(message_id).await.unwrap().as_ref(),
            Some(&s.job.id),
            "{message_id}"
        );
    }
}
