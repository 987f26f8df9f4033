//! A connection that maps Redis errors the one way ([`RedisStore::fail_for`]), and [`Run`],
//! which sends a command, a pipeline or a script through it: callers write
//! `cmd.run(&mut conn).await?` and never handle a `RedisError`.

use herald_core::CampaignId;
use herald_store::{Result, StoreError};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, ScriptInvocation};

use crate::RedisStore;

/// A connection borrowed from the store, carrying the store's error mapping.
pub(crate) struct Conn<'s> {
    store: &'s RedisStore,
    inner: MultiplexedConnection,
}

impl<'s> Conn<'s> {
    pub(crate) fn new(store: &'s RedisStore, inner: MultiplexedConnection) -> Self {
        Self { store, inner }
    }

    /// The answer to a call about campaign `id` (when there is one), mapped.
    fn answer<T>(&self, r: RedisResult<T>, id: Option<&CampaignId>) -> Result<T> {
        r.map_err(|e| self.store.fail_for(e, id))
    }

    /// Runs `pipe` and then the script `inv` about campaign `id` in one round trip, answering
    /// the script's reply. When Redis has lost its scripts (a restart), the script did not run
    /// and is run again alone, which loads it; the rest of the pipeline must therefore be
    /// idempotent.
    pub(crate) async fn pipe_then_run<T: FromRedisValue>(
        &mut self,
        pipe: &mut Pipeline,
        inv: &ScriptInvocation<'_>,
        id: &CampaignId,
    ) -> Result<T> {
        pipe.invoke_script(inv);
        match pipe.query_async::<(T,)>(&mut self.inner).await {
            Ok((reply,)) => Ok(reply),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                inv.run_for(self, id).await
            }
            Err(e) => self.answer(Err(e), Some(id)),
        }
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
    async fn query<T: FromRedisValue>(&self, c: &mut MultiplexedConnection) -> RedisResult<T>;

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
    async fn query<T: FromRedisValue>(&self, c: &mut MultiplexedConnection) -> RedisResult<T> {
        self.query_async(c).await
    }
}

impl Run for Pipeline {
    async fn query<T: FromRedisValue>(&self, c: &mut MultiplexedConnection) -> RedisResult<T> {
        self.query_async(c).await
    }
}

impl Run for ScriptInvocation<'_> {
    async fn query<T: FromRedisValue>(&self, c: &mut MultiplexedConnection) -> RedisResult<T> {
        self.invoke_async(c).await
    }
}

/// An input the store cannot write, named by what was wrong with it.
pub(crate) fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}
