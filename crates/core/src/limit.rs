//! A business portfolio's messaging limit: how many unique users it may message outside an
//! open customer-service window in a moving 24 hours (ARCHITECTURE §13). Meta names it as a
//! tier (`TIER_2K`, from the phone number's `whatsapp_business_manager_messaging_limit`) or as
//! a count (`max_daily_conversations_per_business` in webhooks, -1 for unlimited).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The portfolio of every phone number (and WhatsApp Business Account) the configuration does
/// not place in another.
pub const DEFAULT_PORTFOLIO: &str = "default";

/// Meta's messaging limit counts unique users over a moving day.
pub const REACH_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Unique users per moving 24 h outside open windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagingLimit {
    Users(u64),
    Unlimited,
}

impl MessagingLimit {
    /// The limit of a Meta tier name. `TIER_NOT_SET` (a new business, not yet rated) is the
    /// starting tier, 250; an unknown name is `None`.
    pub fn from_tier(tier: &str) -> Option<Self> {
        Some(match tier {
            "TIER_50" => Self::Users(50),
            "TIER_250" | "TIER_NOT_SET" => Self::Users(250),
            "TIER_1K" => Self::Users(1_000),
            "TIER_2K" => Self::Users(2_000),
            "TIER_10K" => Self::Users(10_000),
            "TIER_100K" => Self::Users(100_000),
            "TIER_UNLIMITED" => Self::Unlimited,
            _ => return None,
        })
    }

    /// The limit of a webhook's daily count (-1 or any negative: unlimited).
    pub fn from_daily(count: i64) -> Self {
        u64::try_from(count).map_or(Self::Unlimited, Self::Users)
    }

    /// The lower of two limits (a configured cap never raises Meta's).
    pub fn min(self, other: Self) -> Self {
        std::cmp::min(self, other)
    }

    /// The number of users, `None` when unlimited.
    pub fn users(self) -> Option<u64> {
        match self {
            Self::Users(n) => Some(n),
            Self::Unlimited => None,
        }
    }
}

impl fmt::Display for MessagingLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Users(n) => write!(f, "{n} users"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_counts() {
        assert_eq!(
            MessagingLimit::from_tier("TIER_2K"),
            Some(MessagingLimit::Users(2_000))
        );
        assert_eq!(
            MessagingLimit::from_tier("TIER_UNLIMITED"),
            Some(MessagingLimit::Unlimited)
        );
        assert_eq!(MessagingLimit::from_tier("TIER_9K"), None);
        assert_eq!(MessagingLimit::from_daily(-1), MessagingLimit::Unlimited);
        assert_eq!(MessagingLimit::from_daily(250), MessagingLimit::Users(250));
    }

    #[test]
    fn a_cap_only_lowers() {
        let meta = MessagingLimit::Users(2_000);
        assert_eq!(
            meta.min(MessagingLimit::Users(500)),
            MessagingLimit::Users(500)
        );
        assert_eq!(meta.min(MessagingLimit::Users(9_000)), meta);
        assert_eq!(MessagingLimit::Unlimited.min(meta), meta);
    }
}
