//! Simulator throughput: accepted sends per second with the simulator on ONE core (a
//! current-thread runtime on its own thread), body validation and status webhooks on (sent,
//! delivered, read, delivered to a receiver that answers 200), and the load generator plus
//! the webhook receiver on the other core. The load is `wrk` (Debian's package) with
//! `benches/wrk/send.lua`: template messages to distinct recipients over 64 keep-alive
//! connections.
//!
//! `cargo run --release -p herald-benches --bin sim [-- SECONDS]`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_sim::{Sim, SimConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    // The webhook receiver: answers 200 to everything, counts statuses it got.
    let received = Arc::new(AtomicU64::new(0));
    let webhook_addr = client_rt.block_on(async {
        let received = received.clone();
        let app = axum::Router::new().route(
            "/webhook",
            axum::routing::post(move |body: bytes::Bytes| {
                let received = received.clone();
                async move {
                    let n = body.windows(9).filter(|w| w == b"\"status\":").count();
                    received.fetch_add(n as u64, Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });

    // The simulator, alone on one core.
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    };
    cfg.phone_numbers[0].mps = 10_000_000;
    cfg.webhooks.url = format!("http://{webhook_addr}/webhook");
    cfg.webhooks.sent_delay_ms = 10;
    cfg.webhooks.delivered_delay_ms = 10;
    cfg.webhooks.read_delay_ms = 10;
    cfg.webhooks.delivered_probability = 1.0;
    cfg.webhooks.read_probability = 1.0;
    cfg.webhooks.batch_max = 100;
    let (sim_tx, sim_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let sim_stop = stop.clone();
    let sim_thread = std::thread::Builder::new()
        .name("sim-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let sim = Sim::start(cfg).await.expect("sim");
                sim_tx.send(sim.url()).expect("send url");
                while !sim_stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Let the last webhooks go out.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let stats = sim.stats();
                sim.shutdown().await;
                stats
            })
        })
        .expect("spawn");
    let url = sim_rx.recv().expect("sim started");

    // The load: wrk (C, one thread, 64 connections) with benches/wrk/send.lua, so the load
    // generator costs far less CPU than the simulator it measures.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/send.lua");
    let started = Instant::now();
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{seconds}s"), "-s", script, &url])
        .output();
    let elapsed = started.elapsed().as_secs_f64();
    match out {
        Ok(o) => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => {
            println!("cannot run wrk ({e}); install Debian's wrk package");
            stop.store(true, Ordering::Relaxed);
            return;
        }
    }

    stop.store(true, Ordering::Relaxed);
    let stats = sim_thread.join().expect("sim thread");
    let accepted = stats.accepted;
    println!(
        "simulator on one core: {:.0} accepted sends/s ({accepted} in {elapsed:.1} s, {} rejected)",
        accepted as f64 / elapsed,
        stats.rejected.values().sum::<u64>()
    );
    println!(
        "webhooks: {} POSTs acknowledged carrying {} statuses ({} counted by the receiver); oracle accepted {}, duplicates {}",
        stats.webhooks.acknowledged,
        stats.webhooks.statuses_delivered,
        received.load(Ordering::Relaxed),
        stats.accepted,
        stats.duplicate_callbacks.len()
    );
}
