//! The listener against slow and greedy clients, over real loopback sockets: unfinished
//! headers and idle connections are closed, a slow body is answered 408, a stalled upload is
//! cut off, and connections beyond the cap wait until one closes.
//!
//! Each test waits for what must happen with a generous bound (10 s for a 300 ms deadline):
//! on a slow machine the deadline still fires, only later.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald::server::api::{ApiState, Routes, router};
use herald::server::listen::{Limits, serve, with_request_timeout};
use herald_store::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(10);

struct Server {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(limits: Limits) -> Server {
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = "106540352242922".into();
    let state = ApiState {
        body_idle_timeout: Duration::from_millis(300),
        ..ApiState::new(Arc::new(MemoryStore::new()), &cfg)
    };
    let routes = Routes {
        v1: true,
        webhook: None,
    };
    let app = with_request_timeout(router(state, routes), limits.request_timeout);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, limits, stop.clone()));
    Server { addr, stop }
}

fn quick() -> Limits {
    Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        drain: Duration::from_secs(1),
    }
}

/// Reads until the server closes the connection; answers what it sent.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, conn.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after {BOUND:?}");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start(quick()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    read_to_close(&mut conn).await;
    // And one that opens a connection and sends nothing at all.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    read_to_close(&mut idle).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start(quick()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    let server = start(quick()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(
        b"POST /v1/campaigns HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout_ms"), "{answer}");
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_naming_what_was_kept() {
    let server = start(quick()).await;
    let http = herald_cloudapi::http_builder().build().unwrap();
    let created: serde_json::Value = http
        .post(format!("http://{}/v1/campaigns", server.addr))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"name": "stall", "message": {"type": "text", "text": {"body": "hi"}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/campaigns/{id}/recipients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\nphone\n+447700900001\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_idle_timeout_ms"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let server = start(Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..quick()
    })
    .await;
    // Two clients hold a connection each, mid-headers.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    // Let the server take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past the cap");
    drop(held.pop());
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
