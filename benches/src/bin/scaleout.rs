//! Scale-out: several worker processes sending several phone numbers' campaigns together,
//! against a simulator that enforces each number's rate over a strict rolling second.
//!
//! One campaign per phone number, `MPS × SECONDS` recipients each, all started at once; the
//! run is made with one worker process and then with `WORKERS`, each worker this program
//! re-run with a [`Sender`] for every number. Reported per run: when the last campaign
//! completed against the ideal `SECONDS`, the rate all numbers reached together against
//! `NUMBERS × MPS`, the busiest rolling second of any number (never above its `MPS`), 130429s
//! and duplicates (the simulator's oracle), and the CPU the workers used per send.
//!
//! The simulator sends its status webhooks to a receiver and a reconciler in this process, as
//! Meta would to Herald's. With `--kill`, one worker is SIGKILLed a third of the way through
//! (`--kill=0.9`: nine tenths of the ideal time; runs with several workers only): its unstarted claims wait for their lease to end, its
//! started ones go in doubt and are settled by their webhooks (or, past a 10 s grace here,
//! resent once), and the report adds when 99% of the recipients had been accepted.
//! `HERALD_SCALEOUT_LEASE_MS` sets the workers' lease (default: the sender's).
//!
//! `cargo run --release -p herald-benches --bin scaleout [-- redis|cluster [WORKERS [NUMBERS
//! [MPS [SECONDS]]]] [--kill[=F]]]` (defaults: redis 3 4 250 20). REDIS_URL (default
//! redis://127.0.0.1:6379) is the standalone server; REDIS_CLUSTER_URL names a cluster's
//! nodes, else a private six-node cluster is started. Everything is written under a random
//! prefix and deleted after.

#![allow(clippy::print_stdout)]

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_benches::{cpu_of, new_campaign_on};
use herald_cloudapi::{Client, ClientConfig, Secret};
use herald_core::{CampaignAction, CampaignId, PhoneE164, Recipient, Vars};
use herald_reconciler::{ConsumerConfig, ReceiverConfig, Reconciler, ReconcilerConfig};
use herald_sender::{Sender, SenderConfig};
use herald_sim::{SimConfig, SimProcess};
use herald_store::Store;
use herald_store_redis::testing::TestCluster;
use herald_store_redis::{RedisConfig, RedisStore};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set in a worker's environment: `<cluster 0|1> <mps> <sim url> <store url>` and the prefix
/// in [`PREFIX`].
const WORKER: &str = "HERALD_SCALEOUT_WORKER";
const PREFIX: &str = "HERALD_SCALEOUT_PREFIX";

/// How to reach the store, shared by the parent and its workers.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    cluster: bool,
    prefix: String,
}

impl Target {
    async fn connect(&self) -> RedisStore {
        let mut cfg = RedisConfig::new(self.url.clone(), self.prefix.clone());
        cfg.cluster = self.cluster;
        RedisStore::connect(&cfg)
            .await
            .expect("connect to the store")
    }
}

fn pnid(n: usize) -> String {
    format!("10654035224{n:04}")
}

fn main() {
    herald_sim::process::serve_if_asked();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var(WORKER) {
        rt.block_on(worker(&spec));
        return;
    }
    // `--kill` a third of the way through; `--kill=F` at that fraction of the ideal time.
    let kill = std::env::args()
        .filter_map(|a| match a.strip_prefix("--kill") {
            Some("") => Some(1.0 / 3.0),
            Some(f) => f.strip_prefix('=').and_then(|f| f.parse::<f64>().ok()),
            None => None,
        })
        .next_back();
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--kill"));
    let backend = args.next().unwrap_or_else(|| "redis".into());
    let mut num = |default: u64| {
        args.next()
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let (workers, numbers, mps, secs) = (num(3), num(4), num(250), num(20));
    let (workers, numbers) = (workers as usize, numbers as usize);
    let mps = u32::try_from(mps).expect("mps");
    let mut _private = None;
    let (url, cluster) = match backend.as_str() {
        "redis" => (
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            false,
        ),
        "cluster" => match std::env::var("REDIS_CLUSTER_URL") {
            Ok(u) => (u, true),
            Err(_) => {
                let c = TestCluster::start();
                let u = c.url();
                _private = Some(c);
                (u, true)
            }
        },
        other => panic!("unknown backend {other:?}: redis or cluster"),
    };
    println!(
        "{backend}: {numbers} phone numbers at {mps} MPS, {} recipients each ({secs} s at the full rate)",
        u64::from(mps) * secs
    );
    let runs: Vec<usize> = if kill.is_some() {
        vec![workers.max(2)]
    } else {
        vec![1, workers]
    };
    for w in runs {
        let target = Target {
            url: url.clone(),
            cluster,
            prefix: format!("herald-bench-scaleout-{:016x}", rand::random::<u64>()),
        };
        rt.block_on(run(&target, w, numbers, mps, secs, kill));
    }
}

/// One run: campaigns created, `workers` processes started, waited on until every campaign
/// completes; the figures printed.
async fn run(
    target: &Target,
    workers: usize,
    numbers: usize,
    mps: u32,
    secs: u64,
    kill: Option<f64>,
) {
    let store = Arc::new(target.connect().await);
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    };
    // Status webhooks to a receiver and two reconcilers here, as Meta's to Herald's.
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    cfg.webhooks.url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    let app = herald_reconciler::routes(
        store.clone(),
        ReceiverConfig {
            verify_token: Secret::new("v"),
            app_secret: Secret::new(cfg.app_secret.clone()),
        },
    );
    let served = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(served.cancelled_owned())
            .await;
    });
    for n in 0..2 {
        let rec = Arc::new(Reconciler::new(store.clone(), ReconcilerConfig::default()));
        let consumer = ConsumerConfig {
            name: format!("scaleout{n}"),
            ..ConsumerConfig::default()
        };
        tokio::spawn(herald_reconciler::run(rec, consumer, stop.clone()));
    }
    let template = cfg.phone_numbers[0].clone();
    cfg.phone_numbers = (0..numbers)
        .map(|n| herald_sim::config::PhoneNumber {
            id: pnid(n),
            mps,
            ..template.clone()
        })
        .collect();
    let exe = std::env::current_exe().expect("own path");
    let sim = SimProcess::start(&exe, &[], &cfg).expect("simulator child");
    let per_number = u64::from(mps) * secs;
    let mut ids: Vec<CampaignId> = Vec::new();
    for n in 0..numbers {
        let id = new_campaign_on(&*store, "scaleout", &pnid(n)).await;
        let base = 447_700_000_000 + (n as u64) * 10_000_000;
        let mut i = 0;
        while i < per_number {
            let end = (i + 5000).min(per_number);
            let batch: Vec<Recipient> = (i..end)
                .map(|k| {
                    Recipient::new(
                        PhoneE164::from_u64(base + k).expect("phone"),
                        Vars::from_values([format!("name{k}")]),
                    )
                })
                .collect();
            store.enqueue_batch(&id, &batch).await.expect("enqueue");
            i = end;
        }
        ids.push(id);
    }
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .env(
                    WORKER,
                    format!(
                        "{} {mps} {} {}",
                        u8::from(target.cluster),
                        sim.url(),
                        target.url
                    ),
                )
                .env(PREFIX, &target.prefix)
                .spawn()
                .expect("worker process")
        })
        .collect();
    // The workers connect and find nothing running; then everything starts at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    for id in &ids {
        store
            .transition(id, CampaignAction::Start, None)
            .await
            .expect("start");
    }
    let total = per_number * numbers as u64;
    let mut killed = false;
    let mut in_doubt: u64;
    let mut accepted_99 = None;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(at) = kill
            && !killed
            && started.elapsed() >= Duration::from_secs(secs).mul_f64(at)
        {
            let _ = children[0].kill();
            let _ = children[0].wait();
            killed = true;
        }
        // Done when every job is settled or in doubt: a job a killed worker started whose
        // request never left waits for statuses of messages sent a grace after it, which the
        // end of a campaign does not bring (never resent blind); it is reported apart.
        let mut done = true;
        let mut accepted = 0;
        in_doubt = 0;
        for id in &ids {
            let st = store.stats(id).await.expect("stats");
            done &= st.pending == 0 && st.in_flight == 0;
            accepted += st.accepted;
            in_doubt += st.in_doubt;
        }
        if accepted_99.is_none() && accepted * 100 >= total * 99 {
            accepted_99 = Some(started.elapsed());
        }
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs * 10 + 60),
            "the campaigns did not finish"
        );
    }
    let elapsed = started.elapsed();
    let cpu: f64 = children
        .iter()
        .skip(usize::from(killed))
        .map(|c| cpu_of(&c.id().to_string()))
        .sum();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let o = sim.stats().await.expect("oracle");
    drop(sim);
    stop.cancel();
    let mut accepted = 0;
    for id in &ids {
        accepted += store.stats(id).await.expect("stats").accepted;
    }
    let _ = store.purge_namespace().await;
    let busiest = o
        .phone_numbers
        .values()
        .map(|n| n.max_requests_1s)
        .max()
        .unwrap_or(0);
    let rate = accepted as f64 / elapsed.as_secs_f64();
    if killed {
        let at_99 = accepted_99.unwrap_or(elapsed).as_secs_f64();
        println!(
            "one of {workers} workers SIGKILLed at {:.1} s: 99% accepted after {at_99:.2} s \
             ({:.2}× the ideal), all settled or in doubt after {:.2} s ({:.2}×), {in_doubt} \
             left in doubt",
            secs as f64 * kill.unwrap_or(0.0),
            at_99 / secs as f64,
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() / secs as f64
        );
    }
    println!(
        "{workers} worker process(es): {accepted}/{total} accepted in {:.2} s ({:.2}× the ideal \
         {secs} s); {rate:.0} sends/s together ({:.1}% of {numbers} × {mps}); busiest rolling \
         second of any number {busiest} (limit {mps}); 130429: {}; duplicates: {}; worker CPU \
         {:.1} µs per send",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / secs as f64,
        100.0 * rate / f64::from(mps * numbers as u32),
        o.rejected.get("130429").copied().unwrap_or(0),
        o.duplicate_callbacks.len(),
        cpu * 1e6 / accepted.max(1) as f64,
    );
}

/// A worker process: a sender for every number, until killed.
async fn worker(spec: &str) {
    let mut it = spec.splitn(4, ' ');
    let cluster = it.next() == Some("1");
    let mps: u32 = it.next().and_then(|m| m.parse().ok()).expect("mps");
    let api = it.next().expect("simulator url").to_owned();
    let url = it.next().expect("store url").to_owned();
    let target = Target {
        url,
        cluster,
        prefix: std::env::var(PREFIX).expect("prefix"),
    };
    let store = Arc::new(target.connect().await);
    let client = Client::new(&ClientConfig {
        api_base: api,
        access_token: Secret::new("sim-access-token"),
        max_idle_per_host: 1024,
        ..ClientConfig::default()
    })
    .expect("client");
    let mut cfg = SenderConfig {
        mps,
        // Jobs a killed worker left in doubt with no webhook (their request never left)
        // are resent once statuses of later messages show the webhooks flow.
        in_doubt_grace: Duration::from_secs(10),
        ..SenderConfig::default()
    };
    if let Some(ms) = std::env::var("HERALD_SCALEOUT_LEASE_MS")
        .ok()
        .and_then(|m| m.parse().ok())
    {
        cfg.lease = Duration::from_millis(ms);
    }
    let sender = Sender::new(store, client, cfg).expect("config");
    sender.run(CancellationToken::new()).await;
}
