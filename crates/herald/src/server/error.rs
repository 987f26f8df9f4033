//! The API's error answer, shared by every handler (`api`, `upload`, `suppressions`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_store::StoreError;
use serde::Serialize;

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid`, `not_found`, `conflict`, `unauthorized`, `unavailable`, `store_full` (Redis
    /// is out of memory: the message says what to do), …
    pub code: String,
    /// What is wrong, naming the field, the column or the rule.
    pub message: String,
}

/// An error answer: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The longest text of one of axum's own rejections read back (they are a line).
const REJECTION_TEXT_BYTES: usize = 4096;

/// Answers axum's own refusals under `/v1` in the API's error format, as every handler does:
/// a query string or path that does not parse (400), a body over `server.max_body_bytes`
/// (413), a method the path does not take (405, with its `Allow` header). axum writes those as
/// plain text, or nothing; a client reading `error.message` would find none. `max_body_bytes`
/// names the limit.
pub(crate) async fn json_rejections(
    axum::extract::State(max_body_bytes): axum::extract::State<usize>,
    method: axum::http::Method,
    response: Response,
) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "too_large",
            format!("the request body is over server.max_body_bytes ({max_body_bytes} bytes)"),
        ),
        // The router adds `Allow` after this layer has seen the answer.
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            format!("this path does not take {method}: its Allow header lists what it takes"),
        ),
        _ if text.is_empty() => ApiError::new(status, "invalid", "the request was refused"),
        _ => ApiError::new(status, "invalid", text),
    };
    let mut answer = error.into_response();
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    // Whatever headers the refusal carried (a header named once stands for the values after
    // it).
    let mut name = None;
    for (next, value) in parts.headers.drain() {
        name = next.or(name);
        if let Some(name) = &name {
            answer.headers_mut().append(name.clone(), value);
        }
    }
    answer
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::IllegalTransition(_) | StoreError::Final(..) | StoreError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
            StoreError::Full(_) => {
                static FULL: herald_core::repeated::Repeated =
                    herald_core::repeated::Repeated::new();
                herald_core::warn_repeated!(FULL, "store full", error = %e);
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_full", e.to_string())
            }
            StoreError::Unavailable(_) => {
                static UNAVAILABLE: herald_core::repeated::Repeated =
                    herald_core::repeated::Repeated::new();
                herald_core::warn_repeated!(UNAVAILABLE, "store unavailable", error = %e);
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the server log)",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full store says so, and what to do, where any other outage says only to try again
    /// (its text may carry the store's internals).
    #[test]
    fn a_full_store_is_named_with_its_remedy() {
        let full = ApiError::from(StoreError::Full("raise Redis's maxmemory".into()));
        assert_eq!(
            (full.status, full.code),
            (StatusCode::SERVICE_UNAVAILABLE, "store_full")
        );
        assert!(full.message.contains("maxmemory"), "{}", full.message);
        let down = ApiError::from(StoreError::Unavailable(
            "connection refused 10.0.0.7".into(),
        ));
        assert_eq!(
            (down.status, down.code),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(!down.message.contains("10.0.0.7"), "{}", down.message);
    }
}
