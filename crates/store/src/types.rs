//! The store's vocabulary: what goes in and comes out of [`crate::Store`].

use herald_core::{
    CampaignId, CampaignSpec, CampaignStatus, JobId, PauseReason, PhoneE164, Region, SkipReason,
    StatusEvent, Vars, WaMessageId,
};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A campaign to create. The spec's message has already been validated by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    pub spec: CampaignSpec,
    /// The sending phone number id (the spec's, or the configured default).
    pub phone_number_id: String,
    /// `name:language` of the template the message uses, for pausing on template updates.
    pub template: Option<String>,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    pub phone_number_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub spec: CampaignSpec,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
}

/// A place in the campaigns' creation order, where a walk over every campaign goes on from
/// ([`Store::campaigns_from`](crate::Store::campaigns_from)). It names a position, not a
/// campaign, so it stays good whatever is deleted meanwhile (a sweep deleting what it walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CampaignCursor(pub u64);

/// One page of a walk over every campaign: newest first, and where the next page begins
/// (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignPage {
    pub campaigns: Vec<Campaign>,
    pub next: Option<CampaignCursor>,
}

/// A running campaign, as the sender needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCampaign {
    pub id: CampaignId,
    pub phone_number_id: String,
    /// The campaign's own cap, if any.
    pub mps: Option<u32>,
}

/// Identifies one claim, so a worker whose lease expired cannot settle a job another worker
/// now holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub u64);

/// What a worker asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Only campaigns sending from this number (`None`: any).
    pub phone_number_id: Option<String>,
    pub max: usize,
    /// How long the claim holds without renewal.
    pub lease: Duration,
    pub token: LeaseToken,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: JobId,
    pub phone: PhoneE164,
    /// The number's region (`ZZ` when not known): whose local time a send window reads.
    pub region: Region,
    pub vars: Vars,
    /// Requests made for this job so far.
    pub attempts: u32,
    /// This is the single resend of an in-doubt job (ARCHITECTURE §7).
    pub resend: bool,
    pub token: LeaseToken,
}

/// A job a worker holds: enough to find it and prove the hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobRef {
    pub id: JobId,
    pub token: LeaseToken,
}

impl From<&ClaimedJob> for JobRef {
    fn from(j: &ClaimedJob) -> Self {
        Self {
            id: j.id.clone(),
            token: j.token,
        }
    }
}

/// How a send ended, as the worker settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Meta returned a message id.
    Accepted { message_id: WaMessageId },
    /// Failed for good before Meta accepted it; `code` is the Cloud API error code (or a Herald
    /// code such as `attempts_exhausted`).
    Failed { code: String },
    /// A request was made and failed in a way worth retrying (transient error, throttling,
    /// pair limit): try again after this long. Counts as an attempt.
    Delayed { delay: Duration },
    /// Not sent yet, and not now (pair spacing): try after this long. Not an attempt.
    Deferred { delay: Duration },
    /// Not sent yet: outside its campaign's send window in the recipient's time zone; try
    /// when it opens, after this long. Not an attempt. Counted in `waiting_for_send_window`
    /// until it is claimed again (or cancelled).
    AwaitWindow { delay: Duration },
    /// Not sent, for good (window closed, frequency capped, suppressed since upload).
    Skipped { reason: SkipReason },
    /// The request may have reached Meta; the outcome is unknown.
    InDoubt,
    /// Never sent (the campaign was paused, the worker is shutting down): back to pending.
    Released,
}

/// One settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub job: JobRef,
    pub outcome: Outcome,
}

/// What a settlement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleResult {
    Applied,
    /// The store already had this outcome: the job's own status webhook, carrying the same
    /// message id, came first (normal when Meta's webhook is faster than the settlement).
    /// Nothing changed, and nothing is wrong.
    Known,
    /// The job was no longer held under this lease (reclaimed, or settled otherwise); nothing
    /// changed.
    Stale,
}

/// What reclaiming expired leases did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Claimed but never started: safe to send again.
    pub to_pending: u64,
    /// The request may have started: in doubt until evidence or the grace period.
    pub to_in_doubt: u64,
}

/// What to do with an in-doubt job that no webhook has settled within the grace period, once
/// the webhook pipeline has shown it caught up past the job (statuses of messages accepted
/// after it on its phone number were applied). Never on a timer alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtPolicy {
    /// Send it once more with the same callback id (a second in-doubt then fails it).
    Resend,
    /// Fail it with code `in_doubt`.
    Fail,
}

/// What a pass over in-doubt jobs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InDoubtExpired {
    pub resent: u64,
    pub failed: u64,
    /// Past the grace period but still in doubt: no status of a message accepted after them
    /// on their phone number has arrived yet, so the webhook pipeline has not shown that
    /// their own statuses would have come (a webhook outage looks exactly like this).
    pub waiting: u64,
}

/// Pricing from a status webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub billable: Option<bool>,
    pub category: Option<String>,
    /// `regular`, `free_customer_service`, `free_entry_point` (per-message pricing).
    pub kind: Option<String>,
}

impl Pricing {
    /// What the message is charged, decided from `type` and `category`.
    pub fn charge(&self) -> Option<herald_core::cost::Charge> {
        herald_core::cost::Charge::from_pricing(
            self.kind.as_deref(),
            self.category.as_deref(),
            self.billable,
        )
    }
}

/// One status from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The job named by `biz_opaque_callback_data`, when it is Herald's.
    pub job: Option<JobId>,
    pub message_id: Option<WaMessageId>,
    pub event: StatusEvent,
    /// Unix seconds, as Meta gives it.
    pub timestamp: Option<i64>,
    /// The first error code of a `failed` status.
    pub error_code: Option<i64>,
    pub pricing: Option<Pricing>,
    /// The delivery it came in may have been applied before: a reconciler read it and did
    /// not acknowledge it (a crash, a store error), or another took it over. Applying a
    /// status again changes nothing, so the store then also writes again what a first
    /// application writes beside the job (its message-id lookup), which the interrupted
    /// one may not have reached.
    pub replayed: bool,
}

/// What applying a status did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// State and counters moved.
    Changed,
    /// A duplicate or an older status: nothing moved.
    NoChange,
    /// The job had already ended without a message id (failed, skipped, cancelled).
    Late,
    /// No job matches the ids.
    Unknown,
}

/// A job's state, as the API and tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Pending,
    InFlight {
        started: bool,
    },
    InDoubt,
    Accepted {
        message_id: Option<WaMessageId>,
        delivery: herald_core::DeliveryState,
    },
    Failed {
        code: String,
    },
    Skipped {
        reason: SkipReason,
    },
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub phone: PhoneE164,
    pub attempts: u32,
    #[serde(flatten)]
    pub state: JobState,
}

/// A recipient of a campaign and what became of it (what a follow-up campaign picks from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub phone: PhoneE164,
    pub region: herald_core::Region,
    /// The row's values, in the order of the campaign's placeholders.
    pub vars: Vars,
    pub state: JobState,
    /// When Meta accepted the message (ms since the epoch), for an accepted job.
    pub accepted_ms: Option<i64>,
    /// The error code of a failed status webhook, for an accepted job Meta then failed.
    pub webhook_error: Option<String>,
    /// The recipient wrote back after this campaign messaged them.
    pub replied: bool,
}

/// A row for the failures report: a rejected upload row or a failed or skipped job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRow {
    /// The line of the upload (rejects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The phone as written (rejects) or in E.164 (jobs).
    pub phone: String,
    /// A reason code: an upload reject code, a skip reason, or `failed`.
    pub reason: String,
    /// The error code of a failed job, or the reject's explanation.
    pub detail: String,
}

/// A row an upload rejected: what the failures report shows, and the stats counter it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReject {
    pub row: FailureRow,
    pub reason: SkipReason,
}

impl UploadReject {
    /// Identifies the row of the file it came from (line, cell, reason): the same file sent
    /// again produces the same fingerprints, which the store counts once.
    pub fn fingerprint(&self) -> u64 {
        let r = &self.row;
        let key = format!("{}|{}|{}", r.line.unwrap_or(0), r.phone, r.reason);
        herald_core::fnv1a(key.as_bytes())
    }
}

/// A send asking the shared limiters for a slot: its campaign's own cap, when it has one, as
/// the campaign and the least time between two of its sends.
pub type SendWant = Option<(CampaignId, Duration)>;

/// How a phone number's sends are paced: at most `capacity` in any `window` (Meta's rolling
/// second, widened by a guard against jitter on the way to Meta).
///
/// While the window has room, sends are spaced [`Pace::spacing`] apart. Once it is full, a
/// send waits for the one `capacity` before it to leave the window, and may come as close as
/// [`Pace::min_spacing`] to the previous send: a schedule that a late send shifted catches up
/// instead of losing the shift for good.
///
/// A send may go up to `slack` after its time (a late wake-up), or `room_slack` while the
/// window is less than half full. The window counts each send at the latest time it may go,
/// so whenever in that span it goes, no window holds more than `capacity`; the slack a send
/// had is taken from the window's next turn (the send `capacity` after it waits for it) until
/// its departure is logged instead ([`crate::Store::record_departures`]), which costs nothing
/// while the window has room and a little once, when it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub capacity: u32,
    pub window: Duration,
    pub slack: Duration,
    pub room_slack: Duration,
}

/// How late a send may go while its number's window is less than half full (see [`Pace`]):
/// enough for a busy process to start a round's sends in turn.
pub const ROOM_SLACK: Duration = Duration::from_millis(10);

impl Pace {
    /// The pace of `rate` sends per second with `guard` added to the second: the most sends
    /// in a window of a second (at least one), over a window that holds them at `rate`. Half
    /// the guard is the slack a late send has, the other half widens the window against
    /// jitter on the way to Meta.
    pub fn per_second(rate: f64, guard: Duration) -> Self {
        let rate = rate.max(0.001);
        let capacity = rate.floor().clamp(1.0, f64::from(u32::MAX));
        let slack = guard / 2;
        let window = Duration::from_secs_f64(capacity / rate) + (guard - slack);
        Self {
            capacity: capacity as u32,
            window,
            slack,
            room_slack: ROOM_SLACK.max(slack),
        }
    }

    /// At most `capacity` in any `window`, with no slack: each send goes at its time.
    pub fn exact(capacity: u32, window: Duration) -> Self {
        Self {
            capacity,
            window,
            slack: Duration::ZERO,
            room_slack: Duration::ZERO,
        }
    }

    /// The even spacing that fills the window.
    pub fn spacing(&self) -> Duration {
        self.window / self.capacity.max(1)
    }

    /// How close a send may come to the previous one while the schedule catches up.
    pub fn min_spacing(&self) -> Duration {
        self.spacing() * 3 / 4
    }
}

/// One send's place in its phone number's window: the plan's token and the send's index in
/// the plan (see [`crate::Store::plan_sends`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId {
    pub token: u64,
    pub index: u32,
}

impl SlotId {
    /// Its name in the store's log.
    pub fn member(&self) -> String {
        format!("{:x}.{}", self.token, self.index)
    }
}

/// Why a number is on the suppression list, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Why {
    /// `opt_out_keyword`, `marketing_stop`, `error 131026`, `imported`, or an operator's own.
    pub reason: String,
    pub at: Timestamp,
}

/// The reason a number gets when a user who opted out under a business-scoped id is linked
/// to it.
pub const LINKED_OPT_OUT: &str = "opt_out_keyword (business-scoped id)";

impl Why {
    pub fn now(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            at: Timestamp::now(),
        }
    }
}

/// What the limiters planned: a time per send asked about (`None`: not this time), and the
/// latest it may go, on the store's clock, whose reading when it answered was `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub at: Vec<Option<Timestamp>>,
    /// The latest time each granted send may go (see [`Pace`]); after it, it must be moved.
    pub until: Vec<Option<Timestamp>>,
    pub now: Timestamp,
    /// When asking again can grant a send that got no slot: once the number's next slot is
    /// within the horizon, or a capped campaign's slot has come. `None` when every send got
    /// one.
    pub next: Option<Timestamp>,
}

impl Plan {
    pub fn granted(&self) -> usize {
        self.at.iter().flatten().count()
    }
}

/// The answer of a pair-spacing reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairReservation {
    Ok,
    /// Another send to this recipient is too recent; try at this time (the store's clock).
    NotBefore(Timestamp),
}

/// Which messages a suppression stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuppressionScope {
    /// Every message (an opt-out, an undeliverable number).
    All,
    /// Marketing templates only (131050, a marketing stop): utility, authentication and
    /// service messages still go.
    Marketing,
}

/// What a messaging-limit reservation answers for one recipient (ARCHITECTURE §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Already messaged outside a window within the moving 24 h: costs nothing more.
    Counted,
    /// Newly counted, at this time (the store's clock). Given back with
    /// [`crate::Store::release_reach`] when Meta refuses the send.
    Reserved(Timestamp),
    /// The budget is spent: the send waits.
    Full,
}

/// A portfolio's use of its messaging limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReachUse {
    /// Unique users counted in the moving window.
    pub used: u64,
    /// When the earliest of them leaves the window (and its place frees); `None` when no one
    /// is counted.
    pub frees_at: Option<Timestamp>,
}

/// A webhook delivery waiting in the store's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEntry {
    /// Identifies the delivery for acknowledging it.
    pub id: String,
    /// The raw body, exactly as received and verified.
    pub body: Vec<u8>,
    /// When the store took it (its clock).
    pub received: Timestamp,
    /// How many times it has been handed to a consumer, this time included: more than one
    /// means an earlier consumer did not acknowledge it (it died, or applying it failed).
    pub deliveries: u32,
}

/// Webhook content kept for inspection instead of applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// A code from a closed list (`malformed_json`, `apply_failed`, …).
    pub reason: String,
    /// What went wrong, in words (empty when the reason says it all).
    #[serde(default)]
    pub detail: String,
    pub payload: String,
    pub at_ms: i64,
}

/// Dead letters kept and dropped by the cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterCounts {
    pub kept: u64,
    pub dropped: u64,
}

/// The last quality event for a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityRecord {
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_limit: Option<String>,
    pub at_ms: i64,
}

/// A store's memory (see [`crate::Store::memory_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub used_bytes: u64,
    /// The limit (Redis's `maxmemory`); `None` when there is none.
    pub max_bytes: Option<u64>,
}

impl MemoryUse {
    /// The share of the limit in use, when there is a limit.
    pub fn share(&self) -> Option<f64> {
        self.max_bytes
            .map(|max| self.used_bytes as f64 / max as f64)
    }

    /// The fuller of two: by share of its limit, then (neither having one) by use.
    pub fn fuller(self, other: Self) -> Self {
        match (self.share(), other.share()) {
            (Some(a), Some(b)) if b > a => other,
            (Some(_), _) => self,
            (None, Some(_)) => other,
            (None, None) if other.used_bytes > self.used_bytes => other,
            (None, None) => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Cluster is as full as its fullest master: by share of its limit, a master with a
    /// limit before one without (only it can refuse writes), else by use.
    #[test]
    fn the_fuller_of_two_is_by_share_then_by_use() {
        let m = |used, max| MemoryUse {
            used_bytes: used,
            max_bytes: max,
        };
        let (half, most) = (m(50, Some(100)), m(90, Some(1000)));
        assert_eq!(half.fuller(most), half);
        assert_eq!(most.fuller(half), half);
        assert_eq!(m(900, None).fuller(most), most);
        assert_eq!(most.fuller(m(900, None)), most);
        assert_eq!(m(10, None).fuller(m(20, None)), m(20, None));
        assert_eq!(half.share(), Some(0.5));
        assert_eq!(m(1, None).share(), None);
    }
}
