//! Settles send outcomes in the store in batches, retrying while the store is away.
//!
//! A settlement that cannot reach the store is not lost while the process lives: it is
//! retried until it lands. If the process dies first, the job's lease expires and it becomes
//! in doubt (its request was made), which webhook evidence or the grace period resolves.

use std::sync::Arc;
use std::time::Duration;

use herald_cloudapi::Messages;
use herald_store::{Settle, SettleResult, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Settlements per store call.
const BATCH: usize = 512;
/// A batch smaller than this waits up to FILL_WAIT for more: a settle call costs the store
/// about as much for a few jobs as for a hundred (at a high rate the answers come a few
/// dozen per millisecond), and a settlement waiting a moment holds nothing up.
const FILL: usize = 128;
const FILL_WAIT: Duration = Duration::from_millis(3);

pub(crate) async fn run<S: Store, M: Messages>(
    shared: Arc<Shared<S, M>>,
    mut rx: mpsc::UnboundedReceiver<Settle>,
    lanes_done: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        // Every held job holds a sender through the ledger, which outlives the lanes, so the
        // end is signalled separately: once the lanes are done (and with them every held
        // job, settled or dropped), drain what is queued, then stop.
        let first = tokio::select! {
            biased;
            m = rx.recv() => m,
            () = lanes_done.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        let until = tokio::time::Instant::now() + FILL_WAIT;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) if batch.len() >= FILL => break,
                Err(_) => match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(s)) => batch.push(s),
                    _ => break,
                },
            }
        }
        settle(&*shared, &batch).await;
    }
}

static SETTLES: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();

async fn settle<S: Store, M: Messages>(shared: &Shared<S, M>, batch: &[Settle]) {
    let mut wait = Duration::from_millis(50);
    loop {
        match shared.store.settle(batch).await {
            Ok(results) => {
                herald_core::recovered!(SETTLES, "settlements land again");
                let stale = results
                    .iter()
                    .filter(|r| **r == SettleResult::Stale)
                    .count();
                if stale > 0 {
                    // The lease expired (a long stall) and the job was reclaimed or settled
                    // otherwise meanwhile: the store kept the better-informed state. (A
                    // webhook that carried the same answer first is `Known`, not this.)
                    tracing::warn!(stale, "settlements arrived after their leases ended");
                }
                shared.ledger.landed(batch.iter().map(|s| &s.job));
                return;
            }
            Err(e) if e.is_retryable() => {
                herald_core::warn_repeated!(
                    SETTLES,
                    "cannot settle yet; retrying",
                    error = %e,
                    jobs = batch.len()
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                // Not retryable: a bug or corrupt data. Retrying would never succeed; the
                // leases expire and the jobs become in doubt, to be settled by evidence.
                tracing::error!(error = %e, jobs = batch.len(), "settlement refused");
                shared.ledger.landed(batch.iter().map(|s| &s.job));
                return;
            }
        }
    }
}
