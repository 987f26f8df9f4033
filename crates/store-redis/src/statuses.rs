//! Status webhooks on Redis: message id → job lookups, applying statuses to jobs and
//! counters, and the per-number evidence of how far webhooks have caught up.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use herald_core::cost::Charge;
use herald_core::{CampaignId, DeliveryState, JobId, PhoneE164, Stats, WaMessageId, millis};
use herald_store::{Applied, Pricing, Result, StatusUpdate, StoreError};

use crate::conn::{Call, Run, Shown};
use crate::keys::{DEDUPE_BUCKETS, MESSAGE_DAYS};
use crate::{RedisStore, day_of};

impl RedisStore {
    /// The commands that record message id → job lookups in today's buckets, giving each
    /// bucket its expiry the first time this process writes to it (and, once per process,
    /// marking the day hashed lookups began if none is marked). The buckets are in many hash
    /// slots: run them with [`crate::conn::Conn::each`].
    pub(crate) fn lookups(
        &self,
        lookups: &[(&WaMessageId, &JobId)],
        only_if_new: bool,
    ) -> Vec<redis::Cmd> {
        let day = day_of(herald_core::unix_ms());
        let expire_at = (day + 1 + MESSAGE_DAYS) * 86_400;
        let mut cmds = Vec::with_capacity(lookups.len() + 1);
        if !lookups.is_empty() && !self.hashed_marked.swap(true, Ordering::Relaxed) {
            let mut mark = redis::cmd("SET");
            mark.arg(self.keys.lookups_since()).arg(day).arg("NX");
            cmds.push(mark);
        }
        let mut buckets = Vec::with_capacity(lookups.len());
        for (m, job) in lookups {
            let (key, field) = self.keys.message_lookup(day, m);
            let mut cmd = redis::cmd(if only_if_new { "HSETNX" } else { "HSET" });
            cmd.arg(Shown(key)).arg(&field[..]).arg(Shown(job));
            cmds.push(cmd);
            buckets.push(key);
        }
        if let Ok(mut seen) = self.expiring.lock() {
            if seen.len() > 4 * crate::keys::MESSAGE_BUCKETS as usize {
                seen.retain(|(d, _)| *d == day);
            }
            for key in buckets {
                if seen.insert((key.day, key.bucket)) {
                    cmds.push(redis::Cmd::expire_at(Shown(key), expire_at));
                }
            }
        }
        cmds
    }

    /// Finds the jobs of message ids: today's and yesterday's buckets first (where nearly all
    /// statuses land), then the rest of the horizon for those not found. Each pass also asks
    /// the buckets older builds wrote (the whole id), for the days they can hold: up to the
    /// day after hashed lookups began (a rollout may cross midnight). 31 days after an
    /// upgrade, a miss costs no more than before it.
    pub(crate) async fn find_lookups(&self, ids: &[&WaMessageId]) -> Result<Vec<Option<JobId>>> {
        let mut found: Vec<Option<JobId>> = vec![None; ids.len()];
        let today = day_of(herald_core::unix_ms());
        let mut conn = self.conn().await?;
        let whole_until = self.hashed_since(&mut conn).await? + 1;
        for days in [today - 1..=today, today - MESSAGE_DAYS..=today - 2] {
            let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
            if missing.is_empty() {
                break;
            }
            let mut cmds = Vec::new();
            let mut asked = Vec::new();
            for &i in &missing {
                let id = ids[i];
                for day in days.clone().rev() {
                    let (key, field) = self.keys.message_lookup(day, id);
                    cmds.push(redis::Cmd::hget(Shown(key), &field[..]));
                    asked.push(i);
                }
                for day in days.clone().rev().filter(|d| *d <= whole_until) {
                    let key = self.keys.message_lookup_whole(day, id);
                    cmds.push(redis::Cmd::hget(Shown(key), id.as_str()));
                    asked.push(i);
                }
            }
            let answers: Vec<Option<String>> = conn.each(cmds).await?;
            for (i, a) in asked.into_iter().zip(answers) {
                if found[i].is_none() {
                    found[i] = a.and_then(|s| s.parse().ok());
                }
            }
        }
        Ok(found)
    }

    /// The day hashed lookups began (`i64::MAX` while none is marked: every day may hold
    /// lookups with the whole id). Read once, then kept: it never changes.
    async fn hashed_since(&self, conn: &mut crate::conn::Conn<'_>) -> Result<i64> {
        let kept = self.hashed_since.load(Ordering::Relaxed);
        if kept != 0 {
            return Ok(kept);
        }
        let since: Option<i64> = redis::Cmd::get(self.keys.lookups_since()).run(conn).await?;
        match since {
            Some(day) => {
                self.hashed_since.store(day, Ordering::Relaxed);
                Ok(day)
            }
            None => Ok(i64::MAX - 1),
        }
    }

    /// How far a campaign's phone number's webhooks have caught up, and when a backlog last
    /// drained (ms; 0 when never).
    pub(crate) async fn evidence_of(&self, id: &CampaignId) -> Result<(i64, i64)> {
        let pnid = self.pnid_of(id).await?;
        let mut conn = self.conn().await?;
        let (caught_up, backlog): (Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg(self.keys.evidence(&pnid))
            .arg(self.keys.backlog(&pnid))
            .run(&mut conn)
            .await?;
        Ok((caught_up.unwrap_or(0), backlog.unwrap_or(0)))
    }
}

pub(crate) async fn job_for_message(
    store: &RedisStore,
    message_id: &WaMessageId,
) -> Result<Option<JobId>> {
    Ok(store.find_lookups(&[message_id]).await?.remove(0))
}

pub(crate) async fn apply_status(
    store: &RedisStore,
    updates: &[StatusUpdate],
) -> Result<Vec<Applied>> {
    let mut out = vec![Applied::Unknown; updates.len()];
    let mut conn = store.conn().await?;
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
        for (i, job) in need_lookup.iter().zip(store.find_lookups(&ids).await?) {
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
        let mut inv = Call::new(&store.scripts.status);
        inv.key(store.keys.declared(&campaign))
            .arg(store.keys.base(&campaign))
            .arg(millis(herald_store::BACKLOG_LAG))
            .arg(u8::from(group.iter().any(|(i, _)| updates[*i].replayed)));
        for (i, seq) in &group {
            let u = &updates[*i];
            let (billable, category) = match &u.pricing {
                Some(p) => (
                    p.billable.map_or("", |b| if b { "1" } else { "0" }),
                    p.category.as_deref().unwrap_or(""),
                ),
                None => ("", ""),
            };
            let charge = match u.pricing.as_ref().and_then(Pricing::charge) {
                Some(Charge::Charged(category)) => format!("c:{category}"),
                Some(Charge::Free(kind)) => format!("f:{kind}"),
                None => String::new(),
            };
            inv.arg(*seq)
                .arg(DeliveryState::from_event(u.event).to_bits())
                .arg(u.message_id.as_ref().map_or("", WaMessageId::as_str))
                .arg(u.error_code.map(|c| c.to_string()).unwrap_or_default())
                .arg(billable)
                .arg(category)
                .arg(u.timestamp.map(|t| t.to_string()).unwrap_or_default())
                .arg(charge);
        }
        let reply: Vec<redis::Value> = inv.run_for(&mut conn, &campaign).await?;
        let corrupt = || StoreError::Corrupt(format!("status reply for {campaign}"));
        let int = |v: Option<&redis::Value>| -> Result<i64> {
            v.and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                .ok_or_else(corrupt)
        };
        if int(reply.first())? == 1 {
            store.on_completed(&campaign).await?;
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
        let mut new_lookups: Vec<(&WaMessageId, JobId)> = Vec::new();
        for ((i, seq), code) in group.iter().zip(codes) {
            out[*i] = match code {
                1 | 4 => Applied::Changed,
                0 | 5 => Applied::NoChange,
                2 => Applied::Late,
                _ => Applied::Unknown,
            };
            // The job learned its message id from this status (it was in doubt, or its
            // acceptance not settled yet), or may have before a crash: make the id findable
            // too. A job settled with its id has its lookup from the settle already.
            if (code == 4 || code == 5)
                && let Some(m) = &updates[*i].message_id
            {
                new_lookups.push((m, JobId::new(campaign.clone(), *seq)));
            }
        }
        let new_lookups: Vec<(&WaMessageId, &JobId)> =
            new_lookups.iter().map(|(m, job)| (*m, job)).collect();
        conn.each::<()>(store.lookups(&new_lookups, true)).await?;
    }
    // After the statuses (a crash in between only leaves the evidence behind, which delays
    // a resend and never causes one). Its own key, in the phone number's slot.
    for (pnid, (at, backlog)) in evidence {
        let _: i64 = Call::new(&store.scripts.evidence)
            .key(store.keys.evidence(&pnid))
            .key(store.keys.backlog(&pnid))
            .arg(at)
            .arg(u8::from(backlog))
            .run(&mut conn)
            .await?;
    }
    Ok(out)
}

pub(crate) async fn stats(store: &RedisStore, id: &CampaignId) -> Result<Stats> {
    let mut conn = store.conn().await?;
    let (exists, h): (bool, HashMap<String, i64>) = redis::pipe()
        .exists(store.keys.meta(id))
        .hgetall(store.keys.stats(id))
        .run(&mut conn)
        .await?;
    if !exists {
        return Err(StoreError::NotFound(id.clone()));
    }
    Ok(herald_store::stats_from_counters(
        h.iter().map(|(k, v)| (k.as_str(), *v)),
    ))
}

pub(crate) async fn count_reply(
    store: &RedisStore,
    id: &CampaignId,
    phone: PhoneE164,
) -> Result<bool> {
    let mut conn = store.conn().await?;
    let n: u8 = Call::new(&store.scripts.reply)
        .key(store.keys.declared(id))
        .arg(store.keys.base(id))
        .arg(DEDUPE_BUCKETS)
        .arg(phone.as_u64())
        .run(&mut conn)
        .await?;
    Ok(n == 1)
}
