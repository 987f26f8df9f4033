//! A store that fails chosen calls, for tests of error paths (feature `testsuite`).
//!
//! Every call goes to the inner store unless a rule for its operation (the trait method's
//! name) says otherwise: fail before the call (nothing happened), or after it (it happened,
//! but the caller is told it failed, as when Redis answers after the client timed out). A
//! status naming a poisoned message id fails `apply_status` every time, as content that
//! cannot be applied would.

#![allow(missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use herald_core::{
    CampaignAction, CampaignId, CampaignStatus, JobId, MessagingLimit, PauseReason, PhoneE164,
    Recipient, Stats, WaMessageId,
};
use jiff::Timestamp;

use crate::*;

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The store is unreachable; nothing happened.
    Unavailable,
    /// The call happened, but its answer was lost: the caller sees `Unavailable`.
    UnavailableAfter,
    /// A non-retryable error (bad data); nothing happened.
    Corrupt,
    /// The call succeeds, this long after it was made (a slow store; in tokio's time).
    Slow(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    failure: Failure,
    /// Fail one call in this many (1: every one).
    every: u32,
    /// Calls still to fail (`None`: no end).
    left: Option<u32>,
    seen: u32,
}

#[derive(Debug)]
pub struct Faulty<S> {
    inner: std::sync::Arc<S>,
    rules: Mutex<HashMap<&'static str, Vec<Rule>>>,
    poison: Mutex<HashSet<String>>,
    failed: Mutex<HashMap<&'static str, u32>>,
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl<S> Faulty<S> {
    /// Wraps a store (shared, so a test can look at it directly too).
    pub fn new(inner: std::sync::Arc<S>) -> Self {
        Self {
            inner,
            rules: Mutex::new(HashMap::new()),
            poison: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Fails one call of `op` in `every`, `times` times in all (`None`: until cleared). Rules
    /// for the same operation with different failures apply side by side.
    pub fn fail(&self, op: &'static str, failure: Failure, every: u32, times: Option<u32>) {
        if let Ok(mut r) = self.rules.lock() {
            r.entry(op).or_default().push(Rule {
                failure,
                every: every.max(1),
                left: times,
                seen: 0,
            });
        }
    }

    pub fn clear(&self) {
        if let Ok(mut r) = self.rules.lock() {
            r.clear();
        }
    }

    /// `apply_status` fails (`Corrupt`) whenever a status names this message id.
    pub fn poison_message(&self, message_id: &str) {
        if let Ok(mut p) = self.poison.lock() {
            p.insert(message_id.to_owned());
        }
    }

    /// How many calls of `op` were made to fail.
    pub fn failed(&self, op: &str) -> u32 {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.get(op).copied())
            .unwrap_or(0)
    }

    /// How many calls of `op` were made, failed or not.
    pub fn calls(&self, op: &str) -> u32 {
        self.calls
            .lock()
            .ok()
            .and_then(|c| c.get(op).copied())
            .unwrap_or(0)
    }

    fn rule(&self, op: &'static str) -> Option<Failure> {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op).or_default() += 1;
        }
        let mut rules = self.rules.lock().ok()?;
        let mut chosen = None;
        for rule in rules.get_mut(op)? {
            if rule.left == Some(0) {
                continue;
            }
            rule.seen += 1;
            if rule.seen % rule.every != 0 || chosen.is_some() {
                continue;
            }
            if let Some(left) = &mut rule.left {
                *left -= 1;
            }
            chosen = Some(rule.failure);
        }
        if chosen.is_some()
            && let Ok(mut f) = self.failed.lock()
        {
            *f.entry(op).or_default() += 1;
        }
        chosen
    }

    fn error(op: &str, failure: Failure) -> StoreError {
        match failure {
            Failure::Corrupt => StoreError::Corrupt(format!("{op} (injected)")),
            _ => StoreError::Unavailable(format!("{op} (injected)")),
        }
    }
}

/// Delegates a call, failing it as the rules say.
macro_rules! call {
    ($self:ident, $op:literal, $call:expr) => {{
        match $self.rule($op) {
            Some(f @ (Failure::Unavailable | Failure::Corrupt)) => Err(Self::error($op, f)),
            Some(Failure::Slow(d)) => {
                tokio::time::sleep(d).await;
                $call.await
            }
            Some(Failure::UnavailableAfter) => {
                let _ = $call.await;
                Err(Self::error($op, Failure::UnavailableAfter))
            }
            None => $call.await,
        }
    }};
}

impl<S: Store> Store for Faulty<S> {
    async fn ping(&self) -> Result<()> {
        call!(self, "ping", self.inner.ping())
    }

    async fn create_campaign(&self, campaign: NewCampaign) -> Result<Campaign> {
        call!(
            self,
            "create_campaign",
            self.inner.create_campaign(campaign)
        )
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Campaign> {
        call!(self, "campaign", self.inner.campaign(id))
    }

    async fn update_spec(&self, id: &CampaignId, spec: &herald_core::CampaignSpec) -> Result<()> {
        call!(self, "update_spec", self.inner.update_spec(id, spec))
    }

    async fn campaigns_from(
        &self,
        from: Option<CampaignCursor>,
        limit: usize,
    ) -> Result<CampaignPage> {
        call!(
            self,
            "campaigns_from",
            self.inner.campaigns_from(from, limit)
        )
    }

    async fn list_campaigns_page(
        &self,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>> {
        call!(
            self,
            "list_campaigns_page",
            self.inner.list_campaigns_page(before, limit)
        )
    }

    async fn delete_campaign(&self, id: &CampaignId) -> Result<()> {
        call!(self, "delete_campaign", self.inner.delete_campaign(id))
    }

    async fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
    ) -> Result<CampaignStatus> {
        call!(
            self,
            "transition",
            self.inner.transition(id, action, reason)
        )
    }

    async fn running_campaigns(&self) -> Result<Vec<RunningCampaign>> {
        call!(self, "running_campaigns", self.inner.running_campaigns())
    }

    async fn due_scheduled(&self, now: Timestamp) -> Result<Vec<CampaignId>> {
        call!(self, "due_scheduled", self.inner.due_scheduled(now))
    }

    async fn hold_upload(&self, id: &CampaignId, upload: u64, hold: Duration) -> Result<()> {
        call!(
            self,
            "hold_upload",
            self.inner.hold_upload(id, upload, hold)
        )
    }

    async fn release_upload(&self, id: &CampaignId, upload: u64) -> Result<()> {
        call!(
            self,
            "release_upload",
            self.inner.release_upload(id, upload)
        )
    }

    async fn enqueue_batch(&self, id: &CampaignId, recipients: &[Recipient]) -> Result<Vec<bool>> {
        call!(
            self,
            "enqueue_batch",
            self.inner.enqueue_batch(id, recipients)
        )
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        call!(self, "claim", self.inner.claim(request))
    }

    async fn start(&self, jobs: &[JobRef]) -> Result<Vec<bool>> {
        call!(self, "start", self.inner.start(jobs))
    }

    async fn settle(&self, settles: &[Settle]) -> Result<Vec<SettleResult>> {
        call!(self, "settle", self.inner.settle(settles))
    }

    async fn renew(&self, jobs: &[JobRef], lease: Duration) -> Result<()> {
        call!(self, "renew", self.inner.renew(jobs, lease))
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed> {
        call!(self, "reclaim_expired", self.inner.reclaim_expired())
    }

    async fn expire_in_doubt(
        &self,
        grace: Duration,
        policy: InDoubtPolicy,
    ) -> Result<InDoubtExpired> {
        call!(
            self,
            "expire_in_doubt",
            self.inner.expire_in_doubt(grace, policy)
        )
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<Applied>> {
        let poisoned = self.poison.lock().is_ok_and(|p| {
            updates.iter().any(|u| {
                u.message_id
                    .as_ref()
                    .is_some_and(|m| p.contains(m.as_str()))
            })
        });
        if poisoned {
            return Err(StoreError::Corrupt("a poisoned status (injected)".into()));
        }
        call!(self, "apply_status", self.inner.apply_status(updates))
    }

    async fn stats(&self, id: &CampaignId) -> Result<Stats> {
        call!(self, "stats", self.inner.stats(id))
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobView>> {
        call!(self, "job", self.inner.job(id))
    }

    async fn job_for_message(&self, message_id: &WaMessageId) -> Result<Option<JobId>> {
        call!(
            self,
            "job_for_message",
            self.inner.job_for_message(message_id)
        )
    }

    async fn add_rejects(
        &self,
        id: &CampaignId,
        rejects: &[UploadReject],
        keep: usize,
    ) -> Result<u64> {
        call!(
            self,
            "add_rejects",
            self.inner.add_rejects(id, rejects, keep)
        )
    }

    async fn failures(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<FailureRow>, Option<u64>)> {
        call!(self, "failures", self.inner.failures(id, cursor, count))
    }

    async fn outcomes(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<RecipientOutcome>, Option<u64>)> {
        call!(self, "outcomes", self.inner.outcomes(id, cursor, count))
    }

    async fn count_reply(&self, id: &CampaignId, phone: PhoneE164) -> Result<bool> {
        call!(self, "count_reply", self.inner.count_reply(id, phone))
    }

    async fn pause_matching(
        &self,
        phone_number_id: Option<&str>,
        template: Option<&str>,
        reason: PauseReason,
    ) -> Result<Vec<CampaignId>> {
        call!(
            self,
            "pause_matching",
            self.inner.pause_matching(phone_number_id, template, reason)
        )
    }

    async fn suppress(&self, phone_number_id: &str, phones: &[PhoneE164], why: &Why) -> Result<()> {
        call!(
            self,
            "suppress",
            self.inner.suppress(phone_number_id, phones, why)
        )
    }

    async fn suppression_reasons(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<Why>>> {
        call!(
            self,
            "suppression_reasons",
            self.inner
                .suppression_reasons(phone_number_id, scope, phones)
        )
    }

    async fn suppress_marketing(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &Why,
    ) -> Result<()> {
        call!(
            self,
            "suppress_marketing",
            self.inner.suppress_marketing(phone_number_id, phones, why)
        )
    }

    async fn suppressions(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<SuppressionScope>>> {
        call!(
            self,
            "suppressions",
            self.inner.suppressions(phone_number_id, phones)
        )
    }

    async fn suppressed(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        call!(
            self,
            "suppressed",
            self.inner.suppressed(phone_number_id, phones)
        )
    }

    async fn list_suppressed(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        cursor: u64,
    ) -> Result<(Vec<PhoneE164>, Option<u64>)> {
        call!(
            self,
            "list_suppressed",
            self.inner.list_suppressed(phone_number_id, scope, cursor)
        )
    }

    async fn open_window(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> Result<()> {
        call!(
            self,
            "open_window",
            self.inner.open_window(phone_number_id, phone, at)
        )
    }

    async fn windows_open(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        call!(
            self,
            "windows_open",
            self.inner.windows_open(phone_number_id, phones)
        )
    }

    async fn plan_sends(
        &self,
        phone_number_id: &str,
        pace: Pace,
        sends: &[SendWant],
        max: usize,
        span: std::ops::Range<Duration>,
        token: u64,
    ) -> Result<Plan> {
        call!(
            self,
            "plan_sends",
            self.inner
                .plan_sends(phone_number_id, pace, sends, max, span, token)
        )
    }

    async fn move_slots(
        &self,
        phone_number_id: &str,
        pace: Pace,
        slots: &[SlotId],
    ) -> Result<Vec<Option<Timestamp>>> {
        call!(
            self,
            "move_slots",
            self.inner.move_slots(phone_number_id, pace, slots)
        )
    }

    async fn record_departures(
        &self,
        phone_number_id: &str,
        departures: &[(SlotId, Timestamp)],
    ) -> Result<()> {
        call!(
            self,
            "record_departures",
            self.inner.record_departures(phone_number_id, departures)
        )
    }

    async fn reserve_pairs(
        &self,
        phone_number_id: &str,
        sends: &[(PhoneE164, CampaignId)],
        interval: Duration,
    ) -> Result<Vec<PairReservation>> {
        call!(
            self,
            "reserve_pairs",
            self.inner.reserve_pairs(phone_number_id, sends, interval)
        )
    }

    async fn link_users(
        &self,
        phone_number_id: &str,
        links: &[(String, PhoneE164)],
    ) -> Result<u64> {
        call!(
            self,
            "link_users",
            self.inner.link_users(phone_number_id, links)
        )
    }

    async fn user_phone(&self, phone_number_id: &str, user_id: &str) -> Result<Option<PhoneE164>> {
        call!(
            self,
            "user_phone",
            self.inner.user_phone(phone_number_id, user_id)
        )
    }

    async fn opt_out_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        call!(
            self,
            "opt_out_user",
            self.inner.opt_out_user(phone_number_id, user_id)
        )
    }

    async fn opt_in_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        call!(
            self,
            "opt_in_user",
            self.inner.opt_in_user(phone_number_id, user_id)
        )
    }

    async fn unsuppress(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<u64> {
        call!(
            self,
            "unsuppress",
            self.inner.unsuppress(phone_number_id, phones)
        )
    }

    async fn unlinked_opt_outs(
        &self,
        phone_number_id: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>)> {
        call!(
            self,
            "unlinked_opt_outs",
            self.inner.unlinked_opt_outs(phone_number_id, max)
        )
    }

    async fn set_throughput(&self, phone_number_id: &str, display: &str, mps: u32) -> Result<()> {
        call!(
            self,
            "set_throughput",
            self.inner.set_throughput(phone_number_id, display, mps)
        )
    }

    async fn set_throughput_by_display(&self, display: &str, mps: u32) -> Result<bool> {
        call!(
            self,
            "set_throughput_by_display",
            self.inner.set_throughput_by_display(display, mps)
        )
    }

    async fn throughput(&self, phone_number_id: &str) -> Result<Option<u32>> {
        call!(self, "throughput", self.inner.throughput(phone_number_id))
    }

    async fn reserve_reach(
        &self,
        portfolio: &str,
        limit: u64,
        window: Duration,
        phones: &[PhoneE164],
    ) -> Result<(Vec<Reach>, ReachUse)> {
        call!(
            self,
            "reserve_reach",
            self.inner.reserve_reach(portfolio, limit, window, phones)
        )
    }

    async fn release_reach(&self, portfolio: &str, phone: PhoneE164, at: Timestamp) -> Result<()> {
        call!(
            self,
            "release_reach",
            self.inner.release_reach(portfolio, phone, at)
        )
    }

    async fn reach_use(&self, portfolio: &str, window: Duration) -> Result<ReachUse> {
        call!(self, "reach_use", self.inner.reach_use(portfolio, window))
    }

    async fn reach_frees(
        &self,
        portfolio: &str,
        window: Duration,
        n: u64,
    ) -> Result<Option<Timestamp>> {
        call!(
            self,
            "reach_frees",
            self.inner.reach_frees(portfolio, window, n)
        )
    }

    async fn set_messaging_limit(&self, portfolio: &str, limit: MessagingLimit) -> Result<()> {
        call!(
            self,
            "set_messaging_limit",
            self.inner.set_messaging_limit(portfolio, limit)
        )
    }

    async fn messaging_limit(&self, portfolio: &str) -> Result<Option<MessagingLimit>> {
        call!(
            self,
            "messaging_limit",
            self.inner.messaging_limit(portfolio)
        )
    }

    async fn release_pair(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        campaign: &CampaignId,
    ) -> Result<()> {
        call!(
            self,
            "release_pair",
            self.inner.release_pair(phone_number_id, phone, campaign)
        )
    }

    async fn last_campaign(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
    ) -> Result<Option<CampaignId>> {
        call!(
            self,
            "last_campaign",
            self.inner.last_campaign(phone_number_id, phone)
        )
    }

    async fn append_webhook(&self, body: &[u8]) -> Result<()> {
        call!(self, "append_webhook", self.inner.append_webhook(body))
    }

    async fn read_webhooks(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<WebhookEntry>> {
        call!(
            self,
            "read_webhooks",
            self.inner.read_webhooks(consumer, count, block)
        )
    }

    async fn pending_webhooks(&self, consumer: &str, count: usize) -> Result<Vec<WebhookEntry>> {
        call!(
            self,
            "pending_webhooks",
            self.inner.pending_webhooks(consumer, count)
        )
    }

    async fn claim_stale_webhooks(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<WebhookEntry>> {
        call!(
            self,
            "claim_stale_webhooks",
            self.inner.claim_stale_webhooks(consumer, min_idle, count)
        )
    }

    async fn ack_webhooks(&self, ids: &[String]) -> Result<()> {
        call!(self, "ack_webhooks", self.inner.ack_webhooks(ids))
    }

    async fn dead_letter(&self, reason: &str, detail: &str, payload: &[u8]) -> Result<()> {
        call!(
            self,
            "dead_letter",
            self.inner.dead_letter(reason, detail, payload)
        )
    }

    async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>> {
        call!(self, "dead_letters", self.inner.dead_letters(count))
    }

    async fn dead_letter_counts(&self) -> Result<DeadLetterCounts> {
        call!(self, "dead_letter_counts", self.inner.dead_letter_counts())
    }

    async fn record_quality(
        &self,
        display_phone_number: &str,
        event: &str,
        current_limit: Option<&str>,
    ) -> Result<()> {
        call!(
            self,
            "record_quality",
            self.inner
                .record_quality(display_phone_number, event, current_limit)
        )
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool> {
        call!(self, "lead", self.inner.lead(role, holder, ttl))
    }

    async fn quality(&self) -> Result<BTreeMap<String, QualityRecord>> {
        call!(self, "quality", self.inner.quality())
    }
}
