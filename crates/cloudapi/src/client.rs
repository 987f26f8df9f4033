//! The Graph API client: one pooled reqwest client over rustls, no automatic retries.
//!
//! Retrying a send is the sender's decision, made from the [`ErrorClass`] every error carries:
//! a silent retry here could deliver a message twice. Errors never carry the request URL (the
//! token-debug call puts a token in the query string) and never print a token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;

use crate::class::{ErrorClass, TransportFailure};
use crate::departure::{Departure, NotedBody};
use crate::message::SendRequest;
use crate::response::{
    DebugTokenResponse, ErrorBody, GraphError, PhoneNumberInfo, SendResponse, TemplateInfo,
    TemplateList, TokenInfo,
};
use crate::secret::Secret;

pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v21.0";
const PHONE_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,status,code_verification_status,name_status,platform_type,throughput,whatsapp_business_manager_messaging_limit";

/// Everything the client needs; the binary builds it from configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://graph.facebook.com`, or the simulator's URL.
    pub api_base: String,
    pub api_version: String,
    pub access_token: Secret,
    /// The whole request, from connect to the last byte of the answer.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle connections kept per host; size it for the sender's in-flight limit.
    pub max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_base: DEFAULT_API_BASE.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            access_token: Secret::default(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_idle_per_host: 256,
        }
    }
}

/// Why a call failed. Every variant knows its [`ErrorClass`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Meta answered with an error body.
    #[error("Cloud API error {} ({class}, HTTP {status})", error.code)]
    Api {
        status: u16,
        error: Box<GraphError>,
        class: ErrorClass,
    },
    /// The request failed below the Graph API.
    #[error("{failure}")]
    Transport {
        failure: TransportFailure,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("invalid client configuration: {0}")]
    Config(String),
    #[error("the request body could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Error {
    /// What the sender should do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { class, .. } => *class,
            Self::Transport { failure, .. } => failure.class(),
            // Nothing was sent; the same request would fail the same way.
            Self::Config(_) | Self::Encode(_) => ErrorClass::CampaignFatal,
        }
    }

    /// The Cloud API error code, when Meta gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    pub fn graph_error(&self) -> Option<&GraphError> {
        match self {
            Self::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.class().retry_after()
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectFailed => f.write_str("could not connect (the request was not sent)"),
            Self::TimedOut => f.write_str("timed out (the request may have been processed)"),
            Self::ConnectionLost => {
                f.write_str("connection lost (the request may have been processed)")
            }
            Self::HttpStatus(s) => write!(
                f,
                "HTTP {s} without a Graph API error body (the request may have been processed)"
            ),
            Self::UnreadableSuccess => f.write_str(
                "a success status with an unreadable body (the message may have been accepted)",
            ),
        }
    }
}

/// What the sender needs of the Cloud API: sending one message body. [`Client`] does it over
/// HTTP; the simulator offers an in-process one, so tests can run with tokio's clock paused.
pub trait Messages: Send + Sync + 'static {
    /// `POST /{version}/{phone_number_id}/messages` with a body already serialised.
    fn send_raw(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<SendResponse, Error>> + Send;

    /// The same, noting in `departure` when the request really left, where that can be told
    /// (an HTTP client: when the connection took the body). Stand-ins that cannot tell note
    /// nothing, and the caller takes the request to have left when it was made.
    fn send_noted(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
        departure: &Departure,
    ) -> impl std::future::Future<Output = Result<SendResponse, Error>> + Send {
        let _ = departure;
        self.send_raw(phone_number_id, body)
    }
}

impl Messages for Client {
    async fn send_raw(&self, phone_number_id: &str, body: Vec<u8>) -> Result<SendResponse, Error> {
        Client::send_raw(self, phone_number_id, body).await
    }

    async fn send_noted(
        &self,
        phone_number_id: &str,
        body: Vec<u8>,
        departure: &Departure,
    ) -> Result<SendResponse, Error> {
        Client::send_noted(self, phone_number_id, body, departure).await
    }
}

impl Error {
    /// The error a Graph error body stands for, classified by its code (what [`Client`]
    /// answers for a refusal; in-process stand-ins build theirs with it).
    pub fn from_graph(status: u16, error: GraphError) -> Self {
        Self::Api {
            status,
            class: ErrorClass::classify(error.code, error.is_transient),
            error: Box::new(error),
        }
    }
}

/// A reqwest builder with the TLS crypto provider installed (rustls with ring) and no
/// automatic retries. Every HTTP client in Herald starts from this: reqwest panics when a
/// client is built before a provider is installed.
pub fn http_builder() -> reqwest::ClientBuilder {
    // Several crates may race to install the process-wide provider; any one is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .tcp_nodelay(true)
}

/// The same, for requests to `target` (a URL). A target on this machine (the simulator, a
/// local Herald) is always reached directly: a proxy the environment names (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, which Herald honours for Meta's API) could not reach it, and
/// would see its traffic.
pub fn http_builder_for(target: &str) -> reqwest::ClientBuilder {
    let builder = http_builder();
    if is_loopback_url(target) {
        builder.no_proxy()
    } else {
        builder
    }
}

/// Whether `url`'s host is this machine: `localhost`, `127.0.0.0/8` or `::1`. (Not names
/// under `localhost`: a resolver may send those to DNS.) Not a URL: no.
pub fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.') == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A Cloud API client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    version: String,
    token: Secret,
    auth: HeaderValue,
    /// Each phone number's messages URL, parsed once: parsing one (host, IDNA and path
    /// rules) cost more of a send's CPU than anything else of the request's making.
    messages_urls: Arc<RwLock<HashMap<Box<str>, url::Url>>>,
}

/// The most phone numbers whose messages URL is kept parsed; beyond them each send parses
/// its own (a deployment has a few numbers, and the map's memory stays bounded whatever a
/// caller passes).
const MESSAGES_URLS_KEPT: usize = 1024;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("version", &self.version)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Self, Error> {
        let base = cfg.api_base.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base)
            .map_err(|e| Error::Config(format!("api_base {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "api_base {base:?} must be http or https"
            )));
        }
        if cfg.api_version.is_empty() || cfg.api_version.contains('/') {
            return Err(Error::Config(format!(
                "api_version {:?} must look like \"v21.0\"",
                cfg.api_version
            )));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.access_token.expose()))
            .map_err(|_| {
                Error::Config("the access token has characters a header cannot carry".into())
            })?;
        auth.set_sensitive(true);
        let http = http_builder_for(&base)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.connect_timeout.min(cfg.request_timeout))
            .pool_max_idle_per_host(cfg.max_idle_per_host)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "could not build the HTTP client: {}",
                    e.without_url()
                ))
            })?;
        Ok(Self {
            http,
            base,
            version: cfg.api_version.clone(),
            token: cfg.access_token.clone(),
            auth,
            messages_urls: Arc::default(),
        })
    }

    /// `POST /{version}/{phone_number_id}/messages` with a typed body.
    pub async fn send(
        &self,
        phone_number_id: &str,
        body: &SendRequest,
    ) -> Result<SendResponse, Error> {
        let bytes = serde_json::to_vec(body)?;
        self.send_raw(phone_number_id, bytes).await
    }

    /// The same with a body already serialised (the sender renders bodies from compiled
    /// templates and never builds the typed form).
    pub async fn send_raw(
        &self,
        phone_number_id: &str,
        body: impl Into<Bytes>,
    ) -> Result<SendResponse, Error> {
        let request = self.messages_request(phone_number_id)?.body(body.into());
        self.execute(request).await
    }

    /// The same, noting in `departure` when the request went to the connection (see
    /// [`Departure`]): a paced sender learns whether it left later than it was let go.
    pub async fn send_noted(
        &self,
        phone_number_id: &str,
        body: impl Into<Bytes>,
        departure: &Departure,
    ) -> Result<SendResponse, Error> {
        let body = reqwest::Body::wrap(NotedBody::new(body.into(), departure));
        let request = self.messages_request(phone_number_id)?.body(body);
        self.execute(request).await
    }

    fn messages_request(&self, phone_number_id: &str) -> Result<reqwest::RequestBuilder, Error> {
        let url = self.messages_url(phone_number_id)?;
        Ok(self
            .http
            .post(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json")))
    }

    /// `{base}/{version}/{phone_number_id}/messages`, parsed once per number.
    fn messages_url(&self, phone_number_id: &str) -> Result<url::Url, Error> {
        if let Some(url) = self
            .messages_urls
            .read()
            .ok()
            .and_then(|kept| kept.get(phone_number_id).cloned())
        {
            return Ok(url);
        }
        let url = url::Url::parse(&format!(
            "{}/{}/{}/messages",
            self.base,
            self.version,
            path_id(phone_number_id)?
        ))
        .map_err(|e| Error::Config(e.to_string()))?;
        if let Ok(mut kept) = self.messages_urls.write()
            && kept.len() < MESSAGES_URLS_KEPT
        {
            kept.insert(phone_number_id.into(), url.clone());
        }
        Ok(url)
    }

    /// `GET /{version}/{phone_number_id}?fields=…`: status, quality rating, throughput.
    pub async fn phone_number_info(&self, phone_number_id: &str) -> Result<PhoneNumberInfo, Error> {
        let url = format!(
            "{}/{}/{}?fields={PHONE_FIELDS}",
            self.base,
            self.version,
            path_id(phone_number_id)?
        );
        self.execute(self.http.get(url).header(AUTHORIZATION, self.auth.clone()))
            .await
    }

    /// A template of the WhatsApp Business Account by name and language, as Meta lists it
    /// (`GET /{waba_id}/message_templates?name=…`); `None` when there is none.
    pub async fn template(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
    ) -> Result<Option<TemplateInfo>, Error> {
        let mut url = self.templates_url(waba_id)?;
        url.query_pairs_mut()
            .append_pair("name", name)
            .append_pair("fields", "name,language,status,category,components")
            .append_pair("limit", "100");
        let list: TemplateList = self
            .execute(self.http.get(url).header(AUTHORIZATION, self.auth.clone()))
            .await?;
        Ok(list
            .data
            .into_iter()
            .find(|t| t.name == name && t.language == language))
    }

    /// The account's templates, every page up to `max_pages` of 100 (Meta's list is cursor
    /// paged; the cursor, not the `next` link Meta sends, is followed, so every request goes
    /// to the configured base).
    pub async fn templates(
        &self,
        waba_id: &str,
        max_pages: usize,
    ) -> Result<Vec<TemplateInfo>, Error> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..max_pages {
            let mut url = self.templates_url(waba_id)?;
            url.query_pairs_mut()
                .append_pair("fields", "name,language,status,category,components")
                .append_pair("limit", "100");
            if let Some(a) = &after {
                url.query_pairs_mut().append_pair("after", a);
            }
            let page: TemplateList = self
                .execute(self.http.get(url).header(AUTHORIZATION, self.auth.clone()))
                .await?;
            out.extend(page.data);
            after = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors)
                .and_then(|c| c.after);
            if after.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// `{base}/{version}/{waba_id}/message_templates`.
    fn templates_url(&self, waba_id: &str) -> Result<url::Url, Error> {
        url::Url::parse(&format!(
            "{}/{}/{}/message_templates",
            self.base,
            self.version,
            path_id(waba_id)?
        ))
        .map_err(|e| Error::Config(e.to_string()))
    }

    /// `GET /debug_token`: whether the token is valid, when it expires, and its scopes.
    pub async fn debug_token(&self) -> Result<TokenInfo, Error> {
        let mut url = url::Url::parse(&format!("{}/debug_token", self.base))
            .map_err(|e| Error::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("input_token", self.token.expose())
            .append_pair("access_token", self.token.expose());
        let r: DebugTokenResponse = self.execute(self.http.get(url)).await?;
        Ok(r.data)
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await;
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = herald_core::millis(started.elapsed()),
            "graph api call"
        );
        if status.is_success() {
            let body = body.map_err(|e| Error::Transport {
                failure: TransportFailure::UnreadableSuccess,
                source: Some(e.without_url()),
            })?;
            return serde_json::from_slice(&body).map_err(|_| Error::Transport {
                failure: TransportFailure::UnreadableSuccess,
                source: None,
            });
        }
        let parsed = body.ok().as_deref().and_then(ErrorBody::parse);
        Err(match parsed {
            Some(error) => Error::from_graph(status.as_u16(), error),
            None => Error::Transport {
                failure: TransportFailure::HttpStatus(status.as_u16()),
                source: None,
            },
        })
    }
}

/// A phone number id goes into the URL path: digits only, so nothing can be injected.
fn path_id(id: &str) -> Result<&str, Error> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "phone number id {id:?} must be the numeric id Meta assigns"
        )));
    }
    Ok(id)
}

fn transport(e: reqwest::Error) -> Error {
    let e = e.without_url();
    // A connect error (including a connect timeout) means nothing was written, so a retry
    // cannot duplicate. Anything else may have reached Meta.
    let failure = if e.is_connect() {
        TransportFailure::ConnectFailed
    } else if e.is_timeout() {
        TransportFailure::TimedOut
    } else {
        TransportFailure::ConnectionLost
    };
    Error::Transport {
        failure,
        source: Some(e),
    }
}
