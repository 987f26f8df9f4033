//! Configuration: one TOML file (`config/herald.toml` documents every key), every key
//! overridable from the environment, validated into the settings each crate takes.
//!
//! The file is read into a TOML table, environment overrides are written into that table,
//! and only then is it deserialised with `deny_unknown_fields`; so a misspelt key fails the
//! same way whether it came from the file or from `HERALD_SENDER__MPX`, and every error names
//! its key. The environment is passed in as a map: tests never touch the process's own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herald_cloudapi::{ClientConfig, Secret};
use herald_core::millis;
use herald_sender::SenderConfig;
use herald_sender::policy::Backoff;
use herald_store::InDoubtPolicy;
use serde::{Deserialize, Serialize};

/// A configuration problem, naming the key (or the file) at fault. Exit code 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The platform's own variable names and the keys they set.
pub const PLATFORM_ENV: &[(&str, &str, &str)] = &[
    ("WA_ACCESS_TOKEN", "whatsapp", "access_token"),
    ("WA_PHONE_NUMBER_ID", "whatsapp", "phone_number_id"),
    ("WHATSAPP_API_VERSION", "whatsapp", "api_version"),
    ("WA_APP_SECRET", "whatsapp", "app_secret"),
    ("VERIFY_TOKEN", "whatsapp", "verify_token"),
    ("REDIS_URL", "store", "redis_url"),
    ("REDIS_PASSWORD", "store", "redis_password"),
    ("HERALD_API_KEY", "server", "api_key"),
];

/// Keys of earlier releases, and what replaced them.
const RENAMED: &[(&str, &str, &str)] = &[(
    "sender",
    "pace_margin",
    "replaced by sender.window_guard_ms (a time, default 2): sends are now paced by a rolling \
     window; remove the key",
)];

/// The whole file, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub whatsapp: WhatsApp,
    pub store: StoreSection,
    pub sender: SenderSection,
    pub server: Server,
    pub webhook: Webhook,
    pub metrics: MetricsSection,
    pub messaging_limit: MessagingLimitSection,
    pub cost: CostSection,
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsApp {
    pub api_base: String,
    pub api_version: String,
    pub phone_number_id: String,
    /// The WhatsApp Business Account id (for `doctor`'s webhook subscription check).
    pub waba_id: String,
    pub access_token: Secret,
    pub app_secret: Secret,
    pub verify_token: Secret,
    pub request_timeout_ms: u64,
    /// Plain http to a non-loopback `api_base`: the simulator in another container only.
    pub allow_plain_http: bool,
}

impl Default for WhatsApp {
    fn default() -> Self {
        Self {
            api_base: herald_cloudapi::client::DEFAULT_API_BASE.into(),
            api_version: herald_cloudapi::client::DEFAULT_API_VERSION.into(),
            phone_number_id: String::new(),
            waba_id: String::new(),
            access_token: Secret::default(),
            app_secret: Secret::default(),
            verify_token: Secret::default(),
            request_timeout_ms: 10_000,
            allow_plain_http: false,
        }
    }
}

/// Where Herald keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Redis, standalone (or behind Sentinel): durable and shared by every process.
    #[default]
    Redis,
    /// A Redis Cluster: `redis_url` names one or more of its nodes, comma separated; the
    /// client finds the rest and follows the slots as they move.
    RedisCluster,
    /// Redis with replicas watched by Sentinel: `redis_url` names the Sentinels, comma
    /// separated, and `sentinel_master` the master they watch; the client connects to the
    /// master they name and follows it through a failover.
    RedisSentinel,
    /// This process's memory: nothing survives a restart and no other process can share it.
    /// For the demo and trying Herald out; `herald serve` only.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub backend: Backend,
    /// Shown without its password wherever the configuration is printed.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub redis_url: String,
    /// Redis's password, when it is not in `redis_url`: as it is, any characters, nothing
    /// percent-encoded (`REDIS_PASSWORD`, from the Secret that holds it). It goes to every
    /// URL: each node of a Cluster, and the Sentinels and their master (unless
    /// `sentinel_master_password` gives the master its own).
    pub redis_password: Secret,
    pub key_prefix: String,
    pub pool_size: usize,
    pub timeout_ms: u64,
    /// At start, how long a long-running role waits for a store that does not answer (not
    /// ready meanwhile) before it exits (0: exits at once).
    pub start_wait_secs: u64,
    /// Replicas that must hold a job's "started" mark before its request goes out (0: none).
    pub replica_acks: u32,
    /// How long a start waits for them.
    pub replica_ack_timeout_ms: u64,
    /// What a start does when fewer acknowledge in time.
    pub replica_ack_policy: ReplicaAckPolicy,
    /// Delete a completed or cancelled campaign this many days after it ended (0: never).
    pub delete_ended_after_days: u64,
    /// With `backend = "redis_sentinel"`: the name of the master the Sentinels watch.
    pub sentinel_master: String,
    /// With `backend = "redis_sentinel"`: the master's password when the Sentinels do not
    /// share it (the password in `redis_url` is then the Sentinels' alone; empty: the
    /// master's is the URL's too).
    pub sentinel_master_password: Secret,
    /// With `backend = "redis_sentinel"`: the master's ACL user when the Sentinels do not
    /// share it (the user in `redis_url` is then the Sentinels' alone; empty: the master's is
    /// the URL's too).
    pub sentinel_master_username: String,
    /// For `rediss://`: a PEM file of the CA certificates that may sign Redis's certificate,
    /// instead of the system's trusted roots (empty).
    pub tls_ca_file: String,
    /// For a Redis that asks clients for a certificate: its PEM file, and its key's.
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// How often the `tls_*` files are read again: a changed file (renewed by cert-manager,
    /// or by hand) is taken for the connections made after it (0: only at start).
    pub tls_reload_secs: u64,
}

/// `store.replica_ack_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaAckPolicy {
    /// Keep the request back until a replica acknowledges (sending stops meanwhile).
    #[default]
    Hold,
    /// Send anyway and log it: a failover in that moment may send the message twice.
    Send,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            backend: Backend::Redis,
            redis_url: String::new(),
            redis_password: Secret::default(),
            key_prefix: "herald".into(),
            pool_size: 32,
            timeout_ms: 5000,
            start_wait_secs: 120,
            replica_acks: 0,
            replica_ack_timeout_ms: 100,
            replica_ack_policy: ReplicaAckPolicy::Hold,
            delete_ended_after_days: 0,
            sentinel_master: String::new(),
            sentinel_master_password: Secret::default(),
            sentinel_master_username: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_reload_secs: 60,
        }
    }
}

impl StoreSection {
    /// What the Redis store waits for before a request goes out.
    pub fn replica_ack(&self) -> Option<herald_store_redis::ReplicaAck> {
        (self.replica_acks > 0).then(|| herald_store_redis::ReplicaAck {
            replicas: self.replica_acks,
            timeout: Duration::from_millis(self.replica_ack_timeout_ms),
            policy: match self.replica_ack_policy {
                ReplicaAckPolicy::Hold => herald_store_redis::ReplicaAckPolicy::Hold,
                ReplicaAckPolicy::Send => herald_store_redis::ReplicaAckPolicy::Send,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderSection {
    pub mps: u32,
    pub max_in_flight: usize,
    pub pair_interval_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub in_doubt_grace_secs: u64,
    /// `resend` (once, with the same callback id) or `fail`.
    pub in_doubt_policy: InDoubtPolicy,
    pub lease_secs: u64,
    pub shutdown_deadline_secs: u64,
    pub window_guard_ms: u64,
}

impl Default for SenderSection {
    fn default() -> Self {
        let d = SenderConfig::default();
        Self {
            mps: d.mps,
            max_in_flight: d.max_in_flight,
            pair_interval_ms: millis(d.pair_interval),
            max_attempts: d.backoff.max_attempts,
            backoff_base_ms: millis(d.backoff.base),
            backoff_max_ms: millis(d.backoff.max),
            in_doubt_grace_secs: d.in_doubt_grace.as_secs(),
            in_doubt_policy: InDoubtPolicy::Resend,
            lease_secs: d.lease.as_secs(),
            shutdown_deadline_secs: d.shutdown_deadline.as_secs(),
            window_guard_ms: millis(d.window_guard),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub api_key: Secret,
    /// Largest campaign body (`POST /v1/campaigns`).
    pub max_body_bytes: usize,
    /// Largest CSV upload; the upload is streamed, never held in memory.
    pub max_upload_bytes: u64,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request's headers must arrive within this (also closes idle keep-alive connections).
    pub header_read_timeout_ms: u64,
    /// A whole request, body included (uploads excepted).
    pub request_timeout_ms: u64,
    /// An upload whose body sends nothing for this long is cut off.
    pub body_idle_timeout_ms: u64,
    /// Different numbers one upload may hold (its dedupe table: 15–30 bytes each).
    pub max_upload_recipients: usize,
    /// Upload rejects stored per campaign for the failures report; beyond, only counted.
    pub max_stored_rejects: usize,
    /// How long a console sign-in lasts.
    pub console_session_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_key: Secret::default(),
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            body_idle_timeout_ms: 30_000,
            max_upload_recipients: 10_000_000,
            max_stored_rejects: 100_000,
            console_session_secs: 12 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhook {
    pub opt_out_keywords: Vec<String>,
    /// Whole-message keywords that opt a user back in (off the suppression list).
    pub opt_in_keywords: Vec<String>,
    /// A text confirming an opt-in, sent in the window the user's message opened (empty:
    /// none).
    pub opt_in_reply: String,
    /// A delivery that failed to apply this many times is kept as a dead letter.
    pub max_deliveries: u32,
    /// The most webhook bytes one reconciler read brings into memory.
    pub max_batch_bytes: usize,
}

impl Default for Webhook {
    fn default() -> Self {
        let c = herald_reconciler::ConsumerConfig::default();
        Self {
            opt_out_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
            opt_in_keywords: vec!["START".into()],
            opt_in_reply: String::new(),
            max_deliveries: c.max_deliveries,
            max_batch_bytes: c.max_batch_bytes,
        }
    }
}

/// The per-campaign metrics (`herald_campaign_*`), exported by the API process that leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// How often the leader reads the campaigns' stats (and renews its lead).
    pub campaign_refresh_ms: u64,
    /// How long a finished (completed or cancelled) campaign stays exported.
    pub campaign_retention_secs: u64,
    /// The most campaigns exported at once (the newest first).
    pub max_campaigns: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        let d = crate::server::campaign_metrics::ExportConfig::default();
        Self {
            campaign_refresh_ms: millis(d.refresh),
            campaign_retention_secs: d.retention.as_secs(),
            max_campaigns: d.max_campaigns,
        }
    }
}

/// Meta's messaging limit (ARCHITECTURE §13): a cap below it, and which phone numbers and
/// accounts share which business portfolio's limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingLimitSection {
    /// At most this many unique users per moving 24 h outside open windows, whatever Meta
    /// allows (0: Meta's limit only). It never raises Meta's.
    pub cap_users: u64,
    /// Portfolio name → its phone numbers and accounts; the rest form `default`.
    pub portfolios: BTreeMap<String, Portfolio>,
}

/// One business portfolio's phone numbers and WhatsApp Business Accounts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Portfolio {
    pub phone_number_ids: Vec<String>,
    pub waba_ids: Vec<String>,
}

impl MessagingLimitSection {
    /// What the sender enforces.
    pub fn limit_config(&self) -> herald_sender::LimitConfig {
        herald_sender::LimitConfig {
            portfolios: self
                .portfolios
                .iter()
                .flat_map(|(name, p)| {
                    p.phone_number_ids
                        .iter()
                        .map(|id| (id.clone(), name.clone()))
                })
                .collect(),
            cap: (self.cap_users > 0).then_some(self.cap_users),
        }
    }

    /// Account id → portfolio, for the limits Meta announces by webhook.
    pub fn waba_portfolios(&self) -> std::collections::HashMap<String, String> {
        self.portfolios
            .iter()
            .flat_map(|(name, p)| p.waba_ids.iter().map(|id| (id.clone(), name.clone())))
            .collect()
    }
}

/// What messages cost (ARCHITECTURE §14): the rate card, and what estimates assume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostSection {
    /// Rate card files, merged in order (later files add periods and markets, and replace an
    /// earlier rate for the same market, category and date). Empty: the card built into
    /// Herald ([`BUILT_IN_RATE_CARD`]).
    pub rate_cards: Vec<std::path::PathBuf>,
    /// The share of messages expected to be delivered (0 to 1): the low end of estimates.
    pub expected_delivery_rate: f64,
}

impl Default for CostSection {
    fn default() -> Self {
        Self {
            rate_cards: Vec::new(),
            expected_delivery_rate: 0.9,
        }
    }
}

/// The rate card shipped with Herald (`config/rates/meta-usd.toml`).
pub const BUILT_IN_RATE_CARD: &str = include_str!("../../../config/rates/meta-usd.toml");

impl CostSection {
    /// The configured rate card, read and checked; the error names the file and entry.
    pub fn rate_card(&self) -> Result<herald_core::cost::RateCard, ConfigError> {
        let files: Vec<(String, String)> = if self.rate_cards.is_empty() {
            vec![(
                "(built in) config/rates/meta-usd.toml".into(),
                BUILT_IN_RATE_CARD.into(),
            )]
        } else {
            self.rate_cards
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|t| (p.display().to_string(), t))
                        .map_err(|e| {
                            bad(
                                "cost.rate_cards",
                                format!("{}: cannot read: {e}", p.display()),
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        };
        herald_core::cost::RateCard::parse(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            .map_err(|e| bad("cost.rate_cards", e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: `info`, `herald=debug,info`, … (`RUST_LOG` wins when set).
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One compact, human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Reads `path` (or the defaults when `None`) and applies `env`'s overrides.
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| bad(p.display().to_string(), format!("cannot read: {e}")))?,
            None => String::new(),
        };
        Self::from_toml(&text, env)
    }

    /// Parses a file's text and applies `env`'s overrides, then validates.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let problem = e.message().to_owned();
            let key = e
                .span()
                .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_else(|| "config".into());
            bad(key, problem)
        })?;
        apply_env(&mut table, env)?;
        for (section, old, new) in RENAMED {
            if table
                .get(*section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(*old))
            {
                return Err(bad(format!("{section}.{old}"), *new));
            }
        }
        let de = toml::Value::Table(table);
        let cfg: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            let problem = inner.lines().next().unwrap_or("invalid").trim().to_owned();
            bad(key, problem)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.store.replica_acks > 0 && !(1..=60_000).contains(&self.store.replica_ack_timeout_ms)
        {
            return Err(bad(
                "store.replica_ack_timeout_ms",
                "must be between 1 and 60000 when store.replica_acks is set",
            ));
        }
        if !(0.0..=1.0).contains(&self.cost.expected_delivery_rate) {
            return Err(bad(
                "cost.expected_delivery_rate",
                "must be a share between 0 and 1",
            ));
        }
        self.cost.rate_card()?;
        let w = &self.whatsapp;
        let base = url_like(&w.api_base).map_err(|p| bad("whatsapp.api_base", p))?;
        if base.starts_with("http://")
            && !herald_cloudapi::is_loopback_url(&w.api_base)
            && !w.allow_plain_http
        {
            return Err(bad(
                "whatsapp.api_base",
                "plain http is only allowed to a loopback address (the simulator), or with \
                 whatsapp.allow_plain_http for a simulator elsewhere; Meta needs https",
            ));
        }
        if base.starts_with("http://") && url_host(&w.api_base).ends_with("facebook.com") {
            return Err(bad(
                "whatsapp.api_base",
                "Meta's Graph API needs https: the token would travel in clear",
            ));
        }
        if !w.api_version.starts_with('v') || w.api_version[1..].parse::<f32>().is_err() {
            return Err(bad(
                "whatsapp.api_version",
                format!(
                    "{:?} is not a Graph API version such as \"v21.0\"",
                    w.api_version
                ),
            ));
        }
        for (key, id) in [
            ("whatsapp.phone_number_id", &w.phone_number_id),
            ("whatsapp.waba_id", &w.waba_id),
        ] {
            if !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    key,
                    "must be the numeric id Meta shows (not a phone number with + or spaces)",
                ));
            }
        }
        if !(100..=600_000).contains(&w.request_timeout_ms) {
            return Err(bad(
                "whatsapp.request_timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        let s = &self.store;
        let redis_scheme = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        if !s.redis_url.is_empty() {
            let nodes: Vec<&str> = s.redis_url.split(',').map(str::trim).collect();
            if !nodes.iter().all(|u| redis_scheme(u)) {
                return Err(bad(
                    "store.redis_url",
                    "must start with redis:// or rediss:// (for a Cluster, each node of the \
                     comma-separated list)",
                ));
            }
            for (i, node) in nodes.iter().enumerate() {
                check_redis_url(node, &s.redis_password).map_err(|problem| {
                    let which = if nodes.len() > 1 {
                        format!("names, as its node {}, {}, which ", i + 1, redact_url(node))
                    } else {
                        String::new()
                    };
                    bad("store.redis_url", format!("{which}{problem}"))
                })?;
            }
            if nodes.len() > 1
                && !matches!(s.backend, Backend::RedisCluster | Backend::RedisSentinel)
            {
                return Err(bad(
                    "store.redis_url",
                    "names several nodes: set store.backend = \"redis_cluster\" for a Redis \
                     Cluster, or \"redis_sentinel\" for Sentinels",
                ));
            }
        }
        if s.backend == Backend::RedisSentinel && s.sentinel_master.is_empty() {
            return Err(bad(
                "store.sentinel_master",
                "is empty: with store.backend = \"redis_sentinel\", name the master the \
                 Sentinels watch (their `sentinel monitor <name>`; \"mymaster\" in most charts)",
            ));
        }
        if s.backend != Backend::RedisSentinel && !s.sentinel_master_password.is_empty() {
            return Err(bad(
                "store.sentinel_master_password",
                "is set, but store.backend is not \"redis_sentinel\": without Sentinels the \
                 password goes in store.redis_password (REDIS_PASSWORD) or store.redis_url",
            ));
        }
        if s.backend != Backend::RedisSentinel && !s.sentinel_master_username.is_empty() {
            return Err(bad(
                "store.sentinel_master_username",
                "is set, but store.backend is not \"redis_sentinel\": without Sentinels the \
                 user goes in store.redis_url (REDIS_URL), as redis://user:password@host",
            ));
        }
        if s.sentinel_master_username.contains(char::is_whitespace) {
            return Err(bad(
                "store.sentinel_master_username",
                "has a space in it: an ACL user name has none",
            ));
        }
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            let (set, unset) = if s.tls_cert_file.is_empty() {
                ("store.tls_key_file", "store.tls_cert_file")
            } else {
                ("store.tls_cert_file", "store.tls_key_file")
            };
            return Err(bad(
                unset,
                format!("is empty while {set} is set: a client certificate needs its key"),
            ));
        }
        let tls_file = [
            ("store.tls_ca_file", &s.tls_ca_file),
            ("store.tls_cert_file", &s.tls_cert_file),
        ]
        .into_iter()
        .find(|(_, f)| !f.is_empty());
        if let Some((key, _)) = tls_file
            && s.redis_url.starts_with("redis://")
        {
            return Err(bad(
                key,
                "is set, but store.redis_url is redis://, which does not use TLS: write rediss:// \
                 (for a Cluster, for each node)",
            ));
        }
        if s.key_prefix.is_empty() || s.key_prefix.contains(['{', '}', ' ']) {
            return Err(bad(
                "store.key_prefix",
                "must be non-empty, without braces or spaces",
            ));
        }
        if s.pool_size == 0 || s.pool_size > 1024 {
            return Err(bad("store.pool_size", "must be between 1 and 1024"));
        }
        if s.timeout_ms < 10 {
            return Err(bad("store.timeout_ms", "must be at least 10"));
        }
        if self.sender.mps > herald_sender::MAX_MPS {
            return Err(bad(
                "sender.mps",
                format!(
                    "must be between 1 and {} (Meta's most per phone number)",
                    herald_sender::MAX_MPS
                ),
            ));
        }
        self.sender_config(None)
            .validate()
            .map_err(|e| bad(format!("sender.{}", e.key), e.problem))?;
        self.listen_addr()?;
        if self.server.max_body_bytes < 1024 {
            return Err(bad("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.max_upload_recipients == 0 {
            return Err(bad("server.max_upload_recipients", "must be at least 1"));
        }
        if self.server.max_connections == 0 || self.server.max_connections > 1_000_000 {
            return Err(bad(
                "server.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        for (key, ms) in [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.body_idle_timeout_ms",
                self.server.body_idle_timeout_ms,
            ),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(bad(key, "must be between 100 and 3600000"));
            }
        }
        if self.webhook.max_deliveries == 0 {
            return Err(bad("webhook.max_deliveries", "must be at least 1"));
        }
        if self.webhook.max_batch_bytes < herald_reconciler::BODY_LIMIT {
            return Err(bad(
                "webhook.max_batch_bytes",
                format!(
                    "must hold at least one delivery of the largest size taken ({} bytes)",
                    herald_reconciler::BODY_LIMIT
                ),
            ));
        }
        let w = &self.webhook;
        for (key, words) in [
            ("webhook.opt_out_keywords", &w.opt_out_keywords),
            ("webhook.opt_in_keywords", &w.opt_in_keywords),
        ] {
            if words.iter().any(|k| k.trim().is_empty()) {
                return Err(bad(key, "keywords must not be empty"));
            }
        }
        if w.opt_in_reply.chars().count() > 4096 {
            return Err(bad(
                "webhook.opt_in_reply",
                "at most 4096 characters (a text message's limit)",
            ));
        }
        if let Some(k) = w.opt_in_keywords.iter().find(|k| {
            w.opt_out_keywords
                .iter()
                .any(|o| o.trim().eq_ignore_ascii_case(k.trim()))
        }) {
            return Err(bad(
                "webhook.opt_in_keywords",
                format!("{k:?} is also an opt-out keyword"),
            ));
        }
        let m = &self.metrics;
        if !(500..=600_000).contains(&m.campaign_refresh_ms) {
            return Err(bad(
                "metrics.campaign_refresh_ms",
                "must be between 500 and 600000",
            ));
        }
        if m.campaign_retention_secs > 7 * 86_400 {
            return Err(bad(
                "metrics.campaign_retention_secs",
                "must be at most 604800 (a week)",
            ));
        }
        if !(1..=10_000).contains(&m.max_campaigns) {
            return Err(bad("metrics.max_campaigns", "must be between 1 and 10000"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| bad("log.level", e.to_string()))?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            bad(
                "server.listen",
                format!(
                    "{:?} is not an address such as 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })
    }

    /// The sender's settings. `phone_number_ids`: only these numbers (`None`: all).
    pub fn sender_config(&self, phone_number_ids: Option<Vec<String>>) -> SenderConfig {
        let s = &self.sender;
        SenderConfig {
            mps: s.mps,
            max_in_flight: s.max_in_flight,
            pair_interval: Duration::from_millis(s.pair_interval_ms),
            backoff: Backoff {
                base: Duration::from_millis(s.backoff_base_ms),
                max: Duration::from_millis(s.backoff_max_ms),
                max_attempts: s.max_attempts,
            },
            in_doubt_grace: Duration::from_secs(s.in_doubt_grace_secs),
            in_doubt_policy: s.in_doubt_policy,
            lease: Duration::from_secs(s.lease_secs),
            shutdown_deadline: Duration::from_secs(s.shutdown_deadline_secs),
            window_guard: Duration::from_millis(s.window_guard_ms),
            phone_number_ids,
            messaging_limit: self.messaging_limit.limit_config(),
            rate_card: self.cost.rate_card().ok().map(std::sync::Arc::new),
            delete_ended_after: (self.store.delete_ended_after_days > 0).then(|| {
                Duration::from_secs(self.store.delete_ended_after_days.saturating_mul(86_400))
            }),
            ..SenderConfig::default()
        }
    }

    /// What a client may hold of the listener.
    pub fn listen_limits(&self) -> crate::server::listen::Limits {
        let s = &self.server;
        crate::server::listen::Limits {
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            request_timeout: Duration::from_millis(s.request_timeout_ms),
            drain: Duration::from_secs(10),
        }
    }

    /// The per-campaign metrics exporter's settings.
    pub fn export_config(&self) -> crate::server::campaign_metrics::ExportConfig {
        let m = &self.metrics;
        crate::server::campaign_metrics::ExportConfig {
            refresh: Duration::from_millis(m.campaign_refresh_ms),
            retention: Duration::from_secs(m.campaign_retention_secs),
            max_campaigns: m.max_campaigns,
            messaging_limit: self.messaging_limit.limit_config(),
            cost: crate::server::cost::CostSettings::from_config(self),
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let w = &self.whatsapp;
        ClientConfig {
            api_base: w.api_base.clone(),
            api_version: w.api_version.clone(),
            access_token: w.access_token.clone(),
            request_timeout: Duration::from_millis(w.request_timeout_ms),
            max_idle_per_host: self.sender.max_in_flight.max(16),
            ..ClientConfig::default()
        }
    }

    /// The Redis URL (its nodes, comma separated) with `store.redis_password` in each, or why
    /// there is none.
    pub fn redis_url(&self) -> Result<String, ConfigError> {
        if self.store.redis_url.is_empty() {
            return Err(bad(
                "store.redis_url",
                "is empty: set REDIS_URL or store.redis_url (e.g. redis://127.0.0.1:6379), \
                 or store.backend = \"memory\" to keep everything in this process (nothing \
                 survives a restart)",
            ));
        }
        let password = self.store.redis_password.expose();
        if password.is_empty() {
            return Ok(self.store.redis_url.clone());
        }
        let mut nodes = Vec::new();
        for node in self.store.redis_url.split(',').map(str::trim) {
            let mut url = url::Url::parse(node)
                .map_err(|e| bad("store.redis_url", format!("does not parse: {e}")))?;
            url.set_password(Some(password))
                .map_err(|()| bad("store.redis_url", "names no host to give the password for"))?;
            nodes.push(url.to_string());
        }
        Ok(nodes.join(","))
    }

    /// What a `rediss://` connection trusts and shows: the files `store.tls_*` name, read.
    pub fn redis_tls(&self) -> Result<herald_store_redis::RedisTls, ConfigError> {
        let read = |key: &str, path: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(path)
                .map(Some)
                .map_err(|e| bad(key, format!("{path}: cannot read: {e}")))
        };
        let s = &self.store;
        let cert = read("store.tls_cert_file", &s.tls_cert_file)?;
        let key = read("store.tls_key_file", &s.tls_key_file)?;
        Ok(herald_store_redis::RedisTls {
            ca_pem: read("store.tls_ca_file", &s.tls_ca_file)?,
            client: cert
                .zip(key)
                .map(|(cert_pem, key_pem)| herald_store_redis::ClientCert { cert_pem, key_pem }),
        })
    }

    /// The effective settings as TOML; secrets show only as `<redacted>` or `<empty>`
    /// (their `Serialize` never writes the value).
    pub fn redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
    }

    /// Problems that do not stop Herald but that the operator should know about.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let wa = &self.whatsapp;
        if wa.phone_number_id.is_empty() {
            w.push("whatsapp.phone_number_id is empty: every campaign must name its own".into());
        }
        if wa.access_token.is_empty() {
            w.push("whatsapp.access_token is empty: sends will fail with 190".into());
        }
        if wa.app_secret.is_empty() {
            w.push(
                "whatsapp.app_secret is empty: POST /webhook answers 503 to every delivery \
                 (nothing unsigned is ever applied); Meta retries them for up to 7 days"
                    .into(),
            );
        }
        if wa.verify_token.is_empty() {
            w.push("whatsapp.verify_token is empty: Meta's webhook handshake will fail".into());
        }
        match self.store.backend {
            Backend::Redis | Backend::RedisCluster | Backend::RedisSentinel
                if self.store.redis_url.is_empty() =>
            {
                w.push("store.redis_url is empty: set REDIS_URL".into());
            }
            Backend::Memory => w.push(
                "store.backend is memory: nothing survives a restart, and only `herald serve` \
                 (every role in one process) can use it"
                    .into(),
            ),
            Backend::RedisSentinel if self.store.replica_acks == 0 => w.push(
                "store.replica_acks is 0 behind Sentinel: a failover can lose the mark that a \
                 request may be on the wire, and send that message twice; set 1"
                    .into(),
            ),
            Backend::Redis | Backend::RedisCluster | Backend::RedisSentinel => {}
        }
        let key = self.server.api_key.expose();
        if key.is_empty() {
            w.push("server.api_key is empty: the API will listen on loopback only".into());
        } else if key.chars().count() < API_KEY_ADVISED_CHARS {
            w.push(format!(
                "server.api_key is {} characters long: use {API_KEY_ADVISED_CHARS} or more random \
                 characters (e.g. `openssl rand -hex 24`); the API and the console accept it from \
                 anyone who reaches the port, and do not limit attempts",
                key.chars().count()
            ));
        }
        w
    }
}

/// An API key shorter than this is warned about at start: a guessable key is the one way
/// into the API and the console.
pub const API_KEY_ADVISED_CHARS: usize = 32;

/// A URL without the credentials it may carry (`redis://user:secret@host` →
/// `redis://***@host`), for anything shown or logged.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a Redis URL (one node) would not reach the Redis meant, if it would not: it does not
/// parse, or its database or a `#` shows a password with a character the URL must
/// percent-encode; or its password is not `password`, when that is given.
fn check_redis_url(node: &str, password: &Secret) -> Result<(), String> {
    const ENCODE: &str = "a password holding @ / # ? % : or a space must percent-encode them \
                          in the URL (@ %40, / %2F, # %23, ? %3F, % %25, : %3A, space %20), \
                          or leave the URL without it and give it in store.redis_password \
                          (REDIS_PASSWORD), as it is";
    let url =
        url::Url::parse(node).map_err(|e| format!("does not parse as a URL ({e}): {ENCODE}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("names no host: {ENCODE}"));
    }
    // redis-rs reads `#insecure` (no certificate check), which the store refuses by name.
    // Neither the host nor the path is shown: read so, they may hold part of the password.
    if url.fragment().is_some_and(|f| f != "insecure") {
        return Err(format!(
            "holds a #, so what follows it is not read (another host may be reached): {ENCODE}"
        ));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("names a database that is not a number: {ENCODE}"));
    }
    let given = password.expose();
    if !given.is_empty()
        && let Some(in_url) = url.password()
    {
        let in_url = percent_encoding::percent_decode_str(in_url).decode_utf8_lossy();
        if in_url != given {
            return Err(
                "holds a password, and store.redis_password (REDIS_PASSWORD) another: \
                        give it in one place"
                    .into(),
            );
        }
    }
    Ok(())
}

fn serialize_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

fn url_like(s: &str) -> Result<&str, String> {
    if (s.starts_with("https://") || s.starts_with("http://")) && s.len() > 8 {
        Ok(s)
    } else {
        Err(format!("{s:?} is not an http(s) URL"))
    }
}

/// The host of an http(s) URL, lowercased (`[::1]` stays bracketed).
fn url_host(s: &str) -> String {
    let rest = s
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Writes the environment's overrides into the table.
fn apply_env(table: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let defaults =
        toml::Table::try_from(Config::default()).map_err(|e| bad("config", e.to_string()))?;
    let mut set = |var: &str, section: &str, key: &str, raw: &str| -> Result<(), ConfigError> {
        let Some(default) = defaults
            .get(section)
            .and_then(toml::Value::as_table)
            .and_then(|t| t.get(key))
        else {
            return Err(bad(
                var,
                format!("sets {section}.{key}, which is not a configuration key"),
            ));
        };
        let value = parse_like(default, raw).map_err(|p| bad(var, p))?;
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section {
            toml::Value::Table(t) => {
                t.insert(key.to_owned(), value);
                Ok(())
            }
            _ => Err(bad(var, "its section is not a table in the file")),
        }
    };
    for (var, section, key) in PLATFORM_ENV {
        if let Some(raw) = env.get(*var) {
            set(var, section, key, raw)?;
        }
    }
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("HERALD_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        set(
            var,
            &section.to_ascii_lowercase(),
            &key.to_ascii_lowercase(),
            raw,
        )?;
    }
    Ok(())
}

/// Reads an environment value as the type the key has.
fn parse_like(default: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a whole number"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a number"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not true or false"))?,
        ),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        _ => return Err("this key cannot be set from the environment".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_shipped_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../../config/herald.toml");
        let cfg = Config::from_toml(text, &BTreeMap::new()).expect("valid");
        assert_eq!(
            cfg,
            Config::default(),
            "config/herald.toml documents the defaults"
        );
    }

    #[test]
    fn a_short_api_key_is_warned_about_and_never_shown() {
        let key_warning = |key: &str| {
            let cfg = Config::from_toml("", &env(&[("HERALD_API_KEY", key)])).unwrap();
            cfg.warnings()
                .into_iter()
                .find(|w| w.starts_with("server.api_key"))
        };
        let short = key_warning("hunter2").expect("a warning");
        assert!(short.contains("is 7 characters long"), "{short}");
        assert!(
            !short.contains("hunter2"),
            "the key is never shown: {short}"
        );
        assert_eq!(key_warning(&"k".repeat(API_KEY_ADVISED_CHARS)), None);
        assert!(key_warning("").unwrap().contains("loopback only"));
    }

    #[test]
    fn the_shipped_rate_card_prices_every_market_and_category() {
        use herald_core::cost::{CHARGED_CATEGORIES, Market};
        let card = CostSection::default().rate_card().expect("valid");
        assert_eq!(card.currency(), "USD");
        let day: jiff::civil::Date = "2026-12-02".parse().unwrap();
        let market = |r: &str| card.market(r.parse().unwrap());
        for (region, want) in [
            ("US", "north_america"),
            ("CA", "north_america"),
            ("JM", "rest_of_latin_america"),
            ("IN", "india"),
            ("ZW", "rest_of_africa"),
            // +44, so priced as the United Kingdom.
            ("GG", "united_kingdom"),
            ("JE", "united_kingdom"),
            ("FJ", "other"),
        ] {
            assert_eq!(market(region), Market::Known(want), "{region}");
        }
        // Every market the card names has a rate for every charged category.
        let text = BUILT_IN_RATE_CARD;
        let markets: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "[markets]")
            .skip(1)
            .take_while(|l| !l.starts_with("[["))
            .filter_map(|l| l.split_once(" = ").map(|(m, _)| m))
            .chain(["other"])
            .collect();
        assert!(markets.len() > 30, "{markets:?}");
        for m in markets {
            for c in CHARGED_CATEGORIES {
                assert!(card.price(&Market::Known(m), c, day).is_some(), "{m} {c}");
            }
        }
    }

    #[test]
    fn a_rate_card_that_cannot_be_read_is_named() {
        let e = Config::from_toml(
            "[cost]\nrate_cards = [\"/nonexistent/rates.toml\"]\n",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cost.rate_cards"), "{e}");
        assert!(e.to_string().contains("/nonexistent/rates.toml"), "{e}");
        let e = Config::from_toml("[cost]\nexpected_delivery_rate = 1.5\n", &BTreeMap::new())
            .unwrap_err();
        assert!(e.to_string().contains("cost.expected_delivery_rate"), "{e}");
    }

    #[test]
    fn environment_overrides_use_both_naming_schemes() {
        let cfg = Config::from_toml(
            "[sender]\nmps = 100\n",
            &env(&[
                ("HERALD_SENDER__MPS", "200"),
                ("WA_PHONE_NUMBER_ID", "106540352242922"),
                ("REDIS_URL", "redis://127.0.0.1:6390"),
                ("HERALD_WEBHOOK__OPT_OUT_KEYWORDS", "STOP, BAJA"),
                ("HERALD_API_KEY", "k"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.sender.mps, 200);
        assert_eq!(cfg.whatsapp.phone_number_id, "106540352242922");
        assert_eq!(cfg.store.redis_url, "redis://127.0.0.1:6390");
        assert_eq!(cfg.webhook.opt_out_keywords, ["STOP", "BAJA"]);
        assert_eq!(cfg.server.api_key.expose(), "k");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[sender]\nmpx = 1\n", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("mpx"), "{e}");
        let e = Config::from_toml("[sender]\nmps = \"fast\"\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "sender.mps", "{e}");
        let e = Config::from_toml("[sender]\nmps = 5000\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "sender.mps", "{e}");
        let e = Config::from_toml("", &env(&[("HERALD_SENDER__MPX", "1")])).unwrap_err();
        assert_eq!(e.key, "HERALD_SENDER__MPX", "{e}");
        let e = Config::from_toml("", &env(&[("HERALD_SENDER__MPS", "lots")])).unwrap_err();
        assert_eq!(e.key, "HERALD_SENDER__MPS", "{e}");
        // Enumerations name their key and the values they take.
        for (text, key) in [
            (
                "[sender]\nin_doubt_policy = \"maybe\"\n",
                "sender.in_doubt_policy",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
        ] {
            let e = Config::from_toml(text, &BTreeMap::new()).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().contains("unknown variant"), "{e}");
        }
        let e =
            Config::from_toml("[server]\nlisten = \"nowhere\"\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "server.listen", "{e}");
        let e = Config::from_toml(
            "[whatsapp]\napi_base = \"http://graph.example.com\"\n",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(e.key, "whatsapp.api_base", "{e}");
        // A simulator in another container, by explicit consent; Meta never over http.
        let sim = "[whatsapp]\nallow_plain_http = true\napi_base = \"http://sim:7000\"\n";
        assert!(Config::from_toml(sim, &BTreeMap::new()).is_ok());
        for meta in [
            "http://graph.facebook.com",
            "http://user@GRAPH.Facebook.com.:80/v21.0",
        ] {
            let text = format!("[whatsapp]\nallow_plain_http = true\napi_base = \"{meta}\"\n");
            let e = Config::from_toml(&text, &BTreeMap::new()).unwrap_err();
            assert_eq!(e.key, "whatsapp.api_base", "{e}");
        }
        let e = Config::from_toml("[sender]\npace_margin = 0.005\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "sender.pace_margin", "{e}");
        assert!(e.problem.contains("window_guard_ms"), "{e}");
        let e = Config::from_toml("[sender\n", &BTreeMap::new()).unwrap_err();
        assert!(e.key.starts_with("line"), "{e}");
    }

    /// A password with characters a URL must percent-encode, written into it as it is, would
    /// reach another host or database, or not parse: refused, saying how to write it; given in
    /// store.redis_password (REDIS_PASSWORD) as it is, it goes into every node, encoded.
    #[test]
    fn a_redis_password_need_not_be_percent_encoded() {
        let url = |u: &str| Config::from_toml("", &env(&[("REDIS_URL", u)]));
        for (written, says) in [
            ("redis://:qx/kw@127.0.0.1:6379", "does not parse"),
            ("redis://:p@zq#9@127.0.0.1:6379", "holds a #"),
            ("redis://:a?b@10.0.0.5:6379", "does not parse"),
            ("redis://10.0.0.5:6379/x/vq@jk", "not a number"),
        ] {
            let e = url(written).unwrap_err();
            assert_eq!(e.key, "store.redis_url", "{written}: {e}");
            assert!(e.problem.contains(says), "{written}: {e}");
            assert!(
                e.problem.contains("%2F") && e.problem.contains("REDIS_PASSWORD"),
                "{e}"
            );
            // No part of a password is shown (`zq` is one here, read as the host).
            for part in ["qx", "kw", "zq", "vq"] {
                assert!(!e.to_string().contains(part), "{part}: {e}");
            }
        }
        // Encoded, or with characters a URL takes as they are, they pass.
        for fine in [
            "redis://:ab%2Fcd@127.0.0.1:6379/0",
            "redis://:p%40ss%231@127.0.0.1:6379",
            "redis://:a+b=c@127.0.0.1:6379",
            "rediss://10.0.0.5:6380/#insecure",
        ] {
            assert!(url(fine).is_ok(), "{fine}");
        }
        let nodes = "redis://10.0.0.1:7000,redis://u@10.0.0.2:7000/0";
        let pw = "a/b#c?d@e%f: g+h=";
        let cfg = Config::from_toml(
            "[store]\nbackend = \"redis_cluster\"\n",
            &env(&[("REDIS_URL", nodes), ("REDIS_PASSWORD", pw)]),
        )
        .expect("valid");
        let urls = cfg.redis_url().unwrap();
        assert!(!format!("{cfg:?}").contains("g+h") && !cfg.redacted_toml().contains("g+h"));
        let parsed: Vec<url::Url> = urls.split(',').map(|u| u.parse().unwrap()).collect();
        assert_eq!(parsed.len(), 2, "{urls}");
        for u in &parsed {
            let decoded = percent_encoding::percent_decode_str(u.password().unwrap());
            assert_eq!(decoded.decode_utf8().unwrap(), pw, "{u}");
        }
        assert_eq!(
            (parsed[0].host_str(), parsed[1].username(), parsed[1].path()),
            (Some("10.0.0.1"), "u", "/0")
        );
        // The same password in both places is fine (a Secret that holds both); two are not.
        let both =
            |u: &str| Config::from_toml("", &env(&[("REDIS_URL", u), ("REDIS_PASSWORD", pw)]));
        assert!(both("redis://:a%2Fb%23c%3Fd%40e%25f%3A%20g+h=@10.0.0.5:6379").is_ok());
        let e = both("redis://:other@10.0.0.5:6379").unwrap_err();
        assert!(e.problem.contains("give it in one place"), "{e}");
    }

    #[test]
    fn a_cluster_is_named_by_its_nodes() {
        let nodes = "redis://10.0.0.1:7000, redis://10.0.0.2:7000";
        let text = format!("[store]\nbackend = \"redis_cluster\"\nredis_url = \"{nodes}\"\n");
        let cfg = Config::from_toml(&text, &BTreeMap::new()).expect("valid");
        assert_eq!(cfg.store.backend, Backend::RedisCluster);
        // Several nodes without saying it is a cluster, or a node that is not a Redis URL.
        let text = format!("[store]\nredis_url = \"{nodes}\"\n");
        let e = Config::from_toml(&text, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "store.redis_url", "{e}");
        assert!(e.problem.contains("redis_cluster"), "{e}");
        let text = "[store]\nbackend = \"redis_cluster\"\nredis_url = \"redis://a:1,b:2\"\n";
        let e = Config::from_toml(text, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "store.redis_url", "{e}");
    }

    #[test]
    fn sentinels_need_the_master_name() {
        let sentinels = "redis://:pw@s0:26379,redis://:pw@s1:26379";
        let text = format!("[store]\nbackend = \"redis_sentinel\"\nredis_url = \"{sentinels}\"\n");
        let e = Config::from_toml(&text, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "store.sentinel_master", "{e}");
        let text = format!("{text}sentinel_master = \"mymaster\"\n");
        let cfg = Config::from_toml(&text, &BTreeMap::new()).expect("valid");
        assert_eq!(cfg.store.backend, Backend::RedisSentinel);
        assert_eq!(cfg.store.sentinel_master, "mymaster");
        let advice = |cfg: &Config| cfg.warnings().iter().any(|w| w.contains("replica_acks"));
        assert!(advice(&cfg), "{:?}", cfg.warnings());
        let text = format!("{text}replica_acks = 1\n");
        let cfg = Config::from_toml(&text, &BTreeMap::new()).expect("valid");
        assert!(!advice(&cfg), "{:?}", cfg.warnings());
    }

    #[test]
    fn the_masters_own_password_is_a_secret_and_only_behind_sentinels() {
        let text = "[store]\nbackend = \"redis_sentinel\"\nredis_url = \"redis://s0:26379\"\n\
                    sentinel_master = \"mymaster\"\n";
        let pw = env(&[("HERALD_STORE__SENTINEL_MASTER_PASSWORD", "m4ster")]);
        let cfg = Config::from_toml(text, &pw).expect("valid");
        assert_eq!(cfg.store.sentinel_master_password.expose(), "m4ster");
        let shown = cfg.redacted_toml();
        assert!(!shown.contains("m4ster"), "{shown}");
        assert!(
            shown.contains("sentinel_master_password = \"<redacted>\""),
            "{shown}"
        );
        assert!(!format!("{cfg:?}").contains("m4ster"));
        // Without Sentinels, the password belongs in the URL.
        let e = Config::from_toml("[store]\nredis_url = \"redis://r:6379\"\n", &pw).unwrap_err();
        assert_eq!(e.key, "store.sentinel_master_password", "{e}");
        assert!(e.problem.contains("redis_url"), "{e}");
    }

    #[test]
    fn the_masters_own_user_is_only_behind_sentinels() {
        let text = "[store]\nbackend = \"redis_sentinel\"\nredis_url = \"redis://s0:26379\"\n\
                    sentinel_master = \"mymaster\"\nsentinel_master_username = \"herald\"\n";
        let cfg = Config::from_toml(text, &BTreeMap::new()).expect("valid");
        assert_eq!(cfg.store.sentinel_master_username, "herald");
        let e = Config::from_toml(&text.replace("\"herald\"", "\"her ald\""), &BTreeMap::new())
            .unwrap_err();
        assert_eq!(e.key, "store.sentinel_master_username", "{e}");
        let e = Config::from_toml(
            "[store]\nredis_url = \"redis://r:6379\"\nsentinel_master_username = \"herald\"\n",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(e.key, "store.sentinel_master_username", "{e}");
        assert!(e.problem.contains("redis_url"), "{e}");
    }

    #[test]
    fn redis_tls_files_are_checked_and_read() {
        let load = |store: &str| Config::from_toml(&format!("[store]\n{store}"), &BTreeMap::new());
        // A certificate without its key, or the other way round.
        let e = load("redis_url = \"rediss://r:6380\"\ntls_cert_file = \"c.pem\"\n").unwrap_err();
        assert_eq!(e.key, "store.tls_key_file", "{e}");
        let e = load("redis_url = \"rediss://r:6380\"\ntls_key_file = \"k.pem\"\n").unwrap_err();
        assert_eq!(e.key, "store.tls_cert_file", "{e}");
        // Certificates for a connection without TLS.
        let e = load("redis_url = \"redis://r:6379\"\ntls_ca_file = \"ca.pem\"\n").unwrap_err();
        assert_eq!(e.key, "store.tls_ca_file", "{e}");
        assert!(e.problem.contains("rediss://"), "{e}");
        // Read when connecting: a missing file is named with its key.
        let dir = std::env::temp_dir().join(format!("herald-cfg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "PEM").unwrap();
        let cfg = load(&format!(
            "redis_url = \"rediss://r:6380\"\ntls_ca_file = \"{}\"\n",
            ca.display()
        ))
        .unwrap();
        let tls = cfg.redis_tls().unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert!(tls.client.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        let e = cfg.redis_tls().unwrap_err();
        assert_eq!(e.key, "store.tls_ca_file", "{e}");
        assert!(e.problem.contains("ca.pem: cannot read"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let cfg = Config::from_toml(
            "",
            &env(&[
                ("WA_ACCESS_TOKEN", "EAAG-secret"),
                ("WA_APP_SECRET", "s3cr3t"),
            ]),
        )
        .expect("valid");
        let shown = cfg.redacted_toml();
        assert!(
            !shown.contains("EAAG-secret") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(shown.contains("access_token = \"<redacted>\""), "{shown}");
        assert!(shown.contains("verify_token = \"<empty>\""), "{shown}");
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }
}
