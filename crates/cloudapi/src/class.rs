//! `ErrorCode → ErrorClass`: the one table that decides what a failed send means.
//!
//! Classification is by `error.code` only (ARCHITECTURE §6), never by HTTP status or message text:
//! Meta reports 131056 as 400 in some places and 429 in others. Transport failures are
//! classified by whether the request may have reached Meta: before it was written it is safe to
//! retry; after, the outcome is unknown and the job becomes in-doubt.

use std::fmt;

/// What Herald does about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Retry with exponential backoff and full jitter, up to the attempt cap.
    Transient,
    /// Over the phone number's throughput: requeue and slow that number's limiter.
    Throttled,
    /// Account in maintenance (throughput upgrade): retry after about a minute.
    Maintenance,
    /// Too many messages to this recipient: delay this recipient alone (4^n s).
    PairLimited,
    /// This recipient cannot get the message: fail the job.
    RecipientPermanent,
    /// Meta declined for a per-user marketing limit: skipped, not failed, not retried.
    FrequencyCapped,
    /// Every send of this campaign would fail the same way: pause the campaign.
    CampaignFatal,
    /// Meta counts the business portfolio's messaging limit as spent (131048): every send
    /// of the portfolio outside an open window would be refused; pause its campaigns.
    MessagingLimit,
    /// The phone number or token cannot send at all: pause every campaign on the number.
    SenderFatal,
    /// The request may have reached Meta and the outcome is unknown: the job is in doubt.
    Ambiguous,
}

impl ErrorClass {
    pub const ALL: [Self; 10] = [
        Self::Transient,
        Self::Throttled,
        Self::Maintenance,
        Self::PairLimited,
        Self::RecipientPermanent,
        Self::FrequencyCapped,
        Self::CampaignFatal,
        Self::MessagingLimit,
        Self::SenderFatal,
        Self::Ambiguous,
    ];

    /// The class of a known Cloud API error code; `None` for codes not in the table.
    pub fn of_code(code: i64) -> Option<Self> {
        match TABLE.binary_search_by_key(&code, |&(c, _, _)| c) {
            Ok(i) => Some(TABLE[i].2),
            // 200–299 are all permission errors; the table names the first.
            Err(_) if (200..=299).contains(&code) => Some(Self::SenderFatal),
            Err(_) => None,
        }
    }

    /// Every code in the table, in ascending order.
    pub fn known_codes() -> impl Iterator<Item = i64> {
        TABLE.iter().map(|&(c, _, _)| c)
    }

    /// The class of any error body. Codes outside the table follow Meta's `is_transient` hint
    /// when it is given; otherwise they pause the campaign, so an unknown failure is looked at
    /// by a person instead of silently failing every recipient or retrying forever.
    pub fn classify(code: i64, is_transient: Option<bool>) -> Self {
        match (Self::of_code(code), is_transient) {
            (Some(class), _) => class,
            (None, Some(true)) => Self::Transient,
            (None, _) => Self::CampaignFatal,
        }
    }

    /// Codes that also put the number on the suppression list, for every message
    /// (ARCHITECTURE §6): it cannot receive WhatsApp messages.
    pub fn suppresses_recipient(code: i64) -> bool {
        code == 131_026
    }

    /// Codes after which the number gets no marketing template, while utility,
    /// authentication and service messages still go: 131050, the user stopped marketing.
    pub fn stops_marketing(code: i64) -> bool {
        code == 131_050
    }

    /// Whether the job is tried again (later) rather than settled.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Transient | Self::Throttled | Self::Maintenance | Self::PairLimited
        )
    }

    /// A fixed wait Meta asks for, where there is one (exponential backoff otherwise).
    pub fn retry_after(self) -> Option<std::time::Duration> {
        match self {
            Self::Maintenance => Some(std::time::Duration::from_secs(60)),
            _ => None,
        }
    }

    /// A stable name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Throttled => "throttled",
            Self::Maintenance => "maintenance",
            Self::PairLimited => "pair_limited",
            Self::RecipientPermanent => "recipient_permanent",
            Self::FrequencyCapped => "frequency_capped",
            Self::CampaignFatal => "campaign_fatal",
            Self::MessagingLimit => "messaging_limit",
            Self::SenderFatal => "sender_fatal",
            Self::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds [`TABLE`] from codes grouped by class, each code written once: its label is its
/// own spelling.
macro_rules! table {
    ($( $(#[doc = $doc:literal])* $class:ident: [$($code:literal),+ $(,)?] )*) => {
        /// `(code, label, class)`, sorted by code (a test checks the order).
        const TABLE: &[(i64, &str, ErrorClass)] = &sorted([
            $( $( ($code, stringify!($code), ErrorClass::$class), )+ )*
        ]);
    };
}

table! {
    /// Meta-side failures and management-call rate limits (4, 80007): back off and retry.
    Transient: [1, 2, 4, 80007, 131000, 131016]
    Throttled: [130429]
    Maintenance: [131057]
    PairLimited: [131056]
    /// Undeliverable, not on WhatsApp, test allow-list, opted out of marketing (131050),
    /// outside the 24 h window (131047), business may not message that country (130497),
    /// business-scoped user ids not supported for this message (131062).
    RecipientPermanent: [131021, 131026, 131030, 131047, 131050, 130497, 131062]
    /// Per-user marketing limit (131049) and Meta's marketing experiment (130472).
    FrequencyCapped: [130472, 131049]
    /// Template, parameter, content and flow problems the operator must fix, media that Meta
    /// could not fetch (131052, 131053), and marketing templates disabled (131063).
    CampaignFatal: [
        100, 131008, 131009, 131052, 131053, 131063, 132000, 132001, 132005, 132007, 132012,
        132015, 132016, 132068, 132069,
    ]
    /// The spam rate limit: the portfolio's messaging limit by Meta's count.
    MessagingLimit: [131048]
    /// Token, permission, account, payment and registration problems (200–299 are
    /// permissions; see `of_code`).
    SenderFatal: [0, 3, 10, 190, 200, 368, 131031, 131042, 131045, 133010]
}

/// Sorts the table at compile time (insertion sort: it is small).
const fn sorted<const N: usize>(
    mut t: [(i64, &'static str, ErrorClass); N],
) -> [(i64, &'static str, ErrorClass); N] {
    let mut i = 1;
    while i < N {
        let mut j = i;
        while j > 0 && t[j - 1].0 > t[j].0 {
            let x = t[j - 1];
            t[j - 1] = t[j];
            t[j] = x;
            j -= 1;
        }
        i += 1;
    }
    t
}

/// A metric label for an error code: the code itself when it is in the table (or 131051, an
/// inbound message's "unsupported type", which is never a send's outcome), else `other`, so
/// labels stay a bounded set whatever Meta sends.
pub fn code_label(code: i64) -> &'static str {
    if code == 131_051 {
        return "131051";
    }
    match TABLE.binary_search_by_key(&code, |&(c, _, _)| c) {
        Ok(i) => TABLE[i].1,
        Err(_) => "other",
    }
}

/// Meta's short title for an error code in the table (what the console shows next to a
/// count); `None` for a code Herald does not know.
pub fn meaning(code: i64) -> Option<&'static str> {
    let text = match code {
        0 => "Authentication failed (AuthException)",
        1 => "Unknown API error at Meta",
        2 => "Meta's service is temporarily unavailable",
        3 => "The app lacks the capability or permission for this call",
        4 => "Too many API calls by the app",
        10 => "Permission denied, or it was removed",
        100 => "Invalid parameter",
        190 => "The access token expired or is invalid",
        200..=299 => "A permission is missing or was removed",
        368 => "Temporarily blocked for policy violations",
        80007 => "The WhatsApp Business Account's rate limit was hit",
        130429 => "Over the phone number's throughput (messages per second)",
        130472 => "The user is in one of Meta's marketing experiments",
        130497 => "The business may not message users in this country",
        131000 => "Something went wrong at Meta",
        131008 => "A required parameter is missing",
        131009 => "A parameter value is not valid",
        131016 => "A Meta service is temporarily unavailable",
        131021 => "The recipient is the sending number itself",
        131026 => "Undeliverable: not on WhatsApp, or cannot receive this message",
        131030 => "The recipient is not on the test number's allowed list",
        131031 => "The business account is locked",
        131042 => "A payment problem on the business account",
        131045 => "The phone number is not registered (certificate)",
        131047 => "More than 24 hours since the user last wrote: only a template can be sent",
        131048 => "Spam rate limit: the portfolio's messaging limit is spent",
        131049 => "Meta did not deliver it, to keep the user's marketing experience healthy",
        131050 => "The user stopped marketing messages from the business",
        131052 => "Meta could not download the media",
        131053 => "Meta could not upload the media",
        131056 => "Too many messages to this user in a short time (pair rate limit)",
        131057 => "The business account is in maintenance",
        131062 => "Business-scoped user ids are not supported for this message",
        131063 => "Marketing templates are not available to this business",
        132000 => "The template's parameter count does not match",
        132001 => "The template does not exist in this language",
        132005 => "The filled-in template text is too long",
        132007 => "The template breaks a formatting or character policy",
        132012 => "A template parameter has the wrong format",
        132015 => "The template is paused for low quality",
        132016 => "The template is disabled",
        132068 => "The flow is blocked",
        132069 => "The flow is throttled",
        133010 => "The phone number is not registered with the Cloud API",
        _ => return None,
    };
    Some(text)
}

/// How a request failed below the Graph API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No connection was made, so the request was never written.
    ConnectFailed,
    /// No complete answer within the timeout; the request may have been processed.
    TimedOut,
    /// The connection broke after the request was (or may have been) written.
    ConnectionLost,
    /// An HTTP error status without a Graph error body: a proxy or load balancer answered (an
    /// edge timing out after Meta took the message, say), or the body was cut off. Only a
    /// Graph `error.code` proves that Meta refused.
    HttpStatus(u16),
    /// A 2xx whose body could not be read or parsed: Meta may well have accepted it.
    UnreadableSuccess,
}

impl TransportFailure {
    /// Only a failure before the request was written is safe to retry; anything after it
    /// may have reached Meta.
    pub fn class(self) -> ErrorClass {
        match self {
            Self::ConnectFailed => ErrorClass::Transient,
            Self::TimedOut
            | Self::ConnectionLost
            | Self::HttpStatus(_)
            | Self::UnreadableSuccess => ErrorClass::Ambiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn every_known_code_has_a_meaning() {
        for code in ErrorClass::known_codes() {
            assert!(meaning(code).is_some(), "{code}");
        }
        assert_eq!(meaning(999_999), None);
    }

    #[test]
    fn the_table_is_sorted_and_each_code_is_in_it_once() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn what_each_class_does() {
        for class in ErrorClass::ALL {
            let retried = matches!(class, Transient | Throttled | Maintenance | PairLimited);
            assert_eq!(class.is_retryable(), retried, "{class}");
        }
        assert_eq!(
            Maintenance.retry_after(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(Transient.retry_after(), None);
        assert!(ErrorClass::suppresses_recipient(131_026));
        assert!(!ErrorClass::suppresses_recipient(131_050));
        assert!(ErrorClass::stops_marketing(131_050));
        assert!(!ErrorClass::stops_marketing(131_026));
        assert!(!ErrorClass::suppresses_recipient(131_047));
    }

    #[test]
    fn ambiguous_comes_from_transport_only() {
        assert_eq!(TransportFailure::TimedOut.class(), Ambiguous);
        assert_eq!(TransportFailure::ConnectionLost.class(), Ambiguous);
        assert_eq!(TransportFailure::UnreadableSuccess.class(), Ambiguous);
        assert_eq!(TransportFailure::ConnectFailed.class(), Transient);
        assert_eq!(
            TransportFailure::HttpStatus(502).class(),
            Ambiguous,
            "a proxy's 502 does not prove Meta refused"
        );
        assert!(
            ErrorClass::ALL
                .iter()
                .all(|c| ErrorClass::of_code(-1) != Some(*c))
        );
    }

    #[test]
    fn unknown_codes_follow_is_transient_else_pause() {
        assert_eq!(ErrorClass::classify(999_999, Some(true)), Transient);
        assert_eq!(ErrorClass::classify(999_999, None), CampaignFatal);
        assert_eq!(ErrorClass::classify(999_999, Some(false)), CampaignFatal);
        // A known code ignores the hint.
        assert_eq!(
            ErrorClass::classify(131_026, Some(true)),
            RecipientPermanent
        );
    }

    #[test]
    fn code_labels_are_bounded() {
        assert_eq!(code_label(131_026), "131026");
        assert_eq!(code_label(131_051), "131051");
        assert_eq!(code_label(987_654), "other");
        assert_eq!(
            code_label(250),
            "other",
            "the rest of 200–299 share one label"
        );
        for code in ErrorClass::known_codes() {
            assert_eq!(code_label(code), code.to_string());
        }
    }

    #[test]
    fn labels_are_unique() {
        let mut names: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorClass::ALL.len());
    }
}
