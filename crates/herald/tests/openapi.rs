//! `/openapi.json` against what the server really does: it is valid OpenAPI 3.1 (checked by
//! `openapi-spec-validator`, which `scripts/test.sh` installs and names in
//! OPENAPI_SPEC_VALIDATOR), it describes exactly the paths and methods the router mounts, and
//! the answers of a real campaign's run (create, upload, show, list, an action, errors)
//! validate against the schemas it gives for them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use herald::server::api::{ApiState, Routes, mounted_paths, router};
use herald_reconciler::ReceiverConfig;
use herald_store::{MemoryStore, Store as _};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PNID: &str = "106540352242922";

fn routes(v1: bool, webhook: bool) -> Routes {
    Routes {
        v1,
        webhook: webhook.then(|| ReceiverConfig {
            verify_token: "vt".into(),
            app_secret: "secret".into(),
        }),
    }
}

/// A keyless API (loopback programs only) on the memory store.
fn app(routes: Routes) -> Router {
    app_on(Arc::new(MemoryStore::new()), routes)
}

fn app_on(store: Arc<MemoryStore>, routes: Routes) -> Router {
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = PNID.into();
    router(ApiState::new(store, &cfg), routes)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = r.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8080")
}

async fn document(app: &Router) -> Value {
    let (status, headers, body) = call(
        app,
        request(Method::GET, "/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(&body).expect("the description is JSON")
}

/// `{path: {methods}}` as the description has it.
fn described(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let m = methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_ascii_uppercase())
                .collect();
            (path.clone(), m)
        })
        .collect()
}

/// `{path: {methods}}` as the router serves it: each mounted path, asked with a method no
/// route has, answers 405 with the methods it does have.
async fn served(app: &Router, routes: &Routes) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for path in mounted_paths::<MemoryStore>(routes) {
        let concrete = path
            .replace("{id}", "c1")
            .replace("{action}", "start")
            .replace("{phone_number_id}", PNID)
            .replace("{entry}", "+14155550100");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        let (status, headers, _) =
            call(app, request(odd, &concrete).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let allow: BTreeSet<String> = headers[header::ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            // axum answers HEAD wherever it answers GET.
            .filter(|m| m != "HEAD")
            .collect();
        out.insert(path, allow);
    }
    out
}

#[tokio::test]
async fn the_description_covers_exactly_the_mounted_routes() {
    for (v1, webhook) in [(true, true), (true, false), (false, true), (false, false)] {
        let routes = routes(v1, webhook);
        let app = app(routes.clone());
        let doc = document(&app).await;
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            doc["openapi"]
        );
        let (described, served) = (described(&doc), served(&app, &routes).await);
        assert_eq!(described, served, "v1 {v1}, webhook {webhook}");
        assert_eq!(described.contains_key("/webhook"), webhook);
        assert_eq!(described.contains_key("/v1/campaigns"), v1);
        // Every campaign operation is behind the API key; the operational routes are not.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let secured = op.get("security").is_some();
                assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
            }
        }
    }
}

/// The validator from PyPI: what `scripts/test.sh` installed, or one on the PATH.
fn validator() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("OPENAPI_SPEC_VALIDATOR") {
        return p.into();
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("openapi-spec-validator"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs openapi-spec-validator: run scripts/test.sh (it installs it from \
             PyPI), or set OPENAPI_SPEC_VALIDATOR"
        )
    })
}

#[tokio::test]
async fn the_description_is_valid_openapi_3_1() {
    let doc = document(&app(routes(true, true))).await;
    let dir = std::env::temp_dir().join(format!("herald-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(validator())
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).ok();
    let head: String = text.chars().take(3000).collect();
    assert!(out.status.success(), "openapi-spec-validator: {head}");
    assert!(text.contains("OK"), "{text}");

    // It catches what it should: a response pointing at a schema that does not exist.
    let mut broken = doc.clone();
    broken["paths"]["/v1/campaigns"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/NoSuchSchema"});
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = std::process::Command::new(validator())
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!out.status.success(), "a dangling $ref must not validate");
}

/// Checks `body` against the schema the description gives for `method path` → `status`.
fn conforms(doc: &Value, method: &str, path: &str, status: StatusCode, body: &Value) {
    let response = &doc["paths"][path][method]["responses"][status.as_str()];
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema described"
    );
    // The component schemas ride along, so `#/components/schemas/…` resolves.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&root).expect("a usable schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\n{body:#}"
    );
}

async fn json_call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let mut b = request(method, path);
    let body = match body {
        Some((ct, text)) => {
            b = b.header(header::CONTENT_TYPE, ct);
            Body::from(text)
        }
        None => Body::empty(),
    };
    let (status, _, bytes) = call(app, b.body(body).unwrap()).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn real_answers_match_their_described_schemas() {
    let store = Arc::new(MemoryStore::new());
    let app = app_on(store.clone(), routes(true, false));
    let doc = document(&app).await;
    let spec = json!({
        "name": "schema-check",
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}},
        "default_region": "US",
        "mps": 40,
    });
    let (status, created) = json_call(
        &app,
        Method::POST,
        "/v1/campaigns",
        Some(("application/json", spec.to_string())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    conforms(&doc, "post", "/v1/campaigns", status, &created);
    let id = created["id"].as_str().unwrap().to_owned();

    let csv =
        "phone,first_name\n+14155550100,Ada\n+14155550100,Ada\nnot-a-number,Bob\n4155550101,\n";
    let (status, summary) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/recipients"),
        Some(("text/csv", csv.into())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(
        !summary["rejects"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    conforms(
        &doc,
        "post",
        "/v1/campaigns/{id}/recipients",
        status,
        &summary,
    );

    let (status, checked) = json_call(
        &app,
        Method::POST,
        "/v1/campaigns/validate",
        Some(("application/json", spec.to_string())),
    )
    .await;
    assert_eq!(checked["columns"], json!(["first_name"]), "{checked}");
    conforms(&doc, "post", "/v1/campaigns/validate", status, &checked);
    let (status, preview) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/preview"),
        Some(("text/csv", csv.into())),
    )
    .await;
    assert_eq!(
        preview["recipients"][0]["values"]["first_name"], "Ada",
        "{preview}"
    );
    conforms(&doc, "post", "/v1/campaigns/{id}/preview", status, &preview);
    // The recipient wrote back: the follow-up's audience.
    let replied = store
        .count_reply(
            &herald_core::CampaignId::new(&id).unwrap(),
            "+14155550100".parse().unwrap(),
        )
        .await
        .unwrap();
    assert!(replied);
    let follow = json!({"audience": "replied", "campaign": spec});
    let (status, followed) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/follow-up"),
        Some(("application/json", follow.to_string())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{followed}");
    conforms(
        &doc,
        "post",
        "/v1/campaigns/{id}/follow-up",
        status,
        &followed,
    );
    let (status, shown) = json_call(&app, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    conforms(&doc, "get", "/v1/campaigns/{id}", status, &shown);
    let (status, started) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/start"),
        None,
    )
    .await;
    conforms(
        &doc,
        "post",
        "/v1/campaigns/{id}/{action}",
        status,
        &started,
    );
    let (status, paused) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    conforms(&doc, "post", "/v1/campaigns/{id}/{action}", status, &paused);
    let (status, list) = json_call(&app, Method::GET, "/v1/campaigns", None).await;
    conforms(&doc, "get", "/v1/campaigns", status, &list);

    // Errors too, and a body that breaks the schema is caught (the check can fail).
    let (status, err) = json_call(
        &app,
        Method::POST,
        &format!("/v1/campaigns/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    conforms(&doc, "post", "/v1/campaigns/{id}/{action}", status, &err);
    let (status, err) = json_call(
        &app,
        Method::POST,
        "/v1/campaigns",
        Some(("application/json", "{\"name\": 1}".into())),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    conforms(&doc, "post", "/v1/campaigns", status, &err);
    let mut wrong = shown.clone();
    wrong["stats"]["accepted"] = json!("many");
    let caught = std::panic::catch_unwind(|| {
        conforms(&doc, "get", "/v1/campaigns/{id}", StatusCode::OK, &wrong)
    });
    assert!(
        caught.is_err(),
        "a string where the schema says integer must not pass"
    );
}
