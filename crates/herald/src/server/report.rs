//! CSV written for people's spreadsheets: the failures report, and cells defused against
//! formula injection.

use axum::body::Bytes;
use herald_store::FailureRow;

/// One page of the failures report as CSV (`line,phone,reason,detail`), with the header on
/// the first page. A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// CR first) gets a leading `'`.
pub fn failures_csv(rows: &[FailureRow], header: bool) -> Bytes {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(64 * rows.len() + 32));
    if header {
        let _ = w.write_record(["line", "phone", "reason", "detail"]);
    }
    for r in rows {
        let line = r.line.map(|l| l.to_string()).unwrap_or_default();
        let _ = w.write_record([
            line.as_str(),
            &safe_cell(&r.phone),
            &safe_cell(&r.reason),
            &safe_cell(&r.detail),
        ]);
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// A campaign's cost as CSV (`kind,market,category,count,price,cost,currency`): one
/// `estimate` row per market (count: recipients; cost: all delivered), then one `actual` row
/// per market and category (count: charged messages), then `free` rows by pricing type. An
/// empty price or cost is a rate the card does not have (never zero).
pub fn cost_csv(c: &herald_core::cost::CampaignCost) -> Bytes {
    let money = |m: Option<herald_core::cost::Money>| m.map(|m| m.to_string()).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "kind", "market", "category", "count", "price", "cost", "currency",
    ]);
    for m in &c.estimate.by_market {
        let _ = w.write_record([
            "estimate",
            &m.market,
            &c.estimate.category,
            &m.recipients.to_string(),
            &money(m.price),
            &money(m.high),
            &c.currency,
        ]);
    }
    for l in &c.actual.by {
        let _ = w.write_record([
            "actual",
            &l.market,
            &l.category,
            &l.messages.to_string(),
            "",
            &money(l.cost),
            &c.currency,
        ]);
    }
    for (kind, n) in &c.actual.free {
        let _ = w.write_record(["free", "", kind, &n.to_string(), "", "0.0000", &c.currency]);
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// Defuses spreadsheet formula injection (OWASP's CSV injection advice).
pub fn safe_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        for bad in ["=1+1", "+447912345678", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(safe_cell(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(safe_cell("invalid_number"), "invalid_number");
        let csv = failures_csv(
            &[FailureRow {
                line: Some(7),
                phone: "=HYPERLINK(\"http://x\")".into(),
                reason: "not_a_number".into(),
                detail: "has, a comma".into(),
            }],
            true,
        );
        let text = String::from_utf8(csv.to_vec()).unwrap();
        assert_eq!(
            text,
            "line,phone,reason,detail\n7,\"'=HYPERLINK(\"\"http://x\"\")\",not_a_number,\"has, a comma\"\n"
        );
    }
}
