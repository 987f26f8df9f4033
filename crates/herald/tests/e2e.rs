//! The real binary end to end: `herald sim` and `herald serve` as child processes on free
//! ports, a campaign created and started through the CLI, its stats checked against the
//! simulator's oracle; `config check` on the shipped file; exit codes.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{
    BIN, PNID, Proc, SimRig, create_started, get_json, herald, reqwest_ok, root, sim_rig, spawn,
    start_sim, status_of, wait_ok,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_through_the_cli_matches_the_oracle() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-test-e2e-{:016x}", rand::random::<u64>());
    let SimRig {
        server,
        mut sim,
        sim_url,
        mut env,
    } = sim_rig("e2e");
    assert!(sim_url.starts_with("http://127.0.0.1:"), "{sim_url:?}");
    env.extend([
        ("REDIS_URL", redis.clone()),
        ("HERALD_STORE__KEY_PREFIX", prefix.clone()),
        ("HERALD_API_KEY", "e2e-key".into()),
    ]);
    let mut serve = Proc(
        Command::new(BIN)
            .arg("serve")
            .current_dir(root())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("herald serve"),
    );
    let started = Instant::now();
    while reqwest_ok(&format!("{server}/readyz")).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 400 recipients plus a duplicate and an invalid row.
    let dir = std::env::temp_dir().join(format!("herald-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("r.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "phone,first_name").unwrap();
    for i in 0..400u64 {
        writeln!(f, "+44 7912 3{:05},Name{i}", i).unwrap();
    }
    writeln!(f, "+4479123{:05},Again", 7).unwrap();
    writeln!(f, "not a number,Nobody").unwrap();
    drop(f);

    let (id, stdout) = create_started(&server, "e2e", &csv, &[], &env);
    assert!(
        stdout.contains("402 rows: 400 accepted, 1 duplicates, 1 invalid"),
        "{stdout}"
    );

    // Wait for completion and for the webhooks to land.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let out = herald(
            &["campaign", "status", &id, "--json", "--server", &server],
            &env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        if v["status"] == "completed" && v["stats"]["sent"] == v["stats"]["accepted"] {
            break v;
        }
        assert!(Instant::now() < deadline, "campaign did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let campaign = stats;
    let stats = campaign["stats"].clone();
    let oracle = get_json(&format!("{sim_url}/_sim/stats"))
        .await
        .expect("oracle");
    assert_eq!(stats["recipients"], 400);
    assert_eq!(stats["accepted"], oracle["accepted"], "{stats} vs {oracle}");
    assert_eq!(oracle["accepted"], 400, "{oracle}");
    assert_eq!(
        oracle["duplicate_callbacks"],
        serde_json::json!([]),
        "{oracle}"
    );
    assert_eq!(stats["skipped"]["duplicate"], 1, "{stats}");
    assert_eq!(stats["skipped"]["invalid"], 1, "{stats}");
    // The rate, in the store's time (how evenly requests arrive depends on the machine's
    // scheduling, and is the benchmark's to measure): 400 sends at 200 per second span at
    // least 398 intervals of 5 ms from start to end.
    let took_ms =
        campaign["finished_ms"].as_i64().unwrap() - campaign["started_ms"].as_i64().unwrap();
    assert!(
        took_ms >= 398 * 5,
        "400 sends in {took_ms} ms at 200 per second"
    );

    let out = herald(&["campaign", "failures", &id, "--server", &server], &env);
    let failures = String::from_utf8_lossy(&out.stdout);
    assert!(
        failures.starts_with("line,phone,reason,detail"),
        "{failures}"
    );
    assert!(
        failures.contains("duplicate") && failures.contains("not a number"),
        "{failures}"
    );

    // A file that cannot be read creates no campaign; one the server refuses whole leaves a
    // draft that says how to go on, and `campaign upload` fills it.
    let listed = |env: &[(&str, String)]| {
        let out = herald(&["campaign", "list", "--server", &server], env);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let before = listed(&env);
    let create = |name: &str, csv: &str, extra: &[&str]| {
        let mut args = vec![
            "campaign",
            "create",
            "--server",
            &server,
            "--name",
            name,
            "--message",
            "config/sample-message.json",
            "--csv",
            csv,
        ];
        args.extend_from_slice(extra);
        herald(&args, &env)
    };
    let created = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("the created campaign's id")
            .to_owned()
    };
    let out = create("second", "/nonexistent/r.csv", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opening /nonexistent/r.csv"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed(&env), before, "no campaign was created");
    let headless = dir.join("no-phone.csv");
    std::fs::write(&headless, "name,first_name\nAnn,Ann\n").unwrap();
    let out = create("second", headless.to_str().unwrap(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no phone column"), "{stderr}");
    let draft = created(&out);
    assert!(
        stderr.contains(&format!("herald campaign upload {draft} --csv FILE")),
        "{stderr}"
    );
    // Asked to start, a campaign that took nobody is left a draft, saying why.
    let nobody = dir.join("nobody.csv");
    std::fs::write(&nobody, "phone,first_name\nnot a number,Ann\n").unwrap();
    let out = create("empty", nobody.to_str().unwrap(), &["--start"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not started"), "{stderr}");
    let out = herald(
        &[
            "campaign",
            "status",
            &created(&out),
            "--json",
            "--server",
            &server,
        ],
        &env,
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "draft", "{v}");
    let out = herald(
        &[
            "campaign",
            "upload",
            &draft,
            "--csv",
            csv.to_str().unwrap(),
            "--server",
            &server,
        ],
        &env,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("402 rows: 400 accepted, 1 duplicates, 1 invalid"),
        "{stdout}"
    );

    // The suppression list through the CLI: import, export, remove.
    let list = dir.join("suppressions.csv");
    std::fs::write(
        &list,
        "number,reason
+447700900123,imported
nonsense,x
",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec![
            "suppressions",
            "--server",
            &server,
            "--phone-number-id",
            PNID,
        ];
        all.extend_from_slice(args);
        let out = herald(&all, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let imported: Value = serde_json::from_str(&run(&["import", list.to_str().unwrap()])).unwrap();
    assert_eq!(
        (imported["numbers"].as_u64(), imported["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{imported}"
    );
    assert!(run(&["export"]).contains("number,'+447700900123"));
    assert_eq!(run(&["remove", "+447700900123"]).trim(), "removed");
    assert!(!run(&["export"]).contains("+447700900123"));

    // Without the key: refused.
    let out = herald(
        &["campaign", "list", "--server", &server],
        &[("HERALD_API_KEY", String::new())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("API key"));

    // The ended campaign is deleted with everything of it; asking for it afterwards fails.
    let out = herald(&["campaign", "delete", &id, "--server", &server], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("campaign {id} deleted")
    );
    let out = herald(&["campaign", "status", &id, "--server", &server], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = serve.terminate().expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    sim.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    let store = herald_store_redis::RedisStore::connect(&herald_store_redis::RedisConfig::new(
        redis, prefix,
    ))
    .await
    .expect("redis");
    store.purge_namespace().await.expect("purge");
}

#[test]
fn config_check_on_the_shipped_file() {
    let out = herald(
        &["config", "check", "--config", "config/herald.toml"],
        &[
            ("WA_ACCESS_TOKEN", "EAAG-secret-token".into()),
            ("REDIS_URL", "redis://herald:hunter2@10.0.0.5:6379/0".into()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration ok"), "{stdout}");
    assert!(stdout.contains("mps = 80"), "{stdout}");
    assert!(!stdout.contains("EAAG-secret-token"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(
        stdout.contains("redis_url = \"redis://***@10.0.0.5:6379/0\""),
        "{stdout}"
    );
    assert!(stdout.contains("access_token = \"<redacted>\""), "{stdout}");
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let out = herald(&["config", "check"], &[("HERALD_SENDER__MPS", "0".into())]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sender.mps"));
    let out = herald(
        &["config", "check"],
        &[("HERALD_SENDER__SPEED", "1".into())],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_SENDER__SPEED"));
    let out = herald(&["campaign", "frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = herald(
        &["config", "check"],
        &[("HERALD_STORE__BACKEND", "sqlite".into())],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.backend"));
    // A Redis that cannot be reached: the error says where, never with the password.
    let out = herald(
        &["worker"],
        &[
            ("REDIS_URL", "redis://herald:hunter2@127.0.0.1:9/0".into()),
            ("HERALD_STORE__TIMEOUT_MS", "500".into()),
            ("HERALD_SERVER__LISTEN", "127.0.0.1:0".into()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("redis://***@127.0.0.1:9/0"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A worker cannot share a store that lives in another process's memory.
    let out = herald(
        &["worker"],
        &[
            ("HERALD_STORE__BACKEND", "memory".into()),
            ("HERALD_SERVER__LISTEN", "127.0.0.1:0".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only `herald serve`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn doctor_passes_and_fails_with_the_fix() {
    let (mut sim, url) = start_sim(&["--webhook-url", "http://127.0.0.1:9/webhook"]);
    let env = |token: &str| {
        vec![
            ("HERALD_WHATSAPP__API_BASE", url.clone()),
            ("HERALD_WHATSAPP__WABA_ID", "102290129340398".to_owned()),
            ("WA_ACCESS_TOKEN", token.to_owned()),
            ("WA_PHONE_NUMBER_ID", PNID.to_owned()),
            ("WA_APP_SECRET", "s".to_owned()),
            ("VERIFY_TOKEN", "v".to_owned()),
            ("REDIS_URL", String::new()),
            // A proxy for Meta's API (a closed port): the simulator on loopback is reached
            // directly all the same.
            ("HTTPS_PROXY", "http://127.0.0.1:9".to_owned()),
            ("HTTP_PROXY", "http://127.0.0.1:9".to_owned()),
            ("ALL_PROXY", "http://127.0.0.1:9".to_owned()),
        ]
    };
    let out = herald(&["doctor"], &env("sim-access-token"));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "pass token valid",
        "pass phone number registered",
        "pass quality rating",
        "pass webhook subscription",
        "pass templates approved",
        "pass app secret set",
        "pass messaging limit",
        "TIER_UNLIMITED (unlimited) for portfolio default; Herald enforces none",
    ] {
        assert!(report.contains(line), "{line:?} in\n{report}");
    }
    // No Redis configured: that check fails, so doctor as a whole does.
    assert!(report.contains("FAIL store"), "{report}");
    assert_eq!(out.status.code(), Some(1));

    let out = herald(&["doctor"], &env("expired-token"));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("FAIL token valid"), "{report}");
    assert!(report.contains("error 190"), "{report}");
    sim.terminate();
}

/// With no `REDIS_URL` and no `redis-server` to start, `herald demo` runs on the in-memory
/// store, says so, and still ends with its stats matching the simulator's oracle.
#[test]
fn the_demo_needs_no_redis() {
    let empty = std::env::temp_dir().join(format!("herald-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--quiet", "--mps", "1000"])
        .current_dir(root())
        .env_remove("REDIS_URL")
        .env("PATH", &empty)
        .env("RUST_LOG", "error")
        .output()
        .expect("run herald demo");
    let _ = std::fs::remove_dir_all(&empty);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the store in memory"), "{stdout}");
    assert!(
        stdout.contains("Herald's stats match the oracle"),
        "{stdout}"
    );
}

/// Whatever signal ends the demo (the terminal closing is SIGHUP, Ctrl-C is SIGINT, a
/// supervisor's stop SIGTERM), it says it was interrupted instead of claiming a mismatch,
/// exits with 128 + the signal's number, and its throwaway redis-server and temporary files
/// go with it.
#[test]
fn an_interrupted_demo_cleans_up_and_says_so() {
    use std::io::BufRead as _;
    for (name, number) in [("HUP", 1), ("INT", 2), ("TERM", 15)] {
        let mut child = Command::new(BIN)
            .args(["demo", "--quiet", "--mps", "80"])
            .current_dir(root())
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run herald demo");
        let pid = child.id();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        // The first line names the store; wait until the campaign is under way.
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("Redis at redis://127.0.0.1:").nth(1) {
                port = rest.split(' ').next().and_then(|p| p.parse::<u16>().ok());
            }
            let started = line.starts_with("campaign:");
            seen.push(line);
            if started {
                break;
            }
        }
        let port = port.unwrap_or_else(|| panic!("no throwaway Redis: {seen:#?}"));
        let signalled = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().unwrap();
        let text = seen.join("\n");
        assert_eq!(status.code(), Some(128 + number), "SIG{name}: {text}");
        assert!(text.contains("interrupted"), "SIG{name}: {text}");
        assert!(!text.contains("MISMATCH"), "SIG{name}: {text}");
        // The throwaway Redis is killed as the demo ends; the kernel closes its port as it
        // dies. Waits as long as that takes, not a fixed time.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "SIG{name}: redis-server on {port} still answers"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for dir in [
            format!("herald-demo-{pid}"),
            format!("herald-demo-files-{pid}"),
        ] {
            assert!(
                !std::env::temp_dir().join(&dir).exists(),
                "SIG{name}: {dir} left behind"
            );
        }
    }
}

/// Redis not up yet when Herald starts (a cluster's cold start, Redis rescheduled): `herald
/// serve` waits for it, alive (`/healthz` 200) and not ready (`/readyz` and the API 503 with
/// `Retry-After`), and serves once it answers, without a restart. A store that does not answer
/// within `store.start_wait_secs` makes it exit 1, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_store_that_starts_after_it() {
    let mut redis = herald_store_redis::testing::TestRedisServer::start();
    redis.kill();
    let SimRig {
        server,
        mut sim,
        mut env,
        ..
    } = sim_rig("v");
    env.push(("REDIS_URL", redis.url()));
    let mut serve = spawn(&["serve"], &env);
    wait_ok(&format!("{server}/healthz"), Duration::from_secs(60)).await;
    for path in ["/readyz", "/v1/campaigns", "/webhook"] {
        assert_eq!(
            status_of(&format!("{server}{path}")).await,
            Some((503, Some("5".to_owned()))),
            "{path}"
        );
    }
    redis.restart();
    wait_ok(&format!("{server}/readyz"), Duration::from_secs(60)).await;
    let campaigns = get_json(&format!("{server}/v1/campaigns")).await;
    assert!(campaigns.is_some_and(|c| c["campaigns"].is_array()));
    assert!(serve.terminate().is_some_and(|s| s.success()));

    redis.kill();
    env.push(("HERALD_STORE__START_WAIT_SECS", "1".into()));
    let out = herald(&["serve"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("store.start_wait_secs"), "{stderr}");
    sim.terminate();
}
