//! A store outage is a few log lines, not one per retry. In its own test binary: the
//! rate-limited log state is per process, and other tests fail the store too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald_core::CampaignStatus;
use herald_sender::Sender;
use herald_store::faulty::{Failure, Faulty};
use tokio_util::sync::CancellationToken;

/// How long the campaign may take once the store is back (virtual time).
const LONG: Duration = Duration::from_secs(60);

/// Every claim fails for a minute (the store is down): the lane retries throughout, yet logs
/// the failure a few times at most; once the store is back it says so once, and the campaign
/// completes.
#[tokio::test(start_paused = true)]
async fn a_store_outage_is_a_few_lines() {
    let logs = herald_store::logs::CapturedLog::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());

    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 200;
    let id = rig
        .campaign(
            template_spec("outage", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let faulty = Arc::new(Faulty::new(rig.store.clone()));
    faulty.fail("claim", Failure::Unavailable, 1, None);
    let stop = CancellationToken::new();
    let sender = Sender::new(faulty.clone(), rig.direct(), sender_config(1000)).unwrap();
    let run = tokio::spawn(sender.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let failures = faulty.failed("claim");
    faulty.clear();
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, n);
    stop.cancel();
    run.await.unwrap();
    rig.finish().await;

    let text = logs.text();
    let failed_lines = text.matches("claim failed").count();
    assert!(
        failures >= 10,
        "the lane kept retrying: {failures} failed claims"
    );
    assert!(
        (1..=3).contains(&failed_lines),
        "{failures} failed claims logged in {failed_lines} lines:\n{text}"
    );
    assert_eq!(text.matches("claims work again").count(), 1, "{text}");
}
