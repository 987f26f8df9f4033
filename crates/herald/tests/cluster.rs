//! A campaign on a real Redis Cluster of its own (three masters, three replicas) while the
//! cluster changes under it: the replica of the master holding the campaign is promoted
//! (`CLUSTER FAILOVER`) and then the new master is killed (SIGKILL), each mid-campaign. The
//! campaign completes with every recipient sent exactly once, by the simulator's oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_store_redis::testing::TestCluster;
use serde_json::Value;

mod common;
use common::{
    SimRig, completes_once, create_started, recipients_csv, sim_rig, spawn, until_campaign, wait_ok,
};

const RECIPIENTS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_a_failover_and_a_killed_master() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let SimRig {
        server,
        mut sim,
        sim_url,
        mut env,
    } = sim_rig("cluster");
    env.extend([
        ("REDIS_URL", cluster.url()),
        ("HERALD_STORE__BACKEND", "redis_cluster".into()),
        // The started mark is on a replica before each request goes out.
        ("HERALD_STORE__REPLICA_ACKS", "1".into()),
        ("HERALD_STORE__REPLICA_ACK_TIMEOUT_MS", "500".into()),
        // A settle the killed master had not passed on leaves its job started, and then in
        // doubt: settled by its webhook if the request reached Meta; if it never left (held
        // for the replica) or Meta refused it, no webhook will come, and the job is resent
        // once the statuses of later messages show the pipeline caught up. A short grace lets
        // that happen within the test (it is 30 minutes by default).
        ("HERALD_SENDER__IN_DOUBT_GRACE_SECS", "5".into()),
    ]);
    let mut serve = spawn(&["serve"], &env);
    wait_ok(&format!("{server}/readyz"), Duration::from_secs(30)).await;

    let dir = std::env::temp_dir().join(format!("herald-cluster-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = recipients_csv(&dir, RECIPIENTS, 3);
    let (id, _) = create_started(&server, "cluster", &csv, &[], &env);
    let meta = format!("herald:{{c:{id}}}:meta");

    // A quarter in: the replica of the campaign's master takes over in an orderly way.
    let sent = |n: u64| move |c: &Value| c["stats"]["accepted"].as_u64().unwrap_or(0) >= n;
    until_campaign(&server, &id, Duration::from_secs(60), sent(RECIPIENTS / 4)).await;
    let promoted = tokio::task::spawn_blocking(move || {
        let replica = cluster.replica_of(cluster.master_of(&meta).unwrap());
        cluster.promote(replica);
        assert_eq!(
            cluster.master_of(&meta),
            Some(replica),
            "the promoted replica serves the campaign"
        );
        (cluster, replica, meta)
    });
    let (mut cluster, promoted, meta) = promoted.await.unwrap();

    // Half-way: the campaign's (new) master dies without a word; its replica takes over
    // once the others notice (cluster-node-timeout). That shard has no replica left, so
    // sends hold (store.replica_ack_policy = "hold") until the dead node is back, as a
    // replica.
    until_campaign(&server, &id, Duration::from_secs(60), sent(RECIPIENTS / 2)).await;
    cluster.kill(promoted);
    // Kept until the end: dropping it stops the cluster.
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.until(|| cluster.master_of(&meta).is_some_and(|m| m != promoted));
        cluster.restart(promoted);
        cluster.until(|| cluster.nodes_that_are(false).contains(&promoted));
        cluster.until_healthy();
        cluster
    })
    .await
    .unwrap();

    // Nobody lost, nobody messaged twice.
    completes_once(&server, &id, &sim_url, RECIPIENTS, Duration::from_secs(120)).await;

    let status = serve.terminate().expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    sim.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
