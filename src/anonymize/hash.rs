//! Keyed hashes computed by Lethe where the engine has no SHA-256: which
//! source an `UPDATE` of hashed columns takes its values from, and the new
//! value of each hashed column of a row (a value already hashed stays, so
//! a rule run twice changes nothing the second time).

use crate::keys::{HashPads, Keys, looks_hashed};
use crate::sql::statements::Hashes;

/// Where an `UPDATE` of `hashed` columns gets their values.
pub(crate) fn hash_source<'a>(
    d: &dyn crate::sql::Dialect,
    hashed: usize,
    pads: &'a HashPads,
    values: &'a [(String, Vec<Option<String>>)],
) -> Hashes<'a> {
    if hashed == 0 {
        Hashes::None
    } else if d.hashes_in_sql() {
        Hashes::InSql(pads)
    } else {
        Hashes::Bound(values)
    }
}

/// New values for the hashed columns of one row, `None` for a column that
/// stays (NULL, or already hashed); `None` if nothing changes.
pub(crate) fn rehash(keys: &Keys, values: &[Option<String>]) -> Option<Vec<Option<String>>> {
    let mut changed = false;
    let out = values
        .iter()
        .map(|v| match v {
            Some(v) if !looks_hashed(v) => {
                changed = true;
                Some(keys.pseudonym(v))
            }
            _ => None,
        })
        .collect();
    changed.then_some(out)
}
