//! `herald demo`: the whole system on one machine with no configuration. The simulator
//! stands in for Meta, a full `serve` runs in this process, a sample campaign goes through
//! the same HTTP API and CLI code a user would use, and the run ends with the campaign's
//! stats next to the simulator's own account of what it received.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald_sim::{Sim, SimConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Roles};
use crate::cli::client::{self, ApiClient, Create};
use crate::config::Config;

/// The sample recipients shipped in `config/` (a few thousand rows, some invalid and some
/// duplicates), built into the binary so the demo runs from anywhere.
const SAMPLE_CSV: &str = include_str!("../../../../config/sample-recipients.csv");
const SAMPLE_MESSAGE: &str = include_str!("../../../../config/sample-message.json");

/// The demo's store: `REDIS_URL` (with `REDIS_PASSWORD`, if set), else a throwaway `redis-server` stopped on drop, else
/// (no Redis installed) the in-memory store, so the demo needs nothing but the toolchain.
struct DemoRedis {
    /// Empty for the in-memory store.
    url: String,
    child: Option<tokio::process::Child>,
    dir: Option<PathBuf>,
}

impl DemoRedis {
    fn in_memory(&self) -> bool {
        self.url.is_empty()
    }

    async fn start(from_env: Option<String>) -> anyhow::Result<Self> {
        if let Some(url) = from_env.filter(|u| !u.is_empty()) {
            return Ok(Self {
                url,
                child: None,
                dir: None,
            });
        }
        let dir = std::env::temp_dir().join(format!("herald-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // A free port can be taken by another process between our look and redis-server's
        // bind: then redis-server exits, and the next port is tried.
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.local_addr()?.port()
            };
            let spawned = tokio::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                // Configured as Herald wants Redis in production (AOF, a memory limit, no
                // eviction), in a temp dir.
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                ])
                .args(["--maxmemory", "1gb", "--maxmemory-policy", "noeviction"])
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Ok(Self {
                        url: String::new(),
                        child: None,
                        dir: None,
                    });
                }
                Err(e) => {
                    return Err(e).context(
                        "REDIS_URL is not set and redis-server could not be started: fix \
                         that, set REDIS_URL, or uninstall redis-server to run the demo in \
                         memory",
                    );
                }
            };
            // Ours once it answers PING while our child still runs.
            let url = format!("redis://127.0.0.1:{port}");
            while matches!(child.try_wait(), Ok(None)) {
                if pings(port).await {
                    return Ok(Self {
                        url,
                        child: Some(child),
                        dir: Some(dir),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        bail!("the throwaway redis-server did not start (five ports tried)")
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG` within a second.
async fn pings(port: u16) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ping = async {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        conn.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 5];
        conn.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(r)) if &r == b"+PONG"
    )
}

impl Drop for DemoRedis {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Options of `herald demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Messages per second (the simulator enforces the same).
    pub mps: u32,
    /// No progress bars (for tests and logs).
    pub quiet: bool,
}

/// How a demo ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoEnd {
    /// Herald's stats match the simulator's oracle.
    Matched,
    /// They do not.
    Mismatched,
    /// Stopped before the campaign ended (a signal): the stats so far were shown.
    Interrupted,
}

/// Runs the demo until its campaign ends or `stop` is cancelled. Whatever ends it, the
/// throwaway Redis and the temporary files go with it.
pub async fn run(opts: &DemoOptions, stop: CancellationToken) -> anyhow::Result<DemoEnd> {
    let mut out = std::io::stdout();
    let started = Instant::now();
    let redis = DemoRedis::start(std::env::var("REDIS_URL").ok()).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    let mut sim_cfg = SimConfig {
        listen: "127.0.0.1:0".into(),
        ..SimConfig::default()
    };
    sim_cfg.phone_numbers[0].mps = opts.mps;
    sim_cfg.webhooks.url = format!("http://{addr}/webhook");
    let sim = Sim::start(sim_cfg.clone())
        .await
        .context("starting the simulator")?;
    let pnid = sim_cfg.phone_numbers[0].id.clone();

    let mut cfg = Config::default();
    cfg.whatsapp.api_base = sim.url();
    cfg.whatsapp.access_token = sim_cfg.access_token.clone().into();
    cfg.whatsapp.app_secret = sim_cfg.app_secret.clone().into();
    cfg.whatsapp.verify_token = "herald-demo".into();
    cfg.whatsapp.phone_number_id = pnid.clone();
    // The template's category comes from the (simulated) template list: the campaign is
    // priced from its upload on.
    cfg.whatsapp.waba_id = sim_cfg.waba_id.clone();
    if redis.in_memory() {
        cfg.store.backend = crate::config::Backend::Memory;
    } else {
        cfg.store.redis_url = redis.url.clone();
        // With REDIS_URL, its password may be beside it, as for `herald serve`.
        if redis.child.is_none() {
            cfg.store.redis_password = std::env::var("REDIS_PASSWORD").unwrap_or_default().into();
        }
    }
    cfg.store.key_prefix = format!("herald-demo-{:08x}", rand::random::<u32>());
    cfg.sender.mps = opts.mps;
    cfg.validate()?;

    let store = if redis.in_memory() {
        "the store in memory (no REDIS_URL, and redis-server is not installed)".to_owned()
    } else {
        format!(
            "Redis at {}{}",
            app::redact_url(&redis.url),
            if redis.child.is_some() {
                " (throwaway)"
            } else {
                ""
            }
        )
    };
    writeln!(
        out,
        "Herald demo: simulator at {}, Herald at http://{addr}, {store}",
        sim.url(),
    )?;
    let serve_stop = CancellationToken::new();
    let mut server = {
        let (cfg, stop) = (cfg.clone(), serve_stop.clone());
        tokio::spawn(async move { app::run(&cfg, Roles::SERVE, listener, stop).await })
    };

    // Herald stopping on its own (it could not start, say) ends the demo with its reason.
    let stopped = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => anyhow::anyhow!("Herald stopped before the campaign ended"),
        Ok(Err(e)) => e.context("Herald stopped"),
        Err(e) => anyhow::anyhow!("Herald stopped: {e}"),
    };
    let mut server_ended = false;
    let mut result = tokio::select! {
        r = campaign(opts, addr, &stop, &mut out) => r,
        r = &mut server => {
            server_ended = true;
            Err(stopped(r))
        }
    };
    // A campaign that failed because Herald had stopped: say why Herald stopped.
    if result.is_err() && !server_ended && server.is_finished() {
        server_ended = true;
        result = Err(stopped((&mut server).await));
    }
    let end = match result {
        Ok(stats) if stop.is_cancelled() => {
            // Cut short: the campaign has not ended, so there is nothing to compare yet.
            writeln!(out, "\ninterrupted; the stats so far:")?;
            client::print_campaign(&stats, &mut out)?;
            DemoEnd::Interrupted
        }
        Ok(stats) => {
            if report(&stats, &sim, &pnid, started, &mut out)? {
                DemoEnd::Matched
            } else {
                DemoEnd::Mismatched
            }
        }
        Err(_) if stop.is_cancelled() => {
            writeln!(out, "\ninterrupted before the campaign started")?;
            DemoEnd::Interrupted
        }
        Err(e) => {
            writeln!(out, "demo failed: {e:#}")?;
            DemoEnd::Mismatched
        }
    };
    serve_stop.cancel();
    if !server_ended {
        let _ = server.await;
    }
    if redis.child.is_none() && !redis.in_memory() {
        // A shared Redis: leave nothing of the demo behind.
        if let Ok(store) = app::connect(&cfg).await {
            let _ = store.purge_namespace().await;
        }
    }
    sim.shutdown().await;
    drop(redis);
    Ok(end)
}

async fn campaign(
    opts: &DemoOptions,
    addr: std::net::SocketAddr,
    stop: &CancellationToken,
    out: &mut std::io::Stdout,
) -> anyhow::Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("herald-demo-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("sample-recipients.csv");
    let message = dir.join("sample-message.json");
    std::fs::write(&csv, SAMPLE_CSV)?;
    std::fs::write(&message, SAMPLE_MESSAGE)?;
    let api = ApiClient::new(&format!("http://{addr}"), None)?;
    // The server is starting in the background; wait until it answers (or stops: the
    // caller ends the demo then), however long that takes on a busy machine.
    while api.get("/campaigns").await.is_err() {
        if stop.is_cancelled() {
            anyhow::bail!("interrupted");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writeln!(
        out,
        "campaign: template order_update to config/sample-recipients.csv at {} msg/s",
        opts.mps
    )?;
    let id = client::create(
        &api,
        &Create {
            name: "herald-demo",
            message: &message,
            csv: &csv,
            charset: None,
            default_region: Some("GB"),
            phone_number_id: None,
            mps: None,
            schedule_at: None,
            send_window: None,
            time_zone: None,
            zones: &[],
            start: true,
            quiet: opts.quiet,
            max_cost: None,
        },
        out,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let id = id?;
    let last = client::watch(&api, &id, stop, opts.quiet).await?;
    Ok(last)
}

fn report(
    c: &serde_json::Value,
    sim: &Sim,
    pnid: &str,
    started: Instant,
    out: &mut std::io::Stdout,
) -> anyhow::Result<bool> {
    writeln!(out)?;
    client::print_campaign(c, out)?;
    let o = sim.stats();
    let n = o.phone_numbers.get(pnid).cloned().unwrap_or_default();
    let accepted = c["stats"]["accepted"].as_u64().unwrap_or(0);
    writeln!(out, "\nsimulator oracle (what \"Meta\" received):")?;
    writeln!(out, "  requests          {:>8}", o.requests)?;
    writeln!(out, "  accepted          {:>8}", o.accepted)?;
    writeln!(
        out,
        "  duplicates        {:>8}",
        o.duplicate_callbacks.len()
    )?;
    writeln!(out, "  busiest second    {:>8} requests", n.max_requests_1s)?;
    writeln!(
        out,
        "  throttled (130429) {:>7}",
        o.rejected.get("130429").copied().unwrap_or(0)
    )?;
    let charged: Vec<String> = o.charged.iter().map(|(c, n)| format!("{n} {c}")).collect();
    writeln!(
        out,
        "  charged delivered  {:>7} ({}; {} free)",
        o.charged.values().sum::<u64>(),
        if charged.is_empty() {
            "none".to_owned()
        } else {
            charged.join(", ")
        },
        o.free
    )?;
    let ok = o.duplicate_callbacks.is_empty() && o.accepted == accepted;
    writeln!(
        out,
        "\n{} in {:.1} s",
        if ok {
            "Herald's stats match the oracle: every recipient accepted once, none twice"
        } else {
            "MISMATCH between Herald's stats and the oracle"
        },
        started.elapsed().as_secs_f64()
    )?;
    Ok(ok)
}
