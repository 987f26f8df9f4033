//! The operator console at `/`: server-rendered pages (maud) with a little JavaScript that
//! calls the JSON API under `/v1` with the session cookie. Assets are built into the binary;
//! nothing is fetched from elsewhere, so the console works offline.
//!
//! Pages: sign-in, the campaigns list (filter by status), a new campaign (its spec checked
//! live by `POST /v1/campaigns/validate`), and a campaign (live progress, a chart of
//! sends/s, the delivery funnel, errors with Meta's meaning, skips, the CSV upload with a
//! preview and progress, the lifecycle buttons, the failures CSV). Each page's live part is
//! refreshed by fetching the page again and swapping it in, so what JavaScript shows is what
//! the server renders.

use std::fmt::Write as _;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use herald_core::{CampaignAction, CampaignStatus, Stats};
use herald_store::Store;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::server::api::{
    ApiError, AppState, CampaignView, LIST_PAGE_MAX, ListParams, campaign_page, keyless_guard,
    unix_now, view,
};
use crate::server::session::{Session, clear_cookie};

const CSS: &str = include_str!("console/console.css");
const JS: &str = include_str!("console/console.js");

/// The console's routes (merged beside `/v1` in the API role).
pub fn routes<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/", get(list::<S>))
        .route("/campaigns/new", get(new_campaign::<S>))
        .route("/campaigns/{id}", get(campaign::<S>))
        .route("/sign-in", get(sign_in_page::<S>).post(sign_in::<S>))
        .route("/sign-out", post(sign_out::<S>))
        .route("/assets/console.css", get(|| asset(CSS, "text/css")))
        .route("/assets/console.js", get(|| asset(JS, "text/javascript")))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Who is looking at a page.
enum Viewer {
    /// Keyless mode: a local program, no session.
    Local,
    SignedIn(Session),
}

impl Viewer {
    fn csrf(&self) -> &str {
        match self {
            Self::Local => "",
            Self::SignedIn(s) => &s.csrf,
        }
    }
}

/// Why a page is not shown.
enum Refused {
    /// No session: sign in first.
    SignIn,
    /// Keyless mode, and not a local program.
    NotLocal(ApiError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/sign-in").into_response(),
            Self::NotLocal(e) => e.into_response(),
        }
    }
}

/// The viewer, or why the page is not shown.
fn viewer<S>(state: &AppState<S>, headers: &HeaderMap) -> Result<Viewer, Refused> {
    match state.sessions() {
        None => keyless_guard(headers)
            .map(|()| Viewer::Local)
            .map_err(Refused::NotLocal),
        Some(sessions) => sessions
            .from_headers(headers, unix_now())
            .map(Viewer::SignedIn)
            .ok_or(Refused::SignIn),
    }
}

/// An HTML answer that no other site may frame, and that runs only our own script.
fn page(markup: Markup) -> Response {
    let mut r = (StatusCode::OK, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn layout(title: &str, viewer: Option<&Viewer>, main: Markup) -> Response {
    page(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(v) = viewer { meta name="csrf" content=(v.csrf()); }
                title { (title) " · Herald" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Herald" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href="/" { "Campaigns" }
                            a href="/campaigns/new" { "New campaign" }
                            @if let Viewer::SignedIn(_) = v {
                                form method="post" action="/sign-out" {
                                    input type="hidden" name="csrf" value=(v.csrf());
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main { (main) }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    key: String,
}

async fn sign_in_page<S: Store>(State(state): State<AppState<S>>) -> Response {
    if state.sessions().is_none() {
        // Keyless mode has nothing to sign in to.
        return Redirect::to("/").into_response();
    }
    sign_in_form(None)
}

fn sign_in_form(error: Option<&str>) -> Response {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            form.card method="post" action="/sign-in" {
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="current-password" required autofocus;
                @if let Some(e) = error { p.error role="alert" { (e) } }
                button type="submit" { "Sign in" }
            }
            p.hint { "The key is the server's " code { "HERALD_API_KEY" } ". Signing in sets a session cookie; the key itself is not kept in the browser." }
        },
    )
}

async fn sign_in<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let Some(sessions) = state.sessions() else {
        return Redirect::to("/").into_response();
    };
    let key = state.api_key.expose();
    if !bool::from(form.key.trim().as_bytes().ct_eq(key.as_bytes())) {
        tracing::warn!("console sign-in with a wrong key");
        let mut r = sign_in_form(Some("That is not the API key."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        sessions.set_cookie(&sessions.issue(unix_now()), &headers),
    );
    r
}

#[derive(Debug, Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    // Only the page's own form signs out (another site cannot sign a user out either).
    let session = state
        .sessions()
        .and_then(|s| s.from_headers(&headers, unix_now()));
    if let Some(s) = session
        && !bool::from(form.csrf.as_bytes().ct_eq(s.csrf.as_bytes()))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "sign out from the console's page",
        )
        .into_response();
    }
    let mut r = Redirect::to("/sign-in").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&headers));
    r
}

/// The list page's query, read leniently (a hand-edited or old link shows a list, not an
/// error): a status or size it cannot use is left out.
#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let filter = q.status.as_deref().and_then(CampaignStatus::parse);
    let q = ListParams {
        status: filter.map(|f| f.to_string()),
        limit: q
            .limit
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=LIST_PAGE_MAX).contains(n)),
        before: q.before,
    };
    let (campaigns, next) = match campaign_page(&*state.store, &q).await {
        Ok(page) => page,
        // A page after a campaign deleted since: the list from the newest.
        Err(_) if q.before.is_some() => {
            let first = filter.map_or("/".to_owned(), |f| format!("/?status={f}"));
            return axum::response::Redirect::to(&first).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let mut views = Vec::new();
    for c in &campaigns {
        match view(&state, c).await {
            Ok(v) => views.push(v),
            Err(e) => return e.into_response(),
        }
    }
    // The page after this one, with the same filter and size.
    let older = next.map(|id| {
        let mut href = format!("/?before={id}");
        if let Some(f) = filter {
            href.push_str(&format!("&status={f}"));
        }
        if let Some(n) = q.limit {
            href.push_str(&format!("&limit={n}"));
        }
        href
    });
    let main = html! {
        h1 { "Campaigns" }
        nav.filters aria-label="Filter by status" {
            a href="/" aria-current=[filter.is_none().then_some("page")] { "All" }
            @for s in CampaignStatus::ALL {
                a href={ "/?status=" (s) } aria-current=[(filter == Some(s)).then_some("page")] { (s) }
            }
        }
        div #live data-live="2000" {
            @if views.is_empty() {
                p.empty { "No campaigns" @if let Some(f) = filter { " that are " (f) } ". " a href="/campaigns/new" { "Create one" } "." }
            } @else {
                div.scroll {
                    table.campaigns {
                        thead { tr {
                            th scope="col" { "Campaign" } th scope="col" { "Status" } th scope="col" { "Progress" }
                            th scope="col" { "Rate" } th scope="col" { "Accepted" } th scope="col" { "Delivered" }
                            th scope="col" { "Read" } th scope="col" { "Failed" } th scope="col" { "Cost" }
                        } }
                        tbody {
                            @for v in &views { (list_row(v)) }
                        }
                    }
                }
            }
            @if let Some(older) = &older {
                p { a href=(older) rel="next" { "Older campaigns →" } }
            }
        }
    };
    layout("Campaigns", Some(&viewer), main)
}

fn list_row(v: &CampaignView) -> Markup {
    let c = &v.campaign;
    let s = &v.stats.stats;
    html! {
        tr {
            td { a href={ "/campaigns/" (c.id) } { (c.name) } br; small.mono { (c.id) } }
            td { (badge(c.status)) }
            td { (progress(s)) }
            td.num { (rate(v)) }
            td.num { (s.accepted) } td.num { (s.delivered) } td.num { (s.read) } td.num { (s.failed) }
            td.num { (cost(v)) }
        }
    }
}

fn badge(s: CampaignStatus) -> Markup {
    html! { span class={ "badge " (s) } { (s) } }
}

/// Recipients whose outcome is known, of all recipients.
fn progress(s: &Stats) -> Markup {
    let done = s.recipients.saturating_sub(s.unfinished());
    let pct = if s.recipients == 0 {
        0.0
    } else {
        100.0 * done as f64 / s.recipients as f64
    };
    html! {
        div.progress {
            progress max=(s.recipients.max(1)) value=(done) aria-label="Recipients done" {}
            span { (format!("{pct:.0}%")) " · " (done) " of " (s.recipients) }
        }
    }
}

fn rate(v: &CampaignView) -> String {
    match v.campaign.spec.mps {
        Some(m) => format!("{m}/s"),
        None => "number's".into(),
    }
}

fn cost(v: &CampaignView) -> String {
    let Some(c) = &v.stats.cost else {
        return "–".into();
    };
    let mut out = format!("≤ {} {}", c.estimate.high, c.currency);
    if c.actual.charged_messages > 0 {
        let _ = write!(out, " · {} so far", c.actual.total);
    }
    out
}

async fn new_campaign<S: Store>(State(state): State<AppState<S>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let example = serde_json::json!({
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{first_name}}"}]}]}
    });
    let example = serde_json::to_string_pretty(&example).unwrap_or_default();
    let main = html! {
        h1 { "New campaign" }
        form #new-campaign.card novalidate {
            label for="name" { "Name" }
            input #name name="name" required maxlength="200" autocomplete="off";
            label for="phone_number_id" { "Phone number id" }
            input #phone_number_id name="phone_number_id" inputmode="numeric" placeholder=(state.default_phone_number_id);
            div #template-picker hidden {
                label for="template" { "Template " small { "(the account's approved templates)" } }
                select #template name="template" { option value="" { "Choose one to start from…" } }
            }
            label for="message" { "Message " small { "(a Cloud API message body; " code { "{{column}}" } " fills from the CSV)" } }
            textarea #message name="message" rows="12" spellcheck="false" { (example) }
            div.row {
                div { label for="default_region" { "Default region" } input #default_region name="default_region" maxlength="2" placeholder="US"; }
                div { label for="mps" { "Messages per second" } input #mps name="mps" type="number" min="1" max="1000" placeholder="the number's"; }
                div { label for="schedule_at" { "Start at (your time)" } input #schedule_at name="schedule_at" type="datetime-local"; }
            }
            fieldset.row {
                legend { "Send window " small { "(optional: hours recipients may be messaged; outside them, sends wait)" } }
                div { label for="window_start" { "From" } input #window_start name="window_start" type="time"; }
                div { label for="window_end" { "Until" } input #window_end name="window_end" type="time"; }
                div { label for="window_zone" { "Time zone" } input #window_zone name="window_zone" placeholder="each recipient's own" autocomplete="off"; }
            }
            p #check.status role="status" aria-live="polite" {}
            button type="submit" { "Create" }
        }
    };
    layout("New campaign", Some(&viewer), main)
}

async fn campaign<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let found = match herald_core::CampaignId::new(&id) {
        Ok(id) => state.store.campaign(&id).await.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            e.to_string(),
        )),
    };
    let v = match found {
        Ok(c) => view(&state, &c).await,
        Err(e) => Err(e),
    };
    let v = match v {
        Ok(v) => v,
        Err(e) => {
            let main = html! { h1 { "Campaign not found" } p.error { (e.message) } p { a href="/" { "All campaigns" } } };
            let mut r = layout("Not found", Some(&viewer), main);
            *r.status_mut() = e.status;
            return r;
        }
    };
    let c = &v.campaign;
    let main = html! {
        p.crumbs { a href="/" { "Campaigns" } " / " span.mono { (c.id) } }
        h1 { (c.name) }
        div #live data-live="1000" data-accepted=(v.stats.stats.accepted + v.stats.stats.failed_before_accept) data-final=(c.status.is_final()) {
            (campaign_live(&v))
        }
        section aria-labelledby="rate-h" {
            h2 #rate-h { "Sends per second" }
            svg #chart role="img" aria-label="Sends per second over the last minutes" viewBox="0 0 600 120" preserveAspectRatio="none" {}
            p.hint #chart-note { "Measured while this page is open." }
        }
        @if !c.status.is_final() {
            section #upload aria-labelledby="upload-h" data-campaign=(c.id) {
                h2 #upload-h { "Recipients" }
                label.drop for="csv" {
                    "Drop a CSV file here, or " span.link { "choose one" } "."
                    input #csv type="file" accept=".csv,text/csv";
                }
                label for="charset" { "Character set " }
                select #charset name="charset" {
                    option value="" selected { "UTF-8 (or UTF-16 with its mark)" }
                    option value="windows-1252" { "Windows-1252: Western Europe, the Americas (Excel's CSV)" }
                    option value="windows-1250" { "Windows-1250: Central Europe" }
                    option value="windows-1251" { "Windows-1251: Cyrillic" }
                    option value="windows-1254" { "Windows-1254: Turkish" }
                    option value="windows-1256" { "Windows-1256: Arabic" }
                }
                div #preview {}
                div.row { button #upload-go type="button" hidden { "Upload" } progress #upload-progress max="100" value="0" hidden {} }
                div #upload-result role="status" aria-live="polite" {}
            }
        }
        p { a.button href={ "/v1/campaigns/" (c.id) "/failures" } download="failures.csv" { "Download failures (CSV)" } }
        (follow_up_form(&v))
    };
    layout(&c.name, Some(&viewer), main)
}

/// A new campaign for some of this one's recipients, picked by outcome.
fn follow_up_form(v: &CampaignView) -> Markup {
    let c = &v.campaign;
    let columns: Vec<String> = (c.spec.compile().ok())
        .map(|t| {
            t.placeholders()
                .iter()
                .map(|p| format!("{{{{{}}}}}", p.name))
                .collect()
        })
        .unwrap_or_default();
    let message = serde_json::to_string_pretty(&c.spec.message).unwrap_or_default();
    let audiences = [
        ("not_read", "Delivered, not read"),
        ("not_delivered", "Accepted, not delivered after some hours"),
        (
            "failed_retryable",
            "Failed for a reason that was not theirs",
        ),
        (
            "frequency_capped",
            "Held back by Meta's marketing limit (131049)",
        ),
        ("replied", "Wrote back"),
    ];
    html! {
        section aria-labelledby="follow-h" {
            h2 #follow-h { "Follow up" }
            form #follow-up.card data-campaign=(c.id) novalidate {
                label for="audience" { "Recipients who…" }
                select #audience name="audience" {
                    @for (value, label) in audiences { option value=(value) { (label) } }
                }
                label for="after_hours" { "Hours after Meta accepted it (not delivered)" }
                input #after_hours name="after_hours" type="number" min="0" value="24";
                label for="fu_name" { "Name" }
                input #fu_name name="name" required value={ (c.name) " (follow-up)" };
                label for="fu_message" {
                    "Message " small { "(placeholders: " @if columns.is_empty() { "none" } @else { (columns.join(", ")) } ")" }
                }
                textarea #fu_message name="message" rows="10" spellcheck="false" { (message) }
                p.hint { "Never included: permanent failures (131026…), outcomes in doubt, and numbers on the suppression list." }
                p #follow-check.status role="status" aria-live="polite" {}
                button type="submit" { "Create follow-up" }
            }
        }
    }
}

/// The part of the campaign page that changes: status, actions, counts, funnel, errors.
fn campaign_live(v: &CampaignView) -> Markup {
    let c = &v.campaign;
    let s = &v.stats.stats;
    // The buttons are the moves the lifecycle allows from here; a campaign with no recipient
    // does not start or resume (the API refuses: nothing would ever complete it).
    let empty = s.recipients == 0;
    let actions: Vec<(&str, &str)> = [
        (CampaignAction::Start, "Start"),
        (CampaignAction::Pause, "Pause"),
        (CampaignAction::Resume, "Resume"),
        (CampaignAction::Cancel, "Cancel"),
    ]
    .into_iter()
    .filter(|(a, _)| {
        c.status.apply(*a).is_ok()
            && !(empty && matches!(a, CampaignAction::Start | CampaignAction::Resume))
    })
    .map(|(a, label)| (a.as_str(), label))
    .collect();
    let funnel = [
        ("Recipients", s.recipients),
        ("Accepted", s.accepted),
        ("Sent", s.sent),
        ("Delivered", s.delivered),
        ("Read", s.read),
        ("Replied", s.replied),
    ];
    let skipped: Vec<(&str, u64)> = herald_core::SkipReason::ALL
        .iter()
        .map(|r| (r.as_str(), s.skipped.get(*r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    html! {
        div.statusline {
            (badge(c.status))
            @if let Some(r) = &v.status_reason { span.reason { (r) } }
            @if v.waiting_for.is_some() { span.reason { "waiting for the messaging limit" } }
            @if empty && c.status == CampaignStatus::Draft { span.reason { "no recipients yet: upload a CSV to start it" } }
            @if empty && c.status == CampaignStatus::Scheduled && v.status_reason.is_none() { span.reason { "no recipients yet: it starts at its time once a CSV is uploaded" } }
            @if let Some(w) = &c.spec.send_window {
                span.reason {
                    "sends " (w.start) "–" (w.end) " "
                    (w.time_zone.as_deref().map_or("in each recipient's time zone".to_owned(), |z| format!("{z} time")))
                    @for (region, zone) in &w.zones { " · " (region) ": " (zone) }
                }
            }
            span.actions {
                @for (action, label) in &actions {
                    button type="button" data-action=(action) data-campaign=(c.id) class=[(*action == "cancel").then_some("danger")] { (label) }
                }
                // An ended campaign can be deleted (the API refuses, saying why, while sends
                // of it are still in flight or in doubt).
                @if c.status.is_final() {
                    button type="button" data-delete=(c.id) class="danger" { "Delete" }
                }
            }
        }
        (progress(s))
        dl.counts {
            div { dt { "Pending" } dd #n-pending { (s.pending) } }
            @if c.spec.send_window.is_some() {
                div { dt { "Waiting for send window" } dd #n-window { (s.waiting_for_send_window) } }
            }
            div { dt { "Sending" } dd { (s.in_flight) } }
            div { dt { "In doubt" } dd #n-in-doubt { (s.in_doubt) } }
            div { dt { "Accepted" } dd #n-accepted { (s.accepted) } }
            div { dt { "Failed" } dd #n-failed { (s.failed) } }
            div { dt { "Skipped" } dd { (s.skipped_at_send) } }
            div { dt { "Cancelled" } dd { (s.cancelled) } }
            div { dt { "Rate" } dd { (rate(v)) } }
            div { dt { "Cost" } dd { (cost(v)) } }
        }
        section aria-labelledby="funnel-h" {
            h2 #funnel-h { "Delivery" }
            table.funnel {
                @for (label, n) in funnel {
                    tr {
                        th scope="row" { (label) }
                        td { progress max=(s.recipients.max(1)) value=(n.min(s.recipients)) aria-label=(label) {} }
                        td.num { (n) }
                    }
                }
            }
        }
        @if !s.errors.is_empty() {
            section aria-labelledby="errors-h" {
                h2 #errors-h { "Errors" }
                table { thead { tr { th scope="col" { "Code" } th scope="col" { "Meaning" } th.num scope="col" { "Recipients" } } }
                    tbody { @for (code, n) in &s.errors {
                        tr { td.mono { (code) } td { (code.parse().ok().and_then(herald_cloudapi::meaning).unwrap_or("Not in Herald's table")) } td.num { (n) } }
                    } }
                }
            }
        }
        @if !skipped.is_empty() {
            section aria-labelledby="skipped-h" {
                h2 #skipped-h { "Skipped" }
                table { tbody { @for (reason, n) in &skipped { tr { td { (reason.replace('_', " ")) } td.num { (n) } } } } }
            }
        }
    }
}
