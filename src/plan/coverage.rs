//! `lethe check --coverage`: personal-looking data no rule reaches.
//!
//! The policy promises nothing is kept longer than necessary; this is how an
//! operator finds what is not yet under a rule. Two lists, per source:
//! columns whose name (and type) looks personal in tables no rule of any
//! job deletes from and that no rule anonymizes, and tables holding a
//! foreign key into a subject table (a rule target with a `subject`) that no
//! rule covers.
//!
//! It reads the catalog only: column names and types, never a value.

use crate::config::{Action, Child, Loaded, PatternKind, PersonalPattern, TableRef};
use crate::plan::Sources;
use crate::sql::schema::{self, kind_of, list};
use crate::sql::{ColumnKind, Db};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A column whose name matches a personal-data pattern (`check`'s coverage
/// map): the auditor's list of what some rule must cover.
#[derive(Debug, Clone, Serialize)]
pub struct PersonalColumn {
    /// `source.table` (`source.schema.table` outside the default schema).
    pub table: String,
    pub column: String,
    pub data_type: String,
    /// The pattern it matched.
    pub pattern: String,
}

/// A foreign key into a subject table that no rule follows: deleting the
/// subject would leave these rows (or fail on the constraint).
#[derive(Debug, Clone, Serialize)]
pub struct UncoveredReference {
    pub table: String,
    pub columns: Vec<String>,
    pub constraint: String,
    /// The subject table it references.
    pub references: String,
}

/// What `check` reports about personal data the rules do not reach.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub columns: Vec<PersonalColumn>,
    pub references: Vec<UncoveredReference>,
    /// Sources that could not be read.
    pub unreachable: Vec<String>,
}

/// What the jobs reach in one source: tables deleted from, columns anonymized.
#[derive(Default)]
struct Reach {
    deleted: BTreeSet<String>,
    anonymized: BTreeSet<(String, String)>,
    /// Tables some rule or child touches at all, and hold tables.
    touched: BTreeSet<String>,
    /// Rule targets that name a subject.
    subjects: Vec<TableRef>,
}

/// `schema.table` or `table`, with PostgreSQL's `public` as the default.
fn key(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(s) if !s.is_empty() && s != "public" => format!("{s}.{table}"),
        _ => table.to_string(),
    }
}

fn tkey(t: &TableRef) -> String {
    key(t.schema.as_deref(), &t.table)
}

fn reach_action(r: &mut Reach, t: &TableRef, a: &Action) {
    r.touched.insert(tkey(t));
    match a {
        Action::Delete => {
            r.deleted.insert(tkey(t));
        }
        Action::Anonymize(cols) => {
            for (c, _) in cols {
                r.anonymized.insert((tkey(t), c.clone()));
            }
        }
    }
}

fn reach_children(r: &mut Reach, cs: &[Child]) {
    for c in cs {
        reach_action(r, &c.target, &c.action);
        reach_children(r, &c.children);
    }
}

/// Split a column name into lowercase words: at non-alphanumerics and at
/// camelCase humps (`BirthDate` → `birth`, `date`).
pub fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        cur.push(ch.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The first pattern a column matches, if any (see [`PersonalPattern`]).
pub fn matches<'p>(
    patterns: &'p [PersonalPattern],
    name: &str,
    kind: ColumnKind,
    data_type: &str,
) -> Option<&'p PersonalPattern> {
    let t = data_type.to_ascii_lowercase();
    if t.starts_with("bool") || t == "tinyint(1)" || t == "bit(1)" {
        return None;
    }
    let numeric = kind == ColumnKind::Int
        || ["numeric", "decimal", "real", "double", "float"]
            .iter()
            .any(|n| t.contains(n));
    let w = words(name);
    let joined: String = w.concat();
    patterns.iter().find(|p| {
        let kind_ok = match p.kind {
            PatternKind::Any => true,
            PatternKind::Text => kind == ColumnKind::Text,
            PatternKind::Number => numeric,
            PatternKind::Time => matches!(kind, ColumnKind::Time | ColumnKind::Text),
        };
        kind_ok
            && (w
                .windows(p.words.len())
                .any(|win| win == p.words.as_slice())
                || joined == p.words.concat())
    })
}

/// The coverage map of every source the config names.
pub async fn map(loaded: &Loaded, sources: &mut Sources<'_>) -> Coverage {
    let mut reach: BTreeMap<String, Reach> = BTreeMap::new();
    for job in &loaded.jobs {
        for rule in &job.rules {
            let r = reach.entry(rule.target.source.clone()).or_default();
            reach_action(r, &rule.target, &rule.action);
            reach_children(r, &rule.children);
            if let Some(h) = &rule.hold {
                r.touched.insert(tkey(&h.table));
            }
            if rule.subject.is_some() {
                r.subjects.push(rule.target.clone());
            }
        }
    }
    let mut out = Coverage::default();
    let names: Vec<String> = loaded.config.sources.keys().cloned().collect();
    for name in names {
        let db = match sources.get(&name).await {
            Ok(db) => db,
            Err(e) => {
                out.unreachable.push(e);
                continue;
            }
        };
        let empty = Reach::default();
        let r = reach.get(&name).unwrap_or(&empty);
        if let Err(e) = source(db, &name, r, &loaded.config.coverage, &mut out).await {
            out.unreachable.push(format!("source `{name}`: {e}"));
        }
    }
    out
}

async fn source(
    db: &Db,
    name: &str,
    r: &Reach,
    patterns: &[PersonalPattern],
    out: &mut Coverage,
) -> Result<(), crate::error::Error> {
    let engine = db.dialect().engine();
    for row in db.fetch(&db.dialect().all_columns()).await? {
        let get = |i: usize| row[i].clone().unwrap_or_default();
        let (schema, table, column, data_type) = (get(0), get(1), get(2), get(3));
        let t = key(Some(&schema), &table);
        if r.deleted.contains(&t) || r.anonymized.contains(&(t.clone(), column.clone())) {
            continue;
        }
        if let Some(p) = matches(patterns, &column, kind_of(engine, &data_type), &data_type) {
            out.columns.push(PersonalColumn {
                table: format!("{name}.{t}"),
                column,
                data_type,
                pattern: p.text.clone(),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for subject in &r.subjects {
        if !seen.insert(tkey(subject)) {
            continue;
        }
        let Some(info) = schema::table_info(db, subject).await? else {
            continue;
        };
        for fk in &info.referenced_by {
            if r.touched.contains(&key(fk.schema.as_deref(), &fk.table)) {
                continue;
            }
            out.references.push(UncoveredReference {
                table: format!("{name}.{}", fk.table_name()),
                columns: fk.columns.clone(),
                constraint: fk.constraint.clone(),
                references: format!("{subject}.{}", list(&fk.referenced_columns)),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PERSONAL_PATTERNS;

    fn defaults() -> Vec<PersonalPattern> {
        DEFAULT_PERSONAL_PATTERNS
            .iter()
            .map(|p| PersonalPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn names_split_into_words() {
        assert_eq!(words("BirthDate"), ["birth", "date"]);
        assert_eq!(words("last_login_ip"), ["last", "login", "ip"]);
        assert_eq!(words("SupportRepId"), ["support", "rep", "id"]);
    }

    #[test]
    fn personal_columns_match_by_words_and_kind() {
        let p = defaults();
        let m = |n: &str, k: ColumnKind, t: &str| matches(&p, n, k, t).map(|p| p.text.clone());
        assert_eq!(
            m("Email", ColumnKind::Text, "varchar(60)").as_deref(),
            Some("email")
        );
        assert_eq!(
            m("FirstName", ColumnKind::Text, "varchar(40)").as_deref(),
            Some("name:text")
        );
        assert_eq!(
            m("last_login_ip", ColumnKind::Text, "text").as_deref(),
            Some("ip")
        );
        assert_eq!(
            m("lat", ColumnKind::Other, "double precision").as_deref(),
            Some("lat:number")
        );
        assert_eq!(
            m("BirthDate", ColumnKind::Time, "timestamp").as_deref(),
            Some("birth")
        );
        // Words, not substrings: a zip code is personal, `description` has no `ip`.
        assert_eq!(m("description", ColumnKind::Text, "text"), None);
        assert_eq!(m("shipping", ColumnKind::Text, "text"), None);
        // A name that is not text (an enum id) and a boolean flag are not personal.
        assert_eq!(m("name", ColumnKind::Int, "integer"), None);
        assert_eq!(m("email_verified", ColumnKind::Other, "boolean"), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PersonalPattern::parse("Phone").is_err());
        assert!(PersonalPattern::parse("phone:blob").is_err());
        assert!(PersonalPattern::parse("a__b").is_err());
    }
}
