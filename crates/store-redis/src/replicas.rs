//! Writes that must be on a replica before Herald acts on them (`store.replica_acks`): a
//! job's "started" mark before its request goes out, and a webhook delivery before Meta is
//! told it was stored. A failover to a replica that never got the write would forget it: the
//! job would be sent again, or the status lost (and a job in doubt, with no status to settle
//! it, resent once the statuses of later messages show the pipeline caught up).

use herald_core::millis;
use herald_core::repeated::Repeated;
use herald_store::{Result, StoreError};

use crate::conn::Conn;
use crate::{ReplicaAck, ReplicaAckPolicy};

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Start,
    Webhook,
}

/// Fewer replicas than asked acknowledged in time, logged a few times however long it lasts
/// (one record for each kind of write).
static STARTS: Repeated = Repeated::new();
static WEBHOOKS: Repeated = Repeated::new();

/// Waits until `ack.replicas` replicas hold every write of this connection to the masters of
/// `keys` (on one Redis, the one), or `ack.timeout` passes; with fewer, by policy: `hold`
/// refuses (`Unavailable`: the send is held, the webhook answered 503 so Meta delivers it
/// again), `send` goes on and says so. On a Cluster only those masters are asked: a shard
/// without a replica holds only what it stores.
pub(crate) async fn wait(
    conn: &mut Conn<'_>,
    ack: ReplicaAck,
    keys: &[String],
    write: Write,
) -> Result<()> {
    let acked = conn.wait(ack.replicas, ack.timeout, keys).await?;
    let (seen, noun) = match write {
        Write::Start => (&STARTS, "start"),
        Write::Webhook => (&WEBHOOKS, "webhook delivery"),
    };
    if acked >= i64::from(ack.replicas) {
        match write {
            Write::Start => herald_core::recovered!(STARTS, "replicas acknowledge starts again"),
            Write::Webhook => {
                herald_core::recovered!(WEBHOOKS, "replicas acknowledge webhook deliveries again");
            }
        }
        return Ok(());
    }
    let what = format!(
        "{acked} of {} replicas acknowledged the {noun} within {} ms",
        ack.replicas,
        millis(ack.timeout)
    );
    match (ack.policy, write) {
        (ReplicaAckPolicy::Send, Write::Start) => {
            herald_core::warn_repeated!(
                seen,
                "sending although replicas did not acknowledge the start: a failover now could send it twice",
                detail = %what
            );
            Ok(())
        }
        (ReplicaAckPolicy::Send, Write::Webhook) => {
            herald_core::warn_repeated!(
                seen,
                "storing webhooks although replicas did not acknowledge them: a failover now could lose statuses",
                detail = %what
            );
            Ok(())
        }
        (ReplicaAckPolicy::Hold, _) => {
            crate::count_error("replica_ack");
            herald_core::warn_repeated!(
                seen,
                "holding until replicas acknowledge writes",
                write = noun,
                detail = %what
            );
            Err(StoreError::Unavailable(format!(
                "{what}; held (store.replica_ack_policy = \"hold\")"
            )))
        }
    }
}
