//! The webhook stream in memory: one consumer group, entries owned by the consumer that read
//! them until acknowledged, taken over by another once idle (as a Redis stream's consumer
//! group does).

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;

use crate::{DEAD_LETTERS_KEPT, DeadLetter, DeadLetterCounts, WebhookEntry};

#[derive(Debug)]
struct Entry {
    body: Vec<u8>,
    received: Timestamp,
    /// The consumer that read it and when (ms), until it is acknowledged.
    owner: Option<(String, i64)>,
    deliveries: u32,
}

#[derive(Debug, Default)]
pub(super) struct Stream {
    entries: BTreeMap<u64, Entry>,
    next: u64,
    /// Entries up to this one have been handed to a consumer.
    delivered: u64,
    dead: VecDeque<DeadLetter>,
    dead_dropped: u64,
}

impl Stream {
    pub(super) fn append(&mut self, body: &[u8], received: Timestamp) {
        self.next += 1;
        self.entries.insert(
            self.next,
            Entry {
                body: body.to_vec(),
                received,
                owner: None,
                deliveries: 0,
            },
        );
    }

    fn entry(id: u64, e: &Entry) -> WebhookEntry {
        WebhookEntry {
            id: id.to_string(),
            body: e.body.clone(),
            received: e.received,
            deliveries: e.deliveries,
        }
    }

    /// Entries no consumer has read yet, now owned by `consumer`.
    pub(super) fn read_new(&mut self, consumer: &str, count: usize, now: i64) -> Vec<WebhookEntry> {
        let mut out = Vec::new();
        let from = self.delivered + 1;
        for (id, e) in self.entries.range_mut(from..).take(count.max(1)) {
            e.owner = Some((consumer.to_owned(), now));
            e.deliveries += 1;
            self.delivered = *id;
            out.push(Self::entry(*id, e));
        }
        out
    }

    /// Entries `consumer` read and has not acknowledged (each read counts as a delivery).
    pub(super) fn pending(&mut self, consumer: &str, count: usize) -> Vec<WebhookEntry> {
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if out.len() >= count.max(1) {
                break;
            }
            if e.owner.as_ref().is_some_and(|(c, _)| c == consumer) {
                e.deliveries += 1;
                out.push(Self::entry(*id, e));
            }
        }
        out
    }

    /// Read entries idle for `min_idle_ms` or more, now owned by `consumer`.
    pub(super) fn claim_idle(
        &mut self,
        consumer: &str,
        min_idle_ms: i64,
        count: usize,
        now: i64,
    ) -> Vec<WebhookEntry> {
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            if out.len() >= count.max(1) {
                break;
            }
            if let Some((_, at)) = &e.owner
                && now - at >= min_idle_ms
            {
                e.owner = Some((consumer.to_owned(), now));
                e.deliveries += 1;
                out.push(Self::entry(*id, e));
            }
        }
        out
    }

    pub(super) fn ack(&mut self, ids: &[String]) {
        for id in ids {
            if let Ok(id) = id.parse::<u64>() {
                self.entries.remove(&id);
            }
        }
    }

    pub(super) fn dead_letter(&mut self, reason: &str, detail: &str, payload: &[u8], at_ms: i64) {
        self.dead.push_front(DeadLetter {
            reason: reason.to_owned(),
            detail: detail.to_owned(),
            payload: String::from_utf8_lossy(payload).into_owned(),
            at_ms,
        });
        if self.dead.len() > DEAD_LETTERS_KEPT {
            self.dead_dropped += (self.dead.len() - DEAD_LETTERS_KEPT) as u64;
            self.dead.truncate(DEAD_LETTERS_KEPT);
        }
    }

    pub(super) fn dead_letter_counts(&self) -> DeadLetterCounts {
        DeadLetterCounts {
            kept: self.dead.len() as u64,
            dropped: self.dead_dropped,
        }
    }

    pub(super) fn dead_letters(&self, count: usize) -> Vec<DeadLetter> {
        self.dead.iter().take(count.max(1)).cloned().collect()
    }
}
