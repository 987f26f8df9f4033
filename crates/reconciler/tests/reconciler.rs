//! The receiver and the reconciler, fed the real fixture payloads, signed: on the memory
//! store with a paused clock, and against a real Redis where Redis itself is the point (a
//! Redis outage answered with 503).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use herald_cloudapi::Secret;
use herald_cloudapi::signature::sign;
use herald_core::{CampaignAction, CampaignStatus, JobId, PauseKind, PhoneE164, WaMessageId};
use herald_reconciler::{ConsumerConfig, ReceiverConfig, Reconciler, ReconcilerConfig, routes};
use herald_store::conformance::{PNID, campaign, claim_req, running};
use herald_store::{JobRef, JobState, MemoryStore, NewCampaign, Outcome, Settle, Store};
use herald_store_redis::testing::TestRedisServer;
use herald_store_redis::{RedisConfig, RedisStore};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "test-app-secret";
const VERIFY: &str = "test-verify-token";

async fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

fn app<S: Store>(store: Arc<S>) -> axum::Router {
    routes(
        store,
        ReceiverConfig {
            verify_token: Secret::new(VERIFY),
            app_secret: Secret::new(SECRET),
        },
    )
}

async fn post(app: &axum::Router, body: Vec<u8>, signature: Option<String>) -> StatusCode {
    let mut req = Request::post("/webhook").header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    app.clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
        .status()
}

async fn post_signed(app: &axum::Router, body: &[u8]) -> StatusCode {
    post(app, body.to_vec(), Some(sign(SECRET.as_bytes(), body))).await
}

/// Drains the stream through the reconciler (one consumer).
async fn reconcile<S: Store>(store: &Arc<S>) {
    reconcile_with(store, ReconcilerConfig::default()).await;
}

async fn reconcile_with<S: Store>(store: &Arc<S>, cfg: ReconcilerConfig) {
    let rec = Reconciler::new(store.clone(), cfg);
    loop {
        let batch = store
            .read_webhooks("test", 100, Duration::from_millis(10))
            .await
            .unwrap();
        if batch.is_empty() {
            return;
        }
        let bodies: Vec<&[u8]> = batch.iter().map(|e| e.body.as_slice()).collect();
        rec.apply(&bodies).await.unwrap();
        store
            .ack_webhooks(&batch.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
    }
}

fn fixture(path: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(path);
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn variant(path: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&fixture(path)[name]).unwrap()
}

fn whole(path: &str) -> Vec<u8> {
    serde_json::to_vec(&fixture(path)).unwrap()
}

// ---- The receiver ---------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_verification_handshake() {
    let store = store().await;
    let app = app(store.clone());
    let get = |q: &str| {
        let app = app.clone();
        let uri = format!("/webhook?{q}");
        async move {
            app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let ok = get(&format!(
        "hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
    ))
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(
        ok.into_body().collect().await.unwrap().to_bytes(),
        "1158201444",
        "the raw challenge, not JSON"
    );
    for bad in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_string(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY}&hub.challenge=1"),
        format!("hub.verify_token={VERIFY}&hub.challenge=1"),
        String::new(),
    ] {
        assert_eq!(get(&bad).await.status(), StatusCode::FORBIDDEN, "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_signature_fault_is_a_401_and_nothing_is_stored() {
    let store = store().await;
    let app = app(store.clone());
    let body = whole("meta-openapi/text_message.json");
    let good = sign(SECRET.as_bytes(), &body);
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("missing header", body.clone(), None),
        (
            "wrong prefix",
            body.clone(),
            Some(good.replace("sha256=", "sha1=")),
        ),
        (
            "odd-length digest",
            body.clone(),
            Some(good[..good.len() - 1].to_owned()),
        ),
        (
            "non-hex digest",
            body.clone(),
            Some(format!("{}z", &good[..good.len() - 1])),
        ),
        (
            "wrong secret",
            body.clone(),
            Some(sign(b"other-secret", &body)),
        ),
        (
            "body changed",
            [body.as_slice(), b" "].concat(),
            Some(good.clone()),
        ),
        ("empty body", Vec::new(), Some(sign(SECRET.as_bytes(), b""))),
    ];
    for (name, body, sig) in cases {
        assert_eq!(
            post(&app, body, sig).await,
            StatusCode::UNAUTHORIZED,
            "{name}"
        );
    }
    assert!(
        store
            .read_webhooks("test", 10, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty(),
        "no forged body reached the stream"
    );
    assert_eq!(post(&app, body.clone(), Some(good)).await, StatusCode::OK);
    let stored = store
        .read_webhooks("test", 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(stored[0].body, body, "stored byte for byte");
}

#[tokio::test(start_paused = true)]
async fn an_oversize_body_is_a_413() {
    let store = store().await;
    let app = app(store.clone());
    let big = vec![b' '; herald_reconciler::BODY_LIMIT + 1];
    let sig = sign(SECRET.as_bytes(), &big);
    assert_eq!(
        post(&app, big, Some(sig)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let fits = vec![b' '; herald_reconciler::BODY_LIMIT];
    assert_eq!(post_signed(&app, &fits).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_while_redis_is_down_then_recovery() {
    let mut server = TestRedisServer::start();
    let mut cfg = RedisConfig::new(server.url(), "herald");
    cfg.timeout = Duration::from_secs(1);
    // A fresh server on a busy machine may take longer than the short timeout to load the
    // scripts: the test is about the outage, so connecting waits as long as it takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let store = loop {
        match RedisStore::connect(&cfg).await {
            Ok(s) => break Arc::new(s),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let app = app(store.clone());
    let body = whole("meta-openapi/text_message.json");
    assert_eq!(post_signed(&app, &body).await, StatusCode::OK);
    server.kill();
    assert_eq!(
        post_signed(&app, &body).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "never 200 for an event not stored"
    );
    server.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = post_signed(&app, &body).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK, "recovers once Redis is back");
    let stored = store
        .read_webhooks("test", 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        2,
        "the delivery before the outage survived it (AOF), and the one after"
    );
}

/// A full Redis (maxmemory, noeviction) takes no delivery: 503, so Meta keeps it and retries,
/// and nothing half-stored; once memory is freed the retry is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_while_redis_is_full_then_the_retry_is_stored() {
    let server = TestRedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let store = Arc::new(
        RedisStore::connect(&RedisConfig::new(server.url(), "herald"))
            .await
            .unwrap(),
    );
    let app = app(store.clone());
    let body = whole("meta-openapi/text_message.json");
    server.set_maxmemory(1).await;
    assert_eq!(
        post_signed(&app, &body).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "never 200 for an event not stored"
    );
    server.set_maxmemory(0).await;
    assert_eq!(post_signed(&app, &body).await, StatusCode::OK);
    let stored = store
        .read_webhooks("test", 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the retry only");
}

// ---- The reconciler: every fixture, with its effect ---------------------------------------

/// A campaign whose first two jobs are accepted under the message ids the fixtures use, and
/// whose recipients include the fixtures' users.
struct World {
    store: Arc<MemoryStore>,
    app: axum::Router,
    campaign: herald_core::CampaignId,
    job_xyz: JobId,
    job_hbg: JobId,
}

const XYZ: &str = "wamid.xyzxyz";
const HBG: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=";

async fn world() -> World {
    let store = store().await;
    let id = campaign(&*store, "fixtures").await;
    let users = ["+972987654321", "+16505551234", "+447700000001"];
    let recipients: Vec<_> = users
        .iter()
        .map(|u| {
            herald_core::Recipient::new(u.parse().unwrap(), herald_core::Vars::from_values(["x"]))
        })
        .collect();
    store.enqueue_batch(&id, &recipients).await.unwrap();
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    let settle = |j: &herald_store::ClaimedJob, wamid: &str| Settle {
        job: j.into(),
        outcome: Outcome::Accepted {
            message_id: WaMessageId::new(wamid).unwrap(),
        },
    };
    store
        .settle(&[settle(&jobs[0], XYZ), settle(&jobs[1], HBG)])
        .await
        .unwrap();
    // The users' last campaign, as a send would have recorded it, for reply attribution.
    for (pnid, user) in [("1122334455667", users[0]), ("106540352242922", users[1])] {
        store
            .reserve_pairs(
                pnid,
                &[(user.parse().unwrap(), id.clone())],
                Duration::from_millis(1),
            )
            .await
            .unwrap();
    }
    World {
        app: app(store.clone()),
        job_xyz: jobs[0].id.clone(),
        job_hbg: jobs[1].id.clone(),
        campaign: id,
        store,
    }
}

async fn delivery_state(w: &World, job: &JobId) -> herald_core::DeliveryState {
    match w.store.job(job).await.unwrap().unwrap().state {
        JobState::Accepted { delivery, .. } => delivery,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn statuses_from_every_status_fixture() {
    let w = world().await;
    for v in [
        "sent",
        "delivered",
        "read",
        "played",
        "with_tracker",
        "group",
    ] {
        assert_eq!(
            post_signed(&w.app, &variant("pywa/message_status.json", v)).await,
            StatusCode::OK,
            "{v}"
        );
    }
    for f in [
        "meta-docs/status_delivered_pmp_bsuid_only.json",
        "meta-docs/status_delivered_pmp_bsuid_phone.json",
        "meta-docs/value_errors_130429.json",
    ] {
        assert_eq!(post_signed(&w.app, &whole(f)).await, StatusCode::OK, "{f}");
    }
    reconcile(&w.store).await;
    let s = w.store.stats(&w.campaign).await.unwrap();
    assert!(s.invariant_holds(), "{s:#?}");
    // wamid.xyzxyz: sent, delivered, read (and played) → read; "some data" is not Herald's
    // callback, so that status was matched by message id.
    assert_eq!(
        delivery_state(&w, &w.job_xyz).await.progress,
        herald_core::Progress::Read
    );
    // The business-scoped-id-only status (recipient_id "") still found its job.
    assert_eq!(
        delivery_state(&w, &w.job_hbg).await.progress,
        herald_core::Progress::Delivered
    );
    assert_eq!((s.sent, s.delivered, s.read), (2, 2, 1));
    // Pricing once per message: CBP "service" for one, PMP "marketing" for the other.
    assert_eq!(s.pricing.billable, 2);
    assert_eq!(s.pricing.categories.get("service"), Some(&1));
    assert_eq!(s.pricing.categories.get("marketing"), Some(&1));
    // The group status names a message Herald never sent: kept as a dead letter.
    let dead = w.store.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .any(|d| d.reason == "unknown_message" && d.payload.contains("<WHATSAPP_MESSAGE_ID>")),
        "{dead:?}"
    );
    // Replaying everything changes nothing.
    for v in ["sent", "delivered", "read", "played", "with_tracker"] {
        post_signed(&w.app, &variant("pywa/message_status.json", v)).await;
    }
    reconcile(&w.store).await;
    assert_eq!(w.store.stats(&w.campaign).await.unwrap(), s);
}

/// A deleted campaign's messages go on getting statuses (a read days later): they name a job
/// Herald no longer has, and are ignored, not kept as dead letters (which page someone). A
/// status that names no job of Herald's and is not found by its id still is kept.
#[tokio::test(start_paused = true)]
async fn statuses_of_a_deleted_campaign_are_ignored() {
    let store = store().await;
    let id = running(&*store, "gone", 1).await;
    let jobs = store.claim(&claim_req(1, 1)).await.unwrap();
    store.start(&[JobRef::from(&jobs[0])]).await.unwrap();
    store
        .settle(&[Settle {
            job: (&jobs[0]).into(),
            outcome: Outcome::Accepted {
                message_id: delivered_id(0),
            },
        }])
        .await
        .unwrap();
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        CampaignStatus::Completed
    );
    store.delete_campaign(&id).await.unwrap();
    store
        .append_webhook(&status_body(&jobs[0].id, delivered_id(0).as_str(), "read"))
        .await
        .unwrap();
    let mut foreign =
        serde_json::from_slice::<Value>(&status_body(&jobs[0].id, "wamid.notHeralds", "read"))
            .unwrap();
    foreign["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] =
        json!("another app's");
    store
        .append_webhook(&serde_json::to_vec(&foreign).unwrap())
        .await
        .unwrap();
    reconcile(&store).await;
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].reason == "unknown_message" && dead[0].payload.contains("wamid.notHeralds"),
        "{dead:?}"
    );
}

/// pywa's failed status carries 130472 (the user is in a Meta experiment): Meta declined to
/// deliver, which is counted as declined, not as a failure; a status failing with another
/// code is a failure with its code.
#[tokio::test(start_paused = true)]
async fn a_failed_status_carries_its_code() {
    let w = world().await;
    let body = variant("pywa/message_status.json", "failed");
    post_signed(&w.app, &body).await;
    reconcile(&w.store).await;
    let s = w.store.stats(&w.campaign).await.unwrap();
    assert_eq!(
        s.declined.get(herald_core::SkipReason::Experiment),
        1,
        "{s:#?}"
    );
    assert_eq!((s.failed, s.failed_before_accept), (0, 0));
    assert!(s.errors.is_empty(), "{s:#?}");
    assert!(delivery_state(&w, &w.job_xyz).await.failed);

    let w = world().await;
    let other = String::from_utf8(body).unwrap().replace("130472", "131026");
    post_signed(&w.app, other.as_bytes()).await;
    reconcile(&w.store).await;
    let s = w.store.stats(&w.campaign).await.unwrap();
    assert_eq!((s.failed, s.failed_before_accept), (1, 0));
    assert_eq!(s.errors.get("131026"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn inbound_messages_open_windows_count_replies_and_opt_out() {
    let w = world().await;
    let israel: PhoneE164 = "+972987654321".parse().unwrap();
    let us: PhoneE164 = "+16505551234".parse().unwrap();
    let all = fixture("pywa/message.json");
    for (name, body) in all.as_object().unwrap() {
        assert_eq!(
            post_signed(&w.app, &serde_json::to_vec(body).unwrap()).await,
            StatusCode::OK,
            "{name}"
        );
    }
    for f in std::fs::read_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/meta-openapi"),
    )
    .unwrap()
    {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            post_signed(&w.app, &std::fs::read(&p).unwrap()).await;
        }
    }
    for v in ["button", "quick_reply", "quick_reply_without_context"] {
        post_signed(&w.app, &variant("pywa/callback_button.json", v)).await;
    }
    for v in ["callback", "description"] {
        post_signed(&w.app, &variant("pywa/callback_selection.json", v)).await;
    }
    for v in ["phone_number_change", "identity_change"] {
        post_signed(&w.app, &variant("pywa/system.json", v)).await;
    }
    reconcile(&w.store).await;
    // The fixtures' messages were written in 2023-2025: they count as replies, but the 24 h
    // window runs from when the user wrote, so none of them opens one now.
    let s = w.store.stats(&w.campaign).await.unwrap();
    assert_eq!(
        s.replied, 2,
        "both users replied to the campaign that last messaged them, once each"
    );
    assert_eq!(
        w.store
            .windows_open("1122334455667", &[israel])
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(w.store.windows_open(PNID, &[us]).await.unwrap(), [false]);
    // The same message written now opens the window.
    let mut fresh = fixture("pywa/message.json")["text"].clone();
    fresh["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] =
        json!(herald_core::unix_ms() / 1000 - 60);
    post_signed(&w.app, &serde_json::to_vec(&fresh).unwrap()).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .windows_open("1122334455667", &[israel])
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        w.store
            .windows_open("1122334455667", &["+447700000001".parse().unwrap()])
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        w.store.stats(&w.campaign).await.unwrap().replied,
        2,
        "still once per recipient"
    );
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [false],
        "no opt-out keyword yet"
    );

    // An opt-out keyword, any case, whole message only.
    let stop = |text: &str| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "1122334455667"},
                "messages": [{"from": "972987654321", "id": "wamid.in1", "timestamp": "1700000000", "type": "text", "text": {"body": text}}]}}]}]}))
        .unwrap()
    };
    post_signed(&w.app, &stop("please stop sending")).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [false]
    );
    post_signed(&w.app, &stop("  Stop ")).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [true]
    );
    // An opt-in keyword takes the user off the list again.
    post_signed(&w.app, &stop("start please")).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [true],
        "whole message only"
    );
    post_signed(&w.app, &stop("Start")).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [false]
    );
}

/// A user who hides their number writes from a business-scoped id. A STOP before Herald knows
/// their number is kept (not dropped); the first status that shows which number the id
/// stands for (here a status with `recipient_id: ""`, matched to the job Herald sent)
/// suppresses that number. From then on, messages from the id alone count as that number's.
#[tokio::test(start_paused = true)]
async fn opt_outs_from_hidden_numbers_are_kept_until_the_number_is_known() {
    let w = world().await;
    let user = "user.9373795779eb6441c8adb2eaee5b848e7dd174ddd302d7db62142f4722d574b6";
    let number: PhoneE164 = "+16505551234".parse().unwrap();
    let from_user = |text: &str, at: i64| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": PNID},
                "contacts": [{"profile": {"name": "Pablo"}, "wa_id": "", "user_id": user}],
                "messages": [{"from": "", "from_user_id": user, "id": format!("wamid.in{at}"), "timestamp": at.to_string(),
                    "type": "text", "text": {"body": text}}]}}]}]}))
        .unwrap()
    };
    // The shape Meta describes for 2026: `from` omitted, the id in `from_user_id` (built
    // after the published field list; not a vendored capture).
    let data =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/inbound_text_bsuid_only.json");
    post_signed(&w.app, &std::fs::read(data).unwrap()).await;
    // A hostile id is ignored, not stored.
    let mut hostile: Value = serde_json::from_slice(&from_user("STOP", 1_700_000_001)).unwrap();
    hostile["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"] =
        json!("x".repeat(5000));
    post_signed(&w.app, &serde_json::to_vec(&hostile).unwrap()).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store.unlinked_opt_outs(PNID, 10).await.unwrap(),
        (1, vec![user.to_owned()]),
        "kept, not dropped"
    );
    assert_eq!(w.store.suppressed(PNID, &[number]).await.unwrap(), [false]);

    // Meta's status for the message Herald sent them, with the number hidden.
    post_signed(
        &w.app,
        &whole("meta-docs/status_delivered_pmp_bsuid_only.json"),
    )
    .await;
    reconcile(&w.store).await;
    assert_eq!(w.store.user_phone(PNID, user).await.unwrap(), Some(number));
    assert_eq!(
        w.store.suppressed(PNID, &[number]).await.unwrap(),
        [true],
        "the kept opt-out now suppresses the number"
    );
    assert_eq!(
        w.store.unlinked_opt_outs(PNID, 10).await.unwrap(),
        (0, vec![])
    );

    // A message from the id alone, written now, opens that number's window.
    assert_eq!(
        w.store.windows_open(PNID, &[number]).await.unwrap(),
        [false]
    );
    let now = herald_core::unix_ms() / 1000 - 60;
    post_signed(&w.app, &from_user("hello", now)).await;
    reconcile(&w.store).await;
    assert_eq!(w.store.windows_open(PNID, &[number]).await.unwrap(), [true]);
    // And an opt-in from the id alone takes the number off the list.
    post_signed(&w.app, &from_user("START", now + 1)).await;
    reconcile(&w.store).await;
    assert_eq!(w.store.suppressed(PNID, &[number]).await.unwrap(), [false]);
}

/// A user who opts back in gets the configured confirmation, once, as a free-form text in
/// the window their message opened; an opt-in written more than a day ago (a late
/// redelivery) opens no window and gets none.
#[tokio::test(start_paused = true)]
async fn an_opt_in_is_confirmed_inside_the_window_it_opened() {
    let w = world().await;
    let sent: Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Arc::default();
    let log = sent.clone();
    let cfg = ReconcilerConfig {
        opt_in_reply: Some(herald_reconciler::OptInReply {
            text: "You are subscribed again.".into(),
            send: Arc::new(move |pnid, to, text| {
                log.lock().unwrap().push((pnid, to.to_string(), text));
                Box::pin(async { Ok(()) })
            }),
        }),
        ..ReconcilerConfig::default()
    };
    let israel: PhoneE164 = "+972987654321".parse().unwrap();
    let message = |text: &str, at: i64| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "1122334455667"},
                "messages": [{"from": "972987654321", "id": format!("wamid.{text}{at}"), "timestamp": at.to_string(), "type": "text", "text": {"body": text}}]}}]}]}))
        .unwrap()
    };
    let now = herald_core::unix_ms() / 1000;
    for (text, at) in [("STOP", now - 3 * 86_400), ("START", now - 2 * 86_400)] {
        post_signed(&w.app, &message(text, at)).await;
    }
    reconcile_with(&w.store, cfg.clone()).await;
    assert_eq!(
        w.store
            .suppressed("1122334455667", &[israel])
            .await
            .unwrap(),
        [false],
        "opted back in"
    );
    assert!(sent.lock().unwrap().is_empty(), "no window, no reply");
    for (text, at) in [("STOP", now - 60), ("start", now - 30), ("START", now - 20)] {
        post_signed(&w.app, &message(text, at)).await;
    }
    reconcile_with(&w.store, cfg).await;
    assert_eq!(
        *sent.lock().unwrap(),
        [(
            "1122334455667".to_owned(),
            "+972987654321".to_owned(),
            "You are subscribed again.".to_owned()
        )],
        "once: the second START found nothing to undo"
    );
}

#[tokio::test(start_paused = true)]
async fn marketing_preferences_stop_marketing_only_on_stop() {
    let w = world().await;
    for v in ["resume", "signup"] {
        post_signed(&w.app, &variant("pywa/user_marketing_preferences.json", v)).await;
    }
    reconcile(&w.store).await;
    let user: PhoneE164 = "+16505551234".parse().unwrap();
    assert_eq!(
        w.store
            .suppressed("106540352242922", &[user])
            .await
            .unwrap(),
        [false]
    );
    let mut stop = fixture("pywa/user_marketing_preferences.json")["resume"].clone();
    stop["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = json!("stop");
    post_signed(&w.app, &serde_json::to_vec(&stop).unwrap()).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .suppressions("106540352242922", &[user])
            .await
            .unwrap(),
        [Some(herald_store::SuppressionScope::Marketing)],
        "no more marketing"
    );
    assert_eq!(
        w.store
            .suppressed("106540352242922", &[user])
            .await
            .unwrap(),
        [false],
        "utility and service messages still go"
    );
}

#[tokio::test(start_paused = true)]
async fn template_stops_pause_the_campaigns_that_send_them() {
    let w = world().await;
    let spec = herald_store::conformance::spec("abandoned");
    let paused_one = w
        .store
        .create_campaign(NewCampaign {
            spec,
            phone_number_id: PNID.into(),
            template: Some("abandoned_cart:en".into()),
        })
        .await
        .unwrap()
        .id;
    w.store
        .enqueue_batch(&paused_one, &herald_store::conformance::recipients(0..2))
        .await
        .unwrap();
    w.store
        .transition(&paused_one, CampaignAction::Start, None)
        .await
        .unwrap();
    post_signed(
        &w.app,
        &variant("pywa/template_status_update.json", "approved"),
    )
    .await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store.campaign(&paused_one).await.unwrap().status,
        CampaignStatus::Running
    );
    post_signed(
        &w.app,
        &variant("pywa/template_status_update.json", "rejected"),
    )
    .await;
    reconcile(&w.store).await;
    paused_alone(
        &w,
        &paused_one,
        PauseKind::TemplateStatus,
        &["abandoned_cart", "REJECTED"],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn account_updates_quality_and_unknown_content_never_stop_the_consumer() {
    let w = world().await;
    let accounts = fixture("pywa/account_update.json");
    for body in accounts.as_object().unwrap().values() {
        post_signed(&w.app, &serde_json::to_vec(body).unwrap()).await;
    }
    let quality = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "phone_number_quality_update",
        "value": {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_10K"}}]}]});
    post_signed(&w.app, &serde_json::to_vec(&quality).unwrap()).await;
    post_signed(&w.app, br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"x":1}}]}]}"#).await;
    post_signed(&w.app, br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[{"status":7}],"messages":[{"from":"16505551234","id":"wamid.n","type":"hologram"}]}}]}]}"#).await;
    post_signed(&w.app, b"this is not json").await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store.quality().await.unwrap()["15550783881"].event,
        "FLAGGED"
    );
    let reasons: Vec<String> = w
        .store
        .dead_letters(50)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    for r in [
        "malformed_json",
        "unknown_field",
        "malformed_element",
        "unknown_message_type",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} dead letter in {reasons:?}"
        );
    }
    // A user who writes with a new message type (no timestamp: now) still opened their window.
    assert_eq!(
        w.store
            .windows_open("", &["+16505551234".parse().unwrap()])
            .await
            .unwrap(),
        [true]
    );
    assert!(
        w.store
            .read_webhooks("test", 10, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty(),
        "everything was acknowledged"
    );
}

// ---- Order, duplicates, and a dead reconciler ---------------------------------------------

fn status_body(job: &JobId, wamid: &str, status: &str) -> Vec<u8> {
    let mut s = json!({"id": wamid, "status": status, "timestamp": "1700000000", "recipient_id": "447700000000",
        "biz_opaque_callback_data": job.to_callback_data(),
        "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}});
    if status == "failed" {
        s["errors"] = json!([{"code": 131047, "title": "Re-engagement message"}]);
    }
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": PNID}, "statuses": [s]}}]}]}))
    .unwrap()
}

mod permutations {
    use proptest::prelude::*;

    use super::*;

    fn event() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("sent"),
            Just("delivered"),
            Just("read"),
            Just("failed")
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Any permutation, with duplicates, of a message's statuses gives the same final state
        /// and counters as the statuses in their natural order, applied once.
        #[test]
        fn any_order_with_duplicates_gives_the_same_result(events in proptest::collection::vec(event(), 1..8), seed in any::<u64>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let store = store().await;
                let mut finals = Vec::new();
                let mut natural: Vec<&str> = events.clone();
                natural.sort_by_key(|e| ["sent", "delivered", "read", "failed"].iter().position(|x| x == e));
                natural.dedup();
                let mut shuffled = events.clone();
                let mut s = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                    shuffled.swap(i, (s % (i as u64 + 1)) as usize);
                }
                shuffled.extend(events.iter().take(2));
                for (n, order) in [natural, shuffled].iter().enumerate() {
                    let id = running(&*store, &format!("perm{n}"), 1).await;
                    let job = store.claim(&claim_req(1, 1)).await.unwrap().remove(0);
                    store.start(&[JobRef::from(&job)]).await.unwrap();
                    store.settle(&[Settle { job: (&job).into(), outcome: Outcome::Accepted { message_id: WaMessageId::new("wamid.p").unwrap() } }]).await.unwrap();
                    for e in order {
                        store.append_webhook(&status_body(&job.id, "wamid.p", e)).await.unwrap();
                    }
                    reconcile(&store).await;
                    let state = store.job(&job.id).await.unwrap().unwrap().state;
                    finals.push((store.stats(&id).await.unwrap(), state));
                }
                assert_eq!(finals[0], finals[1], "events {events:?}");
            });
        }
    }
}

/// The message id of the `i`th delivered status of [`in_doubt_then_delivered`].
fn delivered_id(i: usize) -> WaMessageId {
    WaMessageId::new(&format!("wamid.c{i}")).unwrap()
}

/// A running campaign of `n` whose sends all went in doubt, and a delivered status for each
/// in the stream (message ids by [`delivered_id`]): only the webhooks can settle them.
async fn in_doubt_then_delivered<S: Store>(
    store: &S,
    name: &str,
    n: u64,
) -> (herald_core::CampaignId, Vec<herald_store::ClaimedJob>) {
    let id = running(store, name, n).await;
    let jobs = store.claim(&claim_req(n as usize, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    let in_doubt: Vec<Settle> = jobs
        .iter()
        .map(|j| Settle {
            job: j.into(),
            outcome: Outcome::InDoubt,
        })
        .collect();
    store.settle(&in_doubt).await.unwrap();
    for (i, j) in jobs.iter().enumerate() {
        store
            .append_webhook(&status_body(&j.id, delivered_id(i).as_str(), "delivered"))
            .await
            .unwrap();
    }
    (id, jobs)
}

/// Reconciler "b", which takes over deliveries left unacknowledged for 50 ms; cancel the
/// token to stop it.
fn take_over<S: Store>(
    store: Arc<S>,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let b = Arc::new(Reconciler::new(store, ReconcilerConfig::default()));
    let cfg = ConsumerConfig {
        name: "b".into(),
        claim_idle: Duration::from_millis(50),
        block: Duration::from_millis(20),
        ..ConsumerConfig::default()
    };
    let task = tokio::spawn(herald_reconciler::run(b, cfg, shutdown.clone()));
    (shutdown, task)
}

#[tokio::test(start_paused = true)]
async fn a_reconciler_killed_mid_batch_loses_nothing() {
    let store = store().await;
    // All twenty sends were in doubt: only webhooks can settle them.
    let (id, _) = in_doubt_then_delivered(&*store, "crash", 20).await;
    // Reconciler "a" reads all twenty, applies the first half, and dies before acknowledging.
    let a = Reconciler::new(store.clone(), ReconcilerConfig::default());
    let read = store
        .read_webhooks("a", 100, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(read.len(), 20);
    let half: Vec<&[u8]> = read[..10].iter().map(|e| e.body.as_slice()).collect();
    a.apply(&half).await.unwrap();
    let mid = store.stats(&id).await.unwrap();
    assert_eq!((mid.in_doubt, mid.delivered), (10, 10));
    // Reconciler "b" takes over the idle entries and applies them all, the first half again.
    let (shutdown, task) = take_over(store.clone());
    let mut s = store.stats(&id).await.unwrap();
    for _ in 0..200 {
        s = store.stats(&id).await.unwrap();
        if s.in_doubt == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert!(s.invariant_holds(), "{s:#?}");
    assert_eq!(
        (s.in_doubt, s.accepted, s.sent, s.delivered),
        (0, 20, 20, 20),
        "each job counted once"
    );
    assert!(
        store.pending_webhooks("a", 100).await.unwrap().is_empty(),
        "a's entries were taken over and acknowledged"
    );
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        CampaignStatus::Completed
    );
}

/// On Redis, a status that teaches an in-doubt job its message id writes the id's lookup
/// after the status (another slot). A reconciler that dies in between leaves the status
/// applied and the lookup unwritten; the one that takes the delivery over writes it, though
/// applying the status again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_killed_before_a_lookup_loses_no_lookup() {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL (scripts/test.sh sets it)");
    let prefix = format!("herald-replay-{:016x}", rand::random::<u64>());
    let store = Arc::new(
        RedisStore::connect(&RedisConfig::new(url.clone(), prefix.clone()))
            .await
            .unwrap(),
    );
    let (id, jobs) = in_doubt_then_delivered(&*store, "replay", 4).await;
    let wamids: Vec<WaMessageId> = (0..jobs.len()).map(delivered_id).collect();
    // Reconciler "a" applies all four, then dies before acknowledging: after the statuses,
    // before their lookups (taken away here, as if never written).
    let a = Reconciler::new(store.clone(), ReconcilerConfig::default());
    let read = store
        .read_webhooks("a", 100, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(read.len(), 4);
    let bodies: Vec<&[u8]> = read.iter().map(|e| e.body.as_slice()).collect();
    a.apply(&bodies).await.unwrap();
    let lookups = herald_store_redis::testing::keys_matching(&url, &format!("{prefix}:mh:*")).await;
    assert!(!lookups.is_empty(), "a's statuses taught the ids");
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&lookups)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(store.job_for_message(&wamids[0]).await.unwrap(), None);
    let applied = store.stats(&id).await.unwrap();
    assert_eq!((applied.in_doubt, applied.delivered), (0, 4));
    // Reconciler "b" takes the deliveries over.
    let (shutdown, task) = take_over(store.clone());
    // Until b has taken the deliveries over (after claim_idle) and applied them: each id is
    // found again. (Asking for a's pending deliveries would read them, keeping them busy.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (j, m) in jobs.iter().zip(&wamids) {
        while store.job_for_message(m).await.unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "{m} not found again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.job_for_message(m).await.unwrap(), Some(j.id.clone()));
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        store.stats(&id).await.unwrap(),
        applied,
        "nothing counted twice"
    );
    store.purge_namespace().await.unwrap();
}

/// A delivery that cannot be applied (here, the store refuses its status for good) does not
/// hold up the stream: after `max_deliveries` tries it is kept as a dead letter with the error
/// and acknowledged, it is counted, and every other delivery is applied meanwhile.
#[tokio::test(start_paused = true)]
async fn a_delivery_that_keeps_failing_goes_to_the_dead_letters() {
    use herald_store::faulty::Faulty;
    let store = Arc::new(Faulty::new(Arc::new(MemoryStore::new())));
    let id = running(&*store, "poison", 3).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    store
        .settle(
            &jobs
                .iter()
                .enumerate()
                .map(|(i, j)| Settle {
                    job: j.into(),
                    outcome: Outcome::Accepted {
                        message_id: WaMessageId::new(&format!("wamid.q{i}")).unwrap(),
                    },
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    store.poison_message("wamid.q1");
    for (i, j) in jobs.iter().enumerate() {
        store
            .append_webhook(&status_body(&j.id, &format!("wamid.q{i}"), "delivered"))
            .await
            .unwrap();
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let rec = Arc::new(Reconciler::new(store.clone(), ReconcilerConfig::default()));
    let cfg = ConsumerConfig {
        name: "only".into(),
        max_deliveries: 3,
        ..ConsumerConfig::default()
    };
    let task = tokio::spawn(herald_reconciler::run(rec, cfg, shutdown.clone()));
    let mut dead = Vec::new();
    for _ in 0..600 {
        dead = store.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more round, so that the consumer is seen to go on afterwards.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "apply_failed");
    assert!(dead[0].detail.contains("poisoned"), "{:?}", dead[0]);
    assert!(dead[0].payload.contains("wamid.q1"));
    let s = store.stats(&id).await.unwrap();
    assert_eq!(s.delivered, 2, "the others applied: {s:#?}");
    assert!(
        store.pending_webhooks("only", 10).await.unwrap().is_empty(),
        "nothing left to re-read"
    );
    assert!(
        store
            .read_webhooks("x", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Without an app secret nothing can be verified: a STOP "signed" with the empty key is refused
/// (503, so Meta keeps it for later), nothing is stored, and nobody is suppressed.
#[tokio::test(start_paused = true)]
async fn no_app_secret_means_no_webhooks() {
    let store = store().await;
    let app = routes(
        store.clone(),
        ReceiverConfig {
            verify_token: Secret::new(VERIFY),
            app_secret: Secret::new(""),
        },
    );
    let stop = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": PNID},
            "contacts": [{"wa_id": "447700000001", "profile": {"name": "X"}}],
            "messages": [{"from": "447700000001", "id": "wamid.stop", "timestamp": "1700000000", "type": "text", "text": {"body": "STOP"}}]}}]}]});
    let body = serde_json::to_vec(&stop).unwrap();
    let forged = sign(b"", &body);
    assert_eq!(
        post(&app, body.clone(), Some(forged)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        post(&app, body, None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    reconcile(&store).await;
    assert!(
        store
            .read_webhooks("x", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let user: PhoneE164 = "+447700000001".parse().unwrap();
    assert_eq!(store.suppressed(PNID, &[user]).await.unwrap(), [false]);
}

/// Meta re-categorises a template (the completed-change form of `template_category_update`,
/// its language written `en-US`): the campaigns sending it pause with the reason; the notice
/// of an impending change, and a change to another template, pause nothing.
#[tokio::test(start_paused = true)]
async fn a_template_category_change_pauses_its_campaigns() {
    let w = world().await;
    let recat = w
        .store
        .create_campaign(NewCampaign {
            spec: herald_store::conformance::spec("recat"),
            phone_number_id: PNID.into(),
            template: Some("welcome_template:en_US".into()),
        })
        .await
        .unwrap()
        .id;
    w.store
        .enqueue_batch(&recat, &herald_store::conformance::recipients(0..2))
        .await
        .unwrap();
    w.store
        .transition(&recat, CampaignAction::Start, None)
        .await
        .unwrap();
    let impending = json!({"message_template_id": 278077987957091u64,
        "message_template_name": "welcome_template", "message_template_language": "en-US",
        "correct_category": "MARKETING", "new_category": "UTILITY",
        "category_update_timestamp": 1760711433});
    post_signed(&w.app, &change("template_category_update", impending)).await;
    let other = json!({"message_template_id": 1, "message_template_name": "another",
        "message_template_language": "en-US", "previous_category": "UTILITY",
        "new_category": "MARKETING"});
    post_signed(&w.app, &change("template_category_update", other)).await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store.campaign(&recat).await.unwrap().status,
        CampaignStatus::Running
    );
    let done = json!({"message_template_id": 278077987957091u64,
        "message_template_name": "welcome_template", "message_template_language": "en-US",
        "previous_category": "UTILITY", "new_category": "MARKETING"});
    post_signed(&w.app, &change("template_category_update", done)).await;
    reconcile(&w.store).await;
    paused_alone(
        &w,
        &recat,
        PauseKind::TemplateCategory,
        &["from UTILITY to MARKETING"],
    )
    .await;
}

/// `id` is paused as `kind`, with a reason that says each of `says`, and the world's own
/// campaign (another template) keeps running.
async fn paused_alone(w: &World, id: &herald_core::CampaignId, kind: PauseKind, says: &[&str]) {
    let c = w.store.campaign(id).await.unwrap();
    assert_eq!(c.status, CampaignStatus::Paused);
    let reason = c.pause_reason.unwrap();
    assert_eq!(reason.kind, kind);
    for s in says {
        assert!(reason.detail.contains(s), "{s:?} in {reason}");
    }
    assert_eq!(
        w.store.campaign(&w.campaign).await.unwrap().status,
        CampaignStatus::Running,
        "other templates keep going"
    );
}

/// `phone_number_quality_update` with `THROUGHPUT_UPGRADE` raises the number's level to
/// 1,000 messages/s (found by its display number), and one carrying the portfolio's count
/// records the messaging limit; `business_capability_update` does too.
#[tokio::test(start_paused = true)]
async fn throughput_upgrades_and_limit_changes_are_recorded() {
    let w = world().await;
    w.store
        .set_throughput(PNID, "+1 555-010-0001", 80)
        .await
        .unwrap();
    post_signed(
        &w.app,
        &change(
            "phone_number_quality_update",
            json!({"display_phone_number": "15550100001", "event": "THROUGHPUT_UPGRADE",
                "current_limit": "TIER_10K", "max_daily_conversations_per_business": 10000}),
        ),
    )
    .await;
    reconcile(&w.store).await;
    assert_eq!(w.store.throughput(PNID).await.unwrap(), Some(1000));
    assert_eq!(
        w.store
            .messaging_limit(herald_core::DEFAULT_PORTFOLIO)
            .await
            .unwrap(),
        Some(herald_core::MessagingLimit::Users(10_000))
    );
    post_signed(
        &w.app,
        &change(
            "business_capability_update",
            json!({"max_daily_conversations_per_business": -1, "max_phone_numbers_per_business": 20}),
        ),
    )
    .await;
    reconcile(&w.store).await;
    assert_eq!(
        w.store
            .messaging_limit(herald_core::DEFAULT_PORTFOLIO)
            .await
            .unwrap(),
        Some(herald_core::MessagingLimit::Unlimited)
    );
}

/// A webhook body with one change of `field` from the test account.
fn change(field: &str, value: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "time": 1739321024,
        "changes": [{"field": field, "value": value}]}]}))
    .unwrap()
}
