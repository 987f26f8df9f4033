//! A Redis that cannot write to its disk (`MISCONF`: a full volume, a failed snapshot)
//! refuses every write. The store answers each refused call with a retryable error that says
//! so, nothing is half-applied, and once the disk works again the same calls go through.
//!
//! The test starts its own `redis-server` with save points, takes its directory away and asks
//! for a snapshot, which fails: Redis then stops taking writes, as on a full volume.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::conformance::{claim_req, recipients, running};
use herald_store::{Store, StoreError};
use herald_store_redis::testing::TestRedisServer;
use herald_store_redis::{RedisConfig, RedisStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_refuses_writes_and_loses_nothing() {
    let server = TestRedisServer::start_with(&["--appendonly", "no", "--save", "3600 1"]);
    let store = RedisStore::connect(&RedisConfig::new(server.url(), "herald"))
        .await
        .unwrap();
    let id = running(&store, "disk", 10).await;
    let before = store.stats(&id).await.unwrap();

    server.break_disk().await;
    for (what, r) in [
        ("claim", store.claim(&claim_req(5, 1)).await.map(drop)),
        (
            "enqueue",
            store
                .enqueue_batch(&id, &recipients(10..20))
                .await
                .map(drop),
        ),
        ("webhook intake", store.append_webhook(b"{}").await),
    ] {
        match r {
            Err(e @ StoreError::Unavailable(_)) => {
                assert!(
                    e.to_string().contains("cannot write to its disk"),
                    "{what}: {e}"
                );
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(store.stats(&id).await.unwrap(), before);

    server.mend_disk().await;
    assert_eq!(store.claim(&claim_req(5, 1)).await.unwrap().len(), 5);
    store.enqueue_batch(&id, &recipients(10..20)).await.unwrap();
    let stats = store.stats(&id).await.unwrap();
    assert_eq!((stats.recipients, stats.in_flight), (20, 5));
}
