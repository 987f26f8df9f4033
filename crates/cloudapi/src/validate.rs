//! Limits Meta documents for send bodies, checked before anything is sent or stored.
//!
//! Every string rule lives in one table, [`check_field`], keyed by the field's path with array
//! indices removed (`interactive.action.buttons.reply.title`). Whole-body validation applies it
//! to every string; the loader applies it per recipient to the fields a campaign fills from
//! CSV columns. So a limit is written once and holds in both places. Structural rules (how
//! many buttons, which parameters a component takes) are checked here on the typed body.
//! Errors name the field, using the same paths as the campaign compiler in `herald-core`.

use std::collections::HashSet;

use crate::message::{
    Action, Component, Contact, Header, Interactive, Media, Message, Parameter, SendMessage,
    SendRequest, Template,
};

pub const TEXT_BODY_MAX: usize = 4096;
pub const CAPTION_MAX: usize = 1024;
pub const INTERACTIVE_BODY_MAX: usize = 1024;
pub const FOOTER_MAX: usize = 60;
pub const HEADER_TEXT_MAX: usize = 60;
pub const REPLY_BUTTONS_MAX: usize = 3;
pub const BUTTON_TITLE_MAX: usize = 20;
pub const BUTTON_ID_MAX: usize = 256;
pub const LIST_ROWS_MAX: usize = 10;
pub const LIST_SECTIONS_MAX: usize = 10;
pub const ROW_TITLE_MAX: usize = 24;
pub const ROW_ID_MAX: usize = 200;
pub const ROW_DESCRIPTION_MAX: usize = 72;
pub const SECTION_TITLE_MAX: usize = 24;
pub const PRODUCT_ITEMS_MAX: usize = 30;
pub const TEMPLATE_NAME_MAX: usize = 512;
pub const TEMPLATE_TEXT_PARAMETER_MAX: usize = 32_768;
pub const CALLBACK_DATA_MAX: usize = 512;
pub const CONTACTS_MAX: usize = 5;
pub const FLOW_CTA_MAX: usize = 30;

/// Link shorteners Meta refuses for media (matched on the host and its subdomains).
pub const URL_SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "cutt.ly",
    "rebrand.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "t.ly",
    "bl.ink",
    "s.id",
    "v.gd",
    "lnkd.in",
    "trib.al",
    "shorte.st",
    "adf.ly",
    "qr.ae",
    "soo.gd",
    "clck.ru",
    "u.to",
    "x.co",
    "tr.im",
    "po.st",
    "db.tt",
    "surl.li",
    "shorturl.com",
    "short.io",
    "rebrandly.com",
    "gg.gg",
];

const INTERACTIVE_KINDS: &[&str] = &[
    "button",
    "list",
    "product",
    "product_list",
    "catalog_message",
    "flow",
    "order_details",
    "order_status",
    "cta_url",
    "location_request_message",
    "call_permission_request",
    "address_message",
    "voice_call",
];
const HEADER_KINDS: &[&str] = &["text", "image", "video", "document"];
const COMPONENT_KINDS: &[&str] = &[
    "header",
    "body",
    "button",
    "footer",
    "carousel",
    "limited_time_offer",
];
const BUTTON_SUB_TYPES: &[&str] = &[
    "quick_reply",
    "url",
    "catalog",
    "flow",
    "copy_code",
    "mpm",
    "voice_call",
    "order_details",
];

/// A body that breaks a documented limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field's path, e.g. `interactive.action.buttons[3]`.
    pub field: String,
    pub problem: String,
}

/// How strict to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A string holding `{{placeholder}}`s is a campaign field filled per recipient: its
    /// string rule is checked per row at upload ([`check_field`]), not here.
    pub allow_placeholders: bool,
}

/// Checks one string field against its documented rule. `path` may carry array indices.
/// Returns the problem, if any.
pub fn check_field(path: &str, value: &str) -> Result<(), String> {
    let normalized = strip_indices(path);
    let Some(rule) = rule_for(&normalized) else {
        return Ok(());
    };
    match rule {
        Rule::Chars { min, max } => check_field_chars(value, min, max),
        Rule::MediaLink => check_media_link(value),
        Rule::TemplateName => check_template_name(value),
        Rule::TemplateText => {
            check_field_chars(value, 1, TEMPLATE_TEXT_PARAMETER_MAX)?;
            check_template_text(value)
        }
    }
}

#[derive(Clone, Copy)]
enum Rule {
    Chars {
        min: usize,
        max: usize,
    },
    MediaLink,
    TemplateName,
    /// A template's text parameter: its length, and no line break, tab or long run of spaces.
    TemplateText,
}

fn rule_for(path: &str) -> Option<Rule> {
    let chars = |min, max| Some(Rule::Chars { min, max });
    match path {
        "text.body" => chars(1, TEXT_BODY_MAX),
        "interactive.body.text" => chars(1, INTERACTIVE_BODY_MAX),
        "interactive.footer.text" => chars(1, FOOTER_MAX),
        "interactive.header.text" => chars(1, HEADER_TEXT_MAX),
        "interactive.header.sub_text" => chars(0, HEADER_TEXT_MAX),
        "interactive.action.buttons.reply.title" => chars(1, BUTTON_TITLE_MAX),
        "interactive.action.buttons.reply.id" => chars(1, BUTTON_ID_MAX),
        "interactive.action.button" => chars(1, BUTTON_TITLE_MAX),
        "interactive.action.sections.title" => chars(1, SECTION_TITLE_MAX),
        "interactive.action.sections.rows.title" => chars(1, ROW_TITLE_MAX),
        "interactive.action.sections.rows.id" => chars(1, ROW_ID_MAX),
        "interactive.action.sections.rows.description" => chars(0, ROW_DESCRIPTION_MAX),
        "interactive.action.parameters.flow_cta" => chars(1, FLOW_CTA_MAX),
        "template.name" => Some(Rule::TemplateName),
        "template.language.code" => chars(1, usize::MAX),
        "template.components.parameters.text" => Some(Rule::TemplateText),
        "template.components.parameters.payload" => chars(1, BUTTON_ID_MAX),
        "reaction.message_id" | "context.message_id" => chars(1, 512),
        "biz_opaque_callback_data" => chars(0, CALLBACK_DATA_MAX),
        p if p.ends_with(".link") => Some(Rule::MediaLink),
        p if p.ends_with(".caption") => chars(0, CAPTION_MAX),
        _ => None,
    }
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn check_field_chars(value: &str, min: usize, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n < min {
        return Err(if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if n > max {
        return Err(format!("is {n} characters long; the limit is {max}"));
    }
    Ok(())
}

/// The most spaces in a row a template's text parameter may hold.
pub const TEMPLATE_TEXT_SPACES_MAX: usize = 4;

/// Meta refuses a template's text parameter that holds a line break, a tab or more than four
/// spaces in a row ("Param text cannot have new-line/tab characters or more than 4
/// consecutive spaces", error 100), and the refusal is one the whole campaign stops for.
/// (A template's own text may have line breaks; the values put into it may not.)
fn check_template_text(value: &str) -> Result<(), String> {
    const RULE: &str = "Meta refuses a line break, a tab or more than four spaces in a row \
                        in a template's parameter";
    let mut spaces = 0;
    for c in value.chars() {
        let what = match c {
            '\n' | '\r' => "a line break",
            '\t' => "a tab",
            ' ' if spaces == TEMPLATE_TEXT_SPACES_MAX => "more than four spaces in a row",
            ' ' => {
                spaces += 1;
                continue;
            }
            _ => {
                spaces = 0;
                continue;
            }
        };
        return Err(format!("holds {what}: {RULE}"));
    }
    Ok(())
}

fn check_media_link(link: &str) -> Result<(), String> {
    let url = url::Url::parse(link).map_err(|e| format!("{link:?} is not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "media links must use https (Meta refuses {}://)",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| "the link has no host".to_owned())?
        .to_ascii_lowercase();
    if let Some(s) = URL_SHORTENERS
        .iter()
        .find(|s| host == **s || host.ends_with(&format!(".{s}")))
    {
        return Err(format!(
            "{s} is a URL shortener; Meta refuses shortened media links, use the full URL"
        ));
    }
    Ok(())
}

fn check_template_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > TEMPLATE_NAME_MAX {
        return Err(format!("is longer than {TEMPLATE_NAME_MAX} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "{name:?} is not a template name: only lowercase letters, digits and underscores \
             are allowed (found {c:?})"
        ));
    }
    Ok(())
}

struct Validator {
    opts: Options,
}

/// What each check answers.
type Checked = Result<(), ValidationError>;

fn err(field: impl Into<String>, problem: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Validator {
    fn string(&self, path: &str, value: &str) -> Checked {
        if self.opts.allow_placeholders && value.contains("{{") {
            return Ok(());
        }
        check_field(path, value).map_err(|p| err(path, p))
    }

    fn opt_string(&self, path: &str, value: Option<&String>) -> Checked {
        value.map_or(Ok(()), |v| self.string(path, v))
    }

    fn media(&self, path: &str, m: &Media, kind: MediaKind) -> Checked {
        match (&m.id, &m.link) {
            (None, None) => return Err(err(path, "needs an `id` or a `link`")),
            (Some(_), Some(_)) => return Err(err(path, "give an `id` or a `link`, not both")),
            (Some(id), None) if id.is_empty() => {
                return Err(err(format!("{path}.id"), "must not be empty"));
            }
            (None, Some(link)) => self.string(&format!("{path}.link"), link)?,
            _ => {}
        }
        if m.caption.is_some() && !kind.caption {
            return Err(err(format!("{path}.caption"), kind.no_caption));
        }
        if m.filename.is_some() && !kind.filename {
            return Err(err(
                format!("{path}.filename"),
                "only documents have a filename",
            ));
        }
        self.opt_string(&format!("{path}.caption"), m.caption.as_ref())
    }

    fn message(&self, m: &Message) -> Checked {
        match m {
            Message::Text(t) => self.string("text.body", &t.body),
            Message::Template(t) => self.template(t),
            Message::Image(media) => self.media("image", media, MediaKind::VISUAL),
            Message::Video(media) => self.media("video", media, MediaKind::VISUAL),
            Message::Document(media) => self.media("document", media, MediaKind::DOCUMENT),
            Message::Audio(media) => self.media("audio", media, MediaKind::BARE),
            Message::Sticker(media) => self.media("sticker", media, MediaKind::BARE),
            Message::Interactive(i) => self.interactive(i),
            Message::Reaction(r) => self.string("reaction.message_id", &r.message_id),
            Message::Location(l) => {
                if !(-90.0..=90.0).contains(&l.latitude) {
                    return Err(err("location.latitude", "must be between -90 and 90"));
                }
                if !(-180.0..=180.0).contains(&l.longitude) {
                    return Err(err("location.longitude", "must be between -180 and 180"));
                }
                Ok(())
            }
            Message::Contacts(c) => self.contacts(c),
        }
    }

    fn template(&self, t: &Template) -> Checked {
        self.string("template.name", &t.name)?;
        self.string("template.language.code", &t.language.code)?;
        if let Some(policy) = &t.language.policy
            && policy != "deterministic"
        {
            return Err(err(
                "template.language.policy",
                "the only policy is \"deterministic\"",
            ));
        }
        let mut button_indices = HashSet::new();
        for (i, c) in t.components.iter().flatten().enumerate() {
            let path = format!("template.components[{i}]");
            self.component(&path, c, &mut button_indices)?;
        }
        Ok(())
    }

    fn component(&self, path: &str, c: &Component, indices: &mut HashSet<u64>) -> Checked {
        let kind = c.kind.to_ascii_lowercase();
        if !COMPONENT_KINDS.contains(&kind.as_str()) {
            return Err(err(
                format!("{path}.type"),
                format!(
                    "unknown component type {:?}; expected header, body or button",
                    c.kind
                ),
            ));
        }
        let allowed: &[&str] = match kind.as_str() {
            "header" => &[
                "text",
                "currency",
                "date_time",
                "image",
                "document",
                "video",
                "location",
            ],
            "body" => &["text", "currency", "date_time"],
            "button" => &["payload", "text", "action", "coupon_code"],
            _ => &[],
        };
        if kind == "button" {
            let sub = c.sub_type.as_deref().ok_or_else(|| {
                err(
                    format!("{path}.sub_type"),
                    "a button component needs a sub_type",
                )
            })?;
            if !BUTTON_SUB_TYPES.contains(&sub.to_ascii_lowercase().as_str()) {
                return Err(err(
                    format!("{path}.sub_type"),
                    format!("unknown button sub_type {sub:?}"),
                ));
            }
            let index = c
                .index
                .as_ref()
                .ok_or_else(|| err(format!("{path}.index"), "a button component needs an index"))?;
            let n = index.value().filter(|n| *n <= 9).ok_or_else(|| {
                err(
                    format!("{path}.index"),
                    "must be a button position from 0 to 9",
                )
            })?;
            if !indices.insert(n) {
                return Err(err(
                    format!("{path}.index"),
                    format!("button {n} is given twice"),
                ));
            }
        } else if c.sub_type.is_some() || c.index.is_some() {
            let f = if c.sub_type.is_some() {
                "sub_type"
            } else {
                "index"
            };
            return Err(err(
                format!("{path}.{f}"),
                "only button components have this field",
            ));
        }
        for (j, p) in c.parameters.iter().flatten().enumerate() {
            let ppath = format!("{path}.parameters[{j}]");
            let ptype = parameter_kind(p);
            if !allowed.contains(&ptype) {
                return Err(err(
                    format!("{ppath}.type"),
                    format!("a {kind} component cannot take a {ptype} parameter"),
                ));
            }
            match p {
                Parameter::Text { text } => self.string(&format!("{ppath}.text"), text)?,
                Parameter::Payload { payload } => {
                    self.string(&format!("{ppath}.payload"), payload)?
                }
                Parameter::Image { image } => {
                    self.media(&format!("{ppath}.image"), image, MediaKind::TEMPLATE)?
                }
                Parameter::Video { video } => {
                    self.media(&format!("{ppath}.video"), video, MediaKind::TEMPLATE)?
                }
                Parameter::Document { document } => self.media(
                    &format!("{ppath}.document"),
                    document,
                    MediaKind::TEMPLATE_DOCUMENT,
                )?,
                Parameter::Currency { currency } => {
                    if currency.code.len() != 3
                        || !currency.code.bytes().all(|b| b.is_ascii_uppercase())
                    {
                        return Err(err(
                            format!("{ppath}.currency.code"),
                            "must be an ISO 4217 code such as \"USD\"",
                        ));
                    }
                }
                Parameter::DateTime { .. }
                | Parameter::Location { .. }
                | Parameter::Action { .. }
                | Parameter::CouponCode { .. } => {}
            }
        }
        Ok(())
    }

    fn interactive(&self, i: &Interactive) -> Checked {
        let kind = i.kind.as_str();
        if !INTERACTIVE_KINDS.contains(&kind) {
            return Err(err(
                "interactive.type",
                format!("unknown interactive type {kind:?}"),
            ));
        }
        if let Some(h) = &i.header {
            self.header(h)?;
        }
        if let Some(b) = &i.body {
            self.string("interactive.body.text", &b.text)?;
        } else if kind != "product" {
            return Err(err(
                "interactive.body",
                format!("a {kind} message needs a body"),
            ));
        }
        if let Some(f) = &i.footer {
            self.string("interactive.footer.text", &f.text)?;
        }
        let a = &i.action;
        match kind {
            "button" => self.reply_buttons(a),
            "list" => self.list(a),
            "product" => {
                if i.header.is_some() {
                    return Err(err(
                        "interactive.header",
                        "a product message cannot have a header",
                    ));
                }
                need(a.catalog_id.as_ref(), "interactive.action.catalog_id")?;
                need(
                    a.product_retailer_id.as_ref(),
                    "interactive.action.product_retailer_id",
                )?;
                Ok(())
            }
            "product_list" => {
                if i.header.is_none() {
                    return Err(err(
                        "interactive.header",
                        "a product_list message needs a header",
                    ));
                }
                need(a.catalog_id.as_ref(), "interactive.action.catalog_id")?;
                let sections = a.sections.as_deref().unwrap_or_default();
                if sections.is_empty() || sections.len() > LIST_SECTIONS_MAX {
                    return Err(err("interactive.action.sections", "needs 1 to 10 sections"));
                }
                let items: usize = sections
                    .iter()
                    .map(|s| s.product_items.as_ref().map_or(0, Vec::len))
                    .sum();
                if items == 0 || items > PRODUCT_ITEMS_MAX {
                    return Err(err(
                        "interactive.action.sections",
                        format!("has {items} products; 1 to {PRODUCT_ITEMS_MAX} are allowed"),
                    ));
                }
                for (j, s) in sections.iter().enumerate() {
                    self.opt_string(
                        &format!("interactive.action.sections[{j}].title"),
                        s.title.as_ref(),
                    )?;
                }
                Ok(())
            }
            _ => {
                need(a.name.as_ref(), "interactive.action.name")?;
                if let Some(cta) = a
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get("flow_cta"))
                    .and_then(|v| v.as_str())
                {
                    self.string("interactive.action.parameters.flow_cta", cta)?;
                }
                Ok(())
            }
        }
    }

    fn header(&self, h: &Header) -> Checked {
        if !HEADER_KINDS.contains(&h.kind.as_str()) {
            return Err(err(
                "interactive.header.type",
                format!(
                    "unknown header type {:?}; expected text, image, video or document",
                    h.kind
                ),
            ));
        }
        match h.kind.as_str() {
            "text" => self.string(
                "interactive.header.text",
                h.text.as_deref().unwrap_or_default(),
            )?,
            "image" => self.media(
                "interactive.header.image",
                need(h.image.as_ref(), "interactive.header.image")?,
                MediaKind::TEMPLATE,
            )?,
            "video" => self.media(
                "interactive.header.video",
                need(h.video.as_ref(), "interactive.header.video")?,
                MediaKind::TEMPLATE,
            )?,
            _ => self.media(
                "interactive.header.document",
                need(h.document.as_ref(), "interactive.header.document")?,
                MediaKind::TEMPLATE_DOCUMENT,
            )?,
        }
        self.opt_string("interactive.header.sub_text", h.sub_text.as_ref())
    }

    fn reply_buttons(&self, a: &Action) -> Checked {
        let buttons = need(a.buttons.as_ref(), "interactive.action.buttons")?;
        if buttons.is_empty() || buttons.len() > REPLY_BUTTONS_MAX {
            return Err(err(
                "interactive.action.buttons",
                format!(
                    "has {} buttons; 1 to {REPLY_BUTTONS_MAX} are allowed",
                    buttons.len()
                ),
            ));
        }
        let (mut ids, mut titles) = (HashSet::new(), HashSet::new());
        for (j, b) in buttons.iter().enumerate() {
            let path = format!("interactive.action.buttons[{j}]");
            if b.kind != "reply" {
                return Err(err(
                    format!("{path}.type"),
                    "the only button type is \"reply\"",
                ));
            }
            self.string(&format!("{path}.reply.id"), &b.reply.id)?;
            self.string(&format!("{path}.reply.title"), &b.reply.title)?;
            if !ids.insert(&b.reply.id) {
                return Err(err(format!("{path}.reply.id"), "button ids must be unique"));
            }
            if !titles.insert(&b.reply.title) {
                return Err(err(
                    format!("{path}.reply.title"),
                    "button titles must be unique",
                ));
            }
        }
        Ok(())
    }

    fn list(&self, a: &Action) -> Checked {
        self.string(
            "interactive.action.button",
            need(a.button.as_ref(), "interactive.action.button")?,
        )?;
        let sections = need(a.sections.as_ref(), "interactive.action.sections")?;
        if sections.is_empty() || sections.len() > LIST_SECTIONS_MAX {
            return Err(err(
                "interactive.action.sections",
                format!(
                    "has {} sections; 1 to {LIST_SECTIONS_MAX} are allowed",
                    sections.len()
                ),
            ));
        }
        let rows: usize = sections
            .iter()
            .map(|s| s.rows.as_ref().map_or(0, Vec::len))
            .sum();
        if rows == 0 || rows > LIST_ROWS_MAX {
            return Err(err(
                "interactive.action.sections",
                format!("has {rows} rows in total; 1 to {LIST_ROWS_MAX} are allowed"),
            ));
        }
        let mut ids = HashSet::new();
        for (j, s) in sections.iter().enumerate() {
            let path = format!("interactive.action.sections[{j}]");
            match &s.title {
                Some(t) => self.string(&format!("{path}.title"), t)?,
                None if sections.len() > 1 => {
                    return Err(err(
                        format!("{path}.title"),
                        "required when a list has several sections",
                    ));
                }
                None => {}
            }
            for (k, r) in s.rows.iter().flatten().enumerate() {
                let rpath = format!("{path}.rows[{k}]");
                self.string(&format!("{rpath}.id"), &r.id)?;
                self.string(&format!("{rpath}.title"), &r.title)?;
                self.opt_string(&format!("{rpath}.description"), r.description.as_ref())?;
                if !ids.insert(&r.id) {
                    return Err(err(format!("{rpath}.id"), "row ids must be unique"));
                }
            }
        }
        Ok(())
    }

    fn contacts(&self, contacts: &[Contact]) -> Checked {
        if contacts.is_empty() || contacts.len() > CONTACTS_MAX {
            return Err(err(
                "contacts",
                format!(
                    "has {} contacts; 1 to {CONTACTS_MAX} are allowed",
                    contacts.len()
                ),
            ));
        }
        for (i, c) in contacts.iter().enumerate() {
            let formatted = c.name.as_ref().and_then(|n| n.formatted_name.as_ref());
            if formatted.is_none_or(|f| f.trim().is_empty()) {
                return Err(err(
                    format!("contacts[{i}].name.formatted_name"),
                    "is required",
                ));
            }
        }
        Ok(())
    }

    fn envelope(&self, m: &SendMessage) -> Checked {
        if m.messaging_product != "whatsapp" {
            return Err(err("messaging_product", "must be \"whatsapp\""));
        }
        if let Some(r) = &m.recipient_type
            && r != "individual"
            && r != "group"
        {
            return Err(err("recipient_type", "must be \"individual\" or \"group\""));
        }
        if m.to.trim().is_empty() {
            return Err(err("to", "must not be empty"));
        }
        if let Some(c) = &m.context {
            self.string("context.message_id", &c.message_id)?;
        }
        self.opt_string(
            "biz_opaque_callback_data",
            m.biz_opaque_callback_data.as_ref(),
        )
    }
}

fn need<'a, T>(v: Option<&'a T>, field: &str) -> Result<&'a T, ValidationError> {
    v.ok_or_else(|| err(field, "is required"))
}

fn parameter_kind(p: &Parameter) -> &'static str {
    match p {
        Parameter::Text { .. } => "text",
        Parameter::Currency { .. } => "currency",
        Parameter::DateTime { .. } => "date_time",
        Parameter::Image { .. } => "image",
        Parameter::Document { .. } => "document",
        Parameter::Video { .. } => "video",
        Parameter::Location { .. } => "location",
        Parameter::Payload { .. } => "payload",
        Parameter::Action { .. } => "action",
        Parameter::CouponCode { .. } => "coupon_code",
    }
}

#[derive(Clone, Copy)]
struct MediaKind {
    caption: bool,
    filename: bool,
    no_caption: &'static str,
}

impl MediaKind {
    const VISUAL: Self = Self {
        caption: true,
        filename: false,
        no_caption: "",
    };
    const DOCUMENT: Self = Self {
        caption: true,
        filename: true,
        no_caption: "",
    };
    const BARE: Self = Self {
        caption: false,
        filename: false,
        no_caption: "audio and sticker messages cannot have a caption",
    };
    const TEMPLATE: Self = Self {
        caption: false,
        filename: false,
        no_caption: "template and header media cannot have a caption",
    };
    const TEMPLATE_DOCUMENT: Self = Self {
        caption: false,
        filename: true,
        no_caption: "template and header media cannot have a caption",
    };
}

impl Message {
    /// Checks every documented limit; the error names the field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_with(Options::default())
    }

    pub fn validate_with(&self, opts: Options) -> Result<(), ValidationError> {
        Validator { opts }.message(self)
    }
}

impl SendMessage {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let v = Validator {
            opts: Options::default(),
        };
        v.envelope(self)?;
        v.message(&self.message)
    }
}

impl SendRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Message(m) => m.validate(),
            Self::MarkRead(r) => {
                if r.messaging_product != "whatsapp" {
                    return Err(err("messaging_product", "must be \"whatsapp\""));
                }
                if r.status != "read" {
                    return Err(err(
                        "status",
                        "the only status a business can set is \"read\"",
                    ));
                }
                if r.message_id.is_empty() {
                    return Err(err("message_id", "must not be empty"));
                }
                if let Some(t) = &r.typing_indicator
                    && t.kind != "text"
                {
                    return Err(err("typing_indicator.type", "the only type is \"text\""));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn msg(v: Value) -> Message {
        Message::from_map(v.as_object().unwrap().clone()).unwrap()
    }

    fn field_of(v: Value) -> String {
        msg(v).validate().unwrap_err().field
    }

    #[test]
    fn text_length_is_counted_in_characters() {
        assert!(
            msg(json!({"type": "text", "text": {"body": "é".repeat(4096)}}))
                .validate()
                .is_ok()
        );
        let e = msg(json!({"type": "text", "text": {"body": "a".repeat(4097)}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "text.body");
        assert!(
            e.problem.contains("4097") && e.problem.contains("4096"),
            "{e}"
        );
        assert_eq!(
            field_of(json!({"type": "text", "text": {"body": ""}})),
            "text.body"
        );
    }

    #[test]
    fn media_links_must_be_https_and_not_shortened() {
        let ok = json!({"type": "image", "image": {"link": "https://cdn.example.com/a.jpg", "caption": "x"}});
        assert!(msg(ok).validate().is_ok());
        let e = msg(json!({"type": "image", "image": {"link": "http://cdn.example.com/a.jpg"}}))
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "image.link");
        assert!(e.problem.contains("https"), "{e}");
        let e = msg(json!({"type": "document", "document": {"link": "https://bit.ly/x"}}))
            .validate()
            .unwrap_err();
        assert!(e.problem.contains("shortener"), "{e}");
        let e = msg(json!({"type": "video", "video": {"link": "https://www.TinyURL.com/x"}}))
            .validate()
            .unwrap_err();
        assert!(e.problem.contains("shortener"), "{e}");
        assert_eq!(
            field_of(json!({"type": "audio", "audio": {"id": "1", "caption": "no"}})),
            "audio.caption"
        );
        assert_eq!(
            field_of(json!({"type": "image", "image": {"id": "1", "link": "https://a.test/x"}})),
            "image"
        );
        assert_eq!(
            field_of(json!({"type": "image", "image": {"id": "1", "filename": "a.pdf"}})),
            "image.filename"
        );
        let e = msg(json!({"type": "template", "template": {"name": "t", "language": {"code": "en"}, "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "ftp://x.test/a"}}]}]}}))
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "template.components[0].parameters[0].image.link");
    }

    #[test]
    fn template_names_follow_meta_format() {
        let t = |name: &str| json!({"type": "template", "template": {"name": name, "language": {"code": "en_US"}}});
        assert!(msg(t("order_update_2")).validate().is_ok());
        for bad in ["Order", "order-update", "order update", ""] {
            assert_eq!(field_of(t(bad)), "template.name", "{bad}");
        }
    }

    #[test]
    fn template_components_are_checked() {
        let t = |components: Value| json!({"type": "template", "template": {"name": "t", "language": {"code": "en"}, "components": components}});
        assert_eq!(
            field_of(t(
                json!([{"type": "body", "parameters": [{"type": "payload", "payload": "x"}]}])
            )),
            "template.components[0].parameters[0].type"
        );
        assert_eq!(
            field_of(t(
                json!([{"type": "button", "index": "0", "parameters": []}])
            )),
            "template.components[0].sub_type"
        );
        assert_eq!(
            field_of(t(
                json!([{"type": "button", "sub_type": "quick_reply", "index": "12", "parameters": []}])
            )),
            "template.components[0].index"
        );
        assert_eq!(
            field_of(t(
                json!([{"type": "body", "parameters": [{"type": "text", "text": ""}]}])
            )),
            "template.components[0].parameters[0].text"
        );
        assert_eq!(
            field_of(t(json!([{"type": "body", "parameters": [
                {"type": "currency", "currency": {"fallback_value": "$1", "code": "usd", "amount_1000": 1000}}]}]))),
            "template.components[0].parameters[0].currency.code"
        );
    }

    fn buttons(n: usize, title: &str) -> Value {
        let b: Vec<Value> = (0..n)
            .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("{title}{i}")}}))
            .collect();
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": b}}})
    }

    #[test]
    fn reply_buttons_one_to_three_titles_up_to_twenty() {
        assert!(msg(buttons(3, "Yes")).validate().is_ok());
        assert_eq!(field_of(buttons(4, "Yes")), "interactive.action.buttons");
        assert_eq!(field_of(buttons(0, "Yes")), "interactive.action.buttons");
        assert!(msg(buttons(1, &"a".repeat(19))).validate().is_ok());
        assert_eq!(
            field_of(buttons(1, &"a".repeat(20))),
            "interactive.action.buttons[0].reply.title"
        );
    }

    fn list(rows_per_section: &[usize], title_len: usize) -> Value {
        let sections: Vec<Value> = rows_per_section
            .iter()
            .enumerate()
            .map(|(s, n)| {
                let rows: Vec<Value> = (0..*n)
                    .map(|r| json!({"id": format!("s{s}r{r}"), "title": "t".repeat(title_len)}))
                    .collect();
                json!({"title": format!("Section {s}"), "rows": rows})
            })
            .collect();
        json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Choose"},
               "action": {"button": "Options", "sections": sections}}})
    }

    #[test]
    fn lists_hold_at_most_ten_rows_in_total_titles_up_to_twenty_four() {
        assert!(msg(list(&[5, 5], 24)).validate().is_ok());
        assert_eq!(field_of(list(&[6, 5], 10)), "interactive.action.sections");
        assert_eq!(
            field_of(list(&[1], 25)),
            "interactive.action.sections[0].rows[0].title"
        );
        let mut untitled = list(&[1, 1], 5);
        untitled["interactive"]["action"]["sections"][1]
            .as_object_mut()
            .unwrap()
            .remove("title");
        assert_eq!(field_of(untitled), "interactive.action.sections[1].title");
    }

    #[test]
    fn placeholders_defer_string_rules_but_not_structure() {
        let m = msg(json!({"type": "image", "image": {"link": "{{image_url}}"}}));
        assert!(m.validate().is_err());
        assert!(
            m.validate_with(Options {
                allow_placeholders: true
            })
            .is_ok()
        );
        let four = msg(buttons(4, "{{x}}"));
        assert!(
            four.validate_with(Options {
                allow_placeholders: true
            })
            .is_err()
        );
    }

    #[test]
    fn check_field_uses_paths_with_indices() {
        assert!(check_field("interactive.action.buttons[2].reply.title", "short").is_ok());
        assert!(check_field("interactive.action.buttons[2].reply.title", &"x".repeat(21)).is_err());
        assert!(check_field("image.link", "http://a.test/x").is_err());
        assert!(check_field("some.unknown.field", "anything").is_ok());
    }

    #[test]
    fn a_template_text_parameter_holds_no_line_break_tab_or_long_run_of_spaces() {
        let path = "template.components[1].parameters[0].text";
        assert!(check_field(path, "12 Main St, Flat 4    (side door)").is_ok());
        for (value, says) in [
            ("12 Main St\nFlat 4", "a line break"),
            ("12 Main St\r\nFlat 4", "a line break"),
            ("12 Main St\tFlat 4", "a tab"),
            ("12 Main St     Flat 4", "more than four spaces"),
        ] {
            let problem = check_field(path, value).expect_err(value);
            assert!(problem.contains(says), "{value:?}: {problem}");
        }
        assert!(check_field(path, "").is_err(), "empty");
        // Free text keeps its line breaks, and so does a template's own text.
        assert!(check_field("text.body", "Hello\n\nWorld").is_ok());
        assert!(check_field("interactive.body.text", "a\tb     c").is_ok());
        // The same rule holds for a fixed value in a whole message.
        assert_eq!(
            field_of(
                json!({"type": "template", "template": {"name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "a\nb"}]}]}})
            ),
            "template.components[0].parameters[0].text"
        );
    }

    #[test]
    fn location_and_contacts() {
        assert_eq!(
            field_of(json!({"type": "location", "location": {"latitude": 91.0, "longitude": 0.0}})),
            "location.latitude"
        );
        assert_eq!(
            field_of(json!({"type": "contacts", "contacts": [{"phones": [{"phone": "+1 555"}]}]})),
            "contacts[0].name.formatted_name"
        );
    }
}
