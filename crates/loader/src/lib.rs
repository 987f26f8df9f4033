//! The campaign loader: a CSV of any size → validated, deduplicated recipients, and a precise
//! report of every row that did not make it.
//!
//! Users upload spreadsheet exports, so the loader is forgiving where the meaning is certain
//! (BOM, `,`/`;`/tab delimiters, CRLF, separators and other scripts' digits in numbers,
//! common names for the phone column) and strict where it is not: a wrong number messages a
//! stranger. Every refusal has a stable reason code ([`RejectReason::code`]).
//!
//! The loader streams: memory is flat in the file size except for the dedupe table
//! (≤ 30 bytes per unique number). Rows are validated on all cores and put back in file
//! order, so the first occurrence of a number always wins. What happens to the recipients is
//! the caller's business, through [`RecipientSink`]: the store checks suppression, stores
//! batches idempotently (a number already in the campaign comes back as a duplicate) and
//! keeps the rejects for the failures report.
//!
//! Reject reason codes: `empty_phone`, `letters`, `spreadsheet_damage`, `extension`,
//! `not_a_number`, `no_default_region`, `invalid_country_code`, `too_short`, `too_long`,
//! `invalid_number`, `duplicate`, `suppressed`, `wrong_field_count`, `not_utf8`,
//! `field_too_long`, `empty_value`, `invalid_value`.

use std::io::Read;

use herald_core::{PhoneE164, Recipient};

mod header;
pub mod phone;
mod pipeline;
mod records;
mod report;

pub use header::PHONE_ALIASES;
pub use phone::{Normalizer, PhoneReject, UnknownRegion};
pub use report::{LoadReport, Progress, Reject, RejectKind, RejectReason, Summary};

/// An error from the sink, passed through.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where recipients go. All methods are called on the thread that called [`load`], in file
/// order.
pub trait RecipientSink {
    /// Which of these numbers are on the suppression list (one flag per number).
    fn suppressed(&mut self, phones: &[PhoneE164]) -> Result<Vec<bool>, SinkError> {
        Ok(vec![false; phones.len()])
    }

    /// Stores a batch; answers, per recipient, whether it was new to the campaign (a number
    /// already there is reported as a duplicate).
    fn accept(&mut self, recipients: &[Recipient]) -> Result<Vec<bool>, SinkError>;

    /// Receives every rejected row, in batches.
    fn reject(&mut self, _rejects: &[Reject]) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called after each batch and at the end.
    fn progress(&mut self, _progress: &Progress) {}
}

/// A per-row check of the variable values (the campaign's rules: a template parameter may not
/// be empty, a link must be https…). Values come in the order of `LoadOptions::variables`.
pub type RowCheck = dyn Fn(&herald_core::Vars) -> Result<(), RowProblem> + Sync;

/// Why a row check refused a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// `EmptyValue` or `InvalidValue`.
    pub reason: RejectReason,
    /// Names the column and the rule.
    pub detail: String,
}

/// How to read one upload.
#[derive(Clone)]
pub struct LoadOptions<'a> {
    /// The phone column's header; when absent, one of [`PHONE_ALIASES`].
    pub phone_column: Option<String>,
    /// ISO 3166-1 region for numbers in national form.
    pub default_region: Option<String>,
    /// The columns to keep as variables, in this order (the campaign's placeholders). When
    /// absent, every other column is kept, in header order.
    pub variables: Option<Vec<String>>,
    pub row_check: Option<&'a RowCheck>,
    /// Recipients per sink call.
    pub batch_size: usize,
    /// Validation threads; 0 means one per core.
    pub threads: usize,
    /// Longest variable value.
    pub max_field_bytes: usize,
    /// Longest row (a row over it is rejected whole; an unclosed quote makes one).
    pub max_record_bytes: usize,
    pub max_fields: usize,
    /// The most different numbers one upload may hold: the dedupe table (15–30 bytes per
    /// number) is the only thing that grows with the file, and this bounds it.
    pub max_unique: usize,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            phone_column: None,
            default_region: None,
            variables: None,
            row_check: None,
            batch_size: 1000,
            threads: 0,
            max_field_bytes: 16 * 1024,
            max_record_bytes: 1024 * 1024,
            max_fields: 1024,
            max_unique: 10_000_000,
        }
    }
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("phone_column", &self.phone_column)
            .field("default_region", &self.default_region)
            .field("variables", &self.variables)
            .field("row_check", &self.row_check.is_some())
            .field("batch_size", &self.batch_size)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a load stopped. The first group is found before any row is read, so nothing was
/// stored; the last two happen mid-stream and carry the summary of what was stored before.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the file is empty: a header row naming the columns is required")]
    Empty,
    #[error(
        "the header row is not valid UTF-8: save the file as \"CSV UTF-8\", or name its \
         character set (Excel's \"CSV (Comma delimited)\" uses the computer's own)"
    )]
    HeaderNotUtf8,
    #[error(
        "the file is UTF-16 (as Excel's \"Unicode Text\" saves it): save it as \"CSV UTF-8\" \
         and upload that"
    )]
    Utf16,
    #[error(
        "the header row holds NUL characters: the file is not text in UTF-8 or in the \
         character set named (UTF-32, or a spreadsheet's own format?): save it as \
         \"CSV UTF-8\" and upload that"
    )]
    HeaderNul,
    #[error("the header row is too long or has too many columns")]
    HeaderTooLong,
    #[error(
        "no phone column: name it one of {} (or set phone_column); columns found: {}",
        PHONE_ALIASES.join(", "),
        list(found)
    )]
    NoPhoneColumn { found: Vec<String> },
    #[error(
        "several columns could hold the phone number ({}); set phone_column to choose one",
        list(candidates)
    )]
    SeveralPhoneColumns { candidates: Vec<String> },
    #[error(
        "phone column {name:?} is not in the file; columns found: {}",
        list(found)
    )]
    PhoneColumnNotFound { name: String, found: Vec<String> },
    #[error(
        "the message uses column(s) {} that the file does not have; columns found: {}",
        list(missing),
        list(found)
    )]
    MissingColumns {
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("column {0:?} appears more than once in the header")]
    DuplicateColumn(String),
    #[error(
        "column {name:?} matches several columns that differ only in case; columns found: {}",
        list(found)
    )]
    AmbiguousColumn { name: String, found: Vec<String> },
    #[error(transparent)]
    Region(#[from] UnknownRegion),
    #[error("reading the file failed after {} rows: {source}", summary.rows)]
    Io {
        source: std::io::Error,
        summary: Summary,
    },
    #[error("storing recipients failed after {} were accepted: {source}", summary.accepted)]
    Sink { source: SinkError, summary: Summary },
    /// The file holds more different numbers than one upload may (what came before the limit
    /// is kept).
    #[error(
        "the upload holds more than {limit} different numbers, the most one upload may hold: \
         split the file ({} rows were read, {} recipients kept)",
        summary.rows,
        summary.accepted
    )]
    TooManyRecipients { limit: usize, summary: Summary },
}

impl LoadError {
    /// Whether the file itself is at fault (a 4xx), as opposed to I/O or the store.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Sink { .. })
    }
}

/// Reads a CSV upload into the sink.
pub fn load<R, S>(input: R, opts: &LoadOptions<'_>, sink: &mut S) -> Result<LoadReport, LoadError>
where
    R: Read + Send,
    S: RecipientSink + ?Sized,
{
    let normalizer = Normalizer::new(opts.default_region.as_deref())?;
    let io_err = |source| LoadError::Io {
        source,
        summary: Summary::default(),
    };
    let mut records =
        records::Records::new(input, opts.max_record_bytes, opts.max_fields).map_err(io_err)?;
    let mut header = records::Record::default();
    if !records.read(&mut header).map_err(io_err)? {
        return Err(LoadError::Empty);
    }
    if header.overflow {
        return Err(LoadError::HeaderTooLong);
    }
    let names = (0..header.len())
        .map(|i| {
            std::str::from_utf8(header.field(i).unwrap_or_default())
                .map(str::to_owned)
                .map_err(|_| {
                    // A UTF-16 byte order mark (little or big endian) before the first name.
                    let first = header.field(0).unwrap_or_default();
                    if first.starts_with(b"\xFF\xFE") || first.starts_with(b"\xFE\xFF") {
                        LoadError::Utf16
                    } else {
                        LoadError::HeaderNotUtf8
                    }
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // UTF-32 read through its UTF-16 byte order mark, or binary data that happens to be UTF-8.
    if names.iter().any(|n| n.contains('\0')) {
        return Err(LoadError::HeaderNul);
    }
    let columns = header::resolve(
        names,
        opts.phone_column.as_deref(),
        opts.variables.as_deref(),
    )?;
    pipeline::run(records, columns, normalizer, opts, sink)
}

/// Parses a CSV and counts its data rows, validating nothing: the baseline the loader's
/// benchmark compares against, and a quick way to size an upload.
pub fn count_records<R: Read>(input: R) -> std::io::Result<u64> {
    let defaults = LoadOptions::default();
    let mut records = records::Records::new(input, defaults.max_record_bytes, defaults.max_fields)?;
    let mut rec = records::Record::default();
    let mut n = 0u64;
    while records.read(&mut rec)? {
        n += 1;
    }
    Ok(n.saturating_sub(1))
}

/// A sink that keeps everything in memory: for tests, tools and small files.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub recipients: Vec<Recipient>,
    pub rejects: Vec<Reject>,
    /// Numbers treated as already in the campaign.
    pub existing: std::collections::HashSet<PhoneE164>,
    /// Numbers on the suppression list.
    pub suppression: std::collections::HashSet<PhoneE164>,
    pub progress_calls: usize,
}

impl RecipientSink for MemorySink {
    fn suppressed(&mut self, phones: &[PhoneE164]) -> Result<Vec<bool>, SinkError> {
        Ok(phones
            .iter()
            .map(|p| self.suppression.contains(p))
            .collect())
    }

    fn accept(&mut self, recipients: &[Recipient]) -> Result<Vec<bool>, SinkError> {
        Ok(recipients
            .iter()
            .map(|r| {
                let new = self.existing.insert(r.phone);
                if new {
                    self.recipients.push(r.clone());
                }
                new
            })
            .collect())
    }

    fn reject(&mut self, rejects: &[Reject]) -> Result<(), SinkError> {
        self.rejects.extend_from_slice(rejects);
        Ok(())
    }

    fn progress(&mut self, _progress: &Progress) {
        self.progress_calls += 1;
    }
}
