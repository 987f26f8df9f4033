//! A local stand-in for Meta's WhatsApp Cloud API (ARCHITECTURE §12).
//!
//! Users try Herald with it before they have a Meta account; Herald's tests prove "nothing
//! lost, nothing twice" with it; benchmarks send to it. It validates send bodies with the
//! `herald-cloudapi` types and limits, keeps a template catalogue, enforces the 24 h window
//! (the first-contact trap), per-number throughput and per-recipient pair rate, marks a share
//! of numbers undeliverable, injects latency, 5xx answers, hangs and connection resets
//! (accepted but unanswered), and sends signed, batched status webhooks with optional
//! duplicates and reordering. `GET /_sim/stats` is the oracle of everything it saw.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod arrival;
pub mod config;
mod direct;
mod oracle;
pub mod process;
mod random;
mod server;
mod state;
mod webhooks;

pub use config::{ConfigError, Delivery, SimConfig};
pub use direct::Direct;
pub use oracle::{FaultStats, NumberStats, SimStats, WebhookStats};
pub use process::SimProcess;
pub use webhooks::WebhookSink;

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    addr: SocketAddr,
    shared: Arc<state::SimState>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Sim {
    /// Validates the configuration, binds, and starts serving.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Self> {
        Self::start_with(cfg, None).await
    }

    /// The same, with webhooks handed to `sink` instead of POSTed to `webhooks.url` (they
    /// are sent when either is set).
    pub async fn start_with(cfg: SimConfig, sink: Option<WebhookSink>) -> std::io::Result<Self> {
        cfg.validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(&cfg.listen).await?;
        let addr = listener.local_addr()?;
        arrival::stamp_listener(&listener);
        let shutdown = CancellationToken::new();
        let oracle = oracle::SharedOracle::default();
        let hooks = webhooks::Webhooks::start(&cfg, sink, oracle.clone(), shutdown.clone());
        let shared = Arc::new(state::SimState::new(cfg.clone(), oracle, hooks));
        let task = tokio::spawn(server::serve(
            listener,
            server::router(shared.clone()),
            shutdown.clone(),
        ));
        tracing::info!(%addr, "simulator listening");
        Ok(Self {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the `api_base` to point a client at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client that sends to this simulator in-process, answering as its HTTP server would
    /// (timing out after `timeout`, as a client configured so would).
    pub fn direct(&self, timeout: std::time::Duration) -> Direct {
        Direct {
            shared: self.shared.clone(),
            authorization: format!("Bearer {}", self.shared.cfg.access_token),
            timeout,
        }
    }

    /// The oracle, read in-process.
    pub fn stats(&self) -> SimStats {
        self.shared.oracle(|o| o.stats(false))
    }

    /// Simulates a user writing to the business (opens their 24 h window).
    pub fn inbound(&self, phone_number_id: &str, from: &str, text: &str) {
        self.shared.inbound(phone_number_id, from, text);
    }

    /// Changes the portfolio's messaging limit to a Meta tier and sends the capability webhook
    /// Meta would; `false` for an unknown tier.
    pub fn set_tier(&self, tier: &str) -> bool {
        self.shared.set_tier(tier)
    }

    /// Sends the `template_category_update` webhook Meta sends when it re-categorises a
    /// template; `false` for an unknown template.
    pub fn recategorise(&self, name: &str, language: &str, category: &str) -> bool {
        self.shared.recategorise(name, language, category)
    }

    /// Upgrades a number to 1,000 messages/s after a switch of `switch` (131057 meanwhile),
    /// and sends the `THROUGHPUT_UPGRADE` webhook Meta would; `false` for an unknown number.
    pub fn upgrade(&self, phone_number_id: &str, switch: std::time::Duration) -> bool {
        self.shared.upgrade(phone_number_id, switch)
    }

    /// Stops serving and waits for the accept loop to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
