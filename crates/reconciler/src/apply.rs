//! Applying webhook deliveries to the store.
//!
//! A batch of deliveries is parsed, every status in every entry and change is collected and
//! applied in one store call (Meta batches up to 1,000 per delivery, and many small deliveries
//! are common), then inbound messages, preferences and events are handled. Everything here is
//! idempotent — statuses move forward only, windows and suppressions are sets, a reply is
//! counted once per recipient — so a delivery applied twice (a retry from Meta, a reconciler
//! that died before acknowledging) changes nothing the second time. Anything that cannot be
//! applied is counted and kept as a dead letter, never a reason to stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herald_cloudapi::webhook::{
    ChangeValue, InboundMessage, Lenient, LimitValue, MessagesValue, Notification, Status,
    TemplateCategoryUpdate,
};
use herald_cloudapi::{ErrorClass, code_label};
use herald_core::metrics as m;
use herald_core::{
    DEFAULT_PORTFOLIO, JobId, MessagingLimit, PauseKind, PauseReason, PhoneE164, StatusEvent,
    WaMessageId, business_user_id,
};
use herald_store::{Applied, CampaignWalk, Pricing, StatusUpdate, Store, StoreError, Why};

/// Inbound message types Meta documents; anything else is kept as a dead letter (and still
/// counts as the user writing).
const KNOWN_TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "reaction",
    "location",
    "contacts",
    "interactive",
    "button",
    "order",
    "system",
    "unsupported",
    "request_welcome",
];

/// Template events that make the template unusable: campaigns sending it are paused.
const TEMPLATE_STOPS: &[&str] = &["PAUSED", "DISABLED", "REJECTED", "PENDING_DELETION"];

/// How the reconciler behaves.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Whole-message, case-insensitive keywords that opt a user out.
    pub opt_out_keywords: Vec<String>,
    /// Whole-message, case-insensitive keywords that opt a user back in.
    pub opt_in_keywords: Vec<String>,
    /// A text confirming an opt-in, and how to send it (`None`: no confirmation).
    pub opt_in_reply: Option<OptInReply>,
    /// The business portfolio of each WhatsApp Business Account id, for the messaging limits
    /// Meta announces by webhook; the others belong to the default portfolio.
    pub portfolios: HashMap<String, String>,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            opt_out_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
            opt_in_keywords: vec!["START".into()],
            opt_in_reply: None,
            portfolios: HashMap::new(),
        }
    }
}

/// What a [`SendText`] returns: whether the text was sent, or why not.
pub type SendTextFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Sends a free-form text to a user: `(phone number id, to, text)`.
pub type SendText = Arc<dyn Fn(String, PhoneE164, String) -> SendTextFuture + Send + Sync>;

/// The confirmation sent to a user who opted back in. Sent only inside the user's open
/// customer-service window (their opt-in message, written within the last 24 h, opened it),
/// where a free-form text is allowed; a failure to send is logged, never retried.
#[derive(Clone)]
pub struct OptInReply {
    pub text: String,
    pub send: SendText,
}

impl std::fmt::Debug for OptInReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptInReply")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

/// Applies deliveries. Cheap to share.
#[derive(Debug)]
pub struct Reconciler<S> {
    pub(crate) store: Arc<S>,
    cfg: ReconcilerConfig,
}

/// A status with where it came from.
struct Collected<'a> {
    pnid: &'a str,
    status: &'a Status,
    update: StatusUpdate,
}

fn count(name: &'static str, label: &'static str, value: &'static str) {
    metrics::counter!(name, label => value).increment(1);
}

impl<S: Store> Reconciler<S> {
    pub fn new(store: Arc<S>, cfg: ReconcilerConfig) -> Self {
        Self { store, cfg }
    }

    /// A template Meta re-categorised: its running campaigns pause, for an operator to resume
    /// knowing it (a utility template become marketing costs more and counts against the
    /// marketing limits). An impending change is only logged.
    async fn template_category(&self, t: &TemplateCategoryUpdate) -> Result<(), StoreError> {
        let template = t.template_key();
        let Some((from, to)) = t.changed() else {
            if let Some(to) = &t.correct_category {
                tracing::warn!(template = %template, to = %to, at = ?t.category_update_timestamp, "Meta will re-categorise a template");
            }
            return Ok(());
        };
        let reason = PauseReason {
            kind: PauseKind::TemplateCategory,
            code: None,
            detail: format!(
                "Meta re-categorised template {} ({}) from {from} to {to}: it is priced and \
                 limited as {to} now; resume to send on",
                t.message_template_name, t.message_template_language
            ),
        };
        let paused = self
            .store
            .pause_matching(None, Some(&template), reason)
            .await?;
        for id in &paused {
            tracing::warn!(campaign = %id, template = %template, from, to, "campaign paused: template category changed");
            count(m::SENDER_PAUSES_TOTAL, "kind", "template_category");
        }
        // Every campaign of the template still to send is priced at the new category (its
        // estimate shows the difference from the category it was first priced at).
        let to = to.to_ascii_uppercase();
        if herald_core::spec::TEMPLATE_CATEGORIES.contains(&to.as_str()) {
            let mut walk = CampaignWalk::new();
            while let Some(page) = walk.next(&*self.store).await? {
                for c in page {
                    if c.status.is_final()
                        || c.template.as_deref() != Some(template.as_str())
                        || c.spec.template_category.as_deref() == Some(to.as_str())
                    {
                        continue;
                    }
                    let mut spec = c.spec;
                    spec.template_category = Some(to.clone());
                    match self.store.update_spec(&c.id, &spec).await {
                        // Ended or deleted meanwhile: nothing left to price.
                        Ok(()) | Err(StoreError::Final(..) | StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Records the messaging limit Meta announced for the portfolio of WABA `waba`.
    async fn new_limit(&self, waba: &str, limit: MessagingLimit) -> Result<(), StoreError> {
        let portfolio = self
            .cfg
            .portfolios
            .get(waba)
            .map_or(DEFAULT_PORTFOLIO, String::as_str);
        tracing::warn!(portfolio, %limit, "Meta changed the messaging limit");
        self.store.set_messaging_limit(portfolio, limit).await
    }

    async fn dead(&self, reason: &'static str, payload: &[u8]) -> Result<(), StoreError> {
        count(m::RECONCILER_DEAD_LETTERS_TOTAL, "reason", reason);
        self.store.dead_letter(reason, "", payload).await
    }

    /// Applies a batch of raw deliveries. An error means the store failed: nothing after the
    /// failure is known to be applied, so the caller must not acknowledge the batch.
    pub async fn apply(&self, bodies: &[&[u8]]) -> Result<(), StoreError> {
        self.apply_batch(bodies, false).await
    }

    /// Applies deliveries that may have been applied before: read and not acknowledged (a
    /// crash, a store error), or taken over from another reconciler. As [`apply`](Self::apply),
    /// and what a first application writes beside each job is written again
    /// ([`StatusUpdate::replayed`]): the interrupted application may not have reached it.
    pub async fn apply_again(&self, bodies: &[&[u8]]) -> Result<(), StoreError> {
        self.apply_batch(bodies, true).await
    }

    async fn apply_batch(&self, bodies: &[&[u8]], replayed: bool) -> Result<(), StoreError> {
        let mut parsed = Vec::with_capacity(bodies.len());
        for body in bodies {
            match Notification::parse(body) {
                Ok(n) => parsed.push(n),
                Err(_) => self.dead("malformed_json", body).await?,
            }
        }
        let mut collected = Vec::new();
        for n in &parsed {
            for (_, value) in n.messages_values() {
                self.collect_statuses(value, &mut collected).await?;
            }
        }
        for c in &mut collected {
            c.update.replayed = replayed;
        }
        self.apply_statuses(&collected).await?;
        for n in &parsed {
            for entry in &n.entry {
                for change in &entry.changes {
                    match &change.value {
                        ChangeValue::Messages(v) => self.apply_messages(v).await?,
                        ChangeValue::TemplateStatus(t) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "template_status");
                            if TEMPLATE_STOPS.contains(&t.event.as_str()) {
                                let template = herald_core::spec::template_key(
                                    &t.message_template_name,
                                    &t.message_template_language,
                                );
                                let detail = format!(
                                    "template {} ({}) is {}{}",
                                    t.message_template_name,
                                    t.message_template_language,
                                    t.event,
                                    t.reason
                                        .as_deref()
                                        .filter(|r| *r != "NONE")
                                        .map(|r| format!(": {r}"))
                                        .unwrap_or_default()
                                );
                                let reason = PauseReason {
                                    kind: PauseKind::TemplateStatus,
                                    code: None,
                                    detail,
                                };
                                let paused = self
                                    .store
                                    .pause_matching(None, Some(&template), reason)
                                    .await?;
                                for id in &paused {
                                    tracing::warn!(campaign = %id, template = %template, event = %t.event, "campaign paused: template status changed");
                                    count(m::SENDER_PAUSES_TOTAL, "kind", "template_status");
                                }
                            }
                        }
                        ChangeValue::TemplateCategory(t) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "template_category");
                            self.template_category(t).await?;
                        }
                        ChangeValue::Capability(c) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "business_capability");
                            if let Some(limit) = c.messaging_limit() {
                                self.new_limit(&entry.id, limit).await?;
                            }
                        }
                        ChangeValue::PhoneQuality(q) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "phone_quality");
                            let number = q.display_phone_number.as_deref().unwrap_or_default();
                            tracing::warn!(event = %q.event, limit = ?q.current_limit, "phone number quality update");
                            // The number now sends at 1,000 messages/s (up to the configured
                            // ceiling).
                            if q.event == "THROUGHPUT_UPGRADE"
                                && !self.store.set_throughput_by_display(number, 1000).await?
                            {
                                tracing::warn!(
                                    display_phone_number = %number,
                                    "a throughput upgrade for a number no sender has recorded"
                                );
                            }
                            if let Some(limit) = q
                                .max_daily_conversations_per_business
                                .as_ref()
                                .and_then(LimitValue::limit)
                            {
                                self.new_limit(&entry.id, limit).await?;
                            }
                            self.store
                                .record_quality(number, &q.event, q.current_limit.as_deref())
                                .await?;
                        }
                        ChangeValue::AccountUpdate(a) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "account_update");
                            tracing::warn!(event = %a.event, "account update");
                        }
                        ChangeValue::Other(raw) => {
                            count(m::RECONCILER_EVENTS_TOTAL, "field", "other");
                            let payload =
                                format!("{{\"field\":{:?},\"value\":{}}}", change.field, raw.get());
                            self.dead("unknown_field", payload.as_bytes()).await?;
                        }
                    }
                }
            }
        }
        metrics::counter!(m::RECONCILER_ENTRIES_TOTAL).increment(bodies.len() as u64);
        Ok(())
    }

    async fn collect_statuses<'a>(
        &self,
        v: &'a MessagesValue,
        out: &mut Vec<Collected<'a>>,
    ) -> Result<(), StoreError> {
        let pnid = v
            .metadata
            .as_ref()
            .map_or("", |md| md.phone_number_id.as_str());
        for e in &v.errors {
            metrics::counter!(m::RECONCILER_WEBHOOK_ERRORS_TOTAL, "code" => code_label(e.code))
                .increment(1);
            tracing::warn!(code = e.code, "webhook reports an error");
        }
        for s in &v.statuses {
            let status = match s {
                Lenient::Parsed(s) => s,
                Lenient::Malformed { raw, .. } => {
                    self.dead("malformed_element", raw.get().as_bytes()).await?;
                    continue;
                }
            };
            let Some(event) = StatusEvent::parse(&status.status) else {
                if status.status == "deleted" {
                    count(m::RECONCILER_STATUSES_TOTAL, "result", "ignored");
                } else {
                    self.dead(
                        "unknown_status",
                        &serde_json::to_vec(status).unwrap_or_default(),
                    )
                    .await?;
                }
                continue;
            };
            let error_code = status.errors.first().map(|e| e.code);
            if let Some(code) = error_code {
                metrics::counter!(m::RECONCILER_WEBHOOK_ERRORS_TOTAL, "code" => code_label(code))
                    .increment(1);
            }
            out.push(Collected {
                pnid,
                status,
                update: StatusUpdate {
                    job: status
                        .biz_opaque_callback_data
                        .as_deref()
                        .and_then(JobId::from_callback_data),
                    message_id: WaMessageId::new(&status.id).ok(),
                    event,
                    timestamp: status.timestamp.map(|t| t.0),
                    error_code,
                    pricing: status.pricing.as_ref().map(|p| Pricing {
                        billable: p.billable,
                        category: p
                            .category
                            .as_ref()
                            .filter(|c| {
                                !c.is_empty()
                                    && c.len() <= 32
                                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                            })
                            .map(|c| c.to_ascii_lowercase()),
                        kind: p.kind.clone(),
                    }),
                    replayed: false,
                },
            });
        }
        Ok(())
    }

    async fn apply_statuses(&self, collected: &[Collected<'_>]) -> Result<(), StoreError> {
        if collected.is_empty() {
            return Ok(());
        }
        let updates: Vec<StatusUpdate> = collected.iter().map(|c| c.update.clone()).collect();
        let results = self.store.apply_status(&updates).await?;
        // Numbers behind business-scoped ids, learned from this batch: stored in one call
        // per phone number, not one per status (in 2026 most statuses name the id).
        let mut links: BTreeMap<&str, Vec<(String, PhoneE164)>> = BTreeMap::new();
        for (c, result) in collected.iter().zip(results) {
            let label = match result {
                Applied::Changed => "changed",
                Applied::NoChange => "no_change",
                Applied::Late => "late",
                Applied::Unknown => "unknown",
            };
            count(m::RECONCILER_STATUSES_TOTAL, "result", label);
            if result == Applied::Unknown {
                // Herald's callback data naming a job Herald no longer has: its campaign was
                // deleted (statuses and reads come for days after), or another deployment
                // shares the account. Nothing to keep.
                if c.update.job.is_some() {
                    tracing::debug!(job = ?c.update.job, "a status for a job Herald no longer has; ignored");
                    continue;
                }
                self.dead(
                    "unknown_message",
                    &serde_json::to_vec(c.status).unwrap_or_default(),
                )
                .await?;
                continue;
            }
            // A status naming the user's business-scoped id shows the number it stands for.
            if let Some(user) = c
                .status
                .recipient_user_id
                .as_deref()
                .and_then(business_user_id)
            {
                let phone = match PhoneE164::parse(&c.status.recipient_id) {
                    Ok(p) => Some(p),
                    // Hidden: the number Herald sent the message to.
                    Err(_) => {
                        let job = match (&c.update.job, &c.update.message_id) {
                            (Some(job), _) => Some(job.clone()),
                            (None, Some(id)) => self.store.job_for_message(id).await?,
                            (None, None) => None,
                        };
                        match job {
                            Some(job) => self.store.job(&job).await?.map(|v| v.phone),
                            None => None,
                        }
                    }
                };
                if let Some(phone) = phone {
                    links
                        .entry(c.pnid)
                        .or_default()
                        .push((user.to_owned(), phone));
                }
            }
            // Undeliverable numbers go on the suppression list, marketing-stopped ones on
            // the marketing-only list.
            if let Some(code) = c.update.error_code
                && (ErrorClass::suppresses_recipient(code) || ErrorClass::stops_marketing(code))
                && result == Applied::Changed
            {
                let phone = match PhoneE164::parse(&c.status.recipient_id) {
                    Ok(p) => Some(p),
                    Err(_) => match &c.update.job {
                        Some(job) => self.store.job(job).await?.map(|v| v.phone),
                        None => None,
                    },
                };
                if let Some(phone) = phone {
                    let why = Why::now(format!("error {code}"));
                    if ErrorClass::stops_marketing(code) {
                        self.store
                            .suppress_marketing(c.pnid, &[phone], &why)
                            .await?;
                    } else {
                        self.store.suppress(c.pnid, &[phone], &why).await?;
                    }
                    tracing::info!(phone = %phone.masked(), code, "recipient suppressed after a failed delivery");
                }
            }
        }
        for (pnid, mut links) in links {
            links.sort_unstable();
            links.dedup();
            self.link(pnid, &links).await?;
        }
        Ok(())
    }

    async fn apply_messages(&self, v: &MessagesValue) -> Result<(), StoreError> {
        let pnid = v
            .metadata
            .as_ref()
            .map_or("", |md| md.phone_number_id.as_str());
        for msg in &v.messages {
            let msg = match msg {
                Lenient::Parsed(m) => m,
                Lenient::Malformed { raw, .. } => {
                    self.dead("malformed_element", raw.get().as_bytes()).await?;
                    continue;
                }
            };
            self.apply_message(pnid, msg).await?;
        }
        for p in &v.user_preferences {
            let pref = match p {
                Lenient::Parsed(p) => p,
                Lenient::Malformed { raw, .. } => {
                    self.dead("malformed_element", raw.get().as_bytes()).await?;
                    continue;
                }
            };
            count(m::RECONCILER_EVENTS_TOTAL, "field", "user_preferences");
            if pref.category == "marketing_messages" && pref.value.eq_ignore_ascii_case("stop") {
                let user = pref.user_id.as_deref().and_then(business_user_id);
                match self.user(pnid, &pref.wa_id, user).await? {
                    Some(phone) => {
                        // Marketing only: utility and service messages still reach them.
                        self.store
                            .suppress_marketing(pnid, &[phone], &Why::now("marketing_stop"))
                            .await?;
                        metrics::counter!(m::RECONCILER_OPT_OUTS_TOTAL).increment(1);
                        tracing::info!(phone = %phone.masked(), "user stopped marketing messages: no more marketing");
                    }
                    None => {
                        if let Some(user) = user {
                            self.unlinked_opt_out(pnid, user).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn apply_message(&self, pnid: &str, msg: &InboundMessage) -> Result<(), StoreError> {
        let kind = KNOWN_TYPES
            .iter()
            .copied()
            .find(|k| *k == msg.kind)
            .unwrap_or("other");
        count(m::RECONCILER_INBOUND_MESSAGES_TOTAL, "kind", kind);
        if kind == "other" {
            let payload = format!("{{\"type\":{:?},\"id\":{:?}}}", msg.kind, msg.id);
            self.dead("unknown_message_type", payload.as_bytes())
                .await?;
        }
        if !msg.is_from_user() {
            return Ok(());
        }
        // A user behind a business-scoped id is known by number once a status showed it; an
        // opt-out from one who is not yet is kept until then.
        let user = msg.from_user_id.as_deref().and_then(business_user_id);
        let said = |words: &[String]| {
            msg.text_content().is_some_and(|text| {
                let text = text.trim();
                words.iter().any(|k| k.trim().eq_ignore_ascii_case(text))
            })
        };
        let (opts_out, opts_in) = (
            said(&self.cfg.opt_out_keywords),
            said(&self.cfg.opt_in_keywords),
        );
        let Some(phone) = self.user(pnid, &msg.from, user).await? else {
            if let Some(user) = user {
                if opts_out {
                    self.unlinked_opt_out(pnid, user).await?;
                } else if opts_in && self.store.opt_in_user(pnid, user).await? {
                    metrics::counter!(m::RECONCILER_OPT_INS_TOTAL).increment(1);
                    tracing::info!("a user known only by a business-scoped id opted back in");
                }
            }
            return Ok(());
        };
        // The window runs from when the user wrote (a delivery Meta retried days later opens
        // nothing); a timestamp from the future counts as now.
        let now = jiff::Timestamp::now();
        let at = msg
            .timestamp
            .and_then(|t| jiff::Timestamp::from_second(t.0).ok())
            .map_or(now, |t| t.min(now));
        self.store.open_window(pnid, phone, at).await?;
        if let Some(campaign) = self.store.last_campaign(pnid, phone).await? {
            self.store.count_reply(&campaign, phone).await?;
        }
        if opts_out {
            self.store
                .suppress(pnid, &[phone], &Why::now("opt_out_keyword"))
                .await?;
            metrics::counter!(m::RECONCILER_OPT_OUTS_TOTAL).increment(1);
            tracing::info!(phone = %phone.masked(), "opt-out keyword: suppressed");
        } else if opts_in {
            let was = self.store.unsuppress(pnid, &[phone]).await?;
            if let Some(user) = user {
                self.store.opt_in_user(pnid, user).await?;
            }
            if was > 0 {
                metrics::counter!(m::RECONCILER_OPT_INS_TOTAL).increment(1);
                tracing::info!(phone = %phone.masked(), "opt-in keyword: off the suppression list");
                // The user's message opened the window a free-form reply needs; one written
                // more than a day ago (a late redelivery) did not.
                if let Some(reply) = &self.cfg.opt_in_reply
                    && now.duration_since(at) < jiff::SignedDuration::from_hours(24)
                    && let Err(e) = (reply.send)(pnid.to_owned(), phone, reply.text.clone()).await
                {
                    tracing::warn!(phone = %phone.masked(), error = %e, "the opt-in confirmation could not be sent");
                }
            }
        }
        Ok(())
    }

    /// The user's number: as given (`wa_id`, `from`), else the one their business-scoped id
    /// is known to stand for. Given both, the link is learned.
    async fn user(
        &self,
        pnid: &str,
        number: &str,
        user: Option<&str>,
    ) -> Result<Option<PhoneE164>, StoreError> {
        match (PhoneE164::parse(number), user) {
            (Ok(phone), Some(user)) => {
                self.link(pnid, &[(user.to_owned(), phone)]).await?;
                Ok(Some(phone))
            }
            (Ok(phone), None) => Ok(Some(phone)),
            (Err(_), Some(user)) => self.store.user_phone(pnid, user).await,
            (Err(_), None) => Ok(None),
        }
    }

    /// Learns which numbers business-scoped ids stand for; opt-outs kept for them take effect.
    async fn link(&self, pnid: &str, links: &[(String, PhoneE164)]) -> Result<(), StoreError> {
        let suppressed = self.store.link_users(pnid, links).await?;
        if suppressed > 0 {
            metrics::counter!(m::RECONCILER_OPT_OUTS_TOTAL).increment(suppressed);
            tracing::info!(
                suppressed,
                "opt-outs made under business-scoped ids now suppress the numbers behind them"
            );
        }
        Ok(())
    }

    /// An opt-out from a user known only by their business-scoped id: kept and counted.
    async fn unlinked_opt_out(&self, pnid: &str, user: &str) -> Result<(), StoreError> {
        if self.store.opt_out_user(pnid, user).await? {
            metrics::counter!(m::RECONCILER_UNLINKED_OPT_OUTS_TOTAL).increment(1);
            tracing::info!(
                "opt-out from a user known only by a business-scoped id: kept until a status shows their number"
            );
        }
        Ok(())
    }
}
