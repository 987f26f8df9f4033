//! Pacing on Redis: the phone number's rolling send window (`plan.lua`, `move.lua`) and the
//! per-recipient pair spacing (`pair.lua`, `unpair.lua`).

use std::time::Duration;

use herald_core::{CampaignId, PhoneE164, millis};
use herald_store::{PairReservation, Result, StoreError};
use jiff::Timestamp;

use crate::RedisStore;
use crate::conn::{Call, Run, Shown};

/// How long a pair key remembers the campaign, for reply attribution.
const REPLY_MEMORY_MS: u64 = 72 * 3600 * 1000;

/// How a phone number's pair reservations are made: the store's clock as its plans read it
/// (native reservations are written with it), behind Sentinels the master generation it was
/// read in (a reading of the master before a failover says nothing of the new master's
/// clock), and how many more calls go straight to the script (see [`reserve_pairs`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PairPath {
    clock: herald_store::StoreClock,
    generation: Option<u64>,
    by_script: u32,
}

impl RedisStore {
    /// Keeps a reading of the store's clock for `phone_number_id`, made by a call sent at
    /// `asked` in master `generation` (read before it) and answered at `answered`. A reading
    /// of a master that the Sentinels replaced meanwhile is not kept, and one of a new master
    /// replaces what was kept of the old one.
    pub(crate) fn keep_clock(
        &self,
        phone_number_id: &str,
        generation: Option<u64>,
        asked: tokio::time::Instant,
        answered: tokio::time::Instant,
        now: Timestamp,
    ) {
        if self.masters_followed() != generation {
            return;
        }
        if let Ok(mut pairs) = self.pairs.lock() {
            let path = pairs.entry(phone_number_id.to_owned()).or_default();
            if path.generation != generation {
                path.clock = herald_store::StoreClock::default();
                path.generation = generation;
            }
            path.clock.sample(asked, answered, now);
        }
    }

    /// The store's time now for `phone_number_id`, when a kept reading of the current master
    /// knows it to within [`CLOCK_PRECISION`]; with `take_turn`, only if this call is not one
    /// of those that go straight to the script (which it then counts).
    pub(crate) fn pair_time(&self, phone_number_id: &str, take_turn: bool) -> Option<Timestamp> {
        let generation = self.masters_followed();
        let mut pairs = self.pairs.lock().ok()?;
        let path = pairs.get_mut(phone_number_id)?;
        if path.generation != generation {
            return None;
        }
        let now = path.clock.now_within(CLOCK_PRECISION)?;
        if take_turn && path.by_script > 0 {
            path.by_script -= 1;
            return None;
        }
        Some(now)
    }
}

pub(crate) async fn plan_sends(
    store: &RedisStore,
    phone_number_id: &str,
    pace: herald_store::Pace,
    sends: &[herald_store::SendWant],
    max: usize,
    span: std::ops::Range<Duration>,
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
                Some(i) => i + 3,
                None => {
                    capped.push((id, *own));
                    capped.len() + 2
                }
            },
        });
    }
    let mut inv = Call::new(&store.scripts.plan);
    inv.key(store.keys.sends(phone_number_id))
        .key(store.keys.sends_last(phone_number_id));
    for (id, _) in &capped {
        inv.key(store.keys.campaign_rate(phone_number_id, id));
    }
    inv.arg(pace.capacity)
        .arg(us(pace.window))
        .arg(us(pace.min_spacing()).max(1))
        .arg(us(pace.slack))
        .arg(us(pace.room_slack))
        .arg(us(span.start))
        .arg(us(span.end))
        .arg(max)
        .arg(format!("{token:x}"))
        .arg(capped.len());
    for (_, own) in &capped {
        inv.arg(us(*own));
    }
    for i in index {
        inv.arg(i);
    }
    let mut conn = store.conn().await?;
    let generation = store.masters_followed();
    let asked = tokio::time::Instant::now();
    let reply: Vec<i64> = inv.run(&mut conn).await?;
    let answered = tokio::time::Instant::now();
    let at = |us: i64| {
        Timestamp::from_microsecond(us)
            .map_err(|_| StoreError::Corrupt(format!("limiter time {us}")))
    };
    let (now, next) = match reply.get(..2) {
        Some([now, next]) => (*now, *next),
        _ => return Err(StoreError::Corrupt("plan reply".into())),
    };
    let times = &reply[2..];
    if times.len() != 2 * sends.len() {
        return Err(StoreError::Corrupt(format!(
            "{} plan times for {} sends",
            times.len(),
            sends.len()
        )));
    }
    let slot = |pair: &[i64]| match *pair {
        [0, _] | [_, 0] => Ok(None),
        [from, until] => Ok(Some((at(from)?, at(until)?))),
        _ => Err(StoreError::Corrupt("plan reply".into())),
    };
    let slots: Vec<Option<(Timestamp, Timestamp)>> =
        times.chunks(2).map(slot).collect::<Result<_>>()?;
    let now = at(now)?;
    store.keep_clock(phone_number_id, generation, asked, answered, now);
    Ok(herald_store::Plan {
        at: slots.iter().map(|s| s.map(|(from, _)| from)).collect(),
        until: slots.iter().map(|s| s.map(|(_, until)| until)).collect(),
        now,
        next: if next == 0 { None } else { Some(at(next)?) },
    })
}

pub(crate) async fn move_slots(
    store: &RedisStore,
    phone_number_id: &str,
    pace: herald_store::Pace,
    slots: &[herald_store::SlotId],
) -> Result<Vec<Option<Timestamp>>> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let mut inv = Call::new(&store.scripts.moved);
    inv.key(store.keys.sends(phone_number_id))
        .key(store.keys.sends_last(phone_number_id))
        .arg(pace.capacity)
        .arg(us(pace.window))
        .arg(us(pace.slack))
        .arg(us(pace.room_slack));
    for slot in slots {
        inv.arg(slot.member());
    }
    let times: Vec<i64> = inv.run(&mut conn).await?;
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

/// One `ZADD … XX`: only sends still logged.
pub(crate) async fn record_departures(
    store: &RedisStore,
    phone_number_id: &str,
    departures: &[(herald_store::SlotId, Timestamp)],
) -> Result<()> {
    if departures.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(store.keys.sends(phone_number_id)).arg("XX");
    for (slot, at) in departures {
        cmd.arg(at.as_microsecond()).arg(slot.member());
    }
    let mut conn = store.conn().await?;
    let _: i64 = cmd.run(&mut conn).await?;
    Ok(())
}

/// Reserves pair spacing. Almost every send of a campaign goes to a recipient with no
/// reservation standing, and for those a native `SET … NX PX … GET` per recipient does what
/// `pair.lua` does at about half of Redis's CPU: it writes the reservation where there is
/// none, and answers what is there where there is one, writing nothing. Only a recipient whose
/// key holds a reservation that has run out (a send more than the interval ago, remembered
/// for reply attribution, or one given back) goes through the script, which replaces it
/// atomically. The reservation's time is the store's, from the clock this process keeps of
/// the Redis that plans this number's sends (its plans read it); until a plan has read it
/// precisely enough, every reservation goes through the script. So do the next
/// [`SCRIPT_CALLS`] calls for the number after one that found most of its recipients' keys
/// holding reservations that have run out (a follow-up campaign's, whose recipients were
/// messaged days before): the native commands would only hand them on to the script.
pub(crate) async fn reserve_pairs(
    store: &RedisStore,
    phone_number_id: &str,
    sends: &[(PhoneE164, CampaignId)],
    interval: Duration,
) -> Result<Vec<PairReservation>> {
    if sends.is_empty() {
        return Ok(Vec::new());
    }
    let interval_ms = millis(interval);
    let memory_ms = REPLY_MEMORY_MS.max(interval_ms);
    // Behind Sentinels, only a reading of the current master: after a failover, the script
    // until a plan has read the new one.
    let now = store.pair_time(phone_number_id, true);
    let mut conn = store.conn().await?;
    let Some(now) = now else {
        return reserve_by_script(store, &mut conn, phone_number_id, sends, interval_ms).await;
    };
    let now_ms = now.as_millisecond();
    let not_before = now_ms.saturating_add(i64::try_from(interval_ms).unwrap_or(i64::MAX));
    let mut pipe = redis::pipe();
    for (p, c) in sends {
        pipe.cmd("SET")
            .arg(Shown(store.keys.pair(phone_number_id, *p)))
            .arg(format!("{not_before}:{c}"))
            .arg("NX")
            .arg("PX")
            .arg(memory_ms)
            .arg("GET");
    }
    let found: Vec<Option<String>> = pipe.run(&mut conn).await?;
    if found.len() != sends.len() {
        return Err(StoreError::Corrupt(format!(
            "{} pair answers for {} sends",
            found.len(),
            sends.len()
        )));
    }
    let mut out = Vec::with_capacity(sends.len());
    // Those whose key held a reservation that has run out: the script decides them.
    let mut lapsed = Vec::new();
    for (i, v) in found.iter().enumerate() {
        let standing = v.as_deref().map(|v| {
            v.split_once(':')
                .and_then(|(ms, _)| ms.parse::<i64>().ok())
                .filter(|&ms| ms > now_ms)
        });
        out.push(match standing {
            None => PairReservation::Ok,
            Some(Some(ms)) => PairReservation::NotBefore(not_before_at(ms)?),
            Some(None) => {
                lapsed.push(i);
                PairReservation::Ok
            }
        });
    }
    if lapsed.len() * 2 > sends.len()
        && let Ok(mut pairs) = store.pairs.lock()
        && let Some(path) = pairs.get_mut(phone_number_id)
    {
        path.by_script = SCRIPT_CALLS;
    }
    if !lapsed.is_empty() {
        let again: Vec<(PhoneE164, CampaignId)> =
            lapsed.iter().map(|&i| sends[i].clone()).collect();
        let answers =
            reserve_by_script(store, &mut conn, phone_number_id, &again, interval_ms).await?;
        for (i, a) in lapsed.into_iter().zip(answers) {
            out[i] = a;
        }
    }
    Ok(out)
}

/// Calls that go straight to the script after one whose recipients mostly held reservations
/// that had run out; the next is native again, to see whether they still do.
pub(crate) const SCRIPT_CALLS: u32 = 16;

/// How precisely the store's time must be known to write pair reservations without the
/// script: a small part of a pair interval of seconds (and of its slack).
const CLOCK_PRECISION: Duration = Duration::from_millis(100);

fn not_before_at(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|_| StoreError::Corrupt(format!("pair time {ms}")))
}

/// Reserves pair spacing in `pair.lua`, on the store's own clock.
async fn reserve_by_script(
    store: &RedisStore,
    conn: &mut crate::conn::Conn<'_>,
    phone_number_id: &str,
    sends: &[(PhoneE164, CampaignId)],
    interval_ms: u64,
) -> Result<Vec<PairReservation>> {
    let mut inv = Call::new(&store.scripts.pair);
    for (p, _) in sends {
        inv.key(Shown(store.keys.pair(phone_number_id, *p)));
    }
    inv.arg(interval_ms).arg(REPLY_MEMORY_MS.max(interval_ms));
    for (_, c) in sends {
        inv.arg(c.as_str());
    }
    let answers: String = inv.run(conn).await?;
    let answers: Vec<PairReservation> = answers
        .split(',')
        .map(|t| match t.parse::<i64>() {
            Ok(0) => Ok(PairReservation::Ok),
            Ok(ms) => not_before_at(ms).map(PairReservation::NotBefore),
            Err(_) => Err(StoreError::Corrupt(format!("pair reply {t:?}"))),
        })
        .collect::<Result<_>>()?;
    if answers.len() != sends.len() {
        return Err(StoreError::Corrupt(format!(
            "{} pair answers for {} sends",
            answers.len(),
            sends.len()
        )));
    }
    Ok(answers)
}

pub(crate) async fn release_pair(
    store: &RedisStore,
    phone_number_id: &str,
    phone: PhoneE164,
    campaign: &CampaignId,
) -> Result<()> {
    let mut conn = store.conn().await?;
    let _: i64 = Call::new(&store.scripts.unpair)
        .key(Shown(store.keys.pair(phone_number_id, phone)))
        .arg(campaign.as_str())
        .run(&mut conn)
        .await?;
    Ok(())
}

pub(crate) async fn last_campaign(
    store: &RedisStore,
    phone_number_id: &str,
    phone: PhoneE164,
) -> Result<Option<CampaignId>> {
    let mut conn = store.conn().await?;
    let v: Option<String> = redis::Cmd::get(Shown(store.keys.pair(phone_number_id, phone)))
        .run(&mut conn)
        .await?;
    Ok(v.and_then(|s| s.split_once(':').and_then(|(_, c)| CampaignId::new(c).ok())))
}
