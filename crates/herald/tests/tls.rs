//! Herald on a Redis that speaks TLS only and asks for a client certificate, configured as an
//! operator would for a managed Redis: `REDIS_URL=rediss://…` and the `store.tls_*` files by
//! environment. A campaign runs to completion, every recipient sent once by the simulator's
//! oracle, and `herald doctor` reports the store reached over TLS. Then the certificates are
//! renewed under it (a new CA, Redis's and the client's), and a second campaign completes
//! without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use herald_store_redis::testing::{TestPki, TestRedisServer};

mod common;
use common::{
    BIN, SimRig, completes_once, create_started, get_json, recipients_csv, sim_rig, spawn,
    until_campaign, wait_ok,
};

const RECIPIENTS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_on_redis_over_mutual_tls() {
    let pki = TestPki::new();
    // Sized as doctor wants it.
    let mut args = pki.server_args(true);
    args.extend(["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"].map(String::from));
    let redis = TestRedisServer::start_tls(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (cert, key) = (pki.dir.join("client.pem"), pki.dir.join("client.key"));
    std::fs::write(&cert, &pki.client.cert_pem).unwrap();
    std::fs::write(&key, &pki.client.key_pem).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    let SimRig {
        server,
        mut sim,
        sim_url,
        mut env,
    } = sim_rig("tls");
    env.extend([
        ("REDIS_URL", redis.url()),
        ("HERALD_STORE__TLS_CA_FILE", path(&pki.ca_file())),
        ("HERALD_STORE__TLS_CERT_FILE", path(&cert)),
        ("HERALD_STORE__TLS_KEY_FILE", path(&key)),
        ("HERALD_STORE__TLS_RELOAD_SECS", "1".into()),
    ]);
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let mut serve = spawn(&["serve"], &env);
    wait_ok(&format!("{server}/readyz"), Duration::from_secs(30)).await;

    let csv = recipients_csv(&pki.dir, RECIPIENTS, 4);
    let (id, _) = create_started(&server, "tls", &csv, &[], &env);
    completes_once(&server, &id, &sim_url, RECIPIENTS, Duration::from_secs(60)).await;

    // doctor's store line (the other checks fail: no real token here).
    let doctor = Command::new(BIN)
        .arg("doctor")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("store (Redis)"))
        .unwrap_or_else(|| panic!("no store line in: {text}"));
    assert!(
        line.starts_with("pass") && line.contains("reachable over TLS"),
        "{line}"
    );

    // Certificates renewed while it runs (cert-manager rewriting the mounted files): a new
    // CA, with Redis's certificate and the client's. The files change first (a connection
    // with them cannot answer yet, and the ones in use stay); then Redis takes its new ones
    // and drops every connection made before. Herald reads the files again every second
    // here, and a second campaign completes, every recipient sent once.
    let renewed = TestPki::new();
    std::fs::write(pki.ca_file(), &renewed.ca).unwrap();
    std::fs::write(&cert, &renewed.client.cert_pem).unwrap();
    std::fs::write(&key, &renewed.client.key_pem).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = herald_store_redis::RedisTls {
        ca_pem: Some(pki.ca.as_bytes().to_vec()),
        client: Some(pki.client.clone()),
    };
    renewed.take_over(&redis.url(), &now).await;
    // Ready again only once a store call answers: over a connection with the new files.
    wait_ok(&format!("{server}/readyz"), Duration::from_secs(30)).await;
    let csv = recipients_csv(&renewed.dir, RECIPIENTS, 5);
    let (id, _) = create_started(&server, "tls renewed", &csv, &[], &env);
    let campaign = until_campaign(&server, &id, Duration::from_secs(60), |c| {
        c["status"] == "completed" && c["stats"]["sent"] == c["stats"]["accepted"]
    })
    .await;
    assert_eq!(campaign["stats"]["accepted"], RECIPIENTS, "{campaign}");
    let oracle = get_json(&format!("{sim_url}/_sim/stats")).await.unwrap();
    assert_eq!(oracle["accepted"], 2 * RECIPIENTS, "{oracle}");
    assert_eq!(
        oracle["duplicate_callbacks"],
        serde_json::json!([]),
        "{oracle}"
    );

    let status = serve.terminate().expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    sim.terminate();
}
