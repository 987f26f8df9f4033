//! A phone number's rolling window in memory: the same rule as the Redis backend's
//! `lua/plan.lua` and `lua/move.lua` (see [`crate::Pace`]).

use std::collections::{BTreeSet, HashMap};

use crate::Pace;

/// Send times (µs) of a number, the last window's and those planned ahead.
#[derive(Debug, Default)]
pub(super) struct Log {
    by_time: BTreeSet<(i64, String)>,
    by_member: HashMap<String, i64>,
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
        let last = self.by_time.last().map(|(t, _)| *t);
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

    pub(super) fn add(&mut self, t: i64, member: String) {
        if let Some(old) = self.by_member.insert(member.clone(), t) {
            self.by_time.remove(&(old, member.clone()));
        }
        self.by_time.insert((t, member));
    }

    /// Moves `member` to `now` if the window allows (see `lua/move.lua`); answers its time,
    /// or `None` (and takes it out).
    pub(super) fn move_to(&mut self, member: &str, now: i64, pace: Pace) -> Option<i64> {
        let old = *self.by_member.get(member)?;
        if now <= old {
            return Some(old);
        }
        let end = now + us(pace.window);
        let span = self
            .by_time
            .range((old, String::new())..)
            .take_while(|(t, _)| *t < end)
            .count();
        if span <= pace.capacity as usize {
            self.add(now, member.to_owned());
            Some(now)
        } else {
            self.by_member.remove(member);
            self.by_time.remove(&(old, member.to_owned()));
            None
        }
    }
}
