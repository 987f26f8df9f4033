//! Campaigns on Redis: creation, status transitions, and the indexes (`campaigns`, `running`,
//! `scheduled`, `active`) that follow a campaign's status and are repaired from it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_core::{CampaignAction, CampaignId, CampaignStatus, PauseReason, millis};
use herald_store::{
    Campaign, CampaignCursor, CampaignPage, NewCampaign, Result, RunningCampaign, Store, StoreError,
};
use jiff::Timestamp;

use crate::conn::{Call, Conn, Run, invalid};
use crate::{RedisStore, campaign_from_meta};

/// How long the running-campaign list is cached.
const RUNNING_CACHE: Duration = Duration::from_millis(500);
/// How often the indexes are checked against the campaigns themselves: each process asks
/// this often for the deployment's turn to, and one turn is taken at most every
/// [`REPAIR_TURN_MS`], however many processes ask.
const REPAIR_EVERY_MS: i64 = 30_000;
const REPAIR_TURN_MS: i64 = 25_000;

/// Campaigns per page of [`RedisStore::repair_indexes`] and [`RedisStore::active_held`].
const REPAIR_PAGE: usize = 500;

/// An active campaign as the sweeps see it ([`RedisStore::active_held`]).
#[derive(Debug)]
pub(crate) struct ActiveHeld {
    pub(crate) id: CampaignId,
    /// It holds claims (whether or not their leases have run out).
    pub(crate) leases: bool,
    /// It holds in-doubt jobs.
    pub(crate) in_doubt: bool,
    /// Its status (`None`: it does not exist, or no longer).
    pub(crate) status: Option<CampaignStatus>,
}

/// The campaign ids an index holds (what `cmd` answers), skipping any that do not parse.
async fn campaign_ids(conn: &mut Conn<'_>, cmd: &redis::Cmd) -> Result<Vec<CampaignId>> {
    let ids: Vec<String> = cmd.run(conn).await?;
    Ok(ids.iter().filter_map(|s| CampaignId::new(s).ok()).collect())
}

impl RedisStore {
    /// One `HMGET` of `fields` per campaign's meta (each in its campaign's slot).
    fn meta_fields(&self, ids: &[CampaignId], fields: &[&str]) -> Vec<redis::Cmd> {
        ids.iter()
            .map(|id| {
                let mut c = redis::cmd("HMGET");
                c.arg(self.keys.meta(id)).arg(fields);
                c
            })
            .collect()
    }

    pub(crate) fn invalidate_running(&self) {
        if let Ok(mut cache) = self.running_cache.lock() {
            *cache = None;
        }
    }

    /// Keeps the running and active indexes in step with a campaign's new status.
    pub(crate) async fn after_status(&self, id: &CampaignId, status: CampaignStatus) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut cmds = vec![if status == CampaignStatus::Running {
            redis::Cmd::sadd(self.keys.running(), id.as_str())
        } else {
            redis::Cmd::srem(self.keys.running(), id.as_str())
        }];
        if status != CampaignStatus::Scheduled {
            cmds.push(redis::Cmd::zrem(self.keys.scheduled(), id.as_str()));
        }
        conn.each::<()>(cmds).await?;
        self.invalidate_running();
        Ok(())
    }

    pub(crate) async fn status_of(&self, id: &CampaignId) -> Result<CampaignStatus> {
        let mut conn = self.conn().await?;
        let st: Option<String> = redis::Cmd::hget(self.keys.meta(id), "status")
            .run(&mut conn)
            .await?;
        let st = st.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        CampaignStatus::parse(&st)
            .ok_or_else(|| StoreError::Corrupt(format!("campaign {id}: status")))
    }

    /// Compare-and-set from `from` to `to`. `Ok(false)` when the status moved meanwhile.
    pub(crate) async fn cas(
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
            .map_err(invalid)?;
        let answer: Vec<String> = Call::new(&self.scripts.transition)
            .key(self.keys.declared(id))
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(reason.unwrap_or_default())
            .run_for(&mut conn, id)
            .await?;
        Ok(answer.first().is_some_and(|a| a == "ok"))
    }

    /// Runs the cancel script until the campaign's queue and delay set are empty.
    pub(crate) async fn cancel_unsent(&self, id: &CampaignId) -> Result<()> {
        let mut conn = self.conn().await?;
        loop {
            let left: u64 = Call::new(&self.scripts.cancel)
                .key(self.keys.declared(id))
                .arg(self.keys.base(id))
                .arg(crate::jobs::SWEEP_CHUNK)
                .run_for(&mut conn, id)
                .await?;
            if left == 0 {
                return Ok(());
            }
        }
    }

    pub(crate) async fn active_campaigns(&self) -> Result<Vec<CampaignId>> {
        let mut conn = self.conn().await?;
        campaign_ids(&mut conn, &redis::Cmd::smembers(self.keys.active())).await
    }

    /// The active campaigns, each with what the sweeps look at (read in pipelines, a page of
    /// campaigns at a time): only one holding leases is given the reclaim script, and only
    /// one holding in-doubt jobs the in-doubt one. A running campaign waiting for its send
    /// window or the messaging limit holds neither, and costs a sweep three reads.
    pub(crate) async fn active_held(&self) -> Result<Vec<ActiveHeld>> {
        let ids = self.active_campaigns().await?;
        let mut conn = self.conn().await?;
        let mut out = Vec::with_capacity(ids.len());
        for page in ids.chunks(REPAIR_PAGE) {
            let cards: Vec<u64> = conn
                .each(
                    page.iter()
                        .flat_map(|id| {
                            let (leases, doubts) = self.keys.held(id);
                            [redis::Cmd::zcard(leases), redis::Cmd::zcard(doubts)]
                        })
                        .collect(),
                )
                .await?;
            let statuses = self.statuses_now(&mut conn, page).await?;
            for ((id, held), status) in page.iter().zip(cards.chunks(2)).zip(statuses) {
                out.push(ActiveHeld {
                    id: id.clone(),
                    leases: held.first().is_some_and(|n| *n > 0),
                    in_doubt: held.get(1).is_some_and(|n| *n > 0),
                    status,
                });
            }
        }
        Ok(out)
    }

    /// A campaign's jobs in flight and in doubt (its counters).
    async fn held(&self, conn: &mut Conn<'_>, id: &CampaignId) -> Result<(i64, i64)> {
        let (in_flight, in_doubt): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.keys.stats(id))
            .arg("in_flight")
            .arg("in_doubt")
            .run(conn)
            .await?;
        Ok((in_flight.unwrap_or(0), in_doubt.unwrap_or(0)))
    }

    /// Drops a final campaign from the active index once nothing of it is in flight or in
    /// doubt.
    pub(crate) async fn retire_if_idle(&self, id: &CampaignId) -> Result<()> {
        let status = match self.status_of(id).await {
            Ok(s) => s,
            // An index entry whose campaign was never written (its creator died in between).
            Err(StoreError::NotFound(_)) => {
                let mut conn = self.conn().await?;
                return redis::Cmd::srem(self.keys.active(), id.as_str())
                    .run::<()>(&mut conn)
                    .await;
            }
            Err(e) => return Err(e),
        };
        if !status.is_final() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let (in_flight, in_doubt) = self.held(&mut conn, id).await?;
        if in_flight <= 0 && in_doubt <= 0 {
            let _: () = redis::Cmd::srem(self.keys.active(), id.as_str())
                .run(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// About `limit` campaign ids below `from` in the index, newest first, and the cursor of
    /// the next page ([`campaigns_from`]).
    async fn index_from(
        &self,
        conn: &mut Conn<'_>,
        from: Option<CampaignCursor>,
        limit: usize,
    ) -> Result<(Vec<CampaignId>, Option<CampaignCursor>)> {
        let limit = limit.max(1);
        let by_score = |max: &str, min: &str| {
            let mut c = redis::cmd("ZRANGE");
            c.arg(self.keys.campaigns())
                .arg(max)
                .arg(min)
                .arg("BYSCORE")
                .arg("REV");
            c
        };
        let below = from.map_or_else(|| "+inf".to_owned(), |c| format!("({}", c.0));
        let mut page: Vec<(String, f64)> = by_score(&below, "-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .run(conn)
            .await?;
        // Scores are whole numbers below 2^53, exact as doubles.
        let next = match page.last() {
            Some(&(_, last)) if page.len() >= limit => Some(last),
            _ => None,
        };
        if let Some(last) = next {
            let at = format!("{last:.0}");
            let ties: Vec<(String, f64)> = by_score(&at, &at).arg("WITHSCORES").run(conn).await?;
            page.retain(|&(_, s)| s != last);
            page.extend(ties);
        }
        let ids = page
            .iter()
            .filter_map(|(id, _)| CampaignId::new(id).ok())
            .collect();
        Ok((ids, next.map(|s| CampaignCursor(s as u64))))
    }

    /// Brings every index in line with the campaigns' own records, which are the truth: a
    /// transition writes the campaign's status first and its indexes after (they live in other
    /// hash slots, so no script can do both), and a crash in between leaves an index behind.
    /// Rebuilds `running`, puts scheduled campaigns (back) in `scheduled` at their time, puts
    /// running and paused campaigns, and ended ones still holding jobs, (back) in `active`
    /// (drafts and scheduled campaigns hold none), and finishes the draining of a
    /// cancelled campaign that a failed cancel left with pending jobs. Runs every 30 s (from
    /// [`Store::running_campaigns`]); safe on any number of processes at once.
    pub async fn repair_indexes(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        // A page of the campaigns at a time (each two reads), so that its work is bounded
        // however many campaigns are kept.
        let mut running = HashSet::new();
        let mut cancelled_with_pending = Vec::new();
        let mut from = None;
        loop {
            let (ids, next) = self.index_from(&mut conn, from, REPAIR_PAGE).await?;
            self.repair_page(&mut conn, &ids, &mut running, &mut cancelled_with_pending)
                .await?;
            match next {
                Some(_) => from = next,
                None => break,
            }
        }
        // The running index gets what is running and loses what is not; each is one command
        // on its key (the indexes are in different slots: no transaction spans them). A
        // campaign started while the pages were read is running by now: what looks stale is
        // read again before it goes.
        let listed = campaign_ids(&mut conn, &redis::Cmd::smembers(self.keys.running())).await?;
        let unseen: Vec<CampaignId> = listed
            .into_iter()
            .filter(|id| !running.contains(id))
            .collect();
        let mut fix = Vec::new();
        let now = self.statuses_now(&mut conn, &unseen).await?;
        let stale: Vec<&str> = unseen
            .iter()
            .zip(&now)
            .filter(|(_, st)| **st != Some(CampaignStatus::Running))
            .map(|(id, _)| id.as_str())
            .collect();
        if !stale.is_empty() {
            fix.push(redis::Cmd::srem(self.keys.running(), &stale));
        }
        if !running.is_empty() {
            let ids: Vec<&str> = running.iter().map(CampaignId::as_str).collect();
            fix.push(redis::Cmd::sadd(self.keys.running(), &ids));
        }
        conn.each::<()>(fix).await?;
        self.invalidate_running();
        for id in cancelled_with_pending {
            tracing::warn!(campaign = %id, "finishing a cancel that was cut short");
            self.cancel_unsent(&id).await?;
        }
        Ok(())
    }

    /// Whether this process repairs the indexes now: the first to ask in a turn (25 s) does,
    /// so that the deployment reads every campaign about twice a minute however many workers
    /// it runs, not twice a minute per worker. A Redis that refuses the write (full) gives no
    /// turn: the repair's own writes would be refused too.
    pub async fn repair_turn(&self) -> bool {
        let taken: Result<Option<String>> = async {
            let mut conn = self.conn().await?;
            redis::cmd("SET")
                .arg(self.keys.repair_turn())
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(REPAIR_TURN_MS)
                .run(&mut conn)
                .await
        }
        .await;
        match taken {
            Ok(ok) => ok.is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "no turn to repair the indexes");
                false
            }
        }
    }

    /// [`Self::repair_indexes`] for the campaigns `ids`: mends their `scheduled` and `active`
    /// entries (a draft or scheduled campaign leaves `active`), and adds those running to
    /// `running` and those cancelled with pending jobs to `cancelled_with_pending`.
    async fn repair_page(
        &self,
        conn: &mut Conn<'_>,
        ids: &[CampaignId],
        running: &mut HashSet<CampaignId>,
        cancelled_with_pending: &mut Vec<CampaignId>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmds = Vec::with_capacity(2 * ids.len());
        for id in ids {
            let mut meta = redis::cmd("HMGET");
            meta.arg(self.keys.meta(id))
                .arg("status")
                .arg("schedule_ms");
            let mut stats = redis::cmd("HMGET");
            stats
                .arg(self.keys.stats(id))
                .arg("pending")
                .arg("in_flight")
                .arg("in_doubt");
            cmds.extend([meta, stats]);
        }
        let rows: Vec<Vec<Option<String>>> = conn.each(cmds).await?;
        let mut fix = Vec::new();
        let mut unstarted = Vec::new();
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
                CampaignStatus::Running => {
                    running.insert(id.clone());
                }
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
                    let mut add = redis::cmd("ZADD");
                    add.arg(self.keys.scheduled())
                        .arg("NX")
                        .arg(at)
                        .arg(id.as_str());
                    fix.push(add);
                }
                CampaignStatus::Cancelled if pending > 0 => cancelled_with_pending.push(id.clone()),
                _ => {}
            }
            if status != CampaignStatus::Scheduled {
                fix.push(redis::Cmd::zrem(self.keys.scheduled(), id.as_str()));
            }
            if matches!(status, CampaignStatus::Running | CampaignStatus::Paused) || held > 0 {
                fix.push(redis::Cmd::sadd(self.keys.active(), id.as_str()));
            } else if matches!(status, CampaignStatus::Draft | CampaignStatus::Scheduled) {
                unstarted.push(id);
            }
        }
        conn.each::<()>(fix).await?;
        // A draft or scheduled campaign holds nothing to sweep: one in the active index (an
        // older build put every campaign there at creation) leaves it, its status read again
        // first (it may have started meanwhile).
        let members: Vec<bool> = if unstarted.is_empty() {
            Vec::new()
        } else {
            redis::cmd("SMISMEMBER")
                .arg(self.keys.active())
                .arg(unstarted.iter().map(|id| id.as_str()).collect::<Vec<_>>())
                .run(conn)
                .await?
        };
        let listed: Vec<CampaignId> = unstarted
            .into_iter()
            .zip(members)
            .filter(|(_, m)| *m)
            .map(|(id, _)| id.clone())
            .collect();
        let now = self.statuses_now(conn, &listed).await?;
        let idle: Vec<&str> = listed
            .iter()
            .zip(&now)
            .filter(|(_, st)| matches!(st, Some(CampaignStatus::Draft | CampaignStatus::Scheduled)))
            .map(|(id, _)| id.as_str())
            .collect();
        if !idle.is_empty() {
            redis::Cmd::srem(self.keys.active(), &idle)
                .run::<()>(conn)
                .await?;
        }
        Ok(())
    }

    /// The campaigns' statuses as they are now (`None` for one that is gone).
    async fn statuses_now(
        &self,
        conn: &mut Conn<'_>,
        ids: &[CampaignId],
    ) -> Result<Vec<Option<CampaignStatus>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Vec<Option<String>>> = conn.each(self.meta_fields(ids, &["status"])).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .next()
                    .flatten()
                    .and_then(|s| CampaignStatus::parse(&s))
            })
            .collect())
    }

    /// A campaign's phone number id (it never changes, so it is cached).
    pub(crate) async fn pnid_of(&self, id: &CampaignId) -> Result<String> {
        if let Some(p) = self.pnids.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(p);
        }
        let mut conn = self.conn().await?;
        let pnid: Option<String> = redis::Cmd::hget(self.keys.meta(id), "pnid")
            .run(&mut conn)
            .await?;
        let pnid = pnid.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        if let Ok(mut m) = self.pnids.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.clone(), pnid.clone());
        }
        Ok(pnid)
    }

    pub(crate) async fn upload_hold(
        &self,
        id: &CampaignId,
        upload: u64,
        hold_ms: u64,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: u8 = Call::new(&self.scripts.upload)
            .key(self.keys.declared(id))
            .arg(self.keys.base(id))
            .arg(upload.to_string())
            .arg(hold_ms)
            .run_for(&mut conn, id)
            .await?;
        Ok(())
    }

    pub(crate) async fn on_completed(&self, id: &CampaignId) -> Result<()> {
        tracing::info!(campaign = %id, "campaign completed");
        self.after_status(id, CampaignStatus::Completed).await?;
        self.retire_if_idle(id).await
    }
}

pub(crate) async fn create_campaign(store: &RedisStore, c: NewCampaign) -> Result<Campaign> {
    c.spec.validate().map_err(invalid)?;
    let now = herald_core::unix_ms();
    let id = CampaignId::generate(u64::try_from(now).unwrap_or(0), rand::random::<u32>());
    let spec_json = serde_json::to_string(&c.spec).map_err(invalid)?;
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
    let mut conn = store.conn().await?;
    // Listed newest first, in creation order even within one millisecond: the score is
    // the creation ms with a sequence number below it.
    let seq: i64 = redis::Cmd::incr(store.keys.campaign_seq(), 1)
        .run(&mut conn)
        .await?;
    let score = now * 1024 + seq.rem_euclid(1024);
    // The index first: should this process die in between, an index entry without a
    // campaign is skipped by every reader; a campaign missing from its index would not be.
    // (It joins the active index when it first runs: a draft holds nothing to sweep.)
    redis::Cmd::zadd(store.keys.campaigns(), id.as_str(), score)
        .run::<()>(&mut conn)
        .await?;
    redis::Cmd::hset_multiple(store.keys.meta(&id), &fields)
        .run::<()>(&mut conn)
        .await?;
    store.campaign(&id).await
}

pub(crate) async fn campaign(store: &RedisStore, id: &CampaignId) -> Result<Campaign> {
    let mut conn = store.conn().await?;
    let meta: HashMap<String, String> = redis::Cmd::hgetall(store.keys.meta(id))
        .run(&mut conn)
        .await?;
    if meta.is_empty() {
        return Err(StoreError::NotFound(id.clone()));
    }
    campaign_from_meta(id, &meta)
}

pub(crate) async fn update_spec(
    store: &RedisStore,
    id: &CampaignId,
    spec: &herald_core::CampaignSpec,
) -> Result<()> {
    let invalid = |e: String| StoreError::Invalid(format!("spec: {e}"));
    spec.validate().map_err(|e| invalid(e.to_string()))?;
    let json = serde_json::to_string(spec).map_err(|e| invalid(e.to_string()))?;
    let mut conn = store.conn().await?;
    let mut inv = Call::new(&store.scripts.respec);
    inv.key(store.keys.declared(id)).arg(json);
    let _: i64 = inv.run_for(&mut conn, id).await?;
    Ok(())
}

/// See [`herald_store::Store::campaigns_from`]: the cursor is a score of the index (the
/// creation ms · 1024 + a sequence number). A full page takes in every campaign sharing its
/// last score, so that the next, read from below that score, misses none (a tie needs 1,024
/// campaigns created within one millisecond, or a clock set back).
pub(crate) async fn campaigns_from(
    store: &RedisStore,
    from: Option<CampaignCursor>,
    limit: usize,
) -> Result<CampaignPage> {
    let mut conn = store.conn().await?;
    let (ids, next) = store.index_from(&mut conn, from, limit).await?;
    Ok(CampaignPage {
        campaigns: campaigns_of(store, &mut conn, &ids).await?,
        next,
    })
}

/// See [`herald_store::Store::list_campaigns_page`]: the index's ranks from the one after
/// `before`'s (newest first).
pub(crate) async fn list_campaigns_page(
    store: &RedisStore,
    before: Option<&CampaignId>,
    limit: usize,
) -> Result<Vec<Campaign>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let from = match before {
        None => 0,
        Some(id) => {
            let rank: Option<isize> = redis::cmd("ZREVRANK")
                .arg(store.keys.campaigns())
                .arg(id.as_str())
                .run(&mut conn)
                .await?;
            rank.ok_or_else(|| herald_store::no_page_from(id))? + 1
        }
    };
    let to = from.saturating_add(isize::try_from(limit).unwrap_or(isize::MAX) - 1);
    let ids = campaign_ids(
        &mut conn,
        &redis::Cmd::zrevrange(store.keys.campaigns(), from, to),
    )
    .await?;
    campaigns_of(store, &mut conn, &ids).await
}

/// The campaigns `ids` name, in that order (those deleted meanwhile left out).
async fn campaigns_of(
    store: &RedisStore,
    conn: &mut Conn<'_>,
    ids: &[CampaignId],
) -> Result<Vec<Campaign>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let metas: Vec<HashMap<String, String>> = conn
        .each(
            ids.iter()
                .map(|id| redis::Cmd::hgetall(store.keys.meta(id)))
                .collect(),
        )
        .await?;
    ids.iter()
        .zip(&metas)
        .filter(|(_, m)| !m.is_empty())
        .map(|(id, m)| campaign_from_meta(id, m))
        .collect()
}

/// Keys per `UNLINK` when a campaign is deleted: each call frees a bounded share of the
/// campaign (well under a millisecond of Redis's time; 1,000 keys took 1.5–3.4 ms), so the
/// other campaigns' sends are not held up behind it.
const DELETE_CHUNK: usize = 250;

/// Deletes an ended campaign (see [`Store::delete_campaign`]). Its keys are named, not
/// scanned for: the job record buckets up to its last seq, every dedupe bucket, what its
/// leases left, and its fixed keys. They go a chunk at a time, the meta (the campaign itself)
/// after the rest and the index entries last: should this process die in between, the
/// campaign is still there, and deleting it again finishes the work; an index entry left
/// without a campaign is skipped by every reader, and deleting again removes it.
pub(crate) async fn delete_campaign(store: &RedisStore, id: &CampaignId) -> Result<()> {
    let status = match store.status_of(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => {
            drop_index_entries(store, id).await?;
            return Err(StoreError::NotFound(id.clone()));
        }
        Err(e) => return Err(e),
    };
    let mut conn = store.conn().await?;
    let (in_flight, in_doubt) = store.held(&mut conn, id).await?;
    herald_store::check_deletable(id, status, in_flight, in_doubt)?;
    let next_seq: Option<u64> = redis::Cmd::hget(store.keys.meta(id), "next_seq")
        .run(&mut conn)
        .await?;
    // The fixed keys, the meta (the first) last of all.
    let mut fixed = store.keys.declared(id);
    let meta = fixed.remove(0);
    let leases = format!("{}:lease", store.keys.base(id));
    let tokens: Vec<String> = redis::Cmd::zrange(leases, 0, -1).run(&mut conn).await?;
    let buckets = next_seq.unwrap_or(0) / crate::keys::JOBS_PER_BUCKET + 1;
    let mut keys: Vec<String> = (0..buckets)
        .map(|b| store.keys.jobs_bucket(id, b))
        .collect();
    keys.extend((0..crate::keys::DEDUPE_BUCKETS).map(|b| store.keys.dedupe_bucket(id, b)));
    for t in &tokens {
        let (held, fresh) = store.keys.claim(id, t);
        keys.extend([held, fresh]);
    }
    keys.extend(fixed);
    for chunk in keys.chunks(DELETE_CHUNK) {
        redis::cmd("UNLINK").arg(chunk).run::<()>(&mut conn).await?;
    }
    redis::Cmd::unlink(meta).run::<()>(&mut conn).await?;
    drop_index_entries(store, id).await
}

/// Takes a campaign out of every index.
async fn drop_index_entries(store: &RedisStore, id: &CampaignId) -> Result<()> {
    let mut conn = store.conn().await?;
    conn.each::<()>(vec![
        redis::Cmd::zrem(store.keys.campaigns(), id.as_str()),
        redis::Cmd::srem(store.keys.running(), id.as_str()),
        redis::Cmd::srem(store.keys.active(), id.as_str()),
        redis::Cmd::zrem(store.keys.scheduled(), id.as_str()),
    ])
    .await?;
    store.invalidate_running();
    Ok(())
}

pub(crate) async fn transition(
    store: &RedisStore,
    id: &CampaignId,
    action: CampaignAction,
    reason: Option<PauseReason>,
) -> Result<CampaignStatus> {
    for _ in 0..8 {
        let from = store.status_of(id).await?;
        if from == CampaignStatus::Cancelled && action == CampaignAction::Cancel {
            // Cancelling again finishes what a cancel left (it is idempotent).
            store.cancel_unsent(id).await?;
            store.retire_if_idle(id).await?;
            return Ok(from);
        }
        let to = from.apply(action)?;
        let reason = match (to, &reason) {
            (CampaignStatus::Paused, None) => Some(PauseReason::operator()),
            (_, r) => r.clone(),
        };
        if to == CampaignStatus::Running {
            // The active index before the status, as at creation: from its first run the
            // campaign's leases and in-doubt jobs are swept (a draft has none).
            let mut conn = store.conn().await?;
            redis::Cmd::sadd(store.keys.active(), id.as_str())
                .run::<()>(&mut conn)
                .await?;
        }
        if !store.cas(id, from, to, reason.as_ref()).await? {
            continue;
        }
        store.after_status(id, to).await?;
        match to {
            CampaignStatus::Scheduled => {
                let c = store.campaign(id).await?;
                let at = c
                    .spec
                    .schedule_at
                    .map_or(herald_core::unix_ms(), |t| t.as_millisecond());
                let mut conn = store.conn().await?;
                let _: () = redis::Cmd::zadd(store.keys.scheduled(), id.as_str(), at)
                    .run(&mut conn)
                    .await?;
            }
            CampaignStatus::Cancelled => {
                store.cancel_unsent(id).await?;
                store.retire_if_idle(id).await?;
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

pub(crate) async fn running_campaigns(store: &RedisStore) -> Result<Vec<RunningCampaign>> {
    if let Ok(cache) = store.running_cache.lock()
        && let Some((at, list)) = cache.as_ref()
        && at.elapsed() < RUNNING_CACHE
    {
        return Ok(list.clone());
    }
    let now = herald_core::unix_ms();
    if now - store.repaired_ms.load(Ordering::Relaxed) > REPAIR_EVERY_MS {
        store.repaired_ms.store(now, Ordering::Relaxed);
        if store.repair_turn().await {
            store.repair_indexes().await?;
        }
    }
    let mut conn = store.conn().await?;
    let ids = campaign_ids(&mut conn, &redis::Cmd::smembers(store.keys.running())).await?;
    if ids.is_empty() {
        if let Ok(mut cache) = store.running_cache.lock() {
            *cache = Some((Instant::now(), Vec::new()));
        }
        return Ok(Vec::new());
    }
    let rows: Vec<(Option<String>, Option<String>, Option<u32>)> = conn
        .each(store.meta_fields(&ids, &["status", "pnid", "mps"]))
        .await?;
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
    if let Ok(mut cache) = store.running_cache.lock() {
        *cache = Some((Instant::now(), list.clone()));
    }
    Ok(list)
}

pub(crate) async fn due_scheduled(store: &RedisStore, now: Timestamp) -> Result<Vec<CampaignId>> {
    let mut conn = store.conn().await?;
    let due = redis::Cmd::zrangebyscore(store.keys.scheduled(), "-inf", now.as_millisecond());
    campaign_ids(&mut conn, &due).await
}

pub(crate) async fn hold_upload(
    store: &RedisStore,
    id: &CampaignId,
    upload: u64,
    hold: Duration,
) -> Result<()> {
    store.upload_hold(id, upload, millis(hold).max(1)).await
}

pub(crate) async fn release_upload(store: &RedisStore, id: &CampaignId, upload: u64) -> Result<()> {
    store.upload_hold(id, upload, 0).await
}

pub(crate) async fn pause_matching(
    store: &RedisStore,
    phone_number_id: Option<&str>,
    template: Option<&str>,
    reason: PauseReason,
) -> Result<Vec<CampaignId>> {
    let mut conn = store.conn().await?;
    let ids = campaign_ids(&mut conn, &redis::Cmd::smembers(store.keys.running())).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(Option<String>, Option<String>)> = conn
        .each(store.meta_fields(&ids, &["pnid", "template"]))
        .await?;
    let mut paused = Vec::new();
    for (id, (pnid, tmpl)) in ids.into_iter().zip(rows) {
        let pn_ok = phone_number_id.is_none_or(|p| pnid.as_deref() == Some(p));
        let tmpl_ok = template.is_none_or(|t| tmpl.as_deref() == Some(t));
        if pn_ok && tmpl_ok {
            match store
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

pub(crate) async fn lead(
    store: &RedisStore,
    role: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool> {
    let mut conn = store.conn().await?;
    let led: u8 = Call::new(&store.scripts.lead)
        .key(store.keys.lead(role))
        .arg(holder)
        .arg(millis(ttl).max(1))
        .run(&mut conn)
        .await?;
    Ok(led == 1)
}
