//! The simulator in a child process: the program that wants one re-runs itself with the
//! configuration in an environment variable, and [`serve_if_asked`] at the top of its `main`
//! turns that run into a simulator.
//!
//! Timing measurements need this. A simulator sharing a process with the sender it measures
//! shares its allocator, its page tables and its scheduler slices; on a two-core machine that
//! showed up as stalls of several milliseconds in the simulator's view of arrival times,
//! which a strict 1-second throughput window counts as bursts the sender never made.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use crate::{Sim, SimConfig, SimStats};

/// The variable that carries the configuration (JSON) to the child.
pub const ENV: &str = "HERALD_SIM_CHILD_CONFIG";

/// When this process was started as a simulator child, serves until the parent goes away
/// (its end of our stdin closes) and exits; otherwise returns at once.
pub fn serve_if_asked() {
    let Ok(json) = std::env::var(ENV) else { return };
    let code = match serve(&json) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("simulator child: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn serve(json: &str) -> Result<(), String> {
    let cfg: SimConfig = serde_json::from_str(json).map_err(|e| format!("bad config: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let sim = Sim::start(cfg).await.map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", sim.url())
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        drop(out);
        // The parent holds our stdin; EOF means it is gone or done with us.
        let eof = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        });
        let _ = eof.await;
        sim.shutdown().await;
        Ok(())
    })
}

/// A simulator running in a child process started from `program` (usually
/// `std::env::current_exe()`), which must call [`serve_if_asked`] first thing.
#[derive(Debug)]
pub struct SimProcess {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl SimProcess {
    pub fn start(
        program: &std::path::Path,
        args: &[&str],
        cfg: &SimConfig,
    ) -> std::io::Result<Self> {
        let json = serde_json::to_string(cfg).map_err(std::io::Error::other)?;
        let mut child = Command::new(program)
            .args(args)
            .env(ENV, json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut url = String::new();
        BufReader::new(stdout).read_line(&mut url)?;
        let url = url.trim().to_owned();
        if !url.starts_with("http://") {
            let _ = child.kill();
            return Err(std::io::Error::other(format!(
                "the simulator child did not start (it said {url:?})"
            )));
        }
        let http = herald_cloudapi::http_builder_for(&url)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self { child, url, http })
    }

    /// The child's process id (to read what it costs, e.g. its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The oracle, over HTTP.
    pub async fn stats(&self) -> std::io::Result<SimStats> {
        let body = self
            .http
            .get(format!("{}/_sim/stats", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(std::io::Error::other)?
            .bytes()
            .await
            .map_err(std::io::Error::other)?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// Simulates a user writing in (`POST /_sim/inbound`), which opens their window.
    pub async fn inbound(&self, from: &str, text: &str) -> std::io::Result<()> {
        self.http
            .post(format!("{}/_sim/inbound", self.url))
            .header("content-type", "application/json")
            .body(serde_json::json!({"from": from, "text": text}).to_string())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(std::io::Error::other)?;
        Ok(())
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        // Closing its stdin asks it to stop; kill in case it does not.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
