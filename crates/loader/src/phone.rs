//! Phone number normalisation: spreadsheet text → E.164, or a precise reason why not.
//!
//! A wrong number here messages a stranger, so the rules are forgiving only where the meaning
//! is certain and strict everywhere else:
//!
//! - Accepted: `+` international form, `00` international prefix, digits-only international
//!   form (as WhatsApp ids are written), national form when the campaign has a default
//!   region, separators (spaces of every kind, dashes, dots, slashes, parentheses), and digits
//!   of other scripts (Arabic-Indic, Devanagari, full-width…), which libphonenumber reads too.
//! - Refused before libphonenumber sees the text: letters anywhere (libphonenumber reads
//!   letters as keypad digits, and one port turns `+44 7912 34567O` into a *different valid
//!   number*), spreadsheet damage (`4.47912E+11`, `447912345678.0`), extensions, stray symbols.
//! - Kept only when libphonenumber's metadata says the number is valid for its country.
//!
//! Two repairs are applied when, and only when, the written number is invalid and the repaired
//! one is valid, because their meaning is certain: Mexico's old mobile prefix (`+52 1 …`,
//! abolished in 2019 and still common in WhatsApp ids) is dropped, and a Brazilian mobile
//! written without its ninth digit (8-digit subscriber numbers starting 6–9, which cannot be
//! landlines) gets the `9` every mobile received by 2016.
//!
//! International numbers take a fast path: the separators are already gone, so the number is
//! built from its digits (country code by prefix lookup) and validated, skipping
//! libphonenumber's text parser. Anything that fails the fast path is re-parsed in full, so
//! the fast path can only save time, never change an answer (a property test checks this).

use std::fmt;

use std::sync::atomic::{AtomicU16, Ordering};

use herald_core::PhoneE164;

use rlibphonenumber::enums::{NumberLengthType, Region};
use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PhoneNumberUtil, ValidationError};

/// Why a phone value was refused. The codes are stable: they appear in reports, the failures
/// CSV and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneReject {
    /// No value at all.
    Empty,
    /// Letters anywhere in the value.
    Letters,
    /// A number mangled by a spreadsheet: scientific notation or a trailing `.0`.
    SpreadsheetDamage,
    /// An extension (`ext. 12`, `x12`, `#12`): WhatsApp cannot reach an extension.
    Extension,
    /// Symbols that have no place in a phone number.
    NotANumber,
    /// A national-form number and the campaign has no default region.
    NoDefaultRegion,
    /// No country has this calling code.
    InvalidCountryCode,
    TooShort,
    TooLong,
    /// The right length range but not a valid number for its country.
    InvalidNumber,
}

impl PhoneReject {
    pub const ALL: [Self; 10] = [
        Self::Empty,
        Self::Letters,
        Self::SpreadsheetDamage,
        Self::Extension,
        Self::NotANumber,
        Self::NoDefaultRegion,
        Self::InvalidCountryCode,
        Self::TooShort,
        Self::TooLong,
        Self::InvalidNumber,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty_phone",
            Self::Letters => "letters",
            Self::SpreadsheetDamage => "spreadsheet_damage",
            Self::Extension => "extension",
            Self::NotANumber => "not_a_number",
            Self::NoDefaultRegion => "no_default_region",
            Self::InvalidCountryCode => "invalid_country_code",
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::InvalidNumber => "invalid_number",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Empty => "the phone cell is empty",
            Self::Letters => "the phone number contains letters",
            Self::SpreadsheetDamage => {
                "the number was mangled by a spreadsheet (scientific notation or a trailing .0); format the column as text"
            }
            Self::Extension => "the number has an extension, which WhatsApp cannot reach",
            Self::NotANumber => "the value contains characters that are not part of a phone number",
            Self::NoDefaultRegion => {
                "the number is in national form; give it with its country code or set the campaign's default_region"
            }
            Self::InvalidCountryCode => "no country uses this calling code",
            Self::TooShort => "the number is too short",
            Self::TooLong => "the number is too long",
            Self::InvalidNumber => "not a valid number for its country",
        }
    }
}

impl fmt::Display for PhoneReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The default region is not one libphonenumber knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a region code libphonenumber knows (use ISO 3166-1 alpha-2, e.g. \"US\")")]
pub struct UnknownRegion(pub String);

/// Longest digit string considered; anything longer is too long for any plan.
const MAX_DIGITS: usize = 20;

/// Normalises phone values for one campaign (one default region).
///
/// Each normaliser owns its libphonenumber instance: the regex caches inside are fastest for
/// the thread that uses them first, and sharing one instance between threads measured ~15% of
/// the time in lock contention. Give each thread its own clone (a clone builds a fresh
/// instance, about 5 ms).
pub struct Normalizer {
    util: PhoneNumberUtil,
    region: Option<Region>,
    calling_codes: Box<[bool; 1000]>,
    /// Each calling code's main region (the only one for most).
    main_regions: Box<[Option<herald_core::Region>; 1000]>,
    /// Regions of `+1` numbers by area code, and of `+7` numbers by their next digit, filled
    /// in as numbers are seen (see [`Normalizer::region_of`]); 0 is "not asked yet".
    shared_codes: Box<[AtomicU16; SHARED_SLOTS]>,
}

/// `+1` area codes 000–999, then `+7` followed by 0–9.
const SHARED_SLOTS: usize = 1010;

impl Clone for Normalizer {
    fn clone(&self) -> Self {
        Self {
            util: new_util(),
            region: self.region,
            calling_codes: self.calling_codes.clone(),
            main_regions: self.main_regions.clone(),
            shared_codes: new_shared_codes(),
        }
    }
}

fn new_shared_codes() -> Box<[AtomicU16; SHARED_SLOTS]> {
    Box::new(std::array::from_fn(|_| AtomicU16::new(0)))
}

fn new_util() -> PhoneNumberUtil {
    // The built-in metadata is compiled in and validated at build time; building the util
    // from it cannot fail short of a broken build.
    PhoneNumberUtil::new()
        .unwrap_or_else(|e| panic!("libphonenumber's built-in metadata failed to load: {e}"))
}

impl fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Normalizer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The digits of a value once separators are gone.
struct Cleaned {
    digits: [u8; MAX_DIGITS],
    len: usize,
    plus: bool,
}

impl Cleaned {
    fn digits(&self) -> &str {
        // Only ASCII digits are pushed.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or_default()
    }
}

impl Normalizer {
    pub fn new(default_region: Option<&str>) -> Result<Self, UnknownRegion> {
        let util = new_util();
        let region = match default_region {
            None => None,
            Some(r) => {
                let parsed: Region = r.parse().map_err(|_| UnknownRegion(r.to_owned()))?;
                if util.get_country_code_for_region(parsed).is_none() {
                    return Err(UnknownRegion(r.to_owned()));
                }
                Some(parsed)
            }
        };
        let mut calling_codes = Box::new([false; 1000]);
        let mut main_regions = Box::new([None; 1000]);
        for cc in util.get_supported_calling_codes() {
            if let Ok(i) = usize::try_from(cc)
                && i < 1000
            {
                calling_codes[i] = true;
                main_regions[i] = util
                    .get_region_for_country_code(cc)
                    .and_then(|r| r.to_string().parse().ok());
            }
        }
        Ok(Self {
            util,
            region,
            calling_codes,
            main_regions,
            shared_codes: new_shared_codes(),
        })
    }

    /// Normalises one value.
    pub fn normalize(&self, raw: &str) -> Result<PhoneE164, PhoneReject> {
        let s = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if s.is_empty() {
            return Err(PhoneReject::Empty);
        }
        if is_spreadsheet_damage(s) {
            return Err(PhoneReject::SpreadsheetDamage);
        }
        if has_extension(s) {
            return Err(PhoneReject::Extension);
        }
        if s.chars().any(char::is_alphabetic) {
            return Err(PhoneReject::Letters);
        }
        let c = clean(s)?;
        let digits = c.digits();
        if c.plus {
            return self.international(digits);
        }
        if let Some(rest) = digits.strip_prefix("00") {
            return self.international(rest);
        }
        match self.region {
            None if digits.starts_with('0') => Err(PhoneReject::NoDefaultRegion),
            None => self.international(digits),
            Some(region) => {
                let national = self.national(digits, region);
                if national.is_ok() || digits.starts_with('0') {
                    return national;
                }
                // Not valid as a national number; a digits-only international number (a
                // WhatsApp id) is the only other reading.
                self.international(digits).or(national)
            }
        }
    }

    fn international(&self, digits: &str) -> Result<PhoneE164, PhoneReject> {
        if let Some(p) = self.fast(digits) {
            return Ok(p);
        }
        let mut plus = String::with_capacity(digits.len() + 1);
        plus.push('+');
        plus.push_str(digits);
        let parsed = self.util.parse(&plus, None).map_err(map_parse_error)?;
        self.finish(parsed)
    }

    fn national(&self, digits: &str, region: Region) -> Result<PhoneE164, PhoneReject> {
        let parsed = self
            .util
            .parse(digits, Some(region))
            .map_err(map_parse_error)?;
        self.finish(parsed)
    }

    /// The region of a number this normaliser accepted ([`herald_core::Region::UNKNOWN`]
    /// when libphonenumber names none).
    ///
    /// Most calling codes belong to one region, read from a table. `+1` (the North American
    /// plan) and `+7` (Russia and Kazakhstan) are told apart by the next digits: their
    /// answers are kept per area code, so a US campaign asks libphonenumber's region search
    /// once per area code, not once per number. Other shared codes are named by their main
    /// region (`+44`: GB, with Jersey, Guernsey and the Isle of Man): Meta prices by calling
    /// code, and telling them apart would cost a pattern search per number.
    pub fn region_of(&self, phone: PhoneE164) -> herald_core::Region {
        use herald_core::Region;
        let digits = phone.digits();
        let digits = digits.as_str();
        let Some(cc_len) = self.calling_code_len(digits) else {
            return Region::UNKNOWN;
        };
        let d = |i: usize| usize::from(digits.as_bytes().get(i).map_or(0, |b| b - b'0'));
        let slot = match &digits[..cc_len] {
            "1" if digits.len() >= 4 => d(1) * 100 + d(2) * 10 + d(3),
            "7" if digits.len() >= 2 => 1000 + d(1),
            cc => {
                return cc
                    .parse::<usize>()
                    .ok()
                    .and_then(|cc| self.main_regions[cc])
                    .unwrap_or(Region::UNKNOWN);
            }
        };
        let known = self.shared_codes[slot].load(Ordering::Relaxed);
        if known != 0 {
            let [a, b] = known.to_be_bytes();
            return std::str::from_utf8(&[a, b])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(Region::UNKNOWN);
        }
        let region = self
            .number(digits)
            .and_then(|n| self.util.get_region_for_number(&n))
            .and_then(|r| r.to_string().parse::<Region>().ok())
            .unwrap_or(Region::UNKNOWN);
        if region.is_known() {
            let b = region.as_str().as_bytes();
            self.shared_codes[slot].store(u16::from_be_bytes([b[0], b[1]]), Ordering::Relaxed);
        }
        region
    }

    /// How many leading digits are the calling code; `None` when none matches.
    fn calling_code_len(&self, digits: &str) -> Option<usize> {
        (1..=3).find(|&n| {
            digits
                .get(..n)
                .and_then(|p| p.parse::<usize>().ok())
                .is_some_and(|cc| self.calling_codes[cc])
        })
    }

    /// The number of international digits, split at its calling code; `None` when no
    /// calling code matches.
    fn number(&self, digits: &str) -> Option<PhoneNumber> {
        let cc_len = self.calling_code_len(digits)?;
        let nsn = &digits[cc_len..];
        let mut number = PhoneNumber {
            country_code: digits[..cc_len].parse().ok()?,
            national_number: nsn.parse().ok()?,
            ..PhoneNumber::default()
        };
        let zeros = nsn.bytes().take_while(|&b| b == b'0').count();
        if zeros > 0 {
            if nsn.len() < 2 {
                return None;
            }
            number.italian_leading_zero = Some(true);
            if zeros > 1 {
                number.number_of_leading_zeros = Some(i32::try_from(zeros).ok()?);
            }
        }
        Some(number)
    }

    /// Builds the number straight from its digits and validates it; `None` means "ask the
    /// full parser".
    fn fast(&self, digits: &str) -> Option<PhoneE164> {
        let number = self.number(digits)?;
        if self.util.is_valid_number(&number) {
            PhoneE164::parse(digits).ok()
        } else {
            None
        }
    }
}

impl Normalizer {
    /// Accepts a parsed number if it is valid (or a certain repair of it is), naming the
    /// reason otherwise.
    fn finish(&self, number: PhoneNumber) -> Result<PhoneE164, PhoneReject> {
        if number.extension.as_deref().is_some_and(|e| !e.is_empty()) {
            return Err(PhoneReject::Extension);
        }
        if self.util.is_valid_number(&number) {
            return self.to_e164(&number);
        }
        if let Some(repaired) = repair(&number).filter(|r| self.util.is_valid_number(r)) {
            return self.to_e164(&repaired);
        }
        Err(reason_for_invalid(
            self.util.is_possible_number_with_reason(&number),
        ))
    }

    fn to_e164(&self, number: &PhoneNumber) -> Result<PhoneE164, PhoneReject> {
        PhoneE164::parse(&self.util.format(number, PhoneNumberFormat::E164))
            .map_err(|_| PhoneReject::InvalidNumber)
    }
}

fn reason_for_invalid(possible: Result<NumberLengthType, ValidationError>) -> PhoneReject {
    match possible {
        Err(ValidationError::TooShort) => PhoneReject::TooShort,
        Err(ValidationError::TooLong) => PhoneReject::TooLong,
        Err(ValidationError::InvalidCountryCode) => PhoneReject::InvalidCountryCode,
        // Only dialable locally, without the area code: short of a full number.
        Ok(NumberLengthType::IsPossibleLocalOnly) => PhoneReject::TooShort,
        Err(ValidationError::InvalidLength) | Ok(_) => PhoneReject::InvalidNumber,
    }
}

/// The two repairs whose meaning is certain (see the module docs).
fn repair(number: &PhoneNumber) -> Option<PhoneNumber> {
    let nsn = number.national_number.to_string();
    let fixed = match number.country_code {
        52 if nsn.len() == 11 && nsn.starts_with('1') => nsn[1..].to_owned(),
        55 if nsn.len() == 10 && matches!(nsn.as_bytes()[2], b'6'..=b'9') => {
            format!("{}9{}", &nsn[..2], &nsn[2..])
        }
        _ => return None,
    };
    Some(PhoneNumber {
        country_code: number.country_code,
        national_number: fixed.parse().ok()?,
        ..PhoneNumber::default()
    })
}

fn map_parse_error(e: rlibphonenumber::ParseError) -> PhoneReject {
    use rlibphonenumber::ParseError as P;
    match e {
        P::InvalidCountryCode => PhoneReject::InvalidCountryCode,
        P::TooShortAfterIdd | P::TooShortNsn => PhoneReject::TooShort,
        P::TooLongNsn => PhoneReject::TooLong,
        P::NotANumber(_) => PhoneReject::NotANumber,
    }
}

/// `4.47912E+11`, `4,47912E+11`, `447912345678.0`: what Excel does to a numeric column.
fn is_spreadsheet_damage(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    // Scientific notation: mantissa, E, optional sign, exponent.
    if let Some(e) = b.iter().position(|&c| c == b'E' || c == b'e') {
        let (mantissa, exp) = (&b[..e], &b[e + 1..]);
        let exp = exp.strip_prefix(b"+").unwrap_or(exp);
        let mantissa = mantissa.strip_prefix(b"+").unwrap_or(mantissa);
        let mantissa_ok = match mantissa.iter().position(|&c| c == b'.' || c == b',') {
            Some(p) => digits(&mantissa[..p]) && digits(&mantissa[p + 1..]),
            None => digits(mantissa),
        };
        return mantissa_ok && digits(exp);
    }
    // A float rendering of an integer: digits, a dot or comma, then zeros only.
    let body = b.strip_prefix(b"+").unwrap_or(b);
    match body.iter().rposition(|&c| c == b'.' || c == b',') {
        Some(p) => {
            let (int, frac) = (&body[..p], &body[p + 1..]);
            int.len() >= 6 && digits(int) && !frac.is_empty() && frac.iter().all(|&c| c == b'0')
        }
        None => false,
    }
}

fn has_extension(s: &str) -> bool {
    let b = s.as_bytes();
    if b.contains(&b'#') {
        return true;
    }
    // "ext" in any case, without allocating a lowercase copy.
    if b.windows(3).any(|w| w.eq_ignore_ascii_case(b"ext")) {
        return true;
    }
    // `x12` or `x 12` after at least a few digits.
    let mut digits_before = 0;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            digits_before += 1;
        } else if (c == b'x' || c == b'X') && digits_before >= 4 {
            let rest = s[i + 1..].trim_start();
            if rest.starts_with(|d: char| d.is_ascii_digit()) {
                return true;
            }
        }
    }
    false
}

/// Strips separators and maps digits of other scripts to ASCII.
fn clean(s: &str) -> Result<Cleaned, PhoneReject> {
    let mut out = Cleaned {
        digits: [0; MAX_DIGITS],
        len: 0,
        plus: false,
    };
    for ch in s.chars() {
        if let Some(d) = digit_value(ch) {
            if out.len == MAX_DIGITS {
                return Err(PhoneReject::TooLong);
            }
            out.digits[out.len] = b'0' + d;
            out.len += 1;
        } else if ch == '+' || ch == '＋' {
            if out.plus || out.len > 0 {
                return Err(PhoneReject::NotANumber);
            }
            out.plus = true;
        } else if !is_separator(ch) {
            return Err(PhoneReject::NotANumber);
        }
    }
    if out.len == 0 {
        return Err(PhoneReject::NotANumber);
    }
    Ok(out)
}

fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '('
            | ')'
            | '/'
            | '\t'
            | '['
            | ']'
            | '\u{a0}'
            | '\u{2007}'
            | '\u{2009}'
            | '\u{200b}'
            | '\u{202f}'
            | '\u{3000}'
            | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{ff0d}' | '\u{30fc}'
    ) || c.is_whitespace()
}

/// Decimal digits of the scripts libphonenumber normalises.
fn digit_value(c: char) -> Option<u8> {
    const ZEROS: [u32; 8] = [
        0x30,   // ASCII
        0x660,  // Arabic-Indic
        0x6f0,  // Extended Arabic-Indic
        0x966,  // Devanagari
        0x9e6,  // Bengali
        0xe50,  // Thai
        0xff10, // Full-width
        0x1040, // Myanmar
    ];
    let u = u32::from(c);
    ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&u))
        .map(|&z| (u - z) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(region: Option<&str>) -> Normalizer {
        Normalizer::new(region).unwrap()
    }

    #[test]
    fn numbers_know_their_region_even_where_a_calling_code_is_shared() {
        let n = n(None);
        let region = |raw: &str| n.region_of(n.normalize(raw).unwrap()).to_string();
        assert_eq!(region("+1 650 253 0000"), "US");
        assert_eq!(region("+1 416 555 0100"), "CA");
        // The second number of an area code comes from the per-area-code table.
        assert_eq!(region("+1 876 927 1234"), "JM");
        assert_eq!(region("+1 876 927 5678"), "JM");
        assert_eq!(region("+1 650 253 0001"), "US");
        assert_eq!(region("+7 701 234 5678"), "KZ");
        assert_eq!(region("+7 912 345 6789"), "RU");
        assert_eq!(region("+44 20 7946 0958"), "GB");
        // A Guernsey mobile: +44, named by the calling code's main region.
        assert_eq!(region("+44 7911 123456"), "GB");
        assert_eq!(region("+49 1512 3456789"), "DE");
        assert_eq!(region("+91 98765 43210"), "IN");
        assert_eq!(region("+55 11 96123 4567"), "BR");
    }

    #[test]
    fn unknown_regions_are_refused() {
        assert!(Normalizer::new(Some("XX")).is_err());
        assert!(Normalizer::new(Some("usa")).is_err());
        assert!(Normalizer::new(Some("US")).is_ok());
    }

    #[test]
    fn spreadsheet_damage_is_recognised() {
        for s in [
            "4.47912E+11",
            "4,47912E+11",
            "4.47912e11",
            "447912345678.0",
            "+447912345678.00",
            "4E+11",
        ] {
            assert!(is_spreadsheet_damage(s), "{s}");
        }
        for s in [
            "+44.7912.345.678",
            "0044 7912 345678",
            "12.5",
            "+1 415 555 2671",
        ] {
            assert!(!is_spreadsheet_damage(s), "{s}");
        }
    }

    #[test]
    fn extensions_are_recognised() {
        for s in [
            "+1 415 555 2671 ext. 12",
            "+1 415 555 2671 x12",
            "+14155552671#12",
            "447912345678;ext=1",
            "+1 415 555 2671 X 3",
        ] {
            assert!(has_extension(s), "{s}");
        }
        assert!(!has_extension("+44 7912 345678"));
    }

    #[test]
    fn every_reason_is_reachable() {
        let none = n(None);
        let cases = [
            ("  ", PhoneReject::Empty),
            ("+44 7912 34567O", PhoneReject::Letters),
            ("4.47912E+11", PhoneReject::SpreadsheetDamage),
            ("+1 415 555 2671 ext 9", PhoneReject::Extension),
            ("+44*7912*345678", PhoneReject::NotANumber),
            ("07912 345678", PhoneReject::NoDefaultRegion),
            ("+999 1234567", PhoneReject::InvalidCountryCode),
            ("+44 7912", PhoneReject::TooShort),
            ("+44 79123456789012", PhoneReject::TooLong),
            ("+44 7700 900123", PhoneReject::InvalidNumber),
        ];
        for (input, reason) in cases {
            assert_eq!(none.normalize(input), Err(reason), "{input}");
        }
        let codes: std::collections::HashSet<_> =
            PhoneReject::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), PhoneReject::ALL.len());
    }

    proptest! {
        /// An E.164 output normalises to itself, with or without a default region.
        #[test]
        fn normalisation_is_idempotent(
            input in prop_oneof![
                "\\+[1-9][0-9]{6,14}",
                "0[1-9][0-9 ]{8,12}",
                "[1-9][0-9]{9,12}",
                "\\+(1|7|20|27|30|31|33|34|39|44|49|52|54|55|61|62|81|86|91|234)[ .-]?[0-9]{8,11}",
            ],
            region in prop_oneof![Just(None), Just(Some("US")), Just(Some("GB")), Just(Some("BR"))],
        ) {
            let normalizer = n(region);
            if let Ok(p) = normalizer.normalize(&input) {
                prop_assert_eq!(normalizer.normalize(&p.to_string()), Ok(p));
                prop_assert_eq!(n(None).normalize(&p.to_string()), Ok(p));
                prop_assert_eq!(n(None).normalize(&p.digits()), Ok(p), "digits-only form");
            }
        }

        /// The fast path never changes an answer: whatever it accepts, the full parser
        /// accepts as the same number.
        #[test]
        fn fast_path_agrees_with_the_full_parser(
            digits in "(1|7|20|27|30|31|33|34|39|44|49|52|54|55|61|62|81|86|91|234|351|880|972)[0-9]{6,12}",
        ) {
            let normalizer = n(None);
            if let Some(fast) = normalizer.fast(&digits) {
                let full = normalizer.util.parse(format!("+{digits}"), None).unwrap();
                prop_assert!(normalizer.util.is_valid_number(&full));
                prop_assert_eq!(normalizer.to_e164(&full).unwrap(), fast);
            }
        }

        #[test]
        fn nothing_panics(s in "\\PC{0,40}", region in prop_oneof![Just(None), Just(Some("IT"))]) {
            let _ = n(region).normalize(&s);
        }
    }
}
