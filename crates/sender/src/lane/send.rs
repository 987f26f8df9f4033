//! One send's life: wait for its slot, render and make the request, classify the answer by
//! its error class, and queue the settlement (the lane's settler writes it to the store).
//! Nothing here decides *when* to send; that is the lane's schedule.

use super::*;

/// One send: waits for its slot, makes the request, classifies the answer, queues the
/// settlement.
pub(super) struct SendTask<S, M> {
    pub(super) shared: Arc<Shared<S, M>>,
    pub(super) pnid: Arc<str>,
    pub(super) portfolio: Arc<str>,
    pub(super) signals: Arc<Signals>,
}

impl<S: Store, M: Messages> SendTask<S, M> {
    /// `at` and `until`: when it is planned, and the latest it may go unmoved (this
    /// process's clock; `None`, no slot: it goes at once).
    pub(super) async fn run(
        self,
        mut r: Ready,
        at: Instant,
        until: Option<Instant>,
        permit: OwnedSemaphorePermit,
    ) {
        let job = r.held.job();
        let mut body =
            Vec::with_capacity(r.campaign.template.len_hint() + job.vars.encoded().len());
        r.campaign.template.render_into(
            &mut body,
            job.phone,
            &job.id.to_callback_data(),
            &job.vars,
        );
        if at > Instant::now() {
            crate::wake::until(at).await;
        }
        // The latest the send may go, by the store's clock and this process's.
        let mut latest = until.zip(r.slot);
        // Timer wheels wake up to about a millisecond late as a matter of course: the plan
        // gave the send that and more (the window's slack) before it must be moved.
        if let Some((until, slot)) = latest
            && Instant::now() > until
        {
            match self.move_to_now(slot, until).await {
                Some(moved) => latest = Some(moved),
                None => {
                    // No room in the window now (or no answer): its time is lost; it goes
                    // back to its lane for another.
                    count_send(&self.pnid, "late");
                    self.shared.counts.late.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    // Should the lane have ended (shutdown), the job comes back here and is
                    // dropped: released, never sent.
                    let _ = self.signals.late.send(r);
                    return;
                }
            }
        }
        r.held.sending();
        let meters = &self.signals.meters;
        meters.in_flight.increment(1.0);
        self.shared.counts.requests.fetch_add(1, Ordering::Relaxed);
        self.signals.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // Boxed: the HTTP future is large, and inline it would make every send task (moved
        // into its allocation at spawn) as large.
        let result = match latest {
            Some(latest) => {
                // The departure is looked at as soon as it is noted, not when the answer
                // comes: Meta may take a second to answer, and the send a window later is
                // planned within one.
                let departure = Departure::default();
                let mut request =
                    Box::pin(self.shared.client.send_noted(&self.pnid, body, &departure));
                let mut seen = false;
                let result = loop {
                    tokio::select! {
                        result = &mut request => break result,
                        left = departure.noted(), if !seen => {
                            seen = true;
                            self.departed(latest, left);
                        }
                    }
                };
                if let Some(left) = departure.get() {
                    if !seen {
                        self.departed(latest, left);
                    }
                    self.answered_at(latest, left, Instant::now().into_std());
                }
                result
            }
            None => Box::pin(self.shared.client.send_raw(&self.pnid, body)).await,
        };
        meters.duration.record(started.elapsed().as_secs_f64());
        meters.in_flight.decrement(1.0);
        match result {
            Ok(answer) => self.answered(&mut r.held, &answer),
            // Boxed for the same reason: its store calls are large futures, rarely made
            // (moving one into its box costs a copy of the whole, which an acceptance, the
            // usual answer, does without).
            Err(e) => Box::pin(self.refused(&mut r.held, &r.campaign, r.reach, e)).await,
        }
        r.held.settle_decided();
        drop(permit);
    }

    /// A stall (this process or the machine was busy) made this send late, past the latest
    /// time its slot allows. Sent now without a word, it could be one too many in a second
    /// of Meta's with the sends planned after it: the store moves it to now if the window
    /// has room, and the plans after it count it there. The move is good only if the send
    /// then goes by its new latest time (the answer may itself come late on a busy
    /// machine), so it is asked again, once at most. The lane's mover asks for all its late
    /// sends at once. Answers, when the send may go now, its new latest time on this
    /// process's clock and its slot with the new one on the store's.
    async fn move_to_now(&self, slot: Slot, until: Instant) -> Option<(Instant, Slot)> {
        for _ in 0..2 {
            let (answer, moved) = tokio::sync::oneshot::channel();
            if self
                .signals
                .moves
                .send(MoveAsk {
                    slot: slot.id,
                    pace: slot.pace,
                    answer,
                })
                .is_err()
            {
                return None;
            }
            let Ok(Some(moved)) = moved.await else {
                return None;
            };
            // The new latest time on this process's clock: the old one, shifted as much.
            let shift = moved.duration_since(slot.until).unsigned_abs();
            if Instant::now() <= until + shift {
                self.shared.counts.moved.fetch_add(1, Ordering::Relaxed);
                return Some((
                    until + shift,
                    Slot {
                        until: moved,
                        ..slot
                    },
                ));
            }
        }
        None
    }

    /// The window counts a planned send at the latest time it may go; once its request has
    /// left, it is logged at when it left (on the store's clock), so that the sends a window
    /// later are planned from its real departure. A request that left after its latest time
    /// (the process stalled between letting it go and writing it) is logged at once: the
    /// sends a window later then go after it, so Meta never counts one too many in a second.
    /// One that left in time is logged at its departure too, the slack it did not use then
    /// delaying nothing, unless the number's answers come quickly: then it is logged at its
    /// answer (see [`Self::answered_at`]).
    fn departed(&self, latest: (Instant, Slot), left: std::time::Instant) {
        if Instant::from_std(left) > latest.0 {
            self.log_at(latest, left);
            self.shared
                .counts
                .departed_late
                .fetch_add(1, Ordering::Relaxed);
        } else if !self.quick(latest.1, self.signals.round_trips.fastest()) {
            self.log_at(latest, left);
        }
    }

    /// Where the number's answers come quickly (see [`RoundTrips`]), a request is logged at
    /// the latest it can have reached Meta: its answer, less the part of the window's guard
    /// that covers the way there. One answered later than that may have reached Meta after
    /// its latest time, though it left the process in time: the machine may have stalled
    /// between noting its departure and the request's reaching the socket, where the sender
    /// cannot see. Where no answer comes that quickly, the answer says nothing of the way
    /// there: the request stays logged at its departure.
    fn answered_at(
        &self,
        latest: (Instant, Slot),
        left: std::time::Instant,
        answered: std::time::Instant,
    ) {
        let fastest = self
            .signals
            .round_trips
            .observe(answered.saturating_duration_since(left));
        if !self.quick(latest.1, fastest) {
            return;
        }
        let arrived = answered
            .checked_sub(self.way_margin(latest.1))
            .map_or(left, |a| a.max(left));
        // Counted once: a request that left late was counted as it left.
        if arrived > left && Instant::from_std(arrived) > latest.0 {
            self.shared
                .counts
                .answered_late
                .fetch_add(1, Ordering::Relaxed);
        }
        self.log_at(latest, arrived);
    }

    /// The part of the window's guard that widens it against the way to Meta (the rest is
    /// the slack a send has).
    fn way_margin(&self, slot: Slot) -> Duration {
        self.shared.cfg.window_guard.saturating_sub(slot.pace.slack)
    }

    /// Whether answers come quickly enough, the fastest recent round trip being `fastest`,
    /// to bound when requests reached Meta: within half the way margin.
    fn quick(&self, slot: Slot, fastest: Duration) -> bool {
        fastest <= self.way_margin(slot) / 2
    }

    /// Logs the send in the window at `t` (this process's clock), shifted onto the store's
    /// clock by its latest time (`until`), which both clocks know.
    fn log_at(&self, (until, slot): (Instant, Slot), t: std::time::Instant) {
        let t = Instant::from_std(t);
        let at = if t >= until {
            slot.until + t.duration_since(until)
        } else {
            slot.until - until.duration_since(t)
        };
        let _ = self.signals.departed.send((slot.id, at));
    }

    /// Decides the job's outcome from a success answer: accepted, given a message id, or in
    /// doubt without one.
    fn answered(&self, held: &mut Held, answer: &herald_cloudapi::SendResponse) {
        let outcome = match answer
            .messages
            .first()
            .and_then(|msg| WaMessageId::new(&msg.id).ok())
        {
            Some(message_id) => {
                self.shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
                self.signals.meters.accepted.increment(1);
                Outcome::Accepted { message_id }
            }
            None => {
                // A success without a usable id: Meta may well have taken it.
                tracing::warn!(job = %held.job().id, "a send answer had no message id; in doubt");
                count_send(&self.pnid, "in_doubt");
                Outcome::InDoubt
            }
        };
        held.decided(outcome);
    }

    /// Decides the job's outcome from an error and acts on it. The outcome is recorded in
    /// `held` before any store call that follows, so an abort there cannot turn a known
    /// answer into a doubt.
    async fn refused(
        &self,
        held: &mut Held,
        campaign_info: &CampaignInfo,
        reach: Option<Timestamp>,
        e: herald_cloudapi::Error,
    ) {
        let job = held.job();
        let (phone, attempts) = (job.phone, job.attempts);
        let campaign = job.id.campaign.clone();
        let class = e.class();
        let code = e.code();
        metrics::counter!(
            m::SENDER_API_ERRORS_TOTAL,
            "class" => class.as_str(),
            "code" => code.map_or("transport", code_label)
        )
        .increment(1);
        tracing::debug!(job = %job.id, to = %phone.masked(), error = %e, "send failed");
        let detail = || {
            e.graph_error()
                .and_then(|g| {
                    g.error_user_msg
                        .clone()
                        .or_else(|| g.details().map(str::to_owned))
                        .or_else(|| g.message.clone())
                })
                .unwrap_or_else(|| e.to_string())
                .chars()
                .take(300)
                .collect::<String>()
        };
        let decision = decide(class, code, attempts, &self.shared.cfg.backoff, unit());
        // A Graph error proves Meta refused: the message never reached the user, so its pair
        // reservation goes back and a retry need not wait out the pair interval (unless the
        // refusal was the pair rate itself).
        let refused = e.graph_error().is_some()
            && class != ErrorClass::PairLimited
            && !matches!(decision, Decision::InDoubt);
        match decision {
            Decision::Retry(d) => {
                count_send(
                    &self.pnid,
                    if class == ErrorClass::PairLimited {
                        "pair_limited"
                    } else {
                        "retry"
                    },
                );
                held.decided(Outcome::Delayed { delay: d });
            }
            Decision::Defer(d) => {
                if class == ErrorClass::Throttled {
                    self.signals.throttles.fetch_add(1, Ordering::Relaxed);
                }
                count_send(&self.pnid, "throttled");
                held.decided(Outcome::Deferred { delay: d });
            }
            Decision::Fail(code) => {
                count_send(&self.pnid, "failed");
                held.decided(Outcome::Failed { code });
                if let Some(c) = e.code() {
                    let why = herald_store::Why::now(format!("error {c}"));
                    let store = &self.shared.store;
                    let listed = if ErrorClass::suppresses_recipient(c) {
                        store.suppress(&self.pnid, &[phone], &why).await
                    } else if ErrorClass::stops_marketing(c) {
                        store.suppress_marketing(&self.pnid, &[phone], &why).await
                    } else {
                        Ok(())
                    };
                    if let Err(err) = listed {
                        tracing::warn!(error = %err, code = c, "could not add the number to a suppression list");
                    }
                }
            }
            // The campaign opted in to trying a capped recipient again, a day later.
            Decision::Skip(SkipReason::FrequencyCapped)
                if let Some(delay) = capped_retry(
                    campaign_info.capped_retries,
                    attempts,
                    campaign_info.marketing,
                    phone,
                ) =>
            {
                count_send(&self.pnid, "retry");
                held.decided(Outcome::Delayed { delay });
            }
            Decision::Skip(reason) => {
                count_send(&self.pnid, "skipped");
                held.decided(Outcome::Skipped { reason });
            }
            Decision::InDoubt => {
                count_send(&self.pnid, "in_doubt");
                held.decided(Outcome::InDoubt);
            }
            // Meta counts the portfolio's messaging limit spent: every number of the
            // portfolio would be refused the same way.
            Decision::PausePortfolio => {
                count_send(&self.pnid, "paused");
                held.decided(Outcome::Released);
                let reason =
                    Shared::<S, M>::pause_reason(PauseKind::MessagingLimit, code, detail());
                self.shared.pause_portfolio(&self.portfolio, reason).await;
            }
            Decision::PauseCampaign => {
                count_send(&self.pnid, "paused");
                held.decided(Outcome::Released);
                let reason = Shared::<S, M>::pause_reason(PauseKind::CampaignFatal, code, detail());
                self.shared.pause_campaign(&campaign, reason).await;
            }
            Decision::PauseSender => {
                count_send(&self.pnid, "paused");
                held.decided(Outcome::Released);
                let reason = Shared::<S, M>::pause_reason(PauseKind::SenderFatal, code, detail());
                self.shared.pause_sender(&self.pnid, reason).await;
            }
        }
        if refused
            && let Err(err) = self
                .shared
                .store
                .release_pair(&self.pnid, phone, &campaign)
                .await
        {
            // The reservation then simply runs out.
            tracing::debug!(error = %err, "could not give a pair reservation back");
        }
        // Nor did it count against the messaging limit.
        if refused
            && let Some(at) = reach
            && let Err(err) = self
                .shared
                .store
                .release_reach(&self.portfolio, phone, at)
                .await
        {
            // It then stays counted for the day: the budget errs on the safe side.
            tracing::debug!(error = %err, "could not give a messaging-limit place back");
        }
    }
}
