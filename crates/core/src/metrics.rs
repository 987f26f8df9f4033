//! Every Prometheus metric Herald exports, in one place (ARCHITECTURE §10).
//!
//! Names follow `herald_<subsystem>_<name>_<unit>[_total]`. Labels come from bounded sets only:
//! result and class names defined here, error codes from the Cloud API table (else `other`),
//! phone number ids from configuration, campaign ids only for active campaigns. Never a phone
//! number, a message id or error text.

/// What kind of metric a name is, for describing it to the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

macro_rules! metrics {
    ($(#[$list_doc:meta])* $list:ident;
     $( $(#[$doc:meta])* $name:ident = $value:literal, $kind:ident, $help:literal; )*) => {
        $( $(#[$doc])* pub const $name: &str = $value; )*
        $(#[$list_doc])*
        pub const $list: &[(&str, Kind, &str)] = &[ $( ($value, Kind::$kind, $help), )* ];
    };
}

metrics! {
    /// Every metric a process exports about itself: name, kind, help text.
    ALL;
    /// Labels: `phone_number_id`, `result` (see [`SEND_RESULTS`]).
    SENDER_SENDS_TOTAL = "herald_sender_sends_total", Counter,
        "Send attempts by result.";
    /// Labels: `class` (the error class), `code` (a known Cloud API code, else `other`).
    SENDER_API_ERRORS_TOTAL = "herald_sender_api_errors_total", Counter,
        "Failed sends by error class and code.";
    SENDER_SEND_DURATION_SECONDS = "herald_sender_send_duration_seconds", Histogram,
        "Time from request to answer of a send.";
    SENDER_TOKEN_WAIT_SECONDS = "herald_sender_token_wait_seconds", Histogram,
        "Time a send waited for its rate-limit slot.";
    SENDER_ROUND_STORE_SECONDS = "herald_sender_round_store_seconds", Histogram,
        "Time each pacing round's store calls took (planning its sends' times, reserving their pair spacing, marking them started): a round starts 25 ms before the last one's sends, so above about that, rounds start late and the number's rate falls short.";
    /// Labels: `phone_number_id`.
    SENDER_EFFECTIVE_MPS = "herald_sender_effective_mps", Gauge,
        "The send rate currently allowed per phone number (lowered after 130429, recovering).";
    SENDER_IN_FLIGHT_REQUESTS = "herald_sender_in_flight_requests", Gauge,
        "Send requests in flight.";
    /// Labels: `portfolio` (configured names).
    SENDER_MESSAGING_LIMIT_USED = "herald_sender_messaging_limit_used_users", Gauge,
        "Unique users a portfolio messaged outside open windows in the moving 24 h, as counted against its messaging limit.";
    /// Labels: `campaign` (running campaigns only).
    SENDER_QUEUE_DEPTH_JOBS = "herald_sender_queue_depth_jobs", Gauge,
        "Jobs waiting to be sent per running campaign.";
    /// Labels: `kind` (campaign_fatal, sender_fatal, template_status).
    SENDER_PAUSES_TOTAL = "herald_sender_pauses_total", Counter,
        "Campaigns paused by Herald, by reason.";
    SENDER_RECLAIMED_JOBS_TOTAL = "herald_sender_reclaimed_jobs_total", Counter,
        "Jobs whose lease expired, returned to pending or put in doubt.";
    /// Labels: `outcome` (resent, failed).
    SENDER_IN_DOUBT_EXPIRED_TOTAL = "herald_sender_in_doubt_expired_total", Counter,
        "In-doubt jobs resent or failed: past the grace period, their webhook never came although later messages' did.";
    SENDER_IN_DOUBT_WAITING_JOBS = "herald_sender_in_doubt_waiting_jobs", Gauge,
        "In-doubt jobs past the grace period still waiting: no status of a later message on their number has arrived (webhooks down or late).";
    /// Labels: `outcome` (see [`WEBHOOK_OUTCOMES`]).
    WEBHOOK_REQUESTS_TOTAL = "herald_webhook_requests_total", Counter,
        "Webhook requests received, by outcome.";
    WEBHOOK_REQUEST_DURATION_SECONDS = "herald_webhook_request_duration_seconds", Histogram,
        "Time to verify and store a webhook delivery.";
    /// Labels: `result` (see [`STATUS_RESULTS`]).
    RECONCILER_STATUSES_TOTAL = "herald_reconciler_statuses_total", Counter,
        "Status updates applied from webhooks, by result.";
    /// Labels: `kind` (text, interactive, button, system, other…).
    RECONCILER_INBOUND_MESSAGES_TOTAL = "herald_reconciler_inbound_messages_total", Counter,
        "Inbound user messages received.";
    /// Labels: `field` (template_status, phone_quality, account_update, user_preferences, other).
    RECONCILER_EVENTS_TOTAL = "herald_reconciler_events_total", Counter,
        "Webhook events other than statuses and messages.";
    /// Labels: `code` (a known Cloud API code, else `other`).
    RECONCILER_WEBHOOK_ERRORS_TOTAL = "herald_reconciler_webhook_errors_total", Counter,
        "Errors reported inside webhooks (value level and failed statuses).";
    /// Labels: `reason` (see [`DEAD_LETTER_REASONS`]).
    RECONCILER_DEAD_LETTERS_TOTAL = "herald_reconciler_dead_letters_total", Counter,
        "Webhook content kept for inspection instead of applied.";
    RECONCILER_DEAD_LETTERS_DROPPED_TOTAL = "herald_reconciler_dead_letters_dropped_total", Counter,
        "Dead letters dropped by the store's cap (the oldest go first).";
    RECONCILER_OPT_OUTS_TOTAL = "herald_reconciler_opt_outs_total", Counter,
        "Users added to the suppression list by opt-out keyword or preference.";
    RECONCILER_OPT_INS_TOTAL = "herald_reconciler_opt_ins_total", Counter,
        "Users taken off the suppression list by an opt-in keyword.";
    RECONCILER_UNLINKED_OPT_OUTS_TOTAL = "herald_reconciler_unlinked_opt_outs_total", Counter,
        "Opt-outs from users known only by a business-scoped id: kept, and their number suppressed once a status shows it.";
    RECONCILER_ENTRIES_TOTAL = "herald_reconciler_entries_total", Counter,
        "Webhook deliveries taken from the stream and applied.";
    RECONCILER_LAG_SECONDS = "herald_reconciler_lag_seconds", Gauge,
        "Age of the oldest webhook delivery applied in the last batch.";
    /// Labels: `kind` (see [`STORE_ERROR_KINDS`]).
    STORE_ERRORS_TOTAL = "herald_store_errors_total", Counter,
        "Store calls that failed as unavailable or full (after the Redis Cluster client's own retries of MOVED, ASK and TRYAGAIN), by kind; the caller retries.";
    STORE_MASTER_CHANGES_TOTAL = "herald_store_master_changes_total", Counter,
        "Times the Sentinels named a new Redis master and this process moved to it (store.backend = \"redis_sentinel\").";
    /// Labels: `version`.
    BUILD_INFO = "herald_build_info", Gauge,
        "Always 1; the version label says which Herald this is.";
}

metrics! {
    /// The per-campaign metrics: exported once per deployment, by the API process that leads
    /// the `campaign_metrics` role, for live campaigns and for a while after they end
    /// (ARCHITECTURE §10). Values are the campaign's stats (`GET /v1/campaigns/{id}/stats`).
    CAMPAIGN;
    /// Labels: `campaign`, `name` (its first 64 characters), `status`, `phone_number_id`.
    CAMPAIGN_INFO = "herald_campaign_info", Gauge,
        "Always 1 per exported campaign; the labels say its name, status and phone number id.";
    /// Labels: `campaign`.
    CAMPAIGN_RECIPIENTS = "herald_campaign_recipients", Gauge,
        "Recipients accepted into the campaign (upload rejects are in herald_campaign_skipped).";
    /// Labels: `campaign`, `state` (see [`CAMPAIGN_STATES`]).
    CAMPAIGN_MESSAGES = "herald_campaign_messages", Gauge,
        "The campaign's recipients by state: where they wait, and how far on the lattice accepted, sent, delivered, read they got.";
    /// Labels: `campaign`, `code` (a known Cloud API code, else `other`).
    CAMPAIGN_FAILED = "herald_campaign_failed", Gauge,
        "The campaign's failed messages by Cloud API error code.";
    /// Labels: `campaign`, `reason` (duplicate, invalid, suppressed, window_closed, frequency_capped, experiment), `stage` (upload, send, delivery: accepted, then declined by Meta's status webhook).
    CAMPAIGN_SKIPPED = "herald_campaign_skipped", Gauge,
        "Rows and recipients the campaign skipped, by reason and by when (at upload or at send time).";
    /// Labels: `campaign`.
    CAMPAIGN_BILLABLE_MESSAGES = "herald_campaign_billable_messages", Gauge,
        "Messages Meta's status webhooks marked billable.";
    /// Labels: `campaign`, `category` (see [`PRICING_CATEGORIES`], else `other`).
    CAMPAIGN_PRICED_MESSAGES = "herald_campaign_priced_messages", Gauge,
        "Messages by the pricing category Meta's status webhooks gave them (billable or not).";
    /// Labels: `campaign`, `category` (see [`PRICING_CATEGORIES`], else `other`), `currency`.
    CAMPAIGN_COST = "herald_campaign_cost", Gauge,
        "What the campaign's delivered messages cost so far, in the rate card's currency (messages without a rate are not in it).";
    /// Labels: `campaign`, `bound` (`low`: the expected share delivered; `high`: all), `currency`.
    CAMPAIGN_COST_ESTIMATE = "herald_campaign_cost_estimate", Gauge,
        "The campaign's estimated cost for all its recipients.";
    /// Labels: `campaign`, `currency`.
    CAMPAIGN_COST_COMMITTED = "herald_campaign_cost_committed", Gauge,
        "What the campaign's max_cost counts: its cost so far plus what its messages on their way may still cost.";
    /// Labels: `campaign`, `currency`.
    CAMPAIGN_COST_CAP = "herald_campaign_cost_cap", Gauge,
        "The campaign's max_cost (only for campaigns with one).";
    /// Labels: `campaign`.
    CAMPAIGN_COST_UNKNOWN_MESSAGES = "herald_campaign_cost_unknown_messages", Gauge,
        "Recipients and charged messages the rate card has no rate for: not in the cost series.";
    /// Labels: `campaign`.
    CAMPAIGN_START_TIMESTAMP_SECONDS = "herald_campaign_start_timestamp_seconds", Gauge,
        "When the campaign started (Unix time).";
    /// Labels: `campaign` (template campaigns; 0 unless running and waiting).
    CAMPAIGN_LIMIT_WAITING_MESSAGES = "herald_campaign_limit_waiting_messages", Gauge,
        "Pending recipients that wait for the portfolio's messaging limit to have room (0 while it has).";
}

metrics! {
    /// What a deployment shares, exported once beside the per-campaign metrics (by the same
    /// leading API process).
    DEPLOYMENT;
    STORE_MEMORY_USED_BYTES = "herald_store_memory_used_bytes", Gauge,
        "Memory the store uses (Redis's used_memory; on a Cluster, of its fullest master).";
    STORE_MEMORY_MAX_BYTES = "herald_store_memory_max_bytes", Gauge,
        "The store's memory limit (Redis's maxmemory; 0: none). At the limit Redis refuses every write: sending, uploads and webhook intake wait until memory is freed.";
}

/// Values of `kind` on [`STORE_ERRORS_TOTAL`]: a slot that moved (`moved`, `ask`) or is being
/// moved (`tryagain`), a cluster without a master for some slot (`clusterdown`), a failover
/// in progress (`failover`: READONLY or MASTERDOWN), Redis loading its data (`loading`) or
/// running a long script (`busy`), out of memory and refusing writes (`oom`: `maxmemory`
/// reached), unable to write to its disk and refusing writes (`disk`: `MISCONF`), no answer
/// in time (`timeout`), a connection refused or lost (`connection`), too
/// few replicas acknowledging a start (`replica_ack`), anything else (`other`).
pub const STORE_ERROR_KINDS: &[&str] = &[
    "moved",
    "ask",
    "tryagain",
    "clusterdown",
    "failover",
    "loading",
    "busy",
    "oom",
    "disk",
    "timeout",
    "connection",
    "replica_ack",
    "other",
];

/// Values of `state` on [`CAMPAIGN_MESSAGES`]. `pending`, `in_flight`, `in_doubt`,
/// `accepted`, `failed_before_accept`, `skipped_at_send` and `cancelled` add up to the
/// recipients; `sent`, `delivered`, `read` are parts of `accepted`, `waiting_for_send_window`
/// is the part of `pending` waiting for the campaign's send window, `failed` counts webhook
/// failures too, and `replied` counts recipients who wrote back.
pub const CAMPAIGN_STATES: &[&str] = &[
    "pending",
    "waiting_for_send_window",
    "in_flight",
    "in_doubt",
    "accepted",
    "sent",
    "delivered",
    "read",
    "failed",
    "failed_before_accept",
    "skipped_at_send",
    "cancelled",
    "replied",
];

/// Pricing categories kept as themselves on [`CAMPAIGN_PRICED_MESSAGES`]; any other is
/// `other`.
pub const PRICING_CATEGORIES: &[&str] = &[
    "marketing",
    "marketing_lite",
    "utility",
    "authentication",
    "authentication_international",
    "service",
    "referral_conversion",
];

/// Values of `result` on [`SENDER_SENDS_TOTAL`].
pub const SEND_RESULTS: &[&str] = &[
    "accepted",
    "failed",
    "retry",
    "throttled",
    "pair_limited",
    "pair_spaced",
    "limit_wait",
    "budget_wait",
    "window_wait",
    "in_doubt",
    "skipped",
    "released",
    "late",
    "paused",
];

/// Values of `kind` on [`SENDER_PAUSES_TOTAL`].
pub const PAUSE_KINDS: &[&str] = &[
    "campaign_fatal",
    "sender_fatal",
    "template_status",
    "template_category",
    "messaging_limit",
    "budget",
];

/// Values of `outcome` on [`SENDER_IN_DOUBT_EXPIRED_TOTAL`].
pub const IN_DOUBT_OUTCOMES: &[&str] = &["resent", "failed"];

/// Values of `outcome` on [`WEBHOOK_REQUESTS_TOTAL`].
pub const WEBHOOK_OUTCOMES: &[&str] = &[
    "stored",
    "bad_signature",
    "no_secret",
    "too_large",
    "store_unavailable",
    "store_full",
    "verified",
    "verify_refused",
];

/// Values of `result` on [`RECONCILER_STATUSES_TOTAL`].
pub const STATUS_RESULTS: &[&str] = &["changed", "no_change", "late", "unknown", "ignored"];

/// Values of `reason` on [`RECONCILER_DEAD_LETTERS_TOTAL`].
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "malformed_json",
    "malformed_element",
    "unknown_field",
    "unknown_message_type",
    "unknown_status",
    "unknown_message",
    "apply_failed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in ALL.iter().chain(CAMPAIGN) {
            assert!(name.starts_with("herald_"), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert!(!help.is_empty());
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
    }
}
