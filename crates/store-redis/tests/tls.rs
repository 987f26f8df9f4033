//! Redis over TLS (`rediss://`), as managed Redis services require: the store runs the
//! conformance suite's campaign walk over a TLS connection verified against a private CA,
//! with and without a client certificate; a server it cannot verify (unknown CA, a host name
//! the certificate does not name), a Redis that asks for a certificate it was not given, and a
//! URL that would skip the checks are each refused with an error that says what to set.
//!
//! Redis behind Sentinel over TLS finds its master, and follows a failover, with the same
//! certificates.
//!
//! Each test starts its own `redis-server` (`REDIS_SERVER_BIN`, else `redis-server` on the
//! PATH; it must be built with TLS, as Debian's is) with certificates made for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::conformance;
use herald_store::{Store, StoreError};
use std::time::{Duration, Instant};

use herald_store_redis::testing::{TestPki, TestRedisServer, TestSentinel};
use herald_store_redis::{ClientCert, RedisConfig, RedisStore, RedisTls};

async fn connect(url: &str, tls: RedisTls) -> Result<RedisStore, StoreError> {
    let mut cfg = RedisConfig::new(url, "herald");
    cfg.cluster = url.contains(',');
    cfg.tls = tls;
    RedisStore::connect(&cfg).await
}

/// A connection that failed, saying `says`.
#[track_caller]
fn refused(r: Result<RedisStore, StoreError>, says: &str) -> StoreError {
    match r {
        Err(e) => {
            assert!(e.to_string().contains(says), "expected «{says}» in: {e}");
            e
        }
        Ok(_) => panic!("connected, expected a refusal saying «{says}»"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_over_tls_verified_against_a_private_ca() {
    let pki = TestPki::new();
    let server = pki.server(false);
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    let store = connect(&server.url(), TestPki::trusting(&pki.ca))
        .await
        .unwrap();
    conformance::lifecycle(&store).await;
    conformance::claim_start_settle(&store).await;

    // The port speaks TLS only: the same server without it answers nothing.
    let plain = server.url().replacen("rediss://", "redis://", 1);
    let e = connect(&plain, RedisTls::default()).await.err();
    assert!(
        matches!(e, Some(StoreError::Unavailable(_))),
        "a plain connection to a TLS port: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_on_a_redis_cluster_over_tls() {
    let pki = TestPki::new();
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = pki.cluster();
        (pki, cluster)
    });
    let (pki, cluster) = cluster.await.unwrap();
    let url = cluster.url();
    assert!(url.split(',').all(|u| u.starts_with("rediss://")), "{url}");
    let store = connect(&url, TestPki::trusting(&pki.ca)).await.unwrap();
    conformance::lifecycle(&store).await;
    conformance::claim_start_settle(&store).await;
    // Every master answers (INFO memory goes to each). The nodes have no plain port, so the
    // masters the client found beyond the first were reached over TLS too.
    assert!(store.memory_use().await.unwrap().is_some());
    // Files read again: a Cluster's pools are made anew and proven before they are used;
    // one that cannot connect (another CA) is refused, and the store goes on.
    store
        .renew_tls(TestPki::trusting(&pki.other_ca))
        .await
        .unwrap_err();
    store.renew_tls(TestPki::trusting(&pki.ca)).await.unwrap();
    conformance::claim_start_settle(&store).await;
    refused(
        connect(&url, RedisTls::default()).await,
        "store.tls_ca_file",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_verified_is_refused_with_the_remedy() {
    let pki = TestPki::new();
    let server = pki.server(false);
    // The system's roots, which do not hold the test CA.
    let e = refused(
        connect(&server.url(), RedisTls::default()).await,
        "store.tls_ca_file",
    );
    assert!(e.is_retryable(), "{e:?}");
    // A CA that did not sign it.
    refused(
        connect(&server.url(), TestPki::trusting(&pki.other_ca)).await,
        "store.tls_ca_file",
    );
    // The certificate names 127.0.0.1, not localhost.
    let by_name = server.url().replacen("127.0.0.1", "localhost", 1);
    refused(
        connect(&by_name, TestPki::trusting(&pki.ca)).await,
        "does not name the host",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_asks_for_a_client_certificate_gets_one() {
    let pki = TestPki::new();
    let server = pki.server(true);
    refused(
        connect(&server.url(), TestPki::trusting(&pki.ca)).await,
        "store.tls_cert_file",
    );
    let tls = RedisTls {
        client: Some(pki.client.clone()),
        ..TestPki::trusting(&pki.ca)
    };
    let store = connect(&server.url(), tls).await.unwrap();
    conformance::claim_start_settle(&store).await;
}

#[tokio::test]
async fn settings_that_would_not_check_the_server_are_refused() {
    let pki = TestPki::new();
    // Nothing listens there: each is refused before any connection is tried.
    let insecure = refused(
        connect("rediss://127.0.0.1:1/#insecure", RedisTls::default()).await,
        "#insecure",
    );
    assert!(matches!(insecure, StoreError::Invalid(_)), "{insecure:?}");
    let plain = refused(
        connect("redis://127.0.0.1:1", TestPki::trusting(&pki.ca)).await,
        "write rediss://",
    );
    assert!(matches!(plain, StoreError::Invalid(_)), "{plain:?}");
    let no_cert = refused(
        connect(
            "rediss://127.0.0.1:1",
            TestPki::trusting("not a certificate"),
        )
        .await,
        "(store.tls_ca_file): holds no PEM certificate",
    );
    assert!(matches!(no_cert, StoreError::Invalid(_)), "{no_cert:?}");
    let no_key = ClientCert {
        key_pem: pki.ca.clone().into_bytes(),
        ..pki.client.clone()
    };
    let tls = RedisTls {
        client: Some(no_key),
        ..TestPki::trusting(&pki.ca)
    };
    refused(
        connect("rediss://127.0.0.1:1", tls).await,
        "store.tls_key_file",
    );
}

/// Redis behind Sentinel over TLS, every node TLS-only (a master, its replica, a Sentinel),
/// verified against a private CA: the store finds the master through the Sentinel, runs the
/// campaign walk, follows a failover, and goes on on the new master (reached over TLS too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_behind_sentinel_over_tls() {
    let pki = TestPki::new();
    let mut args = pki.server_args(false);
    args.extend(
        [
            "--tls-replication",
            "yes",
            "--maxmemory-policy",
            "noeviction",
        ]
        .map(String::from),
    );
    let master = TestRedisServer::start_tls(&args.iter().map(String::as_str).collect::<Vec<_>>());
    args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.port().to_string(),
    ]);
    let replica = TestRedisServer::start_tls(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let sentinel = TestSentinel::start_tls(master.port(), 1, &pki).await;
    assert!(
        sentinel.url().starts_with("rediss://"),
        "{}",
        sentinel.url()
    );

    let mut cfg = RedisConfig::new(sentinel.url(), "herald");
    cfg.sentinel_master = Some(TestSentinel::MASTER.into());
    cfg.tls = TestPki::trusting(&pki.ca);
    let store = RedisStore::connect(&cfg).await.unwrap();
    conformance::lifecycle(&store).await;

    sentinel.failover().await;
    assert_eq!(sentinel.master_port().await, Some(replica.port()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.masters_followed() != Some(1) || store.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the store never reached the new master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conformance::claim_start_settle(&store).await;
    // Files read again: the Sentinels' pool is made anew, finds the master, and is used.
    store
        .renew_tls(TestPki::trusting(&pki.other_ca))
        .await
        .unwrap_err();
    store.renew_tls(TestPki::trusting(&pki.ca)).await.unwrap();
    assert_eq!(
        store.masters_followed(),
        Some(0),
        "counted from the renewal"
    );
    conformance::claim_start_settle(&store).await;
    let _ = store.purge_namespace().await;
}

/// Certificates renewed while the store runs (cert-manager renewing a Secret, or a CA
/// rotated): connections made after a renewal use the new ones, without a restart; a renewal
/// that cannot connect is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_take_effect_without_a_restart() {
    let (old, new) = (TestPki::new(), TestPki::new());
    let server = old.server(false);
    let store = connect(&server.url(), TestPki::trusting(&old.ca))
        .await
        .unwrap();
    store.ping().await.unwrap();

    // Redis moves to a certificate of another CA (its handshakes from now on), and drops
    // every connection made before.
    new.take_over(&server.url(), &TestPki::trusting(&old.ca))
        .await;
    // Trusting the old CA only, the store cannot connect again.
    assert!(store.ping().await.is_err(), "the old connection is gone");
    let e = store.ping().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");

    // A renewal it cannot connect with (the old CA again) is refused, saying why.
    let e = store
        .renew_tls(TestPki::trusting(&old.ca))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("store.tls_ca_file"), "{e}");
    // The new CA: the store connects, and runs a campaign.
    store.renew_tls(TestPki::trusting(&new.ca)).await.unwrap();
    store.ping().await.unwrap();
    conformance::claim_start_settle(&store).await;
}
