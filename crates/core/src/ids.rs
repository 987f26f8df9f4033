//! Identifiers: campaigns, jobs, and the message ids Meta hands back.
//!
//! A `JobId` is its campaign plus a sequence number inside that campaign, so the store can find
//! a job's keys (which share the campaign's hash slot) from the id alone, including when it
//! comes back from Meta inside `biz_opaque_callback_data`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base-32 alphabet, lower-cased: no `i`, `l`, `o`, `u`, so ids read aloud well.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Longest campaign id accepted from outside (generated ones are 16 characters).
pub const CAMPAIGN_ID_MAX: usize = 32;
/// Meta documents `biz_opaque_callback_data` up to 512 characters; its message ids are far
/// shorter, but nothing promises how much.
pub const WA_MESSAGE_ID_MAX: usize = 512;
/// The prefix Herald puts before a job id in `biz_opaque_callback_data`, so that callback data
/// written by other software on the same phone number is never mistaken for ours.
pub const CALLBACK_PREFIX: &str = "hrld:";

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} has an invalid character {ch:?} at position {index}")]
    InvalidChar {
        kind: &'static str,
        index: usize,
        ch: char,
    },
    #[error("job id must look like CAMPAIGN:SEQ")]
    JobShape,
    #[error("job sequence number {0:?} is not a number")]
    JobSeq(String),
}

fn check_chars(
    kind: &'static str,
    s: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    match s.char_indices().find(|&(_, c)| !ok(c)) {
        Some((index, ch)) => Err(IdError::InvalidChar { kind, index, ch }),
        None => Ok(()),
    }
}

/// A campaign's id: 1 to 32 characters of `[0-9a-z]`. Generated ids are 16 characters,
/// sortable by creation time (10 characters of milliseconds, 6 of randomness).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(std::sync::Arc<str>);

impl utoipa::PartialSchema for CampaignId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-z]+$"))
            .max_length(Some(CAMPAIGN_ID_MAX))
            .into()
    }
}

impl utoipa::ToSchema for CampaignId {}

impl CampaignId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_chars("campaign id", s, CAMPAIGN_ID_MAX, |c| {
            c.is_ascii_digit() || c.is_ascii_lowercase()
        })?;
        Ok(Self(s.into()))
    }

    /// A new id from a creation time and 30 bits of entropy the caller supplies (the caller
    /// owns the random source, which keeps this crate deterministic).
    pub fn generate(unix_millis: u64, entropy: u32) -> Self {
        let mut out = [0u8; 16];
        let mut t = unix_millis & ((1 << 50) - 1);
        for slot in out[..10].iter_mut().rev() {
            *slot = CROCKFORD[(t & 31) as usize];
            t >>= 5;
        }
        let mut r = entropy;
        for slot in out[10..].iter_mut().rev() {
            *slot = CROCKFORD[(r & 31) as usize];
            r >>= 5;
        }
        // Every byte comes from CROCKFORD, which is ASCII.
        Self(
            out.iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One recipient's job: its campaign and its sequence number there (assigned on enqueue,
/// starting at 1).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    pub campaign: CampaignId,
    pub seq: u32,
}

impl JobId {
    pub fn new(campaign: CampaignId, seq: u32) -> Self {
        Self { campaign, seq }
    }

    /// The value Herald sends as `biz_opaque_callback_data`.
    pub fn to_callback_data(&self) -> String {
        format!("{CALLBACK_PREFIX}{self}")
    }

    /// Recovers a job id from `biz_opaque_callback_data`; `None` when the data is not Herald's.
    pub fn from_callback_data(data: &str) -> Option<Self> {
        data.strip_prefix(CALLBACK_PREFIX)?.parse().ok()
    }
}

/// A Cloud API message id (`wamid.…`), as returned by a send and echoed in status webhooks.
/// Any printable ASCII without spaces is accepted: Meta does not promise a format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaMessageId(Box<str>);

impl WaMessageId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_chars("message id", s, WA_MESSAGE_ID_MAX, |c| c.is_ascii_graphic())?;
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_impls {
    ($ty:ident) => {
        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_id_impls!(CampaignId);
string_id_impls!(WaMessageId);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.campaign, self.seq)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (campaign, seq) = s.split_once(':').ok_or(IdError::JobShape)?;
        let campaign = CampaignId::new(campaign)?;
        let seq = seq
            .parse::<u32>()
            .ok()
            .filter(|_| seq.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| IdError::JobSeq(seq.chars().take(16).collect()))?;
        Ok(Self { campaign, seq })
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A business-scoped user id (2026: `user.…`, `US.…`) as the network gives it, or `None`
/// for anything else: at most 128 bytes of letters, digits, `.`, `_` and `-`. Checked before
/// it is stored or put in a path.
pub fn business_user_id(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn campaign_ids_are_validated() {
        assert!(CampaignId::new("01jdx4k2m3abcdef").is_ok());
        assert_eq!(
            CampaignId::new(""),
            Err(IdError::Empty {
                kind: "campaign id"
            })
        );
        assert_eq!(
            CampaignId::new("Spring"),
            Err(IdError::InvalidChar {
                kind: "campaign id",
                index: 0,
                ch: 'S'
            })
        );
        assert!(matches!(
            CampaignId::new(&"a".repeat(33)),
            Err(IdError::TooLong { len: 33, .. })
        ));
    }

    #[test]
    fn generated_ids_sort_by_time_and_parse_back() {
        let a = CampaignId::generate(1_700_000_000_000, 0x3fff_ffff);
        let b = CampaignId::generate(1_700_000_000_001, 0);
        assert_eq!(a.as_str().len(), 16);
        assert!(a < b, "{a} < {b}");
        assert_eq!(CampaignId::new(a.as_str()).unwrap(), a);
    }

    #[test]
    fn job_ids_round_trip_through_callback_data() {
        let id = JobId::new(CampaignId::new("abc123").unwrap(), 42);
        assert_eq!(id.to_string(), "abc123:42");
        assert_eq!(id.to_callback_data(), "hrld:abc123:42");
        assert_eq!(JobId::from_callback_data("hrld:abc123:42"), Some(id));
        assert_eq!(JobId::from_callback_data("some data"), None);
        assert_eq!(JobId::from_callback_data("hrld:abc123:+42"), None);
        assert_eq!(JobId::from_callback_data("hrld:abc123:99999999999"), None);
        assert_eq!("abc123".parse::<JobId>(), Err(IdError::JobShape));
    }

    #[test]
    fn message_ids_accept_meta_shapes_and_refuse_spaces() {
        assert!(
            WaMessageId::new("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=")
                .is_ok()
        );
        assert!(matches!(
            WaMessageId::new("wamid. x"),
            Err(IdError::InvalidChar { index: 6, .. })
        ));
    }

    proptest! {
        #[test]
        fn job_id_parse_is_total_and_inverse(c in "[0-9a-z]{1,32}", seq: u32) {
            let id = JobId::new(CampaignId::new(&c).unwrap(), seq);
            prop_assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        }

        #[test]
        fn job_id_parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<JobId>();
            let _ = JobId::from_callback_data(&s);
        }
    }
}
