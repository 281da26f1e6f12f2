//! The counts a plan shows beyond the rule's own rows: each child rule's
//! rows, and the children reached through a foreign key no index leads
//! with (every batch scans them). Reads only.

use crate::audit::ChildCount;
use crate::error::Error;
use crate::sql::Db;
use crate::sql::statements::{ChildSql, RuleSql};

/// Rows each child rule would act on, grandchildren first (the order a
/// batch acts in), for a plan.
pub(crate) async fn count_children(db: &Db, sql: &RuleSql) -> Result<Vec<ChildCount>, Error> {
    type Path = (Vec<usize>, String, String, String);
    fn walk(children: &[ChildSql], path: &mut Vec<usize>, out: &mut Vec<Path>) {
        for (i, c) in children.iter().enumerate() {
            path.push(i);
            // Grandchildren first: that is the order a batch acts in.
            walk(&c.children, path, out);
            out.push((
                path.clone(),
                c.display.clone(),
                c.fk.name.clone(),
                c.action.name().to_string(),
            ));
            path.pop();
        }
    }
    let mut paths = Vec::new();
    walk(&sql.children, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for (path, target, via, action) in paths {
        let count = db.count(&sql.count_child(db.dialect(), &path)).await?;
        out.push(ChildCount {
            target,
            via,
            action,
            count,
        });
    }
    Ok(out)
}

/// A note per child reached through a foreign key no index leads with:
/// every batch scans the whole child table, so the plan states how many
/// batches and rows that is.
pub(crate) async fn unindexed_children(
    db: &Db,
    sql: &RuleSql,
    matched: u64,
) -> Result<Vec<String>, Error> {
    fn walk<'a>(cs: &'a [ChildSql], out: &mut Vec<&'a ChildSql>) {
        for c in cs {
            out.push(c);
            walk(&c.children, out);
        }
    }
    let mut all = Vec::new();
    walk(&sql.children, &mut all);
    let batches = matched.div_ceil(sql.batch_size.max(1) as u64);
    let mut notes = Vec::new();
    for c in all {
        if c.table.info.indexed.contains(&c.fk.name) {
            continue;
        }
        let mut b = db.builder();
        b.push("SELECT COUNT(*) FROM ").push(&c.table.from);
        let rows = db.count(&b.finish()).await?;
        notes.push(format!(
            "child {} is found by `{}`, which no index leads with: each of about {batches} batch(es) scans its {rows} rows (about {} row reads); an index on `{}` makes it a lookup",
            c.display,
            c.fk.name,
            batches.saturating_mul(rows),
            c.fk.name
        ));
    }
    Ok(notes)
}
