//! Webhooks through the receiver and the reconciler to settled stats, on one machine:
//! wrk (two threads, 64 connections) POSTs signed status deliveries to Herald's receiver,
//! which verifies and stores each; two reconcilers apply them to real Redis jobs. Runs twice:
//! deliveries of 1 status and of 50.
//!
//! Reports POSTs/s acknowledged and their latency (wrk), and statuses/s applied: from the
//! start of the load until every stored delivery has been applied.
//!
//! `cargo run --release -p herald-benches --bin webhooks [-- SECONDS]` (REDIS_URL, default
//! redis://127.0.0.1:6379; Debian's wrk).

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_cloudapi::Secret;
use herald_core::{CampaignAction, WaMessageId};
use herald_reconciler::{ConsumerConfig, ReceiverConfig, Reconciler, ReconcilerConfig};
use herald_store::{ClaimRequest, JobRef, LeaseToken, Outcome, Settle, Store};
use herald_store_redis::{RedisConfig, RedisStore};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-app-secret";
const JOBS: u64 = 100_000;

/// Accepted jobs to point statuses at; returns their callback ids and message ids.
async fn accepted_jobs(store: &RedisStore) -> Vec<(String, String)> {
    let id = herald_benches::new_campaign(store, "webhooks").await;
    for chunk in herald_benches::recipients(0..JOBS).chunks(1000) {
        store.enqueue_batch(&id, chunk).await.expect("enqueue");
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .expect("start");
    let mut out = Vec::new();
    let req = ClaimRequest {
        phone_number_id: None,
        max: 1000,
        lease: Duration::from_secs(600),
        token: LeaseToken(1),
    };
    loop {
        let jobs = store.claim(&req).await.expect("claim");
        if jobs.is_empty() {
            return out;
        }
        store
            .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
            .await
            .expect("start");
        let settles: Vec<Settle> = jobs
            .iter()
            .map(|j| Settle {
                job: j.into(),
                outcome: Outcome::Accepted {
                    message_id: WaMessageId::new(&format!("wamid.B{}", j.id.seq)).expect("id"),
                },
            })
            .collect();
        store.settle(&settles).await.expect("settle");
        out.extend(
            jobs.iter()
                .map(|j| (j.id.to_callback_data(), format!("wamid.B{}", j.id.seq))),
        );
    }
}

/// Writes signed deliveries of `per` statuses each: every job gets sent, delivered, read.
fn write_bodies(jobs: &[(String, String)], per: usize) -> (std::path::PathBuf, u64) {
    let path = std::env::temp_dir().join(format!("herald-webhooks-{per}.tsv"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
    let mut statuses = Vec::new();
    for status in ["sent", "delivered", "read"] {
        for (cb, wamid) in jobs {
            statuses.push(format!(
                r#"{{"id":"{wamid}","status":"{status}","timestamp":"1700000000","recipient_id":"","biz_opaque_callback_data":"{cb}","pricing":{{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}}}}"#
            ));
        }
    }
    let mut n = 0;
    for chunk in statuses.chunks(per) {
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"106540352242922"}},"statuses":[{}]}}}}]}}]}}"#,
            chunk.join(",")
        );
        let sig = herald_cloudapi::signature::sign(SECRET.as_bytes(), body.as_bytes());
        writeln!(f, "{sig}\t{body}").expect("write");
        n += 1;
    }
    (path, n)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    for per in [1usize, 50] {
        let prefix = format!("herald-bench-wh-{:08x}", rand::random::<u32>());
        let store = Arc::new(
            RedisStore::connect(&RedisConfig::new(url.clone(), prefix))
                .await
                .expect("connect"),
        );
        println!("deliveries of {per} status(es): preparing {JOBS} accepted jobs…");
        let jobs = accepted_jobs(&store).await;
        let (file, deliveries) = write_bodies(&jobs, per);

        let app = herald_reconciler::routes(
            store.clone(),
            ReceiverConfig {
                verify_token: Secret::new("v"),
                app_secret: Secret::new(SECRET),
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(server_shutdown.cancelled_owned())
                .await;
        });
        let mut consumers = Vec::new();
        for n in 0..2 {
            let rec = Arc::new(Reconciler::new(store.clone(), ReconcilerConfig::default()));
            let cfg = ConsumerConfig {
                name: format!("bench{n}"),
                ..ConsumerConfig::default()
            };
            consumers.push(tokio::spawn(herald_reconciler::run(
                rec,
                cfg,
                shutdown.clone(),
            )));
        }

        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/webhook.lua");
        let started = Instant::now();
        let wrk = tokio::process::Command::new("wrk")
            .args([
                "-t2",
                "-c64",
                &format!("-d{seconds}s"),
                "--latency",
                "-s",
                script,
                &format!("http://{addr}"),
            ])
            .env("HERALD_WEBHOOK_BODIES", &file)
            .output()
            .await;
        let load_secs = started.elapsed().as_secs_f64();
        let out = match wrk {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => {
                println!("cannot run wrk ({e}); install Debian's wrk package");
                return;
            }
        };
        let requests: f64 = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        let p99 = out
            .lines()
            .find(|l| l.trim_start().starts_with("99%"))
            .unwrap_or("99% ?")
            .trim()
            .to_owned();
        let non2xx = out
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .map(str::trim)
            .unwrap_or("Non-2xx: 0")
            .to_owned();
        // Wait for the reconcilers to apply everything that was stored.
        let stored = requests * load_secs;
        loop {
            let left = store
                .read_webhooks("bench-probe", 1, Duration::from_millis(1))
                .await
                .expect("probe");
            // The probe consumer must not eat deliveries: give back what it took.
            if !left.is_empty() {
                let bodies: Vec<&[u8]> = left.iter().map(|e| e.body.as_slice()).collect();
                Reconciler::new(store.clone(), ReconcilerConfig::default())
                    .apply(&bodies)
                    .await
                    .expect("apply");
                store
                    .ack_webhooks(&left.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
                    .await
                    .expect("ack");
                continue;
            }
            if store
                .pending_webhooks("bench0", 1)
                .await
                .expect("p")
                .is_empty()
                && store
                    .pending_webhooks("bench1", 1)
                    .await
                    .expect("p")
                    .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let applied_secs = started.elapsed().as_secs_f64();
        shutdown.cancel();
        for c in consumers {
            let _ = c.await;
        }
        let statuses = stored * per as f64;
        println!(
            "  receiver: {requests:.0} POSTs/s acknowledged, latency {p99}, {non2xx} ({deliveries} distinct bodies cycled)"
        );
        println!(
            "  reconciler: {:.0} statuses/s applied ({:.0} statuses stored in {load_secs:.1} s, all applied after {applied_secs:.1} s)",
            statuses / applied_secs,
            statuses
        );
        store.purge_namespace().await.expect("clean up");
        let _ = std::fs::remove_file(file);
    }
}
