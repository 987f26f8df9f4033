//! Key names (ARCHITECTURE §3). Everything lives under a configurable prefix. A campaign's keys share the hash
//! tag `{c:<id>}` and a phone number id's keys share `{pn:<id>}`, so every script touches a
//! single Redis Cluster slot.
//!
//! ```text
//! <p>:campaigns             ZSET  campaign id → created ms · 1024 + seq mod 1024 (the list)
//! <p>:campaign_seq          STR   creation counter (orders campaigns created in one ms)
//! <p>:running               SET   running campaign ids (an index; repaired from metas)
//! <p>:active                SET   campaigns that may hold leases or in-doubt jobs (from
//!                                 their first run until they end with nothing held)
//! <p>:scheduled             ZSET  campaign id → schedule_at ms
//! <p>:repair_turn           STR   taken (SET NX, 25 s) by the process repairing the indexes
//! <p>:mh:<day>:<b>          HASH  message id → "<campaign>:<seq>" for messages accepted that
//!                                 UTC day (days since the epoch): the field is the high 8
//!                                 bytes of the id's xxh3-128, b its low 64 bits mod 16384;
//!                                 each bucket expires 31 days after its day
//! <p>:m:<day>:<b>           HASH  the same, as builds before 2026-12-07 wrote it (field the
//!                                 id itself, b = fnv1a(id) mod 16384): read, not written,
//!                                 for days up to the day after <p>:mh_since
//! <p>:mh_since              STR   the day hashed lookups were first written (SET NX)
//! <p>:webhooks             STREAM verified webhook bodies (field b), consumer group
//!                                 "reconciler"; entries are deleted once applied
//! <p>:dead                  STREAM webhook content kept for inspection (newest 10,000)
//! <p>:dead_total            STR   dead letters ever added (minus the stream's length: dropped)
//! <p>:quality               HASH  display number → last quality event (JSON)
//! <p>:lead:<role>           STR   the holder leading the role (a lease that lapses)
//! <p>:{c:ID}:meta           HASH  name, status, reason, spec, pnid, template, times, next_seq
//! <p>:{c:ID}:stats          HASH  the counters
//! <p>:{c:ID}:q              LIST  pending job seqs
//! <p>:{c:ID}:delay          ZSET  seq → due ms (retries)
//! <p>:{c:ID}:lease          ZSET  claim token → lease expiry ms
//! <p>:{c:ID}:lease:<token>  LIST  seqs claimed under the token
//! <p>:{c:ID}:lease_n        HASH  token → jobs still held under it
//! <p>:{c:ID}:fresh:<token>  SET   seqs claimed under the token and not started yet (nor
//!                                 settled): reclaimed to pending; the others in doubt
//! <p>:{c:ID}:doubt          ZSET  seq → in doubt since ms
//! <p>:{c:ID}:j:<n>          HASH  job records seq 10n … 10n+9 (field: seq's last digit)
//! <p>:{c:ID}:d:<b>          HASH  phone → seq, b = phone mod DEDUPE_BUCKETS
//! <p>:{c:ID}:rejects        LIST  upload rejects (JSON) for the failures report (the first N)
//! <p>:{c:ID}:reject_fps     SET   fingerprints of the rejects seen (a file sent again adds none)
//! <p>:sup:{pn:ID}           SET   suppressed phone numbers
//! <p>:sup-why:{pn:ID}       HASH  number → "<ms>|<reason>" (why, since when)
//! <p>:sup-mkt:{pn:ID}       SET   numbers that get no marketing template (131050, a stop)
//! <p>:sup-mkt-why:{pn:ID}   HASH  the same reasons for those
//! <p>:win:{pn:ID}:<phone>   STR   24 h window, expires with it
//! <p>:sends:{pn:ID}         ZSET  the number's rolling window: send "<token>.<index>" → the
//!                                 latest time it may go (µs), then when it went; the last
//!                                 window's and those planned ahead
//! <p>:sends-last:{pn:ID}    STR   the time (µs) of the last send planned in that window
//! <p>:rate:{pn:ID}:c:<id>   STR   a capped campaign's limiter on that number (µs)
//! <p>:evidence:{pn:ID}      STR   latest acceptance time (ms) of a message of the number whose
//!                                 status was applied (see lua/doubt.lua)
//! <p>:backlog:{pn:ID}       STR   when (ms) a status of the number last arrived long after its
//!                                 event (a backlog draining holds in-doubt resends)
//! <p>:pair:{pn:ID}:<phone>  STR   "<next allowed ms>:<campaign>", 72 h
//! <p>:reach:{pf:NAME}       ZSET  a portfolio's users counted against its messaging limit
//!                                 → when (ms); the moving 24 h (one slot per portfolio)
//! <p>:limits                HASH  portfolio → Meta's messaging limit (users, or -1)
//! <p>:throughput            HASH  phone number id → its throughput level (messages/s)
//! <p>:displays              HASH  display number (digits) → phone number id
//! ```

use herald_core::{CampaignId, PhoneE164, WaMessageId, fnv1a};

/// Dedupe buckets per campaign. Each bucket stays a compact listpack up to Redis's
/// `hash-max-listpack-entries` (128 by default), so up to ~2 million recipients per campaign
/// cost about 15 bytes each here.
pub(crate) const DEDUPE_BUCKETS: u64 = 16_384;

/// Job records per bucket hash (the split is textual: a seq's last digit).
pub(crate) const JOBS_PER_BUCKET: u64 = 10;

/// Message-id lookup buckets per day: a million messages a day keep each bucket a compact
/// listpack (about 60 entries).
pub(crate) const MESSAGE_BUCKETS: u64 = 16_384;
/// The bytes of a message id's hash that stand for it in its lookup bucket. An id is 50–70
/// characters: stored whole, the lookups of a million messages took 79–81 MB of Redis's
/// memory; hashed, 45–54 MB (docs/BENCHMARKS.md, fourteenth session). Nor can an id longer
/// than Redis's `hash-max-listpack-value` (64 bytes) turn its bucket into a hashtable, which
/// takes half again as much. 64 bits within a bucket of a day leave two ids of one bucket a
/// chance of 1 in 10^14 of sharing a field at ten million messages a day.
pub(crate) type MessageField = [u8; 8];
/// Days a message-id lookup is kept: Meta's 30-day delivery horizon, plus one.
pub(crate) const MESSAGE_DAYS: i64 = 31;

/// The fixed keys of a campaign, as its scripts declare them (`KEYS[1]` is the meta).
pub(crate) const DECLARED: [&str; 10] = [
    "meta",
    "stats",
    "q",
    "delay",
    "lease",
    "lease_n",
    "doubt",
    "uploads",
    "rejects",
    "reject_fps",
];

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The `SCAN MATCH` pattern of every key under the prefix.
    pub(crate) fn everything(&self) -> String {
        format!("{}:*", self.prefix)
    }

    pub(crate) fn campaigns(&self) -> String {
        format!("{}:campaigns", self.prefix)
    }

    pub(crate) fn campaign_seq(&self) -> String {
        format!("{}:campaign_seq", self.prefix)
    }

    pub(crate) fn running(&self) -> String {
        format!("{}:running", self.prefix)
    }

    pub(crate) fn active(&self) -> String {
        format!("{}:active", self.prefix)
    }

    pub(crate) fn scheduled(&self) -> String {
        format!("{}:scheduled", self.prefix)
    }

    pub(crate) fn lookups_since(&self) -> String {
        format!("{}:mh_since", self.prefix)
    }

    pub(crate) fn repair_turn(&self) -> String {
        format!("{}:repair_turn", self.prefix)
    }

    pub(crate) fn webhooks(&self) -> String {
        format!("{}:webhooks", self.prefix)
    }

    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    pub(crate) fn dead_total(&self) -> String {
        format!("{}:dead_total", self.prefix)
    }

    pub(crate) fn lead(&self, role: &str) -> String {
        format!("{}:lead:{role}", self.prefix)
    }

    pub(crate) fn quality(&self) -> String {
        format!("{}:quality", self.prefix)
    }

    /// Where the lookup of a message id accepted on `day` (days since the Unix epoch, UTC)
    /// lives: its bucket, and its field there.
    pub(crate) fn message_lookup(
        &self,
        day: i64,
        id: &WaMessageId,
    ) -> (MessageBucket<'_>, MessageField) {
        let h = xxhash_rust::xxh3::xxh3_128(id.as_str().as_bytes());
        let bucket = MessageBucket {
            prefix: &self.prefix,
            day,
            bucket: (h as u64) % MESSAGE_BUCKETS,
            hashed: true,
        };
        (bucket, ((h >> 64) as u64).to_be_bytes())
    }

    /// Where a build before the hashed lookups wrote a message id's lookup of `day` (its
    /// field the id itself). They expire within 31 days of the upgrade.
    pub(crate) fn message_lookup_whole(&self, day: i64, id: &WaMessageId) -> MessageBucket<'_> {
        MessageBucket {
            prefix: &self.prefix,
            day,
            bucket: fnv1a(id.as_str().as_bytes()) % MESSAGE_BUCKETS,
            hashed: false,
        }
    }

    /// The base every key of a campaign starts with; scripts build their keys from it.
    pub(crate) fn base(&self, id: &CampaignId) -> String {
        format!("{}:{{c:{}}}", self.prefix, id)
    }

    /// The keys a campaign's scripts declare (`KEYS`), the meta first: every key of the
    /// campaign whose name is fixed. Keys named by data the script reads (a job's record
    /// bucket `j:<n>`, a recipient's dedupe bucket `d:<b>`, a claim's `lease:<token>` and
    /// `fresh:<token>`) cannot be declared before it runs; they are built from the same base
    /// (`ARGV[1]`) and share its hash tag, so they are in the same Cluster slot.
    pub(crate) fn declared(&self, id: &CampaignId) -> Vec<String> {
        let base = self.base(id);
        DECLARED.iter().map(|k| format!("{base}:{k}")).collect()
    }

    pub(crate) fn meta(&self, id: &CampaignId) -> String {
        format!("{}:meta", self.base(id))
    }

    pub(crate) fn stats(&self, id: &CampaignId) -> String {
        format!("{}:stats", self.base(id))
    }

    pub(crate) fn rejects(&self, id: &CampaignId) -> String {
        format!("{}:rejects", self.base(id))
    }

    pub(crate) fn jobs_bucket(&self, id: &CampaignId, n: u64) -> String {
        format!("{}:j:{n}", self.base(id))
    }

    /// A recipient dedupe bucket (`b` below [`DEDUPE_BUCKETS`]; the scripts pick it).
    pub(crate) fn dedupe_bucket(&self, id: &CampaignId, b: u64) -> String {
        format!("{}:d:{b}", self.base(id))
    }

    /// The pending jobs' queue (`q`) and the retries by when they are due (`delay`).
    pub(crate) fn queue(&self, id: &CampaignId) -> (String, String) {
        let base = self.base(id);
        (format!("{base}:q"), format!("{base}:delay"))
    }

    /// The claims' tokens by lease expiry (`lease`), and the in-doubt jobs by when they went
    /// in doubt (`doubt`).
    pub(crate) fn held(&self, id: &CampaignId) -> (String, String) {
        let base = self.base(id);
        (format!("{base}:lease"), format!("{base}:doubt"))
    }

    /// The seqs a claim holds under `token`, and those of them not started yet (its fresh
    /// marks; see `start.lua`).
    pub(crate) fn claim(&self, id: &CampaignId, token: &str) -> (String, String) {
        let base = self.base(id);
        (
            format!("{base}:lease:{token}"),
            format!("{base}:fresh:{token}"),
        )
    }

    /// The bucket and field of a job record (see `common.lua`).
    pub(crate) fn job(&self, id: &CampaignId, seq: u32) -> (String, String) {
        (
            self.jobs_bucket(id, u64::from(seq) / JOBS_PER_BUCKET),
            (seq % 10).to_string(),
        )
    }

    pub(crate) fn suppression(&self, pnid: &str) -> String {
        format!("{}:sup:{{pn:{pnid}}}", self.prefix)
    }

    /// Why each suppressed number is (a hash: number → `<ms>|<reason>`).
    pub(crate) fn suppression_why(&self, pnid: &str) -> String {
        format!("{}:sup-why:{{pn:{pnid}}}", self.prefix)
    }

    /// The suppression list of `scope` and the hash of why each number is on it.
    pub(crate) fn suppression_lists(
        &self,
        pnid: &str,
        scope: herald_store::SuppressionScope,
    ) -> (String, String) {
        match scope {
            herald_store::SuppressionScope::All => {
                (self.suppression(pnid), self.suppression_why(pnid))
            }
            herald_store::SuppressionScope::Marketing => (
                format!("{}:sup-mkt:{{pn:{pnid}}}", self.prefix),
                format!("{}:sup-mkt-why:{{pn:{pnid}}}", self.prefix),
            ),
        }
    }

    /// Business-scoped user id → the number it stands for (a hash).
    pub(crate) fn users(&self, pnid: &str) -> String {
        format!("{}:users:{{pn:{pnid}}}", self.prefix)
    }

    /// Opted-out users whose number is not known yet (a set of user ids).
    pub(crate) fn unlinked_opt_outs(&self, pnid: &str) -> String {
        format!("{}:optout-users:{{pn:{pnid}}}", self.prefix)
    }

    pub(crate) fn window(&self, pnid: &str, phone: PhoneE164) -> String {
        format!("{}:win:{{pn:{pnid}}}:{}", self.prefix, phone.as_u64())
    }

    pub(crate) fn evidence(&self, pnid: &str) -> String {
        format!("{}:evidence:{{pn:{pnid}}}", self.prefix)
    }

    pub(crate) fn backlog(&self, pnid: &str) -> String {
        format!("{}:backlog:{{pn:{pnid}}}", self.prefix)
    }

    /// The number's rolling window: a log of send times (see lua/plan.lua).
    pub(crate) fn sends(&self, pnid: &str) -> String {
        format!("{}:sends:{{pn:{pnid}}}", self.prefix)
    }

    /// The time of the last send planned in the number's window (beside [`Keys::sends`]).
    pub(crate) fn sends_last(&self, pnid: &str) -> String {
        format!("{}:sends-last:{{pn:{pnid}}}", self.prefix)
    }

    /// A capped campaign's limiter, in its phone number's slot (a campaign sends from one).
    pub(crate) fn campaign_rate(&self, pnid: &str, campaign: &CampaignId) -> String {
        format!("{}:rate:{{pn:{pnid}}}:c:{campaign}", self.prefix)
    }

    pub(crate) fn reach(&self, portfolio: &str) -> String {
        format!("{}:reach:{{pf:{portfolio}}}", self.prefix)
    }

    pub(crate) fn throughput(&self) -> String {
        format!("{}:throughput", self.prefix)
    }

    pub(crate) fn displays(&self) -> String {
        format!("{}:displays", self.prefix)
    }

    pub(crate) fn limits(&self) -> String {
        format!("{}:limits", self.prefix)
    }

    /// A recipient's pair-spacing key (one per send: written where it goes, see
    /// [`crate::conn::Shown`]).
    pub(crate) fn pair<'a>(&'a self, pnid: &'a str, phone: PhoneE164) -> PairKey<'a> {
        PairKey {
            prefix: &self.prefix,
            pnid,
            phone,
        }
    }
}

/// A message-id lookup bucket's key: written where it goes, as a command's argument (see
/// [`crate::conn::Shown`]); see [`Keys::message_bucket`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageBucket<'a> {
    prefix: &'a str,
    pub(crate) day: i64,
    pub(crate) bucket: u64,
    /// Fields are ids' hashes (`mh`), not the ids (`m`, older builds).
    hashed: bool,
}

impl std::fmt::Display for MessageBucket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = if self.hashed { "mh" } else { "m" };
        write!(f, "{}:{family}:{}:{}", self.prefix, self.day, self.bucket)
    }
}

/// A recipient's pair-spacing key (see [`Keys::pair`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairKey<'a> {
    prefix: &'a str,
    pnid: &'a str,
    phone: PhoneE164,
}

impl std::fmt::Display for PairKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:pair:{{pn:{}}}:{}",
            self.prefix,
            self.pnid,
            self.phone.as_u64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixed key a script builds from the campaign's base (`base .. ':name'`) is among
    /// those it declares: a new one must be added to [`DECLARED`].
    #[test]
    fn scripts_declare_every_fixed_key() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("base .. ':") {
                let rest = &text[i + "base .. ':".len()..];
                let name = &rest[..rest.find('\'').unwrap()];
                // `lease:`, `fresh:`, `j:`, `d:`: named by data, built at run time.
                if name.ends_with(':') {
                    continue;
                }
                assert!(
                    DECLARED.contains(&name),
                    "{} builds the undeclared key {name:?}",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(
            seen > 20,
            "found only {seen} keys: has the Lua changed its style?"
        );
    }

    #[test]
    fn campaign_keys_share_one_hash_tag() {
        let k = Keys::new("herald");
        let id = CampaignId::new("abc").unwrap();
        for key in [
            k.meta(&id),
            k.stats(&id),
            k.jobs_bucket(&id, 7),
            k.rejects(&id),
        ] {
            assert!(key.contains("{c:abc}"), "{key}");
        }
        let p = PhoneE164::parse("+447912345678").unwrap();
        for key in [
            k.suppression("1"),
            k.window("1", p),
            k.sends("1"),
            k.sends_last("1"),
            k.pair("1", p).to_string(),
        ] {
            assert!(key.contains("{pn:1}"), "{key}");
        }
    }
}
