//! A SQL rule (`target = "<source>.<table>"`): which rows (`select`,
//! `where`, a request's subjects), what to do with them, how to walk the
//! table, how many workers, and what happens to whole partitions.
//!
//! Combinations that would make a rule act on more than it says are
//! refused here: a rule that selects nothing, `partitions = "drop"` where
//! "the whole range is due" would be untrue, concurrency where rows cascade.

use super::actions::action;
use super::batch::{batch_sizing, guards};
use super::children::children;
use super::names::{column, is_identifier, parse_table};
use super::objects::object_links;
use super::{Ctx, keyword};
use crate::config::model::{
    Action, Config, HoldRef, MAX_RULE_CONCURRENCY, Partitions, Rule, Select, TableRef, TimeFormat,
    Trigger, Walk,
};
use crate::config::period::{Period, Unit};
use crate::config::raw::{RawRule, RawSelect};
use toml::Spanned;

/// The rule at `spanned`; `None` when it has no usable target.
pub(super) fn rule(
    cx: &mut Ctx,
    config: &Config,
    spanned: &Spanned<RawRule>,
    trigger: Trigger,
) -> Option<Rule> {
    let r = spanned.get_ref();
    let Some(target_s) = &r.target else {
        cx.err(
            spanned,
            "rule needs `target = \"<source>.<table>\"` (rows) or `store = \"<store>\"` (objects)",
        );
        return None;
    };
    if let Some(p) = &r.prefix {
        cx.err(p, "`prefix` belongs to object rules (`store`); link objects to rows with [[rules.objects]]");
    }
    if let Some(t) = &r.tags {
        cx.err(t, "`tags` belongs to object rules (`store`)");
    }
    let target = parse_table(cx, config, target_s, "target")?;
    let key = r
        .key
        .as_ref()
        .map(|k| column(cx, k, "key"))
        .unwrap_or_else(|| "id".into());
    let subject = r.subject.as_ref().map(|s| column(cx, s, "subject"));
    let select = r.select.as_ref().map(|s| select(cx, s));
    let where_ = r.where_.as_ref().map(|w| {
        if w.get_ref().contains(';') {
            cx.err(w, "`where` must be one SQL predicate, without `;`");
        }
        w.get_ref().clone()
    });
    selects_something(cx, spanned, trigger, select.is_some() || where_.is_some());
    let hold = r
        .hold
        .as_ref()
        .and_then(|h| hold(cx, config, h, &target, subject.is_some()));
    let act = match &r.action {
        Some(a) => action(cx, a),
        None => {
            cx.err(
                spanned,
                "rule needs `action` (\"delete\" or { anonymize = {...} })",
            );
            Action::Delete
        }
    };
    let (batch_size, batch_time, batch_size_max) = batch_sizing(cx, r);
    let walk = r.walk.as_ref().and_then(|w| walk(cx, w, select.is_some()));
    let (max_rows, max_fraction) = guards(cx, r);
    let concurrency = r
        .concurrency
        .as_ref()
        .map_or(1, |c| concurrency(cx, c, r, &act));
    let partitions = r.partitions.as_ref().map_or(Partitions::Batch, |p| {
        partitions(cx, p, r, &act, select.as_ref())
    });
    let kids = children(cx, config, &target, &r.children, 1);
    let objects = object_links(cx, config, &r.objects);
    Some(Rule {
        name: r.name.get_ref().clone(),
        target,
        key,
        subject,
        select,
        where_,
        by_request: trigger == Trigger::Request,
        hold,
        action: act,
        batch_size,
        walk,
        batch_time,
        batch_size_max,
        concurrency,
        partitions,
        max_rows,
        max_fraction,
        children: kids,
        objects,
        origin: cx.origin(spanned),
    })
}

/// `select = { column, older_than | newer_than, format }`.
fn select(cx: &mut Ctx, s: &Spanned<RawSelect>) -> Select {
    let sel = s.get_ref();
    let column = match &sel.column {
        Some(c) => column(cx, c, "select column"),
        None => {
            cx.err(s, "select needs `column` (the time column to compare)");
            String::new()
        }
    };
    let (period_s, older) = match (&sel.older_than, &sel.newer_than) {
        (Some(o), None) => (Some(o), true),
        (None, Some(n)) => (Some(n), false),
        _ => {
            cx.err(
                s,
                "select needs exactly one of `older_than` or `newer_than`",
            );
            (None, true)
        }
    };
    let none = Period {
        amount: 0,
        unit: Unit::Days,
    };
    let period = match period_s.map(|p| (p, p.get_ref().parse::<Period>())) {
        Some((_, Ok(p))) => p,
        Some((sp, Err(e))) => {
            cx.err(sp, e);
            none
        }
        None => none,
    };
    let format = match sel.format.as_ref() {
        None => TimeFormat::Native,
        Some(f) => time_format(cx, f),
    };
    Select {
        column,
        period,
        older,
        format,
    }
}

fn time_format(cx: &mut Ctx, f: &Spanned<String>) -> TimeFormat {
    let choices = [
        ("native", TimeFormat::Native),
        ("rfc3339", TimeFormat::Rfc3339),
        ("unix", TimeFormat::Unix),
        ("unix_ms", TimeFormat::UnixMs),
        ("date", TimeFormat::Date),
    ];
    keyword(cx, f, &choices, TimeFormat::Native, |other| {
        format!("unknown time format `{other}` (use native, rfc3339, date, unix or unix_ms)")
    })
}

/// A request job's rule picks rows by subject; any other rule needs a
/// `select` or a `where` (`selects` says whether it has one).
fn selects_something(cx: &mut Ctx, spanned: &Spanned<RawRule>, trigger: Trigger, selects: bool) {
    let r = spanned.get_ref();
    if trigger == Trigger::Request {
        if let Some(sel) = &r.select {
            cx.err(
                sel,
                "a request job's rules have no `select`: the open requests' subjects pick the rows",
            );
        }
        if r.subject.is_none() {
            cx.err(
                spanned,
                "a request job's rule needs `subject = \"<column>\"`: the column holding the requester's id",
            );
        }
    } else if !selects {
        cx.err(
            spanned,
            "rule selects nothing: give `select = { column, older_than }`, `where`, or both",
        );
    }
}

/// `hold = "<source>.<table>.<column>"`: subjects never to act on.
fn hold(
    cx: &mut Ctx,
    config: &Config,
    h: &Spanned<String>,
    target: &TableRef,
    has_subject: bool,
) -> Option<HoldRef> {
    let parts: Vec<&str> = h.get_ref().rsplitn(2, '.').collect();
    if parts.len() != 2 {
        cx.err(h, "hold must be `<source>.<table>.<column>`");
        return None;
    }
    let table_spanned = Spanned::new(h.span(), parts[1].to_string());
    let table = parse_table(cx, config, &table_spanned, "hold table")?;
    if table.source != target.source {
        cx.err(h, "the hold list must live on the same source as the target, so it is read in the same transaction");
    }
    if !has_subject {
        cx.err(
            h,
            "a hold lists subjects: the rule needs `subject = \"<column>\"` too",
        );
    }
    if !is_identifier(parts[0]) {
        cx.err(h, format!("`{}` is not a plain column name", parts[0]));
    }
    Some(HoldRef {
        table,
        column: parts[0].to_string(),
    })
}

/// `walk = "select" | "key"`; `select` only with a select column to walk.
fn walk(cx: &mut Ctx, w: &Spanned<String>, has_select: bool) -> Option<Walk> {
    match w.get_ref().as_str() {
        "select" if !has_select => {
            cx.err(w, "walk = \"select\" needs `select` (a column to walk)");
            None
        }
        "select" => Some(Walk::Select),
        "key" => Some(Walk::Key),
        "heap" => Some(Walk::Heap),
        other => {
            cx.err(
                w,
                format!("unknown walk `{other}` (use \"select\", \"key\" or \"heap\")"),
            );
            None
        }
    }
}

/// Workers side by side: above 1 only for a plain delete or anonymize (one
/// table, nothing per row). Whether the engine runs such a rule's batches
/// as one statement each (an anonymize only on PostgreSQL) is known only
/// against the live database: `check` and the run say it there.
fn concurrency(cx: &mut Ctx, c: &Spanned<i64>, r: &RawRule, act: &Action) -> usize {
    let v = *c.get_ref();
    if v < 1 || v as usize > MAX_RULE_CONCURRENCY {
        cx.err(
            c,
            format!("concurrency must be between 1 and {MAX_RULE_CONCURRENCY}"),
        );
        1
    } else if v > 1
        && (!matches!(act, Action::Delete | Action::Anonymize(_))
            || !r.children.is_empty()
            || !r.objects.is_empty())
    {
        cx.err(
            c,
            "concurrency above 1 applies only to a plain delete or anonymize \
             of one table (no children, no objects)",
        );
        1
    } else {
        v as usize
    }
}

/// `partitions = "batch" | "drop"`; `drop` only for a plain age-based delete.
fn partitions(
    cx: &mut Ctx,
    p: &Spanned<String>,
    r: &RawRule,
    act: &Action,
    select: Option<&Select>,
) -> Partitions {
    match p.get_ref().as_str() {
        "batch" => Partitions::Batch,
        "drop" => {
            let mut why = Vec::new();
            if !matches!(act, Action::Delete) {
                why.push("action = \"delete\"");
            }
            if !select.is_some_and(|s| s.older) {
                why.push("select = { column = ..., older_than = ... }");
            }
            if !r.children.is_empty() {
                why.push("no children");
            }
            if !r.objects.is_empty() {
                why.push("no objects");
            }
            if r.where_.is_some() {
                why.push("no `where`");
            }
            if why.is_empty() {
                return Partitions::Drop;
            }
            cx.err(
                p,
                format!(
                    "partitions = \"drop\" needs a plain age-based delete: {}",
                    why.join(", ")
                ),
            );
            Partitions::Batch
        }
        other => {
            cx.err(
                p,
                format!("partitions = \"{other}\": use \"batch\" (the default) or \"drop\""),
            );
            Partitions::Batch
        }
    }
}
