//! Outgoing request bodies for `POST /{phone_number_id}/messages`.
//!
//! The types follow Meta's OpenAPI description (`Message` and its parts) field for field and
//! refuse unknown fields, so a typo in an operator's campaign (`cpation`) is an error naming
//! the field rather than a message sent without its caption. Enumerated strings (interactive
//! and header types, button sub-types) stay strings here and are checked by
//! [`validate`](crate::validate), which can say which field is wrong and why.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Any body this endpoint accepts: a message, or a read receipt (with optional typing
/// indicator) for a message the business received.
#[derive(Debug, Clone, PartialEq)]
pub enum SendRequest {
    Message(Box<SendMessage>),
    MarkRead(MarkRead),
}

/// A message to one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    pub messaging_product: String,
    pub recipient_type: Option<String>,
    pub to: String,
    pub context: Option<Context>,
    /// Echoed by Meta in status webhooks; Herald puts the job id here.
    pub biz_opaque_callback_data: Option<String>,
    pub message: Message,
}

/// `{"status": "read", "message_id": …}`: marks an inbound message read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    pub messaging_product: String,
    pub status: String,
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_indicator: Option<TypingIndicator>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingIndicator {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Reply-to context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub message_id: String,
}

/// The typed content of a message: its `type` and the object of that name.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Text(Text),
    Template(Template),
    Image(Media),
    Audio(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Interactive(Box<Interactive>),
    Reaction(Reaction),
    Location(Location),
    Contacts(Vec<Contact>),
}

macro_rules! opt {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<bool>,
}

opt! {
    /// An image, audio, video, document or sticker: by uploaded media `id` or public `link`.
    pub struct Media {
        id: String,
        link: String,
        caption: String,
        filename: String,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Component>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A template component: `header`, `body` or `button` (with `sub_type` and `index`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<ButtonIndex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<Parameter>>,
}

/// A button's position. Meta's own examples write it both as `0` and as `"0"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ButtonIndex {
    Number(u64),
    Text(String),
}

impl ButtonIndex {
    pub fn value(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(s) => s.parse().ok(),
        }
    }
}

/// A template parameter, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Parameter {
    Text {
        text: String,
    },
    Currency {
        currency: Currency,
    },
    DateTime {
        date_time: DateTime,
    },
    Image {
        image: Media,
    },
    Document {
        document: Media,
    },
    Video {
        video: Media,
    },
    Location {
        location: Location,
    },
    /// A quick-reply button's payload.
    Payload {
        payload: String,
    },
    /// A catalog or flow button's action; its shape depends on the button.
    Action {
        action: Map<String, Value>,
    },
    CouponCode {
        coupon_code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    pub fallback_value: String,
    pub code: String,
    pub amount_1000: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateTime {
    pub fallback_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute: Option<i64>,
}

/// An interactive message: reply buttons, a list, products, a flow, a catalog, an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<TextObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<TextObject>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Media>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextObject {
    pub text: String,
}

opt! {
    /// What the user can do; which fields apply depends on the interactive type.
    pub struct Action {
        /// `button`: 1–3 reply buttons.
        buttons: Vec<ReplyButton>,
        /// `list`: the label of the button that opens the list.
        button: String,
        /// `list` (rows) and `product_list` (product items).
        sections: Vec<Section>,
        catalog_id: String,
        product_retailer_id: String,
        /// `flow`, `catalog_message`, `order_details`, `order_status`.
        name: String,
        parameters: Map<String, Value>,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyButton {
    #[serde(rename = "type")]
    pub kind: String,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub id: String,
    pub title: String,
}

opt! {
    pub struct Section {
        title: String,
        rows: Vec<Row>,
        product_items: Vec<ProductItem>,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductItem {
    pub product_retailer_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    pub message_id: String,
    /// An empty emoji removes an earlier reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

opt! {
    /// A contact card.
    pub struct Contact {
        addresses: Vec<Address>,
        birthday: String,
        emails: Vec<Email>,
        name: Name,
        org: Org,
        phones: Vec<ContactPhone>,
        urls: Vec<ContactUrl>,
    }
}

opt! {
    pub struct Address {
        street: String,
        city: String,
        state: String,
        zip: String,
        country: String,
        country_code: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

opt! {
    pub struct Email {
        email: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

opt! {
    pub struct Name {
        formatted_name: String,
        first_name: String,
        last_name: String,
        middle_name: String,
        suffix: String,
        prefix: String,
    }
}

opt! {
    pub struct Org {
        company: String,
        department: String,
        title: String,
    }
}

opt! {
    pub struct ContactPhone {
        phone: String,
        #[serde(rename = "type")]
        kind: String,
        wa_id: String,
    }
}

opt! {
    pub struct ContactUrl {
        url: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

/// Keys of the envelope around the message content.
const ENVELOPE: [&str; 5] = [
    "messaging_product",
    "recipient_type",
    "to",
    "context",
    "biz_opaque_callback_data",
];

impl Message {
    /// Every message type, which is also the name of its content object.
    pub const KINDS: [&'static str; 11] = [
        "text",
        "template",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "interactive",
        "reaction",
        "location",
        "contacts",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Template(_) => "template",
            Self::Image(_) => "image",
            Self::Audio(_) => "audio",
            Self::Video(_) => "video",
            Self::Document(_) => "document",
            Self::Sticker(_) => "sticker",
            Self::Interactive(_) => "interactive",
            Self::Reaction(_) => "reaction",
            Self::Location(_) => "location",
            Self::Contacts(_) => "contacts",
        }
    }

    /// Whether Meta treats it as a template (allowed outside the 24 h window).
    pub fn is_template(&self) -> bool {
        matches!(self, Self::Template(_))
    }

    /// Parses a message's content from a JSON object holding `type` and the object it names.
    /// When `type` is missing it is inferred from the one content object present (Meta's
    /// behaviour, and the shape of some of its own examples). Errors name the field.
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self, serde_json::Error> {
        let kind = match map.remove("type") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(serde_json::Error::custom(format!(
                    "type: expected a string, found {other}"
                )));
            }
            None => {
                let present: Vec<&str> = Self::KINDS
                    .iter()
                    .copied()
                    .filter(|k| map.contains_key(*k))
                    .collect();
                match present.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => return Err(serde_json::Error::custom("type: missing")),
                    many => {
                        return Err(serde_json::Error::custom(format!(
                            "type: missing, and the body has several contents ({})",
                            many.join(", ")
                        )));
                    }
                }
            }
        };
        if !Self::KINDS.contains(&kind.as_str()) {
            return Err(serde_json::Error::custom(format!(
                "type: unknown message type {kind:?}; expected one of {}",
                Self::KINDS.join(", ")
            )));
        }
        let content = map.remove(&kind).ok_or_else(|| {
            serde_json::Error::custom(format!("{kind}: missing (the message type is {kind:?})"))
        })?;
        if let Some(extra) = map.keys().next() {
            return Err(serde_json::Error::custom(format!(
                "{extra}: unknown field for a {kind} message"
            )));
        }
        fn parse<T: serde::de::DeserializeOwned>(
            kind: &str,
            v: Value,
        ) -> Result<T, serde_json::Error> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    serde_json::Error::custom(format!("{kind}: {inner}"))
                } else {
                    serde_json::Error::custom(format!("{kind}.{path}: {inner}"))
                }
            })
        }
        Ok(match kind.as_str() {
            "text" => Self::Text(parse(&kind, content)?),
            "template" => Self::Template(parse(&kind, content)?),
            "image" => Self::Image(parse(&kind, content)?),
            "audio" => Self::Audio(parse(&kind, content)?),
            "video" => Self::Video(parse(&kind, content)?),
            "document" => Self::Document(parse(&kind, content)?),
            "sticker" => Self::Sticker(parse(&kind, content)?),
            "interactive" => Self::Interactive(Box::new(parse(&kind, content)?)),
            "reaction" => Self::Reaction(parse(&kind, content)?),
            "location" => Self::Location(parse(&kind, content)?),
            _ => Self::Contacts(parse(&kind, content)?),
        })
    }

    fn serialize_into<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("type", self.kind())?;
        match self {
            Self::Text(t) => map.serialize_entry("text", t),
            Self::Template(t) => map.serialize_entry("template", t),
            Self::Image(m) => map.serialize_entry("image", m),
            Self::Audio(m) => map.serialize_entry("audio", m),
            Self::Video(m) => map.serialize_entry("video", m),
            Self::Document(m) => map.serialize_entry("document", m),
            Self::Sticker(m) => map.serialize_entry("sticker", m),
            Self::Interactive(i) => map.serialize_entry("interactive", i),
            Self::Reaction(r) => map.serialize_entry("reaction", r),
            Self::Location(l) => map.serialize_entry("location", l),
            Self::Contacts(c) => map.serialize_entry("contacts", c),
        }
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        self.serialize_into(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(d)?;
        Self::from_map(map).map_err(D::Error::custom)
    }
}

impl SendMessage {
    /// A message to `to` with the usual envelope.
    pub fn new(to: impl Into<String>, message: Message) -> Self {
        Self {
            messaging_product: "whatsapp".to_owned(),
            recipient_type: Some("individual".to_owned()),
            to: to.into(),
            context: None,
            biz_opaque_callback_data: None,
            message,
        }
    }

    /// Sets `biz_opaque_callback_data`, which Meta echoes in status webhooks.
    #[must_use]
    pub fn with_callback_data(mut self, data: impl Into<String>) -> Self {
        self.biz_opaque_callback_data = Some(data.into());
        self
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Self, serde_json::Error> {
        fn take_string(
            map: &mut Map<String, Value>,
            key: &str,
        ) -> Result<Option<String>, serde_json::Error> {
            match map.remove(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(serde_json::Error::custom(format!(
                    "{key}: expected a string, found {other}"
                ))),
            }
        }
        let messaging_product = take_string(&mut map, "messaging_product")?
            .ok_or_else(|| serde_json::Error::custom("messaging_product: missing"))?;
        let recipient_type = take_string(&mut map, "recipient_type")?;
        let to =
            take_string(&mut map, "to")?.ok_or_else(|| serde_json::Error::custom("to: missing"))?;
        let biz_opaque_callback_data = take_string(&mut map, "biz_opaque_callback_data")?;
        let context = map
            .remove("context")
            .map(|v| {
                serde_json::from_value(v)
                    .map_err(|e| serde_json::Error::custom(format!("context: {e}")))
            })
            .transpose()?;
        Ok(Self {
            messaging_product,
            recipient_type,
            to,
            context,
            biz_opaque_callback_data,
            message: Message::from_map(map)?,
        })
    }
}

impl Serialize for SendMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("messaging_product", &self.messaging_product)?;
        if let Some(r) = &self.recipient_type {
            map.serialize_entry("recipient_type", r)?;
        }
        map.serialize_entry("to", &self.to)?;
        if let Some(c) = &self.context {
            map.serialize_entry("context", c)?;
        }
        if let Some(b) = &self.biz_opaque_callback_data {
            map.serialize_entry("biz_opaque_callback_data", b)?;
        }
        self.message.serialize_into(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for SendMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_map(Map::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl SendRequest {
    /// Parses a request body, naming the offending field on error.
    pub fn from_slice(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    pub fn as_message(&self) -> Option<&SendMessage> {
        match self {
            Self::Message(m) => Some(m),
            Self::MarkRead(_) => None,
        }
    }
}

impl Serialize for SendRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Message(m) => m.serialize(s),
            Self::MarkRead(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SendRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(d)?;
        // A read receipt has `status` and no `to`; everything else is a message.
        if map.contains_key("status") && !map.contains_key("to") {
            serde_json::from_value(Value::Object(map))
                .map(Self::MarkRead)
                .map_err(D::Error::custom)
        } else {
            SendMessage::from_map(map)
                .map(|m| Self::Message(Box::new(m)))
                .map_err(D::Error::custom)
        }
    }
}

/// Whether `key` belongs to the envelope rather than the content of a message.
pub fn is_envelope_key(key: &str) -> bool {
    ENVELOPE.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_round_trips() {
        let v = json!({"messaging_product": "whatsapp", "to": "14155551234", "type": "text",
                       "text": {"body": "Hello", "preview_url": false}});
        let r: SendRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_value::<SendRequest>(json!({
            "messaging_product": "whatsapp", "to": "1", "type": "image",
            "image": {"link": "https://x.test/a.jpg", "cpation": "hi"}
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("image") && err.contains("cpation"), "{err}");

        let err = serde_json::from_value::<SendRequest>(json!({
            "messaging_product": "whatsapp", "to": "1", "type": "template",
            "template": {"name": "x", "language": {"code": "en"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": 5}]}]}
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("template.components[0].parameters[0]"),
            "{err}"
        );
    }

    #[test]
    fn type_is_inferred_only_when_unambiguous() {
        let m =
            Message::from_map(json!({"text": {"body": "x"}}).as_object().unwrap().clone()).unwrap();
        assert_eq!(m.kind(), "text");
        let err = Message::from_map(
            json!({"text": {"body": "x"}, "image": {"id": "1"}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("several contents"), "{err}");
        let err = Message::from_map(
            json!({"type": "image", "text": {"body": "x"}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("image: missing"), "{err}");
        let err =
            Message::from_map(json!({"type": "fax"}).as_object().unwrap().clone()).unwrap_err();
        assert!(err.to_string().contains("unknown message type"), "{err}");
    }

    #[test]
    fn mark_read_is_its_own_request() {
        let v = json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x"});
        let r: SendRequest = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(r, SendRequest::MarkRead(_)));
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }

    #[test]
    fn builder_sets_the_envelope() {
        let m = SendMessage::new(
            "447912345678",
            Message::Text(Text {
                body: "hi".into(),
                preview_url: None,
            }),
        )
        .with_callback_data("hrld:abc:1");
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["messaging_product"], "whatsapp");
        assert_eq!(v["recipient_type"], "individual");
        assert_eq!(v["biz_opaque_callback_data"], "hrld:abc:1");
        assert_eq!(v["type"], "text");
    }
}
