//! `CampaignSpec` and its compiled message.
//!
//! An operator writes one Cloud API message body with `{{column}}` placeholders in any string;
//! each recipient's CSV row fills them. The body is compiled once into a flat list of literal
//! JSON bytes and slots, so rendering a recipient's send body is a handful of `memcpy`s plus
//! JSON-escaping the values: no JSON parse or tree walk per recipient.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::phone::PhoneE164;
use crate::recipient::Vars;

/// Longest campaign name.
pub const NAME_MAX: usize = 200;
/// Keys of the send body Herald writes itself; a spec's message may not set them.
pub const RESERVED_KEYS: [&str; 4] = [
    "to",
    "messaging_product",
    "recipient_type",
    "biz_opaque_callback_data",
];

/// How campaigns find their template (`name:language`, as template webhooks name it): a
/// language written `en-US` is the template's `en_US`.
pub fn template_key(name: &str, language: &str) -> String {
    format!("{name}:{}", language.replace('-', "_"))
}

/// Meta's template categories, as its template list spells them.
pub const TEMPLATE_CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];

/// What an operator submits to create a campaign (ARCHITECTURE §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    /// The sending phone number id; the configured one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    /// A Cloud API message body without `to`/`messaging_product`; any string in it may
    /// hold `{{column}}` placeholders filled from the recipient's CSV row.
    #[schema(value_type = Object)]
    pub message: Map<String, Value>,
    /// ISO 3166-1 alpha-2 region for numbers written in national form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// When set, the campaign starts itself at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub schedule_at: Option<jiff::Timestamp>,
    /// Per-campaign cap on messages per second (never above the phone number's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mps: Option<u32>,
    /// Send a recipient Meta declined for its per-user marketing limit (131049) again, at
    /// most this many times, each at least a day later (1 to 3; never for marketing to `+1`
    /// numbers, where Meta delivers no marketing). Absent: never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_capped_retries: Option<u32>,
    /// The template's category as Meta has it (`MARKETING`, `UTILITY`, `AUTHENTICATION`):
    /// filled in from Meta's template list when the campaign is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_category: Option<String>,
    /// The category the campaign was first priced at (its `template_category` when it was
    /// created). When Meta re-categorises the template, `template_category` follows and the
    /// cost estimate shows the difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priced_category: Option<String>,
    /// Stop before the campaign's cost (in the rate card's currency) would pass this: sends
    /// are admitted only while what is charged plus what may still be charged for messages
    /// on their way stays within it; then the campaign pauses (`budget`). Resume with a
    /// higher `max_cost` to go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
    /// The share of messages expected to be delivered (0 to 1), for the low end of the cost
    /// estimate; the configured `cost.expected_delivery_rate` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_delivery_rate: Option<f64>,
    /// The hours of the day recipients may be messaged (in their own time zone, or in
    /// `time_zone`); outside them, sends wait for the window to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_window: Option<crate::send_window::SendWindow>,
}

/// A problem with a spec, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    pub field: String,
    pub problem: String,
}

impl SpecError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl CampaignSpec {
    /// Checks the fields this crate understands. The message body's own rules (lengths, links,
    /// templates) belong to the Cloud API crate and are checked there.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        if self.name.chars().count() > NAME_MAX {
            return Err(SpecError::new(
                "name",
                format!("must be at most {NAME_MAX} characters"),
            ));
        }
        if let Some(id) = &self.phone_number_id
            && (id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(SpecError::new(
                "phone_number_id",
                "must be the numeric id Meta shows for the number (not the number itself)",
            ));
        }
        if let Some(region) = &self.default_region
            && (region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(SpecError::new(
                "default_region",
                format!("{region:?} is not a two-letter ISO 3166 region code such as \"US\""),
            ));
        }
        if let Some(mps) = self.mps
            && !(1..=1000).contains(&mps)
        {
            return Err(SpecError::new("mps", "must be between 1 and 1000"));
        }
        if let Some(n) = self.frequency_capped_retries
            && !(1..=3).contains(&n)
        {
            return Err(SpecError::new(
                "frequency_capped_retries",
                "must be between 1 and 3",
            ));
        }
        if let Some(c) = &self.template_category
            && !TEMPLATE_CATEGORIES.contains(&c.as_str())
        {
            return Err(SpecError::new(
                "template_category",
                format!("{c:?} is not one of {}", TEMPLATE_CATEGORIES.join(", ")),
            ));
        }
        if let Some(c) = &self.priced_category
            && !TEMPLATE_CATEGORIES.contains(&c.as_str())
        {
            return Err(SpecError::new(
                "priced_category",
                format!("{c:?} is not one of {}", TEMPLATE_CATEGORIES.join(", ")),
            ));
        }
        if let Some(m) = self.max_cost
            && crate::cost::Money::from_units(m).is_none()
        {
            return Err(SpecError::new(
                "max_cost",
                format!("{m} is not an amount (0 or more, in the rate card's currency)"),
            ));
        }
        if let Some(r) = self.expected_delivery_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(SpecError::new(
                "expected_delivery_rate",
                format!("{r} is not a share between 0 and 1"),
            ));
        }
        if let Some(w) = &self.send_window {
            w.compile()?;
        }
        if self.message.is_empty() {
            return Err(SpecError::new("message", "must not be empty"));
        }
        if let Some(key) = RESERVED_KEYS
            .iter()
            .find(|k| self.message.contains_key(**k))
        {
            return Err(SpecError::new(
                format!("message.{key}"),
                "is set by Herald for each recipient; remove it from the message",
            ));
        }
        Ok(())
    }

    /// Compiles the message into a [`MessageTemplate`].
    pub fn compile(&self) -> Result<MessageTemplate, SpecError> {
        self.validate()?;
        MessageTemplate::compile(&self.message)
    }
}

/// One `{{name}}` of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    /// Where it occurs, as paths such as `template.components[0].parameters[1].text`.
    pub fields: Vec<String>,
    /// An empty value would break the send (a template parameter, or a field made of
    /// placeholders only), so a row with an empty value is rejected at upload.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Slot(usize),
    To,
    Callback,
}

/// Where rendering reads variable values: slices of strings, or a recipient's [`Vars`].
pub trait Values {
    /// The value for placeholder `i` (`""` when there is none).
    fn value(&self, i: usize) -> &str;
}

impl<S: AsRef<str>> Values for [S] {
    fn value(&self, i: usize) -> &str {
        self.get(i).map_or("", AsRef::as_ref)
    }
}

impl<S: AsRef<str>, const N: usize> Values for [S; N] {
    fn value(&self, i: usize) -> &str {
        self[..].value(i)
    }
}

impl<S: AsRef<str>> Values for Vec<S> {
    fn value(&self, i: usize) -> &str {
        self[..].value(i)
    }
}

impl Values for Vars {
    fn value(&self, i: usize) -> &str {
        self.get(i)
    }
}

/// A recipient's value for a required placeholder is empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column:?} is empty but {field} needs a value")]
pub struct EmptyValue {
    pub column: String,
    pub field: String,
}

/// One string field of the message that holds placeholders, e.g. `Hello {{name}}!` at
/// `text.body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateField {
    /// Its path, such as `template.components[0].parameters[1].text`.
    pub path: String,
    parts: Vec<FieldPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldPart {
    Text(Box<str>),
    Slot(usize),
}

impl TemplateField {
    /// The placeholders it holds (indices into [`MessageTemplate::placeholders`]), in order.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            FieldPart::Slot(i) => Some(*i),
            FieldPart::Text(_) => None,
        })
    }

    /// The field's text for one recipient (plain, not JSON-escaped).
    pub fn render<V: Values + ?Sized>(&self, vars: &V) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                FieldPart::Text(t) => out.push_str(t),
                FieldPart::Slot(i) => out.push_str(vars.value(*i)),
            }
        }
        out
    }
}

/// A compiled message body: literal JSON interleaved with slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate {
    parts: Vec<Part>,
    placeholders: Vec<Placeholder>,
    fields: Vec<TemplateField>,
    literal_len: usize,
}

impl MessageTemplate {
    /// Compiles a message body (without `to`) into literal and slot parts.
    pub fn compile(message: &Map<String, Value>) -> Result<Self, SpecError> {
        let mut c = Compiler::default();
        c.lit(r#"{"messaging_product":"whatsapp","recipient_type":"individual","to":""#);
        c.part(Part::To);
        c.lit(r#"","biz_opaque_callback_data":""#);
        c.part(Part::Callback);
        c.lit("\"");
        for (key, value) in message {
            c.lit(",");
            c.string_literal(key);
            c.lit(":");
            c.value(value, key.clone())?;
        }
        c.lit("}");
        c.flush();
        let literal_len = c
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                _ => 0,
            })
            .sum();
        Ok(Self {
            parts: c.parts,
            placeholders: c.placeholders,
            fields: c.fields,
            literal_len,
        })
    }

    /// About how many bytes a rendered body takes, before the values: the literal parts,
    /// the number and the callback id.
    pub fn len_hint(&self) -> usize {
        self.literal_len + 64
    }

    /// The placeholders in order of first appearance; `render` takes values in this order.
    pub fn placeholders(&self) -> &[Placeholder] {
        &self.placeholders
    }

    /// Every string field that holds a placeholder, so a recipient's values can be checked
    /// against the field's own rule without rendering the whole body.
    pub fn fields(&self) -> &[TemplateField] {
        &self.fields
    }

    /// Placeholder names the given CSV columns do not provide.
    pub fn missing_columns<I, S>(&self, columns: I) -> Vec<&str>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let have: Vec<S> = columns.into_iter().collect();
        self.placeholders
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| !have.iter().any(|c| c.as_ref() == *name))
            .collect()
    }

    /// Checks one recipient's values: a required placeholder may not be empty.
    pub fn check_values<V: Values + ?Sized>(&self, vars: &V) -> Result<(), EmptyValue> {
        for (i, p) in self.placeholders.iter().enumerate() {
            let empty = vars.value(i).trim().is_empty();
            if p.required && empty {
                return Err(EmptyValue {
                    column: p.name.clone(),
                    field: p.fields.first().cloned().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Appends the complete send body for one recipient to `out`. `vars[i]` fills
    /// `placeholders()[i]`; a missing value renders as empty.
    pub fn render_into<V: Values + ?Sized>(
        &self,
        out: &mut Vec<u8>,
        to: PhoneE164,
        callback_data: &str,
        vars: &V,
    ) {
        out.reserve(self.literal_len + 64);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Slot(i) => escape_into(out, vars.value(*i)),
                Part::To => out.extend_from_slice(to.digits().as_bytes()),
                Part::Callback => escape_into(out, callback_data),
            }
        }
    }

    /// Convenience form of [`Self::render_into`].
    pub fn render<V: Values + ?Sized>(
        &self,
        to: PhoneE164,
        callback_data: &str,
        vars: &V,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(&mut out, to, callback_data, vars);
        out
    }
}

#[derive(Default)]
struct Compiler {
    parts: Vec<Part>,
    buf: String,
    placeholders: Vec<Placeholder>,
    fields: Vec<TemplateField>,
    index: HashMap<String, usize>,
}

impl Compiler {
    fn lit(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.parts
                .push(Part::Literal(std::mem::take(&mut self.buf).into()));
        }
    }

    fn part(&mut self, p: Part) {
        self.flush();
        self.parts.push(p);
    }

    fn string_literal(&mut self, s: &str) {
        self.buf.push('"');
        let mut bytes = Vec::new();
        escape_into(&mut bytes, s);
        // `escape_into` only ever writes valid UTF-8 (it copies whole UTF-8 runs or ASCII).
        self.buf.push_str(&String::from_utf8_lossy(&bytes));
        self.buf.push('"');
    }

    fn value(&mut self, v: &Value, path: String) -> Result<(), SpecError> {
        match v {
            Value::Null => self.lit("null"),
            Value::Bool(b) => self.lit(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let _ = write!(self.buf, "{n}");
            }
            Value::String(s) => self.string(s, &path)?,
            Value::Array(items) => {
                self.lit("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.lit(",");
                    }
                    self.value(item, format!("{path}[{i}]"))?;
                }
                self.lit("]");
            }
            Value::Object(map) => {
                self.lit("{");
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.lit(",");
                    }
                    self.string_literal(k);
                    self.lit(":");
                    self.value(item, format!("{path}.{k}"))?;
                }
                self.lit("}");
            }
        }
        Ok(())
    }

    fn string(&mut self, s: &str, path: &str) -> Result<(), SpecError> {
        let segments = split_placeholders(s)
            .map_err(|problem| SpecError::new(format!("message.{path}"), problem))?;
        let only_placeholders = segments.iter().all(|seg| match seg {
            Segment::Text(t) => t.trim().is_empty(),
            Segment::Name(_) => true,
        });
        let in_template_parameter =
            path.starts_with("template.components[") && path.contains(".parameters[");
        let mut field = TemplateField {
            path: path.to_owned(),
            parts: Vec::new(),
        };
        self.lit("\"");
        for seg in segments {
            match seg {
                Segment::Text(t) => {
                    let mut bytes = Vec::new();
                    escape_into(&mut bytes, t);
                    self.buf.push_str(&String::from_utf8_lossy(&bytes));
                    field.parts.push(FieldPart::Text(t.into()));
                }
                Segment::Name(name) => {
                    let next = self.placeholders.len();
                    let i = *self.index.entry(name.to_owned()).or_insert(next);
                    if i == next {
                        self.placeholders.push(Placeholder {
                            name: name.to_owned(),
                            fields: Vec::new(),
                            required: false,
                        });
                    }
                    let p = &mut self.placeholders[i];
                    if !p.fields.iter().any(|f| f == path) {
                        p.fields.push(path.to_owned());
                    }
                    p.required |= in_template_parameter || only_placeholders;
                    self.part(Part::Slot(i));
                    field.parts.push(FieldPart::Slot(i));
                }
            }
        }
        self.lit("\"");
        if field.parts.iter().any(|p| matches!(p, FieldPart::Slot(_))) {
            self.fields.push(field);
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Text(&'a str),
    Name(&'a str),
}

/// Splits a string at `{{name}}` placeholders. Names are trimmed and may hold any character
/// except braces and control characters (CSV headers such as `First Name` work).
fn split_placeholders(s: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Segment::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has an opening `{{` without a closing `}}`".to_owned())?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err("has an empty placeholder `{{}}`".to_owned());
        }
        if let Some(c) = name
            .chars()
            .find(|c| matches!(c, '{' | '}') || c.is_control())
        {
            return Err(format!("placeholder {name:?} contains {c:?}"));
        }
        out.push(Segment::Name(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest));
    }
    Ok(out)
}

/// Writes `s` JSON-escaped (without quotes). Runs of bytes that need no escaping are copied
/// whole.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn spec(message: Value) -> CampaignSpec {
        CampaignSpec {
            name: "spring".into(),
            phone_number_id: None,
            message: message.as_object().unwrap().clone(),
            default_region: None,
            schedule_at: None,
            mps: None,
            frequency_capped_retries: None,
            template_category: None,
            priced_category: None,
            max_cost: None,
            expected_delivery_rate: None,
            send_window: None,
        }
    }

    fn template_message() -> Value {
        json!({
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": "{{first_name}}"},
                    {"type": "text", "text": "Order #{{ order }}"}
                ]}]
            }
        })
    }

    #[test]
    fn fields_with_placeholders_render_on_their_own() {
        let t = spec(template_message()).compile().unwrap();
        let fields: Vec<(&str, String)> = t
            .fields()
            .iter()
            .map(|f| (f.path.as_str(), f.render(&["Zoë \"Z\"", "4521"])))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "template.components[0].parameters[0].text",
                    "Zoë \"Z\"".to_owned()
                ),
                (
                    "template.components[0].parameters[1].text",
                    "Order #4521".to_owned()
                ),
            ],
            "literal fields (name, language) are not listed; values are not escaped"
        );
    }

    #[test]
    fn renders_a_complete_send_body() {
        let t = spec(template_message()).compile().unwrap();
        let names: Vec<_> = t.placeholders().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["first_name", "order"]);
        let to = PhoneE164::parse("+447912345678").unwrap();
        let body = t.render(to, "hrld:abc:1", &["Zoë \"Z\"", "4521"]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["to"], "447912345678");
        assert_eq!(v["messaging_product"], "whatsapp");
        assert_eq!(v["recipient_type"], "individual");
        assert_eq!(v["biz_opaque_callback_data"], "hrld:abc:1");
        let params = &v["template"]["components"][0]["parameters"];
        assert_eq!(params[0]["text"], "Zoë \"Z\"");
        assert_eq!(params[1]["text"], "Order #4521");
        assert_eq!(v["template"]["language"]["code"], "en_US");
    }

    #[test]
    fn a_placeholder_used_twice_is_one_slot() {
        let t = spec(json!({"type": "text", "text": {"body": "{{a}} and {{a}} and {{b}}"}}))
            .compile()
            .unwrap();
        assert_eq!(t.placeholders().len(), 2);
        let body = t.render(PhoneE164::parse("14155551234").unwrap(), "x", &["1", "2"]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["text"]["body"], "1 and 1 and 2");
    }

    #[test]
    fn missing_columns_are_named() {
        let t = spec(template_message()).compile().unwrap();
        assert_eq!(t.missing_columns(["phone", "first_name"]), ["order"]);
        assert!(t.missing_columns(["order", "first_name"]).is_empty());
    }

    #[test]
    fn template_parameters_and_bare_fields_need_values() {
        let t = spec(template_message()).compile().unwrap();
        assert!(t.placeholders().iter().all(|p| p.required));
        let err = t.check_values(&["", "1"]).unwrap_err();
        assert_eq!(err.column, "first_name");
        assert_eq!(err.field, "template.components[0].parameters[0].text");
        assert!(t.check_values(&["Ann", "1"]).is_ok());

        let caption = spec(json!({"type": "image", "image": {"link": "https://x.test/a.jpg", "caption": "Hi {{name}}"}}))
            .compile()
            .unwrap();
        assert!(!caption.placeholders()[0].required);
        assert!(caption.check_values(&[""]).is_ok());
    }

    #[test]
    fn reserved_keys_and_bad_placeholders_are_refused_with_their_field() {
        let err = spec(json!({"to": "1", "type": "text", "text": {"body": "x"}}))
            .compile()
            .unwrap_err();
        assert_eq!(err.field, "message.to");
        let err = spec(json!({"type": "text", "text": {"body": "Hi {{name"}}))
            .compile()
            .unwrap_err();
        assert_eq!(err.field, "message.text.body");
        let err = spec(json!({"type": "text", "text": {"body": "Hi {{ }}"}}))
            .compile()
            .unwrap_err();
        assert!(err.problem.contains("empty placeholder"), "{err}");
    }

    #[test]
    fn spec_fields_are_validated() {
        let mut s = spec(template_message());
        s.default_region = Some("usa".into());
        assert_eq!(s.validate().unwrap_err().field, "default_region");
        s.default_region = Some("US".into());
        s.mps = Some(0);
        assert_eq!(s.validate().unwrap_err().field, "mps");
        s.mps = Some(1000);
        s.phone_number_id = Some("+1555".into());
        assert_eq!(s.validate().unwrap_err().field, "phone_number_id");
        s.phone_number_id = Some("106540352242922".into());
        assert!(s.validate().is_ok());
        let json = r#"{"name":"x","message":{"type":"text","text":{"body":"y"}},"schedule_at":"2026-12-01T09:00:00Z","colour":"red"}"#;
        let err = serde_json::from_str::<CampaignSpec>(json).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn escape_matches_serde_json() {
        for s in [
            "plain",
            "quote\" back\\slash",
            "nl\n tab\t \u{1} \u{1f} é 漢字 😀",
            "",
        ] {
            let mut out = Vec::new();
            escape_into(&mut out, s);
            let ours = format!("\"{}\"", String::from_utf8(out).unwrap());
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), s);
        }
    }

    proptest! {
        /// Whatever the values, the rendered body is valid JSON holding exactly those values.
        #[test]
        fn render_is_valid_json_for_any_values(a in "\\PC*", b in ".*") {
            let t = spec(template_message()).compile().unwrap();
            let body = t.render(PhoneE164::parse("14155551234").unwrap(), "cb", &[&a, &b]);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let params = &v["template"]["components"][0]["parameters"];
            prop_assert_eq!(params[0]["text"].as_str().unwrap(), a.as_str());
            prop_assert_eq!(params[1]["text"].as_str().unwrap(), format!("Order #{b}"));
        }

        #[test]
        fn compile_never_panics_on_any_string(s in "\\PC{0,40}") {
            let _ = spec(json!({"type": "text", "text": {"body": s}})).compile();
        }
    }
}
