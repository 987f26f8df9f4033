//! What messages cost: Meta's dated rate card, and a campaign's estimate and actual cost.
//!
//! Since 2025-07-01 Meta charges per *delivered* template message, by the template's category
//! and the recipient's market; a market is one country or a regional group ("Rest of Latin
//! America"), found from the number's country calling code (here: its [`Region`]). Rates
//! change on announced dates, so a rate card holds several periods, each with the date it
//! takes effect, and a message is priced at the rate in force on the day it was delivered.
//!
//! Money is counted in micro-units of the card's currency ([`Money`]): sums are exact, and
//! Meta's rates (four decimals) fit without rounding. A rate the card does not have is never
//! read as zero: what it would price is counted as `unknown` instead.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize, Serializer};

use crate::region::Region;

/// The categories Meta charges for. Service (non-template) messages are free.
pub const CHARGED_CATEGORIES: [&str; 3] = ["marketing", "utility", "authentication"];

/// An amount in micro-units (millionths) of the rate card's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub u64);

impl Money {
    const SCALE: f64 = 1_000_000.0;

    /// An amount in whole units (`0.0250`), `None` when negative, not finite or absurd
    /// (above a million).
    pub fn from_units(units: f64) -> Option<Self> {
        if !units.is_finite() || !(0.0..=1_000_000.0).contains(&units) {
            return None;
        }
        // Rounded to the micro-unit, so 0.0250 is exactly 25,000.
        Some(Self((units * Self::SCALE).round() as u64))
    }

    pub fn units(self) -> f64 {
        self.0 as f64 / Self::SCALE
    }

    pub fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Money {
    /// Four decimals, as Meta writes rates (micro-units below that are rounded away).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}", self.units())
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("an amount in units of the rate card's currency"))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

impl Serialize for Money {
    /// A JSON number in units of the currency.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.units())
    }
}

/// A rate card that cannot be used, naming the file and the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate card {file}: {problem}")]
pub struct RateCardError {
    pub file: String,
    pub problem: String,
}

/// One rate card file as written (see `config/rates/`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    currency: String,
    /// Where the rates come from and when they were read.
    source: String,
    /// The market of a region no market lists (Meta's "Other").
    #[serde(default)]
    default_market: Option<String>,
    /// Market name → the regions (ISO 3166-1 alpha-2) it covers.
    #[serde(default)]
    markets: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rates: Vec<PeriodFile>,
}

#[derive(Debug, Deserialize)]
struct PeriodFile {
    /// `YYYY-MM-DD`: the first day (UTC) these rates apply.
    effective_from: String,
    /// Market → category → price per delivered message.
    #[serde(flatten)]
    markets: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Meta's rates, merged from one or more files: later files add periods and markets, and
/// replace an earlier file's rate for the same market, category and date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCard {
    currency: String,
    sources: Vec<String>,
    default_market: Option<String>,
    markets: BTreeMap<Region, String>,
    /// (market, category) → (effective from, price), sorted by date.
    prices: BTreeMap<(String, String), Vec<(Date, Money)>>,
}

/// A market: where a region's messages are priced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Market<'a> {
    Known(&'a str),
    /// The number's region is not known, or no market (and no default) covers it.
    Unknown,
}

impl Market<'_> {
    pub fn name(&self) -> &str {
        match self {
            Self::Known(m) => m,
            Self::Unknown => "unknown",
        }
    }
}

/// Today's date in UTC, the calendar rates take effect in.
pub fn today() -> Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

impl RateCard {
    /// Reads and merges rate card files, given as (name, TOML text).
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RateCardError> {
        let mut card: Option<Self> = None;
        for (name, text) in files {
            let err = |problem: String| RateCardError {
                file: name.to_owned(),
                problem,
            };
            let file: CardFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
            let next = card.get_or_insert_with(|| Self {
                currency: file.currency.clone(),
                sources: Vec::new(),
                default_market: None,
                markets: BTreeMap::new(),
                prices: BTreeMap::new(),
            });
            next.add(file).map_err(err)?;
        }
        card.ok_or_else(|| RateCardError {
            file: "(none)".into(),
            problem: "no rate card file given".into(),
        })
    }

    fn add(&mut self, file: CardFile) -> Result<(), String> {
        let currency = file.currency.trim();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "currency: {:?} is not an ISO 4217 code such as \"USD\"",
                file.currency
            ));
        }
        if currency != self.currency {
            return Err(format!(
                "currency: {currency} differs from the first file's {}; one card has one currency",
                self.currency
            ));
        }
        if file.source.trim().is_empty() {
            return Err("source: say where the rates come from and when they were read".into());
        }
        self.sources.push(file.source);
        if let Some(m) = file.default_market {
            check_name("default_market", &m)?;
            self.default_market = Some(m);
        }
        for (market, regions) in file.markets {
            check_name(&format!("markets.{market}"), &market)?;
            for r in regions {
                let region: Region = r
                    .parse()
                    .map_err(|e: crate::region::RegionError| format!("markets.{market}: {e}"))?;
                self.markets.insert(region, market.clone());
            }
        }
        for (i, period) in file.rates.into_iter().enumerate() {
            let at = format!("rates[{i}]");
            let from: Date = period.effective_from.parse().map_err(|_| {
                format!(
                    "{at}.effective_from: {:?} is not a date (YYYY-MM-DD)",
                    period.effective_from
                )
            })?;
            for (market, by_category) in period.markets {
                let known = self.markets.values().any(|m| *m == market)
                    || self.default_market.as_deref() == Some(market.as_str());
                if !known {
                    return Err(format!(
                        "{at}.{market}: no [markets] entry or default_market names this market"
                    ));
                }
                for (category, price) in by_category {
                    check_name(&format!("{at}.{market}.{category}"), &category)?;
                    let price = Money::from_units(price).ok_or_else(|| {
                        format!("{at}.{market}.{category}: {price} is not a price (0 or more)")
                    })?;
                    let periods = self.prices.entry((market.clone(), category)).or_default();
                    match periods.binary_search_by_key(&from, |(d, _)| *d) {
                        Ok(j) => periods[j].1 = price,
                        Err(j) => periods.insert(j, (from, price)),
                    }
                }
            }
        }
        Ok(())
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Where each file's rates come from.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The market a region's messages are priced in.
    pub fn market(&self, region: Region) -> Market<'_> {
        if !region.is_known() {
            return Market::Unknown;
        }
        match self.markets.get(&region).or(self.default_market.as_ref()) {
            Some(m) => Market::Known(m),
            None => Market::Unknown,
        }
    }

    /// The price of one delivered message of `category` in `market` on `day`: `None` when
    /// the card has no rate for it. Service messages are free.
    pub fn price(&self, market: &Market<'_>, category: &str, day: Date) -> Option<Money> {
        if category == "service" {
            return Some(Money(0));
        }
        let Market::Known(market) = market else {
            return None;
        };
        let periods = self
            .prices
            .get(&((*market).to_owned(), category.to_owned()))?;
        let in_force = periods.partition_point(|(from, _)| *from <= day);
        in_force.checked_sub(1).map(|i| periods[i].1)
    }

    /// What delivering `category` to these recipients would cost, priced on `day`.
    /// `delivery_rate` (0 to 1) gives the low end of the range: the share of messages the
    /// campaign expects to be delivered (only delivered messages are charged).
    pub fn estimate(
        &self,
        regions: &BTreeMap<Region, u64>,
        category: Option<&str>,
        day: Date,
        delivery_rate: f64,
    ) -> Estimate {
        let category = category.map(str::to_ascii_lowercase);
        let mut by_market: BTreeMap<String, MarketEstimate> = BTreeMap::new();
        let (mut high, mut unknown) = (Money(0), 0u64);
        for (&region, &n) in regions {
            let market = self.market(region);
            let price = category
                .as_deref()
                .and_then(|c| self.price(&market, c, day));
            let entry = by_market
                .entry(market.name().to_owned())
                .or_insert_with(|| MarketEstimate {
                    market: market.name().to_owned(),
                    recipients: 0,
                    price,
                    high: price.map(|_| Money(0)),
                });
            entry.recipients += n;
            match price {
                Some(p) => {
                    let cost = p.saturating_mul(n);
                    high = high.saturating_add(cost);
                    entry.high = entry.high.map(|h| h.saturating_add(cost));
                }
                None => unknown += n,
            }
        }
        let rate = if delivery_rate.is_finite() {
            delivery_rate.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Estimate {
            currency: self.currency.clone(),
            category: category.unwrap_or_else(|| "unknown".into()),
            priced_on: day,
            low: Money((high.0 as f64 * rate).floor() as u64),
            high,
            expected_delivery_rate: rate,
            unknown_recipients: unknown,
            by_market: by_market.into_values().collect(),
        }
    }

    /// What the charged messages cost, each at the rate in force on its day.
    pub fn actual(&self, charged: &[Charged], free: &BTreeMap<String, u64>) -> Actual {
        let mut by: BTreeMap<(String, String), ActualLine> = BTreeMap::new();
        let (mut total, mut unknown) = (Money(0), 0u64);
        for c in charged {
            let market = self.market(c.region);
            let price = self.price(&market, &c.category, c.day);
            let line = by
                .entry((market.name().to_owned(), c.category.clone()))
                .or_insert_with(|| ActualLine {
                    market: market.name().to_owned(),
                    category: c.category.clone(),
                    messages: 0,
                    cost: Some(Money(0)),
                });
            line.messages += c.messages;
            match price {
                Some(p) => {
                    let cost = p.saturating_mul(c.messages);
                    total = total.saturating_add(cost);
                    line.cost = line.cost.map(|l| l.saturating_add(cost));
                }
                None => {
                    unknown += c.messages;
                    line.cost = None;
                }
            }
        }
        Actual {
            currency: self.currency.clone(),
            total,
            charged_messages: charged.iter().map(|c| c.messages).sum(),
            unknown_messages: unknown,
            free_messages: free.values().sum(),
            free: free.clone(),
            by: by.into_values().collect(),
        }
    }

    /// The highest price any of these regions pays for `category` on `day` (what a message
    /// still on its way may cost at most); `None` when one of them has no rate.
    pub fn highest_price(
        &self,
        regions: impl IntoIterator<Item = Region>,
        category: &str,
        day: Date,
    ) -> Option<Money> {
        let mut max = Money(0);
        for r in regions {
            max = max.max(self.price(&self.market(r), category, day)?);
        }
        Some(max)
    }
}

impl RateCard {
    /// The latest date a rate of the card takes effect.
    pub fn newest_period(&self) -> Option<Date> {
        self.prices
            .values()
            .filter_map(|periods| periods.last().map(|(d, _)| *d))
            .max()
    }

    /// The highest rate for `category` in any market on `day` (0 when the card has none).
    pub fn highest_anywhere(&self, category: &str, day: Date) -> Money {
        self.prices
            .iter()
            .filter(|((_, c), _)| c == category)
            .filter_map(|(_, periods)| {
                let in_force = periods.partition_point(|(from, _)| *from <= day);
                in_force.checked_sub(1).map(|i| periods[i].1)
            })
            .max()
            .unwrap_or_default()
    }
}

fn check_name(at: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{at}: {name:?} must be lower_snake_case (a-z, 0-9, _), at most 64 characters"
        ))
    }
}

/// Messages charged for one region, category and day (UTC), as the status webhooks showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Charged {
    pub region: Region,
    pub category: String,
    #[schema(value_type = String, format = Date)]
    pub day: Date,
    pub messages: u64,
}

/// A campaign's expected cost.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Estimate {
    pub currency: String,
    /// The template category priced (`unknown` when not known: then nothing is priced).
    pub category: String,
    /// The day whose rates were used.
    #[schema(value_type = String, format = Date)]
    pub priced_on: Date,
    /// If the expected share of messages is delivered.
    pub low: Money,
    /// If every recipient's message is delivered.
    pub high: Money,
    pub expected_delivery_rate: f64,
    /// Recipients without a rate (unknown region, market or category): not in the range.
    pub unknown_recipients: u64,
    pub by_market: Vec<MarketEstimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MarketEstimate {
    pub market: String,
    pub recipients: u64,
    /// `null` when the card has no rate.
    pub price: Option<Money>,
    pub high: Option<Money>,
}

/// A campaign's cost so far, from the status webhooks' pricing.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Actual {
    pub currency: String,
    /// Priced messages only; `unknown_messages` are not in it.
    pub total: Money,
    pub charged_messages: u64,
    /// Charged messages the card has no rate for.
    pub unknown_messages: u64,
    /// Delivered free of charge (`free_customer_service`, `free_entry_point`).
    pub free_messages: u64,
    pub free: BTreeMap<String, u64>,
    /// By market and category.
    pub by: Vec<ActualLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActualLine {
    pub market: String,
    pub category: String,
    pub messages: u64,
    /// `null` when part of it has no rate.
    pub cost: Option<Money>,
}

/// How a status webhook's `pricing` decides a message's charge: by `type` and `category`
/// (`billable` is being deprecated and only read when `type` is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Charged at the category's rate.
    Charged(String),
    /// Free, with the type Meta gave (`free_customer_service`, `free_entry_point`, or
    /// `service` for a service message).
    Free(String),
}

impl Charge {
    /// `None` when the pricing says nothing usable.
    pub fn from_pricing(
        kind: Option<&str>,
        category: Option<&str>,
        billable: Option<bool>,
    ) -> Option<Self> {
        let name = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        let category = category.filter(|c| name(c)).map(str::to_ascii_lowercase);
        let kind = kind.filter(|k| name(k));
        match (kind, category) {
            (Some("regular"), Some(c)) if c == "service" => Some(Self::Free("service".into())),
            (Some("regular"), Some(c)) => Some(Self::Charged(c)),
            (Some(free), _) if free.starts_with("free_") => Some(Self::Free(free.to_owned())),
            (None, Some(c)) if billable == Some(true) && c != "service" => Some(Self::Charged(c)),
            (None, Some(_)) if billable == Some(false) => Some(Self::Free("not_billable".into())),
            _ => None,
        }
    }
}

/// A campaign's cost as the API shows it: what it will cost, what it did, and its cap.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CampaignCost {
    pub currency: String,
    pub estimate: Estimate,
    pub actual: Actual,
    /// Accepted messages whose delivery (and so their charge) is not known yet, and those
    /// being sent: each may still cost up to `price_on_the_way`.
    pub on_the_way: u64,
    /// The most one message on its way may cost: the highest rate among the recipients'
    /// markets for the category (where one has no rate, the card's highest for the category;
    /// marketing's when the category is not known).
    pub price_on_the_way: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<Money>,
    /// What the cap counts: `actual.total + on_the_way × highest price`.
    pub committed: Money,
    /// The template's category is not the one the campaign was first priced at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

/// A re-categorised template: the estimate at the category first priced and at today's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Drift {
    pub from: String,
    pub to: String,
    /// `estimate.high` at the category first priced.
    pub high_before: Money,
    /// `estimate.high` at today's category.
    pub high_now: Money,
    /// `high_now − high_before`, in units of the currency (negative when cheaper).
    pub difference: f64,
}

/// What decides a campaign's price besides its recipients: the card, the day, and the share
/// of messages expected to be delivered.
#[derive(Debug, Clone, Copy)]
pub struct CostModel<'a> {
    pub card: &'a RateCard,
    /// Today (UTC): the rates estimates and the cap use.
    pub today: Date,
    /// The share of messages expected to be delivered, when the campaign does not say.
    pub delivery_rate: f64,
}

impl CostModel<'_> {
    /// The category a campaign's messages are charged as now: Meta's, as its charges show
    /// (the most common charged category), else the spec's; `service` for a free-form
    /// message; `None` when not known.
    pub fn category(spec: &crate::CampaignSpec, stats: &crate::Stats) -> Option<String> {
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &stats.pricing.charged {
            *by.entry(c.category.as_str()).or_default() += c.messages;
        }
        if let Some((c, _)) = by.into_iter().max_by_key(|(_, n)| *n) {
            return Some(c.to_owned());
        }
        if spec.message.get("type").and_then(|t| t.as_str()) != Some("template") {
            return Some("service".into());
        }
        spec.template_category
            .as_deref()
            .map(str::to_ascii_lowercase)
    }

    /// Messages that may still be charged: accepted and not yet known delivered (charged or
    /// free), failed or declined, plus those in flight or in doubt.
    pub fn on_the_way(stats: &crate::Stats) -> u64 {
        let settled = stats
            .pricing
            .charged
            .iter()
            .map(|c| c.messages)
            .sum::<u64>()
            + stats.pricing.free.values().sum::<u64>()
            + stats.failed.saturating_sub(stats.failed_before_accept)
            + crate::SkipReason::ALL
                .iter()
                .map(|r| stats.declined.get(*r))
                .sum::<u64>();
        stats.accepted.saturating_sub(settled) + stats.in_flight + stats.in_doubt
    }

    /// The cost view of one campaign.
    pub fn campaign(&self, spec: &crate::CampaignSpec, stats: &crate::Stats) -> CampaignCost {
        let card = self.card;
        let rate = spec.expected_delivery_rate.unwrap_or(self.delivery_rate);
        let category = Self::category(spec, stats);
        let estimate = card.estimate(&stats.regions, category.as_deref(), self.today, rate);
        let actual = card.actual(&stats.pricing.charged, &stats.pricing.free);
        let on_the_way = Self::on_the_way(stats);
        let unit = self.price_on_the_way(category.as_deref(), stats);
        let drift = spec
            .priced_category
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|from| category.as_deref().is_some_and(|to| to != from))
            .map(|from| {
                let before = card.estimate(&stats.regions, Some(&from), self.today, rate);
                Drift {
                    to: estimate.category.clone(),
                    high_before: before.high,
                    high_now: estimate.high,
                    difference: estimate.high.units() - before.high.units(),
                    from,
                }
            });
        CampaignCost {
            currency: card.currency().to_owned(),
            on_the_way,
            price_on_the_way: unit,
            max_cost: spec.max_cost.and_then(Money::from_units),
            committed: actual.total.saturating_add(unit.saturating_mul(on_the_way)),
            estimate,
            actual,
            drift,
        }
    }

    /// Where a campaign stands against its `max_cost` (`None`: no cap). Counted after a
    /// claim, the claimed messages are already on their way.
    /// (The sender asks this after every claim of a capped campaign: it prices only what
    /// the cap counts, not the estimate.)
    pub fn over_cap(&self, spec: &crate::CampaignSpec, stats: &crate::Stats) -> Option<CapCheck> {
        let cap = Money::from_units(spec.max_cost?)?;
        let unit = self.price_on_the_way(Self::category(spec, stats).as_deref(), stats);
        let actual = self
            .card
            .actual(&stats.pricing.charged, &stats.pricing.free);
        let committed = actual
            .total
            .saturating_add(unit.saturating_mul(Self::on_the_way(stats)));
        // Messages over the cap, rounded up: each costs at most `unit`.
        let over = match committed.0.checked_sub(cap.0) {
            Some(excess) if excess > 0 && unit.0 > 0 => excess.div_ceil(unit.0),
            _ => 0,
        };
        Some(CapCheck {
            cap,
            committed,
            unit,
            over,
        })
    }

    /// The most one message on its way may cost: the highest rate among the recipients'
    /// markets for the category, else (a market without a rate, or no category) the card's
    /// highest for it (marketing's when the category is not known).
    fn price_on_the_way(&self, category: Option<&str>, stats: &crate::Stats) -> Money {
        let regions = stats
            .regions
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, _)| *r);
        category
            .and_then(|c| self.card.highest_price(regions, c, self.today))
            .unwrap_or_else(|| {
                self.card
                    .highest_anywhere(category.unwrap_or("marketing"), self.today)
            })
    }
}

/// Where a capped campaign stands against its `max_cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapCheck {
    pub cap: Money,
    pub committed: Money,
    /// The most one message may cost.
    pub unit: Money,
    /// How many of the messages counted (the latest claimed first) must not be sent.
    pub over: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"
currency = "USD"
source = "test card"
default_market = "other"

[markets]
north_america = ["US", "CA"]
india = ["IN"]
rest_of_latin_america = ["JM", "DO"]

[[rates]]
effective_from = "2025-07-01"
north_america = { marketing = 0.025, utility = 0.004, authentication = 0.004 }
india = { marketing = 0.0107, utility = 0.0014 }
rest_of_latin_america = { marketing = 0.074 }
other = { marketing = 0.0604 }

[[rates]]
effective_from = "2026-01-01"
india = { marketing = 0.0118 }
"#;

    fn card() -> RateCard {
        RateCard::parse([("test.toml", CARD)]).unwrap()
    }

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn r(s: &str) -> Region {
        s.parse().unwrap()
    }

    #[test]
    fn a_rate_holds_from_its_date_until_the_next() {
        let c = card();
        let india = c.market(r("IN"));
        assert_eq!(c.price(&india, "marketing", day("2025-06-30")), None);
        assert_eq!(
            c.price(&india, "marketing", day("2025-07-01")),
            Some(Money(10_700))
        );
        assert_eq!(
            c.price(&india, "marketing", day("2025-12-31")),
            Some(Money(10_700))
        );
        assert_eq!(
            c.price(&india, "marketing", day("2026-01-01")),
            Some(Money(11_800))
        );
        // The later period did not touch utility.
        assert_eq!(
            c.price(&india, "utility", day("2026-06-01")),
            Some(Money(1_400))
        );
        assert_eq!(c.price(&india, "authentication", day("2026-06-01")), None);
    }

    #[test]
    fn regions_fall_into_their_market_or_the_default() {
        let c = card();
        assert_eq!(c.market(r("CA")), Market::Known("north_america"));
        assert_eq!(c.market(r("JM")), Market::Known("rest_of_latin_america"));
        assert_eq!(c.market(r("FJ")), Market::Known("other"));
        assert_eq!(c.market(Region::UNKNOWN), Market::Unknown);
        assert_eq!(
            c.price(&Market::Unknown, "marketing", day("2026-01-01")),
            None
        );
        assert_eq!(
            c.price(&Market::Unknown, "service", day("2026-01-01")),
            Some(Money(0))
        );
    }

    #[test]
    fn a_later_file_extends_and_overrides() {
        let extra = r#"
currency = "USD"
source = "operator's correction"
[markets]
north_america = ["PR"]
[[rates]]
effective_from = "2025-07-01"
north_america = { utility = 0.0034 }
"#;
        let c = RateCard::parse([("a.toml", CARD), ("b.toml", extra)]).unwrap();
        assert_eq!(c.market(r("PR")), Market::Known("north_america"));
        let na = c.market(r("US"));
        assert_eq!(
            c.price(&na, "utility", day("2025-08-01")),
            Some(Money(3_400))
        );
        assert_eq!(
            c.price(&na, "marketing", day("2025-08-01")),
            Some(Money(25_000))
        );
        assert_eq!(c.sources().len(), 2);
    }

    #[test]
    fn bad_cards_name_the_entry() {
        let cases = [
            (CARD.replace("\"USD\"", "\"usd\""), "currency"),
            (
                CARD.replace("\"2026-01-01\"", "\"2026-13-01\""),
                "rates[1].effective_from",
            ),
            (
                CARD.replace(
                    "india = { marketing = 0.0118 }",
                    "mars = { marketing = 1.0 }",
                ),
                "rates[1].mars",
            ),
            (CARD.replace("0.0118", "-0.1"), "rates[1].india.marketing"),
            (
                CARD.replace("\"JM\"", "\"Jamaica\""),
                "markets.rest_of_latin_america",
            ),
            (
                CARD.replace("source = \"test card\"", "source = \" \""),
                "source",
            ),
            (
                CARD.replace("default_market", "default_markt"),
                "unknown field",
            ),
        ];
        for (text, names) in cases {
            let e = RateCard::parse([("bad.toml", text.as_str())]).unwrap_err();
            assert_eq!(e.file, "bad.toml");
            assert!(e.problem.contains(names), "{names}: {e}");
        }
        let usd_eur = CARD.replace("USD", "EUR");
        let e = RateCard::parse([("a.toml", CARD), ("b.toml", usd_eur.as_str())]).unwrap_err();
        assert!(e.problem.contains("currency"), "{e}");
    }

    #[test]
    fn an_estimate_prices_each_market_and_counts_what_it_cannot() {
        let c = card();
        let regions = BTreeMap::from([
            (r("US"), 100),
            (r("CA"), 50),
            (r("IN"), 1000),
            (r("FJ"), 2),
            (Region::UNKNOWN, 3),
        ]);
        let e = c.estimate(&regions, Some("MARKETING"), day("2026-02-01"), 0.9);
        // 150 × 0.025 + 1000 × 0.0118 + 2 × 0.0604 = 3.75 + 11.8 + 0.1208
        assert_eq!(e.high, Money(15_670_800));
        assert_eq!(e.low, Money(14_103_720));
        assert_eq!(e.unknown_recipients, 3);
        assert_eq!(e.category, "marketing");
        let na = e
            .by_market
            .iter()
            .find(|m| m.market == "north_america")
            .unwrap();
        assert_eq!((na.recipients, na.high), (150, Some(Money(3_750_000))));
        // Authentication has no Indian rate: those recipients are unknown, not free.
        let e = c.estimate(&regions, Some("authentication"), day("2026-02-01"), 1.0);
        assert_eq!(e.unknown_recipients, 1000 + 2 + 3);
        assert_eq!(e.high, Money(600_000));
        let e = c.estimate(&regions, None, day("2026-02-01"), 1.0);
        assert_eq!(
            (e.category.as_str(), e.high, e.unknown_recipients),
            ("unknown", Money(0), 1155)
        );
    }

    #[test]
    fn actual_cost_uses_the_rate_of_each_delivery_day() {
        let c = card();
        let charged = [
            Charged {
                region: r("IN"),
                category: "marketing".into(),
                day: day("2025-12-31"),
                messages: 10,
            },
            Charged {
                region: r("IN"),
                category: "marketing".into(),
                day: day("2026-01-01"),
                messages: 10,
            },
            Charged {
                region: r("US"),
                category: "utility".into(),
                day: day("2026-01-01"),
                messages: 4,
            },
            Charged {
                region: r("IN"),
                category: "authentication".into(),
                day: day("2026-01-01"),
                messages: 1,
            },
        ];
        let free = BTreeMap::from([("free_customer_service".to_owned(), 7)]);
        let a = c.actual(&charged, &free);
        assert_eq!(a.total, Money(107_000 + 118_000 + 16_000));
        assert_eq!(
            (a.charged_messages, a.unknown_messages, a.free_messages),
            (25, 1, 7)
        );
        let auth =
            a.by.iter()
                .find(|l| l.category == "authentication")
                .unwrap();
        assert_eq!(auth.cost, None);
    }

    #[test]
    fn pricing_is_read_from_type_and_category() {
        use Charge::*;
        let c = |k, cat, b| Charge::from_pricing(k, cat, b);
        assert_eq!(
            c(Some("regular"), Some("MARKETING"), Some(true)),
            Some(Charged("marketing".into()))
        );
        // `billable` is deprecated: the type decides.
        assert_eq!(
            c(Some("regular"), Some("utility"), None),
            Some(Charged("utility".into()))
        );
        assert_eq!(
            c(Some("free_customer_service"), Some("utility"), Some(true)),
            Some(Free("free_customer_service".into()))
        );
        assert_eq!(
            c(Some("free_entry_point"), Some("marketing"), None),
            Some(Free("free_entry_point".into()))
        );
        assert_eq!(
            c(Some("regular"), Some("service"), None),
            Some(Free("service".into()))
        );
        assert_eq!(
            c(None, Some("marketing"), Some(true)),
            Some(Charged("marketing".into()))
        );
        assert_eq!(c(None, Some("marketing"), None), None);
        assert_eq!(c(Some("regular"), None, Some(true)), None);
        // Names that could not be a counter's part are not read.
        assert_eq!(c(Some("regular"), Some("mark:eting"), None), None);
        assert_eq!(c(Some("free_x:y"), Some("utility"), None), None);
    }

    fn marketing_spec(max_cost: Option<f64>) -> crate::CampaignSpec {
        let mut spec: crate::CampaignSpec = serde_json::from_value(serde_json::json!({
            "name": "sale",
            "message": {"type": "template", "template": {"name": "sale", "language": {"code": "en"}}},
            "template_category": "MARKETING",
            "priced_category": "MARKETING",
        }))
        .unwrap();
        spec.max_cost = max_cost;
        spec
    }

    #[test]
    fn the_cap_counts_what_is_charged_and_what_may_still_be() {
        let card = card();
        let p = CostModel {
            card: &card,
            today: day("2026-02-01"),
            delivery_rate: 0.9,
        };
        let mut stats = crate::Stats {
            accepted: 30,
            in_flight: 10,
            failed: 3,
            failed_before_accept: 1,
            regions: BTreeMap::from([(r("US"), 40), (r("IN"), 10)]),
            ..crate::Stats::default()
        };
        stats.pricing.charged.push(Charged {
            region: r("US"),
            category: "marketing".into(),
            day: day("2026-01-31"),
            messages: 20,
        });
        stats.pricing.free.insert("free_entry_point".into(), 1);
        // 30 accepted − 20 charged − 1 free − 2 failed after acceptance = 7, + 10 in flight.
        assert_eq!(CostModel::on_the_way(&stats), 17);
        let c = p.campaign(&marketing_spec(Some(1.0)), &stats);
        assert_eq!(c.actual.total, Money(500_000));
        assert_eq!(c.price_on_the_way, Money(25_000));
        assert_eq!(c.committed, Money(500_000 + 17 * 25_000));
        assert_eq!(c.drift, None);
        let check = p.over_cap(&marketing_spec(Some(1.0)), &stats).unwrap();
        assert_eq!(check.over, 0);
        // A cap of 0.85 leaves room for 14 of the 17: 3 must wait.
        let check = p.over_cap(&marketing_spec(Some(0.85)), &stats).unwrap();
        assert_eq!((check.committed, check.over), (Money(925_000), 3));
        assert_eq!(p.over_cap(&marketing_spec(None), &stats), None);
    }

    #[test]
    fn a_recategorised_template_shows_the_difference() {
        let card = card();
        let p = CostModel {
            card: &card,
            today: day("2026-02-01"),
            delivery_rate: 1.0,
        };
        let stats = crate::Stats {
            regions: BTreeMap::from([(r("US"), 100)]),
            ..crate::Stats::default()
        };
        let mut spec = marketing_spec(None);
        spec.priced_category = Some("UTILITY".into());
        let c = p.campaign(&spec, &stats);
        let d = c.drift.unwrap();
        assert_eq!((d.from.as_str(), d.to.as_str()), ("utility", "marketing"));
        assert_eq!(
            (d.high_before, d.high_now),
            (Money(400_000), Money(2_500_000))
        );
        assert!((d.difference - 2.1).abs() < 1e-9);
    }

    #[test]
    fn money_is_exact_at_four_decimals() {
        assert_eq!(Money::from_units(0.0250), Some(Money(25_000)));
        assert_eq!(Money::from_units(0.0107), Some(Money(10_700)));
        assert_eq!(Money::from_units(-0.01), None);
        assert_eq!(Money::from_units(f64::NAN), None);
        assert_eq!(Money(25_000).to_string(), "0.0250");
    }
}
