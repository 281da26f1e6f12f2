//! Rule-level statements: the predicates and batch statements for one rule,
//! built from its validated config and its tables' live schema.
//!
//! A [`RuleSql`] is made once per run by [`RuleSql::prepare`], which is also
//! where `check` learns about every mismatch between a job and the schema.
//!
//! The types live here; what builds them and their statements is split by
//! what it builds: [`prepare`] (matching a rule with the schema), [`counts`]
//! (predicates and counts), [`batches`] (the delete and select batches),
//! [`children`] (child scopes), [`act`] (the `DELETE` / `UPDATE` of a set of
//! rows) and [`partitions`] (`partitions = "drop"`).

use super::TextRow;
use super::dialect::Dialect;
use super::schema::{ColumnInfo, TableInfo};
use crate::config::{ObjectLink, Strategy, TableRef, Walk};
use chrono::{DateTime, Utc};

mod act;
mod batches;
mod children;
mod counts;
mod partitions;
mod prepare;

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
    /// The table as statements name it: quoted and qualified once here.
    pub fn new(d: &dyn Dialect, info: TableInfo) -> Self {
        let name = d.quote(&info.table.table);
        let from = match &info.table.schema {
            Some(s) => format!("{}.{}", d.quote(s), name),
            None => name.clone(),
        };
        Self { info, from, name }
    }

    /// `table.column`, quoted: qualified so a subquery on another table
    /// cannot capture the name.
    pub fn col(&self, d: &dyn Dialect, c: &str) -> String {
        format!("{}.{}", self.name, d.quote(c))
    }
}

/// What a rule or child does to its rows, with the anonymized columns
/// resolved against the live schema.
#[derive(Debug, Clone)]
pub enum ActionSql {
    Delete,
    Anonymize(Vec<(ColumnInfo, Strategy)>),
}

impl ActionSql {
    /// `delete` or `anonymize`, as reports and audit events name the action.
    pub fn name(&self) -> &'static str {
        match self {
            ActionSql::Delete => "delete",
            ActionSql::Anonymize(_) => "anonymize",
        }
    }

    /// The columns a `hash` strategy writes, in order: the engine computes or
    /// binds a value for each of them.
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

/// A child table of a rule, matched with its live schema: acted on before
/// its parents, by their keys.
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

/// The cutoff as the select column compares it: bound, never spliced.
#[derive(Debug, Clone)]
pub enum CutoffValue {
    Int(i64),
    /// Text in the column's format; cast to the column type where the engine needs it.
    Text(String),
}

/// The rule's select column with its cutoff at the run's `as_of`.
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

/// Tables a rule touches, looked up by `TableRef`.
pub trait Tables {
    fn get(&self, t: &TableRef) -> Option<&TableInfo>;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableRef;
    use crate::sql::schema::ColumnKind;
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
            index_pairs: vec![],
            heap_walk: !partitioned,
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

    /// Only a partitioned MariaDB/MySQL table sorts every due row for the
    /// keyed loop's order, and not once an index names both columns.
    #[test]
    fn only_partitioned_mariadb_sorts_every_due_row() {
        let my = MySql { mariadb: true };
        let plain = events_rule(&my, false).table.info;
        let mut parted = events_rule(&my, true).table.info;
        assert!(!my.sorts_every_due_row(&plain, "created_at", "id"));
        assert!(my.sorts_every_due_row(&parted, "created_at", "id"));
        parted.index_pairs = vec![("id".into(), "created_at".into())];
        assert!(
            my.sorts_every_due_row(&parted, "created_at", "id"),
            "the pair's order matters"
        );
        parted.index_pairs.push(("created_at".into(), "id".into()));
        assert!(!my.sorts_every_due_row(&parted, "created_at", "id"));
        for d in [&Postgres as &dyn Dialect, &Sqlite] {
            let info = events_rule(d, true).table.info;
            assert!(!d.sorts_every_due_row(&info, "created_at", "id"));
        }
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
