//! Webhook payloads: statuses, inbound messages, preferences, template and account updates.
//!
//! These types are tolerant by design: Meta adds fields, message types and `field` kinds
//! without notice, and one damaged element must not cost the other 999 of a batch. Unknown
//! fields are ignored; an unknown `field` is kept as raw JSON ([`ChangeValue::Other`]); a status
//! or message that does not parse is kept whole as [`Lenient::Malformed`] for the dead-letter
//! log instead of failing the notification. Ids and numbers are never keys here: users can hide
//! their number behind a business-scoped id (`recipient_id: ""`), so statuses are matched by
//! message id and `biz_opaque_callback_data`.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The top-level webhook body.
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub time: Option<Timestamp>,
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub field: String,
    pub value: ChangeValue,
}

/// A change's `value`, typed by its `field`.
#[derive(Debug, Clone)]
pub enum ChangeValue {
    /// `messages` and `user_preferences`: statuses, inbound messages, errors, preferences.
    Messages(Box<MessagesValue>),
    TemplateStatus(TemplateStatusUpdate),
    PhoneQuality(PhoneQualityUpdate),
    AccountUpdate(AccountUpdate),
    Capability(BusinessCapabilityUpdate),
    TemplateCategory(TemplateCategoryUpdate),
    /// A `field` Herald does not handle, or a value that did not parse, kept as received.
    Other(Box<RawValue>),
}

/// An element that either parsed or is kept raw, with the reason, for inspection.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    Parsed(T),
    Malformed { raw: Box<RawValue>, error: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessagesValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<Lenient<Contact>>,
    #[serde(default)]
    pub messages: Vec<Lenient<InboundMessage>>,
    #[serde(default)]
    pub statuses: Vec<Lenient<Status>>,
    /// Errors not tied to a message or status.
    #[serde(default)]
    pub errors: Vec<WebhookError>,
    #[serde(default)]
    pub user_preferences: Vec<Lenient<UserPreference>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default)]
    pub display_phone_number: String,
    #[serde(default)]
    pub phone_number_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Empty when the user hides their number.
    #[serde(default)]
    pub wa_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub parent_user_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub country_code: Option<String>,
}

/// A delivery status for a message the business sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Status {
    pub id: String,
    /// `sent`, `delivered`, `read`, `played`, `failed`, `deleted`, or something new.
    pub status: String,
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Empty when the user hides their number behind a business-scoped id.
    #[serde(default)]
    pub recipient_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Conversation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Origin {
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// Pricing of one message: `CBP` (per conversation, before 2025-07-01) or `PMP` (per message).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Pricing {
    #[serde(default)]
    pub billable: Option<bool>,
    #[serde(default)]
    pub pricing_model: Option<String>,
    /// `marketing`, `utility`, `authentication`, `service`, …
    #[serde(default)]
    pub category: Option<String>,
    /// PMP only: `regular`, `free_customer_service`, `free_entry_point`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An error object inside a webhook (top level, on a message, or on a status).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<WebhookErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WebhookErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// A message a user sent to the business.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundMessage {
    /// The sender's number (WhatsApp id); may be empty for business-scoped users.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub from_user_id: Option<String>,
    pub id: String,
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// `text`, `image`, `interactive`, `button`, `system`, `unsupported`, … (new ones appear).
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub context: Option<InboundContext>,
    #[serde(default)]
    pub text: Option<InboundText>,
    #[serde(default)]
    pub image: Option<InboundMedia>,
    #[serde(default)]
    pub video: Option<InboundMedia>,
    #[serde(default)]
    pub audio: Option<InboundMedia>,
    #[serde(default)]
    pub document: Option<InboundMedia>,
    #[serde(default)]
    pub sticker: Option<InboundMedia>,
    #[serde(default)]
    pub reaction: Option<InboundReaction>,
    #[serde(default)]
    pub location: Option<InboundLocation>,
    #[serde(default)]
    pub contacts: Option<Vec<Value>>,
    #[serde(default)]
    pub interactive: Option<InboundInteractive>,
    #[serde(default)]
    pub button: Option<InboundButton>,
    #[serde(default)]
    pub order: Option<InboundOrder>,
    #[serde(default)]
    pub system: Option<InboundSystem>,
    #[serde(default)]
    pub referral: Option<Referral>,
    #[serde(default)]
    pub unsupported: Option<Value>,
    #[serde(default)]
    pub errors: Vec<WebhookError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundContext {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub forwarded: Option<bool>,
    #[serde(default)]
    pub frequently_forwarded: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundText {
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundMedia {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub voice: Option<bool>,
    #[serde(default)]
    pub animated: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundReaction {
    #[serde(default)]
    pub message_id: Option<String>,
    /// Missing or empty when a reaction is removed.
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundLocation {
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundInteractive {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub button_reply: Option<IdTitle>,
    #[serde(default)]
    pub list_reply: Option<IdTitle>,
    #[serde(default)]
    pub nfm_reply: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdTitle {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A template quick-reply button press.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundButton {
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundOrder {
    #[serde(default)]
    pub catalog_id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundSystem {
    #[serde(default)]
    pub body: Option<String>,
    /// For `user_changed_number`: the user's new number.
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Referral {
    #[serde(default)]
    pub source_url: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub headline: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub ctwa_clid: Option<String>,
}

/// `user_preferences`: a user stopped or resumed marketing messages.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserPreference {
    /// Empty when the user hides their number.
    #[serde(default)]
    pub wa_id: String,
    /// The business-scoped user id (2026), set whether or not the number is.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    /// `marketing_messages`.
    #[serde(default)]
    pub category: String,
    /// `stop`, `resume`, `signup`.
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
}

/// `message_template_status_update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateStatusUpdate {
    /// `APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`, `PENDING_DELETION`, …
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub message_template_id: Option<Value>,
    #[serde(default)]
    pub message_template_name: String,
    #[serde(default)]
    pub message_template_language: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message_template_category: Option<String>,
    #[serde(default)]
    pub rejection_info: Option<Value>,
}

/// `phone_number_quality_update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PhoneQualityUpdate {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// `FLAGGED`, `UNFLAGGED`, `UPGRADE`, `DOWNGRADE`, …
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub current_limit: Option<String>,
    #[serde(default)]
    pub old_limit: Option<String>,
    /// The portfolio's messaging limit after the change, where it changed.
    #[serde(default)]
    pub max_daily_conversations_per_business: Option<LimitValue>,
}

/// `template_category_update`: Meta re-categorised a template, or will in 24 hours.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateCategoryUpdate {
    #[serde(default)]
    pub message_template_id: Option<Value>,
    #[serde(default)]
    pub message_template_name: String,
    #[serde(default)]
    pub message_template_language: String,
    /// Set when the change has happened: the category it had.
    #[serde(default)]
    pub previous_category: Option<String>,
    /// The category now (after a change, or still, before an impending one).
    #[serde(default)]
    pub new_category: Option<String>,
    /// Set when the change is impending: the category it will have.
    #[serde(default)]
    pub correct_category: Option<String>,
    /// When the impending change happens (Unix seconds).
    #[serde(default)]
    pub category_update_timestamp: Option<i64>,
}

impl TemplateCategoryUpdate {
    /// `(from, to)` when the template's category has changed.
    pub fn changed(&self) -> Option<(&str, &str)> {
        let from = self.previous_category.as_deref()?;
        let to = self.new_category.as_deref()?;
        (!from.eq_ignore_ascii_case(to)).then_some((from, to))
    }

    /// The `name:language` key campaigns are found by (a language written `en-US` is the
    /// template's `en_US`).
    pub fn template_key(&self) -> String {
        herald_core::spec::template_key(
            &self.message_template_name,
            &self.message_template_language,
        )
    }
}

/// A messaging limit as webhooks write it: Meta documents the portfolio field both as a
/// count (`2000`, -1 for unlimited) and as a tier name (`"TIER_2K"`); both are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    Count(i64),
    Text(String),
}

impl LimitValue {
    /// The limit it names; `None` for a text that is neither a tier nor a count.
    pub fn limit(&self) -> Option<herald_core::MessagingLimit> {
        match self {
            Self::Count(n) => Some(herald_core::MessagingLimit::from_daily(*n)),
            Self::Text(t) => herald_core::MessagingLimit::from_tier(t).or_else(|| {
                t.trim()
                    .parse()
                    .ok()
                    .map(herald_core::MessagingLimit::from_daily)
            }),
        }
    }
}

/// `business_capability_update`: the business portfolio's limits changed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BusinessCapabilityUpdate {
    /// The messaging limit: unique users per moving 24 h outside open windows.
    #[serde(default)]
    pub max_daily_conversations_per_business: Option<LimitValue>,
    /// The same as Meta reported it before portfolio-wide limits (removed in 2026).
    #[serde(default)]
    pub max_daily_conversation_per_phone: Option<LimitValue>,
    #[serde(default)]
    pub max_phone_numbers_per_business: Option<i64>,
}

impl BusinessCapabilityUpdate {
    /// The messaging limit it sets, if it names one.
    pub fn messaging_limit(&self) -> Option<herald_core::MessagingLimit> {
        self.max_daily_conversations_per_business
            .as_ref()
            .and_then(LimitValue::limit)
            .or_else(|| {
                self.max_daily_conversation_per_phone
                    .as_ref()
                    .and_then(LimitValue::limit)
            })
    }
}

/// `account_update`: bans, restrictions, partner changes. Only the event is typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountUpdate {
    #[serde(default)]
    pub event: String,
}

/// A Unix time in seconds. Meta writes it as a string in statuses and messages and as a
/// number elsewhere; both are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Number(i64),
            Text(std::borrow::Cow<'a, str>),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Self(n)),
            Either::Text(s) => s
                .trim()
                .parse()
                .map(Self)
                .map_err(|_| D::Error::custom(format!("timestamp {s:?} is not a number"))),
        }
    }
}

impl Serialize for Timestamp {
    /// Written as Meta writes it in statuses: a decimal string.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(match serde_json::from_str::<T>(raw.get()) {
            Ok(v) => Self::Parsed(v),
            Err(e) => Self::Malformed {
                raw,
                error: e.to_string(),
            },
        })
    }
}

impl<T> Lenient<T> {
    pub fn parsed(&self) -> Option<&T> {
        match self {
            Self::Parsed(v) => Some(v),
            Self::Malformed { .. } => None,
        }
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            field: String,
            value: Option<Box<RawValue>>,
        }
        let raw = Raw::deserialize(d)?;
        let value = match raw.value {
            None => ChangeValue::Other(
                RawValue::from_string("null".to_owned()).map_err(D::Error::custom)?,
            ),
            Some(v) => ChangeValue::parse(&raw.field, v),
        };
        Ok(Self {
            field: raw.field,
            value,
        })
    }
}

impl ChangeValue {
    fn parse(field: &str, raw: Box<RawValue>) -> Self {
        fn typed<T: DeserializeOwned>(raw: &RawValue) -> Option<T> {
            serde_json::from_str(raw.get()).ok()
        }
        let parsed = match field {
            "messages" | "user_preferences" => typed(&raw).map(|v| Self::Messages(Box::new(v))),
            "message_template_status_update" => typed(&raw).map(Self::TemplateStatus),
            "phone_number_quality_update" => typed(&raw).map(Self::PhoneQuality),
            "account_update" => typed(&raw).map(Self::AccountUpdate),
            "business_capability_update" => typed(&raw).map(Self::Capability),
            "template_category_update" => typed(&raw).map(Self::TemplateCategory),
            _ => None,
        };
        parsed.unwrap_or(Self::Other(raw))
    }
}

impl Notification {
    /// Parses a webhook body. Fails only when the body is not a JSON object of the expected
    /// outline; damage inside entries is kept, not fatal.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Every value of `field` `messages` or `user_preferences`, with its entry's WABA id.
    pub fn messages_values(&self) -> impl Iterator<Item = (&Entry, &MessagesValue)> {
        self.entry.iter().flat_map(|e| {
            e.changes.iter().filter_map(move |c| match &c.value {
                ChangeValue::Messages(v) => Some((e, &**v)),
                _ => None,
            })
        })
    }
}

impl InboundMessage {
    /// The words the user sent, for keyword matching: a text body, or the label of a button
    /// they pressed.
    pub fn text_content(&self) -> Option<&str> {
        if let Some(t) = &self.text {
            return Some(&t.body);
        }
        if let Some(b) = &self.button {
            return b.text.as_deref().or(b.payload.as_deref());
        }
        let i = self.interactive.as_ref()?;
        i.button_reply
            .as_ref()
            .or(i.list_reply.as_ref())
            .map(|r| r.title.as_str())
    }

    /// Whether this is something a person wrote (a reply), as opposed to a system notice.
    pub fn is_from_user(&self) -> bool {
        !matches!(self.kind.as_str(), "system" | "unsupported" | "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_status_does_not_cost_its_neighbours() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",
            "value":{"statuses":[{"id":"wamid.a","status":"sent","timestamp":"1"},{"status":42},
                                 {"id":"wamid.b","status":"read","timestamp":2,"new_field":{"x":1}}]}}]}]}"#;
        let n = Notification::parse(body).unwrap();
        let (_, v) = n.messages_values().next().unwrap();
        assert_eq!(v.statuses.len(), 3);
        assert_eq!(v.statuses[0].parsed().unwrap().id, "wamid.a");
        assert!(
            matches!(&v.statuses[1], Lenient::Malformed { raw, .. } if raw.get() == r#"{"status":42}"#)
        );
        assert_eq!(
            v.statuses[2].parsed().unwrap().timestamp,
            Some(Timestamp(2))
        );
    }

    #[test]
    fn unknown_fields_and_values_are_kept_raw() {
        let body =
            br#"{"object":"x","entry":[{"id":"1","changes":[{"field":"calls","value":{"a":[1]}},
            {"field":"message_template_status_update","value":"not an object"}]}]}"#;
        let n = Notification::parse(body).unwrap();
        let changes = &n.entry[0].changes;
        assert!(matches!(&changes[0].value, ChangeValue::Other(r) if r.get() == r#"{"a":[1]}"#));
        assert!(matches!(&changes[1].value, ChangeValue::Other(_)));
        assert!(Notification::parse(b"[1,2]").is_err());
    }
}
