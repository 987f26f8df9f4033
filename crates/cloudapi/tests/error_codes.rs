//! Herald's error table against Meta's own advice for each code (`data/meta_error_codes.toml`,
//! written down from Meta's reference, not from the table): every code Meta's advice covers is
//! classified the way that advice implies, and every code in the table has been checked
//! against Meta's advice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use herald_cloudapi::ErrorClass;
use serde::Deserialize;

#[derive(Deserialize)]
struct Codes {
    code: Vec<Code>,
}

#[derive(Deserialize)]
struct Code {
    code: i64,
    title: String,
    advice: String,
}

fn codes() -> Vec<Code> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/meta_error_codes.toml"
    );
    toml::from_str::<Codes>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .code
}

/// What Herald must do when Meta gives this advice.
fn class_for(advice: &str) -> ErrorClass {
    match advice {
        "retry" => ErrorClass::Transient,
        "slow_down" => ErrorClass::Throttled,
        "wait_pair" => ErrorClass::PairLimited,
        "wait_upgrade" => ErrorClass::Maintenance,
        "recipient" => ErrorClass::RecipientPermanent,
        "not_delivered" => ErrorClass::FrequencyCapped,
        "fix_campaign" => ErrorClass::CampaignFatal,
        "limit_spent" => ErrorClass::MessagingLimit,
        "fix_account" => ErrorClass::SenderFatal,
        other => panic!("unknown advice {other:?}"),
    }
}

#[test]
fn every_code_is_classified_as_metas_advice_implies() {
    let codes = codes();
    assert!(codes.len() >= 40, "{} codes", codes.len());
    let mut wrong = Vec::new();
    for c in &codes {
        let want = class_for(&c.advice);
        let got = ErrorClass::of_code(c.code);
        if got != Some(want) {
            wrong.push(format!(
                "{} ({}): Meta says {}, so {want}; the table says {got:?}",
                c.code, c.title, c.advice
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_code_in_the_table_was_checked_against_metas_advice() {
    let checked: BTreeSet<i64> = codes().iter().map(|c| c.code).collect();
    let unchecked: Vec<i64> = ErrorClass::known_codes()
        .filter(|c| !checked.contains(c))
        .collect();
    assert!(unchecked.is_empty(), "not in the fixture: {unchecked:?}");
}

#[test]
fn retrying_follows_the_advice_not_the_class_name() {
    // Meta says to try again later for exactly these kinds of advice; everything else settles.
    for c in codes() {
        let retry = matches!(
            c.advice.as_str(),
            "retry" | "slow_down" | "wait_pair" | "wait_upgrade"
        );
        let class = ErrorClass::of_code(c.code).unwrap();
        assert_eq!(class.is_retryable(), retry, "{} ({})", c.code, c.title);
    }
}
