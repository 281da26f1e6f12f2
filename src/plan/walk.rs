//! Which index a prepared rule's batches walk, and why: stated by plans,
//! runs and `check`.

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
        _ => sql.key.name.clone(),
    };
    WalkReport {
        by: sql.walk,
        column,
        why: sql.walk_why.clone(),
    }
}
