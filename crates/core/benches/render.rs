//! ns per rendered and serialised send body: the compiled template against the naive way
//! (clone the message JSON, substitute strings, serialise with serde_json).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_core::{CampaignSpec, PhoneE164};
use serde_json::{Value, json};

fn spec() -> CampaignSpec {
    serde_json::from_value(json!({
        "name": "bench",
        "message": {
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/{{image}}.jpg"}}]},
                    {"type": "body", "parameters": [
                        {"type": "text", "text": "{{first_name}}"},
                        {"type": "text", "text": "Order #{{order}}"},
                        {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}}
                    ]},
                    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "{{order}}"}]}
                ]
            }
        }
    }))
    .expect("valid spec")
}

/// The baseline: substitute into a clone of the JSON tree and serialise it.
fn naive(message: &Value, to: &str, cb: &str, vars: &[(&str, &str)]) -> Vec<u8> {
    fn walk(v: &mut Value, vars: &[(&str, &str)]) {
        match v {
            Value::String(s) if s.contains("{{") => {
                for (k, val) in vars {
                    *s = s.replace(&format!("{{{{{k}}}}}"), val);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, vars)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, vars)),
            _ => {}
        }
    }
    let mut m = message.clone();
    walk(&mut m, vars);
    if let Value::Object(o) = &mut m {
        o.insert("messaging_product".into(), "whatsapp".into());
        o.insert("recipient_type".into(), "individual".into());
        o.insert("to".into(), to.into());
        o.insert("biz_opaque_callback_data".into(), cb.into());
    }
    serde_json::to_vec(&m).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    let template = spec.compile().expect("compiles");
    let to = PhoneE164::parse("+447912345678").expect("valid");
    let vars = ["Zoë", "4521", "hero-banner"];
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("render");
    group.bench_function("compiled", |b| {
        b.iter(|| {
            out.clear();
            template.render_into(
                &mut out,
                black_box(to),
                black_box("hrld:01jdx4k2m3abcdef:123456"),
                black_box(&vars),
            );
            black_box(out.len())
        })
    });
    let message = Value::Object(spec.message.clone());
    let pairs = [
        ("first_name", "Zoë"),
        ("order", "4521"),
        ("image", "hero-banner"),
    ];
    group.bench_function("naive_clone_substitute_serialise", |b| {
        b.iter(|| {
            black_box(naive(
                black_box(&message),
                "447912345678",
                "hrld:01jdx4k2m3abcdef:123456",
                &pairs,
            ))
            .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
