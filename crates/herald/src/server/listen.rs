//! Herald's HTTP listener, hardened against slow and greedy clients (ARCHITECTURE §9): hyper's HTTP/1 server
//! with a cap on open connections (beyond it, new ones wait in the kernel's backlog), a
//! deadline for a request's headers (which also closes a keep-alive connection left idle),
//! a deadline for each request (uploads excepted: their body has an idle deadline instead,
//! see `upload.rs`), and a graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::server::error::ApiError;

/// What a client may hold of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From a connection's first byte (or its previous response) to the end of the request's
    /// headers: a client that never finishes them, or keeps an idle connection, is cut off.
    pub header_read_timeout: Duration,
    /// A whole request, body included, to its answer (uploads excepted).
    pub request_timeout: Duration,
    /// On shutdown, how long open requests get to finish.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(10),
        }
    }
}

/// Adds the per-request deadline to every route but uploads (streamed for as long as the
/// file takes; their body has an idle deadline instead) and follow-ups (which add a whole
/// campaign's worth of recipients; bounded by the first campaign's size).
pub fn with_request_timeout(app: Router, timeout: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| async move {
            let path = request.uri().path();
            if path.ends_with("/recipients") || path.ends_with("/follow-up") {
                return next.run(request).await;
            }
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => timed_out(timeout),
            }
        },
    ))
}

fn timed_out(timeout: Duration) -> Response {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!(
            "the request took longer than {} ms (server.request_timeout_ms)",
            timeout.as_millis()
        ),
    )
    .into_response()
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish for
/// `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut at_cap_logged = false;
    loop {
        // A free slot first: at the cap, new connections wait in the backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if !at_cap_logged {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached (server.max_connections); new connections wait"
                    );
                    at_cap_logged = true;
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        at_cap_logged = false;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("requests still open at the end of the drain were cut off");
        }
    }
}
