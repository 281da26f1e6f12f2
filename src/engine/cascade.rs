//! Children of a batch: the rows other tables hold through foreign keys,
//! acted on (deleted or anonymized) before their parents, grandchildren
//! first, in chunks under every engine's bind limit. It runs inside the
//! batch's transaction and never commits.

use super::report::add_count;
use crate::anonymize::hash::rehash;
use crate::audit::ChildCount;
use crate::error::Error;
use crate::keys::Keys;
use crate::sql::anonymize::hash_source;
use crate::sql::statements::{ChildSql, Hashes, act_chunk};
use crate::sql::{ColumnInfo, Db, Tx};
use std::future::Future;
use std::pin::Pin;

/// Keys per statement when acting on children (under every engine's bind limit).
pub(crate) const KEY_CHUNK: usize = 5_000;

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Act on one child table (and its children first) for a set of parent keys.
pub(crate) fn process_child<'a>(
    tx: &'a mut Tx,
    db: &'a Db,
    keys: &'a Keys,
    child: &'a ChildSql,
    parent_key: &'a ColumnInfo,
    parent_keys: &'a [String],
    counts: &'a mut Vec<ChildCount>,
) -> BoxFut<'a, Result<(), Error>> {
    Box::pin(async move {
        let d = db.dialect();
        let hashed = child.action.hash_columns();
        let pads = keys.pseudonym_pads();
        for chunk in parent_keys.chunks(KEY_CHUNK) {
            if !child.needs_keys(d) {
                // Hashes, if any, computed by the server in the same statement.
                let hashes = if hashed.is_empty() {
                    Hashes::None
                } else {
                    Hashes::InSql(&pads)
                };
                let n = tx
                    .execute(db, &child.act_by_parent(d, parent_key, chunk, hashes))
                    .await?;
                add_count(
                    counts,
                    &child.display,
                    &child.fk.name,
                    child.action.name(),
                    n,
                );
                continue;
            }
            let rows = tx
                .fetch(db, &child.select_keys(d, parent_key, chunk))
                .await?;
            let ckey = child.key.as_ref().expect("needs_keys implies a key");
            let child_keys: Vec<String> = rows.iter().filter_map(|r| r[0].clone()).collect();
            for gc in &child.children {
                process_child(tx, db, keys, gc, ckey, &child_keys, counts).await?;
            }
            let step = act_chunk(d, hashed.len());
            for part in rows.chunks(step) {
                let ks: Vec<String> = part.iter().filter_map(|r| r[0].clone()).collect();
                let values = if hashed.is_empty() || d.hashes_in_sql() {
                    vec![]
                } else {
                    part.iter()
                        .filter_map(|r| Some((r[0].clone()?, rehash(keys, &r[1..])?)))
                        .collect()
                };
                let hashes = hash_source(d, hashed.len(), &pads, &values);
                tx.execute(db, &child.act_by_keys(d, &ks, hashes)).await?;
            }
            add_count(
                counts,
                &child.display,
                &child.fk.name,
                child.action.name(),
                child_keys.len() as u64,
            );
        }
        Ok(())
    })
}
