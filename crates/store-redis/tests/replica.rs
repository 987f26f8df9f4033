//! Replication-safe starts: with `replica_ack`, a job's "started" mark is held by a replica
//! before its request may go out (`WAIT`), so a failover cannot forget that the request may be
//! on the wire. When no replica answers, `Hold` keeps the request back (the start fails as
//! unavailable and the job goes back to pending) and `Send` lets it go. A webhook delivery
//! waits the same way before the receiver answers Meta.
//!
//! The test starts its own master and replica (`REDIS_SERVER_BIN`, else `redis-server` on the
//! PATH) on free ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use herald_core::CampaignAction;
use herald_store::conformance::{campaign, claim_req, recipients};
use herald_store::{JobRef, Outcome, Settle, Store, StoreError};
use herald_store_redis::testing::{TestCluster, TestRedisServer, until_replication};
use herald_store_redis::{RedisConfig, RedisStore, ReplicaAck, ReplicaAckPolicy};

async fn store(url: &str, prefix: &str, policy: ReplicaAckPolicy) -> RedisStore {
    let mut cfg = RedisConfig::new(url, prefix);
    cfg.replica_ack = Some(ReplicaAck {
        replicas: 1,
        timeout: Duration::from_millis(200),
        policy,
    });
    RedisStore::connect(&cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_a_replica_and_holds_without_one() {
    let master = TestRedisServer::start();
    let port = master.port().to_string();
    let replica = TestRedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    until_replication(&replica.url(), |i| i.contains("master_link_status:up")).await;

    let prefix = format!("herald-replica-{:08x}", rand::random::<u32>());
    let hold = store(&master.url(), &prefix, ReplicaAckPolicy::Hold).await;
    let id = campaign(&hold, "replicated").await;
    hold.enqueue_batch(&id, &recipients(0..3)).await.unwrap();
    hold.transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();

    // With the replica up, the start is acknowledged and the job may go.
    let jobs = hold.claim(&claim_req(1, 1)).await.unwrap();
    let refs = [JobRef::from(&jobs[0])];
    assert_eq!(hold.start(&refs).await.unwrap(), [true]);
    // So is a webhook delivery: Meta is answered once a replica holds it.
    hold.append_webhook(b"{\"entry\":[]}").await.unwrap();

    // Without it, Hold keeps the request back: the start fails as unavailable, and the
    // job, released by the sender as it does on any failed start, is pending again.
    drop(replica);
    until_replication(&master.url(), |i| i.contains("connected_slaves:0")).await;
    let jobs = hold.claim(&claim_req(1, 2)).await.unwrap();
    let refs = [JobRef::from(&jobs[0])];
    let t = Instant::now();
    match hold.start(&refs).await {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
        }
        other => panic!("held sends fail as unavailable, not {other:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "it waited for the replica"
    );
    hold.settle(&[Settle {
        job: refs[0].clone(),
        outcome: Outcome::Released,
    }])
    .await
    .unwrap();
    let s = hold.stats(&id).await.unwrap();
    assert_eq!((s.pending, s.in_flight), (2, 1), "{s:?}");
    // A webhook delivery no replica holds is refused too: the receiver answers 503 and Meta
    // delivers it again (the copy on the master is harmless: statuses apply once).
    match hold.append_webhook(b"{\"entry\":[]}").await {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(e.to_string().contains("webhook delivery"), "{e}");
        }
        other => panic!("an unreplicated webhook is refused as unavailable, not {other:?}"),
    }

    // Send lets it go (and says so in the log).
    let send = store(&master.url(), &prefix, ReplicaAckPolicy::Send).await;
    let jobs = send.claim(&claim_req(1, 3)).await.unwrap();
    assert_eq!(send.start(&[JobRef::from(&jobs[0])]).await.unwrap(), [true]);
    send.append_webhook(b"{\"entry\":[]}").await.unwrap();
    send.purge_namespace().await.unwrap();
}

/// On a Cluster, a start waits for the replica of its own campaign's master only: a shard
/// whose replica is gone holds its campaigns' sends, and the others' go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_shard_without_its_replica_holds_only_its_own_sends() {
    let mut cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let prefix = format!("herald-replica-{:08x}", rand::random::<u32>());
    let mut cfg = RedisConfig::new(cluster.url(), prefix.clone());
    cfg.cluster = true;
    cfg.replica_ack = Some(ReplicaAck {
        replicas: 1,
        timeout: Duration::from_millis(200),
        policy: ReplicaAckPolicy::Hold,
    });
    let store = RedisStore::connect(&cfg).await.unwrap();
    let meta = |id: &herald_core::CampaignId| format!("{prefix}:{{c:{id}}}:meta");

    // Two campaigns whose keys live on different masters.
    let a = campaign(&store, "a").await;
    let a_master = cluster.master_of(&meta(&a)).unwrap();
    let mut b = campaign(&store, "b").await;
    while cluster.master_of(&meta(&b)) == Some(a_master) {
        b = campaign(&store, "b").await;
    }
    for id in [&a, &b] {
        store.enqueue_batch(id, &recipients(0..2)).await.unwrap();
    }
    let orphan = cluster.replica_of(a_master);
    cluster.kill(orphan);
    until_replication(&format!("redis://127.0.0.1:{a_master}"), |i| {
        i.contains("connected_slaves:0")
    })
    .await;

    store
        .transition(&b, CampaignAction::Start, None)
        .await
        .unwrap();
    let jobs = store.claim(&claim_req(1, 1)).await.unwrap();
    assert_eq!(jobs[0].id.campaign, b);
    assert_eq!(
        store.start(&[JobRef::from(&jobs[0])]).await.unwrap(),
        [true],
        "b's master still has its replica"
    );
    store
        .transition(&b, CampaignAction::Pause, None)
        .await
        .unwrap();

    store
        .transition(&a, CampaignAction::Start, None)
        .await
        .unwrap();
    let jobs = store.claim(&claim_req(1, 2)).await.unwrap();
    assert_eq!(jobs[0].id.campaign, a);
    match store.start(&[JobRef::from(&jobs[0])]).await {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
        }
        other => panic!("a's master has no replica: its sends hold, not {other:?}"),
    }
    store.purge_namespace().await.unwrap();
}

/// `REDIS_URL` pointed at a replica (a Service that reaches every node, the wrong one of two):
/// the store refuses to start, saying so and what to point it at, rather than failing every
/// write as a failover.
#[tokio::test]
async fn a_replica_is_refused_at_start_saying_so() {
    let master = TestRedisServer::start();
    let port = master.port().to_string();
    let replica = TestRedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let e = RedisStore::connect(&RedisConfig::new(replica.url(), "herald"))
        .await
        .err()
        .unwrap();
    assert!(e.is_retryable(), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("reaches a replica") && e.contains("redis_sentinel"),
        "{e}"
    );
    assert!(
        RedisStore::connect(&RedisConfig::new(master.url(), "herald"))
            .await
            .is_ok()
    );
}
