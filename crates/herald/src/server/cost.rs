//! What campaigns cost, as the API, the CLI and the metrics show it (ARCHITECTURE §14).

use std::sync::Arc;

use herald_core::cost::{CampaignCost, CostModel, RateCard};
use herald_core::{CampaignSpec, Stats};

/// The rate card and what estimates assume.
#[derive(Debug, Clone, PartialEq)]
pub struct CostSettings {
    pub card: Arc<RateCard>,
    /// The share of messages expected to be delivered, when a campaign does not say.
    pub delivery_rate: f64,
}

impl CostSettings {
    /// The configured card (checked when the configuration was loaded; `None`, logged,
    /// should a card file have become unreadable since: then no cost is shown or capped).
    pub fn from_config(cfg: &crate::config::Config) -> Option<Self> {
        match cfg.cost.rate_card() {
            Ok(card) => Some(Self {
                card: Arc::new(card),
                delivery_rate: cfg.cost.expected_delivery_rate,
            }),
            Err(e) => {
                tracing::error!(error = %e, "the rate card cannot be read: costs are not shown and max_cost is not enforced");
                None
            }
        }
    }

    /// Prices as of today (UTC).
    pub fn model(&self) -> CostModel<'_> {
        CostModel {
            card: &self.card,
            today: herald_core::cost::today(),
            delivery_rate: self.delivery_rate,
        }
    }

    pub fn view(&self, spec: &CampaignSpec, stats: &Stats) -> CampaignCost {
        self.model().campaign(spec, stats)
    }
}
