//! The backend-agnostic conformance suite: every `Store` implementation must pass it.
//!
//! Each check takes a fresh, empty store. [`conformance_tests!`](crate::conformance_tests)
//! turns the whole suite into `#[tokio::test]`s for a backend; the Redis backend runs it in
//! `crates/store-redis/tests/conformance.rs`. After every operation the checks assert the
//! invariant (ARCHITECTURE §4), so a counter that drifts from the states fails the suite where
//! it happens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::collections::HashSet;
use std::time::Duration;

use herald_core::{
    CampaignAction, CampaignId, CampaignSpec, CampaignStatus, DeliveryState, JobId, MessagingLimit,
    PauseKind, PauseReason, PhoneE164, Recipient, SkipReason, StatusEvent, Vars, WaMessageId,
};
use serde_json::json;

use crate::*;

pub const PNID: &str = "106540352242922";

pub fn spec(name: &str) -> CampaignSpec {
    serde_json::from_value(json!({
        "name": name,
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}}
    }))
    .unwrap()
}

/// One send per `interval`, in a window of a second that never fills in these checks.
pub fn every(interval: Duration) -> Pace {
    Pace::exact(
        u32::try_from(Duration::from_secs(1).as_micros() / interval.as_micros()).unwrap(),
        Duration::from_secs(1),
    )
}

pub fn phone(i: u64) -> PhoneE164 {
    PhoneE164::from_u64(447_700_000_000 + i).unwrap()
}

pub fn recipients(range: std::ops::Range<u64>) -> Vec<Recipient> {
    range
        .map(|i| Recipient::new(phone(i), Vars::from_values([format!("name{i}")])))
        .collect()
}

pub async fn campaign<S: Store>(store: &S, name: &str) -> CampaignId {
    store
        .create_campaign(NewCampaign {
            spec: spec(name),
            phone_number_id: PNID.into(),
            template: Some("order_update:en_US".into()),
        })
        .await
        .unwrap()
        .id
}

/// A campaign scheduled for `at` (RFC 3339), without a template.
pub async fn scheduled<S: Store>(store: &S, name: &str, at: &str) -> CampaignId {
    let mut s = spec(name);
    s.schedule_at = Some(at.parse().unwrap());
    let id = store
        .create_campaign(NewCampaign {
            spec: s,
            phone_number_id: PNID.into(),
            template: None,
        })
        .await
        .unwrap()
        .id;
    store
        .transition(&id, CampaignAction::Schedule, None)
        .await
        .unwrap();
    id
}

/// A running campaign with `n` pending jobs.
pub async fn running<S: Store>(store: &S, name: &str, n: u64) -> CampaignId {
    running_with(store, name, &recipients(0..n)).await
}

/// A running campaign with these recipients pending.
pub async fn running_with<S: Store>(store: &S, name: &str, people: &[Recipient]) -> CampaignId {
    let id = campaign(store, name).await;
    if !people.is_empty() {
        let added = store.enqueue_batch(&id, people).await.unwrap();
        assert!(added.iter().all(|a| *a));
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();
    id
}

pub async fn invariant<S: Store>(store: &S, id: &CampaignId) -> herald_core::Stats {
    let s = store.stats(id).await.unwrap();
    assert!(s.invariant_holds(), "invariant broken: {s:#?}");
    s
}

fn token(n: u64) -> LeaseToken {
    LeaseToken(n)
}

pub fn claim_req(max: usize, t: u64) -> ClaimRequest {
    ClaimRequest {
        phone_number_id: None,
        max,
        lease: Duration::from_secs(60),
        token: token(t),
    }
}

fn wamid(i: u64) -> WaMessageId {
    WaMessageId::new(&format!("wamid.test{i}")).unwrap()
}

/// Settlements of these jobs, each accepted under a message id of its own
/// (`wamid.<tag><seq>`: a tag per batch keeps ids apart when jobs are sent again).
pub fn all_accepted(jobs: &[ClaimedJob], tag: &str) -> Vec<Settle> {
    jobs.iter()
        .map(|j| Settle {
            job: j.into(),
            outcome: Outcome::Accepted {
                message_id: WaMessageId::new(&format!("wamid.{tag}{}", j.id.seq)).unwrap(),
            },
        })
        .collect()
}

async fn settle_one<S: Store>(store: &S, job: &ClaimedJob, outcome: Outcome) -> SettleResult {
    store
        .settle(&[Settle {
            job: job.into(),
            outcome,
        }])
        .await
        .unwrap()[0]
}

fn status(job: Option<JobId>, message_id: Option<WaMessageId>, event: StatusEvent) -> StatusUpdate {
    StatusUpdate {
        job,
        message_id,
        event,
        timestamp: None,
        error_code: None,
        pricing: None,
        replayed: false,
    }
}

// ------------------------------------------------------------------------------------------

pub async fn lifecycle<S: Store>(store: &S) {
    let id = campaign(store, "lifecycle").await;
    let c = store.campaign(&id).await.unwrap();
    assert_eq!(
        (c.status, c.name.as_str(), c.phone_number_id.as_str()),
        (CampaignStatus::Draft, "lifecycle", PNID)
    );
    assert_eq!(c.spec, spec("lifecycle"));
    let err = store
        .transition(&id, CampaignAction::Pause, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)), "{err}");
    assert_eq!(
        store
            .transition(&id, CampaignAction::Start, None)
            .await
            .unwrap(),
        CampaignStatus::Running
    );
    assert!(
        store
            .running_campaigns()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == id)
    );
    let reason = PauseReason::from_code(PauseKind::CampaignFatal, 132_001, "template missing");
    assert_eq!(
        store
            .transition(&id, CampaignAction::Pause, Some(reason.clone()))
            .await
            .unwrap(),
        CampaignStatus::Paused
    );
    let c = store.campaign(&id).await.unwrap();
    assert_eq!(c.pause_reason, Some(reason));
    assert!(
        !store
            .running_campaigns()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == id)
    );
    assert!(matches!(
        store.transition(&id, CampaignAction::Pause, None).await,
        Err(StoreError::IllegalTransition(_))
    ));
    store
        .transition(&id, CampaignAction::Resume, None)
        .await
        .unwrap();
    assert_eq!(store.campaign(&id).await.unwrap().pause_reason, None);
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .transition(&id, CampaignAction::Cancel, None)
            .await
            .unwrap(),
        CampaignStatus::Cancelled,
        "cancelling again is harmless (it finishes what a cancel left)"
    );
    for action in [CampaignAction::Start, CampaignAction::Resume] {
        assert!(matches!(
            store.transition(&id, action, None).await,
            Err(StoreError::IllegalTransition(_))
        ));
    }
    assert!(matches!(
        store
            .campaign(&CampaignId::new("nosuchcampaign").unwrap())
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Scheduling: a due scheduled campaign is listed until it starts.
    let sid = scheduled(store, "scheduled", "2020-01-01T00:00:00Z").await;
    let due = store.due_scheduled(jiff::Timestamp::now()).await.unwrap();
    assert!(due.contains(&sid));
    store
        .transition(&sid, CampaignAction::Start, None)
        .await
        .unwrap();
    assert!(
        !store
            .due_scheduled(jiff::Timestamp::now())
            .await
            .unwrap()
            .contains(&sid)
    );
    let all = all_campaigns(store).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, sid, "newest first");
}

/// Every campaign, newest first, by a [`CampaignWalk`].
pub async fn all_campaigns<S: Store>(store: &S) -> Vec<Campaign> {
    let mut walk = CampaignWalk::new();
    let mut all = Vec::new();
    while let Some(page) = walk.next(store).await.unwrap() {
        all.extend(page);
    }
    all
}

/// A walk over every campaign goes on whatever is deleted as it goes (the campaign its
/// cursor came from included): each campaign is given once, newest first, except those
/// deleted before their page was read; one created during the walk is not given.
pub async fn a_campaign_walk_holds_through_deletions<S: Store>(store: &S) {
    let mut made = Vec::new();
    for i in 0..8 {
        made.push(campaign(store, &format!("walk{i}")).await);
    }
    made.reverse();
    let delete = |id: CampaignId| async move {
        store
            .transition(&id, CampaignAction::Cancel, None)
            .await
            .unwrap();
        store.delete_campaign(&id).await.unwrap();
    };
    let first = store.campaigns_from(None, 3).await.unwrap();
    let ids = |page: &CampaignPage| {
        page.campaigns
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), made[..3]);
    // The page's last campaign (its cursor's) and one of the next page are deleted, and
    // one is created: the walk goes on below the cursor.
    delete(made[2].clone()).await;
    delete(made[4].clone()).await;
    campaign(store, "walk-late").await;
    let second = store.campaigns_from(first.next, 3).await.unwrap();
    assert_eq!(
        ids(&second),
        [made[3].clone(), made[5].clone(), made[6].clone()]
    );
    let third = store.campaigns_from(second.next, 3).await.unwrap();
    assert_eq!(ids(&third), [made[7].clone()]);
    assert_eq!(third.next, None, "a short page is the last");
    // A walk from the start sees what is left, the late one first.
    let names: Vec<String> = all_campaigns(store)
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        [
            "walk-late",
            "walk7",
            "walk6",
            "walk4",
            "walk2",
            "walk1",
            "walk0"
        ]
    );
}

/// A long list read a page at a time: each page newest first, the pages one after another
/// with nothing missed or repeated (a campaign deleted between pages included), and a page
/// after a campaign that no longer exists refused.
pub async fn campaigns_are_listed_a_page_at_a_time<S: Store>(store: &S) {
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(campaign(store, &format!("page{i}")).await);
    }
    made.reverse();
    let ids = |page: &[Campaign]| page.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let first = store.list_campaigns_page(None, 3).await.unwrap();
    assert_eq!(ids(&first), made[..3]);
    // One further on is deleted between the pages: the next page goes on past it.
    store
        .transition(&made[4], CampaignAction::Cancel, None)
        .await
        .unwrap();
    store.delete_campaign(&made[4]).await.unwrap();
    let second = store.list_campaigns_page(Some(&made[2]), 3).await.unwrap();
    assert_eq!(
        ids(&second),
        [made[3].clone(), made[5].clone(), made[6].clone()]
    );
    let end = store.list_campaigns_page(Some(&made[6]), 3).await.unwrap();
    assert!(end.is_empty());
    assert!(store.list_campaigns_page(None, 0).await.unwrap().is_empty());
    assert_eq!(store.list_campaigns_page(None, 100).await.unwrap().len(), 6);
    let e = store
        .list_campaigns_page(Some(&made[4]), 3)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
}

pub async fn idempotent_enqueue<S: Store>(store: &S) {
    let id = campaign(store, "enqueue").await;
    let first = store
        .enqueue_batch(&id, &recipients(0..2500))
        .await
        .unwrap();
    assert!(first.iter().all(|n| *n));
    let again = store
        .enqueue_batch(&id, &recipients(2000..3000))
        .await
        .unwrap();
    assert_eq!(again.iter().filter(|n| **n).count(), 500);
    assert!(again[..500].iter().all(|n| !*n));
    let s = invariant(store, &id).await;
    assert_eq!((s.recipients, s.pending), (3000, 3000));
}

pub async fn claim_start_settle<S: Store>(store: &S) {
    let id = running(store, "basic", 10).await;
    let jobs = store.claim(&claim_req(4, 1)).await.unwrap();
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0].phone, phone(0), "claimed in queue order");
    assert_eq!(jobs[0].vars, ["name0"]);
    assert_eq!(jobs[0].attempts, 0);
    let s = invariant(store, &id).await;
    assert_eq!((s.pending, s.in_flight), (6, 4));
    let started = store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(started, [true; 4]);
    let settles = vec![
        Settle {
            job: (&jobs[0]).into(),
            outcome: Outcome::Accepted {
                message_id: wamid(0),
            },
        },
        Settle {
            job: (&jobs[1]).into(),
            outcome: Outcome::Failed {
                code: "131026".into(),
            },
        },
        Settle {
            job: (&jobs[2]).into(),
            outcome: Outcome::Skipped {
                reason: SkipReason::WindowClosed,
            },
        },
        Settle {
            job: (&jobs[3]).into(),
            outcome: Outcome::Delayed {
                delay: Duration::from_secs(60),
            },
        },
    ];
    assert_eq!(
        store.settle(&settles).await.unwrap(),
        [SettleResult::Applied; 4]
    );
    let s = invariant(store, &id).await;
    assert_eq!(
        (
            s.accepted,
            s.failed,
            s.failed_before_accept,
            s.skipped_at_send,
            s.pending
        ),
        (1, 1, 1, 1, 7)
    );
    assert_eq!(s.errors.get("131026"), Some(&1));
    assert_eq!(s.skipped.window_closed, 1);
    // Settling again changes nothing: the acceptance is known (the store has that very
    // answer), the others are stale.
    assert_eq!(
        store.settle(&settles).await.unwrap(),
        [
            SettleResult::Known,
            SettleResult::Stale,
            SettleResult::Stale,
            SettleResult::Stale
        ]
    );
    invariant(store, &id).await;
    assert_eq!(
        store.job_for_message(&wamid(0)).await.unwrap(),
        Some(jobs[0].id.clone())
    );
    let view = store.job(&jobs[3].id).await.unwrap().unwrap();
    assert_eq!((view.state.clone(), view.attempts), (JobState::Pending, 1));
    match store.job(&jobs[0].id).await.unwrap().unwrap().state {
        JobState::Accepted {
            message_id,
            delivery,
        } => {
            assert_eq!(message_id, Some(wamid(0)));
            assert_eq!(delivery, DeliveryState::ACCEPTED);
        }
        other => panic!("{other:?}"),
    }
    // The delayed job is not claimable before its time.
    let rest = store.claim(&claim_req(10, 2)).await.unwrap();
    assert_eq!(rest.len(), 6);
    assert!(!rest.iter().any(|j| j.id == jobs[3].id));
}

pub async fn fairness<S: Store>(store: &S) {
    let big = running(store, "big", 2000).await;
    let small = campaign(store, "small").await;
    store
        .enqueue_batch(&small, &recipients(5000..5040))
        .await
        .unwrap();
    store
        .transition(&small, CampaignAction::Start, None)
        .await
        .unwrap();
    let mut from_small = 0;
    for round in 0..4 {
        let jobs = store.claim(&claim_req(20, round)).await.unwrap();
        assert_eq!(jobs.len(), 20);
        from_small += jobs.iter().filter(|j| j.id.campaign == small).count();
    }
    assert_eq!(
        from_small, 40,
        "the small campaign is served alongside the big one, not after it"
    );
    invariant(store, &big).await;
    invariant(store, &small).await;
}

pub async fn paused_and_cancelled_are_not_claimed<S: Store>(store: &S) {
    let a = running(store, "a", 5).await;
    let b = running(store, "b", 5).await;
    store
        .transition(&a, CampaignAction::Pause, None)
        .await
        .unwrap();
    store
        .transition(&b, CampaignAction::Cancel, None)
        .await
        .unwrap();
    assert!(store.claim(&claim_req(10, 1)).await.unwrap().is_empty());
    let s = invariant(store, &b).await;
    assert_eq!((s.cancelled, s.pending), (5, 0));
    store
        .transition(&a, CampaignAction::Resume, None)
        .await
        .unwrap();
    assert_eq!(store.claim(&claim_req(10, 1)).await.unwrap().len(), 5);
}

pub async fn pause_between_claim_and_start_releases<S: Store>(store: &S) {
    let id = running(store, "pause", 3).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .transition(&id, CampaignAction::Pause, None)
        .await
        .unwrap();
    let started = store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(started, [false; 3]);
    let s = invariant(store, &id).await;
    assert_eq!((s.pending, s.in_flight), (3, 0));
}

pub async fn lease_expiry_and_reclaim<S: Store>(store: &S) {
    let id = running(store, "lease", 3).await;
    // Two claims: the first lets its 50 ms lease lapse, the second is renewed (its first
    // lease is long, so however slow the machine, only the renewal decides).
    let mut req = claim_req(2, 7);
    req.lease = Duration::from_millis(50);
    let jobs = store.claim(&req).await.unwrap();
    let kept = store.claim(&claim_req(1, 8)).await.unwrap().remove(0);
    // One request may have gone out; the other never started.
    store.start(&[JobRef::from(&jobs[0])]).await.unwrap();
    store
        .renew(&[JobRef::from(&kept)], Duration::from_secs(60))
        .await
        .unwrap();
    // A sleep never ends early: the short lease has lapsed after it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r = store.reclaim_expired().await.unwrap();
    assert_eq!(
        r,
        Reclaimed {
            to_pending: 1,
            to_in_doubt: 1
        }
    );
    let s = invariant(store, &id).await;
    assert_eq!((s.in_doubt, s.pending, s.in_flight), (1, 1, 1));
    assert_eq!(
        store.reclaim_expired().await.unwrap(),
        Reclaimed::default(),
        "a swept lease is gone"
    );
    // The dead worker cannot start what it no longer holds: not while it waits, nor once
    // another worker holds it.
    assert_eq!(
        store.start(&[JobRef::from(&jobs[1])]).await.unwrap(),
        [false]
    );
    let again = store.claim(&claim_req(1, 9)).await.unwrap().remove(0);
    assert_eq!(again.id, jobs[1].id);
    assert_eq!(
        store.start(&[JobRef::from(&jobs[1])]).await.unwrap(),
        [false]
    );
    assert_eq!(store.start(&[JobRef::from(&again)]).await.unwrap(), [true]);
    // The dead worker's late settle is stale; its acceptance is still evidence.
    assert_eq!(
        settle_one(store, &jobs[1], Outcome::Failed { code: "2".into() }).await,
        SettleResult::Stale
    );
    assert_eq!(
        settle_one(
            store,
            &jobs[0],
            Outcome::Accepted {
                message_id: wamid(1)
            }
        )
        .await,
        SettleResult::Applied
    );
    let s = invariant(store, &id).await;
    assert_eq!((s.in_doubt, s.accepted, s.failed), (0, 1, 0));
    // The renewed claim was not reclaimed.
    assert_eq!(
        settle_one(store, &kept, Outcome::InDoubt).await,
        SettleResult::Applied
    );
    invariant(store, &id).await;
}

pub async fn in_doubt_resolved_by_callback_id<S: Store>(store: &S) {
    let id = running(store, "doubt", 2).await;
    let jobs = store.claim(&claim_req(2, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    for j in &jobs {
        settle_one(store, j, Outcome::InDoubt).await;
    }
    assert_eq!(invariant(store, &id).await.in_doubt, 2);
    let applied = store
        .apply_status(&[status(
            Some(jobs[0].id.clone()),
            Some(wamid(9)),
            StatusEvent::Delivered,
        )])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Changed]);
    let s = invariant(store, &id).await;
    assert_eq!((s.in_doubt, s.accepted, s.sent, s.delivered), (1, 1, 1, 1));
    assert_eq!(
        store.job_for_message(&wamid(9)).await.unwrap(),
        Some(jobs[0].id.clone())
    );
    // Later statuses by message id alone find it.
    let applied = store
        .apply_status(&[status(None, Some(wamid(9)), StatusEvent::Read)])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Changed]);
    assert_eq!(invariant(store, &id).await.read, 1);
    assert_eq!(
        store
            .apply_status(&[status(None, Some(wamid(404)), StatusEvent::Read)])
            .await
            .unwrap(),
        [Applied::Unknown]
    );
}

/// A send's own webhook can settle it (by its callback data) before the sender's settlement
/// of Meta's answer lands: that settlement still applies, gives the job its message id and
/// counts nothing twice.
pub async fn an_answer_after_its_own_webhook_completes_the_job<S: Store>(store: &S) {
    let id = running(store, "early", 1).await;
    let jobs = store.claim(&claim_req(1, 1)).await.unwrap();
    store.start(&[JobRef::from(&jobs[0])]).await.unwrap();
    let applied = store
        .apply_status(&[status(Some(jobs[0].id.clone()), None, StatusEvent::Sent)])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Changed]);
    let answer = Outcome::Accepted {
        message_id: wamid(5),
    };
    assert_eq!(
        settle_one(store, &jobs[0], answer.clone()).await,
        SettleResult::Applied
    );
    let s = invariant(store, &id).await;
    assert_eq!((s.accepted, s.sent, s.in_flight), (1, 1, 0), "{s:?}");
    let view = store.job(&jobs[0].id).await.unwrap().unwrap();
    assert!(
        matches!(&view.state, JobState::Accepted { message_id: Some(m), .. } if *m == wamid(5)),
        "{view:?}"
    );
    assert_eq!(view.attempts, 1);
    // Once it has its id, the same answer again is known; another id would be stale.
    assert_eq!(
        settle_one(store, &jobs[0], answer).await,
        SettleResult::Known
    );
    assert_eq!(
        settle_one(
            store,
            &jobs[0],
            Outcome::Accepted {
                message_id: wamid(6)
            }
        )
        .await,
        SettleResult::Stale
    );

    // The usual race: the webhook carries the message id and lands before the answer's
    // settlement. The settlement is known, not stale, and counts nothing.
    let id2 = running(store, "early2", 1).await;
    let jobs = store.claim(&claim_req(1, 3)).await.unwrap();
    store.start(&[JobRef::from(&jobs[0])]).await.unwrap();
    let applied = store
        .apply_status(&[status(
            Some(jobs[0].id.clone()),
            Some(wamid(7)),
            StatusEvent::Delivered,
        )])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Changed]);
    assert_eq!(
        settle_one(
            store,
            &jobs[0],
            Outcome::Accepted {
                message_id: wamid(7)
            }
        )
        .await,
        SettleResult::Known
    );
    let s = invariant(store, &id2).await;
    assert_eq!((s.accepted, s.delivered, s.in_flight), (1, 1, 0), "{s:?}");
}

/// Accepts a job (claim, start, settle) and applies a `sent` status for it: evidence that the
/// webhook pipeline of its phone number has caught up to now.
async fn accepted_with_status<S: Store>(store: &S, job: &ClaimedJob, n: u64) {
    store.start(&[JobRef::from(job)]).await.unwrap();
    settle_one(
        store,
        job,
        Outcome::Accepted {
            message_id: wamid(n),
        },
    )
    .await;
    let applied = store
        .apply_status(&[status(
            Some(job.id.clone()),
            Some(wamid(n)),
            StatusEvent::Sent,
        )])
        .await
        .unwrap();
    assert_eq!(applied, [Applied::Changed]);
}

pub async fn in_doubt_waits_for_evidence_then_resends_once_then_fails<S: Store>(store: &S) {
    let id = running(store, "grace", 4).await;
    let jobs = store.claim(&claim_req(4, 1)).await.unwrap();
    let job = &jobs[0];
    // A message accepted before the doubt began, its status applied after: no evidence.
    store.start(&[JobRef::from(&jobs[1])]).await.unwrap();
    settle_one(
        store,
        &jobs[1],
        Outcome::Accepted {
            message_id: wamid(1),
        },
    )
    .await;
    store.start(&[JobRef::from(job)]).await.unwrap();
    settle_one(store, job, Outcome::InDoubt).await;
    store
        .apply_status(&[status(Some(jobs[1].id.clone()), None, StatusEvent::Sent)])
        .await
        .unwrap();
    let e = store
        .expire_in_doubt(Duration::from_secs(60), InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!(e, InDoubtExpired::default(), "not before the grace period");
    let e = store
        .expire_in_doubt(Duration::ZERO, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!(
        (e.resent, e.failed, e.waiting),
        (0, 0, 1),
        "past the grace, but no status of a later message yet: a webhook outage looks so"
    );
    // A later message on another phone number proves nothing about this one's webhooks.
    let elsewhere = store
        .create_campaign(NewCampaign {
            spec: spec("elsewhere"),
            phone_number_id: "999".into(),
            template: None,
        })
        .await
        .unwrap()
        .id;
    store
        .enqueue_batch(&elsewhere, &recipients(50..51))
        .await
        .unwrap();
    store
        .transition(&elsewhere, CampaignAction::Start, None)
        .await
        .unwrap();
    // Time moves on (a sleep never ends early), so what follows is after the doubt began.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let far = store
        .claim(&ClaimRequest {
            phone_number_id: Some("999".into()),
            ..claim_req(1, 9)
        })
        .await
        .unwrap()
        .remove(0);
    accepted_with_status(store, &far, 50).await;
    let e = store
        .expire_in_doubt(Duration::ZERO, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!((e.resent, e.waiting), (0, 1), "{e:?}");
    // A message on the same number, accepted after the doubt began, its status applied:
    // the pipeline has caught up past the job, and its own status never came.
    accepted_with_status(store, &jobs[2], 2).await;
    let e = store
        .expire_in_doubt(Duration::ZERO, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!((e.resent, e.waiting), (1, 0), "{e:?}");
    let again = store.claim(&claim_req(1, 2)).await.unwrap().remove(0);
    assert!(again.resend, "the resend is marked");
    assert_eq!(again.id, job.id, "same job, same callback id");
    store.start(&[JobRef::from(&again)]).await.unwrap();
    settle_one(store, &again, Outcome::InDoubt).await;
    let e = store
        .expire_in_doubt(Duration::ZERO, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!((e.failed, e.waiting), (0, 1), "again only on evidence");
    tokio::time::sleep(Duration::from_millis(5)).await;
    accepted_with_status(store, &jobs[3], 3).await;
    let e = store
        .expire_in_doubt(Duration::ZERO, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!(e.failed, 1, "a second in-doubt fails");
    let s = invariant(store, &id).await;
    assert_eq!((s.failed, s.errors.get("in_doubt").copied()), (1, Some(1)));
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        CampaignStatus::Completed
    );
}

/// With a grace period: the message that shows the webhooks caught up must have been accepted
/// a whole grace after the doubt began, and a backlog draining (a status arriving long after
/// its event, as after an outage) holds every resend for a whole grace.
pub async fn a_webhook_backlog_holds_resends<S: Store>(store: &S) {
    // Long enough that no stall of the machine between two calls reaches it: the first
    // check needs a job accepted less than a grace after the doubt began.
    let grace = Duration::from_secs(1);
    let id = running(store, "backlog", 3).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store.start(&[JobRef::from(&jobs[0])]).await.unwrap();
    settle_one(store, &jobs[0], Outcome::InDoubt).await;
    // Accepted right after the doubt began: not a grace later, no evidence yet.
    accepted_with_status(store, &jobs[1], 1).await;
    tokio::time::sleep(grace * 2).await;
    let e = store
        .expire_in_doubt(grace, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!((e.resent, e.waiting), (0, 1), "{e:?}");
    // A grace later: evidence; but a status just arrived five minutes after its event.
    accepted_with_status(store, &jobs[2], 2).await;
    let mut late = status(Some(jobs[1].id.clone()), None, StatusEvent::Delivered);
    late.timestamp = Some(jiff::Timestamp::now().as_second() - 300);
    store.apply_status(&[late]).await.unwrap();
    let e = store
        .expire_in_doubt(grace, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!(
        (e.resent, e.waiting),
        (0, 1),
        "a backlog is draining: {e:?}"
    );
    // A grace without backlog: now the job's own status would have come.
    tokio::time::sleep(grace * 2).await;
    let e = store
        .expire_in_doubt(grace, InDoubtPolicy::Resend)
        .await
        .unwrap();
    assert_eq!((e.resent, e.waiting), (1, 0), "{e:?}");
    invariant(store, &id).await;
}

/// A campaign's own cap holds beside the number's rate: its sends are never closer than its
/// interval, the others fill the number's slots in between, and several planners at once
/// keep both.
pub async fn campaign_caps_hold_beside_the_number_rate<S: Store>(store: &S) {
    let ms = Duration::from_millis;
    let capped = CampaignId::new("capped").unwrap();
    // The number: one per 5 ms; the capped campaign: one per 100 ms (10 per second).
    let wants: Vec<SendWant> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                Some((capped.clone(), ms(100)))
            } else {
                None
            }
        })
        .collect();
    let calls = (0..4).map(|_| {
        store.plan_sends(
            "777",
            every(ms(5)),
            &wants,
            40,
            Duration::ZERO..ms(1000),
            rand_token(),
        )
    });
    let plans: Vec<Plan> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut all = Vec::new();
    let mut capped_at = Vec::new();
    for p in &plans {
        for (want, at) in wants.iter().zip(&p.at) {
            if let Some(t) = at {
                all.push(*t);
                if want.is_some() {
                    capped_at.push(*t);
                }
            }
        }
    }
    all.sort_unstable();
    capped_at.sort_unstable();
    for w in all.windows(2) {
        assert!(w[1].duration_since(w[0]) >= jiff::SignedDuration::from_millis(5));
    }
    for w in capped_at.windows(2) {
        assert!(
            w[1].duration_since(w[0]) >= jiff::SignedDuration::from_millis(100),
            "the capped campaign's sends {:?} apart",
            w[1].duration_since(w[0])
        );
    }
    assert!(
        capped_at.len() >= 4,
        "each planner got the capped campaign's slot: {capped_at:?}"
    );
    assert_eq!(
        all.len() - capped_at.len(),
        80,
        "every uncapped send got a slot, the ones the capped campaign could not use included"
    );
    // A plan whose only sends wait for their campaign says when to ask again.
    let only_capped = vec![Some((capped.clone(), ms(100))); 3];
    let p = store
        .plan_sends(
            "777",
            every(ms(5)),
            &only_capped,
            3,
            Duration::ZERO..ms(10),
            rand_token(),
        )
        .await
        .unwrap();
    assert!(p.granted() <= 1);
    assert!(p.next.is_some(), "{p:?}");
}

fn rand_token() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A number's rolling window holds across planners: however many plan at once, no window
/// holds more than the capacity; while it has room the sends are evenly spaced; a late send
/// moves to when it really goes while the window allows, and is taken out when not.
pub async fn the_window_holds_and_late_sends_move<S: Store>(store: &S) {
    let ms = Duration::from_millis;
    let pace = Pace::exact(10, ms(100));
    let wants = vec![None; 15];
    let calls = (0..6)
        .map(|k| store.plan_sends("888", pace, &wants, 15, Duration::ZERO..ms(1000), 100 + k));
    let mut times: Vec<jiff::Timestamp> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap().at.into_iter().flatten())
        .collect();
    times.sort_unstable();
    assert!(times.len() >= 90, "a second's worth: {}", times.len());
    for w in times.windows(11) {
        assert!(
            w[10].duration_since(w[0]) >= jiff::SignedDuration::from_millis(100),
            "11 sends within {:?}",
            w[10].duration_since(w[0])
        );
    }
    for w in times.windows(2) {
        assert!(
            w[1].duration_since(w[0]) >= jiff::SignedDuration::from_micros(7500),
            "two sends {:?} apart",
            w[1].duration_since(w[0])
        );
    }
    // The first window is filled evenly: 10 ms apart.
    for w in times[..10].windows(2) {
        assert_eq!(
            w[1].duration_since(w[0]),
            jiff::SignedDuration::from_millis(10)
        );
    }

    // Late sends. A quiet number: three sends planned; the first goes 30 ms late.
    let quiet = Pace::exact(5, ms(100));
    let p = store
        .plan_sends(
            "889",
            quiet,
            &[None, None, None],
            3,
            Duration::ZERO..ms(100),
            7,
        )
        .await
        .unwrap();
    let planned = p.at[0].unwrap();
    tokio::time::sleep(ms(30)).await;
    let slot = |index| SlotId { token: 7, index };
    let moved = move_one(store, "889", slot(0), quiet)
        .await
        .expect("room: it moves");
    assert!(moved >= planned + ms(30), "{moved} vs {planned}");
    // The next plan counts it at its new time: with it, no window holds more than five.
    let p2 = store
        .plan_sends("889", quiet, &vec![None; 5], 5, Duration::ZERO..ms(1000), 8)
        .await
        .unwrap();
    let mut all: Vec<jiff::Timestamp> = vec![p.at[1].unwrap(), p.at[2].unwrap(), moved];
    all.extend(p2.at.iter().flatten());
    assert_eq!(all.len(), 8);
    all.sort_unstable();
    for w in all.windows(6) {
        assert!(
            w[5].duration_since(w[0]) >= jiff::SignedDuration::from_millis(100),
            "six sends within {:?}: {all:?}",
            w[5].duration_since(w[0])
        );
    }
    // A send that is not late by the store's clock stays where it was planned.
    let slow = Pace::exact(2, Duration::from_secs(10));
    let ahead = store
        .plan_sends(
            "890",
            slow,
            &[None, None],
            2,
            Duration::ZERO..Duration::from_secs(60),
            9,
        )
        .await
        .unwrap();
    let second = ahead.at[1].unwrap();
    assert_eq!(
        second,
        ahead.at[0].unwrap() + Duration::from_secs(5),
        "{ahead:?}"
    );
    assert_eq!(
        move_one(store, "890", SlotId { token: 9, index: 1 }, slow).await,
        Some(second)
    );
    // A full window: two windows planned ahead at capacity; the first send, 30 ms late,
    // would put six into some window: it is refused and taken out (a second ask finds it
    // gone). The window is ten seconds, so that however slow the machine, the move comes
    // while the plan still fills every window around it.
    let busy = Pace::exact(5, Duration::from_secs(10));
    let full = store
        .plan_sends(
            "891",
            busy,
            &vec![None; 10],
            10,
            Duration::ZERO..Duration::from_secs(20),
            11,
        )
        .await
        .unwrap();
    assert_eq!(full.granted(), 10);
    tokio::time::sleep(ms(30)).await;
    let first = SlotId {
        token: 11,
        index: 0,
    };
    assert_eq!(move_one(store, "891", first, busy).await, None);
    assert_eq!(move_one(store, "891", first, busy).await, None);
    // Its place is free again: one more fits in the first window.
    let again = store
        .plan_sends(
            "891",
            busy,
            &[None],
            1,
            Duration::ZERO..Duration::from_secs(20),
            12,
        )
        .await
        .unwrap();
    assert!(again.at[0].is_some());
    // Unknown sends are not moved.
    assert_eq!(
        move_one(store, "892", SlotId { token: 1, index: 0 }, quiet).await,
        None
    );
    // Several late sends in one call, each answered in order.
    let p = store
        .plan_sends("893", quiet, &[None, None], 2, Duration::ZERO..ms(100), 13)
        .await
        .unwrap();
    tokio::time::sleep(ms(30)).await;
    let at = |index| SlotId { token: 13, index };
    let unknown = SlotId {
        token: 14,
        index: 0,
    };
    let moved = store
        .move_slots("893", quiet, &[at(0), unknown, at(1)])
        .await
        .unwrap();
    assert_eq!(moved.len(), 3);
    assert_eq!(moved[1], None);
    let first = p.at[0].unwrap();
    for (m, planned) in [(moved[0], p.at[0]), (moved[2], p.at[1])] {
        let (m, planned) = (m.expect("room: it moves"), planned.unwrap());
        assert!(m > planned && m >= first + ms(30), "{m} vs {planned}");
    }
}

/// A send that left after its latest time is logged at when it left: the send a window
/// later waits a window after that. One of a send no longer logged is left out. (One that
/// left early: [`early_departures_pull_the_window_in`].)
pub async fn late_departures_push_the_window_on<S: Store>(store: &S) {
    let s = Duration::from_secs;
    // Windows of ten seconds: nothing here depends on how fast the calls are.
    let pace = Pace::exact(2, s(10));
    let p = store
        .plan_sends("897", pace, &[None, None], 2, Duration::ZERO..s(20), 18)
        .await
        .unwrap();
    let (first, second) = (p.until[0].unwrap(), p.until[1].unwrap());
    assert_eq!(second.duration_since(first), s(5).try_into().unwrap());
    let slot = |index| SlotId { token: 18, index };
    let left = first + s(2);
    let gone = SlotId {
        token: 19,
        index: 0,
    };
    store
        .record_departures("897", &[(slot(0), left), (gone, first + s(4))])
        .await
        .unwrap();
    store.record_departures("897", &[]).await.unwrap();
    // Had the unknown one been logged, the next would go ten seconds after it.
    let next = store
        .plan_sends("897", pace, &[None], 1, Duration::ZERO..s(60), 20)
        .await
        .unwrap();
    assert_eq!(next.at[0], Some(left + s(10)), "{next:?}");
}

/// A send that left before its latest time is logged at when it left: the send a window
/// later goes a window after its departure, not after its latest time.
pub async fn early_departures_pull_the_window_in<S: Store>(store: &S) {
    let s = Duration::from_secs;
    // One send in ten seconds, with a slack of three.
    let pace = Pace {
        capacity: 1,
        window: s(10),
        slack: s(3),
        room_slack: s(3),
    };
    let p = store
        .plan_sends("899", pace, &[None], 1, Duration::ZERO..s(20), 21)
        .await
        .unwrap();
    let (at, until) = (p.at[0].unwrap(), p.until[0].unwrap());
    assert_eq!(until.duration_since(at), s(3).try_into().unwrap(), "{p:?}");
    let left = at + s(1);
    store
        .record_departures(
            "899",
            &[(
                SlotId {
                    token: 21,
                    index: 0,
                },
                left,
            )],
        )
        .await
        .unwrap();
    let next = store
        .plan_sends("899", pace, &[None], 1, Duration::ZERO..s(60), 22)
        .await
        .unwrap();
    // Counted at its latest time, the next would go at `until` + 10 s.
    assert_eq!(next.at[0], Some(left + s(10)), "{next:?}");
}

/// A send may go from its time until its latest: the window counts it at the latest, with
/// the room slack while the window is less than half full and the slack after that (never
/// before an earlier send's latest time). The send `capacity` after another waits a window
/// after that one's latest time, so no window of real send times holds more than
/// `capacity`. A lead puts no time sooner; a late send moved has the slack again from now.
pub async fn slack_is_counted_in_the_window<S: Store>(store: &S) {
    let ms = Duration::from_millis;
    // A window of 100 ms, a slack of 1 ms, and 20 ms while it has room.
    let slacked = |capacity| Pace {
        capacity,
        window: ms(100),
        slack: ms(1),
        room_slack: ms(20),
    };
    let pace = slacked(4);
    let p = store
        .plan_sends("894", pace, &vec![None; 6], 6, ms(5)..ms(1000), 15)
        .await
        .unwrap();
    assert_eq!(p.granted(), 6, "{p:?}");
    let at: Vec<jiff::Timestamp> = p.at.iter().flatten().copied().collect();
    let until: Vec<jiff::Timestamp> = p.until.iter().flatten().copied().collect();
    assert_eq!(until.len(), 6, "{p:?}");
    // (Times are whole microseconds; the store's reading of now may have more.)
    assert!(
        at[0] + Duration::from_micros(1) > p.now + ms(5),
        "no time before the lead: {p:?}"
    );
    // Evenly while the window has room: a quarter of it apart.
    for i in 1..4 {
        assert_eq!(at[i].duration_since(at[i - 1]), ms(25).try_into().unwrap());
    }
    // The first two with less than half the window taken have the room slack.
    assert_eq!(until[0], at[0] + ms(20));
    assert_eq!(until[1], at[1] + ms(20));
    assert_eq!(until[2], at[2] + ms(1));
    assert_eq!(until[3], at[3] + ms(1));
    // The fifth and sixth wait a window after the latest of the first and second.
    assert_eq!(at[4], until[0] + ms(100));
    assert_eq!(at[5], until[1] + ms(100));
    for i in 0..until.len() - 1 {
        assert!(
            until[i + 1] >= until[i],
            "latest times never decrease: {p:?}"
        );
    }

    // Without slack, a send's latest time is its time.
    let exact = store
        .plan_sends(
            "895",
            Pace::exact(4, ms(100)),
            &vec![None; 3],
            3,
            ms(0)..ms(1000),
            16,
        )
        .await
        .unwrap();
    assert_eq!(exact.until, exact.at);

    // A lone send, 30 ms late (past its 20 ms of room slack), moves to now with the room
    // slack from there.
    let quiet = slacked(5);
    let p = store
        .plan_sends("896", quiet, &[None], 1, ms(0)..ms(100), 17)
        .await
        .unwrap();
    let planned = p.at[0].unwrap();
    tokio::time::sleep(ms(30)).await;
    let moved = move_one(
        store,
        "896",
        SlotId {
            token: 17,
            index: 0,
        },
        quiet,
    )
    .await
    .expect("room: it moves");
    assert!(moved >= planned + ms(50), "{moved} vs {planned}");
}

async fn move_one<S: Store>(
    store: &S,
    phone_number_id: &str,
    slot: SlotId,
    pace: Pace,
) -> Option<jiff::Timestamp> {
    store
        .move_slots(phone_number_id, pace, &[slot])
        .await
        .unwrap()[0]
}

/// The messaging limit counts each user once in the moving window, across callers; a full
/// budget refuses new users but not those already counted; a refused send gives its place
/// back; users leave as the window moves on.
pub async fn the_messaging_limit_counts_each_user_once<S: Store>(store: &S) {
    let day = Duration::from_secs(24 * 3600);
    let (a, b, c, d) = (phone(1), phone(2), phone(3), phone(4));
    let (first, used) = store.reserve_reach("pf1", 3, day, &[a, b]).await.unwrap();
    assert!(
        matches!(first[..], [Reach::Reserved(_), Reach::Reserved(_)]),
        "{first:?}"
    );
    assert_eq!(used.used, 2);
    let (second, used) = store
        .reserve_reach("pf1", 3, day, &[a, c, d])
        .await
        .unwrap();
    assert!(
        matches!(
            second[..],
            [Reach::Counted, Reach::Reserved(_), Reach::Full]
        ),
        "{second:?}"
    );
    assert_eq!(used.used, 3);
    let Reach::Reserved(first_at) = first[0] else {
        unreachable!()
    };
    let frees = used.frees_at.expect("someone is counted");
    assert!(frees >= first_at + day, "{frees} vs {first_at}");
    // Meta refused c's send: its place frees, and d fits.
    let Reach::Reserved(c_at) = second[1] else {
        unreachable!()
    };
    store.release_reach("pf1", c, c_at).await.unwrap();
    assert_eq!(store.reach_use("pf1", day).await.unwrap().used, 2);
    let (third, _) = store.reserve_reach("pf1", 3, day, &[d]).await.unwrap();
    assert!(matches!(third[..], [Reach::Reserved(_)]), "{third:?}");
    // a was counted again after its first reservation: giving that one back keeps it.
    store.release_reach("pf1", a, first_at).await.unwrap();
    assert_eq!(store.reach_use("pf1", day).await.unwrap().used, 3);
    // Portfolios are separate.
    assert_eq!(
        store.reach_use("pf2", day).await.unwrap(),
        ReachUse::default()
    );
    // Users leave the window as it moves on (a sleep never ends early).
    let short = Duration::from_millis(100);
    store.reserve_reach("pf3", 1, short, &[a]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (later, used) = store.reserve_reach("pf3", 1, short, &[b]).await.unwrap();
    assert!(matches!(later[..], [Reach::Reserved(_)]), "{later:?}");
    assert_eq!(used.used, 1);
    // Throughput levels, by number and by the display number webhooks name.
    assert_eq!(store.throughput("pn1").await.unwrap(), None);
    store
        .set_throughput("pn1", "+1 555-010-0001", 80)
        .await
        .unwrap();
    assert_eq!(store.throughput("pn1").await.unwrap(), Some(80));
    assert!(
        store
            .set_throughput_by_display("15550100001", 1000)
            .await
            .unwrap()
    );
    assert_eq!(store.throughput("pn1").await.unwrap(), Some(1000));
    assert!(
        !store
            .set_throughput_by_display("15550109999", 1000)
            .await
            .unwrap()
    );
    // Meta's limit, as recorded.
    assert_eq!(store.messaging_limit("pf1").await.unwrap(), None);
    for limit in [MessagingLimit::Users(250), MessagingLimit::Unlimited] {
        store.set_messaging_limit("pf1", limit).await.unwrap();
        assert_eq!(store.messaging_limit("pf1").await.unwrap(), Some(limit));
    }
}

/// A status webhook that fails an accepted message with 131049 or 130472 is Meta declining
/// to deliver, not a failure: counted in `declined`, not in `failed`, once however often it
/// comes; the failures report names the reason. Another code is a failure as before.
pub async fn declined_messages_are_not_failures<S: Store>(store: &S) {
    let id = running(store, "declined", 3).await;
    let jobs = store.claim(&claim_req(3, 31)).await.unwrap();
    for (i, job) in jobs.iter().enumerate() {
        store.start(&[JobRef::from(job)]).await.unwrap();
        let message_id = wamid(900 + i as u64);
        settle_one(store, job, Outcome::Accepted { message_id }).await;
    }
    let failed = |i: usize, code: i64| StatusUpdate {
        error_code: Some(code),
        ..status(Some(jobs[i].id.clone()), None, StatusEvent::Failed)
    };
    let updates = [
        failed(0, 131_049),
        failed(1, 130_472),
        failed(2, 131_026),
        failed(0, 131_049),
    ];
    store.apply_status(&updates).await.unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(s.declined.get(SkipReason::FrequencyCapped), 1, "{s:#?}");
    assert_eq!(s.declined.get(SkipReason::Experiment), 1, "{s:#?}");
    assert_eq!(s.failed, 1, "{s:#?}");
    assert_eq!(s.errors.keys().collect::<Vec<_>>(), ["131026"], "{s:#?}");
    assert_eq!(s.accepted, 3);
    let (rows, _) = store.failures(&id, 0, 100).await.unwrap();
    let mut reasons: Vec<(String, String)> =
        rows.into_iter().map(|r| (r.reason, r.detail)).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("experiment".to_owned(), "130472".to_owned()),
            ("failed".to_owned(), "131026".to_owned()),
            ("frequency_capped".to_owned(), "131049".to_owned()),
        ]
    );
}

/// One leader per role: the first claimant leads and renews; another does not lead until the
/// leader's lease runs out. The exclusive part holds a lease far longer than any stall of the
/// machine between two calls; only the lapse uses a short one, and waits past it.
pub async fn one_leader_at_a_time<S: Store>(store: &S) {
    let held = Duration::from_secs(30);
    assert!(store.lead("exporter", "a", held).await.unwrap());
    assert!(!store.lead("exporter", "b", held).await.unwrap());
    assert!(
        store.lead("exporter", "a", held).await.unwrap(),
        "the leader renews"
    );
    assert!(store.lead("other", "b", held).await.unwrap(), "per role");
    // The leader renews for a moment only, then stops.
    let short = Duration::from_millis(50);
    assert!(store.lead("exporter", "a", short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(
        store.lead("exporter", "b", held).await.unwrap(),
        "a lapsed lease"
    );
    assert!(!store.lead("exporter", "a", held).await.unwrap());
}

/// Applies the events in the given order to a fresh accepted job; returns its final stats.
pub async fn apply_sequence<S: Store>(
    store: &S,
    name: &str,
    events: &[StatusEvent],
) -> (herald_core::Stats, JobState) {
    let id = running(store, name, 1).await;
    let job = store.claim(&claim_req(1, 1)).await.unwrap().remove(0);
    store.start(&[JobRef::from(&job)]).await.unwrap();
    settle_one(
        store,
        &job,
        Outcome::Accepted {
            message_id: wamid(1),
        },
    )
    .await;
    for e in events {
        let mut u = status(Some(job.id.clone()), Some(wamid(1)), *e);
        if *e == StatusEvent::Failed {
            u.error_code = Some(131_047);
        }
        u.pricing = Some(Pricing {
            billable: Some(true),
            category: Some("marketing".into()),
            kind: Some("regular".into()),
        });
        store.apply_status(&[u]).await.unwrap();
        invariant(store, &id).await;
    }
    let state = store.job(&job.id).await.unwrap().unwrap().state;
    (store.stats(&id).await.unwrap(), state)
}

pub async fn specs_change_until_the_campaign_ends<S: Store>(store: &S) {
    let id = campaign(store, "respec").await;
    let mut spec = spec("respec");
    spec.max_cost = Some(12.5);
    spec.template_category = Some("MARKETING".into());
    store.update_spec(&id, &spec).await.unwrap();
    assert_eq!(store.campaign(&id).await.unwrap().spec, spec);
    let mut bad = spec.clone();
    bad.max_cost = Some(-1.0);
    assert!(matches!(
        store.update_spec(&id, &bad).await,
        Err(StoreError::Invalid(e)) if e.contains("max_cost")
    ));
    assert!(matches!(
        store
            .update_spec(&CampaignId::new("nope").unwrap(), &spec)
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    assert!(matches!(
        store.update_spec(&id, &spec).await,
        Err(StoreError::Final(..))
    ));
    assert_eq!(store.campaign(&id).await.unwrap().spec.max_cost, Some(12.5));
}

/// Charges count once per delivered message, by the recipient's region, the category and the
/// day Meta delivered it, whatever duplicates and order the pricing statuses arrive in; free
/// deliveries count by type; undelivered and failed messages cost nothing.
pub async fn charges_count_once_whatever_the_order<S: Store>(store: &S) {
    for seed in 1..=6u64 {
        charges_count_once_for(store, seed).await;
    }
}

/// One run of [`charges_count_once_whatever_the_order`]: `seed` picks which statuses are
/// duplicated and the order all of them arrive in (a property test gives it any value).
pub async fn charges_count_once_for<S: Store>(store: &S, seed: u64) {
    use StatusEvent::*;
    let regions: [herald_core::Region; 3] = ["IN", "US", "ZZ"].map(|r| r.parse().unwrap());
    let n = 24u64;
    // 2026-01-01 00:00 UTC and a day later.
    let (day0, day1) = (1_767_225_600i64, 1_767_225_600i64 + 86_400);
    {
        let people: Vec<Recipient> = recipients(0..n)
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.with_region(regions[i % 3]))
            .collect();
        let id = running_with(store, &format!("charges{seed}"), &people).await;
        let jobs = store.claim(&claim_req(100, seed)).await.unwrap();
        let jobs: Vec<ClaimedJob> = jobs.into_iter().filter(|j| j.id.campaign == id).collect();
        assert_eq!(jobs.len() as u64, n);
        let refs: Vec<JobRef> = jobs.iter().map(JobRef::from).collect();
        store.start(&refs).await.unwrap();
        let settles: Vec<Settle> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| Settle {
                job: j.into(),
                outcome: Outcome::Accepted {
                    message_id: wamid((seed % 1_000_000) * 1000 + i as u64),
                },
            })
            .collect();
        store.settle(&settles).await.unwrap();
        // Per job: 0..=2 charged as marketing (delivered on day0, day1, or read only, with
        // its delivered status never coming), 3 free, 4 only sent, 5 failed.
        let mut updates = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let seq = u64::from(j.id.seq);
            let kind = seq as usize % 6;
            let regular = |cat: &str| Pricing {
                billable: Some(true),
                category: Some(cat.into()),
                kind: Some("regular".into()),
            };
            let free = Pricing {
                billable: Some(false),
                category: Some("utility".into()),
                kind: Some("free_customer_service".into()),
            };
            let mut u = |event, at: i64, pricing: Option<Pricing>| {
                let mut s = status(
                    Some(j.id.clone()),
                    Some(wamid((seed % 1_000_000) * 1000 + i as u64)),
                    event,
                );
                s.timestamp = Some(at);
                s.pricing = pricing;
                if event == Failed {
                    s.error_code = Some(131_026);
                }
                updates.push(s);
            };
            match kind {
                0 | 1 => {
                    let at = if kind == 0 { day0 + 60 } else { day1 + 60 };
                    u(Sent, at - 5, Some(regular("marketing")));
                    u(Delivered, at, Some(regular("marketing")));
                    u(Read, at + 30, None);
                }
                2 => {
                    u(Sent, day0 + 1, Some(regular("marketing")));
                    u(Read, day0 + 9, Some(regular("marketing")));
                }
                3 => {
                    u(Sent, day0 + 1, Some(free.clone()));
                    u(Delivered, day0 + 2, Some(free));
                }
                4 => u(Sent, day0 + 1, Some(regular("marketing"))),
                _ => u(Failed, day0 + 1, None),
            }
        }
        // Duplicate a third of the statuses and shuffle them all (xorshift, per seed).
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let extra: Vec<StatusUpdate> = updates
            .iter()
            .filter(|_| next() % 3 == 0)
            .cloned()
            .collect();
        updates.extend(extra);
        for i in (1..updates.len()).rev() {
            updates.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for batch in updates.chunks(7) {
            store.apply_status(batch).await.unwrap();
            invariant(store, &id).await;
        }
        let s = invariant(store, &id).await;
        // What the plan says, counted independently of the store.
        let mut want: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let mut free_want = 0;
        for j in &jobs {
            let seq = u64::from(j.id.seq);
            let region = regions[(seq - 1) as usize % 3].to_string();
            let day = match seq as usize % 6 {
                0 | 2 => "2026-01-01",
                1 => "2026-01-02",
                3 => {
                    free_want += 1;
                    continue;
                }
                _ => continue,
            };
            *want.entry((region, day.to_owned())).or_default() += 1;
        }
        let got: std::collections::BTreeMap<(String, String), u64> = s
            .pricing
            .charged
            .iter()
            .map(|c| {
                assert_eq!(c.category, "marketing");
                ((c.region.to_string(), c.day.to_string()), c.messages)
            })
            .collect();
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(
            s.pricing.free.get("free_customer_service").copied(),
            Some(free_want),
            "seed {seed}"
        );
        let by_region: Vec<u64> = regions
            .iter()
            .map(|r| s.regions.get(r).copied().unwrap_or(0))
            .collect();
        assert_eq!(by_region, [8, 8, 8]);
    }
}

pub async fn lattice_is_order_independent<S: Store>(store: &S) {
    use StatusEvent::*;
    let orders: &[&[StatusEvent]] = &[
        &[Sent, Delivered, Read],
        &[Read, Delivered, Sent],
        &[Read, Read, Sent, Delivered, Delivered],
        &[Delivered, Failed, Read, Failed, Sent],
        &[Failed, Delivered],
    ];
    let mut results = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        results.push(apply_sequence(store, &format!("lattice{i}"), o).await);
    }
    let (s, st) = &results[0];
    assert_eq!((s.sent, s.delivered, s.read, s.failed), (1, 1, 1, 0));
    assert!(
        matches!(st, JobState::Accepted { delivery, .. } if delivery.progress == herald_core::Progress::Read)
    );
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].0, results[2].0);
    assert_eq!(s.pricing.billable, 1, "pricing counted once per message");
    let (f, _) = &results[3];
    assert_eq!(
        (
            f.sent,
            f.delivered,
            f.read,
            f.failed,
            f.failed_before_accept
        ),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(f.errors.get("131047"), Some(&1));
    let (g, _) = &results[4];
    assert_eq!((g.sent, g.delivered, g.read, g.failed), (1, 1, 0, 1));
}

pub async fn cancellation<S: Store>(store: &S) {
    let id = running(store, "cancel", 2500).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .start(&[JobRef::from(&jobs[0]), JobRef::from(&jobs[1])])
        .await
        .unwrap();
    settle_one(
        store,
        &jobs[0],
        Outcome::Delayed {
            delay: Duration::from_secs(60),
        },
    )
    .await;
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.cancelled, s.pending, s.in_flight),
        (2498, 0, 2),
        "queued and delayed jobs are cancelled"
    );
    // A request on the wire when the cancel came settles with its real outcome.
    assert_eq!(
        settle_one(
            store,
            &jobs[1],
            Outcome::Accepted {
                message_id: wamid(5)
            }
        )
        .await,
        SettleResult::Applied
    );
    settle_one(store, &jobs[2], Outcome::Released).await;
    invariant(store, &id).await;
    assert!(store.claim(&claim_req(10, 2)).await.unwrap().is_empty());
    assert!(matches!(
        store.enqueue_batch(&id, &recipients(9000..9001)).await,
        Err(StoreError::Final(_, CampaignStatus::Cancelled))
    ));
}

/// An ended campaign is deleted with everything of it, and only then: not while it can still
/// send, nor while a send of it is in flight. What Meta says of its messages afterwards
/// changes nothing, and the other campaigns keep theirs.
pub async fn an_ended_campaign_is_deleted_whole<S: Store>(store: &S) {
    let kept = campaign(store, "kept").await;
    store.enqueue_batch(&kept, &recipients(0..3)).await.unwrap();
    let id = running(store, "deleted", 25).await;
    let refused = store.delete_campaign(&id).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(m) if m.contains("is running")),
        "{refused}"
    );
    // Only the running campaign has jobs to claim (the other is a draft).
    let jobs = store.claim(&claim_req(25, 1)).await.unwrap();
    assert_eq!(jobs.len(), 25);
    let refs: Vec<JobRef> = jobs.iter().map(JobRef::from).collect();
    assert!(store.start(&refs).await.unwrap().iter().all(|s| *s));
    let settles: Vec<Settle> = (0u64..)
        .zip(&jobs[..24])
        .map(|(i, j)| Settle {
            job: j.into(),
            outcome: Outcome::Accepted {
                message_id: wamid(i),
            },
        })
        .collect();
    store.settle(&settles).await.unwrap();
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let refused = store.delete_campaign(&id).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(m) if m.contains("1 sends in flight")),
        "{refused}"
    );
    assert_eq!(
        invariant(store, &id).await.accepted,
        24,
        "a refusal deletes nothing"
    );
    let last = Outcome::Accepted {
        message_id: wamid(24),
    };
    settle_one(store, &jobs[24], last).await;

    store.delete_campaign(&id).await.unwrap();
    assert!(matches!(
        store.campaign(&id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.stats(&id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!matches!(store.job(&jobs[3].id).await, Ok(Some(_))));
    let listed: Vec<CampaignId> = all_campaigns(store)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![kept.clone()]);
    assert!(matches!(
        store.delete_campaign(&id).await,
        Err(StoreError::NotFound(_))
    ));
    // A late status of one of its messages, by callback id or by message id, finds no job.
    let late = store
        .apply_status(&[
            status(Some(jobs[0].id.clone()), Some(wamid(0)), StatusEvent::Read),
            status(None, Some(wamid(1)), StatusEvent::Delivered),
        ])
        .await
        .unwrap();
    assert_eq!(late, vec![Applied::Unknown, Applied::Unknown]);
    // A reply from one of its recipients is counted nowhere.
    assert!(!store.count_reply(&id, jobs[2].phone).await.unwrap());
    assert!(matches!(
        store.campaign(&id).await,
        Err(StoreError::NotFound(_))
    ));
    // The other campaign is whole, and can be deleted once it has ended.
    assert_eq!(invariant(store, &kept).await.recipients, 3);
    store
        .transition(&kept, CampaignAction::Cancel, None)
        .await
        .unwrap();
    store.delete_campaign(&kept).await.unwrap();
    assert!(all_campaigns(store).await.is_empty());
}

/// After a cancel, every job ends cancelled or in its real outcome, whatever state it was in:
/// nothing comes back as pending, however the workers holding jobs settle them.
pub async fn cancel_drains_every_state<S: Store>(store: &S) {
    let id = running(store, "drain", 6).await;
    let mut short = claim_req(1, 4);
    short.lease = Duration::from_millis(50);
    // A claim whose worker dies: its lease lapses after the cancel.
    store.claim(&short).await.unwrap();
    let jobs = store.claim(&claim_req(4, 1)).await.unwrap();
    let (doubt, started, claimed, delayed) = (&jobs[0], &jobs[1], &jobs[2], &jobs[3]);
    store
        .start(&[doubt.into(), started.into(), delayed.into()])
        .await
        .unwrap();
    settle_one(store, doubt, Outcome::InDoubt).await;
    settle_one(
        store,
        delayed,
        Outcome::Delayed {
            delay: Duration::from_secs(60),
        },
    )
    .await;
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.cancelled, s.in_flight, s.in_doubt),
        (0, 2, 3, 1),
        "queued and delayed cancelled at once"
    );
    // The worker holding jobs carries on: none of them comes back as pending.
    assert_eq!(store.start(&[claimed.into()]).await.unwrap(), [false]);
    settle_one(
        store,
        started,
        Outcome::Deferred {
            delay: Duration::from_secs(1),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.reclaim_expired().await.unwrap().to_pending, 1);
    let s = invariant(store, &id).await;
    assert_eq!((s.pending, s.in_flight, s.cancelled), (0, 0, 5), "{s:#?}");
    // The request in doubt settles by its own webhook, as anything on the wire does.
    store
        .apply_status(&[status(
            Some(doubt.id.clone()),
            Some(wamid(70)),
            StatusEvent::Sent,
        )])
        .await
        .unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.in_flight, s.in_doubt, s.accepted),
        (0, 0, 0, 1)
    );
    // Cancelling again changes nothing.
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    assert_eq!(invariant(store, &id).await, s);
}

/// A job outside its send window waits, counted in `waiting_for_send_window` (a part of
/// `pending`), until it is claimed again, settled by its webhook's evidence or cancelled;
/// claims carry each number's region, which the window is read in.
pub async fn send_window_waits_are_counted_until_they_end<S: Store>(store: &S) {
    let gb: herald_core::Region = "GB".parse().unwrap();
    let people: Vec<Recipient> = (recipients(0..4).into_iter())
        .enumerate()
        .map(|(i, r)| if i == 0 { r } else { r.with_region(gb) })
        .collect();
    let id = running_with(store, "window", &people).await;
    let jobs = store.claim(&claim_req(4, 1)).await.unwrap();
    let regions: Vec<&str> = jobs.iter().map(|j| j.region.as_str()).collect();
    assert_eq!(regions, ["ZZ", "GB", "GB", "GB"]);
    // The first window opens at once (claimed again below); the others in a minute.
    for (j, secs) in jobs.iter().zip([0, 60, 60, 60]) {
        let delay = Duration::from_secs(secs);
        let r = settle_one(store, j, Outcome::AwaitWindow { delay }).await;
        assert_eq!(r, SettleResult::Applied);
    }
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.waiting_for_send_window, s.in_flight),
        (4, 4, 0)
    );
    let again = store.claim(&claim_req(4, 2)).await.unwrap();
    assert_eq!(again.len(), 1, "only the window that opened: {again:?}");
    assert_eq!((again[0].id.seq, again[0].attempts), (jobs[0].id.seq, 0));
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.waiting_for_send_window, s.in_flight),
        (3, 3, 1)
    );
    // A webhook for a waiting job (an earlier request did reach Meta) settles it.
    store
        .apply_status(&[status(
            Some(jobs[1].id.clone()),
            Some(wamid(90)),
            StatusEvent::Delivered,
        )])
        .await
        .unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.waiting_for_send_window, s.accepted),
        (2, 2, 1)
    );
    // Waiting again counts once more; a cancel takes the waiting with the rest.
    settle_one(
        store,
        &again[0],
        Outcome::AwaitWindow {
            delay: Duration::from_secs(60),
        },
    )
    .await;
    assert_eq!(invariant(store, &id).await.waiting_for_send_window, 3);
    store
        .transition(&id, CampaignAction::Cancel, None)
        .await
        .unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.pending, s.waiting_for_send_window, s.cancelled),
        (0, 0, 3),
        "{s:#?}"
    );
}

pub async fn completes_when_nothing_is_left<S: Store>(store: &S) {
    let id = running(store, "complete", 3).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(
            store.campaign(&id).await.unwrap().status,
            CampaignStatus::Running
        );
        settle_one(
            store,
            j,
            Outcome::Accepted {
                message_id: wamid(100 + i as u64),
            },
        )
        .await;
    }
    let c = store.campaign(&id).await.unwrap();
    assert_eq!(c.status, CampaignStatus::Completed);
    assert!(c.finished_ms.is_some());
    assert!(
        !store
            .running_campaigns()
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == id)
    );
    // Webhooks still count after completion.
    store
        .apply_status(&[status(
            Some(jobs[0].id.clone()),
            None,
            StatusEvent::Delivered,
        )])
        .await
        .unwrap();
    assert_eq!(invariant(store, &id).await.delivered, 1);
}

pub async fn an_upload_in_progress_holds_completion<S: Store>(store: &S) {
    let id = running(store, "upload", 1).await;
    store
        .hold_upload(&id, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let job = store.claim(&claim_req(1, 1)).await.unwrap().remove(0);
    store.start(&[JobRef::from(&job)]).await.unwrap();
    settle_one(
        store,
        &job,
        Outcome::Accepted {
            message_id: wamid(1),
        },
    )
    .await;
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        CampaignStatus::Running
    );
    store.release_upload(&id, 1).await.unwrap();
    assert!(store.claim(&claim_req(1, 2)).await.unwrap().is_empty());
    assert_eq!(
        store.campaign(&id).await.unwrap().status,
        CampaignStatus::Completed
    );
    // A new upload into an ended campaign is refused, naming the campaign's status.
    assert!(matches!(
        store.hold_upload(&id, 2, Duration::from_secs(60)).await,
        Err(StoreError::Final(_, CampaignStatus::Completed))
    ));
    assert!(matches!(
        store
            .hold_upload(
                &CampaignId::new("nosuchcampaign").unwrap(),
                3,
                Duration::from_secs(1)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_claimers_claim_each_job_once<S: Store>(store: &S) {
    const JOBS: u64 = 100_000;
    let id = campaign(store, "concurrent").await;
    let all = recipients(0..JOBS);
    for chunk in all.chunks(5000) {
        store.enqueue_batch(&id, chunk).await.unwrap();
    }
    store
        .transition(&id, CampaignAction::Start, None)
        .await
        .unwrap();
    // Eight claimers at once, each on its own pooled connection.
    let workers = (0..8u64).map(|w| async move {
        let mut mine = Vec::new();
        loop {
            let jobs = store.claim(&claim_req(500, w)).await.unwrap();
            if jobs.is_empty() {
                return mine;
            }
            let settles: Vec<Settle> = jobs
                .iter()
                .map(|j| Settle {
                    job: j.into(),
                    outcome: Outcome::Skipped {
                        reason: SkipReason::FrequencyCapped,
                    },
                })
                .collect();
            store.settle(&settles).await.unwrap();
            mine.extend(jobs.into_iter().map(|j| j.id.seq));
        }
    });
    let results = futures::future::join_all(workers).await;
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for mine in results {
        per_worker.push(mine.len());
        for seq in mine {
            assert!(seen.insert(seq), "job {seq} claimed twice");
        }
    }
    assert_eq!(seen.len() as u64, JOBS, "every job claimed");
    assert!(
        per_worker.iter().filter(|n| **n > 0).count() > 1,
        "work was shared: {per_worker:?}"
    );
    let s = invariant(store, &id).await;
    assert_eq!(s.skipped_at_send, JOBS);
}

pub async fn suppression_windows_rate_and_pairs<S: Store>(store: &S) {
    let (a, b) = (phone(1), phone(2));
    let why = Why {
        reason: "imported".into(),
        at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
    };
    store.suppress(PNID, &[a], &why).await.unwrap();
    assert_eq!(
        store.suppressed(PNID, &[a, b]).await.unwrap(),
        [true, false]
    );
    // Why and since when; a second reason does not replace the first.
    store
        .suppress(PNID, &[a], &Why::now("opt_out_keyword"))
        .await
        .unwrap();
    assert_eq!(
        store
            .suppression_reasons(PNID, SuppressionScope::All, &[a, b])
            .await
            .unwrap(),
        [Some(why.clone()), None]
    );
    assert_eq!(
        store.suppressed("999", &[a]).await.unwrap(),
        [false],
        "per phone number id"
    );
    let (list, _) = store
        .list_suppressed(PNID, SuppressionScope::All, 0)
        .await
        .unwrap();
    assert_eq!(list, [a]);
    // The marketing-only list is its own: b gets no marketing but is not suppressed.
    store
        .suppress_marketing(PNID, &[b], &Why::now("error 131050"))
        .await
        .unwrap();
    assert_eq!(
        store.suppressed(PNID, &[a, b]).await.unwrap(),
        [true, false]
    );
    assert_eq!(
        store.suppressions(PNID, &[a, b, phone(3)]).await.unwrap(),
        [
            Some(SuppressionScope::All),
            Some(SuppressionScope::Marketing),
            None
        ]
    );
    let (marketing, _) = store
        .list_suppressed(PNID, SuppressionScope::Marketing, 0)
        .await
        .unwrap();
    assert_eq!(marketing, [b]);
    let reasons = store
        .suppression_reasons(PNID, SuppressionScope::Marketing, &[a, b])
        .await
        .unwrap();
    assert_eq!(reasons[0], None);
    assert_eq!(reasons[1].as_ref().unwrap().reason, "error 131050");
    // Taking b off takes it off the marketing list too.
    assert_eq!(store.unsuppress(PNID, &[b]).await.unwrap(), 1);
    assert_eq!(store.suppressions(PNID, &[b]).await.unwrap(), [None]);

    let now = jiff::Timestamp::now();
    store.open_window(PNID, a, now).await.unwrap();
    store
        .open_window(PNID, b, now - jiff::SignedDuration::from_hours(25))
        .await
        .unwrap();
    assert_eq!(
        store.windows_open(PNID, &[a, b]).await.unwrap(),
        [true, false]
    );

    // 100 slots per second: a burst asks get a spaced schedule, never more than the horizon.
    let ms = Duration::from_millis;
    let p = store
        .plan_sends(
            PNID,
            every(ms(10)),
            &vec![None; 50],
            50,
            Duration::ZERO..ms(100),
            1,
        )
        .await
        .unwrap();
    assert_eq!(p.granted(), 11, "slots at now, +10 ms, … up to +100 ms");
    let first: Vec<jiff::Timestamp> = p.at.iter().flatten().copied().collect();
    for w in first.windows(2) {
        assert_eq!(
            w[1].duration_since(w[0]),
            jiff::SignedDuration::from_millis(10)
        );
    }
    assert_eq!(
        p.next,
        Some(first[10] + ms(10) - ms(100)),
        "ask again when the next slot comes within the horizon"
    );
    let p2 = store
        .plan_sends(
            PNID,
            every(ms(10)),
            &vec![None; 5],
            5,
            Duration::ZERO..ms(100),
            2,
        )
        .await
        .unwrap();
    let second: Vec<jiff::Timestamp> = p2.at.iter().flatten().copied().collect();
    assert!(
        second.first().is_none_or(|t| *t >= first[10] + ms(10)),
        "the next slots follow on"
    );
    // However long the two calls were apart, nothing is granted beyond the horizon.
    assert!(second.iter().all(|t| *t <= p2.now + ms(100)));
    // At most `max`.
    let p3 = store
        .plan_sends(
            "556",
            every(ms(10)),
            &vec![None; 50],
            3,
            Duration::ZERO..ms(1000),
            3,
        )
        .await
        .unwrap();
    assert_eq!(p3.granted(), 3);
    // Many callers at once (several workers) get slots that, all together, are never closer
    // than the interval: the shared rate holds in the store's own time.
    let seven: Vec<SendWant> = vec![None; 7];
    let calls = (0..8).map(|k| {
        store.plan_sends(
            "555",
            every(ms(10)),
            &seven,
            7,
            Duration::ZERO..ms(200),
            10 + k,
        )
    });
    let mut slots: Vec<jiff::Timestamp> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap().at.into_iter().flatten())
        .collect();
    slots.sort_unstable();
    assert!(
        slots.len() >= 21,
        "at least the first horizon's worth: {slots:?}"
    );
    for w in slots.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= jiff::SignedDuration::from_millis(10),
            "two slots {gap:?} apart"
        );
    }

    let c1 = CampaignId::new("one").unwrap();
    let c2 = CampaignId::new("two").unwrap();
    let six = Duration::from_secs(6);
    let r = store
        .reserve_pairs(PNID, &[(a, c1.clone()), (b, c1.clone())], six)
        .await
        .unwrap();
    assert_eq!(r, [PairReservation::Ok, PairReservation::Ok]);
    let r = store
        .reserve_pairs(PNID, &[(a, c2.clone())], six)
        .await
        .unwrap();
    let PairReservation::NotBefore(t) = r[0] else {
        panic!("a second send within 6 s is reserved: {r:?}");
    };
    let store_now = store
        .plan_sends(
            "clock",
            every(Duration::from_secs(1)),
            &[],
            0,
            Duration::ZERO..Duration::ZERO,
            4,
        )
        .await
        .unwrap()
        .now;
    assert!(t > store_now && t <= store_now + six, "{t} vs {store_now}");
    assert_eq!(
        store.last_campaign(PNID, a).await.unwrap(),
        Some(c1.clone())
    );
    assert_eq!(store.last_campaign(PNID, phone(3)).await.unwrap(), None);
    // Meta refused c1's send to a: only c1 gives its reservation back, and then the next
    // send to a need not wait; b's stays.
    store.release_pair(PNID, a, &c2).await.unwrap();
    let r = store
        .reserve_pairs(PNID, &[(a, c2.clone())], six)
        .await
        .unwrap();
    assert!(matches!(r[0], PairReservation::NotBefore(_)), "{r:?}");
    store.release_pair(PNID, a, &c1).await.unwrap();
    store.release_pair(PNID, phone(3), &c1).await.unwrap();
    let r = store
        .reserve_pairs(PNID, &[(a, c2.clone()), (b, c2.clone())], six)
        .await
        .unwrap();
    assert_eq!(r[0], PairReservation::Ok, "{r:?}");
    assert!(matches!(r[1], PairReservation::NotBefore(_)), "{r:?}");
    assert_eq!(store.last_campaign(PNID, a).await.unwrap(), Some(c2));
}

/// Users who hide their number: the number behind a business-scoped id is learned from
/// statuses; an opt-out made before it is known is kept and suppresses the number once it is.
pub async fn business_scoped_users_are_linked_and_their_opt_outs_kept<S: Store>(store: &S) {
    let pn = "bsuid";
    let (a, b) = (phone(11), phone(12));
    assert_eq!(store.user_phone(pn, "user.a").await.unwrap(), None);
    assert!(store.opt_out_user(pn, "user.b").await.unwrap());
    assert!(!store.opt_out_user(pn, "user.b").await.unwrap(), "once");
    assert_eq!(
        store.unlinked_opt_outs(pn, 10).await.unwrap(),
        (1, vec!["user.b".to_owned()])
    );
    assert_eq!(store.suppressed(pn, &[a, b]).await.unwrap(), [false, false]);
    let suppressed = store
        .link_users(pn, &[("user.a".into(), a), ("user.b".into(), b)])
        .await
        .unwrap();
    assert_eq!(suppressed, 1);
    assert_eq!(store.user_phone(pn, "user.a").await.unwrap(), Some(a));
    assert_eq!(store.user_phone(pn, "user.b").await.unwrap(), Some(b));
    assert_eq!(store.suppressed(pn, &[a, b]).await.unwrap(), [false, true]);
    assert_eq!(store.unlinked_opt_outs(pn, 10).await.unwrap(), (0, vec![]));
    assert_eq!(
        store.link_users(pn, &[("user.b".into(), b)]).await.unwrap(),
        0,
        "linking again suppresses nothing more"
    );
    assert_eq!(store.user_phone("other", "user.a").await.unwrap(), None);
    // Opting back in: by number, and by id while the number is unknown.
    assert_eq!(store.unsuppress(pn, &[a, b]).await.unwrap(), 1);
    assert_eq!(store.suppressed(pn, &[a, b]).await.unwrap(), [false, false]);
    assert_eq!(store.unsuppress(pn, &[b]).await.unwrap(), 0);
    assert!(store.opt_out_user(pn, "user.c").await.unwrap());
    assert!(store.opt_in_user(pn, "user.c").await.unwrap());
    assert!(!store.opt_in_user(pn, "user.c").await.unwrap());
    assert_eq!(store.unlinked_opt_outs(pn, 10).await.unwrap(), (0, vec![]));
}

/// Every recipient comes back once, in job order, with its values (kept after it ended), its
/// outcome, when Meta accepted it and whether it replied: what a follow-up campaign reads.
pub async fn outcomes_keep_each_recipient_and_its_values<S: Store>(store: &S) {
    let id = running(store, "outcomes", 25).await;
    let jobs = store.claim(&claim_req(4, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    let outcomes = [
        Outcome::Accepted {
            message_id: wamid(0),
        },
        Outcome::Failed {
            code: "131026".into(),
        },
        Outcome::Skipped {
            reason: SkipReason::FrequencyCapped,
        },
        Outcome::Accepted {
            message_id: wamid(3),
        },
    ];
    for (job, outcome) in jobs.iter().zip(outcomes) {
        settle_one(store, job, outcome).await;
    }
    // Meta fails the fourth after accepting it.
    let mut failed = status(
        Some(jobs[3].id.clone()),
        Some(wamid(3)),
        StatusEvent::Failed,
    );
    failed.error_code = Some(131_000);
    store.apply_status(&[failed]).await.unwrap();
    assert!(store.count_reply(&id, phone(0)).await.unwrap());
    // Small pages, to walk the cursor.
    let (mut all, mut cursor) = (Vec::new(), Some(0));
    while let Some(at) = cursor {
        let (rows, next) = store.outcomes(&id, at, 7).await.unwrap();
        assert!(next.is_none_or(|n| n > at), "the cursor moves on");
        all.extend(rows);
        cursor = next;
    }
    assert_eq!(all.len(), 25);
    for (i, o) in all.iter().enumerate() {
        assert_eq!(o.phone, phone(i as u64), "in job order");
        assert_eq!(
            o.vars,
            [format!("name{i}")],
            "values kept, after the end too"
        );
    }
    assert!(
        matches!(all[0].state, JobState::Accepted { .. }),
        "{:?}",
        all[0]
    );
    assert!(all[0].accepted_ms.is_some_and(|t| t > 0) && all[0].replied);
    assert_eq!(all[0].webhook_error, None);
    assert_eq!(
        all[3].webhook_error.as_deref(),
        Some("131000"),
        "{:?}",
        all[3]
    );
    assert!(matches!(all[3].state, JobState::Accepted { delivery, .. } if delivery.failed));
    assert_eq!(
        all[1].state,
        JobState::Failed {
            code: "131026".into()
        }
    );
    assert_eq!(
        all[2].state,
        JobState::Skipped {
            reason: SkipReason::FrequencyCapped
        }
    );
    assert!(
        all[1..3]
            .iter()
            .all(|o| !o.replied && o.accepted_ms.is_none())
    );
    assert!(all[4..].iter().all(|o| o.state == JobState::Pending));
    let missing = CampaignId::new("nosuch").unwrap();
    assert!(store.outcomes(&missing, 0, 10).await.is_err());
}

pub async fn replies_rejects_and_failures<S: Store>(store: &S) {
    let id = running(store, "failures", 3).await;
    let reject = |line: u64, phone: &str, code: &str, reason: SkipReason| UploadReject {
        row: FailureRow {
            line: Some(line),
            phone: phone.into(),
            reason: code.into(),
            detail: format!("{code} at {line}"),
        },
        reason,
    };
    let file = [
        reject(7, "+44 7912 34567O", "letters", SkipReason::Invalid),
        reject(9, "+447700000001", "duplicate", SkipReason::Duplicate),
        reject(11, "+447700000001", "duplicate", SkipReason::Duplicate),
    ];
    assert_eq!(store.add_rejects(&id, &file, 2).await.unwrap(), 3);
    // The same file again: nothing new, nothing counted twice, nothing stored twice.
    assert_eq!(store.add_rejects(&id, &file, 2).await.unwrap(), 0);
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.skipped_upload.invalid, s.skipped_upload.duplicate),
        (1, 2)
    );
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    settle_one(
        store,
        &jobs[0],
        Outcome::Failed {
            code: "131026".into(),
        },
    )
    .await;
    settle_one(
        store,
        &jobs[1],
        Outcome::Accepted {
            message_id: wamid(2),
        },
    )
    .await;
    settle_one(
        store,
        &jobs[2],
        Outcome::Skipped {
            reason: SkipReason::Suppressed,
        },
    )
    .await;
    let mut u = status(
        Some(jobs[1].id.clone()),
        Some(wamid(2)),
        StatusEvent::Failed,
    );
    u.error_code = Some(131_047);
    store.apply_status(&[u]).await.unwrap();
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.skipped.invalid, s.skipped.duplicate, s.skipped.suppressed),
        (1, 2, 1)
    );
    assert_eq!(
        (s.skipped_upload.suppressed, s.skipped_send.suppressed),
        (0, 1),
        "upload rejects and send-time skips apart"
    );
    assert!(store.count_reply(&id, jobs[1].phone).await.unwrap());
    assert!(
        !store.count_reply(&id, jobs[1].phone).await.unwrap(),
        "once per recipient"
    );
    assert!(!store.count_reply(&id, phone(999)).await.unwrap());
    assert_eq!(invariant(store, &id).await.replied, 1);

    let mut all = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let (rows, next) = store.failures(&id, c, 2).await.unwrap();
        all.extend(rows);
        cursor = next;
    }
    let summary: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.reason.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("letters", "letters at 7"),
            ("duplicate", "duplicate at 9"),
            ("failed", "131026"),
            ("failed", "131047"),
            ("suppressed", "")
        ],
        "the first two rejects kept (the cap), every one counted"
    );
    assert_eq!(all[0].line, Some(7));
}

pub async fn pause_matching_by_template_and_number<S: Store>(store: &S) {
    let a = running(store, "a", 1).await;
    let b = running(store, "b", 1).await;
    let reason = PauseReason::from_code(PauseKind::TemplateStatus, 0, "order_update PAUSED");
    let paused = store
        .pause_matching(None, Some("order_update:en_US"), reason.clone())
        .await
        .unwrap();
    assert_eq!(paused.len(), 2);
    assert!(
        store
            .pause_matching(None, Some("order_update:en_US"), reason)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .transition(&a, CampaignAction::Resume, None)
        .await
        .unwrap();
    let sender = PauseReason::from_code(PauseKind::SenderFatal, 190, "token expired");
    assert_eq!(
        store
            .pause_matching(Some("999"), None, sender.clone())
            .await
            .unwrap(),
        Vec::<CampaignId>::new()
    );
    assert_eq!(
        store
            .pause_matching(Some(PNID), None, sender)
            .await
            .unwrap(),
        std::slice::from_ref(&a)
    );
    let _ = b;
}

pub async fn webhook_stream_survives_a_dead_consumer<S: Store>(store: &S) {
    for i in 0..5u8 {
        store.append_webhook(&[b'{', b'0' + i, b'}']).await.unwrap();
    }
    let ms = Duration::from_millis;
    let got = store.read_webhooks("a", 3, ms(10)).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body, b"{0}");
    assert!(got[0].received <= got[2].received);
    assert!(got.iter().all(|e| e.deliveries == 1));
    // Consumer a acknowledges one and dies.
    store.ack_webhooks(&[got[0].id.clone()]).await.unwrap();
    let again = store.pending_webhooks("a", 10).await.unwrap();
    assert_eq!(again.len(), 2, "a's unacknowledged entries");
    assert!(
        again.iter().all(|e| e.deliveries == 2),
        "each reading counts: {again:?}"
    );
    assert!(
        store
            .claim_stale_webhooks("b", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "not idle long enough"
    );
    tokio::time::sleep(ms(30)).await;
    let taken = store.claim_stale_webhooks("b", ms(10), 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|e| e.body.clone()).collect::<Vec<_>>(),
        [b"{1}".to_vec(), b"{2}".to_vec()]
    );
    assert!(taken.iter().all(|e| e.deliveries == 3), "{taken:?}");
    let rest = store.read_webhooks("b", 10, ms(10)).await.unwrap();
    assert_eq!(rest.len(), 2);
    let ids: Vec<String> = taken.iter().chain(&rest).map(|e| e.id.clone()).collect();
    store.ack_webhooks(&ids).await.unwrap();
    assert!(store.pending_webhooks("b", 10).await.unwrap().is_empty());
    assert!(
        store
            .read_webhooks("b", 10, ms(10))
            .await
            .unwrap()
            .is_empty()
    );

    store
        .dead_letter("unknown_field", "", b"{\"field\":\"calls\"}")
        .await
        .unwrap();
    store
        .dead_letter("apply_failed", "stored data is corrupt", b"{}")
        .await
        .unwrap();
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(
        (dead[0].reason.as_str(), dead[0].detail.as_str()),
        ("apply_failed", "stored data is corrupt"),
        "newest first"
    );
    assert_eq!(
        (dead[1].reason.as_str(), dead[1].payload.as_str()),
        ("unknown_field", "{\"field\":\"calls\"}")
    );
    assert_eq!(
        store.dead_letter_counts().await.unwrap(),
        DeadLetterCounts {
            kept: 2,
            dropped: 0
        }
    );
    // Past the cap, the oldest go, and are counted.
    let extra = DEAD_LETTERS_KEPT as u64;
    for chunk in (0..extra).collect::<Vec<_>>().chunks(500) {
        futures::future::join_all(
            chunk
                .iter()
                .map(|_| store.dead_letter("malformed_json", "", b"x")),
        )
        .await;
    }
    assert_eq!(
        store.dead_letter_counts().await.unwrap(),
        DeadLetterCounts {
            kept: extra,
            dropped: 2
        }
    );
    store
        .record_quality("15550783881", "FLAGGED", Some("TIER_1K"))
        .await
        .unwrap();
    assert_eq!(
        store.quality().await.unwrap()["15550783881"].event,
        "FLAGGED"
    );
}

/// Random event sequences (shuffled, with duplicates) against the core lattice: the store
/// must end in the state the lattice computes and count each level once.
pub async fn lattice_matches_the_core_model<S: Store>(store: &S, sequences: Vec<Vec<StatusEvent>>) {
    for (i, events) in sequences.iter().enumerate() {
        let (stats, state) = apply_sequence(store, &format!("prop{i}"), events).await;
        let expected = events.iter().fold(DeliveryState::ACCEPTED, |s, e| {
            s.merge(DeliveryState::from_event(*e))
        });
        match state {
            JobState::Accepted { delivery, .. } => assert_eq!(delivery, expected, "{events:?}"),
            other => panic!("{other:?}"),
        }
        let level = |l| u64::from(expected.progress >= l);
        use herald_core::Progress::*;
        assert_eq!(
            (stats.sent, stats.delivered, stats.read, stats.failed),
            (
                level(Sent),
                level(Delivered),
                level(Read),
                u64::from(expected.failed)
            ),
            "{events:?}"
        );
    }
}

/// A job is started once, and only while its worker holds it: not once it was settled
/// unsent, nor once evidence of an earlier attempt settled it. Its view says whether it was
/// started.
pub async fn a_job_starts_once_and_only_while_held<S: Store>(store: &S) {
    let id = running(store, "held", 3).await;
    let jobs = store.claim(&claim_req(3, 1)).await.unwrap();
    let in_flight = |started| JobState::InFlight { started };
    let state = |i: usize| {
        let job = jobs[i].id.clone();
        async move { store.job(&job).await.unwrap().unwrap().state }
    };
    assert_eq!(state(0).await, in_flight(false));
    assert_eq!(store.start(&[(&jobs[0]).into()]).await.unwrap(), [true]);
    assert_eq!(state(0).await, in_flight(true));
    assert_eq!(
        store.start(&[(&jobs[0]).into()]).await.unwrap(),
        [false],
        "started once"
    );
    // Settled unsent (its pair spacing not yet due): back to pending, not the worker's.
    assert_eq!(
        settle_one(
            store,
            &jobs[1],
            Outcome::Deferred {
                delay: Duration::from_secs(60)
            }
        )
        .await,
        SettleResult::Applied
    );
    assert_eq!(store.start(&[(&jobs[1]).into()]).await.unwrap(), [false]);
    // Accepted by evidence (an earlier attempt's answer, under another token).
    let evidence = Settle {
        job: JobRef {
            id: jobs[2].id.clone(),
            token: token(99),
        },
        outcome: Outcome::Accepted {
            message_id: wamid(2),
        },
    };
    assert_eq!(
        store.settle(&[evidence]).await.unwrap(),
        [SettleResult::Applied]
    );
    assert_eq!(store.start(&[(&jobs[2]).into()]).await.unwrap(), [false]);
    let s = invariant(store, &id).await;
    assert_eq!((s.in_flight, s.pending, s.accepted), (1, 1, 1));
}

/// One call may name its jobs in any order, several to a record bucket, and the same job
/// twice: each is answered in its place, and the second naming sees what the first did.
pub async fn jobs_in_any_order_and_named_twice<S: Store>(store: &S) {
    let id = running(store, "order", 25).await;
    let jobs = store.claim(&claim_req(25, 1)).await.unwrap();
    assert_eq!(jobs.len(), 25);
    // Backwards, with the job in the middle named again right after itself.
    let mut refs: Vec<JobRef> = jobs.iter().rev().map(JobRef::from).collect();
    refs.insert(13, (&jobs[12]).into());
    let started = store.start(&refs).await.unwrap();
    let mut want = vec![true; 26];
    want[13] = false;
    assert_eq!(started, want, "a job is started once");
    // Settled in an order of their own, odd places first, then even; job 7 named again right
    // after itself (failed: stale, its acceptance stands), job 20 again at the end with the
    // same answer (known).
    let accepted = |i: usize| Settle {
        job: (&jobs[i]).into(),
        outcome: Outcome::Accepted {
            message_id: wamid(i as u64),
        },
    };
    let mut settles = Vec::new();
    let mut want = Vec::new();
    for i in (0..25)
        .filter(|i| i % 2 == 1)
        .chain((0..25).filter(|i| i % 2 == 0))
    {
        settles.push(accepted(i));
        want.push(SettleResult::Applied);
        if i == 7 {
            settles.push(Settle {
                job: (&jobs[7]).into(),
                outcome: Outcome::Failed {
                    code: "131026".into(),
                },
            });
            want.push(SettleResult::Stale);
        }
    }
    settles.push(accepted(20));
    want.push(SettleResult::Known);
    assert_eq!(store.settle(&settles).await.unwrap(), want);
    let s = invariant(store, &id).await;
    assert_eq!(
        (s.accepted, s.failed, s.in_flight, s.pending),
        (25, 0, 0, 0)
    );
    for (i, job) in jobs.iter().enumerate() {
        match store.job(&job.id).await.unwrap().unwrap().state {
            JobState::Accepted { message_id, .. } => {
                assert_eq!(message_id, Some(wamid(i as u64)), "job {i}");
            }
            other => panic!("job {i}: {other:?}"),
        }
    }
}

/// Generates `#[tokio::test]`s running the whole suite against a backend. `$make` is an
/// async expression producing a fresh, empty store; `$teardown` an async function that takes
/// the store afterwards and removes its data. With `paused:` first, each test runs on a
/// current-thread runtime with tokio's clock paused (for backends whose clock is tokio's).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr, $teardown:expr) => {
        $crate::conformance_tests!(@all (flavor = "multi_thread", worker_threads = 4) $make, $teardown);
    };
    (paused: $make:expr, $teardown:expr) => {
        $crate::conformance_tests!(@all (start_paused = true) $make, $teardown);
    };
    (@all $attr:tt $make:expr, $teardown:expr) => {
        $crate::conformance_tests!(@each $attr $make, $teardown;
            lifecycle, campaigns_are_listed_a_page_at_a_time, a_campaign_walk_holds_through_deletions, idempotent_enqueue,
            claim_start_settle, jobs_in_any_order_and_named_twice,
            a_job_starts_once_and_only_while_held,
            fairness,
            paused_and_cancelled_are_not_claimed, pause_between_claim_and_start_releases,
            lease_expiry_and_reclaim, in_doubt_resolved_by_callback_id,
            an_answer_after_its_own_webhook_completes_the_job,
            business_scoped_users_are_linked_and_their_opt_outs_kept,
            in_doubt_waits_for_evidence_then_resends_once_then_fails, a_webhook_backlog_holds_resends,
            campaign_caps_hold_beside_the_number_rate, the_window_holds_and_late_sends_move,
            slack_is_counted_in_the_window, late_departures_push_the_window_on,
            early_departures_pull_the_window_in,
            one_leader_at_a_time, the_messaging_limit_counts_each_user_once,
            declined_messages_are_not_failures,
            lattice_is_order_independent, charges_count_once_whatever_the_order,
            specs_change_until_the_campaign_ends, cancellation,
            an_ended_campaign_is_deleted_whole, cancel_drains_every_state, send_window_waits_are_counted_until_they_end,
            completes_when_nothing_is_left,
            an_upload_in_progress_holds_completion,
            concurrent_claimers_claim_each_job_once, suppression_windows_rate_and_pairs,
            replies_rejects_and_failures, outcomes_keep_each_recipient_and_its_values,
            pause_matching_by_template_and_number,
            webhook_stream_survives_a_dead_consumer);
    };
    (@each $attr:tt $make:expr, $teardown:expr; $($name:ident),*) => {
        $(
            #[tokio::test $attr]
            async fn $name() {
                let store = $make.await;
                $crate::conformance::$name(&store).await;
                ($teardown)(store).await;
            }
        )*
    };
}
