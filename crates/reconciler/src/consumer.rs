//! The consumer loop: read deliveries from the store's stream, apply them, acknowledge them.
//!
//! Several reconcilers may run; each is one consumer of the same group. A delivery is
//! acknowledged only after it was applied, so a reconciler killed mid-batch leaves its
//! deliveries pending: it takes them up again when it restarts, and any other reconciler claims
//! them once they have been idle for `claim_idle`. Applying one twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use herald_core::metrics as m;
use herald_store::{Store, WebhookEntry};
use tokio_util::sync::CancellationToken;

use crate::apply::Reconciler;

/// How the loop reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// This consumer's name in the group (stable across restarts of one instance).
    pub name: String,
    /// Deliveries per read.
    pub batch: usize,
    /// How long one read waits for new deliveries.
    pub block: Duration,
    /// How long another consumer's unacknowledged delivery waits before this one takes it.
    pub claim_idle: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            name: "reconciler".into(),
            batch: 256,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(30),
        }
    }
}

async fn apply_and_ack<S: Store>(
    rec: &Reconciler<S>,
    entries: &[WebhookEntry],
) -> Result<(), herald_store::StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let bodies: Vec<&[u8]> = entries.iter().map(|e| e.body.as_slice()).collect();
    rec.apply(&bodies).await?;
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    rec.store.ack_webhooks(&ids).await?;
    if let Some(oldest) = entries.iter().map(|e| e.received).min() {
        let lag = jiff::Timestamp::now().duration_since(oldest);
        metrics::gauge!(m::RECONCILER_LAG_SECONDS).set(lag.as_secs_f64().max(0.0));
    }
    Ok(())
}

/// Runs until `shutdown`. Store errors are logged and retried with backoff; nothing is
/// acknowledged that was not applied.
pub async fn run<S: Store>(
    rec: Arc<Reconciler<S>>,
    cfg: ConsumerConfig,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    // Deliveries this consumer read before a restart come first.
    let mut recover = true;
    let mut last_claim = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let step = async {
            if recover {
                let mine = rec.store.pending_webhooks(&cfg.name, cfg.batch).await?;
                if mine.is_empty() {
                    recover = false;
                }
                return apply_and_ack(&rec, &mine).await;
            }
            if last_claim.elapsed() >= cfg.claim_idle / 2 {
                last_claim = tokio::time::Instant::now();
                let stale = rec
                    .store
                    .claim_stale_webhooks(&cfg.name, cfg.claim_idle, cfg.batch)
                    .await?;
                if !stale.is_empty() {
                    tracing::warn!(
                        count = stale.len(),
                        "took over deliveries another reconciler left unacknowledged"
                    );
                }
                apply_and_ack(&rec, &stale).await?;
            }
            let fresh = rec
                .store
                .read_webhooks(&cfg.name, cfg.batch, cfg.block)
                .await?;
            apply_and_ack(&rec, &fresh).await
        };
        let result = tokio::select! {
            r = step => r,
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                // What was read stays pending for this consumer: go back to it when the store
                // answers again.
                recover = true;
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "reconciler cannot reach the store");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
