//! Redis behind Sentinel (ARCHITECTURE §3): a pool of connections to the master the Sentinels
//! name, which follows it through a failover.
//!
//! Each new connection asks the Sentinels (in turn, the first that answers) for the master of
//! the service (`SENTINEL GET-MASTER-ADDR-BY-NAME`, as the [`Watch`] does) and checks with
//! `ROLE` that the node it reaches is one. A failover leaves the
//! connections to the old master behind, and the old master goes on taking writes until the
//! Sentinels demote it, which they do only when they next look at it (up to ~10 s later):
//! writes it takes meanwhile are lost when it turns replica. So a [`Watch`] asks the Sentinels
//! for the master every [`WATCH_EVERY`]; when they name another, every connection made before
//! is dropped (the store's shared ones at their next use, the pool's idle ones when they are
//! recycled) and the next one made goes to the new master. A write the old master refuses
//! (`READONLY`, or a dropped connection) is `Unavailable` like any outage, which drops the
//! shared connections too, and the caller retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use herald_store::StoreError;
use redis::aio::MultiplexedConnection;
use redis::{
    ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError, TlsCertificates,
};

use crate::RedisTls;

pub(crate) type Pool = deadpool::managed::Pool<Manager>;

/// How often a [`Watch`] asks the Sentinels which node is the master.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Counts the masters the Sentinels have named since the store connected: a connection made
/// under an earlier count goes to a node that is no longer the master.
#[derive(Clone, Default)]
pub(crate) struct Watch(Arc<AtomicU64>);

impl Watch {
    pub(crate) fn generation(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A connection to the master, and the [`Watch`] generation it was made in.
pub(crate) struct Tagged {
    pub(crate) conn: MultiplexedConnection,
    generation: u64,
}

/// Makes connections to the current master for the pool.
pub(crate) struct Manager {
    sentinels: tokio::sync::Mutex<Sentinels>,
    /// The master's settings (user, password, database, TLS or not), its address aside.
    node: ConnectionInfo,
    certs: Option<TlsCertificates>,
    watch: Watch,
}

impl Manager {
    /// A connection to the master at `host`:`port`, checked to be one.
    async fn connect(&self, host: String, port: u16) -> Result<MultiplexedConnection, RedisError> {
        let addr = match self.node.addr() {
            ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = self.node.clone().set_addr(addr);
        let client = match &self.certs {
            Some(certs) => redis::Client::build_with_tls(info, certs.clone())?,
            None => redis::Client::open(info)?,
        };
        let mut conn = client.get_multiplexed_async_connection().await?;
        if !is_master(&mut conn).await? {
            return Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the node the Sentinels name as the master is not one (yet)",
            )));
        }
        Ok(conn)
    }
}

impl deadpool::managed::Manager for Manager {
    type Type = Tagged;
    type Error = RedisError;

    /// A connection to the node the Sentinels name now, checked to be a master.
    ///
    /// The address comes from `SENTINEL GET-MASTER-ADDR-BY-NAME`, as the [`Watch`]'s does, so
    /// a connection tagged with a generation goes to the master of that generation or a later
    /// one. (`SENTINEL MASTERS`, which other clients read, goes on naming the old master for a
    /// moment after a failover names the new one, while the old one still answers as a master:
    /// a connection made from it then was tagged new, and wrote to the old master until the
    /// Sentinels demoted it, losing what it wrote.)
    ///
    /// Where the node named cannot be reached or is not a master (a Sentinel cut off from the
    /// others names a master they have replaced), the next Sentinel is asked, each once.
    async fn create(&self) -> Result<Tagged, RedisError> {
        let generation = self.watch.generation();
        let mut sentinels = self.sentinels.lock().await;
        let mut tries = sentinels.clients.len();
        loop {
            let (host, port) = sentinels.master().await?;
            match self.connect(host, port).await {
                Ok(conn) => return Ok(Tagged { conn, generation }),
                Err(e) if tries <= 1 => return Err(e),
                Err(_) => {
                    tries -= 1;
                    sentinels.pass_over();
                }
            }
        }
    }

    async fn recycle(&self, conn: &mut Tagged, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.generation != self.watch.generation() {
            return Err(RecycleError::message("made for an earlier master"));
        }
        if is_master(&mut conn.conn).await? {
            Ok(())
        } else {
            Err(RecycleError::message("no longer the master"))
        }
    }
}

/// Whether the node on `conn` is a master: by `ROLE` (`["master", offset, replicas]` on
/// one), or where that is refused (an ACL without it, a managed Redis that renames it) by
/// the `role:` of `INFO replication`. Where both are refused nothing can be told, and the
/// Sentinels are taken at their word: a replica would refuse the writes (`READONLY`), which
/// the store retries as an outage.
async fn is_master(conn: &mut MultiplexedConnection) -> Result<bool, RedisError> {
    let refused = |e: &RedisError| matches!(e.code(), Some("NOPERM" | "ERR"));
    match redis::cmd("ROLE")
        .query_async::<Vec<redis::Value>>(conn)
        .await
    {
        Ok(role) => {
            return Ok(matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"));
        }
        Err(e) if !refused(&e) => return Err(e),
        Err(_) => {}
    }
    match redis::cmd("INFO")
        .arg("replication")
        .query_async::<String>(conn)
        .await
    {
        Ok(info) => Ok(info.lines().any(|l| l.trim_end() == "role:master")),
        Err(e) if refused(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Asks the Sentinels for the master every [`WATCH_EVERY`], counting each change in `watch`,
/// until the store that holds it is gone. Only the Sentinels are asked: the master sees no
/// connection from it. Sentinels that do not answer change nothing: the connections carry on
/// as they are, and the log says so (a few lines however long it lasts).
async fn watch(mut sentinels: Sentinels, watch: Weak<AtomicU64>) {
    let mut named: Option<(String, u16)> = None;
    // This store's Sentinels not answering, logged a few times however long it lasts.
    let unanswered = herald_core::repeated::Repeated::new();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(generation) = watch.upgrade() else {
            return;
        };
        let now = match sentinels.master().await {
            Ok(now) => now,
            Err(e) => {
                herald_core::warn_repeated!(
                    unanswered,
                    "no Sentinel says which node is the Redis master; a failover is not \
                     followed until one does",
                    error = %e
                );
                continue;
            }
        };
        herald_core::recovered!(unanswered, "a Sentinel says which node is the master again");
        if named.as_ref().is_some_and(|n| *n != now) {
            generation.fetch_add(1, Ordering::AcqRel);
            metrics::counter!(herald_core::metrics::STORE_MASTER_CHANGES_TOTAL).increment(1);
            tracing::warn!(master = %format!("{}:{}", now.0, now.1), "the Sentinels name a new Redis master; moving to it");
        }
        named = Some(now);
    }
}

/// The Sentinels of one master, asked in turn for its address, on one connection kept
/// between asks (to the next Sentinel when one fails).
struct Sentinels {
    clients: Vec<redis::Client>,
    master: String,
    conn: Option<MultiplexedConnection>,
    next: usize,
}

impl Sentinels {
    /// The Sentinels at `infos` (each with its user and password, over TLS with `tls` for
    /// `rediss://`; a Sentinel has no database to select), of the master they call `master`.
    fn new(infos: &[ConnectionInfo], master: &str, tls: &RedisTls) -> Result<Self, RedisError> {
        let clients = infos
            .iter()
            .map(|info| {
                let info = info
                    .clone()
                    .set_redis_settings(info.redis_settings().clone().set_db(0));
                match tls.certificates() {
                    Some(certs) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
                        redis::Client::build_with_tls(info, certs)
                    }
                    _ => redis::Client::open(info),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            clients,
            master: master.to_owned(),
            conn: None,
            next: 0,
        })
    }

    /// The master's address, as the first Sentinel that answers names it (`SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`, which names the promoted replica as soon as a failover has
    /// promoted it), or the last Sentinel's error.
    async fn master(&mut self) -> Result<(String, u16), RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(WATCH_EVERY))
            .set_response_timeout(Some(WATCH_EVERY));
        let mut error = RedisError::from((ErrorKind::EmptySentinelList, "no Sentinel is given"));
        for _ in 0..self.clients.len() {
            if self.conn.is_none() {
                match self.clients[self.next]
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => error = e,
                }
            }
            if let Some(c) = self.conn.as_mut() {
                match redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(c)
                    .await
                {
                    Ok(Some(addr)) => return Ok(addr),
                    Ok(None) => {
                        error = RedisError::from((
                            ErrorKind::MasterNameNotFoundBySentinel,
                            "the Sentinel monitors no master by the name",
                            self.master.clone(),
                        ));
                    }
                    Err(e) => error = e,
                }
            }
            self.pass_over();
        }
        Err(error)
    }

    /// The next ask goes to the next Sentinel.
    fn pass_over(&mut self) {
        self.conn = None;
        self.next = (self.next + 1) % self.clients.len();
    }
}

/// The master's own credentials, where they are not the Sentinels' (`store.sentinel_master_*`):
/// each one given replaces the first URL's for the master, which then goes to the Sentinels
/// alone.
#[derive(Clone, Copy, Default)]
pub(crate) struct MasterAuth<'a> {
    pub(crate) username: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
}

/// A pool of connections to the master that the Sentinels `urls` name for `master` (the
/// service name of their `sentinel monitor`), and the [`Watch`] that follows it. The master is
/// reached with the first URL's user, password and database (Sentinels and Redis sharing them,
/// as most deployments set them up), or with its `own` user or password where it has them,
/// over TLS with `tls` for `rediss://` (the Sentinels too).
pub(crate) fn pool(
    urls: &[&str],
    master: &str,
    own: MasterAuth<'_>,
    tls: &RedisTls,
    cfg: deadpool::managed::PoolConfig,
) -> Result<(Pool, Watch), StoreError> {
    if master.is_empty() {
        return Err(invalid(&"names no master (store.sentinel_master)"));
    }
    let infos = urls
        .iter()
        .map(|url| url.into_connection_info())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let Some(first) = infos.first() else {
        return Err(invalid(&"names no Sentinel"));
    };
    let mut settings = first.redis_settings().clone();
    if let Some(user) = own.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = own.password {
        settings = settings.set_password(password);
    }
    let on_tls = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
    let sentinels = || Sentinels::new(&infos, master, tls).map_err(|e| invalid(&e));
    let watched = Watch::default();
    let pool = Pool::builder(Manager {
        sentinels: tokio::sync::Mutex::new(sentinels()?),
        node: first.clone().set_redis_settings(settings),
        certs: tls.certificates().filter(|_| on_tls),
        watch: watched.clone(),
    })
    .config(cfg)
    .runtime(deadpool::Runtime::Tokio1)
    .build()
    .map_err(|e| invalid(&e))?;
    tokio::spawn(self::watch(sentinels()?, Arc::downgrade(&watched.0)));
    Ok((pool, watched))
}

/// A Sentinel setting that cannot work.
fn invalid(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("redis sentinel url: {e}"))
}

/// What to set when the first connection through the Sentinels fails on a password, by the
/// error's text. The client reports a missing password, a wrong one and one given to a server
/// that takes none alike, so the remedy covers the three.
pub(crate) fn remedy(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    let auth = [
        "authenticationfailed",
        "authentication failed",
        "noauth",
        "authentication required",
        "wrongpass",
        "without any password configured",
    ];
    auth.iter().any(|a| e.contains(a)).then_some(
        "a password was missing or refused: REDIS_URL's user and password (or REDIS_PASSWORD) \
         are given to the Sentinels and to the master; when the master has its own, or the \
         Sentinels take none, put the master's in store.sentinel_master_password (and its ACL \
         user, if not default, in store.sentinel_master_username), and in REDIS_URL or \
         REDIS_PASSWORD only the Sentinels'",
    )
}
