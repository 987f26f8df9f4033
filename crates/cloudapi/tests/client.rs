//! The client against a mock Graph API: success, one error per class, bodiless 5xx, a timeout
//! (ambiguous), a refused connection (transient). The client must never retry on its own.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_cloudapi::message::{Message, SendMessage, Text};
use herald_cloudapi::{
    Client, ClientConfig, Error, ErrorClass, Secret, SendRequest, TransportFailure,
};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "EAAG-test-token";

fn client(base: &str, timeout_ms: u64) -> Client {
    Client::new(&ClientConfig {
        api_base: base.to_owned(),
        access_token: Secret::new(TOKEN),
        request_timeout: Duration::from_millis(timeout_ms),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn request() -> SendRequest {
    SendRequest::Message(Box::new(
        SendMessage::new(
            "447912345678",
            Message::Text(Text {
                body: "hi".into(),
                preview_url: None,
            }),
        )
        .with_callback_data("hrld:abc:1"),
    ))
}

async fn answer(
    server: &MockServer,
    response: ResponseTemplate,
) -> Result<herald_cloudapi::SendResponse, Error> {
    Mock::given(method("POST"))
        .and(path("/v21.0/106540352242922/messages"))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
    client(&server.uri(), 2_000)
        .send("106540352242922", &request())
        .await
}

fn graph_error(code: i64) -> serde_json::Value {
    json!({"error": {"message": format!("(#{code}) something"), "type": "OAuthException", "code": code,
                     "error_data": {"messaging_product": "whatsapp", "details": "details"}, "fbtrace_id": "A1"}})
}

#[tokio::test]
async fn success_sends_the_body_with_bearer_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v21.0/106540352242922/messages"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(
            json!({"to": "447912345678", "biz_opaque_callback_data": "hrld:abc:1", "type": "text"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "447912345678", "wa_id": "447912345678"}],
            "messages": [{"id": "wamid.ok", "message_status": "accepted"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let r = client(&server.uri(), 2_000)
        .send("106540352242922", &request())
        .await
        .unwrap();
    assert_eq!(r.message_id(), Some("wamid.ok"));
}

#[tokio::test]
async fn a_noted_send_carries_the_same_request_and_notes_when_it_left() {
    let server = MockServer::start().await;
    let body = serde_json::to_vec(&request()).unwrap();
    Mock::given(method("POST"))
        .and(path("/v21.0/106540352242922/messages"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(header("content-length", body.len().to_string().as_str()))
        .and(body_partial_json(
            json!({"to": "447912345678", "biz_opaque_callback_data": "hrld:abc:1"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "messages": [{"id": "wamid.noted"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let departure = herald_cloudapi::Departure::default();
    let before = std::time::Instant::now();
    let r = client(&server.uri(), 2_000)
        .send_noted("106540352242922", body, &departure)
        .await
        .unwrap();
    assert_eq!(r.message_id(), Some("wamid.noted"));
    let left = departure.get().expect("the departure was noted");
    assert!(left >= before && left <= std::time::Instant::now());
}

/// Each number's messages URL is made once and kept: sends to several numbers, in turns,
/// each reach their own number's path, under a base that has a path of its own.
#[tokio::test]
async fn sends_to_several_numbers_each_reach_their_own_path() {
    let server = MockServer::start().await;
    let numbers = ["106540352242922", "106540352242923", "7"];
    for (i, number) in numbers.iter().enumerate() {
        Mock::given(method("POST"))
            .and(path(format!("/graph/v21.0/{number}/messages")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "messages": [{"id": format!("wamid.{i}")}]})))
            .expect(3)
            .mount(&server)
            .await;
    }
    let client = client(&format!("{}/graph/", server.uri()), 2_000);
    for _ in 0..3 {
        for (i, number) in numbers.iter().enumerate() {
            let body = serde_json::to_vec(&request()).unwrap();
            let r = if i % 2 == 0 {
                client.send_raw(number, body).await
            } else {
                let departure = herald_cloudapi::Departure::default();
                client.send_noted(number, body, &departure).await
            };
            assert_eq!(r.unwrap().message_id(), Some(format!("wamid.{i}").as_str()));
        }
    }
    // A malformed id is refused before any request, cached numbers or not.
    assert!(matches!(
        client
            .send_raw("106540352242922/../x", b"{}".to_vec())
            .await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn one_error_per_class_is_classified_by_code_not_status() {
    let cases = [
        (131_000, 500, ErrorClass::Transient),
        (130_429, 400, ErrorClass::Throttled),
        (131_057, 400, ErrorClass::Maintenance),
        (131_056, 429, ErrorClass::PairLimited),
        (131_026, 400, ErrorClass::RecipientPermanent),
        (131_049, 400, ErrorClass::FrequencyCapped),
        (132_001, 404, ErrorClass::CampaignFatal),
        (190, 401, ErrorClass::SenderFatal),
    ];
    for (code, status, class) in cases {
        let server = MockServer::start().await;
        let err = answer(
            &server,
            ResponseTemplate::new(status).set_body_json(graph_error(code)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class(), class, "code {code}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.graph_error().unwrap().details(), Some("details"));
        // Exactly one request: the client does not retry on its own (checked on drop).
        server.verify().await;
    }
}

/// A 502/504 from an edge or proxy (HTML, or no body at all) does not prove that Meta
/// refused: the message may have been taken before the edge gave up. In doubt, never retried.
#[tokio::test]
async fn an_error_status_without_a_graph_body_is_ambiguous() {
    let server = MockServer::start().await;
    let err = answer(
        &server,
        ResponseTemplate::new(504).set_body_raw("<html>Gateway Time-out</html>", "text/html"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous, "{err:?}");
    server.verify().await;
    let server = MockServer::start().await;
    let err = answer(&server, ResponseTemplate::new(502))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::HttpStatus(502),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    server.verify().await;
}

#[tokio::test]
async fn an_unreadable_success_is_ambiguous() {
    let server = MockServer::start().await;
    let err = answer(
        &server,
        ResponseTemplate::new(200).set_body_string("<html>"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous);
}

#[tokio::test]
async fn a_timeout_is_ambiguous_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server.uri(), 200)
        .send("106540352242922", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Ambiguous);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // Bind then drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"), 1_000)
        .send("106540352242922", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::ConnectFailed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn phone_number_info_and_debug_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v21.0/106540352242922"))
        .and(query_param("fields", "id,display_phone_number,verified_name,quality_rating,status,code_verification_status,name_status,platform_type,throughput,whatsapp_business_manager_messaging_limit"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "106540352242922", "quality_rating": "GREEN", "status": "CONNECTED",
            "verified_name": "Herald Test", "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": "TIER_2K"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/debug_token"))
        .and(query_param("input_token", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "app_id": "1", "is_valid": true, "expires_at": 0,
            "scopes": ["whatsapp_business_messaging", "whatsapp_business_management"]}})))
        .mount(&server)
        .await;
    let c = client(&server.uri(), 2_000);
    let info = c.phone_number_info("106540352242922").await.unwrap();
    assert_eq!(info.quality_rating.as_deref(), Some("GREEN"));
    assert_eq!(info.throughput.unwrap().level.as_deref(), Some("STANDARD"));
    assert_eq!(
        info.whatsapp_business_manager_messaging_limit.as_deref(),
        Some("TIER_2K")
    );
    let token = c.debug_token().await.unwrap();
    assert!(token.is_valid);
    assert!(
        token
            .scopes
            .iter()
            .any(|s| s == "whatsapp_business_messaging")
    );
}

#[tokio::test]
async fn the_token_never_shows_in_debug_or_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"), 500);
    assert!(!format!("{c:?}").contains(TOKEN));
    let err = c.debug_token().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn bad_configuration_is_refused() {
    let cfg = |base: &str| ClientConfig {
        api_base: base.to_owned(),
        ..ClientConfig::default()
    };
    assert!(matches!(
        Client::new(&cfg("ftp://x")),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new(&cfg("not a url")),
        Err(Error::Config(_))
    ));
    let c = Client::new(&cfg("http://127.0.0.1:1")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(c.send("../../evil", &request())).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[test]
fn loopback_urls_are_told_from_the_rest() {
    use herald_cloudapi::is_loopback_url;
    for near in [
        "http://127.0.0.1:7000",
        "http://127.3.2.1/x",
        "http://localhost:8080/v1",
        "http://LocalHost./",
        "http://[::1]:7000",
        "https://user:pw@127.0.0.1",
    ] {
        assert!(is_loopback_url(near), "{near}");
    }
    for far in [
        "https://graph.facebook.com",
        "http://10.0.0.1:7000",
        "http://localhost.example.com",
        "http://sim.localhost:7000",
        "http://[::2]:7000",
        "http://127.0.0.1.nip.io",
        "not a url",
        "",
    ] {
        assert!(!is_loopback_url(far), "{far}");
    }
}
