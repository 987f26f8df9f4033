//! The dashboard and the alert rules against a real Prometheus scraping a real deployment:
//! the simulator, an API process, a webhook process and two workers (separate processes on
//! Redis), a campaign with failures, retries, skips and replies; then every panel query and
//! template variable of `deploy/grafana/herald-dashboard.json` and every alert expression of
//! `deploy/alerts.yml` through Prometheus's HTTP API. A query error fails the test, and so
//! does a panel query that answers no series. The funnel Prometheus shows must equal the
//! API's stats.
//!
//! Needs Prometheus: `scripts/test.sh` installs Debian's package and sets PROMETHEUS_BIN.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{PNID, Proc, create_started, free_port, get_json, root, spawn, start_sim, wait_ok};

const KEY: &str = "prometheus-test-key";

fn prometheus_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROMETHEUS_BIN") {
        return p.into();
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs Prometheus: run scripts/test.sh (it installs Debian's prometheus \
             package), or set PROMETHEUS_BIN"
        )
    })
}

struct Prometheus {
    url: String,
    http: reqwest::Client,
    _proc: Proc,
}

impl Prometheus {
    fn start(dir: &std::path::Path, targets: &[String]) -> Self {
        let port = free_port();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [root().join("deploy/alerts.yml")],
            "scrape_configs": [{
                "job_name": "herald",
                "static_configs": [{"targets": targets}],
            }],
        });
        // JSON is YAML.
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config.to_string()).unwrap();
        let proc = Proc(
            Command::new(prometheus_bin())
                .arg(format!("--config.file={}", path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start prometheus"),
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            http: herald_cloudapi::http_builder().build().unwrap(),
            _proc: proc,
        }
    }

    /// An instant query; `Err` carries Prometheus's error.
    async fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", self.url)).unwrap();
        url.query_pairs_mut().append_pair("query", q);
        let r = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_slice(&r.bytes().await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The single value of a query answering one series.
    async fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q).await.ok()?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

/// Every query of the dashboard, with its panel's title: panel targets, then the template
/// variables' queries (`query_result(q)` evaluates `q`).
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/herald-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let q = q
                .strip_prefix("query_result(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or(q);
            out.push((
                format!("variable ${}", v["name"].as_str().unwrap()),
                q.to_owned(),
            ));
        }
    }
    out
}

fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/alerts.yml")).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push((
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_evaluates_on_a_real_prometheus() {
    let prometheus = prometheus_bin();
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-test-prom-{:016x}", rand::random::<u64>());
    let dir = std::env::temp_dir().join(format!("herald-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let ports: BTreeMap<&str, u16> = ["api", "webhook", "worker-1", "worker-2"]
        .into_iter()
        .map(|p| (p, free_port()))
        .collect();
    // Some numbers undeliverable (131026 at once), some 5xx answers (retried), statuses
    // with pricing, by webhook to the webhook process.
    let sim_config = dir.join("sim.toml");
    std::fs::write(
        &sim_config,
        "[undeliverable]\nfraction = 0.05\nmode = \"sync\"\n\n[faults]\nerror_5xx = 0.03\n",
    )
    .unwrap();
    let (_sim, sim_url) = start_sim(&[
        "--sim-config",
        sim_config.to_str().unwrap(),
        "--webhook-url",
        &format!("http://127.0.0.1:{}/webhook", ports["webhook"]),
    ]);

    let env = |port: u16| {
        vec![
            ("REDIS_URL", redis.clone()),
            ("HERALD_STORE__KEY_PREFIX", prefix.clone()),
            ("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("HERALD_WHATSAPP__API_BASE", sim_url.clone()),
            ("HERALD_METRICS__CAMPAIGN_REFRESH_MS", "500".into()),
            ("HERALD_SENDER__MPS", "80".into()),
            // A cap far above the campaign: the budget is kept (and shown), never spent.
            ("HERALD_MESSAGING_LIMIT__CAP_USERS", "100000".into()),
            ("HERALD_SENDER__BACKOFF_BASE_MS", "100".into()),
            ("WA_ACCESS_TOKEN", "sim-access-token".into()),
            ("WA_APP_SECRET", "sim-app-secret".into()),
            ("VERIFY_TOKEN", "prom".into()),
            ("WA_PHONE_NUMBER_ID", PNID.into()),
            ("HERALD_API_KEY", KEY.into()),
        ]
    };
    let mut procs = vec![
        spawn(&["serve", "--role", "api"], &env(ports["api"])),
        spawn(
            &["serve", "--role", "webhook", "--role", "reconciler"],
            &env(ports["webhook"]),
        ),
        spawn(&["worker"], &env(ports["worker-1"])),
        spawn(&["worker"], &env(ports["worker-2"])),
    ];
    for port in ports.values() {
        wait_ok(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(30),
        )
        .await;
    }
    let targets: Vec<String> = ports.values().map(|p| format!("127.0.0.1:{p}")).collect();
    let prom = Prometheus::start(&dir, &targets);
    println!("prometheus: {}", prometheus.display());

    // 300 recipients, a duplicate and an invalid row.
    let csv = dir.join("r.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "phone,first_name").unwrap();
    for i in 0..300u64 {
        writeln!(f, "+4479124{i:05},Name{i}").unwrap();
    }
    writeln!(f, "+4479124{:05},Again", 7).unwrap();
    writeln!(f, "12,Nobody").unwrap();
    drop(f);
    let server = format!("http://127.0.0.1:{}", ports["api"]);
    let cli_env = [("HERALD_API_KEY", KEY.to_owned())];
    // A cap far above what the campaign costs: its series are on the dashboard, and the
    // cap's check runs in every claim without pausing anything.
    let (id, _) = create_started(
        &server,
        "prometheus",
        &csv,
        &["--max-cost", "1000"],
        &cli_env,
    );

    // Two recipients write back, one of them to opt out.
    let http = herald_cloudapi::http_builder().build().unwrap();
    let campaign_url = format!("{server}/v1/campaigns/{id}");
    let get_campaign = || async {
        let r = http
            .get(&campaign_url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut replied = false;
    let campaign = loop {
        let c = get_campaign().await;
        let s = &c["stats"];
        if !replied && s["delivered"].as_u64().unwrap_or(0) > 20 {
            for (from, text) in [("447912400001", "thanks!"), ("447912400002", "STOP")] {
                let r = http
                    .post(format!("{sim_url}/_sim/inbound"))
                    .json(&json!({"from": from, "text": text}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
            replied = true;
        }
        if replied
            && c["status"] == "completed"
            && s["sent"] == s["accepted"]
            && s["replied"].as_u64() >= Some(1)
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign did not finish: {c}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let stats = &campaign["stats"];
    assert!(
        stats["failed"].as_u64() > Some(0),
        "the simulator failed none: {stats}"
    );

    // Wait until Prometheus has scraped every process several times, the leader's latest
    // numbers and the webhook process's opt-out.
    let accepted = stats["accepted"].as_f64().unwrap();
    let read_now = format!(r#"max(herald_campaign_messages{{campaign="{id}",state="accepted"}})"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom
            .query(r#"count_over_time(up{job="herald"}[1m]) >= 5"#)
            .await;
        let all_up = up.as_ref().is_ok_and(|r| r.len() == targets.len());
        let opted_out = prom.value("sum(herald_reconciler_opt_outs_total)").await;
        if all_up && prom.value(&read_now).await == Some(accepted) && opted_out == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has not scraped everything: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let up = prom.query(r#"up{job="herald"} == 1"#).await.unwrap();
    assert_eq!(up.len(), targets.len(), "every process is scraped: {up:?}");

    // Every panel query and variable: no error, and data.
    let mut report = Vec::new();
    for (title, expr) in dashboard_queries() {
        let q = expr.replace("$campaign", &id);
        let result = prom
            .query(&q)
            .await
            .unwrap_or_else(|e| panic!("panel {title:?}: {q}\n{e}"));
        assert!(!result.is_empty(), "panel {title:?} shows no data: {q}");
        let sample = result
            .iter()
            .take(3)
            .map(|r| format!("{}={}", r["metric"], r["value"][1]))
            .collect::<Vec<_>>()
            .join(" ");
        report.push(format!("{title} | {} series | {sample}", result.len()));
    }
    // Every alert expression: no error (most are rightly quiet now).
    for (alert, expr) in alert_rules() {
        let result = prom
            .query(&expr)
            .await
            .unwrap_or_else(|e| panic!("alert {alert}: {expr}\n{e}"));
        report.push(format!("alert {alert} | {} series", result.len()));
    }
    // And Prometheus's own rule evaluation found them healthy.
    let rules = get_json(&format!("{}/api/v1/rules", prom.url))
        .await
        .expect("rules");
    let mut evaluated = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, alert_rules().len());

    // The dashboard's funnel is the API's stats, once late statuses (read receipts) stop
    // arriving and the leader's refresh is scraped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = get_campaign().await["stats"].clone();
        let mut differ = Vec::new();
        for state in [
            "accepted",
            "sent",
            "delivered",
            "read",
            "failed",
            "replied",
            "pending",
        ] {
            let q = format!(r#"max(herald_campaign_messages{{campaign="{id}",state="{state}"}})"#);
            let shown = prom.value(&q).await;
            if shown != stats[state].as_f64() {
                differ.push(format!(
                    "{state}: {shown:?} shown, {} in the API",
                    stats[state]
                ));
            }
        }
        if differ.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard disagrees with the API: {differ:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let q = format!(r#"max(herald_campaign_recipients{{campaign="{id}"}})"#);
    assert_eq!(prom.value(&q).await, Some(300.0));
    let q = format!(
        r#"max(herald_campaign_skipped{{campaign="{id}",reason="duplicate",stage="upload"}})"#
    );
    assert_eq!(prom.value(&q).await, Some(1.0));
    // One process exports the campaign series.
    let q = format!(r#"count(herald_campaign_recipients{{campaign="{id}"}})"#);
    assert_eq!(prom.value(&q).await, Some(1.0));
    // The send path's histograms hold the campaign's sends and rounds (a panel of a
    // histogram nothing recorded still shows a series, of NaN).
    for q in [
        "sum(herald_sender_token_wait_seconds_count)",
        "sum(herald_sender_round_store_seconds_count)",
    ] {
        let n = prom.value(q).await.unwrap_or(0.0);
        assert!(n > 0.0, "{q}: {n}");
    }

    println!("{}", report.join("\n"));
    for p in &mut procs {
        let status = p.terminate().expect("stops on SIGTERM");
        assert!(status.success(), "{status:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = herald_store_redis::RedisStore::connect(&herald_store_redis::RedisConfig::new(
        redis, prefix,
    ))
    .await
    .expect("redis");
    store.purge_namespace().await.expect("purge");
}
