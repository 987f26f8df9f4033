//! The commands that talk to a running Herald or stand alone: the campaign and suppression
//! commands (clients of the HTTP API), `doctor`, and the demo.

use std::collections::BTreeMap;

use crate::cli::client::ApiClient;
use crate::config::Config;

pub mod campaign;
pub mod client;
pub mod demo;
pub mod doctor;
pub mod suppressions;

/// A client of the API at `--server` (else `server.listen`), with the API key.
pub(crate) fn api_client(
    server: Option<String>,
    cfg: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ApiClient> {
    let server = server.unwrap_or_else(|| {
        let listen = cfg.server.listen.replace("0.0.0.0", "127.0.0.1");
        format!("http://{listen}")
    });
    let key = env
        .get("HERALD_API_KEY")
        .cloned()
        .or_else(|| Some(cfg.server.api_key.expose().to_owned()));
    ApiClient::new(&server, key)
}
