//! A connection that maps Redis errors the one way ([`RedisStore::fail_for`]), and [`Run`],
//! which sends a command, a pipeline or a script ([`Call`]) through it: callers write
//! `cmd.run(&mut conn).await?` and never handle a `RedisError`.
//!
//! The connection is a [`Link`]: to one Redis, or to a Cluster. A pipeline or a script must
//! touch one hash slot on a Cluster; commands about several slots go through [`Conn::each`],
//! which pipelines them on one Redis and sends them side by side on a Cluster.

use futures::future::try_join_all;
use herald_core::CampaignId;
use herald_store::{Result, StoreError};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Arg, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, ToRedisArgs, Value,
};
use std::time::Duration;

use crate::RedisStore;

/// A connection to one Redis, or to a Redis Cluster. The Cluster client routes each command
/// to the master of its key's slot, follows MOVED and ASK, retries TRYAGAIN and reconnects
/// after a failover, a bounded number of times (see [`crate::RedisConfig`]); what still fails
/// reaches [`RedisStore::fail_for`].
#[derive(Clone)]
pub(crate) enum Link {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::One(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::One(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::One(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection borrowed from the store, carrying the store's error mapping.
pub(crate) struct Conn<'s> {
    store: &'s RedisStore,
    inner: Link,
}

impl<'s> Conn<'s> {
    pub(crate) fn new(store: &'s RedisStore, inner: Link) -> Self {
        Self { store, inner }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.inner, Link::Cluster(_))
    }

    /// Runs commands that may be about different hash slots, none depending on another,
    /// answering each one's reply in order: one pipeline on one Redis, side by side on a
    /// Cluster (each to its slot's master). Not a transaction either way.
    pub(crate) async fn each<T: FromRedisValue>(&mut self, cmds: Vec<Cmd>) -> Result<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let r = match &self.inner {
            Link::One(_) => {
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c);
                }
                pipe.query_async(&mut self.inner).await
            }
            Link::Cluster(c) => {
                try_join_all(cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                }))
                .await
            }
        };
        self.answer(r, None)
    }

    /// The answer to a call about campaign `id` (when there is one), mapped.
    fn answer<T>(&self, r: RedisResult<T>, id: Option<&CampaignId>) -> Result<T> {
        r.map_err(|e| self.store.fail_for(e, id))
    }

    /// Runs `first` and then the script `inv` about campaign `id`, answering the script's
    /// reply: in one round trip on one Redis; on a Cluster, where `first` may be about other
    /// slots, the script runs once `first` has been applied. When Redis has lost its scripts
    /// (a restart), the script did not run and is run again alone, which loads it; `first`
    /// must therefore be idempotent.
    pub(crate) async fn then_run<T: FromRedisValue>(
        &mut self,
        first: Vec<Cmd>,
        inv: &Call<'_>,
        id: &CampaignId,
    ) -> Result<T> {
        if self.is_cluster() {
            self.each::<()>(first).await?;
            return inv.run_for(self, id).await;
        }
        let mut pipe = redis::pipe();
        for c in first {
            pipe.add_command(c).ignore();
        }
        pipe.add_command(inv.command());
        match pipe.query_async::<(T,)>(&mut self.inner).await {
            Ok((reply,)) => Ok(reply),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                inv.run_for(self, id).await
            }
            Err(e) => self.answer(Err(e), Some(id)),
        }
    }

    /// `WAIT replicas timeout` where this connection wrote `keys`: on one Redis, there; on a
    /// Cluster, on the master of each key's slot (once per slot). Answers the fewest replicas
    /// that acknowledged.
    pub(crate) async fn wait(
        &mut self,
        replicas: u32,
        timeout: Duration,
        keys: &[String],
    ) -> Result<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(herald_core::millis(timeout));
        let r = match &mut self.inner {
            Link::One(c) => cmd.query_async::<i64>(c).await,
            Link::Cluster(c) => wait_on_masters(c, &cmd, keys).await,
        };
        self.answer(r, None)
    }

    /// Every key matching `pattern`, from every master of a Cluster. Keys written meanwhile
    /// may be missed, as with any `SCAN`.
    pub(crate) async fn scan(&mut self, pattern: &str) -> Result<Vec<String>> {
        let r = match &mut self.inner {
            Link::One(c) => {
                scan_node(pattern, |cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<Value>(&mut c).await }
                })
                .await
            }
            Link::Cluster(c) => scan_cluster(c, pattern).await,
        };
        self.answer(r, None)
    }

    /// Loads a script into Redis's script cache.
    pub(crate) async fn load(&mut self, script: &redis::Script) -> Result<()> {
        let r = script.prepare_invoke().load_async(&mut self.inner).await;
        self.answer(r, None).map(drop)
    }
}

/// Something Redis runs: a command, a pipeline (a transaction when made `atomic`) or a
/// script invocation.
pub(crate) trait Run {
    /// Sends it on a bare connection.
    async fn query<T: FromRedisValue>(&self, c: &mut Link) -> RedisResult<T>;

    /// Runs it; errors map as for no particular campaign.
    async fn run<T: FromRedisValue>(&self, conn: &mut Conn<'_>) -> Result<T> {
        let r = self.query(&mut conn.inner).await;
        conn.answer(r, None)
    }

    /// Runs it for campaign `id`: a script's refusals become [`StoreError::NotFound`] or
    /// [`StoreError::Final`] naming it.
    async fn run_for<T: FromRedisValue>(&self, conn: &mut Conn<'_>, id: &CampaignId) -> Result<T> {
        let r = self.query(&mut conn.inner).await;
        conn.answer(r, Some(id))
    }

    /// Runs it, answering `None` when Redis refuses it with the error `code`, which the
    /// caller expects and handles.
    async fn run_unless<T: FromRedisValue>(
        &self,
        conn: &mut Conn<'_>,
        code: &str,
    ) -> Result<Option<T>> {
        match self.query(&mut conn.inner).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(code) => Ok(None),
            Err(e) => conn.answer(Err(e), None),
        }
    }
}

impl Run for Cmd {
    async fn query<T: FromRedisValue>(&self, c: &mut Link) -> RedisResult<T> {
        self.query_async(c).await
    }
}

impl Run for Pipeline {
    async fn query<T: FromRedisValue>(&self, c: &mut Link) -> RedisResult<T> {
        self.query_async(c).await
    }
}

/// A script call, written as one `EVALSHA` as it is built: keys and arguments go straight
/// into two command buffers (redis's `ScriptInvocation` allocates each one and copies them
/// twice, which showed on the send path). Keys come first. Redis having lost its scripts (a
/// restart), it loads the script and calls again.
/// A command argument written as its `Display` shows it, straight into the command's buffer
/// (where `.to_string()` first would allocate a `String` per argument).
pub(crate) struct Shown<T>(pub(crate) T);

impl<T: std::fmt::Display> redis::ToRedisArgs for Shown<T> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(&self.0);
    }
}

impl<T: std::fmt::Display> redis::ToSingleRedisArg for Shown<T> {}

pub(crate) struct Call<'a> {
    script: &'a Script,
    keys: Cmd,
    args: Cmd,
}

impl<'a> Call<'a> {
    pub(crate) fn new(script: &'a Script) -> Self {
        Self {
            script,
            keys: Cmd::new(),
            args: Cmd::new(),
        }
    }

    pub(crate) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.arg(key);
        self
    }

    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.arg(arg);
        self
    }

    /// `EVALSHA <hash> <keys> <key>… <arg>…`.
    fn command(&self) -> Cmd {
        let keys = self.keys.args_iter().count();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys);
        for a in self.keys.args_iter().chain(self.args.args_iter()) {
            if let Arg::Simple(bytes) = a {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}

impl Run for Call<'_> {
    async fn query<T: FromRedisValue>(&self, c: &mut Link) -> RedisResult<T> {
        let cmd = self.command();
        match cmd.query_async(c).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.prepare_invoke().load_async(c).await?;
                cmd.query_async(c).await
            }
            r => r,
        }
    }
}

/// An input the store cannot write, named by what was wrong with it.
pub(crate) fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// `cmd` (a `WAIT`) on the master of each slot of `keys`; the fewest acknowledgements.
async fn wait_on_masters(
    c: &mut ClusterConnection,
    cmd: &Cmd,
    keys: &[String],
) -> RedisResult<i64> {
    let mut slots: Vec<Slot> = Vec::new();
    for slot in keys.iter().map(Slot::for_key) {
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    let mut fewest = i64::MAX;
    for slot in slots {
        let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
            slot,
            SlotAddr::Master,
        )));
        let acked: i64 = redis::from_redis_value(c.route_command(cmd.clone(), to).await?)?;
        fewest = fewest.min(acked);
    }
    Ok(fewest)
}

/// Every key matching `pattern` on every master of a Cluster.
async fn scan_cluster(c: &ClusterConnection, pattern: &str) -> RedisResult<Vec<String>> {
    let mut out = Vec::new();
    for (host, port) in crate::cluster::masters(&mut c.clone()).await? {
        let keys = scan_node(pattern, |cmd| {
            let mut c = c.clone();
            let to = crate::cluster::at(&host, port);
            async move { c.route_command(cmd, to).await }
        })
        .await?;
        out.extend(keys);
    }
    Ok(out)
}

/// Every key matching `pattern` on one node, asking with `ask` (which sends a command there).
async fn scan_node<F, Fut>(pattern: &str, ask: F) -> RedisResult<Vec<String>>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = RedisResult<Value>>,
{
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, got): (u64, Vec<String>) = redis::from_redis_value(ask(cmd).await?)?;
        keys.extend(got);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
