//! Conformance with Meta's own description of the API: every request example of
//! `POST /{Phone-Number-ID}/messages` in the OpenAPI file must deserialize into the typed body,
//! re-serialize to equivalent JSON, and validate, unless it really breaks a documented limit.
//! Those exceptions are listed below with the limit each breaks; the test then repairs exactly
//! the listed fields and requires the repaired body to validate, so an exception cannot hide a
//! second, unlisted problem.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use herald_cloudapi::SendRequest;
use serde_json::{Value, json};

fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/meta-openapi-spec/business-messaging-api_v23.0.yaml")
}

/// Every request example, by name, read from the YAML at test time.
fn examples() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(spec_path()).expect("read the OpenAPI file");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("parse the OpenAPI YAML");
    let examples = &doc["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"]["requestBody"]["content"]
        ["application/json"]["examples"];
    examples
        .as_object()
        .expect("examples object")
        .iter()
        .map(|(name, ex)| (name.clone(), ex["value"].clone()))
        .collect()
}

/// A documented limit an example breaks: the field validation must name, why, and a value
/// that repairs it (at a JSON pointer into the example).
struct Breaks {
    field: &'static str,
    reason: &'static str,
    pointer: &'static str,
    repair: Value,
}

fn breaks(
    field: &'static str,
    reason: &'static str,
    pointer: &'static str,
    repair: Value,
) -> Breaks {
    Breaks {
        field,
        reason,
        pointer,
        repair,
    }
}

const NOT_HTTPS: &str =
    "media links must be https URLs; the example has a placeholder \"http(s)://…\"";
const TEMPLATE_NAME: &str =
    "template names are lowercase letters, digits and underscores; the example's is a placeholder";

fn link_repair(field: &'static str, pointer: &'static str) -> Breaks {
    breaks(
        field,
        NOT_HTTPS,
        pointer,
        json!("https://cdn.example.com/media"),
    )
}

fn template_name_repair() -> Breaks {
    breaks(
        "template.name",
        TEMPLATE_NAME,
        "/template/name",
        json!("order_update"),
    )
}

/// Examples that break a documented limit, in the order validation reports them.
fn exceptions() -> BTreeMap<&'static str, Vec<Breaks>> {
    let mut m: BTreeMap<&'static str, Vec<Breaks>> = BTreeMap::new();
    for (name, kind) in [
        ("Send Audio Message by URL", "audio"),
        ("Send Document Message by URL", "document"),
        ("Send Image Message by URL", "image"),
        ("Send Sticker Message by URL", "sticker"),
        ("Send Video Message by URL", "video"),
        ("Send Reply to Audio Message by URL", "audio"),
        ("Send Reply to Document Message by URL", "document"),
        ("Send Reply to Image Message by URL", "image"),
        ("Send Reply to Sticker Message by URL", "sticker"),
        ("Send Reply to Video Message by URL", "video"),
    ] {
        let (field, pointer): (&'static str, &'static str) = match kind {
            "audio" => ("audio.link", "/audio/link"),
            "document" => ("document.link", "/document/link"),
            "image" => ("image.link", "/image/link"),
            "sticker" => ("sticker.link", "/sticker/link"),
            _ => ("video.link", "/video/link"),
        };
        m.insert(name, vec![link_repair(field, pointer)]);
    }
    for name in [
        "Send Message Template Text",
        "Send Sample Shipping Confirmation Template",
        "Send Sample Text Message",
    ] {
        m.insert(name, vec![template_name_repair()]);
    }
    for name in [
        "Send Message Template Interactive",
        "Send Message Template Media",
    ] {
        m.insert(
            name,
            vec![
                template_name_repair(),
                link_repair(
                    "template.components[0].parameters[0].image.link",
                    "/template/components/0/parameters/0/image/link",
                ),
            ],
        );
    }
    m.insert(
        "Send Flow Template Message",
        vec![breaks(
            "template.name",
            TEMPLATE_NAME,
            "/template/name",
            json!("flow_signup"),
        )],
    );
    m.insert(
        "Send Multi-Product Message",
        vec![breaks(
            "interactive.header.type",
            "header type must be text, image, video or document; the example has a placeholder",
            "/interactive/header/type",
            json!("text"),
        )],
    );
    m
}

/// Examples that do not even have the documented shape: `text` of a template parameter must
/// be a string (the OpenAPI `TextParameter` schema), and this example gives booleans.
/// (path the error must name, repairs as (JSON pointer, value))
type Repairs = (&'static str, Vec<(&'static str, Value)>);

fn undeserializable() -> BTreeMap<&'static str, Repairs> {
    BTreeMap::from([(
        "Send Sample Issue Resolution Template",
        (
            "template.components[1].parameters[0]",
            vec![
                ("/template/components/1/parameters/0/text", json!("Yes")),
                ("/template/components/2/parameters/0/text", json!("No")),
            ],
        ),
    )])
}

/// Examples without the required `type`: it is inferred from the one content object present,
/// and re-serialization writes it.
const TYPE_INFERRED: [&str; 2] = [
    "Send Text Message with Preview URL",
    "Send Reply to List Message",
];

fn normalized(name: &str, mut v: Value) -> Value {
    if TYPE_INFERRED.contains(&name) {
        let obj = v.as_object_mut().expect("object");
        assert!(
            !obj.contains_key("type"),
            "{name} now has a type; update TYPE_INFERRED"
        );
        let kind = ["text", "interactive"]
            .into_iter()
            .find(|k| obj.contains_key(*k))
            .expect("a content object");
        obj.insert("type".into(), json!(kind));
    }
    v
}

fn set(v: &mut Value, pointer: &str, value: Value) {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("pointer {pointer} not in example")) = value;
}

#[test]
fn every_send_example_deserializes_round_trips_and_validates() {
    let examples = examples();
    assert!(
        examples.len() >= 50,
        "expected Meta's ~50 examples, found {}",
        examples.len()
    );
    let exceptions = exceptions();
    let undeserializable = undeserializable();
    let mut checked = 0;
    for (name, example) in &examples {
        if let Some((path, repairs)) = undeserializable.get(name.as_str()) {
            let err = serde_json::from_value::<SendRequest>(example.clone())
                .expect_err(&format!("{name}: expected a deserialization error"));
            assert!(
                err.to_string().contains(path),
                "{name}: error should name {path}: {err}"
            );
            let mut repaired = example.clone();
            for (pointer, value) in repairs {
                set(&mut repaired, pointer, value.clone());
            }
            let parsed: SendRequest = serde_json::from_value(repaired.clone())
                .unwrap_or_else(|e| panic!("{name}: repaired example must parse: {e}"));
            parsed
                .validate()
                .unwrap_or_else(|e| panic!("{name}: repaired example must validate: {e}"));
            checked += 1;
            continue;
        }

        let parsed: SendRequest = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("{name}: does not deserialize: {e}"));
        let reserialized = serde_json::to_value(&parsed).expect("serialize");
        assert_eq!(
            reserialized,
            normalized(name, example.clone()),
            "{name}: re-serialized JSON differs"
        );

        let mut body = example.clone();
        for b in exceptions.get(name.as_str()).into_iter().flatten() {
            let parsed: SendRequest = serde_json::from_value(body.clone()).expect("parses");
            let err = parsed
                .validate()
                .expect_err(&format!("{name}: should break {} ({})", b.field, b.reason));
            assert_eq!(err.field, b.field, "{name}: {err} (expected: {})", b.reason);
            set(&mut body, b.pointer, b.repair.clone());
        }
        let parsed: SendRequest = serde_json::from_value(body).expect("parses");
        parsed
            .validate()
            .unwrap_or_else(|e| panic!("{name}: does not validate: {e}"));
        checked += 1;
    }
    assert_eq!(checked, examples.len());
    // Every listed exception must still exist, so the lists cannot rot.
    for name in exceptions
        .keys()
        .chain(undeserializable.keys())
        .chain(TYPE_INFERRED.iter())
    {
        assert!(
            examples.contains_key(*name),
            "listed example {name:?} is not in the file"
        );
    }
}

#[test]
fn examples_cover_every_message_type() {
    let kinds: std::collections::BTreeSet<String> = examples()
        .values()
        .filter_map(|v| serde_json::from_value::<SendRequest>(v.clone()).ok())
        .filter_map(|r| r.as_message().map(|m| m.message.kind().to_owned()))
        .collect();
    for kind in herald_cloudapi::Message::KINDS {
        assert!(kinds.contains(kind), "no example of {kind}");
    }
}
