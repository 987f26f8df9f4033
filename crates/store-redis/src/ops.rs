//! `Store` on Redis: each operation groups its jobs by campaign and runs that campaign's
//! script once per group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use herald_core::{
    CampaignAction, CampaignId, CampaignStatus, DeliveryState, JobId, PauseReason, PhoneE164,
    Recipient, Stats, WaMessageId,
};
use redis::AsyncCommands;

use crate::keys::{DEDUPE_BUCKETS, JOBS_PER_BUCKET, MESSAGE_DAYS};
use crate::{RedisStore, campaign_from_meta, day_of, job_view};
use herald_core::millis;
use herald_store::{
    Applied, Campaign, ClaimRequest, ClaimedJob, FailureRow, InDoubtExpired, InDoubtPolicy, JobRef,
    JobView, NewCampaign, Outcome, PairReservation, Reclaimed, Result, RunningCampaign, Settle,
    SettleResult, StatusUpdate, Store, StoreError,
};

/// Recipients per enqueue script call.
const ENQUEUE_CHUNK: usize = 1000;
/// Jobs per reclaim, in-doubt or cancel script call (a call must not block Redis for long).
const SWEEP_CHUNK: usize = 1000;
/// Expired lease tokens swept per reclaim call (each holds up to a claim's worth of jobs).
const RECLAIM_TOKENS: usize = 16;
/// How long a pair key remembers the campaign, for reply attribution.
const REPLY_MEMORY_MS: u64 = 72 * 3600 * 1000;
/// How long the running-campaign list is cached.
const RUNNING_CACHE: Duration = Duration::from_millis(500);
/// How often the running index is checked against the campaigns themselves.
const REPAIR_EVERY_MS: i64 = 30_000;

/// Groups items by campaign, keeping each item's index for mapping answers back.
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
    groups
}

fn event_bits(event: herald_core::StatusEvent) -> u8 {
    DeliveryState::from_event(event).to_bits()
}

impl RedisStore {
    fn invalidate_running(&self) {
        if let Ok(mut cache) = self.running_cache.lock() {
            *cache = None;
        }
    }

    /// Keeps the running and active indexes in step with a campaign's new status.
    async fn after_status(&self, id: &CampaignId, status: CampaignStatus) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        if status == CampaignStatus::Running {
            pipe.sadd(self.keys.running(), id.as_str());
        } else {
            pipe.srem(self.keys.running(), id.as_str());
        }
        if status != CampaignStatus::Scheduled {
            pipe.zrem(self.keys.scheduled(), id.as_str());
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        self.invalidate_running();
        Ok(())
    }

    async fn status_of(&self, id: &CampaignId) -> Result<CampaignStatus> {
        let mut conn = self.conn().await?;
        let st: Option<String> = conn
            .hget(self.keys.meta(id), "status")
            .await
            .map_err(|e| self.fail(e))?;
        let st = st.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        CampaignStatus::parse(&st)
            .ok_or_else(|| StoreError::Corrupt(format!("campaign {id}: status")))
    }

    /// Compare-and-set from `from` to `to`. `Ok(false)` when the status moved meanwhile.
    async fn cas(
        &self,
        id: &CampaignId,
        from: CampaignStatus,
        to: CampaignStatus,
        reason: Option<&PauseReason>,
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        let reason = reason
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let answer: Vec<String> = self
            .scripts
            .transition
            .key(self.keys.meta(id))
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(reason.unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_for(e, Some(id)))?;
        Ok(answer.first().is_some_and(|a| a == "ok"))
    }

    /// Runs the cancel script until the campaign's queue and delay set are empty.
    async fn cancel_unsent(&self, id: &CampaignId) -> Result<()> {
        let mut conn = self.conn().await?;
        loop {
            let left: u64 = self
                .scripts
                .cancel
                .key(self.keys.meta(id))
                .arg(self.keys.base(id))
                .arg(SWEEP_CHUNK)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail_for(e, Some(id)))?;
            if left == 0 {
                return Ok(());
            }
        }
    }

    async fn active_campaigns(&self) -> Result<Vec<CampaignId>> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .smembers(self.keys.active())
            .await
            .map_err(|e| self.fail(e))?;
        Ok(ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect())
    }

    /// Drops a final campaign from the active index once nothing of it is in flight or in
    /// doubt.
    async fn retire_if_idle(&self, id: &CampaignId) -> Result<()> {
        let status = match self.status_of(id).await {
            Ok(s) => s,
            // An index entry whose campaign was never written (its creator died in between).
            Err(StoreError::NotFound(_)) => {
                let mut conn = self.conn().await?;
                return conn
                    .srem::<_, _, ()>(self.keys.active(), id.as_str())
                    .await
                    .map_err(|e| self.fail(e));
            }
            Err(e) => return Err(e),
        };
        if !status.is_final() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let (in_flight, in_doubt): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.keys.stats(id))
            .arg("in_flight")
            .arg("in_doubt")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        if in_flight.unwrap_or(0) <= 0 && in_doubt.unwrap_or(0) <= 0 {
            let _: () = conn
                .srem(self.keys.active(), id.as_str())
                .await
                .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Brings every index in line with the campaigns' own records, which are the truth: a
    /// transition writes the campaign's status first and its indexes after (they live in other
    /// hash slots, so no script can do both), and a crash in between leaves an index behind.
    /// Rebuilds `running`, puts scheduled campaigns (back) in `scheduled` at their time, puts
    /// campaigns that may hold jobs (back) in `active`, and finishes the draining of a
    /// cancelled campaign that a failed cancel left with pending jobs. Runs every 30 s (from
    /// [`Store::running_campaigns`]); safe on any number of processes at once.
    pub async fn repair_indexes(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrange(self.keys.campaigns(), 0, -1)
            .await
            .map_err(|e| self.fail(e))?;
        let ids: Vec<CampaignId> = ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.meta(id))
                .arg("status")
                .arg("schedule_ms");
            pipe.cmd("HMGET")
                .arg(self.keys.stats(id))
                .arg("pending")
                .arg("in_flight")
                .arg("in_doubt");
        }
        let rows: Vec<Vec<Option<String>>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut running = Vec::new();
        let mut fix = redis::pipe();
        let mut cancelled_with_pending = Vec::new();
        for (id, pair) in ids.iter().zip(rows.chunks(2)) {
            let (Some(meta), Some(counts)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            let Some(status) = meta.first().cloned().flatten() else {
                continue;
            };
            let Some(status) = CampaignStatus::parse(&status) else {
                continue;
            };
            let count = |i: usize| {
                counts
                    .get(i)
                    .cloned()
                    .flatten()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let (pending, held) = (count(0), count(1) + count(2));
            match status {
                CampaignStatus::Running => running.push(id.as_str()),
                CampaignStatus::Scheduled => {
                    let at = match meta.get(1).cloned().flatten() {
                        Some(ms) => ms.parse::<i64>().unwrap_or(0),
                        None => self
                            .campaign(id)
                            .await?
                            .spec
                            .schedule_at
                            .map_or(0, |t| t.as_millisecond()),
                    };
                    // NX: a campaign already in the index keeps its time.
                    fix.cmd("ZADD")
                        .arg(self.keys.scheduled())
                        .arg("NX")
                        .arg(at)
                        .arg(id.as_str())
                        .ignore();
                }
                CampaignStatus::Cancelled if pending > 0 => cancelled_with_pending.push(id.clone()),
                _ => {}
            }
            if status != CampaignStatus::Scheduled {
                fix.zrem(self.keys.scheduled(), id.as_str()).ignore();
            }
            if !status.is_final() || held > 0 {
                fix.sadd(self.keys.active(), id.as_str()).ignore();
            }
        }
        fix.atomic().del(self.keys.running()).ignore();
        if !running.is_empty() {
            fix.sadd(self.keys.running(), &running).ignore();
        }
        fix.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        self.invalidate_running();
        for id in cancelled_with_pending {
            tracing::warn!(campaign = %id, "finishing a cancel that was cut short");
            self.cancel_unsent(&id).await?;
        }
        Ok(())
    }

    async fn claim_from(
        &self,
        id: &CampaignId,
        max: usize,
        req: &ClaimRequest,
    ) -> Result<(Vec<ClaimedJob>, bool)> {
        let mut conn = self.conn().await?;
        let raw: Vec<redis::Value> = self
            .scripts
            .claim
            .key(self.keys.meta(id))
            .arg(self.keys.base(id))
            .arg(max)
            .arg(req.token.0.to_string())
            .arg(millis(req.lease))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_for(e, Some(id)))?;
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
            let phone = r
                .phone
                .parse::<u64>()
                .ok()
                .and_then(|p| PhoneE164::from_u64(p).ok())
                .ok_or_else(corrupt)?;
            jobs.push(ClaimedJob {
                id: JobId::new(id.clone(), seq),
                phone,
                vars: herald_core::Vars::from_encoded(r.vars).map_err(|_| corrupt())?,
                attempts: r.attempts,
                resend: r.flags.contains('r'),
                token: req.token,
            });
        }
        Ok((jobs, completed))
    }

    /// Records message id → job lookups in today's buckets, giving each bucket its expiry the
    /// first time this process writes to it.
    fn add_lookups(
        &self,
        pipe: &mut redis::Pipeline,
        lookups: &[(&WaMessageId, String)],
        only_if_new: bool,
    ) {
        let day = day_of(herald_core::unix_ms());
        let expire_at = (day + 1 + MESSAGE_DAYS) * 86_400;
        let mut fresh = Vec::new();
        for (m, job) in lookups {
            let (key, b) = self.keys.message_bucket(day, m);
            if only_if_new {
                pipe.hset_nx(&key, m.as_str(), job).ignore();
            } else {
                pipe.hset(&key, m.as_str(), job).ignore();
            }
            fresh.push(((day, b), key));
        }
        if let Ok(mut seen) = self.expiring.lock() {
            if seen.len() > 4 * crate::keys::MESSAGE_BUCKETS as usize {
                seen.retain(|(d, _)| *d == day);
            }
            for (db, key) in fresh {
                if seen.insert(db) {
                    pipe.cmd("EXPIREAT").arg(key).arg(expire_at).ignore();
                }
            }
        }
    }

    /// Finds the jobs of message ids: today's and yesterday's buckets first (where nearly all
    /// statuses land), then the rest of the horizon for those not found.
    async fn find_lookups(&self, ids: &[&WaMessageId]) -> Result<Vec<Option<JobId>>> {
        let mut found: Vec<Option<JobId>> = vec![None; ids.len()];
        let today = day_of(herald_core::unix_ms());
        let mut conn = self.conn().await?;
        for days in [today - 1..=today, today - MESSAGE_DAYS..=today - 2] {
            let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
            if missing.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            let mut asked = Vec::new();
            for &i in &missing {
                for day in days.clone().rev() {
                    pipe.hget(self.keys.message_bucket(day, ids[i]).0, ids[i].as_str());
                    asked.push(i);
                }
            }
            let answers: Vec<Option<String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.fail(e))?;
            for (i, a) in asked.into_iter().zip(answers) {
                if found[i].is_none() {
                    found[i] = a.and_then(|s| s.parse().ok());
                }
            }
        }
        Ok(found)
    }

    /// How far a campaign's phone number's webhooks have caught up, and when a backlog last
    /// drained (ms; 0 when never).
    async fn evidence_of(&self, id: &CampaignId) -> Result<(i64, i64)> {
        let pnid = self.pnid_of(id).await?;
        let mut conn = self.conn().await?;
        let (caught_up, backlog): (Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg(self.keys.evidence(&pnid))
            .arg(self.keys.backlog(&pnid))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok((caught_up.unwrap_or(0), backlog.unwrap_or(0)))
    }

    /// A campaign's phone number id (it never changes, so it is cached).
    async fn pnid_of(&self, id: &CampaignId) -> Result<String> {
        if let Some(p) = self.pnids.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(p);
        }
        let mut conn = self.conn().await?;
        let pnid: Option<String> = conn
            .hget(self.keys.meta(id), "pnid")
            .await
            .map_err(|e| self.fail(e))?;
        let pnid = pnid.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        if let Ok(mut m) = self.pnids.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.clone(), pnid.clone());
        }
        Ok(pnid)
    }

    async fn upload_hold(&self, id: &CampaignId, upload: u64, hold_ms: u64) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: u8 = self
            .scripts
            .upload
            .key(self.keys.meta(id))
            .arg(self.keys.base(id))
            .arg(upload.to_string())
            .arg(hold_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_for(e, Some(id)))?;
        Ok(())
    }

    async fn on_completed(&self, id: &CampaignId) -> Result<()> {
        tracing::info!(campaign = %id, "campaign completed");
        self.after_status(id, CampaignStatus::Completed).await?;
        self.retire_if_idle(id).await
    }
}

impl Store for RedisStore {
    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    async fn create_campaign(&self, c: NewCampaign) -> Result<Campaign> {
        c.spec
            .validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let now = herald_core::unix_ms();
        let id = CampaignId::generate(u64::try_from(now).unwrap_or(0), rand::random::<u32>());
        let spec_json =
            serde_json::to_string(&c.spec).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut fields: Vec<(&str, String)> = vec![
            ("id", id.to_string()),
            ("status", CampaignStatus::Draft.as_str().to_owned()),
            ("pnid", c.phone_number_id.clone()),
            ("template", c.template.clone().unwrap_or_default()),
            ("spec", spec_json),
            ("created_ms", now.to_string()),
            ("updated_ms", now.to_string()),
            ("next_seq", "0".into()),
        ];
        if let Some(mps) = c.spec.mps {
            fields.push(("mps", mps.to_string()));
        }
        if let Some(at) = c.spec.schedule_at {
            fields.push(("schedule_ms", at.as_millisecond().to_string()));
        }
        let mut conn = self.conn().await?;
        // Listed newest first, in creation order even within one millisecond: the score is
        // the creation ms with a sequence number below it.
        let seq: i64 = conn
            .incr(self.keys.campaign_seq(), 1)
            .await
            .map_err(|e| self.fail(e))?;
        let score = now * 1024 + seq.rem_euclid(1024);
        // The indexes first: should this process die in between, an index entry without a
        // campaign is skipped by every reader; a campaign missing from its index would not be.
        redis::pipe()
            .zadd(self.keys.campaigns(), id.as_str(), score)
            .sadd(self.keys.active(), id.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        conn.hset_multiple::<_, _, _, ()>(self.keys.meta(&id), &fields)
            .await
            .map_err(|e| self.fail(e))?;
        self.campaign(&id).await
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Campaign> {
        let mut conn = self.conn().await?;
        let meta: HashMap<String, String> = conn
            .hgetall(self.keys.meta(id))
            .await
            .map_err(|e| self.fail(e))?;
        if meta.is_empty() {
            return Err(StoreError::NotFound(id.clone()));
        }
        campaign_from_meta(id, &meta)
    }

    async fn list_campaigns(&self) -> Result<Vec<Campaign>> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrevrange(self.keys.campaigns(), 0, -1)
            .await
            .map_err(|e| self.fail(e))?;
        let ids: Vec<CampaignId> = ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.meta(id));
        }
        let metas: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        ids.iter()
            .zip(&metas)
            .filter(|(_, m)| !m.is_empty())
            .map(|(id, m)| campaign_from_meta(id, m))
            .collect()
    }

    async fn transition(
        &self,
        id: &CampaignId,
        action: CampaignAction,
        reason: Option<PauseReason>,
    ) -> Result<CampaignStatus> {
        for _ in 0..8 {
            let from = self.status_of(id).await?;
            if from == CampaignStatus::Cancelled && action == CampaignAction::Cancel {
                // Cancelling again finishes what a cancel left (it is idempotent).
                self.cancel_unsent(id).await?;
                self.retire_if_idle(id).await?;
                return Ok(from);
            }
            let to = from.apply(action)?;
            let reason = match (to, &reason) {
                (CampaignStatus::Paused, None) => Some(PauseReason::operator()),
                (_, r) => r.clone(),
            };
            if !self.cas(id, from, to, reason.as_ref()).await? {
                continue;
            }
            self.after_status(id, to).await?;
            match to {
                CampaignStatus::Scheduled => {
                    let c = self.campaign(id).await?;
                    let at = c
                        .spec
                        .schedule_at
                        .map_or(herald_core::unix_ms(), |t| t.as_millisecond());
                    let mut conn = self.conn().await?;
                    let _: () = conn
                        .zadd(self.keys.scheduled(), id.as_str(), at)
                        .await
                        .map_err(|e| self.fail(e))?;
                }
                CampaignStatus::Cancelled => {
                    self.cancel_unsent(id).await?;
                    self.retire_if_idle(id).await?;
                }
                _ => {}
            }
            tracing::info!(campaign = %id, from = %from, to = %to, "campaign status changed");
            return Ok(to);
        }
        Err(StoreError::Unavailable(format!(
            "campaign {id} kept changing status; try again"
        )))
    }

    async fn running_campaigns(&self) -> Result<Vec<RunningCampaign>> {
        if let Ok(cache) = self.running_cache.lock()
            && let Some((at, list)) = cache.as_ref()
            && at.elapsed() < RUNNING_CACHE
        {
            return Ok(list.clone());
        }
        let now = herald_core::unix_ms();
        if now - self.repaired_ms.load(Ordering::Relaxed) > REPAIR_EVERY_MS {
            self.repaired_ms.store(now, Ordering::Relaxed);
            self.repair_indexes().await?;
        }
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .smembers(self.keys.running())
            .await
            .map_err(|e| self.fail(e))?;
        let ids: Vec<CampaignId> = ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect();
        if ids.is_empty() {
            if let Ok(mut cache) = self.running_cache.lock() {
                *cache = Some((Instant::now(), Vec::new()));
            }
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.meta(id))
                .arg("status")
                .arg("pnid")
                .arg("mps");
        }
        let rows: Vec<(Option<String>, Option<String>, Option<u32>)> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut list = Vec::new();
        for (id, (status, pnid, mps)) in ids.into_iter().zip(rows) {
            if status.as_deref() == Some("running") {
                list.push(RunningCampaign {
                    id,
                    phone_number_id: pnid.unwrap_or_default(),
                    mps,
                });
            }
        }
        list.sort_by(|a, b| a.id.cmp(&b.id));
        if let Ok(mut cache) = self.running_cache.lock() {
            *cache = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    async fn due_scheduled(&self, now: Timestamp) -> Result<Vec<CampaignId>> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrangebyscore(self.keys.scheduled(), "-inf", now.as_millisecond())
            .await
            .map_err(|e| self.fail(e))?;
        Ok(ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect())
    }

    async fn hold_upload(&self, id: &CampaignId, upload: u64, hold: Duration) -> Result<()> {
        self.upload_hold(id, upload, millis(hold).max(1)).await
    }

    async fn release_upload(&self, id: &CampaignId, upload: u64) -> Result<()> {
        self.upload_hold(id, upload, 0).await
    }

    async fn enqueue_batch(&self, id: &CampaignId, recipients: &[Recipient]) -> Result<Vec<bool>> {
        let mut conn = self.conn().await?;
        let mut out = Vec::with_capacity(recipients.len());
        for chunk in recipients.chunks(ENQUEUE_CHUNK) {
            let mut inv = self.scripts.enqueue.prepare_invoke();
            inv.key(self.keys.meta(id))
                .arg(self.keys.base(id))
                .arg(DEDUPE_BUCKETS);
            for r in chunk {
                inv.arg(r.phone.as_u64()).arg(r.vars.encoded());
            }
            let flags: Vec<u8> = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail_for(e, Some(id)))?;
            out.extend(flags.into_iter().map(|f| f == 1));
        }
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        let mut campaigns: Vec<RunningCampaign> = self.running_campaigns().await?;
        if let Some(pnid) = &req.phone_number_id {
            campaigns.retain(|c| &c.phone_number_id == pnid);
        }
        if campaigns.is_empty() || req.max == 0 {
            return Ok(Vec::new());
        }
        // Start at a different campaign each call; give each an equal share, then hand what
        // one could not use to the others.
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % campaigns.len();
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
                let (got, completed) = self.claim_from(&c.id, want, req).await?;
                if completed {
                    self.on_completed(&c.id).await?;
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

    async fn start(&self, jobs: &[JobRef]) -> Result<Vec<bool>> {
        let mut out = vec![false; jobs.len()];
        let mut conn = self.conn().await?;
        for (campaign, group) in by_campaign(jobs.iter().map(|j| (&j.id, j.token))) {
            let mut inv = self.scripts.start.prepare_invoke();
            inv.key(self.keys.meta(&campaign))
                .arg(self.keys.base(&campaign));
            for (_, seq, token) in &group {
                inv.arg(*seq).arg(token.0.to_string());
            }
            let flags: String = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail_for(e, Some(&campaign)))?;
            for ((i, _, _), f) in group.iter().zip(flags.bytes()) {
                out[*i] = f == b'1';
            }
        }
        Ok(out)
    }

    async fn settle(&self, settles: &[Settle]) -> Result<Vec<SettleResult>> {
        let mut out = vec![SettleResult::Stale; settles.len()];
        let mut conn = self.conn().await?;
        // Message id → job lookups go in the same round trip, ahead of the script: a status
        // webhook can arrive as soon as Meta answers.
        let lookups: Vec<(&WaMessageId, String)> = settles
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Accepted { message_id } => Some((message_id, s.job.id.to_string())),
                _ => None,
            })
            .collect();
        let mut first = true;
        for (campaign, group) in by_campaign(settles.iter().map(|s| (&s.job.id, s))) {
            let mut inv = self.scripts.settle.prepare_invoke();
            inv.key(self.keys.meta(&campaign))
                .arg(self.keys.base(&campaign));
            for (_, seq, s) in &group {
                let (kind, arg) = match &s.outcome {
                    Outcome::Accepted { message_id } => ("A", message_id.to_string()),
                    Outcome::Failed { code } => ("F", code.clone()),
                    Outcome::Delayed { delay } => ("D", millis(*delay).to_string()),
                    Outcome::Deferred { delay } => ("W", millis(*delay).to_string()),
                    Outcome::Skipped { reason } => ("K", reason.as_str().to_owned()),
                    Outcome::InDoubt => ("U", String::new()),
                    Outcome::Released => ("R", String::new()),
                };
                inv.arg(*seq)
                    .arg(s.job.token.0.to_string())
                    .arg(kind)
                    .arg(arg);
            }
            let mut pipe = redis::pipe();
            if first && !lookups.is_empty() {
                self.add_lookups(&mut pipe, &lookups, false);
            }
            first = false;
            pipe.invoke_script(&inv);
            let flags: String = match pipe.query_async::<(String,)>(&mut conn).await {
                Ok((flags,)) => flags,
                // Redis restarted and lost its scripts: the script did not run; reload and
                // run it alone (the lookups are idempotent and already written).
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    inv.invoke_async(&mut conn)
                        .await
                        .map_err(|e| self.fail_for(e, Some(&campaign)))?
                }
                Err(e) => return Err(self.fail_for(e, Some(&campaign))),
            };
            let completed = flags.starts_with('1');
            for ((i, _, _), f) in group.iter().zip(flags.bytes().skip(1)) {
                out[*i] = if f == b'1' {
                    SettleResult::Applied
                } else {
                    SettleResult::Stale
                };
            }
            if completed {
                self.on_completed(&campaign).await?;
            }
        }
        Ok(out)
    }

    async fn renew(&self, jobs: &[JobRef], lease: Duration) -> Result<()> {
        let lease_ms = millis(lease);
        let mut conn = self.conn().await?;
        for (campaign, group) in by_campaign(jobs.iter().map(|j| (&j.id, j.token))) {
            let mut inv = self.scripts.renew.prepare_invoke();
            inv.key(self.keys.meta(&campaign))
                .arg(self.keys.base(&campaign))
                .arg(lease_ms);
            let tokens: std::collections::BTreeSet<u64> =
                group.iter().map(|(_, _, t)| t.0).collect();
            for t in tokens {
                inv.arg(t.to_string());
            }
            let _: u64 = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    async fn reclaim_expired(&self) -> Result<Reclaimed> {
        let mut total = Reclaimed::default();
        for id in self.active_campaigns().await? {
            let mut conn = self.conn().await?;
            loop {
                let (pending, doubt, more): (u64, u64, u8) = self
                    .scripts
                    .reclaim
                    .key(self.keys.meta(&id))
                    .arg(self.keys.base(&id))
                    .arg(RECLAIM_TOKENS)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| self.fail(e))?;
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

    async fn expire_in_doubt(
        &self,
        grace: Duration,
        policy: InDoubtPolicy,
    ) -> Result<InDoubtExpired> {
        let grace_ms = millis(grace);
        let mut total = InDoubtExpired::default();
        let policy = match policy {
            InDoubtPolicy::Resend => "resend",
            InDoubtPolicy::Fail => "fail",
        };
        for id in self.active_campaigns().await? {
            let mut conn = self.conn().await?;
            // The evidence is read before the script runs: it only ever rises, so the script
            // never acts on more than was shown.
            let (caught_up, backlog) = match self.evidence_of(&id).await {
                Ok(e) => e,
                Err(StoreError::NotFound(_)) => {
                    self.retire_if_idle(&id).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            loop {
                let (resent, failed, completed, more, waiting): (u64, u64, u8, u8, u64) = self
                    .scripts
                    .doubt
                    .key(self.keys.meta(&id))
                    .arg(self.keys.base(&id))
                    .arg(grace_ms)
                    .arg(policy)
                    .arg(SWEEP_CHUNK)
                    .arg(caught_up)
                    .arg(backlog)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| self.fail(e))?;
                total.resent += resent;
                total.failed += failed;
                if more == 0 {
                    total.waiting += waiting;
                }
                if completed == 1 {
                    self.on_completed(&id).await?;
                }
                if more == 0 {
                    break;
                }
            }
            self.retire_if_idle(&id).await?;
        }
        Ok(total)
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<Applied>> {
        let mut out = vec![Applied::Unknown; updates.len()];
        let mut conn = self.conn().await?;
        // Resolve jobs: the callback id when it is Herald's, else the message id lookup.
        let need_lookup: Vec<usize> = (0..updates.len())
            .filter(|&i| updates[i].job.is_none() && updates[i].message_id.is_some())
            .collect();
        let mut found: HashMap<usize, JobId> = HashMap::new();
        if !need_lookup.is_empty() {
            let ids: Vec<&WaMessageId> = need_lookup
                .iter()
                .filter_map(|&i| updates[i].message_id.as_ref())
                .collect();
            for (i, job) in need_lookup.iter().zip(self.find_lookups(&ids).await?) {
                if let Some(job) = job {
                    found.insert(*i, job);
                }
            }
        }
        let resolved: Vec<(usize, JobId)> = updates
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                u.job
                    .clone()
                    .or_else(|| found.get(&i).cloned())
                    .map(|j| (i, j))
            })
            .collect();
        // Per phone number id, the latest acceptance time among the statuses applied, and
        // whether one of them lagged its event (a backlog draining).
        let mut evidence: BTreeMap<String, (i64, bool)> = BTreeMap::new();
        let mut groups: BTreeMap<CampaignId, Vec<(usize, u32)>> = BTreeMap::new();
        for (i, job) in &resolved {
            groups
                .entry(job.campaign.clone())
                .or_default()
                .push((*i, job.seq));
        }
        for (campaign, group) in groups {
            let mut inv = self.scripts.status.prepare_invoke();
            inv.key(self.keys.meta(&campaign))
                .arg(self.keys.base(&campaign))
                .arg(millis(herald_store::BACKLOG_LAG));
            for (i, seq) in &group {
                let u = &updates[*i];
                let (billable, category) = match &u.pricing {
                    Some(p) => (
                        p.billable.map_or("", |b| if b { "1" } else { "0" }),
                        p.category.as_deref().unwrap_or(""),
                    ),
                    None => ("", ""),
                };
                inv.arg(*seq)
                    .arg(event_bits(u.event))
                    .arg(u.message_id.as_ref().map_or("", WaMessageId::as_str))
                    .arg(u.error_code.map(|c| c.to_string()).unwrap_or_default())
                    .arg(billable)
                    .arg(category)
                    .arg(u.timestamp.map(|t| t.to_string()).unwrap_or_default());
            }
            let reply: Vec<redis::Value> = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail_for(e, Some(&campaign)))?;
            let corrupt = || StoreError::Corrupt(format!("status reply for {campaign}"));
            let int = |v: Option<&redis::Value>| -> Result<i64> {
                v.and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                    .ok_or_else(corrupt)
            };
            if int(reply.first())? == 1 {
                self.on_completed(&campaign).await?;
            }
            let accepted_at = int(reply.get(1))?;
            let pnid: String = reply
                .get(2)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .ok_or_else(corrupt)?;
            let backlog = int(reply.get(3))? == 1;
            if !pnid.is_empty() && (accepted_at > 0 || backlog) {
                let e = evidence.entry(pnid).or_insert((0, false));
                *e = (e.0.max(accepted_at), e.1 || backlog);
            }
            let codes = reply
                .iter()
                .skip(4)
                .map(|v| redis::from_redis_value_ref::<u8>(v).map_err(|_| corrupt()))
                .collect::<Result<Vec<u8>>>()?;
            let mut new_lookups: Vec<(&WaMessageId, String)> = Vec::new();
            for ((i, seq), code) in group.iter().zip(codes) {
                out[*i] = match code {
                    1 => Applied::Changed,
                    0 => Applied::NoChange,
                    2 => Applied::Late,
                    _ => Applied::Unknown,
                };
                // A job found by callback id: make its message id findable too.
                if out[*i] == Applied::Changed
                    && updates[*i].job.is_some()
                    && let Some(m) = &updates[*i].message_id
                {
                    new_lookups.push((m, JobId::new(campaign.clone(), *seq).to_string()));
                }
            }
            if !new_lookups.is_empty() {
                let mut pipe = redis::pipe();
                self.add_lookups(&mut pipe, &new_lookups, true);
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| self.fail(e))?;
            }
        }
        // After the statuses (a crash in between only leaves the evidence behind, which delays
        // a resend and never causes one). Its own key, in the phone number's slot.
        for (pnid, (at, backlog)) in evidence {
            let _: i64 = self
                .scripts
                .evidence
                .key(self.keys.evidence(&pnid))
                .key(self.keys.backlog(&pnid))
                .arg(at)
                .arg(u8::from(backlog))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail(e))?;
        }
        Ok(out)
    }

    async fn stats(&self, id: &CampaignId) -> Result<Stats> {
        let mut conn = self.conn().await?;
        let (exists, h): (bool, HashMap<String, i64>) = redis::pipe()
            .exists(self.keys.meta(id))
            .hgetall(self.keys.stats(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        if !exists {
            return Err(StoreError::NotFound(id.clone()));
        }
        Ok(herald_store::stats_from_counters(
            h.iter().map(|(k, v)| (k.as_str(), *v)),
        ))
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobView>> {
        let mut conn = self.conn().await?;
        let (bucket, field) = self.keys.job(&id.campaign, id.seq);
        let rec: Option<String> = conn.hget(bucket, field).await.map_err(|e| self.fail(e))?;
        rec.map(|r| job_view(id.clone(), &r)).transpose()
    }

    async fn job_for_message(&self, message_id: &WaMessageId) -> Result<Option<JobId>> {
        Ok(self.find_lookups(&[message_id]).await?.remove(0))
    }

    async fn add_rejects(
        &self,
        id: &CampaignId,
        rejects: &[herald_store::UploadReject],
        keep: usize,
    ) -> Result<u64> {
        if rejects.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut new = 0;
        for chunk in rejects.chunks(ENQUEUE_CHUNK) {
            let mut inv = self.scripts.rejects.prepare_invoke();
            inv.key(self.keys.meta(id))
                .arg(self.keys.base(id))
                .arg(keep)
                .arg(keep.saturating_mul(herald_store::REJECT_MEMORY));
            for r in chunk {
                let row = serde_json::to_string(&r.row)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                inv.arg(r.fingerprint())
                    .arg(format!("upl:{}", r.reason.as_str()))
                    .arg(row);
            }
            let n: u64 = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.fail_for(e, Some(id)))?;
            new += n;
        }
        Ok(new)
    }

    async fn failures(
        &self,
        id: &CampaignId,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<FailureRow>, Option<u64>)> {
        let mut conn = self.conn().await?;
        let (rejects_len, next_seq): (u64, Option<u64>) = redis::pipe()
            .llen(self.keys.rejects(id))
            .hget(self.keys.meta(id), "next_seq")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let count = count.max(1);
        if cursor < rejects_len {
            let end = (cursor + count as u64).min(rejects_len);
            let raw: Vec<String> = conn
                .lrange(self.keys.rejects(id), cursor as isize, end as isize - 1)
                .await
                .map_err(|e| self.fail(e))?;
            let rows = raw
                .iter()
                .map(|r| {
                    serde_json::from_str(r)
                        .map_err(|_| StoreError::Corrupt(format!("reject of {id}")))
                })
                .collect::<Result<_>>()?;
            return Ok((rows, Some(end)));
        }
        // Then the jobs, a few buckets per page.
        let buckets = next_seq.unwrap_or(0) / JOBS_PER_BUCKET + 1;
        let first = cursor - rejects_len;
        if first >= buckets {
            return Ok((Vec::new(), None));
        }
        let last = (first + (count as u64).div_ceil(JOBS_PER_BUCKET).max(1)).min(buckets);
        let mut pipe = redis::pipe();
        for b in first..last {
            pipe.hgetall(self.keys.jobs_bucket(id, b));
        }
        let pages: Vec<HashMap<u32, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut rows = Vec::new();
        for (b, page) in (first..last).zip(pages) {
            let mut fields: Vec<_> = page.into_iter().collect();
            fields.sort_unstable_by_key(|(f, _)| *f);
            for (f, rec) in fields {
                let seq = u32::try_from(b * JOBS_PER_BUCKET + u64::from(f)).unwrap_or(u32::MAX);
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
                        ("failed".to_owned(), code)
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
        }
        let next = (last < buckets).then_some(rejects_len + last);
        Ok((rows, next))
    }

    async fn count_reply(&self, id: &CampaignId, phone: PhoneE164) -> Result<bool> {
        let mut conn = self.conn().await?;
        let n: u8 = self
            .scripts
            .reply
            .key(self.keys.meta(id))
            .arg(self.keys.base(id))
            .arg(DEDUPE_BUCKETS)
            .arg(phone.as_u64())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(n == 1)
    }

    async fn pause_matching(
        &self,
        phone_number_id: Option<&str>,
        template: Option<&str>,
        reason: PauseReason,
    ) -> Result<Vec<CampaignId>> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .smembers(self.keys.running())
            .await
            .map_err(|e| self.fail(e))?;
        let ids: Vec<CampaignId> = ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.meta(id))
                .arg("pnid")
                .arg("template");
        }
        let rows: Vec<(Option<String>, Option<String>)> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut paused = Vec::new();
        for (id, (pnid, tmpl)) in ids.into_iter().zip(rows) {
            let pn_ok = phone_number_id.is_none_or(|p| pnid.as_deref() == Some(p));
            let tmpl_ok = template.is_none_or(|t| tmpl.as_deref() == Some(t));
            if pn_ok && tmpl_ok {
                match self
                    .transition(&id, CampaignAction::Pause, Some(reason.clone()))
                    .await
                {
                    Ok(_) => paused.push(id),
                    // Already paused or no longer running: nothing to do.
                    Err(StoreError::IllegalTransition(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(paused)
    }

    async fn suppress(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
        why: &herald_store::Why,
    ) -> Result<()> {
        if phones.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
        let value = format!("{}|{}", why.at.as_millisecond(), why.reason);
        // Both keys carry the number's hash tag: one transaction, on a cluster too.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .sadd(self.keys.suppression(phone_number_id), &members)
            .ignore();
        let why_key = self.keys.suppression_why(phone_number_id);
        for m in &members {
            pipe.hset_nx(&why_key, m, &value).ignore();
        }
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn suppression_reasons(
        &self,
        phone_number_id: &str,
        phones: &[PhoneE164],
    ) -> Result<Vec<Option<herald_store::Why>>> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
        let (on, values): (Vec<bool>, Vec<Option<String>>) = redis::pipe()
            .cmd("SMISMEMBER")
            .arg(self.keys.suppression(phone_number_id))
            .arg(&members)
            .cmd("HMGET")
            .arg(self.keys.suppression_why(phone_number_id))
            .arg(&members)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(values
            .into_iter()
            .zip(on)
            .map(|(v, on)| {
                let v = v.filter(|_| on)?;
                let (ms, reason) = v.split_once('|')?;
                Some(herald_store::Why {
                    reason: reason.to_owned(),
                    at: Timestamp::from_millisecond(ms.parse().ok()?).ok()?,
                })
            })
            .collect())
    }

    async fn link_users(
        &self,
        phone_number_id: &str,
        links: &[(String, PhoneE164)],
    ) -> Result<u64> {
        if links.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut inv = self.scripts.link.prepare_invoke();
        inv.key(self.keys.users(phone_number_id))
            .key(self.keys.unlinked_opt_outs(phone_number_id))
            .key(self.keys.suppression(phone_number_id))
            .key(self.keys.suppression_why(phone_number_id))
            .arg(format!(
                "{}|{}",
                herald_core::unix_ms(),
                herald_store::LINKED_OPT_OUT
            ));
        for (user, phone) in links {
            inv.arg(user.as_str()).arg(phone.as_u64());
        }
        inv.invoke_async(&mut conn).await.map_err(|e| self.fail(e))
    }

    async fn user_phone(&self, phone_number_id: &str, user_id: &str) -> Result<Option<PhoneE164>> {
        let mut conn = self.conn().await?;
        let phone: Option<u64> = conn
            .hget(self.keys.users(phone_number_id), user_id)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(phone.and_then(|p| PhoneE164::from_u64(p).ok()))
    }

    async fn opt_out_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let added: u64 = conn
            .sadd(self.keys.unlinked_opt_outs(phone_number_id), user_id)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(added == 1)
    }

    async fn opt_in_user(&self, phone_number_id: &str, user_id: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let removed: u64 = conn
            .srem(self.keys.unlinked_opt_outs(phone_number_id), user_id)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(removed == 1)
    }

    async fn unsuppress(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<u64> {
        if phones.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
        let (removed, _): (u64, u64) = redis::pipe()
            .atomic()
            .srem(self.keys.suppression(phone_number_id), &members)
            .hdel(self.keys.suppression_why(phone_number_id), &members)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(removed)
    }

    async fn unlinked_opt_outs(
        &self,
        phone_number_id: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>)> {
        let mut conn = self.conn().await?;
        let key = self.keys.unlinked_opt_outs(phone_number_id);
        let count: u64 = conn.scard(&key).await.map_err(|e| self.fail(e))?;
        let mut ids: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(&key)
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        ids.sort_unstable();
        Ok((count, ids))
    }

    async fn suppressed(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let members: Vec<u64> = phones.iter().map(|p| p.as_u64()).collect();
        redis::cmd("SMISMEMBER")
            .arg(self.keys.suppression(phone_number_id))
            .arg(members)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn list_suppressed(
        &self,
        phone_number_id: &str,
        cursor: u64,
    ) -> Result<(Vec<PhoneE164>, Option<u64>)> {
        let mut conn = self.conn().await?;
        let (next, members): (u64, Vec<u64>) = redis::cmd("SSCAN")
            .arg(self.keys.suppression(phone_number_id))
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let phones = members
            .into_iter()
            .filter_map(|p| PhoneE164::from_u64(p).ok())
            .collect();
        Ok((phones, (next != 0).then_some(next)))
    }

    async fn open_window(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        at: Timestamp,
    ) -> Result<()> {
        let at_unix = at.as_second();
        let expires = at_unix + 24 * 3600;
        if expires <= herald_core::unix_ms() / 1000 {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.keys.window(phone_number_id, phone))
            .arg(at_unix)
            .arg("EXAT")
            .arg(expires)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn windows_open(&self, phone_number_id: &str, phones: &[PhoneE164]) -> Result<Vec<bool>> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for p in phones {
            pipe.exists(self.keys.window(phone_number_id, *p));
        }
        pipe.query_async(&mut conn).await.map_err(|e| self.fail(e))
    }

    async fn plan_sends(
        &self,
        phone_number_id: &str,
        pace: herald_store::Pace,
        sends: &[herald_store::SendWant],
        max: usize,
        horizon: Duration,
        token: u64,
    ) -> Result<herald_store::Plan> {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if pace.capacity == 0
            || us(pace.window) == 0
            || sends.iter().flatten().any(|(_, i)| i.is_zero())
        {
            return Err(StoreError::Invalid("a rate of 0".into()));
        }
        // Each capped campaign once, as a key; each send names its key by index.
        let mut capped: Vec<(&CampaignId, Duration)> = Vec::new();
        let mut index = Vec::with_capacity(sends.len());
        for send in sends {
            index.push(match send {
                None => 0,
                Some((id, own)) => match capped.iter().position(|(c, _)| *c == id) {
                    Some(i) => i + 2,
                    None => {
                        capped.push((id, *own));
                        capped.len() + 1
                    }
                },
            });
        }
        let mut inv = self.scripts.plan.prepare_invoke();
        inv.key(self.keys.sends(phone_number_id));
        for (id, _) in &capped {
            inv.key(self.keys.campaign_rate(phone_number_id, id));
        }
        inv.arg(pace.capacity)
            .arg(us(pace.window))
            .arg(us(pace.min_spacing()).max(1))
            .arg(us(horizon))
            .arg(max)
            .arg(format!("{token:x}"))
            .arg(capped.len());
        for (_, own) in &capped {
            inv.arg(us(*own));
        }
        for i in index {
            inv.arg(i);
        }
        let mut conn = self.conn().await?;
        let reply: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let at = |us: i64| {
            Timestamp::from_microsecond(us)
                .map_err(|_| StoreError::Corrupt(format!("limiter time {us}")))
        };
        let (now, next) = match reply.get(..2) {
            Some([now, next]) => (*now, *next),
            _ => return Err(StoreError::Corrupt("plan reply".into())),
        };
        Ok(herald_store::Plan {
            at: reply[2..]
                .iter()
                .map(|&t| if t == 0 { Ok(None) } else { at(t).map(Some) })
                .collect::<Result<_>>()?,
            now: at(now)?,
            next: if next == 0 { None } else { Some(at(next)?) },
        })
    }

    async fn move_slots(
        &self,
        phone_number_id: &str,
        pace: herald_store::Pace,
        slots: &[herald_store::SlotId],
    ) -> Result<Vec<Option<Timestamp>>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut inv = self.scripts.moved.prepare_invoke();
        inv.key(self.keys.sends(phone_number_id))
            .arg(pace.capacity)
            .arg(u64::try_from(pace.window.as_micros()).unwrap_or(u64::MAX));
        for slot in slots {
            inv.arg(slot.member());
        }
        let times: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        if times.len() != slots.len() {
            return Err(StoreError::Corrupt(format!(
                "{} window times for {} sends",
                times.len(),
                slots.len()
            )));
        }
        times
            .into_iter()
            .map(|at| match at {
                0 => Ok(None),
                at => Timestamp::from_microsecond(at)
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt(format!("window time {at}"))),
            })
            .collect()
    }

    async fn reserve_pairs(
        &self,
        phone_number_id: &str,
        sends: &[(PhoneE164, CampaignId)],
        interval: Duration,
    ) -> Result<Vec<PairReservation>> {
        let interval_ms = millis(interval);
        if sends.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut inv = self.scripts.pair.prepare_invoke();
        for (p, _) in sends {
            inv.key(self.keys.pair(phone_number_id, *p));
        }
        inv.arg(interval_ms).arg(REPLY_MEMORY_MS.max(interval_ms));
        for (_, c) in sends {
            inv.arg(c.as_str());
        }
        let answers: String = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        answers
            .split(',')
            .map(|t| match t.parse::<i64>() {
                Ok(0) => Ok(PairReservation::Ok),
                Ok(ms) => Timestamp::from_millisecond(ms)
                    .map(PairReservation::NotBefore)
                    .map_err(|_| StoreError::Corrupt(format!("pair reply {t:?}"))),
                Err(_) => Err(StoreError::Corrupt(format!("pair reply {t:?}"))),
            })
            .collect()
    }

    async fn release_pair(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
        campaign: &CampaignId,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .unpair
            .key(self.keys.pair(phone_number_id, phone))
            .arg(campaign.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn last_campaign(
        &self,
        phone_number_id: &str,
        phone: PhoneE164,
    ) -> Result<Option<CampaignId>> {
        let mut conn = self.conn().await?;
        let v: Option<String> = conn
            .get(self.keys.pair(phone_number_id, phone))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(v.and_then(|s| s.split_once(':').and_then(|(_, c)| CampaignId::new(c).ok())))
    }

    async fn append_webhook(&self, body: &[u8]) -> Result<()> {
        self.stream_append(body).await
    }

    async fn read_webhooks(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_read(consumer, count, millis(block)).await
    }

    async fn pending_webhooks(
        &self,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_pending(consumer, count).await
    }

    async fn claim_stale_webhooks(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<herald_store::WebhookEntry>> {
        self.stream_claim(consumer, millis(min_idle), count).await
    }

    async fn ack_webhooks(&self, ids: &[String]) -> Result<()> {
        self.stream_ack(ids).await
    }

    async fn dead_letter(&self, reason: &str, detail: &str, payload: &[u8]) -> Result<()> {
        self.dead_append(reason, detail, payload).await
    }

    async fn dead_letter_counts(&self) -> Result<herald_store::DeadLetterCounts> {
        self.dead_counts().await
    }

    async fn dead_letters(&self, count: usize) -> Result<Vec<herald_store::DeadLetter>> {
        self.dead_list(count).await
    }

    async fn record_quality(
        &self,
        display_phone_number: &str,
        event: &str,
        current_limit: Option<&str>,
    ) -> Result<()> {
        self.quality_record(display_phone_number, event, current_limit)
            .await
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn().await?;
        let led: u8 = self
            .scripts
            .lead
            .key(self.keys.lead(role))
            .arg(holder)
            .arg(millis(ttl).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(led == 1)
    }

    async fn quality(
        &self,
    ) -> Result<std::collections::BTreeMap<String, herald_store::QualityRecord>> {
        self.quality_all().await
    }
}

/// The next space-terminated word and what follows the space.
fn split_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = b.iter().position(|&c| c == b' ')?;
    Some((&b[..at], &b[at + 1..]))
}

fn parse_ascii<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}
