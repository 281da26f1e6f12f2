//! One statement that acts on a set of rows: `DELETE`, or the anonymizing
//! `UPDATE` (composed in `sql::anonymize`), for a rule's keys or a child's
//! parents.

use super::{ActionSql, Hashes, RuleSql, TableSql};
use crate::sql::dialect::Dialect;
use crate::sql::schema::ColumnInfo;
use crate::sql::{Builder, Stmt};

/// `DELETE FROM t WHERE scope` or `UPDATE t SET … WHERE scope AND needs`:
/// one statement, every strategy's column set at once. `hash` columns come
/// from `hashes`: computed by the server, or bound per key.
pub(super) fn act(
    d: &dyn Dialect,
    t: &TableSql,
    key: Option<&ColumnInfo>,
    action: &ActionSql,
    hashes: Hashes<'_>,
    scope: &dyn Fn(&mut Builder<'_>),
) -> Stmt {
    let mut b = Builder::new(d);
    match action {
        ActionSql::Delete => {
            b.push("DELETE FROM ").push(&t.from).push(" WHERE ");
            scope(&mut b);
        }
        ActionSql::Anonymize(cols) => {
            crate::sql::anonymize::push_update(
                &mut b,
                &crate::sql::anonymize::Update {
                    table: t,
                    key,
                    cols,
                    hashes,
                },
                scope,
            );
        }
    }
    b.finish()
}

impl RuleSql {
    /// Act on parent rows by key (children already handled).
    pub fn act_by_keys(&self, d: &dyn Dialect, keys: &[String], hashes: Hashes<'_>) -> Stmt {
        let kc = self.table.col(d, &self.key.name);
        act(
            d,
            &self.table,
            Some(&self.key),
            &self.action,
            hashes,
            &|b| d.push_in_list(b, &kc, &self.key, keys),
        )
    }
}
