//! The in-memory store: every campaign, job and index in this process, behind one lock
//! (ARCHITECTURE §3).
//!
//! For the demo (which then needs nothing but the Rust toolchain), fast tests and trying
//! Herald out; `serve` uses it only when chosen explicitly (`store.backend = "memory"`),
//! since nothing survives a restart and several processes cannot share it. It keeps the same
//! rules as the Redis backend and passes the same conformance suite.
//!
//! Its clock is tokio's: the wall-clock time at creation plus the time tokio has seen pass
//! since. In a test with paused time, leases, delays, windows and rates therefore follow the
//! paused clock, deterministically.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use herald_core::{
    CampaignAction, CampaignId, CampaignStatus, JobId, MessagingLimit, PauseReason, PhoneE164,
    Recipient, Stats, WaMessageId,
};
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::{
    Applied, Campaign, CampaignCursor, CampaignPage, ClaimRequest, ClaimedJob, DeadLetter,
    FailureRow, InDoubtExpired, InDoubtPolicy, JobRef, JobView, LINKED_OPT_OUT, NewCampaign,
    Outcome, PairReservation, QualityRecord, Reach, ReachUse, RecipientOutcome, Reclaimed, Result,
    RunningCampaign, Settle, SettleResult, StatusUpdate, Store, StoreError, SuppressionScope,
    WebhookEntry, Why,
};

mod campaign;
mod pace;
mod stream;

use campaign::{Camp, millis};

/// How long a pair reservation remembers the campaign, for reply attribution.
const REPLY_MEMORY: Duration = Duration::from_secs(72 * 3600);
/// How long a message id lookup is kept (Meta's 30-day delivery horizon, plus one).
const MESSAGE_HORIZON_MS: i64 = 31 * 86_400_000;
/// Suppression list page size.
const SUPPRESSION_PAGE: usize = 1000;

#[derive(Debug)]
struct Pair {
    next_ms: i64,
    campaign: CampaignId,
    expires_ms: i64,
}

/// How far a phone number's webhooks have demonstrably caught up (see
/// [`Store::expire_in_doubt`]).
#[derive(Debug, Clone, Copy)]
struct WebhookHealth {
    /// The latest acceptance time (ms) of a message whose status has been applied.
    caught_up: i64,
    /// When (ms) a status last arrived more than [`crate::BACKLOG_LAG`] after its event: a
    /// backlog (an outage being retried) was still draining then.
    backlog: i64,
}

impl Default for WebhookHealth {
    fn default() -> Self {
        Self {
            caught_up: i64::MIN,
            backlog: i64::MIN,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    campaigns: BTreeMap<CampaignId, Camp>,
    suppression: HashMap<String, BTreeSet<u64>>,
    /// (phone number id, number) → why it is suppressed (ms, reason).
    suppression_why: HashMap<(String, u64), (i64, String)>,
    /// (phone number id, business-scoped user id) → the number it stands for.
    users: HashMap<(String, String), u64>,
    /// Per phone number id: opted-out users whose number is not known yet.
    unlinked: HashMap<String, BTreeSet<String>>,
    /// (phone number id, user) → when the window closes (ms).
    windows: HashMap<(String, u64), i64>,
    /// The limiter's theoretical arrival time per phone number id (µs).
    rate: HashMap<String, pace::Log>,
    /// The same per capped campaign of a phone number id.
    campaign_rate: HashMap<(String, CampaignId), i64>,
    pairs: HashMap<(String, u64), Pair>,
    /// Per portfolio: each user counted against the messaging limit → when (ms).
    reach: HashMap<String, HashMap<u64, i64>>,
    /// Per portfolio: Meta's messaging limit, as last recorded.
    limits: HashMap<String, MessagingLimit>,
    /// Phone number id → its throughput level (messages/s).
    throughput: HashMap<String, u32>,
    /// Display number (digits) → phone number id.
    displays: HashMap<String, String>,
    /// Message id → (job, accepted at ms).
    messages: HashMap<WaMessageId, (JobId, i64)>,
    /// The size at which `messages` is next pruned of lookups past Meta's horizon (0: the
    /// first threshold). Doubled past what a prune leaves, so adding stays O(1) on average.
    messages_prune_at: usize,
    stream: stream::Stream,
    /// Per phone number id: how far its webhooks have demonstrably caught up.
    webhooks: HashMap<String, WebhookHealth>,
    quality: BTreeMap<String, QualityRecord>,
    /// Role → (holder, until ms).
    leads: HashMap<String, (String, i64)>,
    rotation: usize,
    /// Campaigns created so far (their creation order).
    created: u64,
}

/// The store in this process's memory. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    base: Timestamp,
    started: tokio::time::Instant,
    appended: Notify,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            base: Timestamp::now(),
            started: tokio::time::Instant::now(),
            appended: Notify::new(),
        }
    }

    /// The store's clock.
    pub fn now(&self) -> Timestamp {
        self.base + self.started.elapsed()
    }

    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a half-applied change behind: every
        // change is computed, then written; so the state is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Up to `limit` campaigns created before the place `below`, newest first.
    fn newest_before(&self, below: u64, limit: usize) -> Vec<&Camp> {
        let mut older: Vec<&Camp> = self
            .campaigns
            .values()
            .filter(|c| c.created < below)
            .collect();
        older.sort_by_key(|c| std::cmp::Reverse(c.created));
        older.truncate(limit);
        older
    }

    fn camp(&mut self, id: &CampaignId) -> Result<&mut Camp> {
        self.campaigns
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    fn transition(
        &mut self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
        now: i64,
    ) -> Result<CampaignStatus> {
        let camp = self.camp(id)?;
        let c = &mut camp.campaign;
        let from = c.status;
        if from == CampaignStatus::Cancelled && action == CampaignAction::Cancel {
            // Cancelling again finishes what a cancel left (it is idempotent).
            camp.cancel_unsent();
            return Ok(from);
        }
        let to = from.apply(action)?;
        c.status = to;
        c.updated_ms = now;
        c.pause_reason = match to {
            CampaignStatus::Paused => Some(reason.unwrap_or_else(PauseReason::operator)),
            _ => None,
        };
        if to == CampaignStatus::Running && c.started_ms.is_none() {
            c.started_ms = Some(now);
        }
        if to.is_final() {
            c.finished_ms = Some(now);
        }
        if to == CampaignStatus::Cancelled {
            camp.cancel_unsent();
        }
        tracing::info!(campaign = %id, from = %from, to = %to, "campaign status changed");
        Ok(to)
    }

    /// A portfolio's users counted against its messaging limit within `window_ms` of
    /// `now_ms` (those the window has left are dropped).
    fn counted(&mut self, portfolio: &str, now_ms: i64, window_ms: i64) -> &mut HashMap<u64, i64> {
        let counted = self.reach.entry(portfolio.to_owned()).or_default();
        counted.retain(|_, at| *at > now_ms.saturating_sub(window_ms));
        counted
    }

    /// Completes those of the `touched` campaigns that have nothing left to send or settle.
    fn complete_idle(&mut self, touched: BTreeSet<CampaignId>, now: i64) {
        for id in touched {
            if let Some(c) = self.campaigns.get_mut(&id)
                && c.maybe_complete(now)
            {
                completed(&id);
            }
        }
    }

    fn add_lookup(&mut self, message_id: &WaMessageId, job: JobId, now: i64) {
        const FIRST_PRUNE: usize = 100_000;
        if self.messages.len() > self.messages_prune_at.max(FIRST_PRUNE) {
            self.messages
                .retain(|_, (_, at)| now - *at < MESSAGE_HORIZON_MS);
            self.messages_prune_at = FIRST_PRUNE.max(2 * self.messages.len());
        }
        self.messages.insert(message_id.clone(), (job, now));
    }
}

/// A store call on the hot path is an await point that, over a network, suspends the
/// caller; in memory it would not, and a loop of them could keep other tasks from running.
/// So it yields, as I/O would.
async fn cooperate() {
    tokio::task::yield_now().await;
}

/// The key of a phone number's marketing-only suppression list (beside its own id, the key
/// of the list of every message).
fn marketing_list(phone_number_id: &str) -> String {
    format!("{phone_number_id}/marketing")
}

fn list_of(phone_number_id: &str, scope: SuppressionScope) -> String {
    match scope {
        SuppressionScope::All => phone_number_id.to_owned(),
        SuppressionScope::Marketing => marketing_list(phone_number_id),
    }
}

impl MemoryStore {
    fn suppress_in(&self, list: &str, phones: &[PhoneE164], why: &Why) {
        let mut s = self.lock();
        s.suppression
            .entry(list.to_owned())
            .or_default()
            .extend(phones.iter().map(|p| p.as_u64()));
        for p in phones {
            s.suppression_why
                .entry((list.to_owned(), p.as_u64()))
                .or_insert_with(|| (why.at.as_millisecond(), why.reason.clone()));
        }
    }

    fn suppressed_in(&self, list: &str, phones: &[PhoneE164]) -> Vec<bool> {
        let s = self.lock();
        let set = s.suppression.get(list);
        phones
            .iter()
            .map(|p| set.is_some_and(|set| set.contains(&p.as_u64())))
            .collect()
    }
}

/// The use of a portfolio's budget whose counted users are `counted` (user → ms).
fn reach_use(counted: &HashMap<u64, i64>, window_ms: i64) -> ReachUse {
    ReachUse {
        used: counted.len() as u64,
        frees_at: counted
            .values()
            .min()
            .and_then(|at| Timestamp::from_millisecond(at.saturating_add(window_ms)).ok()),
    }
}

fn completed(id: &CampaignId) {
    tracing::info!(campaign = %id, "campaign completed");
}

impl Store for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_campaign(&self, c: NewCampaign) -> Result<Campaign> {
        c.spec
            .validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let now = self.now_ms();
        let id = CampaignId::generate(u64::try_from(now).unwrap_or(0), rand::random::<u32>());
        let campaign = Campaign {
            id: id.clone(),
            name: c.spec.name.clone(),
            status: CampaignStatus::Draft,
            pause_reason: None,
            phone_number_id: c.phone_number_id,
            template: c.template,
            spec: c.spec,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            finished_ms: None,
        };
        let mut s = self.lock();
        s.created += 1;
        let created = s.created;
        s.campaigns.insert(id, Camp::new(campaign.clone(), created));
        Ok(campaign)
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Campaign> {
        Ok(self.lock().camp(id)?.campaign.clone())
    }

    async fn update_spec(&self, id: &CampaignId, spec: &herald_core::CampaignSpec) -> Result<()> {
        spec.validate()
            .map_err(|e| StoreError::Invalid(format!("spec: {e}")))?;
        let mut inner = self.lock();
        let c = &mut inner.camp(id)?.campaign;
        if c.status.is_final() {
            return Err(StoreError::Final(id.clone(), c.status));
        }
        c.spec = spec.clone();
        Ok(())
    }

    /// The cursor is a campaign's place in creation order (unique here).
    async fn campaigns_from(
        &self,
        from: Option<CampaignCursor>,
        limit: usize,
    ) -> Result<CampaignPage> {
        let limit = limit.max(1);
        let s = self.lock();
        let older = s.newest_before(from.map_or(u64::MAX, |c| c.0), limit);
        let next = match older.last() {
            Some(last) if older.len() == limit => Some(CampaignCursor(last.created)),
            _ => None,
        };
        Ok(CampaignPage {
            campaigns: older.into_iter().map(|c| c.campaign.clone()).collect(),
            next,
        })
    }

    async fn list_campaigns_page(
        &self,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>> {
        let s = self.lock();
        let below = match before {
            None => u64::MAX,
            Some(id) => s
                .campaigns
                .get(id)
                .map(|c| c.created)
                .ok_or_else(|| crate::no_page_from(id))?,
        };
        Ok(s.newest_before(below, limit)
            .into_iter()
            .map(|c| c.campaign.clone())
            .collect())
    }

    async fn delete_campaign(&self, id: &CampaignId) -> Result<()> {
        let mut s = self.lock();
        let c = s.camp(id)?;
        let stats = c.stats();
        crate::check_deletable(
            id,
            c.campaign.status,
            i64::try_from(stats.in_flight).unwrap_or(i64::MAX),
            i64::try_from(stats.in_doubt).unwrap_or(i64::MAX),
        )?;
        s.campaigns.remove(id);
        // Its lookups would find no job; in this store they go with it.
        s.messages.retain(|_, (job, _)| job.campaign != *id);
        s.campaign_rate.retain(|(_, c), _| c != id);
        Ok(())
    }

    async fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
    ) -> Result<CampaignStatus> {
        let now = self.now_ms();
        self.lock().transition(id, action, reason, now)
    }

    async fn running_campaigns(&self) -> Result<Vec<RunningCampaign>> {
        Ok(self
            .lock()
            .campaigns
            .values()
            .filter(|c| c.campaign.status == CampaignStatus::Running)
            .map(|c| RunningCampaign {
                id: c.campaign.id.clone(),
                phone_number_id: c.campaign.phone_number_id.clone(),
                mps: c.campaign.spec.mps,
            })
            .collect())
    }

    async fn due_scheduled(&self, now: Timestamp) -> Result<Vec<CampaignId>> {
        Ok(self
            .lock()
            .campaigns
            .values()
            .filter(|c| {
                c.campaign.status == CampaignStatus::Scheduled
                    && c.campaign.spec.schedule_at.is_none_or(|at| at <= now)
            })
            .map(|c| c.campaign.id.clone())
            .collect())
    }

    async fn hold_upload(&self, id: &CampaignId, upload: u64, hold: Duration) -> Result<()> {
        let now = self.now_ms();
        let mut s = self.lock();
        let camp = s.camp(id)?;
        camp.uploads.retain(|_, until| *until > now);
        let status = camp.campaign.status;
        if status.is_final() && !camp.uploads.contains_key(&upload) {
            return Err(StoreError::Final(id.clone(), status));
        }
        camp.uploads.insert(upload, now + millis(hold).max(1));
        Ok(())
    }

    async fn release_upload(&self, id: &CampaignId, upload: u64) -> Result<()> {
        self.lock().camp(id)?.uploads.remove(&upload);
        Ok(())
    }

    async fn enqueue_batch(&self, id: &CampaignId, recipients: &[Recipient]) -> Result<Vec<bool>> {
        let mut s = self.lock();
        let camp = s.camp(id)?;
        let status = camp.campaign.status;
        if status.is_final() {
            return Err(StoreError::Final(id.clone(), status));
        }
        Ok(camp.enqueue(recipients))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        cooperate().await;
        let now = self.now_ms();
        let mut s = self.lock();
        let mut ids: Vec<CampaignId> = s
            .campaigns
            .values()
            .filter(|c| c.campaign.status == CampaignStatus::Running)
            .filter(|c| {
                req.phone_number_id
                    .as_ref()
                    .is_none_or(|p| *p == c.campaign.phone_number_id)
            })
            .map(|c| c.campaign.id.clone())
            .collect();
        if ids.is_empty() || req.max == 0 {
            return Ok(Vec::new());
        }
        // Start at a different campaign each call; give each an equal share, then hand what
        // one could not use to the others.
        s.rotation = s.rotation.wrapping_add(1);
        let start = s.rotation % ids.len();
        ids.rotate_left(start);
        let lease_ms = millis(req.lease);
        let mut jobs = Vec::with_capacity(req.max);
        let mut hungry = ids;
        while jobs.len() < req.max && !hungry.is_empty() {
            let share = (req.max - jobs.len()).div_ceil(hungry.len());
            let mut still = Vec::new();
            for id in hungry {
                let want = share.min(req.max - jobs.len());
                if want == 0 {
                    break;
                }
                let camp = s.camp(&id)?;
                let got = camp.claim(want, req.token, lease_ms, now);
                if got.is_empty() && camp.maybe_complete(now) {
                    completed(&id);
                }
                if got.len() == want {
                    still.push(id);
                }
                jobs.extend(got);
            }
            hungry = still;
        }
        Ok(jobs)
    }

    async fn start(&self, jobs: &[JobRef]) -> Result<Vec<bool>> {
        cooperate().await;
        let mut s = self.lock();
        Ok(jobs
            .iter()
            .map(|j| {
                s.campaigns
                    .get_mut(&j.id.campaign)
                    .is_some_and(|c| c.start(j.id.seq, j.token))
            })
            .collect())
    }

    async fn settle(&self, settles: &[Settle]) -> Result<Vec<SettleResult>> {
        cooperate().await;
        let now = self.now_ms();
        let mut s = self.lock();
        let mut out = Vec::with_capacity(settles.len());
        let mut touched = BTreeSet::new();
        for st in settles {
            if let Outcome::Accepted { message_id } = &st.outcome {
                s.add_lookup(message_id, st.job.id.clone(), now);
            }
            let r = match s.campaigns.get_mut(&st.job.id.campaign) {
                Some(c) => c.settle(st.job.id.seq, st.job.token, &st.outcome, now),
                None => SettleResult::Stale,
            };
            touched.insert(st.job.id.campaign.clone());
            out.push(r);
        }
        s.complete_idle(touched, now);
        Ok(out)
    }

    async fn renew(&self, jobs: &[JobRef], lease: Duration) -> Result<()> {
        let until = self.now_ms() + millis(lease);
        let mut s = self.lock();
        for j in jobs {
            if let Some(c) = s.campaigns.get_mut(&j.id.campaign) {
                c.renew(j.token.0, until);
            }
        }
        Ok(())
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed> {
        let now = self.now_ms();
        let mut total = Reclaimed::default();
        for (id, c) in &mut self.lock().campaigns {
            let (pending, doubt) = c.reclaim(now);
            if pending + doubt > 0 {
                tracing::warn!(campaign = %id, to_pending = pending, to_in_doubt = doubt, "reclaimed expired leases");
            }
            total.to_pending += pending;
            total.to_in_doubt += doubt;
        }
        Ok(total)
    }

    async fn expire_in_doubt(
        &self,
        grace: Duration,
        policy: InDoubtPolicy,
    ) -> Result<InDoubtExpired> {
        let now = self.now_ms();
        let grace = millis(grace);
        let before = now - grace;
        let mut total = InDoubtExpired::default();
        let mut s = self.lock();
        let State {
            campaigns,
            webhooks,
            ..
        } = &mut *s;
        for (id, c) in campaigns {
            let health = webhooks
                .get(&c.campaign.phone_number_id)
                .copied()
                .unwrap_or_default();
            // Jobs that went in doubt a grace period before the latest message whose status
            // arrived; none at all while a backlog drained within the last grace period.
            let evidence = if now.saturating_sub(health.backlog) < grace {
                i64::MIN
            } else {
                health.caught_up.saturating_sub(grace)
            };
            let (resent, failed, waiting) =
                c.expire_doubt(before, evidence, policy == InDoubtPolicy::Resend);
            total.resent += resent;
            total.failed += failed;
            total.waiting += waiting;
            if c.maybe_complete(now) {
                completed(id);
            }
        }
        Ok(total)
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<Applied>> {
        cooperate().await;
        let now = self.now_ms();
        let mut s = self.lock();
        let mut out = Vec::with_capacity(updates.len());
        let mut touched = BTreeSet::new();
        for u in updates {
            let job = u.job.clone().or_else(|| {
                u.message_id
                    .as_ref()
                    .and_then(|m| s.messages.get(m))
                    .filter(|(_, at)| now - at < MESSAGE_HORIZON_MS)
                    .map(|(j, _)| j.clone())
            });
            let Some(job) = job else {
                out.push(Applied::Unknown);
                continue;
            };
            let r = match s.campaigns.get_mut(&job.campaign) {
                Some(c) => {
                    let (r, accepted_at) = c.apply_status(job.seq, u, now);
                    let pnid = c.campaign.phone_number_id.clone();
                    let health = s.webhooks.entry(pnid).or_default();
                    if let Some(at) = accepted_at {
                        health.caught_up = health.caught_up.max(at);
                    }
                    if crate::lags(u, now) {
                        health.backlog = now;
                    }
                    r
                }
                None => Applied::Unknown,
            };
            // A job found by callback id: make its message id findable too.
            if r == Applied::Changed
                && u.job.is_some()
                && let Some(m) = &u.message_id
                && !s.messages.contains_key(m)
            {
                s.add_lookup(m, job.clone(), now);
            }
            touched.insert(job.campaign);
            out.push(r);
        }
        s.complete_idle(touched, now);
        Ok(out)
    }

    async fn stats(&self, id: &CampaignId) -> Result<Stats> {
        Ok(self.lock().camp(id)?.stats())
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobView>> {
        Ok(self
            .lock()
            .campaigns
            .get(&id.campaign)
            .and_then(|c| c.view(id.seq)))
    }

    async fn job_for_message(&self, message_id: &WaMessageId) -> Result<Option<JobId>> {
        let now = self.now_ms();
        Ok(self
            .lock()
            .messages
            .get(message_id)
            .filter(|(_, at)| now - at < MESSAGE_HORIZON_MS)
            .map(|(j, _)| j.clone()))
    }

    async fn add_rejects(
        &self,
        id: &CampaignId,
        rejects: &[crate::UploadReject],
        keep: usize,
    ) -> Result<u64> {
        let mut s = self.lock();
        let camp = s.camp(id)?;
        let mut new = 0;
        for r in rejects {
            let fp = r.fingerprint();
            if camp.reject_fps.contains(&fp) {
                continue;
            }
            if camp.rejects.len() < keep {
                camp.rejects.push(r.row.clone());
            }
            if camp.reject_fps.len() < keep.saturating_mul(crate::REJECT_MEMORY) {
                camp.reject_fps.insert(fp);
            }
            *camp
                .counters
                .entry(format!("upl:{}", r.reason.as_str()))
                .or_default() += 1;
            new += 1;
        }
        Ok(new)
    }

    async fn failures(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<FailureRow>, Option<u64>)> {
        let mut s = self.lock();
        let camp = s.camp(id)?;
        let count = count.max(1);
        let rejects = camp.rejects.len() as u64;
        if cursor < rejects {
            let end = (cursor + count as u64).min(rejects);
            let rows = camp.rejects[cursor as usize..end as usize].to_vec();
            return Ok((rows, Some(end)));
        }
        // Then the jobs, `count` of them per page.
        let jobs = camp.jobs.len() as u64;
        let first = cursor - rejects;
        if first >= jobs {
            return Ok((Vec::new(), None));
        }
        let last = (first + count as u64).min(jobs);
        let rows = (first..last)
            .filter_map(|i| camp.failure_row(u32::try_from(i + 1).ok()?))
            .collect();
        Ok((rows, (last < jobs).then_some(rejects + last)))
    }

    async fn outcomes(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<RecipientOutcome>, Option<u64>)> {
        let mut s = self.lock();
        let camp = s.camp(id)?;
        let jobs = camp.jobs.len() as u64;
        let last = (cursor + count.max(1) as u64).min(jobs);
        let rows = (cursor..last)
            .filter_map(|i| camp.outcome(u32::try_from(i + 1).ok()?))
            .collect();
        Ok((rows, (last < jobs).then_some(last)))
    }

    async fn count_reply(&self, id: &CampaignId, phone: PhoneE164) -> Result<bool> {
        // A campaign deleted since it messaged the user counts nothing (as on Redis).
        Ok(self
            .lock()
            .campaigns
            .get_mut(id)
            .is_some_and(|c| c.count_reply(phone)))
    }

    async fn pause_matching(
        &self,
        phone_number_id: Option<&str>,
        template: Option<&str>,
        reason: PauseReason,
    ) -> Result<Vec<CampaignId>> {
        let now = self.now_ms();
        let mut s = self.lock();
        let ids: Vec<CampaignId> = s
            .campaigns
            .values()
            .filter(|c| c.campaign.status == CampaignStatus::Running)
            .filter(|c| phone_number_id.is_none_or(|p| c.campaign.phone_number_id == p))
            .filter(|c| template.is_none_or(|t| c.campaign.template.as_deref() == Some(t)))
            .map(|c| c.campaign.id.clone())
            .collect();
        for id in &ids {
            s.transition(id, CampaignAction::Pause, Some(reason.clone()), now)?;
        }
        Ok(ids)
    }

    async fn suppress(&self, phone_number_id: &str, phones: &[PhoneE164], why: &Why) -> Result<()> {
        self.suppress_in(phone_number_id, phones, why);
        Ok(())
    }

    async fn suppress_marketing(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &Why,
    ) -> Result<()> {
        self.suppress_in(&marketing_list(phone_number_id), phones, why);
        Ok(())
    }

    async fn suppressions(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<SuppressionScope>>> {
        let all = self.suppressed_in(phone_number_id, phones);
        let marketing = self.suppressed_in(&marketing_list(phone_number_id), phones);
        Ok(crate::scopes(&all, &marketing))
    }

    async fn suppression_reasons(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<Why>>> {
        let list = list_of(phone_number_id, scope);
        let s = self.lock();
        let on = s.suppression.get(&list);
        Ok(phones
            .iter()
            .map(|p| {
                if !on.is_some_and(|set| set.contains(&p.as_u64())) {
                    return None;
                }
                let (at, reason) = s.suppression_why.get(&(list.clone(), p.as_u64()))?;
                Some(Why {
                    reason: reason.clone(),
                    at: Timestamp::from_millisecond(*at).ok()?,
                })
            })
            .collect())
    }

    async fn link_users(
        &self,
        phone_number_id: &str,
        links: &[(String, PhoneE164)],
    ) -> Result<u64> {
        let now_ms = self.now_ms();
        let mut s = self.lock();
        let mut suppressed = 0;
        for (user, phone) in links {
            s.users
                .insert((phone_number_id.to_owned(), user.clone()), phone.as_u64());
            let was_out = s
                .unlinked
                .get_mut(phone_number_id)
                .is_some_and(|set| set.remove(user));
            if was_out {
                s.suppression
                    .entry(phone_number_id.to_owned())
                    .or_default()
                    .insert(phone.as_u64());
                s.suppression_why
                    .entry((phone_number_id.to_owned(), phone.as_u64()))
                    .or_insert_with(|| (now_ms, LINKED_OPT_OUT.to_owned()));
                suppressed += 1;
            }
        }
        Ok(suppressed)
    }

    async fn user_phone(&self, phone_number_id: &str, user_id: &str) -> Result<Option<PhoneE164>> {
        let s = self.lock();
        Ok(s.users
            .get(&(phone_number_id.to_owned(), user_id.to_owned()))
            .and_then(|p| PhoneE164::from_u64(*p).ok()))
    }

    async fn opt_out_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .unlinked
            .entry(phone_number_id.to_owned())
            .or_default()
            .insert(user_id.to_owned()))
    }

    async fn opt_in_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .unlinked
            .get_mut(phone_number_id)
            .is_some_and(|set| set.remove(user_id)))
    }

    async fn unsuppress(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<u64> {
        let mut s = self.lock();
        let mut was = vec![false; phones.len()];
        for list in [phone_number_id.to_owned(), marketing_list(phone_number_id)] {
            for p in phones {
                s.suppression_why.remove(&(list.clone(), p.as_u64()));
            }
            if let Some(set) = s.suppression.get_mut(&list) {
                for (w, p) in was.iter_mut().zip(phones) {
                    *w |= set.remove(&p.as_u64());
                }
            }
        }
        Ok(was.iter().filter(|w| **w).count() as u64)
    }

    async fn unlinked_opt_outs(
        &self,
        phone_number_id: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>)> {
        let s = self.lock();
        Ok(s.unlinked
            .get(phone_number_id)
            .map_or((0, Vec::new()), |set| {
                (set.len() as u64, set.iter().take(max).cloned().collect())
            }))
    }

    async fn suppressed(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        Ok(self.suppressed_in(phone_number_id, phones))
    }

    async fn list_suppressed(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        cursor: u64,
    ) -> Result<(Vec<PhoneE164>, Option<u64>)> {
        let s = self.lock();
        let Some(set) = s.suppression.get(&list_of(phone_number_id, scope)) else {
            return Ok((Vec::new(), None));
        };
        let page: Vec<u64> = set
            .range(cursor..)
            .take(SUPPRESSION_PAGE + 1)
            .copied()
            .collect();
        let next = page.get(SUPPRESSION_PAGE).copied();
        let phones = page
            .into_iter()
            .take(SUPPRESSION_PAGE)
            .filter_map(|p| PhoneE164::from_u64(p).ok())
            .collect();
        Ok((phones, next))
    }

    async fn open_window(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> Result<()> {
        let closes = at.as_millisecond() + 24 * 3_600_000;
        if closes <= self.now_ms() {
            return Ok(());
        }
        let mut s = self.lock();
        let w = s
            .windows
            .entry((phone_number_id.to_owned(), phone.as_u64()))
            .or_default();
        *w = (*w).max(closes);
        Ok(())
    }

    async fn windows_open(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        let now = self.now_ms();
        let s = self.lock();
        Ok(phones
            .iter()
            .map(|p| {
                s.windows
                    .get(&(phone_number_id.to_owned(), p.as_u64()))
                    .is_some_and(|closes| *closes > now)
            })
            .collect())
    }

    async fn plan_sends(
        &self,
        phone_number_id: &str,
        pace: crate::Pace,
        sends: &[crate::SendWant],
        max: usize,
        span: std::ops::Range<Duration>,
        token: u64,
    ) -> Result<crate::Plan> {
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4);
        if pace.capacity == 0
            || pace.window.is_zero()
            || sends.iter().flatten().any(|(_, i)| i.is_zero())
        {
            return Err(StoreError::Invalid("a rate of 0".into()));
        }
        let (lead_us, horizon_us) = (us(span.start), us(span.end));
        cooperate().await;
        let now = self.now();
        let now_us = now.as_microsecond();
        // No time before the caller can send.
        let floor_us = now_us + lead_us;
        let mut s = self.lock();
        let mut campaigns: HashMap<CampaignId, i64> = HashMap::new();
        for (id, _) in sends.iter().flatten() {
            let key = (phone_number_id.to_owned(), id.clone());
            campaigns
                .entry(id.clone())
                .or_insert_with(|| s.campaign_rate.get(&key).copied().unwrap_or(0).max(now_us));
        }
        let log = s.rate.entry(phone_number_id.to_owned()).or_default();
        log.prune(now_us, pace);
        let mut number = log.next_time(floor_us, pace);
        let until = now_us + horizon_us;
        let mut at: Vec<Option<i64>> = vec![None; sends.len()];
        let mut latest: Vec<Option<i64>> = vec![None; sends.len()];
        let mut granted = 0;
        let mut grant = |i: usize, number: &mut i64, campaigns: &mut HashMap<CampaignId, i64>| {
            at[i] = Some(*number);
            if let Some((id, own)) = &sends[i] {
                campaigns.insert(id.clone(), *number + us(*own));
            }
            let slot = crate::SlotId {
                token,
                index: u32::try_from(i).unwrap_or(u32::MAX),
            };
            latest[i] = Some(log.plan(*number, slot.member(), pace));
            *number = log.next_time(floor_us, pace);
        };
        // Sends passed over because their campaign had no slot yet, in order.
        let mut waiting: Vec<usize> = Vec::new();
        for (i, send) in sends.iter().enumerate() {
            if granted >= max || number > until {
                break;
            }
            // A waiting send whose campaign's slot has come goes first.
            if let Some(pos) = waiting.iter().position(|&w| {
                sends[w]
                    .as_ref()
                    .is_some_and(|(id, _)| campaigns[id] <= number)
            }) {
                let w = waiting.remove(pos);
                grant(w, &mut number, &mut campaigns);
                granted += 1;
                if granted >= max || number > until {
                    break;
                }
            }
            match send {
                Some((id, _)) if campaigns[id] > number => waiting.push(i),
                _ => {
                    grant(i, &mut number, &mut campaigns);
                    granted += 1;
                }
            }
        }
        // When asking again can grant something: a send held by the number's window once its
        // next time is within the horizon; one held by its campaign's once that slot has come
        // (the number's times are shared: none is skipped ahead for it).
        let mut next: Option<i64> = None;
        if at.iter().any(Option::is_none) {
            let mut earliest = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
            if sends.len() > granted + waiting.len() {
                earliest(number - horizon_us);
            }
            for w in waiting {
                if let Some((id, _)) = &sends[w] {
                    earliest(campaigns[id].max(number - horizon_us));
                }
            }
        }
        let stamps = |times: Vec<Option<i64>>| -> Vec<Option<Timestamp>> {
            times
                .into_iter()
                .map(|t| t.and_then(|t| Timestamp::from_microsecond(t).ok()))
                .collect()
        };
        let (at, until) = (stamps(at), stamps(latest));
        for (id, tat) in campaigns {
            s.campaign_rate
                .insert((phone_number_id.to_owned(), id), tat);
        }
        s.rate.retain(|_, l| !l.is_empty());
        Ok(crate::Plan {
            at,
            until,
            now,
            next: next.and_then(|n| Timestamp::from_microsecond(n).ok()),
        })
    }

    async fn move_slots(
        &self,
        phone_number_id: &str,
        pace: crate::Pace,
        slots: &[crate::SlotId],
    ) -> Result<Vec<Option<Timestamp>>> {
        cooperate().await;
        let now_us = self.now().as_microsecond();
        let mut s = self.lock();
        let Some(log) = s.rate.get_mut(phone_number_id) else {
            return Ok(vec![None; slots.len()]);
        };
        Ok(slots
            .iter()
            .map(|slot| {
                log.move_to(&slot.member(), now_us, pace)
                    .and_then(|t| Timestamp::from_microsecond(t).ok())
            })
            .collect())
    }

    async fn record_departures(
        &self,
        phone_number_id: &str,
        departures: &[(crate::SlotId, Timestamp)],
    ) -> Result<()> {
        cooperate().await;
        let mut s = self.lock();
        if let Some(log) = s.rate.get_mut(phone_number_id) {
            for (slot, at) in departures {
                log.relog(&slot.member(), at.as_microsecond());
            }
        }
        Ok(())
    }

    async fn reserve_pairs(
        &self,
        phone_number_id: &str,
        sends: &[(PhoneE164, CampaignId)],
        interval: Duration,
    ) -> Result<Vec<PairReservation>> {
        cooperate().await;
        let now = self.now_ms();
        let memory = millis(REPLY_MEMORY.max(interval));
        let mut s = self.lock();
        let mut out = Vec::with_capacity(sends.len());
        for (phone, campaign) in sends {
            let key = (phone_number_id.to_owned(), phone.as_u64());
            match s.pairs.get(&key) {
                Some(p) if p.expires_ms > now && p.next_ms > now => {
                    out.push(PairReservation::NotBefore(
                        Timestamp::from_millisecond(p.next_ms).unwrap_or(self.now()),
                    ))
                }
                _ => {
                    s.pairs.insert(
                        key,
                        Pair {
                            next_ms: now + millis(interval),
                            campaign: campaign.clone(),
                            expires_ms: now + memory,
                        },
                    );
                    out.push(PairReservation::Ok);
                }
            }
        }
        if s.pairs.len() > 200_000 {
            s.pairs.retain(|_, p| p.expires_ms > now);
        }
        Ok(out)
    }

    async fn release_pair(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        campaign: &CampaignId,
    ) -> Result<()> {
        cooperate().await;
        let key = (phone_number_id.to_owned(), phone.as_u64());
        if let Some(p) = self.lock().pairs.get_mut(&key)
            && p.campaign == *campaign
        {
            p.next_ms = 0;
        }
        Ok(())
    }

    async fn set_throughput(&self, phone_number_id: &str, display: &str, mps: u32) -> Result<()> {
        cooperate().await;
        let mut s = self.lock();
        s.throughput.insert(phone_number_id.to_owned(), mps);
        s.displays
            .insert(crate::digits(display), phone_number_id.to_owned());
        Ok(())
    }

    async fn set_throughput_by_display(&self, display: &str, mps: u32) -> Result<bool> {
        cooperate().await;
        let mut s = self.lock();
        let Some(pnid) = s.displays.get(&crate::digits(display)).cloned() else {
            return Ok(false);
        };
        s.throughput.insert(pnid, mps);
        Ok(true)
    }

    async fn throughput(&self, phone_number_id: &str) -> Result<Option<u32>> {
        cooperate().await;
        Ok(self.lock().throughput.get(phone_number_id).copied())
    }

    async fn reserve_reach(
        &self,
        portfolio: &str,
        limit: u64,
        window: Duration,
        phones: &[PhoneE164],
    ) -> Result<(Vec<Reach>, ReachUse)> {
        cooperate().await;
        let now = self.now_ms();
        let window = millis(window);
        let mut s = self.lock();
        let counted = s.counted(portfolio, now, window);
        let mut out = Vec::with_capacity(phones.len());
        for phone in phones {
            let used = counted.len() as u64;
            out.push(match counted.get_mut(&phone.as_u64()) {
                Some(at) => {
                    // Later than before even within one ms, so that giving back the earlier
                    // reservation leaves this one.
                    *at = now.max(*at + 1);
                    Reach::Counted
                }
                None if used < limit => {
                    counted.insert(phone.as_u64(), now);
                    Reach::Reserved(Timestamp::from_millisecond(now).unwrap_or(self.now()))
                }
                None => Reach::Full,
            });
        }
        Ok((out, reach_use(counted, window)))
    }

    async fn release_reach(&self, portfolio: &str, phone: PhoneE164, at: Timestamp) -> Result<()> {
        cooperate().await;
        if let Some(counted) = self.lock().reach.get_mut(portfolio)
            && counted.get(&phone.as_u64()) == Some(&at.as_millisecond())
        {
            counted.remove(&phone.as_u64());
        }
        Ok(())
    }

    async fn reach_use(&self, portfolio: &str, window: Duration) -> Result<ReachUse> {
        cooperate().await;
        let now = self.now_ms();
        let window = millis(window);
        let mut s = self.lock();
        Ok(reach_use(s.counted(portfolio, now, window), window))
    }

    async fn reach_frees(
        &self,
        portfolio: &str,
        window: Duration,
        n: u64,
    ) -> Result<Option<Timestamp>> {
        cooperate().await;
        let Some(i) = usize::try_from(n).ok().and_then(|n| n.checked_sub(1)) else {
            return Ok(None);
        };
        let now = self.now_ms();
        let window = millis(window);
        let mut s = self.lock();
        let mut times: Vec<i64> = s
            .counted(portfolio, now, window)
            .values()
            .copied()
            .collect();
        times.sort_unstable();
        Ok(times
            .get(i)
            .and_then(|at| Timestamp::from_millisecond(at + window).ok()))
    }

    async fn set_messaging_limit(&self, portfolio: &str, limit: MessagingLimit) -> Result<()> {
        cooperate().await;
        self.lock().limits.insert(portfolio.to_owned(), limit);
        Ok(())
    }

    async fn messaging_limit(&self, portfolio: &str) -> Result<Option<MessagingLimit>> {
        cooperate().await;
        Ok(self.lock().limits.get(portfolio).copied())
    }

    async fn last_campaign(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
    ) -> Result<Option<CampaignId>> {
        let now = self.now_ms();
        Ok(self
            .lock()
            .pairs
            .get(&(phone_number_id.to_owned(), phone.as_u64()))
            .filter(|p| p.expires_ms > now)
            .map(|p| p.campaign.clone()))
    }

    async fn append_webhook(&self, body: &[u8]) -> Result<()> {
        let now = self.now();
        self.lock().stream.append(body, now);
        self.appended.notify_waiters();
        Ok(())
    }

    async fn read_webhooks(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<WebhookEntry>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Registered before looking, so an append between the look and the wait wakes it.
            let appended = self.appended.notified();
            let got = self.lock().stream.read_new(consumer, count, self.now_ms());
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn pending_webhooks(&self, consumer: &str, count: usize) -> Result<Vec<WebhookEntry>> {
        Ok(self.lock().stream.pending(consumer, count))
    }

    async fn claim_stale_webhooks(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<WebhookEntry>> {
        let now = self.now_ms();
        Ok(self
            .lock()
            .stream
            .claim_idle(consumer, millis(min_idle), count, now))
    }

    async fn ack_webhooks(&self, ids: &[String]) -> Result<()> {
        self.lock().stream.ack(ids);
        Ok(())
    }

    async fn dead_letter(&self, reason: &str, detail: &str, payload: &[u8]) -> Result<()> {
        let now = self.now_ms();
        self.lock().stream.dead_letter(reason, detail, payload, now);
        Ok(())
    }

    async fn dead_letter_counts(&self) -> Result<crate::DeadLetterCounts> {
        Ok(self.lock().stream.dead_letter_counts())
    }

    async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>> {
        Ok(self.lock().stream.dead_letters(count))
    }

    async fn record_quality(
        &self,
        display_phone_number: &str,
        event: &str,
        current_limit: Option<&str>,
    ) -> Result<()> {
        let at_ms = self.now_ms();
        self.lock().quality.insert(
            display_phone_number.to_owned(),
            QualityRecord {
                event: event.to_owned(),
                current_limit: current_limit.map(str::to_owned),
                at_ms,
            },
        );
        Ok(())
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms();
        let mut s = self.lock();
        let lease = s.leads.entry(role.to_owned()).or_insert((String::new(), 0));
        if lease.1 <= now || lease.0 == holder {
            *lease = (holder.to_owned(), now + millis(ttl));
            return Ok(true);
        }
        Ok(false)
    }

    async fn quality(&self) -> Result<BTreeMap<String, QualityRecord>> {
        Ok(self.lock().quality.clone())
    }
}
