//! The webhook receiver: Meta's verification handshake and signed deliveries.
//!
//! `POST /webhook` does three things and nothing else: it caps the body (413), verifies
//! `X-Hub-Signature-256` over the raw bytes before any parsing (401), and appends the raw body
//! to the store's webhook stream. Only once the body is durable does it answer 200; if the
//! store cannot take it, it answers 503 so Meta retries. Applying the content is the
//! reconciler's job, off the request path.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_cloudapi::Secret;
use herald_cloudapi::signature::{self, SignatureError};
use herald_core::metrics as m;
use herald_store::{Store, StoreError};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Meta documents deliveries of a few MB; beyond this the receiver answers 413.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What the receiver needs.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The token entered in Meta's dashboard for the verification handshake.
    pub verify_token: Secret,
    /// The app secret the deliveries are signed with.
    pub app_secret: Secret,
}

struct Receiver<S> {
    store: Arc<S>,
    cfg: ReceiverConfig,
}

/// Where Meta's webhook is served.
pub const WEBHOOK_PATH: &str = "/webhook";

/// `GET /webhook` and `POST /webhook`, ready to be merged into a router. Without an app
/// secret every delivery is refused (and this says so in the log).
pub fn routes<S: Store>(store: Arc<S>, cfg: ReceiverConfig) -> Router {
    if cfg.app_secret.is_empty() {
        tracing::error!(
            "no app secret (WA_APP_SECRET / whatsapp.app_secret): every webhook delivery is \
             refused with 503 until one is set; Meta retries them for up to 7 days"
        );
    }
    let state = Arc::new(Receiver { store, cfg });
    Router::new()
        .route(WEBHOOK_PATH, get(verify::<S>).post(deliver::<S>))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // The body limit answers 413 before the handler runs; count those here.
        .layer(axum::middleware::map_response(|r: Response| async move {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                outcome("too_large");
            }
            r
        }))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

fn outcome(name: &'static str) {
    metrics::counter!(m::WEBHOOK_REQUESTS_TOTAL, "outcome" => name).increment(1);
}

/// The outcome of a delivery the store could not take. A full Redis is told apart: it pages
/// as such (HeraldRedisFull), not as refused webhooks too (HeraldWebhookRefused).
fn refused(e: &StoreError) -> &'static str {
    match e {
        StoreError::Full(_) => "store_full",
        _ => "store_unavailable",
    }
}

async fn verify<S: Store>(
    State(r): State<Arc<Receiver<S>>>,
    Query(q): Query<Handshake>,
) -> Response {
    let expected = r.cfg.verify_token.expose().as_bytes();
    let given = q.verify_token.as_deref().unwrap_or_default().as_bytes();
    let token_ok = !expected.is_empty() && bool::from(expected.ct_eq(given));
    match (q.mode.as_deref(), q.challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            outcome("verified");
            tracing::info!("webhook verification handshake accepted");
            ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response()
        }
        _ => {
            outcome("verify_refused");
            tracing::warn!("webhook verification refused (wrong mode or verify token)");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn deliver<S: Store>(
    State(r): State<Arc<Receiver<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let header = headers.get(signature::HEADER).map(|v| v.as_bytes());
    match signature::verify(r.cfg.app_secret.expose().as_bytes(), header, &body) {
        Ok(()) => {}
        // Without a secret nothing is verified, so nothing is taken: 503, so that Meta keeps
        // the deliveries and retries them (for up to 7 days) once a secret is configured.
        Err(SignatureError::NoSecret) => {
            outcome("no_secret");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "webhooks are refused: no app secret (WA_APP_SECRET) is configured\n",
            )
                .into_response();
        }
        Err(e) => {
            outcome("bad_signature");
            log_bad_signature(e);
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    // Meta retries a refused delivery, and sends others meanwhile: a store that stays down
    // (or full) is logged in full once, then summarised every 30 s, not once a delivery.
    static STORING: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();
    let answer = match r.store.append_webhook(&body).await {
        Ok(()) => {
            herald_core::recovered!(STORING, "webhook deliveries are stored again");
            outcome("stored");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            outcome(refused(&e));
            herald_core::warn_repeated!(
                STORING,
                "cannot store a webhook delivery; answering 503 so Meta retries",
                error = %e
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
            )
                .into_response()
        }
    };
    metrics::histogram!(m::WEBHOOK_REQUEST_DURATION_SECONDS)
        .record(started.elapsed().as_secs_f64());
    answer
}

fn log_bad_signature(e: SignatureError) {
    // Rate-limited by nature: a flood of forged requests logs at debug only.
    tracing::debug!(reason = e.as_str(), "webhook refused: bad signature");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_is_its_own_outcome() {
        assert_eq!(refused(&StoreError::Full("maxmemory".into())), "store_full");
        assert_eq!(
            refused(&StoreError::Unavailable("refused".into())),
            "store_unavailable"
        );
        for o in ["store_full", "store_unavailable"] {
            assert!(m::WEBHOOK_OUTCOMES.contains(&o), "{o}");
        }
    }
}
