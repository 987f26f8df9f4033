//! The dashboard and the alert rules in `deploy/` only use metrics Herald exports, so a
//! renamed metric cannot leave a panel silently empty.

use std::collections::BTreeSet;

fn names_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("herald_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        found.insert(base.to_owned());
        i = end;
    }
    found
}

#[test]
fn deploy_files_name_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let known: BTreeSet<&str> = herald_core::metrics::ALL
        .iter()
        .chain(herald_core::metrics::CAMPAIGN)
        .map(|(n, _, _)| *n)
        .collect();
    let mut used = BTreeSet::new();
    for file in ["alerts.yml", "grafana/herald-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        for name in names_in(&text) {
            assert!(
                known.contains(name.as_str()),
                "{file} uses unknown metric {name}"
            );
            used.insert(name);
        }
    }
    assert!(
        used.len() >= 10,
        "the dashboard covers the main metrics: {used:?}"
    );
}
