//! Every route of the HTTP API, in-process (`oneshot`) on the memory store: auth, bad bodies
//! (each a 4xx naming its problem), uploads, the lifecycle, the failures report and the
//! operational routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald::server::api::{ApiState, Routes, router};
use herald_reconciler::ReceiverConfig;
use herald_store::{MemoryStore, Store as _};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key";
const PNID: &str = "106540352242922";

struct Api {
    app: Router,
    store: Arc<MemoryStore>,
}

impl Api {
    async fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let state = ApiState {
            api_key: KEY.into(),
            metrics: Some(herald::telemetry::metrics()),
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 1024 * 1024,
            ..ApiState::new(store.clone(), &config())
        };
        let routes = Routes {
            v1: true,
            webhook: Some(ReceiverConfig {
                verify_token: "vt".into(),
                app_secret: "secret".into(),
            }),
        };
        Self {
            app: router(state, routes),
            store,
        }
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, String) {
        let r = self.app.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let body = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let (status, text) = self.call(b.body(body).expect("request")).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn upload(&self, id: &str, csv: &str) -> (StatusCode, Value) {
        let csv = csv.as_bytes().to_vec();
        let (status, text) = self
            .post_csv(id, "recipients", csv, ("text/csv", None))
            .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` to one of a campaign's CSV routes (`recipients`, `preview`) with this
    /// Content-Type and Content-Encoding.
    async fn post_csv(
        &self,
        id: &str,
        route: &str,
        body: Vec<u8>,
        (content_type, encoding): (&str, Option<&str>),
    ) -> (StatusCode, String) {
        let mut req = Request::post(format!("/v1/campaigns/{id}/{route}"))
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .header(header::CONTENT_TYPE, content_type);
        if let Some(e) = encoding {
            req = req.header(header::CONTENT_ENCODING, e);
        }
        self.call(req.body(Body::from(body)).expect("request"))
            .await
    }

    async fn create(&self, spec: Value) -> String {
        let (status, v) = self.json("POST", "/v1/campaigns", Some(spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    async fn cleanup(self) {
        drop(self.store);
    }
}

/// The configuration the tests' API runs with: the defaults and a phone number.
fn config() -> herald::config::Config {
    let mut cfg = herald::config::Config::default();
    cfg.whatsapp.phone_number_id = PNID.into();
    cfg
}

fn template_spec(name: &str) -> Value {
    json!({
        "name": name,
        "message": {"type": "template", "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}}
    })
}

fn message_of(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_api_key_is_required_and_compared_exactly() {
    let api = Api::new().await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("test-api-key"),
        Some("Bearer test-api-key "),
    ] {
        let mut b = Request::get("/v1/campaigns");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let (status, body) = api.call(b.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    let (status, v) = api.json("GET", "/v1/campaigns", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["campaigns"], json!([]));
    // Meta's handshake is not behind the API key.
    let (status, body) = api
        .call(
            Request::get(
                "/webhook?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444",
            )
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1158201444"));
    api.cleanup().await;
}

#[tokio::test]
async fn bad_campaign_bodies_name_their_problem() {
    let api = Api::new().await;
    let long = "x".repeat(4097);
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": long}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.text.body",
        ),
        (
            json!({"name": "t", "message": {"type": "image", "image": {"link": "http://example.com/a.png"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.image.link",
        ),
        (
            json!({"name": "t", "message": {"type": "template", "template": {"name": "order_update",
                "language": {"code": "en_US"}, "components": [{"type": "body",
                "parameters": [{"type": "text", "text": "Dear\ncustomer"}]}]}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.template.components[0].parameters[0].text: holds a line break",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}},
                "schedule_at": "2020-12-01T09:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schedule_at: 2020-12-01T09:00:00Z is in the past",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}},
                "default_region": "XX"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "default_region: \"XX\" is not a region code",
        ),
        (
            json!({"name": "spring\nsale", "message": {"type": "text", "text": {"body": "hi"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name: must not hold control characters",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}}, "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            json!({"name": "", "message": {"type": "text", "text": {"body": "hi"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}}, "mps": 5000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "mps",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "to": "1", "text": {"body": "hi"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.to",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}},
                "send_window": {"start": "9am", "end": "20:00"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "send_window.start: \"9am\" is not a time of day",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}},
                "send_window": {"start": "09:00", "end": "20:00", "time_zone": "Europe/Atlantis"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "send_window.time_zone",
        ),
        (
            json!({"name": "t", "message": {"type": "text", "text": {"body": "hi"}},
                "send_window": {"start": "09:00", "end": "20:00", "zones": {"USA": "America/Chicago"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "send_window.zones.USA",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, v) = api.json("POST", "/v1/campaigns", Some(body.clone())).await;
        assert_eq!(got, status, "{body} → {v}");
        assert!(message_of(&v).contains(needle), "{needle:?} not in {v}");
    }
    let req = Request::post("/v1/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    let (status, body) = api.call(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_json"), "{body}");
    let req = Request::post("/v1/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; 100 * 1024]))
        .unwrap();
    let (status, body) = api.call(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    assert!(
        message_of(&v).contains("server.max_body_bytes (65536 bytes)"),
        "{v}"
    );
    // An array is not a campaign: said so, not as a complaint about its first element.
    let (status, v) = api.json("POST", "/v1/campaigns", Some(json!([1, 2]))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("a JSON object"), "{v}");
    assert!(message_of(&v).contains("not an array"), "{v}");
    api.cleanup().await;
}

/// What axum itself refuses (a query string or path that does not parse, a method a path does
/// not take) is answered in the API's error format too, naming the problem.
#[tokio::test]
async fn refusals_before_a_handler_are_json_errors() {
    let api = Api::new().await;
    let (status, v) = api.json("GET", "/v1/campaigns?limit=abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid", "{v}");
    assert!(message_of(&v).contains("limit"), "{v}");
    let (status, v) = api.json("GET", "/v1/campaigns/%FF", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(message_of(&v).contains("UTF-8"), "{v}");
    let req = Request::delete("/v1/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let r = api.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = r.headers().get(header::ALLOW).cloned();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    assert!(message_of(&v).contains("DELETE"), "{v}");
    let allow = allow.expect("the Allow header is kept");
    let allow = allow.to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    // A handler's own answers are left as they are.
    let (status, v) = api.json("GET", "/v1/campaigns?status=bogus", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("bogus"), "{v}");
    api.cleanup().await;
}

#[tokio::test]
async fn uploads_check_columns_then_rows() {
    let api = Api::new().await;
    let id = api.create(template_spec("uploads")).await;

    let (status, v) = api.upload(&id, "name,first_name\nx,y\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("no phone column"), "{v}");
    assert!(
        message_of(&v).contains("\"name\""),
        "columns found are named: {v}"
    );

    let (status, v) = api.upload(&id, "phone,city\n+447912345678,Leeds\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("\"first_name\""), "{v}");

    let csv = "phone,first_name\n+447912345678,Ada\n+44 7912 345678,Again\n=1+1,Eve\n+447912345679,\n+447912345680,Bob\n";
    let (status, v) = api.upload(&id, csv).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["rows"].as_u64(),
            v["accepted"].as_u64(),
            v["duplicates"].as_u64(),
            v["invalid"].as_u64()
        ),
        (Some(5), Some(2), Some(1), Some(2)),
        "{v}"
    );
    let reasons: Vec<&str> = v["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"duplicate") && reasons.contains(&"empty_value"),
        "{v}"
    );

    // The same file again adds nothing.
    let (_, v) = api.upload(&id, csv).await;
    assert_eq!(v["accepted"].as_u64(), Some(0), "{v}");

    let (status, v) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["stats"]["recipients"].as_u64(), Some(2), "{v}");
    assert_eq!(v["stats"]["pending"].as_u64(), Some(2), "{v}");

    // Failures: CSV, formula cells defused.
    let req = Request::get(format!("/v1/campaigns/{id}/failures"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let r = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("line,phone,reason,detail\n"), "{text}");
    assert!(text.contains("'=1+1"), "{text}");
    assert!(!text.contains("\n4,=1+1"), "{text}");

    let (status, v) = api.upload("0000000000000000", csv).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    api.cleanup().await;
}

/// A big file may come compressed: gzip is inflated as it is read, and what it inflates to
/// is bounded like the bytes that arrive; other encodings and damaged data are named.
#[tokio::test]
async fn a_gzip_upload_is_read_as_its_csv_and_bounded_inflated() {
    use std::io::Write as _;
    let gzip = |text: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    let api = Api::new().await;
    let id = api.create(template_spec("gzip")).await;
    // Two gzip members back to back (as `cat a.gz b.gz` makes) are one file.
    let mut body = gzip(b"phone,first_name\n+447912345678,Ann\n");
    body.extend(gzip(b"+447912345679,Bob\n+447912345680,Cy\n"));
    let (status, text) = api
        .post_csv(&id, "preview", body.clone(), ("text/csv", Some("gzip")))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"rows\":3"), "{text}");
    let (status, text) = api
        .post_csv(&id, "recipients", body, ("text/csv", Some("gzip")))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"accepted\":3"), "{text}");

    let (status, text) = api
        .post_csv(
            &id,
            "recipients",
            b"phone\n".to_vec(),
            ("text/csv", Some("br")),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(
        text.contains("\\\"br\\\" is not taken") && text.contains("gzip"),
        "{text}"
    );

    // Damage shows at the end, where the checksum is: the rows before it are kept.
    let mut damaged = gzip(b"phone,first_name\n+447912345681,Dee\n");
    let n = damaged.len();
    damaged[n - 8] ^= 0xff;
    let (status, text) = api
        .post_csv(&id, "recipients", damaged, ("text/csv", Some("gzip")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("gzip data is damaged"), "{text}");
    assert!(text.contains("1 rows were read"), "{text}");
    let cut = gzip(b"phone,first_name\n+447912345682,Eve\n")[..20].to_vec();
    let (status, text) = api
        .post_csv(&id, "recipients", cut, ("text/csv", Some("gzip")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("cut short"), "{text}");

    // Two MiB of rows squeeze into a few KiB, past the 1 MiB this server takes.
    let mut big = b"phone,first_name\n".to_vec();
    while big.len() < 2 << 20 {
        big.extend_from_slice(b"+447912345678,Ann\n");
    }
    let small = gzip(&big);
    assert!(small.len() < 64 << 10, "{}", small.len());
    let (status, text) = api
        .post_csv(&id, "recipients", small, ("text/csv", Some("gzip")))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        text.contains("inflates to more than server.max_upload_bytes"),
        "{text}"
    );
    api.cleanup().await;
}

/// A spreadsheet's own character set, named in the Content-Type (`charset`), is read as such;
/// UTF-16 is told by its byte order mark; UTF-8 stays checked field by field.
#[tokio::test]
async fn a_csv_in_a_spreadsheets_charset_is_read_as_such() {
    let api = Api::new().await;
    let id = api.create(template_spec("charsets")).await;
    // "José" and "Zoë" as Excel's "CSV (Comma delimited)" saves them in Western Europe.
    let cp1252 = b"phone,first_name\n+447912345678,Jos\xe9\n+447912345679,Zo\xeb\n".to_vec();
    let (status, text) = api
        .post_csv(
            &id,
            "preview",
            cp1252.clone(),
            ("text/csv; charset=windows-1252", None),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("José") && text.contains("Zoë"), "{text}");
    let (status, text) = api
        .post_csv(
            &id,
            "recipients",
            cp1252.clone(),
            ("text/csv;charset=\"ISO-8859-1\"", None),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"accepted\":2"), "{text}");
    // Without the charset, those bytes are not UTF-8: each such row is a reject of its own.
    let (status, text) = api
        .post_csv(&id, "preview", cp1252, ("text/csv", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("not_utf8"), "{text}");

    // UTF-16 with its byte order mark (Excel's "Unicode Text": tab separated).
    let mut utf16 = vec![0xFF, 0xFE];
    for u in "phone\tfirst_name\r\n+447912345680\tÅsa\r\n".encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let (status, text) = api
        .post_csv(&id, "recipients", utf16, ("text/csv", None))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"accepted\":1"), "{text}");
    // UTF-32, which its byte order mark makes look like UTF-16: named, not garbled.
    let mut utf32 = vec![0xFF, 0xFE, 0, 0];
    for c in "phone,first_name\n+447912345681,Bo\n".chars() {
        utf32.extend_from_slice(&u32::from(c).to_le_bytes());
    }
    let (status, text) = api
        .post_csv(&id, "recipients", utf32, ("text/csv", None))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("UTF-32"), "{text}");

    let (status, text) = api
        .post_csv(
            &id,
            "recipients",
            b"phone\n".to_vec(),
            ("text/csv; charset=klingon", None),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(text.contains("klingon"), "{text}");
    api.cleanup().await;
}

#[tokio::test]
async fn row_values_must_make_a_valid_message() {
    let api = Api::new().await;
    let id = api
        .create(
            json!({"name": "media", "message": {"type": "image", "image": {"link": "{{url}}"}}}),
        )
        .await;
    let csv = "phone,url\n+447912345678,https://example.com/a.png\n+447912345679,http://example.com/b.png\n";
    let (status, v) = api.upload(&id, csv).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"].as_u64(), Some(1), "{v}");
    let reject = &v["rejects"][0];
    assert_eq!(reject["reason"], "invalid_value", "{v}");
    assert!(
        reject["detail"].as_str().unwrap().contains("image.link"),
        "{v}"
    );
    api.cleanup().await;
}

/// Meta refuses a template parameter holding a line break, a tab or a long run of spaces, and
/// the refusal stops the whole campaign: such a row is rejected at upload, naming its column.
/// A quote the file leaves open is how a value usually comes to hold a line break.
#[tokio::test]
async fn a_template_parameter_with_a_line_break_is_rejected_at_upload() {
    let api = Api::new().await;
    let id = api.create(template_spec("line-breaks")).await;
    let csv = "phone,first_name\n+447912345678,Ann\n+447912345679,\"Bob\n+447912345680,Cy\"\n\
               +447912345681,Dee\tDee\n+447912345682,Eve      Eve\n+447912345683,\"Fay\"\n";
    let (status, v) = api.upload(&id, csv).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"].as_u64(), Some(2), "Ann and Fay: {v}");
    let rejects = v["rejects"].as_array().unwrap();
    let found: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap(),
                r["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(found.len(), 3, "{v}");
    for ((line, reason, detail), (want_line, says)) in
        found
            .iter()
            .zip([(3, "a line break"), (5, "a tab"), (6, "spaces in a row")])
    {
        assert_eq!((*line, *reason), (want_line, "invalid_value"), "{v}");
        assert!(detail.contains(says), "{detail}");
        assert!(detail.contains("column \"first_name\""), "{detail}");
    }
    assert!(found[0].2.contains("a quote left open"), "{}", found[0].2);
    api.cleanup().await;
}

#[tokio::test]
async fn the_lifecycle_answers_409_to_illegal_moves() {
    let api = Api::new().await;
    let id = api.create(template_spec("lifecycle")).await;
    let step = |verb: &'static str| {
        let api = &api;
        let id = id.clone();
        async move {
            api.json("POST", &format!("/v1/campaigns/{id}/{verb}"), None)
                .await
        }
    };
    assert_eq!(step("resume").await.0, StatusCode::CONFLICT);
    // With no recipient, nothing would ever complete it: refused, saying what to do.
    let (s, v) = step("start").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_recipients")),
        "{v}"
    );
    assert!(
        message_of(&v).contains(&format!("herald campaign upload {id} --csv")),
        "{v}"
    );
    // Nor does one resume (started empty by an older build, then paused).
    let empty = api.create(template_spec("empty")).await;
    api.store
        .transition(
            &herald_core::CampaignId::new(&empty).unwrap(),
            herald_core::CampaignAction::Start,
            None,
        )
        .await
        .unwrap();
    let (s, _) = api
        .json("POST", &format!("/v1/campaigns/{empty}/pause"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .json("POST", &format!("/v1/campaigns/{empty}/resume"), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_recipients")),
        "{v}"
    );
    let (s, _) = api.upload(&id, "phone,first_name\n+447912345678,A\n").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = step("start").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{v}"
    );
    assert_eq!(step("start").await.0, StatusCode::CONFLICT);
    let (s, v) = step("pause").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("paused")),
        "{v}"
    );
    assert!(
        v["status_reason"].as_str().unwrap().contains("operator"),
        "{v}"
    );
    let (s, v) = step("resume").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{v}"
    );
    let (s, v) = step("cancel").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{v}"
    );
    let (s, v) = step("pause").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message_of(&v).contains("cancelled"), "{v}");
    assert_eq!(step("explode").await.0, StatusCode::NOT_FOUND);
    let (s, _) = api.upload(&id, "phone,first_name\n+447912345678,A\n").await;
    assert_eq!(s, StatusCode::CONFLICT, "no uploads to a finished campaign");
    let (s, _) = api
        .json("POST", "/v1/campaigns/01nosuchcampaign0/start", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let mut spec = template_spec("later");
    spec["schedule_at"] = json!("2099-01-01T09:00:00Z");
    let (s, v) = api.json("POST", "/v1/campaigns", Some(spec)).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::CREATED, Some("scheduled")),
        "{v}"
    );

    // The lifecycle's, the empty one's and the scheduled one.
    let (_, v) = api.json("GET", "/v1/campaigns", None).await;
    assert_eq!(v["campaigns"].as_array().map(Vec::len), Some(3), "{v}");
    api.cleanup().await;
}

/// An ended campaign can be deleted, with everything of it; one that can still send answers
/// 409 and stays, an unknown one 404.
#[tokio::test]
async fn only_an_ended_campaign_is_deleted() {
    let api = Api::new().await;
    let id = api.create(template_spec("to delete")).await;
    let (s, _) = api
        .upload(&id, "phone,first_name\n+447912345678,A\n+447912345679,B\n")
        .await;
    assert_eq!(s, StatusCode::OK);
    let path = format!("/v1/campaigns/{id}");
    let (s, v) = api.json("DELETE", &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message_of(&v).contains("cancel it first"), "{v}");
    assert_eq!(api.json("GET", &path, None).await.0, StatusCode::OK);

    let cancel = format!("/v1/campaigns/{id}/cancel");
    assert_eq!(api.json("POST", &cancel, None).await.0, StatusCode::OK);
    let (s, v) = api.json("DELETE", &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["deleted"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(api.json("GET", &path, None).await.0, StatusCode::NOT_FOUND);
    let (_, v) = api.json("GET", "/v1/campaigns", None).await;
    assert_eq!(v["campaigns"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(
        api.json("DELETE", &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    // Not an id at all: refused before the store is asked.
    let (s, _) = api.json("DELETE", "/v1/campaigns/NOT-AN-ID", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    api.cleanup().await;
}

#[tokio::test]
async fn operational_routes() {
    let api = Api::new().await;
    for (path, status, needle) in [
        ("/healthz", StatusCode::OK, "ok"),
        ("/readyz", StatusCode::OK, "ready"),
        ("/metrics", StatusCode::OK, "herald_build_info"),
    ] {
        let (s, body) = api
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(s, status, "{path}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    let (s, v) = api.json("GET", "/v1/nothing-here", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    api.cleanup().await;
}

#[tokio::test]
async fn a_scheduled_campaign_starts_itself_once_across_instances() {
    let api = Api::new().await;
    let mut spec = template_spec("scheduled");
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    spec["schedule_at"] = json!(at.to_string());
    let (s, v) = api.json("POST", "/v1/campaigns", Some(spec)).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::CREATED, Some("scheduled")),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    let cfg = herald_sender::SenderConfig::default();
    // Before its time: nothing starts.
    let before = at - jiff::SignedDuration::from_millis(1);
    let early = herald_sender::sweep(&*api.store, &cfg, before)
        .await
        .unwrap();
    assert!(early.started.is_empty());
    // Due with no recipient: nothing would ever complete it, so it waits for an upload.
    let after = at + jiff::SignedDuration::from_millis(1);
    let empty = herald_sender::sweep(&*api.store, &cfg, after)
        .await
        .unwrap();
    assert!(empty.started.is_empty());
    let (_, v) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(v["status"], "scheduled", "{v}");
    let (s, _) = api.upload(&id, "phone,first_name\n+447912345678,A\n").await;
    assert_eq!(s, StatusCode::OK);
    // Three instances sweep at once after its time: exactly one starts it.
    let (a, b, c) = tokio::join!(
        herald_sender::sweep(&*api.store, &cfg, after),
        herald_sender::sweep(&*api.store, &cfg, after),
        herald_sender::sweep(&*api.store, &cfg, after)
    );
    let started: usize = [a, b, c]
        .into_iter()
        .map(|s| s.unwrap().started.len())
        .sum();
    assert_eq!(started, 1);
    let (_, v) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert_ne!(v["status"], "scheduled", "{v}");
    // One whose time has passed with no recipient says why it has not started.
    let mut spec = template_spec("overdue");
    spec["schedule_at"] =
        json!((jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30)).to_string());
    let (s, v) = api.json("POST", "/v1/campaigns", Some(spec)).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::CREATED, Some("scheduled")),
        "{v}"
    );
    assert!(
        v["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("it starts once some are uploaded")),
        "{v}"
    );
    api.cleanup().await;
}

#[tokio::test]
async fn uploads_stream_past_the_body_limit_up_to_the_upload_limit() {
    let api = Api::new().await;
    let id = api.create(template_spec("sizes")).await;
    let csv = |rows: u64| {
        let mut s = String::from("phone,first_name\n");
        for i in 0..rows {
            s.push_str(&format!("+44 7912 3{i:05},Name{i}\n"));
        }
        s
    };
    // Over the 64 KiB body limit of the JSON routes: the upload is not held to it.
    let small = csv(8000);
    assert!(small.len() > 64 * 1024);
    let (status, v) = api.upload(&id, &small).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"].as_u64(), Some(8000), "{v}");
    // Over the 1 MiB upload limit: 413, and what was read before is kept.
    let big = csv(60_000);
    assert!(big.len() > 1024 * 1024);
    let (status, v) = api.upload(&id, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(message_of(&v).contains("max_upload_bytes"), "{v}");
    let (_, c) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert!(c["stats"]["recipients"].as_u64().unwrap() >= 8000, "{c}");
    api.cleanup().await;
}

/// Without an API key, only local programs are served: a request addressed to another name
/// (DNS rebinding) or sent by a browser for another site is refused, and bodies must be
/// declared as what they are (a cross-site form cannot send JSON or CSV without asking).
#[tokio::test]
async fn keyless_mode_serves_only_local_programs() {
    let state = ApiState {
        api_key: "".into(),
        ..ApiState::new(Arc::new(MemoryStore::new()), &config())
    };
    let app = router(
        state,
        Routes {
            v1: true,
            webhook: None,
        },
    );
    let call = |headers: &[(&str, &str)], method: &str, path: &str, body: &str| {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from(body.to_owned())).expect("request");
        let app = app.clone();
        async move {
            let r = app.oneshot(req).await.expect("infallible");
            let status = r.status();
            let body = r.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    for host in [
        "localhost:8080",
        "127.0.0.1",
        "127.0.0.2:80",
        "[::1]:8080",
        "LOCALHOST",
    ] {
        let (s, body) = call(&[("host", host)], "GET", "/v1/campaigns", "").await;
        assert_eq!(s, StatusCode::OK, "{host}: {body}");
    }
    for host in [
        "evil.example",
        "evil.example:8080",
        "10.0.0.1",
        "",
        "localhost.evil.example",
    ] {
        let (s, body) = call(&[("host", host)], "GET", "/v1/campaigns", "").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{host}: {body}");
        assert!(body.contains("API key"), "{body}");
    }
    let local = ("host", "127.0.0.1:8080");
    let (s, _) = call(
        &[local, ("origin", "http://evil.example")],
        "POST",
        "/v1/campaigns/abc/start",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a page of another site");
    let (s, _) = call(
        &[local, ("sec-fetch-site", "cross-site")],
        "POST",
        "/v1/campaigns/abc/start",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &[local, ("origin", "http://localhost:3000")],
        "GET",
        "/v1/campaigns",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "a local page");
    // Bodies must say what they are.
    let spec = template_spec("typed").to_string();
    let (s, body) = call(&[local], "POST", "/v1/campaigns", &spec).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (s, body) = call(
        &[local, ("content-type", "text/plain")],
        "POST",
        "/v1/campaigns",
        &spec,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (s, body) = call(
        &[local, ("content-type", "application/json; charset=utf-8")],
        "POST",
        "/v1/campaigns",
        &spec,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let upload = format!("/v1/campaigns/{id}/recipients");
    let (s, body) = call(
        &[local, ("content-type", "text/plain")],
        "POST",
        &upload,
        "phone,first_name\n+447700900001,A\n",
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (s, body) = call(
        &[local, ("content-type", "text/csv")],
        "POST",
        &upload,
        "phone,first_name\n+447700900001,A\n",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// Sending the same file again (the documented recovery for an interrupted upload) changes
/// nothing: the same stats, the same failures report, and the answer says the rows were
/// already there. Upload rejects and send-time skips are counted apart.
#[tokio::test]
async fn the_same_file_twice_changes_nothing() {
    let api = Api::new().await;
    let id = api.create(template_spec("twice")).await;
    let csv = "phone,first_name\n+44 7912 300001,Ann\n+44 7912 300002,Bob\n+44 7912 300001,Again\nnot a number,Nobody\n";
    let (s, first) = api.upload(&id, csv).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(
        (
            first["accepted"].as_u64(),
            first["already_present"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let (_, before) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    let (_, report_before) = api
        .call(
            Request::get(format!("/v1/campaigns/{id}/failures"))
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    let (s, second) = api.upload(&id, csv).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(
        (
            second["accepted"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(2)),
        "{second}"
    );
    let (_, after) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(before["stats"], after["stats"], "stats unchanged");
    let (_, report_after) = api
        .call(
            Request::get(format!("/v1/campaigns/{id}/failures"))
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(report_before, report_after, "failures report unchanged");
    assert_eq!(report_after.lines().count(), 3, "{report_after}");
    let stats = &after["stats"];
    assert_eq!(stats["skipped_upload"]["duplicate"], 1, "{stats}");
    assert_eq!(stats["skipped_upload"]["invalid"], 1, "{stats}");
    assert_eq!(stats["skipped_send"]["duplicate"], 0, "{stats}");
    api.cleanup().await;
}

/// An operator imports a suppression list (numbers and business-scoped ids, with a reason
/// column that is accepted), bad rows are named by line and column while the good ones are
/// kept, the export lists what is on it, and an entry can be taken off again.
#[tokio::test]
async fn suppression_lists_go_in_and_out() {
    let api = Api::new().await;
    let csv = "number,user_id,reason,date\n+447912300001,,moved from listmonk,2024-05-01\n,user.abc,,\nnot a number,,x,\n+447912300002,,,\n,bad id!,x,\n,,,\n+447912300003,,x,yesterday\n";
    let req = Request::post(format!("/v1/suppressions/{PNID}"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from(csv))
        .expect("request");
    let (s, text) = api.call(req).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            v["numbers"].as_u64(),
            v["user_ids"].as_u64(),
            v["rejected"].as_u64()
        ),
        (Some(2), Some(1), Some(4)),
        "{v}"
    );
    let lines: Vec<(u64, &str)> = v["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["column"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [(4, "number"), (6, "user_id"), (7, "number"), (8, "date")],
        "{v}"
    );
    let a = "+447912300001".parse().unwrap();
    let b = "+447912300002".parse().unwrap();
    assert_eq!(
        api.store.suppressed(PNID, &[a, b]).await.unwrap(),
        [true, true]
    );

    let (s, export) = api
        .call(
            Request::get(format!("/v1/suppressions/{PNID}"))
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut rows: Vec<&str> = export.lines().collect();
    assert_eq!(rows.remove(0), "kind,id,reason,date");
    rows.sort_unstable();
    assert_eq!(rows.len(), 3, "{export}");
    assert_eq!(
        rows[0],
        "number,'+447912300001,moved from listmonk,2024-05-01T00:00:00Z"
    );
    assert!(
        rows[1].starts_with("number,'+447912300002,imported,20"),
        "{export}"
    );
    assert!(rows[2].starts_with("user_id,user.abc,"), "{export}");
    // The export imports as it is (here into another number's list, numbers only), with
    // its reasons and dates.
    let numbers_only: String = export
        .replace("kind,id,", "kind,number,")
        .lines()
        .filter(|l| !l.starts_with("user_id"))
        .map(|l| format!("{l}\n"))
        .collect();
    let req = Request::post("/v1/suppressions/123")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from(numbers_only))
        .expect("request");
    let (s, text) = api.call(req).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        api.store.suppressed("123", &[a, b]).await.unwrap(),
        [true, true]
    );
    let why = api
        .store
        .suppression_reasons("123", herald_store::SuppressionScope::All, &[a])
        .await
        .unwrap();
    assert_eq!(
        why[0]
            .as_ref()
            .map(|w| (w.reason.as_str(), w.at.to_string())),
        Some(("moved from listmonk", "2024-05-01T00:00:00Z".to_owned()))
    );

    let (s, v) = api
        .json(
            "DELETE",
            &format!("/v1/suppressions/{PNID}/+447912300001"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["removed"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (_, v) = api
        .json("DELETE", &format!("/v1/suppressions/{PNID}/user.abc"), None)
        .await;
    assert_eq!(v["removed"].as_bool(), Some(true), "{v}");
    let (_, v) = api
        .json("DELETE", &format!("/v1/suppressions/{PNID}/user.abc"), None)
        .await;
    assert_eq!(v["removed"].as_bool(), Some(false), "only once: {v}");
    assert_eq!(
        api.store.suppressed(PNID, &[a, b]).await.unwrap(),
        [false, true]
    );
    let (s, _) = api
        .json(
            "DELETE",
            &format!("/v1/suppressions/{PNID}/%3Cscript%3E"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api.json("GET", "/v1/suppressions/abc", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    api.cleanup().await;
}

/// A template campaign shows its place in the portfolio's messaging limit: at upload, how
/// many fit now and when the rest would; while it runs with the budget spent, that it waits,
/// how many, and when the next place frees.
#[tokio::test]
async fn the_messaging_limit_is_shown_at_upload_and_while_waiting() {
    use herald_core::{DEFAULT_PORTFOLIO, MessagingLimit, REACH_WINDOW};
    let api = Api::new().await;
    api.store
        .set_messaging_limit(DEFAULT_PORTFOLIO, MessagingLimit::Users(2))
        .await
        .unwrap();
    let id = api.create(template_spec("limited")).await;
    let csv = "phone,first_name\n+447912300001,Ann\n+447912300002,Bob\n+447912300003,Cy\n";
    let (status, v) = api.upload(&id, csv).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let l = &v["messaging_limit"];
    assert_eq!(
        (l["limit"].as_u64(), l["used"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    assert_eq!(
        (l["fit_now"].as_u64(), l["waiting"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let by: jiff::Timestamp = l["all_fit_by"].as_str().expect("an ETA").parse().unwrap();
    assert!(
        by > jiff::Timestamp::now() + std::time::Duration::from_secs(23 * 3600),
        "{by}"
    );

    // Two users messaged (by any campaign of the portfolio): the budget is spent.
    let two: Vec<_> = ["+447700900001", "+447700900002"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    api.store
        .reserve_reach(DEFAULT_PORTFOLIO, 2, REACH_WINDOW, &two)
        .await
        .unwrap();
    let (_, v) = api
        .json("POST", &format!("/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(v["waiting_for"], "messaging_limit", "{v}");
    let l = &v["messaging_limit"];
    assert_eq!(
        (l["available"].as_u64(), l["waiting"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    assert!(l["next_frees_at"].is_string(), "{v}");

    // A second campaign of the portfolio shares the budget with the first: with 4 places
    // and 3 recipients each, it gets 2 now.
    api.store
        .set_messaging_limit(DEFAULT_PORTFOLIO, MessagingLimit::Users(6))
        .await
        .unwrap();
    let other = api.create(template_spec("sharing")).await;
    let csv = "phone,first_name\n+447912300011,Di\n+447912300012,Ed\n+447912300013,Flo\n";
    let (_, v) = api.upload(&other, csv).await;
    let l = &v["messaging_limit"];
    assert_eq!(
        (
            l["available"].as_u64(),
            l["fit_now"].as_u64(),
            l["waiting"].as_u64()
        ),
        (Some(4), Some(2), Some(1)),
        "{v}"
    );

    // A free-form campaign is not concerned (it needs an open window anyway).
    let text = api
        .create(json!({"name": "text", "message": {"type": "text", "text": {"body": "hi"}}}))
        .await;
    let (_, v) = api
        .json("GET", &format!("/v1/campaigns/{text}"), None)
        .await;
    assert!(v.get("messaging_limit").is_none(), "{v}");
    api.cleanup().await;
}

/// With the account and a token configured, creating a campaign looks its template up at
/// Meta (here the simulator): an approved one records its category; one Meta paused, or one
/// it does not have, is refused with a message that names it.
#[tokio::test]
async fn campaigns_are_checked_against_metas_template_list() {
    let mut sim_cfg = herald_sim::SimConfig {
        listen: "127.0.0.1:0".into(),
        ..herald_sim::SimConfig::default()
    };
    sim_cfg.templates.push(herald_sim::config::Template {
        name: "spring_sale".into(),
        status: "PAUSED".into(),
        category: "MARKETING".into(),
        ..herald_sim::config::Template::default()
    });
    let sim = herald_sim::Sim::start(sim_cfg.clone()).await.unwrap();
    let mut cfg = config();
    cfg.whatsapp.api_base = sim.url();
    cfg.whatsapp.access_token = sim_cfg.access_token.clone().into();
    cfg.whatsapp.waba_id = sim_cfg.waba_id.clone();
    let store = Arc::new(MemoryStore::new());
    let state = ApiState {
        api_key: KEY.into(),
        ..ApiState::new(store.clone(), &cfg)
    };
    let api = Api {
        app: router(
            state,
            Routes {
                v1: true,
                webhook: None,
            },
        ),
        store,
    };
    let (status, v) = api
        .json("POST", "/v1/campaigns", Some(template_spec("approved")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["template_category"], "UTILITY", "{v}");

    // The list a picker offers: approved templates only, with their body's parameters.
    let (status, v) = api.json("GET", "/v1/templates", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["templates"],
        json!([
            {"name": "hello_world", "language": "en_US", "category": "UTILITY", "body_parameters": 0},
            {"name": "order_update", "language": "en_US", "category": "UTILITY", "body_parameters": 1},
        ]),
        "the paused spring_sale is not offered"
    );

    let mut paused = template_spec("paused");
    paused["message"]["template"]["name"] = json!("spring_sale");
    let (status, v) = api.json("POST", "/v1/campaigns", Some(paused)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message_of(&v).contains("spring_sale (en_US) is PAUSED"),
        "{v}"
    );

    // A body given more parameters than the template takes would be refused at every send
    // (132000), and the campaign would pause at its first: refused now, with the count.
    let mut two = template_spec("two-parameters");
    two["message"]["template"]["components"][0]["parameters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "text", "text": "{{last_name}}"}));
    let (status, v) = api.json("POST", "/v1/campaigns", Some(two)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message_of(&v)
            .contains("order_update (en_US) takes 1 parameter at Meta; the message gives 2"),
        "{v}"
    );
    let mut none = template_spec("no-parameters");
    none["message"]["template"]["name"] = json!("hello_world");
    let (status, v) = api.json("POST", "/v1/campaigns", Some(none)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("takes 0 parameters"), "{v}");

    let mut missing = template_spec("missing");
    missing["message"]["template"]["language"]["code"] = json!("fr");
    let (status, v) = api.json("POST", "/v1/campaigns", Some(missing)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message_of(&v).contains("no template order_update in fr"),
        "{v}"
    );
    sim.shutdown().await;
}

/// The upload answer and the campaign carry the cost estimate: recipients by market × the
/// template category's rate, as a range; a cap can be raised on resume, and is checked.
#[tokio::test]
async fn a_mixed_country_upload_is_priced_by_market() {
    use herald_core::cost::Money;
    let api = Api::new().await;
    let mut spec = template_spec("priced");
    spec["template_category"] = json!("MARKETING");
    spec["expected_delivery_rate"] = json!(0.8);
    let id = api.create(spec).await;
    // Two North American numbers, three Indian, a Brazilian, a Jamaican (+1, but Rest of
    // Latin America) and a duplicate.
    let csv = "phone,first_name\n\
        +16502530000,A\n+14165550100,B\n+919876543210,C\n+919876543211,D\n+919876543212,E\n\
        +5511961234567,F\n+18769271234,G\n+16502530000,dup\n";
    let (status, v) = api.upload(&id, csv).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let e = &v["cost"];
    let card = herald::config::CostSection::default().rate_card().unwrap();
    let today = herald_core::cost::today();
    let price = |region: &str| {
        card.price(&card.market(region.parse().unwrap()), "marketing", today)
            .unwrap()
            .0
    };
    let high = 2 * price("US") + 3 * price("IN") + price("BR") + price("JM");
    assert_eq!(e["currency"], "USD", "{v}");
    assert_eq!(e["category"], "marketing", "{v}");
    let units = |x: &Value| (x.as_f64().unwrap() * 1e6).round() as u64;
    assert_eq!(units(&e["high"]), high, "{v}");
    assert_eq!(units(&e["low"]), high * 8 / 10, "{v}");
    assert_eq!(e["unknown_recipients"], 0, "{v}");
    let markets: Vec<(&str, u64)> = e["by_market"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["market"].as_str().unwrap(),
                m["recipients"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        markets,
        [
            ("brazil", 1),
            ("india", 3),
            ("north_america", 2),
            ("rest_of_latin_america", 1)
        ]
    );
    // The cost report for a spreadsheet: one estimate row per market.
    let (status, text) = api
        .call(
            Request::get(format!("/v1/campaigns/{id}/cost"))
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "kind,market,category,count,price,cost,currency");
    assert_eq!(lines.len(), 1 + 4, "{text}");
    assert!(
        lines.contains(
            &format!(
                "estimate,india,marketing,3,{p},{c},USD",
                p = Money(price("IN")),
                c = Money(3 * price("IN"))
            )
            .as_str()
        ),
        "{text}"
    );
    // The campaign shows the same estimate, nothing charged yet, and no cap.
    let (_, c) = api.json("GET", &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(c["stats"]["cost"]["estimate"], *e, "{c}");
    assert_eq!(c["stats"]["cost"]["actual"]["total"], 0.0, "{c}");
    assert!(c["stats"]["cost"]["max_cost"].is_null(), "{c}");

    // Resuming can raise the cap; a bad one is refused by name, and other actions take no
    // body.
    let (status, _) = api
        .json("POST", &format!("/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .json("POST", &format!("/v1/campaigns/{id}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = api
        .json(
            "POST",
            &format!("/v1/campaigns/{id}/resume"),
            Some(json!({"max_cost": -1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("max_cost"), "{v}");
    let (status, v) = api
        .json(
            "POST",
            &format!("/v1/campaigns/{id}/resume"),
            Some(json!({"max_csot": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message_of(&v).contains("max_csot"), "{v}");
    let (status, v) = api
        .json(
            "POST",
            &format!("/v1/campaigns/{id}/pause"),
            Some(json!({"max_cost": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = api
        .json(
            "POST",
            &format!("/v1/campaigns/{id}/resume"),
            Some(json!({"max_cost": 2.5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "running", "{v}");
    assert_eq!(v["stats"]["cost"]["max_cost"], 2.5, "{v}");
    assert_eq!(
        api.store
            .campaign(&id.parse().unwrap())
            .await
            .unwrap()
            .spec
            .max_cost,
        Some(2.5)
    );
    // A running campaign cannot take a new cap (it would not be checked against what the
    // sender already admitted): resume is for paused ones.
    let (status, v) = api
        .json(
            "POST",
            &format!("/v1/campaigns/{id}/resume"),
            Some(json!({"max_cost": 9})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
}

/// Without an account to ask, there is no template list: the answer says what to configure.
#[tokio::test]
async fn the_template_list_needs_an_account() {
    let api = Api::new().await;
    let (status, v) = api.json("GET", "/v1/templates", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(message_of(&v).contains("whatsapp.waba_id"), "{v}");
    api.cleanup().await;
}

/// The list comes a page at a time, newest first: `next` asks for the page after, with the
/// same status filter, until there is none; bad parameters are refused naming them, and a
/// cursor whose campaign was deleted says to list from the newest again.
#[tokio::test]
async fn campaigns_are_listed_a_page_at_a_time() {
    let api = Api::new().await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(api.create(template_spec(&format!("c{i}"))).await);
    }
    made.reverse();
    let cancelled = [&made[1], &made[3]];
    for id in cancelled {
        let (status, v) = api
            .json("POST", &format!("/v1/campaigns/{id}/cancel"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let ids = |v: &Value| -> Vec<String> {
        v["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let walk = async |query: &str| {
        let (mut seen, mut pages, mut next) = (Vec::new(), 0, None::<String>);
        loop {
            let before = next.map(|n| format!("&before={n}")).unwrap_or_default();
            let (status, v) = api
                .json(
                    "GET",
                    &format!("/v1/campaigns?limit=2{query}{before}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert!(ids(&v).len() <= 2, "{v}");
            seen.extend(ids(&v));
            pages += 1;
            next = v["next"].as_str().map(str::to_owned);
            if next.is_none() {
                return (seen, pages);
            }
        }
    };
    assert_eq!(walk("").await, (made.clone(), 3));
    let (drafts, _) = walk("&status=draft").await;
    assert_eq!(drafts, [made[0].as_str(), &made[2], &made[4]]);
    let (status, v) = api.json("GET", "/v1/campaigns", None).await;
    assert_eq!((status, ids(&v)), (StatusCode::OK, made.clone()));
    assert!(v.get("next").is_none(), "{v}");

    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("status=sent", "status"),
        ("before=not-an-id", "before"),
    ] {
        let (status, v) = api
            .json("GET", &format!("/v1/campaigns?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert!(message_of(&v).starts_with(names), "{query}: {v}");
    }
    let (status, v) = api
        .json("DELETE", &format!("/v1/campaigns/{}", made[1]), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = api
        .json("GET", &format!("/v1/campaigns?before={}", made[1]), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(message_of(&v).contains("from the newest"), "{v}");
    api.cleanup().await;
}
