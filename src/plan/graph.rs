//! The foreign-key graph of one rule: every key that references a table
//! the rule deletes from, and what happens to it when those rows go.
//!
//! Each edge is classified once, here, for `check`, `plan` and `run` alike:
//! covered by a child rule; re-pointed (`fixed:<v>` on the key column, with
//! `v` present and not itself selected); the rule's own hold list (held
//! subjects are never deleted); cascaded or nulled by the database (rows the
//! audit would never see: an error); refused by the database (RESTRICT / NO
//! ACTION: an error); or not enforced (a reference left behind would dangle
//! unseen: a warning). The keys themselves come from the dialects
//! ([`crate::sql::Dialect::referencing_keys`]), partition clones already
//! folded into their parent's key.
//!
//! It reads the catalog and counts the re-pointing targets; it never changes
//! a row and never reads a value other than those counts.

use crate::config::{Action, Child, Origin, Rule, Strategy, TableRef};
use crate::error::Error;
use crate::plan::Problem;
use crate::sql::schema::{ForeignKey, list};
use crate::sql::statements::{ChildSql, RuleSql, TableSql};
use crate::sql::{Db, Engine, Stmt};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;

/// How a foreign key into a deleted table stands: covered, worth a warning
/// (e.g. no index), or an error that stops the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

/// What becomes of one foreign key when the rule deletes the rows it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A child rule deletes the referencing rows or nulls the key first.
    Covered,
    /// A child rule re-points the key to a row that stays (`fixed:<v>`).
    Repointed,
    /// The rule's hold list: held subjects are skipped, so no row it names goes.
    Hold,
    /// The database would delete the referencing rows (unaudited).
    Cascaded,
    /// The database would set the referencing columns (unaudited).
    SetNull,
    /// The database refuses the delete while a reference exists.
    WouldFail,
    /// Nobody checks the key: a reference left behind dangles unseen.
    Dangling,
    /// `fixed:<v>` names a row that does not exist.
    GhostMissing,
    /// `fixed:<v>` names a row the rule itself deletes.
    GhostSelected,
    /// The child rule anonymizes other columns and leaves the key.
    KeepsReference,
    /// The child rule rewrites the key into a value that points at nothing.
    BreaksReference,
    /// The key references columns other than the key Lethe deletes by.
    NotKey,
    /// The rule anonymizes a column this key references: the database
    /// would refuse the update, or rewrite the referencing rows unaudited.
    RewritesReferenced,
}

/// One foreign key into a deleted table, classified.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub constraint: String,
    /// The referencing table (`schema.table` outside the default schema).
    pub table: String,
    pub columns: Vec<String>,
    pub referenced_table: String,
    pub referenced_columns: Vec<String>,
    pub on_delete: String,
    pub on_update: String,
    pub deferrable: bool,
    pub enforced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_on: Option<String>,
    pub self_reference: bool,
    pub status: Status,
    pub level: Level,
    /// What Lethe will do about it, in words.
    pub lethe: String,
    /// The job file position the finding concerns.
    pub at: String,
    /// The child rule that handles it, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    #[serde(skip)]
    origin: Option<Origin>,
}

impl Edge {
    /// The finding about `fk` (a key into `at`'s table), positioned at
    /// `origin`; no child rule, not a self-reference until said otherwise.
    fn of(
        fk: &ForeignKey,
        at: &At<'_>,
        status: Status,
        level: Level,
        lethe: String,
        origin: Origin,
    ) -> Edge {
        Edge {
            constraint: fk.constraint.clone(),
            table: fk.table_name(),
            columns: fk.columns.clone(),
            referenced_table: at.target.to_string(),
            referenced_columns: fk.referenced_columns.clone(),
            on_delete: fk.on_delete.clone(),
            on_update: fk.on_update.clone(),
            deferrable: fk.deferrable,
            enforced: fk.enforced,
            declared_on: fk.declared_on.clone(),
            self_reference: false,
            status,
            level,
            lethe,
            at: origin.to_string(),
            child: None,
            origin: (level == Level::Error).then_some(origin),
        }
    }

    /// The finding as one line, the same in `check`, `plan` and `run`.
    pub fn message(&self) -> String {
        format!(
            "constraint `{}`: {}.{} references {}.{} {}{}: {}",
            self.constraint,
            self.table,
            list(&self.columns),
            self.referenced_table,
            list(&self.referenced_columns),
            self.action_clause(),
            if self.deferrable { " DEFERRABLE" } else { "" },
            self.lethe
        )
    }
}

impl Edge {
    /// `ON DELETE x`, or `ON UPDATE x` when what matters is an update.
    pub fn action_clause(&self) -> String {
        if self.status == Status::RewritesReferenced {
            format!("ON UPDATE {}", self.on_update)
        } else {
            format!("ON DELETE {}", self.on_delete)
        }
    }
}

/// A table the rule acts on, with the keys into it and the child rules below it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub table: String,
    pub action: String,
    /// The child rule's `foreign_key` (none for the rule's own table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign_key: Option<String>,
    pub at: String,
    /// Keys into this table (only when it is deleted from).
    pub edges: Vec<Edge>,
    /// Warnings about this table that no single key carries.
    pub notes: Vec<String>,
    pub children: Vec<Node>,
}

/// The foreign-key graph below a rule's target, as `check`, `plan` and
/// `run` all see it.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub root: Node,
}

impl Graph {
    /// The edges that stop the rule, with where in the job file each is.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        walk(&self.root, &mut |n| {
            for e in n.edges.iter().filter(|e| e.level == Level::Error) {
                out.push(Problem {
                    origin: e.origin.clone(),
                    message: e.message(),
                });
            }
        });
        out
    }

    /// The edges that let the rule run but deserve a look (printed by `check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.root, &mut |n| {
            out.extend(n.notes.iter().cloned());
            for e in n.edges.iter().filter(|e| e.level == Level::Warning) {
                out.push(e.message());
            }
        });
        out
    }

    /// The tree as text, for `check --graph`.
    pub fn render(&self) -> String {
        let mut out = format!("{} ({})\n", self.root.table, self.root.action);
        render_node(&self.root, "", &mut out);
        out
    }
}

fn walk(n: &Node, f: &mut dyn FnMut(&Node)) {
    f(n);
    for c in &n.children {
        walk(c, f);
    }
}

fn render_node(n: &Node, indent: &str, out: &mut String) {
    for note in &n.notes {
        out.push_str(&format!("{indent}   ! {note}\n"));
    }
    // Edges in order, each followed by the child rule it leads to; child
    // rules no key leads to come last.
    let mut shown = vec![false; n.children.len()];
    let mut items: Vec<(String, Option<usize>)> = Vec::new();
    for e in &n.edges {
        let mark = match e.level {
            Level::Ok => "ok",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        };
        let line = format!(
            "{}.{} [{}, {}{}] {mark}: {}",
            e.table,
            list(&e.columns),
            e.constraint,
            e.action_clause(),
            if e.deferrable { ", DEFERRABLE" } else { "" },
            e.lethe
        );
        let child = e.child.as_ref().and_then(|c| {
            n.children
                .iter()
                .enumerate()
                .find(|(i, k)| {
                    !shown[*i]
                        && &k.table == c
                        && e.columns
                            .iter()
                            .any(|col| Some(col) == k.foreign_key.as_ref())
                })
                .map(|(i, _)| i)
        });
        if let Some(i) = child {
            shown[i] = true;
        }
        items.push((line, child));
    }
    for (i, c) in n.children.iter().enumerate() {
        if !shown[i] {
            items.push((
                format!(
                    "{}.{} (child rule, {}; no declared foreign key leads here)",
                    c.table,
                    c.foreign_key.clone().unwrap_or_default(),
                    c.action
                ),
                Some(i),
            ));
        }
    }
    let last = items.len();
    for (k, (line, child)) in items.into_iter().enumerate() {
        let (branch, more) = if k + 1 == last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        out.push_str(&format!("{indent}{branch}{line}\n"));
        if let Some(i) = child {
            let c = &n.children[i];
            let sub = format!("{indent}{more}");
            out.push_str(&format!("{sub}   → {} ({})\n", c.table, c.action));
            render_node(c, &format!("{sub}   "), out);
        }
    }
}

/// The rule's tables, as the analysis needs them.
struct At<'a> {
    target: &'a TableRef,
    table: &'a TableSql,
    action: &'a Action,
    /// The column the table's rows are deleted by (the rule's key, the
    /// child's key or its primary key).
    key: Option<String>,
    children: &'a [Child],
    prepared: &'a [ChildSql],
    origin: &'a Origin,
    foreign_key: Option<&'a str>,
    /// Position of this table among the rule's children (empty for the rule).
    path: Vec<usize>,
}

struct Cx<'a> {
    db: &'a Db,
    rule: &'a Rule,
    sql: &'a RuleSql,
    /// MySQL/MariaDB tables that cannot carry a key, with why, and their columns.
    keyless: Vec<(String, String, Vec<String>)>,
}

/// Build the graph of `rule`, whose statements `sql` are already prepared.
pub async fn analyse(db: &Db, rule: &Rule, sql: &RuleSql) -> Result<Graph, Error> {
    let mut keyless = Vec::new();
    if let Some(stmt) = db.dialect().keyless_tables() {
        let tables = db.fetch(&stmt).await?;
        if !tables.is_empty() {
            let cols = db.fetch(&db.dialect().all_columns()).await?;
            for t in tables {
                let name = t[0].clone().unwrap_or_default();
                let why = t[1].clone().unwrap_or_default();
                let mine: Vec<String> = cols
                    .iter()
                    .filter(|c| c[1].as_deref() == Some(name.as_str()))
                    .filter_map(|c| c[2].clone())
                    .collect();
                keyless.push((name, why, mine));
            }
        }
    }
    let cx = Cx {
        db,
        rule,
        sql,
        keyless,
    };
    let root = At {
        target: &rule.target,
        table: &sql.table,
        action: &rule.action,
        key: Some(sql.key.name.clone()),
        children: &rule.children,
        prepared: &sql.children,
        origin: &rule.origin,
        foreign_key: None,
        path: vec![],
    };
    Ok(Graph {
        root: node(&cx, root).await?,
    })
}

fn node<'a>(
    cx: &'a Cx<'a>,
    at: At<'a>,
) -> Pin<Box<dyn Future<Output = Result<Node, Error>> + Send + 'a>> {
    Box::pin(async move {
        let mut n = Node {
            table: at.target.to_string(),
            action: at.action.name().to_string(),
            foreign_key: at.foreign_key.map(str::to_string),
            at: at.origin.to_string(),
            edges: vec![],
            notes: vec![],
            children: vec![],
        };
        if matches!(at.action, Action::Delete) {
            for fk in &at.table.info.referenced_by {
                n.edges.push(edge(cx, &at, fk).await?);
            }
            keyless_notes(cx, &at, &mut n.notes);
        } else if let Action::Anonymize(cols) = at.action {
            for fk in &at.table.info.referenced_by {
                if let Some(e) = rewritten(&at, fk, cols) {
                    n.edges.push(e);
                }
            }
        }
        for (i, (c, p)) in at.children.iter().zip(at.prepared).enumerate() {
            let mut path = at.path.clone();
            path.push(i);
            let key = p
                .key
                .as_ref()
                .map(|k| k.name.clone())
                .or_else(|| p.table.info.primary_key.first().cloned());
            let child = At {
                target: &c.target,
                table: &p.table,
                action: &c.action,
                key,
                children: &c.children,
                prepared: &p.children,
                origin: &c.origin,
                foreign_key: Some(&c.foreign_key),
                path,
            };
            n.children.push(node(cx, child).await?);
        }
        Ok(n)
    })
}

/// Whether `fk` is declared on `t`. PostgreSQL's default schema is `public`.
fn same_table(engine: Engine, fk: &ForeignKey, t: &TableRef) -> bool {
    let norm = |s: Option<&str>| match s {
        Some(s) if engine.default_schema() == Some(s) => None,
        s => s.map(str::to_string),
    };
    let name_eq = if engine.table_names_fold_case() {
        fk.table.eq_ignore_ascii_case(&t.table)
    } else {
        fk.table == t.table
    };
    name_eq && norm(fk.schema.as_deref()) == norm(t.schema.as_deref())
}

fn consequence(on_delete: &str) -> &'static str {
    match on_delete {
        "CASCADE" => "the database would delete those rows and the audit would never see them",
        "SET NULL" | "SET DEFAULT" => {
            "the database would change those rows and the audit would never see them"
        }
        _ => "the delete would fail on every row that has one",
    }
}

fn uncovered_status(on_delete: &str) -> Status {
    match on_delete {
        "CASCADE" => Status::Cascaded,
        "SET NULL" | "SET DEFAULT" => Status::SetNull,
        _ => Status::WouldFail,
    }
}

/// An edge a child rule follows: covered when the child's rows are deleted
/// or their key set to null (or re-pointed) first, else why not.
async fn by_child(
    cx: &Cx<'_>,
    at: &At<'_>,
    fk: &ForeignKey,
    col: &str,
    c: &Child,
) -> Result<(Status, String, Origin), Error> {
    let by = format!("child rule {} ({})", c.target, c.origin);
    Ok(match &c.action {
        Action::Delete => (
            Status::Covered,
            format!("covered by {by}: its rows are deleted first"),
            c.origin.clone(),
        ),
        Action::Anonymize(cols) => {
            let on_key = cols.iter().find(|(n, _)| n == col).map(|(_, s)| s);
            let nulls_other = cols
                .iter()
                .any(|(n, s)| *s == Strategy::Null && fk.columns.contains(n));
            match on_key {
                Some(Strategy::Null) => (
                    Status::Covered,
                    format!("covered by {by}: `{col}` is set to null first"),
                    c.origin.clone(),
                ),
                Some(Strategy::Fixed(v)) => ghost(cx, at, col, v, &by, &c.origin).await?,
                Some(s) => (
                    Status::BreaksReference,
                    format!(
                        "{by} rewrites `{col}` with `{s}`, which points it at no row; use `null` or re-point it with `fixed:<id>`"
                    ),
                    c.origin.clone(),
                ),
                None if nulls_other => (
                    Status::Covered,
                    format!("covered by {by}: part of the key is set to null first"),
                    c.origin.clone(),
                ),
                None => (
                    Status::KeepsReference,
                    format!(
                        "{by} keeps `{col}` (anonymize it to `null`, re-point it with `fixed:<id>`, or delete the rows); {}",
                        consequence(&fk.on_delete)
                    ),
                    c.origin.clone(),
                ),
            }
        }
    })
}

/// The level of an edge (ok, warning, error) from its status, and what a
/// key the connection does not enforce turns it into.
fn level_of(fk: &ForeignKey, status: Status, lethe: String) -> (Status, Level, String) {
    let mut lethe = lethe;
    if fk.deferrable && status == Status::WouldFail {
        lethe.push_str(" (deferrable: checked at commit, the batch still fails)");
    }
    let database_would_act = matches!(
        status,
        Status::Cascaded
            | Status::SetNull
            | Status::WouldFail
            | Status::KeepsReference
            | Status::NotKey
    );
    if !fk.enforced && database_would_act {
        (
            Status::Dangling,
            Level::Warning,
            "not enforced on this connection (SQLite `foreign_keys` off, or MySQL `foreign_key_checks` = 0): the delete goes ahead and a reference left behind would dangle unseen".to_string(),
        )
    } else {
        let level = match status {
            Status::Covered | Status::Repointed | Status::Hold => Level::Ok,
            Status::Dangling => Level::Warning,
            _ => Level::Error,
        };
        (status, level, lethe)
    }
}

async fn edge(cx: &Cx<'_>, at: &At<'_>, fk: &ForeignKey) -> Result<Edge, Error> {
    let engine = cx.db.dialect().engine();
    let self_reference = same_table(engine, fk, at.target);
    // The key column's position in the constraint: a child rule selects
    // its rows by the parent's key, so only that column can be followed.
    let pos = at
        .key
        .as_ref()
        .and_then(|k| fk.referenced_columns.iter().position(|c| c == k));
    let child = pos.and_then(|i| {
        at.children
            .iter()
            .enumerate()
            .find(|(_, c)| same_table(engine, fk, &c.target) && c.foreign_key == fk.columns[i])
    });
    let on_table = at
        .children
        .iter()
        .find(|c| same_table(engine, fk, &c.target));
    let held = at.path.is_empty()
        && match (&cx.rule.hold, &cx.rule.subject) {
            (Some(h), Some(subject)) => {
                same_table(engine, fk, &h.table)
                    && fk.columns == [h.column.clone()]
                    && fk.referenced_columns == [subject.clone()]
            }
            _ => false,
        };
    let uncovered = |why: String| (uncovered_status(&fk.on_delete), why, at.origin.clone());
    let (status, lethe, origin) = if held {
        (
            Status::Hold,
            "the rule's hold list: held subjects are never deleted, so no row it names goes"
                .to_string(),
            at.origin.clone(),
        )
    } else if let Some((_, c)) = child {
        let col = &fk.columns[pos.expect("a child was found by position")];
        by_child(cx, at, fk, col, c).await?
    } else if pos.is_none() {
        (
            Status::NotKey,
            format!(
                "it references {}, not the key `{}` Lethe deletes by, so no child rule can follow it; {}",
                list(&fk.referenced_columns),
                at.key.clone().unwrap_or_default(),
                consequence(&fk.on_delete)
            ),
            at.origin.clone(),
        )
    } else if let (true, Some(p)) = (self_reference, pos) {
        let (status, _, origin) = uncovered(String::new());
        let col = &fk.columns[p];
        (
            status,
            format!(
                "a self-reference no child rule covers; {}: a due row that another row still points at {} (add a child rule on {} with foreign_key = \"{col}\" that sets it to null)",
                consequence(&fk.on_delete),
                if status == Status::WouldFail {
                    "blocks its batch"
                } else {
                    "takes those rows with it"
                },
                at.target
            ),
            origin,
        )
    } else {
        let hint = match on_table {
            Some(c) => format!(
                "the child rule on {} follows `{}`, not `{}`",
                c.target,
                c.foreign_key,
                list(&fk.columns)
            ),
            None => "no child rule covers it".to_string(),
        };
        let (status, _, origin) = uncovered(String::new());
        (
            status,
            format!("{hint}; {}", consequence(&fk.on_delete)),
            origin,
        )
    };
    let (status, level, lethe) = level_of(fk, status, lethe);
    let mut e = Edge::of(fk, at, status, level, lethe, origin);
    e.self_reference = self_reference;
    e.child = child.map(|(_, c)| c.target.to_string());
    Ok(e)
}

/// A key into an anonymized table matters only when the rule rewrites a
/// column it references (`hash` on a unique `email` another table points
/// at): the database would refuse the update (RESTRICT / NO ACTION) or
/// rewrite the referencing rows itself (CASCADE / SET NULL), unaudited.
fn rewritten(at: &At<'_>, fk: &ForeignKey, cols: &[(String, Strategy)]) -> Option<Edge> {
    let (col, s) = cols
        .iter()
        .find(|(c, _)| fk.referenced_columns.contains(c))?;
    let consequence = match fk.on_update.as_str() {
        "CASCADE" | "SET NULL" | "SET DEFAULT" => {
            "the database would rewrite the referencing rows and the audit would never see them"
        }
        _ => "the update would fail on every row that is referenced",
    };
    let (status, level, lethe) = if fk.enforced {
        (
            Status::RewritesReferenced,
            Level::Error,
            format!("the rule rewrites `{col}` with `{s}`; {consequence}"),
        )
    } else {
        (
            Status::Dangling,
            Level::Warning,
            format!(
                "the rule rewrites `{col}` with `{s}`; the key is not enforced, so the references would dangle unseen"
            ),
        )
    };
    Some(Edge::of(fk, at, status, level, lethe, at.origin.clone()))
}

/// `fixed:<v>` on the key column: `v` must exist in the referenced table and
/// must not be a row the rule deletes.
async fn ghost(
    cx: &Cx<'_>,
    at: &At<'_>,
    col: &str,
    v: &str,
    by: &str,
    origin: &Origin,
) -> Result<(Status, String, Origin), Error> {
    let key = at.key.clone().unwrap_or_default();
    let Some(key_col) = at.table.info.column(&key).cloned() else {
        return Ok((
            Status::GhostMissing,
            format!(
                "{by} re-points `{col}` to `{v}`, but {} has no column `{key}`",
                at.target
            ),
            origin.clone(),
        ));
    };
    let d = cx.db.dialect();
    let exists = {
        let mut b = cx.db.builder();
        b.push("SELECT COUNT(*) FROM ")
            .push(&at.table.from)
            .push(" WHERE ")
            .push(&at.table.col(d, &key))
            .push(" = ");
        d.push_typed(&mut b, &key_col, v);
        cx.db.count(&b.finish()).await?
    };
    if exists == 0 {
        return Ok((
            Status::GhostMissing,
            format!(
                "{by} re-points `{col}` to `{v}`, but {} has no row with {key} = `{v}`; every re-pointing update would fail",
                at.target
            ),
            origin.clone(),
        ));
    }
    let selected: Stmt = cx.sql.count_selected(d, &at.path, &key_col, v);
    if cx.db.count(&selected).await? > 0 {
        return Ok((
            Status::GhostSelected,
            format!(
                "{by} re-points `{col}` to `{v}`, but the rule itself selects the {} row with {key} = `{v}`: the rows would follow it into deletion",
                at.target
            ),
            origin.clone(),
        ));
    }
    Ok((
        Status::Repointed,
        format!("re-pointed to `{v}` by {by}; `{v}` exists and is not selected"),
        origin.clone(),
    ))
}

/// MySQL/MariaDB: tables that carry no key at all (MyISAM, partitioned)
/// cannot say what they reference; columns named like a reference to the
/// deleted table are reported, and so is a deleted table that is one.
fn keyless_notes(cx: &Cx<'_>, at: &At<'_>, notes: &mut Vec<String>) {
    let t = &at.target.table;
    // Said of the rule's own table only: a child table that carries no key
    // is what the child rule is there for.
    if at.path.is_empty()
        && let Some((_, why, _)) = cx.keyless.iter().find(|(n, _, _)| n == t)
    {
        notes.push(format!(
            "{} is {why}: the database keeps no foreign key into it, so a reference left behind in another table would dangle unseen",
            at.target
        ));
    }
    let lower = t.to_ascii_lowercase();
    let mut names = vec![
        format!("{lower}_id"),
        format!("{}_id", lower.trim_end_matches('s')),
    ];
    // The key's own name is a good guess only when it alone identifies a
    // row (`emp_no` in `employees`, not in `dept_emp (emp_no, dept_no)`).
    if let Some(k) = &at.key
        && k != "id"
        && at.table.info.primary_key == [k.clone()]
    {
        names.push(k.to_ascii_lowercase());
    }
    for (table, why, cols) in &cx.keyless {
        if table == t {
            continue;
        }
        for c in cols {
            if !names.contains(&c.to_ascii_lowercase()) {
                continue;
            }
            let covered = at
                .children
                .iter()
                .any(|ch| &ch.target.table == table && &ch.foreign_key == c);
            if !covered {
                notes.push(format!(
                    "{table}.{c} looks like a reference to {} but {table} is {why} and carries no foreign key: no child rule covers it, so its rows would dangle unseen",
                    at.target
                ));
            }
        }
    }
}
