//! The [`Store`] trait on Redis: each method forwards to the module of its concern.

use std::time::Duration;

use herald_core::{
    CampaignAction, CampaignId, CampaignStatus, JobId, MessagingLimit, PauseReason, PhoneE164,
    Recipient, Stats, WaMessageId, millis,
};
use herald_store::{
    Applied, Campaign, CampaignCursor, CampaignPage, ClaimRequest, ClaimedJob, FailureRow,
    InDoubtExpired, InDoubtPolicy, JobRef, JobView, MemoryUse, NewCampaign, PairReservation, Reach,
    ReachUse, Reclaimed, Result, RunningCampaign, Settle, SettleResult, StatusUpdate, Store,
    SuppressionScope,
};
use jiff::Timestamp;

use crate::conn::Run;
use crate::{RedisStore, campaigns, jobs, pacing, reach, recipients, report, statuses};

impl Store for RedisStore {
    async fn set_throughput(&self, phone_number_id: &str, display: &str, mps: u32) -> Result<()> {
        reach::set_throughput(self, phone_number_id, display, mps).await
    }

    async fn set_throughput_by_display(&self, display: &str, mps: u32) -> Result<bool> {
        reach::set_throughput_by_display(self, display, mps).await
    }

    async fn throughput(&self, phone_number_id: &str) -> Result<Option<u32>> {
        reach::throughput(self, phone_number_id).await
    }

    async fn reserve_reach(
        &self,
        portfolio: &str,
        limit: u64,
        window: Duration,
        phones: &[PhoneE164],
    ) -> Result<(Vec<Reach>, ReachUse)> {
        reach::reserve_reach(self, portfolio, limit, window, phones).await
    }

    async fn release_reach(&self, portfolio: &str, phone: PhoneE164, at: Timestamp) -> Result<()> {
        reach::release_reach(self, portfolio, phone, at).await
    }

    async fn reach_use(&self, portfolio: &str, window: Duration) -> Result<ReachUse> {
        reach::reach_use_of(self, portfolio, window).await
    }

    async fn reach_frees(
        &self,
        portfolio: &str,
        window: Duration,
        n: u64,
    ) -> Result<Option<Timestamp>> {
        reach::reach_frees(self, portfolio, window, n).await
    }

    async fn set_messaging_limit(&self, portfolio: &str, limit: MessagingLimit) -> Result<()> {
        reach::set_messaging_limit(self, portfolio, limit).await
    }

    async fn messaging_limit(&self, portfolio: &str) -> Result<Option<MessagingLimit>> {
        reach::messaging_limit(self, portfolio).await
    }

    async fn create_campaign(&self, c: NewCampaign) -> Result<Campaign> {
        campaigns::create_campaign(self, c).await
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Campaign> {
        campaigns::campaign(self, id).await
    }

    async fn update_spec(&self, id: &CampaignId, spec: &herald_core::CampaignSpec) -> Result<()> {
        campaigns::update_spec(self, id, spec).await
    }

    async fn campaigns_from(
        &self,
        from: Option<CampaignCursor>,
        limit: usize,
    ) -> Result<CampaignPage> {
        campaigns::campaigns_from(self, from, limit).await
    }

    async fn list_campaigns_page(
        &self,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>> {
        campaigns::list_campaigns_page(self, before, limit).await
    }

    async fn delete_campaign(&self, id: &CampaignId) -> Result<()> {
        campaigns::delete_campaign(self, id).await
    }

    async fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
    ) -> Result<CampaignStatus> {
        campaigns::transition(self, id, action, reason).await
    }

    async fn running_campaigns(&self) -> Result<Vec<RunningCampaign>> {
        campaigns::running_campaigns(self).await
    }

    async fn due_scheduled(&self, now: Timestamp) -> Result<Vec<CampaignId>> {
        campaigns::due_scheduled(self, now).await
    }

    async fn hold_upload(&self, id: &CampaignId, upload: u64, hold: Duration) -> Result<()> {
        campaigns::hold_upload(self, id, upload, hold).await
    }

    async fn release_upload(&self, id: &CampaignId, upload: u64) -> Result<()> {
        campaigns::release_upload(self, id, upload).await
    }

    async fn pause_matching(
        &self,
        phone_number_id: Option<&str>,
        template: Option<&str>,
        reason: PauseReason,
    ) -> Result<Vec<CampaignId>> {
        campaigns::pause_matching(self, phone_number_id, template, reason).await
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool> {
        campaigns::lead(self, role, holder, ttl).await
    }

    async fn enqueue_batch(&self, id: &CampaignId, recipients: &[Recipient]) -> Result<Vec<bool>> {
        jobs::enqueue_batch(self, id, recipients).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        jobs::claim(self, req).await
    }

    async fn start(&self, jobs: &[JobRef]) -> Result<Vec<bool>> {
        jobs::start(self, jobs).await
    }

    async fn settle(&self, settles: &[Settle]) -> Result<Vec<SettleResult>> {
        jobs::settle(self, settles).await
    }

    async fn renew(&self, jobs: &[JobRef], lease: Duration) -> Result<()> {
        jobs::renew(self, jobs, lease).await
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed> {
        jobs::reclaim_expired(self).await
    }

    async fn expire_in_doubt(
        &self,
        grace: Duration,
        policy: InDoubtPolicy,
    ) -> Result<InDoubtExpired> {
        jobs::expire_in_doubt(self, grace, policy).await
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobView>> {
        jobs::job(self, id).await
    }

    async fn job_for_message(&self, message_id: &WaMessageId) -> Result<Option<JobId>> {
        statuses::job_for_message(self, message_id).await
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<Applied>> {
        statuses::apply_status(self, updates).await
    }

    async fn stats(&self, id: &CampaignId) -> Result<Stats> {
        statuses::stats(self, id).await
    }

    async fn count_reply(&self, id: &CampaignId, phone: PhoneE164) -> Result<bool> {
        statuses::count_reply(self, id, phone).await
    }

    async fn add_rejects(
        &self,
        id: &CampaignId,
        rejects: &[herald_store::UploadReject],
        keep: usize,
    ) -> Result<u64> {
        report::add_rejects(self, id, rejects, keep).await
    }

    async fn outcomes(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<herald_store::RecipientOutcome>, Option<u64>)> {
        report::outcomes(self, id, cursor, count).await
    }

    async fn failures(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<FailureRow>, Option<u64>)> {
        report::failures(self, id, cursor, count).await
    }

    async fn suppress(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &herald_store::Why,
    ) -> Result<()> {
        recipients::suppress(self, phone_number_id, SuppressionScope::All, phones, why).await
    }

    async fn suppression_reasons(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<herald_store::Why>>> {
        recipients::suppression_reasons(self, phone_number_id, scope, phones).await
    }

    async fn suppress_marketing(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &herald_store::Why,
    ) -> Result<()> {
        recipients::suppress(
            self,
            phone_number_id,
            SuppressionScope::Marketing,
            phones,
            why,
        )
        .await
    }

    async fn suppressions(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<SuppressionScope>>> {
        recipients::suppressions(self, phone_number_id, phones).await
    }

    async fn link_users(
        &self,
        phone_number_id: &str,
        links: &[(String, PhoneE164)],
    ) -> Result<u64> {
        recipients::link_users(self, phone_number_id, links).await
    }

    async fn user_phone(&self, phone_number_id: &str, user_id: &str) -> Result<Option<PhoneE164>> {
        recipients::user_phone(self, phone_number_id, user_id).await
    }

    async fn opt_out_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        recipients::set_user_opt_out(self, phone_number_id, user_id, true).await
    }

    async fn opt_in_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        recipients::set_user_opt_out(self, phone_number_id, user_id, false).await
    }

    async fn unsuppress(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<u64> {
        recipients::unsuppress(self, phone_number_id, phones).await
    }

    async fn unlinked_opt_outs(
        &self,
        phone_number_id: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>)> {
        recipients::unlinked_opt_outs(self, phone_number_id, max).await
    }

    async fn suppressed(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        recipients::suppressed(self, phone_number_id, SuppressionScope::All, phones).await
    }

    async fn list_suppressed(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        cursor: u64,
    ) -> Result<(Vec<PhoneE164>, Option<u64>)> {
        recipients::list_suppressed(self, phone_number_id, scope, cursor).await
    }

    async fn open_window(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> Result<()> {
        recipients::open_window(self, phone_number_id, phone, at).await
    }

    async fn windows_open(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        recipients::windows_open(self, phone_number_id, phones).await
    }

    async fn plan_sends(
        &self,
        phone_number_id: &str,
        pace: herald_store::Pace,
        sends: &[herald_store::SendWant],
        max: usize,
        span: std::ops::Range<Duration>,
        token: u64,
    ) -> Result<herald_store::Plan> {
        pacing::plan_sends(self, phone_number_id, pace, sends, max, span, token).await
    }

    async fn move_slots(
        &self,
        phone_number_id: &str,
        pace: herald_store::Pace,
        slots: &[herald_store::SlotId],
    ) -> Result<Vec<Option<Timestamp>>> {
        pacing::move_slots(self, phone_number_id, pace, slots).await
    }

    async fn record_departures(
        &self,
        phone_number_id: &str,
        departures: &[(herald_store::SlotId, Timestamp)],
    ) -> Result<()> {
        pacing::record_departures(self, phone_number_id, departures).await
    }

    async fn reserve_pairs(
        &self,
        phone_number_id: &str,
        sends: &[(PhoneE164, CampaignId)],
        interval: Duration,
    ) -> Result<Vec<PairReservation>> {
        pacing::reserve_pairs(self, phone_number_id, sends, interval).await
    }

    async fn release_pair(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        campaign: &CampaignId,
    ) -> Result<()> {
        pacing::release_pair(self, phone_number_id, phone, campaign).await
    }

    async fn last_campaign(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
    ) -> Result<Option<CampaignId>> {
        pacing::last_campaign(self, phone_number_id, phone).await
    }

    async fn append_webhook(&self, body: &[u8]) -> Result<()> {
        self.stream_append(body).await
    }

    async fn read_webhooks(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_read(consumer, count, millis(block)).await
    }

    async fn pending_webhooks(
        &self,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_pending(consumer, count).await
    }

    async fn claim_stale_webhooks(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_claim(consumer, millis(min_idle), count).await
    }

    async fn ack_webhooks(&self, ids: &[String]) -> Result<()> {
        self.stream_ack(ids).await
    }

    async fn dead_letter(&self, reason: &str, detail: &str, payload: &[u8]) -> Result<()> {
        self.dead_append(reason, detail, payload).await
    }

    async fn dead_letter_counts(&self) -> Result<herald_store::DeadLetterCounts> {
        self.dead_counts().await
    }

    async fn dead_letters(&self, count: usize) -> Result<Vec<herald_store::DeadLetter>> {
        self.dead_list(count).await
    }

    async fn record_quality(
        &self,
        display_phone_number: &str,
        event: &str,
        current_limit: Option<&str>,
    ) -> Result<()> {
        self.quality_record(display_phone_number, event, current_limit)
            .await
    }

    async fn quality(
        &self,
    ) -> Result<std::collections::BTreeMap<String, herald_store::QualityRecord>> {
        self.quality_all().await
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING").run::<String>(&mut conn).await.map(drop)
    }

    async fn memory_use(&self) -> Result<Option<MemoryUse>> {
        Ok(self.memory().await)
    }
}
