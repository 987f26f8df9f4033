//! The HTTP side: an axum router served by a small hyper accept loop. The loop exists for one
//! reason: to drop a connection after its request was read, with no response at all (the
//! ambiguous case a real network produces). A handler asks for it by returning a response
//! carrying [`ResetConnection`]; the service then fails, and hyper closes the connection
//! without writing anything.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::arrival::Arrival;
use crate::state::{Answer, SimState};

/// Marks a response whose connection must be dropped instead of answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResetConnection;

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the simulator")
    }
}

impl std::error::Error for Reset {}

pub(crate) fn router(shared: Arc<SimState>) -> Router {
    Router::new()
        .route("/{version}/{pnid}/messages", post(send))
        .route("/debug_token", get(debug_token))
        .route("/{version}/debug_token", get(debug_token))
        .route("/{version}/{id}", get(phone_number))
        .route("/{version}/{id}/subscribed_apps", get(subscribed_apps))
        .route("/{version}/{id}/message_templates", get(message_templates))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .route("/_sim/inbound", post(inbound))
        .route("/_sim/tier", post(tier))
        .with_state(shared)
}

fn graph_error(status: u16, error: &herald_cloudapi::GraphError) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// The 190 answer for a missing or wrong bearer token on the read endpoints.
fn unauthorized(shared: &SimState, headers: &HeaderMap) -> Option<Response> {
    (!shared.token_ok(bearer(headers))).then(|| {
        graph_error(
            401,
            &herald_cloudapi::GraphError::new(
                190,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
            ),
        )
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok())
}

async fn send(
    State(shared): State<Arc<SimState>>,
    Path((_version, pnid)): Path<(String, String)>,
    arrival: Option<Extension<Arrival>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let arrived = arrival.map_or_else(Instant::now, |Extension(Arrival(at))| at);
    let answer = shared.send(&pnid, bearer(&headers), &body, arrived);
    let latency = shared.latency(&body);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match answer {
        Answer::Ok(v) => axum::Json(v).into_response(),
        Answer::Error { status, error } => graph_error(status, &error),
        Answer::Hang(v, after) => {
            tokio::time::sleep(after).await;
            axum::Json(v).into_response()
        }
        Answer::Reset => {
            let mut r = StatusCode::OK.into_response();
            r.extensions_mut().insert(ResetConnection);
            r
        }
        Answer::ProxyError(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [("content-type", "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Fields {
    fields: Option<String>,
}

async fn phone_number(
    State(shared): State<Arc<SimState>>,
    Path((_version, id)): Path<(String, String)>,
    Query(q): Query<Fields>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    let Some(p) = shared.cfg.phone_numbers.iter().find(|p| p.id == id) else {
        let mut e = herald_cloudapi::GraphError::new(
            100,
            "GraphMethodException",
            format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            ),
        );
        e.error_subcode = Some(33);
        return graph_error(400, &e);
    };
    let all = json!({
        "id": p.id,
        "display_phone_number": p.display_phone_number,
        "verified_name": p.verified_name,
        "quality_rating": p.quality_rating,
        "status": "CONNECTED",
        "code_verification_status": "VERIFIED",
        "name_status": "APPROVED",
        "platform_type": "CLOUD_API",
        // Meta has two levels; a simulated number faster than the standard 80/s is "HIGH",
        // so that a sender following the level is bounded by the simulator's own rate.
        "throughput": {"level": shared.level(&p.id, p.mps)},
        "whatsapp_business_manager_messaging_limit": shared.tier(),
    });
    let out = match q.fields {
        None => all,
        Some(fields) => {
            let mut o = serde_json::Map::new();
            o.insert("id".into(), json!(p.id));
            for f in fields.split(',').map(str::trim) {
                if let Some(v) = all.get(f) {
                    o.insert(f.to_owned(), v.clone());
                }
            }
            Value::Object(o)
        }
    };
    axum::Json(out).into_response()
}

#[derive(Debug, Deserialize)]
struct DebugToken {
    input_token: Option<String>,
}

async fn debug_token(State(shared): State<Arc<SimState>>, Query(q): Query<DebugToken>) -> Response {
    let valid = q.input_token.as_deref() == Some(shared.cfg.access_token.as_str());
    let scopes: Vec<&str> = if valid {
        vec![
            "whatsapp_business_messaging",
            "whatsapp_business_management",
        ]
    } else {
        Vec::new()
    };
    axum::Json(json!({"data": {
        "app_id": "1000000000000001",
        "type": "SYSTEM_USER",
        "application": "Herald Simulator",
        "is_valid": valid,
        "expires_at": 0,
        "scopes": scopes,
    }}))
    .into_response()
}

async fn subscribed_apps(State(shared): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    let data: Vec<Value> = if shared.cfg.webhooks.url.is_empty() {
        Vec::new()
    } else {
        vec![
            json!({"whatsapp_business_api_data": {"name": "Herald Simulator", "id": "1000000000000001"}}),
        ]
    };
    axum::Json(json!({ "data": data })).into_response()
}

/// `GET /{waba_id}/message_templates`: the catalogue, as Meta lists a WABA's templates.
async fn message_templates(
    State(shared): State<Arc<SimState>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    if id != shared.cfg.waba_id {
        return graph_error(
            400,
            &herald_cloudapi::GraphError::new(
                100,
                "GraphMethodException",
                "Unsupported get request. Object with this ID does not exist",
            ),
        );
    }
    let data: Vec<Value> = shared
        .cfg
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let body: Vec<String> = (1..=t.body_params)
                .map(|n| format!("{{{{{n}}}}}"))
                .collect();
            json!({"name": t.name, "language": t.language, "status": t.status,
                   "category": t.category, "id": format!("{}", 900_000_000_000_000u64 + i as u64),
                   "components": [{"type": "BODY", "text": format!("Hello {}", body.join(", "))}]})
        })
        .collect();
    axum::Json(json!({ "data": data })).into_response()
}

#[derive(Debug, Deserialize)]
struct StatsQuery {
    callbacks: Option<u8>,
}

async fn stats(State(shared): State<Arc<SimState>>, Query(q): Query<StatsQuery>) -> Response {
    let with = q.callbacks.unwrap_or(0) == 1;
    axum::Json(shared.oracle(|o| o.stats(with))).into_response()
}

async fn reset(State(shared): State<Arc<SimState>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound {
    from: String,
    text: String,
    phone_number_id: Option<String>,
}

async fn inbound(
    State(shared): State<Arc<SimState>>,
    axum::Json(m): axum::Json<Inbound>,
) -> Response {
    let pnid = m.phone_number_id.unwrap_or_else(|| {
        shared
            .cfg
            .phone_numbers
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default()
    });
    let from = m.from.trim_start_matches('+');
    if from.is_empty() || !from.bytes().all(|b| b.is_ascii_digit()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "from: must be a phone number's digits"}})),
        )
            .into_response();
    }
    shared.inbound(&pnid, from, &m.text);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct Tier {
    tier: String,
}

/// Changes the portfolio's messaging limit (`{"tier": "TIER_2K"}`) and sends the capability
/// webhook Meta would.
async fn tier(State(shared): State<Arc<SimState>>, axum::Json(t): axum::Json<Tier>) -> Response {
    if shared.set_tier(&t.tier) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "tier: not a Meta tier"}})),
        )
            .into_response()
    }
}

/// Serves until `shutdown`: one task per connection, HTTP/1.1 with keep-alive. The listener
/// stamps what it receives (see [`crate::arrival::stamp_listener`]).
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let (stream, last_read) = crate::arrival::stamped(stream);
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                // The head was complete with the last bytes read.
                if let Some(at) = last_read.get() {
                    req.extensions_mut().insert(Arrival(at));
                }
                let router = router.clone();
                async move {
                    let resp: Response = match router.oneshot(req.map(Body::new)).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if resp.extensions().get::<ResetConnection>().is_some() {
                        return Err(Reset);
                    }
                    Ok::<_, Reset>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}
