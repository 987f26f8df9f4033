//! The failures report on Redis: upload rejects, then the jobs that failed or were skipped.

use std::collections::HashMap;

use herald_core::{CampaignId, JobId};
use herald_store::{FailureRow, Result, StoreError};

use crate::conn::{Call, Run, invalid};
use crate::keys::JOBS_PER_BUCKET;
use crate::{RedisStore, job_view};

/// Rejects per script call.
const REJECTS_CHUNK: usize = 1000;

pub(crate) async fn add_rejects(
    store: &RedisStore,
    id: &CampaignId,
    rejects: &[herald_store::UploadReject],
    keep: usize,
) -> Result<u64> {
    if rejects.is_empty() {
        return Ok(0);
    }
    let mut conn = store.conn().await?;
    let mut new = 0;
    for chunk in rejects.chunks(REJECTS_CHUNK) {
        let mut inv = Call::new(&store.scripts.rejects);
        inv.key(store.keys.declared(id))
            .arg(store.keys.base(id))
            .arg(keep)
            .arg(keep.saturating_mul(herald_store::REJECT_MEMORY));
        for r in chunk {
            let row = serde_json::to_string(&r.row).map_err(invalid)?;
            inv.arg(r.fingerprint())
                .arg(format!("upl:{}", r.reason.as_str()))
                .arg(row);
        }
        let n: u64 = inv.run_for(&mut conn, id).await?;
        new += n;
    }
    Ok(new)
}

/// The job records of the buckets (ten jobs each) from `first`, enough for `count` jobs, read
/// in one pipeline: `(seq, record)` in job order, and the bucket the next page starts at
/// (`None` at the end); `None` when `first` is past the last bucket.
async fn record_page(
    store: &RedisStore,
    conn: &mut crate::Conn<'_>,
    id: &CampaignId,
    next_seq: Option<u64>,
    first: u64,
    count: usize,
) -> Result<Option<(Vec<(u32, String)>, Option<u64>)>> {
    let buckets = next_seq.unwrap_or(0) / JOBS_PER_BUCKET + 1;
    if first >= buckets {
        return Ok(None);
    }
    let last = (first + (count as u64).div_ceil(JOBS_PER_BUCKET).max(1)).min(buckets);
    let mut pipe = redis::pipe();
    for b in first..last {
        pipe.hgetall(store.keys.jobs_bucket(id, b));
    }
    let pages: Vec<HashMap<u32, String>> = pipe.run(conn).await?;
    let mut records = Vec::new();
    for (b, page) in (first..last).zip(pages) {
        let mut fields: Vec<_> = page.into_iter().collect();
        fields.sort_unstable_by_key(|(f, _)| *f);
        records.extend(fields.into_iter().map(|(f, rec)| {
            let seq = u32::try_from(b * JOBS_PER_BUCKET + u64::from(f)).unwrap_or(u32::MAX);
            (seq, rec)
        }));
    }
    Ok(Some((records, (last < buckets).then_some(last))))
}

/// A page of a campaign's recipients and outcomes: the cursor is a record bucket, and a page
/// is a few buckets (ten jobs each) read in one pipeline.
pub(crate) async fn outcomes(
    store: &RedisStore,
    id: &CampaignId,
    cursor: u64,
    count: usize,
) -> Result<(Vec<herald_store::RecipientOutcome>, Option<u64>)> {
    let mut conn = store.conn().await?;
    let (exists, next_seq): (bool, Option<u64>) = redis::pipe()
        .exists(store.keys.meta(id))
        .hget(store.keys.meta(id), "next_seq")
        .run(&mut conn)
        .await?;
    if !exists {
        return Err(StoreError::NotFound(id.clone()));
    }
    let Some((records, next)) = record_page(store, &mut conn, id, next_seq, cursor, count).await?
    else {
        return Ok((Vec::new(), None));
    };
    let mut rows = Vec::new();
    for (seq, rec) in records {
        let job = JobId::new(id.clone(), seq);
        let corrupt = || StoreError::Corrupt(format!("job {job} record"));
        let r = crate::parse_record(&rec).ok_or_else(corrupt)?;
        let vars = herald_core::Vars::from_encoded(r.vars).map_err(|_| corrupt())?;
        let (region, replied) = (r.region(), r.flags.contains('R'));
        let view = job_view(job.clone(), &rec)?;
        // An accepted record's aux is "<message id>[ <webhook error code>]".
        let (accepted_ms, webhook_error) = match view.state {
            herald_store::JobState::Accepted { .. } => (
                r.token.parse().ok(),
                r.aux
                    .split(' ')
                    .nth(1)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            ),
            _ => (None, None),
        };
        rows.push(herald_store::RecipientOutcome {
            phone: view.phone,
            region,
            vars,
            state: view.state,
            accepted_ms,
            webhook_error,
            replied,
        });
    }
    Ok((rows, next))
}

pub(crate) async fn failures(
    store: &RedisStore,
    id: &CampaignId,
    cursor: u64,
    count: usize,
) -> Result<(Vec<FailureRow>, Option<u64>)> {
    let mut conn = store.conn().await?;
    let (rejects_len, next_seq): (u64, Option<u64>) = redis::pipe()
        .llen(store.keys.rejects(id))
        .hget(store.keys.meta(id), "next_seq")
        .run(&mut conn)
        .await?;
    let count = count.max(1);
    if cursor < rejects_len {
        let end = (cursor + count as u64).min(rejects_len);
        let raw: Vec<String> =
            redis::Cmd::lrange(store.keys.rejects(id), cursor as isize, end as isize - 1)
                .run(&mut conn)
                .await?;
        let rows = raw
            .iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|_| StoreError::Corrupt(format!("reject of {id}")))
            })
            .collect::<Result<_>>()?;
        return Ok((rows, Some(end)));
    }
    // Then the jobs, a few buckets per page.
    let Some((records, next)) =
        record_page(store, &mut conn, id, next_seq, cursor - rejects_len, count).await?
    else {
        return Ok((Vec::new(), None));
    };
    let mut rows = Vec::new();
    for (seq, rec) in records {
        let view = job_view(JobId::new(id.clone(), seq), &rec)?;
        let (reason, detail) = match &view.state {
            herald_store::JobState::Failed { code } => ("failed".to_owned(), code.clone()),
            herald_store::JobState::Skipped { reason } => {
                (reason.as_str().to_owned(), String::new())
            }
            herald_store::JobState::Accepted { delivery, .. } if delivery.failed => {
                let code = crate::parse_record(&rec)
                    .and_then(|r| r.aux.split(' ').nth(1).map(str::to_owned))
                    .unwrap_or_default();
                (herald_store::webhook_failure_reason(&code).to_owned(), code)
            }
            _ => continue,
        };
        rows.push(FailureRow {
            line: None,
            phone: view.phone.to_string(),
            reason,
            detail,
        });
    }
    Ok((rows, next.map(|n| rejects_len + n)))
}
