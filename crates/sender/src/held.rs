//! The jobs this process holds, and the promise that goes with each one (ARCHITECTURE §5): whatever happens to
//! the code holding it — an early return on a store error, a panic, a send task aborted at the
//! shutdown deadline, a lane that ends with jobs queued — the job is settled.
//!
//! A [`Held`] is the only handle to a claimed job. Settling it consumes it; dropping it
//! settles it with its fallback: [`Outcome::Released`] (back to pending) while its request has
//! not started, [`Outcome::InDoubt`] from the moment it may be on the wire. So no path can
//! leave a job claimed with nobody to settle it (its lease renewed forever), and no path can
//! put a job whose request may have reached Meta back in the queue.
//!
//! Settlements go to the settler over an unbounded channel, because a drop cannot wait. Its
//! length is bounded all the same: every message in it is a job this process holds, and
//! [`Ledger::room`] stops the lanes from claiming more while the settler is behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_core::CampaignId;
use herald_store::{ClaimedJob, JobRef, LeaseToken, Outcome, Settle};
use tokio::sync::mpsc;

/// Where settlements go, and which claims this process holds (for lease renewal).
#[derive(Debug)]
pub(crate) struct Ledger {
    tx: mpsc::UnboundedSender<Settle>,
    claims: Mutex<HashMap<(CampaignId, LeaseToken), (JobRef, usize)>>,
    held: AtomicUsize,
    max_held: usize,
}

impl Ledger {
    pub(crate) fn new(max_held: usize) -> (Self, mpsc::UnboundedReceiver<Settle>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ledger = Self {
            tx,
            claims: Mutex::new(HashMap::new()),
            held: AtomicUsize::new(0),
            max_held,
        };
        (ledger, rx)
    }

    /// Takes over freshly claimed jobs.
    pub(crate) fn hold(self: &std::sync::Arc<Self>, jobs: Vec<ClaimedJob>) -> Vec<Held> {
        if let Ok(mut m) = self.claims.lock() {
            for j in &jobs {
                m.entry((j.id.campaign.clone(), j.token))
                    .or_insert_with(|| (JobRef::from(j), 0))
                    .1 += 1;
            }
        }
        self.held.fetch_add(jobs.len(), Ordering::Relaxed);
        jobs.into_iter()
            .map(|job| Held {
                job,
                ledger: self.clone(),
                on_drop: Some(Outcome::Released),
            })
            .collect()
    }

    /// Jobs whose settlements landed in the store (or were refused for good): no longer
    /// held, so their leases need no renewal.
    pub(crate) fn landed<'a>(&self, jobs: impl IntoIterator<Item = &'a JobRef>) {
        let Ok(mut m) = self.claims.lock() else {
            return;
        };
        let mut n = 0;
        for j in jobs {
            n += 1;
            let key = (j.id.campaign.clone(), j.token);
            if let Some(e) = m.get_mut(&key) {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    m.remove(&key);
                }
            }
        }
        self.held.fetch_sub(n.min(self.held()), Ordering::Relaxed);
    }

    /// Jobs held, from claim until their settlement landed.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// How many more jobs this process may claim now.
    pub(crate) fn room(&self) -> usize {
        self.max_held.saturating_sub(self.held())
    }

    /// One job per held claim: enough for the store to renew each lease.
    pub(crate) fn samples(&self) -> Vec<JobRef> {
        self.claims
            .lock()
            .map(|m| m.values().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    fn send(&self, job: &ClaimedJob, outcome: Outcome) {
        let settle = Settle {
            job: JobRef::from(job),
            outcome,
        };
        if self.tx.send(settle).is_err() {
            // Only after the settler ended, which it does once every lane has: a bug.
            tracing::error!(job = %job.id, "the settler has stopped; the job is left to lease expiry");
        }
    }
}

/// A claimed job, settled exactly once: by [`Held::settle`], or by its drop.
#[derive(Debug)]
pub(crate) struct Held {
    job: ClaimedJob,
    ledger: std::sync::Arc<Ledger>,
    /// What a drop settles it as; `None` once settled.
    on_drop: Option<Outcome>,
}

impl Held {
    pub(crate) fn job(&self) -> &ClaimedJob {
        &self.job
    }

    /// The request is about to be made: from here a job that is dropped may have reached
    /// Meta, so it is in doubt, never released.
    pub(crate) fn sending(&mut self) {
        self.on_drop = Some(Outcome::InDoubt);
    }

    /// What Meta answered is known; should the code stop before settling (a store call on the
    /// way, an abort), this is what the job is settled as.
    pub(crate) fn decided(&mut self, outcome: Outcome) {
        self.on_drop = Some(outcome);
    }

    pub(crate) fn settle(mut self, outcome: Outcome) {
        self.on_drop = None;
        self.ledger.send(&self.job, outcome);
    }

    /// Settles with what [`Held::decided`] recorded.
    pub(crate) fn settle_decided(mut self) {
        if let Some(outcome) = self.on_drop.take() {
            self.ledger.send(&self.job, outcome);
        }
    }

    /// The store let go of the job itself (its campaign stopped running, or the lease was
    /// lost): nothing to settle.
    pub(crate) fn disown(mut self) {
        self.on_drop = None;
        self.ledger.landed([&JobRef::from(&self.job)]);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(outcome) = self.on_drop.take() {
            self.ledger.send(&self.job, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herald_core::{JobId, PhoneE164, Vars};

    use super::*;

    fn job(seq: u32) -> ClaimedJob {
        ClaimedJob {
            id: JobId::new(CampaignId::new("c").unwrap(), seq),
            phone: PhoneE164::from_u64(447_700_000_000 + u64::from(seq)).unwrap(),
            region: "GB".parse().unwrap(),
            vars: Vars::default(),
            attempts: 0,
            resend: false,
            token: LeaseToken(7),
        }
    }

    #[test]
    fn every_held_job_is_settled_once_whatever_happens_to_it() {
        let (ledger, mut rx) = Ledger::new(10);
        let ledger = Arc::new(ledger);
        let mut held = ledger.hold((0..5).map(job).collect());
        assert_eq!((ledger.held(), ledger.room()), (5, 5));
        assert_eq!(ledger.samples().len(), 1, "one claim token");
        let mut sending = held.pop().unwrap();
        sending.sending();
        let mut refused = held.pop().unwrap();
        refused.decided(Outcome::Failed {
            code: "131026".into(),
        });
        let settled = held.pop().unwrap();
        settled.settle(Outcome::Skipped {
            reason: herald_core::SkipReason::WindowClosed,
        });
        let disowned = held.pop().unwrap();
        disowned.disown();
        drop((held, sending, refused));
        let mut got: Vec<(u32, Outcome)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|s| (s.job.id.seq, s.outcome))
            .collect();
        got.sort_by_key(|(seq, _)| *seq);
        assert_eq!(
            got,
            [
                (0, Outcome::Released),
                (
                    2,
                    Outcome::Skipped {
                        reason: herald_core::SkipReason::WindowClosed
                    }
                ),
                (
                    3,
                    Outcome::Failed {
                        code: "131026".into()
                    }
                ),
                (4, Outcome::InDoubt),
            ],
            "dropped before sending: released; while sending: in doubt; decided: as decided"
        );
        assert_eq!(ledger.held(), 4, "the disowned one is no longer held");
    }
}
