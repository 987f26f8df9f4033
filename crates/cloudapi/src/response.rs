//! What the Graph API answers: the send response, error bodies, phone number and token info.

use serde::{Deserialize, Serialize};

/// A successful `POST /{phone_number_id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResponse {
    #[serde(default)]
    pub messaging_product: String,
    #[serde(default)]
    pub contacts: Vec<SendContact>,
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendContact {
    #[serde(default)]
    pub input: String,
    /// Meta's normalised number; can differ from the input.
    #[serde(default)]
    pub wa_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<MessageStatus>,
}

/// `held_for_quality_assessment` is not a failure: the message is held, then sent or dropped,
/// and webhooks say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    HeldForQualityAssessment,
    Paused,
    #[serde(other)]
    Other,
}

impl SendResponse {
    /// The message id of the (single) message sent.
    pub fn message_id(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }
}

/// `{"error": {...}}`, the body of every failed Graph API call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: GraphError,
}

/// The error object. Build logic on `code` (and `error_subcode`, `details`), never on the
/// human-readable text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Webhook-style error objects carry a title instead of (or as well as) a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl GraphError {
    /// A new error object of the usual Graph shape (the simulator answers with these).
    pub fn new(code: i64, kind: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            error_subcode: None,
            kind: Some(kind.to_owned()),
            message: Some(message.into()),
            title: None,
            error_data: None,
            fbtrace_id: None,
            is_transient: None,
            error_user_title: None,
            error_user_msg: None,
            href: None,
        }
    }

    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.error_data = Some(ErrorData {
            messaging_product: Some("whatsapp".to_owned()),
            details: Some(details.into()),
        });
        self
    }

    /// `error_data.details`, Meta's most specific explanation.
    pub fn details(&self) -> Option<&str> {
        self.error_data.as_ref()?.details.as_deref()
    }
}

impl ErrorBody {
    /// Parses an error body. Besides the usual `{"error": {...}}`, a bare error object is
    /// accepted (some client libraries and proxies pass it on unwrapped).
    pub fn parse(body: &[u8]) -> Option<GraphError> {
        if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
            return Some(b.error);
        }
        serde_json::from_slice::<GraphError>(body).ok()
    }
}

/// `GET /{phone_number_id}?fields=…`: what `herald doctor` checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumberInfo {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// `CONNECTED`, `PENDING`, `FLAGGED`, `BANNED`, …
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub code_verification_status: Option<String>,
    #[serde(default)]
    pub name_status: Option<String>,
    #[serde(default)]
    pub platform_type: Option<String>,
    #[serde(default)]
    pub throughput: Option<Throughput>,
    /// The business portfolio's messaging limit, a tier name (`TIER_2K`, …).
    #[serde(default)]
    pub whatsapp_business_manager_messaging_limit: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// `STANDARD` (80 messages/s) or `HIGH` (1,000).
    #[serde(default)]
    pub level: Option<String>,
}

/// One entry of `GET /{waba_id}/message_templates`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, …
    #[serde(default)]
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    #[serde(default)]
    pub category: String,
    /// The template's parts (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`) with their text.
    #[serde(default)]
    pub components: Vec<TemplateComponent>,
}

/// One part of a template as Meta lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateComponent {
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The text, with `{{1}}`, `{{2}}`… (or named `{{first_name}}`) where parameters go.
    #[serde(default)]
    pub text: Option<String>,
}

impl TemplateInfo {
    /// How many parameters the body takes (distinct `{{…}}` in its text).
    pub fn body_parameters(&self) -> usize {
        let Some(text) = (self.components.iter())
            .find(|c| c.kind.eq_ignore_ascii_case("BODY"))
            .and_then(|c| c.text.as_deref())
        else {
            return 0;
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("{{") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find("}}") else { break };
            seen.insert(rest[..end].trim());
            rest = &rest[end + 2..];
        }
        seen.len()
    }
}

/// `GET /{waba_id}/message_templates`: one page.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateList {
    #[serde(default)]
    pub data: Vec<TemplateInfo>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

/// Cursor paging of a Graph list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Paging {
    #[serde(default)]
    pub cursors: Option<Cursors>,
    /// Present when there is a next page.
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cursors {
    #[serde(default)]
    pub after: Option<String>,
}

/// `GET /debug_token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub is_valid: bool,
    /// 0 means the token never expires (a system user token).
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DebugTokenResponse {
    pub data: TokenInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_send_response() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+1 415 555 1234","wa_id":"14155551234"}],
                        "messages":[{"id":"wamid.abc","message_status":"held_for_quality_assessment"}]}"#;
        let r: SendResponse = serde_json::from_slice(body).unwrap();
        assert_eq!(r.message_id(), Some("wamid.abc"));
        assert_eq!(r.contacts[0].wa_id, "14155551234");
        assert_eq!(
            r.messages[0].message_status,
            Some(MessageStatus::HeldForQualityAssessment)
        );
        let r: SendResponse = serde_json::from_slice(
            br#"{"messages":[{"id":"wamid.x","message_status":"brand_new"}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].message_status, Some(MessageStatus::Other));
    }

    #[test]
    fn parses_wrapped_and_bare_errors() {
        let e = ErrorBody::parse(
            br#"{"error":{"message":"(#131056) pair rate limit hit","code":131056}}"#,
        )
        .unwrap();
        assert_eq!(e.code, 131_056);
        let e = ErrorBody::parse(br#"{"code":131053,"title":"Media upload error"}"#).unwrap();
        assert_eq!(e.code, 131_053);
        assert!(ErrorBody::parse(b"<html>Bad Gateway</html>").is_none());
    }
}
