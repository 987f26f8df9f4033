//! A whole Herald around the sender: the simulator, a store, the webhook receiver and a
//! reconciler consuming what the simulator posts. Two kinds: all in this process on the
//! memory store, for tests on a paused clock ([`Rig::in_process`]); and on real Redis with the
//! simulator in a child process ([`Rig::child_sim`]), for tests that need several processes.
//! Tests assert on the simulator's oracle and the campaign stats.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_cloudapi::{Client, ClientConfig, Messages, Secret};
use herald_core::{CampaignAction, CampaignId, CampaignSpec, CampaignStatus, Recipient, Stats};
use herald_reconciler::{ConsumerConfig, ReceiverConfig, Reconciler, ReconcilerConfig, routes};
use herald_sender::{Report, Sender, SenderConfig};
use herald_sim::{Direct, Sim, SimConfig, SimProcess, SimStats, WebhookSink};
use herald_store::{InDoubtPolicy, MemoryStore, NewCampaign, Store};
use herald_store_redis::{RedisConfig, RedisStore};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

// The store's test helpers, shared with its conformance suite (each test binary uses a part).
#[allow(unused_imports)]
pub use herald_store::conformance::{PNID, phone, recipients};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must point at a Redis (scripts/test.sh sets it)")
}

/// A template campaign (`order_update`, one body parameter from `first_name`).
pub fn template_spec(name: &str, template: &str, mps: Option<u32>) -> CampaignSpec {
    let mut v = json!({
        "name": name,
        "message": {"type": "template", "template": {"name": template, "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}}
    });
    if let Some(m) = mps {
        v["mps"] = json!(m);
    }
    serde_json::from_value(v).unwrap()
}

/// A free-form text campaign (only inside open 24 h windows).
pub fn text_spec(name: &str) -> CampaignSpec {
    serde_json::from_value(json!({
        "name": name,
        "message": {"type": "text", "text": {"body": "Hello {{first_name}}"}}
    }))
    .unwrap()
}

/// Settings for tests: quick retries, a short lease, and a grace long enough that no
/// in-doubt job is resent while its webhook is on the way.
pub fn sender_config(mps: u32) -> SenderConfig {
    let mut cfg = SenderConfig {
        mps,
        lease: Duration::from_secs(5),
        in_doubt_grace: Duration::from_secs(60),
        in_doubt_policy: InDoubtPolicy::Resend,
        shutdown_deadline: Duration::from_secs(5),
        maintenance_interval: Duration::from_millis(500),
        ..SenderConfig::default()
    };
    cfg.backoff.base = Duration::from_millis(100);
    cfg.backoff.max = Duration::from_secs(2);
    cfg
}

/// The simulator with webhooks on (pointed at the rig's receiver by [`Rig::start`]).
pub fn sim_config(mps: u32) -> SimConfig {
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    };
    cfg.phone_numbers[0].mps = mps;
    cfg.webhooks.sent_delay_ms = 20;
    cfg.webhooks.delivered_delay_ms = 40;
    cfg.webhooks.read_delay_ms = 60;
    cfg.webhooks.batch_wait_ms = 10;
    cfg
}

/// The simulator, in this process or in a child process (for timing measurements: see
/// `herald_sim::process`).
pub enum SimHandle {
    InProcess(Sim),
    Child(SimProcess),
}

impl SimHandle {
    pub fn url(&self) -> String {
        match self {
            Self::InProcess(s) => s.url(),
            Self::Child(c) => c.url().to_owned(),
        }
    }

    pub async fn stats(&self) -> SimStats {
        match self {
            Self::InProcess(s) => s.stats(),
            Self::Child(c) => c.stats().await.unwrap(),
        }
    }

    /// A user writes in (which opens their window).
    pub async fn inbound(&self, from: &str, text: &str) {
        match self {
            Self::InProcess(s) => s.inbound(PNID, from, text),
            Self::Child(c) => c.inbound(from, text).await.unwrap(),
        }
    }

    async fn shutdown(self) {
        match self {
            Self::InProcess(s) => s.shutdown().await,
            Self::Child(c) => drop(c),
        }
    }
}

/// How long a send may take before the client gives up (and the job is in doubt).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Rig<S: Store> {
    pub sim: SimHandle,
    pub store: Arc<S>,
    pub prefix: String,
    /// While false, the receiver answers 503 to every delivery (in-process rig only).
    webhooks_up: Arc<AtomicBool>,
    access_token: String,
    background: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

fn reconciler<S: Store>(store: &Arc<S>, background: &CancellationToken) -> JoinHandle<()> {
    let reconciler = Arc::new(Reconciler::new(store.clone(), ReconcilerConfig::default()));
    tokio::spawn(herald_reconciler::run(
        reconciler,
        ConsumerConfig {
            name: "test".into(),
            batch: 200,
            block: Duration::from_millis(50),
            claim_idle: Duration::from_secs(5),
            ..ConsumerConfig::default()
        },
        background.clone(),
    ))
}

impl Rig<MemoryStore> {
    /// Everything in this process and on this runtime, with no sockets in between: the
    /// memory store, the simulator answering in-process, its webhooks handed to the real
    /// receiver (signature checked) and applied by a reconciler. For tests on a paused
    /// clock (`#[tokio::test(start_paused = true)]`).
    pub async fn in_process(mut sim: SimConfig) -> Self {
        let store = Arc::new(MemoryStore::new());
        let background = CancellationToken::new();
        let receiver = routes(
            store.clone(),
            ReceiverConfig {
                verify_token: Secret::new("verify"),
                app_secret: Secret::new(sim.app_secret.clone()),
            },
        );
        let webhooks_up = Arc::new(AtomicBool::new(true));
        let up = webhooks_up.clone();
        let sink: WebhookSink = Arc::new(move |body, signature| {
            let receiver = receiver.clone();
            let up = up.load(Ordering::SeqCst);
            Box::pin(async move {
                if !up {
                    return false;
                }
                let request = axum::http::Request::post("/webhook")
                    .header(herald_cloudapi::signature::HEADER, signature)
                    .body(axum::body::Body::from(body))
                    .unwrap();
                receiver
                    .oneshot(request)
                    .await
                    .is_ok_and(|r| r.status() == axum::http::StatusCode::OK)
            })
        });
        sim.webhooks.url = String::new();
        let access_token = sim.access_token.clone();
        let consumer = reconciler(&store, &background);
        let sim = SimHandle::InProcess(Sim::start_with(sim, Some(sink)).await.unwrap());
        Self {
            sim,
            store,
            prefix: String::new(),
            webhooks_up,
            access_token,
            background,
            tasks: vec![consumer],
        }
    }

    /// A webhook outage (the receiver down): while `false`, every delivery is refused and
    /// the simulator retries it later, as Meta does.
    pub fn set_webhooks_up(&self, up: bool) {
        self.webhooks_up.store(up, Ordering::SeqCst);
    }

    /// The in-process simulator's client.
    pub fn direct(&self) -> Direct {
        match &self.sim {
            SimHandle::InProcess(s) => s.direct(REQUEST_TIMEOUT),
            SimHandle::Child(_) => panic!("the simulator is in a child process"),
        }
    }

    /// Starts a sender pool on the in-process simulator; cancel the token to stop it and
    /// get its report.
    pub fn sender(&self, cfg: SenderConfig) -> (CancellationToken, JoinHandle<Report>) {
        self.sender_with(cfg, self.direct())
    }

    /// A worker on another view of the rig's store (a `Faulty` around it), with the
    /// rig's simulator.
    pub fn sender_on<T: Store>(
        &self,
        store: Arc<T>,
        cfg: SenderConfig,
    ) -> (CancellationToken, JoinHandle<Report>) {
        let stop = CancellationToken::new();
        let sender = Sender::new(store, self.direct(), cfg).unwrap();
        (stop.clone(), tokio::spawn(sender.run(stop)))
    }
}

impl Rig<RedisStore> {
    /// Real Redis (`REDIS_URL`, a random key prefix), the receiver on a loopback port, and
    /// the simulator in a child process: this test binary re-run, which must call
    /// `herald_sim::process::serve_if_asked()` first thing in `main`.
    pub async fn child_sim(sim: SimConfig) -> Self {
        Self::child_sim_on(&redis_url(), sim).await
    }

    /// The same on the Redis at `url`.
    pub async fn child_sim_on(url: &str, mut sim: SimConfig) -> Self {
        let prefix = format!("herald-snd-{:016x}", rand::random::<u64>());
        let store = Arc::new(
            RedisStore::connect(&RedisConfig::new(url, prefix.clone()))
                .await
                .unwrap(),
        );
        let background = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes(
            store.clone(),
            ReceiverConfig {
                verify_token: Secret::new("verify"),
                app_secret: Secret::new(sim.app_secret.clone()),
            },
        );
        let stop = background.clone();
        let receiver = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        let consumer = reconciler(&store, &background);
        sim.webhooks.url = format!("http://{addr}/webhook");
        let access_token = sim.access_token.clone();
        let exe = std::env::current_exe().unwrap();
        let sim = SimHandle::Child(SimProcess::start(&exe, &[], &sim).unwrap());
        Self {
            sim,
            store,
            prefix,
            webhooks_up: Arc::new(AtomicBool::new(true)),
            access_token,
            background,
            tasks: vec![receiver, consumer],
        }
    }

    /// Starts a sender pool sending over HTTP; cancel the token to stop it.
    pub fn sender(&self, cfg: SenderConfig) -> (CancellationToken, JoinHandle<Report>) {
        self.sender_with(cfg, client(&self.sim.url(), &self.access_token))
    }
}

impl<S: Store> Rig<S> {
    pub fn sender_with<M: Messages>(
        &self,
        cfg: SenderConfig,
        client: M,
    ) -> (CancellationToken, JoinHandle<Report>) {
        let stop = CancellationToken::new();
        let sender = Sender::new(self.store.clone(), client, cfg).unwrap();
        (stop.clone(), tokio::spawn(sender.run(stop)))
    }

    /// Creates a campaign with these recipients; starts it when asked.
    pub async fn campaign(
        &self,
        spec: CampaignSpec,
        people: &[Recipient],
        start: bool,
    ) -> CampaignId {
        self.campaign_on(PNID, spec, people, start).await
    }

    /// The same on another phone number.
    pub async fn campaign_on(
        &self,
        phone_number_id: &str,
        spec: CampaignSpec,
        people: &[Recipient],
        start: bool,
    ) -> CampaignId {
        let template = spec.message.get("template").map(|t| {
            format!(
                "{}:{}",
                t["name"].as_str().unwrap(),
                t["language"]["code"].as_str().unwrap()
            )
        });
        let id = self
            .store
            .create_campaign(NewCampaign {
                spec,
                phone_number_id: phone_number_id.into(),
                template,
            })
            .await
            .unwrap()
            .id;
        for chunk in people.chunks(1000) {
            let added = self.store.enqueue_batch(&id, chunk).await.unwrap();
            assert!(added.iter().all(|a| *a));
        }
        if start {
            self.store
                .transition(&id, CampaignAction::Start, None)
                .await
                .unwrap();
        }
        id
    }

    /// Waits until the campaign has this status, and returns its stats.
    pub async fn wait_status(
        &self,
        id: &CampaignId,
        want: CampaignStatus,
        limit: Duration,
    ) -> Stats {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let c = self.store.campaign(id).await.unwrap();
            let stats = self.store.stats(id).await.unwrap();
            assert!(stats.invariant_holds(), "invariant broken: {stats:#?}");
            if c.status == want {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "campaign {id} is {} after {limit:?}, not {want}: {stats:#?}\n{:#?}",
                c.status,
                self.sim.stats().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the webhooks of every accepted message have been applied (`sent` counted).
    pub async fn wait_sent(&self, id: &CampaignId, limit: Duration) -> Stats {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = self.store.stats(id).await.unwrap();
            if stats.sent + stats.failed - stats.failed_before_accept >= stats.accepted {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "webhooks not applied after {limit:?}: {stats:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn oracle(&self) -> SimStats {
        self.sim.stats().await
    }

    pub async fn finish(self) {
        self.background.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.sim.shutdown().await;
    }
}

impl Rig<RedisStore> {
    /// Stops everything and deletes the test's keys.
    pub async fn finish_and_purge(self) {
        let store = self.store.clone();
        self.finish().await;
        let _ = store.purge_namespace().await;
    }
}

pub fn client(api_base: &str, token: &str) -> Client {
    Client::new(&ClientConfig {
        api_base: api_base.to_owned(),
        access_token: Secret::new(token),
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// No callback id was accepted twice, and nothing was rejected with these codes.
pub fn assert_clean(o: &SimStats, forbidden: &[&str]) {
    assert!(
        o.duplicate_callbacks.is_empty(),
        "messages sent twice: {:?}",
        o.duplicate_callbacks
    );
    assert_eq!(o.max_accepts_per_callback.max(1), 1);
    for code in forbidden {
        assert_eq!(
            o.rejected.get(*code),
            None,
            "rejections with {code}: {o:#?}"
        );
    }
}

/// Requests as made: when (tokio's clock) and the body.
pub type Sent = Arc<std::sync::Mutex<Vec<(tokio::time::Instant, Vec<u8>)>>>;

/// A client that records when each request was made and its body, then passes it on.
pub struct Recording<M> {
    pub inner: M,
    pub sent: Sent,
}

impl<M: Messages> Messages for Recording<M> {
    async fn send_raw(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
    ) -> Result<herald_cloudapi::SendResponse, herald_cloudapi::Error> {
        if let Ok(mut s) = self.sent.lock() {
            s.push((tokio::time::Instant::now(), body.clone()));
        }
        self.inner.send_raw(phone_number_id, body).await
    }
}

/// A client whose every `every`-th request stalls for `stall` after the sender let it go and
/// before it leaves (a process descheduled between the two), as a paced send's departure
/// says; it records when each request left, then passes it on. With `unseen`, the stall
/// comes after the departure is noted (the machine stalled on the way to the socket, where
/// the sender cannot see): the departure says the request left in time, and only its answer
/// comes late.
pub struct Stalling<M> {
    pub inner: M,
    pub every: usize,
    pub stall: Duration,
    pub unseen: bool,
    pub made: std::sync::atomic::AtomicUsize,
    pub left: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl<M: Messages> Messages for Stalling<M> {
    async fn send_raw(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
    ) -> Result<herald_cloudapi::SendResponse, herald_cloudapi::Error> {
        self.send_noted(
            phone_number_id,
            body,
            &herald_cloudapi::Departure::default(),
        )
        .await
    }

    async fn send_noted(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
        departure: &herald_cloudapi::Departure,
    ) -> Result<herald_cloudapi::SendResponse, herald_cloudapi::Error> {
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.unseen {
            departure.mark_at(tokio::time::Instant::now().into_std());
        }
        if n % self.every == self.every - 1 {
            tokio::time::sleep(self.stall).await;
        }
        let now = tokio::time::Instant::now();
        departure.mark_at(now.into_std());
        if let Ok(mut l) = self.left.lock() {
            l.push(now);
        }
        self.inner.send_raw(phone_number_id, body).await
    }
}

/// The most of these instants that fall in any window of `span`.
pub fn busiest(times: &[tokio::time::Instant], span: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort_unstable();
    let mut most = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi].duration_since(t[lo]) >= span {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    most
}
