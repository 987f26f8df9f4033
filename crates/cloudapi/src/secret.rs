//! Secrets that must never reach a log: access tokens, app secrets, verify tokens, API keys.

use std::fmt;

/// A string whose `Debug` and `Display` never show it. Read it with [`Secret::expose`], only
/// where it is put on the wire.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl serde::Serialize for Secret {
    /// Serialises redacted: a config dump or API response can never carry the value.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let token = Secret::new("EAAG-very-secret-token");
        for shown in [
            format!("{token}"),
            format!("{token:?}"),
            format!("{token:#?}"),
            serde_json::to_string(&token).unwrap(),
        ] {
            assert!(!shown.contains("EAAG"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        assert_eq!(token.expose(), "EAAG-very-secret-token");
        assert_eq!(Secret::default().to_string(), "<empty>");
    }
}
