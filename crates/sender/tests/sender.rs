//! The sender against the simulator, on the memory store, all in this process on a paused
//! clock: nothing lost, nothing twice, every Meta limit respected, whatever the machine is
//! doing (time only passes when every task waits for it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use std::sync::Arc;

use common::*;
use herald_core::{CampaignId, CampaignStatus, PauseKind, SkipReason};
use herald_sender::Sender;
use herald_sim::Delivery;
use herald_store::faulty::{Failure, Faulty};
use herald_store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(60);
/// The simulator's throughput limit in these tests is above the sender's rate: pacing is
/// measured in `processes.rs`, with the simulator in a process of its own.
const SIM_MPS: u32 = 2000;

/// 5,000 recipients, no faults: all accepted once, all webhooks applied.
#[tokio::test(start_paused = true)]
async fn five_thousand_recipients_all_accepted_once() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let id = rig
        .campaign(
            template_spec("five-k", "order_update", None),
            &recipients(0..5000),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(1000));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.recipients, 5000);
    assert_eq!(stats.accepted, 5000, "{stats:#?}");
    assert_eq!(
        (stats.failed, stats.skipped_at_send, stats.in_doubt),
        (0, 0, 0)
    );
    let stats = rig.wait_sent(&id, LONG).await;
    assert_eq!(stats.sent, 5000, "every accepted message's webhook applied");
    let o = rig.oracle().await;
    assert_clean(&o, &["130429", "131056"]);
    assert_eq!((o.accepted, o.unique_callbacks), (5000, 5000));
    stop.cancel();
    let report = sender.await.unwrap();
    assert_eq!((report.accepted, report.abandoned), (5000, 0));
    rig.finish().await;
}

/// 5% 5xx, 2% hangs past the client timeout, 2% resets after the request was read, 1%
/// undeliverable: every recipient ends accepted exactly once or failed with 131026, and the
/// ambiguous sends (the hangs and resets, which the simulator accepted) are settled by their
/// webhooks, not resent.
#[tokio::test(start_paused = true)]
async fn faults_lose_nothing_and_duplicate_nothing() {
    let mut sim = sim_config(SIM_MPS);
    sim.faults.error_5xx = 0.05;
    sim.faults.hang = 0.02;
    sim.faults.hang_ms = 4000;
    sim.faults.reset_after_read = 0.02;
    sim.undeliverable.fraction = 0.01;
    sim.undeliverable.mode = Delivery::Sync;
    let rig = Rig::in_process(sim).await;
    let n = 2000;
    let id = rig
        .campaign(
            template_spec("faults", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(1000));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    let o = rig.oracle().await;
    assert_clean(&o, &["130429", "131056"]);
    assert!(
        o.faults.error_5xx > 0 && o.faults.hangs > 0 && o.faults.resets > 0,
        "{o:#?}"
    );
    // Every recipient ended one way or the other.
    assert_eq!(stats.accepted + stats.failed_before_accept, n, "{stats:#?}");
    assert_eq!(
        (stats.in_doubt, stats.pending, stats.skipped_at_send),
        (0, 0, 0)
    );
    // Failures are the undeliverable numbers, and only they.
    assert_eq!(
        stats.errors.keys().collect::<Vec<_>>(),
        ["131026"],
        "{stats:#?}"
    );
    assert_eq!(stats.failed, o.rejected["131026"]);
    // What the simulator accepted is exactly what the store counts as accepted: the hangs
    // and resets were accepted by Meta, went in doubt, and their webhooks settled them.
    assert_eq!(stats.accepted, o.unique_callbacks, "{stats:#?}\n{o:#?}");
    assert_eq!(o.accepted, o.unique_callbacks);
    // Undeliverable numbers were added to the suppression list.
    let mut cursor = 0;
    let mut suppressed = 0;
    loop {
        let (page, next) = rig
            .store
            .list_suppressed(PNID, herald_store::SuppressionScope::All, cursor)
            .await
            .unwrap();
        suppressed += page.len() as u64;
        match next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(suppressed, stats.failed);
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// A send Meta refused (a 500 with a Graph error) never reached its recipient, so its pair
/// reservation goes back: the retry waits its backoff (at most 2 s here), not the 6 s pair
/// interval. In virtual time, the whole campaign finishes within one pair interval.
#[tokio::test(start_paused = true)]
async fn a_refused_send_gives_its_pair_reservation_back() {
    let mut sim = sim_config(SIM_MPS);
    sim.faults.error_5xx = 0.3;
    let rig = Rig::in_process(sim).await;
    let n = 200;
    let id = rig
        .campaign(
            template_spec("refused", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let cfg = sender_config(1000);
    let interval = cfg.pair_interval;
    let started = tokio::time::Instant::now();
    let (stop, sender) = rig.sender(cfg);
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    let took = started.elapsed();
    let o = rig.oracle().await;
    assert!(o.faults.error_5xx > 20, "{o:#?}");
    assert_clean(&o, &["130429"]);
    assert_eq!((stats.accepted, o.unique_callbacks), (n, n), "{stats:#?}");
    assert!(
        took < interval,
        "retries waited out the pair interval: {took:?} for {n} sends"
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Two campaigns to the same 100 recipients: Herald spaces the sends to each recipient
/// itself, so Meta never answers 131056 and no recipient fails.
#[tokio::test(start_paused = true)]
async fn pair_spacing_holds_across_campaigns() {
    let mut sim = sim_config(SIM_MPS);
    sim.limits.pair_interval_ms = 2000;
    sim.limits.pair_burst = 1;
    let rig = Rig::in_process(sim).await;
    let people = recipients(0..100);
    let a = rig
        .campaign(template_spec("pair-a", "order_update", None), &people, true)
        .await;
    let b = rig
        .campaign(template_spec("pair-b", "order_update", None), &people, true)
        .await;
    let mut cfg = sender_config(1000);
    cfg.pair_interval = Duration::from_millis(2000);
    let (stop, sender) = rig.sender(cfg);
    for id in [&a, &b] {
        let stats = rig.wait_status(id, CampaignStatus::Completed, LONG).await;
        assert_eq!((stats.accepted, stats.failed), (100, 0), "{stats:#?}");
    }
    let o = rig.oracle().await;
    assert_clean(&o, &["131056", "130429"]);
    assert_eq!(o.unique_callbacks, 200);
    let gap = o.min_pair_gap_ms.expect("each recipient got two messages");
    assert!(gap >= 2000.0, "two sends to one recipient {gap} ms apart");
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// 132001 (template missing in that language) pauses the campaign, once, with its reason;
/// its unsent jobs stay pending, and another campaign on the number carries on.
#[tokio::test(start_paused = true)]
async fn a_campaign_fatal_code_pauses_that_campaign_only() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let bad = rig
        .campaign(
            template_spec("bad", "no_such_template", None),
            &recipients(0..500),
            true,
        )
        .await;
    let good = rig
        .campaign(
            template_spec("good", "order_update", None),
            &recipients(1000..1300),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(200));
    let stats = rig.wait_status(&bad, CampaignStatus::Paused, LONG).await;
    let reason = rig
        .store
        .campaign(&bad)
        .await
        .unwrap()
        .pause_reason
        .unwrap();
    assert_eq!(
        (reason.kind, reason.code),
        (PauseKind::CampaignFatal, Some(132_001))
    );
    assert!(!reason.detail.is_empty());
    let good_stats = rig
        .wait_status(&good, CampaignStatus::Completed, LONG)
        .await;
    assert_eq!(good_stats.accepted, 300);
    // Nothing of the paused campaign failed: its jobs wait for the operator.
    let stats_after = rig.store.stats(&bad).await.unwrap();
    assert_eq!(
        (
            stats_after.failed,
            stats_after.accepted,
            stats_after.in_flight
        ),
        (0, 0, 0)
    );
    assert_eq!(stats_after.pending, 500, "{stats:#?}");
    // The pause stopped the sends: only what was started before it landed went out, a
    // round or two of the 500, not the campaign.
    let o = rig.oracle().await;
    let tried = o.rejected["132001"];
    assert!(tried < 250, "{tried} sends of 500 despite the first 132001");
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// 190 (token invalid) pauses every campaign on the phone number, with the reason.
#[tokio::test(start_paused = true)]
async fn a_sender_fatal_code_pauses_every_campaign_on_the_number() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let a = rig
        .campaign(
            template_spec("a", "order_update", None),
            &recipients(0..300),
            true,
        )
        .await;
    let b = rig
        .campaign(
            template_spec("b", "order_update", None),
            &recipients(300..600),
            true,
        )
        .await;
    let (stop, sender) =
        rig.sender_with(sender_config(200), rig.direct().with_token("expired-token"));
    for id in [&a, &b] {
        let stats = rig.wait_status(id, CampaignStatus::Paused, LONG).await;
        let reason = rig.store.campaign(id).await.unwrap().pause_reason.unwrap();
        assert_eq!(
            (reason.kind, reason.code),
            (PauseKind::SenderFatal, Some(190))
        );
        assert_eq!(stats.failed, 0);
    }
    let o = rig.oracle().await;
    assert_eq!(o.accepted, 0);
    assert!(
        o.rejected["190"] < 300,
        "a round or two of 600, not all: {o:#?}"
    );
    stop.cancel();
    sender.await.unwrap();
    for id in [&a, &b] {
        let s = rig.store.stats(id).await.unwrap();
        assert_eq!(
            (s.pending, s.in_flight),
            (300, 0),
            "released, waiting for the operator"
        );
    }
    rig.finish().await;
}

/// A free-form message goes only to recipients with an open 24 h window; the others are
/// skipped as window_closed instead of being sent to fail silently (131047).
#[tokio::test(start_paused = true)]
async fn free_form_messages_respect_the_window_and_the_suppression_list() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    // Recipients 0..10 wrote in (their windows open through the reconciler); 10 is
    // suppressed; 11..20 never wrote.
    for i in 0..10 {
        rig.sim.inbound(&phone(i).digits(), "hi").await;
    }
    rig.store
        .suppress(PNID, &[phone(10)], &herald_store::Why::now("test"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let open = rig
            .store
            .windows_open(PNID, &(0..10).map(phone).collect::<Vec<_>>())
            .await
            .unwrap();
        if open.iter().all(|o| *o) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbound webhooks not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = rig
        .campaign(text_spec("service"), &recipients(0..20), true)
        .await;
    let (stop, sender) = rig.sender(sender_config(500));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 10, "{stats:#?}");
    assert_eq!(stats.skipped.get(SkipReason::WindowClosed), 9);
    assert_eq!(stats.skipped.get(SkipReason::Suppressed), 1);
    let stats = rig.wait_sent(&id, LONG).await;
    assert_eq!(stats.failed, 0, "no 131047 by webhook: {stats:#?}");
    let o = rig.oracle().await;
    assert_clean(&o, &["131047"]);
    assert_eq!(o.accepted, 10);
    // Service messages are free: what Meta delivered is counted as free, nothing charged.
    assert!(o.free > 0, "the simulator delivered nothing");
    let stats = wait_for(&rig, &id, |s| {
        s.pricing.free.get("free_customer_service").copied() == Some(o.free)
    })
    .await;
    assert!(stats.pricing.charged.is_empty(), "{stats:#?}");
    assert_eq!(o.charged.values().sum::<u64>(), 0);
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Shutdown mid-campaign: nothing unsent is lost, nothing in flight is left in doubt, and a
/// second pool finishes the campaign without a duplicate.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over_cleanly() {
    let mut sim = sim_config(SIM_MPS);
    sim.faults.latency_ms = 30;
    let rig = Rig::in_process(sim).await;
    let id = rig
        .campaign(
            template_spec("handover", "order_update", None),
            &recipients(0..600),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(200));
    loop {
        let s = rig.store.stats(&id).await.unwrap();
        if s.accepted >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let report = sender.await.unwrap();
    assert_eq!(report.abandoned, 0);
    let mid = rig.store.stats(&id).await.unwrap();
    assert_eq!((mid.in_flight, mid.in_doubt), (0, 0), "{mid:#?}");
    assert!(mid.pending > 0, "stopped mid-campaign");
    assert_eq!(mid.accepted, report.accepted);
    let (stop, sender) = rig.sender(sender_config(200));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 600);
    let o = rig.oracle().await;
    assert_clean(&o, &["130429", "131056"]);
    assert_eq!(o.unique_callbacks, 600);
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// MPS 80 against a simulator enforcing 80 over any rolling second, in virtual time: no
/// 130429, no rolling second above 80, no 100 ms with more than its share (evenly spaced, no
/// bursts), and the campaign takes the time 80 per second needs.
#[tokio::test(start_paused = true)]
async fn pacing_at_80_never_exceeds_80() {
    let rig = Rig::in_process(sim_config(80)).await;
    let id = rig
        .campaign(
            template_spec("pace-80", "order_update", None),
            &recipients(0..800),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(80));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 800);
    let o = rig.oracle().await;
    assert_clean(&o, &["130429", "131056"]);
    let n = &o.phone_numbers[PNID];
    assert_eq!(n.requests, 800, "every send accepted at the first try");
    assert!(n.max_requests_1s <= 80, "{n:?}");
    assert!(n.max_requests_100ms <= 9, "evenly spaced, no bursts: {n:?}");
    let c = rig.store.campaign(&id).await.unwrap();
    let took = c.finished_ms.unwrap() - c.started_ms.unwrap();
    assert!(
        (9_990..11_000).contains(&took),
        "800 sends at 80/s took {took} ms"
    );
    stop.cancel();
    let report = sender.await.unwrap();
    assert_eq!(report.late, 0, "no wake-up is late on a paused clock");
    rig.finish().await;
}

/// Two sender pools (two workers) on one phone number at MPS 200 share one rate: together
/// never above 200 in any rolling second, each job sent once.
#[tokio::test(start_paused = true)]
async fn two_pools_share_one_rate() {
    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 1600;
    let id = rig
        .campaign(
            template_spec("shared", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let (stop_a, a) = rig.sender(sender_config(200));
    let (stop_b, b) = rig.sender(sender_config(200));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, n);
    let o = rig.oracle().await;
    assert_clean(&o, &["130429"]);
    let num = &o.phone_numbers[PNID];
    assert_eq!(num.requests, n);
    assert!(num.max_requests_1s <= 200, "{num:?}");
    stop_a.cancel();
    stop_b.cancel();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.accepted > 0 && b.accepted > 0, "both sent: {a:?} {b:?}");
    assert_eq!(a.accepted + b.accepted, n);
    rig.finish().await;
}

/// Settlements reach the store in batches, not one call per send: a settle call costs the
/// store about as much for a few jobs as for a hundred. At 1,000 MPS the answers come one
/// a millisecond; each call waits a moment for those that follow.
#[tokio::test(start_paused = true)]
async fn settlements_go_to_the_store_in_batches() {
    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 2000;
    let id = rig
        .campaign(
            template_spec("batched", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let counted = Arc::new(Faulty::new(rig.store.clone()));
    let (stop, worker) = rig.sender_on(counted.clone(), sender_config(1000));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, n);
    stop.cancel();
    assert_eq!(worker.await.unwrap().accepted, n);
    let calls = u64::from(counted.calls("settle"));
    assert!(
        calls > 0 && calls <= n / 2,
        "{calls} settle calls for {n} sends"
    );
    rig.finish().await;
}

/// The next batch is claimed and admitted beside the rounds, not between them: with every
/// suppression lookup taking 300 ms (a slow store), 5,000 recipients at 1,000 MPS still take
/// about 5 s. Made in turn, each of the five refills held the rounds up for its 300 ms.
#[tokio::test(start_paused = true)]
async fn a_slow_admission_does_not_hold_the_rounds_up() {
    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 5000;
    let id = rig
        .campaign(
            template_spec("slow-admission", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let slow = Arc::new(Faulty::new(rig.store.clone()));
    slow.fail(
        "suppressions",
        Failure::Slow(Duration::from_millis(300)),
        1,
        None,
    );
    let (stop, worker) = rig.sender_on(slow.clone(), sender_config(1000));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, n);
    assert!(
        slow.failed("suppressions") >= 5,
        "the lookups were not slow"
    );
    let c = rig.store.campaign(&id).await.unwrap();
    let took = c.finished_ms.unwrap() - c.started_ms.unwrap();
    // The first batch waits for its lookup (300 ms); the others come while sends go.
    assert!(took < 5_600, "the campaign took {took} ms");
    stop.cancel();
    assert_eq!(worker.await.unwrap().accepted, n);
    rig.finish().await;
}

/// Two workers share a number, and one of them plans slowly for a while (a busy machine):
/// jobs it admitted (pair spacing reserved, marked started) wait past their reservation
/// without a slot and go back unsent. Their reservations go back with them, so whichever
/// worker takes them next sends them at once instead of deferring each for the pair
/// interval: the campaign ends about when its rate says.
#[tokio::test(start_paused = true)]
async fn jobs_given_back_unsent_do_not_wait_out_their_pair_spacing() {
    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 1000;
    let id = rig
        .campaign(
            template_spec("given-back", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let slow = Arc::new(Faulty::new(rig.store.clone()));
    slow.fail(
        "plan_sends",
        Failure::Slow(Duration::from_millis(600)),
        3,
        Some(4),
    );
    let (stop_a, a) = rig.sender(sender_config(200));
    let (stop_b, b) = rig.sender_on(slow.clone(), sender_config(200));
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, n);
    assert!(slow.failed("plan_sends") > 0, "no plan was slow");
    let o = rig.oracle().await;
    assert_clean(&o, &["130429", "131056"]);
    let c = rig.store.campaign(&id).await.unwrap();
    let took = c.finished_ms.unwrap() - c.started_ms.unwrap();
    // 1,000 at 200/s: 5 s; the pair interval is 6 s.
    assert!(took < 6_000, "the campaign took {took} ms");
    stop_a.cancel();
    stop_b.cancel();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.accepted + b.accepted, n);
    rig.finish().await;
}

/// A worker stopped while it holds admitted jobs (pair spacing reserved, marked started)
/// that it has not sent gives their reservations back before it releases them: here every
/// plan fails, so none is ever sent. The worker that takes them next finds each recipient
/// free instead of deferring it for the pair interval.
#[tokio::test(start_paused = true)]
async fn a_stopped_worker_gives_back_the_pair_spacing_of_jobs_it_never_sent() {
    let free = free_after(
        "plan_sends",
        Failure::Unavailable,
        None,
        3,
        async |rig, id| {
            // Admitted while they were planned: started, and their recipients reserved.
            let held = rig.store.stats(id).await.unwrap();
            assert_eq!(held.in_flight, 20, "{held:?}");
        },
    )
    .await;
    assert_eq!(free, 20);
}

/// The store takes the pair reservations of a round but fails to mark its jobs started:
/// none is sent, and the reservations are given back, so that the recipients do not wait
/// out the pair interval for sends that never happened.
#[tokio::test(start_paused = true)]
async fn a_failed_admission_gives_back_the_pair_spacing_it_took() {
    let free = free_after("start", Failure::Unavailable, None, 3, async |_, _| {}).await;
    assert_eq!(free, 20);
}

/// A round's jobs whose campaign was paused while they were admitted (their pair spacing
/// reserved, the start refused: the store released them) are never sent, and the
/// reservations are given back.
#[tokio::test(start_paused = true)]
async fn jobs_paused_during_their_admission_give_back_their_pair_spacing() {
    let slow = Failure::Slow(Duration::from_secs(1));
    let free = free_after("start", slow, Some(1), 1, async |rig, id| {
        rig.store
            .transition(id, herald_core::CampaignAction::Pause, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    assert_eq!(free, 20);
}

/// Runs a worker on 20 recipients while the store's `op` fails as given (`times` calls, or
/// every one), does `meanwhile` once it has failed `failures` times, and stops the worker:
/// it sent nothing and released every job. Answers how many of the recipients no pair
/// reservation holds afterwards.
async fn free_after(
    op: &'static str,
    failure: Failure,
    times: Option<u32>,
    failures: u32,
    meanwhile: impl AsyncFnOnce(&Rig<MemoryStore>, &CampaignId),
) -> usize {
    let rig = Rig::in_process(sim_config(1000)).await;
    let n = 20;
    let id = rig
        .campaign(
            template_spec(op, "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let faulty = Arc::new(Faulty::new(rig.store.clone()));
    faulty.fail(op, failure, 1, times);
    let (stop, sender) = rig.sender_on(faulty.clone(), sender_config(200));
    while faulty.failed(op) < failures {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    meanwhile(&rig, &id).await;
    stop.cancel();
    let report = sender.await.unwrap();
    assert_eq!(report.requests, 0);
    let s = rig.store.stats(&id).await.unwrap();
    assert_eq!((s.pending, s.in_flight), (n, 0), "all released");
    let free = free_recipients(&rig, &id, n).await;
    rig.finish().await;
    free
}

/// How many of the campaign's first `n` recipients no pair reservation holds (each is
/// reserved by asking).
async fn free_recipients<S: Store>(rig: &Rig<S>, id: &CampaignId, n: u64) -> usize {
    let sends: Vec<_> = (0..n).map(|i| (phone(i), id.clone())).collect();
    let pairs = rig
        .store
        .reserve_pairs(PNID, &sends, Duration::from_secs(6))
        .await
        .unwrap();
    pairs
        .iter()
        .filter(|p| **p == herald_store::PairReservation::Ok)
        .count()
}

/// A proxy in front of Meta answers 502 with an HTML page after Meta took the message, and
/// statuses arrive seconds later. Only a Graph error code proves a refusal: these sends are
/// in doubt, their late webhooks settle them, and none goes out twice, although the grace
/// period is shorter than the webhooks' delay.
#[tokio::test(start_paused = true)]
async fn a_proxy_error_after_meta_took_the_message_is_never_sent_twice() {
    let mut sim = sim_config(SIM_MPS);
    sim.faults.bad_gateway = 0.1;
    sim.webhooks.sent_delay_ms = 3000;
    sim.webhooks.delivered_delay_ms = 3500;
    sim.webhooks.read_delay_ms = 4000;
    let rig = Rig::in_process(sim).await;
    let n = 1000;
    let id = rig
        .campaign(
            template_spec("proxy", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let mut cfg = sender_config(500);
    cfg.in_doubt_grace = Duration::from_secs(1);
    let (stop, sender) = rig.sender(cfg);
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    let o = rig.oracle().await;
    assert!(o.faults.bad_gateways > 50, "{o:#?}");
    assert_clean(&o, &["130429"]);
    assert_eq!((o.accepted, o.unique_callbacks), (n, n));
    assert_eq!((stats.accepted, stats.failed, stats.in_doubt), (n, 0, 0));
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// The webhook receiver is down for three minutes while some sends time out (their requests
/// reached Meta). The grace period passes, but no status of any later message arrives either,
/// so nothing is resent: the jobs wait in doubt. When the receiver is back, the simulator
/// retries its deliveries out of order, as Meta does; a backlog arriving long after its events
/// holds every resend, the jobs are settled by their own statuses, and no recipient gets two
/// messages.
#[tokio::test(start_paused = true)]
async fn a_webhook_outage_turns_no_doubt_into_a_duplicate() {
    let mut sim = sim_config(SIM_MPS);
    sim.faults.hang = 0.05;
    sim.faults.hang_ms = 10_000;
    sim.webhooks.max_attempts = 12;
    let rig = Rig::in_process(sim).await;
    rig.set_webhooks_up(false);
    let n = 600;
    let id = rig
        .campaign(
            template_spec("outage", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    // A minute of sending, at 10 per second, into a three-minute outage.
    let mut cfg = sender_config(10);
    cfg.in_doubt_grace = Duration::from_secs(30);
    let (stop, sender) = rig.sender(cfg.clone());
    tokio::time::sleep(Duration::from_secs(180)).await;
    let during = rig.store.stats(&id).await.unwrap();
    let o = rig.oracle().await;
    assert!(during.in_doubt > 10, "{during:#?}");
    assert_eq!(during.accepted + during.in_doubt, n, "{during:#?}");
    assert_eq!(o.accepted, n, "every request reached the simulator: {o:#?}");
    assert!(
        o.duplicate_callbacks.is_empty(),
        "resent during the outage: {o:#?}"
    );
    let waiting = herald_sender::sweep(&*rig.store, &cfg, jiff::Timestamp::now())
        .await
        .unwrap()
        .in_doubt
        .waiting;
    assert_eq!(waiting, during.in_doubt, "all of them wait for evidence");
    rig.set_webhooks_up(true);
    let stats = rig
        .wait_status(&id, CampaignStatus::Completed, LONG * 10)
        .await;
    assert_eq!((stats.accepted, stats.in_doubt, stats.failed), (n, 0, 0));
    let o = rig.oracle().await;
    assert_clean(&o, &["130429"]);
    assert_eq!((o.accepted, o.unique_callbacks), (n, n));
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// The store fails one call in a few of every kind the sender makes (before the call, or
/// after it with the answer lost): every claimed job is still accounted for. The campaign
/// completes with every recipient accepted exactly once, nothing is left in flight or in
/// doubt, and after a shutdown the pool holds no job (no lease renewed forever).
#[tokio::test(start_paused = true)]
async fn every_claimed_job_is_accounted_for_when_the_store_fails() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let n = 2000;
    let id = rig
        .campaign(
            template_spec("faulty", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let faulty = Arc::new(Faulty::new(rig.store.clone()));
    for (op, failure, every) in [
        ("claim", Failure::UnavailableAfter, 5),
        ("suppressions", Failure::Unavailable, 4),
        ("plan_sends", Failure::Unavailable, 7),
        ("reserve_pairs", Failure::UnavailableAfter, 6),
        ("start", Failure::Unavailable, 5),
        ("start", Failure::UnavailableAfter, 3),
        // A slow store makes a round spawn its sends after their slots: they come back late
        // to be sent in a later round, through the same failing calls.
        ("start", Failure::Slow(Duration::from_millis(300)), 4),
        // Most are moved to when they woke; one whose move fails gives its slot up.
        ("move_slots", Failure::Unavailable, 2),
        ("move_slots", Failure::UnavailableAfter, 3),
        ("settle", Failure::UnavailableAfter, 4),
        ("renew", Failure::Unavailable, 2),
    ] {
        faulty.fail(op, failure, every, None);
    }
    let stop = CancellationToken::new();
    let sender = Sender::new(faulty.clone(), rig.direct(), sender_config(1000)).unwrap();
    let run = tokio::spawn(sender.run(stop.clone()));
    // Slower than without failures (a claim whose answer was lost waits out its lease, a
    // pair reservation whose answer was lost its interval), in virtual time.
    let stats = rig
        .wait_status(&id, CampaignStatus::Completed, LONG * 5)
        .await;
    assert_eq!(
        (
            stats.accepted,
            stats.failed,
            stats.in_doubt,
            stats.in_flight
        ),
        (n, 0, 0, 0)
    );
    let o = rig.oracle().await;
    assert_clean(&o, &["130429"]);
    assert_eq!((o.accepted, o.unique_callbacks), (n, n));
    for op in [
        "claim",
        "suppressions",
        "plan_sends",
        "reserve_pairs",
        "start",
        "settle",
        "move_slots",
    ] {
        assert!(faulty.failed(op) > 0, "{op} never failed");
    }
    stop.cancel();
    let report = run.await.unwrap();
    assert!(
        report.late > 0 && report.moved > 0,
        "both late paths were taken: {report:?}"
    );
    assert_eq!(report.held, 0, "{report:?}");
    rig.finish().await;
}

/// Renewals that fail are tried again well within the lease: with three failures in a row,
/// a worker's claims (held longer than the lease, at 10 MPS) are never taken from it.
#[tokio::test(start_paused = true)]
async fn failed_renewals_are_tried_again_before_the_lease_ends() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let n = 30;
    let id = rig
        .campaign(
            template_spec("renewals", "order_update", None),
            &recipients(0..n),
            true,
        )
        .await;
    let faulty = Arc::new(Faulty::new(rig.store.clone()));
    faulty.fail("renew", Failure::Unavailable, 1, Some(3));
    let mut cfg = sender_config(10);
    cfg.lease = Duration::from_secs(1);
    // Only this test sweeps, so that it sees every lease that ends.
    cfg.maintenance_interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let sender = Sender::new(faulty.clone(), rig.direct(), cfg).unwrap();
    let run = tokio::spawn(sender.run(stop.clone()));
    let mut reclaimed = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = rig.store.reclaim_expired().await.unwrap();
        reclaimed += r.to_pending + r.to_in_doubt;
        let stats = rig.store.stats(&id).await.unwrap();
        if stats.accepted == n {
            break;
        }
    }
    assert_eq!(faulty.failed("renew"), 3);
    assert_eq!(reclaimed, 0, "a live worker's claims were taken from it");
    stop.cancel();
    run.await.unwrap();
    rig.finish().await;
}

/// Two campaigns on one number, one capped at 10 per second: the capped one never sends more
/// than 10 in any rolling second (nor more than one per 100 ms), while the other takes the
/// rest of the number's rate.
#[tokio::test(start_paused = true)]
async fn a_campaigns_own_cap_holds_beside_another_campaign() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let capped = rig
        .campaign(
            template_spec("capped", "order_update", Some(10)),
            &recipients(0..100),
            true,
        )
        .await;
    let free = rig
        .campaign(
            template_spec("free", "order_update", None),
            &recipients(1000..1800),
            true,
        )
        .await;
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = Recording {
        inner: rig.direct(),
        sent: sent.clone(),
    };
    let (stop, sender) = rig.sender_with(sender_config(80), client);
    for id in [&capped, &free] {
        let stats = rig.wait_status(id, CampaignStatus::Completed, LONG).await;
        assert_eq!(stats.accepted, if *id == capped { 100 } else { 800 });
    }
    stop.cancel();
    sender.await.unwrap();
    let sent = sent.lock().unwrap().clone();
    let of = |id: &herald_core::CampaignId| -> Vec<tokio::time::Instant> {
        let tag = id.to_string();
        sent.iter()
            .filter(|(_, body)| String::from_utf8_lossy(body).contains(&tag))
            .map(|(t, _)| *t)
            .collect()
    };
    let (capped_at, free_at) = (of(&capped), of(&free));
    assert_eq!((capped_at.len(), free_at.len()), (100, 800));
    assert!(busiest(&capped_at, Duration::from_secs(1)) <= 10, "the cap");
    assert!(
        busiest(&capped_at, Duration::from_millis(100)) <= 1,
        "evenly spaced"
    );
    let all: Vec<_> = sent.iter().map(|(t, _)| *t).collect();
    assert!(
        busiest(&all, Duration::from_secs(1)) <= 80,
        "the number's rate"
    );
    // The free campaign ran at the number's rate less the capped one's share.
    assert!(busiest(&free_at, Duration::from_secs(1)) >= 65);
    rig.finish().await;
}

/// Sends 400 recipients at 80 MPS through a client whose every seventh request stalls for
/// 30 ms, ten times the window's guard (seven does not divide the rate, so the send a window
/// after a stalled one is not stalled alike), seen by the sender or not (`unseen`, see
/// [`Stalling`]). Answers the sender's report, and whether every request reached Meta
/// without a second of arrivals above the rate, with the rate still used.
async fn stalled_every_seventh(name: &str, unseen: bool) -> herald_sender::Report {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let id = rig
        .campaign(
            template_spec(name, "order_update", None),
            &recipients(0..400),
            true,
        )
        .await;
    let arrived = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = Stalling {
        inner: rig.direct(),
        every: 7,
        stall: Duration::from_millis(30),
        unseen,
        made: Default::default(),
        left: arrived.clone(),
    };
    let (stop, sender) = rig.sender_with(sender_config(80), client);
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 400);
    stop.cancel();
    let report = sender.await.unwrap();
    let arrived = arrived.lock().unwrap().clone();
    assert_eq!(arrived.len(), 400);
    assert!(
        busiest(&arrived, Duration::from_secs(1)) <= 80,
        "a second of arrivals above the rate: {report:?}"
    );
    assert!(
        busiest(&arrived, Duration::from_secs(1)) >= 75,
        "the rate unused: {report:?}"
    );
    rig.finish().await;
    report
}

/// Requests that stall after the sender let them go reach Meta late; counted where they
/// were planned, the send a window after such a one would make Meta's second one too many.
/// Logged where they really left, no second of real departures holds more than the rate,
/// and the rate is still used.
#[tokio::test(start_paused = true)]
async fn requests_that_leave_late_are_counted_when_they_left() {
    let report = stalled_every_seventh("stalls", false).await;
    assert!(
        report.departed_late >= 50,
        "the stalled requests were not seen leaving late: {report:?}"
    );
}

/// Requests that stall on the way to Meta after their departure was noted (the machine
/// stalled between the connection's taking the request and the socket's) look as if they
/// left in time, and only their answers come late. Where answers come that quickly (here at
/// once), such an answer is logged in the window: no second of arrivals holds more than the
/// rate, and the rate is still used.
#[tokio::test(start_paused = true)]
async fn requests_answered_late_where_answers_are_quick_are_counted_at_the_answer() {
    let report = stalled_every_seventh("unseen", true).await;
    assert_eq!(
        report.departed_late, 0,
        "the stall was to be unseen: {report:?}"
    );
    assert!(
        report.answered_late >= 50,
        "the late answers were not logged: {report:?}"
    );
}

/// The portfolio's messaging limit (`TIER_250`), shared by two numbers with a campaign each,
/// 400 unique recipients in all: exactly 250 are messaged and the rest wait, Meta never has
/// to refuse one (131048); recipients with an open window go through without using budget.
#[tokio::test(start_paused = true)]
async fn the_messaging_limit_is_shared_by_the_portfolios_numbers() {
    let mut sim = sim_config(SIM_MPS);
    sim.limits.messaging_tier = "TIER_250".into();
    let mut second = sim.phone_numbers[0].clone();
    second.id = "106540352242923".into();
    second.display_phone_number = "+1 555-010-0002".into();
    sim.phone_numbers.push(second.clone());
    let rig = Rig::in_process(sim).await;
    // Ten of the first campaign's recipients wrote in: their windows are open.
    let open: Vec<_> = (400..410).map(phone).collect();
    for p in &open {
        rig.sim.inbound(&p.digits(), "hi").await;
    }
    let deadline = tokio::time::Instant::now() + LONG;
    while !rig
        .store
        .windows_open(PNID, &open)
        .await
        .unwrap()
        .iter()
        .all(|o| *o)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbound webhooks not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the sender would have read from the Graph API at start.
    rig.store
        .set_messaging_limit(
            herald_core::DEFAULT_PORTFOLIO,
            herald_core::MessagingLimit::Users(250),
        )
        .await
        .unwrap();
    let mut first = recipients(0..200);
    first.extend(recipients(400..410));
    let a = rig
        .campaign(template_spec("limit-a", "order_update", None), &first, true)
        .await;
    let b = rig
        .campaign_on(
            &second.id,
            template_spec("limit-b", "order_update", None),
            &recipients(200..400),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(500));
    // Well past the point where the budget is spent and the lanes look again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let o = rig.oracle().await;
    assert_clean(&o, &["131048"]);
    assert_eq!(o.reach_peak, 250, "{o:#?}");
    assert_eq!(
        o.accepted, 260,
        "250 within the limit and 10 with open windows"
    );
    let (sa, sb) = (
        rig.store.stats(&a).await.unwrap(),
        rig.store.stats(&b).await.unwrap(),
    );
    assert_eq!(sa.accepted + sb.accepted, 260);
    assert_eq!(
        sa.pending + sb.pending,
        150,
        "the rest wait: {sa:#?} {sb:#?}"
    );
    let used = rig
        .store
        .reach_use(herald_core::DEFAULT_PORTFOLIO, herald_core::REACH_WINDOW)
        .await
        .unwrap();
    assert_eq!(used.used, 250);
    assert!(used.frees_at.is_some());
    for (id, stats) in [(&a, &sa), (&b, &sb)] {
        if stats.pending > 0 {
            assert_eq!(
                rig.store.campaign(id).await.unwrap().status,
                CampaignStatus::Running,
                "waiting is not failing"
            );
        }
        assert_eq!(stats.failed, 0);
    }
    // Meta raises the limit (and says so by webhook): the rest go on by themselves.
    let SimHandle::InProcess(sim) = &rig.sim else {
        unreachable!()
    };
    assert!(sim.set_tier("TIER_2K"));
    for id in [&a, &b] {
        let stats = rig.wait_status(id, CampaignStatus::Completed, LONG).await;
        assert_eq!(stats.failed, 0, "{stats:#?}");
    }
    let o = rig.oracle().await;
    assert_clean(&o, &["131048"]);
    assert_eq!((o.accepted, o.reach_peak), (410, 400));
    assert_eq!(
        rig.store
            .messaging_limit(herald_core::DEFAULT_PORTFOLIO)
            .await
            .unwrap(),
        Some(herald_core::MessagingLimit::Users(2_000))
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Herald does not know the limit (no tier read, no cap) and Meta refuses with 131048: that
/// is the portfolio's limit by Meta's count, so every campaign of the portfolio pauses, on
/// both numbers, with the reason; none is failed.
#[tokio::test(start_paused = true)]
async fn metas_131048_pauses_the_whole_portfolio() {
    let mut sim = sim_config(SIM_MPS);
    sim.limits.messaging_tier = "TIER_50".into();
    let mut second = sim.phone_numbers[0].clone();
    second.id = "106540352242923".into();
    sim.phone_numbers.push(second.clone());
    let rig = Rig::in_process(sim).await;
    let a = rig
        .campaign(
            template_spec("mine", "order_update", None),
            &recipients(0..100),
            true,
        )
        .await;
    let b = rig
        .campaign_on(
            &second.id,
            template_spec("theirs", "order_update", None),
            &recipients(100..200),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(50));
    for id in [&a, &b] {
        let stats = rig.wait_status(id, CampaignStatus::Paused, LONG).await;
        assert_eq!(stats.failed, 0, "{stats:#?}");
        let reason = rig.store.campaign(id).await.unwrap().pause_reason.unwrap();
        assert_eq!(
            (reason.kind, reason.code),
            (PauseKind::MessagingLimit, Some(131_048))
        );
    }
    let o = rig.oracle().await;
    assert_eq!(o.accepted, 50, "{o:#?}");
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// The number's throughput level bounds its rate below the configured ceiling: at the
/// standard level (80/s) a sender configured for 400/s sends at 80. Meta upgrades the number
/// (the simulator answers 131057 for the switch, then allows 1,000/s, and sends
/// `THROUGHPUT_UPGRADE`, which the reconciler records): the rate rises to its ceiling by
/// itself, with no 130429 and nothing lost.
#[tokio::test(start_paused = true)]
async fn a_throughput_upgrade_raises_the_pace() {
    let rig = Rig::in_process(sim_config(80)).await;
    // What a sender records at start from the number's `throughput.level`.
    rig.store
        .set_throughput(PNID, "+1 555-078-3881", 80)
        .await
        .unwrap();
    let id = rig
        .campaign(
            template_spec("level", "order_update", None),
            &recipients(0..3000),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(400));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let standard = rig.store.stats(&id).await.unwrap().accepted;
    assert!(
        (300..=480).contains(&standard),
        "5 s at 80/s sent {standard}"
    );
    let SimHandle::InProcess(sim) = &rig.sim else {
        unreachable!()
    };
    assert!(sim.upgrade(PNID, Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(rig.store.throughput(PNID).await.unwrap(), Some(1000));
    let high = rig.store.stats(&id).await.unwrap().accepted - standard;
    assert!(
        high > 1000,
        "8 s after the upgrade (ceiling 400/s) sent {high}"
    );
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!((stats.accepted, stats.failed), (3000, 0), "{stats:#?}");
    let o = rig.oracle().await;
    assert_clean(&o, &["130429"]);
    assert!(o.phone_numbers[PNID].max_requests_1s <= 400, "{o:#?}");
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// A user who stopped marketing (131050, or a marketing stop) gets no marketing template, and
/// neither does one whose template's category is not known; a utility template still reaches
/// them.
#[tokio::test(start_paused = true)]
async fn a_marketing_stop_blocks_marketing_only() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    rig.store
        .suppress_marketing(PNID, &[phone(1)], &herald_store::Why::now("error 131050"))
        .await
        .unwrap();
    let mut utility = template_spec("utility", "order_update", None);
    utility.template_category = Some("UTILITY".into());
    let u = rig.campaign(utility, &recipients(0..3), true).await;
    let unknown = rig
        .campaign(
            template_spec("unknown", "order_update", None),
            &recipients(0..3),
            true,
        )
        .await;
    let (stop, sender) = rig.sender(sender_config(500));
    let su = rig.wait_status(&u, CampaignStatus::Completed, LONG).await;
    assert_eq!(su.accepted, 3, "utility reaches everyone: {su:#?}");
    let sm = rig
        .wait_status(&unknown, CampaignStatus::Completed, LONG)
        .await;
    assert_eq!(
        (sm.accepted, sm.skipped.get(SkipReason::Suppressed)),
        (2, 1),
        "{sm:#?}"
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Meta's 2026 outcomes for a marketing template, answered at once by the simulator: users
/// in an experiment (130472) are skipped as `experiment` and never tried again; users at
/// their per-user marketing limit (131049) wait to be tried once more a day later, because
/// this campaign opted in, except `+1` numbers, where Meta delivers no marketing: those are
/// skipped as `frequency_capped`. Nothing fails, nothing pauses. (The day itself is
/// `policy::CAPPED_RETRY_AFTER`, tested with the policy; waiting it out here would cost a
/// virtual day of polling.)
#[tokio::test(start_paused = true)]
async fn marketing_outcomes_are_skips_and_opted_in_retries_wait_a_day() {
    let mut sim = sim_config(SIM_MPS);
    sim.marketing.capped_fraction = 0.3;
    sim.marketing.experiment_fraction = 0.1;
    sim.templates.push(herald_sim::config::Template {
        name: "spring_sale".into(),
        category: "MARKETING".into(),
        ..herald_sim::config::Template::default()
    });
    let rig = Rig::in_process(sim).await;
    let mut spec = template_spec("spring", "spring_sale", None);
    spec.template_category = Some("MARKETING".into());
    spec.frequency_capped_retries = Some(1);
    let mut people = recipients(0..200);
    people.extend((0..20).map(|i| {
        herald_core::Recipient::new(
            herald_core::PhoneE164::from_u64(16_505_550_100 + i).unwrap(),
            herald_core::Vars::from_values([format!("us{i}")]),
        )
    }));
    let id = rig.campaign(spec, &people, true).await;
    let (stop, sender) = rig.sender(sender_config(500));
    // Every recipient tried once; an hour on, the capped ones still wait for their day.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let first = rig.oracle().await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let o = rig.oracle().await;
    let stats = rig.store.stats(&id).await.unwrap();
    assert_eq!(
        o.requests, first.requests,
        "nothing was tried again within the hour"
    );
    let rejected = |code: &str| o.rejected.get(code).copied().unwrap_or(0);
    let (capped, experiment) = (
        stats.skipped.get(SkipReason::FrequencyCapped),
        stats.skipped.get(SkipReason::Experiment),
    );
    assert!(experiment > 0 && rejected("131049") > 0, "{o:#?}");
    assert_eq!(rejected("130472"), experiment);
    assert_eq!(stats.failed, 0, "{stats:#?}");
    // Declined for the marketing limit: the +1 numbers skipped, the others waiting.
    assert_eq!(capped + stats.pending, rejected("131049"), "{stats:#?}");
    assert!(stats.pending > 0, "{stats:#?}");
    assert!(
        capped <= 20,
        "only +1 numbers are skipped at once: {stats:#?}"
    );
    assert_eq!(stats.accepted + capped + experiment + stats.pending, 220);
    assert_eq!(
        rig.store.campaign(&id).await.unwrap().status,
        CampaignStatus::Running
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Users who stopped marketing (the simulator answers 131050): the marketing campaign fails
/// them once and puts them on the marketing-only list; a utility campaign still reaches
/// everyone; a second marketing campaign skips them without asking Meta again.
#[tokio::test(start_paused = true)]
async fn a_131050_stops_marketing_and_nothing_else() {
    let mut sim = sim_config(SIM_MPS);
    sim.marketing.opted_out_fraction = 0.2;
    sim.templates.push(herald_sim::config::Template {
        name: "spring_sale".into(),
        category: "MARKETING".into(),
        ..herald_sim::config::Template::default()
    });
    let rig = Rig::in_process(sim).await;
    let people = recipients(0..100);
    let marketing = |name: &str| {
        let mut spec = template_spec(name, "spring_sale", None);
        spec.template_category = Some("MARKETING".into());
        spec
    };
    let (stop, sender) = rig.sender(sender_config(500));
    let first = rig.campaign(marketing("first"), &people, true).await;
    let s1 = rig
        .wait_status(&first, CampaignStatus::Completed, LONG)
        .await;
    let stopped = rig
        .oracle()
        .await
        .rejected
        .get("131050")
        .copied()
        .unwrap_or(0);
    assert!(stopped > 0, "{s1:#?}");
    assert_eq!(
        (s1.failed, s1.accepted),
        (stopped, 100 - stopped),
        "{s1:#?}"
    );
    let mut utility = template_spec("utility", "order_update", None);
    utility.template_category = Some("UTILITY".into());
    let u = rig.campaign(utility, &people, true).await;
    let su = rig.wait_status(&u, CampaignStatus::Completed, LONG).await;
    assert_eq!(su.accepted, 100, "utility reaches everyone: {su:#?}");
    let second = rig.campaign(marketing("second"), &people, true).await;
    let s2 = rig
        .wait_status(&second, CampaignStatus::Completed, LONG)
        .await;
    assert_eq!(
        (
            s2.accepted,
            s2.skipped.get(SkipReason::Suppressed),
            s2.failed
        ),
        (100 - stopped, stopped, 0),
        "{s2:#?}"
    );
    let o = rig.oracle().await;
    assert_eq!(
        o.rejected.get("131050").copied(),
        Some(stopped),
        "Meta was not asked again"
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Meta re-categorises the campaign's utility template as marketing (the simulator sends
/// `template_category_update`): the campaign pauses with the reason mid-send, nothing fails,
/// and it goes on only when an operator resumes it.
#[tokio::test(start_paused = true)]
async fn a_template_recategorised_by_meta_pauses_its_campaign() {
    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    let mut spec = template_spec("recat", "order_update", None);
    spec.template_category = Some("UTILITY".into());
    spec.priced_category = Some("UTILITY".into());
    let gb: herald_core::Region = "GB".parse().unwrap();
    let people: Vec<_> = recipients(0..2000)
        .into_iter()
        .map(|r| r.with_region(gb))
        .collect();
    let id = rig.campaign(spec, &people, true).await;
    let (stop, sender) = rig.sender(sender_config(100));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let SimHandle::InProcess(sim) = &rig.sim else {
        unreachable!()
    };
    assert!(sim.recategorise("order_update", "en_US", "MARKETING"));
    let stats = rig.wait_status(&id, CampaignStatus::Paused, LONG).await;
    let reason = rig.store.campaign(&id).await.unwrap().pause_reason.unwrap();
    assert_eq!(reason.kind, PauseKind::TemplateCategory);
    assert!(
        reason.detail.contains("from UTILITY to MARKETING"),
        "{reason}"
    );
    assert!(stats.pending > 0 && stats.failed == 0, "{stats:#?}");
    // The campaign is priced at the new category now, and shows the difference.
    let spec = rig.store.campaign(&id).await.unwrap().spec;
    assert_eq!(
        (
            spec.template_category.as_deref(),
            spec.priced_category.as_deref()
        ),
        (Some("MARKETING"), Some("UTILITY"))
    );
    let card = herald_core::cost::RateCard::parse([(
        "test.toml",
        "currency = \"USD\"\nsource = \"test\"\n[markets]\nuk = [\"GB\"]\n\
         [[rates]]\neffective_from = \"2025-07-01\"\nuk = { marketing = 0.05, utility = 0.01 }\n",
    )])
    .unwrap();
    let model = herald_core::cost::CostModel {
        card: &card,
        today: "2026-12-02".parse().unwrap(),
        delivery_rate: 1.0,
    };
    // Before any message is charged as marketing, the spec's category is the price.
    let mut uncharged = rig.store.stats(&id).await.unwrap();
    uncharged.pricing.charged.clear();
    let drift = model.campaign(&spec, &uncharged).drift.expect("a drift");
    assert_eq!(
        (drift.from.as_str(), drift.to.as_str()),
        ("utility", "marketing")
    );
    assert_eq!(
        (drift.high_before, drift.high_now),
        (
            herald_core::cost::Money(20_000_000),
            herald_core::cost::Money(100_000_000)
        )
    );
    // Paused stays paused: once the sends in flight at the pause have settled, nothing more
    // goes out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = rig.store.stats(&id).await.unwrap().accepted;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rig.store.stats(&id).await.unwrap().accepted, settled);
    assert_eq!(
        rig.store.campaign(&id).await.unwrap().status,
        CampaignStatus::Paused
    );
    rig.store
        .transition(&id, herald_core::CampaignAction::Resume, None)
        .await
        .unwrap();
    let done = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(done.accepted, 2000);
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// A rate card for the cap tests: UK marketing at 0.05, utility at 0.01.
const CAP_CARD: &str = r#"
currency = "USD"
source = "test card"
[markets]
united_kingdom = ["GB"]
[[rates]]
effective_from = "2025-07-01"
united_kingdom = { marketing = 0.05, utility = 0.01 }
"#;

/// A rig whose simulator delivers everything and knows a marketing template, and a campaign
/// of `n` UK recipients of it with `max_cost`.
async fn capped_campaign(
    n: u64,
    max_cost: f64,
) -> (
    Rig<herald_store::MemoryStore>,
    herald_core::CampaignId,
    Arc<herald_core::cost::RateCard>,
) {
    let card = Arc::new(herald_core::cost::RateCard::parse([("test.toml", CAP_CARD)]).unwrap());
    let mut sim = sim_config(SIM_MPS);
    sim.webhooks.delivered_probability = 1.0;
    sim.templates.push(herald_sim::config::Template {
        name: "spring_sale".into(),
        category: "MARKETING".into(),
        ..herald_sim::config::Template::default()
    });
    let rig = Rig::in_process(sim).await;
    let mut spec = template_spec("capped", "spring_sale", None);
    spec.template_category = Some("MARKETING".into());
    spec.max_cost = Some(max_cost);
    let gb: herald_core::Region = "GB".parse().unwrap();
    let people: Vec<_> = recipients(0..n)
        .into_iter()
        .map(|r| r.with_region(gb))
        .collect();
    let id = rig.campaign(spec, &people, true).await;
    (rig, id, card)
}

/// Raises a paused campaign's cap and resumes it, as `POST …/resume` with a `max_cost` does.
async fn resume_with_cap(
    rig: &Rig<herald_store::MemoryStore>,
    id: &herald_core::CampaignId,
    max_cost: f64,
) {
    let mut spec = rig.store.campaign(id).await.unwrap().spec;
    spec.max_cost = Some(max_cost);
    rig.store.update_spec(id, &spec).await.unwrap();
    rig.store
        .transition(id, herald_core::CampaignAction::Resume, None)
        .await
        .unwrap();
}

/// A campaign with a `max_cost` stops admitting sends before what is charged plus what may
/// still be charged passes it, pauses as `budget`, and goes on when resumed with a higher cap;
/// what Meta charged (its delivered statuses' pricing, priced by the rate card) never passes
/// the cap in force.
#[tokio::test(start_paused = true)]
async fn the_cost_cap_pauses_before_it_is_passed() {
    let (rig, id, card) = capped_campaign(60, 1.0).await;
    let mut cfg = sender_config(50);
    cfg.rate_card = Some(card.clone());
    let (stop, sender) = rig.sender(cfg);
    for (cap, want) in [(1.0, 20), (2.0, 40)] {
        rig.wait_status(&id, CampaignStatus::Paused, LONG).await;
        let c = rig.store.campaign(&id).await.unwrap();
        assert_eq!(
            c.pause_reason.as_ref().map(|r| r.kind),
            Some(PauseKind::Budget)
        );
        let stats = rig.wait_sent(&id, LONG).await;
        let stats = wait_delivered(&rig, &id, stats.accepted).await;
        assert_eq!(
            stats.accepted, want,
            "exactly what the cap pays for: {stats:#?}"
        );
        let actual = card.actual(&stats.pricing.charged, &stats.pricing.free);
        assert_eq!(actual.charged_messages, want);
        assert!(
            actual.total.units() <= cap + 1e-9,
            "{} > {cap}",
            actual.total
        );
        // Resume with a higher cap: the campaign goes on.
        resume_with_cap(&rig, &id, cap + 1.0).await;
    }
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 60);
    let stats = wait_delivered(&rig, &id, 60).await;
    let actual = card.actual(&stats.pricing.charged, &stats.pricing.free);
    assert_eq!(actual.total, herald_core::cost::Money(3_000_000));
    let o = rig.oracle().await;
    assert_clean(&o, &[]);
    assert_eq!((o.accepted, o.unique_callbacks), (60, 60));
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// Two sender pools claim the same capped campaign at once: each checks the cap after its
/// claim, when the other's claims already count, so together they never pass it.
#[tokio::test(start_paused = true)]
async fn two_pools_together_keep_the_cost_cap() {
    let (rig, id, card) = capped_campaign(200, 2.0).await;
    let mut cfg = sender_config(100);
    cfg.rate_card = Some(card.clone());
    let (stop_a, a) = rig.sender(cfg.clone());
    let (stop_b, b) = rig.sender(cfg);
    rig.wait_status(&id, CampaignStatus::Paused, LONG).await;
    let stats = rig.wait_sent(&id, LONG).await;
    let stats = wait_delivered(&rig, &id, stats.accepted).await;
    let actual = card.actual(&stats.pricing.charged, &stats.pricing.free);
    assert!(stats.accepted <= 40, "{stats:#?}");
    assert!(actual.total.units() <= 2.0 + 1e-9, "{}", actual.total);
    let o = rig.oracle().await;
    assert_eq!(o.accepted, stats.accepted);
    resume_with_cap(&rig, &id, 100.0).await;
    let stats = rig.wait_status(&id, CampaignStatus::Completed, LONG).await;
    assert_eq!(stats.accepted, 200);
    stop_a.cancel();
    stop_b.cancel();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.accepted > 0 && b.accepted > 0, "both sent: {a:?} {b:?}");
    assert_clean(&rig.oracle().await, &[]);
    rig.finish().await;
}

/// Waits until the campaign's stats satisfy `done`.
async fn wait_for(
    rig: &Rig<herald_store::MemoryStore>,
    id: &herald_core::CampaignId,
    done: impl Fn(&herald_core::Stats) -> bool,
) -> herald_core::Stats {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let stats = rig.store.stats(id).await.unwrap();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not yet: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `n` of the campaign's messages are known delivered (their charge counted).
async fn wait_delivered(
    rig: &Rig<herald_store::MemoryStore>,
    id: &herald_core::CampaignId,
    n: u64,
) -> herald_core::Stats {
    wait_for(rig, id, |s| {
        s.delivered >= n && s.pricing.charged.iter().map(|c| c.messages).sum::<u64>() >= n
    })
    .await
}

/// A campaign with a send window messages each recipient only inside it, in their own time
/// zone: recipients in Tokyo (inside the window, by the real clock) are sent to, those in
/// Kolkata (3 h 30 min earlier there: outside it) wait for it, counted apart, and nothing
/// reaches them. A window in one fixed zone holds for everyone.
#[tokio::test(start_paused = true)]
async fn sends_outside_the_send_window_wait_for_it() {
    use herald_core::{PhoneE164, Recipient, Vars};

    let rig = Rig::in_process(sim_config(SIM_MPS)).await;
    // Tokyo's time of day now (no daylight saving there, nor in Kolkata); the window is the
    // two hours around it. The test takes seconds of real time.
    let tokyo = jiff::Timestamp::now().in_tz("Asia/Tokyo").unwrap().time();
    let hhmm = |t: jiff::civil::Time| format!("{:02}:{:02}", t.hour(), t.minute());
    let hour = jiff::SignedDuration::from_hours(1);
    let (start, end) = (
        hhmm(tokyo.wrapping_sub(hour)),
        hhmm(tokyo.wrapping_add(hour)),
    );
    let person = |n: u64, region: &str| {
        Recipient::new(
            PhoneE164::from_u64(n).unwrap(),
            Vars::from_values([format!("name{n}")]),
        )
        .with_region(region.parse().unwrap())
    };
    let people: Vec<Recipient> = (0..12)
        .map(|i| person(819_012_340_000 + i, "JP"))
        .chain((0..8).map(|i| person(919_812_340_000 + i, "IN")))
        .collect();
    let mut spec = template_spec("night owls", "order_update", None);
    spec.send_window = Some(herald_core::SendWindow {
        start: start.clone(),
        end: end.clone(),
        time_zone: None,
        zones: Default::default(),
    });
    let id = rig.campaign(spec.clone(), &people, true).await;
    // The same hours read in Kolkata's zone for everyone: nobody may be messaged.
    spec.name = "fixed zone".into();
    spec.send_window = Some(herald_core::SendWindow {
        start,
        end,
        time_zone: Some("Asia/Kolkata".into()),
        zones: Default::default(),
    });
    let fixed = rig.campaign(spec, &people, true).await;
    let (stop, sender) = rig.sender(sender_config(500));
    let stats = wait_for(&rig, &id, |s| {
        s.accepted == 12 && s.waiting_for_send_window == 8
    })
    .await;
    assert_eq!(
        (stats.pending, stats.in_flight, stats.failed),
        (8, 0, 0),
        "{stats:#?}"
    );
    let stats = wait_for(&rig, &fixed, |s| s.waiting_for_send_window == 20).await;
    assert_eq!((stats.pending, stats.accepted), (20, 0), "{stats:#?}");
    assert_eq!(
        rig.store.campaign(&id).await.unwrap().status,
        CampaignStatus::Running,
        "a campaign whose recipients wait for their window is not done"
    );
    // Nothing reached anyone outside the window, however often the sender looked.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let o = rig.oracle().await;
    assert_clean(&o, &[]);
    assert_eq!(o.accepted, 12, "only Tokyo's recipients were messaged");
    // Cancelling ends the wait: none is left counted as waiting.
    rig.store
        .transition(&fixed, herald_core::CampaignAction::Cancel, None)
        .await
        .unwrap();
    let stats = rig.store.stats(&fixed).await.unwrap();
    assert_eq!(
        (
            stats.cancelled,
            stats.waiting_for_send_window,
            stats.pending
        ),
        (20, 0, 0)
    );
    stop.cancel();
    sender.await.unwrap();
    rig.finish().await;
}

/// With `store.delete_ended_after_days`, the sweeps delete a completed or cancelled campaign
/// once that long has passed since it ended, and nothing else: not one still running, not one
/// ended more recently, not one with a send still in flight.
#[tokio::test]
async fn ended_campaigns_are_deleted_once_their_retention_passes() {
    use herald_core::CampaignAction;
    use herald_store::conformance::{campaign, claim_req, running};

    let store = MemoryStore::new();
    let ended = campaign(&store, "ended").await;
    store
        .transition(&ended, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let still_running = running(&store, "running", 3).await;
    let busy = running(&store, "busy", 1).await;
    let held = store.claim(&claim_req(10, 1)).await.unwrap();
    assert_eq!(held.len(), 4, "the running campaigns' jobs are in flight");
    store
        .transition(&busy, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let finished = store.campaign(&ended).await.unwrap().finished_ms.unwrap();
    let after = Duration::from_secs(3 * 86_400);
    let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap();

    let too_soon = at(finished + 3 * 86_400_000 - 1000);
    let deleted = herald_sender::delete_ended(&store, after, too_soon)
        .await
        .unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
    let due = at(finished + 3 * 86_400_000 + 1000);
    let deleted = herald_sender::delete_ended(&store, after, due)
        .await
        .unwrap();
    assert_eq!(deleted, vec![ended.clone()]);
    assert!(store.campaign(&ended).await.is_err());
    for kept in [&still_running, &busy] {
        assert!(store.campaign(kept).await.is_ok(), "{kept} was deleted");
    }
    // Again: nothing left to delete, and no error for the campaign that is gone.
    let deleted = herald_sender::delete_ended(&store, after, due)
        .await
        .unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
}

/// The retention sweep reads the campaigns a page at a time and deletes as it goes: every
/// ended campaign of a list many pages long goes in one sweep (the campaign a page's cursor
/// came from included), and the running one among them stays.
#[tokio::test]
async fn the_retention_sweep_deletes_across_pages() {
    use herald_core::CampaignAction;
    use herald_store::conformance::{all_campaigns, campaign, running};

    let store = MemoryStore::new();
    let kept = running(&store, "running", 1).await;
    let n = 2 * herald_store::WALK_PAGE + 50;
    for i in 0..n {
        let id = campaign(&store, &format!("ended{i}")).await;
        store
            .transition(&id, CampaignAction::Cancel, None)
            .await
            .unwrap();
    }
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let deleted = herald_sender::delete_ended(&store, Duration::from_secs(3600), later)
        .await
        .unwrap();
    assert_eq!(deleted.len(), n);
    let left: Vec<_> = all_campaigns(&store)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, [kept]);
}
