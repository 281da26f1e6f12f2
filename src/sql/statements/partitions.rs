//! Statements of `partitions = "drop"`: the catalog, one partition's keys
//! and subjects, its lock and its drop.

use super::{CutoffValue, RuleSql};
use crate::sql::dialect::Dialect;
use crate::sql::{Builder, Stmt, Val};

/// Statements of `partitions = "drop"`: the catalog, one partition's keys
/// and subjects, its lock and its drop. Names come from the catalog and are
/// quoted here, like every other identifier.
impl RuleSql {
    /// The catalog query listing the table's partitions (see
    /// `postgres::PARTITIONS_SQL` and `mysql::PARTITIONS_SQL`); `None` on
    /// engines without partitions.
    pub fn partition_catalog(&self, d: &dyn Dialect) -> Option<Stmt> {
        d.partition_catalog(&self.table.from, &self.table.info.table.table)
    }

    /// One partition as a FROM clause whose columns are still qualified by
    /// the table's name: PostgreSQL `ONLY "s"."p" AS "t"`, MariaDB
    /// `` `t` PARTITION (`p`) ``.
    pub fn partition_from(&self, d: &dyn Dialect, schema: &str, name: &str) -> String {
        d.partition_from(&self.table.from, &self.table.name, schema, name)
    }

    /// `1` when a partition whose `LESS THAN` / `TO` bound is `upper` holds
    /// only rows past the cutoff (`upper <= cutoff`; `func` wraps the cutoff
    /// as the partitioning expression wraps the column), else `0`.
    pub fn partition_is_due(&self, d: &dyn Dialect, upper: &str, func: &str) -> Option<Stmt> {
        let sel = self.select.as_ref().filter(|s| s.older)?;
        let mut b = Builder::new(d);
        b.push("SELECT CAST(CASE WHEN ");
        if func.is_empty() {
            d.push_typed(&mut b, &sel.column, upper);
        } else {
            let n: i64 = upper.parse().ok()?;
            b.bind(Val::Int(n));
        }
        b.push(" <= ");
        if !func.is_empty() {
            b.push(func).push("(");
        }
        match &sel.cutoff {
            CutoffValue::Int(i) => {
                b.bind(Val::Int(*i));
            }
            CutoffValue::Text(t) => d.push_typed(&mut b, &sel.column, t),
        }
        if !func.is_empty() {
            b.push(")");
        }
        b.push(" THEN 1 ELSE 0 END AS ")
            .push(d.integer_cast())
            .push(")");
        Some(b.finish())
    }

    /// Rows of one partition (`held`: only those whose subject a hold
    /// lists), as an integer for `Db::count`.
    pub fn partition_count(&self, d: &dyn Dialect, from: &str, held: bool) -> Stmt {
        self.partition_count_as(d, from, held, "COUNT(*)")
    }

    /// The same count as text, for a transaction's `fetch`.
    pub fn partition_count_text(&self, d: &dyn Dialect, from: &str, held: bool) -> Stmt {
        self.partition_count_as(d, from, held, &d.to_text("COUNT(*)"))
    }

    fn partition_count_as(&self, d: &dyn Dialect, from: &str, held: bool, what: &str) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT ").push(what).push(" FROM ").push(from);
        if held {
            b.push(" WHERE ");
            self.push_held(d, &mut b);
        }
        b.finish()
    }

    /// One page of a partition's keys (and subjects) in key order, after
    /// `after`: an index-only walk of the key where there is no subject.
    pub fn partition_keys(
        &self,
        d: &dyn Dialect,
        from: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Stmt {
        let kc = self.table.col(d, &self.key.name);
        let mut b = Builder::new(d);
        b.push("SELECT ").push(&d.to_text(&kc)).push(", ");
        match &self.subject {
            Some(s) => b.push(&d.to_text(&self.table.col(d, &s.name))),
            None => b.push("NULL"),
        };
        b.push(" FROM ").push(from);
        if let Some(a) = after {
            b.push(" WHERE ").push(&kc).push(" > ");
            d.push_typed(&mut b, &self.key, a);
        }
        b.push(" ORDER BY ")
            .push(&kc)
            .push(&format!(" LIMIT {limit}"));
        b.finish()
    }

    /// What keeps everyone out of the table while a partition is re-checked
    /// and dropped: PostgreSQL `LOCK TABLE parent IN ACCESS EXCLUSIVE MODE`
    /// (the lock `DETACH` takes anyway, taken on the parent first, in the
    /// order the application's statements on the parent take theirs, so the
    /// two cannot deadlock), MariaDB `LOCK TABLES t WRITE`. Held only for a
    /// checksum of the partition and the drop.
    pub fn partition_lock(&self, d: &dyn Dialect, _schema: &str, _name: &str) -> Stmt {
        Stmt {
            sql: d.lock_table(&self.table.from),
            binds: vec![],
        }
    }

    /// The statements that drop one partition: PostgreSQL detaches it, then
    /// drops the detached table (one transaction); MariaDB drops it.
    pub fn partition_drop(&self, d: &dyn Dialect, schema: &str, name: &str) -> Vec<Stmt> {
        d.partition_drop(&self.table.from, schema, name)
    }

    /// The one-statement delete's physical parts, less the partitions
    /// dropped whole (PostgreSQL leaves as (schema, name)).
    pub fn delete_parts_except(
        &self,
        d: &dyn Dialect,
        dropped: &[(String, String)],
    ) -> Vec<Option<String>> {
        if d.deletes_per_leaf(&self.table.info) {
            self.table
                .info
                .leaves
                .iter()
                .filter(|(s, t, _)| !dropped.iter().any(|(ds, dt)| ds == s && dt == t))
                .map(|(schema, table, _)| {
                    Some(d.partition_from(&self.table.from, &self.table.name, schema, table))
                })
                .collect()
        } else {
            self.delete_parts(d)
        }
    }
}
