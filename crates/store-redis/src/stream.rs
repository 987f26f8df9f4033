//! The webhook stream: a Redis stream with one consumer group. The receiver appends the raw
//! body and only then answers 200; reconcilers read, apply, and acknowledge. An entry read by
//! a consumer that dies stays pending until another claims it, so nothing is lost, and
//! applying an entry twice is harmless (statuses only move forward).

use std::collections::BTreeMap;

use redis::Value;

use herald_store::{
    DEAD_LETTERS_KEPT, DeadLetter, DeadLetterCounts, QualityRecord, Result, StoreError,
    WebhookEntry,
};

use crate::RedisStore;
use crate::conn::{Run, invalid};

pub(crate) const GROUP: &str = "reconciler";

fn text(v: &Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(v).ok()
}

/// Parses `[[id, [field, value, …]], …]` into entries.
fn entries(v: &Value) -> Result<Vec<WebhookEntry>> {
    let corrupt = || StoreError::Corrupt("webhook stream reply".into());
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            return Err(corrupt());
        };
        let id = pair.first().and_then(text).ok_or_else(corrupt)?;
        let body = match pair.get(1) {
            Some(Value::Array(fields)) => fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("b"))
                .and_then(|kv| redis::from_redis_value_ref::<Vec<u8>>(kv.get(1)?).ok()),
            // An entry deleted after it was read: nothing to apply.
            _ => None,
        };
        if let Some(body) = body {
            // A stream id is "<ms>-<n>", the ms being when Redis took the entry.
            let received = id
                .split('-')
                .next()
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .ok_or_else(corrupt)?;
            out.push(WebhookEntry {
                id,
                body,
                received,
                deliveries: 1,
            });
        }
    }
    Ok(out)
}

/// `XREADGROUP … STREAMS key id` answers `[[key, entries]]` (or nil).
fn read_reply(v: &Value) -> Result<Vec<WebhookEntry>> {
    match v {
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(kv)) => kv.get(1).map_or(Ok(Vec::new()), entries),
            _ => Ok(Vec::new()),
        },
        Value::Map(kvs) => kvs.first().map_or(Ok(Vec::new()), |(_, e)| entries(e)),
        _ => Ok(Vec::new()),
    }
}

impl RedisStore {
    /// Creates the consumer group (and the stream) if they do not exist yet.
    pub(crate) async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        // BUSYGROUP: it exists.
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.webhooks())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .run_unless::<()>(&mut conn, "BUSYGROUP")
            .await
            .map(drop)
    }

    async fn group_read(
        &self,
        consumer: &str,
        count: usize,
        block_ms: Option<u64>,
        from: &str,
    ) -> Result<Vec<WebhookEntry>> {
        // A blocking read holds its connection: never one of the shared ones. It blocks at
        // most cluster::MAX_BLOCK (callers read again).
        let block_ms = block_ms.map(|ms| ms.min(herald_core::millis(crate::cluster::MAX_BLOCK)));
        let mut conn = self
            .own_conn(std::time::Duration::from_millis(block_ms.unwrap_or(0)))
            .await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1));
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms.max(1));
        }
        cmd.arg("STREAMS").arg(self.keys.webhooks()).arg(from);
        match cmd.run_unless::<Value>(&mut conn, "NOGROUP").await? {
            Some(v) => read_reply(&v),
            // The stream or group vanished (a Redis restart without AOF, a purge): recreate.
            None => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
        }
    }

    /// Appends one delivery. With `store.replica_acks`, only once replicas hold it (see
    /// [`crate::replicas`]): the receiver answers Meta after this returns.
    pub(crate) async fn stream_append(&self, body: &[u8]) -> Result<()> {
        let mut conn = match self.replica_ack {
            // WAIT blocks its connection: a connection of its own, so nothing queues behind it.
            Some(ack) => self.own_conn(ack.timeout).await?,
            None => self.conn().await?,
        };
        let key = self.keys.webhooks();
        redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("b")
            .arg(body)
            .run::<String>(&mut conn)
            .await?;
        if let Some(ack) = self.replica_ack {
            crate::replicas::wait(&mut conn, ack, &[key], crate::replicas::Write::Webhook).await?;
        }
        Ok(())
    }

    pub(crate) async fn stream_read(
        &self,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<WebhookEntry>> {
        self.group_read(consumer, count, Some(block_ms), ">").await
    }

    pub(crate) async fn stream_pending(
        &self,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<WebhookEntry>> {
        let mut entries = self.group_read(consumer, count, None, "0").await?;
        self.delivery_counts(&mut entries).await?;
        Ok(entries)
    }

    /// Fills in how many times each entry has been delivered (XPENDING keeps the count; a
    /// history read and a claim each add one).
    async fn delivery_counts(&self, entries: &mut [WebhookEntry]) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let mut conn = self.conn().await?;
        let reply: Value = redis::cmd("XPENDING")
            .arg(self.keys.webhooks())
            .arg(GROUP)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len())
            .run(&mut conn)
            .await?;
        let Value::Array(rows) = reply else {
            return Ok(());
        };
        for row in rows {
            let Value::Array(fields) = row else { continue };
            let id = fields.first().and_then(text);
            let n = fields
                .get(3)
                .and_then(|v| redis::from_redis_value_ref::<u32>(v).ok());
            if let (Some(id), Some(n)) = (id, n)
                && let Some(e) = entries.iter_mut().find(|e| e.id == id)
            {
                e.deliveries = n;
            }
        }
        Ok(())
    }

    pub(crate) async fn stream_claim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<WebhookEntry>> {
        let mut conn = self.conn().await?;
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.webhooks())
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1))
            .run(&mut conn)
            .await?;
        let mut claimed = match &reply {
            Value::Array(parts) => parts.get(1).map_or(Ok(Vec::new()), entries)?,
            _ => Vec::new(),
        };
        self.delivery_counts(&mut claimed).await?;
        Ok(claimed)
    }

    pub(crate) async fn stream_ack(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        redis::pipe()
            .cmd("XACK")
            .arg(self.keys.webhooks())
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(self.keys.webhooks())
            .arg(ids)
            .ignore()
            .run::<()>(&mut conn)
            .await
    }

    pub(crate) async fn dead_append(
        &self,
        reason: &str,
        detail: &str,
        payload: &[u8],
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        // The total is counted beside the capped stream, so what the cap drops is known.
        let mut add = redis::cmd("XADD");
        add.arg(self.keys.dead())
            .arg("MAXLEN")
            .arg(DEAD_LETTERS_KEPT)
            .arg("*")
            .arg("reason")
            .arg(reason)
            .arg("detail")
            .arg(detail)
            .arg("payload")
            .arg(payload);
        conn.each::<redis::Value>(vec![add, redis::Cmd::incr(self.keys.dead_total(), 1)])
            .await
            .map(drop)
    }

    pub(crate) async fn dead_counts(&self) -> Result<DeadLetterCounts> {
        let mut conn = self.conn().await?;
        let mut len = redis::cmd("XLEN");
        len.arg(self.keys.dead());
        let counts: Vec<Option<u64>> = conn
            .each(vec![len, redis::Cmd::get(self.keys.dead_total())])
            .await?;
        let (kept, total) = (counts[0].unwrap_or(0), counts[1]);
        Ok(DeadLetterCounts {
            kept,
            dropped: total.unwrap_or(0).saturating_sub(kept),
        })
    }

    pub(crate) async fn dead_list(&self, count: usize) -> Result<Vec<DeadLetter>> {
        let mut conn = self.conn().await?;
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.keys.dead())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .run(&mut conn)
            .await?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in &items {
            let Value::Array(pair) = item else { continue };
            let id = pair.first().and_then(text).unwrap_or_default();
            let mut reason = String::new();
            let mut detail = String::new();
            let mut payload = String::new();
            if let Some(Value::Array(fields)) = pair.get(1) {
                for kv in fields.chunks(2) {
                    match (kv.first().and_then(text).as_deref(), kv.get(1)) {
                        (Some("reason"), Some(v)) => reason = text(v).unwrap_or_default(),
                        (Some("detail"), Some(v)) => detail = text(v).unwrap_or_default(),
                        (Some("payload"), Some(v)) => {
                            let bytes =
                                redis::from_redis_value_ref::<Vec<u8>>(v).unwrap_or_default();
                            payload = String::from_utf8_lossy(&bytes).into_owned();
                        }
                        _ => {}
                    }
                }
            }
            let at_ms = id
                .split('-')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default();
            out.push(DeadLetter {
                reason,
                detail,
                payload,
                at_ms,
            });
        }
        Ok(out)
    }

    pub(crate) async fn quality_record(
        &self,
        display: &str,
        event: &str,
        limit: Option<&str>,
    ) -> Result<()> {
        let record = QualityRecord {
            event: event.to_owned(),
            current_limit: limit.map(str::to_owned),
            at_ms: herald_core::unix_ms(),
        };
        let json = serde_json::to_string(&record).map_err(invalid)?;
        let mut conn = self.conn().await?;
        redis::cmd("HSET")
            .arg(self.keys.quality())
            .arg(display)
            .arg(json)
            .run::<()>(&mut conn)
            .await
    }

    pub(crate) async fn quality_all(&self) -> Result<BTreeMap<String, QualityRecord>> {
        let mut conn = self.conn().await?;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.quality())
            .run(&mut conn)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|r| (k, r)))
            .collect())
    }
}
