//! A campaign's counters as every backend keeps them: a flat map from counter name to a
//! signed count, changed in the same atomic step as the job states they describe. The names
//! are the [`Stats`] fields, plus one counter per error code (`err:<code>`), send-time skip
//! reason (`skip:<reason>`), upload reject reason (`upl:<reason>`) and pricing category
//! (`cat:<category>`).

use herald_core::cost::Charged;
use herald_core::{Region, SkipReason, Stats};

/// Reads counters into [`Stats`]. Missing counters are 0; a negative one (which the
/// invariant rules out) reads as 0 rather than wrapping.
pub fn stats_from_counters<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> Stats {
    let mut s = Stats::default();
    for (k, v) in counters {
        let v = u64::try_from(v).unwrap_or(0);
        if v == 0 {
            continue;
        }
        match k {
            "recipients" => s.recipients = v,
            "pending" => s.pending = v,
            "window_wait" => s.waiting_for_send_window = v,
            "in_flight" => s.in_flight = v,
            "in_doubt" => s.in_doubt = v,
            "accepted" => s.accepted = v,
            "sent" => s.sent = v,
            "delivered" => s.delivered = v,
            "read" => s.read = v,
            "failed" => s.failed = v,
            "failed_before_accept" => s.failed_before_accept = v,
            "skipped_at_send" => s.skipped_at_send = v,
            "cancelled" => s.cancelled = v,
            "replied" => s.replied = v,
            "billable" => s.pricing.billable = v,
            _ => {
                if let Some(code) = k.strip_prefix("err:") {
                    s.errors.insert(code.to_owned(), v);
                } else if let Some(r) = k.strip_prefix("skip:").and_then(SkipReason::parse) {
                    *s.skipped.get_mut(r) += v;
                    *s.skipped_send.get_mut(r) += v;
                } else if let Some(r) = k.strip_prefix("dcl:").and_then(SkipReason::parse) {
                    *s.declined.get_mut(r) += v;
                } else if let Some(r) = k.strip_prefix("upl:").and_then(SkipReason::parse) {
                    *s.skipped.get_mut(r) += v;
                    *s.skipped_upload.get_mut(r) += v;
                } else if let Some(cat) = k.strip_prefix("cat:") {
                    s.pricing.categories.insert(cat.to_owned(), v);
                } else if let Some(region) = k.strip_prefix("rgn:").and_then(|r| r.parse().ok()) {
                    s.regions.insert(region, v);
                } else if let Some(c) = k.strip_prefix("chg:").and_then(|c| charged(c, v)) {
                    s.pricing.charged.push(c);
                } else if let Some(kind) = k.strip_prefix("free:") {
                    s.pricing.free.insert(kind.to_owned(), v);
                }
            }
        }
    }
    s.pricing
        .charged
        .sort_by(|a, b| (a.region, &a.category, a.day).cmp(&(b.region, &b.category, b.day)));
    s
}

/// The counter name of messages charged for `category` to numbers of `region`, delivered on
/// Unix day `day` (UTC).
pub fn charged_counter(region: Region, category: &str, day: i64) -> String {
    format!("chg:{region}:{category}:{day}")
}

/// The Unix day (UTC) of an event at `unix_ms`.
pub fn unix_day(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(86_400_000)
}

/// Reads `<region>:<category>:<unix day>`.
fn charged(key: &str, messages: u64) -> Option<Charged> {
    let (region, rest) = key.split_once(':')?;
    let (category, day) = rest.rsplit_once(':')?;
    let day: i64 = day.parse().ok()?;
    let day = jiff::Timestamp::from_second(day.checked_mul(86_400)?)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    Some(Charged {
        region: region.parse().ok()?,
        category: category.to_owned(),
        day,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_into_stats() {
        let s = stats_from_counters([
            ("recipients", 5),
            ("pending", 2),
            ("accepted", 3),
            ("err:131026", 1),
            ("skip:window_closed", 1),
            ("upl:duplicate", 4),
            ("cat:marketing", 3),
            ("rgn:IN", 7),
            ("chg:IN:marketing:20454", 2),
            ("chg:IN:marketing:bad", 2),
            ("free:free_customer_service", 1),
            ("in_doubt", -1),
            ("unknown", 9),
        ]);
        assert_eq!(
            (s.recipients, s.pending, s.accepted, s.in_doubt),
            (5, 2, 3, 0)
        );
        assert_eq!(s.errors["131026"], 1);
        assert_eq!((s.skipped.window_closed, s.skipped.duplicate), (1, 4));
        assert_eq!(
            (s.skipped_send.window_closed, s.skipped_upload.duplicate),
            (1, 4)
        );
        assert_eq!(
            (s.skipped_send.duplicate, s.skipped_upload.window_closed),
            (0, 0)
        );
        assert_eq!(s.pricing.categories["marketing"], 3);
        let india: Region = "IN".parse().unwrap();
        assert_eq!(s.regions[&india], 7);
        assert_eq!(
            s.pricing.charged,
            [Charged {
                region: india,
                category: "marketing".into(),
                day: "2026-01-01".parse().unwrap(),
                messages: 2,
            }]
        );
        assert_eq!(
            charged_counter(india, "marketing", 20454),
            "chg:IN:marketing:20454"
        );
        assert_eq!(unix_day(1_767_225_600_000), 20454);
        assert_eq!(s.pricing.free["free_customer_service"], 1);
    }
}
