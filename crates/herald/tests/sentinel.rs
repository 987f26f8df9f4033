//! A campaign on Redis behind Sentinel (a master, its replica, a Sentinel), configured as an
//! operator would for the usual Helm chart: `store.backend = "redis_sentinel"`, the Sentinel's
//! URL and the master's name. A fifth of the way in the Sentinel fails over; the campaign
//! completes on the new master with every recipient sent exactly once, by the simulator's
//! oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_store_redis::testing::{SentinelRig, TestSentinel, until_replication};
use serde_json::Value;

mod common;
use common::{
    SimRig, completes_once, create_started, get_text, recipients_csv, sim_rig, spawn,
    until_campaign, wait_ok,
};

/// 15 s at 200 MPS. The failover comes a fifth of the way in, so that messages go on for
/// longer than a job in doubt from it needs to be resolved on their evidence (a lease and
/// `in_doubt_grace_secs`).
const RECIPIENTS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_a_sentinel_failover() {
    let SentinelRig {
        master,
        replica,
        sentinel,
    } = SentinelRig::start().await;

    let SimRig {
        server,
        mut sim,
        sim_url,
        mut env,
    } = sim_rig("sentinel");
    env.extend([
        ("REDIS_URL", sentinel.url()),
        ("HERALD_STORE__BACKEND", "redis_sentinel".into()),
        ("HERALD_STORE__SENTINEL_MASTER", TestSentinel::MASTER.into()),
        // As README advises with replicas: a start waits until the replica holds its mark.
        ("HERALD_STORE__REPLICA_ACKS", "1".into()),
        ("HERALD_STORE__REPLICA_ACK_TIMEOUT_MS", "500".into()),
        // Writes the old master took after the replica was promoted are lost with it; a job
        // whose settlement was among them is in doubt, settled by its webhook or, when none
        // comes, resent once the statuses of later messages show the pipeline caught up. A
        // short grace lets that happen within the test (30 minutes by default).
        ("HERALD_SENDER__IN_DOUBT_GRACE_SECS", "5".into()),
    ]);
    let mut serve = spawn(&["serve"], &env);
    wait_ok(&format!("{server}/readyz"), Duration::from_secs(30)).await;

    let dir = std::env::temp_dir().join(format!("herald-sentinel-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = recipients_csv(&dir, RECIPIENTS, 5);
    let (id, _) = create_started(&server, "sentinel", &csv, &[], &env);
    let sent = |n: u64| move |c: &Value| c["stats"]["accepted"].as_u64().unwrap_or(0) >= n;
    until_campaign(&server, &id, Duration::from_secs(60), sent(RECIPIENTS / 5)).await;
    // The moves to a new master are counted from zero, so that the alert HeraldRedisFailover
    // sees the first as an increase.
    assert_eq!(master_changes(&server).await, Some(0));
    sentinel.failover().await;
    assert_eq!(sentinel.master_port().await, Some(replica.port()));

    // Nobody lost, nobody messaged twice.
    completes_once(&server, &id, &sim_url, RECIPIENTS, Duration::from_secs(120)).await;
    // It ended on the new master: the old one follows it.
    until_replication(&master.url(), |i| i.contains("role:slave")).await;
    assert_eq!(master_changes(&server).await, Some(1));

    let status = serve.terminate().expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    sim.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `herald_store_master_changes_total` as the process exports it.
async fn master_changes(server: &str) -> Option<u64> {
    let metrics = get_text(&format!("{server}/metrics")).await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_store_master_changes_total "))
        .and_then(|v| v.trim().parse().ok())
}
