//! The simulator in-process, with no sockets: a [`Messages`] that puts each send straight
//! through the simulator's send path, and (see [`crate::WebhookSink`]) webhooks handed to a
//! function instead of POSTed. With it, a test runs the sender, the simulator and the
//! reconciler on one runtime with tokio's clock paused: latencies, hangs and timeouts pass
//! in virtual time, so nothing depends on how fast or busy the machine is.

use std::sync::Arc;
use std::time::Duration;

use herald_cloudapi::{Error, Messages, SendResponse, TransportFailure};

use crate::state::{Answer, SimState};

/// A client of the simulator that calls it directly. Its requests are answered as the HTTP
/// server would answer them (the same latency, faults and errors), classified as
/// [`herald_cloudapi::Client`] classifies HTTP answers.
#[derive(Debug, Clone)]
pub struct Direct {
    pub(crate) shared: Arc<SimState>,
    pub(crate) authorization: String,
    pub(crate) timeout: Duration,
}

impl Direct {
    /// The same client presenting another access token.
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Self {
        self.authorization = format!("Bearer {token}");
        self
    }
}

fn transport(failure: TransportFailure) -> Error {
    Error::Transport {
        failure,
        source: None,
    }
}

impl Messages for Direct {
    async fn send_raw(&self, phone_number_id: &str, body: Vec<u8>) -> Result<SendResponse, Error> {
        let answer = self.shared.send(
            phone_number_id,
            Some(&self.authorization),
            &body,
            tokio::time::Instant::now(),
        );
        let latency = self.shared.latency(&body);
        let respond = async move {
            tokio::time::sleep(latency).await;
            match answer {
                Answer::Ok(v) => serde_json::from_value(v)
                    .map_err(|_| transport(TransportFailure::UnreadableSuccess)),
                Answer::Error { status, error } => Err(Error::from_graph(status, *error)),
                Answer::Hang(v, after) => {
                    tokio::time::sleep(after).await;
                    serde_json::from_value(v)
                        .map_err(|_| transport(TransportFailure::UnreadableSuccess))
                }
                Answer::Reset => Err(transport(TransportFailure::ConnectionLost)),
                Answer::ProxyError(status) => Err(transport(TransportFailure::HttpStatus(status))),
            }
        };
        tokio::time::timeout(self.timeout, respond)
            .await
            .unwrap_or_else(|_| Err(transport(TransportFailure::TimedOut)))
    }
}
