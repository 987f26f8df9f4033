//! The operator console.
//!
//! In-process (memory store): sign-in exchanges the key for a signed cookie with the right
//! flags, the cookie opens pages and reads, changes need the page's CSRF token, pages are
//! locked down (CSP, no framing), and keyless mode serves local programs only.
//!
//! In a real browser: `tests/console/flow.py` drives headless Chromium (Selenium) through a
//! whole campaign against `herald serve` on Redis and the simulator: sign in, create,
//! preview and upload a CSV, start, watch it complete, download the failures, the back
//! button, a narrow screen, sign out. Screenshots of each page are kept in
//! `target/console-screenshots/`. Needs Chromium, its driver and Selenium:
//! `scripts/test.sh` installs them (HERALD_TEST_PYTHON names the Python that has Selenium).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald::server::api::{ApiState, Routes, router};
use herald_store::MemoryStore;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::{PNID, free_port, herald, root, spawn, start_sim, wait_ok};

const KEY: &str = "console-test-key";

fn console_app(key: &str) -> Router {
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = PNID.into();
    cfg.server.api_key = key.into();
    let state = ApiState::new(Arc::new(MemoryStore::new()), &cfg);
    router(
        state,
        Routes {
            v1: true,
            webhook: None,
        },
    )
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let r = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, "herald.example");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

async fn sign_in(app: &Router, key: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::post("/sign-in")
        .header(header::HOST, "herald.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(Body::from(format!("key={key}")))
        .unwrap();
    call(app, req).await
}

/// The page's CSRF token, from its `<meta name="csrf">`.
fn csrf_of(html: &str) -> String {
    let tag = r#"name="csrf" content=""#;
    let at = html.find(tag).expect("a csrf meta tag") + tag.len();
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn signing_in_exchanges_the_key_for_a_locked_down_session() {
    let app = console_app(KEY);
    // Signed out: pages lead to sign-in, the API says 401.
    let (status, headers, _) = call(&app, get("/", None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/sign-in");
    let (status, headers, page) = call(&app, get("/sign-in", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("API key"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    let (status, headers, page) = sign_in(&app, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    assert!(page.contains("not the API key"));

    let (status, headers, _) = sign_in(&app, KEY).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains(KEY), "the cookie never carries the key");
    let cookie = set.split(';').next().unwrap().to_owned();

    // The cookie opens the pages and the API's reads.
    let (status, _, page) = call(&app, get("/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("No campaigns"));
    let csrf = csrf_of(&page);
    let (status, _, body) = call(&app, get("/v1/campaigns", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A change needs the page's token; a forged or missing one is refused.
    let spec =
        json!({"name": "c", "message": {"type": "text", "text": {"body": "hi"}}}).to_string();
    let create = |token: Option<&str>| {
        let mut b = Request::post("/v1/campaigns")
            .header(header::HOST, "herald.example")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            b = b.header("x-herald-csrf", t);
        }
        b.body(Body::from(spec.clone())).unwrap()
    };
    for token in [None, Some("0".repeat(64).as_str())] {
        let (status, _, body) = call(&app, create(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}: {body}");
    }
    let (status, _, body) = call(&app, create(Some(&csrf))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The campaign page shows it; an unknown one is a 404 page, not an error body.
    let (status, _, page) = call(&app, get(&format!("/campaigns/{id}"), Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    // With no recipient yet it cannot start (the API would refuse): no Start, and a line
    // saying what to do.
    assert!(
        !page.contains(r#"data-action="start""#)
            && page.contains(r#"data-action="cancel""#)
            && page.contains("draft")
            && page.contains("no recipients yet: upload a CSV"),
        "{page}"
    );
    let (status, _, page) = call(&app, get("/campaigns/nosuchcampaign", Some(&cookie))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("Campaign not found"));

    // A session signed under another key (the key was changed) opens nothing.
    let (status, _, _) = call(&console_app("another-key"), get("/", Some(&cookie))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// The campaign list is a page of the newest, with a link to the older ones that keeps the
/// filter and the page size.
#[tokio::test]
async fn the_campaign_list_pages_on_to_older_campaigns() {
    let app = console_app("");
    let local = |path: &str| {
        Request::get(path)
            .header(header::HOST, "127.0.0.1:8080")
            .body(Body::empty())
            .unwrap()
    };
    let spec = serde_json::json!({"name": "", "message": {"type": "text", "text": {"body": "hi"}}});
    let mut made = Vec::new();
    for i in 0..3 {
        let mut spec = spec.clone();
        spec["name"] = format!("listed-{i}").into();
        let req = Request::post("/v1/campaigns")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(spec.to_string()))
            .unwrap();
        let (status, _, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        made.push(id);
    }
    let (status, _, page) = call(&app, local("/?status=draft&limit=2")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("listed-2") && page.contains("listed-1") && !page.contains("listed-0"));
    let older = format!("/?before={}&amp;status=draft&amp;limit=2", made[1]);
    assert!(page.contains(&older), "{page}");
    let (status, _, page) = call(&app, local(&older.replace("&amp;", "&"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("listed-0") && !page.contains("listed-1"),
        "{page}"
    );
    assert!(!page.contains("Older campaigns"), "{page}");
    // A link that cannot be used as it is still shows a list: an unknown status or size is
    // left out, and a page after a deleted campaign goes back to the newest.
    let (status, _, page) = call(&app, local("/?status=sent&limit=lots&utm=x")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("listed-0") && page.contains("listed-2"),
        "{page}"
    );
    let (status, headers, _) = call(&app, local("/?status=draft&before=01m9zzzzzzzzzzzz")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?status=draft");
}

#[tokio::test]
async fn keyless_mode_serves_the_console_to_local_programs_only() {
    let app = console_app("");
    let local = Request::get("/")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    let (status, _, page) = call(&app, local).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains("Sign out"), "nothing to sign out of");
    let (status, _, _) = call(&app, get("/", None)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a non-loopback Host (DNS rebinding)"
    );
    let cross = Request::get("/")
        .header(header::HOST, "localhost:8080")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(&app, cross).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The Python that has Selenium: what `scripts/test.sh` installed, or `python3`.
fn python() -> String {
    std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_campaign_runs_from_the_browser() {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(bin).exists(),
            "this test needs {bin}: run scripts/test.sh (it installs Debian's chromium and \
             chromium-driver)"
        );
    }
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-test-console-{:016x}", rand::random::<u64>());
    let dir = std::env::temp_dir().join(format!("herald-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shots = root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Some numbers Meta cannot deliver to, so the failures report has rows.
    let port = free_port();
    let sim_config = dir.join("sim.toml");
    std::fs::write(
        &sim_config,
        "[undeliverable]\nfraction = 0.05\nmode = \"sync\"\n",
    )
    .unwrap();
    let (_sim, sim_url) = start_sim(&[
        "--sim-config",
        sim_config.to_str().unwrap(),
        "--webhook-url",
        &format!("http://127.0.0.1:{port}/webhook"),
    ]);
    let env = vec![
        ("REDIS_URL", redis.clone()),
        ("HERALD_STORE__KEY_PREFIX", prefix.clone()),
        ("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("HERALD_WHATSAPP__API_BASE", sim_url),
        ("WA_ACCESS_TOKEN", "sim-access-token".into()),
        ("WA_APP_SECRET", "sim-app-secret".into()),
        ("VERIFY_TOKEN", "console".into()),
        ("WA_PHONE_NUMBER_ID", PNID.into()),
        ("HERALD_API_KEY", KEY.into()),
        // The simulator's account: the console offers its approved templates.
        (
            "HERALD_WHATSAPP__WABA_ID",
            herald_sim::SimConfig::default().waba_id,
        ),
    ];
    let mut serve = spawn(&["serve"], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{url}/readyz"), std::time::Duration::from_secs(30)).await;

    // 120 good rows, a duplicate, a bad number and a row missing its placeholder's value, in
    // Windows-1252 (the browser names the character set).
    let mut csv = String::from("phone,first_name\n+14155550000,Zoë\n");
    for i in 1..120 {
        csv.push_str(&format!("+1415555{i:04},Name{i}\n"));
    }
    csv.push_str("+14155550000,Again\nnot-a-number,Bad\n+14155559999,\n");
    let csv_path = dir.join("recipients.csv");
    std::fs::write(&csv_path, encoding_rs::WINDOWS_1252.encode(&csv).0).unwrap();

    let out = tokio::task::spawn_blocking({
        let (url, shots, csv_path) = (url.clone(), shots.clone(), csv_path.clone());
        move || {
            std::process::Command::new(python())
                .arg(root().join("crates/herald/tests/console/flow.py"))
                .args(["--url", &url, "--key", KEY, "--csv"])
                .arg(&csv_path)
                .arg("--shots")
                .arg(&shots)
                .output()
                .expect("run the browser flow (python with selenium)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    serve.terminate();
    assert!(
        out.status.success(),
        "the browser flow failed:\n{stderr}\n{stdout}"
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap();

    // What the browser showed is what the campaign did.
    assert!(
        seen["upload"]
            .as_str()
            .unwrap()
            .starts_with("120 recipients added"),
        "{seen}"
    );
    assert!(
        seen["upload"]
            .as_str()
            .unwrap()
            .contains("1 duplicates · 2 invalid"),
        "{seen}"
    );
    assert_eq!(seen["preview_rejects"], true);
    // The send window: a zone Herald does not know is named by the live check; the campaign
    // page shows the window and how many wait for it (none: it was open throughout).
    let window_error = seen["window_check_error"].as_str().unwrap();
    assert!(
        window_error.contains("send_window.time_zone") && window_error.contains("Mars/Olympus"),
        "{window_error}"
    );
    let window = seen["window"].as_str().unwrap();
    assert!(
        window.contains("sends ") && window.contains("UTC time"),
        "{window}"
    );
    assert_eq!(seen["waiting_for_window"], 0);
    // The simulator's approved templates, as its catalogue has them.
    let templates: Vec<&str> = seen["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        templates,
        [
            "hello_world (en_US, utility)",
            "order_update (en_US, utility)"
        ],
        "{seen}"
    );
    let (accepted, failed) = (
        seen["accepted"].as_u64().unwrap(),
        seen["failed"].as_u64().unwrap(),
    );
    assert_eq!(accepted + failed, 120, "{seen}");
    // Every failure and every upload reject is in the report.
    assert_eq!(
        seen["failures_rows"].as_u64().unwrap(),
        failed + 3,
        "{seen}"
    );
    assert!(seen["chart_points"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(seen["errors_table"], failed > 0);
    // The follow-up made from the page holds at most those who got the message.
    assert_ne!(seen["follow_up"], seen["campaign"]);
    assert_eq!(seen["follow_up_deleted"], true, "{seen}");
    assert_eq!(seen["follow_up_status_after_delete"], 404, "{seen}");
    assert!(
        seen["follow_up_pending"].as_u64().unwrap() <= accepted,
        "{seen}"
    );
    for page in [
        "sign-in",
        "new-campaign",
        "preview",
        "campaign",
        "campaign-narrow",
        "campaigns",
    ] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{page}.png is a PNG");
    }

    // A follow-up to those who got it and did not read it, from the CLI, on the same
    // server: it picks exactly `delivered - read` (asked again should a status arrive
    // meanwhile).
    let mut serve = spawn(&["serve"], &env);
    wait_ok(&format!("{url}/readyz"), std::time::Duration::from_secs(30)).await;
    let first = seen["campaign"].as_str().unwrap().to_owned();
    let cli_env = [("HERALD_API_KEY", KEY.to_owned())];
    let stats = || {
        let out = herald(
            &["campaign", "status", &first, "--json", "--server", &url],
            &cli_env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["stats"]["delivered"].as_u64().unwrap(),
            v["stats"]["read"].as_u64().unwrap(),
        )
    };
    let mut checked = false;
    for _ in 0..10 {
        let before = stats();
        let out = herald(
            &[
                "campaign",
                "follow-up",
                &first,
                "--server",
                &url,
                "--audience",
                "not_read",
                "--name",
                "did not read",
                "--message",
                "config/sample-message.json",
            ],
            &cli_env,
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stats() != before {
            continue;
        }
        let (delivered, read) = before;
        assert!(
            said.contains(&format!(
                ": {} of 120 recipients of {first} added",
                delivered - read
            )),
            "{said} (delivered {delivered}, read {read})"
        );
        checked = true;
        break;
    }
    assert!(checked, "the first campaign's statuses never settled");

    // A send window from the CLI, its US recipients' zone given as Los Angeles: the two
    // hours around New York's time of day are three hours ahead of Los Angeles, so every
    // recipient (San Francisco numbers; those the first campaign found undeliverable are
    // suppressed now) waits for the window, counted, and none is sent.
    let new_york = jiff::Timestamp::now()
        .in_tz("America/New_York")
        .unwrap()
        .time();
    let hhmm = |t: jiff::civil::Time| format!("{:02}:{:02}", t.hour(), t.minute());
    let hour = jiff::SignedDuration::from_hours(1);
    let window = format!(
        "{}-{}",
        hhmm(new_york.wrapping_sub(hour)),
        hhmm(new_york.wrapping_add(hour))
    );
    let (windowed, _) = common::create_started(
        &url,
        "west coast",
        &csv_path,
        &["--send-window", &window, "--zone", "US=America/Los_Angeles"],
        &cli_env,
    );
    let status = |json: bool| {
        let mut args = vec!["campaign", "status", &windowed, "--server", &url];
        if json {
            args.push("--json");
        }
        String::from_utf8_lossy(&herald(&args, &cli_env).stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let v = loop {
        let v: Value = serde_json::from_str(&status(true)).unwrap();
        let s = &v["stats"];
        if s["recipients"].as_u64() >= Some(100) && s["waiting_for_send_window"] == s["recipients"]
        {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(v["stats"]["accepted"], 0, "{v}");
    assert_eq!(v["status"], "running", "{v}");
    let text = status(false);
    assert!(
        text.contains("each recipient's time zone (US: America/Los_Angeles)")
            && text.contains(&format!(
                "of which {} wait for their send window",
                v["stats"]["recipients"]
            )),
        "{text}"
    );
    serve.terminate();

    std::fs::remove_dir_all(&dir).ok();
    let store = herald_store_redis::RedisStore::connect(&herald_store_redis::RedisConfig::new(
        redis, prefix,
    ))
    .await
    .expect("redis");
    store.purge_namespace().await.expect("purge");
}
