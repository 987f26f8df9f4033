//! `Region`: the ISO 3166-1 alpha-2 region a recipient's number belongs to, as libphonenumber
//! names it. Meta prices a message by the recipient's market, and a market is a set of
//! regions (see [`crate::cost`]); send windows will need the region's local time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Two ASCII capital letters. `ZZ` (libphonenumber's "unknown region") stands for a number
/// whose region was not found.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

/// A string that is not two ASCII capital letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 3166-1 alpha-2 region code (two capital letters, e.g. \"US\")")]
pub struct RegionError(pub String);

impl Region {
    /// The region of a number whose region is not known.
    pub const UNKNOWN: Self = Self(*b"ZZ");

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }

    pub fn is_known(&self) -> bool {
        *self != Self::UNKNOWN
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([a, b])),
            _ => Err(RegionError(s.to_owned())),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl utoipa::PartialSchema for Region {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{2}$"))
            .description(Some("ISO 3166-1 alpha-2 region; ZZ when not known"))
            .into()
    }
}

impl utoipa::ToSchema for Region {}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_capitals_parse() {
        assert_eq!(
            "US".parse::<Region>().map(|r| r.to_string()),
            Ok("US".into())
        );
        for bad in ["", "U", "us", "USA", "U1", "ÜS"] {
            assert!(bad.parse::<Region>().is_err(), "{bad:?}");
        }
        assert!(!Region::UNKNOWN.is_known());
    }
}
