//! Tricky phone values across countries, with the outcome Herald gives and the outcome
//! libphonenumber itself gives for the same text (so every place where Herald is stricter or
//! more forgiving than the library is written down). Expectations were checked against two
//! ports of Google's libphonenumber: rlibphonenumber (metadata 9.0.42, which this test calls)
//! and the Python `phonenumbers` package (metadata 9.0.43).
//!
//! Whatever Herald accepts must be a number libphonenumber calls valid.

#![allow(clippy::unwrap_used)]

use herald_loader::phone::Normalizer;
use rlibphonenumber::enums::Region;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat};

/// What libphonenumber says about the text as written.
#[derive(Debug, PartialEq)]
enum Lib {
    Valid(&'static str),
    Rejects,
}
use Lib::*;

/// (input, default region, Herald's outcome: E.164 or reason code, libphonenumber's verdict)
const TABLE: &[(&str, &str, &str, Lib)] = &[
    // United States
    (
        "+1 (415) 555-2671",
        "",
        "+14155552671",
        Valid("+14155552671"),
    ),
    (
        "(415) 555-2671",
        "US",
        "+14155552671",
        Valid("+14155552671"),
    ),
    (
        "1-415-555-2671",
        "US",
        "+14155552671",
        Valid("+14155552671"),
    ),
    // Digits-only international form (a WhatsApp id): libphonenumber needs the `+`.
    ("14155552671", "", "+14155552671", Rejects),
    (
        "011 44 7912 345678",
        "US",
        "+447912345678",
        Valid("+447912345678"),
    ),
    ("+1 555 0100", "", "too_short", Rejects),
    // libphonenumber drops the extension and keeps the number; WhatsApp cannot dial it.
    (
        "+1 415 555 2671 ext. 12",
        "",
        "extension",
        Valid("+14155552671"),
    ),
    // libphonenumber reads letters as keypad digits; Herald refuses letters outright.
    ("1-800-FLOWERS", "US", "letters", Valid("+18003569377")),
    ("+1 202 555 0173", "", "+12025550173", Valid("+12025550173")),
    // Without a region these digits read as +41 (Switzerland), where they are too short.
    ("4155552671", "", "too_short", Rejects),
    // United Kingdom
    (
        "+44\u{a0}7912\u{a0}345678",
        "",
        "+447912345678",
        Valid("+447912345678"),
    ),
    (
        "07912 345678",
        "GB",
        "+447912345678",
        Valid("+447912345678"),
    ),
    ("07912 345678", "", "no_default_region", Rejects),
    // `00` is the international prefix in most of the world.
    ("0044 7912 345678", "", "+447912345678", Rejects),
    ("447912345678", "", "+447912345678", Rejects),
    // Invalid as a US national number, valid as a digits-only international one.
    ("447912345678", "US", "+447912345678", Rejects),
    (
        "+44 (0) 7912 345678",
        "",
        "+447912345678",
        Valid("+447912345678"),
    ),
    // One port maps the stray O to 6, a different valid number.
    ("+44 7912 34567O", "", "letters", Rejects),
    ("4.47912E+11", "", "spreadsheet_damage", Rejects),
    ("447912345678.0", "", "spreadsheet_damage", Rejects),
    ("+44 7700 900123", "", "invalid_number", Rejects),
    (
        "+44.7912.345.678",
        "",
        "+447912345678",
        Valid("+447912345678"),
    ),
    (
        "+44 20 7946 0958",
        "",
        "+442079460958",
        Valid("+442079460958"),
    ),
    ("+44 79123456789012", "", "too_long", Rejects),
    ("+44 7912", "", "too_short", Rejects),
    ("٠٧٩١٢٣٤٥٦٧٨", "GB", "+447912345678", Valid("+447912345678")),
    // Germany
    (
        "+49 1512 3456789",
        "",
        "+4915123456789",
        Valid("+4915123456789"),
    ),
    (
        "015123456789",
        "DE",
        "+4915123456789",
        Valid("+4915123456789"),
    ),
    (
        "+49 (0)30 12345678",
        "",
        "+493012345678",
        Valid("+493012345678"),
    ),
    ("0049 171 1234567", "", "+491711234567", Rejects),
    // France
    (
        "+33 6 12 34 56 78",
        "",
        "+33612345678",
        Valid("+33612345678"),
    ),
    (
        "06 12 34 56 78",
        "FR",
        "+33612345678",
        Valid("+33612345678"),
    ),
    ("+33 7 00 00 00 00", "", "invalid_number", Rejects),
    // Italy keeps its leading zero inside E.164.
    (
        "+39 06 6982 1234",
        "",
        "+390669821234",
        Valid("+390669821234"),
    ),
    (
        "06 6982 1234",
        "IT",
        "+390669821234",
        Valid("+390669821234"),
    ),
    (
        "+39 312 345 6789",
        "",
        "+393123456789",
        Valid("+393123456789"),
    ),
    ("390669821234", "", "+390669821234", Rejects),
    // Brazil, with and without the ninth digit (repaired only for 6–9 subscriber numbers,
    // which cannot be landlines).
    (
        "+55 11 91234-5678",
        "",
        "+5511912345678",
        Valid("+5511912345678"),
    ),
    (
        "(11) 91234-5678",
        "BR",
        "+5511912345678",
        Valid("+5511912345678"),
    ),
    ("+55 11 8123-4567", "", "+5511981234567", Rejects),
    (
        "+55 21 2123-4567",
        "",
        "+552121234567",
        Valid("+552121234567"),
    ),
    ("5511912345678", "", "+5511912345678", Rejects),
    // Mexico: the old mobile `1` is dropped.
    (
        "+52 55 1234 5678",
        "",
        "+525512345678",
        Valid("+525512345678"),
    ),
    ("+52 1 55 1234 5678", "", "+525512345678", Rejects),
    (
        "55 1234 5678",
        "MX",
        "+525512345678",
        Valid("+525512345678"),
    ),
    // Argentina: national mobile form with the 15 token.
    (
        "+54 9 11 1234-5678",
        "",
        "+5491112345678",
        Valid("+5491112345678"),
    ),
    (
        "011 15 1234-5678",
        "AR",
        "+5491112345678",
        Valid("+5491112345678"),
    ),
    // India
    (
        "+91 98765 43210",
        "",
        "+919876543210",
        Valid("+919876543210"),
    ),
    (
        "098765 43210",
        "IN",
        "+919876543210",
        Valid("+919876543210"),
    ),
    ("919876543210", "", "+919876543210", Rejects),
    // Nigeria
    (
        "+234 803 123 4567",
        "",
        "+2348031234567",
        Valid("+2348031234567"),
    ),
    (
        "0803 123 4567",
        "NG",
        "+2348031234567",
        Valid("+2348031234567"),
    ),
    // Indonesia
    (
        "+62 812-3456-7890",
        "",
        "+6281234567890",
        Valid("+6281234567890"),
    ),
    (
        "0812-3456-7890",
        "ID",
        "+6281234567890",
        Valid("+6281234567890"),
    ),
    // Nowhere
    ("+999 1234567", "", "invalid_country_code", Rejects),
    ("", "", "empty_phone", Rejects),
];

fn libphonenumber_verdict(input: &str, region: Option<Region>) -> Lib {
    match PHONE_NUMBER_UTIL.parse(input, region) {
        Ok(n) if n.is_valid() => {
            let e164 = n.format_as(PhoneNumberFormat::E164).into_owned();
            Valid(Box::leak(e164.into_boxed_str()))
        }
        _ => Rejects,
    }
}

#[test]
fn the_table() {
    assert!(TABLE.len() >= 40);
    let mut failures = Vec::new();
    for (input, region, expected, lib) in TABLE {
        let region_opt = (!region.is_empty()).then_some(*region);
        let normalizer = Normalizer::new(region_opt).unwrap();
        let ours = match normalizer.normalize(input) {
            Ok(p) => p.to_string(),
            Err(r) => r.code().to_owned(),
        };
        if ours != *expected {
            failures.push(format!(
                "{input:?} [{region}]: Herald gives {ours}, table says {expected}"
            ));
        }
        let verdict = libphonenumber_verdict(input, region_opt.map(|r| r.parse().unwrap()));
        if verdict != *lib {
            failures.push(format!(
                "{input:?} [{region}]: libphonenumber gives {verdict:?}, table says {lib:?}"
            ));
        }
        if ours.starts_with('+') {
            let n = PHONE_NUMBER_UTIL.parse(&ours, None).unwrap();
            if !n.is_valid() {
                failures.push(format!(
                    "{input:?}: accepted {ours}, which libphonenumber calls invalid"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_the_countries_the_issue_names() {
    for cc in [
        "+1", "+44", "+49", "+33", "+39", "+55", "+52", "+54", "+91", "+234", "+62",
    ] {
        assert!(
            TABLE.iter().any(|(_, _, out, _)| out.starts_with(cc)),
            "no accepted case for {cc}"
        );
    }
}
