//! `[[rules.children]]`: the rows that go with a rule's rows, found by a
//! foreign key, to at most four levels.
//!
//! A batch is one transaction, so every child must live on its parent's
//! source; objects may hang off a rule's rows and its direct children only.

use super::Ctx;
use super::actions::action;
use super::names::{column, parse_table};
use super::objects::object_links;
use crate::config::model::{Child, Config, TableRef};
use crate::config::raw::RawChild;
use toml::Spanned;

/// The children of `parent` at `depth` (1 for a rule's own children).
pub(super) fn children(
    cx: &mut Ctx,
    config: &Config,
    parent: &TableRef,
    raw: &[Spanned<RawChild>],
    depth: usize,
) -> Vec<Child> {
    let mut out = Vec::new();
    for c in raw {
        let rc = c.get_ref();
        if depth > 4 {
            cx.err(c, "children nest more than four levels deep");
            continue;
        }
        let Some(target) = parse_table(cx, config, &rc.target, "child target") else {
            continue;
        };
        if target.source != parent.source {
            cx.err(
                &rc.target,
                format!(
                    "child `{target}` is on source `{}` but its parent is on `{}`: a batch is one transaction, so children must share the parent's source",
                    target.source, parent.source
                ),
            );
        }
        let foreign_key = column(cx, &rc.foreign_key, "foreign_key");
        let key = rc.key.as_ref().map(|k| column(cx, k, "key"));
        let act = action(cx, &rc.action);
        let grandchildren = children(cx, config, &target, &rc.children, depth + 1);
        if depth > 1 && !rc.objects.is_empty() {
            cx.err(
                &rc.objects[0],
                "objects can be linked to a rule's rows and its direct children's rows, not deeper",
            );
        }
        let objects = object_links(cx, config, &rc.objects);
        out.push(Child {
            target,
            foreign_key,
            key,
            action: act,
            children: grandchildren,
            objects,
            origin: cx.origin(c),
        });
    }
    out
}
