//! The conformance suite against a real Redis Cluster (`REDIS_CLUSTER_URL`: its nodes, comma
//! separated; scripts/test.sh starts three masters and three replicas), each test under its
//! own random key prefix, deleted afterwards from every master.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store_redis::{RedisConfig, RedisStore};

fn cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL").expect(
        "REDIS_CLUSTER_URL must name the nodes of a Redis Cluster for these tests \
         (scripts/test.sh starts one and sets it)",
    )
}

async fn fresh() -> RedisStore {
    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    let mut cfg = RedisConfig::new(cluster_url(), prefix);
    cfg.cluster = true;
    RedisStore::connect(&cfg)
        .await
        .expect("connect to the Redis Cluster")
}

async fn purge(store: RedisStore) {
    store.purge_namespace().await.expect("clean up");
}

herald_store::conformance_tests!(fresh(), purge);
