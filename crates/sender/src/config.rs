//! The sender's settings (`[sender]` in `config/herald.toml`), with the defaults the documented
//! configuration file gives.

use std::collections::HashMap;
use std::time::Duration;

use herald_core::{DEFAULT_PORTFOLIO, MessagingLimit};

use herald_store::InDoubtPolicy;

use crate::policy::Backoff;

/// Meta's messaging limit (ARCHITECTURE §13): which business portfolio each phone number
/// belongs to, and an optional cap below Meta's limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitConfig {
    /// Phone number id → its portfolio; numbers not listed form [`DEFAULT_PORTFOLIO`].
    pub portfolios: HashMap<String, String>,
    /// At most this many unique users per moving 24 h outside open windows, whatever Meta's
    /// limit (a safety margin: it never raises Meta's).
    pub cap: Option<u64>,
}

impl LimitConfig {
    /// The portfolio a phone number belongs to.
    pub fn portfolio_of<'a>(&'a self, phone_number_id: &str) -> &'a str {
        self.portfolios
            .get(phone_number_id)
            .map_or(DEFAULT_PORTFOLIO, String::as_str)
    }

    /// The budget to enforce given Meta's limit as recorded (`None`: never read): the lower
    /// of it and the cap; `None` when neither limits anything.
    pub fn effective(&self, meta: Option<MessagingLimit>) -> Option<u64> {
        let cap = self
            .cap
            .map_or(MessagingLimit::Unlimited, MessagingLimit::Users);
        meta.unwrap_or(MessagingLimit::Unlimited).min(cap).users()
    }
}

/// Meta allows up to 1,000 messages per second per phone number.
pub const MAX_MPS: u32 = 1000;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Messages per second per phone number, across every worker.
    pub mps: u32,
    /// Requests in flight at once in this process.
    pub max_in_flight: usize,
    /// The least time between two sends to one recipient from one phone number.
    pub pair_interval: Duration,
    pub backoff: Backoff,
    /// How long an in-doubt job waits for its own webhook before the policy applies, and then
    /// only once statuses of later messages on its number have arrived.
    pub in_doubt_grace: Duration,
    pub in_doubt_policy: InDoubtPolicy,
    /// How long a claim is held without renewal before other workers may reclaim it. A live
    /// worker renews its claims every third of it, so it only bounds how long a dead
    /// worker's claims wait: short, so its unstarted jobs go back to the others quickly.
    pub lease: Duration,
    /// On shutdown, how long in-flight sends get to finish and be settled.
    pub shutdown_deadline: Duration,
    /// Meta counts a phone number's messages over a rolling second, as they reach it; Herald
    /// counts them over a second and half this much, each at the latest time it may go
    /// (its time and the other half) until its request has gone, then at when it went. The
    /// slack covers a send woken a little late (a send woken later still is moved to when it
    /// goes, while the window has room); the wider window covers the way from the socket to
    /// Meta. A request that left its socket after its latest time (the process stalled
    /// after letting it go) is logged when it left, so no guard needs to cover that; where
    /// answers come within half the wider part (an API beside the sender), each request is
    /// logged at its answer less that part, which covers the way there too. Logged at when
    /// they went, sends cost the slack they did not use nothing: the guard costs about half
    /// its length a second of throughput (0.1% at 2 ms), whatever the rate. Below 2 ms the
    /// slack falls under a millisecond, the granularity of tokio's timer, which some sends
    /// wait on (see `wake`): each would need a move. Raise it if the way to Meta jitters by
    /// more than half of it: a request that takes longer than the one a second after it can
    /// make `mps + 1` in Meta's second.
    pub window_guard: Duration,
    /// Only send for these phone number ids (`None`: every running campaign's).
    pub phone_number_ids: Option<Vec<String>>,
    /// Run the sweeps (expired leases, in-doubt grace, scheduled starts, queue gauges). Safe
    /// on every worker; at least one must run them.
    pub maintenance: bool,
    pub maintenance_interval: Duration,
    pub messaging_limit: LimitConfig,
    /// Meta's rates, to hold campaigns within their `max_cost` (`None`: caps are not
    /// enforced, and a capped campaign is paused rather than sent blind).
    pub rate_card: Option<std::sync::Arc<herald_core::cost::RateCard>>,
    /// The sweeps delete a completed or cancelled campaign this long after it ended
    /// (`store.delete_ended_after_days`; `None`: never).
    pub delete_ended_after: Option<Duration>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            mps: 80,
            max_in_flight: 256,
            pair_interval: Duration::from_millis(6000),
            backoff: Backoff {
                base: Duration::from_millis(1000),
                max: Duration::from_millis(300_000),
                max_attempts: 8,
            },
            in_doubt_grace: Duration::from_secs(1800),
            in_doubt_policy: InDoubtPolicy::Resend,
            lease: Duration::from_secs(3),
            shutdown_deadline: Duration::from_secs(15),
            window_guard: Duration::from_millis(2),
            phone_number_ids: None,
            maintenance: true,
            maintenance_interval: Duration::from_secs(2),
            messaging_limit: LimitConfig::default(),
            rate_card: None,
            delete_ended_after: None,
        }
    }
}

/// A setting out of range, named by its configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sender.{key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl SenderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, problem: String| Err(ConfigError { key, problem });
        // No upper bound here: Meta's (MAX_MPS) is the configuration's to enforce; the
        // benchmarks run the sender far above it against the simulator.
        if self.mps == 0 {
            return err("mps", "must be at least 1".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > 100_000 {
            return err("max_in_flight", "must be between 1 and 100000".into());
        }
        if self.backoff.max_attempts == 0 {
            return err("max_attempts", "must be at least 1".into());
        }
        if self.backoff.base.is_zero() || self.backoff.max < self.backoff.base {
            return err(
                "backoff_base_ms",
                "must be positive and not above backoff_max_ms".into(),
            );
        }
        if self.in_doubt_grace < Duration::from_secs(1) {
            return err("in_doubt_grace_secs", "must be at least 1 s".into());
        }
        if self.lease < Duration::from_secs(1) {
            return err("lease_secs", "must be at least 1 s".into());
        }
        if self.window_guard > Duration::from_millis(100) {
            return err("window_guard_ms", "must be at most 100".into());
        }
        if self.maintenance_interval.is_zero() {
            return err("maintenance_interval_ms", "must be positive".into());
        }
        Ok(())
    }

    /// The most jobs this process holds at once (claimed, waiting for a slot, in flight or
    /// being settled): a few rounds of claims per lane beside the in-flight requests.
    pub fn max_held(&self) -> usize {
        self.max_in_flight.saturating_mul(4).saturating_add(8192)
    }

    /// The rate actually used for a phone number: the configured one, capped by the running
    /// campaigns' own caps when every campaign on the number has one.
    pub fn lane_mps(&self, campaign_caps: impl IntoIterator<Item = Option<u32>>) -> u32 {
        let mut sum: u64 = 0;
        let mut any = false;
        for cap in campaign_caps {
            any = true;
            sum += u64::from(cap.unwrap_or(self.mps).min(self.mps));
        }
        if any {
            u32::try_from(sum.min(u64::from(self.mps))).unwrap_or(self.mps)
        } else {
            self.mps
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(SenderConfig::default().validate(), Ok(()));
        let bad = SenderConfig {
            mps: 0,
            ..SenderConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "mps");
        let bad = SenderConfig {
            window_guard: Duration::from_millis(101),
            ..SenderConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "window_guard_ms");
    }

    #[test]
    fn the_limit_is_metas_lowered_by_the_cap() {
        let mut l = LimitConfig::default();
        assert_eq!(l.portfolio_of("1"), DEFAULT_PORTFOLIO);
        assert_eq!(
            l.effective(None),
            None,
            "unknown and uncapped: not enforced"
        );
        assert_eq!(l.effective(Some(MessagingLimit::Users(250))), Some(250));
        l.cap = Some(200);
        assert_eq!(l.effective(Some(MessagingLimit::Users(250))), Some(200));
        assert_eq!(l.effective(Some(MessagingLimit::Users(50))), Some(50));
        assert_eq!(l.effective(Some(MessagingLimit::Unlimited)), Some(200));
        assert_eq!(l.effective(None), Some(200));
        l.portfolios.insert("1".into(), "acme".into());
        assert_eq!(l.portfolio_of("1"), "acme");
    }

    #[test]
    fn campaign_caps_limit_the_lane_only_when_all_have_one() {
        let cfg = SenderConfig::default();
        assert_eq!(cfg.lane_mps([]), 80);
        assert_eq!(cfg.lane_mps([Some(20)]), 20);
        assert_eq!(cfg.lane_mps([Some(20), Some(30)]), 50);
        assert_eq!(cfg.lane_mps([Some(20), None]), 80);
        assert_eq!(
            cfg.lane_mps([Some(500)]),
            80,
            "never above the number's rate"
        );
    }
}
