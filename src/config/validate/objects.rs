//! Objects: `[[rules.objects]]` links (the objects each row names, erased
//! with it) and object rules (`store = ...`: prefix, age and tags over a
//! store's objects).
//!
//! A link names objects by a template over the row's columns, and must
//! never be able to name a whole prefix by accident; an object rule can
//! only delete, and never a whole store without a narrowing `select` or `tags`.

use super::Ctx;
use super::batch::guards;
use super::names::column;
use crate::config::model::{
    Config, DEFAULT_OBJECT_BATCH_SIZE, ObjectLink, ObjectNames, ObjectRule, Template, TemplatePart,
};
use crate::config::period::Period;
use crate::config::raw::{RawAction, RawBatchSize, RawObjects, RawRule, RawSelect};
use std::collections::BTreeMap;
use toml::Spanned;

/// `[[rules.objects]]` entries: a known store and exactly one way to name objects.
pub(super) fn object_links(
    cx: &mut Ctx,
    config: &Config,
    raw: &[Spanned<RawObjects>],
) -> Vec<ObjectLink> {
    let mut out = Vec::new();
    for o in raw {
        let ro = o.get_ref();
        if !config.stores.contains_key(ro.store.get_ref()) {
            let known: Vec<&String> = config.stores.keys().collect();
            cx.err(
                &ro.store,
                format!(
                    "objects name store `{}`, which config does not define (known: {known:?})",
                    ro.store.get_ref()
                ),
            );
            continue;
        }
        let names = match (&ro.prefix, &ro.key_column) {
            (Some(p), None) => match link_prefix(cx, p) {
                Some(t) => ObjectNames::Prefix(t),
                None => continue,
            },
            (None, Some(k)) => ObjectNames::KeyColumn(column(cx, k, "key_column")),
            _ => {
                cx.err(
                    o,
                    "objects need exactly one of `prefix` (a template) or `key_column`",
                );
                continue;
            }
        };
        out.push(ObjectLink {
            store: ro.store.get_ref().clone(),
            names,
            origin: cx.origin(o),
        });
    }
    out
}

/// A link's prefix template: it must name a column, and end after one.
fn link_prefix(cx: &mut Ctx, p: &Spanned<String>) -> Option<Template> {
    match Template::parse(p.get_ref()) {
        Ok(t) if t.columns().is_empty() => {
            cx.err(p, "the prefix names no column (e.g. \"avatars/{id}/\"): every row would erase the same objects");
            None
        }
        Ok(t) if matches!(t.parts.last(), Some(TemplatePart::Column(_))) => {
            cx.err(
                p,
                format!("prefix `{}` ends with a column: the prefix for id 1 would also match id 10, 11, …; end it with `/`", p.get_ref()),
            );
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            cx.err(p, e);
            None
        }
    }
}

/// A SQL rule's key an object rule refuses: is it present, its name, and why.
type Misplaced = (fn(&RawRule) -> bool, &'static str, &'static str);

/// Every such key, in the order they are reported.
const MISPLACED: &[Misplaced] = &[
    (
        |r| r.target.is_some(),
        "target",
        "a rule acts on a table or on a store, not both",
    ),
    (
        |r| r.key.is_some(),
        "key",
        "objects are named by their keys",
    ),
    (
        |r| r.concurrency.is_some(),
        "concurrency",
        "requests in flight are set on the store (`stores.<name>.concurrency`)",
    ),
    (
        |r| r.walk.is_some(),
        "walk",
        "a store is listed in key order; there is no index to choose",
    ),
    (
        |r| r.batch_time.is_some() || r.batch_size_max.is_some(),
        "batch_time",
        "object batches are sized by `batch_size` (DeleteObjects takes 1,000 keys)",
    ),
    (
        |r| r.partitions.is_some(),
        "partitions",
        "a store has no partitions",
    ),
    (
        |r| r.subject.is_some(),
        "subject",
        "a store holds no subject column; link objects to rows with [[rules.objects]] instead",
    ),
    (
        |r| r.where_.is_some(),
        "where",
        "objects are selected by prefix, select.older_than and tags",
    ),
    (
        |r| r.hold.is_some(),
        "hold",
        "objects are held by S3 Object Lock (legal hold or retention)",
    ),
    (
        |r| !r.children.is_empty(),
        "children",
        "objects have no children",
    ),
    (
        |r| !r.objects.is_empty(),
        "objects",
        "the rule's own objects are selected by prefix",
    ),
];

/// A rule with `store = ...`: prefix, age and tags over a store's objects.
pub(super) fn object_rule(
    cx: &mut Ctx,
    config: &Config,
    spanned: &Spanned<RawRule>,
    store: &Spanned<String>,
) -> Option<ObjectRule> {
    let r = spanned.get_ref();
    for (present, key, why) in MISPLACED {
        if present(r) {
            cx.err(
                spanned,
                format!("`{key}` does not apply to an object rule (`store`): {why}"),
            );
        }
    }
    if let Some(a) = &r.action
        && !matches!(a.get_ref(), RawAction::Delete)
    {
        cx.err(
            a,
            "an object rule can only delete (objects cannot be anonymized)",
        );
    }
    if !config.stores.contains_key(store.get_ref()) {
        let known: Vec<&String> = config.stores.keys().collect();
        cx.err(
            store,
            format!(
                "store `{}` is not defined in config (known: {known:?})",
                store.get_ref()
            ),
        );
        return None;
    }
    let older_than = r.select.as_ref().and_then(|s| object_select(cx, s));
    let tags = r
        .tags
        .as_ref()
        .map(|t| {
            if t.get_ref().is_empty() {
                cx.err(t, "`tags` is empty: drop it or name a tag");
            }
            t.get_ref().clone()
        })
        .unwrap_or_default();
    let prefix = object_prefix(cx, spanned, older_than.is_some(), &tags);
    let batch_size = object_batch_size(cx, r.batch_size.as_ref());
    let (max_rows, max_fraction) = guards(cx, r);
    Some(ObjectRule {
        name: r.name.get_ref().clone(),
        store: store.get_ref().clone(),
        prefix,
        older_than,
        tags,
        batch_size,
        max_rows,
        max_fraction,
        origin: cx.origin(spanned),
    })
}

/// An object rule's `select`: `older_than` on last-modified, nothing else.
fn object_select(cx: &mut Ctx, s: &Spanned<RawSelect>) -> Option<Period> {
    let sel = s.get_ref();
    if let Some(c) = &sel.column {
        cx.err(
            c,
            "an object rule selects on last-modified time: drop `column`",
        );
    }
    if let Some(f) = &sel.format {
        cx.err(
            f,
            "an object rule selects on last-modified time: drop `format`",
        );
    }
    if let Some(n) = &sel.newer_than {
        cx.err(n, "an object rule takes `older_than` only");
    }
    match &sel.older_than {
        Some(o) => match o.get_ref().parse::<Period>() {
            Ok(p) => Some(p),
            Err(e) => {
                cx.err(o, e);
                None
            }
        },
        None => {
            cx.err(s, "select needs `older_than`");
            None
        }
    }
}

/// An object rule's literal `prefix`; empty only when something else narrows it.
fn object_prefix(
    cx: &mut Ctx,
    spanned: &Spanned<RawRule>,
    has_select: bool,
    tags: &BTreeMap<String, String>,
) -> String {
    let Some(p) = &spanned.get_ref().prefix else {
        cx.err(
            spanned,
            "an object rule needs `prefix` (it may be \"\" when `select` or `tags` narrows it)",
        );
        return String::new();
    };
    if p.get_ref().is_empty() && !has_select && tags.is_empty() {
        cx.err(
            p,
            "an empty prefix with no `select` and no `tags` would erase the whole store",
        );
    }
    if p.get_ref().contains('{') {
        cx.err(
            p,
            "an object rule's prefix is literal; templates belong in [[rules.objects]]",
        );
    }
    p.get_ref().clone()
}

/// Objects per audited batch of an object rule.
fn object_batch_size(cx: &mut Ctx, b: Option<&Spanned<RawBatchSize>>) -> usize {
    match b {
        None => DEFAULT_OBJECT_BATCH_SIZE,
        Some(b) => match b.get_ref() {
            RawBatchSize::Rows(n) if (1..=100_000).contains(n) => *n as usize,
            _ => {
                cx.err(
                    b,
                    "batch_size of an object rule must be between 1 and 100000",
                );
                DEFAULT_OBJECT_BATCH_SIZE
            }
        },
    }
}
