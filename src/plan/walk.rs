//! Which index a prepared rule's batches walk, and why, and whether its
//! `concurrency` can be used: stated by plans, runs and `check`.

use crate::sql::Db;
use crate::sql::statements::RuleSql;
use serde::Serialize;

/// Which index a rule's batches walk.
#[derive(Debug, Clone, Serialize)]
pub struct WalkReport {
    /// Walked by the select column or by the key.
    pub by: crate::config::Walk,
    /// The walked column (the select column, or the key).
    pub column: String,
    /// Why this walk was chosen (the index found, or its absence).
    pub why: String,
}

/// Which index a prepared rule walks, for plans, runs and `check`.
pub fn walk_report(sql: &RuleSql) -> WalkReport {
    let column = match (sql.walk, &sql.select) {
        (crate::config::Walk::Select, Some(s)) => s.column.name.clone(),
        (crate::config::Walk::Heap, _) => "ctid".into(),
        _ => sql.key.name.clone(),
    };
    WalkReport {
        by: sql.walk,
        column,
        why: sql.walk_why.clone(),
    }
}

/// Why a rule with `concurrency` above 1 still runs one batch at a time
/// here, if it does: the path or the engine gains nothing from more.
pub(crate) fn why_one_worker(db: &Db, sql: &RuleSql) -> Option<&'static str> {
    let d = db.dialect();
    if !sql.one_statement(d) {
        Some("the rule's batches are not one statement each on this engine")
    } else if sql.walk == crate::config::Walk::Heap {
        Some("the heap walk goes through the pages in order, one batch at a time")
    } else if d.single_writer() {
        Some("SQLite lets one writer in at a time")
    } else if sql.delete_parts(d).len() > 1 {
        Some("a partitioned table is walked one partition at a time")
    } else {
        None
    }
}
