//! The campaign lifecycle and its legal transitions.
//!
//! ```text
//! draft ──schedule──► scheduled ──start──► running ◄──resume── paused
//!   └────────────start────────────────────►   │ └────pause────►  ▲
//!                                              └──complete──► completed
//! cancel: from draft, scheduled, running or paused ──► cancelled
//! ```
//! `completed` and `cancelled` are final. The store applies these transitions atomically; the
//! API answers 409 with the error below for anything else.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

/// What an operator (or Herald itself) asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignAction {
    Schedule,
    Start,
    Pause,
    Resume,
    Complete,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a campaign that is {from}")]
pub struct TransitionError {
    pub from: CampaignStatus,
    pub action: CampaignAction,
}

impl CampaignStatus {
    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
    ];

    /// The status after `action`, or why it is not allowed.
    pub fn apply(self, action: CampaignAction) -> Result<Self, TransitionError> {
        use CampaignAction as A;
        use CampaignStatus as S;
        let next = match (self, action) {
            (S::Draft, A::Schedule) => S::Scheduled,
            (S::Draft | S::Scheduled, A::Start) => S::Running,
            (S::Running, A::Pause) => S::Paused,
            (S::Paused, A::Resume) => S::Running,
            (S::Running, A::Complete) => S::Completed,
            (S::Draft | S::Scheduled | S::Running | S::Paused, A::Cancel) => S::Cancelled,
            (from, action) => return Err(TransitionError { from, action }),
        };
        Ok(next)
    }

    /// `completed` and `cancelled` never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// Whether workers may claim this campaign's jobs.
    pub fn is_sending(self) -> bool {
        self == Self::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
        }
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CampaignAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a campaign is paused: shown to operators in the campaign's status and in metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PauseReason {
    pub kind: PauseKind,
    /// The Cloud API error code that caused it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// A short human explanation (never a token, never a phone number).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    /// An operator paused it.
    Operator,
    /// A send failed with an error that will fail every send of this campaign (bad template,
    /// bad parameter, spam limit).
    CampaignFatal,
    /// The phone number or token cannot send at all; every campaign on the number is paused.
    SenderFatal,
    /// Meta paused, disabled or rejected the campaign's template.
    TemplateStatus,
    /// Meta re-categorised the campaign's template (say utility to marketing: it costs more
    /// and falls under the marketing limits): an operator decides whether to go on.
    TemplateCategory,
    /// Meta refused a send for the portfolio's messaging limit (131048) although Herald's
    /// budget had room (another sender shares the portfolio, or Meta lowered the limit):
    /// every campaign of the portfolio is paused for an operator to look.
    MessagingLimit,
    /// The campaign's `max_cost` would be passed: what is charged plus what may still be
    /// charged for messages on their way reached it.
    Budget,
}

impl PauseKind {
    /// The name as serialised, and the `kind` label of `herald_sender_pauses_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::CampaignFatal => "campaign_fatal",
            Self::SenderFatal => "sender_fatal",
            Self::TemplateStatus => "template_status",
            Self::TemplateCategory => "template_category",
            Self::MessagingLimit => "messaging_limit",
            Self::Budget => "budget",
        }
    }
}

impl PauseReason {
    pub fn operator() -> Self {
        Self {
            kind: PauseKind::Operator,
            code: None,
            detail: String::new(),
        }
    }

    pub fn from_code(kind: PauseKind, code: i64, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code: Some(code),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PauseKind::Operator => "paused by operator",
            PauseKind::CampaignFatal => "campaign-fatal error",
            PauseKind::SenderFatal => "sender-fatal error",
            PauseKind::TemplateStatus => "template status changed",
            PauseKind::TemplateCategory => "template category changed",
            PauseKind::MessagingLimit => "the portfolio's messaging limit is spent by Meta's count",
            PauseKind::Budget => "the campaign's max_cost is reached",
        };
        f.write_str(kind)?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CampaignAction as A;
    use CampaignStatus as S;

    #[test]
    fn the_documented_paths_are_legal() {
        assert_eq!(S::Draft.apply(A::Schedule), Ok(S::Scheduled));
        assert_eq!(S::Scheduled.apply(A::Start), Ok(S::Running));
        assert_eq!(S::Draft.apply(A::Start), Ok(S::Running));
        assert_eq!(S::Running.apply(A::Pause), Ok(S::Paused));
        assert_eq!(S::Paused.apply(A::Resume), Ok(S::Running));
        assert_eq!(S::Running.apply(A::Complete), Ok(S::Completed));
        for from in [S::Draft, S::Scheduled, S::Running, S::Paused] {
            assert_eq!(from.apply(A::Cancel), Ok(S::Cancelled));
        }
    }

    #[test]
    fn final_states_accept_nothing() {
        for from in [S::Completed, S::Cancelled] {
            assert!(from.is_final());
            for action in [
                A::Schedule,
                A::Start,
                A::Pause,
                A::Resume,
                A::Complete,
                A::Cancel,
            ] {
                assert_eq!(from.apply(action), Err(TransitionError { from, action }));
            }
        }
    }

    #[test]
    fn exactly_the_legal_transitions_exist() {
        let all_actions = [
            A::Schedule,
            A::Start,
            A::Pause,
            A::Resume,
            A::Complete,
            A::Cancel,
        ];
        let mut legal: Vec<(S, A, S)> = S::ALL
            .iter()
            .flat_map(|&s| {
                all_actions
                    .iter()
                    .filter_map(move |&a| s.apply(a).ok().map(|to| (s, a, to)))
            })
            .collect();
        // The lifecycle, written out: every legal move and where it leads, and no other.
        let expected = [
            (S::Draft, A::Schedule, S::Scheduled),
            (S::Draft, A::Start, S::Running),
            (S::Draft, A::Cancel, S::Cancelled),
            (S::Scheduled, A::Start, S::Running),
            (S::Scheduled, A::Cancel, S::Cancelled),
            (S::Running, A::Pause, S::Paused),
            (S::Running, A::Complete, S::Completed),
            (S::Running, A::Cancel, S::Cancelled),
            (S::Paused, A::Resume, S::Running),
            (S::Paused, A::Cancel, S::Cancelled),
        ];
        legal.sort_by_key(|t| format!("{t:?}"));
        let mut expected = expected.to_vec();
        expected.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(legal, expected);
        assert_eq!(
            S::Paused.apply(A::Start).unwrap_err().to_string(),
            "cannot start a campaign that is paused"
        );
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(S::parse("Running"), None);
    }

    #[test]
    fn pause_kinds_are_named_as_serialised() {
        for kind in [
            PauseKind::Operator,
            PauseKind::CampaignFatal,
            PauseKind::SenderFatal,
            PauseKind::TemplateStatus,
            PauseKind::TemplateCategory,
            PauseKind::MessagingLimit,
            PauseKind::Budget,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
            assert!(
                kind == PauseKind::Operator || crate::metrics::PAUSE_KINDS.contains(&kind.as_str()),
                "{kind:?} is a label of herald_sender_pauses_total"
            );
        }
    }

    #[test]
    fn pause_reasons_read_well() {
        let r = PauseReason::from_code(PauseKind::CampaignFatal, 132001, "template not approved");
        assert_eq!(
            r.to_string(),
            "campaign-fatal error (code 132001): template not approved"
        );
        assert_eq!(PauseReason::operator().to_string(), "paused by operator");
    }
}
