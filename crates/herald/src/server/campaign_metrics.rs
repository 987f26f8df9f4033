//! The per-campaign metrics (`herald_campaign_*`): every campaign's stats as Prometheus
//! gauges, exported once per deployment.
//!
//! Every API process runs [`export`], but only the one holding the store's
//! `campaign_metrics` lead reads the stats and serves the series; the others serve none. The
//! lead is a lease renewed at every refresh, so when the leader dies another API process
//! takes over within three refreshes. A process stops serving the series at the moment its
//! lease could have run out (measured from before it asked for it), so two processes never
//! serve them at once, and a sum over processes counts each campaign once.
//!
//! Each refresh renders into a fresh recorder: a campaign that is gone from the list (ended
//! longer ago than the retention, or beyond `max_campaigns`) is gone from the output at once,
//! not after an idle timeout. Labels are bounded: campaign ids (of at most `max_campaigns`
//! campaigns), error codes from the known table (else `other`), reasons and categories from
//! closed lists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_cloudapi::code_label;
use herald_core::metrics::{self as m, CAMPAIGN_STATES, Kind, PRICING_CATEGORIES};
use herald_core::{CampaignStatus, SkipReason, Stats};
use herald_store::{Campaign, CampaignWalk, Store, StoreError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The role name of the lead in the store.
pub const ROLE: &str = "campaign_metrics";

/// How long a campaign's name may be as a label.
const NAME_CHARS: usize = 64;

/// How the exporter runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// How often the stats are read (and the lead renewed).
    pub refresh: Duration,
    /// How long a completed or cancelled campaign stays exported.
    pub retention: Duration,
    /// The most campaigns exported, the newest first.
    pub max_campaigns: usize,
    /// Which portfolio's messaging limit each number shares (for the waiting gauge).
    pub messaging_limit: herald_sender::LimitConfig,
    /// The rate card, for each campaign's cost series.
    pub cost: Option<crate::server::cost::CostSettings>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            retention: Duration::from_secs(600),
            max_campaigns: 200,
            messaging_limit: herald_sender::LimitConfig::default(),
            cost: None,
        }
    }
}

impl ExportConfig {
    /// The lease on the lead: three refreshes, so one slow round does not lose it.
    pub fn lease(&self) -> Duration {
        self.refresh * 3
    }
}

/// The series this process serves, while it leads.
#[derive(Debug, Default)]
pub struct CampaignMetrics {
    current: Mutex<Option<(Instant, String)>>,
}

impl CampaignMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The Prometheus text of the campaigns' series, when this process leads (else nothing).
    pub fn text(&self) -> Option<String> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((until, text)) if Instant::now() < *until => Some(text.clone()),
            _ => None,
        }
    }

    fn set(&self, until: Instant, text: String) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((until, text));
    }

    /// Keeps what is served but no longer than `until`.
    fn cut(&self, until: Instant) {
        if let Some((u, _)) = &mut *self.current.lock().unwrap_or_else(|p| p.into_inner()) {
            *u = (*u).min(until);
        }
    }

    fn clear(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Exports the campaigns' stats into `out` while this process (`holder`) leads, until
/// `shutdown`.
pub async fn export<S: Store>(
    store: Arc<S>,
    out: Arc<CampaignMetrics>,
    cfg: ExportConfig,
    holder: String,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.refresh);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leading = false;
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // The lease runs from some moment after this one, so serving until `asked + lease`
        // never outlasts it.
        let asked = Instant::now();
        let until = asked + cfg.lease();
        let round = match store.lead(ROLE, &holder, cfg.lease()).await {
            Ok(true) => {
                if !leading {
                    tracing::info!(
                        holder,
                        "exporting the per-campaign metrics (this process leads)"
                    );
                }
                leading = true;
                match render(&*store, &cfg, jiff::Timestamp::now()).await {
                    Ok(text) => {
                        out.set(until, text);
                        Ok(())
                    }
                    Err(e) => {
                        // The lead is renewed, so the last series stay valid meanwhile.
                        out.cut(until);
                        Err(e)
                    }
                }
            }
            Ok(false) => {
                if leading {
                    tracing::info!("another process now exports the per-campaign metrics");
                }
                leading = false;
                out.clear();
                Ok(())
            }
            Err(e) => {
                // Whether this process still leads is unknown: serve nothing.
                leading = false;
                out.clear();
                Err(e)
            }
        };
        match round {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "the per-campaign metrics could not be refreshed; retrying");
            }
            Err(_) => {}
            Ok(()) => {
                if failing {
                    tracing::info!("the per-campaign metrics are refreshed again");
                }
                failing = false;
            }
        }
    }
    out.clear();
}

/// Whether a campaign is exported at `now`: while it can still change, and for `retention`
/// after it ended.
fn exported(c: &Campaign, now: jiff::Timestamp, retention: Duration) -> bool {
    match c.status {
        CampaignStatus::Completed | CampaignStatus::Cancelled => {
            let ended = c.finished_ms.unwrap_or(c.updated_ms);
            let age = now.as_millisecond().saturating_sub(ended);
            u128::try_from(age).unwrap_or(0) <= retention.as_millis()
        }
        _ => true,
    }
}

/// Renders the series of every exported campaign, and the store's memory, into Prometheus
/// text.
pub async fn render<S: Store>(
    store: &S,
    cfg: &ExportConfig,
    now: jiff::Timestamp,
) -> Result<String, StoreError> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for (name, kind, help) in m::CAMPAIGN.iter().chain(m::DEPLOYMENT) {
            debug_assert_eq!(*kind, Kind::Gauge);
            metrics::describe_gauge!(*name, *help);
        }
    });
    // Where the backend can say (not having it is no reason to drop the campaigns' series).
    if let Ok(Some(memory)) = store.memory_use().await {
        metrics::with_local_recorder(&recorder, || {
            metrics::gauge!(m::STORE_MEMORY_USED_BYTES).set(memory.used_bytes as f64);
            metrics::gauge!(m::STORE_MEMORY_MAX_BYTES).set(memory.max_bytes.unwrap_or(0) as f64);
        });
    }
    // A page of campaigns at a time, until `max_campaigns` are exported.
    let mut walk = CampaignWalk::new();
    let mut left = cfg.max_campaigns;
    while left > 0
        && let Some(page) = walk.next(store).await?
    {
        let live: Vec<Campaign> = page
            .into_iter()
            .filter(|c| exported(c, now, cfg.retention))
            .take(left)
            .collect();
        left -= live.len();
        for c in &live {
            render_campaign(store, cfg, &recorder, c).await?;
        }
    }
    Ok(handle.render())
}

/// Sets one campaign's series on `recorder` (none where it was deleted since it was listed).
async fn render_campaign<S: Store>(
    store: &S,
    cfg: &ExportConfig,
    recorder: &PrometheusRecorder,
    c: &Campaign,
) -> Result<(), StoreError> {
    let stats = match store.stats(&c.id).await {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Every template campaign has the series (0 unless it waits), so a dashboard query
    // of it never comes back empty.
    let waiting = match (&c.template, c.status) {
        (None, _) => None,
        (Some(_), herald_core::CampaignStatus::Running) => Some(
            crate::server::limit::view(store, &cfg.messaging_limit, c, stats.pending)
                .await?
                .map_or(0, |l| l.waiting),
        ),
        (Some(_), _) => Some(0),
    };
    let cost = cfg.cost.as_ref().map(|p| p.view(&c.spec, &stats));
    metrics::with_local_recorder(recorder, || {
        record(c, &stats);
        if let Some(cost) = &cost {
            record_cost(&c.id, cost);
        }
        if let Some(w) = waiting {
            metrics::gauge!(m::CAMPAIGN_LIMIT_WAITING_MESSAGES, "campaign" => c.id.to_string())
                .set(w as f64);
        }
    });
    Ok(())
}

/// Sets one campaign's cost gauges: the actual cost by category, the estimate's range and the
/// cap (labels bounded: the categories of [`PRICING_CATEGORIES`] else `other`, the one
/// currency of the rate card).
fn record_cost(id: &herald_core::CampaignId, cost: &herald_core::cost::CampaignCost) {
    let id = id.to_string();
    let currency = cost.currency.clone();
    let mut by_category: BTreeMap<&'static str, f64> = PRICING_CATEGORIES
        .iter()
        .filter(|c| herald_core::cost::CHARGED_CATEGORIES.contains(c))
        .map(|c| (*c, 0.0))
        .collect();
    for line in &cost.actual.by {
        let label = PRICING_CATEGORIES
            .iter()
            .find(|k| **k == line.category.as_str())
            .copied()
            .unwrap_or("other");
        *by_category.entry(label).or_default() += line.cost.map_or(0.0, |c| c.units());
    }
    for (category, v) in by_category {
        metrics::gauge!(m::CAMPAIGN_COST, "campaign" => id.clone(), "category" => category, "currency" => currency.clone())
            .set(v);
    }
    for (bound, v) in [("low", cost.estimate.low), ("high", cost.estimate.high)] {
        metrics::gauge!(m::CAMPAIGN_COST_ESTIMATE, "campaign" => id.clone(), "bound" => bound, "currency" => currency.clone())
            .set(v.units());
    }
    metrics::gauge!(m::CAMPAIGN_COST_COMMITTED, "campaign" => id.clone(), "currency" => currency.clone())
        .set(cost.committed.units());
    if let Some(cap) = cost.max_cost {
        metrics::gauge!(m::CAMPAIGN_COST_CAP, "campaign" => id.clone(), "currency" => currency)
            .set(cap.units());
    }
    metrics::gauge!(m::CAMPAIGN_COST_UNKNOWN_MESSAGES, "campaign" => id)
        .set((cost.actual.unknown_messages + cost.estimate.unknown_recipients) as f64);
}

/// Sets one campaign's gauges on the current recorder.
fn record(c: &Campaign, s: &Stats) {
    let id = c.id.to_string();
    let name: String = c.name.chars().take(NAME_CHARS).collect();
    metrics::gauge!(
        m::CAMPAIGN_INFO,
        "campaign" => id.clone(),
        "name" => name,
        "status" => c.status.as_str(),
        "phone_number_id" => c.phone_number_id.clone()
    )
    .set(1.0);
    metrics::gauge!(m::CAMPAIGN_RECIPIENTS, "campaign" => id.clone()).set(s.recipients as f64);
    for state in CAMPAIGN_STATES {
        let v = match *state {
            "pending" => s.pending,
            "waiting_for_send_window" => s.waiting_for_send_window,
            "in_flight" => s.in_flight,
            "in_doubt" => s.in_doubt,
            "accepted" => s.accepted,
            "sent" => s.sent,
            "delivered" => s.delivered,
            "read" => s.read,
            "failed" => s.failed,
            "failed_before_accept" => s.failed_before_accept,
            "skipped_at_send" => s.skipped_at_send,
            "cancelled" => s.cancelled,
            "replied" => s.replied,
            _ => continue,
        };
        metrics::gauge!(m::CAMPAIGN_MESSAGES, "campaign" => id.clone(), "state" => *state)
            .set(v as f64);
    }
    let mut by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (code, n) in &s.errors {
        let label = code.parse::<i64>().map_or("other", code_label);
        *by_code.entry(label).or_default() += n;
    }
    for (code, n) in by_code {
        metrics::gauge!(m::CAMPAIGN_FAILED, "campaign" => id.clone(), "code" => code).set(n as f64);
    }
    for reason in SkipReason::ALL {
        for (stage, skipped) in [
            ("upload", &s.skipped_upload),
            ("send", &s.skipped_send),
            // Accepted, then declined by Meta's status webhook (131049, 130472).
            ("delivery", &s.declined),
        ] {
            metrics::gauge!(
                m::CAMPAIGN_SKIPPED,
                "campaign" => id.clone(),
                "reason" => reason.as_str(),
                "stage" => stage
            )
            .set(skipped.get(reason) as f64);
        }
    }
    metrics::gauge!(m::CAMPAIGN_BILLABLE_MESSAGES, "campaign" => id.clone())
        .set(s.pricing.billable as f64);
    let mut by_category: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (category, n) in &s.pricing.categories {
        let label = PRICING_CATEGORIES
            .iter()
            .find(|k| **k == category.as_str())
            .copied()
            .unwrap_or("other");
        *by_category.entry(label).or_default() += n;
    }
    for (category, n) in by_category {
        metrics::gauge!(m::CAMPAIGN_PRICED_MESSAGES, "campaign" => id.clone(), "category" => category)
            .set(n as f64);
    }
    if let Some(ms) = c.started_ms {
        metrics::gauge!(m::CAMPAIGN_START_TIMESTAMP_SECONDS, "campaign" => id)
            .set(ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use herald_core::{CampaignAction, CampaignId, PricingStats};
    use herald_store::conformance;
    use herald_store::memory::MemoryStore;

    use super::*;

    fn campaign(name: &str) -> Campaign {
        Campaign {
            id: CampaignId::new("c1").unwrap(),
            name: name.into(),
            status: CampaignStatus::Running,
            pause_reason: None,
            phone_number_id: "106540352242922".into(),
            template: None,
            spec: conformance::spec(name),
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_000,
            started_ms: Some(1_700_000_000_000),
            finished_ms: None,
        }
    }

    fn rendered(f: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    /// The value of the one line that starts with `series` followed by a space.
    fn value(text: &str, series: &str) -> Option<f64> {
        let mut found = text
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        let v = found.next()?.parse().ok();
        assert!(found.next().is_none(), "{series} twice");
        v
    }

    #[test]
    fn cost_series_carry_the_actual_the_range_and_the_cap() {
        let settings =
            crate::server::cost::CostSettings::from_config(&crate::config::Config::default())
                .unwrap();
        let india: herald_core::Region = "IN".parse().unwrap();
        let mut s = Stats {
            recipients: 100,
            accepted: 10,
            regions: [(india, 100)].into_iter().collect(),
            ..Stats::default()
        };
        s.pricing.charged.push(herald_core::cost::Charged {
            region: india,
            category: "marketing".into(),
            day: "2025-08-01".parse().unwrap(),
            messages: 10,
        });
        s.pricing.charged.push(herald_core::cost::Charged {
            region: india,
            category: "made_up".into(),
            day: "2025-08-01".parse().unwrap(),
            messages: 1,
        });
        let mut c = campaign("priced");
        c.spec.template_category = Some("MARKETING".into());
        c.spec.max_cost = Some(5.0);
        let cost = settings.view(&c.spec, &s);
        let text = rendered(|| record_cost(&c.id, &cost));
        let series = |name: &str, labels: &str| {
            value(&text, &format!("{name}{{campaign=\"{}\",{labels}}}", c.id))
        };
        // 10 × 0.0107 (India, marketing, on the shipped card); the made-up category has no
        // rate: it counts as unknown, not as zero cost.
        let actual = series(
            "herald_campaign_cost",
            "category=\"marketing\",currency=\"USD\"",
        );
        assert!((actual.unwrap() - 0.107).abs() < 1e-9, "{text}");
        assert_eq!(
            series(
                "herald_campaign_cost",
                "category=\"utility\",currency=\"USD\""
            ),
            Some(0.0)
        );
        assert_eq!(
            series("herald_campaign_cost_cap", "currency=\"USD\""),
            Some(5.0)
        );
        assert!(
            series(
                "herald_campaign_cost_estimate",
                "bound=\"high\",currency=\"USD\""
            )
            .unwrap()
                > 0.0
        );
        assert_eq!(
            value(
                &text,
                &format!(
                    "herald_campaign_cost_unknown_messages{{campaign=\"{}\"}}",
                    c.id
                )
            ),
            Some(1.0)
        );
        assert!(!text.contains("made_up"), "{text}");
    }

    #[test]
    fn every_state_is_a_series_and_labels_stay_bounded() {
        let mut s = Stats {
            recipients: 10,
            pending: 2,
            accepted: 6,
            sent: 5,
            delivered: 4,
            read: 1,
            failed: 3,
            failed_before_accept: 2,
            replied: 1,
            waiting_for_send_window: 1,
            errors: [("131026", 2), ("999999", 1), ("12", 4)]
                .into_iter()
                .map(|(c, n)| (c.to_owned(), n))
                .collect(),
            pricing: PricingStats {
                billable: 3,
                categories: [("marketing", 3), ("made_up", 1), ("also_made_up", 2)]
                    .into_iter()
                    .map(|(c, n)| (c.to_owned(), n))
                    .collect(),
                ..PricingStats::default()
            },
            ..Stats::default()
        };
        s.skipped_upload.duplicate = 7;
        s.skipped_send.suppressed = 1;
        let long = format!("spring \"sale\"\n{}", "x".repeat(200));
        let text = rendered(|| record(&campaign(&long), &s));

        let c = r#"campaign="c1""#;
        assert_eq!(
            value(&text, &format!("herald_campaign_recipients{{{c}}}")),
            Some(10.0)
        );
        for (state, v) in [
            ("pending", 2.0),
            ("waiting_for_send_window", 1.0),
            ("accepted", 6.0),
            ("read", 1.0),
            ("in_doubt", 0.0),
            ("replied", 1.0),
        ] {
            let series = format!(r#"herald_campaign_messages{{{c},state="{state}"}}"#);
            assert_eq!(value(&text, &series), Some(v), "{series} in\n{text}");
        }
        assert_eq!(
            text.matches("herald_campaign_messages{").count(),
            CAMPAIGN_STATES.len()
        );
        // Unknown codes and categories collapse into `other`, summed.
        assert_eq!(
            value(
                &text,
                &format!(r#"herald_campaign_failed{{{c},code="131026"}}"#)
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"herald_campaign_failed{{{c},code="other"}}"#)
            ),
            Some(5.0)
        );
        assert_eq!(text.matches("herald_campaign_failed{").count(), 2);
        assert_eq!(
            value(
                &text,
                &format!(r#"herald_campaign_priced_messages{{{c},category="other"}}"#)
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"herald_campaign_skipped{{{c},reason="duplicate",stage="upload"}}"#)
            ),
            Some(7.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"herald_campaign_skipped{{{c},reason="suppressed",stage="send"}}"#)
            ),
            Some(1.0)
        );
        assert_eq!(
            text.matches("herald_campaign_skipped{").count(),
            SkipReason::ALL.len() * 3
        );
        // The name is cut and escaped: one line, no raw quote or newline inside the value.
        let info = text
            .lines()
            .find(|l| l.starts_with("herald_campaign_info{"))
            .expect(&text);
        assert!(info.contains(r#"name="spring \"sale\"\n"#), "{info}");
        assert!(!info.contains(&"x".repeat(NAME_CHARS)), "{info}");
        assert!(info.contains(r#"status="running""#), "{info}");
        assert_eq!(
            value(
                &text,
                &format!("herald_campaign_start_timestamp_seconds{{{c}}}")
            ),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn finished_campaigns_stay_for_the_retention_only() {
        let mut c = campaign("done");
        let retention = Duration::from_secs(600);
        let now = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap();
        assert!(
            exported(&c, now(250_000_000_000_000), retention),
            "running: always"
        );
        c.status = CampaignStatus::Completed;
        c.finished_ms = Some(1_000_000);
        assert!(exported(&c, now(1_000_000 + 600_000), retention));
        assert!(!exported(&c, now(1_000_000 + 600_001), retention));
        c.status = CampaignStatus::Cancelled;
        c.finished_ms = None;
        c.updated_ms = 2_000_000;
        assert!(exported(&c, now(2_000_000 + 1), retention));
        assert!(!exported(&c, now(2_000_000 + 600_001), retention));
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_campaigns_are_exported_up_to_the_cap() {
        let store = MemoryStore::new();
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(conformance::running(&store, &format!("c{i}"), 3).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store
            .transition(&ids[0], CampaignAction::Cancel, None)
            .await
            .unwrap();
        let cfg = ExportConfig {
            max_campaigns: 2,
            ..ExportConfig::default()
        };
        let text = render(&store, &cfg, store.now()).await.unwrap();
        for (i, id) in ids.iter().enumerate() {
            let series = format!(r#"herald_campaign_recipients{{campaign="{id}"}}"#);
            let want = (i >= 2).then_some(3.0);
            assert_eq!(value(&text, &series), want, "campaign {i} in\n{text}");
        }
        // The cancelled one is exported until its retention ends.
        let all = ExportConfig {
            max_campaigns: 10,
            ..ExportConfig::default()
        };
        let cancelled = format!(
            r#"herald_campaign_messages{{campaign="{}",state="cancelled"}}"#,
            ids[0]
        );
        let text = render(&store, &all, store.now()).await.unwrap();
        assert_eq!(value(&text, &cancelled), Some(3.0), "{text}");
        let later = store.now() + all.retention + Duration::from_secs(1);
        let text = render(&store, &all, later).await.unwrap();
        assert_eq!(value(&text, &cancelled), None, "{text}");
        assert!(
            value(
                &text,
                &format!(r#"herald_campaign_recipients{{campaign="{}"}}"#, ids[3])
            )
            .is_some()
        );
    }

    /// The campaigns are read a page at a time: the cap counts exported campaigns only, so
    /// one page of ended campaigns past their retention does not use it up.
    #[tokio::test(start_paused = true)]
    async fn the_cap_is_filled_across_pages() {
        let store = MemoryStore::new();
        let mut running = Vec::new();
        for i in 0..40 {
            running.push(conformance::campaign(&store, &format!("r{i}")).await);
            store
                .transition(&running[i], CampaignAction::Start, None)
                .await
                .unwrap();
        }
        for i in 0..herald_store::WALK_PAGE + 10 {
            let id = conformance::campaign(&store, &format!("ended{i}")).await;
            store
                .transition(&id, CampaignAction::Cancel, None)
                .await
                .unwrap();
        }
        let cfg = ExportConfig {
            max_campaigns: 30,
            ..ExportConfig::default()
        };
        let later = store.now() + cfg.retention + Duration::from_secs(1);
        let text = render(&store, &cfg, later).await.unwrap();
        for (i, id) in running.iter().enumerate() {
            let series = format!(r#"herald_campaign_recipients{{campaign="{id}"}}"#);
            let want = (i >= 10).then_some(0.0);
            assert_eq!(value(&text, &series), want, "campaign r{i}");
        }
    }

    /// A running template campaign whose portfolio's budget is spent exports how many of its
    /// recipients wait (what keeps `HeraldCampaignStalled` quiet).
    #[tokio::test(start_paused = true)]
    async fn a_campaign_waiting_for_the_messaging_limit_says_how_many_wait() {
        use herald_core::{DEFAULT_PORTFOLIO, MessagingLimit, REACH_WINDOW};
        let store = MemoryStore::new();
        let id = conformance::running(&store, "waits", 3).await;
        let series = format!(r#"herald_campaign_limit_waiting_messages{{campaign="{id}"}}"#);
        let cfg = ExportConfig::default();
        let text = render(&store, &cfg, store.now()).await.unwrap();
        assert_eq!(value(&text, &series), Some(0.0), "no limit known: {text}");
        store
            .set_messaging_limit(DEFAULT_PORTFOLIO, MessagingLimit::Users(1))
            .await
            .unwrap();
        store
            .reserve_reach(
                DEFAULT_PORTFOLIO,
                1,
                REACH_WINDOW,
                &[conformance::phone(99)],
            )
            .await
            .unwrap();
        let text = render(&store, &cfg, store.now()).await.unwrap();
        assert_eq!(value(&text, &series), Some(3.0), "{text}");
    }

    /// Two API processes: exactly one serves the series at any moment, and when it stops the
    /// other takes over within a lease and a refresh.
    #[tokio::test(start_paused = true)]
    async fn one_process_exports_and_another_takes_over() {
        let store = Arc::new(MemoryStore::new());
        conformance::running(&*store, "live", 2).await;
        let cfg = ExportConfig {
            refresh: Duration::from_secs(1),
            ..ExportConfig::default()
        };
        let outs = [CampaignMetrics::new(), CampaignMetrics::new()];
        let stops = [CancellationToken::new(), CancellationToken::new()];
        let tasks: Vec<_> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, holder)| {
                tokio::spawn(export(
                    store.clone(),
                    outs[i].clone(),
                    cfg.clone(),
                    (*holder).to_owned(),
                    stops[i].clone(),
                ))
            })
            .collect();
        let step = Duration::from_millis(50);
        let serving = || outs.iter().map(|o| o.text().is_some()).collect::<Vec<_>>();
        let mut leader = None;
        for _ in 0..200 {
            tokio::time::sleep(step).await;
            let now = serving();
            assert!(!(now[0] && now[1]), "both serve the series");
            if let Some(i) = now.iter().position(|s| *s) {
                assert!(
                    leader.is_none_or(|l| l == i),
                    "the lead moved without cause"
                );
                leader = Some(i);
            }
        }
        let leader = leader.expect("someone leads");
        let text = outs[leader].text().unwrap();
        assert!(text.contains("herald_campaign_recipients{"), "{text}");

        stops[leader].cancel();
        let other = 1 - leader;
        let stopped = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(step).await;
            let now = serving();
            assert!(!now[leader], "a stopped process serves nothing");
            if now[other] {
                break;
            }
            assert!(
                stopped.elapsed() <= cfg.lease() + cfg.refresh + step,
                "no takeover after {:?}",
                stopped.elapsed()
            );
        }
        stops[other].cancel();
        for t in tasks {
            t.await.unwrap();
        }
    }
}
