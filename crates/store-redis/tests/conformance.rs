//! The conformance suite against a real Redis (`REDIS_URL`), each test under its own random
//! key prefix, deleted afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store_redis::{RedisConfig, RedisStore};

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL must point at a Redis for these tests (scripts/test.sh sets it)")
}

async fn fresh() -> RedisStore {
    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    RedisStore::connect(&RedisConfig::new(redis_url(), prefix))
        .await
        .expect("connect to Redis")
}

async fn purge(store: RedisStore) {
    store.purge_namespace().await.expect("clean up");
}

herald_store::conformance_tests!(fresh(), purge);

mod lattice {
    use herald_core::StatusEvent;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = StatusEvent> {
        proptest::sample::select(&StatusEvent::ALL[..])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Shuffled, duplicated statuses through the store end where the core lattice says,
        /// each counter moved at most once.
        #[test]
        fn shuffled_and_duplicated_statuses(sequences in proptest::collection::vec(proptest::collection::vec(event(), 1..9), 1..4)) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let store = super::fresh().await;
                herald_store::conformance::lattice_matches_the_core_model(&store, sequences).await;
                super::purge(store).await;
            });
        }
    }
}

/// Deleting a campaign leaves none of its keys: every key its scripts write (records, dedupe
/// buckets, leases, rejects, upload holds, counters) is named by the deletion, and an index
/// entry goes with it. Other campaigns' keys stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_campaign_leaves_none_of_its_keys() {
    use herald_core::{CampaignAction, CampaignId, SkipReason, WaMessageId};
    use herald_store::conformance::{campaign, claim_req, recipients, running};
    use herald_store::{FailureRow, JobRef, Outcome, Settle, Store, UploadReject};
    use herald_store_redis::testing::keys_matching;

    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    let store = RedisStore::connect(&RedisConfig::new(redis_url(), prefix.clone()))
        .await
        .expect("connect to Redis");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let keys_of = async |id: &CampaignId| {
        let mut keys = keys_matching(&redis_url(), &format!("{prefix}:{{c:{id}}}*")).await;
        keys.sort();
        keys
    };

    let kept = campaign(&store, "kept").await;
    store.enqueue_batch(&kept, &recipients(0..2)).await.unwrap();
    let id = running(&store, "deleted", 45).await;
    let reject = UploadReject {
        row: FailureRow {
            line: Some(3),
            phone: "12345".into(),
            reason: "too_short".into(),
            detail: "the number is too short".into(),
        },
        reason: SkipReason::Invalid,
    };
    store.add_rejects(&id, &[reject], 10).await.unwrap();
    store
        .hold_upload(&id, 7, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    store.release_upload(&id, 7).await.unwrap();
    // Two claims: one sent and settled, one released unsent (its lease keys dropped).
    let sent = store.claim(&claim_req(30, 1)).await.unwrap();
    let refs: Vec<JobRef> = sent.iter().map(JobRef::from).collect();
    store.start(&refs).await.unwrap();
    let settles: Vec<Settle> = sent
        .iter()
        .enumerate()
        .map(|(i, j)| Settle {
            job: j.into(),
            outcome: Outcome::Accepted {
                message_id: WaMessageId::new(&format!("wamid.del{i}")).unwrap(),
            },
        })
        .collect();
    store.settle(&settles).await.unwrap();
    let unsent = store.claim(&claim_req(5, 2)).await.unwrap();
    let released: Vec<Settle> = unsent
        .iter()
        .map(|j| Settle {
            job: j.into(),
            outcome: Outcome::Released,
        })
        .collect();
    store.settle(&released).await.unwrap();
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let before = keys_of(&id).await;
    assert!(
        before.len() > 10,
        "the campaign wrote keys to delete: {before:?}"
    );
    let kept_before = keys_of(&kept).await;

    store.delete_campaign(&id).await.unwrap();
    assert_eq!(keys_of(&id).await, Vec::<String>::new());
    let in_index: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{prefix}:campaigns"))
        .arg(id.as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(in_index, None);
    assert_eq!(
        keys_of(&kept).await,
        kept_before,
        "the other campaign is untouched"
    );
    purge(store).await;
}

/// Campaigns sharing a place in the index (created within one millisecond 1,024 apart, or
/// under a clock set back) are walked as one: a page takes them all in, and none is given
/// twice or missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_gives_campaigns_sharing_a_place_once() {
    use herald_store::conformance::{all_campaigns, campaign};
    use herald_store::{CampaignPage, Store};

    let store = fresh().await;
    let mut made = Vec::new();
    for i in 0..6 {
        made.push(campaign(&store, &format!("tie{i}")).await);
    }
    let mut raw = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The middle four share one score.
    let index = format!("{}:campaigns", store.prefix());
    let at: f64 = redis::cmd("ZSCORE")
        .arg(&index)
        .arg(made[1].as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    for id in &made[2..5] {
        let _: () = redis::cmd("ZADD")
            .arg(&index)
            .arg("XX")
            .arg(at)
            .arg(id.as_str())
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let CampaignPage { campaigns, next } = store.campaigns_from(from, 2).await.unwrap();
        seen.extend(campaigns.into_iter().map(|c| c.id));
        match next {
            Some(_) => from = next,
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "given twice: {seen:?}");
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen[0], made[5], "the newest first");
    assert_eq!(all_campaigns(&store).await.len(), 6);
    purge(store).await;
}

/// A campaign whose last claim found nothing is asked cheaply on the next one (three reads
/// instead of its claim script), and skipped while it has nothing to claim: what appears
/// meanwhile is still claimed at once (new recipients), and a retry once it is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_that_had_nothing_is_claimed_from_again() {
    use herald_store::conformance::{claim_req, recipients, running};
    use herald_store::{Outcome, Settle, Store};
    use std::time::Duration;

    let store = fresh().await;
    let id = running(&store, "idle", 1).await;
    let jobs = store.claim(&claim_req(5, 1)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // Its one job waits for a retry three seconds off: pending, in the delay set.
    store
        .settle(&[Settle {
            job: (&jobs[0]).into(),
            outcome: Outcome::Delayed {
                delay: Duration::from_secs(3),
            },
        }])
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(store.claim(&claim_req(5, 2)).await.unwrap().is_empty());
    }
    store.enqueue_batch(&id, &recipients(10..12)).await.unwrap();
    assert_eq!(store.claim(&claim_req(5, 3)).await.unwrap().len(), 2);
    assert!(store.claim(&claim_req(5, 4)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let retried = store.claim(&claim_req(5, 5)).await.unwrap();
    assert_eq!(retried.len(), 1, "the retry, once due");
    assert_eq!(retried[0].id, jobs[0].id);
    purge(store).await;
}
