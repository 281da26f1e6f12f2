//! Rule preparation: a rule's validated config matched against its tables'
//! live schema ([`RuleSql::prepare`]), every mismatch collected for `check`:
//! columns, the cutoff in the select column's format, the walk, the action's
//! strategies, children and object links.

use super::{ActionSql, ChildSql, CutoffValue, RuleSql, SelectSql, TableSql, Tables};
use crate::config::{Action, Child, ObjectLink, Rule, TimeFormat, Walk};
use crate::sql::dialect::{DeleteSummary, Dialect};
use crate::sql::schema::{ColumnInfo, ColumnKind, TableInfo};
use chrono::{DateTime, Utc};

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
///
/// `sorts` is [`Dialect::sorts_every_due_row`] for the keyed loop (never for
/// a one-statement delete, which orders by the select column alone): an
/// index on the select column that the engine would sort in full every
/// batch is no better than none. `heap`: the rule is a one-statement delete
/// of one batch at a time on a table whose heap can be walked
/// ([`TableInfo::heap_walk`]); without an index on the select column that
/// walk reads each page once, where the key walk fetches row by row.
fn choose_walk(
    forced: Option<Walk>,
    info: &TableInfo,
    select: Option<&SelectSql>,
    key: &ColumnInfo,
    sorts: bool,
    heap: bool,
) -> (Walk, String) {
    let key_indexed = info.indexed.contains(&key.name);
    match (forced, select) {
        (Some(Walk::Key), _) => (Walk::Key, "walk = \"key\" in the rule".into()),
        (Some(Walk::Heap), _) => (Walk::Heap, "walk = \"heap\" in the rule".into()),
        (Some(Walk::Select), Some(_)) => (Walk::Select, "walk = \"select\" in the rule".into()),
        (_, None) => (Walk::Key, "the rule has no select column".into()),
        (None, Some(sel)) if sorts && key_indexed => (
            Walk::Key,
            format!(
                "the table is partitioned and no index leads with (`{}`, `{}`): batches in that order would each sort every due row",
                sel.column.name, key.name
            ),
        ),
        (None, Some(sel)) if info.indexed.contains(&sel.column.name) => (
            Walk::Select,
            format!("an index leads with `{}`", sel.column.name),
        ),
        (None, Some(sel)) if heap && !info.indexed.contains(&sel.column.name) => (
            Walk::Heap,
            format!(
                "no index leads with `{}`: the pages in order, each read once",
                sel.column.name
            ),
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
                crate::sql::anonymize::check_fit(d, info, &c, strategy, problems);
                out.push((c, strategy.clone()));
            }
            ActionSql::Anonymize(out)
        }
    }
}

/// The rule's select column and its cutoff at `as_of`, in the column's format.
fn select_sql(
    d: &dyn Dialect,
    rule: &Rule,
    info: &TableInfo,
    as_of: DateTime<Utc>,
    problems: &mut Vec<String>,
) -> Option<SelectSql> {
    let s = rule.select.as_ref()?;
    let c = column(info, &s.column, "select", problems)?;
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
}

/// The hold table (quoted) and its column, when the rule names one that
/// exists and is not the target itself.
fn hold_sql(
    d: &dyn Dialect,
    rule: &Rule,
    tables: &dyn Tables,
    problems: &mut Vec<String>,
) -> Option<(String, String)> {
    let h = rule.hold.as_ref()?;
    let Some(hinfo) = tables.get(&h.table) else {
        problems.push(format!("hold table {} does not exist", h.table));
        return None;
    };
    if h.table == rule.target {
        problems.push("the hold table cannot be the target itself".into());
        return None;
    }
    column(hinfo, &h.column, "hold", problems)?;
    let t = TableSql::new(d, hinfo.clone());
    let col = t.col(d, &h.column);
    Some((t.from, col))
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
        let select = select_sql(d, rule, info, as_of, &mut problems);
        let hold = hold_sql(d, rule, tables, &mut problems);
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
        let keyed_loop = !(one_statement && rule.objects.is_empty());
        let sorts = keyed_loop
            && select
                .as_ref()
                .is_some_and(|s| d.sorts_every_due_row(info, &s.column.name, &key.name));
        // The heap walk: a one-statement delete, PostgreSQL 14+, one table
        // (not partitioned), and chosen only for one batch at a time (side
        // by side windows split the key).
        let heap_ok =
            !keyed_loop && info.heap_walk && d.delete_summary() == DeleteSummary::InStatement;
        if rule.walk == Some(Walk::Heap) && !heap_ok {
            problems.push(format!(
                "walk = \"heap\" needs a plain delete (no children, no objects) of a PostgreSQL 14+ table that is not partitioned; {} is not that",
                rule.target
            ));
            return Err(problems);
        }
        let heap = heap_ok && rule.concurrency <= 1;
        let (walk, walk_why) = choose_walk(rule.walk, info, select.as_ref(), &key, sorts, heap);
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
