//! The sender pool (ARCHITECTURE §5, §7): pending jobs in, Cloud API calls out, at exactly the rate
//! Meta allows, never twice.
//!
//! A [`Sender`] runs one *lane* per phone number with running campaigns. A lane claims jobs
//! in batches under a lease, admits them (not suppressed; a free-form message only inside an
//! open 24 h window), takes evenly spaced send slots from the store's shared limiter (so all
//! workers together keep to the number's rate), reserves pair spacing per recipient, marks the
//! jobs started and sends each at its slot time, bounded by `max_in_flight`. Every answer is
//! classified by its error code ([`herald_cloudapi::ErrorClass`]) and settled in the store in
//! batches: accepted with the message id, retried with backoff, failed, skipped, in doubt, or
//! released when its campaign was paused. Leases are renewed while jobs are held; a worker
//! that dies leaves its jobs to lease expiry, and started ones become in doubt rather than
//! pending, so a request that may have reached Meta is never repeated blindly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_cloudapi::{Client, Messages};
use herald_core::{CampaignAction, CampaignId, MessageTemplate, PauseKind, PauseReason};
use herald_store::{Settle, Store, StoreError};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod config;
mod held;
mod lane;
mod maintenance;
pub mod policy;
mod settler;
mod wake;

pub use config::{ConfigError, LimitConfig, MAX_MPS, SenderConfig};
pub use maintenance::{Sweep, delete_ended, sweep};

/// How long a lane with nothing to send keeps polling before it ends (the supervisor starts
/// it again when its number has running campaigns).
const LANE_IDLE_EXIT: Duration = Duration::from_secs(10);
/// How often the supervisor looks for phone numbers with running campaigns.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);

/// What one run of the pool did (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub requests: u64,
    pub accepted: u64,
    /// Sends still unanswered when the shutdown deadline passed: settled as in doubt (their
    /// webhooks settle them), never sent again blindly.
    pub abandoned: u64,
    /// Sends woken too late for their time when the window had no room to move them: they
    /// gave it up and took a later one (metric result `late`).
    pub late: u64,
    /// Sends woken late that the window moved to when they really went (they cost nothing).
    pub moved: u64,
    /// Sends whose requests left after their latest time (the process stalled between
    /// letting them go and writing them): logged in the window at when they left.
    pub departed_late: u64,
    /// Requests answered after their latest time where answers come quickly (an API beside
    /// the sender): logged in the window at their answer, the latest they can have arrived.
    pub answered_late: u64,
    /// Jobs still held when the pool returned: settlements the store would not take before
    /// the deadline (their leases expire and they are reclaimed). 0 after a clean stop.
    pub held: u64,
}

/// The worker pool of one process.
pub struct Sender<S: Store, M: Messages = Client> {
    shared: Arc<Shared<S, M>>,
    settle_rx: mpsc::UnboundedReceiver<Settle>,
}

impl<S: Store, M: Messages> std::fmt::Debug for Sender<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("config", &self.shared.cfg)
            .finish_non_exhaustive()
    }
}

impl<S: Store, M: Messages> Sender<S, M> {
    /// A pool sending through `client`: the Cloud API [`Client`], or any other
    /// [`Messages`] (the simulator's in-process one in tests).
    pub fn new(store: Arc<S>, client: M, cfg: SenderConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let (ledger, settle_rx) = held::Ledger::new(cfg.max_held());
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
            store,
            client,
            cfg,
            ledger: Arc::new(ledger),
            campaigns: Mutex::new(HashMap::new()),
            pausing: Mutex::new(HashMap::new()),
            counts: Counts::default(),
        });
        Ok(Self { shared, settle_rx })
    }

    /// Sends until `shutdown` is cancelled; then stops claiming, releases what it holds but
    /// has not started, lets in-flight sends finish within the deadline, settles them and
    /// returns.
    pub async fn run(self, shutdown: CancellationToken) -> Report {
        let Self { shared, settle_rx } = self;
        let lanes_done = CancellationToken::new();
        let settler = tokio::spawn(settler::run(shared.clone(), settle_rx, lanes_done.clone()));
        let renewer = tokio::spawn(renew_leases(shared.clone(), lanes_done.clone()));
        let maintenance = shared.cfg.maintenance.then(|| {
            tokio::spawn(maintenance::run(
                shared.store.clone(),
                shared.cfg.clone(),
                shutdown.clone(),
            ))
        });
        let mut running: HashMap<String, tokio::task::JoinHandle<u64>> = HashMap::new();
        let mut abandoned = 0;
        loop {
            match shared.store.running_campaigns().await {
                Ok(campaigns) => {
                    herald_core::recovered!(LISTS, "running campaigns are listed again");
                    // The compiled campaigns of those that stopped running go: the cache holds
                    // what runs, not every campaign ever seen (a job still held keeps its own).
                    if let Ok(mut cache) = shared.campaigns.lock() {
                        cache.retain(|id, _| campaigns.iter().any(|c| &c.id == id));
                    }
                    for c in campaigns {
                        if !shared.serves(&c.phone_number_id) {
                            continue;
                        }
                        let live = running
                            .get(&c.phone_number_id)
                            .is_some_and(|h| !h.is_finished());
                        if !live {
                            if let Some(h) = running.remove(&c.phone_number_id) {
                                abandoned += h.await.unwrap_or(0);
                            }
                            let lane = lane::Lane::new(shared.clone(), c.phone_number_id.clone());
                            let handle = tokio::spawn(lane.run(shutdown.clone()));
                            running.insert(c.phone_number_id, handle);
                        }
                    }
                }
                Err(e) => {
                    herald_core::warn_repeated!(LISTS, "cannot list running campaigns", error = %e)
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(SUPERVISE_EVERY) => {}
            }
        }
        for (_, h) in running {
            abandoned += h.await.unwrap_or(0);
        }
        lanes_done.cancel();
        let deadline = shared.cfg.shutdown_deadline;
        if tokio::time::timeout(deadline, settler).await.is_err() {
            tracing::error!(
                "settlements were still waiting for the store at the shutdown deadline; \
                 their jobs are left to lease expiry"
            );
        }
        renewer.abort();
        if let Some(m) = maintenance {
            let _ = m.await;
        }
        let report = Report {
            requests: shared.counts.requests.load(Ordering::Relaxed),
            accepted: shared.counts.accepted.load(Ordering::Relaxed),
            abandoned,
            late: shared.counts.late.load(Ordering::Relaxed),
            moved: shared.counts.moved.load(Ordering::Relaxed),
            departed_late: shared.counts.departed_late.load(Ordering::Relaxed),
            answered_late: shared.counts.answered_late.load(Ordering::Relaxed),
            held: shared.ledger.held() as u64,
        };
        tracing::info!(
            requests = report.requests,
            accepted = report.accepted,
            abandoned = report.abandoned,
            late = report.late,
            moved = report.moved,
            departed_late = report.departed_late,
            answered_late = report.answered_late,
            "sender stopped"
        );
        report
    }
}

/// What every lane, send task and the settler share.
struct Shared<S, M> {
    store: Arc<S>,
    client: M,
    cfg: SenderConfig,
    permits: Arc<Semaphore>,
    /// Every job this process holds, and where its settlement goes.
    ledger: Arc<held::Ledger>,
    campaigns: Mutex<HashMap<CampaignId, Arc<CampaignInfo>>>,
    /// Pauses asked for recently, by campaign id or `pnid:<id>`, so a burst of in-flight
    /// failures pauses once.
    pausing: Mutex<HashMap<String, Instant>>,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    accepted: AtomicU64,
    late: AtomicU64,
    moved: AtomicU64,
    departed_late: AtomicU64,
    answered_late: AtomicU64,
}

/// What the sender needs to know about a campaign, read again after [`CAMPAIGN_INFO_TTL`]
/// (a spec changes only in its cost cap and its template's category).
#[derive(Debug)]
struct CampaignInfo {
    loaded: Instant,
    /// The campaign has a `max_cost`: each claim of it is checked against it.
    capped: bool,
    template: MessageTemplate,
    /// A free-form message: only inside an open 24 h window.
    free_form: bool,
    /// A marketing template, or a template whose category is not known: the marketing-only
    /// suppression list applies to it.
    marketing: bool,
    /// How many times a recipient declined for its marketing limit (131049) is tried again.
    capped_retries: u32,
    /// The campaign's send window, when it has one.
    window: Option<herald_core::WindowRule>,
}

/// How long a campaign's [`CampaignInfo`] is used before it is read again.
const CAMPAIGN_INFO_TTL: Duration = Duration::from_secs(5);

/// How long jobs beyond a campaign's cost cap wait before they are claimed again, while what
/// the campaign admitted is still starting.
const BUDGET_RECHECK: Duration = Duration::from_millis(500);

/// A pause asked for again within this long is taken as already done.
const PAUSE_DEDUPE: Duration = Duration::from_secs(30);

impl<S: Store, M: Messages> Shared<S, M> {
    fn serves(&self, phone_number_id: &str) -> bool {
        self.cfg
            .phone_number_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == phone_number_id))
    }

    /// The compiled campaign, loaded once.
    async fn campaign(&self, id: &CampaignId) -> Result<Arc<CampaignInfo>, StoreError> {
        if let Some(c) = self.campaigns.lock().ok().and_then(|m| m.get(id).cloned())
            && c.loaded.elapsed() < CAMPAIGN_INFO_TTL
        {
            return Ok(c);
        }
        let c = self.store.campaign(id).await?;
        let template = c
            .spec
            .compile()
            .map_err(|e| StoreError::Corrupt(format!("campaign {id}'s message: {e}")))?;
        let window = (c.spec.send_window.as_ref())
            .map(herald_core::SendWindow::compile)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("campaign {id}'s send window: {e}")))?;
        let free_form = c.template.is_none()
            && c.spec.message.get("type").and_then(|t| t.as_str()) != Some("template");
        let marketing = !free_form
            && !matches!(
                c.spec.template_category.as_deref(),
                Some("UTILITY" | "AUTHENTICATION")
            );
        let info = Arc::new(CampaignInfo {
            loaded: Instant::now(),
            capped: c.spec.max_cost.is_some(),
            template,
            free_form,
            marketing,
            capped_retries: c.spec.frequency_capped_retries.unwrap_or(0),
            window,
        });
        if let Ok(mut m) = self.campaigns.lock() {
            m.insert(id.clone(), info.clone());
        }
        Ok(info)
    }

    /// What becomes of claimed jobs a capped campaign must not send: the last `over` of each
    /// capped campaign in `jobs` (claim order), where `over` counts the messages beyond its
    /// `max_cost` once the claim is on its way (`None`: send it).
    ///
    /// Read after the claim, the campaign's stats count every worker's claims as in flight:
    /// of two workers claiming at once, the later reader sees both, so together they never
    /// admit more than the cap allows. A campaign with no room left pauses (`budget`) once
    /// nothing it admitted is still waiting to start (a pause releases those: it would stop
    /// short of the cap); until then its extra jobs wait a moment and are claimed again.
    async fn over_budget(
        &self,
        infos: &HashMap<CampaignId, Arc<CampaignInfo>>,
        jobs: &[&herald_store::ClaimedJob],
    ) -> Result<Vec<Option<herald_store::Outcome>>, StoreError> {
        let mut out = vec![None; jobs.len()];
        for (id, _) in infos.iter().filter(|(_, c)| c.capped) {
            let (campaign, stats) = (self.store.campaign(id).await?, self.store.stats(id).await?);
            let (over, detail) = match &self.cfg.rate_card {
                Some(card) => {
                    let model = herald_core::cost::CostModel {
                        card,
                        today: herald_core::cost::today(),
                        // Not used by the cap, only by the estimate's low end.
                        delivery_rate: 1.0,
                    };
                    match model.over_cap(&campaign.spec, &stats) {
                        Some(check) if check.over > 0 => (
                            check.over,
                            format!(
                                "{} {} charged or on its way reaches max_cost {} (each message on its way counted at up to {}); resume with a higher max_cost to go on",
                                check.committed,
                                card.currency(),
                                check.cap,
                                check.unit
                            ),
                        ),
                        _ => continue,
                    }
                }
                // Without rates a cap cannot be kept: nothing of the campaign is sent.
                None => (
                    u64::MAX,
                    "the campaign has a max_cost but no rate card is loaded".to_owned(),
                ),
            };
            let mine: Vec<usize> = (0..jobs.len())
                .filter(|&i| &jobs[i].id.campaign == id)
                .collect();
            let held = mine.len() as u64;
            let pause = over >= held && stats.in_flight <= held;
            for &i in mine
                .iter()
                .rev()
                .take(usize::try_from(over).unwrap_or(usize::MAX))
            {
                out[i] = Some(if pause {
                    herald_store::Outcome::Released
                } else {
                    herald_store::Outcome::Deferred {
                        delay: BUDGET_RECHECK,
                    }
                });
            }
            if !pause {
                continue;
            }
            if let Ok(mut m) = self.campaigns.lock() {
                // A resume may bring a new cap: read the campaign again then.
                m.remove(id);
            }
            let reason = Self::pause_reason(PauseKind::Budget, None, detail);
            // Never skipped as a repeat: a campaign resumed with a cap it reaches again at
            // once must pause again, not have every claim put back while it runs.
            if let Ok(mut m) = self.pausing.lock() {
                m.remove(id.as_str());
            }
            self.pause_campaign(id, reason).await;
        }
        Ok(out)
    }

    /// True when this caller should make the pause call (no other did in the last while).
    fn first_to_pause(&self, key: String) -> bool {
        let Ok(mut m) = self.pausing.lock() else {
            return true;
        };
        let now = Instant::now();
        m.retain(|_, at| now.duration_since(*at) < PAUSE_DEDUPE);
        m.insert(key, now).is_none()
    }

    /// Pauses a campaign whose sends cannot succeed, once.
    async fn pause_campaign(&self, id: &CampaignId, reason: PauseReason) {
        if !self.first_to_pause(id.to_string()) {
            return;
        }
        match self
            .store
            .transition(id, CampaignAction::Pause, Some(reason.clone()))
            .await
        {
            Ok(_) => {
                metrics::counter!(herald_core::metrics::SENDER_PAUSES_TOTAL, "kind" => reason.kind.as_str())
                    .increment(1);
                tracing::warn!(campaign = %id, reason = %reason, "campaign paused");
            }
            // Already paused or ended: nothing to do.
            Err(StoreError::IllegalTransition(_) | StoreError::Final(..)) => {}
            Err(e) => {
                tracing::error!(campaign = %id, error = %e, "could not pause the campaign");
                if let Ok(mut m) = self.pausing.lock() {
                    m.remove(id.as_str());
                }
            }
        }
    }

    /// Pauses every running campaign on a phone number that cannot send, once.
    async fn pause_sender(&self, phone_number_id: &str, reason: PauseReason) {
        let key = format!("pnid:{phone_number_id}");
        if !self.first_to_pause(key.clone()) {
            return;
        }
        match self
            .store
            .pause_matching(Some(phone_number_id), None, reason.clone())
            .await
        {
            Ok(paused) => {
                metrics::counter!(herald_core::metrics::SENDER_PAUSES_TOTAL, "kind" => "sender_fatal")
                    .increment(paused.len() as u64);
                tracing::error!(
                    phone_number_id,
                    campaigns = paused.len(),
                    reason = %reason,
                    "every campaign on the phone number paused"
                );
            }
            Err(e) => {
                tracing::error!(phone_number_id, error = %e, "could not pause the phone number's campaigns");
                if let Ok(mut m) = self.pausing.lock() {
                    m.remove(&key);
                }
            }
        }
    }

    /// Pauses every running campaign of a portfolio's numbers, once.
    async fn pause_portfolio(&self, portfolio: &str, reason: PauseReason) {
        if !self.first_to_pause(format!("portfolio:{portfolio}")) {
            return;
        }
        let numbers: std::collections::BTreeSet<String> = match self.store.running_campaigns().await
        {
            Ok(running) => running
                .into_iter()
                .map(|c| c.phone_number_id)
                .filter(|p| self.cfg.messaging_limit.portfolio_of(p) == portfolio)
                .collect(),
            Err(e) => {
                tracing::error!(portfolio, error = %e, "could not list the portfolio's campaigns to pause them");
                if let Ok(mut m) = self.pausing.lock() {
                    m.remove(&format!("portfolio:{portfolio}"));
                }
                return;
            }
        };
        let mut paused = 0;
        for pnid in &numbers {
            match self
                .store
                .pause_matching(Some(pnid), None, reason.clone())
                .await
            {
                Ok(p) => paused += p.len(),
                Err(e) => {
                    tracing::error!(portfolio, error = %e, "could not pause a number's campaigns")
                }
            }
        }
        metrics::counter!(herald_core::metrics::SENDER_PAUSES_TOTAL, "kind" => "messaging_limit")
            .increment(paused as u64);
        tracing::error!(
            portfolio,
            campaigns = paused,
            reason = %reason,
            "Meta refused a send for the messaging limit (131048): every campaign of the portfolio paused"
        );
    }

    fn pause_reason(kind: PauseKind, code: Option<i64>, detail: String) -> PauseReason {
        match code {
            Some(c) => PauseReason::from_code(kind, c, detail),
            None => PauseReason {
                kind,
                code: None,
                detail,
            },
        }
    }
}

/// Failures to list the running campaigns, logged a few times however long they last.
static LISTS: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();

/// Renews every held lease at a third of its length until the lanes are done; a failed
/// renewal is tried again after a twelfth, so one lost call does not end a short lease.
async fn renew_leases<S: Store, M: Messages>(shared: Arc<Shared<S, M>>, done: CancellationToken) {
    let mut wait = shared.cfg.lease / 3;
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = shared.cfg.lease / 3;
        let held = shared.ledger.samples();
        if held.is_empty() {
            continue;
        }
        static RENEWALS: herald_core::repeated::Repeated = herald_core::repeated::Repeated::new();
        match shared.store.renew(&held, shared.cfg.lease).await {
            Ok(()) => herald_core::recovered!(RENEWALS, "leases are renewed again"),
            Err(e) => {
                wait = shared.cfg.lease / 12;
                herald_core::warn_repeated!(
                    RENEWALS,
                    "could not renew leases",
                    error = %e,
                    claims = held.len()
                );
            }
        }
    }
}

/// A uniform draw in `[0, 1)` for jitter.
fn unit() -> f64 {
    rand::random::<f64>()
}
