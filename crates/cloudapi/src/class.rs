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
    /// The phone number or token cannot send at all: pause every campaign on the number.
    SenderFatal,
    /// The request may have reached Meta and the outcome is unknown: the job is in doubt.
    Ambiguous,
}

impl ErrorClass {
    pub const ALL: [Self; 9] = [
        Self::Transient,
        Self::Throttled,
        Self::Maintenance,
        Self::PairLimited,
        Self::RecipientPermanent,
        Self::FrequencyCapped,
        Self::CampaignFatal,
        Self::SenderFatal,
        Self::Ambiguous,
    ];

    /// The class of a known Cloud API error code; `None` for codes not in the table.
    pub fn of_code(code: i64) -> Option<Self> {
        use ErrorClass::*;
        Some(match code {
            // Meta-side failures and management-call rate limits: back off and retry.
            1 | 2 | 131_000 | 131_016 | 4 | 80_007 => Transient,
            130_429 => Throttled,
            131_057 => Maintenance,
            131_056 => PairLimited,
            // 130497: business may not message users in that country.
            // 131062: business-scoped user ids not supported for this message.
            131_026 | 131_021 | 131_030 | 131_050 | 131_047 | 130_497 | 131_062 => {
                RecipientPermanent
            }
            131_049 | 130_472 => FrequencyCapped,
            // Template, parameter and content problems the operator must fix, plus media that
            // Meta could not fetch (131052/131053) and marketing templates disabled (131063).
            100 | 131_008 | 131_009 | 132_000 | 132_001 | 132_005 | 132_007 | 132_012 | 132_015
            | 132_016 | 131_048 | 131_052 | 131_053 | 131_063 | 132_068 | 132_069 => CampaignFatal,
            // Token, permission, account and registration problems (200–299 are permissions).
            0 | 190 | 3 | 10 | 200..=299 | 368 | 131_031 | 131_042 | 131_045 | 133_010 => {
                SenderFatal
            }
            _ => return None,
        })
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

    /// Codes that also put the number on the suppression list (ARCHITECTURE §6).
    pub fn suppresses_recipient(code: i64) -> bool {
        matches!(code, 131_026 | 131_050)
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

/// A metric label for an error code: the code itself when it is in the table, else
/// `other`, so labels stay a bounded set whatever Meta sends.
pub fn code_label(code: i64) -> &'static str {
    macro_rules! known {
        ($($c:literal),*) => {
            match code {
                $( $c => stringify!($c), )*
                _ => "other",
            }
        };
    }
    known!(
        0, 1, 2, 3, 4, 10, 100, 190, 200, 368, 80007, 130429, 130472, 130497, 131000, 131008,
        131009, 131016, 131021, 131026, 131030, 131031, 131042, 131045, 131047, 131048, 131049,
        131050, 131051, 131052, 131053, 131056, 131057, 131062, 131063, 132000, 132001, 132005,
        132007, 132012, 132015, 132016, 132068, 132069, 133010
    )
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

    fn all(codes: &[i64], class: ErrorClass) {
        for &c in codes {
            assert_eq!(ErrorClass::of_code(c), Some(class), "code {c}");
        }
    }

    #[test]
    fn transient() {
        all(&[1, 2, 131_000, 131_016], Transient);
        assert!(Transient.is_retryable());
    }

    #[test]
    fn throttled() {
        all(&[130_429], Throttled);
    }

    #[test]
    fn maintenance() {
        all(&[131_057], Maintenance);
        assert_eq!(
            Maintenance.retry_after(),
            Some(std::time::Duration::from_secs(60))
        );
    }

    #[test]
    fn pair_limited() {
        all(&[131_056], PairLimited);
    }

    #[test]
    fn recipient_permanent() {
        all(
            &[131_026, 131_021, 131_030, 131_050, 131_047],
            RecipientPermanent,
        );
        assert!(ErrorClass::suppresses_recipient(131_026));
        assert!(ErrorClass::suppresses_recipient(131_050));
        assert!(!ErrorClass::suppresses_recipient(131_047));
        assert!(!RecipientPermanent.is_retryable());
    }

    #[test]
    fn frequency_capped() {
        all(&[131_049, 130_472], FrequencyCapped);
    }

    #[test]
    fn campaign_fatal() {
        all(
            &[
                100, 131_008, 131_009, 132_000, 132_001, 132_005, 132_007, 132_012, 132_015,
                132_016, 131_048,
            ],
            CampaignFatal,
        );
    }

    #[test]
    fn sender_fatal() {
        all(
            &[0, 190, 3, 10, 200, 250, 299, 368, 131_031, 131_042, 133_010],
            SenderFatal,
        );
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
        assert_eq!(code_label(987_654), "other");
        // Every code the table classifies has its own label.
        for code in [
            0, 1, 2, 3, 4, 10, 100, 190, 368, 130_429, 131_026, 131_056, 132_001, 133_010,
        ] {
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
