//! Claiming the next batch and admitting it, as a task of its own beside the lane's rounds:
//! a claim of a thousand jobs and the lookups that admit them (suppressions, open windows,
//! the messaging limit) take the store a few milliseconds, and made between two rounds
//! they held every round up for as long (about a twentieth of the time at a high rate).
//! What it learns that the lane keeps (the limit found spent, or with room again) comes
//! back with the jobs and is applied by the lane ([`Lane::refilled`]).

use super::*;

/// What a refill needs from its lane, owned, so that it runs as a task of its own.
pub(super) struct Refill<S, M> {
    pub(super) shared: Arc<Shared<S, M>>,
    pub(super) pnid: Arc<str>,
    pub(super) portfolio: Arc<str>,
    /// The messaging-limit budget to enforce; `None`: none.
    pub(super) limit: Option<u64>,
    /// The lane's clock, for when a spent limit frees.
    pub(super) clock: StoreClock,
}

/// A refill's outcome: the jobs admitted, ready for slots, and what was learnt of the
/// messaging limit.
pub(super) struct Refilled {
    pub(super) ready: Vec<Ready>,
    pub(super) limit: Option<LimitSeen>,
}

/// What a refill found of the messaging limit, when it asked.
pub(super) enum LimitSeen {
    /// Spent: sends outside open windows wait until it frees (when known).
    Spent(Option<Timestamp>),
    /// Every send asked about had room.
    Room,
}

/// How long a lane whose messaging limit is spent waits before claiming again.
pub(super) fn limit_wait(clock: &StoreClock, frees_at: Option<Timestamp>) -> Duration {
    let until = frees_at.map_or(LIMIT_RECHECK, |t| {
        clock.local(t).saturating_duration_since(Instant::now())
    });
    until.clamp(Duration::from_millis(100), LIMIT_RECHECK)
}

impl<S: Store, M: Messages> Refill<S, M> {
    /// Claims a batch and admits it.
    pub(super) async fn run(self, request: ClaimRequest) -> Result<Refilled, StoreError> {
        let jobs = self.shared.store.claim(&request).await?;
        let jobs = self.shared.ledger.hold(jobs);
        self.admit(jobs).await
    }

    /// Admits a claimed batch: suppressed recipients and free-form messages outside an open
    /// window are skipped, jobs outside their campaign's send window or over its cost cap
    /// wait; the rest are ready for a slot.
    async fn admit(&self, jobs: Vec<Held>) -> Result<Refilled, StoreError> {
        let mut out = Refilled {
            ready: Vec::new(),
            limit: None,
        };
        if jobs.is_empty() {
            return Ok(out);
        }
        let mut infos: HashMap<CampaignId, Arc<CampaignInfo>> = HashMap::new();
        for h in &jobs {
            let j = h.job();
            if infos.contains_key(&j.id.campaign) {
                continue;
            }
            match self.shared.campaign(&j.id.campaign).await {
                Ok(c) => {
                    infos.insert(j.id.campaign.clone(), c);
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    let reason = Shared::<S, M>::pause_reason(
                        PauseKind::CampaignFatal,
                        None,
                        format!("the campaign cannot be sent: {e}"),
                    );
                    self.shared.pause_campaign(&j.id.campaign, reason).await;
                }
            }
        }
        // Outside its send window in the recipient's time zone, a job waits for it to open.
        let jobs = if infos.values().any(|c| c.window.is_some()) {
            self.outside_windows(jobs, &infos)
        } else {
            jobs
        };
        let claimed: Vec<&herald_store::ClaimedJob> = jobs.iter().map(Held::job).collect();
        let over_budget = self.shared.over_budget(&infos, &claimed).await?;
        drop(claimed);
        let jobs: Vec<Held> = jobs
            .into_iter()
            .zip(over_budget)
            .filter_map(|(held, over)| match over {
                Some(outcome) => {
                    count_send(&self.pnid, "budget_wait");
                    held.settle(outcome);
                    None
                }
                None => Some(held),
            })
            .collect();
        if jobs.is_empty() {
            return Ok(out);
        }
        let phones: Vec<PhoneE164> = jobs.iter().map(|h| h.job().phone).collect();
        // Marketing templates also skip the numbers that stopped marketing (131050, a stop);
        // utility and service messages still reach them.
        let scopes = self.shared.store.suppressions(&self.pnid, &phones).await?;
        let suppressed: Vec<bool> = scopes
            .iter()
            .zip(&jobs)
            .map(|(scope, h)| match scope {
                Some(SuppressionScope::All) => true,
                Some(SuppressionScope::Marketing) => {
                    infos.get(&h.job().id.campaign).is_some_and(|c| c.marketing)
                }
                None => false,
            })
            .collect();
        let free_form: Vec<bool> = jobs
            .iter()
            .map(|h| infos.get(&h.job().id.campaign).is_some_and(|c| c.free_form))
            .collect();
        // Whose window is open: free-form messages need one; with a messaging limit, a
        // template to someone with an open window costs no budget.
        let ask: Vec<usize> = (0..jobs.len())
            .filter(|&i| self.limit.is_some() || free_form[i])
            .collect();
        let mut window_open: Vec<Option<bool>> = vec![None; jobs.len()];
        if !ask.is_empty() {
            let asked: Vec<PhoneE164> = ask.iter().map(|&i| jobs[i].job().phone).collect();
            let open = self.shared.store.windows_open(&self.pnid, &asked).await?;
            for (&i, o) in ask.iter().zip(open) {
                window_open[i] = Some(o);
            }
        }
        let mut reach: Vec<Option<Reach>> = vec![None; jobs.len()];
        if let Some(limit) = self.limit {
            let count: Vec<usize> = (0..jobs.len())
                .filter(|&i| {
                    !free_form[i]
                        && window_open[i] == Some(false)
                        && !suppressed.get(i).copied().unwrap_or(false)
                })
                .collect();
            if !count.is_empty() {
                let phones: Vec<PhoneE164> = count.iter().map(|&i| jobs[i].job().phone).collect();
                let (answers, used) = self
                    .shared
                    .store
                    .reserve_reach(&self.portfolio, limit, REACH_WINDOW, &phones)
                    .await?;
                for (&i, a) in count.iter().zip(answers) {
                    reach[i] = Some(a);
                }
                metrics::gauge!(m::SENDER_MESSAGING_LIMIT_USED, "portfolio" => self.portfolio.to_string())
                    .set(used.used as f64);
                out.limit = Some(if reach.contains(&Some(Reach::Full)) {
                    LimitSeen::Spent(used.frees_at)
                } else {
                    LimitSeen::Room
                });
            }
        }
        let now = Instant::now();
        out.ready.reserve_exact(jobs.len());
        for (i, held) in jobs.into_iter().enumerate() {
            let skip = if suppressed.get(i).copied().unwrap_or(false) {
                Some(SkipReason::Suppressed)
            } else if free_form[i] && window_open[i] == Some(false) {
                Some(SkipReason::WindowClosed)
            } else {
                None
            };
            if let Some(reason) = skip {
                count_send(&self.pnid, "skipped");
                held.settle(Outcome::Skipped { reason });
                continue;
            }
            if reach[i] == Some(Reach::Full) {
                count_send(&self.pnid, "limit_wait");
                let frees_at = match out.limit {
                    Some(LimitSeen::Spent(t)) => t,
                    _ => None,
                };
                held.settle(Outcome::Deferred {
                    delay: limit_wait(&self.clock, frees_at),
                });
                continue;
            }
            // A campaign that could not be loaded was paused above: the job is released.
            if let Some(c) = infos.get(&held.job().id.campaign) {
                out.ready.push(Ready {
                    campaign: c.clone(),
                    held,
                    since: now,
                    started_at: None,
                    reach: match reach[i] {
                        Some(Reach::Reserved(at)) => Some(at),
                        _ => None,
                    },
                    slot: None,
                });
            }
        }
        Ok(out)
    }

    /// Settles the jobs outside their campaign's send window (`AwaitWindow`, until it
    /// opens in the recipient's zone) and answers the others.
    fn outside_windows(
        &self,
        jobs: Vec<Held>,
        infos: &HashMap<CampaignId, Arc<CampaignInfo>>,
    ) -> Vec<Held> {
        let now = jiff::Timestamp::now();
        jobs.into_iter()
            .filter_map(|held| {
                let j = held.job();
                let window = infos.get(&j.id.campaign).and_then(|c| c.window.as_ref());
                match window.and_then(|w| w.wait(j.region, now)) {
                    Some(delay) => {
                        count_send(&self.pnid, "window_wait");
                        held.settle(Outcome::AwaitWindow { delay });
                        None
                    }
                    None => Some(held),
                }
            })
            .collect()
    }
}
