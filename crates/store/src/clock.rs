//! The store's clock seen from a process: every limiter runs on the store's time, and a
//! process maps it onto its own from the readings its calls bring back.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

/// Maps the store's clock onto this process's. Each reading of the store's clock is known only
/// to within half the round trip it came with; the mapping keeps the reading with the smallest
/// uncertainty (aged, so that it is refreshed now and then) instead of re-anchoring on every
/// reading: readings mapped with different errors would put the slots of consecutive rounds
/// closer together than the limiter spaced them. A reading the kept one contradicts (they
/// differ by more than both uncertainties together) replaces it at once, however sloppy: the
/// store's clock moved (a failover to a master with another clock, a clock stepped), and the
/// kept reading would otherwise go on mapping the old one until it aged past the new ones'
/// uncertainty, which on a busy machine takes minutes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreClock {
    anchor: Option<(Instant, Timestamp, Duration)>,
}

impl StoreClock {
    /// Uncertainty added to the kept reading per second of age.
    const AGING_PER_SEC: Duration = Duration::from_micros(50);

    /// Takes in a reading of the store's clock made by a call sent at `asked` and answered at
    /// `answered`.
    pub fn sample(&mut self, asked: Instant, answered: Instant, store: Timestamp) {
        let half = answered.saturating_duration_since(asked) / 2;
        let mid = asked + half;
        let keep = self.anchor.is_some_and(|(at, anchor, err)| {
            let aged = Self::aged(at, err, mid);
            aged < half && Self::apart(at, anchor, mid, store) <= aged + half
        });
        if !keep {
            self.anchor = Some((mid, store, half));
        }
    }

    /// How far apart the kept reading (`anchor` at `at`) and a new one (`store` at `mid`)
    /// put the store's clock.
    fn apart(at: Instant, anchor: Timestamp, mid: Instant, store: Timestamp) -> Duration {
        // Both sides as signed durations: the store's time between the readings against this
        // process's (a new reading can be anchored before the kept one).
        let local = if mid >= at {
            mid.duration_since(at).as_secs_f64()
        } else {
            -at.duration_since(mid).as_secs_f64()
        };
        let store = store.duration_since(anchor).as_secs_f64();
        Duration::try_from_secs_f64((store - local).abs()).unwrap_or(Duration::MAX)
    }

    /// The local instant of a store time (now, before any reading).
    pub fn local(&self, store: Timestamp) -> Instant {
        match self.anchor {
            Some((at, anchor, _)) => {
                let d = store.duration_since(anchor);
                if d.is_negative() {
                    at.checked_sub(d.unsigned_abs()).unwrap_or(at)
                } else {
                    at + d.unsigned_abs()
                }
            }
            None => Instant::now(),
        }
    }

    /// The store's time now, when the kept reading knows it to within `within`.
    pub fn now_within(&self, within: Duration) -> Option<Timestamp> {
        let (at, anchor, err) = self.anchor?;
        let now = Instant::now();
        if Self::aged(at, err, now) > within {
            return None;
        }
        let elapsed = jiff::SignedDuration::try_from(now.saturating_duration_since(at)).ok()?;
        anchor.checked_add(elapsed).ok()
    }

    /// A reading's uncertainty at `now`.
    fn aged(at: Instant, err: Duration, now: Instant) -> Duration {
        let age = now.saturating_duration_since(at).as_secs_f64();
        err + Self::AGING_PER_SEC.mul_f64(age)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn store(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn the_clock_keeps_its_most_precise_reading() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = StoreClock::default();
        // Store time 1,000 ms read in a 10 ms round trip: anchored at its middle.
        c.sample(t0, t0 + ms(10), store(1000));
        assert_eq!(c.local(store(1000)), t0 + ms(5));
        // A sloppier reading (40 ms) that disagrees by 15 ms changes nothing.
        c.sample(t0 + ms(100), t0 + ms(140), store(1100));
        assert_eq!(c.local(store(1200)), t0 + ms(205));
        // A sharper one (2 ms) replaces it.
        c.sample(t0 + ms(300), t0 + ms(302), store(1300));
        assert_eq!(c.local(store(1300)), t0 + ms(301));
        assert_eq!(
            c.local(store(1299)),
            t0 + ms(300),
            "times before the anchor"
        );
    }

    #[test]
    fn a_reading_the_kept_one_contradicts_replaces_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = StoreClock::default();
        c.sample(t0, t0 + ms(10), store(1000));
        // A sloppier reading (40 ms) 15 ms off agrees within both uncertainties (5 + 20 ms):
        // kept, as above. One 26 ms off cannot be right if the kept one is.
        c.sample(t0 + ms(100), t0 + ms(140), store(1100));
        assert_eq!(c.local(store(1000)), t0 + ms(5));
        c.sample(t0 + ms(100), t0 + ms(140), store(1141));
        assert_eq!(
            c.local(store(1141)),
            t0 + ms(120),
            "the clock moved: the new reading is the anchor"
        );
        // A master whose clock is 300 ms behind: the first reading of it takes over.
        let mut c = StoreClock::default();
        c.sample(t0, t0 + ms(1), store(50_000));
        c.sample(t0 + ms(1000), t0 + ms(1008), store(50_700));
        assert_eq!(c.local(store(50_700)), t0 + ms(1004));
        // Read before the kept one's anchor (an answer that came late), and contradicting it.
        let mut c = StoreClock::default();
        c.sample(t0 + ms(500), t0 + ms(502), store(10_000));
        c.sample(t0 + ms(100), t0 + ms(110), store(10_000));
        assert_eq!(c.local(store(10_000)), t0 + ms(105));
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_time_now_is_known_while_the_reading_is_precise_enough() {
        let ms = Duration::from_millis;
        let mut c = StoreClock::default();
        assert_eq!(c.now_within(ms(100)), None, "no reading yet");
        let t0 = Instant::now();
        tokio::time::advance(ms(4)).await;
        // Read in a 4 ms round trip: 2 ms uncertain, anchored 2 ms after t0.
        c.sample(t0, Instant::now(), store(10_000));
        assert_eq!(c.now_within(ms(100)), Some(store(10_002)));
        assert_eq!(c.now_within(ms(1)), None, "not that precise");
        // 50 µs of uncertainty a second: after 1,000 s, 52 ms.
        tokio::time::advance(Duration::from_secs(1000)).await;
        assert_eq!(c.now_within(ms(100)), Some(store(1_010_002)));
        assert_eq!(c.now_within(ms(50)), None, "aged past 50 ms");
    }
}
