//! Logs and metrics for every long-running command: structured, quiet logs (tokens never,
//! phone numbers masked by the crates that log them) and one Prometheus recorder with every
//! metric of `herald_core::metrics` described up front.

use std::sync::OnceLock;
use std::time::Duration;

use herald_core::metrics::{self as m, ALL, BUILD_INFO, Kind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::config::Log;

/// Starts logging to stderr. `RUST_LOG` wins over `log.level` when set.
pub fn init_tracing(cfg: &Log) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, the demo) keeps the first.
    let _ = if cfg.format == "json" {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Histogram buckets, in seconds: send latency, token waits and webhook handling.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How long an unset gauge stays in the output.
const GAUGE_IDLE: Duration = Duration::from_secs(600);

/// Sets `herald_build_info` (again before each scrape, so the idle timeout never drops it).
pub fn build_info() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Installs the process's Prometheus recorder (once) and returns its handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                // A gauge nobody set for this long is dropped: the queue depth of a campaign
                // that ended leaves the output (ARCHITECTURE §10: campaign labels only while active).
                let idle =
                    |b: PrometheusBuilder| b.idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE));
                // Buckets (not summaries), so latencies aggregate across workers.
                idle(PrometheusBuilder::new())
                    .set_buckets(BUCKETS)
                    .unwrap_or_else(|_| idle(PrometheusBuilder::new()))
            };
            let handle = match builder().install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (a test harness): export into a private one.
                Err(_) => builder().build_recorder().handle(),
            };
            for (name, kind, help) in ALL {
                match kind {
                    Kind::Counter => metrics::describe_counter!(*name, *help),
                    Kind::Gauge => metrics::describe_gauge!(*name, *help),
                    Kind::Histogram => metrics::describe_histogram!(*name, *help),
                }
            }
            build_info();
            handle
        })
        .clone()
}

/// Puts the counters of these roles in the output at zero, with every label value from their
/// closed lists: a rate, an `increase()` or an alert over a counter that never moved then
/// reads 0 instead of nothing (and a dashboard panel shows a flat line, not "no data").
pub fn init_series(sender: bool, webhook: bool, reconciler: bool) {
    let zero = |name: &'static str, label: &'static str, values: &[&'static str]| {
        for v in values {
            metrics::counter!(name, label => *v).increment(0);
        }
    };
    if sender || reconciler {
        zero(m::SENDER_PAUSES_TOTAL, "kind", m::PAUSE_KINDS);
    }
    if sender {
        metrics::counter!(m::SENDER_RECLAIMED_JOBS_TOTAL).increment(0);
        zero(
            m::SENDER_IN_DOUBT_EXPIRED_TOTAL,
            "outcome",
            m::IN_DOUBT_OUTCOMES,
        );
    }
    if webhook {
        zero(m::WEBHOOK_REQUESTS_TOTAL, "outcome", m::WEBHOOK_OUTCOMES);
    }
    if reconciler {
        zero(m::RECONCILER_STATUSES_TOTAL, "result", m::STATUS_RESULTS);
        zero(
            m::RECONCILER_DEAD_LETTERS_TOTAL,
            "reason",
            m::DEAD_LETTER_REASONS,
        );
        for name in [
            m::RECONCILER_DEAD_LETTERS_DROPPED_TOTAL,
            m::RECONCILER_OPT_OUTS_TOTAL,
            m::RECONCILER_ENTRIES_TOTAL,
        ] {
            metrics::counter!(name).increment(0);
        }
    }
}
