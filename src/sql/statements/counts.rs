//! What a rule matches and how much: the match, hold and eligibility
//! predicates, and the counts `plan`, the guards and the re-pointing checks
//! read.

use super::children::push_child_scope;
use super::{ActionSql, ChildSql, CutoffValue, RuleSql, SelectSql};
use crate::config::Walk;
use crate::sql::dialect::Dialect;
use crate::sql::schema::ColumnInfo;
use crate::sql::{Builder, Stmt, Val};

impl RuleSql {
    /// `sel < cutoff AND (where) AND <not yet anonymized>`.
    pub fn push_match(&self, d: &dyn Dialect, b: &mut Builder<'_>) {
        let mut first = true;
        let mut and = |b: &mut Builder<'_>| {
            if !first {
                b.push(" AND ");
            }
            first = false;
        };
        if let Some(sel) = &self.select {
            and(b);
            b.push(&self.table.col(d, &sel.column.name))
                .push(if sel.older { " < " } else { " > " });
            match &sel.cutoff {
                CutoffValue::Int(i) => {
                    b.bind(Val::Int(*i));
                }
                CutoffValue::Text(t) => d.push_typed(b, &sel.column, t),
            }
        }
        if let Some(w) = &self.where_ {
            and(b);
            b.push("(").push(w).push(")");
        }
        if let Some(subjects) = &self.subjects {
            and(b);
            match &self.subject {
                Some(col) if !subjects.is_empty() => {
                    d.push_in_list(b, &self.table.col(d, &col.name), col, subjects)
                }
                _ => {
                    b.push("1 = 0");
                }
            }
        }
        if let ActionSql::Anonymize(cols) = &self.action {
            and(b);
            crate::sql::anonymize::push_needs(d, b, &self.table, cols);
        }
        if first {
            b.push("1 = 1");
        }
    }

    /// `EXISTS (SELECT 1 FROM hold WHERE hold.col = target.subject)`.
    pub fn push_held(&self, d: &dyn Dialect, b: &mut Builder<'_>) {
        if let (Some((ht, hc)), Some(subj)) = (&self.hold, &self.subject) {
            b.push(&format!(
                "EXISTS (SELECT 1 FROM {ht} WHERE {hc} = {})",
                self.table.col(d, &subj.name)
            ));
        } else {
            b.push("1 = 0");
        }
    }

    pub(super) fn push_eligible(&self, d: &dyn Dialect, b: &mut Builder<'_>) {
        self.push_match(d, b);
        if let Some(shard) = &self.shard {
            b.push(" AND ").push(shard);
        }
        if self.hold.is_some() {
            b.push(" AND NOT ");
            self.push_held(d, b);
        }
    }

    /// The select column of a select walk.
    pub(super) fn walked_select(&self) -> Option<&SelectSql> {
        match self.walk {
            Walk::Select => self.select.as_ref(),
            Walk::Key | Walk::Heap => None,
        }
    }

    pub(super) fn order_sql(&self, d: &dyn Dialect) -> String {
        let key = self.table.col(d, &self.key.name);
        match self.walked_select() {
            Some(s) => format!("{}, {key}", self.table.col(d, &s.column.name)),
            None => key,
        }
    }

    /// Every row of the table, for the plan's before/after figures.
    pub fn count_total(&self, d: &dyn Dialect) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT COUNT(*) FROM ").push(&self.table.from);
        b.finish()
    }

    /// `SELECT COUNT(*) FROM <table> WHERE <pred>`.
    fn count_where(&self, d: &dyn Dialect, pred: impl FnOnce(&mut Builder<'_>)) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT COUNT(*) FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        pred(&mut b);
        b.finish()
    }

    /// Rows the rule would act on (not held).
    pub fn count_eligible(&self, d: &dyn Dialect) -> Stmt {
        self.count_where(d, |b| self.push_eligible(d, b))
    }

    /// Rows that match but are held.
    pub fn count_held(&self, d: &dyn Dialect) -> Stmt {
        self.count_where(d, |b| {
            self.push_match(d, b);
            b.push(" AND ");
            self.push_held(d, b);
        })
    }

    /// Distinct subjects of held rows (hashed before they go anywhere).
    pub fn held_subjects(&self, d: &dyn Dialect, limit: usize) -> Option<Stmt> {
        let subj = self.subject.as_ref()?;
        self.hold.as_ref()?;
        let mut b = Builder::new(d);
        b.push("SELECT DISTINCT ")
            .push(&d.to_text(&self.table.col(d, &subj.name)))
            .push(" FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        self.push_match(d, &mut b);
        b.push(" AND ");
        self.push_held(d, &mut b);
        b.push(&format!(" LIMIT {limit}"));
        Some(b.finish())
    }

    /// The child rules from the top down to the one at `path` (indexes
    /// into each level's children); empty for the rule's own table.
    fn chain(&self, path: &[usize]) -> Vec<&ChildSql> {
        let mut chain: Vec<&ChildSql> = Vec::new();
        let mut level = &self.children;
        for &i in path {
            chain.push(&level[i]);
            level = &level[i].children;
        }
        chain
    }

    /// Count of child rows a child rule would touch, for the plan.
    pub fn count_child(&self, d: &dyn Dialect, path: &[usize]) -> Stmt {
        let mut b = Builder::new(d);
        let chain = self.chain(path);
        let leaf = chain.last().expect("path is not empty");
        b.push("SELECT COUNT(*) FROM ")
            .push(&leaf.table.from)
            .push(" WHERE ");
        push_child_scope(d, &mut b, self, &chain);
        if let ActionSql::Anonymize(cols) = &leaf.action {
            b.push(" AND ");
            crate::sql::anonymize::push_needs(d, &mut b, &leaf.table, cols);
        }
        b.finish()
    }

    /// Rows of the table at `path` (the rule's own table when empty) whose
    /// `column` equals `value` and that the rule would act on (hold
    /// ignored): a re-pointing target must not be one of them.
    pub fn count_selected(
        &self,
        d: &dyn Dialect,
        path: &[usize],
        column: &ColumnInfo,
        value: &str,
    ) -> Stmt {
        let mut b = Builder::new(d);
        let chain = self.chain(path);
        let table = chain.last().map_or(&self.table, |c| &c.table);
        b.push("SELECT COUNT(*) FROM ")
            .push(&table.from)
            .push(" WHERE ")
            .push(&table.col(d, &column.name))
            .push(" = ");
        d.push_typed(&mut b, column, value);
        b.push(" AND ");
        if chain.is_empty() {
            self.push_match(d, &mut b);
        } else {
            push_child_scope(d, &mut b, self, &chain);
        }
        b.finish()
    }
}
