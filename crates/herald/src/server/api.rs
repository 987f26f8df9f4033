//! The HTTP API (ARCHITECTURE §9): campaigns under `/v1` behind a bearer key, Meta's webhook, and
//! the operational routes (`/metrics`, `/healthz`, `/readyz`).
//!
//! Handlers only translate: every decision is the store's or the loader's. An [`ApiError`]
//! always names the problem (the field, the column, the lifecycle rule) and never carries
//! internals: store failures are logged and answered with a generic message.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use futures::future::BoxFuture;
use herald_core::{CampaignAction, CampaignId, CampaignSpec, CampaignStatus, PauseReason};
use herald_reconciler::ReceiverConfig;
use herald_store::{Campaign, NewCampaign, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

pub use crate::server::error::{ApiError, ErrorBody};
use crate::server::session::Sessions;
use crate::server::upload::UploadSummary;
use crate::server::{follow_up, limit, upload};

/// Checks that the store answers (for `/readyz`).
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// What the routes share.
pub struct ApiState<S> {
    pub store: Arc<S>,
    /// Used when a campaign names no phone number id.
    pub default_phone_number_id: String,
    /// Bearer key for `/v1`; empty means no check (the server then binds loopback only).
    pub api_key: herald_cloudapi::Secret,
    pub metrics: Option<PrometheusHandle>,
    /// The per-campaign series, served while this process leads their export.
    pub campaign_metrics: Option<Arc<crate::server::campaign_metrics::CampaignMetrics>>,
    pub ready: ReadyCheck,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    /// An upload whose body sends nothing for this long is cut off.
    pub body_idle_timeout: std::time::Duration,
    /// Different numbers one upload may hold.
    pub max_upload_recipients: usize,
    /// Upload rejects stored per campaign (every one is counted).
    pub max_stored_rejects: usize,
    /// Which portfolio's messaging limit each number shares, and the configured cap.
    pub messaging_limit: herald_sender::LimitConfig,
    /// Where a campaign's template is looked up (status and category), when the account and
    /// a token are configured.
    pub templates: Option<Arc<Templates>>,
    /// The rate card: each campaign's estimate, actual cost and cap.
    pub cost: Option<crate::server::cost::CostSettings>,
    /// How long a console sign-in lasts.
    pub console_session_secs: u64,
    /// The time the store's records are compared with (the wall clock; a test's store may
    /// keep its own).
    pub clock: Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>,
}

/// Meta's template list of one WhatsApp Business Account.
#[derive(Debug)]
pub struct Templates {
    pub client: herald_cloudapi::Client,
    pub waba_id: String,
}

impl Templates {
    /// The configured account's list, when there is an account id and a token.
    pub fn from_config(cfg: &crate::config::Config) -> Option<Self> {
        let w = &cfg.whatsapp;
        if w.waba_id.is_empty() || w.access_token.expose().is_empty() {
            return None;
        }
        match herald_cloudapi::Client::new(&cfg.client_config()) {
            Ok(client) => Some(Self {
                client,
                waba_id: w.waba_id.clone(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "templates cannot be looked up");
                None
            }
        }
    }

    /// Checks that the campaign's template (`name:language`) is approved at Meta and that
    /// `message` gives its body as many parameters as it takes, and answers its category;
    /// `Ok(None)` when Meta could not be asked (said in the log).
    async fn check(
        &self,
        key: &str,
        message: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<String>, ApiError> {
        let Some((name, language)) = key.split_once(':') else {
            return Ok(None);
        };
        match self.client.template(&self.waba_id, name, language).await {
            Ok(Some(t)) if t.status.eq_ignore_ascii_case("APPROVED") => {
                // Meta refuses every send whose count is wrong (132000), and the campaign
                // pauses at its first: say so now. (A body Meta lists without its text is
                // not counted.)
                let has_text = (t.components.iter())
                    .any(|c| c.kind.eq_ignore_ascii_case("BODY") && c.text.is_some());
                let (want, got) = (t.body_parameters(), body_parameters(message));
                if has_text && want != got {
                    return Err(ApiError::invalid(format!(
                        "message.template.components: the body of {name} ({language}) takes \
                         {want} parameter{} at Meta; the message gives {got} (Meta would \
                         refuse every send with error 132000)",
                        if want == 1 { "" } else { "s" }
                    )));
                }
                let category = t.category.to_ascii_uppercase();
                Ok(herald_core::spec::TEMPLATE_CATEGORIES
                    .contains(&category.as_str())
                    .then_some(category))
            }
            Ok(Some(t)) => Err(ApiError::invalid(format!(
                "message.template: {name} ({language}) is {} at Meta; only an APPROVED \
                 template can be sent",
                t.status
            ))),
            Ok(None) => Err(ApiError::invalid(format!(
                "message.template: Meta has no template {name} in {language} on WhatsApp \
                 Business Account {}",
                self.waba_id
            ))),
            Err(e) => {
                tracing::warn!(template = key, error = %e, "could not look the template up at Meta");
                Ok(None)
            }
        }
    }
}

/// How many parameters a template message gives its body.
fn body_parameters(message: &serde_json::Map<String, serde_json::Value>) -> usize {
    (message.get("template"))
        .and_then(|t| t.get("components"))
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("body"))
        })
        .filter_map(|c| c.get("parameters").and_then(serde_json::Value::as_array))
        .map(Vec::len)
        .sum()
}

impl<S: Store> ApiState<S> {
    /// The state `cfg` describes, ready when the store answers, without metrics.
    pub fn new(store: Arc<S>, cfg: &crate::config::Config) -> Self {
        let ready_store = store.clone();
        let s = &cfg.server;
        Self {
            store,
            default_phone_number_id: cfg.whatsapp.phone_number_id.clone(),
            api_key: s.api_key.clone(),
            metrics: None,
            campaign_metrics: None,
            ready: Arc::new(move || {
                let store = ready_store.clone();
                Box::pin(async move { store.ping().await.is_ok() })
            }),
            max_body_bytes: s.max_body_bytes,
            max_upload_bytes: s.max_upload_bytes,
            body_idle_timeout: std::time::Duration::from_millis(s.body_idle_timeout_ms),
            max_upload_recipients: s.max_upload_recipients,
            max_stored_rejects: s.max_stored_rejects,
            messaging_limit: cfg.messaging_limit.limit_config(),
            templates: Templates::from_config(cfg).map(Arc::new),
            cost: crate::server::cost::CostSettings::from_config(cfg),
            console_session_secs: s.console_session_secs,
            clock: Arc::new(jiff::Timestamp::now),
        }
    }
}

impl<S> ApiState<S> {
    /// Console sessions under the API key (`None` in keyless mode, where there are none).
    pub(crate) fn sessions(&self) -> Option<Sessions> {
        let key = self.api_key.expose();
        (!key.is_empty()).then(|| Sessions::new(key, self.console_session_secs))
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    jiff::Timestamp::now().as_second().max(0) as u64
}

impl<S> std::fmt::Debug for ApiState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("default_phone_number_id", &self.default_phone_number_id)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

pub(crate) type AppState<S> = Arc<ApiState<S>>;

/// Which routes a process serves besides `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone)]
pub struct Routes {
    /// The campaign API (`herald serve`).
    pub v1: bool,
    /// Meta's webhook (`herald serve`, `herald webhook`).
    pub webhook: Option<ReceiverConfig>,
}

/// The campaign API's routes, under `/v1`.
fn v1_routes<S: Store>() -> Vec<(&'static str, MethodRouter<AppState<S>>)> {
    use crate::server::suppressions;
    vec![
        ("/campaigns", post(create::<S>).get(list::<S>)),
        ("/campaigns/validate", post(validate::<S>)),
        ("/templates", get(templates::<S>)),
        ("/campaigns/{id}", get(show::<S>).delete(delete::<S>)),
        ("/campaigns/{id}/preview", post(preview::<S>)),
        ("/campaigns/{id}/follow-up", post(follow_up::<S>)),
        (
            "/campaigns/{id}/recipients",
            // The upload is streamed and limited by its own counter, not buffered.
            post(recipients::<S>).layer(DefaultBodyLimit::disable()),
        ),
        ("/campaigns/{id}/failures", get(failures::<S>)),
        ("/campaigns/{id}/cost", get(cost_report::<S>)),
        ("/campaigns/{id}/{action}", post(action::<S>)),
        (
            "/suppressions/{phone_number_id}",
            get(suppressions::export::<S>).post(suppressions::import::<S>),
        ),
        (
            "/suppressions/{phone_number_id}/{entry}",
            axum::routing::delete(suppressions::remove::<S>),
        ),
    ]
}

/// The routes every process serves; `openapi` is the description `/openapi.json` serves.
fn operational_routes<S: Store>(openapi: Bytes) -> Vec<(&'static str, MethodRouter<AppState<S>>)> {
    vec![
        ("/metrics", get(metrics::<S>)),
        ("/healthz", get(healthz)),
        ("/readyz", get(ready::<S>)),
        (
            "/openapi.json",
            get(move || crate::server::openapi::serve(openapi.clone())),
        ),
    ]
}

/// Every path `router` mounts for `routes` (what `/openapi.json` must describe, no more and
/// no less).
pub fn mounted_paths<S: Store>(routes: &Routes) -> Vec<String> {
    let mut paths: Vec<String> = operational_routes::<S>(Bytes::new())
        .into_iter()
        .map(|(p, _)| p.to_owned())
        .collect();
    if routes.v1 {
        paths.extend(v1_routes::<S>().into_iter().map(|(p, _)| format!("/v1{p}")));
    }
    if routes.webhook.is_some() {
        paths.push(herald_reconciler::WEBHOOK_PATH.to_owned());
    }
    paths
}

/// The routes: `/v1` (with auth), `/webhook`, `/metrics`, `/healthz`, `/readyz`,
/// `/openapi.json`.
pub fn router<S: Store>(state: ApiState<S>, routes: Routes) -> Router {
    let doc = crate::server::openapi::document(&routes);
    let doc = serde_json::to_vec(&doc)
        .map(Bytes::from)
        .unwrap_or_default();
    let store = state.store.clone();
    let body_limit = state.max_body_bytes;
    let state = Arc::new(state);
    let v1 = v1_routes::<S>()
        .into_iter()
        .fold(Router::new(), |r, (path, method)| r.route(path, method))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::<S>))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::map_response_with_state(
            body_limit,
            crate::server::error::json_rejections,
        ));
    let mut app: Router = operational_routes::<S>(doc)
        .into_iter()
        .fold(Router::new(), |r, (path, method)| r.route(path, method))
        .with_state(state.clone());
    if routes.v1 {
        app = app
            .merge(crate::server::console::routes::<S>().with_state(state.clone()))
            .nest("/v1", v1.with_state(state));
    }
    if let Some(receiver) = routes.webhook {
        app = app.merge(herald_reconciler::routes(store, receiver));
    }
    app
}

async fn auth<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    let key = state.api_key.expose();
    if key.is_empty() {
        // No key: the server listens on loopback only, and must not be driven from a web
        // page either (DNS rebinding, cross-site requests).
        if let Err(e) = keyless_guard(request.headers()) {
            return e.into_response();
        }
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) {
        return next.run(request).await;
    }
    // The console's session cookie; what changes something also needs the CSRF token.
    let session = (state.sessions()).and_then(|s| s.from_headers(request.headers(), unix_now()));
    if let Some(session) = session {
        let safe = matches!(*request.method(), Method::GET | Method::HEAD);
        let token = request
            .headers()
            .get(crate::server::session::CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if safe || bool::from(token.ct_eq(session.csrf.as_bytes())) {
            return next.run(request).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a signed-in request that changes something must carry the page's X-Herald-CSRF \
             token: reload the console page",
        )
        .into_response();
    }
    {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send Authorization: Bearer <HERALD_API_KEY>",
        )
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

/// Without an API key, only requests a local program makes are served: addressed to a
/// loopback name (a web page that rebinds its own name to 127.0.0.1 still sends that name),
/// and not sent by a browser on behalf of another site. Behind a reverse proxy, set a key.
pub(crate) fn keyless_guard(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{why}: without an API key (HERALD_API_KEY) Herald serves only local programs; \
                 set a key to serve anything else, a reverse proxy included"
            ),
        ))
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_authority(host) {
        return refuse(format!(
            "the request is addressed to {host:?}, not a loopback name"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !is_loopback_authority(authority) {
            return refuse(format!("the request comes from a web page at {origin:?}"));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return refuse("the request comes from another site's web page".into());
    }
    Ok(())
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::new(raw).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("campaign {raw:?}: {e}"),
        )
    })
}

/// A campaign as the API shows it: the stored campaign, its stats, and its place in the
/// messaging limit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub stats: StatsView,
    /// Why the campaign is paused, or why a scheduled one past its time has not started, in
    /// words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// What a running campaign's pending recipients wait for, when they wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitingFor>,
    /// The campaign's place in its portfolio's messaging limit (template campaigns that
    /// have not ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_limit: Option<limit::LimitView>,
}

/// The stats (ARCHITECTURE §4), with the cost when a rate card is loaded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    #[serde(flatten)]
    pub stats: herald_core::Stats,
    /// The estimate, the actual and the cap (ARCHITECTURE §14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<herald_core::cost::CampaignCost>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitingFor {
    /// The portfolio's moving 24 h budget of unique users is spent for now.
    MessagingLimit,
}

/// `GET /v1/campaigns`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignList {
    pub campaigns: Vec<CampaignView>,
    /// More may follow: the next page is `?before=` this (with the same `status` and `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A page of the campaign list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only campaigns with this status (`draft`, `scheduled`, `running`, `paused`,
    /// `completed`, `cancelled`).
    pub status: Option<String>,
    /// At most this many (1–1000; 100 when not given).
    pub limit: Option<usize>,
    /// Those created before this campaign: the `next` of the page before.
    pub before: Option<String>,
}

/// Campaigns per page when a list does not say.
pub(crate) const LIST_PAGE: usize = 100;
/// The most campaigns one page may ask for.
pub(crate) const LIST_PAGE_MAX: usize = 1000;

/// A page of campaigns, newest first, with the status `params` ask for, and the cursor of the
/// next page when there may be one. The store is read a page at a time, so a list of any
/// length costs a page's memory.
pub(crate) async fn campaign_page<S: Store>(
    store: &S,
    params: &ListParams,
) -> Result<(Vec<Campaign>, Option<CampaignId>), ApiError> {
    let limit = params.limit.unwrap_or(LIST_PAGE);
    if !(1..=LIST_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit: {limit} is not between 1 and {LIST_PAGE_MAX}"
        )));
    }
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(CampaignStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "status: {s:?} is none of {}",
                CampaignStatus::ALL.map(|s| s.to_string()).join(", ")
            ))
        })?),
    };
    let mut cursor = match params.before.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            CampaignId::new(raw).map_err(|e| ApiError::invalid(format!("before: {raw:?}: {e}")))?,
        ),
    };
    let mut found = Vec::new();
    loop {
        let page = store.list_campaigns_page(cursor.as_ref(), limit).await?;
        let last = page.len() < limit;
        for c in page {
            cursor = Some(c.id.clone());
            if status.is_none_or(|s| c.status == s) {
                found.push(c);
                if found.len() == limit {
                    return Ok((found, cursor));
                }
            }
        }
        if last {
            return Ok((found, None));
        }
    }
}

/// A campaign with its stats and its place in the messaging limit, as the API shows it.
pub(crate) async fn view<S: Store>(
    state: &ApiState<S>,
    c: &Campaign,
) -> Result<CampaignView, ApiError> {
    let stats = state.store.stats(&c.id).await?;
    let limit = limit::view(&*state.store, &state.messaging_limit, c, stats.pending).await?;
    let cost = state.cost.as_ref().map(|cost| cost.view(&c.spec, &stats));
    let waiting = limit
        .as_ref()
        .is_some_and(|l| l.waiting > 0 && c.status == CampaignStatus::Running);
    // A scheduled campaign past its time waits for its first recipients (the sweeps start
    // it then).
    let due_empty = c.status == CampaignStatus::Scheduled
        && stats.recipients == 0
        && c.spec.schedule_at.is_some_and(|at| at <= (state.clock)());
    let status_reason = match &c.pause_reason {
        Some(r) => Some(r.to_string()),
        None if due_empty => {
            Some("its time has passed with no recipient: it starts once some are uploaded".into())
        }
        None => None,
    };
    Ok(CampaignView {
        campaign: c.clone(),
        stats: StatsView { stats, cost },
        status_reason,
        waiting_for: waiting.then_some(WaitingFor::MessagingLimit),
        messaging_limit: limit,
    })
}

/// Create a campaign from a campaign spec. The message is checked (and, when an account is
/// configured, its template looked up at Meta) before anything is stored; with
/// `schedule_at` the campaign is scheduled at once.
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns",
    request_body(content = herald_core::CampaignSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = CampaignView),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "The spec or the message breaks a rule; the message names the field", body = ErrorBody)))]
async fn create<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_type(&headers, "application/json")?;
    let new = prepare(&body, &state.default_phone_number_id, (state.clock)())?;
    let campaign = store_new(&state, new).await?;
    let campaign = schedule_if_asked(&state, campaign).await?;
    let v = view(&state, &campaign).await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// Stores a prepared campaign, its template's category looked up at Meta when it can be.
async fn store_new<S: Store>(state: &ApiState<S>, new: NewCampaign) -> Result<Campaign, ApiError> {
    let new = priced(state, new).await?;
    stored(&*state.store, new).await
}

/// A new campaign's template checked with Meta (when an account is configured) and its
/// category noted: what can refuse a campaign before it is made.
async fn priced<S: Store>(
    state: &ApiState<S>,
    mut new: NewCampaign,
) -> Result<NewCampaign, ApiError> {
    if let (Some(t), Some(key)) = (&state.templates, &new.template) {
        new.spec.template_category = t.check(key, &new.spec.message).await?;
    }
    // What the campaign is first priced at: a later re-categorisation shows as drift.
    new.spec.priced_category = new.spec.template_category.clone();
    Ok(new)
}

/// Makes a campaign checked by [`priced`].
pub(crate) async fn stored<S: Store>(store: &S, new: NewCampaign) -> Result<Campaign, ApiError> {
    let campaign = store.create_campaign(new).await?;
    tracing::info!(campaign = %campaign.id, name = %campaign.name, "campaign created");
    Ok(campaign)
}

/// A campaign with `schedule_at` is scheduled once it is stored (and filled).
async fn schedule_if_asked<S: Store>(
    state: &ApiState<S>,
    campaign: Campaign,
) -> Result<Campaign, ApiError> {
    if campaign.spec.schedule_at.is_none() {
        return Ok(campaign);
    }
    state
        .store
        .transition(&campaign.id, CampaignAction::Schedule, None)
        .await?;
    Ok(state.store.campaign(&campaign.id).await?)
}

/// A follow-up campaign and what it picked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FollowUpView {
    pub campaign: CampaignView,
    pub picked: follow_up::Picked,
}

/// Create a campaign for some of another campaign's recipients, picked by outcome, without
/// a CSV. Its message's placeholders are filled from the values each recipient had; never
/// picked: permanent failures (131026…), outcomes in doubt, numbers on the suppression list.
/// The new campaign is a draft (or scheduled, with `schedule_at`): start it as any other.
/// An audience nobody in it can be sent to makes no campaign (422 `no_recipients`).
#[utoipa::path(post, path = "/v1/campaigns/{id}/follow-up", tag = "campaigns",
    params(("id" = String, Path, description = "The first campaign's id")),
    request_body(content = follow_up::FollowUpBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and filled", body = FollowUpView),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "A bad audience or spec, a placeholder the first campaign's rows do not have, or an audience nobody can be sent to (`no_recipients`: no campaign is made)", body = ErrorBody)))]
async fn follow_up<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_type(&headers, "application/json")?;
    let source = state.store.campaign(&campaign_id(&id)?).await?;
    let body: follow_up::FollowUpBody = parse_json(&body)?;
    let new = prepare(
        body.campaign.get().as_bytes(),
        &source.phone_number_id,
        (state.clock)(),
    )
    .map_err(|e| ApiError {
        message: format!("campaign.{}", e.message),
        ..e
    })?;
    let template = new
        .spec
        .compile()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let columns = follow_up::Columns::map(&source, &template)?;
    let new = priced(&state, new).await?;
    // Made with its first recipients (an audience nobody is in makes no campaign), and filled
    // by a task of its own: a client that goes away does not leave it half filled (nor
    // unscheduled).
    let now = (state.clock)();
    let task_state = state.clone();
    let filled = tokio::spawn(async move {
        let st = &task_state;
        let mut target = follow_up::Target::new(new);
        let done = async {
            let picked = follow_up::fill(
                &*st.store,
                &source,
                &body,
                &columns,
                &template,
                now,
                &mut target,
            )
            .await?;
            let Some(campaign) = target.made.clone() else {
                return Err(picked.nobody(&source, body.audience));
            };
            tracing::info!(campaign = %campaign.id, from = %source.id, audience = ?body.audience, added = picked.added, "follow-up campaign filled");
            let campaign = schedule_if_asked(st, campaign).await?;
            Ok::<_, ApiError>((campaign, picked))
        }
        .await;
        match done {
            Ok(made) => Ok(made),
            Err(e) => Err(target.abandon(&*st.store, e).await),
        }
    });
    let (campaign, picked) = filled.await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })??;
    let v = FollowUpView {
        campaign: view(&state, &campaign).await?,
        picked,
    };
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// An approved template a campaign can send.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// How many parameters its body takes.
    pub body_parameters: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TemplateListView {
    pub templates: Vec<TemplateView>,
}

/// Pages of Meta's template list read at most (100 templates each).
const TEMPLATE_PAGES: usize = 20;
/// How far in the past a campaign's `schedule_at` may be (the caller's clock, a form filled in
/// a moment ago): it then starts at once.
const SCHEDULE_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// The account's approved templates (`whatsapp.waba_id`), as Meta lists them now.
#[utoipa::path(get, path = "/v1/templates", tag = "campaigns",
    responses(
        (status = 200, description = "The approved templates", body = TemplateListView),
        (status = 502, description = "Meta could not be asked", body = ErrorBody),
        (status = 503, description = "No account (whatsapp.waba_id) or token configured", body = ErrorBody)))]
async fn templates<S: Store>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    let Some(t) = &state.templates else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no WhatsApp Business Account is configured (whatsapp.waba_id and a token): write the \
             message as JSON",
        ));
    };
    let list = t
        .client
        .templates(&t.waba_id, TEMPLATE_PAGES)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not list the templates at Meta");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "meta_unavailable",
                format!("Meta's template list could not be read: {e}"),
            )
        })?;
    let mut templates: Vec<TemplateView> = list
        .iter()
        .filter(|t| t.status.eq_ignore_ascii_case("APPROVED"))
        .map(|t| TemplateView {
            name: t.name.clone(),
            language: t.language.clone(),
            category: t.category.to_ascii_uppercase(),
            body_parameters: t.body_parameters(),
        })
        .collect();
    templates.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
    Ok(axum::Json(TemplateListView { templates }).into_response())
}

/// What a valid campaign spec needs from its recipients' CSV.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validation {
    /// The columns the message's placeholders name: each must be in the CSV.
    pub columns: Vec<String>,
    /// The template's category at Meta, when it could be looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_category: Option<String>,
}

/// Check a campaign spec by the rules `POST /v1/campaigns` applies, storing nothing.
#[utoipa::path(post, path = "/v1/campaigns/validate", tag = "campaigns",
    request_body(content = herald_core::CampaignSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Valid", body = Validation),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "The spec or the message breaks a rule; the message names the field", body = ErrorBody)))]
async fn validate<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_type(&headers, "application/json")?;
    let new = prepare(&body, &state.default_phone_number_id, (state.clock)())?;
    let template_category = match (&state.templates, &new.template) {
        (Some(t), Some(key)) => t.check(key, &new.spec.message).await?,
        _ => None,
    };
    let columns = new
        .spec
        .compile()
        .map(|t| t.placeholders().iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    Ok(axum::Json(Validation {
        columns,
        template_category,
    })
    .into_response())
}

/// Read the start of a CSV file as an upload would (the phone column found, numbers
/// normalised, the message filled in for the first recipients, the first rejects), storing
/// nothing. Send the first rows only: the body is limited to `server.max_body_bytes`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/preview", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), UploadParams),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "How Herald reads the rows", body = crate::server::upload::UploadPreview),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 413, description = "Over server.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Not sent as text/csv, or a Content-Encoding other than gzip", body = ErrorBody),
        (status = 422, description = "The file cannot be used (no phone column, a placeholder's column missing, damaged gzip data)", body = ErrorBody)))]
async fn preview<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    require_type(&headers, "text/csv")?;
    let decoding = decoding(&headers)?;
    let campaign = state.store.campaign(&id).await?;
    let decoded = (body, decoding, state.max_body_bytes);
    let preview = upload::preview(&campaign, params.phone_column, decoded).await?;
    Ok(axum::Json(preview).into_response())
}

/// How a CSV body is encoded: compressed or not, and its character set (415 for what Herald
/// does not read).
fn decoding(headers: &HeaderMap) -> Result<upload::Decoding, ApiError> {
    let text = |name| (headers.get(name)).map(|v: &HeaderValue| v.to_str().unwrap_or("?"));
    upload::Decoding::of(
        text(header::CONTENT_TYPE).unwrap_or_default(),
        text(header::CONTENT_ENCODING),
    )
    .map_err(|m| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            m,
        )
    })
}

/// The body must be declared as `expected`: a web form cannot send that type cross-site
/// without the browser asking first, so a page cannot create campaigns in a user's name.
pub(crate) fn require_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as {expected} (Content-Type), not {ct:?}"),
        ))
    }
}

/// Parses and checks a campaign definition: the spec's own fields, then the message body
/// against the Cloud API's documented limits (placeholders allowed), then compiles it.
pub fn prepare(
    body: &[u8],
    default_phone_number_id: &str,
    now: jiff::Timestamp,
) -> Result<NewCampaign, ApiError> {
    let spec: CampaignSpec = parse_json(body)?;
    spec.validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    // A name goes into logs, exports and page titles as it is. (Checked for new campaigns
    // only: one stored before this rule still compiles and sends.)
    if spec.name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name: must not hold control characters (a line break, a tab, …)",
        ));
    }
    // A region libphonenumber does not know would refuse every upload: say so now.
    if let Some(region) = &spec.default_region
        && herald_loader::Normalizer::new(Some(region)).is_err()
    {
        return Err(ApiError::invalid(format!(
            "default_region: {region:?} is not a region code libphonenumber knows"
        )));
    }
    // A time already past would start the campaign at once, likely before its recipients
    // are in: a mistaken year or zone, not a wish (a minute's grace for the caller's clock).
    if let Some(at) = spec.schedule_at
        && at < now - SCHEDULE_GRACE
    {
        return Err(ApiError::invalid(format!(
            "schedule_at: {at} is in the past (it is {now} here); leave it out to start the \
             campaign by hand"
        )));
    }
    let message: herald_cloudapi::Message =
        serde_json::from_value(Value::Object(spec.message.clone()))
            .map_err(|e| ApiError::invalid(format!("message: {e}")))?;
    message
        .validate_with(herald_cloudapi::ValidateOptions {
            allow_placeholders: true,
        })
        .map_err(|e| ApiError::invalid(format!("message.{e}")))?;
    spec.compile()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let phone_number_id = spec
        .phone_number_id
        .clone()
        .unwrap_or_else(|| default_phone_number_id.to_owned());
    if phone_number_id.is_empty() {
        return Err(ApiError::invalid(
            "phone_number_id: not in the campaign and no whatsapp.phone_number_id is configured",
        ));
    }
    let template = template_key(&spec.message);
    Ok(NewCampaign {
        spec,
        phone_number_id,
        template,
    })
}

/// A JSON body as `T`; an error names the field (`mps: invalid type…`), or says the body is
/// not JSON at all.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would take a struct from an array too, and name its first element's type as the
    // problem; every body of the API is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if let Some(kind) = first.and_then(|b| json_kind(*b)) {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object ({{ … }}), not {kind}"
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            ApiError::invalid(inner.to_string())
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

/// What a JSON value that is not an object is, by its first byte (`None` for an object, or
/// for what is not JSON at all: the parser names that).
fn json_kind(first: u8) -> Option<&'static str> {
    match first {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b'-' | b'0'..=b'9' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

/// `name:language` of a template message (how template status webhooks find campaigns).
fn template_key(message: &serde_json::Map<String, Value>) -> Option<String> {
    let t = message.get("template")?;
    let name = t.get("name")?.as_str()?;
    let lang = t.get("language")?.get("code")?.as_str()?;
    Some(herald_core::spec::template_key(name, lang))
}

/// The campaigns with their stats, newest first, a page at a time (100 unless `limit` says):
/// `next`, when present, asks for the page after.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    params(ListParams),
    responses(
        (status = 200, description = "The campaigns", body = CampaignList),
        (status = 400, description = "The campaign `before` names was deleted since: list from the newest again", body = ErrorBody),
        (status = 422, description = "A limit, status or cursor that cannot be used", body = ErrorBody)))]
async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let (campaigns, next) = campaign_page(&*state.store, &params).await?;
    let mut out = Vec::with_capacity(campaigns.len());
    for c in &campaigns {
        out.push(view(&state, c).await?);
    }
    Ok(axum::Json(CampaignList {
        campaigns: out,
        next: next.map(|id| id.to_string()),
    })
    .into_response())
}

/// One campaign with its stats, its cost and its place in the messaging limit.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "No such campaign", body = ErrorBody)))]
async fn show<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    let c = state.store.campaign(&id).await?;
    Ok(axum::Json(view(&state, &c).await?).into_response())
}

/// What `DELETE /v1/campaigns/{id}` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignDeleted {
    /// The campaign's id.
    pub id: String,
    pub deleted: bool,
}

/// Deletes an ended campaign and everything Herald keeps of it: its recipients, their
/// variables and outcomes, its stats and its upload rejects. Only a completed or cancelled
/// campaign with nothing in flight or in doubt; export its failures and cost first if they
/// are wanted. Statuses and replies Meta sends for its messages afterwards are ignored.
#[utoipa::path(delete, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Deleted", body = CampaignDeleted),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Not ended, or sends of it still in flight or in doubt", body = ErrorBody)))]
async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    state.store.delete_campaign(&id).await?;
    tracing::info!(campaign = %id, "campaign deleted");
    Ok(axum::Json(CampaignDeleted {
        id: id.to_string(),
        deleted: true,
    })
    .into_response())
}

/// Liveness: the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// A campaign action.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Cancel,
}

/// What `resume` may change on the way.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// A new cost cap (a campaign paused at its `max_cost` resumes with a higher one).
    max_cost: Option<f64>,
}

/// Start, pause, resume or cancel a campaign. Only `resume` takes a body, to raise a
/// `max_cost` the campaign paused at.
#[utoipa::path(post, path = "/v1/campaigns/{id}/{action}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"),
           ("action" = Action, Path, description = "What to do")),
    request_body(content = Option<ResumeBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The campaign after the transition", body = CampaignView),
        (status = 404, description = "No such campaign or action", body = ErrorBody),
        (status = 409, description = "Not allowed from the campaign's status, or a start or resume with no recipient (`no_recipients`)", body = ErrorBody),
        (status = 422, description = "A body where none is taken, or a bad `max_cost`", body = ErrorBody)))]
async fn action<S: Store>(
    State(state): State<AppState<S>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    let resume = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeBody::default()
    } else if action == "resume" {
        require_type(&headers, "application/json")?;
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::invalid(format!("{path}: {}", e.into_inner()))
        })?
    } else {
        return Err(ApiError::invalid(format!(
            "{action} takes no body (only resume does: {{\"max_cost\": …}})"
        )));
    };
    let Ok(named) = serde_json::from_value::<Action>(Value::String(action.clone())) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no action {action:?}: use start, pause, resume or cancel"),
        ));
    };
    let (action, reason) = match named {
        Action::Start => (CampaignAction::Start, None),
        Action::Pause => (CampaignAction::Pause, Some(PauseReason::operator())),
        Action::Resume => (CampaignAction::Resume, None),
        Action::Cancel => (CampaignAction::Cancel, None),
    };
    // What a start or a resume checks first, read once.
    let before = match action {
        CampaignAction::Start | CampaignAction::Resume => Some(state.store.campaign(&id).await?),
        _ => None,
    };
    if let Some(c) = &before
        && matches!(
            (action, c.status),
            (
                CampaignAction::Start,
                CampaignStatus::Draft | CampaignStatus::Scheduled
            ) | (CampaignAction::Resume, CampaignStatus::Paused)
        )
        && state.store.stats(&id).await?.recipients == 0
    {
        // Nothing would ever complete it: it would run until cancelled (a paused one was
        // started empty by an older build).
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_recipients",
            format!(
                "campaign {id} has no recipients to send to: upload a CSV first (POST \
                 /v1/campaigns/{id}/recipients, or herald campaign upload {id} --csv FILE)"
            ),
        ));
    }
    if action == CampaignAction::Start
        && let (Some(t), Some(c)) = (&state.templates, &before)
        && let Some(key) = &c.template
    {
        // A template Meta paused or disabled since creation: the campaign cannot start.
        let now = t
            .check(key, &c.spec.message)
            .await
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "conflict", e.message))?;
        if let (Some(then), Some(now)) = (&c.spec.template_category, &now)
            && then != now
        {
            tracing::warn!(campaign = %id, template = %key, then = %then, now = %now, "the template's category changed since the campaign was created");
            // The estimate follows the category Meta has now, and shows the difference.
            let mut spec = c.spec.clone();
            spec.template_category = Some(now.clone());
            state.store.update_spec(&id, &spec).await?;
        }
    }
    // Only resume takes a body, so the campaign was read above.
    if let (Some(max_cost), Some(c)) = (resume.max_cost, before) {
        if c.status != CampaignStatus::Paused {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "campaign {id} is {}; only a paused campaign resumes",
                    c.status
                ),
            ));
        }
        let mut spec = c.spec;
        spec.max_cost = Some(max_cost);
        spec.validate()
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        state.store.update_spec(&id, &spec).await?;
        tracing::info!(campaign = %id, max_cost, "campaign cost cap changed");
    }
    let status = state.store.transition(&id, action, reason).await?;
    tracing::info!(campaign = %id, ?action, ?status, "campaign transition");
    let c = state.store.campaign(&id).await?;
    Ok(axum::Json(view(&state, &c).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UploadParams {
    /// The phone column's name, when it is not one of the usual ones.
    phone_column: Option<String>,
}

/// Add recipients from a CSV file, streamed: numbers are checked (E.164, `default_region`
/// for national ones), deduplicated and checked against the suppression list; each row's
/// values must fill the message's placeholders. Sending the same file again adds nothing.
/// The file may come compressed (`Content-Encoding: gzip`).
#[utoipa::path(post, path = "/v1/campaigns/{id}/recipients", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), UploadParams),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "What the upload did", body = UploadSummary),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 408, description = "The body stopped arriving; what was read is kept", body = ErrorBody),
        (status = 409, description = "The campaign has ended", body = ErrorBody),
        (status = 413, description = "Over server.max_upload_bytes or max_upload_recipients", body = ErrorBody),
        (status = 415, description = "Not sent as text/csv, or a Content-Encoding other than gzip", body = ErrorBody),
        (status = 422, description = "The file cannot be used (no phone column, a placeholder's column missing, damaged gzip data)", body = ErrorBody)))]
async fn recipients<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    require_type(&headers, "text/csv")?;
    let decoding = decoding(&headers)?;
    let campaign = state.store.campaign(&id).await?;
    if matches!(
        campaign.status,
        CampaignStatus::Completed | CampaignStatus::Cancelled
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "campaign {id} is {:?}; recipients can only be added before it ends",
                campaign.status
            ),
        ));
    }
    let result = upload::load(
        state.store.clone(),
        campaign,
        params.phone_column,
        (body, decoding),
        upload::Limits {
            max_bytes: state.max_upload_bytes,
            max_recipients: state.max_upload_recipients,
            max_stored_rejects: state.max_stored_rejects,
            idle: state.body_idle_timeout,
        },
    )
    .await?;
    let mut result = result;
    let campaign = state.store.campaign(&id).await?;
    let stats = state.store.stats(&id).await?;
    result.messaging_limit = limit::view(
        &*state.store,
        &state.messaging_limit,
        &campaign,
        stats.pending,
    )
    .await?;
    result.cost = (state.cost.as_ref()).map(|cost| cost.view(&campaign.spec, &stats).estimate);
    Ok(axum::Json(result).into_response())
}

/// Every failed or skipped recipient with the reason, as CSV (cells safe against formula
/// injection).
#[utoipa::path(get, path = "/v1/campaigns/{id}/failures", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "CSV: the failures and rejects", content_type = "text/csv", body = String),
        (status = 404, description = "No such campaign", body = ErrorBody)))]
async fn failures<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    state.store.campaign(&id).await?;
    let store = state.store.clone();
    // Pages of rows, each written as CSV, until the store says there are no more.
    let pages = futures::stream::unfold(Some((0u64, true)), move |cursor| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let (at, first) = cursor?;
            match store.failures(&id, at, 1000).await {
                Ok((rows, next)) => {
                    let chunk = crate::server::report::failures_csv(&rows, first);
                    Some((Ok::<_, std::io::Error>(chunk), next.map(|n| (n, false))))
                }
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "failures report cut short");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"failures.csv\"",
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// The campaign's cost as CSV, for a spreadsheet: the estimate by market, then the actual
/// cost by market and category.
#[utoipa::path(get, path = "/v1/campaigns/{id}/cost", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "CSV: the estimate and the actual cost by market", content_type = "text/csv", body = String),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 503, description = "No rate card is loaded", body = ErrorBody)))]
async fn cost_report<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    let c = state.store.campaign(&id).await?;
    let Some(cost) = &state.cost else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no rate card is loaded (see the server's log)",
        ));
    };
    let stats = state.store.stats(&id).await?;
    let csv = crate::server::report::cost_csv(&cost.view(&c.spec, &stats));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cost.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are off", body = ErrorBody)))]
async fn metrics<S: Store>(State(state): State<AppState<S>>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "metrics are off")
            .into_response();
    };
    // Set before each scrape, so the idle timeout for gauges never drops it.
    crate::telemetry::build_info();
    let mut text = handle.render();
    if let Some(campaigns) = state.campaign_metrics.as_ref().and_then(|c| c.text()) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&campaigns);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "The store is unreachable", content_type = "text/plain", body = String)))]
async fn ready<S: Store>(State(state): State<AppState<S>>) -> Response {
    if (state.ready)().await {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unreachable\n",
        )
            .into_response()
    }
}
