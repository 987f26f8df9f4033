//! Every behaviour of the simulator, driven over real HTTP: a Cloud API client against the
//! running simulator, and a webhook receiver that checks every signature with the
//! `herald-cloudapi` verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_cloudapi::message::{Message, SendMessage, Text};
use herald_cloudapi::webhook::{Notification, Status};
use herald_cloudapi::{
    Client, ClientConfig, Error, ErrorClass, Secret, SendRequest, TransportFailure,
};
use herald_sim::{Delivery, Sim, SimConfig, SimStats};
use serde_json::{Value, json};

const PNID: &str = "106540352242922";

/// Collects signed webhooks; answers 500 to the first `fail_first` POSTs.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<Notification>>,
    bad_signatures: Mutex<u32>,
    fail_first: Mutex<u32>,
    posts: Mutex<u32>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> StatusCode {
    *r.posts.lock().unwrap() += 1;
    let sig = headers
        .get(herald_cloudapi::signature::HEADER)
        .map(|v| v.as_bytes());
    if herald_cloudapi::signature::verify(b"sim-app-secret", sig, &body).is_err() {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    r.bodies
        .lock()
        .unwrap()
        .push(Notification::parse(&body).unwrap());
    StatusCode::OK
}

async fn receiver(fail_first: u32) -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver {
        fail_first: Mutex::new(fail_first),
        ..Receiver::default()
    });
    let app = axum::Router::new()
        .route("/webhook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, addr)
}

impl Receiver {
    fn statuses(&self) -> Vec<Status> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|n| {
                n.messages_values()
                    .flat_map(|(_, v)| v.statuses.iter().filter_map(|s| s.parsed().cloned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    }
}

fn fast_webhooks(cfg: &mut SimConfig, addr: SocketAddr) {
    cfg.webhooks.url = format!("http://{addr}/webhook");
    cfg.webhooks.sent_delay_ms = 5;
    cfg.webhooks.delivered_delay_ms = 5;
    cfg.webhooks.read_delay_ms = 5;
    cfg.webhooks.batch_wait_ms = 5;
    cfg.webhooks.jitter_ms = 2;
    cfg.webhooks.retry_base_ms = 20;
}

fn client(sim: &Sim, token: &str, timeout_ms: u64) -> Client {
    Client::new(&ClientConfig {
        api_base: sim.url(),
        access_token: Secret::new(token),
        request_timeout: Duration::from_millis(timeout_ms),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn template(to: &str, name: &str, lang: &str, params: usize, cb: &str) -> SendRequest {
    let parameters: Vec<Value> = (0..params)
        .map(|i| json!({"type": "text", "text": format!("p{i}")}))
        .collect();
    let body = json!({
        "messaging_product": "whatsapp", "to": to, "type": "template", "biz_opaque_callback_data": cb,
        "template": {"name": name, "language": {"code": lang}, "components": [{"type": "body", "parameters": parameters}]}
    });
    serde_json::from_value(body).unwrap()
}

fn text(to: &str, body: &str) -> SendRequest {
    SendRequest::Message(Box::new(SendMessage::new(
        to,
        Message::Text(Text {
            body: body.into(),
            preview_url: None,
        }),
    )))
}

async fn code_of(c: &Client, req: &SendRequest) -> i64 {
    c.send(PNID, req).await.unwrap_err().code().unwrap()
}

fn http() -> reqwest::Client {
    herald_cloudapi::http_builder().build().unwrap()
}

async fn oracle(sim: &Sim) -> SimStats {
    http()
        .get(format!("{}/_sim/stats", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn auth_and_unknown_numbers() {
    let sim = Sim::start(config()).await.unwrap();
    let good = client(&sim, "sim-access-token", 2000);
    let bad = client(&sim, "wrong", 2000);
    let err = bad
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 401, .. }), "{err:?}");
    assert_eq!(
        (err.code(), err.class()),
        (Some(190), ErrorClass::SenderFatal)
    );
    let err = good
        .send(
            "999",
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(100));
    assert_eq!(err.graph_error().unwrap().error_subcode, Some(33));
    assert!(
        err.graph_error()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .starts_with("Unsupported post request")
    );
    let ok = good
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap();
    assert!(ok.message_id().unwrap().starts_with("wamid."));
    assert_eq!(ok.contacts[0].wa_id, "447700900001");
    let info = good.phone_number_info(PNID).await.unwrap();
    assert_eq!(info.quality_rating.as_deref(), Some("GREEN"));
    assert_eq!(info.throughput.unwrap().level.as_deref(), Some("STANDARD"));
    assert!(good.debug_token().await.unwrap().is_valid);
    assert!(!bad.debug_token().await.unwrap().is_valid);
    sim.shutdown().await;
}

#[tokio::test]
async fn payload_validation_names_the_field() {
    let sim = Sim::start(config()).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let long = text("447700900001", &"x".repeat(4097));
    let err = c.send(PNID, &long).await.unwrap_err();
    assert_eq!(err.code(), Some(100));
    assert!(
        err.graph_error()
            .unwrap()
            .details()
            .unwrap()
            .contains("text.body")
    );
    let http_link: SendRequest = serde_json::from_value(
        json!({"messaging_product": "whatsapp", "to": "447700900001",
        "type": "image", "image": {"link": "http://example.com/a.jpg"}}),
    )
    .unwrap();
    let err = c.send(PNID, &http_link).await.unwrap_err();
    assert!(
        err.graph_error()
            .unwrap()
            .details()
            .unwrap()
            .contains("image.link")
    );
    // A `to` written with the 00 prefix is refused as Meta does.
    assert_eq!(
        code_of(
            &c,
            &template("00447700900001", "order_update", "en_US", 1, "a")
        )
        .await,
        100
    );
    // Malformed JSON is a 100 too.
    let raw = c.send_raw(PNID, b"{not json".to_vec()).await.unwrap_err();
    assert_eq!(raw.code(), Some(100));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_template_catalogue() {
    let mut cfg = config();
    cfg.templates.push(herald_sim::config::Template {
        name: "paused_one".into(),
        status: "PAUSED".into(),
        ..Default::default()
    });
    cfg.templates.push(herald_sim::config::Template {
        name: "pending_one".into(),
        status: "PENDING".into(),
        ..Default::default()
    });
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    assert_eq!(
        code_of(&c, &template("447700900001", "no_such", "en_US", 1, "a")).await,
        132_001
    );
    assert_eq!(
        code_of(
            &c,
            &template("447700900002", "order_update", "pt_BR", 1, "a")
        )
        .await,
        132_001,
        "not in that language"
    );
    assert_eq!(
        code_of(
            &c,
            &template("447700900003", "pending_one", "en_US", 1, "a")
        )
        .await,
        132_001,
        "not approved"
    );
    assert_eq!(
        code_of(&c, &template("447700900004", "paused_one", "en_US", 1, "a")).await,
        132_015
    );
    assert_eq!(
        code_of(
            &c,
            &template("447700900005", "order_update", "en_US", 2, "a")
        )
        .await,
        132_000
    );
    c.send(
        PNID,
        &template("447700900006", "order_update", "en_US", 1, "a"),
    )
    .await
    .unwrap();
    let o = oracle(&sim).await;
    assert_eq!(o.rejected["132001"], 3);
    assert_eq!(
        (o.rejected["132015"], o.rejected["132000"], o.accepted),
        (1, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_window_trap_accepts_then_fails_by_webhook() {
    let (rx, addr) = receiver(0).await;
    let mut cfg = config();
    fast_webhooks(&mut cfg, addr);
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let mut first_contact = text("447700900001", "Hello!");
    if let SendRequest::Message(m) = &mut first_contact {
        m.biz_opaque_callback_data = Some("hrld:trap:1".into());
    }
    let r = c
        .send(PNID, &first_contact)
        .await
        .expect("accepted, looking sent");
    let id = r.message_id().unwrap().to_owned();
    until("the failed status", || {
        rx.statuses().iter().any(|s| s.id == id)
    })
    .await;
    let s = rx.statuses().into_iter().find(|s| s.id == id).unwrap();
    assert_eq!((s.status.as_str(), s.errors[0].code), ("failed", 131_047));
    assert_eq!(s.biz_opaque_callback_data.as_deref(), Some("hrld:trap:1"));
    // After the user writes, free-form messages are delivered, and the inbound message
    // arrives as a webhook.
    http()
        .post(format!("{}/_sim/inbound", sim.url()))
        .json(&json!({"from": "447700900002", "text": "hi"}))
        .send()
        .await
        .unwrap();
    until("the inbound message", || {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.messages_values().any(|(_, v)| !v.messages.is_empty()))
    })
    .await;
    let r = c
        .send(PNID, &text("447700900002", "Thanks for writing"))
        .await
        .unwrap();
    let id = r.message_id().unwrap().to_owned();
    until("sent", || {
        rx.statuses()
            .iter()
            .any(|s| s.id == id && s.status == "sent")
    })
    .await;
    assert!(
        !rx.statuses()
            .iter()
            .any(|s| s.id == id && s.status == "failed")
    );
    assert_eq!(
        *rx.bad_signatures.lock().unwrap(),
        0,
        "every webhook verifies"
    );
    sim.shutdown().await;

    // Set to reject synchronously instead.
    let mut cfg = config();
    cfg.window.mode = Delivery::Sync;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    assert_eq!(code_of(&c, &text("447700900001", "Hello!")).await, 131_047);
    sim.shutdown().await;
}

#[tokio::test]
async fn throughput_and_pair_rate_limits() {
    let mut cfg = config();
    cfg.phone_numbers[0].mps = 10;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let mut codes = Vec::new();
    for i in 0..15 {
        codes.push(
            match c
                .send(
                    PNID,
                    &template(
                        &format!("4477009{i:05}"),
                        "order_update",
                        "en_US",
                        1,
                        &i.to_string(),
                    ),
                )
                .await
            {
                Ok(_) => 0,
                Err(e) => e.code().unwrap(),
            },
        );
    }
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 10, "{codes:?}");
    assert!(codes[10..].iter().all(|c| *c == 130_429), "{codes:?}");
    let o = oracle(&sim).await;
    assert_eq!(o.phone_numbers[PNID].max_requests_1s, 15);
    // A second message to one recipient within 6 s hits the pair limit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send(
        PNID,
        &template("447700800001", "order_update", "en_US", 1, "x"),
    )
    .await
    .unwrap();
    let err = c
        .send(
            PNID,
            &template("447700800001", "order_update", "en_US", 1, "y"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some(131_056), ErrorClass::PairLimited)
    );
    sim.shutdown().await;

    let mut cfg = config();
    cfg.limits.pair_interval_ms = 200;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    c.send(
        PNID,
        &template("447700800001", "order_update", "en_US", 1, "x"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.send(
        PNID,
        &template("447700800001", "order_update", "en_US", 1, "y"),
    )
    .await
    .unwrap();
    let gap = oracle(&sim).await.min_pair_gap_ms.unwrap();
    assert!(gap >= 250.0, "{gap}");
    sim.shutdown().await;
}

/// Meta counts a request when it reaches it. Two requests that arrive 1.1 s apart at a number
/// allowed one a second are both accepted, though the simulator, busy, handles them together.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_request_counts_when_it_arrived_not_when_it_was_handled() {
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    let mut cfg = config();
    cfg.phone_numbers[0].mps = 1;
    let sim = Sim::start(cfg).await.unwrap();
    let request = |to: &str| {
        let body = serde_json::to_vec(&template(to, "order_update", "en_US", 1, to)).unwrap();
        let mut r = format!(
            "POST /v21.0/{PNID}/messages HTTP/1.1\r\nhost: sim\r\nauthorization: Bearer \
             sim-access-token\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend(body);
        r
    };
    // The test holds the simulator's only thread while the requests arrive.
    let mut first = std::net::TcpStream::connect(sim.addr()).unwrap();
    first.write_all(&request("447700900001")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let mut second = std::net::TcpStream::connect(sim.addr()).unwrap();
    second.write_all(&request("447700900002")).unwrap();
    for stream in [first, second] {
        stream.set_nonblocking(true).unwrap();
        let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let o = oracle(&sim).await;
    assert_eq!(o.accepted, 2, "{o:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn undeliverable_numbers() {
    let (rx, addr) = receiver(0).await;
    let mut cfg = config();
    cfg.undeliverable.fraction = 1.0;
    let sim = Sim::start(cfg.clone()).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let err = c
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some(131_026), ErrorClass::RecipientPermanent)
    );
    sim.shutdown().await;

    cfg.undeliverable.mode = Delivery::Webhook;
    fast_webhooks(&mut cfg, addr);
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let id = c
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    until("the failed status", || {
        rx.statuses().iter().any(|s| s.id == id)
    })
    .await;
    assert_eq!(
        rx.statuses().iter().find(|s| s.id == id).unwrap().errors[0].code,
        131_026
    );
    sim.shutdown().await;

    // A fraction marks a deterministic share of numbers.
    let mut cfg = config();
    cfg.undeliverable.fraction = 0.3;
    cfg.phone_numbers[0].mps = 1000;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let mut failed = 0;
    for i in 0..200 {
        if let Err(e) = c
            .send(
                PNID,
                &template(&format!("4477005{i:05}"), "order_update", "en_US", 1, "a"),
            )
            .await
        {
            assert_eq!(e.code(), Some(131_026));
            failed += 1;
        }
    }
    assert!((40..80).contains(&failed), "{failed}");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_5xx_hangs_and_resets() {
    let (rx, addr) = receiver(0).await;
    let mut cfg = config();
    cfg.faults.error_5xx = 1.0;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let err = c
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "a"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 500, .. }));
    assert_eq!((err.code(), err.class()), (Some(2), ErrorClass::Transient));
    assert_eq!(oracle(&sim).await.accepted, 0, "a 5xx is not accepted");
    sim.shutdown().await;

    let mut cfg = config();
    cfg.faults.hang = 1.0;
    cfg.faults.hang_ms = 2000;
    fast_webhooks(&mut cfg, addr);
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 200);
    let err = c
        .send(
            PNID,
            &template("447700900001", "order_update", "en_US", 1, "hrld:hang:1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    let o = oracle(&sim).await;
    assert_eq!((o.accepted, o.faults.hangs), (1, 1), "a hang is accepted");
    until("webhook for the hung send", || {
        rx.statuses()
            .iter()
            .any(|s| s.biz_opaque_callback_data.as_deref() == Some("hrld:hang:1"))
    })
    .await;
    sim.shutdown().await;

    let mut cfg = config();
    cfg.faults.reset_after_read = 1.0;
    fast_webhooks(&mut cfg, addr);
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    let err = c
        .send(
            PNID,
            &template("447700900002", "order_update", "en_US", 1, "hrld:reset:1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::ConnectionLost,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    let o = oracle(&sim).await;
    assert_eq!(
        (o.accepted, o.faults.resets),
        (1, 1),
        "a reset after read still counts as accepted"
    );
    until("webhook for the reset send", || {
        rx.statuses()
            .iter()
            .any(|s| s.biz_opaque_callback_data.as_deref() == Some("hrld:reset:1"))
    })
    .await;
    // The server keeps serving after a reset.
    assert!(oracle(&sim).await.requests >= 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_callback_id_sent_twice_is_a_duplicate() {
    let sim = Sim::start(config()).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    c.send(
        PNID,
        &template("447700900001", "order_update", "en_US", 1, "hrld:dup:1"),
    )
    .await
    .unwrap();
    c.send(
        PNID,
        &template("447700900002", "order_update", "en_US", 1, "hrld:dup:1"),
    )
    .await
    .unwrap();
    c.send(
        PNID,
        &template("447700900003", "order_update", "en_US", 1, "hrld:dup:2"),
    )
    .await
    .unwrap();
    let o = oracle(&sim).await;
    assert_eq!(o.duplicate_callbacks, ["hrld:dup:1"]);
    assert_eq!((o.unique_callbacks, o.max_accepts_per_callback), (2, 2));
    let detailed: SimStats = http()
        .get(format!("{}/_sim/stats?callbacks=1", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detailed.callbacks.unwrap()["hrld:dup:2"], 1);
    http()
        .post(format!("{}/_sim/reset", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(oracle(&sim).await, SimStats::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn webhooks_are_signed_batched_retried_and_can_be_duplicated() {
    let (rx, addr) = receiver(2).await;
    let mut cfg = config();
    fast_webhooks(&mut cfg, addr);
    cfg.webhooks.delivered_probability = 1.0;
    cfg.webhooks.read_probability = 1.0;
    cfg.webhooks.batch_max = 4;
    cfg.webhooks.batch_wait_ms = 30;
    cfg.webhooks.duplicate = 1.0;
    cfg.webhooks.reorder = 1.0;
    let sim = Sim::start(cfg).await.unwrap();
    let c = client(&sim, "sim-access-token", 2000);
    for i in 0..5 {
        c.send(
            PNID,
            &template(
                &format!("4477009{i:05}"),
                "order_update",
                "en_US",
                1,
                &format!("hrld:w:{i}"),
            ),
        )
        .await
        .unwrap();
    }
    // 5 messages × 3 statuses, each sent twice.
    until("30 statuses", || rx.statuses().len() >= 30).await;
    let statuses = rx.statuses();
    assert_eq!(statuses.len(), 30);
    assert!(
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .all(|n| n.messages_values().all(|(_, v)| v.statuses.len() <= 4)),
        "batches of at most 4"
    );
    for s in &statuses {
        assert!(
            s.biz_opaque_callback_data
                .as_deref()
                .unwrap()
                .starts_with("hrld:w:")
        );
        if s.status != "read" {
            let p = s.pricing.as_ref().unwrap();
            assert_eq!(
                (p.pricing_model.as_deref(), p.category.as_deref()),
                (Some("PMP"), Some("utility"))
            );
        }
    }
    let o = oracle(&sim).await;
    assert!(
        o.webhooks.attempted > o.webhooks.acknowledged,
        "the two refused POSTs were retried: {:?}",
        o.webhooks
    );
    assert_eq!(o.webhooks.statuses_delivered, 30);
    assert_eq!(*rx.bad_signatures.lock().unwrap(), 0);
    sim.shutdown().await;
}

#[test]
fn a_bad_config_is_refused() {
    let mut cfg = config();
    cfg.faults.hang = 0.7;
    cfg.faults.error_5xx = 0.7;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(Sim::start(cfg)).unwrap_err();
    assert!(err.to_string().contains("faults"), "{err}");
}
