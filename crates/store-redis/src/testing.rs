//! Test support for Redis-backed tests (feature `testsuite`): a private `redis-server` that a
//! test can kill and restart, a private Redis Cluster whose nodes a test can fail over and
//! kill, and certificates for either to speak TLS with.

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
    tls: bool,
}

impl TestRedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The same, with extra `redis-server` arguments (`--appendfsync no`, …).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, false)
    }

    /// One that takes TLS connections only, on its port: `tls` are its `--tls-*` arguments
    /// (its certificate and key, the CA for clients' certificates, `--tls-auth-clients`).
    /// [`Self::url`] is then `rediss://127.0.0.1:<port>`; the helpers that talk to it
    /// themselves (`set_maxmemory`, `break_disk`) do not work on it.
    pub fn start_tls(tls: &[&str]) -> Self {
        Self::launch(tls, true)
    }

    fn launch(extra: &[&str], tls: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-redis-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if tls {
            // The plain port off, the TLS one on the chosen port (later arguments win).
            args.extend(["--port", "0", "--tls-port"].map(String::from));
            args.push(port.to_string());
        }
        let child = Self::spawn(&dir, port, &args);
        Self {
            child,
            port,
            dir,
            extra: args,
            tls,
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
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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

/// A private Redis Sentinel watching the master on `127.0.0.1:<master>` as `mymaster` (a
/// quorum of one, the master down after 1 s of silence), on a free port in a temporary
/// directory. A test asks it to fail over ([`Self::failover`]).
#[derive(Debug)]
pub struct TestSentinel {
    server: TestRedisServer,
    /// Over TLS: the certificates its own helpers connect with.
    tls: Option<crate::RedisTls>,
}

impl TestSentinel {
    /// The name of the master it watches.
    pub const MASTER: &'static str = "mymaster";

    /// Starts it, and waits until it knows the master's replicas (`replicas` of them).
    pub async fn start(master: u16, replicas: usize) -> Self {
        Self::start_for(master, replicas, None).await
    }

    /// The same for a master (and replicas) that ask for `password` (`sentinel auth-pass`);
    /// the Sentinel itself asks for none.
    pub async fn start_for(master: u16, replicas: usize, password: Option<&str>) -> Self {
        Self::launch(master, replicas, password, None).await
    }

    /// One that takes TLS connections only, with `pki`'s certificates, and reaches the master
    /// and replicas (TLS-only too) over TLS. [`Self::url`] is then `rediss://…`.
    pub async fn start_tls(master: u16, replicas: usize, pki: &TestPki) -> Self {
        Self::launch(master, replicas, None, Some(pki)).await
    }

    async fn launch(
        master: u16,
        replicas: usize,
        password: Option<&str>,
        pki: Option<&TestPki>,
    ) -> Self {
        let dir =
            std::env::temp_dir().join(format!("herald-sentinel-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        let name = Self::MASTER;
        // Over TLS: the plain port off, the TLS one on the chosen port, and TLS to the
        // servers it watches (the server arguments without their dashes).
        let tls = pki.map_or(String::new(), |pki| {
            let args = pki.server_args(false);
            let lines: Vec<String> = args
                .chunks(2)
                .map(|kv| format!("{} {}", kv[0].trim_start_matches('-'), kv[1]))
                .collect();
            format!(
                "port 0\ntls-port {port}\ntls-replication yes\n{}\n",
                lines.join("\n")
            )
        });
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n{tls}\
                 sentinel monitor {name} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n{}",
                dir.display(),
                password.map_or(String::new(), |p| format!(
                    "sentinel auth-pass {name} {p}\n"
                )),
            ),
        )
        .unwrap();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(&bin)
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} --sentinel: {e}"));
        let sentinel = Self {
            server: TestRedisServer {
                child,
                port,
                dir,
                extra: Vec::new(),
                tls: pki.is_some(),
            },
            tls: pki.map(|pki| TestPki::trusting(&pki.ca)),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let known = sentinel.ask(&["SENTINEL", "REPLICAS", name]).await;
            if matches!(&known, Ok(redis::Value::Array(r)) if r.len() >= replicas) {
                return sentinel;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the Sentinel never found the replicas: {known:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its URL, for `store.redis_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port of the master it names now.
    pub async fn master_port(&self) -> Option<u16> {
        let Ok(redis::Value::Array(addr)) = self
            .ask(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER])
            .await
        else {
            return None;
        };
        match addr.get(1) {
            Some(redis::Value::BulkString(p)) => std::str::from_utf8(p).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// Promotes a replica (`SENTINEL FAILOVER`), and waits until it names another master.
    pub async fn failover(&self) {
        let before = self.master_port().await;
        self.ask(&["SENTINEL", "FAILOVER", Self::MASTER])
            .await
            .expect("SENTINEL FAILOVER");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.master_port().await == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the failover never happened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ask(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = match self.tls.as_ref().and_then(crate::RedisTls::certificates) {
            Some(certs) => redis::Client::build_with_tls(self.url(), certs)?,
            None => redis::Client::open(self.url())?,
        };
        let mut conn = client.get_multiplexed_async_connection().await?;
        command(args).query_async(&mut conn).await
    }
}

/// The command `args` spell (its name first).
fn command(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

/// A free port on loopback (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A master, its replica (both `noeviction`, the replica in sync) and a [`TestSentinel`]
/// watching them.
#[derive(Debug)]
pub struct SentinelRig {
    pub master: TestRedisServer,
    pub replica: TestRedisServer,
    pub sentinel: TestSentinel,
}

impl SentinelRig {
    pub async fn start() -> Self {
        Self::start_for(None).await
    }

    /// The same with a master and replica that ask for `password` (`requirepass`, and
    /// `masterauth` for the replica's link), and a Sentinel that asks for none (the Bitnami
    /// chart with `auth.sentinel=false`). Their `url()`s carry no password.
    pub async fn start_for(password: Option<&str>) -> Self {
        let mut auth: Vec<&str> = vec!["--maxmemory-policy", "noeviction"];
        if let Some(p) = password {
            auth.extend(["--requirepass", p, "--masterauth", p]);
        }
        let master = TestRedisServer::start_with(&auth);
        let port = master.port().to_string();
        let mut replica_args = auth.clone();
        replica_args.extend(["--replicaof", "127.0.0.1", &port]);
        let replica = TestRedisServer::start_with(&replica_args);
        let replica_url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", replica.port()),
            None => replica.url(),
        };
        until_replication(&replica_url, |i| i.contains("master_link_status:up")).await;
        let sentinel = TestSentinel::start_for(master.port(), 1, password).await;
        assert_eq!(sentinel.master_port().await, Some(master.port()));
        Self {
            master,
            replica,
            sentinel,
        }
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
    /// The CA file of a cluster that speaks TLS only.
    ca: Option<std::path::PathBuf>,
}

impl TestCluster {
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// One whose nodes take TLS connections only, among themselves too (`tls-cluster`,
    /// `tls-replication`): `tls` are their `--tls-*` arguments, which must name `ca` (a CA
    /// file) as `--tls-ca-cert-file` and not ask clients for certificates. [`Self::url`] is
    /// then a list of `rediss://` URLs.
    pub fn start_tls(tls: &[&str], ca: &std::path::Path) -> Self {
        Self::launch(Some((tls, ca)))
    }

    fn launch(tls: Option<(&[&str], &std::path::Path)>) -> Self {
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
            let mut extra = extra;
            if let Some((args, _)) = tls {
                extra.extend(args.iter().map(|s| (*s).to_owned()));
                extra
                    .extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
                extra.extend(["--port", "0", "--tls-port"].map(String::from));
                extra.push(port.to_string());
            }
            let child = TestRedisServer::spawn(&dir, port, &extra);
            nodes.push(TestRedisServer {
                child,
                port,
                dir,
                extra,
                tls: tls.is_some(),
            });
        }
        let mut create = std::process::Command::new(redis_cli());
        if let Some((_, ca)) = tls {
            create.args(["--tls", "--cacert", ca.to_str().unwrap()]);
        }
        let out = create
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
            ca: tls.map(|(_, ca)| ca.to_owned()),
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
                    self.query(p, &["INFO", "replication"])
                        .contains("master_link_status:up")
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
        Self::ask_with(None, port, args)
    }

    /// [`Self::ask`], over TLS trusting the CA file `ca` when given.
    fn ask_with(ca: Option<&std::path::Path>, port: u16, args: &[&str]) -> String {
        let client = match ca {
            None => redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap(),
            Some(ca) => redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).unwrap()),
                },
            )
            .unwrap(),
        };
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        match command(args).query::<redis::Value>(&mut conn).unwrap() {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => s,
            redis::Value::Int(i) => i.to_string(),
            redis::Value::Okay => "OK".into(),
            v => format!("{v:?}"),
        }
    }

    /// [`Self::ask`] in the way this cluster speaks (TLS or not).
    fn query(&self, port: u16, args: &[&str]) -> String {
        Self::ask_with(self.ca.as_deref(), port, args)
    }

    /// The live nodes' ports that are masters (`true`) or replicas (`false`).
    pub fn nodes_that_are(&self, masters: bool) -> Vec<u16> {
        let role = if masters { "role:master" } else { "role:slave" };
        self.live()
            .filter(|&p| self.query(p, &["INFO", "replication"]).contains(role))
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
        let slot: u32 = self
            .query(masters[0], &["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap();
        let serves = |port: u16| {
            let nodes = self.query(port, &["CLUSTER", "NODES"]);
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
            .find(|&r| self.query(r, &["INFO", "replication"]).contains(&of))
            .expect("every master has a replica")
    }

    /// Promotes the replica on `port` in an orderly way (`CLUSTER FAILOVER`: its master stops
    /// taking writes until the replica has caught up), and waits until it is a master.
    pub fn promote(&self, port: u16) {
        let info = self.query(port, &["INFO", "replication"]);
        let old: u16 = info
            .lines()
            .find_map(|l| l.strip_prefix("master_port:"))
            .and_then(|p| p.trim().parse().ok())
            .expect("a replica names its master");
        assert_eq!(self.query(port, &["CLUSTER", "FAILOVER"]), "OK");
        // Done when both sides know it: the replica leads, its old master follows it.
        self.until(|| {
            self.query(port, &["INFO", "replication"])
                .contains("role:master")
                && self
                    .query(old, &["INFO", "replication"])
                    .contains("role:slave")
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
        let slot = self.query(from, &["CLUSTER", "KEYSLOT", key]);
        let id = |p: u16| self.query(p, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        assert_eq!(
            self.query(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            self.query(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
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
                self.query(p, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]),
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
            self.live().all(|p| {
                self.query(p, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
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

/// A private CA in a temporary directory, with a certificate it signed for a TLS
/// `redis-server` on 127.0.0.1 (`ca.pem`, `server.pem`, `server.key`; the certificate also
/// serves a Cluster's nodes as clients of each other) and a client certificate
/// ([`Self::client`]). `other_ca` is a CA that signed neither.
pub struct TestPki {
    pub dir: std::path::PathBuf,
    pub ca: String,
    pub other_ca: String,
    pub client: crate::ClientCert,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose as Usage, KeyPair};
        let dir = std::env::temp_dir().join(format!("herald-tls-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Self::ca("Herald test CA");
        let leaf = |san: &str, usages: &[Usage]| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, san);
            params.extended_key_usages = usages.to_vec();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("127.0.0.1", &[Usage::ServerAuth, Usage::ClientAuth]);
        let (client_cert, client_key) = leaf("herald", &[Usage::ClientAuth]);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server_cert).unwrap();
        std::fs::write(dir.join("server.key"), server_key).unwrap();
        Self {
            dir,
            ca: ca.pem(),
            other_ca: Self::ca("Another CA").pem(),
            client: crate::ClientCert {
                cert_pem: client_cert.into_bytes(),
                key_pem: client_key.into_bytes(),
            },
        }
    }

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    /// The CA file's path.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    /// `redis-server`'s TLS arguments; `clients` asks clients for a certificate.
    pub fn server_args(&self, clients: bool) -> Vec<String> {
        let file = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
        vec![
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            if clients { "yes" } else { "no" }.into(),
        ]
    }

    /// A TLS-only `redis-server` with these certificates.
    pub fn server(&self, clients: bool) -> TestRedisServer {
        let args = self.server_args(clients);
        TestRedisServer::start_tls(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A TLS-only Redis Cluster with these certificates (blocking: call from a test's own
    /// thread or `spawn_blocking`).
    pub fn cluster(&self) -> TestCluster {
        let args = self.server_args(false);
        TestCluster::start_tls(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &self.ca_file(),
        )
    }

    /// Makes the TLS Redis at `url` present this CA's certificate and ask clients for ones
    /// it signed from now on (a renewal, as the server sees it), and drops every client
    /// connection made before. `admin` is what reaches it now.
    pub async fn take_over(&self, url: &str, admin: &crate::RedisTls) {
        let certs = admin
            .certificates()
            .expect("the certificates that reach it now");
        let client = redis::Client::build_with_tls(url, certs).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        let file = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
        // In one command: a certificate and a key that do not match are refused.
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("tls-cert-file")
            .arg(file("server.pem"))
            .arg("tls-key-file")
            .arg(file("server.key"))
            .arg("tls-ca-cert-file")
            .arg(file("ca.pem"))
            .query_async(&mut admin)
            .await
            .unwrap();
        let _: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
            .query_async(&mut admin)
            .await
            .unwrap();
    }

    /// What a store trusting `ca` (PEM) takes.
    pub fn trusting(ca: &str) -> crate::RedisTls {
        crate::RedisTls {
            ca_pem: Some(ca.as_bytes().to_vec()),
            client: None,
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Gives `store` a reading of its Redis's clock for `phone_number_id`, `now` read in a round
/// trip of no time, as a plan's answer would: lets a test reserve pair spacing without having
/// planned (see `pacing::reserve_pairs`).
pub fn learn_store_time(store: &crate::RedisStore, phone_number_id: &str, now: jiff::Timestamp) {
    let at = tokio::time::Instant::now();
    store.keep_clock(phone_number_id, store.masters_followed(), at, at, now);
}

/// How many pair reservation calls for a number go straight to the script after one that
/// found most of its recipients' reservations run out.
pub const PAIR_SCRIPT_CALLS: u32 = crate::pacing::SCRIPT_CALLS;

/// Whether `store` would reserve pair spacing for `phone_number_id` with its own commands
/// (it knows its Redis's time precisely enough), rather than by script.
pub fn knows_store_time(store: &crate::RedisStore, phone_number_id: &str) -> bool {
    store.pair_time(phone_number_id, false).is_some()
}
