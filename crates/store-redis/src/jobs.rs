//! Jobs on Redis: enqueue, claim, start, settle, lease renewal and reclaim, and the in-doubt
//! sweep. Each operation groups its jobs by campaign and runs that campaign's script once
//! per group.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_core::{CampaignId, CampaignStatus, JobId, Recipient, WaMessageId, millis};
use herald_store::{
    ClaimRequest, ClaimedJob, InDoubtExpired, InDoubtPolicy, JobRef, JobState, JobView, Outcome,
    Reclaimed, Result, RunningCampaign, Settle, SettleResult, Store, StoreError,
};

use crate::conn::{Call, Run};
use crate::keys::DEDUPE_BUCKETS;
use crate::{RedisStore, job_view};

/// Recipients per enqueue script call.
const ENQUEUE_CHUNK: usize = 1000;
/// Jobs per reclaim, in-doubt or cancel script call (a call must not block Redis for long).
pub(crate) const SWEEP_CHUNK: usize = 1000;
/// Expired lease tokens swept per reclaim call (each holds up to a claim's worth of jobs).
const RECLAIM_TOKENS: usize = 16;

/// Groups items by campaign, keeping each item's index for mapping answers back, each group
/// in seq order (stable): the scripts read and write job records a bucket of ten seqs at a
/// time, so jobs of one bucket go together (see `each_job` in lua/common.lua).
fn by_campaign<'a, T>(
    items: impl Iterator<Item = (&'a JobId, T)>,
) -> BTreeMap<CampaignId, Vec<(usize, u32, T)>> {
    let mut groups: BTreeMap<CampaignId, Vec<(usize, u32, T)>> = BTreeMap::new();
    for (i, (id, t)) in items.enumerate() {
        groups
            .entry(id.campaign.clone())
            .or_default()
            .push((i, id.seq, t));
    }
    for group in groups.values_mut() {
        group.sort_by_key(|&(_, seq, _)| seq);
    }
    groups
}

/// The next space-terminated word and what follows the space.
fn split_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = b.iter().position(|&c| c == b' ')?;
    Some((&b[..at], &b[at + 1..]))
}

fn parse_ascii<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl RedisStore {
    pub(crate) async fn claim_from(
        &self,
        id: &CampaignId,
        max: usize,
        req: &ClaimRequest,
    ) -> Result<(Vec<ClaimedJob>, bool)> {
        let mut conn = self.conn().await?;
        let raw: Vec<redis::Value> = Call::new(&self.scripts.claim)
            .key(self.keys.declared(id))
            .arg(self.keys.base(id))
            .arg(max)
            .arg(req.token.0)
            .arg(millis(req.lease))
            .run_for(&mut conn, id)
            .await?;
        let corrupt = || StoreError::Corrupt(format!("claim reply for {id}"));
        let text = |v: &redis::Value| -> Result<String> {
            redis::from_redis_value_ref::<String>(v).map_err(|_| corrupt())
        };
        let completed = raw
            .first()
            .map(&text)
            .transpose()?
            .is_some_and(|s| s == "1");
        let payload: &[u8] = match raw.get(1) {
            Some(redis::Value::BulkString(b)) => b,
            Some(_) => return Err(corrupt()),
            None => &[],
        };
        let mut jobs = Vec::new();
        let mut rest = payload;
        while !rest.is_empty() {
            let (seq, after) = split_word(rest).ok_or_else(corrupt)?;
            let (len, after) = split_word(after).ok_or_else(corrupt)?;
            let seq: u32 = parse_ascii(seq).ok_or_else(corrupt)?;
            let len: usize = parse_ascii(len).ok_or_else(corrupt)?;
            let rec = after.get(..len).ok_or_else(corrupt)?;
            rest = &after[len..];
            let rec = std::str::from_utf8(rec).map_err(|_| corrupt())?;
            let r = crate::parse_record(rec).ok_or_else(corrupt)?;
            let phone = r.phone().ok_or_else(corrupt)?;
            jobs.push(ClaimedJob {
                id: JobId::new(id.clone(), seq),
                phone,
                region: r.region(),
                vars: herald_core::Vars::from_encoded(r.vars).map_err(|_| corrupt())?,
                attempts: r.attempts,
                resend: r.flags.contains('r'),
                token: req.token,
            });
        }
        Ok((jobs, completed))
    }
}

pub(crate) async fn enqueue_batch(
    store: &RedisStore,
    id: &CampaignId,
    recipients: &[Recipient],
) -> Result<Vec<bool>> {
    let mut conn = store.conn().await?;
    let mut out = Vec::with_capacity(recipients.len());
    for chunk in recipients.chunks(ENQUEUE_CHUNK) {
        let mut inv = Call::new(&store.scripts.enqueue);
        inv.key(store.keys.declared(id))
            .arg(store.keys.base(id))
            .arg(DEDUPE_BUCKETS);
        for r in chunk {
            inv.arg(r.phone.as_u64())
                .arg(r.region.as_str())
                .arg(r.vars.encoded());
        }
        let flags: Vec<u8> = inv.run_for(&mut conn, id).await?;
        out.extend(flags.into_iter().map(|f| f == 1));
    }
    Ok(out)
}

pub(crate) async fn claim(store: &RedisStore, req: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
    let mut campaigns: Vec<RunningCampaign> = store.running_campaigns().await?;
    if let Ok(mut idle) = store.idle.lock()
        && !idle.is_empty()
    {
        let running: std::collections::HashSet<&CampaignId> =
            campaigns.iter().map(|c| &c.id).collect();
        idle.retain(|id| running.contains(id));
    }
    if let Some(pnid) = &req.phone_number_id {
        campaigns.retain(|c| &c.phone_number_id == pnid);
    }
    if campaigns.is_empty() || req.max == 0 {
        return Ok(Vec::new());
    }
    // A campaign whose last claim found nothing is asked cheaply first (waiting campaigns
    // would otherwise cost a script each, every claim).
    let idle: Vec<CampaignId> = match store.idle.lock() {
        Ok(idle) => campaigns
            .iter()
            .filter(|c| idle.contains(&c.id))
            .map(|c| c.id.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    if !idle.is_empty() {
        let waiting = nothing_to_claim(store, &idle).await?;
        campaigns.retain(|c| !waiting.contains(&c.id));
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
    }
    // Start at a different campaign each call; give each an equal share, then hand what
    // one could not use to the others.
    let start = store.rotation.fetch_add(1, Ordering::Relaxed) % campaigns.len();
    campaigns.rotate_left(start);
    let mut jobs = Vec::with_capacity(req.max);
    let mut hungry: Vec<&RunningCampaign> = campaigns.iter().collect();
    while jobs.len() < req.max && !hungry.is_empty() {
        let share = (req.max - jobs.len()).div_ceil(hungry.len());
        let mut still = Vec::new();
        for c in hungry {
            let want = share.min(req.max - jobs.len());
            if want == 0 {
                break;
            }
            let (got, completed) = store.claim_from(&c.id, want, req).await?;
            if completed {
                store.on_completed(&c.id).await?;
            }
            if let Ok(mut idle) = store.idle.lock() {
                if got.is_empty() {
                    idle.insert(c.id.clone());
                } else {
                    idle.remove(&c.id);
                }
            }
            if got.len() == want {
                still.push(c);
            }
            jobs.extend(got);
        }
        hungry = still;
    }
    Ok(jobs)
}

/// How far ahead of this process's clock a retry counts as due when asking whether a campaign
/// has anything to claim: the store's clock decides (in the claim script), and a process
/// whose clock is behind it by less than this loses nothing by asking.
const DUE_AHEAD_MS: i64 = 1_000;

/// Of the campaigns `ids`, those with nothing to claim and nothing to complete: an empty
/// queue, no retry due, and jobs still pending (waiting for a later retry or their send
/// window; a campaign with none pending is left to the claim script, which may complete it).
/// Three reads each, in one pipeline.
async fn nothing_to_claim(
    store: &RedisStore,
    ids: &[CampaignId],
) -> Result<std::collections::HashSet<CampaignId>> {
    let due = herald_core::unix_ms() + DUE_AHEAD_MS;
    let mut conn = store.conn().await?;
    let cmds = ids
        .iter()
        .flat_map(|id| {
            let (queue, delayed) = store.keys.queue(id);
            let mut pending = redis::cmd("HGET");
            pending.arg(store.keys.stats(id)).arg("pending");
            [
                redis::Cmd::llen(queue),
                redis::Cmd::zcount(delayed, "-inf", due),
                pending,
            ]
        })
        .collect();
    let rows: Vec<Option<i64>> = conn.each(cmds).await?;
    Ok(ids
        .iter()
        .zip(rows.chunks(3))
        .filter(|(_, r)| {
            let n = |i: usize| r.get(i).copied().flatten().unwrap_or(0);
            n(0) == 0 && n(1) == 0 && n(2) > 0
        })
        .map(|(id, _)| id.clone())
        .collect())
}

pub(crate) async fn start(store: &RedisStore, jobs: &[JobRef]) -> Result<Vec<bool>> {
    let mut out = vec![false; jobs.len()];
    let mut conn = match store.replica_ack {
        // WAIT blocks its connection: a connection of its own, so nothing queues behind it.
        Some(ack) => store.own_conn(ack.timeout).await?,
        None => store.conn().await?,
    };
    let mut marked = Vec::new();
    for (campaign, mut group) in by_campaign(jobs.iter().map(|j| (&j.id, j.token))) {
        let mut inv = Call::new(&store.scripts.start);
        inv.key(store.keys.declared(&campaign))
            .arg(store.keys.base(&campaign));
        // Per token, its seqs (in seq order: the sort is stable).
        group.sort_by_key(|&(_, _, token)| token.0);
        for run in group.chunk_by(|a, b| a.2 == b.2) {
            inv.arg(run[0].2.0).arg(run.len());
            for (_, seq, _) in run {
                inv.arg(*seq);
            }
        }
        let flags: String = inv.run_for(&mut conn, &campaign).await?;
        for ((i, _, _), f) in group.iter().zip(flags.bytes()) {
            out[*i] = f == b'1';
        }
        if flags.contains('1') {
            marked.push(store.keys.meta(&campaign));
        }
    }
    if let Some(ack) = store.replica_ack
        && !marked.is_empty()
    {
        crate::replicas::wait(&mut conn, ack, &marked, crate::replicas::Write::Start).await?;
    }
    Ok(out)
}

pub(crate) async fn settle(store: &RedisStore, settles: &[Settle]) -> Result<Vec<SettleResult>> {
    let mut out = vec![SettleResult::Stale; settles.len()];
    let mut conn = store.conn().await?;
    // Message id → job lookups go in the same round trip, ahead of the script: a status
    // webhook can arrive as soon as Meta answers.
    let lookups: Vec<(&WaMessageId, &JobId)> = settles
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Accepted { message_id } => Some((message_id, &s.job.id)),
            _ => None,
        })
        .collect();
    let mut first = true;
    for (campaign, group) in by_campaign(settles.iter().map(|s| (&s.job.id, s))) {
        let mut inv = Call::new(&store.scripts.settle);
        inv.key(store.keys.declared(&campaign))
            .arg(store.keys.base(&campaign));
        for (_, seq, s) in &group {
            inv.arg(*seq).arg(s.job.token.0);
            match &s.outcome {
                Outcome::Accepted { message_id } => inv.arg("A").arg(message_id.as_str()),
                Outcome::Failed { code } => inv.arg("F").arg(code.as_str()),
                Outcome::Delayed { delay } => inv.arg("D").arg(millis(*delay)),
                Outcome::Deferred { delay } => inv.arg("W").arg(millis(*delay)),
                Outcome::AwaitWindow { delay } => inv.arg("H").arg(millis(*delay)),
                Outcome::Skipped { reason } => inv.arg("K").arg(reason.as_str()),
                Outcome::InDoubt => inv.arg("U").arg(""),
                Outcome::Released => inv.arg("R").arg(""),
            };
        }
        let first_cmds = if first {
            store.lookups(&lookups, false)
        } else {
            Vec::new()
        };
        first = false;
        // Redis restarted and lost its scripts: the lookups are idempotent.
        let flags: String = conn.then_run(first_cmds, &inv, &campaign).await?;
        let completed = flags.starts_with('1');
        for ((i, _, _), f) in group.iter().zip(flags.bytes().skip(1)) {
            out[*i] = match f {
                b'1' => SettleResult::Applied,
                b'2' => SettleResult::Known,
                _ => SettleResult::Stale,
            };
        }
        if completed {
            store.on_completed(&campaign).await?;
        }
    }
    Ok(out)
}

pub(crate) async fn renew(store: &RedisStore, jobs: &[JobRef], lease: Duration) -> Result<()> {
    let lease_ms = millis(lease);
    let mut conn = store.conn().await?;
    for (campaign, group) in by_campaign(jobs.iter().map(|j| (&j.id, j.token))) {
        let mut inv = Call::new(&store.scripts.renew);
        inv.key(store.keys.declared(&campaign))
            .arg(store.keys.base(&campaign))
            .arg(lease_ms);
        let tokens: std::collections::BTreeSet<u64> = group.iter().map(|(_, _, t)| t.0).collect();
        for t in tokens {
            inv.arg(t.to_string());
        }
        let _: u64 = inv.run(&mut conn).await?;
    }
    Ok(())
}

pub(crate) async fn reclaim_expired(store: &RedisStore) -> Result<Reclaimed> {
    let mut total = Reclaimed::default();
    for a in store.active_held().await? {
        if !a.leases {
            continue;
        }
        let id = a.id;
        let mut conn = store.conn().await?;
        loop {
            let (pending, doubt, more): (u64, u64, u8) = Call::new(&store.scripts.reclaim)
                .key(store.keys.declared(&id))
                .arg(store.keys.base(&id))
                .arg(RECLAIM_TOKENS)
                .run(&mut conn)
                .await?;
            total.to_pending += pending;
            total.to_in_doubt += doubt;
            if pending + doubt > 0 {
                tracing::warn!(campaign = %id, to_pending = pending, to_in_doubt = doubt, "reclaimed expired leases");
            }
            if more == 0 {
                break;
            }
        }
    }
    Ok(total)
}

pub(crate) async fn expire_in_doubt(
    store: &RedisStore,
    grace: Duration,
    policy: InDoubtPolicy,
) -> Result<InDoubtExpired> {
    let grace_ms = millis(grace);
    let mut total = InDoubtExpired::default();
    let policy = match policy {
        InDoubtPolicy::Resend => "resend",
        InDoubtPolicy::Fail => "fail",
    };
    for a in store.active_held().await? {
        let id = a.id;
        // An ended campaign leaves the index once nothing of it is held.
        let ended = a.status.is_none_or(CampaignStatus::is_final);
        if !a.in_doubt {
            if ended {
                store.retire_if_idle(&id).await?;
            }
            continue;
        }
        let mut conn = store.conn().await?;
        // The evidence is read before the script runs: it only ever rises, so the script
        // never acts on more than was shown.
        let (caught_up, backlog) = match store.evidence_of(&id).await {
            Ok(e) => e,
            Err(StoreError::NotFound(_)) => {
                store.retire_if_idle(&id).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            let (resent, failed, completed, more, waiting): (u64, u64, u8, u8, u64) =
                Call::new(&store.scripts.doubt)
                    .key(store.keys.declared(&id))
                    .arg(store.keys.base(&id))
                    .arg(grace_ms)
                    .arg(policy)
                    .arg(SWEEP_CHUNK)
                    .arg(caught_up)
                    .arg(backlog)
                    .run(&mut conn)
                    .await?;
            total.resent += resent;
            total.failed += failed;
            if more == 0 {
                total.waiting += waiting;
            }
            if completed == 1 {
                store.on_completed(&id).await?;
            }
            if more == 0 {
                break;
            }
        }
        store.retire_if_idle(&id).await?;
    }
    Ok(total)
}

pub(crate) async fn job(store: &RedisStore, id: &JobId) -> Result<Option<JobView>> {
    let mut conn = store.conn().await?;
    let (bucket, field) = store.keys.job(&id.campaign, id.seq);
    let rec: Option<String> = redis::Cmd::hget(bucket, field).run(&mut conn).await?;
    let Some(rec) = rec else { return Ok(None) };
    let mut view = job_view(id.clone(), &rec)?;
    // A held job is started once its claim's fresh mark is gone (start.lua).
    if let JobState::InFlight { started: true } = view.state
        && let Some(token) = crate::parse_record(&rec).map(|r| r.token)
    {
        let (_, marks) = store.keys.claim(&id.campaign, token);
        let fresh: bool = redis::Cmd::sismember(marks, id.seq).run(&mut conn).await?;
        view.state = JobState::InFlight { started: !fresh };
    }
    Ok(Some(view))
}
