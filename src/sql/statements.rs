//! Rule-level statements: the predicates and batch statements for one rule,
//! built from its validated config and its tables' live schema.
//!
//! A [`RuleSql`] is made once per run by [`RuleSql::prepare`], which is also
//! where `check` learns about every mismatch between a job and the schema.

use super::dialect::{DeleteSummary, DeleteTarget, Dialect};
use super::schema::{ColumnInfo, ColumnKind, TableInfo};
use super::{Builder, Stmt, TextRow, Val};
use crate::config::{Action, Child, ObjectLink, Rule, Strategy, TableRef, TimeFormat, Walk};
use crate::keys::keys_sha256;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// What one one-statement batch deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub count: u64,
    /// `crate::keys::keys_sha256` of the deleted keys, the unkeyed inner part
    /// of the audit record's `keys_digest`.
    pub keys_sha256: String,
    /// Distinct raw subject values, to be hashed before they go anywhere.
    pub subjects: Vec<String>,
    /// The greatest value of the order's leading column, where the engine
    /// can report it (PostgreSQL): the next batch starts there.
    pub bound: Option<String>,
}

/// A table with its quoted names.
#[derive(Debug, Clone)]
pub struct TableSql {
    pub info: TableInfo,
    /// Qualified and quoted, for FROM / UPDATE / DELETE.
    pub from: String,
    /// Quoted bare name, for qualifying columns.
    pub name: String,
}

impl TableSql {
    pub fn new(d: &dyn Dialect, info: TableInfo) -> Self {
        let name = d.quote(&info.table.table);
        let from = match &info.table.schema {
            Some(s) => format!("{}.{}", d.quote(s), name),
            None => name.clone(),
        };
        Self { info, from, name }
    }

    pub fn col(&self, d: &dyn Dialect, c: &str) -> String {
        format!("{}.{}", self.name, d.quote(c))
    }
}

#[derive(Debug, Clone)]
pub enum ActionSql {
    Delete,
    Anonymize(Vec<(ColumnInfo, Strategy)>),
}

impl ActionSql {
    pub fn name(&self) -> &'static str {
        match self {
            ActionSql::Delete => "delete",
            ActionSql::Anonymize(_) => "anonymize",
        }
    }

    pub fn hash_columns(&self) -> Vec<&ColumnInfo> {
        match self {
            ActionSql::Anonymize(cols) => cols
                .iter()
                .filter(|(_, s)| *s == Strategy::Hash)
                .map(|(c, _)| c)
                .collect(),
            ActionSql::Delete => vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChildSql {
    pub table: TableSql,
    pub display: String,
    pub fk: ColumnInfo,
    pub key: Option<ColumnInfo>,
    pub action: ActionSql,
    pub children: Vec<ChildSql>,
    /// Objects each child row names, and the columns that name them.
    pub objects: Vec<ObjectLink>,
    pub object_columns: Vec<ColumnInfo>,
}

impl ChildSql {
    /// Whether the child's own keys must be read before acting: it has
    /// children of its own, or it hashes columns on an engine that cannot
    /// (so Lethe reads the values and binds the hashes).
    pub fn needs_keys(&self, d: &dyn Dialect) -> bool {
        !self.children.is_empty() || (!self.action.hash_columns().is_empty() && !d.hashes_in_sql())
    }
}

/// Where an anonymizing `UPDATE` gets the `hash` strategy's values.
#[derive(Debug, Clone, Copy)]
pub enum Hashes<'a> {
    /// The action hashes no column.
    None,
    /// The server computes them (`Dialect::keyed_hash`).
    InSql(&'a crate::keys::HashPads),
    /// Computed by Lethe, per row: (key, new value of each `hash_columns()`
    /// entry, `None` where it stays), bound as `CASE key WHEN … THEN … END`.
    Bound(&'a [(String, Vec<Option<String>>)]),
}

/// Rows per anonymizing `UPDATE` (all of a batch where the engine takes a
/// list as one parameter), under every engine's bind limit: SQLite binds
/// a key and a value per hashed column per row.
pub fn act_chunk(d: &dyn Dialect, hashed_columns: usize) -> usize {
    d.update_chunk(hashed_columns)
}

#[derive(Debug, Clone)]
pub enum CutoffValue {
    Int(i64),
    /// Text in the column's format; cast to the column type where the engine needs it.
    Text(String),
}

#[derive(Debug, Clone)]
pub struct SelectSql {
    pub column: ColumnInfo,
    /// `<` the cutoff (older_than) or `>` it (newer_than).
    pub older: bool,
    pub cutoff: CutoffValue,
    pub cutoff_instant: DateTime<Utc>,
}

/// Everything needed to write the statements of one rule.
#[derive(Debug, Clone)]
pub struct RuleSql {
    pub table: TableSql,
    pub display: String,
    pub key: ColumnInfo,
    pub subject: Option<ColumnInfo>,
    pub select: Option<SelectSql>,
    pub where_: Option<String>,
    /// (quoted hold table, quoted hold column).
    pub hold: Option<(String, String)>,
    pub action: ActionSql,
    pub children: Vec<ChildSql>,
    pub batch_size: usize,
    /// The order batches walk the table in, chosen from the live indexes
    /// (or forced by the rule), and why.
    pub walk: Walk,
    pub walk_why: String,
    /// This process's share of the key space, when sharded.
    pub shard: Option<String>,
    /// A request job's rule: only rows whose subject is one of these
    /// (bound values, never SQL text). `Some(empty)` matches nothing, which
    /// is what a request rule does until the engine names its subject.
    pub subjects: Option<Vec<String>>,
    /// Objects each row names, and the columns (read with the batch) that name them.
    pub objects: Vec<ObjectLink>,
    pub object_columns: Vec<ColumnInfo>,
}

/// Rows read for a batch; every value as text.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub key: String,
    pub subject: Option<String>,
    pub order: Option<String>,
    /// Values of the columns the `hash` strategy rewrites, in `hash_columns()` order.
    pub hashed: Vec<Option<String>>,
    /// Values of `object_columns`, in order (the row's object names).
    pub objects: Vec<Option<String>>,
}

/// The position after the last row of the previous batch.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub order: Option<String>,
    pub key: String,
}

fn cutoff_for(
    d: &dyn Dialect,
    col: &ColumnInfo,
    format: &TimeFormat,
    at: DateTime<Utc>,
) -> Result<CutoffValue, String> {
    match (col.kind, format) {
        (ColumnKind::Int, TimeFormat::UnixMs) => Ok(CutoffValue::Int(at.timestamp_millis())),
        (ColumnKind::Int, TimeFormat::Unix | TimeFormat::Native) => {
            Ok(CutoffValue::Int(at.timestamp()))
        }
        (ColumnKind::Int, _) => Err(format!(
            "select column `{}` is an integer; use format = \"unix\" or \"unix_ms\"",
            col.name
        )),
        (ColumnKind::Time, _) => {
            let dt = col.data_type.to_ascii_lowercase();
            Ok(CutoffValue::Text(if d.zoned_time(&dt) {
                at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
            } else if dt == "date" {
                // A date column compares by day: rows dated strictly before the cutoff's day.
                at.format("%Y-%m-%d").to_string()
            } else {
                at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
            }))
        }
        (ColumnKind::Text, TimeFormat::Native) => Ok(CutoffValue::Text(
            at.format("%Y-%m-%d %H:%M:%S").to_string(),
        )),
        (ColumnKind::Text, TimeFormat::Rfc3339) => Ok(CutoffValue::Text(
            at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )),
        (ColumnKind::Text, TimeFormat::Date) => {
            Ok(CutoffValue::Text(at.format("%Y-%m-%d").to_string()))
        }
        (ColumnKind::Text, TimeFormat::Unix | TimeFormat::UnixMs) => Err(format!(
            "select column `{}` is text; a unix format needs an integer column",
            col.name
        )),
        (ColumnKind::Other, _) => Err(format!(
            "select column `{}` has type {}, which is not a date, time, text or integer type",
            col.name, col.data_type
        )),
    }
}

/// Which index the batches walk. An ordered batch over a column no index
/// leads with is a scan and sort of the whole table, every batch (rows² /
/// batch in total); walking the key forward with a moving lower bound and
/// the cutoff as a filter passes each row once.
fn choose_walk(
    forced: Option<Walk>,
    info: &TableInfo,
    select: Option<&SelectSql>,
    key: &ColumnInfo,
) -> (Walk, String) {
    let key_indexed = info.indexed.contains(&key.name);
    match (forced, select) {
        (Some(Walk::Key), _) => (Walk::Key, "walk = \"key\" in the rule".into()),
        (Some(Walk::Select), Some(_)) => (Walk::Select, "walk = \"select\" in the rule".into()),
        (_, None) => (Walk::Key, "the rule has no select column".into()),
        (None, Some(sel)) if info.indexed.contains(&sel.column.name) => (
            Walk::Select,
            format!("an index leads with `{}`", sel.column.name),
        ),
        (None, Some(sel)) if key_indexed => (
            Walk::Key,
            format!("no index leads with `{}`", sel.column.name),
        ),
        (None, Some(sel)) => (
            Walk::Select,
            format!(
                "no index leads with `{}` or with the key `{}`: every batch scans the table",
                sel.column.name, key.name
            ),
        ),
    }
}

fn column(
    info: &TableInfo,
    name: &str,
    role: &str,
    problems: &mut Vec<String>,
) -> Option<ColumnInfo> {
    let c = info.column(name).cloned();
    if c.is_none() {
        problems.push(format!(
            "{role} column `{name}` does not exist in {}",
            info.table
        ));
    }
    c
}

/// The distinct columns a set of object links reads, checked against the table.
fn object_columns(
    info: &TableInfo,
    links: &[ObjectLink],
    problems: &mut Vec<String>,
) -> Vec<ColumnInfo> {
    let mut out: Vec<ColumnInfo> = Vec::new();
    for l in links {
        for c in l.columns() {
            if out.iter().any(|o| o.name == c) {
                continue;
            }
            if let Some(ci) = column(info, c, &format!("objects ({})", l.describe()), problems) {
                out.push(ci);
            }
        }
    }
    out
}

fn action_sql(
    d: &dyn Dialect,
    info: &TableInfo,
    action: &Action,
    problems: &mut Vec<String>,
) -> ActionSql {
    match action {
        Action::Delete => ActionSql::Delete,
        Action::Anonymize(cols) => {
            let mut out = Vec::new();
            for (name, strategy) in cols {
                let Some(c) = column(info, name, "anonymized", problems) else {
                    continue;
                };
                let text_only = matches!(
                    strategy,
                    Strategy::Redact | Strategy::Hash | Strategy::Mask(_)
                );
                if text_only && c.kind != ColumnKind::Text {
                    problems.push(format!(
                        "{}.{}: strategy `{strategy}` writes text, but the column is {}",
                        info.table, c.name, c.data_type
                    ));
                }
                if *strategy == Strategy::Hash
                    && d.enforces_text_width()
                    && c.data_type.contains('(')
                {
                    let width: usize = c
                        .data_type
                        .split(['(', ')'])
                        .nth(1)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(usize::MAX);
                    if width < 64 {
                        problems.push(format!(
                            "{}.{}: `hash` writes 64 hex characters, but the column is {}",
                            info.table, c.name, c.data_type
                        ));
                    }
                }
                if matches!(strategy, Strategy::Year | Strategy::Month)
                    && !matches!(c.kind, ColumnKind::Time | ColumnKind::Text)
                {
                    problems.push(format!(
                        "{}.{}: strategy `{strategy}` needs a date column, but the column is {}",
                        info.table, c.name, c.data_type
                    ));
                }
                if *strategy == Strategy::Null && !c.nullable {
                    problems.push(format!(
                        "{}.{}: strategy `null` on a NOT NULL column",
                        info.table, c.name
                    ));
                }
                out.push((c, strategy.clone()));
            }
            ActionSql::Anonymize(out)
        }
    }
}

/// Tables a rule touches, looked up by `TableRef`.
pub trait Tables {
    fn get(&self, t: &TableRef) -> Option<&TableInfo>;
}

impl RuleSql {
    /// Match the rule with the live schema. Every problem is returned.
    pub fn prepare(
        d: &dyn Dialect,
        rule: &Rule,
        tables: &dyn Tables,
        as_of: DateTime<Utc>,
    ) -> Result<RuleSql, Vec<String>> {
        let mut problems = Vec::new();
        let Some(info) = tables.get(&rule.target) else {
            return Err(vec![format!("table {} does not exist", rule.target)]);
        };
        let key = column(info, &rule.key, "key", &mut problems);
        // The one-statement delete never selects by key (it only reports the
        // key, digested), so it does not need the key to be unique.
        let one_statement = matches!(rule.action, Action::Delete)
            && rule.children.is_empty()
            && d.delete_returning();
        if let Some(k) = &key
            && !one_statement
            && !info.primary_key.is_empty()
            && !(info.primary_key.len() == 1 && info.primary_key[0] == k.name)
        {
            problems.push(format!(
                "key `{}` is not the primary key of {} ({:?}); Lethe needs a unique single-column key",
                k.name, rule.target, info.primary_key
            ));
        }
        let subject = rule
            .subject
            .as_ref()
            .and_then(|s| column(info, s, "subject", &mut problems));
        let select = rule.select.as_ref().and_then(|s| {
            let c = column(info, &s.column, "select", &mut problems)?;
            let instant = s.period.before(as_of);
            match cutoff_for(d, &c, &s.format, instant) {
                Ok(cutoff) => Some(SelectSql {
                    column: c,
                    older: s.older,
                    cutoff,
                    cutoff_instant: instant,
                }),
                Err(e) => {
                    problems.push(e);
                    None
                }
            }
        });
        let hold = rule.hold.as_ref().and_then(|h| {
            let Some(hinfo) = tables.get(&h.table) else {
                problems.push(format!("hold table {} does not exist", h.table));
                return None;
            };
            if h.table == rule.target {
                problems.push("the hold table cannot be the target itself".into());
                return None;
            }
            column(hinfo, &h.column, "hold", &mut problems)?;
            let t = TableSql::new(d, hinfo.clone());
            let col = t.col(d, &h.column);
            Some((t.from, col))
        });
        let action = action_sql(d, info, &rule.action, &mut problems);
        let children = prepare_children(d, &rule.children, tables, &rule.key, &mut problems);
        let objects = object_columns(info, &rule.objects, &mut problems);
        if let Some(k) = &key
            && !matches!(k.kind, ColumnKind::Int | ColumnKind::Text)
            && !d.any_key_type()
        {
            problems.push(format!(
                "key `{}` has type {}; use an integer or text key",
                k.name, k.data_type
            ));
        }
        for (schema, table, kind) in &info.leaves {
            if kind != "r" {
                problems.push(format!(
                    "{}.{table} (part of {}) is not an ordinary table (relkind {kind}); Lethe cannot delete there",
                    schema, rule.target
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let table = TableSql::new(d, info.clone());
        let key = key.expect("checked");
        let (walk, walk_why) = choose_walk(rule.walk, info, select.as_ref(), &key);
        Ok(RuleSql {
            display: rule.target.to_string(),
            table,
            key,
            subject,
            select,
            where_: rule.where_.clone(),
            hold,
            action,
            children,
            batch_size: rule.batch_size,
            walk,
            walk_why,
            shard: None,
            subjects: rule.by_request.then(Vec::new),
            objects: rule.objects.clone(),
            object_columns: objects,
        })
    }

    /// Restrict the rule to shard `index` of `count`.
    pub fn set_shard(&mut self, d: &dyn Dialect, index: u32, count: u32) -> Result<(), String> {
        let key_sql = self.table.col(d, &self.key.name);
        self.shard = Some(d.shard_predicate(&key_sql, &self.key, index, count)?);
        Ok(())
    }

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
            push_needs(d, b, &self.table, cols);
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

    fn push_eligible(&self, d: &dyn Dialect, b: &mut Builder<'_>) {
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
    fn walked_select(&self) -> Option<&SelectSql> {
        match self.walk {
            Walk::Select => self.select.as_ref(),
            Walk::Key => None,
        }
    }

    fn order_sql(&self, d: &dyn Dialect) -> String {
        let key = self.table.col(d, &self.key.name);
        match self.walked_select() {
            Some(s) => format!("{}, {key}", self.table.col(d, &s.column.name)),
            None => key,
        }
    }

    pub fn count_total(&self, d: &dyn Dialect) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT COUNT(*) FROM ").push(&self.table.from);
        b.finish()
    }

    /// Rows the rule would act on (not held).
    pub fn count_eligible(&self, d: &dyn Dialect) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT COUNT(*) FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        self.push_eligible(d, &mut b);
        b.finish()
    }

    /// Rows that match but are held.
    pub fn count_held(&self, d: &dyn Dialect) -> Stmt {
        let mut b = Builder::new(d);
        b.push("SELECT COUNT(*) FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        self.push_match(d, &mut b);
        b.push(" AND ");
        self.push_held(d, &mut b);
        b.finish()
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

    /// Count of child rows a child rule would touch, for the plan.
    pub fn count_child(&self, d: &dyn Dialect, path: &[usize]) -> Stmt {
        let mut b = Builder::new(d);
        let mut chain: Vec<&ChildSql> = Vec::new();
        let mut level = &self.children;
        for &i in path {
            chain.push(&level[i]);
            level = &level[i].children;
        }
        let leaf = chain.last().expect("path is not empty");
        b.push("SELECT COUNT(*) FROM ")
            .push(&leaf.table.from)
            .push(" WHERE ");
        push_child_scope(d, &mut b, self, &chain);
        if let ActionSql::Anonymize(cols) = &leaf.action {
            b.push(" AND ");
            push_needs(d, &mut b, &leaf.table, cols);
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
        let mut chain: Vec<&ChildSql> = Vec::new();
        let mut level = &self.children;
        for &i in path {
            chain.push(&level[i]);
            level = &level[i].children;
        }
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

    /// Whether the one-statement delete path applies: a delete with nothing
    /// to do per row but audit its subject.
    pub fn fast_delete(&self, d: &dyn Dialect) -> bool {
        matches!(self.action, ActionSql::Delete)
            && self.children.is_empty()
            && self.objects.is_empty()
            && d.delete_returning()
    }

    fn returning(&self, d: &dyn Dialect) -> String {
        let key = d.to_text(&d.quote(&self.key.name));
        let subj = match &self.subject {
            Some(s) => d.to_text(&d.quote(&s.name)),
            None => "NULL".into(),
        };
        match d.delete_summary() {
            DeleteSummary::InStatement => format!(
                "{key} AS k, {} AS s, {} AS o",
                if self.subject.is_some() {
                    subj
                } else {
                    "CAST(NULL AS TEXT)".into()
                },
                d.quote(&self.bound_column().name)
            ),
            DeleteSummary::SelectFirst => String::new(),
            DeleteSummary::Rows => format!(
                "{key}, {subj}, {}",
                d.to_text(&d.quote(&self.bound_column().name))
            ),
        }
    }

    /// `DeleteSummary::SelectFirst`: the statement that summarizes the rows
    /// the next `delete_batch` will remove (count, keys joined by newlines,
    /// the greatest value of the walked column, distinct subjects as a JSON
    /// array). `from` and `below` must be the ones `delete_batch` is given.
    pub fn summarize_batch(
        &self,
        d: &dyn Dialect,
        part: Option<&str>,
        from: Option<&str>,
        below: Option<&str>,
    ) -> Option<Stmt> {
        if d.delete_summary() != DeleteSummary::SelectFirst {
            return None;
        }
        let head = d.select_first_summary()?;
        let mut b = Builder::new(d);
        let key = d.to_text(&self.table.col(d, &self.key.name));
        let subj = match &self.subject {
            Some(s) => d.to_text(&self.table.col(d, &s.name)),
            None => "NULL".into(),
        };
        b.push(head).push(" FROM (SELECT ");
        b.push(&key).push(" AS k, ").push(&subj).push(" AS s, ");
        b.push(&self.table.col(d, &self.bound_column().name))
            .push(" AS o FROM ");
        b.push(part.unwrap_or(&self.table.from)).push(" WHERE ");
        self.push_eligible(d, &mut b);
        self.push_window(d, &mut b, from, below);
        b.push(&format!(
            " ORDER BY {} LIMIT {})",
            self.order_sql(d),
            self.batch_size
        ));
        Some(b.finish())
    }

    /// The leading column of a one-statement delete's order: the select
    /// column, or the key. Its greatest deleted value bounds the next batch
    /// from below, so the index walk starts where the last batch ended
    /// instead of stepping over every entry the run has already deleted.
    fn bound_column(&self) -> &ColumnInfo {
        match self.walked_select() {
            Some(sel) => &sel.column,
            None => &self.key,
        }
    }

    /// What a one-statement batch deleted, from the rows `delete_batch` (or,
    /// on SQLite, `summarize_batch`) returned: one summary row or every
    /// deleted row.
    pub fn parse_deleted(&self, d: &dyn Dialect, rows: Vec<TextRow>) -> Result<Deleted, String> {
        let summary = d.delete_summary();
        if summary != DeleteSummary::Rows {
            let mut row = rows.into_iter().next().ok_or("no summary row")?;
            row.resize(4, None);
            let count: u64 = row[0]
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| "unreadable batch count")?;
            let subjects = match row[3].take() {
                Some(json) => serde_json::from_str::<Vec<String>>(&json)
                    .map_err(|_| "unreadable batch subjects")?,
                None => vec![],
            };
            let keys = row[1].take();
            return Ok(Deleted {
                count,
                keys_sha256: match (summary, keys) {
                    (DeleteSummary::InStatement, Some(sha)) => sha,
                    // Keys joined by newlines: hashing the whole is hashing the list.
                    (_, Some(joined)) => keys_sha256(&[joined]),
                    (_, None) => keys_sha256(&[]),
                },
                subjects,
                bound: row[2].take(),
            });
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut subjects = BTreeSet::new();
        let mut bound: Option<String> = None;
        let int_bound = self.bound_column().kind == ColumnKind::Int;
        for mut r in rows {
            let order = r.pop().flatten();
            let subject = r.pop().flatten();
            if let Some(k) = r.pop().flatten() {
                keys.push(k);
            }
            subjects.extend(subject);
            // Rows come back in delete order (`ORDER BY … LIMIT`): the last
            // is the greatest; integers are compared as numbers anyway.
            bound = match (bound, order) {
                (Some(b), Some(o)) if int_bound => {
                    let (bi, oi) = (b.parse::<i64>(), o.parse::<i64>());
                    match (bi, oi) {
                        (Ok(bi), Ok(oi)) if bi > oi => Some(b),
                        _ => Some(o),
                    }
                }
                (b, None) => b,
                (_, o) => o,
            };
        }
        Ok(Deleted {
            count: keys.len() as u64,
            keys_sha256: keys_sha256(&keys),
            subjects: subjects.into_iter().collect(),
            bound,
        })
    }

    /// The physical tables a one-statement delete walks, one after another:
    /// `None` for the table itself, or each leaf of a PostgreSQL partitioned
    /// or inherited table (a `ctid` is unique only within one of them).
    pub fn delete_parts(&self, d: &dyn Dialect) -> Vec<Option<String>> {
        if d.deletes_per_leaf(&self.table.info) {
            self.table
                .info
                .leaves
                .iter()
                .map(|(schema, table, _)| {
                    Some(d.partition_from(&self.table.from, &self.table.name, schema, table))
                })
                .collect()
        } else {
            vec![None]
        }
    }

    /// `AND <order column> >= from AND <order column> < below`, for the
    /// parts given: a one-statement delete's window on the leading order
    /// column (see [`RuleSql::bound_column`]).
    fn push_window(
        &self,
        d: &dyn Dialect,
        b: &mut Builder<'_>,
        from: Option<&str>,
        below: Option<&str>,
    ) {
        let col = self.bound_column();
        let col_sql = self.table.col(d, &col.name);
        for (op, v) in [(" >= ", from), (" < ", below)] {
            if let Some(v) = v {
                b.push(" AND ").push(&col_sql).push(op);
                d.push_typed(b, col, v);
            }
        }
    }

    /// Where `workers` side-by-side deletes split the rule's rows: the
    /// leading order column's value at row `offset` of the eligible rows in
    /// delete order. Worker `i` takes `[split(i-1), split(i))`, so each row
    /// falls in exactly one window, also a row written after the split.
    pub fn split_point(&self, d: &dyn Dialect, offset: u64) -> Stmt {
        let mut b = Builder::new(d);
        let col_sql = self.table.col(d, &self.bound_column().name);
        b.push("SELECT ")
            .push(&d.to_text(&col_sql))
            .push(" FROM ")
            .push(&self.table.from)
            .push(" WHERE ");
        self.push_eligible(d, &mut b);
        b.push(&format!(" ORDER BY {col_sql} LIMIT 1 OFFSET {offset}"));
        b.finish()
    }

    /// Delete the next batch in one statement, returning (key, subject).
    /// `part` is one of [`RuleSql::delete_parts`].
    /// `bound`: the previous batch's greatest order value (`Deleted::bound`),
    /// or where this worker's window starts; `below`: where it ends.
    pub fn delete_batch(
        &self,
        d: &dyn Dialect,
        part: Option<&str>,
        bound: Option<&str>,
        below: Option<&str>,
    ) -> Stmt {
        let mut b = Builder::new(d);
        let key_sql = self.table.col(d, &self.key.name);
        // This path keeps no cursor, so rows that tie on the select column
        // need no tie-break. On PostgreSQL one costs an incremental sort per
        // batch (an index on the select column does not end with the key);
        // InnoDB and SQLite indexes end with the primary key / rowid, where
        // the tie-break is free, so they keep it.
        let order = match self.walked_select() {
            Some(sel) if !d.tie_break_is_free() => self.table.col(d, &sel.column.name),
            _ => self.order_sql(d),
        };
        let returning = self.returning(d);
        let physical = d.physical_id(&self.table.info, part);
        let table_sql = part.unwrap_or(&self.table.from);
        let target = DeleteTarget {
            table_sql,
            key_sql: &key_sql,
            order_sql: &order,
            returning_sql: &returning,
            physical_id: physical,
            summarize: d.delete_summary() == DeleteSummary::InStatement,
        };
        d.push_delete_batch(
            &mut b,
            &target,
            &|b| {
                self.push_eligible(d, b);
                self.push_window(d, b, bound, below);
            },
            self.batch_size,
        );
        b.finish()
    }

    /// Read (and lock) the next batch: key, subject, order value, hashed columns.
    /// `lock`: lock the rows until commit (the batch path); plans read without locking.
    pub fn select_batch(&self, d: &dyn Dialect, after: Option<&Cursor>, lock: bool) -> Stmt {
        let mut b = Builder::new(d);
        let key_sql = self.table.col(d, &self.key.name);
        b.push("SELECT ").push(&d.to_text(&key_sql)).push(", ");
        match &self.subject {
            Some(s) => b.push(&d.to_text(&self.table.col(d, &s.name))),
            None => b.push("NULL"),
        };
        b.push(", ");
        match &self.select {
            Some(s) => b.push(&d.to_text(&self.table.col(d, &s.column.name))),
            None => b.push("NULL"),
        };
        for c in self.action.hash_columns() {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        for c in &self.object_columns {
            b.push(", ").push(&d.to_text(&self.table.col(d, &c.name)));
        }
        b.push(" FROM ").push(&self.table.from).push(" WHERE ");
        self.push_eligible(d, &mut b);
        if let Some(cur) = after {
            b.push(" AND ");
            match (self.walked_select(), &cur.order) {
                (Some(s), Some(o)) => {
                    // `(sel, key) > (o, k)` written with a leading `>=` on
                    // the select column: every engine turns `sel >= o` into
                    // the lower bound of the index range, so a batch starts
                    // where the last one ended. The OR form alone is a
                    // filter, applied to every row earlier batches already
                    // passed (quadratic in the due rows).
                    let sc = self.table.col(d, &s.column.name);
                    b.push(&sc).push(" >= ");
                    d.push_typed(&mut b, &s.column, o);
                    b.push(" AND (").push(&sc).push(" > ");
                    d.push_typed(&mut b, &s.column, o);
                    b.push(" OR ").push(&key_sql).push(" > ");
                    d.push_typed(&mut b, &self.key, &cur.key);
                    b.push(")");
                }
                _ => {
                    b.push(&key_sql).push(" > ");
                    d.push_typed(&mut b, &self.key, &cur.key);
                }
            }
        }
        b.push(" ORDER BY ").push(&self.order_sql(d));
        b.push(&format!(" LIMIT {}", self.batch_size));
        if lock {
            b.push(d.lock_rows());
        }
        b.finish()
    }

    pub fn parse_batch(&self, rows: Vec<super::TextRow>) -> Vec<BatchRow> {
        let hashed_end = 3 + self.action.hash_columns().len();
        rows.into_iter()
            .filter_map(|mut r| {
                let objects = r.split_off(hashed_end.min(r.len()));
                let hashed = r.split_off(3);
                let mut it = r.into_iter();
                let key = it.next().flatten()?;
                Some(BatchRow {
                    key,
                    subject: it.next().flatten(),
                    order: it.next().flatten(),
                    hashed,
                    objects,
                })
            })
            .collect()
    }
}

fn prepare_children(
    d: &dyn Dialect,
    children: &[Child],
    tables: &dyn Tables,
    parent_key: &str,
    problems: &mut Vec<String>,
) -> Vec<ChildSql> {
    let mut out = Vec::new();
    for c in children {
        let Some(info) = tables.get(&c.target) else {
            problems.push(format!(
                "child table {} does not exist ({})",
                c.target, c.origin
            ));
            continue;
        };
        let fk = column(info, &c.foreign_key, "foreign_key", problems);
        if let Some(fk) = &fk
            && !info.indexed.contains(&fk.name)
        {
            tracing::warn!(
                table = %c.target,
                column = %fk.name,
                "foreign key column has no index: each batch scans the child table"
            );
        }
        let _ = parent_key;
        let key_name = c.key.clone().or_else(|| info.primary_key.first().cloned());
        let key = key_name
            .as_deref()
            .and_then(|k| column(info, k, "child key", problems));
        let action = action_sql(d, info, &c.action, problems);
        let sub_key = key_name.clone().unwrap_or_default();
        let grandchildren = prepare_children(d, &c.children, tables, &sub_key, problems);
        let needs_key = !grandchildren.is_empty() || !action.hash_columns().is_empty();
        let object_cols = object_columns(info, &c.objects, problems);
        if needs_key && key.is_none() {
            problems.push(format!(
                "child {} needs a key (it has children or hashes columns): set `key` or give the table a primary key",
                c.target
            ));
        }
        out.push(ChildSql {
            table: TableSql::new(d, info.clone()),
            display: c.target.to_string(),
            fk: fk.unwrap_or_else(|| ColumnInfo {
                name: c.foreign_key.clone(),
                data_type: String::new(),
                kind: ColumnKind::Other,
                nullable: true,
            }),
            key,
            action,
            children: grandchildren,
            objects: c.objects.clone(),
            object_columns: object_cols,
        });
    }
    out
}

/// OR over the columns: the value differs from what the strategy would make it.
fn push_needs(d: &dyn Dialect, b: &mut Builder<'_>, t: &TableSql, cols: &[(ColumnInfo, Strategy)]) {
    b.push("(");
    for (i, (c, s)) in cols.iter().enumerate() {
        if i > 0 {
            b.push(" OR ");
        }
        let cs = t.col(d, &c.name);
        match s {
            Strategy::Null => {
                b.push(&format!("{cs} IS NOT NULL"));
            }
            Strategy::Hash => {
                b.push(&format!(
                    "({cs} IS NOT NULL AND NOT {})",
                    d.looks_hashed(&cs)
                ));
            }
            other => {
                // Placeholders must appear in text order, so write the prefix first.
                b.push(&format!("({cs} IS NOT NULL AND {cs} <> "));
                let expr = d.anonymized(b, &cs, c, other).expect("not hash");
                b.push(&expr).push(")");
            }
        }
    }
    b.push(")");
}

/// `child.fk IN (SELECT parent.key FROM parent WHERE …)` down a chain of children.
fn push_child_scope(d: &dyn Dialect, b: &mut Builder<'_>, rule: &RuleSql, chain: &[&ChildSql]) {
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
        b.push(" FROM ").push(&self.table.from).push(" WHERE ");
        d.push_in_list(
            &mut b,
            &self.table.col(d, &self.fk.name),
            fk_type(&self.fk, parent_key),
            parent_keys,
        );
        if let ActionSql::Anonymize(cols) = &self.action {
            b.push(" AND ");
            push_needs(d, &mut b, &self.table, cols);
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
        b.push(" FROM ").push(&self.table.from).push(" WHERE ");
        d.push_in_list(
            &mut b,
            &self.table.col(d, &self.fk.name),
            fk_type(&self.fk, parent_key),
            parent_keys,
        );
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

/// `DELETE FROM t WHERE scope` or `UPDATE t SET … WHERE scope AND needs`:
/// one statement, every strategy's column set at once. `hash` columns come
/// from `hashes`: computed by the server, or bound per key.
fn act(
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
            b.push("UPDATE ").push(&t.from).push(" SET ");
            let mut set = 0;
            let mut hashed_at = 0;
            for (c, s) in cols {
                let cs = t.col(d, &c.name);
                if *s == Strategy::Hash {
                    let at = hashed_at;
                    hashed_at += 1;
                    let prefix = if set > 0 { ", " } else { "" };
                    match hashes {
                        Hashes::None => continue,
                        Hashes::InSql(pads) => {
                            b.push(prefix).push(&d.quote(&c.name)).push(" = ");
                            // Placeholders in text order: the prefix first.
                            b.push(&format!(
                                "CASE WHEN {cs} IS NULL OR {} THEN {cs} ELSE ",
                                d.looks_hashed(&cs)
                            ));
                            let expr = d.keyed_hash(&mut b, &cs, pads).expect("hashes_in_sql");
                            b.push(&expr).push(" END");
                        }
                        Hashes::Bound(rows) => {
                            let changed: Vec<&(String, Vec<Option<String>>)> = rows
                                .iter()
                                .filter(|(_, v)| v.get(at).is_some_and(|v| v.is_some()))
                                .collect();
                            if changed.is_empty() {
                                continue;
                            }
                            let key = key.expect("hashing by key needs a key");
                            b.push(prefix).push(&d.quote(&c.name)).push(" = CASE ");
                            b.push(&t.col(d, &key.name));
                            for (k, v) in changed {
                                b.push(" WHEN ");
                                d.push_typed(&mut b, key, k);
                                b.push(" THEN ");
                                b.bind(Val::Text(v[at].clone().expect("changed")));
                            }
                            b.push(&format!(" ELSE {cs} END"));
                        }
                    }
                    set += 1;
                    continue;
                }
                if set > 0 {
                    b.push(", ");
                }
                b.push(&d.quote(&c.name)).push(" = ");
                let expr = d.anonymized(&mut b, &cs, c, s).expect("not hash");
                b.push(&expr);
                set += 1;
            }
            if set == 0 {
                // Nothing to set (only hashed columns, none changing): a
                // no-op that matches no row.
                let c = d.quote(&cols[0].0.name);
                b.push(&format!("{c} = {c} WHERE 1 = 0"));
                return b.finish();
            }
            b.push(" WHERE ");
            scope(&mut b);
            b.push(" AND ");
            push_needs(d, &mut b, t, cols);
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

impl RuleSql {
    /// The tables a rule's batches write: the target, then every child
    /// table (grandchildren after their parent), each once.
    pub fn touched_tables(&self) -> Vec<&TableSql> {
        fn walk<'a>(children: &'a [ChildSql], out: &mut Vec<&'a TableSql>) {
            for c in children {
                if !out.iter().any(|t| t.from == c.table.from) {
                    out.push(&c.table);
                }
                walk(&c.children, out);
            }
        }
        let mut out = vec![&self.table];
        walk(&self.children, &mut out);
        out
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableRef;
    use crate::sql::{mysql::MySql, postgres::Postgres, sqlite::Sqlite};

    fn col(name: &str, data_type: &str, kind: ColumnKind) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: data_type.into(),
            kind,
            nullable: false,
        }
    }

    /// `events(id, created_at)` with `created_at < cutoff`, deleted 10,000 at a time.
    fn events_rule(d: &dyn Dialect, partitioned: bool) -> RuleSql {
        let key = col("id", "integer", ColumnKind::Int);
        let created = col(
            "created_at",
            "timestamp without time zone",
            ColumnKind::Time,
        );
        let info = TableInfo {
            table: TableRef {
                source: "app".into(),
                schema: None,
                table: "events".into(),
            },
            columns: vec![key.clone(), created.clone()],
            primary_key: vec!["id".into()],
            referenced_by: vec![],
            partitioned,
            leaves: vec![],
            has_rowid: true,
            indexed: vec!["id".into(), "created_at".into()],
        };
        RuleSql {
            table: TableSql::new(d, info),
            display: "app.events".into(),
            key,
            subject: None,
            select: Some(SelectSql {
                column: created,
                older: true,
                cutoff: CutoffValue::Text("2024-12-03 00:00:00.000000".into()),
                cutoff_instant: DateTime::<Utc>::MIN_UTC,
            }),
            where_: None,
            hold: None,
            action: ActionSql::Delete,
            children: vec![],
            batch_size: 10_000,
            walk: Walk::Select,
            walk_why: String::new(),
            shard: None,
            subjects: None,
            objects: vec![],
            object_columns: vec![],
        }
    }

    #[test]
    fn postgres_fast_delete_walks_the_select_index_without_a_tie_break() {
        let d = Postgres;
        let sql = events_rule(&d, false)
            .delete_batch(&d, None, None, None)
            .sql;
        assert!(
            sql.contains("WHERE ctid = ANY(ARRAY(SELECT ctid FROM \"events\""),
            "{sql}"
        );
        assert!(
            sql.contains("ORDER BY \"events\".\"created_at\" LIMIT 10000))"),
            "{sql}"
        );
    }

    #[test]
    fn postgres_fast_delete_uses_the_key_on_partitioned_tables() {
        let d = Postgres;
        let sql = events_rule(&d, true).delete_batch(&d, None, None, None).sql;
        assert!(!sql.contains("ctid"), "{sql}");
        assert!(
            sql.contains("WHERE \"events\".\"id\" = ANY(ARRAY(SELECT \"events\".\"id\" FROM"),
            "{sql}"
        );
    }

    #[test]
    fn mariadb_and_sqlite_fast_delete_keep_the_free_tie_break() {
        let my = MySql { mariadb: true };
        let sql = events_rule(&my, false)
            .delete_batch(&my, None, None, None)
            .sql;
        assert!(
            sql.contains("ORDER BY `events`.`created_at`, `events`.`id` LIMIT 10000 RETURNING"),
            "{sql}"
        );
        let lite = Sqlite;
        let sql = events_rule(&lite, false)
            .delete_batch(&lite, None, None, None)
            .sql;
        assert!(
            sql.contains("ORDER BY \"events\".\"created_at\", \"events\".\"id\" LIMIT 10000)"),
            "{sql}"
        );
    }

    #[test]
    fn hash_and_other_strategies_are_one_update_on_every_engine() {
        let keys = crate::keys::Keys::from_secret(b"0123456789abcdef");
        let pads = keys.pseudonym_pads();
        let anonymize = |d: &dyn Dialect| {
            let mut r = events_rule(d, false);
            let name = ColumnInfo {
                nullable: true,
                ..col("name", "text", ColumnKind::Text)
            };
            let note = ColumnInfo {
                nullable: true,
                ..col("note", "text", ColumnKind::Text)
            };
            r.action = ActionSql::Anonymize(vec![(name, Strategy::Hash), (note, Strategy::Null)]);
            r
        };
        let keys_list = vec!["1".to_string(), "2".to_string()];
        let pg = Postgres;
        let sql = anonymize(&pg).act_by_keys(&pg, &keys_list, Hashes::InSql(&pads));
        assert_eq!(sql.sql.matches("UPDATE").count(), 1, "{}", sql.sql);
        assert!(sql.sql.contains("\"name\" = CASE WHEN"), "{}", sql.sql);
        assert!(sql.sql.contains("sha256("), "{}", sql.sql);
        assert!(sql.sql.contains("\"note\" = NULL"), "{}", sql.sql);
        let my = MySql { mariadb: true };
        let sql = anonymize(&my).act_by_keys(&my, &keys_list, Hashes::InSql(&pads));
        assert!(sql.sql.contains("SHA2(CONCAT(UNHEX(?)"), "{}", sql.sql);
        let lite = Sqlite;
        let values = vec![("2".to_string(), vec![Some(keys.pseudonym("x"))])];
        let sql = anonymize(&lite).act_by_keys(&lite, &keys_list, Hashes::Bound(&values));
        assert!(
            sql.sql
                .contains("\"name\" = CASE \"events\".\"id\" WHEN ? THEN ? ELSE"),
            "{}",
            sql.sql
        );
        assert_eq!(
            sql.binds.len(),
            2 + 2,
            "one key and value, two keys in the list"
        );
    }
}
