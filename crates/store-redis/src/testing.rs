//! Test support for Redis-backed tests (feature `testsuite`): a private `redis-server` that a
//! test can kill and restart, and a private Redis Cluster whose nodes a test can fail over and
//! kill.

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

    /// Makes its disk fail: a directory stands where its snapshot goes (`dump.rdb`), and a
    /// snapshot is asked for, which then fails. With save points configured (`--save "3600
    /// 1"`, and `stop-writes-on-bgsave-error` at its default), Redis then refuses every write
    /// (`MISCONF`) until a snapshot succeeds again ([`Self::mend_disk`]).
    pub async fn break_disk(&self) {
        std::fs::create_dir_all(self.dir.join("dump.rdb").join("in-the-way")).unwrap();
        self.snapshot("err").await;
    }

    /// Clears the way and snapshots, so that it takes writes again.
    pub async fn mend_disk(&self) {
        std::fs::remove_dir_all(self.dir.join("dump.rdb")).unwrap();
        self.snapshot("ok").await;
    }

    /// Asks for a snapshot and waits until the last one's status is `status`.
    async fn snapshot(&self, status: &str) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: redis::Value = redis::cmd("BGSAVE").query_async(&mut conn).await.unwrap();
        let want = format!("rdb_last_bgsave_status:{status}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains(&want) && info.contains("rdb_bgsave_in_progress:0") {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no snapshot: {info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets its `maxmemory` (0: no limit). With `--maxmemory-policy noeviction`, a limit
    /// below what it holds makes it refuse every write, as a full Redis does.
    pub async fn set_maxmemory(&self, bytes: u64) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Every key on the Redis at `url` (one server, not a Cluster) matching `pattern`, by `SCAN`.
pub async fn keys_matching(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut found = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        found.extend(page);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Polls `INFO replication` on the server at `url` until `done` holds for it (a replica's
/// `master_link_status:up`, a master's `connected_slaves:0`), for 20 s at most. A server that
/// is still starting, or busy (a loaded machine), may refuse or drop the connection: that is
/// asked again, on a new connection, until the deadline.
pub async fn until_replication(url: &str, done: impl Fn(&str) -> bool) {
    let client = redis::Client::open(url).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut conn = None;
    loop {
        let last = match &mut conn {
            None => match client.get_multiplexed_async_connection().await {
                Ok(c) => {
                    conn = Some(c);
                    continue;
                }
                Err(e) => e.to_string(),
            },
            Some(c) => match redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(c)
                .await
            {
                Ok(info) if done(&info) => return,
                Ok(info) => info,
                Err(e) => {
                    conn = None;
                    e.to_string()
                }
            },
        };
        assert!(
            std::time::Instant::now() < deadline,
            "replication never got there: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private Redis Cluster of six `redis-server`s (three masters, three replicas, made with
/// `redis-cli --cluster create`; `REDIS_CLI_BIN`, else beside `REDIS_SERVER_BIN`, else the
/// PATH), each on a free port in its own temporary directory with AOF. A node that stops
/// answering for 1 s is failed over.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<TestRedisServer>,
    killed: Vec<u16>,
}

impl TestCluster {
    pub fn start() -> Self {
        let mut nodes: Vec<TestRedisServer> = Vec::new();
        while nodes.len() < 6 {
            // The cluster bus listens on port + 10000: both must be free, and both below
            // the ephemeral range (32768 on), where other tests' servers take free ports.
            let port = 10_000 + rand::random::<u16>() % 12_700;
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if nodes.iter().any(|n| n.port == port) || !free(port) || !free(port + 10_000) {
                continue;
            }
            let dir =
                std::env::temp_dir().join(format!("herald-cluster-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&dir).unwrap();
            let extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--appendfsync",
                "everysec",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let child = TestRedisServer::spawn(&dir, port, &extra);
            nodes.push(TestRedisServer {
                child,
                port,
                dir,
                extra,
            });
        }
        let out = std::process::Command::new(redis_cli())
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self {
            nodes,
            killed: Vec::new(),
        };
        cluster.until_healthy();
        cluster.until_replicated();
        cluster
    }

    /// Waits until every live replica has its master's data and follows it
    /// (`master_link_status:up`: the first sync is over).
    pub fn until_replicated(&self) {
        self.until(|| {
            let replicas = self.nodes_that_are(false);
            !replicas.is_empty()
                && replicas.iter().all(|&p| {
                    Self::ask(p, &["INFO", "replication"]).contains("master_link_status:up")
                })
        });
    }

    /// The seed URL list Herald takes for a Cluster (`store.redis_url`).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(TestRedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Asks the node on `port` (a blocking client: call from a test's own thread or
    /// `spawn_blocking`).
    pub fn ask(port: u16, args: &[&str]) -> String {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        match cmd.query::<redis::Value>(&mut conn).unwrap() {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => s,
            redis::Value::Int(i) => i.to_string(),
            redis::Value::Okay => "OK".into(),
            v => format!("{v:?}"),
        }
    }

    /// The live nodes' ports that are masters (`true`) or replicas (`false`).
    pub fn nodes_that_are(&self, masters: bool) -> Vec<u16> {
        let role = if masters { "role:master" } else { "role:slave" };
        self.live()
            .filter(|&p| Self::ask(p, &["INFO", "replication"]).contains(role))
            .collect()
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .map(|n| n.port)
            .filter(|p| !self.killed.contains(p))
    }

    /// The port of the live master serving the slot of `key`, if one does.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let masters = self.nodes_that_are(true);
        let slot: u32 = Self::ask(masters[0], &["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap();
        let serves = |port: u16| {
            let nodes = Self::ask(port, &["CLUSTER", "NODES"]);
            let me = nodes
                .lines()
                .find(|l| l.contains("myself"))
                .unwrap()
                .to_owned();
            me.split_whitespace().skip(8).any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                a.parse::<u32>().is_ok_and(|a| a <= slot)
                    && b.parse::<u32>().is_ok_and(|b| slot <= b)
            })
        };
        masters.into_iter().find(|&p| serves(p))
    }

    /// The port of the replica of the master on `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let of = format!("master_port:{master}\r");
        self.nodes_that_are(false)
            .into_iter()
            .find(|&r| Self::ask(r, &["INFO", "replication"]).contains(&of))
            .expect("every master has a replica")
    }

    /// Promotes the replica on `port` in an orderly way (`CLUSTER FAILOVER`: its master stops
    /// taking writes until the replica has caught up), and waits until it is a master.
    pub fn promote(&self, port: u16) {
        let info = Self::ask(port, &["INFO", "replication"]);
        let old: u16 = info
            .lines()
            .find_map(|l| l.strip_prefix("master_port:"))
            .and_then(|p| p.trim().parse().ok())
            .expect("a replica names its master");
        assert_eq!(Self::ask(port, &["CLUSTER", "FAILOVER"]), "OK");
        // Done when both sides know it: the replica leads, its old master follows it.
        self.until(|| {
            Self::ask(port, &["INFO", "replication"]).contains("role:master")
                && Self::ask(old, &["INFO", "replication"]).contains("role:slave")
        });
        self.until_healthy();
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        node.kill();
        self.killed.push(port);
    }

    /// Moves the slot of `key` from its master to the master on `to`, key by key, the way
    /// `redis-cli --cluster reshard` does (IMPORTING and MIGRATING, `MIGRATE` three keys at a
    /// time, calling `between` with the step's number after each, then the slot assigned to
    /// `to` everywhere). Meanwhile clients get ASK for keys already moved and TRYAGAIN for
    /// calls whose keys are split.
    pub fn move_slot(&self, key: &str, to: u16, mut between: impl FnMut(usize)) {
        let from = self.master_of(key).expect("a master serves the slot");
        assert_ne!(from, to, "the slot is already there");
        let slot = Self::ask(from, &["CLUSTER", "KEYSLOT", key]);
        let id = |p: u16| Self::ask(p, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        assert_eq!(
            Self::ask(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            Self::ask(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
            "OK"
        );
        let client = redis::Client::open(format!("redis://127.0.0.1:{from}")).unwrap();
        let mut conn = client.get_connection().unwrap();
        for step in 0.. {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(&slot)
                .arg(3)
                .query(&mut conn)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut conn)
                .unwrap();
            between(step);
        }
        for p in self.nodes_that_are(true) {
            assert_eq!(
                Self::ask(p, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
                "OK"
            );
        }
    }

    /// Starts the node on `port` again (after [`TestCluster::kill`]), with its data and
    /// cluster state: a master that was failed over rejoins as a replica.
    pub fn restart(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        node.restart();
        self.killed.retain(|&p| p != port);
    }

    /// Waits until every live node says the cluster is `ok` (every slot served).
    pub fn until_healthy(&self) {
        self.until(|| {
            self.live()
                .all(|p| Self::ask(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
    }

    /// Waits until `done` holds, for 30 s at most.
    pub fn until(&self, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster never got there"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn redis_cli() -> String {
    if let Ok(bin) = std::env::var("REDIS_CLI_BIN") {
        return bin;
    }
    std::env::var("REDIS_SERVER_BIN")
        .ok()
        .map(|s| std::path::PathBuf::from(s).with_file_name("redis-cli"))
        .filter(|p| p.exists())
        .map_or_else(|| "redis-cli".into(), |p| p.display().to_string())
}

impl Drop for TestRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
