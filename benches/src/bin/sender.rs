//! The sender pool against the simulator, with real Redis settles:
//!
//! - `unpaced`: throughput of one worker process with the rate limit out of the way, against
//!   the same client sending the same bodies straight to the simulator with no store at all
//!   (the baseline: what HTTP alone costs); three sender runs (`--pairs=N`), each between
//!   two baseline runs and taken against their mean; the ratios' median, their mean with its
//!   95% confidence interval, and the CPU per send of the sender, Redis and the simulator;
//!   then the same comparison by CPU per send (the client's and the simulator's over the
//!   sender's, Redis's and the simulator's), which leaves out the cores either run left
//!   idle.
//! - `pace`: 30 s at 80 and at 1,000 MPS against a simulator enforcing exactly that rate over
//!   a strict rolling second: the mean rate the simulator saw (error against the target), the
//!   busiest 1 s and 100 ms windows, any 130429, the late sends moved or given up, the
//!   requests that left after their latest time, and the busiest second of the sender's own
//!   departures (by its clock, as the requests went to their connections).
//! - `latency`: 1,000 MPS with 250 ± 100 ms of simulated latency (150 ms and a uniform 0–200),
//!   512 requests in flight unless `--in-flight=N` says otherwise.
//! - `faulted`: 1,000 MPS with 5% transient 5xx: when 99% and all of the recipients were
//!   accepted, against the ideal `recipients / mps`.
//! - `memory [THOUSANDS]`: Redis's memory per recipient of one campaign (default 30,000
//!   recipients; `memory 1000` for a million), sent unpaced: pending, sent, and after the
//!   campaign is deleted. Not part of `all`.
//!
//! `--contend` runs a spinning thread beside it the whole time (one of two cores taken, as on
//! a shared node). `--memory` gives the sender the in-process store (the memory backend)
//! instead of Redis: with `unpaced`, what the sender costs without Redis and the round trips
//! to it. The simulator runs in a child process (this program re-run); the sender
//! on the default runtime. `cargo run --release -p herald-benches --bin sender [--
//! all|unpaced|pace|latency|faulted|memory] [SECONDS] [--contend] [--memory] [--in-flight=N]
//! [--pairs=N]`
//! (REDIS_URL, default redis://127.0.0.1:6379; WINDOW_GUARD_MS overrides the sender's
//! `window_guard`). Built with `--features count-allocs`, `unpaced` also prints the
//! allocations per send of the client alone and of the sender (counted on the system
//! allocator: read rates from a plain build).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_cloudapi::{Client, ClientConfig, Secret};
use herald_core::{CampaignAction, CampaignStatus, PhoneE164, Recipient, Vars};
use herald_sender::{Sender, SenderConfig};
use herald_sim::{SimConfig, SimProcess};
use herald_store::{NewCampaign, Store};
use herald_store_redis::{RedisConfig, RedisStore};
use tokio_util::sync::CancellationToken;

#[cfg(not(feature = "count-allocs"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features count-allocs`: every allocation counted, on the system allocator (the
/// count does not depend on the allocator; the rates of such a build are not comparable).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocations so far by this process, when they are counted.
fn allocations() -> Option<usize> {
    #[cfg(feature = "count-allocs")]
    return Some(GLOBAL.stats().allocations);
    #[cfg(not(feature = "count-allocs"))]
    None
}

/// Allocations per send between two counts, as text (empty when they are not counted).
fn allocs_each(from: Option<usize>, to: Option<usize>, sends: u64) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!(
            ", {:.1} allocations each",
            b.saturating_sub(a) as f64 / sends.max(1) as f64
        ),
        _ => String::new(),
    }
}

const PNID: &str = "106540352242922";

struct Scenario {
    name: String,
    sim_mps: u32,
    sender_mps: u32,
    recipients: u64,
    latency_ms: u64,
    jitter_ms: u64,
    max_in_flight: usize,
    /// The share of requests the simulator answers with a transient 500 (a Graph error).
    error_5xx: f64,
    /// Delete the campaign once it completes, and read Redis's memory through its life.
    delete: bool,
}

impl Scenario {
    /// `recipients` sent as fast as the sender goes: the rate limit out of the way.
    fn unpaced(name: &str, recipients: u64) -> Self {
        Self {
            name: name.into(),
            sim_mps: 10_000_000,
            sender_mps: 1_000_000,
            recipients,
            latency_ms: 0,
            jitter_ms: 0,
            max_in_flight: 256,
            error_5xx: 0.0,
            delete: false,
        }
    }
}

struct Outcome {
    elapsed: Duration,
    /// Requests per second the simulator saw while the queue was full, from the second
    /// second on (the first includes the start).
    steady_rate: Option<f64>,
    accepted: u64,
    requests: u64,
    span: Duration,
    max_1s: u64,
    max_100ms: u64,
    throttled: u64,
    duplicates: usize,
    /// CPU this process (the sender, not the simulator) spent per request.
    cpu_us_per_request: f64,
    /// Allocations this process made per request, as text (empty when not counted).
    allocs_per_request: String,
    /// CPU per request of the Redis server and of the simulator over the same span.
    redis_cpu_us_per_request: Option<f64>,
    sim_cpu_us_per_request: f64,
    /// Sends that gave up their slot for waking late.
    late: u64,
    /// Sends that woke late and were moved to when they went.
    moved: u64,
    /// Requests that left after their latest time, logged in the window when they left.
    departed_late: u64,
    /// Requests answered after their latest time, logged in the window at their answer.
    answered_late: u64,
    /// The most requests that left the sender in any second, by its own clock as they went to
    /// their connections (what the simulator sees besides adds the way there).
    max_departures_1s: usize,
    /// When 99% of the recipients had been accepted.
    accepted_99: Option<Duration>,
    /// The share of the machine's cores left idle while it ran (0–1).
    idle: f64,
    /// The mean number of requests in flight as each was made.
    in_flight: f64,
    /// Redis's memory (bytes), read when the scenario deletes its campaign: before the
    /// campaign, with its jobs pending, once they were all sent, after the campaign was
    /// deleted, and after its pair-spacing keys were too.
    memory: [Option<u64>; 5],
    /// How long deleting the campaign took (when it was deleted).
    delete_took: Option<Duration>,
}

/// The client, noting when each request leaves the sender and how many are in flight.
struct Recording {
    inner: Client,
    departures: Arc<std::sync::Mutex<Vec<Instant>>>,
    in_flight: Arc<InFlight>,
}

/// Requests in flight, and their number as each request was made (summed): the mean says how
/// much of the in-flight bound the requests themselves used.
#[derive(Default)]
struct InFlight {
    now: AtomicU64,
    seen: AtomicU64,
    made: AtomicU64,
}

impl InFlight {
    fn enter(&self) -> Leaving<'_> {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.seen.fetch_add(now, Ordering::Relaxed);
        self.made.fetch_add(1, Ordering::Relaxed);
        Leaving(self)
    }

    /// The mean number of requests in flight as each was made (itself included).
    fn mean(&self) -> f64 {
        self.seen.load(Ordering::Relaxed) as f64 / self.made.load(Ordering::Relaxed).max(1) as f64
    }
}

/// One request in flight, counted out when dropped (answered or abandoned).
struct Leaving<'a>(&'a InFlight);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

impl herald_cloudapi::Messages for Recording {
    async fn send_raw(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
    ) -> Result<herald_cloudapi::SendResponse, herald_cloudapi::Error> {
        let made = Instant::now();
        let _request = self.in_flight.enter();
        let answer = self.inner.send_raw(phone_number_id, body).await;
        self.note(made);
        answer
    }

    /// Paced sends: when the request went to the connection, which can be later than it was
    /// made on a busy machine.
    async fn send_noted(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
        departure: &herald_cloudapi::Departure,
    ) -> Result<herald_cloudapi::SendResponse, herald_cloudapi::Error> {
        let made = Instant::now();
        let _request = self.in_flight.enter();
        let answer = self
            .inner
            .send_noted(phone_number_id, body, departure)
            .await;
        self.note(departure.get().unwrap_or(made));
        answer
    }
}

impl Recording {
    fn note(&self, left: Instant) {
        if let Ok(mut d) = self.departures.lock() {
            d.push(left);
        }
    }
}

/// The most instants (sorted) within any `window`.
fn busiest(sorted: &[Instant], window: Duration) -> usize {
    let (mut best, mut from) = (0, 0);
    for (i, t) in sorted.iter().enumerate() {
        while t.duration_since(sorted[from]) >= window {
            from += 1;
        }
        best = best.max(i + 1 - from);
    }
    best
}

fn main() {
    herald_sim::process::serve_if_asked();
    let contend = std::env::args().any(|a| a == "--contend");
    // The latency scenario's in-flight bound: at 1,000 MPS and 250 ms, what `max_in_flight`
    // has to be for the rate to hold.
    let latency_in_flight = std::env::args()
        .find_map(|a| a.strip_prefix("--in-flight=")?.parse::<usize>().ok())
        .unwrap_or(512);
    let pairs = std::env::args()
        .find_map(|a| a.strip_prefix("--pairs=")?.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(UNPACED_PAIRS);
    let mut args = std::env::args().skip(1).filter(|a| {
        a != "--contend"
            && a != "--memory"
            && !a.starts_with("--in-flight=")
            && !a.starts_with("--pairs=")
    });
    let mode = args.next().unwrap_or_else(|| "all".into());
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    // A busy thread the whole time: one of the machine's cores taken, as on a shared node.
    let _hog = contend.then(|| {
        println!("contended: one thread spins beside the benchmark");
        Hog::start()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        if mode == "all" || mode == "unpaced" {
            unpaced(pairs).await;
        }
        if mode == "all" || mode == "pace" {
            for mps in [80, 1000] {
                let o = run(Scenario {
                    name: format!("pace-{mps}"),
                    sim_mps: mps,
                    sender_mps: mps,
                    recipients: u64::from(mps) * secs,
                    latency_ms: 0,
                    jitter_ms: 0,
                    max_in_flight: 256,
                    error_5xx: 0.0,
                    delete: false,
                })
                .await;
                let overall = o.requests.saturating_sub(1) as f64 / o.span.as_secs_f64();
                let rate = o.steady_rate.unwrap_or(overall);
                println!(
                    "pace {mps} MPS for {secs} s: the simulator saw {rate:.2}/s while the queue was \
                     full (error {:+.2}%; {overall:.2}/s first to last request), busiest 1 s window {}, \
                     busiest 100 ms window {}, 130429: {}, duplicates: {}, late sends moved: {}, \
                     slots given up late: {}, requests that left late (logged when they left): {}, \
                     answered late (logged at the answer): {}; busiest 1 s of the sender's own departures {}",
                    (rate / f64::from(mps) - 1.0) * 100.0,
                    o.max_1s,
                    o.max_100ms,
                    o.throttled,
                    o.duplicates,
                    o.moved,
                    o.late,
                    o.departed_late,
                    o.answered_late,
                    o.max_departures_1s
                );
            }
        }
        if mode == "all" || mode == "latency" {
            let secs = secs.min(20);
            let o = run(Scenario {
                name: "latency".into(),
                sim_mps: 1000,
                sender_mps: 1000,
                recipients: 1000 * secs,
                latency_ms: 150,
                jitter_ms: 200,
                max_in_flight: latency_in_flight,
                error_5xx: 0.0,
                delete: false,
            })
            .await;
            let rate = o
                .steady_rate
                .unwrap_or(o.requests.saturating_sub(1) as f64 / o.span.as_secs_f64());
            println!(
                "1000 MPS with 250 ± 100 ms latency for {secs} s, {latency_in_flight} in flight: \
                 the simulator saw {rate:.2}/s (error {:+.2}%), busiest 1 s window {}, 130429: \
                 {}, {} accepted in {:.2} s, slots given up late: {}",
                (rate / 1000.0 - 1.0) * 100.0,
                o.max_1s,
                o.throttled,
                o.accepted,
                o.elapsed.as_secs_f64(),
                o.late
            );
        }
        if mode == "memory" {
            memory_per_recipient(secs).await;
        }
        if mode == "all" || mode == "faulted" {
            let secs = secs.min(20);
            let n = 1000 * secs;
            let o = run(Scenario {
                name: "faulted".into(),
                sim_mps: 1000,
                sender_mps: 1000,
                recipients: n,
                latency_ms: 0,
                jitter_ms: 0,
                max_in_flight: 256,
                error_5xx: 0.05,
                delete: false,
            })
            .await;
            let ideal = Duration::from_secs(secs);
            println!(
                "1000 MPS with 5% transient 5xx, {n} recipients: 99% accepted after {:.2} s, all \
                 {} after {:.2} s; ideal {:.0} s at the full rate ({:.2}× for 99%, {:.2}× for \
                 all), 130429: {}, duplicates: {}",
                o.accepted_99.unwrap_or(o.elapsed).as_secs_f64(),
                o.accepted,
                o.elapsed.as_secs_f64(),
                ideal.as_secs_f64(),
                o.accepted_99.unwrap_or(o.elapsed).as_secs_f64() / ideal.as_secs_f64(),
                o.elapsed.as_secs_f64() / ideal.as_secs_f64(),
                o.throttled,
                o.duplicates
            );
        }
    });
}

/// Redis's memory per recipient of one campaign (`thousands` × 1,000 recipients, sent
/// unpaced): with its jobs pending, once all were sent, after the campaign was deleted (what
/// stays: the message-id lookups, 31 days, and the pair-spacing keys, 72 h), and with the
/// pair-spacing keys deleted as well (as they are 72 h on).
async fn memory_per_recipient(thousands: u64) {
    assert!(
        !in_memory(),
        "the memory mode measures Redis: drop --memory"
    );
    let n = thousands.max(1) * 1000;
    let o = run(Scenario {
        delete: true,
        ..Scenario::unpaced("memory", n)
    })
    .await;
    let [
        Some(before),
        Some(pending),
        Some(sent),
        Some(deleted),
        Some(lookups),
    ] = o.memory
    else {
        println!("Redis memory could not be read (INFO memory)");
        return;
    };
    let each = |bytes: u64| bytes.saturating_sub(before) as f64 / n as f64;
    println!(
        "Redis memory per recipient, one campaign of {n} sent unpaced ({} accepted), bytes \
         (= MB per million): {:.0} with its jobs pending; {:.0} once all were sent (records \
         with message ids, message-id lookups, pair-spacing keys); {:.0} after the campaign \
         was deleted (the lookups, kept 31 days, and the pair-spacing keys, 72 h); {:.0} once \
         the pair-spacing keys were gone too (the lookups alone); deleting the campaign took \
         {:.2} s",
        o.accepted,
        each(pending),
        each(sent),
        each(deleted),
        each(lookups),
        o.delete_took.unwrap_or_default().as_secs_f64(),
    );
}

/// A thread that spins until dropped.
struct Hog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for i in 0..10_000u64 {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i),
                    );
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU seconds this process has used.
fn cpu() -> f64 {
    herald_benches::cpu_of("self")
}

/// Sender runs (unless `--pairs=N` says otherwise), each between two baseline runs and its
/// ratio taken against their mean: a shared machine's speed drifts between runs seconds
/// apart by more than the difference measured.
const UNPACED_PAIRS: usize = 3;

async fn unpaced(pairs: usize) {
    let mut ratios = Vec::with_capacity(pairs);
    let mut costs = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let (rate, cost) = unpaced_pair().await;
        ratios.push(rate);
        costs.extend(cost);
    }
    println!(
        "unpaced, against the client alone over {pairs} pairs: {}",
        summary(&mut ratios)
    );
    if !costs.is_empty() {
        println!(
            "unpaced, by CPU per send (the client and the simulator over the sender, Redis and \
             the simulator; idle cores left out): {}",
            summary(&mut costs)
        );
    }
}

/// The median of some ratios, their mean with its 95% confidence interval (Student's t), and
/// each one.
fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let each = v
        .iter()
        .map(|r| format!("{r:.2}×"))
        .collect::<Vec<_>>()
        .join(", ");
    let (mean, half) = mean_interval(v);
    let spread = half.map_or_else(String::new, |h| {
        format!(" ± {h:.2} (95% interval of the mean)")
    });
    format!(
        "median {:.2}×, mean {mean:.2}×{spread}; each: {each}",
        median(v)
    )
}

/// The median of sorted values (the mean of the middle two of an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// The mean of some values and the half-width of its two-sided 95% confidence interval by
/// Student's t (none for fewer than two values).
fn mean_interval(v: &[f64]) -> (f64, Option<f64>) {
    /// Two-sided 95% quantiles of Student's t for 1..=30 degrees of freedom (beyond: 1.96).
    const T95: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 2).copied().unwrap_or(1.96);
    (mean, Some(t * (var / n as f64).sqrt()))
}

/// What the bare client did in one baseline run.
struct Baseline {
    rate: f64,
    cpu_us: f64,
    sim_us: f64,
}

/// The client alone: the same client, the same bodies, 256 in flight, no store.
async fn baseline(n: u64) -> Baseline {
    let sim = sim(&sim_config(10_000_000, 0, 0, 0.0));
    let client = client(sim.url());
    let body = |i: u64| {
        format!(
            r#"{{"messaging_product":"whatsapp","to":"{}","biz_opaque_callback_data":"b{i}","type":"template","template":{{"name":"order_update","language":{{"code":"en_US"}},"components":[{{"type":"body","parameters":[{{"type":"text","text":"name{i}"}}]}}]}}}}"#,
            447_700_000_000 + i
        )
    };
    let started = Instant::now();
    let c0 = cpu();
    let a0 = allocations();
    let m0 = herald_benches::machine_ticks();
    let sim_pid = sim.pid().to_string();
    let s0 = herald_benches::cpu_of(&sim_pid);
    let next = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(InFlight::default());
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (client, next, in_flight) = (client.clone(), next.clone(), in_flight.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let _request = in_flight.enter();
                let _ = client.send_raw(PNID, body(i)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let raw = n as f64 / started.elapsed().as_secs_f64();
    let raw_idle = herald_benches::idle_share(m0, herald_benches::machine_ticks());
    let raw_cpu_us = (cpu() - c0) * 1e6 / n as f64;
    let raw_allocs = allocs_each(a0, allocations(), n);
    let raw_sim_us = (herald_benches::cpu_of(&sim_pid) - s0) * 1e6 / n as f64;
    let stats = sim.stats().await.expect("oracle");
    drop(sim);
    println!(
        "baseline, client alone (no store), 256 in flight: {raw:.0} sends/s ({} accepted, \
         {raw_cpu_us:.1} µs CPU each{raw_allocs}, the simulator {raw_sim_us:.1} µs; {:.0} requests \
         in flight on average, the cores {:.0}% idle)",
        stats.accepted,
        in_flight.mean(),
        raw_idle * 100.0
    );
    Baseline {
        rate: raw,
        cpu_us: raw_cpu_us,
        sim_us: raw_sim_us,
    }
}

/// One sender run between two baseline runs; answers the sender's rate over the baselines'
/// mean (a machine whose speed drifts during the pair moves both baselines, one each way),
/// and (where Redis's CPU was read) the CPU a send costs the client and the simulator over
/// what it costs the sender, Redis and the simulator: the same comparison without the cores
/// either run left idle.
async fn unpaced_pair() -> (f64, Option<f64>) {
    let n = 100_000;
    let before = baseline(n).await;
    let o = run(Scenario::unpaced("unpaced", n)).await;
    let after = baseline(n).await;
    let raw = f64::midpoint(before.rate, after.rate);
    let raw_us = f64::midpoint(before.cpu_us + before.sim_us, after.cpu_us + after.sim_us);
    let rate = o.accepted as f64 / o.elapsed.as_secs_f64();
    let cost = o
        .redis_cpu_us_per_request
        .map(|redis| raw_us / (o.cpu_us_per_request + redis + o.sim_cpu_us_per_request));
    println!(
        "unpaced sender, one process, claims and settles in {}: {rate:.0} sends/s \
         ({} accepted in {:.2} s, duplicates {}, {:.1} µs CPU each{}, {}, the simulator \
         {:.1} µs, {} woke late and moved, {} gave their time up; {} while the queue held \
         a second's work, the requests spread over {:.2} s; {:.0} requests in flight on \
         average, the cores {:.0}% idle); {:.2}× the client alone (the mean of the runs \
         before and after)",
        store_name(),
        o.accepted,
        o.elapsed.as_secs_f64(),
        o.duplicates,
        o.cpu_us_per_request,
        o.allocs_per_request,
        o.redis_cpu_us_per_request.map_or_else(
            || if in_memory() {
                "no Redis"
            } else {
                "Redis ? µs"
            }
            .to_owned(),
            |us| format!("Redis {us:.1} µs")
        ),
        o.sim_cpu_us_per_request,
        o.moved,
        o.late,
        o.steady_rate
            .map_or_else(|| "?".to_owned(), |r| format!("{r:.0}/s")),
        o.span.as_secs_f64(),
        o.in_flight,
        o.idle * 100.0,
        rate / raw
    );
    (rate / raw, cost)
}

/// The simulator in a child process (this program re-run), so that it shares no allocator,
/// page tables or runtime with the sender it measures.
fn sim(cfg: &SimConfig) -> SimProcess {
    let exe = std::env::current_exe().expect("own path");
    SimProcess::start(&exe, &[], cfg).expect("simulator child")
}

fn sim_config(mps: u32, latency_ms: u64, jitter_ms: u64, error_5xx: f64) -> SimConfig {
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    };
    cfg.phone_numbers[0].mps = mps;
    cfg.faults.latency_ms = latency_ms;
    cfg.faults.jitter_ms = jitter_ms;
    cfg.faults.error_5xx = error_5xx;
    cfg
}

fn client(url: &str) -> Client {
    Client::new(&ClientConfig {
        api_base: url.to_owned(),
        access_token: Secret::new("sim-access-token"),
        max_idle_per_host: 1024,
        ..ClientConfig::default()
    })
    .expect("client")
}

/// Whether the sender runs on the in-process store instead of Redis (`--memory`).
fn in_memory() -> bool {
    std::env::args().any(|a| a == "--memory")
}

/// Where the sender's store is, as the report names it.
fn store_name() -> &'static str {
    if in_memory() {
        "the memory store"
    } else {
        "Redis"
    }
}

async fn run(s: Scenario) -> Outcome {
    if in_memory() {
        return run_on(s, Arc::new(herald_store::memory::MemoryStore::new()), None).await;
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // As long as the default `herald`, so that key sizes (and the memory mode's figures) are
    // those of a deployment: one of a million, enough to keep concurrent runs apart.
    let prefix = format!("h{:05x}", rand::random::<u32>() & 0xf_ffff);
    let store = Arc::new(
        RedisStore::connect(&RedisConfig::new(url.clone(), prefix.clone()))
            .await
            .expect("Redis (set REDIS_URL)"),
    );
    let delete = s.delete;
    let mut outcome = run_on(s, store.clone(), Some(url.clone())).await;
    if delete {
        // The pair-spacing keys as they expire (72 h): what the message-id lookups hold alone.
        unlink_matching(&url, &format!("{prefix}:pair:*")).await;
        outcome.memory[4] = herald_benches::redis_memory(&url).await;
    }
    let _ = store.purge_namespace().await;
    outcome
}

/// Deletes the keys matching `pattern` on the Redis at `url`.
async fn unlink_matching(url: &str, pattern: &str) {
    let keys = herald_store_redis::testing::keys_matching(url, pattern).await;
    let client = redis::Client::open(url).expect("REDIS_URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for chunk in keys.chunks(10_000) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .expect("unlink");
    }
}

/// One scenario on `store`; `redis`, the URL of the Redis it is on (whose CPU is read).
async fn run_on<S: Store + 'static>(s: Scenario, store: Arc<S>, redis: Option<String>) -> Outcome {
    let sim = sim(&sim_config(
        s.sim_mps,
        s.latency_ms,
        s.jitter_ms,
        s.error_5xx,
    ));
    let api = sim.url().to_owned();
    let spec = serde_json::from_value(serde_json::json!({
        "name": s.name,
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}}
    }))
    .expect("spec");
    // Redis's memory, read for the scenarios that delete their campaign (the memory mode).
    let memory = async || match (&redis, s.delete) {
        (Some(url), true) => herald_benches::redis_memory(url).await,
        _ => None,
    };
    let mem_before = memory().await;
    let id = store
        .create_campaign(NewCampaign {
            spec,
            phone_number_id: PNID.into(),
            template: Some("order_update:en_US".into()),
        })
        .await
        .expect("campaign")
        .id;
    let mut i = 0;
    while i < s.recipients {
        let end = (i + 5000).min(s.recipients);
        let batch: Vec<Recipient> = (i..end)
            .map(|k| {
                Recipient::new(
                    PhoneE164::from_u64(447_700_000_000 + k).expect("phone"),
                    Vars::from_values([format!("name{k}")]),
                )
            })
            .collect();
        store.enqueue_batch(&id, &batch).await.expect("enqueue");
        i = end;
    }
    let mem_pending = memory().await;
    let cfg = SenderConfig {
        mps: s.sender_mps,
        max_in_flight: s.max_in_flight,
        window_guard: std::env::var("WINDOW_GUARD_MS")
            .ok()
            .and_then(|m| m.parse::<f64>().ok())
            .map_or(SenderConfig::default().window_guard, |ms| {
                Duration::from_secs_f64(ms / 1000.0)
            }),
        ..SenderConfig::default()
    };
    let departures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let in_flight = Arc::new(InFlight::default());
    let recording = Recording {
        inner: client(&api),
        departures: departures.clone(),
        in_flight: in_flight.clone(),
    };
    let sender = Sender::new(store.clone(), recording, cfg).expect("config");
    let stop = CancellationToken::new();
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let sim_pid = sim.pid().to_string();
    let redis_cpu = async || match &redis {
        Some(url) => herald_benches::redis_cpu(url).await,
        None => None,
    };
    let (r0, s0) = (redis_cpu().await, herald_benches::cpu_of(&sim_pid));
    let started = Instant::now();
    let c0 = cpu();
    let a0 = allocations();
    let m0 = herald_benches::machine_ticks();
    let handle = tokio::spawn(sender.run(stop.clone()));
    // Once a second: how many requests the simulator has seen, and whether the queue still
    // holds at least a second of work (the steady state the rate is measured over).
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut next_sample = started + Duration::from_secs(1);
    let mut accepted_99 = None;
    let mut polls = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        polls += 1;
        if accepted_99.is_none() && polls.is_multiple_of(10) {
            let st = store.stats(&id).await.expect("stats");
            if st.accepted * 100 >= s.recipients * 99 {
                accepted_99 = Some(started.elapsed());
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let seen = sim.stats().await.expect("oracle").requests;
            let st = store.stats(&id).await.expect("stats");
            if st.pending >= u64::from(s.sender_mps.min(1000)) {
                samples.push((Instant::now(), seen));
            }
        }
        if store.campaign(&id).await.expect("campaign").status == CampaignStatus::Completed {
            break;
        }
    }
    let elapsed = started.elapsed();
    let idle = herald_benches::idle_share(m0, herald_benches::machine_ticks());
    let cpu_us = (cpu() - c0) * 1e6;
    let a1 = allocations();
    let redis_us = match (r0, redis_cpu().await) {
        (Some(a), Some(b)) => Some((b - a) * 1e6),
        _ => None,
    };
    let sim_us = (herald_benches::cpu_of(&sim_pid) - s0) * 1e6;
    stop.cancel();
    let report = handle.await.unwrap_or_default();
    let stats = store.stats(&id).await.expect("stats");
    let o = sim.stats().await.expect("oracle");
    drop(sim);
    let mem_sent = memory().await;
    let (mem_deleted, delete_took) = if s.delete {
        let t = Instant::now();
        store
            .delete_campaign(&id)
            .await
            .expect("delete the campaign");
        let took = t.elapsed();
        (memory().await, Some(took))
    } else {
        (None, None)
    };
    let n = o.phone_numbers.get(PNID).cloned().unwrap_or_default();
    let steady_rate = match (samples.get(1), samples.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64()),
        _ => None,
    };
    Outcome {
        elapsed,
        steady_rate,
        accepted: stats.accepted,
        requests: n.requests,
        span: Duration::from_micros(n.request_span_us.max(1)),
        max_1s: n.max_requests_1s,
        max_100ms: n.max_requests_100ms,
        throttled: o.rejected.get("130429").copied().unwrap_or(0),
        duplicates: o.duplicate_callbacks.len(),
        cpu_us_per_request: cpu_us / n.requests.max(1) as f64,
        allocs_per_request: allocs_each(a0, a1, n.requests),
        redis_cpu_us_per_request: redis_us.map(|us| us / n.requests.max(1) as f64),
        sim_cpu_us_per_request: sim_us / n.requests.max(1) as f64,
        late: report.late,
        moved: report.moved,
        departed_late: report.departed_late,
        answered_late: report.answered_late,
        accepted_99,
        max_departures_1s: {
            let mut d = departures.lock().map(|d| d.clone()).unwrap_or_default();
            d.sort();
            busiest(&d, Duration::from_secs(1))
        },
        idle,
        in_flight: in_flight.mean(),
        memory: [mem_before, mem_pending, mem_sent, mem_deleted, None],
        delete_took,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_students_for_small_samples() {
        // Mean 0.6, sample standard deviation 0.1, three values: t(2) = 4.303.
        let (mean, half) = mean_interval(&[0.5, 0.6, 0.7]);
        assert!((mean - 0.6).abs() < 1e-12);
        let half = half.expect("an interval for three values");
        assert!((half - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-9, "{half}");
        assert_eq!(mean_interval(&[0.6]).1, None);
    }

    #[test]
    fn the_median_of_an_even_count_is_between_the_middle_two() {
        assert!((median(&[0.4, 0.5, 0.7, 0.9]) - 0.6).abs() < 1e-12);
        assert!((median(&[0.4, 0.5, 0.7]) - 0.5).abs() < 1e-12);
        assert_eq!(median(&[]), 0.0);
    }
}
