//! The periodic sweeps: expired leases, in-doubt jobs past their grace, scheduled campaigns
//! whose time has come, and the queue-depth gauges. Every step is an atomic store
//! transition, so any number of workers may run them at once.

use herald_core::repeated::Repeated;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{CampaignAction, CampaignId, metrics as m};
use herald_store::{CampaignWalk, InDoubtExpired, Reclaimed, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::SenderConfig;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub reclaimed: Reclaimed,
    pub in_doubt: InDoubtExpired,
    /// Scheduled campaigns this sweep started (another worker may have started others).
    pub started: Vec<CampaignId>,
}

/// Runs one sweep; `now` decides which scheduled campaigns are due.
pub async fn sweep<S: Store>(
    store: &S,
    cfg: &SenderConfig,
    now: jiff::Timestamp,
) -> Result<Sweep, StoreError> {
    let reclaimed = store.reclaim_expired().await?;
    let total = reclaimed.to_pending + reclaimed.to_in_doubt;
    if total > 0 {
        metrics::counter!(m::SENDER_RECLAIMED_JOBS_TOTAL).increment(total);
    }
    let in_doubt = store
        .expire_in_doubt(cfg.in_doubt_grace, cfg.in_doubt_policy)
        .await?;
    for (outcome, jobs, what) in [
        ("resent", in_doubt.resent, "resending once"),
        ("failed", in_doubt.failed, "failed"),
    ] {
        if jobs > 0 {
            metrics::counter!(m::SENDER_IN_DOUBT_EXPIRED_TOTAL, "outcome" => outcome)
                .increment(jobs);
            tracing::warn!(
                jobs,
                "in-doubt jobs got no webhook although later messages did; {what}"
            );
        }
    }
    metrics::gauge!(m::SENDER_IN_DOUBT_WAITING_JOBS).set(in_doubt.waiting as f64);
    let mut started = Vec::new();
    for id in store.due_scheduled(now).await? {
        // With no recipient, nothing would ever complete it: it waits for its first upload
        // (and starts at the first sweep after it).
        if store.stats(&id).await?.recipients == 0 {
            static EMPTY: Repeated = Repeated::new();
            herald_core::warn_repeated!(
                EMPTY,
                "a scheduled campaign came due with no recipient; it starts once some are uploaded",
                campaign = %id
            );
            continue;
        }
        // The transition is a compare-and-set: with several workers, one start wins.
        match store.transition(&id, CampaignAction::Start, None).await {
            Ok(_) => {
                tracing::info!(campaign = %id, "scheduled campaign started");
                started.push(id);
            }
            Err(StoreError::IllegalTransition(_) | StoreError::Final(..)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Sweep {
        reclaimed,
        in_doubt,
        started,
    })
}

/// How often the sweeps look for ended campaigns past `delete_ended_after` (each look reads
/// every campaign, a page at a time).
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Deletes the completed and cancelled campaigns that ended more than `after` before `now`.
/// One with sends still in flight or in doubt waits for a later look; one another worker
/// deleted first is no error. Answers those this call deleted.
pub async fn delete_ended<S: Store>(
    store: &S,
    after: Duration,
    now: jiff::Timestamp,
) -> Result<Vec<CampaignId>, StoreError> {
    let cutoff = now.as_millisecond() - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = Vec::new();
    let mut walk = CampaignWalk::new();
    while let Some(page) = walk.next(store).await? {
        for c in page {
            if !c.status.is_final() || c.finished_ms.is_none_or(|at| at > cutoff) {
                continue;
            }
            match store.delete_campaign(&c.id).await {
                Ok(()) => {
                    tracing::info!(campaign = %c.id, name = %c.name, "ended campaign deleted (store.delete_ended_after_days)");
                    deleted.push(c.id);
                }
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Sweeps every `maintenance_interval` until shutdown, deletes ended campaigns past
/// `delete_ended_after` every ten minutes, and keeps the queue-depth gauges of running
/// campaigns current (a campaign that stops running has its gauge set to 0).
pub(crate) async fn run<S: Store>(store: Arc<S>, cfg: SenderConfig, shutdown: CancellationToken) {
    let mut gauged: HashSet<CampaignId> = HashSet::new();
    let mut retention_due = tokio::time::Instant::now();
    loop {
        if let Some(after) = cfg.delete_ended_after
            && tokio::time::Instant::now() >= retention_due
        {
            static RETENTION: Repeated = Repeated::new();
            match delete_ended(&*store, after, jiff::Timestamp::now()).await {
                Ok(_) => {
                    herald_core::recovered!(RETENTION, "deleting ended campaigns works again");
                    retention_due = tokio::time::Instant::now() + RETENTION_EVERY;
                }
                Err(e) => herald_core::warn_repeated!(
                    RETENTION,
                    "deleting ended campaigns failed; will retry",
                    error = %e
                ),
            }
        }
        static SWEEPS: Repeated = Repeated::new();
        match sweep(&*store, &cfg, jiff::Timestamp::now()).await {
            Ok(_) => herald_core::recovered!(SWEEPS, "maintenance sweeps work again"),
            Err(e) => {
                herald_core::warn_repeated!(SWEEPS, "maintenance sweep failed; will retry", error = %e)
            }
        }
        if let Ok(running) = store.running_campaigns().await {
            let mut now = HashSet::new();
            for c in running {
                if let Ok(stats) = store.stats(&c.id).await {
                    metrics::gauge!(m::SENDER_QUEUE_DEPTH_JOBS, "campaign" => c.id.to_string())
                        .set(stats.pending as f64);
                }
                now.insert(c.id);
            }
            for gone in gauged.difference(&now) {
                metrics::gauge!(m::SENDER_QUEUE_DEPTH_JOBS, "campaign" => gone.to_string())
                    .set(0.0);
            }
            gauged = now;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(cfg.maintenance_interval) => {}
        }
    }
}
