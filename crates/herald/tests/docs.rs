//! The project's own design document is the one the code cites: every `ARCHITECTURE §n` in
//! the repository names a section that exists, and nothing cites a document a reader of the
//! repository cannot open.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every text file of the repository that may cite the document.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "fixtures" | "node_modules"
            ) {
                sources(&p, out);
            }
        } else if ["rs", "md", "lua", "toml", "yml", "yaml", "sh"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
        {
            out.push(p);
        }
    }
}

#[test]
fn every_section_cited_exists() {
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let sections: Vec<u32> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split('.').next()?.parse().ok())
        .collect();
    assert!(sections.len() >= 10, "{sections:?}");
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let mut cited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        assert!(
            !text.contains(concat!("DESIGN", " §")),
            "{shown} cites a design document outside the repository"
        );
        // "ARCHITECTURE §5", and lists such as "ARCHITECTURE §5, §7".
        for (at, _) in text.match_indices(concat!("ARCHITECTURE", " §")) {
            let rest = &text[at + "ARCHITECTURE ".len()..];
            let mut list = rest;
            while let Some(after) = list.strip_prefix('§') {
                let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
                // "§n" in prose about citations is not one.
                let Ok(n) = digits.parse::<u32>() else { break };
                assert!(
                    sections.contains(&n),
                    "{shown} cites §{n}, which does not exist"
                );
                cited += 1;
                list = after[digits.len()..].trim_start_matches([',', ' ', '–', '-']);
            }
        }
    }
    assert!(
        cited >= 10,
        "the code cites the document: {cited} citations"
    );
}

/// The codes of the table under `heading` in the README (its first column, in backticks).
fn readme_table(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cell = l.split('|').nth(1)?.trim();
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_owned())
        })
        .collect()
}

/// README lists every reject code the loader emits, and nothing else.
#[test]
fn the_readme_lists_exactly_the_reject_codes() {
    let mut documented = readme_table("### Reject codes");
    let mut emitted: Vec<String> = herald_loader::RejectReason::all()
        .into_iter()
        .map(|r| r.code().to_owned())
        .collect();
    documented.sort();
    emitted.sort();
    assert_eq!(documented, emitted);
}

/// The error-class table in ARCHITECTURE.md §6 names every class, and lists for each exactly
/// the codes the code's table gives it.
#[test]
fn the_architecture_lists_exactly_the_error_table() {
    use herald_cloudapi::ErrorClass;
    use std::collections::{BTreeMap, BTreeSet};

    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE");
    let section = doc.split("## 6. Error classes").nth(1).expect("§6");
    let mut documented: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for row in section
        .lines()
        .skip_while(|l| !l.starts_with("| transient"))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let class = cells[1].replace('-', "_");
        let mut codes = BTreeSet::new();
        for part in cells[2].split([',', ';']).map(str::trim) {
            if let Some((first, _)) = part.split_once('–') {
                // A range (200–299) stands for its first code, the table's own entry.
                codes.insert(first.parse().unwrap());
            } else if let Ok(code) = part.parse::<i64>() {
                codes.insert(code);
            }
        }
        documented.insert(class, codes);
    }
    let mut coded: BTreeMap<String, BTreeSet<i64>> = ErrorClass::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), BTreeSet::new()))
        .collect();
    for code in ErrorClass::known_codes() {
        let class = ErrorClass::of_code(code).unwrap();
        coded.get_mut(class.as_str()).unwrap().insert(code);
    }
    assert_eq!(documented, coded);
}
