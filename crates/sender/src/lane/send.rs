//! One send's life: wait for its slot, render and make the request, classify the answer by
//! its error class, and queue the settlement (the lane's settler writes it to the store).
//! Nothing here decides *when* to send; that is the lane's schedule.

use super::*;

/// One send: waits for its slot, makes the request, classifies the answer, queues the
/// settlement.
pub(super) struct Send<S> {
    pub(super) shared: Arc<Shared<S>>,
    pub(super) pnid: Arc<str>,
    pub(super) signals: Arc<Signals>,
}

impl<S: Store> Send<S> {
    pub(super) async fn run(self, r: Ready, at: Instant, permit: OwnedSemaphorePermit) {
        let mut body =
            Vec::with_capacity(r.campaign.template.len_hint() + r.job.vars.encoded().len());
        r.campaign.template.render_into(
            &mut body,
            r.job.phone,
            &r.job.id.to_callback_data(),
            &r.job.vars,
        );
        if at > Instant::now() {
            sleep_until(at).await;
        }
        let late = Instant::now().saturating_duration_since(at);
        if late > LATE_LIMIT {
            // A stall (this process or the machine was busy) made this send late: sent now,
            // it would crowd the sends after it above the rate. Its slot is lost; it goes
            // back to its lane for another.
            count_send("late");
            self.shared.counts.late.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            if let Err(back) = self.signals.late.send(r) {
                // The lane has ended (shutdown): the job was never sent.
                self.settle(&back.0.job, Outcome::Released).await;
            }
            return;
        }
        metrics::gauge!(m::SENDER_IN_FLIGHT_REQUESTS).increment(1.0);
        self.shared.counts.requests.fetch_add(1, Ordering::Relaxed);
        self.signals.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // Boxed: the HTTP future is large, and inline it would make every send task (moved
        // into its allocation at spawn) as large.
        let result = Box::pin(self.shared.client.send_raw(&self.pnid, body)).await;
        metrics::histogram!(m::SENDER_SEND_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::SENDER_IN_FLIGHT_REQUESTS).decrement(1.0);
        // Boxed for the same reason: its store calls are large futures, rarely made.
        let outcome = Box::pin(self.outcome(&r.job, result)).await;
        self.settle(&r.job, outcome).await;
        drop(permit);
    }

    async fn settle(&self, job: &ClaimedJob, outcome: Outcome) {
        let settle = Settle {
            job: JobRef::from(job),
            outcome,
        };
        if self.shared.settle_tx.send(settle).await.is_err() {
            tracing::error!("the settler stopped early; the job is left to lease expiry");
        }
    }

    async fn outcome(
        &self,
        job: &ClaimedJob,
        result: Result<herald_cloudapi::SendResponse, herald_cloudapi::Error>,
    ) -> Outcome {
        let e = match result {
            Ok(resp) => {
                return match resp
                    .messages
                    .first()
                    .and_then(|msg| WaMessageId::new(&msg.id).ok())
                {
                    Some(message_id) => {
                        self.shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
                        count_send("accepted");
                        Outcome::Accepted { message_id }
                    }
                    None => {
                        // A success without a usable id: Meta may well have taken it.
                        tracing::warn!(job = %job.id, "a send answer had no message id; in doubt");
                        count_send("in_doubt");
                        Outcome::InDoubt
                    }
                };
            }
            Err(e) => e,
        };
        let class = e.class();
        let code = e.code();
        metrics::counter!(
            m::SENDER_API_ERRORS_TOTAL,
            "class" => class.as_str(),
            "code" => code.map_or("transport", code_label)
        )
        .increment(1);
        tracing::debug!(job = %job.id, to = %job.phone.masked(), error = %e, "send failed");
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
        match decide(class, code, job.attempts, &self.shared.cfg.backoff, unit()) {
            Decision::Retry(d) => {
                count_send(if class == ErrorClass::PairLimited {
                    "pair_limited"
                } else {
                    "retry"
                });
                Outcome::Delayed {
                    delay_ms: millis(d),
                }
            }
            Decision::Defer(d) => {
                if class == ErrorClass::Throttled {
                    self.signals.throttles.fetch_add(1, Ordering::Relaxed);
                }
                count_send("throttled");
                Outcome::Deferred {
                    delay_ms: millis(d),
                }
            }
            Decision::Fail(code) => {
                count_send("failed");
                if e.code().is_some_and(ErrorClass::suppresses_recipient)
                    && let Err(err) = self.shared.store.suppress(&self.pnid, &[job.phone]).await
                {
                    tracing::warn!(error = %err, "could not add an undeliverable number to the suppression list");
                }
                Outcome::Failed { code }
            }
            Decision::Skip(reason) => {
                count_send("skipped");
                Outcome::Skipped { reason }
            }
            Decision::InDoubt => {
                count_send("in_doubt");
                Outcome::InDoubt
            }
            Decision::PauseCampaign => {
                count_send("paused");
                let reason = Shared::<S>::pause_reason(PauseKind::CampaignFatal, code, detail());
                self.shared.pause_campaign(&job.id.campaign, reason).await;
                Outcome::Released
            }
            Decision::PauseSender => {
                count_send("paused");
                let reason = Shared::<S>::pause_reason(PauseKind::SenderFatal, code, detail());
                self.shared.pause_sender(&self.pnid, reason).await;
                Outcome::Released
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
