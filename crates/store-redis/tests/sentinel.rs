//! Redis behind Sentinel, as Helm charts run it: the store finds the master through the
//! Sentinel, runs the conformance walk there, and when the Sentinel fails over mid-campaign it
//! follows the new master as soon as the Sentinel names it (not only once the old master is
//! demoted, which is when writes to it would be lost): none is applied twice, none lost, and
//! the campaign ends with every count exact, on the new master.
//!
//! The test starts its own master, replica and Sentinel (`REDIS_SERVER_BIN`, else
//! `redis-server` on the PATH).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_store::conformance::{self, all_accepted, claim_req, running};
use herald_store::{ClaimedJob, JobRef, Store, StoreError};
use herald_store_redis::testing::{
    self, SentinelRig, TestSentinel, keys_matching, until_replication,
};
use herald_store_redis::{Password, RedisConfig, RedisStore};

/// Runs `call` until it is not refused as retryable, for 30 s at most; answers its result
/// and how many times it was refused.
async fn through<T, F, Fut>(mut call: F) -> (T, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    loop {
        match call().await {
            Ok(v) => return (v, refused),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("after {refused} refusals: {e}"),
        }
    }
}

/// Claims, starts and settles as accepted `n` jobs, each call retried while refused.
async fn send(store: &RedisStore, n: usize, token: u64) -> (Vec<ClaimedJob>, u32) {
    let req = claim_req(n, token);
    let (jobs, a) = through(|| store.claim(&req)).await;
    assert_eq!(jobs.len(), n);
    let refs: Vec<JobRef> = jobs.iter().map(JobRef::from).collect();
    let (_, b) = through(|| store.start(&refs)).await;
    let settles = all_accepted(&jobs, "sentinel");
    let (results, c) = through(|| store.settle(&settles)).await;
    assert!(
        results
            .iter()
            .all(|r| *r == herald_store::SettleResult::Applied),
        "{results:?}"
    );
    (jobs, a + b + c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_the_master_through_a_sentinel_failover() {
    let SentinelRig {
        master,
        replica,
        sentinel,
    } = SentinelRig::start().await;

    let mut cfg = RedisConfig::new(sentinel.url(), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    let store = RedisStore::connect(&cfg).await.unwrap();
    conformance::lifecycle(&store).await;

    let id = running(&store, "failover", 200).await;
    send(&store, 100, 1).await;
    // Everything is on the replica before it takes over (an orderly failover loses nothing;
    // store.replica_acks covers the writes a sudden one could).
    until_replication(&master.url(), |i| {
        let offset = |name: &str| {
            i.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split(',').find_map(|f| f.strip_prefix("offset=")))
                .map(str::to_owned)
        };
        let mine = i
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .map(str::to_owned);
        mine.is_some() && offset("slave0:") == mine
    })
    .await;

    assert_eq!(store.masters_followed(), Some(0));
    // A reading of the old master's clock, as its plans keep: good for pair reservations
    // until the store follows another master.
    testing::learn_store_time(&store, conformance::PNID, jiff::Timestamp::now());
    assert!(testing::knows_store_time(&store, conformance::PNID));
    sentinel.failover().await;
    assert_eq!(sentinel.master_port().await, Some(replica.port()));
    // The store hears of the new master from the Sentinels, likely before they demote the old
    // one (they do when they next look at it, up to ~10 s on): what it writes from now on goes
    // to the new master, not to the old one, where it would be lost at the demotion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.masters_followed() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the store never heard of the new master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old master's clock says nothing of the new one's: pair reservations go by script
    // until a plan reads the new master's.
    assert!(!testing::knows_store_time(&store, conformance::PNID));
    // (A plan whose round trip took over 200 ms reads it too loosely to count: the next.)
    let pace = herald_store::Pace::per_second(80.0, Duration::from_millis(3));
    for _ in 0..20 {
        through(|| {
            store.plan_sends(
                conformance::PNID,
                pace,
                &[None],
                1,
                Duration::ZERO..Duration::from_millis(100),
                7,
            )
        })
        .await;
        if testing::knows_store_time(&store, conformance::PNID) {
            break;
        }
    }
    assert!(testing::knows_store_time(&store, conformance::PNID));
    let (_, refused) = send(&store, 100, 2).await;
    // Once the old master has turned replica and taken the new master's data, what the store
    // wrote is all there: had any of it gone to the old master, it would be gone now.
    until_replication(&master.url(), |i| {
        i.contains("role:slave") && i.contains("master_link_status:up")
    })
    .await;

    let stats = conformance::invariant(&store, &id).await;
    assert_eq!(
        (stats.accepted, stats.pending, stats.in_flight),
        (200, 0, 0),
        "{stats:?}"
    );
    let campaign = store.campaign(&id).await.unwrap();
    assert_eq!(campaign.status, herald_core::CampaignStatus::Completed);
    // The second half was written on the new master (the old one only replicates it).
    assert!(!keys_matching(&replica.url(), "herald:*").await.is_empty());
    eprintln!("calls refused while the store moved to the new master: {refused}");
}

#[tokio::test]
async fn sentinel_settings_that_cannot_work_are_refused() {
    let mut cfg = RedisConfig::new("redis://127.0.0.1:1", "herald");
    cfg.sentinel_master = Some(String::new());
    let e = RedisStore::connect(&cfg).await.unwrap_err();
    assert!(e.to_string().contains("store.sentinel_master"), "{e}");
    cfg.sentinel_master = Some("mymaster".into());
    cfg.cluster = true;
    let e = RedisStore::connect(&cfg).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
}

/// A master that asks for a password behind Sentinels that ask for none (the Bitnami chart
/// with `auth.sentinel=false`): the password goes in `sentinel_master_password`, the URL has
/// none. Without it the master refuses the store; with the password in the URL the Sentinel
/// does (it takes none); each refusal says what to set.
#[tokio::test]
async fn a_master_with_a_password_the_sentinels_do_not_have() {
    let rig = SentinelRig::start_for(Some("master-secret")).await;
    let mut cfg = RedisConfig::new(rig.sentinel.url(), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    cfg.timeout = Duration::from_secs(2);

    let e = RedisStore::connect(&cfg).await.unwrap_err().to_string();
    assert!(e.contains("store.sentinel_master_password"), "{e}");
    let in_url = rig
        .sentinel
        .url()
        .replace("redis://", "redis://:master-secret@");
    let mut wrong = cfg.clone();
    wrong.url = in_url;
    let e = RedisStore::connect(&wrong).await.unwrap_err().to_string();
    assert!(e.contains("store.sentinel_master_password"), "{e}");

    cfg.sentinel_master_password = Some(Password::new("master-secret"));
    assert!(!format!("{cfg:?}").contains("master-secret"));
    let store = RedisStore::connect(&cfg).await.unwrap();
    conformance::lifecycle(&store).await;
    let id = running(&store, "master-password", 20).await;
    send(&store, 20, 1).await;
    assert_eq!(store.stats(&id).await.unwrap().accepted, 20);
    let _ = store.purge_namespace().await;
}

/// A master with an ACL user for Herald behind Sentinels that have none (nor a password):
/// the user goes in `sentinel_master_username`, its password in `sentinel_master_password`.
/// Without the user, the master refuses the password (it is not the default user's), and the
/// refusal names the setting; given in the URL, user and password go to the Sentinel too,
/// which refuses them.
#[tokio::test]
async fn a_master_with_an_acl_user_the_sentinels_do_not_have() {
    let rig = SentinelRig::start_for(Some("master-secret")).await;
    let admin = rig
        .master
        .url()
        .replace("redis://", "redis://:master-secret@");
    let mut conn = redis::Client::open(admin.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "herald",
            "on",
            ">herald-secret",
            "~*",
            "&*",
            "+@all",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut cfg = RedisConfig::new(rig.sentinel.url(), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    cfg.timeout = Duration::from_secs(2);
    cfg.sentinel_master_password = Some(Password::new("herald-secret"));

    let e = RedisStore::connect(&cfg).await.unwrap_err().to_string();
    assert!(e.contains("store.sentinel_master_username"), "{e}");
    let mut in_url = cfg.clone();
    in_url.url = rig
        .sentinel
        .url()
        .replace("redis://", "redis://herald:herald-secret@");
    in_url.sentinel_master_password = None;
    let e = RedisStore::connect(&in_url).await.unwrap_err().to_string();
    assert!(e.contains("store.sentinel_master_username"), "{e}");

    cfg.sentinel_master_username = Some("herald".into());
    let store = RedisStore::connect(&cfg).await.unwrap();
    let id = running(&store, "master-user", 20).await;
    send(&store, 20, 1).await;
    assert_eq!(store.stats(&id).await.unwrap().accepted, 20);
    // The store's connections are the ACL user's.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(clients.contains("user=herald"), "{clients}");
    let _ = store.purge_namespace().await;
}

/// What a stand-in Sentinel answers, changeable while it runs.
#[derive(Clone, Default)]
struct Answers {
    /// The port `SENTINEL GET-MASTER-ADDR-BY-NAME` names.
    named: Arc<AtomicU16>,
    /// The connections that asked for the master.
    askers: Arc<AtomicUsize>,
    /// Asks for the master are answered with an error (a Sentinel failing).
    failing: Arc<AtomicBool>,
}

impl Answers {
    fn naming(port: u16) -> Self {
        let answers = Self::default();
        answers.named.store(port, Ordering::SeqCst);
        answers
    }
}

/// A stand-in for a Sentinel caught in the moment after a failover promoted a replica:
/// `SENTINEL GET-MASTER-ADDR-BY-NAME` names the promoted node (`answers.named`), while
/// `SENTINEL MASTERS` still lists the old one (`listed`), which answers as a master until the
/// Sentinels demote it. `ROLE` answers as a Sentinel's, `SELECT` is refused as a Sentinel
/// refuses it (it has no databases), anything else is answered `+OK`. Answers its URL.
async fn sentinel_mid_failover(answers: Answers, listed: u16) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let Answers {
                named,
                askers,
                failing,
            } = answers.clone();
            tokio::spawn(async move {
                let mut asked = false;
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                let mut line = String::new();
                // A command comes as an array of bulk strings: `*N`, then `$len` and the
                // argument, N times.
                while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let n: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..2 * n {
                        line.clear();
                        read.read_line(&mut line).await.unwrap();
                        args.push(line.trim().to_ascii_uppercase());
                    }
                    line.clear();
                    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
                    let reply = match args.get(3).map(String::as_str) {
                        None if args.get(1).is_some_and(|a| a == "ROLE") => {
                            format!("*2\r\n{}*1\r\n{}", bulk("sentinel"), bulk("herald"))
                        }
                        _ if args.get(1).is_some_and(|a| a == "SELECT") => {
                            "-ERR unknown command 'select'\r\n".into()
                        }
                        Some("GET-MASTER-ADDR-BY-NAME") => {
                            // Read before the ask is counted: a test that saw the count
                            // changes the answer only after this one.
                            let port = named.load(Ordering::SeqCst).to_string();
                            if !std::mem::replace(&mut asked, true) {
                                askers.fetch_add(1, Ordering::SeqCst);
                            }
                            if failing.load(Ordering::SeqCst) {
                                // Refused: the asker moves on to a new connection.
                                "-ERR failing\r\n".into()
                            } else {
                                format!("*2\r\n{}{}", bulk("127.0.0.1"), bulk(&port))
                            }
                        }
                        Some("MASTERS") => {
                            let fields = [
                                "name",
                                TestSentinel::MASTER,
                                "ip",
                                "127.0.0.1",
                                "port",
                                &listed.to_string(),
                                "flags",
                                "master",
                            ];
                            let fields: String = fields.iter().map(|f| bulk(f)).collect();
                            format!("*1\r\n*{}\r\n{fields}", 8)
                        }
                        _ => "+OK\r\n".into(),
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Right after a failover, the Sentinels' `GET-MASTER-ADDR-BY-NAME` (what the store watches)
/// names the new master while `SENTINEL MASTERS` still lists the old one, which still takes
/// writes. The store's connections must go where its watch says: had they gone to the old
/// master, what the store wrote would be lost when the Sentinels demote it.
#[tokio::test]
async fn connections_go_to_the_master_the_watch_follows() {
    let (old, new) = (
        testing::TestRedisServer::start(),
        testing::TestRedisServer::start(),
    );
    let url = sentinel_mid_failover(Answers::naming(new.port()), old.port()).await;
    let mut cfg = RedisConfig::new(url, "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    let store = RedisStore::connect(&cfg).await.unwrap();
    let id = running(&store, "mid-failover", 4).await;
    assert_eq!(store.claim(&claim_req(4, 1)).await.unwrap().len(), 4);
    assert!(!keys_matching(&new.url(), "herald:*").await.is_empty());
    assert_eq!(
        keys_matching(&old.url(), "herald:*").await,
        Vec::<String>::new()
    );
    assert_eq!(store.stats(&id).await.unwrap().in_flight, 4);
}

/// The node the Sentinels name is checked to be a master before the store uses it: a
/// replica is refused. Where an ACL refuses `ROLE`, `INFO replication` tells; where it
/// refuses both, the Sentinels are taken at their word.
#[tokio::test]
async fn the_node_the_sentinels_name_is_checked_to_be_a_master() {
    let master = testing::TestRedisServer::start();
    let port = master.port().to_string();
    let replica = testing::TestRedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let connect = async |named: u16, user: Option<&str>| {
        let url = sentinel_mid_failover(Answers::naming(named), named).await;
        let mut cfg = RedisConfig::new(url, "herald");
        cfg.sentinel_master = Some(TestSentinel::MASTER.into());
        cfg.timeout = Duration::from_secs(2);
        if let Some(user) = user {
            cfg.sentinel_master_username = Some(user.into());
            cfg.sentinel_master_password = Some(Password::new("herald-secret"));
        }
        RedisStore::connect(&cfg).await
    };
    let e = connect(replica.port(), None).await.unwrap_err().to_string();
    assert!(e.contains("is not one"), "{e}");

    let mut admin = redis::Client::open(master.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for (user, without) in [
        ("no-role", &["-role"][..]),
        ("neither", &["-role", "-info"]),
    ] {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", user, "on", ">herald-secret", "~*", "&*", "+@all"])
            .arg(without)
            .query_async(&mut admin)
            .await
            .unwrap();
        let store = connect(master.port(), Some(user)).await.unwrap();
        let id = running(&store, user, 2).await;
        assert_eq!(store.claim(&claim_req(2, 1)).await.unwrap().len(), 2);
        assert_eq!(store.stats(&id).await.unwrap().in_flight, 2, "{user}");
    }
}

/// With a database in the URL (`redis://sentinel:26379/3`): the database is the master's, and
/// the Sentinels, which have none (they refuse `SELECT`), are asked without it, by the pool
/// and by the watch, which then follows the master they name next.
#[tokio::test]
async fn a_database_in_the_url_is_the_masters() {
    let (first, second) = (
        testing::TestRedisServer::start(),
        testing::TestRedisServer::start(),
    );
    let answers = Answers::naming(first.port());
    let url = sentinel_mid_failover(answers.clone(), first.port()).await;
    let mut cfg = RedisConfig::new(format!("{url}/3"), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    let store = RedisStore::connect(&cfg).await.unwrap();
    running(&store, "database", 2).await;
    assert!(
        !keys_matching(&format!("{}/3", first.url()), "herald:*")
            .await
            .is_empty()
    );
    assert_eq!(
        keys_matching(&first.url(), "herald:*").await,
        Vec::<String>::new()
    );

    // Until the watch has asked too (on a connection of its own, beside the pool's): it
    // counts the changes from its first answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.askers.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the watch never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers.named.store(second.port(), Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.masters_followed() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the watch never followed the master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running(&store, "after", 2).await;
    assert!(
        !keys_matching(&format!("{}/3", second.url()), "herald:*")
            .await
            .is_empty()
    );
}

/// A Sentinel cut off from the others goes on naming a master they have replaced (now a
/// replica): the store passes it over and takes the next Sentinel's word.
#[tokio::test]
async fn a_sentinel_that_names_a_replica_is_passed_over() {
    let master = testing::TestRedisServer::start();
    let port = master.port().to_string();
    let replica = testing::TestRedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let fake = async |named: u16| sentinel_mid_failover(Answers::naming(named), named).await;
    let (stale, current) = (fake(replica.port()).await, fake(master.port()).await);
    let mut cfg = RedisConfig::new(format!("{stale},{current}"), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    let store = RedisStore::connect(&cfg).await.unwrap();
    let id = running(&store, "stale", 2).await;
    assert_eq!(store.claim(&claim_req(2, 1)).await.unwrap().len(), 2);
    assert_eq!(store.stats(&id).await.unwrap().in_flight, 2);
    assert!(!keys_matching(&master.url(), "herald:*").await.is_empty());
}

/// While no Sentinel answers, a failover would not be followed: the watch says so in the
/// log, once however long it lasts (within a minute), and says when one answers again.
#[tokio::test]
async fn the_watch_says_when_no_sentinel_answers() {
    let logs = herald_store::logs::CapturedLog::default();
    // On this test's one thread, where the watch runs too.
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let master = testing::TestRedisServer::start();
    let answers = Answers::naming(master.port());
    let url = sentinel_mid_failover(answers.clone(), master.port()).await;
    let mut cfg = RedisConfig::new(url, "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    let _store = RedisStore::connect(&cfg).await.unwrap();

    let until = async |what: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while logs.text().matches(what).count() < count {
            assert!(
                Instant::now() < deadline,
                "{what:?} never logged:\n{}",
                logs.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    answers.failing.store(true, Ordering::SeqCst);
    until("no Sentinel says which node", 1).await;
    // Several more asks fail (each on a new connection); none is logged again.
    let asked = answers.askers.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.askers.load(Ordering::SeqCst) < asked + 3 {
        assert!(Instant::now() < deadline, "the watch stopped asking");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers.failing.store(false, Ordering::SeqCst);
    until("a Sentinel says which node is the master again", 1).await;
    assert_eq!(
        logs.text().matches("no Sentinel says which node").count(),
        1,
        "{}",
        logs.text()
    );
}
