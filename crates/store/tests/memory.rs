//! The conformance suite against the in-memory backend, with tokio's clock paused: leases,
//! delays and idle times follow the paused clock, so nothing here depends on the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::MemoryStore;

async fn fresh() -> MemoryStore {
    MemoryStore::new()
}

async fn drop_it(store: MemoryStore) {
    drop(store);
}

herald_store::conformance_tests!(paused: fresh(), drop_it);

mod lattice {
    use herald_core::StatusEvent;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = StatusEvent> {
        proptest::sample::select(&StatusEvent::ALL[..])
    }

    proptest! {
        /// Shuffled, duplicated statuses end where the core lattice says, each counter moved
        /// at most once.
        #[test]
        fn shuffled_and_duplicated_statuses(sequences in proptest::collection::vec(proptest::collection::vec(event(), 1..9), 1..4)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let store = super::fresh().await;
                herald_store::conformance::lattice_matches_the_core_model(&store, sequences).await;
            });
        }
    }
}

mod charges {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever statuses are duplicated and whatever order they arrive in, each delivered
        /// message is charged once, by region, category and delivery day; free and undelivered
        /// ones cost nothing.
        #[test]
        fn charges_count_once_for_any_duplicates_and_order(seed in any::<u64>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let store = super::fresh().await;
                herald_store::conformance::charges_count_once_for(&store, seed).await;
            });
        }
    }
}
