//! The delivery lattice: what Meta's status webhooks have told us about one accepted message.
//!
//! Webhooks arrive late, twice, and out of order (`read` before `delivered`, `delivered` after
//! `failed` for multi-device users). So the state is a join-semilattice, not a state machine:
//! progress `accepted < sent < delivered < read` (the highest seen wins) times a `failed` flag
//! that, once set, stays set. `merge` is the join: commutative, associative, idempotent and
//! monotone, so any arrival order of any multiset of statuses gives the same state, and the
//! counters derived from state changes ([`DeliveryState::delta`]) move exactly once each.

use serde::{Deserialize, Serialize};

/// How far a message has progressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Progress {
    /// Meta returned a message id; no webhook yet.
    Accepted = 0,
    Sent = 1,
    Delivered = 2,
    Read = 3,
}

/// A status as reported by a webhook, reduced to what the lattice needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusEvent {
    Sent,
    Delivered,
    Read,
    /// Voice messages report `played`; it implies `read`.
    Played,
    Failed,
}

impl StatusEvent {
    /// Every status, for tests that draw from them.
    pub const ALL: [Self; 5] = [
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Played,
        Self::Failed,
    ];
}

/// The lattice element. Its compact form ([`Self::to_bits`]) is what the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeliveryState {
    pub progress: Progress,
    pub failed: bool,
}

/// How each counter moves when a state changes: 0 or 1 each, never negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryDelta {
    pub sent: u8,
    pub delivered: u8,
    pub read: u8,
    pub failed: u8,
}

impl DeliveryState {
    /// The bottom: accepted, nothing else known.
    pub const ACCEPTED: Self = Self {
        progress: Progress::Accepted,
        failed: false,
    };

    pub fn from_event(event: StatusEvent) -> Self {
        let (progress, failed) = match event {
            StatusEvent::Sent => (Progress::Sent, false),
            StatusEvent::Delivered => (Progress::Delivered, false),
            StatusEvent::Read | StatusEvent::Played => (Progress::Read, false),
            StatusEvent::Failed => (Progress::Accepted, true),
        };
        Self { progress, failed }
    }

    /// The join of two states.
    #[must_use]
    pub fn merge(self, other: Self) -> Self {
        Self {
            progress: self.progress.max(other.progress),
            failed: self.failed || other.failed,
        }
    }

    /// Whether `self` is at or above `other` in the lattice.
    pub fn covers(self, other: Self) -> bool {
        self.merge(other) == self
    }

    /// Counter changes for moving from `self` to `next` (which must cover `self`; anything
    /// else yields no movement at all, so a bad caller cannot move a counter backwards).
    pub fn delta(self, next: Self) -> DeliveryDelta {
        let crossed = |level: Progress| u8::from(self.progress < level && next.progress >= level);
        DeliveryDelta {
            sent: crossed(Progress::Sent),
            delivered: crossed(Progress::Delivered),
            read: crossed(Progress::Read),
            failed: u8::from(!self.failed && next.failed),
        }
    }

    /// A 3-bit encoding: progress in bits 0–1, failed in bit 2.
    pub fn to_bits(self) -> u8 {
        self.progress as u8 | (u8::from(self.failed) << 2)
    }

    pub fn from_bits(bits: u8) -> Option<Self> {
        let progress = match bits & 0b11 {
            0 => Progress::Accepted,
            1 => Progress::Sent,
            2 => Progress::Delivered,
            _ => Progress::Read,
        };
        (bits < 8).then_some(Self {
            progress,
            failed: bits & 0b100 != 0,
        })
    }
}

impl StatusEvent {
    /// Parses a webhook `status` value; `None` for statuses that say nothing about delivery
    /// (`deleted`, and anything Meta adds later).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }
}

impl DeliveryDelta {
    pub fn is_zero(self) -> bool {
        self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = DeliveryState> {
        (0u8..8).prop_map(|b| DeliveryState::from_bits(b).unwrap())
    }

    fn any_event() -> impl Strategy<Value = StatusEvent> {
        proptest::sample::select(&StatusEvent::ALL[..])
    }

    /// Applies events one by one from the bottom, summing the counter movements.
    fn fold(events: &[StatusEvent]) -> (DeliveryState, [u32; 4]) {
        let mut state = DeliveryState::ACCEPTED;
        let mut counters = [0u32; 4];
        for &e in events {
            let next = state.merge(DeliveryState::from_event(e));
            let d = state.delta(next);
            counters[0] += u32::from(d.sent);
            counters[1] += u32::from(d.delivered);
            counters[2] += u32::from(d.read);
            counters[3] += u32::from(d.failed);
            state = next;
        }
        (state, counters)
    }

    #[test]
    fn read_before_delivered_counts_both_once() {
        let (state, counters) = fold(&[StatusEvent::Read, StatusEvent::Delivered]);
        assert_eq!(state.progress, Progress::Read);
        assert_eq!(counters, [1, 1, 1, 0]);
    }

    #[test]
    fn delivered_after_failed_keeps_both_facts() {
        let (state, counters) = fold(&[StatusEvent::Failed, StatusEvent::Delivered]);
        assert!(state.failed);
        assert_eq!(state.progress, Progress::Delivered);
        assert_eq!(counters, [1, 1, 0, 1]);
    }

    #[test]
    fn bits_round_trip() {
        for b in 0u8..8 {
            assert_eq!(DeliveryState::from_bits(b).unwrap().to_bits(), b);
        }
        assert_eq!(DeliveryState::from_bits(8), None);
    }

    #[test]
    fn backward_moves_yield_no_delta() {
        let read = DeliveryState::from_event(StatusEvent::Read);
        assert!(read.delta(DeliveryState::ACCEPTED).is_zero());
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in any_state(), b in any_state()) {
            prop_assert_eq!(a.merge(b), b.merge(a));
        }

        #[test]
        fn merge_is_associative(a in any_state(), b in any_state(), c in any_state()) {
            prop_assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
        }

        #[test]
        fn merge_is_idempotent(a in any_state()) {
            prop_assert_eq!(a.merge(a), a);
        }

        #[test]
        fn merge_is_monotone(a in any_state(), b in any_state()) {
            let m = a.merge(b);
            prop_assert!(m.covers(a) && m.covers(b));
        }

        /// Any permutation of any multiset of statuses, duplicates included, gives the same
        /// final state and moves every counter exactly as often.
        #[test]
        fn order_and_duplicates_do_not_matter(
            events in proptest::collection::vec(any_event(), 0..12),
            seed in any::<u64>(),
        ) {
            let mut shuffled = events.clone();
            // A cheap deterministic shuffle plus duplication of the first half.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let dupes: Vec<_> = shuffled.iter().take(shuffled.len() / 2).copied().collect();
            shuffled.extend(dupes);
            let (s1, c1) = fold(&events);
            let (s2, c2) = fold(&shuffled);
            prop_assert_eq!(s1, s2);
            prop_assert_eq!(c1, c2);
            // Each counter is 0 or 1, and read implies delivered implies sent.
            prop_assert!(c1.iter().all(|&c| c <= 1));
            prop_assert!(c1[2] <= c1[1] && c1[1] <= c1[0]);
        }
    }
}
