//! What a load reports: a summary, and every rejected row with a stable reason code.

use std::fmt;

use crate::phone::PhoneReject;

/// Why a row did not become a recipient. The codes ([`RejectReason::code`]) are stable and
/// documented in the README; the API and the failures CSV use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The phone value is not a usable number (see [`PhoneReject`] for each code).
    Phone(PhoneReject),
    /// The number appears earlier in the file, or is already in the campaign.
    Duplicate,
    /// The number is on the suppression list.
    Suppressed,
    /// The row has a different number of fields from the header.
    WrongFieldCount,
    /// A field Herald needs is not valid UTF-8.
    NotUtf8,
    /// A field, or the whole row, is over the size limit (often an unclosed quote).
    FieldTooLong,
    /// A quote opened in the row is never closed: the file's last lines were read into it.
    UnclosedQuote,
    /// A value the message needs is empty (a template parameter, say).
    EmptyValue,
    /// A value makes the message break a Cloud API limit (a link that is not https, a
    /// button title over 20 characters…).
    InvalidValue,
}

impl RejectReason {
    /// Every reason a row can be rejected for.
    pub fn all() -> Vec<Self> {
        PhoneReject::ALL
            .into_iter()
            .map(Self::Phone)
            .chain([
                Self::Duplicate,
                Self::Suppressed,
                Self::WrongFieldCount,
                Self::NotUtf8,
                Self::FieldTooLong,
                Self::UnclosedQuote,
                Self::EmptyValue,
                Self::InvalidValue,
            ])
            .collect()
    }

    /// What the reason means, for people (the failures report's detail says more per row).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Phone(p) => p.describe(),
            Self::Duplicate => "the number appears earlier in the file (its line is given)",
            Self::Suppressed => "the number is on the suppression list",
            Self::WrongFieldCount => "the row has a different number of fields from the header",
            Self::NotUtf8 => "a field Herald needs is not valid UTF-8",
            Self::FieldTooLong => {
                "a field, or the whole row, is over the size limit (often an unclosed quote)"
            }
            Self::UnclosedQuote => {
                "a quote opened in the row is never closed, so the lines after it were read into it"
            }
            Self::EmptyValue => "a value the message needs is empty (a template parameter, say)",
            Self::InvalidValue => {
                "a value would break a Cloud API limit (an http:// link, a button title over 20 \
                 characters, a line break in a template parameter, …)"
            }
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Phone(p) => p.code(),
            Self::Duplicate => "duplicate",
            Self::Suppressed => "suppressed",
            Self::WrongFieldCount => "wrong_field_count",
            Self::NotUtf8 => "not_utf8",
            Self::FieldTooLong => "field_too_long",
            Self::UnclosedQuote => "unclosed_quote",
            Self::EmptyValue => "empty_value",
            Self::InvalidValue => "invalid_value",
        }
    }

    /// Which summary counter the reason belongs to.
    pub fn kind(self) -> RejectKind {
        match self {
            Self::Duplicate => RejectKind::Duplicate,
            Self::Suppressed => RejectKind::Suppressed,
            _ => RejectKind::Invalid,
        }
    }

    /// Every code, for documentation and tests.
    pub fn all_codes() -> Vec<&'static str> {
        let mut codes: Vec<&'static str> = PhoneReject::ALL.iter().map(|p| p.code()).collect();
        codes.extend([
            "duplicate",
            "suppressed",
            "wrong_field_count",
            "not_utf8",
            "field_too_long",
            "unclosed_quote",
            "empty_value",
            "invalid_value",
        ]);
        codes
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Duplicate,
    Suppressed,
    Invalid,
}

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The line the row starts on (the header is line 1).
    pub line: u64,
    /// The phone cell as written (at most 64 characters; bytes that are not UTF-8 are
    /// replaced).
    pub raw: String,
    pub reason: RejectReason,
    /// A human explanation that names the column where one is at fault.
    pub detail: String,
    /// For a duplicate within the file: the line of the row that won.
    pub first_line: Option<u64>,
}

/// Longest phone cell kept in a reject.
pub(crate) const RAW_MAX_CHARS: usize = 64;

pub(crate) fn raw_cell(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(RAW_MAX_CHARS)
        .collect()
}

/// Counts for a load. `rows = accepted + duplicates + invalid + suppressed` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data rows read (the header is not counted).
    pub rows: u64,
    /// New recipients added to the campaign.
    pub accepted: u64,
    /// Numbers already in the campaign (an earlier upload, or this file sent again): not new,
    /// and not a reject either.
    pub already_present: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub suppressed: u64,
}

impl Summary {
    pub(crate) fn count(&mut self, reason: RejectReason) {
        match reason.kind() {
            RejectKind::Duplicate => self.duplicates += 1,
            RejectKind::Suppressed => self.suppressed += 1,
            RejectKind::Invalid => self.invalid += 1,
        }
    }

    pub fn rejected(&self) -> u64 {
        self.duplicates + self.invalid + self.suppressed
    }
}

/// Progress of a running load, reported after every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes_read: u64,
    pub summary: Summary,
}

/// The outcome of a successful load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub summary: Summary,
    /// The header name of the phone column.
    pub phone_column: String,
    /// The variable columns, in the order of each recipient's `vars`.
    pub variables: Vec<String>,
    /// The delimiter found on the header line.
    pub delimiter: char,
    pub bytes_read: u64,
    /// Memory the dedupe table held at the end: the one structure that grows with the file.
    pub dedupe_table_bytes: usize,
    /// The first rejects in file order (all of them went to the sink).
    pub first_rejects: Vec<Reject>,
}
