//! Logs and metrics for every long-running command: structured, quiet logs (tokens never,
//! phone numbers masked by the crates that log them) and one Prometheus recorder with every
//! metric of `herald_core::metrics` described up front.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::MultiProgress;

use herald_core::metrics::{self as m, ALL, BUILD_INFO, Kind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::config::Log;

/// Starts logging to stderr. `RUST_LOG` wins over `log.level` when set.
pub fn init_tracing(cfg: &Log) {
    let chosen = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| tracing_subscriber::EnvFilter::try_new(f).is_ok())
        .or_else(|| {
            tracing_subscriber::EnvFilter::try_new(&cfg.level)
                .is_ok()
                .then(|| cfg.level.clone())
        })
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::new(quiet_redis_client(&chosen));
    let no_color = std::env::var_os("NO_COLOR");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            no_color.as_deref(),
        ))
        .with_writer(LogOut);
    // A second initialisation (tests, the demo) keeps the first.
    let _ = if cfg.format == crate::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Whether text logs are coloured: only on a terminal (a file, `kubectl logs` or a log
/// collector would get the escape codes as text), and not when `NO_COLOR` is set to anything.
fn colours(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// The log filter `chosen`, with the Redis client's own lines at `error` unless it names
/// them: its Cluster client warns at every reconnect attempt during a failover (hundreds of
/// lines a second); Herald says what matters itself, once, and counts it
/// (`herald_store_errors_total`).
fn quiet_redis_client(chosen: &str) -> String {
    let names_it = chosen.split(',').any(|d| {
        let target = d.split('=').next().unwrap_or_default().trim();
        target == "redis" || target.starts_with("redis::")
    });
    if names_it {
        chosen.to_owned()
    } else {
        format!("{chosen},redis=error")
    }
}

/// The progress display being drawn, if any: log lines go out around it.
static DISPLAY: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// While the returned guard lives, log lines are written around `display` (it is cleared,
/// the line written, and it is drawn again), so a line never breaks into the bars.
pub fn show(display: &MultiProgress) -> Shown {
    if let Ok(mut d) = DISPLAY.lock() {
        *d = Some(display.clone());
    }
    Shown(())
}

/// Keeps a display registered with [`show`]; dropping it ends that.
#[derive(Debug)]
#[must_use = "the display is forgotten when this drops"]
pub struct Shown(());

impl Drop for Shown {
    fn drop(&mut self) {
        if let Ok(mut d) = DISPLAY.lock() {
            *d = None;
        }
    }
}

/// Runs `write` around the display being drawn (see [`show`]), or just runs it.
pub fn around_display<R>(write: impl FnOnce() -> R) -> R {
    let display = DISPLAY.lock().ok().and_then(|d| d.clone());
    match display {
        Some(d) => d.suspend(write),
        None => write(),
    }
}

/// Where log lines go: stderr, each line whole and around the progress display.
#[derive(Clone, Copy)]
struct LogOut;

/// One log line, written out as it drops.
struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogOut {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            around_display(|| {
                let _ = std::io::stderr().write_all(&self.0);
            });
        }
    }
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
pub fn init_series(api: bool, sender: bool, webhook: bool, reconciler: bool) {
    let zero = |name: &'static str, label: &'static str, values: &[&'static str]| {
        for v in values {
            metrics::counter!(name, label => *v).increment(0);
        }
    };
    if sender || reconciler {
        zero(m::SENDER_PAUSES_TOTAL, "kind", m::PAUSE_KINDS);
    }
    // Every role calls the store, an api-only process as much as the others.
    if api || sender || webhook || reconciler {
        zero(m::STORE_ERRORS_TOTAL, "kind", m::STORE_ERROR_KINDS);
        // Only Sentinels move it; at zero, its first increase is one an alert sees.
        metrics::counter!(m::STORE_MASTER_CHANGES_TOTAL).increment(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colours(true, None));
        assert!(
            colours(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(
            !colours(false, None),
            "a file or a pipe gets no escape codes"
        );
    }

    #[test]
    fn an_api_only_process_exports_the_store_series_at_zero() {
        let handle = metrics();
        init_series(true, false, false, false);
        let text = handle.render();
        for series in [
            "herald_store_master_changes_total 0",
            "herald_store_errors_total{kind=\"timeout\"} 0",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
    }

    #[test]
    fn the_redis_client_is_quiet_unless_named() {
        assert_eq!(quiet_redis_client("info"), "info,redis=error");
        assert_eq!(
            quiet_redis_client("warn,herald_store_redis=debug"),
            "warn,herald_store_redis=debug,redis=error"
        );
        for named in ["info,redis=debug", "redis::cluster_handling=warn"] {
            assert_eq!(quiet_redis_client(named), named);
        }
    }
    use indicatif::{ProgressBar, ProgressDrawTarget, TermLike};
    use std::sync::Arc;

    /// A terminal that notes what is done to it, in one list with the log lines.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn note(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.note(format!("bar {s}"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.is_empty() {
                self.note(format!("bar {s}"));
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.note("clear".into());
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// While a display is shown, a log line goes out with the bars cleared before it and
    /// drawn again after it; once it is gone, lines go straight out.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn log_lines_go_around_the_progress_bars() {
        let screen = Screen::default();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        let bar = multi.add(ProgressBar::new(10));
        bar.set_position(3);
        bar.tick();
        let shown = show(&multi);
        around_display(|| screen.note("log one".into()));
        let ops = screen.0.lock().unwrap().clone();
        let log = ops.iter().position(|o| o == "log one").unwrap();
        let last_bar = ops[..log]
            .iter()
            .rposition(|o| o.starts_with("bar"))
            .unwrap();
        assert!(
            ops[last_bar..log].iter().any(|o| o == "clear"),
            "the bars were not cleared before the line: {ops:?}"
        );
        assert!(
            ops[log..].iter().any(|o| o.starts_with("bar")),
            "the bars were not drawn again after the line: {ops:?}"
        );
        drop(shown);
        let before = screen.0.lock().unwrap().len();
        around_display(|| screen.note("log two".into()));
        assert_eq!(
            screen.0.lock().unwrap()[before..],
            ["log two".to_owned()],
            "no display: the line alone"
        );
    }
}
