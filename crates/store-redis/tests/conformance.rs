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
