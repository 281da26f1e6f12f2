//! Keyed hashes computed by Lethe where the engine has no SHA-256: the new
//! value of each hashed column of a row (a value already hashed stays, so
//! a rule run twice changes nothing the second time). Which source an
//! `UPDATE` takes them from is `crate::sql::anonymize::hash_source`.

use crate::keys::{Keys, looks_hashed};

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
