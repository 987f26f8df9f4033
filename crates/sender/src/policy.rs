//! What the sender does about each outcome: backoff delays and the adaptive rate.
//!
//! Pure functions and a small state machine, so they are tested without a network or a clock.

use std::time::Duration;

use herald_cloudapi::ErrorClass;
use herald_core::SkipReason;

/// Retry settings (`[sender]` in `config/herald.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl Backoff {
    /// Exponential backoff with full jitter: uniform in `[0, min(max, base · 2^attempt))`.
    /// `unit` is a uniform draw in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        cap.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Meta's advice for 131056: retry that recipient after 4^n seconds.
pub fn pair_delay(attempt: u32, max: Duration) -> Duration {
    Duration::from_secs(4u64.saturating_pow(attempt.min(10))).min(max)
}

/// What to do with a job after a failed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long; the attempt counts.
    Retry(Duration),
    /// Try again after this long; not the recipient's fault, so the attempt is not counted
    /// against the cap (throughput, maintenance).
    Defer(Duration),
    /// Failed for good with this code.
    Fail(String),
    Skip(SkipReason),
    /// The request may have reached Meta.
    InDoubt,
    /// Pause the campaign and put the job back.
    PauseCampaign,
    /// Pause every campaign on the phone number and put the job back.
    PauseSender,
    /// Pause every campaign of the phone number's portfolio and put the job back.
    PausePortfolio,
}

/// The decision for a failed send of a job that had made `attempts` requests before this one.
pub fn decide(
    class: ErrorClass,
    code: Option<i64>,
    attempts: u32,
    backoff: &Backoff,
    unit: f64,
) -> Decision {
    let code_str = || code.map_or_else(|| "transport".to_owned(), |c| c.to_string());
    match class {
        ErrorClass::Transient => {
            if attempts + 1 >= backoff.max_attempts {
                Decision::Fail(code_str())
            } else {
                Decision::Retry(backoff.delay(attempts, unit))
            }
        }
        ErrorClass::Throttled => {
            Decision::Defer(Duration::from_millis(250) + Duration::from_secs(1).mul_f64(unit))
        }
        ErrorClass::Maintenance => {
            Decision::Defer(class.retry_after().unwrap_or(Duration::from_secs(60)))
        }
        ErrorClass::PairLimited => {
            if attempts + 1 >= backoff.max_attempts + 4 {
                Decision::Fail(code_str())
            } else {
                Decision::Retry(pair_delay(attempts, backoff.max))
            }
        }
        ErrorClass::RecipientPermanent => Decision::Fail(code_str()),
        ErrorClass::FrequencyCapped if code == Some(130_472) => {
            Decision::Skip(SkipReason::Experiment)
        }
        ErrorClass::FrequencyCapped => Decision::Skip(SkipReason::FrequencyCapped),
        ErrorClass::CampaignFatal => Decision::PauseCampaign,
        ErrorClass::MessagingLimit => Decision::PausePortfolio,
        ErrorClass::SenderFatal => Decision::PauseSender,
        ErrorClass::Ambiguous => Decision::InDoubt,
    }
}

/// When a recipient Meta declined for its per-user marketing limit (131049) is tried again:
/// a day later (Meta's limit counts a moving day), when the campaign opted in and has tries
/// left, and never for marketing to a `+1` number (Meta delivers no marketing there).
pub fn capped_retry(
    retries: u32,
    attempts: u32,
    marketing: bool,
    phone: herald_core::PhoneE164,
) -> Option<Duration> {
    (attempts < retries && !(marketing && phone.is_nanp())).then_some(CAPPED_RETRY_AFTER)
}

/// How long after a 131049 a recipient is tried again.
pub const CAPPED_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600 + 60);

/// A phone number's effective rate: multiplicative decrease on 130429, additive increase
/// back to the configured rate.
///
/// The decrease is sized by the evidence: when a share `f` of the last second's requests was
/// throttled, Meta let through about `1 − f` of the rate, so the rate drops to that, less a
/// headroom of `f` itself (between 1% and 5%). A stray 130429 (one in a thousand: network
/// jitter bunching two seconds' edges) costs a 1% dip for a tenth of a second; a number
/// configured far above what Meta allows drops in one step to just under it. Never below
/// 5% of the configured rate. Without a usable sample it halves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveRate {
    configured: f64,
    current: f64,
}

impl AdaptiveRate {
    /// Never below this share of the configured rate.
    const FLOOR: f64 = 0.05;
    /// Recover this share of the configured rate per second.
    const RECOVERY_PER_SEC: f64 = 0.10;

    pub fn new(mps: f64) -> Self {
        Self {
            configured: mps,
            current: mps,
        }
    }

    pub fn current(&self) -> f64 {
        self.current
    }

    pub fn configured(&self) -> f64 {
        self.configured
    }

    /// Meta answered 130429; `throttled_share` is the share of recent requests it throttled,
    /// when known.
    pub fn throttled(&mut self, throttled_share: Option<f64>) {
        let factor = match throttled_share {
            Some(f) => {
                let f = f.clamp(0.0, 1.0);
                ((1.0 - f) * (1.0 - f.clamp(0.01, 0.05))).clamp(0.05, 0.99)
            }
            None => 0.5,
        };
        self.current = (self.current * factor)
            .max(self.configured * Self::FLOOR)
            .max(0.1);
    }

    /// Time passes without throttling.
    pub fn recover(&mut self, elapsed: Duration) {
        self.current = (self.current
            + self.configured * Self::RECOVERY_PER_SEC * elapsed.as_secs_f64())
        .min(self.configured);
    }

    /// A new configured rate (the campaign mix changed). An unthrottled rate follows it at
    /// once; a throttled one keeps recovering, never above it.
    pub fn set_configured(&mut self, mps: f64) {
        let unthrottled = self.current >= self.configured;
        self.configured = mps;
        self.current = if unthrottled {
            mps
        } else {
            self.current.min(mps)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_attempts: 8,
        }
    }

    #[test]
    fn every_class_has_its_action() {
        let b = backoff();
        assert!(matches!(
            decide(ErrorClass::Transient, Some(2), 0, &b, 0.5),
            Decision::Retry(_)
        ));
        assert_eq!(
            decide(ErrorClass::Transient, Some(2), 7, &b, 0.5),
            Decision::Fail("2".into()),
            "the cap"
        );
        assert_eq!(
            decide(ErrorClass::Transient, None, 7, &b, 0.5),
            Decision::Fail("transport".into())
        );
        assert!(
            matches!(
                decide(ErrorClass::Throttled, Some(130_429), 9, &b, 0.5),
                Decision::Defer(_)
            ),
            "not capped"
        );
        assert_eq!(
            decide(ErrorClass::Maintenance, Some(131_057), 0, &b, 0.5),
            Decision::Defer(Duration::from_secs(60))
        );
        assert_eq!(
            decide(ErrorClass::PairLimited, Some(131_056), 2, &b, 0.5),
            Decision::Retry(Duration::from_secs(16))
        );
        assert_eq!(
            decide(ErrorClass::RecipientPermanent, Some(131_026), 0, &b, 0.5),
            Decision::Fail("131026".into())
        );
        assert_eq!(
            decide(ErrorClass::FrequencyCapped, Some(131_049), 0, &b, 0.5),
            Decision::Skip(SkipReason::FrequencyCapped)
        );
        assert_eq!(
            decide(ErrorClass::FrequencyCapped, Some(130_472), 0, &b, 0.5),
            Decision::Skip(SkipReason::Experiment)
        );
        let uk: herald_core::PhoneE164 = "+447700900123".parse().unwrap();
        let us: herald_core::PhoneE164 = "+16505550123".parse().unwrap();
        assert_eq!(capped_retry(1, 0, true, uk), Some(CAPPED_RETRY_AFTER));
        assert!(CAPPED_RETRY_AFTER >= Duration::from_secs(24 * 3600));
        assert_eq!(capped_retry(1, 1, true, uk), None, "tries used up");
        assert_eq!(capped_retry(0, 0, true, uk), None, "not opted in");
        assert_eq!(capped_retry(3, 0, true, us), None, "no marketing to +1");
        assert_eq!(
            capped_retry(3, 0, false, us),
            Some(CAPPED_RETRY_AFTER),
            "a utility template to +1 may go again"
        );
        assert_eq!(
            decide(ErrorClass::CampaignFatal, Some(132_001), 0, &b, 0.5),
            Decision::PauseCampaign
        );
        assert_eq!(
            decide(ErrorClass::MessagingLimit, Some(131_048), 0, &b, 0.5),
            Decision::PausePortfolio
        );
        assert_eq!(
            decide(ErrorClass::SenderFatal, Some(190), 0, &b, 0.5),
            Decision::PauseSender
        );
        assert_eq!(
            decide(ErrorClass::Ambiguous, None, 0, &b, 0.5),
            Decision::InDoubt
        );
    }

    #[test]
    fn pair_delays_follow_four_to_the_n() {
        let max = Duration::from_secs(300);
        let d: Vec<u64> = (0..6).map(|n| pair_delay(n, max).as_secs()).collect();
        assert_eq!(d, [1, 4, 16, 64, 256, 300]);
    }

    #[test]
    fn the_rate_falls_with_the_evidence_and_recovers() {
        let mut r = AdaptiveRate::new(80.0);
        r.throttled(None);
        assert_eq!(r.current(), 40.0, "no sample: halve");
        r.recover(Duration::from_secs(5));
        assert_eq!(r.current(), 80.0, "10% of the configured rate per second");
        r.recover(Duration::from_secs(60));
        assert_eq!(r.current(), 80.0, "never above the configured rate");
        // One throttle in a thousand: a jitter-sized excess, a small step down...
        r.throttled(Some(0.001));
        assert!((r.current() - 79.12080).abs() < 1e-9, "{}", r.current());
        // ...recovered within a tenth of a second.
        r.recover(Duration::from_millis(110));
        assert_eq!(r.current(), 80.0);
        // A few percent throttled: down by twice that.
        r.throttled(Some(0.03));
        assert!(
            (r.current() - 80.0 * 0.97 * 0.97).abs() < 1e-9,
            "{}",
            r.current()
        );
        r.recover(Duration::from_secs(1));
        // Configured for 1,000 on a number Meta holds to 80: 92% throttled, one step to
        // just under what Meta allows.
        let mut r = AdaptiveRate::new(1000.0);
        r.throttled(Some(0.92));
        assert!((r.current() - 76.0).abs() < 1e-6, "{}", r.current());
        for _ in 0..20 {
            r.throttled(Some(1.0));
        }
        assert_eq!(r.current(), 50.0, "a floor");
        r.set_configured(40.0);
        assert_eq!(r.current(), 40.0, "never above the configuration");
        let mut r = AdaptiveRate::new(40.0);
        r.set_configured(80.0);
        assert_eq!(
            r.current(),
            80.0,
            "an unthrottled rate follows the configuration"
        );
    }

    proptest! {
        /// Full jitter stays within [0, min(max, base·2^n)) and the cap grows with n.
        #[test]
        fn backoff_is_bounded(attempt in 0u32..40, unit in 0.0f64..1.0) {
            let b = backoff();
            let d = b.delay(attempt, unit);
            let cap = Duration::from_secs(1u64 << attempt.min(20)).min(b.max);
            prop_assert!(d <= cap);
            prop_assert!(b.delay(attempt, 0.0) == Duration::ZERO);
        }
    }
}
