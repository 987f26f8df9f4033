//! The oracle: everything the simulator saw, so tests can prove "nothing lost, nothing twice,
//! never too fast" from the receiving side (`GET /_sim/stats`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What `GET /_sim/stats` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Send requests that reached the handler (any outcome).
    pub requests: u64,
    /// Messages accepted (given an id), including those whose answer was then lost.
    pub accepted: u64,
    /// Rejections by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Distinct `biz_opaque_callback_data` values accepted.
    pub unique_callbacks: u64,
    /// Callback ids accepted more than once: each is a recipient messaged twice.
    pub duplicate_callbacks: Vec<String>,
    pub max_accepts_per_callback: u32,
    /// Accepted count per callback id (only with `?callbacks=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<BTreeMap<String, u32>>,
    pub phone_numbers: BTreeMap<String, NumberStats>,
    /// The smallest gap between two accepted messages to one recipient.
    pub min_pair_gap_ms: Option<f64>,
    /// The most unique users the portfolio had messaged outside open windows within a moving
    /// 24 h, at any moment (what the messaging limit counts).
    #[serde(default)]
    pub reach_peak: u64,
    /// What Meta charges: delivered messages (a `delivered` status scheduled) with `regular`
    /// pricing, by category.
    #[serde(default)]
    pub charged: BTreeMap<String, u64>,
    /// Delivered messages priced free (`free_customer_service`).
    #[serde(default)]
    pub free: u64,
    pub webhooks: WebhookStats,
    pub faults: FaultStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberStats {
    pub requests: u64,
    pub accepted: u64,
    /// Most send requests in any 1 s window.
    pub max_requests_1s: u64,
    /// Most send requests in any 100 ms window.
    pub max_requests_100ms: u64,
    /// Microseconds from the first send request to the last: with `requests`, the mean rate.
    #[serde(default)]
    pub request_span_us: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStats {
    /// POSTs attempted, retries included.
    pub attempted: u64,
    /// POSTs answered 200.
    pub acknowledged: u64,
    /// POSTs given up after the last attempt.
    pub dropped: u64,
    /// Statuses in acknowledged POSTs.
    pub statuses_delivered: u64,
    /// Inbound messages in acknowledged POSTs.
    pub messages_delivered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    pub error_5xx: u64,
    pub hangs: u64,
    pub resets: u64,
    /// Accepted, then answered 502 with an HTML page.
    #[serde(default)]
    pub bad_gateways: u64,
}

/// Event times in a sliding window, kept in order. Requests are stamped when they arrived
/// (see [`crate::arrival`]) but handled one after another, so an event may come in after a
/// later one: it goes in its place, and every window that holds it counts it.
#[derive(Debug)]
struct Window {
    span: Duration,
    times: VecDeque<Instant>,
    max: u64,
}

impl Window {
    fn new(span: Duration) -> Self {
        Self {
            span,
            times: VecDeque::new(),
            max: 0,
        }
    }

    /// Counts an event at `at`; the busiest window holding it may raise the max.
    fn push(&mut self, at: Instant) {
        let (busiest, place) = self.around(at);
        self.times.insert(place, at);
        self.max = self.max.max(busiest + 1);
        // Older than two spans, an event is in no window a late arrival can open.
        while let (Some(first), Some(last)) = (self.times.front(), self.times.back())
            && last.duration_since(*first) >= self.span * 2
        {
            self.times.pop_front();
        }
    }

    /// Events in the window `(end - span, end]`.
    #[cfg(test)]
    fn ending_at(&self, end: Instant) -> u64 {
        let from = self
            .times
            .partition_point(|t| end.saturating_duration_since(*t) >= self.span);
        let to = self.times.partition_point(|t| *t <= end);
        to.saturating_sub(from) as u64
    }

    /// The most events in any window that would hold one at `at`, without adding it: the
    /// window ending at `at`, and those ending at the events after it within a span.
    fn busiest_around(&self, at: Instant) -> u64 {
        self.around(at).0
    }

    /// [`Self::busiest_around`], and where an event at `at` goes in order.
    fn around(&self, at: Instant) -> (u64, usize) {
        let span = self.span;
        let place = self.times.partition_point(|t| *t <= at);
        let mut end = place;
        let mut from = self
            .times
            .partition_point(|t| at.saturating_duration_since(*t) >= span);
        let mut best = end - from;
        // Events arrive in order as a rule: these are the few handled before `at` was.
        while let Some(e) = self.times.get(end).copied() {
            if e.duration_since(at) >= span {
                break;
            }
            while self
                .times
                .get(from)
                .is_some_and(|t| e.saturating_duration_since(*t) >= span)
            {
                from += 1;
            }
            end += 1;
            best = best.max(end - from);
        }
        (best as u64, place)
    }
}

#[derive(Debug)]
struct Number {
    requests: u64,
    accepted: u64,
    requests_1s: Window,
    requests_100ms: Window,
    /// Accepted messages in the last second: what throughput (130429) counts.
    sent_1s: Window,
    first_last: Option<(Instant, Instant)>,
}

impl Number {
    fn new() -> Self {
        Self {
            requests: 0,
            accepted: 0,
            requests_1s: Window::new(Duration::from_secs(1)),
            requests_100ms: Window::new(Duration::from_millis(100)),
            sent_1s: Window::new(Duration::from_secs(1)),
            first_last: None,
        }
    }
}

/// The oracle's mutable state.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    requests: u64,
    accepted: u64,
    rejected: BTreeMap<i64, u64>,
    per_callback: HashMap<Box<str>, u32>,
    duplicates: Vec<Box<str>>,
    numbers: HashMap<String, Number>,
    last_accept: HashMap<(String, Box<str>), Instant>,
    min_pair_gap: Option<Duration>,
    pub(crate) reach_peak: u64,
    pub(crate) charged: BTreeMap<String, u64>,
    pub(crate) free: u64,
    pub(crate) webhooks: WebhookStats,
    pub(crate) faults: FaultStats,
}

impl Oracle {
    fn number(&mut self, pnid: &str) -> &mut Number {
        self.numbers
            .entry(pnid.to_owned())
            .or_insert_with(Number::new)
    }

    /// A send request arrived.
    pub(crate) fn request(&mut self, pnid: &str, now: Instant) {
        self.requests += 1;
        let n = self.number(pnid);
        n.requests += 1;
        n.requests_1s.push(now);
        n.requests_100ms.push(now);
        n.first_last = Some(
            n.first_last
                .map_or((now, now), |(first, last)| (first.min(now), last.max(now))),
        );
    }

    /// The most messages accepted in any second that would hold one sent at `now`.
    pub(crate) fn sent_last_second(&mut self, pnid: &str, now: Instant) -> u64 {
        self.number(pnid).sent_1s.busiest_around(now)
    }

    pub(crate) fn reject(&mut self, code: i64) {
        *self.rejected.entry(code).or_default() += 1;
    }

    /// A message was accepted.
    pub(crate) fn accept(&mut self, pnid: &str, to: &str, callback: Option<&str>, now: Instant) {
        self.accepted += 1;
        let n = self.number(pnid);
        n.accepted += 1;
        n.sent_1s.push(now);
        if let Some(cb) = callback {
            let count = self.per_callback.entry(cb.into()).or_default();
            *count += 1;
            if *count == 2 {
                self.duplicates.push(cb.into());
            }
        }
        let key = (pnid.to_owned(), Box::<str>::from(to));
        if let Some(prev) = self.last_accept.insert(key, now) {
            let gap = now.duration_since(prev);
            self.min_pair_gap = Some(self.min_pair_gap.map_or(gap, |g| g.min(gap)));
        }
    }

    pub(crate) fn stats(&self, with_callbacks: bool) -> SimStats {
        SimStats {
            requests: self.requests,
            accepted: self.accepted,
            rejected: self
                .rejected
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            unique_callbacks: self.per_callback.len() as u64,
            duplicate_callbacks: self.duplicates.iter().map(|s| s.to_string()).collect(),
            max_accepts_per_callback: self.per_callback.values().copied().max().unwrap_or(0),
            callbacks: with_callbacks.then(|| {
                self.per_callback
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            }),
            phone_numbers: self
                .numbers
                .iter()
                .map(|(id, n)| {
                    (
                        id.clone(),
                        NumberStats {
                            requests: n.requests,
                            accepted: n.accepted,
                            max_requests_1s: n.requests_1s.max,
                            max_requests_100ms: n.requests_100ms.max,
                            request_span_us: n.first_last.map_or(0, |(first, last)| {
                                u64::try_from(last.duration_since(first).as_micros())
                                    .unwrap_or(u64::MAX)
                            }),
                        },
                    )
                })
                .collect(),
            min_pair_gap_ms: self.min_pair_gap.map(|g| g.as_secs_f64() * 1000.0),
            reach_peak: self.reach_peak,
            charged: self.charged.clone(),
            free: self.free,
            webhooks: self.webhooks.clone(),
            faults: self.faults.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_handled_late_counts_in_every_window_that_holds_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = Window::new(Duration::from_secs(1));
        w.push(at(100));
        w.push(at(900));
        // One that arrived at 500 ms, handled after the one at 900: the window ending at
        // 500 holds one other, the one ending at 900 two.
        assert_eq!(w.ending_at(at(500)), 1);
        assert_eq!(w.busiest_around(at(500)), 2);
        w.push(at(500));
        assert_eq!(w.max, 3);
        assert_eq!(w.ending_at(at(1200)), 2, "(200, 1200] holds 500 and 900");
        // Pushed in order, the max is that of the windows ending at each event.
        let mut w = Window::new(Duration::from_secs(1));
        for ms in [0, 400, 999, 1000, 1500] {
            w.push(at(ms));
        }
        assert_eq!(w.max, 3, "(0, 1000] holds 400, 999 and 1000");
    }

    #[tokio::test(start_paused = true)]
    async fn windows_count_the_busiest_second_and_tenth() {
        let mut o = Oracle::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            // 10 requests in the first 100 ms, then one per 100 ms.
            let at = if i < 10 {
                t0 + Duration::from_millis(i * 10)
            } else {
                t0 + Duration::from_millis(100 * (i - 9))
            };
            o.request("1", at);
        }
        let s = o.stats(false);
        let n = &s.phone_numbers["1"];
        assert_eq!(n.max_requests_100ms, 10);
        assert_eq!(
            n.max_requests_1s, 19,
            "the 1 s window from t0 holds all but the last"
        );
        assert_eq!(n.request_span_us, 1_000_000, "first at t0, last at 1 s");
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_and_pair_gaps_are_tracked() {
        let mut o = Oracle::default();
        let t0 = Instant::now();
        o.accept("1", "447", Some("cb1"), t0);
        o.accept("1", "447", Some("cb1"), t0 + Duration::from_millis(250));
        o.accept("1", "448", Some("cb2"), t0 + Duration::from_millis(300));
        let s = o.stats(true);
        assert_eq!(s.duplicate_callbacks, ["cb1"]);
        assert_eq!((s.unique_callbacks, s.max_accepts_per_callback), (2, 2));
        assert_eq!(s.min_pair_gap_ms, Some(250.0));
        assert_eq!(s.callbacks.unwrap()["cb2"], 1);
    }
}

/// The oracle, shared by the request handlers and the webhook sender.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedOracle(std::sync::Arc<std::sync::Mutex<Oracle>>);

impl SharedOracle {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Oracle) -> T) -> T {
        let mut o = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut o)
    }
}
