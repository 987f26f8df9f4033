//! One phone number's lane: claim → admit → pace → send → classify → settle.
//!
//! Pacing works in rounds of about [`ROUND`]. Each round takes permits for the requests it
//! may start (the in-flight bound), then that many send times from the number's rolling
//! window in the store (shared by every worker: at most `mps` in any second and
//! `window_guard`), each with the latest time it may go; while it plans, it reserves pair
//! spacing for its first jobs and marks them started ([`admit`]; with capped campaigns,
//! after the plan, for those that got a time). It spawns one task per send that waits for
//! its time. The next round begins [`LOOKAHEAD`] before the last time, so the schedule is
//! continuous with no burst at round boundaries. The next batch's claim and admission run
//! beside the rounds, as a task of their own (`refill`). Permits are taken before times so
//! a send never waits for a permit after its time. A send that wakes after its latest time
//! asks the store to move it to now, which it may while the window has room (so a late
//! wake-up costs nothing); only when it has none does the send give its time up and wait
//! for another. Once a request has gone it is logged in the window when it left, later or
//! earlier than its latest time (or, where answers come quickly, at its answer less the
//! way's margin): see `SendTask::departed`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_cloudapi::{Departure, ErrorClass, Messages, code_label};
use herald_core::{
    CampaignId, PauseKind, PhoneE164, REACH_WINDOW, SkipReason, WaMessageId, metrics as m,
};
use herald_store::{
    ClaimRequest, ClaimedJob, JobRef, LeaseToken, Outcome, Pace, PairReservation, Reach, SendWant,
    SlotId, Store, StoreClock, StoreError, SuppressionScope,
};
use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

mod refill;
mod send;

use crate::held::Held;
use crate::policy::{AdaptiveRate, Decision, capped_retry, decide};
use crate::{CampaignInfo, LANE_IDLE_EXIT, Shared, unit};
use refill::{LimitSeen, Refill, Refilled};
use send::SendTask;

/// The span of send slots one round asks for. Its sends are marked started before their
/// requests, so a worker killed mid-round leaves up to ROUND + LOOKAHEAD of them in doubt:
/// short rounds keep that small, at a few store calls per round.
const ROUND: Duration = Duration::from_millis(50);
/// How long before its last slot a round's successor starts (covers the round's store calls).
const LOOKAHEAD: Duration = Duration::from_millis(25);
/// Pair reservations are this much wider than the pair interval: a reservation is made up to
/// a round ahead of its send, and a send that missed its slot may take the next round's.
const PAIR_SLACK: Duration = Duration::from_millis(500);
/// Per round, how much of the last lead carries over (see [`Lane::lead`]).
const LEAD_DECAY: f64 = 0.9;
/// A round limited by the in-flight bound waits up to BATCH_WAIT for this many permits.
const MIN_BATCH: usize = 64;
const BATCH_WAIT: Duration = Duration::from_millis(2);
/// The most late sends one store call moves or logs.
const STORE_BATCH: usize = 512;
/// How long the lane's departures gather before they are logged: each call then logs a few
/// milliseconds' worth, and the sends a window later are planned most of a second after.
const RECORD_GATHER: Duration = Duration::from_millis(5);
/// Repeating store failures of lanes, logged a few times however long they last.
static CLAIMS: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();
static ROUNDS: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();
/// Throttles within this long of a rate decrease are echoes of the old rate.
const THROTTLE_ECHO: Duration = Duration::from_secs(1);
/// The window over which the share of throttled requests is measured.
const SAMPLE_SPAN: Duration = Duration::from_secs(1);
/// While the messaging limit is spent, how often the lane looks again (the window moves on,
/// or Meta raises the limit).
const LIMIT_RECHECK: Duration = Duration::from_secs(10);
/// How often the lane re-reads its campaigns' caps.
const MIX_EVERY: Duration = Duration::from_secs(1);
const IDLE_MIN: Duration = Duration::from_millis(50);
const IDLE_MAX: Duration = Duration::from_millis(500);
/// At shutdown, how long the sends that came back late may take to give their pair
/// reservations back (the deadline for sends in flight has passed by then).
const LATE_GIVE_BACK: Duration = Duration::from_secs(1);
/// How long an admission that failed may take to give back the pair reservations it made
/// (the store is failing then; the jobs go back to pending either way).
const GIVE_BACK_WAIT: Duration = Duration::from_secs(1);

/// Why a pacing round did not complete.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pool's in-flight permits were closed: the sender is going away.
    #[error("the sender is closing")]
    Closing,
}

/// A claimed, admitted job waiting for a slot.
struct Ready {
    held: Held,
    campaign: Arc<CampaignInfo>,
    since: Instant,
    /// Set once the store has it as started (its pair spacing reserved at the same time).
    started_at: Option<Instant>,
    /// When it was counted against the messaging limit, if this send counted it (given back
    /// if Meta refuses the send).
    reach: Option<Timestamp>,
    /// The place the limiters gave it this round.
    slot: Option<Slot>,
}

/// A send's place in its number's window.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its time, and the latest it may go without being moved (the store's clock).
    at: Timestamp,
    until: Timestamp,
    id: SlotId,
    /// The pace it was planned at.
    pace: Pace,
}

/// What send tasks tell their lane.
struct Signals {
    /// Requests made.
    requests: AtomicU64,
    /// 130429 answers.
    throttles: AtomicU64,
    /// Sends that missed their slot, to be given a new one.
    late: mpsc::UnboundedSender<Ready>,
    /// Late sends asking to be moved to now (see [`mover`]).
    moves: mpsc::UnboundedSender<MoveAsk>,
    /// Sends whose requests went, and when (see [`recorder`]).
    departed: mpsc::UnboundedSender<(SlotId, Timestamp)>,
    /// How fast the number's requests are answered (see [`RoundTrips`]).
    round_trips: RoundTrips,
    /// The metrics every send records, registered once.
    meters: Meters,
}

/// The fastest of a lane's recent round trips, from when a request left to its answer: it
/// falls to a faster one at once and rises a 64th of the way to each slower one, so it
/// follows the fastest answers of the last hundred or so. Where answers are that fast (an
/// API beside the sender), one that comes later than its send's latest time is a sign
/// the request itself may have gone late (the process or the machine stalled between
/// noting it and its reaching the socket); where every answer takes longer than that (Meta
/// across the internet), an answer proves nothing of the way there.
#[derive(Debug)]
struct RoundTrips(AtomicU64);

impl Default for RoundTrips {
    fn default() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }
}

impl RoundTrips {
    /// The fastest recent round trip (`Duration::MAX` before any).
    fn fastest(&self) -> Duration {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => Duration::MAX,
            us => Duration::from_micros(us),
        }
    }

    /// Counts one round trip; answers the fastest recent one, this one counted.
    fn observe(&self, took: Duration) -> Duration {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let step = |fastest: u64| {
            if took <= fastest {
                took
            } else {
                fastest + (took - fastest) / 64
            }
        };
        let before = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(step(f)).filter(|&next| next != f)
            })
            .unwrap_or_else(|unchanged| unchanged);
        Duration::from_micros(step(before))
    }
}

/// Handles to the metrics every send records: registered once per lane, where the macros
/// would look each one up (and build its labels) per send.
struct Meters {
    accepted: metrics::Counter,
    in_flight: metrics::Gauge,
    duration: metrics::Histogram,
    token_wait: metrics::Histogram,
    round_store: metrics::Histogram,
}

impl Meters {
    fn new(pnid: &str) -> Self {
        Self {
            accepted: metrics::counter!(
                m::SENDER_SENDS_TOTAL,
                "phone_number_id" => pnid.to_owned(),
                "result" => "accepted"
            ),
            in_flight: metrics::gauge!(m::SENDER_IN_FLIGHT_REQUESTS),
            duration: metrics::histogram!(m::SENDER_SEND_DURATION_SECONDS),
            token_wait: metrics::histogram!(m::SENDER_TOKEN_WAIT_SECONDS),
            round_store: metrics::histogram!(m::SENDER_ROUND_STORE_SECONDS),
        }
    }
}

/// A late send's request to be moved to now, and where the answer goes.
struct MoveAsk {
    slot: SlotId,
    pace: Pace,
    answer: tokio::sync::oneshot::Sender<Option<Timestamp>>,
}

/// Moves a lane's late sends, as many per store call as have asked meanwhile: a busy
/// process wakes many sends late at once, and one round trip each would make it busier.
/// Ends when the lane and its sends are gone.
async fn mover<S: Store>(
    store: Arc<S>,
    pnid: Arc<str>,
    mut asks: mpsc::UnboundedReceiver<MoveAsk>,
) {
    let mut batch: Vec<MoveAsk> = Vec::new();
    while asks.recv_many(&mut batch, STORE_BATCH).await > 0 {
        // Asks made at different paces (the rate changed meanwhile) go in separate calls.
        while !batch.is_empty() {
            let pace = batch[0].pace;
            let same = batch.iter().take_while(|a| a.pace == pace).count();
            let run: Vec<MoveAsk> = batch.drain(..same).collect();
            let slots: Vec<SlotId> = run.iter().map(|a| a.slot).collect();
            match store.move_slots(&pnid, pace, &slots).await {
                Ok(times) => {
                    for (ask, t) in run.into_iter().zip(times) {
                        let _ = ask.answer.send(t);
                    }
                }
                // No answer: the asks are dropped, and their sends give their times up.
                Err(e) => {
                    tracing::debug!(error = %e, sends = slots.len(), "could not move late sends")
                }
            }
        }
    }
}

/// Logs in the number's window when a lane's requests really went, as many per store call as
/// have come meanwhile (see [`Store::record_departures`]). A request that left a millisecond
/// after its latest time would otherwise be one too many, in Meta's count, for the send a
/// window after it; one that left before it would hold that send back for nothing. That
/// send is planned about a window later, so these calls have most of a second to land.
/// Ends when the lane and its sends are gone.
async fn recorder<S: Store>(
    store: Arc<S>,
    pnid: Arc<str>,
    mut departed: mpsc::UnboundedReceiver<(SlotId, Timestamp)>,
) {
    let mut batch = Vec::new();
    while departed.recv_many(&mut batch, STORE_BATCH).await > 0 {
        // Every paced send is logged: a call per few milliseconds' worth, not one each.
        sleep(RECORD_GATHER).await;
        while batch.len() < STORE_BATCH
            && let Ok(more) = departed.try_recv()
        {
            batch.push(more);
        }
        if let Err(e) = store.record_departures(&pnid, &batch).await {
            tracing::debug!(error = %e, sends = batch.len(), "could not log departures");
        }
        batch.clear();
    }
}

pub(crate) struct Lane<S: Store, M: Messages> {
    shared: Arc<Shared<S, M>>,
    pnid: Arc<str>,
    /// The business portfolio whose messaging limit the number shares.
    portfolio: Arc<str>,
    /// The messaging-limit budget to enforce (re-read with the campaign mix); `None`: none.
    limit: Option<u64>,
    /// While the budget is spent: claim nothing before this.
    limit_wait: Option<Instant>,
    /// The budget was found spent and has not had room since (said once in the log).
    limit_spent: bool,
    ready: VecDeque<Ready>,
    rate: AdaptiveRate,
    rate_at: Instant,
    signals: Arc<Signals>,
    late: mpsc::UnboundedReceiver<Ready>,
    throttles_seen: u64,
    /// (when, requests, throttles) counts over the last SAMPLE_SPAN.
    samples: VecDeque<(Instant, u64, u64)>,
    decreased_at: Option<Instant>,
    mix_at: Option<Instant>,
    has_campaigns: bool,
    sends: JoinSet<()>,
    clock: StoreClock,
    /// How long a round's store calls took, as a decaying maximum: while the window is
    /// full (a late send has little slack), its plan gives no time sooner, so that a send
    /// does not wake late for its own round's calls and ask to be moved.
    lead: Duration,
    /// The last plan gave its sends the room slack (the window less than half full).
    roomy: bool,
    /// The least time between two sends of each capped campaign on this number.
    caps: HashMap<CampaignId, Duration>,
}

impl<S: Store, M: Messages> Lane<S, M> {
    pub(crate) fn new(shared: Arc<Shared<S, M>>, pnid: String) -> Self {
        let mps = f64::from(shared.cfg.mps);
        let (late_tx, late_rx) = mpsc::unbounded_channel();
        let (moves_tx, moves_rx) = mpsc::unbounded_channel();
        let (departed_tx, departed_rx) = mpsc::unbounded_channel();
        let pnid: Arc<str> = pnid.into();
        tokio::spawn(mover(shared.store.clone(), pnid.clone(), moves_rx));
        tokio::spawn(recorder(shared.store.clone(), pnid.clone(), departed_rx));
        let portfolio = shared.cfg.messaging_limit.portfolio_of(&pnid).into();
        let meters = Meters::new(&pnid);
        Self {
            shared,
            pnid,
            portfolio,
            limit: None,
            limit_wait: None,
            limit_spent: false,
            ready: VecDeque::new(),
            rate: AdaptiveRate::new(mps),
            rate_at: Instant::now(),
            signals: Arc::new(Signals {
                requests: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                late: late_tx,
                moves: moves_tx,
                departed: departed_tx,
                round_trips: RoundTrips::default(),
                meters,
            }),
            late: late_rx,
            throttles_seen: 0,
            samples: VecDeque::new(),
            decreased_at: None,
            mix_at: None,
            has_campaigns: true,
            sends: JoinSet::new(),
            clock: StoreClock::default(),
            lead: Duration::ZERO,
            roomy: false,
            caps: HashMap::new(),
        }
    }

    /// Runs until shutdown, or until the number has had nothing to send for a while.
    /// Returns the number of sends abandoned at the shutdown deadline.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> u64 {
        tracing::info!(phone_number_id = %self.pnid, "lane started");
        let mut idle = IDLE_MIN;
        let mut idle_since = Instant::now();
        let mut next_round = Instant::now();
        let mut store_wait = Duration::from_millis(100);
        // The next batch's claim and admission, running beside the rounds.
        let mut refilling: Option<JoinHandle<Result<Refilled, StoreError>>> = None;
        while !shutdown.is_cancelled() {
            while self.sends.try_join_next().is_some() {}
            while let Ok(r) = self.late.try_recv() {
                self.ready.push_front(r);
            }
            self.update_rate().await;
            // With nothing ready, the refill under way is waited for, or one made now.
            let wait_for = if self.ready.is_empty() {
                refilling.take().or_else(|| {
                    let request = self.claim_request()?;
                    Some(tokio::spawn(self.refiller().run(request)))
                })
            } else {
                refilling.take_if(|h| h.is_finished())
            };
            if let Some(handle) = wait_for
                && let Err(e) = self.refilled(handle.await)
            {
                claim_failed(&self.pnid, &e);
                pause(&shutdown, store_wait).await;
                store_wait = (store_wait * 2).min(Duration::from_secs(5));
                continue;
            }
            if self.ready.is_empty() {
                if idle_since.elapsed() > LANE_IDLE_EXIT && !self.has_campaigns {
                    break;
                }
                pause(&shutdown, idle).await;
                idle = (idle * 2).min(IDLE_MAX);
                continue;
            }
            idle = IDLE_MIN;
            idle_since = Instant::now();
            // The next batch is claimed beside the rounds when the ready queue runs low (the
            // store's largest call, and its admission a few more: made in turn, they would
            // hold the rounds up).
            if refilling.is_none()
                && let Some(request) = self.claim_request()
            {
                refilling = Some(tokio::spawn(self.refiller().run(request)));
            }
            let round = tokio::select! {
                () = shutdown.cancelled() => break,
                () = sleep_until(next_round) => self.round(&shutdown).await,
            };
            match round {
                Ok(next) => {
                    next_round = next;
                    if store_wait > Duration::from_millis(100) {
                        herald_core::recovered!(CLAIMS, "claims work again");
                        herald_core::recovered!(ROUNDS, "pacing rounds work again");
                    }
                    store_wait = Duration::from_millis(100);
                }
                Err(e) => {
                    herald_core::warn_repeated!(
                        ROUNDS,
                        "pacing failed; retrying",
                        phone_number_id = %self.pnid,
                        error = %e
                    );
                    pause(&shutdown, store_wait).await;
                    store_wait = (store_wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        // A refill under way at the end: its jobs are released with the others.
        if let Some(handle) = refilling
            && let Err(e) = self.refilled(handle.await)
        {
            tracing::debug!(error = %e, "the last claim failed");
        }
        self.stop().await
    }

    /// Jobs kept ready: about half a second of sending.
    fn low_water(&self) -> usize {
        self.claim_size() / 2
    }

    fn claim_size(&self) -> usize {
        let per_sec = self.rate.current().ceil() as usize;
        per_sec
            .clamp(16, 1000)
            .min(self.shared.cfg.max_in_flight.max(16) * 4)
    }

    /// Applies throttle signals from the send tasks, recovery, and the campaign mix.
    async fn update_rate(&mut self) {
        let now = Instant::now();
        let requests = self.signals.requests.load(Ordering::Relaxed);
        let seen = self.signals.throttles.load(Ordering::Relaxed);
        self.samples.push_back((now, requests, seen));
        while self
            .samples
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) > SAMPLE_SPAN)
        {
            self.samples.pop_front();
        }
        if seen != self.throttles_seen {
            self.throttles_seen = seen;
            let echo = self
                .decreased_at
                .is_some_and(|t| now.duration_since(t) < THROTTLE_ECHO);
            if !echo {
                let share = self.samples.front().and_then(|&(t, r0, th0)| {
                    let made = requests.saturating_sub(r0);
                    (now.duration_since(t) >= SAMPLE_SPAN / 4 && made >= 10)
                        .then(|| seen.saturating_sub(th0) as f64 / made as f64)
                });
                self.rate.throttled(share);
                self.decreased_at = Some(now);
                tracing::warn!(
                    phone_number_id = %self.pnid,
                    mps = self.rate.current(),
                    throttled_share = share,
                    "throttled by Meta (130429); slowing down"
                );
            }
        } else if self
            .decreased_at
            .is_none_or(|t| now.duration_since(t) >= THROTTLE_ECHO)
        {
            self.rate.recover(now.duration_since(self.rate_at));
        }
        self.rate_at = now;
        if self
            .mix_at
            .is_none_or(|t| now.duration_since(t) >= MIX_EVERY)
        {
            self.mix_at = Some(now);
            if let Ok(meta) = self.shared.store.messaging_limit(&self.portfolio).await {
                self.limit = self.shared.cfg.messaging_limit.effective(meta);
            }
            if let Ok(running) = self.shared.store.running_campaigns().await {
                let mine: Vec<_> = running
                    .iter()
                    .filter(|c| *c.phone_number_id == *self.pnid)
                    .collect();
                self.has_campaigns = !mine.is_empty();
                let mut number = self.shared.cfg.lane_mps(mine.iter().map(|c| c.mps));
                // The number's throughput level, when known, bounds it too (the configured
                // rate is then a ceiling the level may rise to).
                if let Ok(Some(level)) = self.shared.store.throughput(&self.pnid).await {
                    number = number.min(level.max(1));
                }
                self.rate.set_configured(f64::from(number));
                // A campaign's own cap, where it is below the number's rate, has its own
                // limiter (a cap at or above it constrains nothing).
                self.caps = mine
                    .iter()
                    .filter_map(|c| {
                        let cap = c.mps.filter(|m| *m < self.shared.cfg.mps)?;
                        Some((c.id.clone(), interval(f64::from(cap))))
                    })
                    .collect();
            }
        }
        metrics::gauge!(m::SENDER_EFFECTIVE_MPS, "phone_number_id" => self.pnid.to_string())
            .set(self.rate.current());
    }

    /// The next claim, when the lane should make one: its ready queue runs low, the settler
    /// keeps up (while it is behind, the store slow to take settlements, what this process
    /// holds stays bounded) and the messaging limit is not spent.
    fn claim_request(&self) -> Option<ClaimRequest> {
        let max = self.claim_size().min(self.shared.ledger.room());
        if self.ready.len() >= self.low_water()
            || max == 0
            || self.limit_wait.is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        Some(ClaimRequest {
            phone_number_id: Some(self.pnid.to_string()),
            max,
            lease: self.shared.cfg.lease,
            token: LeaseToken(rand::random()),
        })
    }

    /// What a refill spawned now needs from the lane.
    fn refiller(&self) -> Refill<S, M> {
        Refill {
            shared: self.shared.clone(),
            pnid: self.pnid.clone(),
            portfolio: self.portfolio.clone(),
            limit: self.limit,
            clock: self.clock,
        }
    }

    /// Takes in a refill's jobs (at the back of the ready queue) and what it learnt of the
    /// messaging limit.
    fn refilled(
        &mut self,
        joined: Result<Result<Refilled, StoreError>, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        let refilled = joined
            .map_err(|e| StoreError::Unavailable(format!("the claim task failed: {e}")))??;
        match refilled.limit {
            Some(LimitSeen::Spent(frees_at)) => self.limit_spent(frees_at),
            Some(LimitSeen::Room) if std::mem::take(&mut self.limit_spent) => {
                tracing::info!(phone_number_id = %self.pnid, portfolio = %self.portfolio, "the messaging limit has room again");
            }
            Some(LimitSeen::Room) | None => {}
        }
        self.ready.extend(refilled.ready);
        Ok(())
    }

    /// One pacing round. Returns when the next one should start.
    async fn round(&mut self, shutdown: &CancellationToken) -> Result<Instant, RoundError> {
        let pace = Pace::per_second(self.rate.current(), self.shared.cfg.window_guard);
        let per_round = (ROUND.as_micros() / pace.spacing().as_micros().max(1)).max(1) as usize;
        let want = per_round.min(self.ready.len());
        // Permits first: at least one (waiting for it), then as many as are free.
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(Instant::now()),
            p = self.shared.permits.clone().acquire_owned() => {
                p.map_err(|_| RoundError::Closing)?
            }
        };
        let mut permits = vec![first];
        while permits.len() < want {
            match self.shared.permits.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // When the in-flight bound is what limits the round (a high rate), wait a moment for
        // a worthwhile batch: a round costs the same few store calls for one job or for
        // a hundred.
        let batch = want.min(MIN_BATCH);
        if permits.len() < batch {
            let until = Instant::now() + BATCH_WAIT;
            while permits.len() < batch {
                match tokio::time::timeout_at(until, self.shared.permits.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => permits.push(p),
                    _ => break,
                }
            }
        }
        let horizon = ROUND + LOOKAHEAD;
        // Enough of the queue that a capped campaign's sends, waiting for their own slots,
        // do not hold the others up. Without caps a plan grants in order, so the first as
        // many as there are permits are all it can grant: asking about more would only make
        // the call and its answer longer.
        let look = if self.caps.is_empty() {
            self.ready.len().min(permits.len())
        } else {
            self.ready.len().min(permits.len() * 4)
        };
        let wants: Vec<SendWant> = self
            .ready
            .iter()
            .take(look)
            .map(|r| {
                let c = &r.held.job().id.campaign;
                self.caps.get(c).map(|own| (c.clone(), *own))
            })
            .collect();
        // Without capped campaigns a plan grants in order: the first candidates, as many as
        // there are permits, are admitted (pair spacing reserved, marked started) while it
        // plans, in one round trip instead of two. With caps it may pass some over for later
        // ones, so those it grants are admitted after it.
        let early: Vec<usize> = if wants.iter().all(Option::is_none) {
            (0..permits.len().min(look))
                .filter(|&i| self.ready[i].started_at.is_none())
                .collect()
        } else {
            Vec::new()
        };
        let early_jobs: Vec<&ClaimedJob> =
            early.iter().map(|&i| self.ready[i].held.job()).collect();
        let lead = if self.roomy {
            Duration::ZERO
        } else {
            self.lead
        };
        let asked = Instant::now();
        let token: u64 = rand::random();
        // The plan's answer is timed on its own: it maps the store's clock onto ours.
        let planning = async {
            let plan = self
                .shared
                .store
                .plan_sends(
                    &self.pnid,
                    pace,
                    &wants,
                    permits.len(),
                    lead..lead + horizon,
                    token,
                )
                .await;
            (plan, Instant::now())
        };
        let ((plan, answered), admitted) =
            tokio::join!(planning, admit(&self.shared, &self.pnid, &early_jobs));
        drop(early_jobs);
        let verdicts = match admitted {
            Ok(v) => v,
            Err(e) => {
                // Some may have been marked started before the store failed: none is sent,
                // and all go back to pending as they are dropped.
                for &i in early.iter().rev() {
                    self.ready.remove(i);
                }
                return Err(e.into());
            }
        };
        // Those admitted stay started whatever the plan says; the others leave the queue,
        // and their place in the plan with them.
        let mut dropped = Vec::new();
        for (&i, refusal) in early.iter().zip(verdicts).rev() {
            match refusal {
                None => self.ready[i].started_at = Some(asked),
                Some(why) => {
                    if let Some(r) = self.ready.remove(i) {
                        self.refuse(r, why);
                    }
                    dropped.push(i);
                }
            }
        }
        let plan = plan?;
        // Per candidate, its place in the plan (its slot's index in the window's log) and its
        // time and latest time, if it got them.
        let mut slots: Vec<(usize, Option<(Timestamp, Timestamp)>)> = plan
            .at
            .iter()
            .zip(&plan.until)
            .map(|(at, until)| at.zip(*until))
            .enumerate()
            .collect();
        if let Some((at, until)) = slots.iter().rev().find_map(|(_, s)| *s) {
            self.roomy = until.duration_since(at).unsigned_abs() > pace.slack;
        }
        for &i in &dropped {
            slots.remove(i);
        }
        let look = look - dropped.len();
        let granted = slots.iter().filter(|(_, s)| s.is_some()).count();
        self.clock.sample(asked, answered, plan.now);
        let clock = self.clock;
        let at = |store: Timestamp| clock.local(store);
        if granted == 0 {
            // Others hold the slots (or the campaigns wait for theirs): come back when asking
            // again can grant something, and never at once.
            let soonest = Instant::now() + Duration::from_millis(1);
            return Ok(plan
                .next
                .map_or(Instant::now() + ROUND, |n| at(n).max(soonest)));
        }
        let candidates: Vec<Ready> = self.ready.drain(..look).collect();
        let mut chosen = Vec::with_capacity(granted);
        let mut waiting = Vec::new();
        for (mut r, (index, slot)) in candidates.into_iter().zip(slots) {
            match slot {
                Some((at, until)) => {
                    let index = u32::try_from(index).unwrap_or(u32::MAX);
                    r.slot = Some(Slot {
                        at,
                        until,
                        id: SlotId { token, index },
                        pace,
                    });
                    chosen.push(r);
                }
                None => waiting.push(r),
            }
        }
        self.requeue(waiting);
        permits.truncate(chosen.len());
        // Sends that missed their slot come back already started, with their pair spacing
        // reserved; a reservation is good for PAIR_SLACK, after which the job goes back to
        // the store's queue instead.
        let (resumed, fresh): (Vec<Ready>, Vec<Ready>) =
            chosen.into_iter().partition(|r| r.started_at.is_some());
        let mut go = Vec::with_capacity(permits.len());
        let mut expired = Vec::new();
        for r in resumed {
            // Its new slot is at most ROUND + LOOKAHEAD away. One whose reservation has run
            // out goes back, never sent.
            if r.started_at
                .is_some_and(|t| t.elapsed() + ROUND + LOOKAHEAD < PAIR_SLACK)
            {
                go.push(r);
            } else {
                expired.push(r);
            }
        }
        self.give_back(expired);
        go.extend(self.admit_granted(fresh).await?);
        let took = asked.elapsed();
        self.signals.meters.round_store.record(took.as_secs_f64());
        self.lead = took.max(self.lead.mul_f64(LEAD_DECAY)).min(ROUND);
        go.sort_by_key(|r| r.slot.map(|s| s.at));
        let mut last = Instant::now();
        for (r, permit) in go.into_iter().zip(permits) {
            let (when, until) = r
                .slot
                .map_or_else(|| (Instant::now(), None), |s| (at(s.at), Some(at(s.until))));
            last = last.max(when);
            self.signals
                .meters
                .token_wait
                .record(when.saturating_duration_since(r.since).as_secs_f64());
            let send = SendTask {
                shared: self.shared.clone(),
                pnid: self.pnid.clone(),
                portfolio: self.portfolio.clone(),
                signals: self.signals.clone(),
            };
            self.sends.spawn(send.run(r, when, until, permit));
        }
        Ok(last.checked_sub(LOOKAHEAD).unwrap_or(last))
    }

    /// Jobs admitted but never sent go back to pending, and their pair reservations with
    /// them first: the worker that takes one next (another, as often as not, where several
    /// share a number) would otherwise find its recipient reserved and defer it for the
    /// whole pair interval, holding up the campaign's end by seconds.
    fn give_back(&self, jobs: Vec<Ready>) {
        if jobs.is_empty() {
            return;
        }
        let (store, pnid) = (self.shared.store.clone(), self.pnid.clone());
        tokio::spawn(async move {
            release_pairs(&*store, &pnid, &jobs).await;
            // Released as they are dropped, once their reservations are back.
            drop(jobs);
        });
    }

    /// Admits granted jobs that were not admitted with the plan (see [`admit`]): answers
    /// those that may go.
    async fn admit_granted(&mut self, batch: Vec<Ready>) -> Result<Vec<Ready>, StoreError> {
        let jobs: Vec<&ClaimedJob> = batch.iter().map(|r| r.held.job()).collect();
        let admitted_at = Instant::now();
        // On an error, some may have been marked started before the store failed; none was
        // sent, so all go back to pending as `batch` is dropped.
        let verdicts = admit(&self.shared, &self.pnid, &jobs).await?;
        drop(jobs);
        let mut go = Vec::with_capacity(batch.len());
        for (r, refusal) in batch.into_iter().zip(verdicts) {
            match refusal {
                None => go.push(Ready {
                    started_at: Some(admitted_at),
                    ..r
                }),
                Some(why) => self.refuse(r, why),
            }
        }
        Ok(go)
    }

    /// A job admission did not let go: too close to an earlier send to its recipient, it
    /// waits until the pair spacing allows; lost, it is not ours to send.
    fn refuse(&self, r: Ready, why: Refusal) {
        match why {
            Refusal::Spaced(not_before) => {
                let wait = self
                    .clock
                    .local(not_before)
                    .saturating_duration_since(Instant::now());
                count_send(&self.pnid, "pair_spaced");
                r.held.settle(Outcome::Deferred {
                    delay: wait + Duration::from_millis(20),
                });
            }
            // The campaign stopped running (the store released the job) or the lease was
            // lost.
            Refusal::Lost => r.held.disown(),
        }
    }

    /// The messaging-limit budget is spent until `frees_at` (the store's clock): claim
    /// nothing until then, or for [`LIMIT_RECHECK`] at most (the limit may rise meanwhile).
    fn limit_spent(&mut self, frees_at: Option<Timestamp>) {
        let wait = refill::limit_wait(&self.clock, frees_at);
        if !std::mem::replace(&mut self.limit_spent, true) {
            tracing::warn!(
                phone_number_id = %self.pnid,
                portfolio = %self.portfolio,
                limit = ?self.limit,
                frees_at = ?frees_at,
                "the messaging limit is spent; sends outside open windows wait"
            );
        }
        self.limit_wait = Some(Instant::now() + wait);
    }

    /// Puts jobs back at the head of the ready queue, in order.
    fn requeue(&mut self, batch: Vec<Ready>) {
        for r in batch.into_iter().rev() {
            self.ready.push_front(r);
        }
    }

    /// Shutdown: releases jobs not started (dropping a [`Held`] releases it), waits for
    /// in-flight sends up to the deadline, and releases the sends that came back late
    /// meanwhile. Sends still unanswered at the deadline are aborted, which settles them in
    /// doubt.
    async fn stop(mut self) -> u64 {
        let deadline = Instant::now() + self.shared.cfg.shutdown_deadline;
        let ready: Vec<Ready> = self.ready.drain(..).collect();
        let mut released = ready.len();
        // Admitted ones give their pair reservations back first, as in `give_back`: the
        // worker that takes them next would otherwise defer each for the pair interval.
        let _ = tokio::time::timeout_at(
            deadline,
            release_pairs(&*self.shared.store, &self.pnid, &ready),
        )
        .await;
        drop(ready);
        let mut abandoned = 0;
        loop {
            tokio::select! {
                next = self.sends.join_next() => {
                    if next.is_none() {
                        break;
                    }
                }
                () = sleep_until(deadline) => {
                    abandoned = self.sends.len() as u64;
                    tracing::warn!(
                        phone_number_id = %self.pnid,
                        sends = abandoned,
                        "sends still in flight at the shutdown deadline are settled in doubt"
                    );
                    self.sends.abort_all();
                    // An aborted task drops its job (settling it) when it is next polled:
                    // wait for that, so every settlement is queued before the lane ends.
                    while self.sends.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Sends that woke too late for their slot while the lane was stopping (admitted:
        // their reservations go back too, for a moment at most).
        let mut late = Vec::new();
        while let Ok(r) = self.late.try_recv() {
            late.push(r);
        }
        released += late.len();
        let _ = tokio::time::timeout(
            LATE_GIVE_BACK,
            release_pairs(&*self.shared.store, &self.pnid, &late),
        )
        .await;
        drop(late);
        metrics::counter!(
            m::SENDER_SENDS_TOTAL,
            "phone_number_id" => self.pnid.to_string(),
            "result" => "released"
        )
        .increment(released as u64);
        tracing::info!(phone_number_id = %self.pnid, released, "lane stopped");
        abandoned
    }
}

/// Gives back the pair reservations of admitted jobs (those marked started) that go back
/// unsent. Only each job's own campaign's reservation is given back (see
/// [`Store::release_pair`]); a job not admitted has none.
async fn release_pairs<S: Store>(store: &S, pnid: &str, jobs: &[Ready]) {
    let admitted = jobs.iter().filter(|r| r.started_at.is_some()).map(|r| {
        let job = r.held.job();
        (job.phone, &job.id.campaign)
    });
    release_recipients(store, pnid, admitted).await;
}

/// Gives back each recipient's pair reservation made for the campaign.
async fn release_recipients<'a, S: Store>(
    store: &S,
    pnid: &str,
    recipients: impl Iterator<Item = (PhoneE164, &'a CampaignId)>,
) {
    for (phone, campaign) in recipients {
        if let Err(e) = store.release_pair(pnid, phone, campaign).await {
            tracing::debug!(campaign = %campaign, error = %e, "could not give a pair reservation back");
        }
    }
}

fn claim_failed(pnid: &str, e: &StoreError) {
    herald_core::warn_repeated!(
        CLAIMS,
        "claim failed; retrying",
        phone_number_id = %pnid,
        error = %e
    );
}

/// Why admission did not let a job go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Too close to an earlier send to the recipient: not before this (the store's clock).
    Spaced(Timestamp),
    /// Not marked started: its campaign stopped running (the store released the job) or
    /// the lease was lost.
    Lost,
}

/// Admits jobs about to get a slot: reserves their pair spacing and marks them started,
/// side by side. Answers, per job, why it may not go, if it may not. A job refused for its
/// pair spacing is started all the same, and waits again when it is settled (its request
/// was never made).
async fn admit<S: Store, M: Messages>(
    shared: &Shared<S, M>,
    pnid: &str,
    jobs: &[&ClaimedJob],
) -> Result<Vec<Option<Refusal>>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let sends: Vec<(PhoneE164, CampaignId)> = jobs
        .iter()
        .map(|j| (j.phone, j.id.campaign.clone()))
        .collect();
    let refs: Vec<JobRef> = jobs.iter().map(|j| JobRef::from(*j)).collect();
    let pair_interval = shared.cfg.pair_interval + PAIR_SLACK;
    let (pairs, started) = tokio::join!(
        shared.store.reserve_pairs(pnid, &sends, pair_interval),
        shared.store.start(&refs)
    );
    // A recipient reserved here for a job that will not go (the start failed, or the job is
    // no longer ours) is given back: whoever sends it next would otherwise wait the whole
    // pair interval for a send that never happened.
    let reserved = |i: usize| matches!(&pairs, Ok(p) if p.get(i) == Some(&PairReservation::Ok));
    let started_ok = |i: usize| matches!(&started, Ok(s) if s.get(i) == Some(&true));
    let unsent: Vec<usize> = (0..jobs.len())
        .filter(|&i| reserved(i) && !started_ok(i))
        .collect();
    if !unsent.is_empty() {
        let given = unsent
            .iter()
            .map(|&i| (jobs[i].phone, &jobs[i].id.campaign));
        let _ = tokio::time::timeout(
            GIVE_BACK_WAIT,
            release_recipients(&*shared.store, pnid, given),
        )
        .await;
    }
    let (pairs, started) = (pairs?, started?);
    // One answer per job, or none: a short one would leave jobs started but unaccounted.
    if pairs.len() != jobs.len() {
        return Err(StoreError::Corrupt(format!(
            "{} pair reservations for {} sends",
            pairs.len(),
            jobs.len()
        )));
    }
    Ok(pairs
        .into_iter()
        .zip(started.into_iter().chain(std::iter::repeat(false)))
        .map(|(pair, started)| match (pair, started) {
            (_, false) => Some(Refusal::Lost),
            (PairReservation::NotBefore(t), true) => Some(Refusal::Spaced(t)),
            (PairReservation::Ok, true) => None,
        })
        .collect())
}

/// The time between sends at `mps` (a campaign's own cap), rounded up to the microsecond
/// (never narrower than the rate allows).
fn interval(mps: f64) -> Duration {
    // The epsilon keeps float noise from rounding up.
    let us = ((1_000_000.0 / mps.max(0.01)) - 1e-6).ceil().max(1.0) as u64;
    Duration::from_micros(us)
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = sleep(d) => {}
    }
}

fn count_send(pnid: &Arc<str>, result: &'static str) {
    metrics::counter!(
        m::SENDER_SENDS_TOTAL,
        "phone_number_id" => pnid.to_string(),
        "result" => result
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_round_trip_falls_at_once_and_rises_slowly() {
        let us = Duration::from_micros;
        let trips = RoundTrips::default();
        assert_eq!(
            trips.observe(us(6_400)),
            us(6_400),
            "the first counts whole"
        );
        assert_eq!(trips.observe(us(100)), us(100), "a faster one at once");
        // A slower one raises it by a 64th of the difference, each time.
        assert_eq!(trips.observe(us(6_500)), us(200));
        assert_eq!(trips.observe(us(6_600)), us(300));
        // An API across the internet: after a few hundred answers at 100 ms, the fastest
        // is far above any guard's slack, though one answer was once quick.
        let mut fastest = Duration::ZERO;
        for _ in 0..500 {
            fastest = trips.observe(Duration::from_millis(100));
        }
        assert!(fastest > Duration::from_millis(99), "{fastest:?}");
    }

    #[test]
    fn intervals_round_up_to_the_microsecond() {
        let us = Duration::from_micros;
        assert_eq!(interval(80.0), us(12_500));
        assert_eq!(interval(1000.0), us(1000));
        assert_eq!(interval(3.0), us(333_334));
        assert_eq!(interval(1e9), us(1), "never zero");
    }
}
