//! The load pipeline: one reader thread, N validation workers, and the caller's thread.
//!
//! ```text
//! reader ──chunks──► worker × N ──outcomes──► caller: reorder → dedupe → sink batches
//! ```
//! Chunks are numbered and put back in file order before dedupe, so "the first row wins" holds
//! whatever the workers' timing. Channels are bounded, so memory stays flat in the file size;
//! the only structure that grows is the dedupe table, at 12 bytes per unique number plus
//! hashbrown's control byte and load factor (15–30 bytes per entry).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};
use hashbrown::HashTable;
use herald_core::{PhoneE164, Recipient, Region, Vars, VarsBuilder};

use crate::header::Columns;
use crate::phone::Normalizer;
use crate::records::{Record, Records};
use crate::report::{LoadReport, Progress, Reject, RejectReason, Summary, raw_cell};
use crate::{LoadError, LoadOptions, RecipientSink, RowProblem};

/// Rows per chunk handed to a worker.
const CHUNK_ROWS: usize = 1024;
/// Rejects kept in the report itself.
const FIRST_REJECTS: usize = 20;

/// Rows of a chunk, flattened: no allocation per row.
#[derive(Default)]
struct RawChunk {
    lines: Vec<u64>,
    overflow: Vec<bool>,
    unclosed: Vec<bool>,
    data: Vec<u8>,
    /// Field ends into `data`.
    ends: Vec<usize>,
    /// For each row, the end of its fields in `ends`.
    row_ends: Vec<usize>,
}

impl RawChunk {
    fn push(&mut self, rec: &Record) {
        let base = self.data.len();
        self.data.extend_from_slice(&rec.data);
        self.ends.extend(rec.ends.iter().map(|e| e + base));
        self.row_ends.push(self.ends.len());
        self.lines.push(rec.line);
        self.overflow.push(rec.overflow);
        self.unclosed.push(rec.unclosed);
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// The fields of row `r`.
    fn row(&self, r: usize) -> RowFields<'_> {
        let first_end = if r == 0 { 0 } else { self.row_ends[r - 1] };
        let start = if first_end == 0 {
            0
        } else {
            self.ends[first_end - 1]
        };
        RowFields {
            data: &self.data,
            ends: &self.ends[first_end..self.row_ends[r]],
            start,
        }
    }
}

struct RowFields<'a> {
    data: &'a [u8],
    ends: &'a [usize],
    start: usize,
}

impl<'a> RowFields<'a> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { self.start } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

enum Outcome {
    /// A valid row; `row` indexes its chunk, where the raw phone cell still is.
    Candidate {
        line: u64,
        phone: PhoneE164,
        region: Region,
        vars: Vars,
        row: u32,
    },
    Reject(Reject),
}

type Chunk = (u64, io::Result<RawChunk>);
/// A validated chunk travels with its raw rows, so a later duplicate can quote its cell.
type Done = (u64, io::Result<(RawChunk, Vec<Outcome>)>);

/// What every worker shares, by reference.
struct Validate<'a> {
    columns: &'a Columns,
    opts: &'a LoadOptions<'a>,
}

impl Validate<'_> {
    fn row(
        &self,
        normalizer: &Normalizer,
        row: u32,
        line: u64,
        (overflow, unclosed): (bool, bool),
        fields: &RowFields<'_>,
    ) -> Outcome {
        let c = self.columns;
        let phone_cell = if fields.len() > c.phone {
            fields.get(c.phone)
        } else {
            &[]
        };
        let reject = |reason: RejectReason, detail: String| {
            Outcome::Reject(Reject {
                line,
                raw: raw_cell(phone_cell),
                reason,
                detail,
                first_line: None,
            })
        };
        if unclosed {
            return reject(
                RejectReason::UnclosedQuote,
                "a quote opened in this row is never closed, so every line after it was read \
                 into this row: close the quote and upload the file again (rows already \
                 accepted are not added twice)"
                    .to_owned(),
            );
        }
        if overflow {
            return reject(
                RejectReason::FieldTooLong,
                format!(
                    "the row is longer than {} bytes or has more than {} fields (an unclosed quote?)",
                    self.opts.max_record_bytes, self.opts.max_fields
                ),
            );
        }
        if fields.len() != c.count {
            return reject(
                RejectReason::WrongFieldCount,
                format!(
                    "the row has {}; the header has {}",
                    fields_of(fields.len()),
                    c.count
                ),
            );
        }
        let Ok(phone_text) = std::str::from_utf8(phone_cell) else {
            return reject(RejectReason::NotUtf8, not_utf8(&c.phone_name));
        };
        let phone = match normalizer.normalize(phone_text) {
            Ok(p) => p,
            Err(why) => return reject(RejectReason::Phone(why), why.describe().to_owned()),
        };
        let bytes: usize = c.vars.iter().map(|&col| fields.get(col).len() + 4).sum();
        let mut vars = VarsBuilder::with_capacity(bytes);
        for (k, &col) in c.vars.iter().enumerate() {
            let bytes = fields.get(col);
            if bytes.len() > self.opts.max_field_bytes {
                return reject(
                    RejectReason::FieldTooLong,
                    format!(
                        "column {:?} is {} bytes; the limit is {}",
                        c.var_names[k],
                        bytes.len(),
                        self.opts.max_field_bytes
                    ),
                );
            }
            match std::str::from_utf8(bytes) {
                Ok(s) => vars.push(s),
                Err(_) => {
                    return reject(RejectReason::NotUtf8, not_utf8(&c.var_names[k]));
                }
            }
        }
        let vars = vars.finish();
        if let Some(check) = self.opts.row_check
            && let Err(RowProblem { reason, detail }) = check(&vars)
        {
            return reject(reason, detail);
        }
        Outcome::Candidate {
            line,
            phone,
            region: normalizer.region_of(phone),
            vars,
            row,
        }
    }

    fn chunk(&self, normalizer: &Normalizer, chunk: &RawChunk) -> Vec<Outcome> {
        (0..chunk.len())
            .map(|r| {
                let row = u32::try_from(r).unwrap_or(u32::MAX);
                self.row(
                    normalizer,
                    row,
                    chunk.lines[r],
                    (chunk.overflow[r], chunk.unclosed[r]),
                    &chunk.row(r),
                )
            })
            .collect()
    }
}

/// "1 field", "3 fields".
fn fields_of(n: usize) -> String {
    if n == 1 {
        "1 field".to_owned()
    } else {
        format!("{n} fields")
    }
}

/// A reject's detail for a column that is not UTF-8, with the two ways to fix the file.
fn not_utf8(column: &str) -> String {
    format!(
        "column {column:?} is not valid UTF-8 (save the file as \"CSV UTF-8\", or name its \
         character set)"
    )
}

/// A number seen earlier in this file, and the line it was on.
#[derive(Clone, Copy)]
struct Seen {
    lo: u32,
    hi: u32,
    line: u32,
}

fn split(p: u64) -> (u32, u32) {
    (p as u32, (p >> 32) as u32)
}

/// splitmix64's finaliser: cheap, and good in every bit, which hashbrown needs.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The caller's side: dedupe, batching, the sink, the report.
struct Collect<'s, S: ?Sized> {
    sink: &'s mut S,
    phone_column: usize,
    seen: HashTable<Seen>,
    batch: Vec<Recipient>,
    /// Each batch entry's line and where its raw phone cell ends in `batch_raw`.
    batch_meta: Vec<(u64, usize)>,
    /// The batch's raw phone cells back to back: one reused buffer, not a string per row.
    batch_raw: Vec<u8>,
    rejects: Vec<Reject>,
    first_rejects: Vec<Reject>,
    summary: Summary,
    batch_size: usize,
    /// The most different numbers one upload may hold (the dedupe table's bound).
    max_unique: usize,
}

/// An upload holds more different numbers than its bound allows.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} different numbers")]
struct TooMany(usize);

impl<S: RecipientSink + ?Sized> Collect<'_, S> {
    fn take(&mut self, chunk: &RawChunk, outcome: Outcome) -> Result<(), crate::SinkError> {
        self.summary.rows += 1;
        match outcome {
            Outcome::Reject(r) => self.reject(r),
            Outcome::Candidate {
                line,
                phone,
                region,
                vars,
                row,
            } => {
                let fields = chunk.row(row as usize);
                let raw = fields.get(self.phone_column);
                let (lo, hi) = split(phone.as_u64());
                let hash = mix(phone.as_u64());
                let line32 = u32::try_from(line).unwrap_or(u32::MAX);
                let full = self.seen.len() >= self.max_unique;
                match self.seen.entry(
                    hash,
                    |s| s.lo == lo && s.hi == hi,
                    |s| mix(u64::from(s.lo) | (u64::from(s.hi) << 32)),
                ) {
                    hashbrown::hash_table::Entry::Occupied(first) => {
                        let first_line = u64::from(first.get().line);
                        self.reject(Reject {
                            line,
                            raw: raw_cell(raw),
                            reason: RejectReason::Duplicate,
                            detail: format!("the same number as line {first_line}"),
                            first_line: Some(first_line),
                        });
                    }
                    hashbrown::hash_table::Entry::Vacant(_) if full => {
                        return Err(Box::new(TooMany(self.max_unique)));
                    }
                    hashbrown::hash_table::Entry::Vacant(v) => {
                        v.insert(Seen {
                            lo,
                            hi,
                            line: line32,
                        });
                        self.batch
                            .push(Recipient::new(phone, vars).with_region(region));
                        self.batch_raw.extend_from_slice(raw);
                        self.batch_meta.push((line, self.batch_raw.len()));
                    }
                }
            }
        }
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        if self.rejects.len() >= self.batch_size {
            self.sink.reject(&self.rejects)?;
            self.rejects.clear();
        }
        Ok(())
    }

    fn reject(&mut self, r: Reject) {
        self.summary.count(r.reason);
        if self.first_rejects.len() < FIRST_REJECTS {
            self.first_rejects.push(r.clone());
        }
        self.rejects.push(r);
    }

    /// Suppression check, then the store; numbers already in the campaign (an earlier upload,
    /// or this file sent again) are counted as already present, not rejected again.
    fn flush(&mut self) -> Result<(), crate::SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let meta = std::mem::take(&mut self.batch_meta);
        let raw_all = std::mem::take(&mut self.batch_raw);
        let raw = |i: usize| {
            let start = if i == 0 { 0 } else { meta[i - 1].1 };
            &raw_all[start..meta[i].1]
        };
        let phones: Vec<PhoneE164> = batch.iter().map(|r| r.phone).collect();
        let suppressed = self.sink.suppressed(&phones)?;
        check_len("suppressed", suppressed.len(), phones.len())?;
        let mut keep = Vec::with_capacity(batch.len());
        let mut keep_index = Vec::with_capacity(batch.len());
        for (i, (recipient, is_suppressed)) in batch.into_iter().zip(suppressed).enumerate() {
            if is_suppressed {
                self.reject(Reject {
                    line: meta[i].0,
                    raw: raw_cell(raw(i)),
                    reason: RejectReason::Suppressed,
                    detail: "the number is on the suppression list".to_owned(),
                    first_line: None,
                });
            } else {
                keep.push(recipient);
                keep_index.push(i);
            }
        }
        if !keep.is_empty() {
            let new = self.sink.accept(&keep)?;
            check_len("accept", new.len(), keep.len())?;
            for is_new in new {
                if is_new {
                    self.summary.accepted += 1;
                } else {
                    self.summary.already_present += 1;
                }
            }
        }
        self.batch = Vec::with_capacity(self.batch_size);
        self.batch_meta = meta;
        self.batch_meta.clear();
        self.batch_raw = raw_all;
        self.batch_raw.clear();
        Ok(())
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), crate::SinkError> {
    if got == want {
        Ok(())
    } else {
        Err(format!("sink's {what} answered {got} flags for {want} numbers").into())
    }
}

pub(crate) fn run<R, S>(
    mut records: Records<R>,
    columns: Columns,
    normalizer: Normalizer,
    opts: &LoadOptions<'_>,
    sink: &mut S,
) -> Result<LoadReport, LoadError>
where
    R: Read + Send,
    S: RecipientSink + ?Sized,
{
    let workers = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        opts.threads
    };
    let bytes = AtomicU64::new(records.bytes_read());
    let delimiter = char::from(records.delimiter());
    let mut collect = Collect {
        sink,
        phone_column: columns.phone,
        seen: HashTable::new(),
        batch: Vec::with_capacity(opts.batch_size.max(1)),
        batch_meta: Vec::with_capacity(opts.batch_size.max(1)),
        batch_raw: Vec::new(),
        rejects: Vec::new(),
        first_rejects: Vec::new(),
        summary: Summary::default(),
        batch_size: opts.batch_size.max(1),
        max_unique: opts.max_unique.max(1),
    };
    let validate = Validate {
        columns: &columns,
        opts,
    };

    let result: Result<(), LoadError> = std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = bounded::<Chunk>(workers * 2);
        let (done_tx, done_rx) = bounded::<Done>(workers * 2);
        let bytes = &bytes;
        scope.spawn(move || read_chunks(&mut records, &chunk_tx, bytes));
        for i in 0..workers {
            let (rx, tx, validate) = (chunk_rx.clone(), done_tx.clone(), &validate);
            // Each worker owns a libphonenumber instance (see `Normalizer`).
            let own = if i == 0 {
                None
            } else {
                Some(normalizer.clone())
            };
            let shared = &normalizer;
            scope.spawn(move || work(&rx, &tx, validate, own.as_ref().unwrap_or(shared)));
        }
        drop((chunk_rx, done_tx));
        let out = gather(&done_rx, &mut collect, bytes);
        // Dropping the receiver unblocks any worker or reader still sending after an error.
        drop(done_rx);
        out
    });
    result?;
    collect
        .flush()
        .and_then(|()| {
            if collect.rejects.is_empty() {
                Ok(())
            } else {
                collect.sink.reject(&collect.rejects)
            }
        })
        .map_err(|source| LoadError::Sink {
            source,
            summary: collect.summary,
        })?;
    let summary = collect.summary;
    collect.sink.progress(&Progress {
        bytes_read: bytes.load(Ordering::Relaxed),
        summary,
    });
    let mut first_rejects = std::mem::take(&mut collect.first_rejects);
    first_rejects.sort_by_key(|r| r.line);
    Ok(LoadReport {
        summary,
        phone_column: columns.phone_name,
        variables: columns.var_names,
        delimiter,
        bytes_read: bytes.load(Ordering::Relaxed),
        dedupe_table_bytes: collect.seen.allocation_size(),
        first_rejects,
    })
}

fn read_chunks<R: Read>(records: &mut Records<R>, tx: &Sender<Chunk>, bytes: &AtomicU64) {
    let mut rec = Record::default();
    let mut index = 0u64;
    loop {
        let mut chunk = RawChunk::default();
        let mut error = None;
        while chunk.len() < CHUNK_ROWS {
            match records.read(&mut rec) {
                Ok(true) => chunk.push(&rec),
                Ok(false) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        bytes.store(records.bytes_read(), Ordering::Relaxed);
        let last = chunk.len() < CHUNK_ROWS;
        if chunk.len() > 0 {
            if tx.send((index, Ok(chunk))).is_err() {
                return;
            }
            index += 1;
        }
        if let Some(e) = error {
            let _ = tx.send((index, Err(e)));
            return;
        }
        if last {
            return;
        }
    }
}

fn work(rx: &Receiver<Chunk>, tx: &Sender<Done>, validate: &Validate<'_>, normalizer: &Normalizer) {
    for (index, chunk) in rx {
        let done = chunk.map(|c| {
            let outcomes = validate.chunk(normalizer, &c);
            (c, outcomes)
        });
        if tx.send((index, done)).is_err() {
            return;
        }
    }
}

fn gather<S: RecipientSink + ?Sized>(
    rx: &Receiver<Done>,
    collect: &mut Collect<'_, S>,
    bytes: &AtomicU64,
) -> Result<(), LoadError> {
    let mut pending: BTreeMap<u64, io::Result<(RawChunk, Vec<Outcome>)>> = BTreeMap::new();
    let mut next = 0u64;
    let mut last_progress = 0u64;
    for (index, done) in rx {
        pending.insert(index, done);
        while let Some(done) = pending.remove(&next) {
            next += 1;
            let (chunk, outcomes) = done.map_err(|source| LoadError::Io {
                source,
                summary: collect.summary,
            })?;
            for o in outcomes {
                collect.take(&chunk, o).map_err(|source| {
                    match source.downcast_ref::<TooMany>() {
                        Some(&TooMany(limit)) => LoadError::TooManyRecipients {
                            limit,
                            summary: collect.summary,
                        },
                        None => LoadError::Sink {
                            source,
                            summary: collect.summary,
                        },
                    }
                })?;
            }
            if collect.summary.rows - last_progress >= collect.batch_size as u64 {
                last_progress = collect.summary.rows;
                collect.sink.progress(&Progress {
                    bytes_read: bytes.load(Ordering::Relaxed),
                    summary: collect.summary,
                });
            }
        }
    }
    Ok(())
}
