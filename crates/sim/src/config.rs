//! The simulator's settings: a TOML file with a default for everything (the common ones are
//! also flags of `herald sim`). Every random choice is drawn from `seed`, so a run is
//! reproducible given the same order of requests.

use serde::{Deserialize, Serialize};

/// Everything the simulator can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// `host:port` to listen on (port 0 picks a free one).
    pub listen: String,
    pub seed: u64,
    /// The bearer token senders must present.
    pub access_token: String,
    /// The app secret webhooks are signed with.
    pub app_secret: String,
    /// The WhatsApp Business Account id in webhook entries.
    pub waba_id: String,
    pub phone_numbers: Vec<PhoneNumber>,
    pub templates: Vec<Template>,
    pub limits: Limits,
    pub window: Window,
    pub undeliverable: Undeliverable,
    pub marketing: Marketing,
    pub faults: Faults,
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneNumber {
    pub id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    /// GREEN, YELLOW, RED
    pub quality_rating: String,
    /// Its throughput: messages over any rolling second before 130429.
    pub mps: u32,
}

/// A message template and how many parameters each component takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Template {
    pub name: String,
    pub language: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED
    pub status: String,
    /// MARKETING, UTILITY, AUTHENTICATION: the pricing category of its messages.
    pub category: String,
    pub header_params: usize,
    pub body_params: usize,
    /// Parameters per button, by index.
    pub button_params: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// One message per this many ms to one recipient …
    pub pair_interval_ms: u64,
    /// … with bursts of this many borrowed against later quota (131056 beyond).
    pub pair_burst: u32,
    /// The business portfolio's messaging limit, shared by every simulated number: unique
    /// users messaged with a template outside an open window per moving 24 h (131048
    /// beyond). A Meta tier name: `TIER_250`, `TIER_2K`, …, `TIER_UNLIMITED`.
    pub messaging_tier: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Answer with the error code at once.
    Sync,
    /// Accept (200 and an id), then fail by status webhook.
    Webhook,
}

/// The 24 h customer-service window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Window {
    /// How a free-form message to a user without an open window fails (131047). Meta
    /// accepts it and fails it by webhook: the first-contact trap.
    pub mode: Delivery,
    pub hours: u64,
}

/// Recipients that cannot be reached (131026).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Undeliverable {
    /// The share of numbers (chosen by a hash of the number and the seed).
    pub fraction: f64,
    pub mode: Delivery,
}

/// Meta's 2026 rules for marketing templates, answered at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Marketing {
    /// The share of users at their per-user marketing limit on any one day (131049), chosen
    /// by a hash of the number, the seed and the day.
    pub capped_fraction: f64,
    /// The share of users in a marketing experiment (130472), chosen by a hash of the
    /// number and the seed.
    pub experiment_fraction: f64,
    /// The share of users who stopped marketing messages from the business (131050), chosen
    /// by a hash of the number and the seed.
    pub opted_out_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    pub latency_ms: u64,
    /// Uniform extra latency, 0 to this many ms.
    pub jitter_ms: u64,
    /// Share of sends answered HTTP 500 with code 2 (not accepted).
    pub error_5xx: f64,
    /// Share of sends accepted whose answer is held past any client timeout.
    pub hang: f64,
    pub hang_ms: u64,
    /// Share of sends accepted whose connection is then dropped without an answer.
    pub reset_after_read: f64,
    /// Share of sends accepted and then answered HTTP 502 with an HTML page by a proxy in
    /// front (no Graph error body, so the sender cannot know Meta took them).
    pub bad_gateway: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// Where to POST them; none are sent when empty.
    pub url: String,
    /// Statuses per POST, at most.
    pub batch_max: usize,
    /// How long a status waits for others to share its POST.
    pub batch_wait_ms: u64,
    pub sent_delay_ms: u64,
    pub delivered_delay_ms: u64,
    pub read_delay_ms: u64,
    /// Random extra delay on each status, 0 to this many ms.
    pub jitter_ms: u64,
    pub delivered_probability: f64,
    /// Given delivered.
    pub read_probability: f64,
    /// Share of statuses sent twice.
    pub duplicate: f64,
    /// Share of batches whose statuses are shuffled.
    pub reorder: f64,
    /// Delivery attempts of one POST before it is dropped (Meta retries for 7 days).
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub timeout_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7000".into(),
            seed: 42,
            access_token: "sim-access-token".into(),
            app_secret: "sim-app-secret".into(),
            waba_id: "102290129340398".into(),
            phone_numbers: vec![PhoneNumber::default()],
            templates: vec![
                Template::default(),
                Template {
                    name: "hello_world".into(),
                    body_params: 0,
                    ..Template::default()
                },
            ],
            limits: Limits::default(),
            window: Window::default(),
            undeliverable: Undeliverable::default(),
            marketing: Marketing::default(),
            faults: Faults::default(),
            webhooks: Webhooks::default(),
        }
    }
}

impl Default for PhoneNumber {
    fn default() -> Self {
        Self {
            id: "106540352242922".into(),
            display_phone_number: "+1 555-078-3881".into(),
            verified_name: "Herald Simulator".into(),
            quality_rating: "GREEN".into(),
            mps: 80,
        }
    }
}

impl Default for Template {
    fn default() -> Self {
        Self {
            name: "order_update".into(),
            language: "en_US".into(),
            status: "APPROVED".into(),
            category: "UTILITY".into(),
            header_params: 0,
            body_params: 1,
            button_params: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pair_interval_ms: 6000,
            pair_burst: 1,
            messaging_tier: "TIER_UNLIMITED".into(),
        }
    }
}

impl Default for Window {
    fn default() -> Self {
        Self {
            mode: Delivery::Webhook,
            hours: 24,
        }
    }
}

impl Default for Undeliverable {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            mode: Delivery::Sync,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            error_5xx: 0.0,
            hang: 0.0,
            hang_ms: 30_000,
            reset_after_read: 0.0,
            bad_gateway: 0.0,
        }
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_max: 100,
            batch_wait_ms: 20,
            sent_delay_ms: 50,
            delivered_delay_ms: 200,
            read_delay_ms: 1000,
            jitter_ms: 20,
            delivered_probability: 0.95,
            read_probability: 0.6,
            duplicate: 0.0,
            reorder: 0.0,
            max_attempts: 8,
            retry_base_ms: 250,
            timeout_ms: 5000,
        }
    }
}

/// A setting that cannot work, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sim config: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: &str, problem: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl SimConfig {
    /// Reads a TOML file's text (unknown keys are errors) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| err("(file)", &e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let share = |key: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(err(key, "must be between 0 and 1"))
            }
        };
        share("undeliverable.fraction", self.undeliverable.fraction)?;
        share("marketing.capped_fraction", self.marketing.capped_fraction)?;
        share(
            "marketing.experiment_fraction",
            self.marketing.experiment_fraction,
        )?;
        share(
            "marketing.opted_out_fraction",
            self.marketing.opted_out_fraction,
        )?;
        share("faults.error_5xx", self.faults.error_5xx)?;
        share("faults.hang", self.faults.hang)?;
        share("faults.reset_after_read", self.faults.reset_after_read)?;
        share("faults.bad_gateway", self.faults.bad_gateway)?;
        share(
            "webhooks.delivered_probability",
            self.webhooks.delivered_probability,
        )?;
        share("webhooks.read_probability", self.webhooks.read_probability)?;
        share("webhooks.duplicate", self.webhooks.duplicate)?;
        share("webhooks.reorder", self.webhooks.reorder)?;
        let f = &self.faults;
        if f.error_5xx + f.hang + f.reset_after_read + f.bad_gateway > 1.0 {
            return Err(err("faults", "the fault shares add up to more than 1"));
        }
        if self.phone_numbers.is_empty() {
            return Err(err("phone_numbers", "at least one is needed"));
        }
        if herald_core::MessagingLimit::from_tier(&self.limits.messaging_tier).is_none() {
            return Err(err(
                "limits.messaging_tier",
                "must be a Meta tier (TIER_50, TIER_250, TIER_1K, TIER_2K, TIER_10K, TIER_100K, TIER_UNLIMITED)",
            ));
        }
        for (i, p) in self.phone_numbers.iter().enumerate() {
            if p.id.is_empty() || !p.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(&format!("phone_numbers[{i}].id"), "must be digits"));
            }
            if p.mps == 0 {
                return Err(err(
                    &format!("phone_numbers[{i}].mps"),
                    "must be at least 1",
                ));
            }
        }
        if self.limits.pair_burst == 0 {
            return Err(err("limits.pair_burst", "must be at least 1"));
        }
        if self.webhooks.batch_max == 0 {
            return Err(err("webhooks.batch_max", "must be at least 1"));
        }
        if self.access_token.is_empty() {
            return Err(err("access_token", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_files_override_them() {
        SimConfig::default().validate().unwrap();
        let cfg = SimConfig::from_toml(
            "seed = 7\n[faults]\nerror_5xx = 0.05\n[[phone_numbers]]\nid = \"123\"\nmps = 200\n",
        )
        .unwrap();
        assert_eq!((cfg.seed, cfg.faults.error_5xx), (7, 0.05));
        assert_eq!(cfg.phone_numbers[0].mps, 200);
        assert_eq!(
            cfg.phone_numbers[0].quality_rating, "GREEN",
            "other fields keep defaults"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = SimConfig::from_toml("[faults]\nerror5xx = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("error5xx"), "{e}");
        let e = SimConfig::from_toml("[faults]\nhang = 2.0\n").unwrap_err();
        assert_eq!(e.key, "faults.hang");
    }
}
