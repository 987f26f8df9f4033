//! Recipient uploads and the failures report: the bridge between the HTTP body stream, the
//! synchronous loader (on a blocking thread) and the asynchronous store.
//!
//! The body is never buffered: the loader pulls it through a bounded reader as it parses,
//! and each batch it accepts is enqueued before it reads on. A failure mid-upload keeps what
//! was already stored (enqueueing is idempotent, so the same file can be sent again) and the
//! answer says how far it got.
//!
//! While an upload runs, it holds its campaign open (ARCHITECTURE §7): a running campaign whose queue empties
//! does not complete under a slow or pausing stream. The hold is renewed by a heartbeat
//! for as long as the upload lives (not per batch, which a slow client would starve) and
//! released at the end; if this process dies, it lapses by itself within a minute.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use herald_core::{CampaignId, PhoneE164, Recipient, SkipReason, Vars};
use herald_loader::{
    LoadError, LoadOptions, LoadReport, RecipientSink, Reject, RejectKind, RejectReason,
    RowProblem, SinkError,
};
use herald_store::{Campaign, FailureRow, Store, StoreError, UploadReject};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::server::error::ApiError;

/// Rejects shown in the upload's answer (all of them are in the failures report).
const FIRST_REJECTS: usize = 20;
/// How long an upload's hold on its campaign lasts without renewal.
const HOLD: Duration = Duration::from_secs(60);

/// What an upload's body may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes in all (`server.max_upload_bytes`).
    pub max_bytes: u64,
    /// Different numbers in all (`server.max_upload_recipients`).
    pub max_recipients: usize,
    /// Upload rejects stored per campaign for the failures report
    /// (`server.max_stored_rejects`); every one is counted.
    pub max_stored_rejects: usize,
    /// The longest the body may send nothing (`server.body_idle_timeout_ms`).
    pub idle: Duration,
}

/// How a CSV body's bytes make its text: compressed or not (`Content-Encoding`), and in which
/// character set (`Content-Type`'s `charset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoding {
    /// gzip: inflated as it is read, the byte limit holding for what it inflates to as well.
    pub gzip: bool,
    /// A character set other than UTF-8 (a spreadsheet's own, such as windows-1252), turned
    /// into UTF-8 as the file is read. `None`: UTF-8 (each field checked), or UTF-16 told by
    /// its byte order mark.
    pub charset: Option<&'static encoding_rs::Encoding>,
}

impl Decoding {
    /// What the request's headers say; `Err` with the message for an encoding or a
    /// character set Herald does not read.
    pub fn of(content_type: &str, content_encoding: Option<&str>) -> Result<Self, String> {
        let gzip = match content_encoding.map(str::trim) {
            None | Some("") => false,
            Some(e) if e.eq_ignore_ascii_case("identity") => false,
            Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => true,
            Some(e) => {
                return Err(format!(
                    "Content-Encoding {e:?} is not taken: send the CSV as it is, or \
                     compressed with gzip (Content-Encoding: gzip)"
                ));
            }
        };
        let label = content_type.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"'))
        });
        let charset = match label {
            None => None,
            Some(l) => match encoding_rs::Encoding::for_label(l.as_bytes()) {
                Some(e) if e == encoding_rs::UTF_8 => None,
                Some(e) => Some(e),
                None => {
                    return Err(format!(
                        "charset {l:?} is not one Herald reads: use utf-8, or the file's own \
                         (windows-1252, iso-8859-15, utf-16, …)"
                    ));
                }
            },
        };
        Ok(Self { gzip, charset })
    }

    /// The body's bytes as the CSV text they encode, in UTF-8; what gzip inflates to fails
    /// past `max` bytes (the setting named `setting`). Gzip reads its header at once: call it
    /// where `body` may block.
    fn decode<'a, R: io::Read + Send + 'a>(
        self,
        body: R,
        (max, setting): (u64, &'static str),
    ) -> Box<dyn io::Read + Send + 'a> {
        let inflated: Box<dyn io::Read + Send + 'a> = if self.gzip {
            Box::new(AtMost {
                inner: flate2::read::MultiGzDecoder::new(body),
                left: max,
                setting,
            })
        } else {
            Box::new(body)
        };
        // The charset given, unless a byte order mark says otherwise; without one, UTF-16 by
        // its mark; UTF-8 goes through as it is (its fields are checked one by one, so a bad
        // one costs its row, not a replacement character in a message).
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(self.charset)
                .bom_override(true)
                .utf8_passthru(true)
                .build(inflated),
        )
    }
}

/// Streams a CSV body into the campaign and answers with the load summary.
pub async fn load<S: Store>(
    store: Arc<S>,
    campaign: Campaign,
    phone_column: Option<String>,
    (body, decoding): (Body, Decoding),
    limits: Limits,
) -> Result<UploadSummary, ApiError> {
    let template = campaign
        .spec
        .compile()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let variables: Vec<String> = template
        .placeholders()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let stream = Limited {
        inner: body.into_data_stream().map_err(io::Error::other).boxed(),
        left: limits.max_bytes,
        idle: limits.idle,
        deadline: Box::pin(tokio::time::sleep(limits.idle)),
    };
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let handle = Handle::current();
    let id = campaign.id.clone();
    // Hold the campaign open before the first row is read: a campaign that ended meanwhile
    // is refused here, with nothing read.
    let upload = rand::random::<u64>();
    store.hold_upload(&id, upload, HOLD).await?;
    let heartbeat = tokio_util::sync::CancellationToken::new();
    tokio::spawn(hold_while_alive(
        store.clone(),
        id.clone(),
        upload,
        heartbeat.clone(),
    ));
    let _stop_heartbeat = heartbeat.drop_guard();
    let region = campaign.spec.default_region.clone();
    let result = tokio::task::spawn_blocking(move || {
        let check = move |vars: &Vars| row_check(&template, vars);
        let opts = LoadOptions {
            phone_column,
            default_region: region,
            variables: Some(variables),
            row_check: Some(&check),
            max_unique: limits.max_recipients,
            ..LoadOptions::default()
        };
        let mut sink = StoreSink {
            store: store.clone(),
            id: id.clone(),
            phone_number_id: campaign.phone_number_id.clone(),
            rt: handle.clone(),
            keep_rejects: limits.max_stored_rejects,
        };
        // On this thread: a gzip decoder reads the stream's header as it is made.
        let max = (limits.max_bytes, "server.max_upload_bytes");
        let r = herald_loader::load(decoding.decode(reader, max), &opts, &mut sink);
        // Let the campaign complete once its last job settles (should this fail, the hold
        // lapses by itself).
        if let Err(e) = handle.block_on(store.release_upload(&id, upload)) {
            tracing::warn!(campaign = %id, error = %e, "could not release the upload's hold");
        }
        r
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match result {
        Ok(report) => {
            tracing::info!(
                campaign = %campaign.id,
                rows = report.summary.rows,
                accepted = report.summary.accepted,
                duplicates = report.summary.duplicates,
                invalid = report.summary.invalid,
                suppressed = report.summary.suppressed,
                "recipients loaded"
            );
            Ok(UploadSummary::new(&report))
        }
        Err(e) => Err(load_error(e)),
    }
}

fn load_error(e: LoadError) -> ApiError {
    if let LoadError::TooManyRecipients { .. } = &e {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_recipients",
            format!("{e} (server.max_upload_recipients)"),
        );
    }
    if e.is_bad_input() {
        return ApiError::invalid(e.to_string());
    }
    match &e {
        LoadError::Io { source, summary } if source.kind() == io::ErrorKind::FileTooLarge => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "{source}; the first {} rows were read and {} recipients kept",
                    summary.rows, summary.accepted
                ),
            )
        }
        LoadError::Io { source, summary } if source.kind() == io::ErrorKind::InvalidData => {
            ApiError::invalid(format!(
                "{source}; the first {} rows were read and {} recipients kept (send the file \
                 again whole: nothing is added twice)",
                summary.rows, summary.accepted
            ))
        }
        LoadError::Io { source, summary } if source.kind() == io::ErrorKind::TimedOut => {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "{source}; the first {} rows were read and {} recipients kept (send the \
                     file again: nothing is added twice)",
                    summary.rows, summary.accepted
                ),
            )
        }
        LoadError::Io { summary, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "upload_interrupted",
            format!(
                "{e}; {} recipients were kept (send the file again: nothing is added twice)",
                summary.accepted
            ),
        ),
        LoadError::Sink { source, summary } => {
            if let Some(StoreError::Final(id, status)) = source.downcast_ref::<StoreError>() {
                // Only a cancel can end a campaign an upload holds open.
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "campaign {id} was {status} during the upload: the first {} \
                         recipients were added before it, and it takes no more",
                        summary.accepted
                    ),
                );
            }
            tracing::warn!(error = %e, "upload stopped by the store");
            let (code, why) = match source.downcast_ref::<StoreError>() {
                Some(full @ StoreError::Full(_)) => ("store_full", full.to_string()),
                _ => ("unavailable", "the store failed".to_owned()),
            };
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                format!(
                    "{why}; {} recipients were kept before it (send the file again once it \
                     answers: nothing is added twice)",
                    summary.accepted
                ),
            )
        }
        _ => ApiError::invalid(e.to_string()),
    }
}

/// What an upload did (`POST /v1/campaigns/{id}/recipients`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadSummary {
    /// Data rows read (the header is not counted).
    pub rows: u64,
    /// New recipients added to the campaign.
    pub accepted: u64,
    /// Numbers already in the campaign (an earlier upload, or this file sent again).
    pub already_present: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub suppressed: u64,
    /// The header name of the phone column Herald used.
    pub phone_column: String,
    /// The other columns, which the message's placeholders may name.
    pub variables: Vec<String>,
    /// The delimiter found on the header line.
    pub delimiter: String,
    /// Bytes of CSV text read: after a gzip body was inflated, and in UTF-8.
    pub bytes: u64,
    /// The first rejects in file order; `GET /v1/campaigns/{id}/failures` has them all.
    pub rejects: Vec<RejectView>,
    /// How many of the campaign's recipients fit in the messaging limit now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_limit: Option<crate::server::limit::LimitView>,
    /// The campaign's cost estimate with these recipients, when a rate card is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<herald_core::cost::Estimate>,
}

/// A CSV row that did not become a recipient.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectView {
    /// The row's line in the file (1 is the header).
    pub line: u64,
    /// The phone cell as written.
    pub raw: String,
    /// `duplicate`, `invalid_number`, `empty_value`, …
    pub reason: String,
    pub detail: String,
    /// For a duplicate: the line where the number first appeared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_line: Option<u64>,
}

impl RejectView {
    fn new(r: &Reject) -> Self {
        Self {
            line: r.line,
            raw: r.raw.clone(),
            reason: r.reason.code().to_owned(),
            detail: r.detail.clone(),
            first_line: r.first_line,
        }
    }
}

/// How Herald reads the start of a CSV file for a campaign, before anything is stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadPreview {
    /// The header name of the phone column Herald would use.
    pub phone_column: String,
    /// The other columns, which the message's placeholders may name.
    pub variables: Vec<String>,
    pub delimiter: String,
    /// Data rows read from what was sent.
    pub rows: u64,
    /// The first recipients as they would be sent.
    pub recipients: Vec<PreviewRecipient>,
    /// The first rows that would be rejected (the suppression list is checked at upload).
    pub rejects: Vec<RejectView>,
}

/// A recipient of the preview: the number as Herald normalised it and the message filled in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewRecipient {
    /// E.164.
    pub phone: String,
    pub region: herald_core::Region,
    /// The row's values by column.
    pub values: std::collections::BTreeMap<String, String>,
    /// The message as it would be sent to this recipient (the request's envelope left out).
    #[schema(value_type = Object)]
    pub message: serde_json::Value,
}

/// Recipients shown in a preview.
const PREVIEW_RECIPIENTS: usize = 5;

/// Reads `body` (the start of a file) as an upload to `campaign` would, storing nothing.
pub async fn preview(
    campaign: &Campaign,
    phone_column: Option<String>,
    (body, decoding, max_bytes): (Bytes, Decoding, usize),
) -> Result<UploadPreview, ApiError> {
    let template = campaign
        .spec
        .compile()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let region = campaign.spec.default_region.clone();
    tokio::task::spawn_blocking(move || {
        let variables: Vec<String> = (template.placeholders().iter())
            .map(|p| p.name.clone())
            .collect();
        let rules = template.clone();
        let check = move |vars: &Vars| row_check(&rules, vars);
        let opts = LoadOptions {
            phone_column,
            default_region: region,
            variables: Some(variables),
            row_check: Some(&check),
            threads: 1,
            ..LoadOptions::default()
        };
        let mut sink = PreviewSink(Vec::new());
        let max = (max_bytes as u64, "server.max_body_bytes");
        let input = decoding.decode(body.as_ref(), max);
        let report = herald_loader::load(input, &opts, &mut sink).map_err(load_error)?;
        let recipients = (sink.0.iter())
            .map(|r| {
                let mut message: serde_json::Value =
                    serde_json::from_slice(&template.render(r.phone, "", &r.vars))
                        .unwrap_or_default();
                if let Some(m) = message.as_object_mut() {
                    for envelope in [
                        "messaging_product",
                        "recipient_type",
                        "to",
                        "biz_opaque_callback_data",
                    ] {
                        m.remove(envelope);
                    }
                }
                PreviewRecipient {
                    phone: r.phone.to_string(),
                    region: r.region,
                    values: (report.variables.iter().cloned())
                        .zip(r.vars.iter().map(str::to_owned))
                        .collect(),
                    message,
                }
            })
            .collect();
        Ok(UploadPreview {
            phone_column: report.phone_column,
            variables: report.variables,
            delimiter: report.delimiter.to_string(),
            rows: report.summary.rows,
            recipients,
            rejects: (report.first_rejects.iter().take(PREVIEW_RECIPIENTS))
                .map(RejectView::new)
                .collect(),
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// Keeps the first recipients of a preview; stores nothing.
struct PreviewSink(Vec<Recipient>);

impl RecipientSink for PreviewSink {
    fn accept(&mut self, recipients: &[Recipient]) -> Result<Vec<bool>, SinkError> {
        let room = PREVIEW_RECIPIENTS.saturating_sub(self.0.len());
        self.0.extend(recipients.iter().take(room).cloned());
        Ok(vec![true; recipients.len()])
    }
}

impl UploadSummary {
    fn new(r: &LoadReport) -> Self {
        let s = &r.summary;
        Self {
            rows: s.rows,
            accepted: s.accepted,
            already_present: s.already_present,
            duplicates: s.duplicates,
            invalid: s.invalid,
            suppressed: s.suppressed,
            phone_column: r.phone_column.clone(),
            variables: r.variables.clone(),
            delimiter: r.delimiter.to_string(),
            bytes: r.bytes_read,
            rejects: (r.first_rejects.iter().take(FIRST_REJECTS))
                .map(RejectView::new)
                .collect(),
            messaging_limit: None,
            cost: None,
        }
    }
}

/// A row's values must make a valid message: required ones present, and every field they
/// fill within its Cloud API rule (a 5,000-character name, an `http://` link…). The message's
/// fixed parts were checked when the campaign was created, so only those fields vary.
pub(crate) fn row_check(
    template: &herald_core::MessageTemplate,
    vars: &Vars,
) -> Result<(), RowProblem> {
    template.check_values(vars).map_err(|e| RowProblem {
        reason: RejectReason::EmptyValue,
        detail: e.to_string(),
    })?;
    for field in template.fields() {
        let value = field.render(vars);
        herald_cloudapi::check_field(&field.path, &value).map_err(|problem| {
            let mut columns: Vec<String> = Vec::new();
            for p in field.slots().filter_map(|i| template.placeholders().get(i)) {
                let name = format!("{:?}", p.name);
                if !columns.contains(&name) {
                    columns.push(name);
                }
            }
            // A quote the file leaves open takes the lines after it into this value.
            let hint = if value.contains('\n') {
                "; a quote left open in the CSV joins the lines after it to its row"
            } else {
                ""
            };
            RowProblem {
                reason: RejectReason::InvalidValue,
                detail: format!(
                    "{}: {problem} (from column {}{hint})",
                    field.path,
                    columns.join(", ")
                ),
            }
        })?;
    }
    Ok(())
}

/// The store as the loader's sink, called from the loader's (blocking) thread.
struct StoreSink<S> {
    store: Arc<S>,
    id: CampaignId,
    phone_number_id: String,
    rt: Handle,
    keep_rejects: usize,
}

impl<S: Store> RecipientSink for StoreSink<S> {
    fn suppressed(&mut self, phones: &[PhoneE164]) -> Result<Vec<bool>, SinkError> {
        Ok(self
            .rt
            .block_on(self.store.suppressed(&self.phone_number_id, phones))?)
    }

    fn accept(&mut self, recipients: &[Recipient]) -> Result<Vec<bool>, SinkError> {
        Ok(self
            .rt
            .block_on(self.store.enqueue_batch(&self.id, recipients))?)
    }

    fn reject(&mut self, rejects: &[Reject]) -> Result<(), SinkError> {
        let rejects: Vec<UploadReject> = rejects
            .iter()
            .map(|r| UploadReject {
                row: FailureRow {
                    line: Some(r.line),
                    phone: r.raw.clone(),
                    reason: r.reason.code().to_owned(),
                    detail: r.detail.clone(),
                },
                reason: match r.reason.kind() {
                    RejectKind::Duplicate => SkipReason::Duplicate,
                    RejectKind::Suppressed => SkipReason::Suppressed,
                    RejectKind::Invalid => SkipReason::Invalid,
                },
            })
            .collect();
        self.rt.block_on(
            self.store
                .add_rejects(&self.id, &rejects, self.keep_rejects),
        )?;
        Ok(())
    }
}

/// Renews an upload's hold on its campaign until `done`, at a third of its length: a slow
/// client never lets it lapse while the upload is alive.
async fn hold_while_alive<S: Store>(
    store: Arc<S>,
    id: CampaignId,
    upload: u64,
    done: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(HOLD / 3) => {}
        }
        if let Err(e) = store.hold_upload(&id, upload, HOLD).await {
            tracing::warn!(campaign = %id, error = %e, "could not renew the upload's hold");
        }
    }
}

/// A byte stream that fails with `FileTooLarge` once more than `left` bytes came through, and
/// with `TimedOut` once nothing came for `idle` (a client that stalls holds no upload open).
struct Limited {
    inner: futures::stream::BoxStream<'static, io::Result<Bytes>>,
    left: u64,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Limited {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if polled.is_pending() {
            if self.deadline.as_mut().poll(cx).is_ready() {
                let idle = self.idle;
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the upload sent nothing for {} ms (server.body_idle_timeout_ms)",
                        idle.as_millis()
                    ),
                ))));
            }
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                if n > self.left {
                    self.left = 0;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        "the upload is larger than server.max_upload_bytes",
                    ))));
                }
                self.left -= n;
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// A reader that fails, rather than ending, past `left` bytes: what a compressed upload
/// inflates to is bounded like the bytes that arrive.
struct AtMost<R> {
    inner: R,
    left: u64,
    /// The setting that bounds it.
    setting: &'static str,
}

impl<R: io::Read> io::Read for AtMost<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the gzip data is damaged ({e})"),
            ),
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::InvalidData,
                "the gzip data ends before its end: the file was cut short",
            ),
            _ => e,
        })?;
        if n as u64 > self.left {
            self.left = 0;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("the upload inflates to more than {}", self.setting),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8], decoding: Decoding) -> Vec<u8> {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut decoding.decode(bytes, (1 << 20, "max")), &mut out).unwrap();
        out
    }

    /// UTF-8, with its mark or without, goes through byte for byte, a bad byte included (the
    /// loader rejects that row; a replacement character would go out in a message).
    #[test]
    fn utf8_goes_through_untouched_and_a_named_charset_is_turned_into_it() {
        let plain = Decoding::of("text/csv", None).unwrap();
        assert_eq!(
            plain,
            Decoding {
                gzip: false,
                charset: None
            }
        );
        for bytes in [&b"phone\n+1,Jos\xe9\n"[..], b"\xEF\xBB\xBFphone\n+1,\xff\n"] {
            assert_eq!(decoded(bytes, plain), bytes);
        }
        let cp1252 = Decoding::of("text/csv; Charset=\"windows-1252\"", Some("identity")).unwrap();
        assert_eq!(decoded(b"Jos\xe9 \x80", cp1252), "José €".as_bytes());
        assert_eq!(
            Decoding::of("text/csv; charset=UTF-8", None).unwrap(),
            plain,
            "UTF-8 named is UTF-8 checked, not decoded"
        );
        assert!(Decoding::of("text/csv", Some("br")).is_err());
        assert!(Decoding::of("text/csv; charset=nope", None).is_err());
    }

    /// However long an upload pauses (here five minutes, five times the hold), its heartbeat
    /// keeps the running campaign from completing; once it ends, the campaign completes.
    #[tokio::test(start_paused = true)]
    async fn a_live_upload_holds_its_campaign_however_long_it_pauses() {
        use herald_store::conformance::{claim_req, running};
        use herald_store::{JobRef, MemoryStore, Outcome, Settle};
        let store = Arc::new(MemoryStore::new());
        let id = running(&*store, "held", 1).await;
        let upload = 7;
        store.hold_upload(&id, upload, HOLD).await.unwrap();
        let done = tokio_util::sync::CancellationToken::new();
        let heartbeat = tokio::spawn(hold_while_alive(
            store.clone(),
            id.clone(),
            upload,
            done.clone(),
        ));
        let job = store.claim(&claim_req(1, 1)).await.unwrap().remove(0);
        store.start(&[JobRef::from(&job)]).await.unwrap();
        let accepted = Outcome::Accepted {
            message_id: herald_core::WaMessageId::new("wamid.h").unwrap(),
        };
        store
            .settle(&[Settle {
                job: (&job).into(),
                outcome: accepted,
            }])
            .await
            .unwrap();
        tokio::time::sleep(HOLD * 5).await;
        assert!(store.claim(&claim_req(1, 2)).await.unwrap().is_empty());
        assert_eq!(
            store.campaign(&id).await.unwrap().status,
            herald_core::CampaignStatus::Running,
            "held open by the live upload"
        );
        done.cancel();
        heartbeat.await.unwrap();
        store.release_upload(&id, upload).await.unwrap();
        assert!(store.claim(&claim_req(1, 3)).await.unwrap().is_empty());
        assert_eq!(
            store.campaign(&id).await.unwrap().status,
            herald_core::CampaignStatus::Completed
        );
    }
}
