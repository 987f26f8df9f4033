//! The loader end to end, one test per rule of the issue.

#![allow(clippy::unwrap_used)]

use std::io::{self, Read};

use herald_core::PhoneE164;
use herald_loader::{
    LoadError, LoadOptions, LoadReport, MemorySink, RecipientSink, Reject, RejectReason,
    RowProblem, SinkError, Summary, load,
};
use proptest::prelude::*;

fn opts() -> LoadOptions<'static> {
    LoadOptions {
        threads: 2,
        batch_size: 7,
        ..LoadOptions::default()
    }
}

fn run(input: &[u8], opts: &LoadOptions<'_>) -> (LoadReport, MemorySink) {
    let mut sink = MemorySink::default();
    let report = load(input, opts, &mut sink).unwrap();
    check_invariant(&report.summary);
    (report, sink)
}

fn check_invariant(s: &Summary) {
    assert_eq!(
        s.rows,
        s.accepted + s.duplicates + s.invalid + s.suppressed,
        "{s:?}"
    );
}

fn phones(sink: &MemorySink) -> Vec<String> {
    sink.recipients
        .iter()
        .map(|r| r.phone.to_string())
        .collect()
}

fn reasons(sink: &MemorySink) -> Vec<(u64, &'static str)> {
    let mut r: Vec<_> = sink
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.code()))
        .collect();
    r.sort_unstable();
    r
}

#[test]
fn bom_semicolons_crlf_and_quoted_newlines() {
    let input = "\u{feff}Phone;First Name;Note\r\n+44 7912 345678;Zoë;\"line one\r\nline two; with a semicolon\"\r\n+1 415 555 2671;Bob;x\r\n";
    let (report, sink) = run(input.as_bytes(), &opts());
    assert_eq!(report.delimiter, ';');
    assert_eq!(report.phone_column, "Phone");
    assert_eq!(report.variables, ["First Name", "Note"]);
    assert_eq!(phones(&sink), ["+447912345678", "+14155552671"]);
    assert_eq!(
        sink.recipients[0].vars,
        ["Zoë", "line one\r\nline two; with a semicolon"]
    );
    assert_eq!(report.summary.accepted, 2);
}

#[test]
fn tab_separated() {
    let (report, sink) = run(b"name\tmsisdn\nAnn\t447912345678\n", &opts());
    assert_eq!(report.delimiter, '\t');
    assert_eq!(phones(&sink), ["+447912345678"]);
}

#[test]
fn a_header_row_is_required() {
    let mut sink = MemorySink::default();
    assert!(matches!(
        load(&b""[..], &opts(), &mut sink),
        Err(LoadError::Empty)
    ));
    // A file whose first row is data has no phone column by name.
    let err = load(&b"+447912345678,Ann\n"[..], &opts(), &mut sink).unwrap_err();
    assert!(matches!(err, LoadError::NoPhoneColumn { .. }), "{err}");
}

/// Files Excel saved in another encoding are refused with how to save them, not as "not
/// valid UTF-8" alone: UTF-16 ("Unicode Text", little or big endian) and Windows-1252.
#[test]
fn a_file_in_another_encoding_is_named_with_the_fix() {
    let utf16 = |big: bool| {
        let mut out = if big {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in "phone\tname\r\n+447912345678\tAnn\r\n".encode_utf16() {
            let b = if big {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            };
            out.extend_from_slice(&b);
        }
        out
    };
    for big in [false, true] {
        let mut sink = MemorySink::default();
        let err = load(&utf16(big)[..], &opts(), &mut sink).unwrap_err();
        assert!(matches!(err, LoadError::Utf16), "{err}");
        assert!(err.to_string().contains("CSV UTF-8"), "{err}");
        assert!(sink.recipients.is_empty());
    }
    // A header with NUL characters (what UTF-32 looks like read as UTF-8 or UTF-16) is named
    // as what it is, not as a missing phone column.
    let mut sink = MemorySink::default();
    let err = load(&b"p\0\0\0h\0\0\0,n\0\0\0\n"[..], &opts(), &mut sink).unwrap_err();
    assert!(matches!(err, LoadError::HeaderNul), "{err}");
    assert!(err.to_string().contains("UTF-32"), "{err}");
    let mut sink = MemorySink::default();
    let err = load(&b"t\xe9l\xe9phone,name\n"[..], &opts(), &mut sink).unwrap_err();
    assert!(matches!(err, LoadError::HeaderNotUtf8), "{err}");
    assert!(err.to_string().contains("CSV UTF-8"), "{err}");
    // A Windows-1252 name in a UTF-8 header's file: that row only, with the fix.
    let (_, sink) = run(
        b"phone,name\n+447912345678,Jos\xe9\n+447912345679,Ann\n",
        &opts(),
    );
    assert_eq!(phones(&sink), ["+447912345679"]);
    assert!(
        sink.rejects[0].detail.contains("CSV UTF-8"),
        "{:?}",
        sink.rejects[0]
    );
}

/// A sink that fails the test if it is ever called.
struct Untouchable;
impl RecipientSink for Untouchable {
    fn suppressed(&mut self, _: &[PhoneE164]) -> Result<Vec<bool>, SinkError> {
        panic!("no row may be read")
    }
    fn accept(&mut self, _: &[herald_core::Recipient]) -> Result<Vec<bool>, SinkError> {
        panic!("no row may be read")
    }
    fn reject(&mut self, _: &[Reject]) -> Result<(), SinkError> {
        panic!("no row may be read")
    }
}

#[test]
fn no_phone_column_is_refused_before_any_row_naming_the_columns() {
    let err = load(&b"name,city\nAnn,Paris\n"[..], &opts(), &mut Untouchable).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"name\", \"city\""), "{msg}");
    assert!(err.is_bad_input());
}

#[test]
fn missing_placeholder_columns_are_refused_before_any_row() {
    let o = LoadOptions {
        variables: Some(vec!["first_name".into(), "order_id".into()]),
        ..opts()
    };
    let err = load(
        &b"phone,first_name\n+447912345678,Ann\n"[..],
        &o,
        &mut Untouchable,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"order_id\"") && msg.contains("columns found: \"phone\", \"first_name\""),
        "{msg}"
    );
}

#[test]
fn an_explicit_phone_column_and_variables_in_placeholder_order() {
    let o = LoadOptions {
        phone_column: Some("Cell".into()),
        variables: Some(vec!["order".into(), "name".into()]),
        ..opts()
    };
    let (report, sink) = run(b"name,cell,order,unused\nAnn,+447912345678,42,x\n", &o);
    assert_eq!(report.variables, ["order", "name"]);
    assert_eq!(sink.recipients[0].vars, ["42", "Ann"]);
}

#[test]
fn non_utf8_rows_wrong_field_counts_and_long_fields_are_row_rejects() {
    let long = "y".repeat(100);
    let mut input =
        b"phone,name\n+447912345678,Ann\n+447912345679,\xff\xfe\n+447912345670\n".to_vec();
    input.extend_from_slice(format!("+447912345671,{long}\n+447912345672,Bob\n").as_bytes());
    let o = LoadOptions {
        max_field_bytes: 50,
        ..opts()
    };
    let (report, sink) = run(&input, &o);
    assert_eq!(
        reasons(&sink),
        [
            (3, "not_utf8"),
            (4, "wrong_field_count"),
            (5, "field_too_long")
        ]
    );
    assert_eq!(phones(&sink), ["+447912345678", "+447912345672"]);
    assert_eq!(report.summary.invalid, 3);
    let detail = &sink.rejects.iter().find(|r| r.line == 5).unwrap().detail;
    assert!(detail.contains("\"name\""), "the column is named: {detail}");
    let detail = &sink.rejects.iter().find(|r| r.line == 4).unwrap().detail;
    assert_eq!(detail, "the row has 1 field; the header has 2");
}

#[test]
fn an_unclosed_quote_costs_the_rest_of_the_file_as_one_reject_not_a_crash() {
    let mut input = b"phone,name\n+447912345678,Ann\n+447912345679,\"never closed\n".to_vec();
    for i in 0..2000 {
        input.extend_from_slice(format!("+4479123{i:05},row\n").as_bytes());
    }
    let o = LoadOptions {
        max_record_bytes: 4096,
        ..opts()
    };
    let (report, sink) = run(&input, &o);
    assert_eq!(phones(&sink), ["+447912345678"]);
    assert_eq!(reasons(&sink), [(3, "unclosed_quote")]);
    assert_eq!(report.summary.rows, 2);
}

/// A quote left open near the end of the file takes only a few lines, well under the size
/// cap: without a word, they would be lost inside the row's value.
#[test]
fn a_quote_left_open_is_a_reject_however_short_what_it_took() {
    let input = b"phone,name\n+447912345678,Ann\n+447912345679,\"Bob\n+447912345680,Cy\n";
    let (report, sink) = run(input, &opts());
    assert_eq!(phones(&sink), ["+447912345678"]);
    assert_eq!(reasons(&sink), [(3, "unclosed_quote")]);
    assert!(
        sink.rejects[0].detail.contains("never closed"),
        "{:?}",
        sink.rejects[0]
    );
    assert_eq!(report.summary.rows, 2);
    // Quoted line breaks that are closed are values like any other.
    let input = b"phone,name\n+447912345679,\"Bob\nJr\"\n+447912345680,Cy";
    let (_, sink) = run(input, &opts());
    assert_eq!(phones(&sink), ["+447912345679", "+447912345680"]);
    assert!(sink.rejects.is_empty());
}

#[test]
fn duplicates_within_the_file_the_first_row_wins() {
    let input = b"phone,name\n+44 7912 345678,first\n07912345678,x\n447912345678,second\n+1 415 555 2671,y\n";
    let o = LoadOptions {
        default_region: Some("GB".into()),
        ..opts()
    };
    let (report, sink) = run(input, &o);
    assert_eq!(phones(&sink), ["+447912345678", "+14155552671"]);
    assert_eq!(sink.recipients[0].vars, ["first"]);
    let dups: Vec<_> = sink
        .rejects
        .iter()
        .map(|r| (r.line, r.first_line, r.raw.as_str()))
        .collect();
    assert_eq!(
        dups,
        [(3, Some(2), "07912345678"), (4, Some(2), "447912345678")]
    );
    assert_eq!(report.summary.duplicates, 2);
}

#[test]
fn first_row_wins_across_chunk_and_thread_boundaries() {
    // 5,000 rows: each number appears twice, 2,500 rows apart, so the two copies land in
    // different chunks handled by different threads.
    let mut input = String::from("phone,i\n");
    for i in 0..5000u64 {
        input.push_str(&format!("+4479{:08},{i}\n", 10_000_000 + i % 2500));
    }
    let (report, sink) = run(
        input.as_bytes(),
        &LoadOptions {
            threads: 4,
            ..opts()
        },
    );
    assert_eq!(report.summary.accepted, 2500);
    assert_eq!(report.summary.duplicates, 2500);
    for (k, r) in sink.recipients.iter().enumerate() {
        assert_eq!(
            r.vars,
            [k.to_string()],
            "recipients come in file order, first copy kept"
        );
    }
    assert!(
        sink.rejects
            .iter()
            .all(|r| r.first_line == Some(r.line - 2500))
    );
}

#[test]
fn uploading_the_same_file_twice_adds_nothing() {
    let input = b"phone\n+447912345678\n+14155552671\nnot a number\n";
    let mut sink = MemorySink::default();
    let first = load(&input[..], &opts(), &mut sink).unwrap();
    let second = load(&input[..], &opts(), &mut sink).unwrap();
    assert_eq!(first.summary.accepted, 2);
    assert_eq!(
        second.summary,
        Summary {
            rows: 3,
            accepted: 0,
            already_present: 2,
            duplicates: 0,
            invalid: 1,
            suppressed: 0
        },
        "numbers already in the campaign are neither new nor rejects"
    );
    assert_eq!(sink.recipients.len(), 2);
    assert!(
        !sink
            .rejects
            .iter()
            .any(|r| r.reason == RejectReason::Duplicate),
        "{:?}",
        sink.rejects
    );
}

#[test]
fn the_dedupe_table_is_bounded() {
    let mut input = String::from("phone\n");
    for i in 0..50u64 {
        input.push_str(&format!("+4479{:08}\n", 10_000_000 + i));
    }
    let mut sink = MemorySink::default();
    let err = load(
        input.as_bytes(),
        &LoadOptions {
            max_unique: 20,
            batch_size: 10,
            ..opts()
        },
        &mut sink,
    )
    .unwrap_err();
    let LoadError::TooManyRecipients { limit, summary } = &err else {
        panic!("{err}");
    };
    assert_eq!(*limit, 20);
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("split the file"), "{err}");
    assert_eq!(summary.accepted, sink.recipients.len() as u64);
    assert!(sink.recipients.len() <= 20);
}

#[test]
fn suppressed_numbers_are_reported() {
    let mut sink = MemorySink::default();
    sink.suppression.insert("+14155552671".parse().unwrap());
    let report = load(
        &b"phone\n+447912345678\n+1 (415) 555-2671\n"[..],
        &opts(),
        &mut sink,
    )
    .unwrap();
    assert_eq!(report.summary.suppressed, 1);
    assert_eq!(reasons(&sink), [(3, "suppressed")]);
    assert_eq!(
        sink.rejects[0].raw, "+1 (415) 555-2671",
        "the raw value as written"
    );
}

#[test]
fn row_checks_reject_with_their_reason() {
    let check = |vars: &herald_core::Vars| {
        if vars.get(0).trim().is_empty() {
            Err(RowProblem {
                reason: RejectReason::EmptyValue,
                detail: "column \"name\" is empty but a template parameter needs it".into(),
            })
        } else {
            Ok(())
        }
    };
    let o = LoadOptions {
        variables: Some(vec!["name".into()]),
        row_check: Some(&check),
        ..opts()
    };
    let (_, sink) = run(b"phone,name\n+447912345678,\n+447912345678,Ann\n", &o);
    assert_eq!(reasons(&sink), [(2, "empty_value")]);
    assert_eq!(
        sink.recipients[0].vars,
        ["Ann"],
        "a rejected row does not claim the number"
    );
}

#[test]
fn phone_rules_reach_the_report() {
    // Line 2 is blank and skipped; the empty quoted value is on line 3.
    let input = "phone\n\n\"\"\n+44 7912 34567O\n4.47912E+11\n+1 415 555 2671 x 5\n07912 345678\n+999 1234567\n";
    let (report, sink) = run(input.as_bytes(), &opts());
    assert_eq!(
        reasons(&sink),
        [
            (3, "empty_phone"),
            (4, "letters"),
            (5, "spreadsheet_damage"),
            (6, "extension"),
            (7, "no_default_region"),
            (8, "invalid_country_code")
        ]
    );
    assert!(report.first_rejects.iter().all(|r| !r.detail.is_empty()));
}

/// A sink whose store fails on its third batch.
struct FailsOnThirdBatch(MemorySink, usize);
impl RecipientSink for FailsOnThirdBatch {
    fn accept(&mut self, r: &[herald_core::Recipient]) -> Result<Vec<bool>, SinkError> {
        self.1 += 1;
        if self.1 == 3 {
            return Err("store unavailable".into());
        }
        self.0.accept(r)
    }
}

#[test]
fn a_failing_store_stops_the_load_and_keeps_what_was_accepted() {
    let mut input = String::from("phone\n");
    for i in 0..100 {
        input.push_str(&format!("+4479123{i:05}\n"));
    }
    let mut sink = FailsOnThirdBatch(MemorySink::default(), 0);
    let err = load(input.as_bytes(), &opts(), &mut sink).unwrap_err();
    match err {
        LoadError::Sink { summary, .. } => {
            assert_eq!(summary.accepted, 14, "two batches of 7 were stored");
            assert_eq!(sink.0.recipients.len(), 14);
        }
        other => panic!("{other:?}"),
    }
}

/// A reader that fails after some bytes.
struct Broken<'a>(&'a [u8]);
impl Read for Broken<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "upload interrupted",
            ));
        }
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn an_interrupted_upload_reports_how_far_it_got() {
    let mut input = String::from("phone\n");
    for i in 0..3000 {
        input.push_str(&format!("+4479123{i:05}\n"));
    }
    let mut sink = MemorySink::default();
    let err = load(Broken(input.as_bytes()), &opts(), &mut sink).unwrap_err();
    match err {
        LoadError::Io { summary, source } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
            assert!(summary.rows >= 2048, "{summary:?}");
            assert!(!sink.recipients.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

/// The dedupe table is the only structure that grows with the file: at most 40 bytes per
/// unique number.
#[test]
fn the_dedupe_table_stays_under_forty_bytes_per_number() {
    struct Discard;
    impl RecipientSink for Discard {
        fn accept(&mut self, r: &[herald_core::Recipient]) -> Result<Vec<bool>, SinkError> {
            Ok(vec![true; r.len()])
        }
    }
    for n in [1_000u64, 70_000, 200_000] {
        let mut input = String::with_capacity(n as usize * 15);
        input.push_str("phone\n");
        for i in 0..n {
            input.push_str(&format!("+4479{:08}\n", 10_000_000 + i));
        }
        let report = load(input.as_bytes(), &opts(), &mut Discard).unwrap();
        assert_eq!(report.summary.accepted, n);
        let per_number = report.dedupe_table_bytes as f64 / n as f64;
        assert!(
            per_number <= 40.0,
            "{n} numbers: {per_number:.1} bytes each"
        );
    }
}

#[test]
fn progress_is_reported() {
    let mut input = String::from("phone\n");
    for i in 0..100 {
        input.push_str(&format!("+4479123{i:05}\n"));
    }
    let (_, sink) = run(input.as_bytes(), &opts());
    assert!(sink.progress_calls >= 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// No input panics, and the summary always adds up.
    #[test]
    fn no_input_panics(body in proptest::collection::vec(any::<u8>(), 0..600), header in prop_oneof![
        Just("phone,name\n"), Just("phone;name\r\n"), Just("\u{feff}phone\tname\n"), Just("name\n"), Just(""),
    ]) {
        let mut input = header.as_bytes().to_vec();
        input.extend_from_slice(&body);
        let mut sink = MemorySink::default();
        let o = LoadOptions { max_record_bytes: 200, max_field_bytes: 50, max_fields: 8, ..opts() };
        if let Ok(report) = load(&input[..], &o, &mut sink) {
            check_invariant(&report.summary);
            prop_assert_eq!(report.summary.accepted as usize, sink.recipients.len());
        }
    }

    /// Structured rows with random phone-ish values: every accepted number is unique and
    /// counts add up.
    #[test]
    fn random_phone_columns(values in proptest::collection::vec("[+0-9 ()./-]{0,18}|[a-z]{1,3}", 1..60)) {
        let mut input = String::from("phone,n\n");
        for (i, v) in values.iter().enumerate() {
            input.push_str(&format!("\"{v}\",{i}\n"));
        }
        let mut sink = MemorySink::default();
        let report = load(input.as_bytes(), &LoadOptions { default_region: Some("US".into()), ..opts() }, &mut sink).unwrap();
        check_invariant(&report.summary);
        prop_assert_eq!(report.summary.rows as usize, values.len());
        let unique: std::collections::HashSet<_> = sink.recipients.iter().map(|r| r.phone).collect();
        prop_assert_eq!(unique.len(), sink.recipients.len());
    }
}
