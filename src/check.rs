//! `lethe check`, online part: every rule against the live schema.
//!
//! Besides names and types, it finds foreign keys into a deleted table that no
//! child rule covers: the delete would fail (RESTRICT / NO ACTION), or the
//! database would cascade or null rows the audit never sees.

use crate::config::{Action, Child, Loaded, Rule, Strategy, TableRef};
use crate::engine::{Sources, prepare_rule};
use crate::sql::statements::{ChildSql, RuleSql};
use crate::sql::{Db, schema};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Each is `file:line:col: message`.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// Sources that could not be reached.
    pub unreachable: Vec<String>,
    pub rules_checked: usize,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.unreachable.is_empty()
    }
}

pub async fn check(loaded: &Loaded, as_of: DateTime<Utc>) -> CheckReport {
    let mut report = CheckReport::default();
    let mut sources = Sources::new(loaded);
    for name in loaded.config.sources.keys() {
        if let Err(e) = sources.get(name).await {
            report.unreachable.push(e);
        }
    }
    stores(loaded, &mut report).await;
    crate::requests::process::calendar_warnings(loaded, as_of, &mut report.warnings).await;
    for job in &loaded.jobs {
        for rule in &job.rules {
            let Ok(db) = sources.get(&rule.target.source).await else {
                continue;
            };
            report.rules_checked += 1;
            match prepare_rule(db, rule, as_of).await {
                Err(problems) => {
                    for p in problems {
                        report.problems.push(format!(
                            "{}: job `{}` rule `{}`: {p}",
                            rule.origin, job.name, rule.name
                        ));
                    }
                }
                Ok(sql) => {
                    let at = format!("{}: job `{}` rule `{}`", rule.origin, job.name, rule.name);
                    if let Err(e) = probe(db, &sql).await {
                        report
                            .problems
                            .push(format!("{at}: the rule's query fails: {e}"));
                    }
                    coverage(db, rule, &sql, &at, &mut report).await;
                }
            }
        }
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

/// Run the rule's count once, so a bad `where` shows here and not at 2 a.m.
async fn probe(db: &Db, sql: &RuleSql) -> Result<(), crate::error::Error> {
    db.count(&sql.count_eligible(db.dialect()))
        .await
        .map(|_| ())
}

async fn coverage(db: &Db, rule: &Rule, sql: &RuleSql, at: &str, report: &mut CheckReport) {
    if let Some(sel) = &sql.select
        && !sql.table.info.indexed.contains(&sel.column.name)
    {
        report.warnings.push(format!(
            "{at}: {}.{} has no index; every batch will scan the table",
            rule.target, sel.column.name
        ));
    }
    if rule.concurrency > 1 {
        if let Some(why) = crate::engine::why_one_worker(db, sql) {
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
    if matches!(rule.action, Action::Delete) {
        covered(
            &rule.target,
            &sql.table.info.referenced_by,
            &rule.children,
            at,
            report,
        );
    }
    walk(db, &rule.children, &sql.children, at, report).await;
}

fn walk<'a>(
    db: &'a Db,
    cfg: &'a [Child],
    prepared: &'a [ChildSql],
    at: &'a str,
    report: &'a mut CheckReport,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        for (c, p) in cfg.iter().zip(prepared) {
            if !p.table.info.indexed.contains(&p.fk.name) {
                report.warnings.push(format!(
                    "{at}: child {}.{} has no index; every batch will scan {}",
                    c.target, c.foreign_key, c.target
                ));
            }
            if matches!(c.action, Action::Delete) {
                match schema::table_info(db, &c.target).await {
                    Ok(Some(info)) => {
                        covered(&c.target, &info.referenced_by, &c.children, at, report)
                    }
                    Ok(None) => {}
                    Err(e) => report.problems.push(format!("{at}: {e}")),
                }
            }
            walk(db, &c.children, &p.children, at, report).await;
        }
    })
}

/// Every foreign key into `target` must be handled by one of `children`.
fn covered(
    target: &TableRef,
    fks: &[schema::ForeignKey],
    children: &[Child],
    at: &str,
    report: &mut CheckReport,
) {
    for fk in fks {
        let child = children.iter().find(|c| {
            let name = match &c.target.schema {
                Some(s) => format!("{s}.{}", c.target.table),
                None => c.target.table.clone(),
            };
            name == fk.table && c.foreign_key == fk.column
        });
        let releases = child.is_some_and(|c| match &c.action {
            Action::Delete => true,
            Action::Anonymize(cols) => cols
                .iter()
                .any(|(col, s)| *col == fk.column && *s == Strategy::Null),
        });
        if releases {
            continue;
        }
        let consequence = match fk.on_delete.as_str() {
            "CASCADE" => "the database would delete those rows and the audit would never see them",
            "SET NULL" | "SET DEFAULT" => {
                "the database would change those rows and the audit would never see them"
            }
            _ => "the delete would fail on every row that has one",
        };
        let what = if child.is_some() {
            format!(
                "the child rule for {}.{} keeps the foreign key (anonymize it to `null` or delete the rows)",
                fk.table, fk.column
            )
        } else {
            format!("no child rule covers {}.{}", fk.table, fk.column)
        };
        report.problems.push(format!(
            "{at}: {}.{} references {target}.{} ON DELETE {}: {what}; {consequence}",
            fk.table, fk.column, fk.referenced_column, fk.on_delete
        ));
    }
}
