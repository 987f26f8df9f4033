//! Herald's store on Redis: redis + deadpool-redis, one Lua script per multi-key transition.
//!
//! Scripts are registered once and called with EVALSHA (redis-rs reloads them on NOSCRIPT,
//! e.g. after a Redis restart). Every call goes through `conn.rs`, which maps each error to a
//! [`StoreError`] in one place: connection trouble is `Unavailable` (retryable), never a panic.
//! The `Store` methods live in one module per concern; `store.rs` forwards to them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use herald_core::{
    CampaignId, CampaignSpec, CampaignStatus, DeliveryState, JobId, PauseReason, PhoneE164,
    SkipReason, WaMessageId,
};
use redis::{RedisError, Script};

use herald_store::{Campaign, JobState, JobView, RunningCampaign, StoreError};

use crate::conn::{Conn, Link, Run};
use crate::keys::Keys;

mod campaigns;
mod cluster;
mod conn;
mod jobs;
mod keys;
mod pacing;
mod reach;
mod recipients;
mod replicas;
mod report;
mod sentinel;
mod statuses;
mod store;
mod stream;
#[cfg(feature = "testsuite")]
pub mod testing;
mod tls;

pub use tls::{ClientCert, RedisTls};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port` (or `rediss://`); for a Cluster, one or more of its nodes, comma
    /// separated (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`): the rest are discovered.
    pub url: String,
    /// The URL names nodes of a Redis Cluster.
    pub cluster: bool,
    /// The URL names Sentinels (comma separated), and this is the name of the master they
    /// watch (`sentinel monitor <name> …`): the store connects to whichever node they say is
    /// the master, and follows it through a failover. The master is reached with the first
    /// URL's user, password and database, unless it has a password of its own.
    pub sentinel_master: Option<String>,
    /// Behind Sentinel, the master's password when it is not the Sentinels' (the password in
    /// the URL, if any, is then the Sentinels' alone).
    pub sentinel_master_password: Option<Password>,
    /// Behind Sentinel, the master's ACL user when it is not the Sentinels' (the user in the
    /// URL, if any, is then the Sentinels' alone).
    pub sentinel_master_username: Option<String>,
    /// Every key starts with this (tests use a random one).
    pub key_prefix: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long to wait for a connection or a reply before the store counts as unavailable.
    pub timeout: Duration,
    /// Replicas that must hold a job's "started" mark before its request may go out (`WAIT`;
    /// `None`: do not wait). A failover to a replica that never got the mark would forget
    /// that the request may be on the wire, and the job would be sent again.
    pub replica_ack: Option<ReplicaAck>,
    /// For `rediss://`: the CA to trust instead of the system's, and a client certificate.
    pub tls: RedisTls,
}

/// A password, never shown in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How many replicas must acknowledge a start, how long to wait, and what to do when fewer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAck {
    pub replicas: u32,
    pub timeout: Duration,
    pub policy: ReplicaAckPolicy,
}

/// What a start, or a webhook delivery, does when fewer replicas than asked acknowledge it
/// in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaAckPolicy {
    /// Go on, and say so in the log: a failover in that moment may send a job twice, or lose
    /// the statuses of a delivery.
    Send,
    /// Refuse: the start fails as "unavailable", the jobs go back to pending, and the sender
    /// tries again (sending stops while no replica answers); a webhook delivery is answered
    /// 503, and Meta delivers it again later.
    Hold,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            sentinel_master: None,
            sentinel_master_password: None,
            sentinel_master_username: None,
            key_prefix: key_prefix.into(),
            pool_size: 32,
            timeout: Duration::from_secs(5),
            replica_ack: None,
            tls: RedisTls::default(),
        }
    }
}

/// The scripts, each prefixed with the shared helpers where it needs them.
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) claim: Script,
    pub(crate) start: Script,
    pub(crate) settle: Script,
    pub(crate) renew: Script,
    pub(crate) reclaim: Script,
    pub(crate) doubt: Script,
    pub(crate) status: Script,
    pub(crate) cancel: Script,
    pub(crate) transition: Script,
    pub(crate) reply: Script,
    pub(crate) upload: Script,
    pub(crate) rejects: Script,
    pub(crate) evidence: Script,
    pub(crate) lead: Script,
    pub(crate) plan: Script,
    pub(crate) moved: Script,
    pub(crate) pair: Script,
    pub(crate) unpair: Script,
    pub(crate) link: Script,
    pub(crate) reach: Script,
    pub(crate) unreach: Script,
    pub(crate) respec: Script,
}

const COMMON: &str = include_str!("../lua/common.lua");

/// The first line of every script (Redis 7's script flags). A script that may write is
/// refused whole, before it runs, while Redis is out of memory (`maxmemory` reached with
/// `noeviction`): without the flags Redis checks only a script's first write, and a claim,
/// whose first write (an `LPOP`) frees memory, would go on to claim jobs and let their sends
/// go out with nowhere to record the answers.
const REFUSED_WHEN_FULL: &str = "#!lua";
/// The same for the two scripts that only keep what exists alive (a claim's lease, a role's
/// lead) and grow nothing: they run on a full Redis, so that no held job falls in doubt and
/// no role loses its holder while memory is freed.
const RUNS_WHEN_FULL: &str = "#!lua flags=allow-oom";

/// A script: its first line, then its parts.
fn script(first_line: &str, parts: &[&str]) -> Script {
    Script::new(&format!("{first_line}\n{}", parts.join("\n")))
}

fn with_common(body: &str) -> Script {
    script(REFUSED_WHEN_FULL, &[COMMON, body])
}

fn alone(body: &str) -> Script {
    script(REFUSED_WHEN_FULL, &[body])
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: with_common(include_str!("../lua/enqueue.lua")),
            claim: with_common(include_str!("../lua/claim.lua")),
            start: with_common(include_str!("../lua/start.lua")),
            settle: with_common(include_str!("../lua/settle.lua")),
            renew: script(RUNS_WHEN_FULL, &[COMMON, include_str!("../lua/renew.lua")]),
            reclaim: with_common(include_str!("../lua/reclaim.lua")),
            doubt: with_common(include_str!("../lua/doubt.lua")),
            status: with_common(include_str!("../lua/status.lua")),
            cancel: with_common(include_str!("../lua/cancel.lua")),
            transition: with_common(include_str!("../lua/transition.lua")),
            reply: with_common(include_str!("../lua/reply.lua")),
            upload: with_common(include_str!("../lua/upload.lua")),
            rejects: with_common(include_str!("../lua/rejects.lua")),
            evidence: with_common(include_str!("../lua/evidence.lua")),
            lead: script(RUNS_WHEN_FULL, &[include_str!("../lua/lead.lua")]),
            plan: alone(include_str!("../lua/plan.lua")),
            moved: alone(include_str!("../lua/move.lua")),
            pair: alone(include_str!("../lua/pair.lua")),
            unpair: alone(include_str!("../lua/unpair.lua")),
            link: alone(include_str!("../lua/link.lua")),
            reach: alone(include_str!("../lua/reach.lua")),
            unreach: alone(include_str!("../lua/unreach.lua")),
            respec: alone(include_str!("../lua/respec.lua")),
        }
    }

    fn all(&self) -> [&Script; 23] {
        [
            &self.enqueue,
            &self.claim,
            &self.start,
            &self.settle,
            &self.renew,
            &self.reclaim,
            &self.doubt,
            &self.status,
            &self.cancel,
            &self.transition,
            &self.reply,
            &self.upload,
            &self.rejects,
            &self.evidence,
            &self.lead,
            &self.plan,
            &self.moved,
            &self.pair,
            &self.unpair,
            &self.link,
            &self.reach,
            &self.unreach,
            &self.respec,
        ]
    }
}

/// Where connections come from.
pub(crate) enum Pool {
    One(deadpool_redis::Pool),
    /// The master that Sentinels name, followed through a failover.
    Sentinel(sentinel::Pool, sentinel::Watch),
    /// Connections for shared use, and for commands that block (which may answer later).
    Cluster {
        shared: cluster::Pool,
        blocking: cluster::Pool,
    },
}

/// Herald's store on Redis. Cheap to share behind an `Arc`.
pub struct RedisStore {
    /// Replaced whole when the TLS certificates are renewed ([`RedisStore::renew_tls`]).
    pub(crate) pool: std::sync::RwLock<Arc<Pool>>,
    /// How it was connected: what a renewal builds the new pool from.
    settings: Mutex<RedisConfig>,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    /// The running campaigns, cached for a moment: claim asks for them on every call.
    pub(crate) running_cache: Mutex<Option<(Instant, Vec<RunningCampaign>)>>,
    /// When the running index was last checked against the campaigns' metas.
    pub(crate) repaired_ms: AtomicI64,
    /// Rotates the campaign claim starts with, for fairness.
    pub(crate) rotation: AtomicUsize,
    /// Running campaigns whose last claim here found nothing: the next claim first asks, in
    /// one pipeline for all of them, whether each has anything to claim (`jobs::claim`).
    pub(crate) idle: Mutex<std::collections::HashSet<CampaignId>>,
    /// Message-lookup buckets this process has already given an expiry: (day, bucket).
    pub(crate) expiring: Mutex<std::collections::HashSet<(i64, u64)>>,
    /// The day the deployment first wrote hashed message-id lookups (`keys::lookups_since`),
    /// once read; 0 until then. Lookups with the whole id are older than it.
    pub(crate) hashed_since: AtomicI64,
    /// Whether this process has marked that day (`SET NX`, once).
    pub(crate) hashed_marked: std::sync::atomic::AtomicBool,
    /// A few connections from the pool, shared round-robin: redis-rs multiplexes concurrent
    /// requests over each, and reusing them skips the pool's health check (a PING round trip)
    /// on every call. Dropped when a call finds the store unavailable, so the next calls take
    /// fresh ones.
    pub(crate) hot: Mutex<Vec<Link>>,
    /// How long a reply may take (redis-rs's own default is 500 ms, shorter than a
    /// blocking stream read or a large script).
    pub(crate) timeout: Duration,
    pub(crate) replica_ack: Option<ReplicaAck>,
    pub(crate) hot_next: AtomicUsize,
    /// With Sentinels, the master generation the shared connections were made in.
    pub(crate) hot_generation: std::sync::atomic::AtomicU64,
    /// Campaign id → phone number id (which never changes).
    pub(crate) pnids: Mutex<HashMap<CampaignId, String>>,
    /// Per phone number id, how its pair reservations are made (`pacing::reserve_pairs`).
    pub(crate) pairs: Mutex<HashMap<String, pacing::PairPath>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

/// What a write refused for want of memory says: the cause and the remedy.
const OUT_OF_MEMORY: &str = "Redis is out of memory (used memory above maxmemory) and refuses \
     every write, so sending, uploads and webhook intake wait; nothing is lost, and they go on \
     once there is room. Delete ended campaigns (`herald campaign delete ID`, or set \
     store.delete_ended_after_days) or raise Redis's maxmemory";

/// What a write refused for a failing disk says (Redis's `MISCONF`).
const DISK_FAILING: &str = "Redis cannot write to its disk (MISCONF: a snapshot or AOF write \
     failed, e.g. its volume is full) and refuses every write, deletions included, until it can; \
     nothing already stored is lost. Free or grow its volume (Redis's log says what failed)";

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a Redis error to the store's vocabulary, for a call about campaign `id` when there
/// is one. Herald's scripts signal domain refusals with error codes starting `H` (listed in
/// `lua/common.lua`): a missing campaign is [`StoreError::NotFound`], one that has ended is
/// [`StoreError::Final`]; callers never re-check.
pub(crate) fn map_err(e: RedisError, id: Option<&CampaignId>) -> StoreError {
    match (e.code(), id) {
        (Some("HNOTFOUND"), Some(id)) => return StoreError::NotFound(id.clone()),
        (Some("HFINAL"), Some(id)) => {
            let status = e
                .detail()
                .and_then(CampaignStatus::parse)
                .unwrap_or(CampaignStatus::Completed);
            return StoreError::Final(id.clone(), status);
        }
        (Some(code @ ("HNOTFOUND" | "HFINAL" | "HSTATE")), _) => {
            return StoreError::Invalid(format!(
                "{code} {}",
                e.detail().unwrap_or("campaign cannot change")
            ));
        }
        // Redis is busy loading its data, failing over or resharding: try again.
        (
            Some(
                "LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY"
                | "MOVED" | "ASK",
            ),
            _,
        ) => {
            return unavailable(e);
        }
        _ => {}
    }
    // Redis reached `maxmemory` (with `noeviction`, as Herald requires): it refuses every
    // write until memory is freed, and a refused script wrote nothing (Redis checks before a
    // script's first write). Retryable: what waits is applied once there is room.
    if out_of_memory(&e) {
        return StoreError::Full(OUT_OF_MEMORY.to_owned());
    }
    // Redis cannot write to its disk (a full volume, a failed snapshot or AOF write): it
    // refuses every write, deletions included, until it can again.
    if disk_failing(&e) {
        return StoreError::Unavailable(DISK_FAILING.to_owned());
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        return unavailable(e);
    }
    match e.kind() {
        redis::ErrorKind::Server(_) => StoreError::Corrupt(e.to_string()),
        _ => unavailable(e),
    }
}

/// A field of an `INFO` answer (`name:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Whether a `redis_version` is 7.0 or later (Valkey, which answers the Redis version it is
/// compatible with, included).
fn supported_version(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_none_or(|major| major >= 7)
}

/// Whether Redis answered with the error `code`: the error itself, or any command of a
/// pipeline (whose error carries no code of its own).
fn answered(e: &RedisError, code: &str) -> bool {
    e.code() == Some(code)
        || e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, s)| s.code() == code))
}

/// Whether Redis refused a write for want of memory.
fn out_of_memory(e: &RedisError) -> bool {
    answered(e, "OOM")
}

/// Whether Redis refused a write because it cannot write to its disk.
fn disk_failing(e: &RedisError) -> bool {
    answered(e, "MISCONF")
}

/// Which of [`herald_core::metrics::STORE_ERROR_KINDS`] an error is.
fn error_kind(e: &RedisError) -> &'static str {
    match e.code() {
        Some("MOVED") => "moved",
        Some("ASK") => "ask",
        Some("TRYAGAIN") => "tryagain",
        Some("CLUSTERDOWN") => "clusterdown",
        Some("READONLY" | "MASTERDOWN") => "failover",
        Some("LOADING") => "loading",
        Some("BUSY") => "busy",
        _ if out_of_memory(e) => "oom",
        _ if disk_failing(e) => "disk",
        _ if e.is_timeout() => "timeout",
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            "connection"
        }
        _ => "other",
    }
}

/// The pool of connections to one Redis at `url`, over TLS with `tls` for `rediss://`.
fn one_pool(url: &str, tls: &RedisTls, pc: PoolConfig) -> Result<deadpool_redis::Pool, StoreError> {
    use redis::IntoConnectionInfo;
    let invalid = |e: &dyn std::fmt::Display| StoreError::Invalid(format!("redis url: {e}"));
    let info = url.into_connection_info().map_err(|e| invalid(&e))?;
    let client = match tls.certificates() {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
    .map_err(|e| invalid(&e))?;
    let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
        .map_err(|e| invalid(&e))?;
    deadpool_redis::Pool::builder(manager)
        .config(pc)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| invalid(&e))
}

/// An unavailable store's error, with the remedy its text names where it names one: a TLS
/// handshake's (with `tls`), or a password the Sentinels or their master refused.
fn with_remedy(e: StoreError, tls: bool, sentinels: bool) -> StoreError {
    match e {
        StoreError::Unavailable(msg) => {
            let remedy = if tls { tls::remedy(&msg) } else { None };
            match remedy.or_else(|| sentinels.then(|| sentinel::remedy(&msg)).flatten()) {
                Some(remedy) => StoreError::Unavailable(format!("{msg} ({remedy})")),
                None => StoreError::Unavailable(msg),
            }
        }
        e => e,
    }
}

/// A first write refused by a replica (`READONLY`) of the one Redis `REDIS_URL` names (`one`),
/// with what to do: it reaches the wrong node.
fn on_replica(e: StoreError, one: bool) -> StoreError {
    match e {
        StoreError::Unavailable(msg)
            if one && msg.to_ascii_lowercase().contains("read only replica") =>
        {
            StoreError::Unavailable(format!(
                "{msg} (REDIS_URL reaches a replica, which takes no writes: point it at the \
                 master; with Sentinel, set store.backend = \"redis_sentinel\" and REDIS_URL \
                 to the Sentinels)"
            ))
        }
        e => e,
    }
}

/// Counts a store call that failed as unavailable.
pub(crate) fn count_error(kind: &'static str) {
    metrics::counter!(herald_core::metrics::STORE_ERRORS_TOTAL, "kind" => kind).increment(1);
}

impl RedisStore {
    /// Connects, checks that Redis answers, loads the scripts, and warns (in the log) when
    /// Redis may lose data: an eviction policy other than `noeviction`, or no AOF.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self, StoreError> {
        let tls = tls::check(&Self::urls(cfg), &cfg.tls)?;
        let pool = Self::build_pool(cfg)?;
        let store = Self {
            pool: std::sync::RwLock::new(Arc::new(pool)),
            settings: Mutex::new(cfg.clone()),
            keys: Keys::new(&cfg.key_prefix),
            scripts: Scripts::new(),
            running_cache: Mutex::new(None),
            idle: Mutex::new(std::collections::HashSet::new()),
            repaired_ms: AtomicI64::new(0),
            rotation: AtomicUsize::new(0),
            expiring: Mutex::new(std::collections::HashSet::new()),
            hashed_since: AtomicI64::new(0),
            hashed_marked: std::sync::atomic::AtomicBool::new(false),
            hot: Mutex::new(Vec::new()),
            hot_next: AtomicUsize::new(0),
            hot_generation: std::sync::atomic::AtomicU64::new(0),
            pnids: Mutex::new(HashMap::new()),
            pairs: Mutex::new(HashMap::new()),
            timeout: cfg.timeout,
            replica_ack: cfg.replica_ack,
        };
        // The first connection: where a TLS handshake or the Sentinels' password fails, say
        // what to set.
        let sentinels = cfg.sentinel_master.is_some();
        let one = !sentinels && !cfg.cluster;
        let mut conn = store
            .conn()
            .await
            .map_err(|e| with_remedy(e, tls, sentinels))?;
        store.check_version().await?;
        for script in store.scripts.all() {
            conn.load(script).await.map_err(|e| on_replica(e, one))?;
        }
        match store.ensure_group().await {
            Ok(()) => {}
            // A full Redis refuses even this (MKSTREAM may write). Start all the same, so that
            // reads and deletions (the remedy) are served: the first webhook read makes the
            // group once there is room, if it does not exist yet.
            Err(e @ StoreError::Full(_)) => {
                tracing::warn!(error = %e, "connected to a full Redis");
            }
            Err(e) => return Err(on_replica(e, one)),
        }
        for warning in store.durability_warnings().await {
            tracing::warn!(warning = %warning, "redis may lose data");
        }
        Ok(store)
    }

    /// The URLs the settings name: a Cluster's nodes or the Sentinels, or the one Redis.
    fn urls(cfg: &RedisConfig) -> Vec<&str> {
        if cfg.cluster || cfg.sentinel_master.is_some() {
            cluster::nodes(&cfg.url)
        } else {
            vec![cfg.url.as_str()]
        }
    }

    /// The connections the settings describe (none is made yet).
    fn build_pool(cfg: &RedisConfig) -> Result<Pool, StoreError> {
        let mut pc = PoolConfig::new(cfg.pool_size.max(1));
        pc.timeouts = Timeouts {
            wait: Some(cfg.timeout),
            create: Some(cfg.timeout),
            recycle: Some(cfg.timeout),
        };
        let urls = Self::urls(cfg);
        Ok(match (cfg.cluster, &cfg.sentinel_master) {
            (true, Some(_)) => {
                return Err(StoreError::Invalid(
                    "a Redis Cluster has no Sentinels: give either".into(),
                ));
            }
            (true, None) => {
                let blocks =
                    cluster::MAX_BLOCK.max(cfg.replica_ack.map_or(Duration::ZERO, |r| r.timeout));
                let pool = |answer| cluster::pool(&urls, &cfg.tls, cfg.timeout, answer, pc);
                Pool::Cluster {
                    shared: pool(cfg.timeout)?,
                    blocking: pool(cfg.timeout + blocks)?,
                }
            }
            (false, Some(master)) => {
                let own = sentinel::MasterAuth {
                    username: cfg.sentinel_master_username.as_deref(),
                    password: cfg.sentinel_master_password.as_ref().map(Password::expose),
                };
                let (pool, watch) = sentinel::pool(&urls, master, own, &cfg.tls, pc)?;
                Pool::Sentinel(pool, watch)
            }
            (false, None) => Pool::One(one_pool(&cfg.url, &cfg.tls, pc)?),
        })
    }

    /// Takes renewed TLS certificates (a CA, or a client certificate, renewed by
    /// cert-manager or by hand): connections made from now on use them, and those open go on
    /// with the ones they were made with. A connection is made and answers with the new ones
    /// before any call depends on them; if none can be, the store goes on as it was and the
    /// error says why (as at start: which file to look at).
    pub async fn renew_tls(&self, tls: RedisTls) -> Result<(), StoreError> {
        let mut cfg = self
            .settings
            .lock()
            .map_err(|_| StoreError::Invalid("the store's settings are poisoned".into()))?
            .clone();
        cfg.tls = tls;
        let over_tls = tls::check(&Self::urls(&cfg), &cfg.tls)?;
        let pool = Arc::new(Self::build_pool(&cfg)?);
        // On a bare connection: a refused renewal is not the store failing (no error is
        // counted, and the shared connections stay).
        let probe = async {
            let mut link = self.pooled_in(&pool, Some(Duration::ZERO)).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut link)
                .await
                .map_err(unavailable)
        };
        probe
            .await
            .map_err(|e| with_remedy(e, over_tls, cfg.sentinel_master.is_some()))?;
        let generation = Self::generation(&pool);
        if let Ok(mut current) = self.pool.write() {
            *current = pool;
        }
        if let Ok(mut hot) = self.hot.lock() {
            hot.clear();
            self.hot_generation.store(
                generation.unwrap_or_default(),
                std::sync::atomic::Ordering::Release,
            );
        }
        if let Ok(mut settings) = self.settings.lock() {
            *settings = cfg;
        }
        // The new pool counts its masters from 0: what was read through the old one is not
        // the new one's to vouch for.
        if let Ok(mut pairs) = self.pairs.lock() {
            pairs.clear();
        }
        Ok(())
    }

    /// The pool in use.
    fn pool(&self) -> Arc<Pool> {
        match self.pool.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A connection from the pool. With `blocks` (how long a command on it may block), a
    /// connection of its own: it goes back to the pool at once, whose remaining connections
    /// are never the shared ones, so what blocks on it (a `WAIT`, a blocking read) holds up no
    /// shared call. Without, it is taken out of the pool for good, to be shared.
    async fn pooled(&self, blocks: Option<Duration>) -> Result<Link, StoreError> {
        self.pooled_in(&self.pool(), blocks).await
    }

    /// [`Self::pooled`], from `pool`.
    async fn pooled_in(&self, pool: &Pool, blocks: Option<Duration>) -> Result<Link, StoreError> {
        Ok(match (pool, blocks) {
            (Pool::One(p), _) => {
                let pooled = p.get().await.map_err(unavailable)?;
                let c = self.answering((*pooled).clone(), blocks);
                if blocks.is_none() {
                    let _kept = deadpool_redis::Connection::take(pooled);
                }
                Link::One(c)
            }
            (Pool::Sentinel(p, _), _) => {
                let pooled = p.get().await.map_err(unavailable)?;
                let c = self.answering(pooled.conn.clone(), blocks);
                if blocks.is_none() {
                    let _kept = deadpool::managed::Object::take(pooled);
                }
                Link::One(c)
            }
            (Pool::Cluster { shared, .. }, None) => {
                let pooled = shared.get().await.map_err(unavailable)?;
                Link::Cluster(deadpool::managed::Object::take(pooled))
            }
            // Its answer may take up to cluster::MAX_BLOCK or the replica timeout longer.
            (Pool::Cluster { blocking, .. }, Some(_)) => {
                let pooled = blocking.get().await.map_err(unavailable)?;
                Link::Cluster((*pooled).clone())
            }
        })
    }

    /// Behind Sentinels, how many times they have named a new master since the store
    /// connected, or last took renewed TLS files (each time the store moved to it); `None`
    /// without Sentinels.
    pub fn masters_followed(&self) -> Option<u64> {
        Self::generation(&self.pool())
    }

    /// How many new masters a pool's Sentinels have named (since it was made).
    fn generation(pool: &Pool) -> Option<u64> {
        match pool {
            Pool::Sentinel(_, watch) => Some(watch.generation()),
            _ => None,
        }
    }

    /// A connection to one Redis, answering within the store's timeout (and what a command
    /// on it may block for).
    fn answering(
        &self,
        mut c: redis::aio::MultiplexedConnection,
        blocks: Option<Duration>,
    ) -> redis::aio::MultiplexedConnection {
        c.set_response_timeout(self.timeout + blocks.unwrap_or_default());
        c
    }

    /// A connection of its own from the pool, not one of the shared ones: for a command
    /// that blocks its connection (`WAIT`, a blocking read) for up to `blocks`, so no other
    /// call queues behind it.
    pub(crate) async fn own_conn(&self, blocks: Duration) -> Result<Conn<'_>, StoreError> {
        Ok(Conn::new(self, self.pooled(Some(blocks)).await?))
    }

    pub(crate) async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        const HOT: usize = 4;
        let generation = self.masters_followed();
        if let Ok(mut hot) = self.hot.lock() {
            // The Sentinels named another master: the shared connections go to the old one.
            if let Some(now) = generation
                && self
                    .hot_generation
                    .swap(now, std::sync::atomic::Ordering::AcqRel)
                    != now
            {
                hot.clear();
            }
            if hot.len() >= HOT {
                let i = self
                    .hot_next
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % hot.len();
                return Ok(Conn::new(self, hot[i].clone()));
            }
        }
        let c = self.pooled(None).await?;
        // Shared only if no new master was named while it was being made.
        if let Ok(mut hot) = self.hot.lock()
            && hot.len() < HOT
            && self.masters_followed() == generation
        {
            hot.push(c.clone());
        }
        Ok(Conn::new(self, c))
    }

    /// Maps an error (for a call about campaign `id`, when there is one, so that its refusals
    /// name it), and forgets the shared connections when the store looks unavailable.
    pub(crate) fn fail_for(&self, e: RedisError, id: Option<&CampaignId>) -> StoreError {
        let kind = error_kind(&e);
        let err = map_err(e, id);
        if err.is_retryable() {
            count_error(kind);
            // A full Redis answers on the same connections; any other failure may have
            // broken them.
            if kind != "oom"
                && let Ok(mut hot) = self.hot.lock()
            {
                hot.clear();
            }
        }
        err
    }

    /// A section of `INFO` as each server answered it (every master of a Cluster). Empty when
    /// `INFO` is not allowed (some managed Redis rename it): then nothing can be said.
    pub(crate) async fn info(&self, section: &str) -> Vec<String> {
        fn texts(v: redis::Value, out: &mut Vec<String>) {
            match v {
                redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(&b).into_owned()),
                redis::Value::SimpleString(s) => out.push(s),
                redis::Value::VerbatimString { text, .. } => out.push(text),
                redis::Value::Map(m) => m.into_iter().for_each(|(_, v)| texts(v, out)),
                redis::Value::Array(a) => a.into_iter().for_each(|v| texts(v, out)),
                _ => {}
            }
        }
        let Ok(mut conn) = self.conn().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Ok(v) = redis::cmd("INFO")
            .arg(section)
            .run::<redis::Value>(&mut conn)
            .await
        {
            texts(v, &mut out);
        }
        out
    }

    /// Redis's memory and `maxmemory`, from `INFO memory` (a Cluster's fullest master).
    pub(crate) async fn memory(&self) -> Option<herald_store::MemoryUse> {
        self.info("memory")
            .await
            .iter()
            .filter_map(|info| {
                let field = |name| info_field(info, name)?.parse::<u64>().ok();
                Some(herald_store::MemoryUse {
                    used_bytes: field("used_memory")?,
                    max_bytes: field("maxmemory").filter(|max| *max > 0),
                })
            })
            .reduce(herald_store::MemoryUse::fuller)
    }

    /// Refuses a Redis older than 7.0, which cannot run Herald's scripts (their first line
    /// declares Redis 7's script flags).
    async fn check_version(&self) -> Result<(), StoreError> {
        for info in self.info("server").await {
            if let Some(version) = info_field(&info, "redis_version")
                && !supported_version(version)
            {
                return Err(StoreError::Invalid(format!(
                    "Redis {version} is too old: Herald needs Redis 7.0 or later"
                )));
            }
        }
        Ok(())
    }

    /// Reasons Redis might lose Herald's data, read from its configuration. Empty when all is
    /// well, or when `CONFIG` is not allowed (managed Redis): then nothing can be said.
    pub async fn durability_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(mut conn) = self.conn().await else {
            return vec!["could not connect to check the configuration".into()];
        };
        let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .run(&mut conn)
            .await;
        if let Ok(v) = policy
            && let Some(p) = v.get(1)
            && p != "noeviction"
        {
            out.push(format!(
                "maxmemory-policy is {p}: Redis may evict Herald's keys under memory pressure; set it to noeviction"
            ));
        }
        if let Some(memory) = self.memory().await
            && memory.max_bytes.is_none()
        {
            out.push(
                "maxmemory is not set: Redis grows until its machine or container runs out and \
                 is killed, losing what its AOF has not synced; set maxmemory to about two thirds \
                 of the memory Redis may use, so that a full Redis refuses writes (Herald waits, \
                 loses nothing) instead"
                    .into(),
            );
        }
        let aof: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .run(&mut conn)
            .await;
        if let Ok(v) = aof
            && v.get(1).is_some_and(|a| a == "no")
        {
            out.push(
                "appendonly is off: a Redis restart loses everything since the last snapshot; \
                 enable AOF with appendfsync everysec"
                    .into(),
            );
            return out;
        }
        let fsync: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .run(&mut conn)
            .await;
        if let Ok(v) = fsync
            && v.get(1).is_some_and(|a| a == "no")
        {
            out.push(
                "appendfsync is no: the operating system decides when the AOF reaches the disk, \
                 so a machine crash can lose the last ~30 s of writes (jobs marked started or \
                 settled come back as they were, and may be sent again); set appendfsync \
                 everysec (at most the last second)"
                    .into(),
            );
        }
        out
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Deletes every key under this store's prefix. For tests and benchmarks, which each
    /// work under a random prefix; never called by Herald itself.
    pub async fn purge_namespace(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let keys = conn.scan(&self.keys.everything()).await?;
        let mut deleted = 0u64;
        // One key per command: on a Cluster they are in many slots.
        for chunk in keys.chunks(1000) {
            let cmds = chunk.iter().map(redis::Cmd::unlink).collect();
            deleted += conn.each::<u64>(cmds).await?.iter().sum::<u64>();
        }
        Ok(deleted)
    }
}

/// A job record, as `common.lua` lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) state: &'a str,
    pub(crate) attempts: u32,
    pub(crate) phone: &'a str,
    /// The lease token, or once accepted the time it was accepted (ms).
    pub(crate) token: &'a str,
    pub(crate) aux: &'a str,
    pub(crate) flags: &'a str,
    pub(crate) vars: &'a str,
}

impl Record<'_> {
    /// The number's region (`ZZ` for records written before regions were kept).
    pub(crate) fn region(&self) -> herald_core::Region {
        (self.phone.split_once(':'))
            .and_then(|(_, r)| r.parse().ok())
            .unwrap_or(herald_core::Region::UNKNOWN)
    }

    /// The recipient's number, `None` when the record holds none.
    pub(crate) fn phone(&self) -> Option<PhoneE164> {
        let digits = self.phone.split_once(':').map_or(self.phone, |(d, _)| d);
        PhoneE164::from_u64(digits.parse().ok()?).ok()
    }
}

pub(crate) fn parse_record(rec: &str) -> Option<Record<'_>> {
    let mut it = rec.splitn(7, '|');
    let state = it.next()?;
    let attempts = it.next()?.parse().ok()?;
    let phone = it.next()?;
    let token = it.next()?;
    let aux = it.next()?;
    let flags = it.next()?;
    let vars = it.next()?;
    Some(Record {
        state,
        attempts,
        phone,
        token,
        aux,
        flags,
        vars,
    })
}

pub(crate) fn job_view(id: JobId, rec: &str) -> Result<JobView, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("job {id} record"));
    let r = parse_record(rec).ok_or_else(corrupt)?;
    let phone = r.phone().ok_or_else(corrupt)?;
    let state = match r.state.as_bytes().first() {
        Some(b'p') => JobState::Pending,
        // Held: 's' is started unless its claim's fresh mark says otherwise (`jobs::job`
        // looks); 'c' is a claim of an older build, not started.
        Some(b'c') => JobState::InFlight { started: false },
        Some(b's') => JobState::InFlight { started: true },
        Some(b'd') => JobState::InDoubt,
        Some(b'a') => {
            let bits = r.state[1..]
                .parse::<u8>()
                .ok()
                .and_then(DeliveryState::from_bits)
                .ok_or_else(corrupt)?;
            let wamid = r.aux.split(' ').next().unwrap_or_default();
            JobState::Accepted {
                message_id: WaMessageId::new(wamid).ok(),
                delivery: bits,
            }
        }
        Some(b'f') => JobState::Failed {
            code: r.aux.to_owned(),
        },
        Some(b'k') => JobState::Skipped {
            reason: SkipReason::parse(r.aux).ok_or_else(corrupt)?,
        },
        Some(b'x') => JobState::Cancelled,
        _ => return Err(corrupt()),
    };
    Ok(JobView {
        id,
        phone,
        attempts: r.attempts,
        state,
    })
}

pub(crate) fn campaign_from_meta(
    id: &CampaignId,
    meta: &HashMap<String, String>,
) -> Result<Campaign, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("campaign {id}: {what}"));
    let get = |k: &str| meta.get(k).map(String::as_str);
    let status = get("status")
        .and_then(CampaignStatus::parse)
        .ok_or_else(|| corrupt("status"))?;
    let spec: CampaignSpec = serde_json::from_str(get("spec").ok_or_else(|| corrupt("spec"))?)
        .map_err(|_| corrupt("spec"))?;
    let pause_reason = match get("reason") {
        Some(r) => Some(serde_json::from_str::<PauseReason>(r).map_err(|_| corrupt("reason"))?),
        None => None,
    };
    let int = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    Ok(Campaign {
        id: id.clone(),
        name: spec.name.clone(),
        status,
        pause_reason,
        phone_number_id: get("pnid").unwrap_or_default().to_owned(),
        template: get("template").filter(|t| !t.is_empty()).map(str::to_owned),
        spec,
        created_ms: int("created_ms").unwrap_or_default(),
        updated_ms: int("updated_ms").unwrap_or_default(),
        started_ms: int("started_ms"),
        finished_ms: int("finished_ms"),
    })
}

/// Days since the Unix epoch (UTC) of a time in ms.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nused_memory:914792\r\nused_memory_human:893.35K\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "used_memory"), Some("914792"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }

    #[test]
    fn redis_7_or_later_is_supported() {
        for (version, supported) in [
            ("6.2.14", false),
            ("5.0.7", false),
            ("7.0.0", true),
            ("7.4.1", true),
            ("8.0.2", true),
            ("unknown", true),
        ] {
            assert_eq!(supported_version(version), supported, "{version}");
        }
    }
}
