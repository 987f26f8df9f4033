//! A recipient as the loader hands it to the store: a normalised number and the values of the
//! campaign's variables.
//!
//! The values live in one compact string ([`Vars`]): one allocation per recipient however
//! many variables there are, and the same bytes the store persists, so nothing is re-encoded
//! between the CSV and Redis.

use std::fmt;

use crate::phone::PhoneE164;
use crate::region::Region;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub phone: PhoneE164,
    /// One value per variable column, in the order the load reports its variables.
    pub vars: Vars,
    /// The number's region, as the loader found it ([`Region::UNKNOWN`] when it did not).
    pub region: Region,
}

impl Recipient {
    /// A recipient whose region is not known.
    pub fn new(phone: PhoneE164, vars: Vars) -> Self {
        Self {
            phone,
            vars,
            region: Region::UNKNOWN,
        }
    }

    pub fn with_region(self, region: Region) -> Self {
        Self { region, ..self }
    }
}

/// Variable values, encoded as `len:value` for each value (`len` in bytes, decimal), so any
/// value, including one with colons or newlines, round-trips.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Vars(Box<str>);

/// An encoded string that is not a well-formed [`Vars`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed variable encoding at byte {at}")]
pub struct VarsError {
    pub at: usize,
}

impl Vars {
    /// Encodes values.
    pub fn from_values<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut b = VarsBuilder::default();
        for v in values {
            b.push(v.as_ref());
        }
        b.finish()
    }

    /// Decodes and checks an encoded string (from storage).
    pub fn from_encoded(encoded: &str) -> Result<Self, VarsError> {
        let mut it = Iter {
            rest: encoded,
            pos: 0,
        };
        while !it.rest.is_empty() {
            it.next_checked()?;
        }
        Ok(Self(encoded.into()))
    }

    /// The encoded form.
    pub fn encoded(&self) -> &str {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut it = Iter {
            rest: &self.0,
            pos: 0,
        };
        std::iter::from_fn(move || it.next_checked().ok().flatten())
    }

    /// The `i`th value (`""` past the end).
    pub fn get(&self, i: usize) -> &str {
        self.iter().nth(i).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Iter<'a> {
    rest: &'a str,
    pos: usize,
}

impl<'a> Iter<'a> {
    fn next_checked(&mut self) -> Result<Option<&'a str>, VarsError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let bad = VarsError { at: self.pos };
        let colon = self.rest.find(':').ok_or(bad.clone())?;
        let len: usize = self.rest[..colon].parse().map_err(|_| bad.clone())?;
        let value = self.rest.get(colon + 1..colon + 1 + len).ok_or(bad)?;
        self.pos += colon + 1 + len;
        self.rest = &self.rest[colon + 1 + len..];
        Ok(Some(value))
    }
}

/// Builds a [`Vars`] value by value.
#[derive(Debug, Default)]
pub struct VarsBuilder(String);

impl VarsBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self(String::with_capacity(bytes))
    }

    pub fn push(&mut self, value: &str) {
        use fmt::Write as _;
        let _ = write!(self.0, "{}:", value.len());
        self.0.push_str(value);
    }

    pub fn finish(self) -> Vars {
        Vars(self.0.into_boxed_str())
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for Vars {
    fn eq(&self, other: &[S]) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Vars {
    fn eq(&self, other: &[S; N]) -> bool {
        self == &other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_compactly_and_reads_back() {
        let v = Vars::from_values(["Ann", "", "a:b\n7:"]);
        assert_eq!(v.encoded(), "3:Ann0:6:a:b\n7:");
        assert_eq!(v.iter().collect::<Vec<_>>(), ["Ann", "", "a:b\n7:"]);
        assert_eq!(
            (v.get(0), v.get(1), v.get(2), v.get(3)),
            ("Ann", "", "a:b\n7:", "")
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v, ["Ann", "", "a:b\n7:"]);
        assert_eq!(Vars::from_encoded(v.encoded()).unwrap(), v);
    }

    #[test]
    fn malformed_encodings_are_refused() {
        for bad in ["3:ab", "x:a", "3", ":a", "1:é"] {
            assert!(Vars::from_encoded(bad).is_err(), "{bad:?}");
        }
        assert!(Vars::from_encoded("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn any_values_round_trip(values in proptest::collection::vec("\\PC*", 0..6)) {
            let v = Vars::from_values(&values);
            prop_assert_eq!(v.iter().collect::<Vec<_>>(), values.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(Vars::from_encoded(v.encoded()).unwrap(), v);
        }

        #[test]
        fn from_encoded_never_panics(s in "\\PC{0,30}") {
            let _ = Vars::from_encoded(&s);
        }
    }
}
