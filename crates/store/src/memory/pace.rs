//! A phone number's rolling window in memory: the same rule as the Redis backend's
//! `lua/plan.lua` and `lua/move.lua` (see [`crate::Pace`]).

use std::collections::{BTreeSet, HashMap};

use crate::Pace;

/// The sends of a number, the last window's and those planned ahead, each at the latest time
/// it may go (µs), and the time of the last one planned.
#[derive(Debug, Default)]
pub(super) struct Log {
    by_time: BTreeSet<(i64, String)>,
    by_member: HashMap<String, i64>,
    last: Option<i64>,
}

fn us(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

impl Log {
    /// Drops the sends that left the window as of `now`.
    pub(super) fn prune(&mut self, now: i64, pace: Pace) {
        let edge = now - us(pace.window);
        while let Some((t, _)) = self.by_time.first() {
            if *t > edge {
                break;
            }
            if let Some((_, m)) = self.by_time.pop_first() {
                self.by_member.remove(&m);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    /// When the next send may go: after every logged one, evenly while the window has room,
    /// else when the send `capacity` before it leaves the window (and no closer than the
    /// minimum spacing to the last).
    pub(super) fn next_time(&self, now: i64, pace: Pace) -> i64 {
        let top = self.by_time.last().map(|(t, _)| *t);
        let last = top.and(self.last).or(top);
        let capacity = pace.capacity.max(1) as usize;
        let before = (self.by_time.len() >= capacity)
            .then(|| self.by_time.iter().rev().nth(capacity - 1).map(|(t, _)| *t))
            .flatten();
        match (before, last) {
            (Some(b), Some(l)) => now.max(b + us(pace.window)).max(l + us(pace.min_spacing())),
            (None, Some(l)) => now.max(l + us(pace.spacing())),
            _ => now,
        }
    }

    /// Logs a send planned at `at` at its latest time: `slack` after it, or the room slack
    /// while the window is less than half full, and no earlier than any logged send's latest
    /// time. Answers that time.
    pub(super) fn plan(&mut self, at: i64, member: String, pace: Pace) -> i64 {
        let slack = if self.by_time.len() * 2 < pace.capacity as usize {
            pace.slack.max(pace.room_slack)
        } else {
            pace.slack
        };
        let top = self.by_time.last().map_or(i64::MIN, |(t, _)| *t);
        let latest = (at + us(slack)).max(top);
        self.add(latest, member);
        self.last = Some(at);
        latest
    }

    fn add(&mut self, t: i64, member: String) {
        if let Some(old) = self.by_member.insert(member.clone(), t) {
            self.by_time.remove(&(old, member.clone()));
        }
        self.by_time.insert((t, member));
    }

    /// Logs `member` at `at` instead, if it is logged (see `Store::record_departures`).
    pub(super) fn relog(&mut self, member: &str, at: i64) {
        if self.by_member.get(member).is_some_and(|old| *old != at) {
            self.add(at, member.to_owned());
        }
    }

    /// Moves `member` to `now` if the window allows (see `lua/move.lua`); answers the latest
    /// time it may now go, or `None` (and takes it out).
    pub(super) fn move_to(&mut self, member: &str, now: i64, pace: Pace) -> Option<i64> {
        let old = *self.by_member.get(member)?;
        if now <= old {
            return Some(old);
        }
        let capacity = pace.capacity as usize;
        let span = |latest: i64| {
            let end = latest + us(pace.window);
            self.by_time
                .range((old, String::new())..)
                .take_while(|(t, _)| *t < end)
                .count()
        };
        let mut latest = now + us(pace.slack.max(pace.room_slack));
        if span(latest) * 2 >= capacity {
            latest = now + us(pace.slack);
        }
        if span(latest) <= capacity {
            self.add(latest, member.to_owned());
            self.last = Some(self.last.map_or(now, |l| l.max(now)));
            Some(latest)
        } else {
            self.by_member.remove(member);
            self.by_time.remove(&(old, member.to_owned()));
            None
        }
    }
}
