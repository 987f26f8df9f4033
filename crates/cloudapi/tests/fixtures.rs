//! Every real payload in `fixtures/` parses, every variant in it, with nothing lost: no
//! element falls back to "malformed" and no known `field` to raw JSON. Specific variants are
//! checked for the facts they carry (empty `recipient_id`, PMP pricing, callback data, …).
//! The error bodies collected from public sources parse and classify.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use herald_cloudapi::webhook::{ChangeValue, Lenient, MessagesValue, Notification};
use herald_cloudapi::{ErrorBody, ErrorClass};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// All webhook bodies: `(file/variant, raw bytes)`. A file with `object` at the top is one
/// body; otherwise it maps variant names to bodies.
fn webhook_bodies() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in ["meta-openapi", "meta-docs", "pywa"] {
        let mut files: Vec<_> = std::fs::read_dir(fixtures().join(dir))
            .expect("fixture dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).expect("read fixture");
            let v: Value = serde_json::from_slice(&bytes).expect("fixture is JSON");
            let stem = format!("{dir}/{}", path.file_stem().unwrap().to_string_lossy());
            if v.get("object").is_some() {
                out.insert(stem, bytes);
            } else {
                for (variant, body) in v.as_object().expect("variants") {
                    out.insert(
                        format!("{stem}/{variant}"),
                        serde_json::to_vec(body).unwrap(),
                    );
                }
            }
        }
    }
    out
}

fn parse(name: &str, bytes: &[u8]) -> Notification {
    Notification::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn only_messages_value(name: &str, n: &Notification) -> MessagesValue {
    let values: Vec<_> = n.messages_values().collect();
    assert_eq!(values.len(), 1, "{name}: expected one messages value");
    values[0].1.clone()
}

#[test]
fn every_fixture_and_variant_parses_without_loss() {
    let bodies = webhook_bodies();
    assert!(bodies.len() >= 70, "found only {} bodies", bodies.len());
    for (name, bytes) in &bodies {
        let n = parse(name, bytes);
        assert_eq!(n.object, "whatsapp_business_account", "{name}");
        assert!(!n.entry.is_empty(), "{name}: no entries");
        for change in n.entry.iter().flat_map(|e| &e.changes) {
            match &change.value {
                ChangeValue::Other(raw) => {
                    panic!("{name}: field {:?} kept raw: {}", change.field, raw.get())
                }
                ChangeValue::Messages(v) => {
                    let malformed = v.statuses.iter().filter(|s| s.parsed().is_none()).count()
                        + v.messages.iter().filter(|s| s.parsed().is_none()).count()
                        + v.contacts.iter().filter(|s| s.parsed().is_none()).count()
                        + v.user_preferences
                            .iter()
                            .filter(|s| s.parsed().is_none())
                            .count();
                    if malformed > 0 {
                        let reasons: Vec<_> = v
                            .statuses
                            .iter()
                            .filter_map(|s| match s {
                                Lenient::Malformed { error, .. } => Some(error.clone()),
                                Lenient::Parsed(_) => None,
                            })
                            .collect();
                        panic!("{name}: {malformed} malformed elements {reasons:?}");
                    }
                    let content = v.statuses.len()
                        + v.messages.len()
                        + v.errors.len()
                        + v.user_preferences.len();
                    assert!(content > 0, "{name}: a messages value with nothing in it");
                }
                ChangeValue::TemplateStatus(t) => assert!(!t.event.is_empty(), "{name}"),
                ChangeValue::AccountUpdate(a) => assert!(!a.event.is_empty(), "{name}"),
                ChangeValue::PhoneQuality(q) => assert!(!q.event.is_empty(), "{name}"),
                ChangeValue::TemplateCategory(t) => {
                    assert!(!t.message_template_name.is_empty(), "{name}")
                }
                ChangeValue::Capability(c) => assert!(
                    c.messaging_limit().is_some() || c.max_phone_numbers_per_business.is_some(),
                    "{name}"
                ),
            }
        }
    }
}

#[test]
fn statuses_carry_what_the_reconciler_needs() {
    let bodies = webhook_bodies();
    for (variant, expected) in [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("played", "played"),
        ("failed", "failed"),
        ("with_tracker", "sent"),
        ("group", "read"),
    ] {
        let name = format!("pywa/message_status/{variant}");
        let v = only_messages_value(&name, &parse(&name, &bodies[&name]));
        let s = v.statuses[0].parsed().unwrap();
        assert_eq!(s.status, expected, "{name}");
        assert!(!s.id.is_empty());
        assert!(
            herald_core::StatusEvent::parse(&s.status).is_some(),
            "{name}"
        );
    }
    let get = |name: &str| {
        let v = only_messages_value(name, &parse(name, &bodies[name]));
        v.statuses[0].parsed().unwrap().clone()
    };
    let failed = get("pywa/message_status/failed");
    assert_eq!(failed.errors[0].code, 130_472);
    assert_eq!(
        ErrorClass::of_code(failed.errors[0].code),
        Some(ErrorClass::FrequencyCapped)
    );
    assert_eq!(
        get("pywa/message_status/with_tracker")
            .biz_opaque_callback_data
            .as_deref(),
        Some("some data")
    );
    let sent = get("pywa/message_status/sent");
    let pricing = sent.pricing.unwrap();
    assert_eq!(pricing.pricing_model.as_deref(), Some("CBP"));
    assert_eq!(pricing.billable, Some(true));
    assert_eq!(sent.conversation.unwrap().origin.unwrap().kind, "service");
    assert_eq!(
        get("pywa/message_status/group").recipient_type.as_deref(),
        Some("group")
    );

    let bsuid = get("meta-docs/status_delivered_pmp_bsuid_only");
    assert_eq!(bsuid.recipient_id, "", "the number is hidden");
    assert!(
        bsuid
            .recipient_user_id
            .as_deref()
            .unwrap()
            .starts_with("user.")
    );
    let p = bsuid.pricing.unwrap();
    assert_eq!(
        (
            p.pricing_model.as_deref(),
            p.category.as_deref(),
            p.kind.as_deref()
        ),
        (Some("PMP"), Some("marketing"), Some("regular"))
    );
    assert_eq!(
        get("meta-docs/status_delivered_pmp_bsuid_phone").recipient_id,
        "16505551234"
    );

    let name = "meta-docs/value_errors_130429";
    let v = only_messages_value(name, &parse(name, &bodies[name]));
    assert!(v.statuses.is_empty() && v.messages.is_empty());
    assert_eq!(v.errors[0].code, 130_429);
}

#[test]
fn inbound_messages_of_every_kind() {
    let bodies = webhook_bodies();
    let expected_kinds: &[(&str, &str)] = &[
        ("text", "text"),
        ("image", "image"),
        ("media_with_url", "image"),
        ("video", "video"),
        ("document", "document"),
        ("audio", "audio"),
        ("voice", "audio"),
        ("static_sticker", "sticker"),
        ("animated_sticker", "sticker"),
        ("reaction", "reaction"),
        ("unreaction_empty", "reaction"),
        ("unreaction_no_emoji", "reaction"),
        ("current_location", "location"),
        ("chosen_location", "location"),
        ("contacts", "contacts"),
        ("order", "order"),
        ("unsupported", "unsupported"),
        ("unsupported_with_type", "unsupported"),
        ("reply", "text"),
        ("forwarded", "text"),
        ("forwarded_many_times", "text"),
        ("interactive_message_with_err", "interactive"),
        ("referral", "text"),
    ];
    for (variant, kind) in expected_kinds {
        let name = format!("pywa/message/{variant}");
        let v = only_messages_value(&name, &parse(&name, &bodies[&name]));
        let m = v.messages[0].parsed().unwrap();
        assert_eq!(m.kind, *kind, "{name}");
        assert!(!m.from.is_empty() && !m.id.is_empty(), "{name}");
    }
    let msg = |name: &str| {
        let v = only_messages_value(name, &parse(name, &bodies[name]));
        v.messages[0].parsed().unwrap().clone()
    };
    assert_eq!(msg("pywa/message/text").text_content(), Some("Body Text"));
    assert_eq!(msg("pywa/message/unsupported").errors[0].code, 131_051);
    assert_eq!(msg("pywa/message/voice").audio.unwrap().voice, Some(true));
    assert!(
        msg("pywa/message/unreaction_no_emoji")
            .reaction
            .unwrap()
            .emoji
            .is_none()
    );
    assert_eq!(
        msg("pywa/message/referral")
            .referral
            .unwrap()
            .ctwa_clid
            .as_deref(),
        Some("CTWA_CLID")
    );
    assert_eq!(
        msg("pywa/message/order").order.unwrap().product_items.len(),
        3
    );
    assert_eq!(
        msg("pywa/callback_button/button").text_content(),
        Some("title")
    );
    assert_eq!(
        msg("pywa/callback_button/quick_reply").text_content(),
        Some("title")
    );
    assert_eq!(msg("pywa/callback_selection/callback").kind, "interactive");
    assert!(
        msg("pywa/callback_selection/callback")
            .text_content()
            .is_some()
    );
    let changed = msg("pywa/system/phone_number_change");
    assert!(!changed.is_from_user());
    assert_eq!(
        changed.system.unwrap().kind.as_deref(),
        Some("user_changed_number")
    );
    assert_eq!(
        msg("meta-openapi/reaction_message")
            .reaction
            .unwrap()
            .emoji
            .as_deref()
            .map(|e| !e.is_empty()),
        Some(true)
    );
    assert_eq!(msg("meta-openapi/system_message").kind, "system");
    assert_eq!(
        msg("meta-openapi/unsupported_message").errors[0].code,
        131_051
    );
    assert!(
        msg("meta-openapi/text_message_from_click_to_whatsapp_ad")
            .referral
            .is_some()
    );
    assert!(
        msg("meta-openapi/interactive_list_reply_message")
            .text_content()
            .is_some()
    );
    assert!(
        msg("meta-openapi/interactive_button_reply_message")
            .text_content()
            .is_some()
    );
    assert_eq!(msg("meta-openapi/button_message").kind, "button");
    let name = "meta-openapi/system_message";
    let v = only_messages_value(name, &parse(name, &bodies[name]));
    assert!(v.contacts.is_empty(), "system messages have no contacts");
}

#[test]
fn preferences_templates_and_account_updates() {
    let bodies = webhook_bodies();
    for (variant, value) in [("resume", "resume"), ("signup", "signup")] {
        let name = format!("pywa/user_marketing_preferences/{variant}");
        let n = parse(&name, &bodies[&name]);
        assert_eq!(n.entry[0].changes[0].field, "user_preferences");
        let v = only_messages_value(&name, &n);
        let p = v.user_preferences[0].parsed().unwrap();
        assert_eq!(
            (p.value.as_str(), p.category.as_str()),
            (value, "marketing_messages")
        );
        assert_eq!(p.wa_id, "16505551234");
    }
    for (variant, event, template) in [
        ("approved", "APPROVED", "order_confirmation"),
        ("rejected", "REJECTED", "abandoned_cart"),
    ] {
        let name = format!("pywa/template_status_update/{variant}");
        let n = parse(&name, &bodies[&name]);
        match &n.entry[0].changes[0].value {
            ChangeValue::TemplateStatus(t) => {
                assert_eq!(
                    (t.event.as_str(), t.message_template_name.as_str()),
                    (event, template)
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let account_variants = bodies
        .keys()
        .filter(|k| k.starts_with("pywa/account_update/"))
        .count();
    assert_eq!(account_variants, 17);
    let n = parse("ban", &bodies["pywa/account_update/account_disabled"]);
    assert!(
        matches!(&n.entry[0].changes[0].value, ChangeValue::AccountUpdate(a) if a.event == "DISABLED_UPDATE")
    );
}

#[test]
fn every_collected_error_body_parses_and_classifies() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("graph-api/graph_api_error_bodies.json")).unwrap(),
    )
    .unwrap();
    let sync = doc["sync_responses"].as_array().unwrap();
    assert!(sync.len() >= 19);
    for entry in sync {
        let code = entry["code"].as_i64().unwrap();
        let body = serde_json::to_vec(&entry["body"]).unwrap();
        let e =
            ErrorBody::parse(&body).unwrap_or_else(|| panic!("code {code}: body does not parse"));
        assert_eq!(e.code, code);
        if let Some(sub) = entry["error_subcode"].as_i64() {
            assert_eq!(e.error_subcode, Some(sub));
        }
        assert!(
            ErrorClass::of_code(code).is_some(),
            "code {code} is not in the table"
        );
    }
    let class_of = |code: i64| ErrorClass::of_code(code).unwrap();
    assert_eq!(class_of(131_030), ErrorClass::RecipientPermanent);
    assert_eq!(class_of(132_001), ErrorClass::CampaignFatal);
    assert_eq!(class_of(190), ErrorClass::SenderFatal);
    assert_eq!(class_of(2), ErrorClass::Transient);
    assert_eq!(class_of(131_056), ErrorClass::PairLimited);
    let transient = sync.iter().find(|e| e["code"] == 2).unwrap();
    let e = ErrorBody::parse(&serde_json::to_vec(&transient["body"]).unwrap()).unwrap();
    assert_eq!(e.is_transient, Some(true));
    let details = sync.iter().find(|e| e["code"] == 132_001).unwrap();
    let e = ErrorBody::parse(&serde_json::to_vec(&details["body"]).unwrap()).unwrap();
    assert_eq!(
        e.details(),
        Some("template name (cg_quest_text) does not exist in en_US")
    );

    for group in [
        "webhook_status_errors",
        "webhook_message_errors",
        "webhook_value_errors",
    ] {
        for entry in doc[group].as_array().unwrap() {
            let e: herald_cloudapi::webhook::WebhookError =
                serde_json::from_value(entry["error"].clone())
                    .unwrap_or_else(|err| panic!("{group}: {err}"));
            assert_eq!(e.code, entry["code"].as_i64().unwrap());
        }
    }
}

/// The fixtures are vendored unchanged from the shared set; when the shared set is present
/// (a development checkout), the copies must still match it byte for byte.
#[test]
fn vendored_fixtures_match_the_shared_originals() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if !shared.join("fixtures").is_dir() {
        eprintln!("no ../shared next to the checkout; nothing to compare");
        return;
    }
    fn files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(root).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
    let ours = fixtures();
    for original in files(&shared.join("fixtures")) {
        let rel = original.strip_prefix(shared.join("fixtures")).unwrap();
        assert_eq!(
            std::fs::read(&original).unwrap(),
            std::fs::read(ours.join(rel)).unwrap_or_default(),
            "fixtures/{} differs from the shared original",
            rel.display()
        );
    }
    let spec = "reference/meta-openapi/business-messaging-api_v23.0.yaml";
    assert_eq!(
        std::fs::read(shared.join(spec)).unwrap(),
        std::fs::read(ours.join("meta-openapi-spec/business-messaging-api_v23.0.yaml")).unwrap()
    );
}

/// `business_capability_update` as Meta documents it: the portfolio-wide limit wins over the
/// legacy per-number one, and -1 is unlimited.
#[test]
fn a_capability_update_names_the_messaging_limit() {
    use herald_core::MessagingLimit;
    let body = |value: &str| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","time":1739321024,
            "changes":[{{"field":"business_capability_update","value":{value}}}]}}]}}"#
        )
    };
    let limit = |value: &str| {
        let n = parse("capability", body(value).as_bytes());
        match &n.entry[0].changes[0].value {
            ChangeValue::Capability(c) => c.messaging_limit(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        limit(
            r#"{"max_daily_conversation_per_phone":1000,"max_phone_numbers_per_business":2,"max_daily_conversations_per_business":2000}"#
        ),
        Some(MessagingLimit::Users(2000))
    );
    assert_eq!(
        limit(r#"{"max_daily_conversation_per_phone":250}"#),
        Some(MessagingLimit::Users(250))
    );
    assert_eq!(
        limit(r#"{"max_daily_conversations_per_business":-1}"#),
        Some(MessagingLimit::Unlimited)
    );
    assert_eq!(limit(r#"{"max_phone_numbers_per_business":2}"#), None);
    // Meta's reference also lists the portfolio field's values as tier names.
    assert_eq!(
        limit(r#"{"max_daily_conversations_per_business":"TIER_10K"}"#),
        Some(MessagingLimit::Users(10_000))
    );
    assert_eq!(
        limit(r#"{"max_daily_conversations_per_business":"TIER_UNLIMITED"}"#),
        Some(MessagingLimit::Unlimited)
    );
}
