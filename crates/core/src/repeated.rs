//! Log lines for a failure that repeats (the store down, a loop retrying every half second):
//! the first at once, then one summary per [`Repeated::SUMMARY_EVERY`] with how many were not
//! logged, and the recovery once. An outage of a minute is a handful of lines, not hundreds.
//!
//! ```
//! # use herald_core::repeated::{Repeated, Report};
//! static CLAIMS: Repeated = Repeated::new();
//! match CLAIMS.failed() {
//!     Report::First => { /* log it */ }
//!     Report::Summary { unlogged } => { /* log it, with how many were not */ }
//!     Report::Quiet => {}
//! }
//! if let Some(r) = CLAIMS.succeeded() { /* log the recovery once */ }
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One repeating failure's log state. Cheap; shareable (`static` or a field). A success while
/// nothing fails is one atomic load (no lock, no clock): callers may report every success of
/// a hot path, such as each webhook delivery stored.
#[derive(Debug)]
pub struct Repeated {
    state: Mutex<State>,
    /// Whether a run of failures is open (`state.since` is set).
    failing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Since when it fails, while it does.
    since: Option<Instant>,
    last_logged: Option<Instant>,
    /// Failures since the last line.
    unlogged: u64,
    /// Failures since it began.
    total: u64,
}

/// What to log for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The first of a run: log it in full.
    First,
    /// Still failing, a summary is due: `unlogged` failures since the last line (this one
    /// included).
    Summary { unlogged: u64 },
    /// Logged recently: nothing.
    Quiet,
}

/// A run of failures ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// How many failures the run had.
    pub failures: u64,
    /// From its first failure to the success that ended it.
    pub lasted: Duration,
}

impl Repeated {
    /// At most one line per this long while a failure repeats.
    pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                since: None,
                last_logged: None,
                unlogged: 0,
                total: 0,
            }),
            failing: AtomicBool::new(false),
        }
    }

    /// A failure now: what to log.
    pub fn failed(&self) -> Report {
        self.failed_at(Instant::now())
    }

    /// A success now: the recovery to log, once, if it ended a run of failures.
    pub fn succeeded(&self) -> Option<Recovery> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.succeeded_at(Instant::now())
    }

    pub fn failed_at(&self, now: Instant) -> Report {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total += 1;
        s.unlogged += 1;
        let report = match (s.since, s.last_logged) {
            (None, _) | (_, None) => {
                s.since.get_or_insert(now);
                self.failing.store(true, Ordering::Release);
                Report::First
            }
            (Some(_), Some(at)) if now.saturating_duration_since(at) >= Self::SUMMARY_EVERY => {
                Report::Summary {
                    unlogged: s.unlogged,
                }
            }
            _ => return Report::Quiet,
        };
        s.last_logged = Some(now);
        s.unlogged = 0;
        report
    }

    pub fn succeeded_at(&self, now: Instant) -> Option<Recovery> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let since = s.since?;
        let failures = s.total;
        *s = State::default();
        self.failing.store(false, Ordering::Release);
        Some(Recovery {
            failures,
            lasted: now.saturating_duration_since(since),
        })
    }
}

impl Default for Repeated {
    fn default() -> Self {
        Self::new()
    }
}

/// Logs a repeating failure through [`Repeated`] at warn level: the first in full, then a
/// summary per [`Repeated::SUMMARY_EVERY`] carrying `unlogged` (how many since the last
/// line). `warn_repeated!(STATE, "message", field = %value, …)`; the calling crate needs
/// `tracing`.
#[macro_export]
macro_rules! warn_repeated {
    ($rep:expr, $msg:literal $(, $($fields:tt)*)?) => {
        match $rep.failed() {
            $crate::repeated::Report::First => ::tracing::warn!($($($fields)*,)? $msg),
            $crate::repeated::Report::Summary { unlogged } => ::tracing::warn!(
                $($($fields)*,)? unlogged,
                concat!($msg, " (still failing; `unlogged` failures since the last line)")
            ),
            $crate::repeated::Report::Quiet => {}
        }
    };
}

/// Logs, once, that a failure logged with [`warn_repeated!`] stopped: `recovered!(STATE,
/// "message")`, with how many failures there were and how long they lasted.
#[macro_export]
macro_rules! recovered {
    ($rep:expr, $msg:literal) => {
        if let Some(r) = $rep.succeeded() {
            ::tracing::info!(
                failures = r.failures,
                lasted_ms = $crate::millis(r.lasted),
                $msg
            );
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute of failures every half second is three lines and one recovery.
    #[test]
    fn a_minute_of_failures_is_three_lines() {
        let r = Repeated::new();
        let t0 = Instant::now();
        let mut reports = Vec::new();
        for i in 0..=120u64 {
            let report = r.failed_at(t0 + Duration::from_millis(500 * i));
            if report != Report::Quiet {
                reports.push(report);
            }
        }
        assert_eq!(
            reports,
            [
                Report::First,
                Report::Summary { unlogged: 60 },
                Report::Summary { unlogged: 60 }
            ]
        );
        let back = r.succeeded_at(t0 + Duration::from_secs(60));
        assert_eq!(
            back,
            Some(Recovery {
                failures: 121,
                lasted: Duration::from_secs(60)
            })
        );
        assert_eq!(r.succeeded_at(t0 + Duration::from_secs(61)), None, "once");
        // A new run starts over with a full line.
        assert_eq!(r.failed_at(t0 + Duration::from_secs(62)), Report::First);
    }

    /// `succeeded` skips the lock while nothing fails, and still reports each recovery once.
    #[test]
    fn the_quick_success_still_sees_every_recovery() {
        let r = Repeated::new();
        assert_eq!(r.succeeded(), None);
        for _ in 0..2 {
            assert_eq!(r.failed(), Report::First);
            assert_eq!(r.failed(), Report::Quiet);
            assert_eq!(r.succeeded().map(|back| back.failures), Some(2));
            assert_eq!(r.succeeded(), None, "once");
        }
    }
}
