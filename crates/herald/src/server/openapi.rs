//! The OpenAPI 3.1 description of Herald's HTTP API, generated from the handlers' own
//! annotations and types and served at `/openapi.json`. It describes exactly the routes the
//! process mounts (`crates/herald/tests/openapi.rs` checks both ways, and validates it).

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};

use crate::server::api::{self, Routes};
use crate::server::suppressions;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Bulk broadcasts over the WhatsApp Cloud API: campaigns, their recipients \
                       and outcomes, suppression lists, and the operational routes. Every \
                       error answers `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        api::create,
        api::validate,
        api::templates,
        api::list,
        api::show,
        api::delete,
        api::preview,
        api::follow_up,
        api::recipients,
        api::failures,
        api::cost_report,
        api::action,
        suppressions::export,
        suppressions::import,
        suppressions::remove,
        api::metrics,
        api::healthz,
        api::ready,
        serve,
    ),
    components(schemas(api::Action)),
    tags(
        (name = "campaigns", description = "Create, fill, run and watch campaigns"),
        (name = "suppressions", description = "A phone number's suppression list"),
        (name = "operations", description = "Metrics, health and this description"),
        (name = "webhook", description = "Meta's status and message webhook"),
    )
)]
struct ApiDoc;

/// The description of what a process with `routes` serves.
pub fn document(routes: &Routes) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if routes.v1 {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "HERALD_API_KEY. Without a key configured, Herald listens on loopback \
                         only and serves local programs without one.",
                    ))
                    .build(),
            ),
        );
        // Every `/v1` operation is behind the key, and answers the same when it is missing.
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if path.starts_with("/v1/") {
                for op in operations(item) {
                    op.security = Some(vec![SecurityRequirement::new("api_key", [""; 0])]);
                    let r = &mut op.responses.responses;
                    r.insert("401".into(), error("Missing or wrong API key").into());
                    r.insert(
                        "403".into(),
                        error("Keyless mode: not a local program").into(),
                    );
                }
            }
        }
    } else {
        doc.paths.paths.retain(|path, _| !path.starts_with("/v1/"));
    }
    if routes.webhook.is_some() {
        doc.paths
            .paths
            .insert(herald_reconciler::WEBHOOK_PATH.to_owned(), webhook());
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Meta's webhook, served by `herald_reconciler` (which does not know about OpenAPI).
fn webhook() -> PathItem {
    let text = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "text/plain",
                ContentBuilder::new().schema(Some(string())).build(),
            )
            .build()
    };
    let verify = OperationBuilder::new()
        .tag("webhook")
        .summary(Some("Meta's verification handshake"))
        .description(Some(
            "Answers `hub.challenge` when `hub.mode` is `subscribe` and `hub.verify_token` is \
             the configured verify token.",
        ))
        .parameters(Some(["hub.mode", "hub.verify_token", "hub.challenge"].map(
            |name| {
                utoipa::openapi::path::ParameterBuilder::new()
                    .name(name)
                    .parameter_in(utoipa::openapi::path::ParameterIn::Query)
                    .schema(Some(string()))
                    .build()
            },
        )))
        .response("200", text("The challenge"))
        .response("403", text("Wrong verify token or mode"))
        .build();
    let deliver = OperationBuilder::new()
        .tag("webhook")
        .summary(Some("A signed webhook delivery"))
        .description(Some(
            "Checked against `X-Hub-Signature-256` with the app secret, then stored durably \
             before it is acknowledged; statuses and messages are applied from there.",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(utoipa::openapi::ObjectBuilder::new()))
                        .build(),
                )
                .build(),
        ))
        .response("200", text("Stored"))
        .response("401", text("Missing or wrong signature"))
        .response("413", text("Too large"))
        .response(
            "503",
            text("No app secret, or the store is unavailable (Meta retries)"),
        )
        .build();
    let mut item = PathItem::new(HttpMethod::Get, verify);
    item.post = Some(deliver);
    item
}

fn string() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    <String as utoipa::PartialSchema>::schema()
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn serve(doc: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}
