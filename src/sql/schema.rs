//! Live-schema introspection: columns, primary key, foreign keys into a table.
//!
//! Identifiers from TOML are only ever compared with catalog values here (as
//! bound parameters); a name that is not found never reaches statement text.

use super::{Db, Engine, Stmt, TextRow, Val};
use crate::config::TableRef;
use crate::error::Error;

/// How Lethe treats a column's values: what a cutoff, a key list or a
/// strategy may do with them depends on it, not on the engine's type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    Text,
    /// A native date or time type.
    Time,
    Other,
}

/// One column of a live table, as the catalog describes it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    /// The type as the engine names it (PostgreSQL: `format_type`, usable in a cast).
    pub data_type: String,
    pub kind: ColumnKind,
    pub nullable: bool,
}

/// A foreign key (one constraint, possibly multi-column) in another table
/// that references the inspected one. Keys PostgreSQL cloned onto partitions
/// are folded into their parent's; a key declared only on a partition is
/// reported on the partitioned root it belongs to (`declared_on` names the
/// partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The constraint's name (SQLite keys have none: `<table>_fk<id>`).
    pub constraint: String,
    /// The referencing table's schema, `None` for the connection's default.
    pub schema: Option<String>,
    pub table: String,
    pub columns: Vec<String>,
    /// In the order of `columns`.
    pub referenced_columns: Vec<String>,
    /// `CASCADE`, `SET NULL`, `RESTRICT`, `NO ACTION`, `SET DEFAULT`.
    pub on_delete: String,
    /// The same, when a referenced column changes (an anonymized key).
    pub on_update: String,
    pub deferrable: bool,
    /// Whether the database checks it on Lethe's connection.
    pub enforced: bool,
    /// The partition or inheritance child the key is declared on, when it is
    /// not declared on `table` itself.
    pub declared_on: Option<String>,
}

impl ForeignKey {
    /// `schema.table` or `table`, as messages name the referencing table.
    pub fn table_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }

    /// `table.col` or `table.(a, b)`.
    pub fn columns_name(&self) -> String {
        format!("{}.{}", self.table_name(), list(&self.columns))
    }
}

/// `a` or `(a, b)`.
pub fn list(cols: &[String]) -> String {
    if cols.len() == 1 {
        cols[0].clone()
    } else {
        format!("({})", cols.join(", "))
    }
}

/// What the live catalog says of a table: everything a rule is checked
/// against before a statement is built for it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub table: TableRef,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub referenced_by: Vec<ForeignKey>,
    /// PostgreSQL: partitioned, or parent of inheritance children;
    /// MariaDB/MySQL: `PARTITION BY` (its `CREATE_OPTIONS` say so).
    pub partitioned: bool,
    /// PostgreSQL, when `partitioned`: every physical table that holds rows
    /// (leaf partitions, inheritance members and the parent itself), as
    /// (schema, table, relkind).
    pub leaves: Vec<(String, String, String)>,
    /// SQLite: a rowid table (not `WITHOUT ROWID`).
    pub has_rowid: bool,
    /// Columns that lead some index (so a filter or FK on them is cheap).
    pub indexed: Vec<String>,
    /// MariaDB/MySQL, when `partitioned`: the first two columns of every
    /// index of two or more, as (first, second). There an index's hidden
    /// primary-key suffix does not order a scan across partitions, so only
    /// an index that names both columns reads `ORDER BY first, second` in
    /// order. Empty elsewhere.
    pub index_pairs: Vec<(String, String)>,
    /// PostgreSQL 14 or later, an ordinary table that is not partitioned:
    /// its heap can be walked by `ctid` ranges (a TID Range Scan; before 14
    /// such a range is a sequential scan of the whole table).
    pub heap_walk: bool,
}

impl TableInfo {
    /// The column named exactly `name` (identifiers from TOML are compared
    /// with catalog names, never spliced).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The kind of a column by its declared type.
pub(crate) fn kind_of(engine: Engine, data_type: &str) -> ColumnKind {
    let t = data_type.to_ascii_lowercase();
    let int = ["int", "serial"].iter().any(|p| t.contains(p))
        && !t.contains("interval")
        && !t.contains("point");
    if int {
        return ColumnKind::Int;
    }
    if engine.dates_are_text() {
        // SQLite stores dates as text (or numbers); compare in the stored format.
        return ColumnKind::Text;
    }
    if t.contains("timestamp") || t.contains("date") || t == "time" {
        return ColumnKind::Time;
    }
    if t.contains("char") || t.contains("text") || t == "citext" || t.contains("clob") {
        return ColumnKind::Text;
    }
    ColumnKind::Other
}

pub(crate) fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// Columns from rows of (name, data type, …): `kind_at` is the index of the
/// value the kind is derived from; `nullable` reads the engine's own flag.
pub(crate) fn columns(
    engine: Engine,
    rows: &[TextRow],
    kind_at: usize,
    nullable: impl Fn(&TextRow) -> bool,
) -> Vec<ColumnInfo> {
    rows.iter()
        .map(|r| ColumnInfo {
            name: s(&r[0]),
            data_type: s(&r[1]),
            kind: kind_of(engine, &s(&r[kind_at])),
            nullable: nullable(r),
        })
        .collect()
}

/// Foreign keys from rows shaped as [`super::Dialect::referencing_keys`]
/// says; an empty referenced column means the primary key (SQLite).
fn foreign_keys(rows: &[TextRow], pk: &[String]) -> Vec<ForeignKey> {
    let split =
        |v: &Option<String>| -> Vec<String> { s(v).split(',').map(str::to_string).collect() };
    let opt = |v: &Option<String>| Some(s(v)).filter(|x| !x.is_empty());
    rows.iter()
        .map(|r| {
            let columns = split(&r[3]);
            let mut referenced_columns = split(&r[4]);
            if referenced_columns.iter().all(String::is_empty) {
                referenced_columns = pk.to_vec();
            }
            ForeignKey {
                constraint: s(&r[0]),
                schema: opt(&r[1]),
                table: s(&r[2]),
                columns,
                referenced_columns,
                on_delete: s(&r[5]),
                on_update: s(&r[9]),
                deferrable: s(&r[6]) == "true",
                enforced: s(&r[7]) == "true",
                declared_on: opt(&r[8]),
            }
        })
        .collect()
}

/// Foreign keys into `t` (see [`ForeignKey`]); `pk` is `t`'s primary key.
pub async fn referencing_keys(
    db: &Db,
    t: &TableRef,
    pk: &[String],
) -> Result<Vec<ForeignKey>, Error> {
    let rows = db.fetch(&db.dialect().referencing_keys(t)).await?;
    Ok(foreign_keys(&rows, pk))
}

/// Inspect a table; `Ok(None)` if it does not exist (each dialect reads its
/// own catalog: [`super::Dialect::table_info`]).
pub async fn table_info(db: &Db, t: &TableRef) -> Result<Option<TableInfo>, Error> {
    db.dialect().table_info(db, t).await
}

/// A statement of catalog text and bound names.
pub(crate) fn catalog(sql: &'static str, binds: Vec<Val>) -> Stmt {
    Stmt {
        sql: sql.to_string(),
        binds,
    }
}

/// The first value of each row.
pub(crate) fn firsts(rows: &[TextRow]) -> Vec<String> {
    rows.iter().map(|r| s(&r[0])).collect()
}
