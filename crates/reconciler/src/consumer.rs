//! The consumer loop: read deliveries from the store's stream, apply them, acknowledge them
//! (ARCHITECTURE §8).
//!
//! Several reconcilers may run; each is one consumer of the same group. A delivery is
//! acknowledged only after it was applied, so a reconciler killed mid-batch leaves its
//! deliveries pending: it takes them up again when it restarts, and any other reconciler claims
//! them once they have been idle for `claim_idle`. Applying one twice is harmless.
//!
//! A delivery that cannot be applied (a non-retryable store error on its content) must not
//! hold the stream up: when a batch fails so, its deliveries are applied one by one, and one
//! that keeps failing is kept as a dead letter with the error once it has been delivered
//! `max_deliveries` times, then acknowledged. A store that is unavailable is waited for, and
//! counts against no delivery. Reads are bounded in bytes (`max_batch_bytes` over the largest
//! body the receiver takes), so memory does not depend on what Meta sends.

use std::sync::Arc;
use std::time::Duration;

use herald_core::metrics as m;
use herald_store::{Store, StoreError, WebhookEntry};
use tokio_util::sync::CancellationToken;

use crate::apply::Reconciler;

/// How the loop reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// This consumer's name in the group (stable across restarts of one instance).
    pub name: String,
    /// Deliveries per read, at most.
    pub batch: usize,
    /// How long one read waits for new deliveries.
    pub block: Duration,
    /// How long another consumer's unacknowledged delivery waits before this one takes it.
    pub claim_idle: Duration,
    /// A delivery that failed to apply this many times is kept as a dead letter.
    pub max_deliveries: u32,
    /// The bytes one read may bring in, at most: `batch` is lowered so that that many of the
    /// largest bodies the receiver takes fit.
    pub max_batch_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            name: "reconciler".into(),
            batch: 256,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            max_batch_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ConsumerConfig {
    /// Deliveries per read: `batch`, or fewer so that `max_batch_bytes` holds them.
    pub fn read_count(&self) -> usize {
        let fits = self.max_batch_bytes / crate::receiver::BODY_LIMIT;
        self.batch.min(fits).max(1)
    }
}

/// How often the count of dead letters dropped by the store's cap is exported.
const DEAD_COUNT_EVERY: Duration = Duration::from_secs(30);

async fn apply_and_ack<S: Store>(
    rec: &Reconciler<S>,
    cfg: &ConsumerConfig,
    entries: &[WebhookEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let bodies: Vec<&[u8]> = entries.iter().map(|e| e.body.as_slice()).collect();
    // A delivery read before was perhaps applied in part, then not acknowledged.
    let apply = async |bodies: &[&[u8]], again: bool| {
        if again {
            rec.apply_again(bodies).await
        } else {
            rec.apply(bodies).await
        }
    };
    let again = entries.iter().any(|e| e.deliveries > 1);
    match apply(&bodies, again).await {
        Ok(()) => ack(rec, entries).await,
        Err(e) if e.is_retryable() => Err(e),
        // Some delivery in the batch cannot be applied: find which, one by one.
        Err(_) => {
            for entry in entries {
                match apply(&[entry.body.as_slice()], true).await {
                    Ok(()) => ack(rec, std::slice::from_ref(entry)).await?,
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) if entry.deliveries >= cfg.max_deliveries => {
                        tracing::error!(
                            entry = %entry.id,
                            deliveries = entry.deliveries,
                            error = %e,
                            "a webhook delivery keeps failing; kept as a dead letter"
                        );
                        metrics::counter!(m::RECONCILER_DEAD_LETTERS_TOTAL, "reason" => "apply_failed")
                            .increment(1);
                        rec.store
                            .dead_letter("apply_failed", &e.to_string(), &entry.body)
                            .await?;
                        ack(rec, std::slice::from_ref(entry)).await?;
                    }
                    Err(e) => {
                        // Left unacknowledged: delivered again after the backoff.
                        tracing::warn!(
                            entry = %entry.id,
                            deliveries = entry.deliveries,
                            error = %e,
                            "a webhook delivery failed to apply; it will be tried again"
                        );
                    }
                }
            }
            Err(StoreError::Invalid(
                "a webhook delivery failed to apply".into(),
            ))
        }
    }
}

async fn ack<S: Store>(rec: &Reconciler<S>, entries: &[WebhookEntry]) -> Result<(), StoreError> {
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    rec.store.ack_webhooks(&ids).await?;
    if let Some(oldest) = entries.iter().map(|e| e.received).min() {
        let lag = jiff::Timestamp::now().duration_since(oldest);
        metrics::gauge!(m::RECONCILER_LAG_SECONDS).set(lag.as_secs_f64().max(0.0));
    }
    Ok(())
}

/// Runs until `shutdown`. Store errors are logged and retried with backoff; nothing is
/// acknowledged that was not applied or kept as a dead letter.
pub async fn run<S: Store>(
    rec: Arc<Reconciler<S>>,
    cfg: ConsumerConfig,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let count = cfg.read_count();
    // Deliveries this consumer read before a restart (or failed to apply) come first.
    let mut recover = true;
    let mut last_claim = tokio::time::Instant::now();
    let mut last_dead_count: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if last_dead_count.is_none_or(|t| t.elapsed() >= DEAD_COUNT_EVERY) {
            last_dead_count = Some(tokio::time::Instant::now());
            if let Ok(c) = rec.store.dead_letter_counts().await {
                metrics::counter!(m::RECONCILER_DEAD_LETTERS_DROPPED_TOTAL).absolute(c.dropped);
            }
        }
        let step = async {
            if recover {
                let mine = rec.store.pending_webhooks(&cfg.name, count).await?;
                if mine.is_empty() {
                    recover = false;
                }
                return apply_and_ack(&rec, &cfg, &mine).await;
            }
            if last_claim.elapsed() >= cfg.claim_idle / 2 {
                last_claim = tokio::time::Instant::now();
                let stale = rec
                    .store
                    .claim_stale_webhooks(&cfg.name, cfg.claim_idle, count)
                    .await?;
                if !stale.is_empty() {
                    tracing::warn!(
                        count = stale.len(),
                        "took over deliveries another reconciler left unacknowledged"
                    );
                }
                apply_and_ack(&rec, &cfg, &stale).await?;
            }
            let fresh = rec.store.read_webhooks(&cfg.name, count, cfg.block).await?;
            apply_and_ack(&rec, &cfg, &fresh).await
        };
        let result = tokio::select! {
            r = step => r,
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => {
                if backoff > Duration::from_millis(100) {
                    herald_core::recovered!(STORE, "the reconciler reaches the store again");
                }
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                // What was read stays pending for this consumer: go back to it when the store
                // answers again (or, for a delivery that failed to apply, to try it again).
                recover = true;
                if e.is_retryable() {
                    herald_core::warn_repeated!(
                        STORE,
                        "reconciler cannot reach the store",
                        error = %e,
                        retry_in_ms = herald_core::millis(backoff)
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The reconciler's store failures, logged a few times however long they last.
static STORE: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_in_bytes() {
        let four_mib = crate::receiver::BODY_LIMIT;
        let cfg = |batch, max_batch_bytes| ConsumerConfig {
            batch,
            max_batch_bytes,
            ..ConsumerConfig::default()
        };
        assert_eq!(
            cfg(256, 64 * 1024 * 1024).read_count(),
            64 * 1024 * 1024 / four_mib
        );
        assert_eq!(
            cfg(8, 64 * 1024 * 1024).read_count(),
            8,
            "never more than batch"
        );
        assert_eq!(cfg(256, 1).read_count(), 1, "at least one");
    }
}
