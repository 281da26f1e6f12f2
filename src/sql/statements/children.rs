//! Child tables: their scope under a parent (down a chain of children),
//! the keys and objects of the rows in it, and acting on them.

use super::act::act;
use super::{ActionSql, ChildSql, Hashes, RuleSql};
use crate::sql::dialect::Dialect;
use crate::sql::schema::ColumnInfo;
use crate::sql::{Builder, Stmt};

/// `child.fk IN (SELECT parent.key FROM parent WHERE …)` down a chain of children.
pub(super) fn push_child_scope(
    d: &dyn Dialect,
    b: &mut Builder<'_>,
    rule: &RuleSql,
    chain: &[&ChildSql],
) {
    let (leaf, parents) = chain.split_last().expect("chain is not empty");
    // PostgreSQL does not compare text with integers: select the parent key
    // as the child's foreign-key type when the two differ.
    let typed = |col: String, parent: &ColumnInfo| {
        if d.casts_mixed_keys()
            && !leaf.fk.data_type.is_empty()
            && leaf.fk.data_type != parent.data_type
        {
            format!("CAST({col} AS {})", leaf.fk.data_type)
        } else {
            col
        }
    };
    b.push(&leaf.table.col(d, &leaf.fk.name))
        .push(" IN (SELECT ");
    match parents.last() {
        None => {
            b.push(&typed(rule.table.col(d, &rule.key.name), &rule.key))
                .push(" FROM ")
                .push(&rule.table.from)
                .push(" WHERE ");
            rule.push_eligible(d, b);
        }
        Some(p) => {
            let pk = p.key.as_ref().expect("a child with children has a key");
            b.push(&typed(p.table.col(d, &pk.name), pk))
                .push(" FROM ")
                .push(&p.table.from)
                .push(" WHERE ");
            push_child_scope(d, b, rule, parents);
        }
    }
    b.push(")");
}

/// Statements that act on one child table for a set of parent keys.
impl ChildSql {
    /// ` FROM <child> WHERE fk IN (…)`, the parents' keys typed like the
    /// foreign key.
    fn push_from_parents(
        &self,
        d: &dyn Dialect,
        b: &mut Builder<'_>,
        parent_key: &ColumnInfo,
        parent_keys: &[String],
    ) {
        b.push(" FROM ").push(&self.table.from).push(" WHERE ");
        d.push_in_list(
            b,
            &self.table.col(d, &self.fk.name),
            fk_type(&self.fk, parent_key),
            parent_keys,
        );
    }

    /// `SELECT key, hashed… FROM child WHERE fk IN (…) [AND needs]`.
    pub fn select_keys(
        &self,
        d: &dyn Dialect,
        parent_key: &ColumnInfo,
        parent_keys: &[String],
    ) -> Stmt {
        let mut b = Builder::new(d);
        let key = self.key.as_ref().expect("needs_keys implies a key");
        b.push("SELECT ")
            .push(&d.to_text(&self.table.col(d, &key.name)));
        for c in self.action.hash_columns() {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        self.push_from_parents(d, &mut b, parent_key, parent_keys);
        if let ActionSql::Anonymize(cols) = &self.action {
            b.push(" AND ");
            crate::sql::anonymize::push_needs(d, &mut b, &self.table, cols);
        }
        b.push(d.lock_rows());
        b.finish()
    }

    /// `SELECT fk, object columns… FROM child WHERE fk IN (…)`: the objects the
    /// child rows of these parents name (read before anything is acted on).
    pub fn select_objects(
        &self,
        d: &dyn Dialect,
        parent_key: &ColumnInfo,
        parent_keys: &[String],
    ) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT ")
            .push(&d.to_text(&self.table.col(d, &self.fk.name)));
        for c in &self.object_columns {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        self.push_from_parents(d, &mut b, parent_key, parent_keys);
        b.push(d.lock_rows());
        b.finish()
    }

    /// Act on all rows whose foreign key is in `parent_keys` (hashes, if
    /// any, computed in SQL: only when `!needs_keys`).
    pub fn act_by_parent(
        &self,
        d: &dyn Dialect,
        parent_key: &ColumnInfo,
        parent_keys: &[String],
        hashes: Hashes<'_>,
    ) -> Stmt {
        let fk = self.table.col(d, &self.fk.name);
        let ty = fk_type(&self.fk, parent_key);
        act(
            d,
            &self.table,
            self.key.as_ref(),
            &self.action,
            hashes,
            &|b| d.push_in_list(b, &fk, ty, parent_keys),
        )
    }

    /// Act on the child rows with these keys (after grandchildren were handled).
    pub fn act_by_keys(&self, d: &dyn Dialect, keys: &[String], hashes: Hashes<'_>) -> Stmt {
        let key = self.key.as_ref().expect("needs_keys implies a key");
        let kc = self.table.col(d, &key.name);
        act(d, &self.table, Some(key), &self.action, hashes, &|b| {
            d.push_in_list(b, &kc, key, keys)
        })
    }
}

/// The foreign key column's own type when known, else the parent key's.
fn fk_type<'a>(fk: &'a ColumnInfo, parent_key: &'a ColumnInfo) -> &'a ColumnInfo {
    if fk.data_type.is_empty() {
        parent_key
    } else {
        fk
    }
}
