//! `lethe check`, online part: every rule against the live schema.
//!
//! Besides names and types, it reports the foreign-key graph of every rule
//! ([`crate::plan::graph`]): keys into a deleted table that no child rule
//! covers (the delete would fail, or the database would cascade or null rows
//! the audit never sees). It calls the same [`crate::plan::inspect`] that
//! `plan` and `run` call, so the three never disagree. With `--coverage` it
//! also maps personal-looking columns no rule reaches ([`crate::plan::coverage`]).
//!
//! It never changes a row.

use crate::config::{Child, Loaded, Rule};
use crate::engine::throttle::{Error as ThrottleError, Throttle};
use crate::plan::Sources;
use crate::plan::{self, Graph};
use crate::sql::Db;
use crate::sql::statements::{ChildSql, RuleSql};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `lethe check` found: printed as a table or JSON, and the exit code.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Each is `file:line:col: message`.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// What each rule will do that is worth knowing: the walk it takes.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Sources that could not be reached.
    pub unreachable: Vec<String>,
    pub rules_checked: usize,
    /// Each rule's foreign-key graph (`--graph` only).
    #[serde(skip)]
    pub graphs: Vec<RuleGraph>,
    /// Personal-looking columns no rule covers (`--coverage` only).
    #[serde(skip)]
    pub coverage: Option<plan::coverage::Coverage>,
}

impl CheckReport {
    /// Whether `check` passes: no problem and every source reached
    /// (warnings do not fail it).
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.unreachable.is_empty()
    }
}

/// What `check` looks at beyond the errors and warnings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Keep each rule's foreign-key graph for `--graph`.
    pub graph: bool,
    /// Map personal-looking columns no rule covers (`--coverage`).
    pub coverage: bool,
}

/// One rule's foreign-key graph, for `check --graph`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleGraph {
    pub job: String,
    pub rule: String,
    pub at: String,
    pub graph: Graph,
}

/// Check every rule against the live schemas, with the default options.
pub async fn check(loaded: &Loaded, as_of: DateTime<Utc>) -> CheckReport {
    check_with(loaded, as_of, CheckOptions::default()).await
}

/// Check every rule against the live schemas: each source connected once,
/// each rule prepared as `plan` and `run` prepare it (so a rule this rejects
/// never runs), plus the graphs and coverage `opts` ask for.
pub async fn check_with(loaded: &Loaded, as_of: DateTime<Utc>, opts: CheckOptions) -> CheckReport {
    let mut report = CheckReport::default();
    let mut sources = Sources::new(loaded);
    for name in loaded.config.sources.keys() {
        if let Err(e) = sources.get(name).await {
            report.unreachable.push(e);
        }
    }
    stores(loaded, &mut report).await;
    throttles(loaded, &mut sources, &mut report).await;
    crate::requests::process::calendar_warnings(loaded, as_of, &mut report.warnings).await;
    for job in &loaded.jobs {
        for rule in &job.rules {
            let Ok(db) = sources.get(&rule.target.source).await else {
                continue;
            };
            report.rules_checked += 1;
            let at = format!("{}: job `{}` rule `{}`", rule.origin, job.name, rule.name);
            // The same analysis `plan` and `run` make before they start.
            let inspection = plan::inspect(db, rule, as_of).await;
            for p in &inspection.problems {
                report.problems.push(format!(
                    "{}: job `{}` rule `{}`: {}",
                    p.origin.as_ref().unwrap_or(&rule.origin),
                    job.name,
                    rule.name,
                    p.message
                ));
            }
            for w in &inspection.warnings {
                report.warnings.push(format!("{at}: {w}"));
            }
            if opts.graph
                && let Some(g) = &inspection.graph
            {
                report.graphs.push(RuleGraph {
                    job: job.name.clone(),
                    rule: rule.name.clone(),
                    at: rule.origin.to_string(),
                    graph: g.clone(),
                });
            }
            if let Some(sql) = &inspection.sql {
                if let Err(e) = probe(db, sql).await {
                    report
                        .problems
                        .push(format!("{at}: the rule's query fails: {e}"));
                }
                indexes(db, rule, sql, &at, &mut report);
            }
        }
    }
    if opts.coverage {
        report.coverage = Some(plan::coverage::map(loaded, &mut sources).await);
    }
    sources.close().await;
    report
}

/// Every store answers, and says it is where the config says (O11).
async fn stores(loaded: &Loaded, report: &mut CheckReport) {
    for store in loaded.config.stores.values() {
        let s = crate::objects::open(store).await;
        match s.probe().await {
            Err(e) => report
                .unreachable
                .push(format!("{e} ({})", store.display())),
            Ok(p) => {
                if let (Some(actual), Some(declared)) = (&p.region, &store.region)
                    && actual != declared
                {
                    report.problems.push(format!(
                        "{}: store `{}`: {} is in region `{actual}`, but the config declares `{declared}`",
                        store.origin,
                        store.name,
                        store.display()
                    ));
                }
                if let Some(actual) = &p.region
                    && !loaded.config.allowed_regions.is_empty()
                    && !loaded.config.allowed_regions.contains(actual)
                {
                    report.problems.push(format!(
                        "{}: store `{}`: {} is in region `{actual}`, which is not in allowed_regions: personal data must stay in-country",
                        store.origin,
                        store.name,
                        store.display()
                    ));
                }
            }
        }
    }
    for job in &loaded.jobs {
        report.rules_checked += job.object_rules.len();
    }
}

/// What every source's `pause_when` reads now (a note), whether a run
/// started now would pause (a warning), and a replica that cannot be read
/// or is no replica (a problem: every rule on the source would fail on its
/// first batch).
async fn throttles(loaded: &Loaded, sources: &mut Sources<'_>, report: &mut CheckReport) {
    for (name, src) in &loaded.config.sources {
        let Some(when) = &src.pause_when else {
            continue;
        };
        let Ok(db) = sources.get(name).await else {
            continue;
        };
        let at = format!("source `{name}`: pause_when");
        let readings = match Throttle::connect(when.clone(), db).await {
            Ok(mut t) => t.readings().await.map(|r| {
                (
                    t.describe(&r),
                    t.over(&r)
                        .map(|(reason, reading)| (reason, reading, t.threshold(reason))),
                )
            }),
            Err(e) => Err(e),
        };
        match readings {
            Ok((now, over)) => {
                report.notes.push(format!("{at}: now {now}"));
                if let Some((reason, reading, threshold)) = over {
                    report.warnings.push(format!(
                        "{at}: a run started now would pause: {} is {reading}, over {threshold}",
                        reason.as_str()
                    ));
                }
            }
            // These name the source and `pause_when` themselves.
            Err(e @ (ThrottleError::NotAReplica { .. } | ThrottleError::GaveUp { .. })) => {
                report.problems.push(e.to_string())
            }
            Err(e) => report.problems.push(format!("{at}: {e}")),
        }
    }
}

/// Run the rule's count once, so a bad `where` shows here and not at 2 a.m.
async fn probe(db: &Db, sql: &RuleSql) -> Result<(), crate::error::Error> {
    db.count(&sql.count_eligible(db.dialect()))
        .await
        .map(|_| ())
}

/// Index, walk and concurrency warnings (the foreign keys are the graph's).
fn indexes(db: &Db, rule: &Rule, sql: &RuleSql, at: &str, report: &mut CheckReport) {
    let w = crate::plan::walk_report(sql);
    report.notes.push(format!(
        "{at}: batches walk the {} `{}` ({})",
        w.by.name(),
        w.column,
        w.why
    ));
    if sql.walk == crate::config::Walk::Select
        && let Some(sel) = &sql.select
        && !sql.table.info.indexed.contains(&sel.column.name)
    {
        report.warnings.push(format!(
            "{at}: {}.{} has no index; every batch will scan the table",
            rule.target, sel.column.name
        ));
    }
    let d = db.dialect();
    if sql.walk == crate::config::Walk::Select
        && !sql.one_statement(d)
        && let Some(sel) = &sql.select
        && sql.table.info.indexed.contains(&sel.column.name)
        && d.sorts_every_due_row(&sql.table.info, &sel.column.name, &sql.key.name)
    {
        report.warnings.push(format!(
            "{at}: {} is partitioned and no index leads with (`{}`, `{}`): every batch of walk = \"select\" sorts all the rows still due; add that index, or let Lethe walk the key",
            rule.target, sel.column.name, sql.key.name
        ));
    }
    if rule.concurrency > 1 {
        if let Some(why) = crate::plan::walk::why_one_worker(db, sql) {
            report.warnings.push(format!(
                "{at}: concurrency {} has no effect here ({why}); the rule runs one batch at a time",
                rule.concurrency
            ));
        } else if rule.concurrency > db.max_connections as usize {
            report.warnings.push(format!(
                "{at}: concurrency {} is capped at the source's max_connections ({})",
                rule.concurrency, db.max_connections
            ));
        }
    }
    child_indexes(&rule.children, &sql.children, at, report);
}

fn child_indexes(cfg: &[Child], prepared: &[ChildSql], at: &str, report: &mut CheckReport) {
    for (c, p) in cfg.iter().zip(prepared) {
        if !p.table.info.indexed.contains(&p.fk.name) {
            report.warnings.push(format!(
                "{at}: child {}.{} has no index; every batch will scan {}",
                c.target, c.foreign_key, c.target
            ));
        }
        child_indexes(&c.children, &p.children, at, report);
    }
}
