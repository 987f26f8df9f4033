//! What kept campaigns cost an idle deployment: `herald serve` (every role) on Redis with no
//! campaign, then with `N` kept (half of them drafts, half cancelled), nothing sending, for
//! `SECONDS` each. With `--waiting`, the `N` are running instead, one recipient each, waiting
//! for a send window that opens in six hours. Reported per run: the process's CPU seconds,
//! its peak resident memory, and Redis's CPU seconds over the same time; then the kept run
//! against the empty one.
//!
//! With `--workers=W`, `W - 1` `herald worker` processes run beside it (a deployment that
//! scales its workers out), and the CPU is theirs and its together, the peak the largest.
//!
//! Everything a process does on a timer shows here: the workers' sweeps (leases, in-doubt
//! jobs, scheduled starts; every 2 s), the index repair (one turn every 25–30 s across the
//! processes), the campaign-metrics exporter (every 5 s), the retention sweep (every 10
//! minutes, when set).
//!
//! `cargo build --release -p herald && cargo run --release -p herald-benches --bin kept [--
//! N [SECONDS] [--waiting] [--workers=W]]` (defaults: 20000 60, one process). It runs the `herald` binary beside its own
//! (`target/release/herald`; `HERALD_BIN` names another, e.g. an older build to compare).
//! REDIS_URL (default redis://127.0.0.1:6379); everything is written under a random prefix
//! and deleted after.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use herald_benches::{cpu_of, new_campaign, redis_cpu};
use herald_core::CampaignAction;
use herald_store::Store;
use herald_store_redis::{RedisConfig, RedisStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One idle run's costs.
#[derive(Debug, Clone, Copy)]
struct Idle {
    cpu_s: f64,
    peak_rss_mib: f64,
    redis_cpu_s: f64,
}

fn herald_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("HERALD_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name("herald")
}

/// Runs `herald serve` and `workers - 1` `herald worker`s under `prefix` for `secs` and
/// reads their costs.
async fn idle(url: &str, prefix: &str, secs: u64, workers: usize) -> Idle {
    let redis_before = redis_cpu(url).await.unwrap_or(0.0);
    let mut children: Vec<_> = (0..workers.max(1))
        .map(|i| start(url, prefix, if i == 0 { "serve" } else { "worker" }))
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut run = Idle {
        cpu_s: 0.0,
        peak_rss_mib: 0.0,
        redis_cpu_s: redis_cpu(url).await.unwrap_or(0.0) - redis_before,
    };
    for child in &mut children {
        let pid = child.id().to_string();
        run.cpu_s += cpu_of(&pid);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        run.peak_rss_mib = run.peak_rss_mib.max(peak_kib / 1024.0);
        let exited = child.try_wait().ok().flatten();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            exited.is_none(),
            "a herald process exited early ({exited:?}); run it by hand to see why"
        );
    }
    run
}

/// Starts `herald <command>` under `prefix`, on a port of its own.
fn start(url: &str, prefix: &str, command: &str) -> std::process::Child {
    let bin = herald_bin();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Command::new(&bin)
        .arg(command)
        .env("REDIS_URL", url)
        .env("HERALD_STORE__KEY_PREFIX", prefix)
        .env("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WA_ACCESS_TOKEN", "sim-access-token")
        .env("WA_PHONE_NUMBER_ID", herald_benches::PNID)
        .env("HERALD_WHATSAPP__API_BASE", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} did not start ({e}): build it with `cargo build --release -p herald`",
                bin.display()
            )
        })
}

/// A running campaign of one recipient whose send window (in UTC) opens in six hours.
async fn waiting_campaign(store: &RedisStore, i: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let hour = (now / 3600 + 6) % 24;
    let spec: herald_core::CampaignSpec = serde_json::from_value(serde_json::json!({
        "name": format!("waiting{i}"),
        "message": {"type": "text", "text": {"body": "hello"}},
        "send_window": {"start": format!("{hour:02}:00"), "end": format!("{:02}:00", (hour + 1) % 24), "time_zone": "UTC"}
    }))
    .expect("spec");
    let id = store
        .create_campaign(herald_store::NewCampaign {
            spec,
            phone_number_id: herald_benches::PNID.into(),
            template: None,
        })
        .await
        .expect("create")
        .id;
    let one = herald_benches::recipients(i as u64..i as u64 + 1);
    store.enqueue_batch(&id, &one).await.expect("enqueue");
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let waiting = args.iter().any(|a| a == "--waiting");
    let workers: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--workers="))
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald-kept-{:016x}", rand::random::<u64>());
    let store = RedisStore::connect(&RedisConfig::new(url.clone(), prefix.clone()))
        .await
        .expect("connect to Redis");
    println!(
        "herald serve and {} worker(s), idle, {secs} s a run ({}):",
        workers.max(1) - 1,
        herald_bin().display()
    );
    let empty = idle(&url, &prefix, secs, workers).await;
    for i in 0..n {
        if waiting {
            waiting_campaign(&store, i).await;
            continue;
        }
        let id = new_campaign(&store, &format!("kept{i}")).await;
        if i % 2 == 0 {
            store
                .transition(&id, CampaignAction::Cancel, None)
                .await
                .expect("cancel");
        }
    }
    let kept = idle(&url, &prefix, secs, workers).await;
    store.purge_namespace().await.expect("clean up");
    let what = if waiting { "waiting" } else { "kept" };
    for (what, r) in [
        ("no campaign", empty),
        (&format!("{n} {what}") as &str, kept),
    ] {
        println!(
            "  {what:>12}: herald {:.2} s CPU ({:.1}% of a core), peak {:.0} MiB; Redis {:.2} s CPU",
            r.cpu_s,
            100.0 * r.cpu_s / secs as f64,
            r.peak_rss_mib,
            r.redis_cpu_s
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "  kept / none: herald CPU {:.2}×, peak memory {:.2}×, Redis CPU {:.2}×",
        ratio(kept.cpu_s, empty.cpu_s),
        ratio(kept.peak_rss_mib, empty.peak_rss_mib),
        ratio(kept.redis_cpu_s, empty.redis_cpu_s)
    );
}
