//! Follow-up campaigns, in-process on the memory store: a first campaign's recipients are
//! given known outcomes (accepted, delivered, read, replied, failed for good, failed for a
//! passing reason, frequency-capped, in doubt, opted out since), and each audience picks
//! exactly its recipients, with the new message filled from their first values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald::server::api::{ApiState, Routes, router};
use herald_core::{CampaignId, PhoneE164, SkipReason, StatusEvent, WaMessageId};
use herald_store::conformance::claim_req;
use herald_store::{JobRef, JobState, MemoryStore, Outcome, Settle, StatusUpdate, Store as _, Why};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PNID: &str = "106540352242922";

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    ct: &str,
    body: String,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn phone(i: u32) -> PhoneE164 {
    format!("+1415555{i:04}").parse().unwrap()
}

/// What each of the first campaign's ten recipients ends as.
const FATES: [&str; 13] = [
    "accepted",         // 0: accepted, no status since (not delivered)
    "delivered",        // 1: delivered, not read
    "read",             // 2: read
    "replied",          // 3: read and replied
    "failed_131026",    // 4: undeliverable: never again
    "failed_131000",    // 5: Meta failed: may be tried again
    "frequency_capped", // 6
    "in_doubt",         // 7: may have arrived: never again
    "opted_out",        // 8: delivered, not read, then opted out
    "status_131000",    // 9: accepted, then Meta's status failed it: may be tried again
    "status_131049",    // 10: accepted, then declined by status for the marketing limit
    "status_131026",    // 11: accepted, then undeliverable by status: never again
    "pending",          // 12: never sent
];

async fn first_campaign(app: &Router, store: &MemoryStore) -> String {
    let spec = json!({
        "name": "first",
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "text": "{{first_name}}"}, {"type": "text", "text": "{{city}}"}]}]}},
    });
    let (status, v) = call(
        app,
        "POST",
        "/v1/campaigns",
        "application/json",
        spec.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let mut csv = String::from("phone,first_name,city\n");
    for i in 0..13 {
        csv.push_str(&format!("{},Name{i},City{i}\n", phone(i)));
    }
    let (status, v) = call(
        app,
        "POST",
        &format!("/v1/campaigns/{id}/recipients"),
        "text/csv",
        csv,
    )
    .await;
    assert_eq!(
        (status, v["accepted"].as_u64()),
        (StatusCode::OK, Some(13)),
        "{v}"
    );
    let (status, _) = call(
        app,
        "POST",
        &format!("/v1/campaigns/{id}/start"),
        "application/json",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let jobs = store.claim(&claim_req(12, 1)).await.unwrap();
    assert_eq!(jobs.len(), 12);
    store
        .start(&jobs.iter().map(JobRef::from).collect::<Vec<_>>())
        .await
        .unwrap();
    let wamid = |i: usize| WaMessageId::new(&format!("wamid.f{i}")).unwrap();
    let mut settles = Vec::new();
    let mut statuses = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let outcome = match FATES[i] {
            "failed_131026" => Outcome::Failed {
                code: "131026".into(),
            },
            "failed_131000" => Outcome::Failed {
                code: "131000".into(),
            },
            "frequency_capped" => Outcome::Skipped {
                reason: SkipReason::FrequencyCapped,
            },
            "in_doubt" => Outcome::InDoubt,
            _ => Outcome::Accepted {
                message_id: wamid(i),
            },
        };
        settles.push(Settle {
            job: job.into(),
            outcome,
        });
        let event = match FATES[i] {
            "delivered" | "opted_out" => Some(StatusEvent::Delivered),
            "read" | "replied" => Some(StatusEvent::Read),
            f if f.starts_with("status_") => Some(StatusEvent::Failed),
            _ => None,
        };
        let error_code = FATES[i].strip_prefix("status_").map(|c| c.parse().unwrap());
        if let Some(event) = event {
            statuses.push(StatusUpdate {
                job: Some(job.id.clone()),
                message_id: Some(wamid(i)),
                event,
                timestamp: None,
                error_code,
                pricing: None,
                replayed: false,
            });
        }
    }
    store.settle(&settles).await.unwrap();
    store.apply_status(&statuses).await.unwrap();
    let cid = CampaignId::new(&id).unwrap();
    assert!(store.count_reply(&cid, phone(3)).await.unwrap());
    let why = Why {
        reason: "opt_out_keyword".into(),
        at: jiff::Timestamp::now(),
    };
    store.suppress(PNID, &[phone(8)], &why).await.unwrap();
    id
}

fn follow_up_spec(placeholders: &[&str]) -> Value {
    let params: Vec<Value> = placeholders
        .iter()
        .map(|p| json!({"type": "text", "text": format!("{{{{{p}}}}}")}))
        .collect();
    json!({"name": "second", "message": {"type": "template", "template": {"name": "thanks", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": params}]}}})
}

/// The phones (as indexes) and values of a campaign's recipients.
/// The API on `store`, sending from [`PNID`] by default, on the wall clock.
fn app_on<S: herald_store::Store>(store: Arc<S>) -> Router {
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = PNID.into();
    router(
        ApiState::new(store, &cfg),
        Routes {
            v1: true,
            webhook: None,
        },
    )
}

/// How many campaigns the API lists.
async fn campaigns(app: &Router) -> usize {
    let (status, v) = call(app, "GET", "/v1/campaigns?limit=1000", "", String::new()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["campaigns"].as_array().unwrap().len()
}

async fn recipients_of(store: &MemoryStore, id: &str) -> Vec<(u32, Vec<String>)> {
    let (rows, next) = store
        .outcomes(&CampaignId::new(id).unwrap(), 0, 100)
        .await
        .unwrap();
    assert!(next.is_none());
    rows.iter()
        .map(|o| {
            let i = (0..13).find(|i| phone(*i) == o.phone).unwrap();
            assert_eq!(o.state, JobState::Pending);
            (i, o.vars.iter().map(str::to_owned).collect())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn each_audience_picks_exactly_its_recipients() {
    let store = Arc::new(MemoryStore::new());
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = PNID.into();
    let clock = store.clone();
    let state = ApiState {
        clock: Arc::new(move || clock.now()),
        ..ApiState::new(store.clone(), &cfg)
    };
    let app = router(
        state,
        Routes {
            v1: true,
            webhook: None,
        },
    );
    let first = first_campaign(&app, &store).await;
    // Time passes: accepted messages are a day old.
    tokio::time::advance(Duration::from_secs(25 * 3600)).await;

    let cases: [(&str, Value, &[u32]); 6] = [
        ("failed_retryable", json!({}), &[5, 9]),
        ("frequency_capped", json!({}), &[6, 10]),
        ("not_read", json!({}), &[1]),
        ("replied", json!({}), &[3]),
        (
            "not_delivered",
            json!({"not_delivered_after_hours": 24}),
            &[0],
        ),
        (
            "not_delivered",
            json!({"not_delivered_after_hours": 26}),
            &[],
        ),
    ];
    for (audience, extra, want) in cases {
        let mut body =
            json!({"audience": audience, "campaign": follow_up_spec(&["city", "first_name"])});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let before = campaigns(&app).await;
        let (status, v) = call(
            &app,
            "POST",
            &format!("/v1/campaigns/{first}/follow-up"),
            "application/json",
            body.to_string(),
        )
        .await;
        if want.is_empty() {
            // Nobody in it: no campaign is made, and the refusal says why.
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{audience}: {v}");
            assert_eq!(v["error"]["code"], "no_recipients", "{v}");
            let says = v["error"]["message"].as_str().unwrap();
            assert!(
                says.contains("none of the 13 recipients")
                    && says.contains(audience)
                    && says.contains("no campaign was created"),
                "{says}"
            );
            assert_eq!(campaigns(&app).await, before, "no empty draft left behind");
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "{audience}: {v}");
        assert_eq!(v["picked"]["looked_at"], 13, "{v}");
        assert_eq!(v["picked"]["added"], want.len(), "{audience}: {v}");
        assert_eq!(v["campaign"]["status"], "draft");
        assert_eq!(
            v["campaign"]["phone_number_id"], PNID,
            "the first campaign's number"
        );
        let got = recipients_of(&store, v["campaign"]["id"].as_str().unwrap()).await;
        let want: Vec<(u32, Vec<String>)> = want
            .iter()
            .map(|i| (*i, vec![format!("City{i}"), format!("Name{i}")]))
            .collect();
        assert_eq!(
            got, want,
            "{audience}: by column name, in the new message's order"
        );
    }
    // The opted-out recipient (8) was delivered and not read: in the audience, not added.
    let body = json!({"audience": "not_read", "campaign": follow_up_spec(&["first_name"])});
    let (_, v) = call(
        &app,
        "POST",
        &format!("/v1/campaigns/{first}/follow-up"),
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(v["picked"]["suppressed"], 1, "{v}");
}

#[tokio::test]
async fn a_follow_up_names_what_is_wrong() {
    let store = Arc::new(MemoryStore::new());
    let app = app_on(store.clone());
    let first = first_campaign(&app, &store).await;
    let path = format!("/v1/campaigns/{first}/follow-up");
    let cases = [
        (
            json!({"audience": "everyone", "campaign": follow_up_spec(&[])}),
            "audience: unknown variant",
        ),
        (
            json!({"audience": "replied", "campaign": follow_up_spec(&["surname"])}),
            "{{surname}} is not a column",
        ),
        (
            json!({"audience": "replied", "campaign": {"name": "x", "message": {"type": "text"}}}),
            "campaign.message",
        ),
        (
            json!({"audience": "replied", "campaign": {"name": "x", "message": {}, "mps": 0}}),
            "campaign.",
        ),
        (json!({"audience": "replied"}), "missing field `campaign`"),
    ];
    for (body, says) in cases {
        let (status, v) = call(&app, "POST", &path, "application/json", body.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{says:?} in {message:?}");
    }
    let (status, _) = call(
        &app,
        "POST",
        "/v1/campaigns/nosuch/follow-up",
        "application/json",
        json!({"audience": "replied", "campaign": follow_up_spec(&[])}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was created by the refusals.
    let (_, v) = call(
        &app,
        "GET",
        "/v1/campaigns",
        "application/json",
        String::new(),
    )
    .await;
    assert_eq!(v["campaigns"].as_array().unwrap().len(), 1);
}

/// A follow-up whose filling fails (here, its scheduling) leaves no part-filled campaign
/// behind: the one made for it is cancelled and deleted, so trying again makes one whole
/// campaign. When the store cannot take it away either, the error names it.
#[tokio::test]
async fn a_follow_up_that_fails_midway_leaves_nothing_behind() {
    use herald_store::faulty::{Failure, Faulty};
    let inner = Arc::new(MemoryStore::new());
    let store = Arc::new(Faulty::new(inner.clone()));
    let app = app_on(store.clone());
    let first = first_campaign(&app, &inner).await;
    let before = campaigns(&app).await;
    let mut spec = follow_up_spec(&["first_name"]);
    spec["schedule_at"] =
        json!((jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string());
    let body = json!({"audience": "replied", "campaign": spec}).to_string();
    let path = format!("/v1/campaigns/{first}/follow-up");
    let follow_up = || call(&app, "POST", &path, "application/json", body.clone());
    // Scheduling fails once: the campaign, filled, is taken away again.
    store.fail("transition", Failure::Unavailable, 1, Some(1));
    let (status, v) = follow_up().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(campaigns(&app).await, before, "nothing left behind: {v}");
    // Every transition fails: it cannot be cancelled either, and the error says so.
    store.fail("transition", Failure::Unavailable, 1, None);
    let (status, v) = follow_up().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("was made for the follow-up") && message.contains("cancel and delete it"),
        "{message}"
    );
    store.clear();
    assert_eq!(campaigns(&app).await, before + 1);
    // Once the store answers, trying again makes a whole one.
    let (status, v) = follow_up().await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["picked"]["added"].as_u64(),
            v["campaign"]["status"].as_str()
        ),
        (Some(1), Some("scheduled")),
        "{v}"
    );
}
