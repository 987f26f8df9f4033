//! Herald's domain types, shared by every other crate.
//!
//! Everything here is built once at the edge of the system and trusted inside it: a
//! [`PhoneE164`] is always a valid E.164 number, a [`JobId`] always names a campaign and a
//! sequence number, a [`MessageTemplate`] always renders valid JSON. Nothing in this crate does
//! I/O.

pub mod cost;
pub mod ids;
pub mod lattice;
pub mod limit;
pub mod metrics;
pub mod phone;
pub mod recipient;
pub mod region;
pub mod repeated;
pub mod send_window;
pub mod spec;
pub mod stats;
pub mod status;

pub use ids::{CampaignId, IdError, JobId, WaMessageId, business_user_id};
pub use lattice::{DeliveryDelta, DeliveryState, Progress, StatusEvent};
pub use limit::{DEFAULT_PORTFOLIO, MessagingLimit, REACH_WINDOW};
pub use phone::{PhoneE164, PhoneError};
pub use recipient::{Recipient, Vars, VarsBuilder, VarsError};
pub use region::{Region, RegionError};
pub use send_window::{SendWindow, WindowRule};
pub use spec::{
    CampaignSpec, EmptyValue, MessageTemplate, Placeholder, SpecError, TemplateField, Values,
};
pub use stats::{PricingStats, SkipReason, Skipped, Stats};
pub use status::{CampaignAction, CampaignStatus, PauseKind, PauseReason, TransitionError};

/// FNV-1a, 64 bits: a fast, stable hash for bucketing and fingerprints (not for anything an
/// attacker may choose to collide with harmfully).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whole milliseconds of a duration (saturating), for stored and configured times.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock in Unix milliseconds (what webhooks, windows and stored times use).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
