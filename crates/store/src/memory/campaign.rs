//! One campaign in memory: its record, counters, jobs and the indexes over them, and every
//! transition of a job, each changing the job and its counters together (the same rules the
//! Redis backend's Lua scripts keep).

use std::collections::{BTreeSet, HashMap, VecDeque};

use herald_core::cost::Charge;
use herald_core::{
    CampaignStatus, DeliveryState, JobId, PhoneE164, Progress, SkipReason, Vars, WaMessageId,
};

use crate::{
    Campaign, ClaimedJob, FailureRow, JobState, JobView, LeaseToken, Outcome, RecipientOutcome,
    SettleResult, stats_from_counters,
};

/// A job's state. `Claimed` and `Started` are in flight under the lease token of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum St {
    Pending,
    Claimed,
    Started,
    /// Since when (ms).
    InDoubt(i64),
    Accepted {
        /// When Meta took it (ms): the answer's arrival, or for a job settled by its
        /// webhook while in doubt, the start of the doubt.
        at: i64,
        delivery: DeliveryState,
        message_id: Option<WaMessageId>,
        /// The error code of a failed status webhook.
        webhook_error: Option<String>,
    },
    Failed(String),
    Skipped(SkipReason),
    Cancelled,
}

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) st: St,
    pub(super) attempts: u32,
    pub(super) phone: PhoneE164,
    pub(super) region: herald_core::Region,
    pub(super) token: Option<u64>,
    /// Kept after the job ends: a follow-up campaign fills its message from them.
    pub(super) vars: Option<Vars>,
    /// The single in-doubt resend was used.
    pub(super) resent: bool,
    /// Pending until its send window opens (counted in `window_wait`).
    pub(super) window_wait: bool,
    pub(super) pricing_counted: bool,
    /// The charge (or a free delivery) was counted.
    pub(super) charge_counted: bool,
    pub(super) reply_counted: bool,
}

#[derive(Debug)]
pub(super) struct Lease {
    pub(super) expires_ms: i64,
    pub(super) seqs: Vec<u32>,
    /// Jobs still held under it.
    pub(super) held: usize,
}

#[derive(Debug)]
pub(super) struct Camp {
    pub(super) campaign: Campaign,
    /// Creation order, for listing newest first.
    pub(super) created: u64,
    pub(super) counters: HashMap<String, i64>,
    /// Job `seq` is `jobs[seq - 1]`.
    pub(super) jobs: Vec<Job>,
    pub(super) dedupe: HashMap<u64, u32>,
    pub(super) queue: VecDeque<u32>,
    pub(super) delay: BTreeSet<(i64, u32)>,
    pub(super) leases: HashMap<u64, Lease>,
    pub(super) doubt: BTreeSet<(i64, u32)>,
    pub(super) rejects: Vec<FailureRow>,
    /// Fingerprints of the rejects seen (see [`crate::UploadReject::fingerprint`]).
    pub(super) reject_fps: std::collections::HashSet<u64>,
    /// Upload holds: token → until (ms).
    pub(super) uploads: HashMap<u64, i64>,
}

/// Counter changes of one operation.
type Bumps = HashMap<String, i64>;

fn bump(c: &mut Bumps, field: &str, n: i64) {
    *c.entry(field.to_owned()).or_default() += n;
}

impl Camp {
    pub(super) fn new(campaign: Campaign, created: u64) -> Self {
        Self {
            campaign,
            created,
            counters: HashMap::new(),
            jobs: Vec::new(),
            dedupe: HashMap::new(),
            queue: VecDeque::new(),
            delay: BTreeSet::new(),
            leases: HashMap::new(),
            doubt: BTreeSet::new(),
            rejects: Vec::new(),
            reject_fps: std::collections::HashSet::new(),
            uploads: HashMap::new(),
        }
    }

    pub(super) fn stats(&self) -> herald_core::Stats {
        stats_from_counters(self.counters.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    fn count(&self, field: &str) -> i64 {
        self.counters.get(field).copied().unwrap_or(0)
    }

    fn flush(&mut self, c: Bumps) {
        for (k, n) in c {
            if n != 0 {
                *self.counters.entry(k).or_default() += n;
            }
        }
    }

    fn job_mut(&mut self, seq: u32) -> Option<&mut Job> {
        self.jobs
            .get_mut(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    pub(super) fn job(&self, seq: u32) -> Option<&Job> {
        self.jobs.get(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    /// Adds recipients; answers whether each was new.
    pub(super) fn enqueue(&mut self, recipients: &[herald_core::Recipient]) -> Vec<bool> {
        let mut out = Vec::with_capacity(recipients.len());
        let mut added = 0;
        let mut regions = std::collections::BTreeMap::new();
        for r in recipients {
            let key = r.phone.as_u64();
            if self.dedupe.contains_key(&key) {
                out.push(false);
                continue;
            }
            self.jobs.push(Job {
                st: St::Pending,
                attempts: 0,
                phone: r.phone,
                region: r.region,
                token: None,
                vars: Some(r.vars.clone()),
                resent: false,
                window_wait: false,
                pricing_counted: false,
                charge_counted: false,
                reply_counted: false,
            });
            *regions.entry(r.region).or_insert(0) += 1;
            let seq = u32::try_from(self.jobs.len()).unwrap_or(u32::MAX);
            self.dedupe.insert(key, seq);
            self.queue.push_back(seq);
            added += 1;
            out.push(true);
        }
        let mut c = Bumps::new();
        bump(&mut c, "recipients", added);
        bump(&mut c, "pending", added);
        for (region, n) in regions {
            bump(&mut c, &format!("rgn:{region}"), n);
        }
        self.flush(c);
        out
    }

    /// A job that was not sent waits again: at the head of the queue, or until `delay_until`.
    /// Unless its campaign was cancelled: then it is cancelled, so that nothing of a cancelled
    /// campaign is ever pending again.
    fn back_to_wait(&mut self, seq: u32, c: &mut Bumps, delay_until: Option<i64>) {
        let cancelled = self.campaign.status == CampaignStatus::Cancelled;
        let Some(job) = self.job_mut(seq) else { return };
        job.token = None;
        if cancelled {
            job.st = St::Cancelled;
            bump(c, "cancelled", 1);
            return;
        }
        job.st = St::Pending;
        bump(c, "pending", 1);
        match delay_until {
            Some(at) => {
                self.delay.insert((at, seq));
            }
            None => self.queue.push_front(seq),
        }
    }

    /// One fewer job held under a lease token; the lease goes when none is left.
    fn release_lease(&mut self, token: u64, n: usize) {
        if let Some(l) = self.leases.get_mut(&token) {
            l.held = l.held.saturating_sub(n);
            if l.held == 0 {
                self.leases.remove(&token);
            }
        }
    }

    /// Claims up to `max` pending jobs under `token`. Due retries go first.
    pub(super) fn claim(
        &mut self,
        max: usize,
        token: LeaseToken,
        lease_ms: i64,
        now: i64,
    ) -> Vec<ClaimedJob> {
        if self.campaign.status != CampaignStatus::Running {
            return Vec::new();
        }
        let due: Vec<(i64, u32)> = self
            .delay
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .copied()
            .collect();
        for d in due.iter().rev() {
            self.delay.remove(d);
            self.queue.push_front(d.1);
        }
        let mut out = Vec::new();
        let mut held = Vec::new();
        let mut window_waits = 0;
        let id = self.campaign.id.clone();
        while out.len() < max {
            let Some(seq) = self.queue.pop_front() else {
                break;
            };
            let Some(job) = self.job_mut(seq) else {
                continue;
            };
            // Anything but a pending job is a stale queue entry (settled meanwhile).
            if job.st != St::Pending {
                continue;
            }
            job.st = St::Claimed;
            job.token = Some(token.0);
            let waited = std::mem::take(&mut job.window_wait);
            out.push(ClaimedJob {
                id: JobId::new(id.clone(), seq),
                phone: job.phone,
                region: job.region,
                vars: job.vars.clone().unwrap_or_default(),
                attempts: job.attempts,
                resend: job.resent,
                token,
            });
            held.push(seq);
            window_waits += i64::from(waited);
        }
        if !held.is_empty() {
            let n = held.len();
            let lease = self.leases.entry(token.0).or_insert(Lease {
                expires_ms: now + lease_ms,
                seqs: Vec::new(),
                held: 0,
            });
            lease.expires_ms = now + lease_ms;
            lease.seqs.extend(held);
            lease.held += n;
            let mut c = Bumps::new();
            bump(&mut c, "pending", -(n as i64));
            bump(&mut c, "window_wait", -window_waits);
            bump(&mut c, "in_flight", n as i64);
            self.flush(c);
        }
        out
    }

    /// Marks a held job started; releases it instead when the campaign is not running.
    pub(super) fn start(&mut self, seq: u32, token: LeaseToken) -> bool {
        let running = self.campaign.status == CampaignStatus::Running;
        let Some(job) = self.job_mut(seq) else {
            return false;
        };
        if job.st != St::Claimed || job.token != Some(token.0) {
            return false;
        }
        if running {
            job.st = St::Started;
            return true;
        }
        self.release_lease(token.0, 1);
        let mut c = Bumps::new();
        bump(&mut c, "in_flight", -1);
        self.back_to_wait(seq, &mut c, None);
        self.flush(c);
        false
    }

    /// Takes a job out of a not-yet-accepted state (evidence of acceptance arrived): its
    /// counter goes down and it leaves the index it sat in.
    fn leave(&mut self, seq: u32, c: &mut Bumps) {
        let Some(job) = self.job_mut(seq) else { return };
        let (st, token) = (job.st.clone(), job.token);
        if std::mem::take(&mut job.window_wait) {
            bump(c, "window_wait", -1);
        }
        match st {
            St::Pending => {
                bump(c, "pending", -1);
                self.delay.retain(|(_, s)| *s != seq);
            }
            St::Claimed | St::Started => {
                bump(c, "in_flight", -1);
                if let Some(t) = token {
                    self.release_lease(t, 1);
                }
            }
            St::InDoubt(since) => {
                bump(c, "in_doubt", -1);
                self.doubt.remove(&(since, seq));
            }
            _ => {}
        }
    }

    /// Settles one held job. A job no longer held under the token is stale, except that
    /// acceptance is evidence: it settles a job that was reclaimed or is in doubt.
    pub(super) fn settle(
        &mut self,
        seq: u32,
        token: LeaseToken,
        outcome: &Outcome,
        now: i64,
    ) -> SettleResult {
        let mut c = Bumps::new();
        let Some(job) = self.job(seq) else {
            return SettleResult::Stale;
        };
        let held = matches!(job.st, St::Claimed | St::Started) && job.token == Some(token.0);
        if !held {
            let open = matches!(
                job.st,
                St::Pending | St::Claimed | St::Started | St::InDoubt(_)
            );
            let Outcome::Accepted { message_id } = outcome else {
                return SettleResult::Stale;
            };
            if !open {
                // Its own webhook settled it first (by its callback data, with no message
                // id yet): the answer completes it, and nothing is counted twice.
                if let Some(job) = self.job_mut(seq)
                    && let St::Accepted {
                        message_id: id @ None,
                        ..
                    } = &mut job.st
                {
                    *id = Some(message_id.clone());
                    job.attempts += 1;
                    return SettleResult::Applied;
                }
                if let Some(Job {
                    st:
                        St::Accepted {
                            message_id: Some(id),
                            ..
                        },
                    ..
                }) = self.job(seq)
                    && id == message_id
                {
                    return SettleResult::Known;
                }
                return SettleResult::Stale;
            }
            self.leave(seq, &mut c);
            if let Some(job) = self.job_mut(seq) {
                job.st = accepted(message_id, now);
                job.attempts += 1;
                job.token = None;
            }
            bump(&mut c, "accepted", 1);
            self.flush(c);
            return SettleResult::Applied;
        }
        bump(&mut c, "in_flight", -1);
        let mut to_wait = None;
        let mut to_doubt = false;
        let mut window_wait = false;
        if let Some(job) = self.job_mut(seq) {
            job.token = None;
            match outcome {
                Outcome::Accepted { message_id } => {
                    job.st = accepted(message_id, now);
                    job.attempts += 1;
                    bump(&mut c, "accepted", 1);
                }
                Outcome::Failed { code } => {
                    job.st = St::Failed(code.clone());
                    job.attempts += 1;
                    bump(&mut c, "failed", 1);
                    bump(&mut c, "failed_before_accept", 1);
                    bump(&mut c, &format!("err:{code}"), 1);
                }
                Outcome::Delayed { delay } | Outcome::Deferred { delay } => {
                    if matches!(outcome, Outcome::Delayed { .. }) {
                        job.attempts += 1;
                    }
                    to_wait = Some(Some(now + millis(*delay)));
                }
                Outcome::AwaitWindow { delay } => {
                    to_wait = Some(Some(now + millis(*delay)));
                    window_wait = true;
                }
                Outcome::Skipped { reason } => {
                    job.st = St::Skipped(*reason);
                    bump(&mut c, "skipped_at_send", 1);
                    bump(&mut c, &format!("skip:{}", reason.as_str()), 1);
                }
                Outcome::InDoubt => {
                    job.st = St::InDoubt(now);
                    job.attempts += 1;
                    to_doubt = true;
                    bump(&mut c, "in_doubt", 1);
                }
                Outcome::Released => to_wait = Some(None),
            }
        }
        if let Some(delay_until) = to_wait {
            self.back_to_wait(seq, &mut c, delay_until);
        }
        if window_wait
            && let Some(job) = self.job_mut(seq)
            && job.st == St::Pending
        {
            job.window_wait = true;
            bump(&mut c, "window_wait", 1);
        }
        if to_doubt {
            self.doubt.insert((now, seq));
        }
        self.release_lease(token.0, 1);
        self.flush(c);
        SettleResult::Applied
    }

    /// Extends a lease that still exists (a swept one is never revived).
    pub(super) fn renew(&mut self, token: u64, until: i64) {
        if let Some(l) = self.leases.get_mut(&token) {
            l.expires_ms = until;
        }
    }

    /// Expired leases: claimed jobs back to the head of the queue, started ones in doubt.
    pub(super) fn reclaim(&mut self, now: i64) -> (u64, u64) {
        let expired: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_ms <= now)
            .map(|(t, _)| *t)
            .collect();
        let (mut pending, mut doubt) = (0, 0);
        let mut c = Bumps::new();
        for token in expired {
            let Some(lease) = self.leases.remove(&token) else {
                continue;
            };
            for seq in lease.seqs {
                let Some(job) = self.job_mut(seq) else {
                    continue;
                };
                if job.token != Some(token) {
                    continue;
                }
                match job.st {
                    St::Claimed => {
                        bump(&mut c, "in_flight", -1);
                        self.back_to_wait(seq, &mut c, None);
                        pending += 1;
                    }
                    St::Started => {
                        job.st = St::InDoubt(now);
                        job.token = None;
                        self.doubt.insert((now, seq));
                        bump(&mut c, "in_flight", -1);
                        bump(&mut c, "in_doubt", 1);
                        doubt += 1;
                    }
                    _ => {}
                }
            }
        }
        self.flush(c);
        (pending, doubt)
    }

    /// In-doubt jobs in doubt since `before` or earlier, and before `evidence` (statuses of
    /// messages accepted after them have arrived): resent once (same job, so the same callback
    /// id) or failed; a cancelled campaign's are cancelled. Answers (resent, failed, waiting
    /// for evidence).
    pub(super) fn expire_doubt(
        &mut self,
        before: i64,
        evidence: i64,
        resend: bool,
    ) -> (u64, u64, u64) {
        let expired: Vec<(i64, u32)> = self
            .doubt
            .iter()
            .take_while(|(since, _)| *since <= before && *since < evidence)
            .copied()
            .collect();
        let cancelled = self.campaign.status == CampaignStatus::Cancelled;
        let (mut resent, mut failed) = (0, 0);
        let mut c = Bumps::new();
        let mut requeue = Vec::new();
        for entry in expired {
            self.doubt.remove(&entry);
            let seq = entry.1;
            let Some(job) = self.job_mut(seq) else {
                continue;
            };
            if !matches!(job.st, St::InDoubt(_)) {
                continue;
            }
            bump(&mut c, "in_doubt", -1);
            if cancelled {
                job.st = St::Cancelled;
                bump(&mut c, "cancelled", 1);
            } else if resend && !job.resent {
                job.st = St::Pending;
                job.resent = true;
                requeue.push(seq);
                bump(&mut c, "pending", 1);
                resent += 1;
            } else {
                job.st = St::Failed("in_doubt".into());
                bump(&mut c, "failed", 1);
                bump(&mut c, "failed_before_accept", 1);
                bump(&mut c, "err:in_doubt", 1);
                failed += 1;
            }
        }
        for seq in requeue {
            self.queue.push_front(seq);
        }
        self.flush(c);
        let waiting = self
            .doubt
            .iter()
            .take_while(|(since, _)| *since <= before)
            .count() as u64;
        (resent, failed, waiting)
    }

    /// Cancels every unsent job (queued or delayed).
    pub(super) fn cancel_unsent(&mut self) {
        let mut c = Bumps::new();
        let seqs: Vec<u32> = self
            .queue
            .drain(..)
            .chain(std::mem::take(&mut self.delay).into_iter().map(|(_, s)| s))
            .collect();
        for seq in seqs {
            if let Some(job) = self.job_mut(seq)
                && job.st == St::Pending
            {
                job.st = St::Cancelled;
                if std::mem::take(&mut job.window_wait) {
                    bump(&mut c, "window_wait", -1);
                }
                bump(&mut c, "pending", -1);
                bump(&mut c, "cancelled", 1);
            }
        }
        self.flush(c);
    }

    /// Applies one webhook status: forward-only on the lattice. Answers the outcome and,
    /// when the job is (now) accepted, the evidence this status gives of how far the webhook
    /// pipeline has caught up: the later of the message's acceptance and the status's event.
    pub(super) fn apply_status(
        &mut self,
        seq: u32,
        u: &crate::StatusUpdate,
        now: i64,
    ) -> (crate::Applied, Option<i64>) {
        let Some(job) = self.job(seq) else {
            return (crate::Applied::Unknown, None);
        };
        let mut c = Bumps::new();
        let mut changed = false;
        let open = match job.st {
            St::InDoubt(since) => Some(since),
            St::Pending | St::Claimed | St::Started => Some(now),
            _ => None,
        };
        if let Some(at) = open {
            // A status for a job not accepted yet is evidence that Meta took it (for one in
            // doubt, when its doubt began).
            self.leave(seq, &mut c);
            bump(&mut c, "accepted", 1);
            if let Some(job) = self.job_mut(seq) {
                job.st = St::Accepted {
                    at,
                    delivery: DeliveryState::ACCEPTED,
                    message_id: None,
                    webhook_error: None,
                };
                job.token = None;
            }
            changed = true;
        }
        let Some(job) = self.job_mut(seq) else {
            return (crate::Applied::Unknown, None);
        };
        let St::Accepted {
            at,
            delivery,
            message_id,
            webhook_error,
        } = &mut job.st
        else {
            return (crate::Applied::Late, None);
        };
        let accepted_at = *at;
        let old = *delivery;
        let new = old.merge(DeliveryState::from_event(u.event));
        for (level, field) in [
            (Progress::Sent, "sent"),
            (Progress::Delivered, "delivered"),
            (Progress::Read, "read"),
        ] {
            if old.progress < level && new.progress >= level {
                bump(&mut c, field, 1);
            }
        }
        if new.failed && !old.failed {
            let code = u.error_code.map(|c| c.to_string());
            match code.as_deref().and_then(SkipReason::declined_by) {
                Some(reason) => bump(&mut c, &format!("dcl:{}", reason.as_str()), 1),
                None => {
                    bump(&mut c, "failed", 1);
                    if let Some(code) = &code {
                        bump(&mut c, &format!("err:{code}"), 1);
                    }
                }
            }
            if code.is_some() {
                *webhook_error = code;
            }
        }
        if new != old {
            *delivery = new;
            changed = true;
        }
        if message_id.is_none()
            && let Some(m) = &u.message_id
        {
            *message_id = Some(m.clone());
            changed = true;
        }
        if let Some(p) = &u.pricing
            && p.billable.is_some()
            && !job.pricing_counted
        {
            if p.billable == Some(true) {
                bump(&mut c, "billable", 1);
            }
            if let Some(cat) = &p.category {
                bump(&mut c, &format!("cat:{cat}"), 1);
            }
            job.pricing_counted = true;
            changed = true;
        }
        // Meta charges on delivery: a delivered or read status carries the charge.
        if let Some(charge) = u.pricing.as_ref().and_then(crate::Pricing::charge)
            && new.progress >= Progress::Delivered
            && !DeliveryState::from_event(u.event).failed
            && !job.charge_counted
        {
            match charge {
                Charge::Charged(category) => {
                    let day = crate::unix_day(u.timestamp.map_or(now, |t| t.saturating_mul(1000)));
                    bump(
                        &mut c,
                        &crate::charged_counter(job.region, &category, day),
                        1,
                    );
                }
                Charge::Free(kind) => bump(&mut c, &format!("free:{kind}"), 1),
            }
            job.charge_counted = true;
            changed = true;
        }
        self.flush(c);
        let applied = if changed {
            crate::Applied::Changed
        } else {
            crate::Applied::NoChange
        };
        // How far this status shows the webhooks have come: the message's acceptance, or the
        // event it reports (a delivery or read hours later), never beyond now.
        let event = u
            .timestamp
            .map_or(i64::MIN, |t| t.saturating_mul(1000).min(now));
        (applied, Some(accepted_at.max(event)))
    }

    /// Counts a reply once per recipient.
    pub(super) fn count_reply(&mut self, phone: PhoneE164) -> bool {
        let Some(&seq) = self.dedupe.get(&phone.as_u64()) else {
            return false;
        };
        let Some(job) = self.job_mut(seq) else {
            return false;
        };
        if job.reply_counted {
            return false;
        }
        job.reply_counted = true;
        let mut c = Bumps::new();
        bump(&mut c, "replied", 1);
        self.flush(c);
        true
    }

    /// A running campaign with recipients and nothing left to do (and no upload holding it
    /// open) completes. Answers whether it did.
    pub(super) fn maybe_complete(&mut self, now: i64) -> bool {
        if self.campaign.status != CampaignStatus::Running
            || self.count("recipients") == 0
            || ["pending", "in_flight", "in_doubt"]
                .iter()
                .any(|f| self.count(f) > 0)
            || self.uploads.values().any(|until| *until > now)
        {
            return false;
        }
        self.campaign.status = CampaignStatus::Completed;
        self.campaign.finished_ms = Some(now);
        self.campaign.updated_ms = now;
        true
    }

    pub(super) fn view(&self, seq: u32) -> Option<JobView> {
        let job = self.job(seq)?;
        let state = match &job.st {
            St::Pending => JobState::Pending,
            St::Claimed => JobState::InFlight { started: false },
            St::Started => JobState::InFlight { started: true },
            St::InDoubt(_) => JobState::InDoubt,
            St::Accepted {
                delivery,
                message_id,
                ..
            } => JobState::Accepted {
                message_id: message_id.clone(),
                delivery: *delivery,
            },
            St::Failed(code) => JobState::Failed { code: code.clone() },
            St::Skipped(reason) => JobState::Skipped { reason: *reason },
            St::Cancelled => JobState::Cancelled,
        };
        Some(JobView {
            id: JobId::new(self.campaign.id.clone(), seq),
            phone: job.phone,
            attempts: job.attempts,
            state,
        })
    }

    /// A job's recipient and outcome.
    pub(super) fn outcome(&self, seq: u32) -> Option<RecipientOutcome> {
        let job = self.job(seq)?;
        Some(RecipientOutcome {
            phone: job.phone,
            region: job.region,
            vars: job.vars.clone().unwrap_or_default(),
            state: self.view(seq)?.state,
            accepted_ms: match job.st {
                St::Accepted { at, .. } => Some(at),
                _ => None,
            },
            webhook_error: match &job.st {
                St::Accepted { webhook_error, .. } => webhook_error.clone(),
                _ => None,
            },
            replied: job.reply_counted,
        })
    }

    /// The failures report row of a job, if it failed or was skipped.
    pub(super) fn failure_row(&self, seq: u32) -> Option<FailureRow> {
        let job = self.job(seq)?;
        let (reason, detail) = match &job.st {
            St::Failed(code) => ("failed".to_owned(), code.clone()),
            St::Skipped(reason) => (reason.as_str().to_owned(), String::new()),
            St::Accepted {
                delivery,
                webhook_error,
                ..
            } if delivery.failed => {
                let code = webhook_error.clone().unwrap_or_default();
                (crate::webhook_failure_reason(&code).to_owned(), code)
            }
            _ => return None,
        };
        Some(FailureRow {
            line: None,
            phone: job.phone.to_string(),
            reason,
            detail,
        })
    }
}

fn accepted(message_id: &WaMessageId, at: i64) -> St {
    St::Accepted {
        at,
        delivery: DeliveryState::ACCEPTED,
        message_id: Some(message_id.clone()),
        webhook_error: None,
    }
}

pub(super) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(herald_core::millis(d)).unwrap_or(i64::MAX / 2)
}
