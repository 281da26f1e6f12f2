//! Objects named by SQL rows (`[[rules.objects]]`, `[[rules.children.objects]]`).
//!
//! A batch's rows are read with the columns their object names need (prefix
//! template columns, key columns); the child rows of those parents are read
//! for theirs. Every name is resolved to the versions it covers *before* the
//! batch acts on anything. What Object Lock holds is set aside as `pending`:
//! the engine acts on every row, writes the audit record, records the held
//! keys in the state store's pending-erasure list (no later run could find
//! them through the erased rows), erases the rest, and only then commits — a
//! crash at any point leaves rows or pending entries that name every object
//! not yet erased.

use super::erase::{self, Filter, Object, Tally};
use super::{HoldReason, ObjectCount, OpenStore, Stores};
use crate::config::{ObjectLink, ObjectNames};
use crate::error::Error;
use crate::sql::TextRow;
use crate::sql::statements::{BatchRow, ChildSql, RuleSql};
use crate::state::pending::PendingObject;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Object rows read for one child (`select_objects`), by child index.
pub(crate) type ChildObjectRows = Vec<(usize, Vec<TextRow>)>;

/// What a batch's rows name, resolved.
#[derive(Default)]
pub(crate) struct Resolved {
    /// One per link: the rule's links, then each child's, in config order.
    pub counts: Vec<ObjectCount>,
    /// Held objects, each once: kept in the store, recorded as pending
    /// before the batch commits, retried by later runs.
    pub pending: Vec<PendingObject>,
    /// Held objects per reason.
    pub reasons: BTreeMap<HoldReason, u64>,
    /// Held objects, counted once each.
    pub held: Tally,
    /// Objects to erase, per store, each once.
    pub erase: Vec<(Arc<OpenStore>, Vec<Object>)>,
}

/// Whether a rule names objects at all (then it has no fast delete path).
pub(crate) fn has_objects(sql: &RuleSql) -> bool {
    !sql.objects.is_empty() || sql.children.iter().any(|c| !c.objects.is_empty())
}

/// Every store a rule's links use, so they can be opened before anything is touched.
pub(crate) fn stores_of(sql: &RuleSql) -> BTreeSet<String> {
    sql.objects
        .iter()
        .chain(sql.children.iter().flat_map(|c| c.objects.iter()))
        .map(|l| l.store.clone())
        .collect()
}

/// A name for one row's objects: a prefix, or one exact key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Name {
    store: String,
    text: String,
    exact: bool,
}

fn name_of(
    link: &ObjectLink,
    value: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Name>, Error> {
    let (text, exact) = match &link.names {
        ObjectNames::Prefix(t) => match t.render(value) {
            Ok(Some(p)) => (p, false),
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Error::Other(format!(
                    "objects {} ({}): a row cannot name its objects: {e}",
                    link.describe(),
                    link.origin
                )));
            }
        },
        ObjectNames::KeyColumn(c) => match value(c) {
            Some(k) if !k.is_empty() => (k, true),
            _ => return Ok(None),
        },
    };
    Ok(Some(Name {
        store: link.store.clone(),
        text,
        exact,
    }))
}

/// Children with links, their object rows for these parent keys (in a transaction).
pub(crate) async fn child_rows_tx(
    tx: &mut crate::sql::Tx,
    db: &crate::sql::Db,
    sql: &RuleSql,
    keys: &[String],
) -> Result<ChildObjectRows, Error> {
    child_rows_in(Some(tx), db, sql, keys).await
}

/// The same, outside a transaction (plan).
pub(crate) async fn child_rows(
    db: &crate::sql::Db,
    sql: &RuleSql,
    keys: &[String],
) -> Result<ChildObjectRows, Error> {
    child_rows_in(None, db, sql, keys).await
}

/// Read in chunks of 5,000 parent keys, in `tx` when there is one.
async fn child_rows_in(
    mut tx: Option<&mut crate::sql::Tx>,
    db: &crate::sql::Db,
    sql: &RuleSql,
    keys: &[String],
) -> Result<ChildObjectRows, Error> {
    let mut out = Vec::new();
    for (i, c) in linked_children(sql) {
        let mut rows = Vec::new();
        for chunk in keys.chunks(5_000) {
            let stmt = c.select_objects(db.dialect(), &sql.key, chunk);
            rows.extend(match tx.as_deref_mut() {
                Some(tx) => tx.fetch(db, &stmt).await?,
                None => db.fetch(&stmt).await?,
            });
        }
        out.push((i, rows));
    }
    Ok(out)
}

fn linked_children(sql: &RuleSql) -> impl Iterator<Item = (usize, &ChildSql)> {
    sql.children
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.objects.is_empty())
}

/// Resolve the names a batch's rows (and their children's rows) carry.
pub(crate) async fn resolve(
    stores: &Stores,
    sql: &RuleSql,
    rows: &[BatchRow],
    children: &ChildObjectRows,
    now: DateTime<Utc>,
) -> Result<Resolved, Error> {
    let (refs, links) = collect_refs(sql, rows, children)?;
    // Each distinct name is listed once, `concurrency` per store at a time.
    let names: BTreeSet<&Name> = refs.iter().map(|(_, _, n)| n).collect();
    let open = open_stores(stores, &names).await?;
    let selected = select_all(&open, &names, now).await?;
    count_links(&refs, &links, &selected, &open, now).await
}

/// A name found in a batch: (row index, link index, name).
type Ref = (usize, usize, Name);

/// Every name the rows and their children carry, with the links (the
/// rule's first, then each child's) the names' link indexes point into.
fn collect_refs<'s>(
    sql: &'s RuleSql,
    rows: &[BatchRow],
    children: &ChildObjectRows,
) -> Result<(Vec<Ref>, Vec<&'s ObjectLink>), Error> {
    let mut refs: Vec<Ref> = Vec::new();
    let mut links: Vec<&ObjectLink> = Vec::new();
    for l in &sql.objects {
        let li = links.len();
        links.push(l);
        for (ri, row) in rows.iter().enumerate() {
            let value = |c: &str| {
                sql.object_columns
                    .iter()
                    .position(|oc| oc.name == c)
                    .and_then(|i| row.objects.get(i).cloned().flatten())
            };
            if let Some(n) = name_of(l, &value)? {
                refs.push((ri, li, n));
            }
        }
    }
    let by_key: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.as_str(), i))
        .collect();
    for (ci, crow) in children {
        let c = &sql.children[*ci];
        for l in &c.objects {
            let li = links.len();
            links.push(l);
            for r in crow {
                let Some(ri) = r[0].as_deref().and_then(|fk| by_key.get(fk)) else {
                    continue;
                };
                let value = |col: &str| {
                    c.object_columns
                        .iter()
                        .position(|oc| oc.name == col)
                        .and_then(|i| r.get(i + 1).cloned().flatten())
                };
                if let Some(n) = name_of(l, &value)? {
                    refs.push((*ri, li, n));
                }
            }
        }
    }
    Ok((refs, links))
}

/// The stores the names are in, each opened once, in name order.
async fn open_stores<'n>(
    stores: &Stores,
    names: &BTreeSet<&'n Name>,
) -> Result<BTreeMap<&'n str, Arc<OpenStore>>, Error> {
    let mut open: BTreeMap<&str, Arc<OpenStore>> = BTreeMap::new();
    for n in names {
        if !open.contains_key(n.store.as_str()) {
            let s = stores.get(&n.store).await.map_err(Error::Other)?;
            open.insert(&n.store, s);
        }
    }
    Ok(open)
}

/// List every name, as many at a time as the most concurrent store allows.
async fn select_all(
    open: &BTreeMap<&str, Arc<OpenStore>>,
    names: &BTreeSet<&Name>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<Name, erase::Selection>, Error> {
    let conc = open
        .values()
        .map(|s| s.config.concurrency)
        .max()
        .unwrap_or(1);
    let no_filter = Filter::default();
    // Owned items: a closure over borrowed stream items defeats rustc's `Send`
    // inference for callers that spawn (the daemon).
    let owned: Vec<Name> = names.iter().map(|n| (*n).clone()).collect();
    let selections: Vec<(Name, erase::Selection)> = stream::iter(owned)
        .map(|n| {
            let s = open[n.store.as_str()].clone();
            let f = &no_filter;
            async move {
                let sel = erase::select(&s, &n.text, n.exact, f, now).await?;
                Ok::<_, Error>((n, sel))
            }
        })
        .buffered(conc)
        .try_collect()
        .await?;
    Ok(selections.into_iter().collect())
}

/// Count per link, and collect what goes (everything not held), each object once.
async fn count_links(
    refs: &[Ref],
    links: &[&ObjectLink],
    selected: &BTreeMap<Name, erase::Selection>,
    open: &BTreeMap<&str, Arc<OpenStore>>,
    now: DateTime<Utc>,
) -> Result<Resolved, Error> {
    let mut out = Resolved::default();
    let mut counts: Vec<ObjectCount> = links
        .iter()
        .map(|l| ObjectCount {
            store: l.store.clone(),
            via: l.describe(),
            ..Default::default()
        })
        .collect();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut held_seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut to_erase: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    for (_, li, n) in refs {
        let sel = &selected[n];
        for (o, reason) in &sel.held {
            if held_seen.insert((n.store.clone(), o.key.clone())) {
                counts[*li].held += 1;
                out.held.add(o);
                *out.reasons.entry(*reason).or_default() += 1;
                let until = match reason {
                    HoldReason::LegalHold => None,
                    _ => erase::retained_until(&open[n.store.as_str()], o, now).await?,
                };
                out.pending.push(PendingObject {
                    store: n.store.clone(),
                    key: o.key.clone(),
                    reason: reason.as_str().to_string(),
                    retain_until_ms: until.map(|t| t.timestamp_millis()),
                });
            }
        }
        for o in &sel.selected {
            if seen.insert((n.store.clone(), o.key.clone())) {
                let c = &mut counts[*li];
                c.objects += 1;
                c.versions += o.versions.len() as u64;
                c.bytes += o.bytes();
                to_erase.entry(n.store.clone()).or_default().push(o.clone());
            }
        }
    }
    out.counts = counts;
    out.erase = to_erase
        .into_iter()
        .map(|(s, objs)| (open[s.as_str()].clone(), objs))
        .collect();
    Ok(out)
}

/// Erase what `resolve` set aside. Any refusal is an error: the caller rolls
/// the rows back, so they still name the objects for the next run.
pub(crate) async fn erase(resolved: &Resolved) -> Result<Tally, Error> {
    let mut t = Tally::default();
    for (store, objects) in &resolved.erase {
        let done = erase::delete_all(store, objects).await?;
        if done.failures() > 0 {
            return Err(Error::Other(format!(
                "store `{}`: {} of the batch's object versions: {}",
                store.config.name,
                done.failures(),
                done.describe_failures()
            )));
        }
        for o in objects {
            t.add(o);
        }
    }
    Ok(t)
}

/// Add what a batch erased into a running total: its counts without the
/// held ones, which the batch kept and recorded apart.
pub(crate) fn add_erased(into: &mut Vec<ObjectCount>, from: &[ObjectCount]) {
    let erased: Vec<ObjectCount> = from
        .iter()
        .map(|c| ObjectCount {
            held: 0,
            ..c.clone()
        })
        .collect();
    add_counts(into, &erased);
}

/// Add one batch's counts into a running total (same links, same order).
pub(crate) fn add_counts(into: &mut Vec<ObjectCount>, from: &[ObjectCount]) {
    for c in from {
        match into.iter_mut().find(|x| x.via == c.via) {
            Some(x) => {
                x.objects += c.objects;
                x.versions += c.versions;
                x.bytes += c.bytes;
                x.held += c.held;
            }
            None => into.push(c.clone()),
        }
    }
}
