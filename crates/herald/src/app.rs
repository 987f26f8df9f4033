//! The long-running roles (`serve`, `worker`, `webhook`) wired from configuration, and their
//! shutdown: one [`CancellationToken`], then a bounded drain (the sender settles what is in
//! flight; the HTTP server finishes its requests; the reconciler acknowledges what it
//! applied).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use herald_cloudapi::Client;
use herald_reconciler::{ConsumerConfig, ReceiverConfig, Reconciler, ReconcilerConfig};
use herald_sender::Sender;
use herald_store::{MemoryStore, Store};
use herald_store_redis::{RedisConfig, RedisStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Backend, Config, ConfigError};
use crate::server::api::{self, ApiState, Routes};

/// One part a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The campaign API under /v1 (and the per-campaign metrics, when this process leads).
    Api,
    /// Meta's webhook: verify and store deliveries.
    Webhook,
    /// Apply stored deliveries to the store.
    Reconciler,
    /// The sender workers (and the maintenance sweeps).
    Sender,
}

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub webhook: bool,
    pub reconciler: bool,
    pub sender: bool,
}

impl Roles {
    /// These roles; all of them when none is named.
    pub fn of(roles: &[Role]) -> Self {
        if roles.is_empty() {
            return Self::SERVE;
        }
        Self {
            api: roles.contains(&Role::Api),
            webhook: roles.contains(&Role::Webhook),
            reconciler: roles.contains(&Role::Reconciler),
            sender: roles.contains(&Role::Sender),
        }
    }

    pub const SERVE: Self = Self {
        api: true,
        webhook: true,
        reconciler: true,
        sender: true,
    };
    pub const WORKER: Self = Self {
        api: false,
        webhook: false,
        reconciler: false,
        sender: true,
    };
    pub const WEBHOOK: Self = Self {
        api: false,
        webhook: true,
        reconciler: true,
        sender: false,
    };
}

/// The store a process runs on.
#[derive(Debug, Clone)]
pub enum Opened {
    Redis(Arc<RedisStore>),
    Memory(Arc<MemoryStore>),
}

/// Opens the configured store: connects to Redis, or makes an empty one in memory (and says
/// loudly that nothing in it survives).
pub async fn open(cfg: &Config) -> anyhow::Result<Opened> {
    Ok(match cfg.store.backend {
        Backend::Redis | Backend::RedisCluster | Backend::RedisSentinel => {
            Opened::Redis(connect(cfg).await?)
        }
        Backend::Memory => {
            tracing::warn!(
                "store.backend is memory: campaigns, jobs and stats live in this process only; \
                 nothing survives a restart, and no other process can share them"
            );
            Opened::Memory(Arc::new(MemoryStore::new()))
        }
    })
}

/// Connects to the configured Redis (which warns in the log about settings that may lose
/// data).
pub async fn connect(cfg: &Config) -> anyhow::Result<Arc<RedisStore>> {
    let url = cfg.redis_url()?;
    let mut rc = RedisConfig::new(url.as_str(), cfg.store.key_prefix.clone());
    rc.cluster = cfg.store.backend == Backend::RedisCluster;
    if cfg.store.backend == Backend::RedisSentinel {
        rc.sentinel_master = Some(cfg.store.sentinel_master.clone());
        let password = cfg.store.sentinel_master_password.expose();
        rc.sentinel_master_password =
            (!password.is_empty()).then(|| herald_store_redis::Password::new(password));
        let username = &cfg.store.sentinel_master_username;
        rc.sentinel_master_username = (!username.is_empty()).then(|| username.clone());
    }
    rc.pool_size = cfg.store.pool_size;
    rc.timeout = Duration::from_millis(cfg.store.timeout_ms);
    rc.replica_ack = cfg.store.replica_ack();
    rc.tls = cfg.redis_tls()?;
    let store = RedisStore::connect(&rc)
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&url)))?;
    Ok(Arc::new(store))
}

pub use crate::config::redact_url;

static TLS_FILES: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();

/// Reads the Redis TLS files again every `store.tls_reload_secs`, and gives the store those
/// that changed (cert-manager renews a mounted Secret's files in place): the connections made
/// after that use them. Files that cannot be read, or do not connect, are reported and the
/// store keeps the ones it has; they are tried again at the next reading.
async fn renew_tls(cfg: Config, store: Arc<RedisStore>, shutdown: CancellationToken) {
    let s = &cfg.store;
    let files = [&s.tls_ca_file, &s.tls_cert_file, &s.tls_key_file];
    if s.tls_reload_secs == 0 || files.iter().all(|f| f.is_empty()) {
        return;
    }
    let every = Duration::from_secs(s.tls_reload_secs);
    let mut in_use = cfg.redis_tls().ok();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let read = match cfg.redis_tls() {
            Ok(read) => read,
            Err(e) => {
                herald_core::warn_repeated!(
                    TLS_FILES,
                    "cannot read the Redis TLS files again; the store keeps the ones it has",
                    error = %e
                );
                continue;
            }
        };
        if in_use.as_ref() == Some(&read) {
            continue;
        }
        match store.renew_tls(read.clone()).await {
            Ok(()) => {
                herald_core::recovered!(TLS_FILES, "the Redis TLS files can be used again");
                tracing::info!("renewed Redis TLS files taken: new connections use them");
                in_use = Some(read);
            }
            Err(e) => herald_core::warn_repeated!(
                TLS_FILES,
                "the renewed Redis TLS files do not connect; the store keeps the ones it has",
                error = %e
            ),
        }
    }
}

/// Binds the server address. Without an API key the campaign API must not be reachable
/// from the network, so a non-loopback address is narrowed to loopback (and said so).
pub async fn bind(cfg: &Config, roles: Roles) -> anyhow::Result<TcpListener> {
    let mut addr: SocketAddr = cfg.listen_addr()?;
    if roles.api && cfg.server.api_key.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            requested = %addr,
            "no server.api_key (HERALD_API_KEY): the API listens on loopback only"
        );
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    } else if roles.api && cfg.server.api_key.is_empty() {
        tracing::info!(
            "no server.api_key (HERALD_API_KEY): the API is open to loopback callers only"
        );
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// Runs the roles on the configured store until `shutdown` is cancelled, then drains.
pub async fn run(
    cfg: &Config,
    roles: Roles,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if cfg.store.backend == Backend::Memory && roles != Roles::SERVE {
        return Err(ConfigError {
            key: "store.backend".into(),
            problem: "memory keeps everything in one process: only `herald serve` (every role \
                      together) can use it; set it to redis for separate workers"
                .into(),
        }
        .into());
    }
    let (opened, listener) = match cfg.store.backend {
        Backend::Memory => (open(cfg).await?, listener),
        _ => match wait_for_store(cfg, listener, &shutdown).await? {
            Some((store, listener)) => (Opened::Redis(store), listener),
            // Stopped while it waited: nothing ran, nothing to drain.
            None => return Ok(()),
        },
    };
    match opened {
        Opened::Redis(store) => {
            let renewals = tokio::spawn(renew_tls(cfg.clone(), store.clone(), shutdown.clone()));
            let ran = run_on(cfg, roles, listener, shutdown, store).await;
            renewals.abort();
            ran
        }
        Opened::Memory(store) => run_on(cfg, roles, listener, shutdown, store).await,
    }
}

static STORE_WAIT: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();

/// Connects to Redis. While it does not answer (it starts after Herald, or is restarting,
/// as in a cluster's cold start), tries again, less often as it goes (up to every 5 s), for
/// `store.start_wait_secs`; meanwhile the listener answers `/healthz` (alive) and everything
/// else 503 with `Retry-After` (`/readyz` too: not ready), so a Kubernetes Pod waits,
/// unready, instead of exiting into a crash loop whose back-off outlasts the outage. A
/// setting that cannot work fails at once. Answers the store and the listener, or `None`
/// when `shutdown` came first.
async fn wait_for_store(
    cfg: &Config,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Arc<RedisStore>, TcpListener)>> {
    let waits = |e: &anyhow::Error| {
        e.downcast_ref::<herald_store::StoreError>()
            .is_some_and(herald_store::StoreError::is_retryable)
    };
    let mut last = match connect(cfg).await {
        Ok(store) => return Ok(Some((store, listener))),
        Err(e) if cfg.store.start_wait_secs == 0 || !waits(&e) => return Err(e),
        Err(e) => e,
    };
    // The waiting answers on a second handle of the same socket, given up once connected.
    let listener = listener.into_std()?;
    let waiting_on = TcpListener::from_std(listener.try_clone()?)?;
    let listener = TcpListener::from_std(listener)?;
    let waited = CancellationToken::new();
    let answers = tokio::spawn(crate::server::listen::serve(
        waiting_on,
        waiting_routes(),
        cfg.listen_limits(),
        waited.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.store.start_wait_secs);
    let mut pause = Duration::from_millis(250);
    let outcome = loop {
        herald_core::warn_repeated!(
            STORE_WAIT,
            "the store does not answer; waiting for it (not ready meanwhile)",
            error = format!("{last:#}"),
            wait_secs = cfg.store.start_wait_secs
        );
        if tokio::time::Instant::now() + pause > deadline {
            break Err(last.context(format!(
                "the store did not answer within store.start_wait_secs ({} s)",
                cfg.store.start_wait_secs
            )));
        }
        tokio::select! {
            () = shutdown.cancelled() => break Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
        match connect(cfg).await {
            Ok(store) => {
                herald_core::recovered!(STORE_WAIT, "the store answers; starting");
                break Ok(Some(store));
            }
            Err(e) if waits(&e) => last = e,
            Err(e) => break Err(e),
        }
    };
    waited.cancel();
    let _ = answers.await;
    Ok(outcome?.map(|store| (store, listener)))
}

/// What a process waiting for its store answers: alive, not ready, come back later.
fn waiting_routes() -> axum::Router {
    use axum::http::{StatusCode, header};
    let later = || async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "Herald is starting: the store does not answer yet\n",
        )
    };
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(later)
}

/// Runs the roles on this store until `shutdown` is cancelled, then drains.
pub async fn run_on<S: Store>(
    cfg: &Config,
    roles: Roles,
    listener: TcpListener,
    shutdown: CancellationToken,
    store: Arc<S>,
) -> anyhow::Result<()> {
    let metrics = crate::telemetry::metrics();
    crate::telemetry::init_series(roles.api, roles.sender, roles.webhook, roles.reconciler);
    let tasks = TaskTracker::new();

    let campaign_metrics = roles
        .api
        .then(crate::server::campaign_metrics::CampaignMetrics::new);
    let state = ApiState {
        metrics: Some(metrics),
        campaign_metrics: campaign_metrics.clone(),
        ..ApiState::new(store.clone(), cfg)
    };
    let routes = Routes {
        v1: roles.api,
        webhook: roles.webhook.then(|| ReceiverConfig {
            verify_token: cfg.whatsapp.verify_token.clone(),
            app_secret: cfg.whatsapp.app_secret.clone(),
        }),
    };
    let limits = cfg.listen_limits();
    let app = crate::server::listen::with_request_timeout(
        api::router(state, routes),
        limits.request_timeout,
    );
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        api = roles.api,
        webhook = roles.webhook,
        reconciler = roles.reconciler,
        sender = roles.sender,
        "herald started"
    );
    tasks.spawn(crate::server::listen::serve(
        listener,
        app,
        limits,
        shutdown.clone(),
    ));

    if let Some(out) = campaign_metrics {
        tasks.spawn(crate::server::campaign_metrics::export(
            store.clone(),
            out,
            cfg.export_config(),
            instance_name(),
            shutdown.clone(),
        ));
    }

    if roles.reconciler {
        let rec = Arc::new(Reconciler::new(
            store.clone(),
            ReconcilerConfig {
                opt_out_keywords: cfg.webhook.opt_out_keywords.clone(),
                opt_in_keywords: cfg.webhook.opt_in_keywords.clone(),
                opt_in_reply: opt_in_reply(cfg)?,
                portfolios: cfg.messaging_limit.waba_portfolios(),
            },
        ));
        let consumer = ConsumerConfig {
            name: instance_name(),
            max_deliveries: cfg.webhook.max_deliveries,
            max_batch_bytes: cfg.webhook.max_batch_bytes,
            ..ConsumerConfig::default()
        };
        tasks.spawn(herald_reconciler::run(rec, consumer, shutdown.clone()));
    }

    if roles.sender {
        let client = Client::new(&cfg.client_config()).context("building the Cloud API client")?;
        read_messaging_limits(cfg, &client, &*store).await;
        let sender = Sender::new(store.clone(), client, cfg.sender_config(None))?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let report = sender.run(stop).await;
            tracing::info!(
                requests = report.requests,
                accepted = report.accepted,
                abandoned = report.abandoned,
                "sender stopped"
            );
        });
    }
    tasks.close();

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    // The sender has its own deadline for in-flight sends; allow it and a little more.
    let deadline = Duration::from_secs(cfg.sender.shutdown_deadline_secs + 5);
    if tokio::time::timeout(deadline, tasks.wait()).await.is_err() {
        tracing::warn!("shutdown deadline passed; unfinished work is left to lease expiry");
    }
    Ok(())
}

/// Reads what Meta allows from the Graph API and records it in the store, where every
/// worker's lanes find it: each configured number's throughput level (80 or 1,000 messages/s)
/// and each portfolio's messaging limit (from its first number read). A number that cannot be
/// read leaves what was last recorded (by an earlier start or a webhook): said in the log,
/// never fatal.
async fn read_messaging_limits<S: Store>(cfg: &Config, client: &Client, store: &S) {
    let limits = cfg.messaging_limit.limit_config();
    // The configured number first, then the portfolios' numbers, each once.
    let mut numbers: Vec<String> = Vec::new();
    let configured = Some(&cfg.whatsapp.phone_number_id).filter(|p| !p.is_empty());
    let listed = cfg
        .messaging_limit
        .portfolios
        .values()
        .flat_map(|p| &p.phone_number_ids);
    for pnid in configured.into_iter().chain(listed) {
        if !numbers.contains(pnid) {
            numbers.push(pnid.clone());
        }
    }
    let mut limit_read = std::collections::BTreeSet::new();
    for pnid in numbers {
        let portfolio = limits.portfolio_of(&pnid).to_owned();
        let info = match client.phone_number_info(&pnid).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(phone_number_id = %pnid, error = %e, "could not read the number's limits");
                continue;
            }
        };
        let level = info.throughput.as_ref().and_then(|t| t.level.as_deref());
        let mps = match level {
            Some("HIGH") => Some(1000),
            Some("STANDARD") => Some(80),
            _ => None,
        };
        if let (Some(mps), Some(display)) = (mps, info.display_phone_number.as_deref())
            && let Err(e) = store.set_throughput(&pnid, display, mps).await
        {
            tracing::warn!(phone_number_id = %pnid, error = %e, "could not record the throughput level");
        }
        if !limit_read.insert(portfolio.clone()) {
            continue;
        }
        let tier = info.whatsapp_business_manager_messaging_limit;
        match tier
            .as_deref()
            .and_then(herald_core::MessagingLimit::from_tier)
        {
            Some(limit) => {
                tracing::info!(portfolio, %limit, throughput = ?level, "what Meta allows");
                if let Err(e) = store.set_messaging_limit(&portfolio, limit).await {
                    tracing::warn!(portfolio, error = %e, "could not record the messaging limit");
                }
            }
            None => {
                tracing::warn!(portfolio, tier = ?tier, "Meta reported no messaging limit Herald knows")
            }
        }
    }
}

/// A consumer name stable for this host and process.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "herald".into());
    format!("{host}-{}", std::process::id())
}

/// The opt-in confirmation, when `webhook.opt_in_reply` is set and there is an access token
/// to send it with.
fn opt_in_reply(cfg: &Config) -> anyhow::Result<Option<herald_reconciler::OptInReply>> {
    let text = cfg.webhook.opt_in_reply.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if cfg.whatsapp.access_token.is_empty() {
        tracing::warn!(
            "webhook.opt_in_reply is set but there is no access token: no confirmation is sent"
        );
        return Ok(None);
    }
    let client =
        Arc::new(Client::new(&cfg.client_config()).context("building the Cloud API client")?);
    let send: herald_reconciler::SendText = Arc::new(move |pnid, to, text| {
        let client = client.clone();
        Box::pin(async move {
            use herald_cloudapi::message::Text;
            use herald_cloudapi::{Message, SendMessage, SendRequest};
            let message = Message::Text(Text {
                body: text,
                preview_url: None,
            });
            let request = SendRequest::Message(Box::new(SendMessage::new(to.to_string(), message)));
            client
                .send(&pnid, &request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    Ok(Some(herald_reconciler::OptInReply {
        text: text.to_owned(),
        send,
    }))
}

/// A token cancelled on SIGINT, SIGTERM, SIGHUP (the terminal or the tmux session closed) or
/// SIGQUIT: every way a user or a supervisor ends a process that it may clean up after.
pub fn shutdown_on_signal() -> CancellationToken {
    Interrupt::on_signal().token
}

/// A stop asked for by a signal, and which one.
#[derive(Debug, Clone)]
pub struct Interrupt {
    pub token: CancellationToken,
    signal: Arc<std::sync::atomic::AtomicI32>,
}

impl Interrupt {
    /// Cancels `token` on the first terminating signal (see [`shutdown_on_signal`]).
    pub fn on_signal() -> Self {
        let me = Self {
            token: CancellationToken::new(),
            signal: Arc::new(std::sync::atomic::AtomicI32::new(0)),
        };
        let (t, s) = (me.token.clone(), me.signal.clone());
        tokio::spawn(async move {
            let n = wait_for_signal().await;
            tracing::info!(signal = n, "signal received");
            s.store(n, std::sync::atomic::Ordering::SeqCst);
            t.cancel();
        });
        me
    }

    /// The signal that arrived, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// The exit status a process ended by `signal` conventionally gives: 128 + its number
    /// (130 for SIGINT).
    pub fn exit_code(signal: i32) -> u8 {
        u8::try_from(128 + signal.clamp(1, 127)).unwrap_or(u8::MAX)
    }
}

/// Waits for a terminating signal; answers its number.
async fn wait_for_signal() -> i32 {
    const SIGINT: i32 = 2;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            (SignalKind::interrupt(), SIGINT),
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
            (SignalKind::quit(), 3),
        ];
        let mut streams = Vec::new();
        for (kind, n) in kinds {
            if let Ok(s) = signal(kind) {
                streams.push((s, n));
            }
        }
        if streams.is_empty() {
            let _ = tokio::signal::ctrl_c().await;
            return SIGINT;
        }
        let waits = streams.iter_mut().map(|(s, n)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
        futures::future::select_all(waits).await.0
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        SIGINT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_an_api_key_the_api_binds_loopback_only() {
        let mut cfg = Config::default();
        cfg.server.listen = "0.0.0.0:0".into();
        let l = bind(&cfg, Roles::SERVE).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
        // A worker serves no API: it may listen where it is told.
        let l = bind(&cfg, Roles::WORKER).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
        cfg.server.api_key = "k".into();
        let l = bind(&cfg, Roles::SERVE).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let http = herald_cloudapi::http_builder().build().unwrap();
        let r = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `--role api`: the campaign API and the per-campaign metrics, and no sender (jobs stay
    /// pending) and no webhook; `--role sender`: neither API nor campaign series.
    #[tokio::test]
    async fn roles_compose() {
        let store = Arc::new(herald_store::MemoryStore::new());
        let id = herald_store::conformance::running(&*store, "roles", 3).await;
        let mut cfg = Config::default();
        cfg.server.listen = "127.0.0.1:0".into();
        // Were a sender to run, it could reach nothing.
        cfg.whatsapp.api_base = "http://127.0.0.1:9".into();
        let cfg: &'static Config = Box::leak(Box::new(cfg));

        let api_only = Roles::of(&[Role::Api]);
        assert!(api_only.api && !api_only.sender && !api_only.webhook && !api_only.reconciler);
        let stop = CancellationToken::new();
        let listener = bind(cfg, api_only).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(run_on(cfg, api_only, listener, stop.clone(), store.clone()));
        let text = loop {
            let (code, text) = get(addr, "/metrics").await;
            assert_eq!(code, 200);
            if text.contains("herald_campaign_recipients{") {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            text.contains(&format!(
                r#"herald_campaign_messages{{campaign="{id}",state="pending"}} 3"#
            )),
            "{text}"
        );
        let (code, _) = get(addr, &format!("/v1/campaigns/{id}")).await;
        assert_eq!(code, 200);
        assert_eq!(get(addr, "/webhook").await.0, 404);
        assert_eq!(store.stats(&id).await.unwrap().pending, 3, "no sender ran");
        stop.cancel();
        server.await.unwrap().unwrap();

        let sender_only = Roles::of(&[Role::Sender]);
        let stop = CancellationToken::new();
        let listener = bind(cfg, sender_only).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(run_on(
            cfg,
            sender_only,
            listener,
            stop.clone(),
            store.clone(),
        ));
        assert_eq!(get(addr, &format!("/v1/campaigns/{id}")).await.0, 404);
        let (_, text) = get(addr, "/metrics").await;
        assert!(!text.contains("herald_campaign_"), "{text}");
        stop.cancel();
        server.await.unwrap().unwrap();
        assert_eq!(Roles::of(&[]), Roles::SERVE);
    }

    /// A password with every character a URL must encode, given as it is in REDIS_PASSWORD:
    /// Herald reaches the Redis that asks for it, and the error when it is wrong shows
    /// neither it nor its encoding.
    #[tokio::test]
    async fn a_redis_password_is_taken_as_it_is() {
        let pw = "a/b#c?d@e%f:g+h=";
        let redis =
            herald_store_redis::testing::TestRedisServer::start_with(&["--requirepass", pw]);
        let url = redis.url();
        let cfg = |pw: &str| {
            let env = [("REDIS_URL", url.as_str()), ("REDIS_PASSWORD", pw)]
                .map(|(k, v)| (k.to_owned(), v.to_owned()));
            Config::from_toml("", &env.into_iter().collect()).unwrap()
        };
        let store = connect(&cfg(pw)).await.unwrap();
        store.ping().await.unwrap();
        let e = format!("{:#}", connect(&cfg("a/b#wrong")).await.err().unwrap());
        assert!(e.contains("redis://***@127.0.0.1"), "{e}");
        assert!(!e.contains("wrong") && !e.contains("%23"), "{e}");
    }

    #[test]
    fn redis_passwords_stay_out_of_messages() {
        assert_eq!(
            redact_url("redis://user:hunter2@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://a:x@10.0.0.1:7000,redis://a:x@10.0.0.2:7000"),
            "redis://***@10.0.0.1:7000,redis://***@10.0.0.2:7000"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
