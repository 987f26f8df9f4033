//! Send windows: the hours of the day a campaign may message a recipient, in the recipient's
//! local time (from the number's region) or in one fixed time zone.
//!
//! A region's zone is its only one, or where it has several, the one most of its people live
//! in (`America/New_York` for `US`, `Europe/Moscow` for `RU`, `Asia/Jakarta` for `ID`; the
//! whole table and how it is made are in `scripts/country-zones.py`). A number whose region is
//! not known follows UTC. A campaign that must respect another zone for all its recipients
//! names it in `time_zone`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::region::Region;
use crate::spec::SpecError;

mod zones;

/// Allowed sending hours, as a campaign spec carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    /// When sending may begin each day, `HH:MM` (24-hour clock, local time).
    #[schema(example = "09:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// When sending stops each day, `HH:MM`; earlier than `start` for a window that spans
    /// midnight (`22:00`–`06:00`).
    #[schema(example = "20:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
    /// An IANA time zone (`Europe/Berlin`) the hours are read in for every recipient. Absent:
    /// each recipient's own, from their number's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The zone to use for some regions instead of Herald's choice, for a country with
    /// several (`{"US": "America/Los_Angeles"}` for an audience on the west coast). Not with
    /// `time_zone`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, String>,
}

impl SendWindow {
    /// Checks the window and turns it into the rule senders apply. Errors name the field
    /// (`send_window.start`, …).
    pub fn compile(&self) -> Result<WindowRule, SpecError> {
        let start = parse_hhmm(&self.start).ok_or_else(|| {
            SpecError::new(
                "send_window.start",
                format!(
                    "{:?} is not a time of day written HH:MM (24-hour)",
                    self.start
                ),
            )
        })?;
        let end = parse_hhmm(&self.end).ok_or_else(|| {
            SpecError::new(
                "send_window.end",
                format!(
                    "{:?} is not a time of day written HH:MM (24-hour)",
                    self.end
                ),
            )
        })?;
        if start == end {
            return Err(SpecError::new(
                "send_window.end",
                "must differ from start (a window of no length would never open)",
            ));
        }
        let zone = |field: String, name: &str| {
            TimeZone::get(name).map_err(|_| {
                SpecError::new(
                    field,
                    format!("{name:?} is not an IANA time zone such as \"Europe/Berlin\""),
                )
            })
        };
        let fixed = match &self.time_zone {
            None => None,
            Some(name) => Some(zone("send_window.time_zone".into(), name)?),
        };
        if fixed.is_some() && !self.zones.is_empty() {
            return Err(SpecError::new(
                "send_window.zones",
                "cannot be given with time_zone (which already sets every recipient's zone)",
            ));
        }
        let mut zones = HashMap::new();
        for (region, name) in &self.zones {
            let field = format!("send_window.zones.{region}");
            let r: Region = region
                .parse()
                .map_err(|e: crate::region::RegionError| SpecError::new(&field, e.to_string()))?;
            zones.insert(r, zone(field, name)?);
        }
        Ok(WindowRule {
            start,
            end,
            fixed,
            zones: Mutex::new(zones),
        })
    }
}

/// `HH:MM`, exactly five characters, 00:00 to 23:59.
fn parse_hhmm(s: &str) -> Option<Time> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let two = |x: &[u8]| -> Option<i8> {
        match x {
            [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(((a - b'0') * 10 + (c - b'0')) as i8),
            _ => None,
        }
    };
    let (h, m) = (two(&b[..2])?, two(&b[3..])?);
    Time::new(h, m, 0, 0).ok()
}

/// The zone send windows use for a region: its only one, or its most populous one where it
/// has several; `None` for a region the table does not know (`ZZ`).
pub fn region_zone(region: Region) -> Option<&'static str> {
    zones::ZONES
        .binary_search_by(|(r, _)| (*r).cmp(region.as_str()))
        .ok()
        .map(|i| zones::ZONES[i].1)
}

/// A compiled [`SendWindow`].
#[derive(Debug)]
pub struct WindowRule {
    start: Time,
    end: Time,
    fixed: Option<TimeZone>,
    /// Zones by region: the spec's own, and those looked up so far.
    zones: Mutex<HashMap<Region, TimeZone>>,
}

/// Never ask again sooner than this: a job re-claimed a moment before its window opens by
/// this process's clock waits a little, not a few milliseconds at a time.
const MIN_WAIT: Duration = Duration::from_secs(1);

impl WindowRule {
    /// The zone a recipient in `region` is messaged by.
    pub fn zone(&self, region: Region) -> TimeZone {
        if let Some(tz) = &self.fixed {
            return tz.clone();
        }
        if let Ok(m) = self.zones.lock()
            && let Some(tz) = m.get(&region)
        {
            return tz.clone();
        }
        let tz = region_zone(region)
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or(TimeZone::UTC);
        if let Ok(mut m) = self.zones.lock() {
            m.insert(region, tz.clone());
        }
        tz
    }

    /// How long a recipient in `region` must wait at `now` for the window to open; `None`
    /// while it is open.
    pub fn wait(&self, region: Region, now: Timestamp) -> Option<Duration> {
        self.wait_in(&self.zone(region), now)
    }

    /// [`Self::wait`] in a given zone.
    pub fn wait_in(&self, tz: &TimeZone, now: Timestamp) -> Option<Duration> {
        let local = now.to_zoned(tz.clone());
        let t = local.time();
        let open = if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        };
        if open {
            return None;
        }
        // Closed: it opens at `start` today if that is still ahead, else tomorrow. A start
        // in a daylight-saving gap opens when the clock has moved past it.
        let day = if t < self.start {
            local.date()
        } else {
            local.date().tomorrow().ok()?
        };
        let opens = day.to_datetime(self.start).to_zoned(tz.clone()).ok()?;
        let wait = Duration::try_from(now.duration_until(opens.timestamp())).unwrap_or_default();
        Some(wait.max(MIN_WAIT))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn spec(start: &str, end: &str, zone: Option<&str>) -> SendWindow {
        SendWindow {
            start: start.into(),
            end: end.into(),
            time_zone: zone.map(Into::into),
            zones: BTreeMap::new(),
        }
    }

    fn window(start: &str, end: &str, zone: Option<&str>) -> WindowRule {
        spec(start, end, zone).compile().unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn region(s: &str) -> Region {
        s.parse().unwrap()
    }

    #[test]
    fn bad_windows_name_their_field() {
        for (start, end, zone, field) in [
            ("9:00", "20:00", None, "send_window.start"),
            ("09:00", "24:00", None, "send_window.end"),
            ("09:60", "20:00", None, "send_window.start"),
            ("09:00", "20:00:00", None, "send_window.end"),
            ("09:00", "09:00", None, "send_window.end"),
            (
                "09:00",
                "20:00",
                Some("Mars/Olympus"),
                "send_window.time_zone",
            ),
        ] {
            let e = spec(start, end, zone).compile().unwrap_err();
            assert_eq!(e.field, field, "{start}-{end} {zone:?}: {e}");
        }
        for (zones, fixed, field) in [
            (
                vec![("us", "America/Chicago")],
                None,
                "send_window.zones.us",
            ),
            (
                vec![("US", "Pacific/Nowhere")],
                None,
                "send_window.zones.US",
            ),
            (
                vec![("US", "America/Chicago")],
                Some("UTC"),
                "send_window.zones",
            ),
        ] {
            let mut w = spec("09:00", "20:00", fixed);
            w.zones = zones
                .into_iter()
                .map(|(r, z)| (r.to_owned(), z.to_owned()))
                .collect();
            let e = w.compile().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn a_region_may_be_given_another_of_its_zones() {
        let mut w = spec("09:00", "20:00", None);
        w.zones.insert("US".into(), "America/Los_Angeles".into());
        let w = w.compile().unwrap();
        // 17:00Z in June: 10:00 in Los Angeles (open), 13:00 in New York; 02:00 in Tokyo.
        let now = at("2026-06-10T17:00:00Z");
        assert_eq!(w.wait(region("US"), now), None);
        assert_eq!(
            w.zone(region("US")),
            TimeZone::get("America/Los_Angeles").unwrap()
        );
        assert_eq!(
            w.wait(region("JP"), now),
            Some(Duration::from_secs(7 * 3600))
        );
        let early = at("2026-06-10T14:00:00Z"); // 07:00 in Los Angeles, 10:00 in New York
        assert_eq!(
            w.wait(region("US"), early),
            Some(Duration::from_secs(2 * 3600))
        );
    }

    #[test]
    fn a_day_window_is_open_inside_and_waits_for_the_next_opening_outside() {
        let w = window("09:00", "20:00", Some("Europe/Berlin"));
        let any = Region::UNKNOWN;
        // 2026-01-15 is winter: Berlin is UTC+1.
        assert_eq!(w.wait(any, at("2026-01-15T08:00:00Z")), None); // 09:00 local
        assert_eq!(w.wait(any, at("2026-01-15T18:59:59Z")), None); // 19:59:59
        assert_eq!(
            w.wait(any, at("2026-01-15T19:00:00Z")), // 20:00: closed until 09:00 tomorrow
            Some(Duration::from_secs(13 * 3600))
        );
        assert_eq!(
            w.wait(any, at("2026-01-15T05:30:00Z")), // 06:30: opens at 09:00 today
            Some(Duration::from_secs(2 * 3600 + 1800))
        );
    }

    #[test]
    fn a_window_over_midnight_wraps() {
        let w = window("22:00", "06:00", Some("UTC"));
        let any = Region::UNKNOWN;
        assert_eq!(w.wait(any, at("2026-03-01T23:00:00Z")), None);
        assert_eq!(w.wait(any, at("2026-03-02T05:59:00Z")), None);
        assert_eq!(
            w.wait(any, at("2026-03-02T06:00:00Z")),
            Some(Duration::from_secs(16 * 3600))
        );
        assert_eq!(
            w.wait(any, at("2026-03-02T21:59:00Z")),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn each_recipient_is_read_in_their_regions_zone() {
        let w = window("09:00", "20:00", None);
        let now = at("2026-06-10T10:00:00Z");
        // Tokyo 19:00 (open), New York 06:00 (3 h to go), London 11:00 (open), and a number
        // of no known region by UTC, 10:00 (open).
        assert_eq!(w.wait(region("JP"), now), None);
        assert_eq!(
            w.wait(region("US"), now),
            Some(Duration::from_secs(3 * 3600))
        );
        assert_eq!(w.wait(region("GB"), now), None);
        assert_eq!(w.wait(Region::UNKNOWN, now), None);
        // Sydney is 20:00: closed until 09:00 tomorrow there.
        assert_eq!(
            w.wait(region("AU"), now),
            Some(Duration::from_secs(13 * 3600))
        );
    }

    #[test]
    fn daylight_saving_changes_move_the_opening_by_the_clock() {
        // Berlin springs forward on 2026-03-29 at 02:00 (to 03:00) and falls back on
        // 2026-10-25 at 03:00 (to 02:00).
        let w = window("09:00", "20:00", Some("Europe/Berlin"));
        let any = Region::UNKNOWN;
        // 20:00 CET on the 28th; 09:00 CEST on the 29th is 07:00Z: 12 h, not 13.
        assert_eq!(
            w.wait(any, at("2026-03-28T19:00:00Z")),
            Some(Duration::from_secs(12 * 3600))
        );
        // 20:00 CEST on the 24th; 09:00 CET on the 25th is 08:00Z: 14 h.
        assert_eq!(
            w.wait(any, at("2026-10-24T18:00:00Z")),
            Some(Duration::from_secs(14 * 3600))
        );
        // A start inside the skipped hour opens when the clock passes it (03:30 CEST).
        let gap = window("02:30", "05:00", Some("Europe/Berlin"));
        assert_eq!(
            gap.wait(any, at("2026-03-29T00:00:00Z")), // 01:00 CET
            Some(Duration::from_secs(3600 + 1800))
        );
        // Once the clock reads past the start, it is open.
        assert_eq!(gap.wait(any, at("2026-03-29T01:10:00Z")), None); // 03:10 CEST
    }

    #[test]
    fn every_region_in_the_table_has_a_zone_the_database_knows() {
        assert!(
            zones::ZONES.windows(2).all(|p| p[0].0 < p[1].0),
            "the table is sorted by region (binary search)"
        );
        for (r, name) in zones::ZONES {
            assert!(
                TimeZone::get(name).is_ok(),
                "{r}: {name} is not in the database"
            );
        }
        assert_eq!(region_zone(region("DE")), Some("Europe/Berlin"));
        assert_eq!(region_zone(region("US")), Some("America/New_York"));
        assert_eq!(region_zone(Region::UNKNOWN), None);
    }
}
