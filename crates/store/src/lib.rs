//! Herald's durable state: campaigns, jobs, leases, per-job state, stats, suppression, 24 h
//! windows and rate tokens, behind one backend-neutral trait.
//!
//! The sender, the reconciler and the API talk only to the [`Store`] trait, at the level of
//! domain operations. Backends: `herald-store-redis` (Redis standalone or Cluster, one Lua
//! script per multi-key transition) and, in this crate, an in-memory one for the demo and
//! fast tests. Every backend passes the same conformance suite (feature `testsuite`). The
//! invariant every implementation keeps: a job's state and the campaign's counters change in
//! the same atomic step, so `recipients = pending + in_flight + in_doubt + accepted +
//! failed_before_accept + skipped_at_send + cancelled` holds at every moment, and webhook
//! statuses move a job forward on the delivery lattice only.
//!
//! A job's life: `pending → claimed → started → accepted | failed | skipped | in_doubt`,
//! with `delayed` (still pending) for retries and `cancelled` for unsent jobs of a cancelled
//! campaign. A claimed job whose lease expires goes back to pending; a started one (its
//! request may have reached Meta) becomes in doubt, and only webhook evidence or the grace
//! period settles it.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use herald_core::{
    CampaignAction, CampaignId, CampaignStatus, JobId, MessagingLimit, PauseReason, PhoneE164,
    Recipient, Stats, WaMessageId,
};
use jiff::Timestamp;

pub mod clock;
mod counters;
mod error;
pub mod memory;
mod types;

#[cfg(feature = "testsuite")]
pub mod conformance;
#[cfg(feature = "testsuite")]
pub mod faulty;
#[cfg(feature = "testsuite")]
pub mod logs;

pub use clock::StoreClock;
pub use counters::{charged_counter, stats_from_counters, unix_day};
pub use error::{Result, StoreError};
pub use memory::MemoryStore;
pub use types::*;

/// A page asked to begin after a campaign that does not exist ([`Store::list_campaigns_page`]).
pub fn no_page_from(id: &CampaignId) -> StoreError {
    StoreError::Invalid(format!(
        "no campaign {id} to list on from (deleted since?): list from the newest again"
    ))
}

/// Campaigns per page of a [`CampaignWalk`]: one page's records in memory at a time, and
/// one round trip per page.
pub const WALK_PAGE: usize = 200;

/// Every campaign, newest first, a page at a time ([`Store::campaigns_from`]): the sweeps'
/// way to visit them all in bounded memory, deleting some as they go. A campaign created
/// during the walk is not visited; one deleted before its page is read is not either.
#[derive(Debug, Default)]
pub struct CampaignWalk {
    from: Option<CampaignCursor>,
    done: bool,
}

impl CampaignWalk {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next page (possibly empty, where all of it was deleted meanwhile), or `None` once
    /// every campaign has been given.
    pub async fn next<S: Store>(&mut self, store: &S) -> Result<Option<Vec<Campaign>>> {
        if self.done {
            return Ok(None);
        }
        let page = store.campaigns_from(self.from, WALK_PAGE).await?;
        self.from = page.next;
        self.done = page.next.is_none();
        Ok(Some(page.campaigns))
    }
}

/// Whether a campaign may be deleted now ([`Store::delete_campaign`]): it has ended, and none
/// of its sends is in flight or in doubt (their answers and webhooks would find nothing to
/// settle, and the counters would lose them). [`StoreError::Conflict`] names what stands in
/// the way.
pub fn check_deletable(
    id: &CampaignId,
    status: CampaignStatus,
    in_flight: i64,
    in_doubt: i64,
) -> Result<()> {
    if !status.is_final() {
        return Err(StoreError::Conflict(format!(
            "campaign {id} is {status}: only a completed or cancelled campaign can be deleted \
             (cancel it first)"
        )));
    }
    if in_flight > 0 || in_doubt > 0 {
        return Err(StoreError::Conflict(format!(
            "campaign {id} still has {} sends in flight and {} in doubt: delete it once they \
             have settled",
            in_flight.max(0),
            in_doubt.max(0)
        )));
    }
    Ok(())
}

/// The digits of a display phone number (`+1 555-010-0001` → `15550100001`), as webhooks
/// write it.
pub fn digits(display: &str) -> String {
    display.chars().filter(char::is_ascii_digit).collect()
}

/// Which list each number is on, from its membership of each: `All` first.
pub fn scopes(all: &[bool], marketing: &[bool]) -> Vec<Option<SuppressionScope>> {
    all.iter()
        .zip(marketing)
        .map(|(a, m)| match (a, m) {
            (true, _) => Some(SuppressionScope::All),
            (false, true) => Some(SuppressionScope::Marketing),
            (false, false) => None,
        })
        .collect()
}

/// How the failures report names an accepted message that failed by status webhook with
/// `code`: `failed`, or the reason Meta declined it (`frequency_capped`, `experiment`).
pub fn webhook_failure_reason(code: &str) -> &'static str {
    herald_core::SkipReason::declined_by(code).map_or("failed", herald_core::SkipReason::as_str)
}

/// Upload rejects remembered (by fingerprint), per stored one: a file sent again is counted
/// once for this many times the stored rejects.
pub const REJECT_MEMORY: usize = 10;

/// Dead letters kept; older ones are dropped (and counted).
pub const DEAD_LETTERS_KEPT: usize = 10_000;

/// A status that arrives more than this after its event shows that its phone number's
/// webhooks are delivering a backlog (an outage being retried, out of order): until a whole
/// grace period passes without one, no in-doubt job of that number is resent.
pub const BACKLOG_LAG: Duration = Duration::from_secs(60);

/// Whether a status arrived (at `now_ms`, the store's clock) later than [`BACKLOG_LAG`] after
/// the event it reports.
pub fn lags(status: &StatusUpdate, now_ms: i64) -> bool {
    status.timestamp.is_some_and(|t| {
        u64::try_from(now_ms.saturating_sub(t.saturating_mul(1000)))
            .is_ok_and(|lag| lag > herald_core::millis(BACKLOG_LAG))
    })
}

/// Herald's durable state. Every method is one or a few round trips; every state change is
/// atomic with its counters. Times are the store's own clock: a backend shared by several
/// processes keeps one clock for all of them.
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// The memory the store uses and the most it may use, where the backend can say (a
    /// Redis Cluster: its fullest master). A Redis at its limit refuses every write, so this
    /// is exported for operators to see it coming.
    fn memory_use(&self) -> impl Future<Output = Result<Option<MemoryUse>>> + Send {
        async { Ok(None) }
    }

    // --- Campaigns -------------------------------------------------------------------

    fn create_campaign(
        &self,
        campaign: NewCampaign,
    ) -> impl Future<Output = Result<Campaign>> + Send;

    fn campaign(&self, id: &CampaignId) -> impl Future<Output = Result<Campaign>> + Send;

    /// Replaces a campaign's spec (a new `max_cost`, the template's category as Meta has it
    /// now). The spec is checked first; an ended campaign is [`StoreError::Final`].
    fn update_spec(
        &self,
        id: &CampaignId,
        spec: &herald_core::CampaignSpec,
    ) -> impl Future<Output = Result<()>> + Send;

    /// About `limit` campaigns, newest first, created before `from` (the newest when `None`),
    /// and the cursor of the next page: a walk over every campaign that holds whatever is
    /// deleted meanwhile ([`CampaignWalk`] walks it). A page may hold more than `limit` where
    /// campaigns share a place (a backend's ties), or fewer where some were deleted as it was
    /// read; `next` is `None` only after the last.
    fn campaigns_from(
        &self,
        from: Option<CampaignCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<CampaignPage>> + Send;

    /// Up to `limit` campaigns, newest first: the newest, or those created before the campaign
    /// `before` (a page of a list too long to read at once). A `before` that does not exist
    /// (deleted since) is [`StoreError::Invalid`].
    fn list_campaigns_page(
        &self,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Campaign>>> + Send;

    /// Deletes an ended campaign and everything of it: its jobs and their records, its
    /// recipients, counters, upload rejects and indexes. Only a campaign that
    /// [`check_deletable`] allows; [`StoreError::NotFound`] for one that does not exist (or
    /// is deleted already). What Meta says of its messages afterwards (a late status, a reply)
    /// finds no job and changes nothing; its message-id lookups and its recipients' pair
    /// spacing expire on their own. Deleting again after a failure finishes the work.
    fn delete_campaign(&self, id: &CampaignId) -> impl Future<Output = Result<()>> + Send;

    /// Applies a lifecycle action (illegal ones are [`StoreError::IllegalTransition`]).
    /// `Cancel` also cancels every unsent job.
    fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
    ) -> impl Future<Output = Result<CampaignStatus>> + Send;

    /// Campaigns workers may claim from.
    fn running_campaigns(&self) -> impl Future<Output = Result<Vec<RunningCampaign>>> + Send;

    /// Campaigns with a `schedule_at` at or before `now`, still `scheduled`.
    fn due_scheduled(&self, now: Timestamp)
    -> impl Future<Output = Result<Vec<CampaignId>>> + Send;

    /// Holds the campaign open for an upload in progress (identified by `upload`) for `hold`
    /// from now: a running campaign does not complete while any upload holds it. Renewed by
    /// the uploader while it lives; [`StoreError::Final`] if the campaign has already ended
    /// and this upload did not hold it.
    fn hold_upload(
        &self,
        id: &CampaignId,
        upload: u64,
        hold: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The upload is over (finished or failed): the campaign may complete.
    fn release_upload(
        &self,
        id: &CampaignId,
        upload: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    // --- Jobs ------------------------------------------------------------------------

    /// Adds recipients as pending jobs. Idempotent on (campaign, phone): answers, per
    /// recipient, whether it was new.
    fn enqueue_batch(
        &self,
        id: &CampaignId,
        recipients: &[Recipient],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;

    /// Claims up to `max` pending jobs across running campaigns, fairly (each campaign gets
    /// its share before any gets more), under a lease.
    fn claim(&self, request: &ClaimRequest)
    -> impl Future<Output = Result<Vec<ClaimedJob>>> + Send;

    /// Marks held jobs as started, just before their requests go out: from here a lost lease
    /// means "in doubt", not "pending". A job whose campaign stopped running is released and
    /// answers `false`; so does a job already started or no longer held. Each job named must
    /// have been claimed under its token, and one settled as sent (accepted, failed, delayed,
    /// in doubt) must have been started first: the Redis backend keeps the started marks
    /// beside the claim and takes both as given.
    fn start(&self, jobs: &[JobRef]) -> impl Future<Output = Result<Vec<bool>>> + Send;

    fn settle(&self, settles: &[Settle]) -> impl Future<Output = Result<Vec<SettleResult>>> + Send;

    /// Extends the leases of the claims these jobs were taken under (a lease covers one
    /// claim call's jobs, identified by its token) to `lease` from now.
    fn renew(&self, jobs: &[JobRef], lease: Duration) -> impl Future<Output = Result<()>> + Send;

    /// Jobs whose lease expired: claimed ones back to pending, started ones in doubt.
    fn reclaim_expired(&self) -> impl Future<Output = Result<Reclaimed>> + Send;

    /// In-doubt jobs older than `grace` for which there is evidence that their own webhook
    /// would have come, had Meta taken them: on the same phone number, a status has been
    /// applied for a message accepted, or an event that happened, at least `grace` after the
    /// job went in doubt, and for a whole `grace` no status has arrived more than
    /// [`BACKLOG_LAG`] after its event (a backlog being retried arrives out of order). Those are resent once or failed, per the
    /// policy; the others keep waiting, however long, and are counted.
    fn expire_in_doubt(
        &self,
        grace: Duration,
        policy: InDoubtPolicy,
    ) -> impl Future<Output = Result<InDoubtExpired>> + Send;

    // --- State and stats -------------------------------------------------------------

    /// Applies webhook statuses: forward-only on the lattice, idempotent, order-independent.
    /// Resolves in-doubt jobs by callback id.
    fn apply_status(
        &self,
        updates: &[StatusUpdate],
    ) -> impl Future<Output = Result<Vec<Applied>>> + Send;

    fn stats(&self, id: &CampaignId) -> impl Future<Output = Result<Stats>> + Send;

    fn job(&self, id: &JobId) -> impl Future<Output = Result<Option<JobView>>> + Send;

    /// The job a message id belongs to (kept for Meta's 30-day delivery horizon).
    fn job_for_message(
        &self,
        message_id: &WaMessageId,
    ) -> impl Future<Output = Result<Option<JobId>>> + Send;

    /// Stores upload rejects for the failures report and counts them as skipped at upload.
    /// A reject the campaign already has (the same row of the same file, sent again) changes
    /// nothing. Only the first `keep` are stored, and the first [`REJECT_MEMORY`] × `keep`
    /// remembered (so counts stay exact when a file is sent again); every new one is counted.
    /// Answers how many were new.
    fn add_rejects(
        &self,
        id: &CampaignId,
        rejects: &[UploadReject],
        keep: usize,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// A page of the failures report: upload rejects, then failed and skipped jobs.
    /// Returns the rows and the cursor of the next page (`None` at the end).
    fn failures(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> impl Future<Output = Result<(Vec<FailureRow>, Option<u64>)>> + Send;

    /// A page of a campaign's recipients with their outcomes, in job order. Returns them and
    /// the cursor of the next page (`None` at the end); start at 0.
    fn outcomes(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> impl Future<Output = Result<(Vec<RecipientOutcome>, Option<u64>)>> + Send;

    /// Counts a reply for the campaign that last messaged this user (once per recipient);
    /// `false` when it was counted already, or the user is not a recipient of that campaign
    /// (or the campaign has been deleted since).
    fn count_reply(
        &self,
        id: &CampaignId,
        phone: PhoneE164,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Pauses every running campaign that sends this template (`name:language`) or, with
    /// `None`, every running campaign on the phone number id. Returns the campaigns paused.
    fn pause_matching(
        &self,
        phone_number_id: Option<&str>,
        template: Option<&str>,
        reason: PauseReason,
    ) -> impl Future<Output = Result<Vec<CampaignId>>> + Send;

    // --- Suppression and 24 h windows ------------------------------------------------

    /// Puts numbers on the suppression list, with why and since when (a number already on
    /// it keeps its first reason).
    fn suppress(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &Why,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Puts numbers on the phone number's marketing-only suppression list: they get no
    /// marketing template, while utility, authentication and service messages still go. A
    /// number keeps its first reason.
    fn suppress_marketing(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &Why,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Which list each number is on, in one round trip: `All` (no message at all) before
    /// `Marketing` (no marketing template); `None` when on neither.
    fn suppressions(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<Vec<Option<SuppressionScope>>>> + Send;

    /// Why each number is on the list (`None`: not on it, or put there before reasons were
    /// kept).
    fn suppression_reasons(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<Vec<Option<Why>>>> + Send;

    /// Takes numbers off both suppression lists (a user opted back in, or an operator removed
    /// them). Answers how many were on one.
    fn unsuppress(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<u64>> + Send;

    fn suppressed(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;

    /// Remembers the number each business-scoped user id stands for (learned from the
    /// statuses of messages Herald sent to that number). A user who opted out while known
    /// only by their id ([`Store::opt_out_user`]) is suppressed by number now: answers how
    /// many were.
    fn link_users(
        &self,
        phone_number_id: &str,
        links: &[(String, PhoneE164)],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The number behind a business-scoped user id, once a status has shown it.
    fn user_phone(
        &self,
        phone_number_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<PhoneE164>>> + Send;

    /// A user known only by their business-scoped id opted out: kept until their number is
    /// known ([`Store::link_users`] then suppresses it). Answers whether it was new.
    fn opt_out_user(
        &self,
        phone_number_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// A user known only by their business-scoped id opted back in: their kept opt-out goes.
    /// Answers whether there was one.
    fn opt_in_user(
        &self,
        phone_number_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Opt-outs of users whose number is not known yet: how many, and up to `max` of them.
    fn unlinked_opt_outs(
        &self,
        phone_number_id: &str,
        max: usize,
    ) -> impl Future<Output = Result<(u64, Vec<String>)>> + Send;

    /// A page of the suppression list (cursor 0 starts; `None` ends).
    fn list_suppressed(
        &self,
        phone_number_id: &str,
        scope: SuppressionScope,
        cursor: u64,
    ) -> impl Future<Output = Result<(Vec<PhoneE164>, Option<u64>)>> + Send;

    /// Opens (or extends) the 24 h customer-service window after an inbound message the
    /// user sent at `at`.
    fn open_window(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    fn windows_open(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;

    // --- Rate and pair spacing -------------------------------------------------------

    /// Plans send times from the phone number's rolling window ([`Pace`]) and the campaigns'
    /// own limiters, within `span` of the store's now (none sooner than `span.start`, what
    /// the caller needs before its sends can go; none later than `span.end`) and for at most
    /// `max` of the `sends`, in their order. Each granted send takes the number's next time, provided its campaign's
    /// own limiter has one by then; a send whose campaign has none yet is passed over, and the
    /// sends after it go on. Granted send `i` is logged as [`SlotId`] `{token, i}` (the caller
    /// picks a token no other plan uses). All workers together never plan more than
    /// `pace.capacity` sends in any `pace.window` on a number, nor more than one per its own
    /// interval on a capped campaign.
    fn plan_sends(
        &self,
        phone_number_id: &str,
        pace: Pace,
        sends: &[SendWant],
        max: usize,
        span: Range<Duration>,
        token: u64,
    ) -> impl Future<Output = Result<Plan>> + Send;

    /// Planned sends that woke after their latest time ask to go now, in order: answers, for
    /// each, the new latest time it may go (`pace.slack` after now, on the store's clock, or
    /// its old one if that has not passed by the store's clock), or `None` when the window has
    /// no room for it now (it is taken out of the log, to be planned again). Moving adds a
    /// send to the windows that hold now but not its old time; it may move while the sends
    /// from then to a window after now fit in the capacity. One call for many: a busy process
    /// has many late sends at once.
    fn move_slots(
        &self,
        phone_number_id: &str,
        pace: Pace,
        slots: &[SlotId],
    ) -> impl Future<Output = Result<Vec<Option<Timestamp>>>> + Send;

    /// Planned sends are logged at when they really went, instead of the latest time they
    /// might: one that went out after its latest time (the process stalled between letting
    /// it go and its request leaving) is raised to its departure, so that the sends a window
    /// later are planned after it; one that went in time is lowered to its departure, so
    /// that the slack it did not use costs the sends a window later nothing. One no longer
    /// logged (its window has passed, or it gave its time up) is left out. Plans made
    /// afterwards count each where it is logged.
    fn record_departures(
        &self,
        phone_number_id: &str,
        departures: &[(SlotId, Timestamp)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Reserves the next send to each recipient, at least `interval` after the previous
    /// one, and remembers which campaign sent it (for reply attribution, 72 h).
    fn reserve_pairs(
        &self,
        phone_number_id: &str,
        sends: &[(PhoneE164, CampaignId)],
        interval: Duration,
    ) -> impl Future<Output = Result<Vec<PairReservation>>> + Send;

    /// Counts recipients about to be messaged outside an open window against `portfolio`'s
    /// messaging limit over the moving `window` (24 h): one already counted costs nothing;
    /// a new one is counted while fewer than `limit` are; the rest are [`Reach::Full`].
    /// Atomic across every worker. Answers per recipient, in order, and the use after it.
    fn reserve_reach(
        &self,
        portfolio: &str,
        limit: u64,
        window: Duration,
        phones: &[PhoneE164],
    ) -> impl Future<Output = Result<(Vec<Reach>, ReachUse)>> + Send;

    /// Uncounts `phone`, reserved at `at`, when Meta refused the send (it reached no one).
    /// Nothing happens when it has been counted again since (another send to it).
    fn release_reach(
        &self,
        portfolio: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// `portfolio`'s use of its messaging limit over the moving `window`.
    fn reach_use(
        &self,
        portfolio: &str,
        window: Duration,
    ) -> impl Future<Output = Result<ReachUse>> + Send;

    /// When `n` places of `portfolio`'s budget will have freed as the window moves on (the
    /// `n`-th earliest counted user leaves it); `None` when fewer than `n` are counted.
    fn reach_frees(
        &self,
        portfolio: &str,
        window: Duration,
        n: u64,
    ) -> impl Future<Output = Result<Option<Timestamp>>> + Send;

    /// Records Meta's messaging limit for `portfolio` (read from the Graph API or a webhook).
    fn set_messaging_limit(
        &self,
        portfolio: &str,
        limit: MessagingLimit,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Meta's messaging limit for `portfolio`, as last recorded; `None` when never.
    fn messaging_limit(
        &self,
        portfolio: &str,
    ) -> impl Future<Output = Result<Option<MessagingLimit>>> + Send;

    /// Gives back `campaign`'s reservation for `phone` when Meta refused the send it was made
    /// for (the message never reached the user, so Meta's pair rate did not count it): a
    /// retry need not wait out the interval. Nothing happens if the reservation is another
    /// campaign's or already given back.
    fn release_pair(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        campaign: &CampaignId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The campaign that last messaged this user from this number within 72 h.
    fn last_campaign(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
    ) -> impl Future<Output = Result<Option<CampaignId>>> + Send;

    // --- The webhook stream ------------------------------------------------------------

    /// Stores a verified webhook body durably; only then may the receiver answer 200.
    fn append_webhook(&self, body: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// New deliveries for this consumer of the reconciler group, waiting up to `block`.
    fn read_webhooks(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> impl Future<Output = Result<Vec<WebhookEntry>>> + Send;

    /// Deliveries this consumer read but did not acknowledge (after its restart).
    fn pending_webhooks(
        &self,
        consumer: &str,
        count: usize,
    ) -> impl Future<Output = Result<Vec<WebhookEntry>>> + Send;

    /// Takes over deliveries another consumer read but left unacknowledged for `min_idle`
    /// (it died mid-batch).
    fn claim_stale_webhooks(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> impl Future<Output = Result<Vec<WebhookEntry>>> + Send;

    /// Acknowledges applied deliveries (and removes them from the stream).
    fn ack_webhooks(&self, ids: &[String]) -> impl Future<Output = Result<()>> + Send;

    /// Keeps webhook content for inspection instead of applying it (the newest
    /// [`DEAD_LETTERS_KEPT`]): `reason` a code from a closed list, `detail` what went wrong.
    fn dead_letter(
        &self,
        reason: &str,
        detail: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The newest dead letters, newest first.
    fn dead_letters(&self, count: usize) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;

    /// How many dead letters are kept, and how many the cap has dropped since the store began.
    fn dead_letter_counts(&self) -> impl Future<Output = Result<DeadLetterCounts>> + Send;

    /// Records a phone number's throughput level (the messages per second Meta allows it: 80
    /// standard, 1,000 high) and its display number (as webhooks name it).
    fn set_throughput(
        &self,
        phone_number_id: &str,
        display_phone_number: &str,
        mps: u32,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the level of the number webhooks name by `display_phone_number` (any format: only
    /// its digits count). `false` when no number with it was recorded.
    fn set_throughput_by_display(
        &self,
        display_phone_number: &str,
        mps: u32,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// A phone number's throughput level, as last recorded.
    fn throughput(&self, phone_number_id: &str)
    -> impl Future<Output = Result<Option<u32>>> + Send;

    /// Records a phone number quality event (by display number, as Meta reports it).
    fn record_quality(
        &self,
        display_phone_number: &str,
        event: &str,
        current_limit: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Claims, or renews, the lead of `role` for `holder`, for `ttl` from now: answers whether
    /// `holder` leads. One holder at a time; a leader that stops renewing loses the lead when
    /// its lease runs out.
    fn lead(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The last quality event of every phone number that had one.
    fn quality(
        &self,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, QualityRecord>>> + Send;
}
