//! A campaign's stats, exactly as ARCHITECTURE §4 defines them.
//!
//! Each recipient job ends in exactly one terminal outcome, and at every moment
//! `recipients = pending + in_flight + in_doubt + accepted + failed_before_accept +
//! skipped_at_send + cancelled`. `sent ≥ delivered ≥ read` count accepted messages by how far
//! their webhooks got. The store changes these counters in the same atomic step as the job
//! state they describe, so they cannot drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cost::Charged;
use crate::region::Region;

/// Why a recipient was skipped rather than sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// At upload: the number appeared earlier in the file or the campaign.
    Duplicate,
    /// At upload: not a valid number, or a row that could not be used.
    Invalid,
    /// At upload, or at send time for an opt-out that arrived after upload.
    Suppressed,
    /// At send time: a free-form message and no open 24 h window.
    WindowClosed,
    /// At send time: Meta declined it for the user's marketing limit (131049): not a
    /// failure, and not billed.
    FrequencyCapped,
    /// At send time: the user is in one of Meta's marketing experiments (130472) and gets no
    /// marketing message: not a failure, not billed, never retried.
    Experiment,
}

impl SkipReason {
    pub const ALL: [Self; 6] = [
        Self::Duplicate,
        Self::Invalid,
        Self::Suppressed,
        Self::WindowClosed,
        Self::FrequencyCapped,
        Self::Experiment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Invalid => "invalid",
            Self::Suppressed => "suppressed",
            Self::WindowClosed => "window_closed",
            Self::FrequencyCapped => "frequency_capped",
            Self::Experiment => "experiment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The reason behind a status webhook's failure that is Meta declining to deliver, not a
    /// failure: 131049 (the user's marketing limit), 130472 (an experiment).
    pub fn declined_by(code: &str) -> Option<Self> {
        match code {
            "131049" => Some(Self::FrequencyCapped),
            "130472" => Some(Self::Experiment),
            _ => None,
        }
    }
}

/// Skipped recipients by reason (upload-time and send-time reasons together).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub duplicate: u64,
    pub invalid: u64,
    pub suppressed: u64,
    pub window_closed: u64,
    pub frequency_capped: u64,
    #[serde(default)]
    pub experiment: u64,
}

impl Skipped {
    pub fn get(&self, reason: SkipReason) -> u64 {
        match reason {
            SkipReason::Duplicate => self.duplicate,
            SkipReason::Invalid => self.invalid,
            SkipReason::Suppressed => self.suppressed,
            SkipReason::WindowClosed => self.window_closed,
            SkipReason::FrequencyCapped => self.frequency_capped,
            SkipReason::Experiment => self.experiment,
        }
    }

    pub fn get_mut(&mut self, reason: SkipReason) -> &mut u64 {
        match reason {
            SkipReason::Duplicate => &mut self.duplicate,
            SkipReason::Invalid => &mut self.invalid,
            SkipReason::Suppressed => &mut self.suppressed,
            SkipReason::WindowClosed => &mut self.window_closed,
            SkipReason::FrequencyCapped => &mut self.frequency_capped,
            SkipReason::Experiment => &mut self.experiment,
        }
    }
}

/// Pricing information from status webhooks, counted once per message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricingStats {
    /// Messages Meta marked billable.
    pub billable: u64,
    /// Messages by pricing category (`marketing`, `utility`, `authentication`, `service`, …).
    pub categories: BTreeMap<String, u64>,
    /// Delivered messages Meta charges for, by region, category and day (UTC): what the
    /// actual cost is computed from ([`crate::cost::RateCard::actual`]). Counted once per
    /// message, from the first delivered or read status that carries pricing.
    #[serde(default)]
    pub charged: Vec<Charged>,
    /// Delivered messages Meta did not charge for, by pricing type.
    #[serde(default)]
    pub free: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// Recipients accepted into the campaign (upload rejects never become recipients).
    pub recipients: u64,
    /// Waiting to be sent, including those delayed for a retry.
    pub pending: u64,
    /// The part of `pending` waiting for the campaign's send window to open in the
    /// recipient's time zone.
    #[serde(default)]
    pub waiting_for_send_window: u64,
    pub in_flight: u64,
    /// The request may have reached Meta; the outcome is not known yet.
    pub in_doubt: u64,
    /// Meta returned a message id.
    pub accepted: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    /// Failed for good, synchronously or by webhook.
    pub failed: u64,
    /// The part of `failed` that never got a message id.
    pub failed_before_accept: u64,
    /// Failures by Cloud API error code.
    pub errors: BTreeMap<String, u64>,
    /// Skipped, by reason: upload rejects and send-time skips together.
    pub skipped: Skipped,
    /// The part of `skipped` found at upload (rows that never became recipients).
    #[serde(default)]
    pub skipped_upload: Skipped,
    /// The part of `skipped` found at send time (a terminal outcome of a recipient).
    #[serde(default)]
    pub skipped_send: Skipped,
    /// How many were skipped at send time (`skipped_send` summed).
    pub skipped_at_send: u64,
    /// Accepted messages Meta then declined to deliver, by status webhook, for the user's
    /// marketing limit (131049) or an experiment (130472): part of `accepted`, not of
    /// `failed`.
    #[serde(default)]
    pub declined: Skipped,
    pub cancelled: u64,
    /// Recipients who wrote back after this campaign messaged them.
    pub replied: u64,
    pub pricing: PricingStats,
    /// Recipients by their number's region (`ZZ`: not known): what the estimate prices.
    #[serde(default)]
    pub regions: BTreeMap<Region, u64>,
}

impl Stats {
    /// The sum the invariant says must equal `recipients`.
    pub fn outcome_sum(&self) -> u64 {
        self.pending
            + self.in_flight
            + self.in_doubt
            + self.accepted
            + self.failed_before_accept
            + self.skipped_at_send
            + self.cancelled
    }

    /// The invariant of ARCHITECTURE §4, plus the lattice's `sent ≥ delivered ≥ read`,
    /// `accepted ≥ sent` and `pending ≥ waiting_for_send_window`.
    pub fn invariant_holds(&self) -> bool {
        self.recipients == self.outcome_sum()
            && self.pending >= self.waiting_for_send_window
            && self.accepted >= self.sent
            && self.sent >= self.delivered
            && self.delivered >= self.read
            && self.failed >= self.failed_before_accept
    }

    /// Jobs that can still change outcome (`pending + in_flight + in_doubt`).
    pub fn unfinished(&self) -> u64 {
        self.pending + self.in_flight + self.in_doubt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_catches_a_lost_job() {
        let mut s = Stats {
            recipients: 10,
            pending: 2,
            in_flight: 1,
            in_doubt: 1,
            accepted: 3,
            sent: 3,
            delivered: 2,
            read: 1,
            failed: 2,
            failed_before_accept: 1,
            skipped_at_send: 1,
            cancelled: 1,
            ..Stats::default()
        };
        assert!(s.invariant_holds());
        s.pending -= 1;
        assert!(!s.invariant_holds());
        s.pending += 1;
        s.read = 3;
        assert!(!s.invariant_holds(), "read above delivered");
    }

    #[test]
    fn skip_reasons_have_stable_names() {
        let names: Vec<_> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "duplicate",
                "invalid",
                "suppressed",
                "window_closed",
                "frequency_capped",
                "experiment"
            ]
        );
        for r in SkipReason::ALL {
            assert_eq!(SkipReason::parse(r.as_str()), Some(r));
            let mut s = Skipped::default();
            *s.get_mut(r) += 2;
            assert_eq!(s.get(r), 2);
        }
    }

    #[test]
    fn serialises_with_the_documented_field_names() {
        let v = serde_json::to_value(Stats::default()).unwrap();
        for key in [
            "recipients",
            "pending",
            "in_flight",
            "in_doubt",
            "accepted",
            "sent",
            "delivered",
            "read",
            "failed",
            "errors",
            "skipped",
            "cancelled",
            "replied",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["skipped"]["window_closed"], 0);
    }
}
