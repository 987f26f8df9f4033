//! A Redis restart in the middle of a run loses no settled job (AOF on), and while Redis is
//! down the store answers with a typed, retryable error instead of panicking.
//!
//! The test starts its own `redis-server` (`REDIS_SERVER_BIN`, else `redis-server` on the
//! PATH) on a free port in a temporary directory, and kills it with SIGKILL: with
//! `appendfsync always` every acknowledged write must survive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use herald_core::{CampaignAction, StatusEvent, WaMessageId};
use herald_store::conformance::{all_accepted, campaign, claim_req, recipients, scheduled};
use herald_store::{Applied, JobRef, JobState, Outcome, Settle, StatusUpdate, Store};
use herald_store_redis::testing::TestRedisServer;
use herald_store_redis::{RedisConfig, RedisStore};

async fn until_ok<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = herald_store::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    e.is_retryable(),
                    "only 'unavailable' while Redis restarts: {e}"
                );
                assert!(Instant::now() < deadline, "store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_settled_job() {
    let mut server = TestRedisServer::start();
    let mut cfg = RedisConfig::new(server.url(), "herald");
    cfg.timeout = Duration::from_secs(2);
    let store = until_ok(|| RedisStore::connect(&cfg)).await;
    let id = campaign(&store, "restart").await;
    store
        .enqueue_batch(&id, &recipients(0..2000))
        .await
        .unwrap();
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();

    // Send and settle half.
    let mut settled = Vec::new();
    while settled.len() < 1000 {
        let jobs = store.claim(&claim_req(100, 1)).await.unwrap();
        store
            .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
            .await
            .unwrap();
        store.settle(&all_accepted(&jobs, "r")).await.unwrap();
        settled.extend(jobs.into_iter().map(|j| j.id));
    }

    server.kill();
    let err = store.stats(&id).await.unwrap_err();
    assert!(err.is_retryable(), "Redis down is a retryable error: {err}");
    server.restart();

    let stats = until_ok(|| store.stats(&id)).await;
    assert!(stats.invariant_holds(), "{stats:#?}");
    assert_eq!(
        (stats.accepted, stats.pending, stats.recipients),
        (1000, 1000, 2000)
    );
    for job in &settled {
        let view = until_ok(|| store.job(job)).await.unwrap();
        assert!(
            matches!(view.state, JobState::Accepted { .. }),
            "{job}: {:?}",
            view.state
        );
    }

    // The run goes on after the restart, to completion, with nothing sent twice. The first
    // claim's jobs are accepted: Redis lost its scripts, and their message ids must still
    // be findable (the lookups go ahead of the settle, whatever Redis has loaded).
    let (mut rest, mut accepted_after) = (0, Vec::new());
    let req = claim_req(200, 2);
    loop {
        let jobs = until_ok(|| store.claim(&req)).await;
        if jobs.is_empty() {
            break;
        }
        assert!(
            jobs.iter().all(|j| !settled.contains(&j.id)),
            "a settled job came back"
        );
        store
            .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
            .await
            .unwrap();
        let first = rest == 0;
        let settles: Vec<Settle> = jobs
            .iter()
            .map(|j| Settle {
                job: j.into(),
                outcome: if first {
                    let message_id = WaMessageId::new(&format!("wamid.after{}", j.id.seq)).unwrap();
                    accepted_after.push(message_id.clone());
                    Outcome::Accepted { message_id }
                } else {
                    Outcome::Failed {
                        code: "131026".into(),
                    }
                },
            })
            .collect();
        store.settle(&settles).await.unwrap();
        rest += jobs.len();
    }
    assert_eq!(rest, 1000);
    let after = accepted_after.len() as u64;
    assert!(after > 0);
    let stats = store.stats(&id).await.unwrap();
    assert_eq!(
        (stats.accepted, stats.failed, stats.pending),
        (1000 + after, 1000 - after, 0)
    );
    // A status naming only the message id finds each of them.
    let updates: Vec<StatusUpdate> = accepted_after
        .iter()
        .map(|m| StatusUpdate {
            job: None,
            message_id: Some(m.clone()),
            event: StatusEvent::Delivered,
            timestamp: None,
            error_code: None,
            pricing: None,
            replayed: false,
        })
        .collect();
    let applied = store.apply_status(&updates).await.unwrap();
    assert!(
        applied.iter().all(|a| *a == Applied::Changed),
        "{applied:?}"
    );
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        herald_core::CampaignStatus::Completed
    );
}

/// Herald checks the settings that decide what a Redis crash loses: no AOF at all, an AOF
/// the operating system flushes when it likes (`appendfsync no`), or no `maxmemory` (Redis
/// then grows until it is killed) is reported; `everysec` and `always` are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_settings_are_checked() {
    let cases: [(&[&str], Option<&str>); 5] = [
        (&[], None),
        (&["--appendfsync", "everysec"], None),
        (&["--appendfsync", "no"], Some("appendfsync is no")),
        (&["--appendonly", "no"], Some("appendonly is off")),
        (&["--maxmemory", "0"], Some("maxmemory is not set")),
    ];
    for (args, expected) in cases {
        let server = TestRedisServer::start_with(&[&["--maxmemory", "256mb"], args].concat());
        let store = RedisStore::connect(&RedisConfig::new(server.url(), "herald"))
            .await
            .unwrap();
        let warnings = store.durability_warnings().await;
        match expected {
            None => assert!(warnings.is_empty(), "{args:?}: {warnings:?}"),
            Some(w) => assert!(
                warnings.iter().any(|x| x.contains(w)),
                "{args:?}: {warnings:?}"
            ),
        }
    }
}

/// A store under a fresh prefix, the prefix, and a connection of its own to the same Redis
/// (to do what a crash or an older build would have done).
async fn rig() -> (RedisStore, String, redis::aio::MultiplexedConnection) {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL (scripts/test.sh sets it)");
    let prefix = format!("herald-repair-{:016x}", rand::random::<u64>());
    let store = store_at(&prefix).await;
    let raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, prefix, raw)
}

/// Another process's store under `prefix`.
async fn store_at(prefix: &str) -> RedisStore {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL (scripts/test.sh sets it)");
    RedisStore::connect(&RedisConfig::new(url, prefix.to_owned()))
        .await
        .unwrap()
}

/// A set's members, sorted.
async fn members(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(raw)
        .await
        .unwrap();
    ids.sort();
    ids
}

/// A crash between a campaign's status change and its index writes (they live in other hash
/// slots, so no script does both) leaves an index behind; the periodic repair puts every
/// index back from the campaigns' own records: a scheduled campaign starts, a running one is
/// claimed from, and a campaign whose creator died before writing it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_repair_covers_every_index() {
    let (store, prefix, mut raw) = rig().await;
    let scheduled = scheduled(&store, "scheduled", "2020-01-01T00:00:00Z").await;
    let running = herald_store::conformance::running(&store, "running", 2).await;
    // The crash: the index writes never happened.
    let _: () = redis::pipe()
        .zrem(format!("{prefix}:scheduled"), scheduled.as_str())
        .srem(format!("{prefix}:running"), running.as_str())
        .srem(format!("{prefix}:active"), running.as_str())
        .sadd(format!("{prefix}:active"), "ghostcampaign1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        store
            .due_scheduled(jiff::Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    store.repair_indexes().await.unwrap();
    assert_eq!(
        store.due_scheduled(jiff::Timestamp::now()).await.unwrap(),
        std::slice::from_ref(&scheduled)
    );
    assert_eq!(store.claim(&claim_req(5, 1)).await.unwrap().len(), 2);
    // The dangling entry does not stop the sweeps, and goes.
    store
        .expire_in_doubt(
            std::time::Duration::ZERO,
            herald_store::InDoubtPolicy::Resend,
        )
        .await
        .unwrap();
    let active = members(&mut raw, &format!("{prefix}:active")).await;
    assert!(!active.contains(&"ghostcampaign1".to_owned()), "{active:?}");
    assert!(active.contains(&running.to_string()), "{active:?}");
    store.purge_namespace().await.unwrap();
}

/// The repair reads the campaigns a page at a time: a running campaign far down a long list
/// is put back in the running index, an entry for one that is not running goes, and so does
/// one for a campaign that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_repair_reads_a_long_list_by_pages() {
    let (store, prefix, mut raw) = rig().await;
    // The oldest runs; over a thousand newer drafts put it past the first pages.
    let oldest = herald_store::conformance::running(&store, "oldest", 2).await;
    let mut drafts = Vec::new();
    for i in 0..1_100 {
        drafts.push(campaign(&store, &format!("draft{i}")).await);
    }
    let _: () = redis::pipe()
        .srem(format!("{prefix}:running"), oldest.as_str())
        .sadd(format!("{prefix}:running"), drafts[7].as_str())
        .sadd(format!("{prefix}:running"), "ghostcampaign1")
        .query_async(&mut raw)
        .await
        .unwrap();
    store.repair_indexes().await.unwrap();
    let listed = members(&mut raw, &format!("{prefix}:running")).await;
    assert_eq!(listed, [oldest.to_string()]);
    assert_eq!(store.claim(&claim_req(5, 1)).await.unwrap().len(), 2);
    store.purge_namespace().await.unwrap();
}

/// Only a campaign that has run is swept for leases and in-doubt jobs: a draft or a scheduled
/// campaign holds none, so thousands of them kept cost the workers' sweeps nothing (they used
/// to cost each sweep a few commands apiece). The repair keeps it so, and takes out those an
/// older build put in the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_not_swept() {
    let (store, prefix, mut raw) = rig().await;
    let key = format!("{prefix}:active");
    let draft = campaign(&store, "draft").await;
    let scheduled = scheduled(&store, "scheduled", "2099-01-01T00:00:00Z").await;
    let running = herald_store::conformance::running(&store, "running", 2).await;
    assert_eq!(members(&mut raw, &key).await, [running.to_string()]);
    // An older build put them there at creation: the repair takes them out.
    let _: () = redis::cmd("SADD")
        .arg(&key)
        .arg(draft.as_str())
        .arg(scheduled.as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    store.repair_indexes().await.unwrap();
    assert_eq!(members(&mut raw, &key).await, [running.to_string()]);
    // Paused, it may still hold leases; started, a draft joins.
    store
        .transition(&running, CampaignAction::Pause, None)
        .await
        .unwrap();
    store
        .transition(&draft, CampaignAction::Start, None)
        .await
        .unwrap();
    let mut want = vec![running.to_string(), draft.to_string()];
    want.sort();
    assert_eq!(members(&mut raw, &key).await, want);
    store.repair_indexes().await.unwrap();
    assert_eq!(members(&mut raw, &key).await, want);
    store.purge_namespace().await.unwrap();
}

/// A message id's lookup is kept as 8 bytes of its hash, not the id (half the memory); one an
/// older build wrote, with the id itself as the field, is still found for its 31 days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_lookups_are_hashed_and_older_ones_still_found() {
    let (store, prefix, mut raw) = rig().await;
    herald_store::conformance::running(&store, "lookups", 2).await;
    let jobs = store.claim(&claim_req(2, 1)).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let refs: Vec<JobRef> = jobs.iter().map(JobRef::from).collect();
    store.start(&refs).await.unwrap();
    store
        .settle(&all_accepted(&jobs[..1], "hashed"))
        .await
        .unwrap();
    let hashed = WaMessageId::new(&format!("wamid.hashed{}", jobs[0].id.seq)).unwrap();
    assert_eq!(
        store.job_for_message(&hashed).await.unwrap(),
        Some(jobs[0].id.clone())
    );
    let buckets: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:mh:*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    let fields: Vec<Vec<u8>> = redis::cmd("HKEYS")
        .arg(&buckets[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].len(), 8, "the id's hash, not the id");
    // The settle marked the day hashed lookups began.
    let since: i64 = redis::cmd("GET")
        .arg(format!("{prefix}:mh_since"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(since, herald_core::unix_ms().div_euclid(86_400_000));
    // A status of a job settled with its id writes no lookup again (the settle did): with the
    // lookup gone, the job's status still applies, and no lookup comes back.
    let _: () = redis::cmd("DEL")
        .arg(&buckets[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    let delivered = StatusUpdate {
        job: Some(jobs[0].id.clone()),
        message_id: Some(hashed.clone()),
        event: StatusEvent::Delivered,
        timestamp: None,
        error_code: None,
        pricing: None,
        replayed: false,
    };
    assert_eq!(
        store
            .apply_status(std::slice::from_ref(&delivered))
            .await
            .unwrap(),
        [Applied::Changed]
    );
    let after: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:mh:*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");
    // Applied again from a delivery that may have been applied before (a reconciler that
    // crashed between a status and its lookup): the lookup is written, nothing else moves.
    let stats = store.stats(&jobs[0].id.campaign).await.unwrap();
    let replayed = StatusUpdate {
        replayed: true,
        ..delivered.clone()
    };
    assert_eq!(
        store
            .apply_status(std::slice::from_ref(&replayed))
            .await
            .unwrap(),
        [Applied::NoChange]
    );
    assert_eq!(store.stats(&jobs[0].id.campaign).await.unwrap(), stats);
    assert_eq!(
        store.job_for_message(&hashed).await.unwrap(),
        Some(jobs[0].id.clone())
    );
    // Not for an id the job does not hold (its callback data on another message).
    let other = WaMessageId::new("wamid.notThisJobs").unwrap();
    let replayed_other = StatusUpdate {
        message_id: Some(other.clone()),
        ..replayed
    };
    store.apply_status(&[replayed_other]).await.unwrap();
    assert_eq!(store.job_for_message(&other).await.unwrap(), None);
    // As a build before this one wrote it, three days ago.
    let older =
        WaMessageId::new("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA").unwrap();
    let day = herald_core::unix_ms().div_euclid(86_400_000) - 3;
    let bucket = herald_core::fnv1a(older.as_str().as_bytes()) % 16_384;
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:m:{day}:{bucket}"))
        .arg(older.as_str())
        .arg(jobs[1].id.to_string())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        store.job_for_message(&older).await.unwrap(),
        Some(jobs[1].id.clone())
    );
    let unknown = WaMessageId::new("wamid.neverSent").unwrap();
    assert_eq!(store.job_for_message(&unknown).await.unwrap(), None);
    store.purge_namespace().await.unwrap();
}

/// The index repair runs once per turn across the deployment, not once per process: a
/// process whose turn another took leaves the indexes as they are until a later turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_take_turns_at_the_index_repair() {
    let (first, prefix, mut raw) = rig().await;
    let id = herald_store::conformance::running(&first, "turns", 1).await;
    // A crash left it out of the running index.
    let _: () = redis::cmd("SREM")
        .arg(format!("{prefix}:running"))
        .arg(id.as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(first.repair_turn().await, "the first to ask repairs");
    let second = store_at(&prefix).await;
    assert!(!second.repair_turn().await, "one turn, one repair");
    let listed = |c: Vec<herald_store::RunningCampaign>| c.into_iter().any(|c| c.id == id);
    // Its first look would repair, but the turn is taken.
    assert!(!listed(second.running_campaigns().await.unwrap()));
    // The turn over, the next process to look repairs.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:repair_turn"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let third = store_at(&prefix).await;
    assert!(listed(third.running_campaigns().await.unwrap()));
    assert!(!first.repair_turn().await, "the third's turn stands");
    first.purge_namespace().await.unwrap();
}

/// Lookups with the whole id are asked for only on days an older build can have written them:
/// up to the day after hashed lookups began. After that, a message nobody sent costs the
/// hashed buckets' reads alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_id_lookups_are_read_only_from_before_the_change() {
    let (store, prefix, mut raw) = rig().await;
    let id = campaign(&store, "whole").await;
    let today = herald_core::unix_ms().div_euclid(86_400_000);
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:mh_since"))
        .arg(today - 10)
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut whole = async |n: i64| {
        let message = WaMessageId::new(&format!("wamid.whole{n}")).unwrap();
        let bucket = herald_core::fnv1a(message.as_str().as_bytes()) % 16_384;
        let _: () = redis::cmd("HSET")
            .arg(format!("{prefix}:m:{}:{bucket}", today - n))
            .arg(message.as_str())
            .arg(format!("{id}:{n}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        message
    };
    let before = whole(12).await;
    let after = whole(3).await;
    let found = store.job_for_message(&before).await.unwrap();
    assert_eq!(found.map(|j| j.seq), Some(12));
    assert_eq!(store.job_for_message(&after).await.unwrap(), None);
    store.purge_namespace().await.unwrap();
}
