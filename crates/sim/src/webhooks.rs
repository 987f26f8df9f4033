//! Status and inbound-message webhooks: scheduled, batched per phone number, signed with the
//! app secret (`X-Hub-Signature-256`), optionally duplicated and reordered, and retried with
//! exponential backoff when the receiver does not answer 200 — as Meta does.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::oracle::SharedOracle;
use crate::random::chance;

/// One status of an accepted message, serialised as Meta writes it.
#[derive(Debug, Clone)]
pub(crate) struct StatusOut {
    pub(crate) id: Arc<str>,
    pub(crate) status: &'static str,
    pub(crate) timestamp: u64,
    pub(crate) recipient_id: Arc<str>,
    pub(crate) callback: Option<Arc<str>>,
    /// The pricing (its category is also the conversation's origin); none on `read`.
    pub(crate) pricing: Option<Pricing>,
    pub(crate) conversation: u64,
    /// A failure's code, title and details.
    pub(crate) error: Option<(i64, &'static str, &'static str)>,
}

impl serde::Serialize for StatusOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &*self.id)?;
        m.serialize_entry("status", self.status)?;
        m.serialize_entry("timestamp", &self.timestamp.to_string())?;
        m.serialize_entry("recipient_id", &*self.recipient_id)?;
        if let Some(cb) = &self.callback {
            m.serialize_entry("biz_opaque_callback_data", &**cb)?;
        }
        if let Some(Pricing { category, free }) = self.pricing {
            // From v24 Meta sends the conversation only for free entry points; the simulator
            // keeps it, as older versions did.
            m.serialize_entry(
                "conversation",
                &json!({"id": format!("SIMCONV{:x}", self.conversation), "origin": {"type": category}}),
            )?;
            let kind = if free {
                "free_customer_service"
            } else {
                "regular"
            };
            m.serialize_entry(
                "pricing",
                &json!({"billable": !free, "pricing_model": "PMP", "category": category, "type": kind}),
            )?;
        }
        if let Some((code, title, details)) = self.error {
            m.serialize_entry(
                "errors",
                &json!([{"code": code, "title": title, "message": title, "error_data": {"details": details},
                         "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]),
            )?;
        }
        m.end()
    }
}

/// How Meta prices a message: its category, and whether it is free (`free_customer_service`:
/// a service message, or a utility template inside an open window).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pricing {
    pub(crate) category: &'static str,
    pub(crate) free: bool,
}

/// What goes into a webhook's `value`.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Status(StatusOut),
    /// An inbound message and the contact who sent it.
    Message {
        contact: Value,
        message: Value,
    },
    /// A change of another field (`business_capability_update`, …), sent as its own change.
    Change {
        field: &'static str,
        value: Value,
    },
}

#[derive(Debug)]
struct Scheduled {
    due: Instant,
    seq: u64,
    pnid: String,
    item: Item,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// The handle the request path schedules webhooks through.
#[derive(Debug, Clone)]
pub(crate) struct Webhooks {
    tx: Option<mpsc::UnboundedSender<(Instant, String, Item)>>,
}

impl Webhooks {
    pub(crate) fn start(
        cfg: &SimConfig,
        sink: Option<WebhookSink>,
        oracle: SharedOracle,
        shutdown: CancellationToken,
    ) -> Self {
        if cfg.webhooks.url.is_empty() && sink.is_none() {
            return Self { tx: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(cfg.clone(), sink, oracle, rx, shutdown));
        Self { tx: Some(tx) }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub(crate) fn schedule(&self, due: Instant, pnid: &str, item: Item) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((due, pnid.to_owned(), item));
        }
    }
}

async fn run(
    cfg: SimConfig,
    sink: Option<WebhookSink>,
    oracle: SharedOracle,
    mut rx: mpsc::UnboundedReceiver<(Instant, String, Item)>,
    shutdown: CancellationToken,
) {
    let wh = &cfg.webhooks;
    let http = match herald_cloudapi::http_builder_for(&wh.url)
        .timeout(Duration::from_millis(wh.timeout_ms))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; webhooks are off");
            return;
        }
    };
    let in_flight = Arc::new(Semaphore::new(64));
    let mut heap: BinaryHeap<Scheduled> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut batch_no = 0u64;
    // Due statuses go out once per tick, so a busy simulator sends full batches instead of
    // one POST per status.
    let mut tick = tokio::time::interval(Duration::from_millis(wh.batch_wait_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(first) = got else { return };
                let mut next = Some(first);
                while let Some((due, pnid, item)) = next {
                    seq += 1;
                    heap.push(Scheduled { due, seq, pnid, item });
                    next = rx.try_recv().ok();
                }
                continue;
            }
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let mut due: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        while heap.peek().is_some_and(|s| s.due <= now) {
            if let Some(s) = heap.pop() {
                due.entry(s.pnid).or_default().push(s.item);
            }
        }
        for (pnid, items) in due {
            for chunk in items.chunks(wh.batch_max) {
                batch_no += 1;
                let mut chunk = chunk.to_vec();
                if chance(cfg.seed, 0x5eed_0001, batch_no, wh.reorder) {
                    shuffle(&mut chunk, cfg.seed ^ batch_no);
                }
                let (body, statuses, messages) = envelope(&cfg, &pnid, &chunk);
                let permit = in_flight.clone().acquire_owned().await;
                let (http, oracle, cfg) = (http.clone(), oracle.clone(), cfg.clone());
                let to = match &sink {
                    Some(f) => Destination::Sink(f.clone()),
                    None => Destination::Http(http),
                };
                tokio::spawn(async move {
                    deliver(&to, &oracle, &cfg, body, statuses, messages).await;
                    drop(permit);
                });
            }
        }
    }
}

fn shuffle(items: &mut [Item], seed: u64) {
    let mut s = seed | 1;
    for i in (1..items.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        items.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

/// The webhook body for one phone number's batch.
fn envelope(cfg: &SimConfig, pnid: &str, items: &[Item]) -> (Vec<u8>, u64, u64) {
    let display = cfg
        .phone_numbers
        .iter()
        .find(|p| p.id == pnid)
        .map(|p| {
            p.display_phone_number
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .unwrap_or_default();
    let mut statuses: Vec<&StatusOut> = Vec::new();
    let mut messages: Vec<&Value> = Vec::new();
    let mut contacts: Vec<&Value> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    for item in items {
        match item {
            Item::Status(s) => statuses.push(s),
            Item::Message { contact, message } => {
                contacts.push(contact);
                messages.push(message);
            }
            Item::Change { field, value } => others.push(json!({"field": field, "value": value})),
        }
    }
    #[derive(serde::Serialize)]
    struct ChangeValue<'a> {
        messaging_product: &'static str,
        metadata: Value,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        statuses: Vec<&'a StatusOut>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        contacts: Vec<&'a Value>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        messages: Vec<&'a Value>,
    }
    let (n_statuses, n_messages) = (statuses.len() as u64, messages.len() as u64);
    let value = ChangeValue {
        messaging_product: "whatsapp",
        metadata: json!({"display_phone_number": display, "phone_number_id": pnid}),
        statuses,
        contacts,
        messages,
    };
    let mut changes = others;
    if n_statuses + n_messages > 0 {
        changes.insert(0, json!({"value": value, "field": "messages"}));
    }
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": cfg.waba_id, "changes": changes}],
    });
    (
        serde_json::to_vec(&body).unwrap_or_default(),
        n_statuses,
        n_messages,
    )
}

/// Where webhooks go instead of an HTTP POST: given the body and its `X-Hub-Signature-256`
/// value, it answers whether the delivery was taken (as an HTTP 200 would).
pub type WebhookSink =
    Arc<dyn Fn(bytes::Bytes, String) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

enum Destination {
    Http(reqwest::Client),
    Sink(WebhookSink),
}

/// Delivers one batch, retrying with exponential backoff until it is acknowledged (HTTP 200)
/// or the attempts run out.
async fn deliver(
    to: &Destination,
    oracle: &SharedOracle,
    cfg: &SimConfig,
    body: Vec<u8>,
    statuses: u64,
    messages: u64,
) {
    let wh = &cfg.webhooks;
    let signature = herald_cloudapi::signature::sign(cfg.app_secret.as_bytes(), &body);
    let body = bytes::Bytes::from(body);
    for attempt in 0..wh.max_attempts.max(1) {
        oracle.with(|o| o.webhooks.attempted += 1);
        let taken = match to {
            Destination::Http(http) => http
                .post(&wh.url)
                .header("content-type", "application/json")
                .header(herald_cloudapi::signature::HEADER, &signature)
                .body(body.clone())
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK),
            Destination::Sink(f) => f(body.clone(), signature.clone()).await,
        };
        if taken {
            oracle.with(|o| {
                o.webhooks.acknowledged += 1;
                o.webhooks.statuses_delivered += statuses;
                o.webhooks.messages_delivered += messages;
            });
            return;
        }
        let backoff = wh.retry_base_ms.saturating_mul(1 << attempt.min(16));
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
    oracle.with(|o| o.webhooks.dropped += 1);
    tracing::warn!(url = %wh.url, "webhook dropped after {} attempts", wh.max_attempts);
}
