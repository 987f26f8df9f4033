//! The simulator's state and the send path: what happens to one
//! `POST /{version}/{phone_number_id}/messages`.
//!
//! Checks run in the order a client would meet them at Meta: auth (190), the phone number
//! (100), the body (100, naming the field), the template catalogue (132001/132015/132000),
//! throughput (130429), pair rate (131056), the 24 h window (131047) and undeliverable
//! numbers (131026). Injected faults are decided per request from the seed: a 5xx is not
//! accepted; a hang or a reset-after-read *is* accepted, and only the answer is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_cloudapi::message::{Message, SendMessage};
use herald_cloudapi::{GraphError, SendRequest};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{Delivery, SimConfig, Template};
use crate::oracle::{Oracle, SharedOracle};
use crate::random::{chance, draw, mix};
use crate::webhooks::{Item, Pricing, StatusOut, Webhooks};

/// A tier's users; `u64::MAX` for unlimited (or a tier the configuration check let through).
fn limit_users(tier: &str) -> u64 {
    herald_core::MessagingLimit::from_tier(tier)
        .and_then(herald_core::MessagingLimit::users)
        .unwrap_or(u64::MAX)
}

fn hash_str(s: &str) -> u64 {
    herald_core::fnv1a(s.as_bytes())
}

/// A recipient's pair-rate bucket.
#[derive(Debug, Clone, Copy)]
struct Pair {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Limits {
    pairs: HashMap<(String, String), Pair>,
    /// Open 24 h windows: (phone number id, user) → when the user last wrote.
    windows: HashMap<(String, String), Instant>,
    /// The portfolio's users messaged outside an open window → when, last (the messaging
    /// limit counts them over a moving 24 h)…
    reach: HashMap<String, Instant>,
    /// … and every such message in order, so that those the day has left are dropped in
    /// amortised constant time.
    reach_log: std::collections::VecDeque<(Instant, String)>,
    /// The messaging limit now (`None`: the configured tier; raised by [`SimState::set_tier`]).
    tier: Option<String>,
    /// Numbers upgraded to 1,000 messages/s: their switch ends at this instant (131057 until
    /// then).
    upgraded: HashMap<String, Instant>,
}

/// State shared by the request handlers and the webhook sender.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) cfg: SimConfig,
    oracle: SharedOracle,
    limits: Mutex<Limits>,
    /// Whether any number was upgraded (only then does the send path look its rate up).
    any_upgraded: std::sync::atomic::AtomicBool,
    /// Whether any user ever wrote in (only then can a utility template be free).
    any_window: std::sync::atomic::AtomicBool,
    /// The messaging limit now, in users (`u64::MAX`: unlimited), read without a lock.
    limit_users: AtomicU64,
    requests: AtomicU64,
    messages: AtomicU64,
    pub(crate) webhooks: Webhooks,
    /// The simulator's clock: the wall clock at start plus the time tokio has seen pass (so
    /// webhook timestamps follow a paused clock in tests).
    clock: (u64, Instant),
}

/// What the handler should answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Ok(Value),
    Error {
        status: u16,
        error: Box<GraphError>,
    },
    /// Accepted, but the answer comes only after this long (past the client's timeout).
    Hang(Value, Duration),
    /// Accepted, then the connection is dropped without an answer.
    Reset,
    /// Accepted, then a proxy in front answers with this HTTP status and an HTML page (no
    /// Graph error body): an edge timing out after Meta took the message.
    ProxyError(u16),
}

fn graph(code: i64, kind: &str, message: &str) -> GraphError {
    let mut e = GraphError::new(code, kind, message);
    e.fbtrace_id = Some("AsimHeraldTrace".into());
    e
}

fn bad(code: i64, message: &str, details: &str) -> Answer {
    Answer::Error {
        status: 400,
        error: Box::new(graph(code, "OAuthException", message).with_details(details)),
    }
}

impl SimState {
    pub(crate) fn new(cfg: SimConfig, oracle: SharedOracle, webhooks: Webhooks) -> Self {
        let limit = limit_users(&cfg.limits.messaging_tier);
        Self {
            cfg,
            oracle,
            limits: Mutex::new(Limits::default()),
            any_upgraded: std::sync::atomic::AtomicBool::new(false),
            any_window: std::sync::atomic::AtomicBool::new(false),
            limit_users: AtomicU64::new(limit),
            requests: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            webhooks,
            clock: (wall_clock_secs(), Instant::now()),
        }
    }

    /// Unix seconds at an instant of the simulator's clock.
    pub(crate) fn unix_at(&self, at: Instant) -> u64 {
        let (base, started) = self.clock;
        base + at.saturating_duration_since(started).as_secs()
    }

    pub(crate) fn oracle<T>(&self, f: impl FnOnce(&mut Oracle) -> T) -> T {
        self.oracle.with(f)
    }

    fn limits<T>(&self, f: impl FnOnce(&mut Limits) -> T) -> T {
        let mut l = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut l)
    }

    pub(crate) fn reset(&self) {
        self.oracle(|o| *o = Oracle::default());
        self.limits(|l| *l = Limits::default());
        self.any_upgraded.store(false, Ordering::Relaxed);
        self.limit_users.store(
            limit_users(&self.cfg.limits.messaging_tier),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn token_ok(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.cfg.access_token)
    }

    /// Opens the user's window and delivers their message as an inbound webhook.
    pub(crate) fn inbound(&self, pnid: &str, from: &str, text: &str) {
        let now = Instant::now();
        self.limits(|l| l.windows.insert((pnid.to_owned(), from.to_owned()), now));
        self.any_window.store(true, Ordering::Relaxed);
        let n = self.messages.fetch_add(1, Ordering::Relaxed);
        let message = json!({
            "from": from,
            "id": format!("wamid.SIMIN{n:012}"),
            "timestamp": self.unix_at(now).to_string(),
            "type": "text",
            "text": {"body": text},
        });
        let contact = json!({"profile": {"name": "Sim User"}, "wa_id": from});
        self.webhooks
            .schedule(now, pnid, Item::Message { contact, message });
    }

    /// The send path, for a request that arrived at `now` (see [`crate::arrival`]).
    pub(crate) fn send(
        &self,
        pnid: &str,
        authorization: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> Answer {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let seed = self.cfg.seed;
        if !self.token_ok(authorization) {
            self.oracle(|o| o.reject(190));
            return Answer::Error {
                status: 401,
                error: Box::new(graph(
                    190,
                    "OAuthException",
                    "Invalid OAuth access token - Cannot parse access token",
                )),
            };
        }
        let Some(number) = self.cfg.phone_numbers.iter().find(|p| p.id == pnid) else {
            self.oracle(|o| o.reject(100));
            let mut e = graph(
                100,
                "GraphMethodException",
                &format!(
                    "Unsupported post request. Object with ID '{pnid}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
                ),
            );
            e.error_subcode = Some(33);
            return Answer::Error {
                status: 400,
                error: Box::new(e),
            };
        };
        self.oracle(|o| o.request(pnid, now));
        let reject = |code: i64, answer: Answer| {
            self.oracle(|o| o.reject(code));
            answer
        };
        let request = match SendRequest::from_slice(body) {
            Ok(r) => r,
            Err(e) => return reject(100, bad(100, "(#100) Invalid parameter", &e.to_string())),
        };
        if let Err(e) = request.validate() {
            return reject(100, bad(100, "(#100) Invalid parameter", &e.to_string()));
        }
        let msg = match request {
            SendRequest::MarkRead(_) => return Answer::Ok(json!({"success": true})),
            SendRequest::Message(m) => m,
        };
        let to = msg.to.trim_start_matches('+');
        if to.starts_with("00")
            || to.len() < 7
            || to.len() > 15
            || !to.bytes().all(|b| b.is_ascii_digit())
        {
            return reject(
                100,
                bad(100, "(#100) Invalid parameter", "Parameter Invalid"),
            );
        }
        let category: &'static str = match &msg.message {
            Message::Template(t) => match self.check_template(t) {
                Ok(t) => match t.category.to_ascii_uppercase().as_str() {
                    "MARKETING" => "marketing",
                    "AUTHENTICATION" => "authentication",
                    _ => "utility",
                },
                Err((code, answer)) => return reject(code, answer),
            },
            _ => "service",
        };
        if category == "marketing" {
            let m = &self.cfg.marketing;
            let user = hash_str(to);
            if draw(seed, user, 0x130_472) < m.experiment_fraction {
                return reject(
                    130_472,
                    bad(
                        130_472,
                        "(#130472) User's number is part of an experiment",
                        "Failed to send message because this user's phone number is part of an experiment",
                    ),
                );
            }
            if draw(seed, user, 0x131_050) < m.opted_out_fraction {
                return reject(
                    131_050,
                    bad(
                        131_050,
                        "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
                        "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
                    ),
                );
            }
            let day = self.unix_at(now) / 86_400;
            if draw(seed, user ^ day, 0x131_049) < m.capped_fraction {
                return reject(
                    131_049,
                    bad(
                        131_049,
                        "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
                        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
                    ),
                );
            }
        }
        // Faults decided up front from the seed: one draw picks at most one.
        let f = &self.cfg.faults;
        let fault = draw(seed, 0xfa17, n);
        if fault < f.error_5xx {
            self.oracle(|o| o.faults.error_5xx += 1);
            return reject(
                2,
                Answer::Error {
                    status: 500,
                    error: {
                        let mut e = graph(
                            2,
                            "OAuthException",
                            "An unexpected error occurred. Please retry your request later.",
                        );
                        e.is_transient = Some(true);
                        Box::new(e)
                    },
                },
            );
        }
        let upgraded = if self.any_upgraded.load(Ordering::Relaxed) {
            self.limits(|l| l.upgraded.get(pnid).copied())
        } else {
            None
        };
        let mps = match upgraded {
            Some(done) if now < done => {
                return reject(
                    131_057,
                    bad(
                        131_057,
                        "(#131057) Account in maintenance mode",
                        "Business account is in maintenance mode: throughput upgrade in progress",
                    ),
                );
            }
            Some(_) => 1000,
            None => number.mps,
        };
        if self.oracle(|o| o.sent_last_second(pnid, now)) >= u64::from(mps) {
            return reject(
                130_429,
                bad(
                    130_429,
                    "(#130429) Rate limit hit",
                    "Message failed to send because there were too many messages sent from this phone number in a short period of time",
                ),
            );
        }
        if !self.take_pair(pnid, to, now) {
            return reject(
                131_056,
                bad(
                    131_056,
                    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
                ),
            );
        }
        if msg.message.is_template() && !self.reach(pnid, to, now) {
            return reject(
                131_048,
                bad(
                    131_048,
                    "(#131048) Spam rate limit hit",
                    "Message failed to send because there are restrictions on how many messages can be sent from this phone number. This may be because too many previous messages were blocked or flagged as spam.",
                ),
            );
        }
        let mut fail_by_webhook = None;
        if !msg.message.is_template() && !self.window_open(pnid, to, now) {
            match self.cfg.window.mode {
                Delivery::Sync => {
                    return reject(
                        131_047,
                        bad(
                            131_047,
                            "(#131047) Re-engagement message",
                            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                        ),
                    );
                }
                Delivery::Webhook => fail_by_webhook = Some(131_047),
            }
        }
        let undeliverable = self.cfg.undeliverable.fraction > 0.0
            && draw(seed, hash_str(to), 0x131_026) < self.cfg.undeliverable.fraction;
        if undeliverable && fail_by_webhook.is_none() {
            match self.cfg.undeliverable.mode {
                Delivery::Sync => {
                    return reject(
                        131_026,
                        bad(
                            131_026,
                            "(#131026) Message undeliverable",
                            "Message Undeliverable.",
                        ),
                    );
                }
                Delivery::Webhook => fail_by_webhook = Some(131_026),
            }
        }
        // Accepted.
        let id = format!("wamid.SIM{:016X}{:08X}", n, mix(seed ^ n) as u32);
        self.oracle(|o| o.accept(pnid, to, msg.biz_opaque_callback_data.as_deref(), now));
        // Meta does not charge service messages, nor utility templates inside an open
        // customer-service window.
        let free = category == "service"
            || (category == "utility"
                && self.any_window.load(Ordering::Relaxed)
                && self.window_open(pnid, to, now));
        let pricing = Pricing { category, free };
        self.schedule_statuses(pnid, &msg, &id, to, pricing, fail_by_webhook, n, now);
        let answer = json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": msg.to, "wa_id": to}],
            "messages": [{"id": id, "message_status": "accepted"}],
        });
        if fault < f.error_5xx + f.hang {
            self.oracle(|o| o.faults.hangs += 1);
            return Answer::Hang(answer, Duration::from_millis(f.hang_ms));
        }
        if fault < f.error_5xx + f.hang + f.reset_after_read {
            self.oracle(|o| o.faults.resets += 1);
            return Answer::Reset;
        }
        if fault < f.error_5xx + f.hang + f.reset_after_read + f.bad_gateway {
            self.oracle(|o| o.faults.bad_gateways += 1);
            return Answer::ProxyError(502);
        }
        Answer::Ok(answer)
    }

    /// The portfolio's messaging limit now, as Meta names it.
    pub(crate) fn tier(&self) -> String {
        self.limits(|l| l.tier.clone())
            .unwrap_or_else(|| self.cfg.limits.messaging_tier.clone())
    }

    /// Changes the messaging limit (as Meta does when a business grows or its quality drops)
    /// and announces it with a `business_capability_update` webhook, as Meta does.
    pub(crate) fn set_tier(&self, tier: &str) -> bool {
        let Some(limit) = herald_core::MessagingLimit::from_tier(tier) else {
            return false;
        };
        self.limits(|l| l.tier = Some(tier.to_owned()));
        self.limit_users.store(limit_users(tier), Ordering::Relaxed);
        let daily = limit
            .users()
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        if let Some(p) = self.cfg.phone_numbers.first() {
            self.webhooks.schedule(
                Instant::now(),
                &p.id,
                Item::Change {
                    field: "business_capability_update",
                    value: json!({"max_daily_conversations_per_business": daily}),
                },
            );
        }
        true
    }

    /// Re-categorises a template (as Meta does after review): sends the completed-change
    /// `template_category_update` webhook. `false` for an unknown template.
    pub(crate) fn recategorise(&self, name: &str, language: &str, category: &str) -> bool {
        let Some((id, t)) = self
            .cfg
            .templates
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name && t.language == language)
        else {
            return false;
        };
        let Some(p) = self.cfg.phone_numbers.first() else {
            return false;
        };
        self.webhooks.schedule(
            Instant::now(),
            &p.id,
            Item::Change {
                field: "template_category_update",
                value: json!({
                    "message_template_id": 900_000_000_000_000u64 + id as u64,
                    "message_template_name": t.name,
                    "message_template_language": t.language,
                    "previous_category": t.category.to_ascii_uppercase(),
                    "new_category": category,
                }),
            },
        );
        true
    }

    /// Upgrades a number to 1,000 messages/s, as Meta does for a busy number with good
    /// quality: sends answer 131057 for `switch`, then go at the new rate; a
    /// `phone_number_quality_update` webhook with `THROUGHPUT_UPGRADE` says so. `false` for
    /// an unknown number.
    pub(crate) fn upgrade(&self, pnid: &str, switch: Duration) -> bool {
        let Some(p) = self.cfg.phone_numbers.iter().find(|p| p.id == pnid) else {
            return false;
        };
        let now = Instant::now();
        self.limits(|l| l.upgraded.insert(pnid.to_owned(), now + switch));
        self.any_upgraded.store(true, Ordering::Relaxed);
        let display: String = p
            .display_phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        self.webhooks.schedule(
            now,
            pnid,
            Item::Change {
                field: "phone_number_quality_update",
                value: json!({"display_phone_number": display, "event": "THROUGHPUT_UPGRADE",
                    "current_limit": self.tier()}),
            },
        );
        true
    }

    /// The throughput level a number reports.
    pub(crate) fn level(&self, pnid: &str, mps: u32) -> &'static str {
        if mps > 80 || self.limits(|l| l.upgraded.contains_key(pnid)) {
            "HIGH"
        } else {
            "STANDARD"
        }
    }

    /// Counts `user` against the messaging limit: whether a template may go (the user has
    /// an open window, was counted already, or there is room). Unlimited, nothing is counted
    /// (and `reach_peak` stays 0): the send path stays as fast as without the model.
    fn reach(&self, pnid: &str, user: &str, now: Instant) -> bool {
        let day = Duration::from_secs(24 * 3600);
        let window = Duration::from_secs(self.cfg.window.hours * 3600);
        let limit = self.limit_users.load(Ordering::Relaxed);
        if limit == u64::MAX {
            return true;
        }
        let (ok, used) = self.limits(|l| {
            let open = l
                .windows
                .get(&(pnid.to_owned(), user.to_owned()))
                .is_some_and(|at| now.duration_since(*at) < window);
            if open {
                return (true, l.reach.len() as u64);
            }
            while let Some((at, _)) = l.reach_log.front()
                && now.saturating_duration_since(*at) >= day
            {
                if let Some((at, gone)) = l.reach_log.pop_front()
                    && l.reach.get(&gone) == Some(&at)
                {
                    l.reach.remove(&gone);
                }
            }
            let ok = l.reach.contains_key(user) || (l.reach.len() as u64) < limit;
            if ok {
                l.reach.insert(user.to_owned(), now);
                l.reach_log.push_back((now, user.to_owned()));
            }
            (ok, l.reach.len() as u64)
        });
        self.oracle(|o| o.reach_peak = o.reach_peak.max(used));
        ok
    }

    /// How long the answer to this request takes: the configured latency plus jitter drawn
    /// from a hash of the whole body (the same body, the same delay; bodies that differ in
    /// one digit, uniformly apart).
    pub(crate) fn latency(&self, body: &[u8]) -> Duration {
        let f = &self.cfg.faults;
        if f.latency_ms == 0 && f.jitter_ms == 0 {
            return Duration::ZERO;
        }
        let n = herald_core::fnv1a(body);
        let jitter = (draw(self.cfg.seed, 0x1a7e, n) * f.jitter_ms as f64) as u64;
        Duration::from_millis(f.latency_ms + jitter)
    }

    fn check_template(
        &self,
        t: &herald_cloudapi::message::Template,
    ) -> Result<&Template, (i64, Answer)> {
        let found = self
            .cfg
            .templates
            .iter()
            .find(|c| c.name == t.name && c.language == t.language.code);
        let Some(c) = found else {
            return Err((
                132_001,
                bad(
                    132_001,
                    "(#132001) Template name does not exist in the translation",
                    &format!(
                        "template name ({}) does not exist in {}",
                        t.name, t.language.code
                    ),
                ),
            ));
        };
        match c.status.as_str() {
            "APPROVED" => {}
            "PAUSED" => {
                return Err((
                    132_015,
                    bad(
                        132_015,
                        "(#132015) Template is paused",
                        "Template is paused due to low quality so it cannot be sent in a template message.",
                    ),
                ));
            }
            "DISABLED" => {
                return Err((
                    132_016,
                    bad(
                        132_016,
                        "(#132016) Template is disabled",
                        "Template has been paused too many times due to low quality and is now permanently disabled.",
                    ),
                ));
            }
            _ => {
                return Err((
                    132_001,
                    bad(
                        132_001,
                        "(#132001) Template name does not exist in the translation",
                        &format!(
                            "template name ({}) is not approved in {}",
                            t.name, t.language.code
                        ),
                    ),
                ));
            }
        }
        let count = |kind: &str, index: Option<u64>| -> usize {
            t.components
                .iter()
                .flatten()
                .filter(|comp| {
                    comp.kind.eq_ignore_ascii_case(kind)
                        && (index.is_none() || comp.index.as_ref().and_then(|i| i.value()) == index)
                })
                .map(|comp| comp.parameters.as_ref().map_or(0, Vec::len))
                .sum()
        };
        let mismatch = |part: &str, got: usize, want: usize| {
            (
                132_000,
                bad(
                    132_000,
                    "(#132000) Number of parameters does not match the expected number of params",
                    &format!(
                        "{part}: number of localizable_params ({got}) does not match the expected number of params ({want})"
                    ),
                ),
            )
        };
        if count("header", None) != c.header_params {
            return Err(mismatch("header", count("header", None), c.header_params));
        }
        if count("body", None) != c.body_params {
            return Err(mismatch("body", count("body", None), c.body_params));
        }
        for (i, want) in c.button_params.iter().enumerate() {
            let got = count("button", Some(i as u64));
            if got != *want {
                return Err(mismatch(&format!("button {i}"), got, *want));
            }
        }
        Ok(c)
    }

    fn take_pair(&self, pnid: &str, to: &str, now: Instant) -> bool {
        let interval = Duration::from_millis(self.cfg.limits.pair_interval_ms.max(1));
        let burst = f64::from(self.cfg.limits.pair_burst);
        self.limits(|l| {
            let p = l
                .pairs
                .entry((pnid.to_owned(), to.to_owned()))
                .or_insert(Pair {
                    tokens: burst,
                    at: now,
                });
            let refill = now.duration_since(p.at).as_secs_f64() / interval.as_secs_f64();
            p.tokens = (p.tokens + refill).min(burst);
            p.at = now;
            if p.tokens >= 1.0 {
                p.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    fn window_open(&self, pnid: &str, user: &str, now: Instant) -> bool {
        let hours = Duration::from_secs(self.cfg.window.hours * 3600);
        self.limits(|l| {
            l.windows
                .get(&(pnid.to_owned(), user.to_owned()))
                .is_some_and(|at| now.duration_since(*at) < hours)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule_statuses(
        &self,
        pnid: &str,
        msg: &SendMessage,
        id: &str,
        to: &str,
        pricing: Pricing,
        fail: Option<i64>,
        n: u64,
        now: Instant,
    ) {
        let wh = &self.cfg.webhooks;
        if !self.webhooks.enabled() {
            return;
        }
        let seed = self.cfg.seed;
        let jitter =
            |k: u64| Duration::from_millis((draw(seed, k, n) * wh.jitter_ms as f64) as u64);
        let base = StatusOut {
            id: id.into(),
            status: "sent",
            timestamp: self.unix_at(now),
            recipient_id: to.into(),
            callback: msg.biz_opaque_callback_data.as_deref().map(Into::into),
            pricing: Some(pricing),
            conversation: mix(hash_str(to)),
            error: None,
        };
        let mut plan: Vec<(Duration, StatusOut)> = Vec::new();
        let sent_at = Duration::from_millis(wh.sent_delay_ms) + jitter(1);
        match fail {
            Some(code) => {
                let (title, details) = match code {
                    131_047 => (
                        "Re-engagement message",
                        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                    ),
                    _ => ("Message undeliverable", "Message Undeliverable."),
                };
                plan.push((
                    sent_at,
                    StatusOut {
                        status: "failed",
                        pricing: None,
                        error: Some((code, title, details)),
                        ..base
                    },
                ));
            }
            None => {
                plan.push((sent_at, base.clone()));
                if chance(seed, 2, n, wh.delivered_probability) {
                    self.oracle(|o| {
                        if pricing.free {
                            o.free += 1;
                        } else {
                            *o.charged.entry(pricing.category.to_owned()).or_default() += 1;
                        }
                    });
                    let at = sent_at + Duration::from_millis(wh.delivered_delay_ms) + jitter(3);
                    plan.push((
                        at,
                        StatusOut {
                            status: "delivered",
                            ..base.clone()
                        },
                    ));
                    if chance(seed, 4, n, wh.read_probability) {
                        let at = at + Duration::from_millis(wh.read_delay_ms) + jitter(5);
                        plan.push((
                            at,
                            StatusOut {
                                status: "read",
                                pricing: None,
                                ..base
                            },
                        ));
                    }
                }
            }
        }
        for (k, (delay, mut s)) in plan.into_iter().enumerate() {
            // Each status carries the time of its own event, as Meta's do.
            s.timestamp = self.unix_at(now + delay);
            if chance(seed, 6 + k as u64, n, wh.duplicate) {
                let again =
                    delay + Duration::from_millis(wh.batch_wait_ms * 2) + jitter(10 + k as u64);
                self.webhooks
                    .schedule(now + again, pnid, Item::Status(s.clone()));
            }
            self.webhooks.schedule(now + delay, pnid, Item::Status(s));
        }
    }
}

fn wall_clock_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_deterministic() {
        let hits = (0..100_000).filter(|n| chance(7, 1, *n, 0.25)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert_eq!(draw(7, 1, 5), draw(7, 1, 5));
        assert_ne!(draw(7, 1, 5), draw(8, 1, 5));
        assert!(!chance(7, 1, 5, 0.0));
    }

    /// A campaign's bodies differ in a digit or two and share their length: their delays
    /// still spread over the whole jitter, uniformly, and one body always gets the same.
    #[tokio::test]
    async fn latency_jitter_is_uniform_over_a_campaigns_bodies() {
        let mut cfg = SimConfig::default();
        cfg.faults.latency_ms = 150;
        cfg.faults.jitter_ms = 200;
        let oracle = SharedOracle::default();
        let hooks = Webhooks::start(
            &cfg,
            None,
            oracle.clone(),
            tokio_util::sync::CancellationToken::new(),
        );
        let state = SimState::new(cfg, oracle, hooks);
        let body = |i: u64| {
            format!(
                r#"{{"messaging_product":"whatsapp","to":"{}","biz_opaque_callback_data":"c:1/{i}"}}"#,
                447_700_100_000u64 + i
            )
        };
        let ms: Vec<u128> = (0..4000)
            .map(|i| state.latency(body(i).as_bytes()).as_millis())
            .collect();
        assert!(
            ms.iter().all(|m| (150..350).contains(m)),
            "outside 150–350 ms"
        );
        let mean = ms.iter().sum::<u128>() as f64 / ms.len() as f64;
        assert!(
            (240.0..260.0).contains(&mean),
            "mean {mean} ms, not about 250"
        );
        let distinct: std::collections::HashSet<&u128> = ms.iter().collect();
        assert!(
            distinct.len() > 190,
            "only {} distinct delays",
            distinct.len()
        );
        let quarter = ms.iter().filter(|&&m| m < 200).count();
        assert!(
            (900..1100).contains(&quarter),
            "{quarter} of 4000 below 200 ms"
        );
        assert_eq!(
            state.latency(body(7).as_bytes()),
            state.latency(body(7).as_bytes())
        );
    }
}
