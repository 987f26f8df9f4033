//! `PhoneE164`: a phone number already normalised to E.164.
//!
//! Numbers enter Herald as text in many shapes; the loader normalises them with libphonenumber
//! and only then builds a `PhoneE164`. From there on a number is a `u64` of its digits (E.164
//! has at most 15 digits and never starts with 0, so the mapping is lossless): eight bytes to
//! store, hash and compare, with `+` added only when displayed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shortest E.164 number in use (Niue and a few other small plans have 4-digit subscriber
/// numbers behind a 3-digit country code).
pub const MIN_DIGITS: usize = 7;
/// E.164's maximum length.
pub const MAX_DIGITS: usize = 15;

/// A phone number in E.164 form: digits only inside, `+` when displayed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneE164(u64);

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number has a non-digit character {ch:?} at position {index}")]
    InvalidChar { index: usize, ch: char },
    #[error("an E.164 number cannot start with 0")]
    LeadingZero,
    #[error("phone number has {digits} digits; E.164 needs at least {MIN_DIGITS}")]
    TooShort { digits: usize },
    #[error("phone number has {digits} digits; E.164 allows at most {MAX_DIGITS}")]
    TooLong { digits: usize },
}

impl PhoneE164 {
    /// Parses `+digits` or bare `digits` (the form WhatsApp ids take). Nothing else is accepted:
    /// no separators, no national forms. Those are the loader's job.
    pub fn parse(s: &str) -> Result<Self, PhoneError> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        let offset = s.len() - digits.len();
        let mut value: u64 = 0;
        for (i, ch) in digits.char_indices() {
            let Some(d) = ch.to_digit(10) else {
                return Err(PhoneError::InvalidChar {
                    index: i + offset,
                    ch,
                });
            };
            if i >= MAX_DIGITS {
                return Err(PhoneError::TooLong {
                    digits: digits.chars().count(),
                });
            }
            value = value * 10 + u64::from(d);
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero);
        }
        if digits.len() < MIN_DIGITS {
            return Err(PhoneError::TooShort {
                digits: digits.len(),
            });
        }
        Ok(Self(value))
    }

    /// Builds a number from its digits as an integer (as stored).
    pub fn from_u64(value: u64) -> Result<Self, PhoneError> {
        let digits = digit_count(value);
        if value == 0 {
            return Err(PhoneError::Empty);
        }
        if digits < MIN_DIGITS {
            return Err(PhoneError::TooShort { digits });
        }
        if digits > MAX_DIGITS {
            return Err(PhoneError::TooLong { digits });
        }
        Ok(Self(value))
    }

    /// The digits as an integer: the compact form for storage and hashing.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A number of the North American Numbering Plan (`+1`: the US, Canada and their
    /// neighbours), where Meta delivers no marketing template.
    pub fn is_nanp(self) -> bool {
        self.digits().as_str().starts_with('1')
    }

    /// The digits without `+`, as the Cloud API's `to` field wants them.
    pub fn digits(self) -> Digits {
        let mut buf = [0u8; MAX_DIGITS];
        let len = digit_count(self.0);
        let mut v = self.0;
        for slot in buf[..len].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        Digits {
            buf,
            len: len as u8,
        }
    }

    /// A form safe for logs: country code and a little context kept, the middle starred,
    /// e.g. `+4479******78`.
    pub fn masked(self) -> Masked {
        Masked(self)
    }
}

fn digit_count(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// The digits of a [`PhoneE164`], on the stack.
#[derive(Clone, Copy)]
pub struct Digits {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl Digits {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written into `buf`.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for Digits {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log-safe display of a phone number; see [`PhoneE164::masked`].
#[derive(Clone, Copy)]
pub struct Masked(PhoneE164);

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.digits();
        let s = d.as_str();
        let (head, tail) = (4.min(s.len()), 2);
        let stars = s.len().saturating_sub(head + tail);
        f.write_str("+")?;
        f.write_str(&s[..head])?;
        for _ in 0..stars {
            f.write_str("*")?;
        }
        f.write_str(&s[head + stars..])
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// `Debug` masks: a phone number that ends up in a `{:?}` of some larger struct must not leak
/// into logs whole.
impl fmt::Debug for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneE164({})", self.masked())
    }
}

impl FromStr for PhoneE164 {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PhoneE164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PhoneE164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plus_and_bare_forms_to_the_same_number() {
        let a = PhoneE164::parse("+447912345678").unwrap();
        let b = PhoneE164::parse("447912345678").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_u64(), 447_912_345_678);
        assert_eq!(a.to_string(), "+447912345678");
        assert_eq!(&*a.digits(), "447912345678");
    }

    #[test]
    fn rejects_with_precise_errors() {
        assert_eq!(PhoneE164::parse(""), Err(PhoneError::Empty));
        assert_eq!(PhoneE164::parse("+"), Err(PhoneError::Empty));
        assert_eq!(
            PhoneE164::parse("+44 79"),
            Err(PhoneError::InvalidChar { index: 3, ch: ' ' })
        );
        assert_eq!(
            PhoneE164::parse("4479123456O"),
            Err(PhoneError::InvalidChar { index: 10, ch: 'O' })
        );
        assert_eq!(
            PhoneE164::parse("٤٤٧٩١٢٣٤٥٦٧٨"),
            Err(PhoneError::InvalidChar { index: 0, ch: '٤' })
        );
        assert_eq!(PhoneE164::parse("0447912345"), Err(PhoneError::LeadingZero));
        assert_eq!(
            PhoneE164::parse("123456"),
            Err(PhoneError::TooShort { digits: 6 })
        );
        assert_eq!(
            PhoneE164::parse("1234567890123456"),
            Err(PhoneError::TooLong { digits: 16 })
        );
        assert_eq!(
            PhoneE164::parse("99999999999999999999999"),
            Err(PhoneError::TooLong { digits: 23 })
        );
    }

    #[test]
    fn masks_the_middle_digits() {
        let p = PhoneE164::parse("+447912345678").unwrap();
        assert_eq!(p.masked().to_string(), "+4479******78");
        assert_eq!(format!("{p:?}"), "PhoneE164(+4479******78)");
        let short = PhoneE164::parse("+6834002").unwrap();
        assert_eq!(short.masked().to_string(), "+6834*02");
    }

    #[test]
    fn serde_round_trips_as_a_plus_string() {
        let p = PhoneE164::parse("14155551234").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"+14155551234\"");
        assert_eq!(serde_json::from_str::<PhoneE164>(&json).unwrap(), p);
        assert!(serde_json::from_str::<PhoneE164>("\"+1 415\"").is_err());
    }

    proptest! {
        #[test]
        fn every_valid_u64_round_trips(v in 1_000_000u64..=999_999_999_999_999) {
            let p = PhoneE164::from_u64(v).unwrap();
            prop_assert_eq!(PhoneE164::parse(&p.to_string()).unwrap(), p);
            prop_assert_eq!(PhoneE164::parse(&p.digits()).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = PhoneE164::parse(&s);
        }
    }
}
