//! The header row: which column holds the phone number, which hold the variables.
//!
//! Everything here is decided before any data row is read, so a file that cannot work (no
//! phone column, a column the message needs is missing) is refused whole, with the columns
//! that were found named in the error.

use crate::LoadError;

/// Header names accepted for the phone column, case-insensitive, after trimming.
pub const PHONE_ALIASES: [&str; 7] = [
    "phone",
    "phone_number",
    "mobile",
    "msisdn",
    "wa_id",
    "to",
    "number",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    pub(crate) count: usize,
    pub(crate) phone: usize,
    pub(crate) phone_name: String,
    /// Column index of each variable, in output order.
    pub(crate) vars: Vec<usize>,
    pub(crate) var_names: Vec<String>,
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Finds a column by name: exactly (after trimming), else case-insensitively if that is
/// unambiguous.
fn find(names: &[String], wanted: &str) -> Result<Option<usize>, LoadError> {
    let wanted_trim = wanted.trim();
    if let Some(i) = names.iter().position(|n| n == wanted_trim) {
        return Ok(Some(i));
    }
    let matches: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| norm(n) == norm(wanted))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(LoadError::AmbiguousColumn {
            name: wanted.to_owned(),
            found: names.to_vec(),
        }),
    }
}

pub(crate) fn resolve(
    header: Vec<String>,
    phone_column: Option<&str>,
    variables: Option<&[String]>,
) -> Result<Columns, LoadError> {
    let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let phone = match phone_column {
        Some(name) => find(&names, name)?.ok_or_else(|| LoadError::PhoneColumnNotFound {
            name: name.to_owned(),
            found: names.clone(),
        })?,
        None => {
            let candidates: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| PHONE_ALIASES.contains(&norm(n).as_str()))
                .map(|(i, _)| i)
                .collect();
            match candidates.as_slice() {
                [one] => *one,
                [] => return Err(LoadError::NoPhoneColumn { found: names }),
                many => {
                    return Err(LoadError::SeveralPhoneColumns {
                        candidates: many.iter().map(|&i| names[i].clone()).collect(),
                    });
                }
            }
        }
    };
    let (vars, var_names) = match variables {
        Some(wanted) => {
            let mut vars = Vec::with_capacity(wanted.len());
            let mut missing = Vec::new();
            for w in wanted {
                match find(&names, w)? {
                    Some(i) => vars.push(i),
                    None => missing.push(w.clone()),
                }
            }
            if !missing.is_empty() {
                return Err(LoadError::MissingColumns {
                    missing,
                    found: names,
                });
            }
            (vars, wanted.to_vec())
        }
        None => {
            let vars: Vec<usize> = (0..names.len())
                .filter(|&i| i != phone && !names[i].is_empty())
                .collect();
            let var_names = vars.iter().map(|&i| names[i].clone()).collect();
            (vars, var_names)
        }
    };
    // Two columns with one name would make a variable ambiguous.
    for &c in &vars {
        let twice = names
            .iter()
            .enumerate()
            .any(|(j, n)| j != c && *n == names[c]);
        if twice && !names[c].is_empty() {
            return Err(LoadError::DuplicateColumn(names[c].clone()));
        }
    }
    Ok(Columns {
        count: names.len(),
        phone_name: names[phone].clone(),
        phone,
        vars,
        var_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn aliases_are_found_case_insensitively_and_trimmed() {
        for name in [
            "phone",
            " Phone ",
            "PHONE_NUMBER",
            "Mobile",
            "msisdn",
            "wa_id",
            "To",
            "number",
        ] {
            let c = resolve(h(&["first_name", name]), None, None).unwrap();
            assert_eq!(c.phone, 1, "{name}");
            assert_eq!(c.var_names, ["first_name"]);
        }
    }

    #[test]
    fn an_explicit_phone_column_wins() {
        let c = resolve(h(&["cell", "name"]), Some("Cell"), None).unwrap();
        assert_eq!((c.phone, c.phone_name.as_str()), (0, "cell"));
        let err = resolve(h(&["cell"]), Some("tel"), None).unwrap_err();
        assert!(err.to_string().contains("cell"), "{err}");
    }

    #[test]
    fn no_or_several_phone_columns_are_refused_naming_the_columns() {
        let err = resolve(h(&["name", "city"]), None, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("name") && msg.contains("city"), "{msg}");
        let err = resolve(h(&["phone", "mobile"]), None, None).unwrap_err();
        assert!(
            matches!(err, LoadError::SeveralPhoneColumns { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_variables_are_named_with_the_columns_found() {
        let wanted = h(&["first_name", "order"]);
        let err = resolve(h(&["phone", "First_Name"]), None, Some(&wanted)).unwrap_err();
        match &err {
            LoadError::MissingColumns { missing, found } => {
                assert_eq!(missing, &["order"]);
                assert_eq!(found, &["phone", "First_Name"]);
            }
            other => panic!("{other:?}"),
        }
        let c = resolve(h(&["order", "phone", "First_Name"]), None, Some(&wanted)).unwrap();
        assert_eq!(c.vars, [2, 0], "variables come in the order asked for");
    }

    #[test]
    fn duplicate_variable_columns_are_refused() {
        let err = resolve(h(&["phone", "name", "name"]), None, None).unwrap_err();
        assert!(
            matches!(err, LoadError::DuplicateColumn(ref n) if n == "name"),
            "{err}"
        );
    }
}
