//! Test support for Redis-backed tests (feature `testsuite`): a private `redis-server` that a
//! test can kill and restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::time::Duration;

/// A private `redis-server` (from `REDIS_SERVER_BIN`, else the PATH) on a free port in a
/// temporary directory, with AOF and `appendfsync always`, that a test can kill and restart.
#[derive(Debug)]
pub struct TestRedisServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
    extra: Vec<String>,
}

impl TestRedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The same, with extra `redis-server` arguments (`--appendfsync no`, …).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-redis-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = Self::spawn(&dir, port, &extra);
        Self {
            child,
            port,
            dir,
            extra,
        }
    }

    fn spawn(dir: &std::path::Path, port: u16, extra: &[String]) -> std::process::Child {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(&bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", "always", "--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (set REDIS_SERVER_BIN): {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// SIGKILL: no chance to flush anything beyond what AOF already has.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.dir, self.port, &self.extra);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Polls `INFO replication` on the server at `url` until `done` holds for it (a replica's
/// `master_link_status:up`, a master's `connected_slaves:0`), for 20 s at most.
pub async fn until_replication(url: &str, done: impl Fn(&str) -> bool) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if done(&info) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replication never got there: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
