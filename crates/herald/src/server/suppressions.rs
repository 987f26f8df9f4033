//! A phone number's suppression list through the API, for operators moving between tools:
//! export it (CSV), import one (CSV of numbers or business-scoped user ids), and take an
//! entry off it.
//!
//! The CSV has a header row and a `number` or a `user_id` column (or both: each row fills
//! one), and optionally `reason` (default `imported`) and `date` (RFC 3339, or a plain
//! `YYYY-MM-DD`; default now): a number keeps the reason and date it was first put on the
//! list with. Other columns are ignored. A bad row is reported with its line and column and
//! costs nothing else: the rows before and after it are kept. The export writes
//! `kind,id,reason,date`, numbers as `'+…` (no formula injection in a spreadsheet); the
//! import takes them back either way, so an export imports as it is.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use herald_core::{PhoneE164, business_user_id};
use herald_store::{Store, SuppressionScope, Why};
use jiff::Timestamp;
use serde::Serialize;

use crate::server::api::{ApiError, AppState, ErrorBody};

/// At most this many rejected rows are listed in an import's answer (all are counted).
const MAX_LISTED_REJECTS: usize = 100;
/// At most this many user ids whose number is unknown are exported.
const MAX_EXPORTED_USERS: usize = 100_000;

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuppressionImport {
    /// Numbers put on the list.
    pub numbers: usize,
    /// User ids put on the list.
    pub user_ids: usize,
    /// The part of `user_ids` whose number Herald knows (that number is suppressed too).
    pub user_ids_with_known_number: usize,
    /// Rows that could not be used.
    pub rejected: u64,
    /// The first of them.
    pub rejects: Vec<ImportReject>,
}

/// A row of an import that could not be used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReject {
    pub line: u64,
    pub column: String,
    pub problem: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuppressionRemoved {
    pub removed: bool,
}

/// A phone number id from the path: digits only.
fn phone_number_id(raw: &str) -> Result<&str, ApiError> {
    if !raw.is_empty() && raw.len() <= 32 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("phone number id {raw:?}: digits only"),
        ))
    }
}

/// `GET /v1/suppressions/{phone_number_id}`: `kind,id` rows: numbers suppressed for every
/// message (`number`), then those that get no marketing template (`marketing_number`), then
/// the user ids that opted out before their number was known.
#[utoipa::path(get, path = "/v1/suppressions/{phone_number_id}", tag = "suppressions",
    params(("phone_number_id" = String, Path, description = "The sending phone number id")),
    responses(
        (status = 200, description = "CSV: kind,id,reason,date", content_type = "text/csv", body = String),
        (status = 404, description = "Not a phone number id", body = ErrorBody)))]
pub(crate) async fn export<S: Store>(
    State(state): State<AppState<S>>,
    Path(pnid): Path<String>,
) -> Result<Response, ApiError> {
    let pnid = phone_number_id(&pnid)?.to_owned();
    let mut w = csv::Writer::from_writer(Vec::new());
    let row = |w: &mut csv::Writer<Vec<u8>>, cells: [&str; 4]| {
        // `'+…` and the like, as in the failures report: no formula injection.
        let cells = cells.map(crate::server::report::safe_cell);
        w.write_record(cells.iter().map(|c| c.as_ref()))
    };
    let bad =
        |e: csv::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    row(&mut w, ["kind", "id", "reason", "date"]).map_err(bad)?;
    // Numbers suppressed for every message, then those that get no marketing only.
    for (kind, scope) in [
        ("number", SuppressionScope::All),
        ("marketing_number", SuppressionScope::Marketing),
    ] {
        let mut cursor = 0;
        loop {
            let (page, next) = state.store.list_suppressed(&pnid, scope, cursor).await?;
            let whys = state.store.suppression_reasons(&pnid, scope, &page).await?;
            for (p, why) in page.iter().zip(whys) {
                let (reason, date) = why.map_or((String::new(), String::new()), |w| {
                    (w.reason, w.at.to_string())
                });
                row(&mut w, [kind, &p.to_string(), &reason, &date]).map_err(bad)?;
            }
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
    }
    let (_, users) = state
        .store
        .unlinked_opt_outs(&pnid, MAX_EXPORTED_USERS)
        .await?;
    for u in users {
        row(
            &mut w,
            ["user_id", &u, "opted out; number not known yet", ""],
        )
        .map_err(bad)?;
    }
    let out = w.into_inner().unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"suppressions.csv\"",
            ),
        ],
        Body::from(out),
    )
        .into_response())
}

/// `POST /v1/suppressions/{phone_number_id}` with a CSV body (`text/csv`).
#[utoipa::path(post, path = "/v1/suppressions/{phone_number_id}", tag = "suppressions",
    params(("phone_number_id" = String, Path, description = "The sending phone number id")),
    request_body(content = String, content_type = "text/csv", description = "A `number` or `user_id` column; optional `reason` and `date`"),
    responses(
        (status = 200, description = "What was imported; bad rows are listed and cost nothing else", body = SuppressionImport),
        (status = 404, description = "Not a phone number id", body = ErrorBody),
        (status = 415, description = "Not sent as text/csv", body = ErrorBody),
        (status = 422, description = "No usable header", body = ErrorBody)))]
pub(crate) async fn import<S: Store>(
    State(state): State<AppState<S>>,
    Path(pnid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pnid = phone_number_id(&pnid)?;
    crate::server::api::require_type(&headers, "text/csv")?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(body.as_ref());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::invalid(format!("line 1: not a CSV header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (number_col, user_col) = (column("number"), column("user_id"));
    let (reason_col, date_col) = (column("reason"), column("date"));
    if number_col.is_none() && user_col.is_none() {
        return Err(ApiError::invalid(format!(
            "line 1: needs a `number` or a `user_id` column (found {header:?})"
        )));
    }
    let now = Timestamp::now();
    // Numbers grouped by why: one store call per reason and date.
    let mut phones: BTreeMap<(String, i64), Vec<PhoneE164>> = BTreeMap::new();
    let (mut users, mut rejects, mut rejected) = (Vec::new(), Vec::new(), 0u64);
    let mut numbers = 0usize;
    let mut reject = |line: u64, column: &str, problem: String| {
        rejected += 1;
        if rejects.len() < MAX_LISTED_REJECTS {
            rejects.push(ImportReject {
                line,
                column: column.to_owned(),
                problem,
            });
        }
    };
    for (i, row) in reader.byte_records().enumerate() {
        let line = row
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u64 + 2, |p| p.line());
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                reject(line, "", format!("not a CSV row: {e}"));
                continue;
            }
        };
        // A leading `'` (what the export writes against formula injection) is dropped.
        let cell = |col: Option<usize>| {
            col.and_then(|c| row.get(c))
                .map(|v| {
                    let v = String::from_utf8_lossy(v);
                    let v = v.trim();
                    v.strip_prefix('\'').unwrap_or(v).to_owned()
                })
                .filter(|v| !v.is_empty())
        };
        let reason = cell(reason_col).unwrap_or_else(|| "imported".into());
        if reason.len() > 200 {
            reject(line, "reason", "longer than 200 bytes".into());
            continue;
        }
        let at = match cell(date_col) {
            None => now,
            Some(d) => match date(&d) {
                Some(t) => t,
                None => {
                    reject(line, "date", format!("{d:?}: not RFC 3339 nor YYYY-MM-DD"));
                    continue;
                }
            },
        };
        match (cell(number_col), cell(user_col)) {
            (Some(n), _) => match n.parse::<PhoneE164>() {
                Ok(p) => {
                    numbers += 1;
                    phones
                        .entry((reason, at.as_millisecond()))
                        .or_default()
                        .push(p);
                }
                Err(e) => reject(line, "number", format!("{n:?}: {e}")),
            },
            (None, Some(u)) => match business_user_id(&u) {
                Some(u) => users.push((u.to_owned(), Why { reason, at })),
                None => reject(line, "user_id", "not a business-scoped user id".into()),
            },
            (None, None) => reject(line, "number", "empty: needs a number or a user_id".into()),
        }
    }
    for ((reason, at_ms), list) in &phones {
        let at = Timestamp::from_millisecond(*at_ms).unwrap_or(now);
        let why = Why {
            reason: reason.clone(),
            at,
        };
        state.store.suppress(pnid, list, &why).await?;
    }
    let mut linked = 0;
    for (u, why) in &users {
        match state.store.user_phone(pnid, u).await? {
            Some(p) => {
                state.store.suppress(pnid, &[p], why).await?;
                linked += 1;
            }
            None => {
                state.store.opt_out_user(pnid, u).await?;
            }
        }
    }
    let answer = SuppressionImport {
        numbers,
        user_ids: users.len(),
        user_ids_with_known_number: linked,
        rejected,
        rejects,
    };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// An RFC 3339 time, or a plain date (midnight UTC); never in the future.
fn date(s: &str) -> Option<Timestamp> {
    let t = s.parse::<Timestamp>().ok().or_else(|| {
        let d: jiff::civil::Date = s.parse().ok()?;
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })?;
    Some(t.min(Timestamp::now()))
}

/// `DELETE /v1/suppressions/{phone_number_id}/{entry}`: a number or a user id comes off the
/// list (the user opted back in elsewhere).
#[utoipa::path(delete, path = "/v1/suppressions/{phone_number_id}/{entry}", tag = "suppressions",
    params(("phone_number_id" = String, Path, description = "The sending phone number id"),
           ("entry" = String, Path, description = "An E.164 number or a business-scoped user id")),
    responses(
        (status = 200, description = "Whether anything came off the list", body = SuppressionRemoved),
        (status = 404, description = "Not a phone number id", body = ErrorBody),
        (status = 422, description = "Neither a number nor a user id", body = ErrorBody)))]
pub(crate) async fn remove<S: Store>(
    State(state): State<AppState<S>>,
    Path((pnid, entry)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pnid = phone_number_id(&pnid)?;
    let removed = if let Ok(p) = entry.parse::<PhoneE164>() {
        state.store.unsuppress(pnid, &[p]).await? > 0
    } else if let Some(u) = business_user_id(&entry) {
        let unlinked = state.store.opt_in_user(pnid, u).await?;
        let by_number = match state.store.user_phone(pnid, u).await? {
            Some(p) => state.store.unsuppress(pnid, &[p]).await? > 0,
            None => false,
        };
        unlinked || by_number
    } else {
        return Err(ApiError::invalid(format!(
            "{entry:?} is neither an E.164 number nor a business-scoped user id"
        )));
    };
    Ok(axum::Json(SuppressionRemoved { removed }).into_response())
}
