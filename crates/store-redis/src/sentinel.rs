//! Redis behind Sentinel (ARCHITECTURE §3): a pool of connections to the master the Sentinels
//! name, which follows it through a failover.
//!
//! Each new connection asks the Sentinels (in turn, the first that answers) for the master of
//! the service and checks with `ROLE` that the node it reaches is one. A failover leaves the
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
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisError, TlsMode};

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
    client: tokio::sync::Mutex<SentinelClient>,
    watch: Watch,
}

impl deadpool::managed::Manager for Manager {
    type Type = Tagged;
    type Error = RedisError;

    async fn create(&self) -> Result<Tagged, RedisError> {
        let generation = self.watch.generation();
        let conn = self.client.lock().await.get_async_connection().await?;
        Ok(Tagged { conn, generation })
    }

    async fn recycle(&self, conn: &mut Tagged, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.generation != self.watch.generation() {
            return Err(RecycleError::message("made for an earlier master"));
        }
        // ROLE answers ["master", offset, replicas] on a master.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn.conn).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(()),
            _ => Err(RecycleError::message("no longer the master")),
        }
    }
}

/// Asks the Sentinels for the master every [`WATCH_EVERY`] (`SENTINEL
/// GET-MASTER-ADDR-BY-NAME`, on one connection kept between asks, to the next Sentinel when
/// one fails), counting each change in `watch`, until the store that holds it is gone. Only the
/// Sentinels are asked: the master sees no connection from it. Sentinels that do not answer
/// change nothing: the connections carry on as they are.
async fn watch(sentinels: Vec<redis::Client>, master: String, watch: Weak<AtomicU64>) {
    let mut conn = None;
    let mut next = 0;
    let mut named: Option<(String, u16)> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(generation) = watch.upgrade() else {
            return;
        };
        let Some(now) = ask(&sentinels, &mut conn, &mut next, &master).await else {
            continue;
        };
        if named.as_ref().is_some_and(|n| *n != now) {
            generation.fetch_add(1, Ordering::AcqRel);
            metrics::counter!(herald_core::metrics::STORE_MASTER_CHANGES_TOTAL).increment(1);
            tracing::warn!(master = %format!("{}:{}", now.0, now.1), "the Sentinels name a new Redis master; moving to it");
        }
        named = Some(now);
    }
}

/// The master's address, from the first Sentinel that answers (starting at `next`, on `conn`
/// while it works).
async fn ask(
    sentinels: &[redis::Client],
    conn: &mut Option<MultiplexedConnection>,
    next: &mut usize,
    master: &str,
) -> Option<(String, u16)> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(WATCH_EVERY))
        .set_response_timeout(Some(WATCH_EVERY));
    for _ in 0..sentinels.len() {
        if conn.is_none() {
            *conn = sentinels[*next]
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .ok();
        }
        if let Some(c) = conn.as_mut()
            && let Ok(Some(addr)) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(master)
                .query_async::<Option<(String, u16)>>(c)
                .await
        {
            return Some(addr);
        }
        *conn = None;
        *next = (*next + 1) % sentinels.len();
    }
    None
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
    let watched = Watch::default();
    let sentinels = urls
        .iter()
        .map(|url| match tls.certificates() {
            Some(certs) if url.starts_with("rediss://") => {
                redis::Client::build_with_tls(*url, certs)
            }
            _ => redis::Client::open(*url),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let pool = Pool::builder(Manager {
        client: tokio::sync::Mutex::new(client(urls, master, own, tls)?),
        watch: watched.clone(),
    })
    .config(cfg)
    .runtime(deadpool::Runtime::Tokio1)
    .build()
    .map_err(|e| invalid(&e))?;
    tokio::spawn(self::watch(
        sentinels,
        master.to_owned(),
        Arc::downgrade(&watched.0),
    ));
    Ok((pool, watched))
}
/// A Sentinel setting that cannot work.
fn invalid(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("redis sentinel url: {e}"))
}

/// A client of the Sentinels `urls` for the master they call `master` (see [`pool`]).
fn client(
    urls: &[&str],
    master: &str,
    own: MasterAuth<'_>,
    tls: &RedisTls,
) -> Result<SentinelClient, StoreError> {
    if master.is_empty() {
        return Err(invalid(&"names no master (store.sentinel_master)"));
    }
    let mut sentinels = Vec::with_capacity(urls.len());
    let mut first = None;
    for url in urls {
        let info = url.into_connection_info().map_err(|e| invalid(&e))?;
        sentinels.push(info.addr().clone());
        first.get_or_insert(info);
    }
    let Some(first) = first else {
        return Err(invalid(&"names no Sentinel"));
    };
    let on_tls = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
    let auth = first.redis_settings();
    let mut builder = SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
        .map_err(|e| invalid(&e))?
        .set_client_to_redis_db(auth.db());
    if let Some(user) = auth.username() {
        builder = builder.set_client_to_sentinel_username(user);
    }
    if let Some(user) = own.username.or(auth.username()) {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = auth.password() {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(password) = own.password.or(auth.password()) {
        builder = builder.set_client_to_redis_password(password);
    }
    if on_tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(certs) = tls.certificates() {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    builder.build().map_err(|e| invalid(&e))
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
        "a password was missing or refused: REDIS_URL's user and password are given to the \
         Sentinels and to the master; when the master has its own, or the Sentinels take none, \
         put the master's in store.sentinel_master_password (and its ACL user, if not \
         default, in store.sentinel_master_username), and in REDIS_URL only the Sentinels'",
    )
}
