//! Rules prepared against the live schema: the one place that turns a
//! validated rule and what the database says about its tables into work the
//! engine may start, or into the problems that stop it.
//!
//! `check`, `plan` and `run` all come through [`prepare`] / [`inspect`], so
//! what `check` calls an error stops `plan` and `run` for that rule with the
//! same message, before anything is touched. (More of the rule → work
//! translation is meant to move here later.)
//!
//! This module reads the schema and a few counts; it never changes a row.

pub(crate) mod counts;
/// Personal columns no rule covers, for `check`.
pub mod coverage;
/// The foreign-key graph of the tables a rule deletes from.
pub mod graph;
pub(crate) mod guards;
pub(crate) mod sources;
pub(crate) mod walk;

use crate::config::{Origin, Rule, TableRef};
use crate::sql::statements::{RuleSql, Tables};
use crate::sql::{Db, TableInfo, schema};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt;

pub use graph::Graph;
pub use sources::Sources;
pub use walk::{WalkReport, walk_report};

/// One reason a rule cannot run, with the place in the job file it concerns
/// when that is more precise than the rule itself (a child rule, a
/// re-pointing value).
#[derive(Debug, Clone)]
pub struct Problem {
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{o}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem {
            origin: None,
            message,
        }
    }
}

/// Everything `check` wants to know about one rule.
#[derive(Debug)]
pub struct Inspection {
    /// The statements, when the rule matches the schema.
    pub sql: Option<RuleSql>,
    /// The foreign-key graph of the tables the rule deletes from (when `sql` is).
    pub graph: Option<Graph>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// A rule ready to run: its statements and the graph that cleared it.
#[derive(Debug)]
pub struct Prepared {
    pub sql: RuleSql,
    pub graph: Graph,
}

/// Tables inspected so far, by reference.
#[derive(Default)]
pub struct TableCache(BTreeMap<String, TableInfo>);

impl Tables for TableCache {
    fn get(&self, t: &TableRef) -> Option<&TableInfo> {
        self.0.get(&t.to_string())
    }
}

/// Every table a rule names.
fn rule_tables(rule: &Rule) -> Vec<TableRef> {
    fn kids(out: &mut Vec<TableRef>, cs: &[crate::config::Child]) {
        for c in cs {
            out.push(c.target.clone());
            kids(out, &c.children);
        }
    }
    let mut out = vec![rule.target.clone()];
    if let Some(h) = &rule.hold {
        out.push(h.table.clone());
    }
    kids(&mut out, &rule.children);
    out
}

/// Inspect the rule's tables, build its statements and its foreign-key
/// graph; every problem found is returned, none stops the inspection early
/// (except a database error while reading the catalog).
pub async fn inspect(db: &Db, rule: &Rule, as_of: DateTime<Utc>) -> Inspection {
    let mut out = Inspection {
        sql: None,
        graph: None,
        problems: vec![],
        warnings: vec![],
    };
    let mut cache = TableCache::default();
    for t in rule_tables(rule) {
        match schema::table_info(db, &t).await {
            Ok(Some(info)) => {
                cache.0.insert(t.to_string(), info);
            }
            Ok(None) => {}
            Err(e) => {
                out.problems.push(e.to_string().into());
                return out;
            }
        }
    }
    match RuleSql::prepare(db.dialect(), rule, &cache, as_of) {
        Err(problems) => out.problems.extend(problems.into_iter().map(Problem::from)),
        Ok(sql) => match graph::analyse(db, rule, &sql).await {
            Ok(g) => {
                out.problems.extend(g.problems());
                out.warnings.extend(g.warnings());
                out.graph = Some(g);
                out.sql = Some(sql);
            }
            Err(e) => out.problems.push(e.to_string().into()),
        },
    }
    out
}

/// What `plan` and `run` call: the rule's statements, or every problem
/// `check` would report for it.
pub async fn prepare(db: &Db, rule: &Rule, as_of: DateTime<Utc>) -> Result<Prepared, Vec<Problem>> {
    let i = inspect(db, rule, as_of).await;
    if !i.problems.is_empty() {
        return Err(i.problems);
    }
    for w in &i.warnings {
        tracing::warn!(rule = %rule.name, "{w}");
    }
    match (i.sql, i.graph) {
        (Some(sql), Some(graph)) => Ok(Prepared { sql, graph }),
        _ => Err(vec!["the rule could not be prepared".to_string().into()]),
    }
}
