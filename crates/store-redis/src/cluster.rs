//! Redis Cluster (ARCHITECTURE §3): a pool of cluster connections with bounded retries, and
//! the masters, for what must visit each of them (a key scan).
//!
//! A cluster connection keeps one multiplexed connection per node and routes each command to
//! the master of its key's slot. It follows MOVED and ASK, retries TRYAGAIN and CLUSTERDOWN
//! and refreshes the slot map after a failover, at most [`RETRIES`] times with a wait that
//! doubles from 10 ms up to 1 s (about 4 s in all); then the call fails as unavailable, and is
//! counted (`herald_store_errors_total`) and retried by its caller, never waited on forever.

use std::time::Duration;

use deadpool::managed::{Metrics, RecycleResult};
use herald_store::StoreError;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{IntoConnectionInfo, RedisError};

use crate::RedisTls;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// Attempts of one command after the first, on MOVED, ASK, TRYAGAIN or a lost node.
pub(crate) const RETRIES: u32 = 10;

/// How long a connection taken for a blocking command may wait for its answer beyond the
/// store's timeout: the longest `WAIT` or blocking read Herald issues on a Cluster.
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(2);

pub(crate) type Pool = deadpool::managed::Pool<Manager>;

/// Makes cluster connections for the pool.
pub(crate) struct Manager {
    client: ClusterClient,
}

impl deadpool::managed::Manager for Manager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut ClusterConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await?;
        Ok(())
    }
}

/// The nodes of a comma-separated list of URLs.
pub(crate) fn nodes(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// A pool of connections to the Cluster some of whose nodes `urls` names (over TLS with `tls`
/// for `rediss://`; the nodes found are reached the same way), answering within `answer` (the
/// store's timeout, plus what a blocking command may take).
pub(crate) fn pool(
    urls: &[&str],
    tls: &RedisTls,
    connect: Duration,
    answer: Duration,
    cfg: deadpool::managed::PoolConfig,
) -> Result<Pool, StoreError> {
    let invalid =
        |e: &dyn std::fmt::Display| StoreError::Invalid(format!("redis cluster url: {e}"));
    if urls.is_empty() {
        return Err(invalid(&"names no node"));
    }
    for url in urls {
        let db = url
            .into_connection_info()
            .map_err(|e| invalid(&e))?
            .redis_settings()
            .db();
        if db != 0 {
            // Each node would refuse the SELECT, and the store every call.
            return Err(invalid(&format!(
                "names database {db}, but a Redis Cluster has only database 0: take the \
                 /{db} off the URL (store.key_prefix keeps deployments apart)"
            )));
        }
    }
    let mut builder = ClusterClientBuilder::new(urls.to_vec());
    if let Some(certs) = tls.certificates() {
        builder = builder.certs(certs);
    }
    let client = builder
        .retries(RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(1_000)
        .connection_timeout(connect)
        .response_timeout(answer)
        .build()
        .map_err(|e| invalid(&e))?;
    Pool::builder(Manager { client })
        .config(cfg)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| invalid(&e))
}

/// The masters serving slots now, as `(host, port)`, from `CLUSTER NODES`.
pub(crate) async fn masters(
    conn: &mut ClusterConnection,
) -> redis::RedisResult<Vec<(String, u16)>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    Ok(parse_masters(&text))
}

/// The masters in `CLUSTER NODES` output: `<id> <host:port@bus[,name]> <flags> …`, flags
/// holding `master` and not `fail`, with slots (fields past the eighth).
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = f.get(2)?;
            if !flags.split(',').any(|x| x == "master")
                || flags.split(',').any(|x| x == "fail" || x == "fail?")
                || f.len() < 9
            {
                return None;
            }
            let addr = f.get(1)?.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Routes a command to the node at `host:port`.
pub(crate) fn at(host: &str, port: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_other_than_0_is_refused() {
        let cfg = || deadpool::managed::PoolConfig::new(1);
        let tls = RedisTls::default();
        let pool = |urls: &[&str]| {
            pool(
                urls,
                &tls,
                Duration::from_secs(1),
                Duration::from_secs(1),
                cfg(),
            )
        };
        let e = pool(&["redis://127.0.0.1:7000", "redis://127.0.0.1:7001/3"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("database 3") && e.contains("/3"), "{e}");
        assert!(pool(&["redis://127.0.0.1:7000/0", "redis://127.0.0.1:7001"]).is_ok());
    }

    #[test]
    fn masters_are_the_nodes_serving_slots() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1 2 connected 5461-10922
292f 127.0.0.1:30003@40003,node-c master - 0 1 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
a1b2 127.0.0.1:30007@40007 master,fail - 0 1 7 connected
c3d4 127.0.0.1:30008@40008 master - 0 1 8 connected
";
        assert_eq!(
            parse_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("127.0.0.1".to_owned(), 30001),
            ]
        );
    }

    #[test]
    fn node_lists_are_comma_separated() {
        assert_eq!(
            nodes(" redis://a:1, redis://b:2 ,"),
            vec!["redis://a:1", "redis://b:2"]
        );
    }
}
