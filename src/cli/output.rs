//! Rendering reports as tables (people) or JSON Lines (machines).
//!
//! JSON Lines: one object per line, each with `"v": 1` (format version) and a
//! `type` field: `rule`, `summary`, `check`, `graph`, `coverage`, `verify`, `search_hit`,
//! `search_summary`, `report`, `request`, `request_receipt`. Documented in the README.

use crate::audit::report::Totals as ReportTotals;
use crate::audit::search::{Hit, Stats};
use crate::audit::verify::FileReport;
use crate::check::CheckReport;
use crate::engine::{JobReport, RuleReport, RuleStatus, RunReport};
use serde_json::json;

pub(crate) const OUTPUT_VERSION: u32 = 1;

fn status_word(s: &RuleStatus) -> &'static str {
    match s {
        RuleStatus::Pending => "pending",
        RuleStatus::Done => "done",
        RuleStatus::Guard => "GUARD",
        RuleStatus::Failed => "FAILED",
        RuleStatus::Interrupted => "interrupted",
    }
}

/// The run report as people read it: one row per rule (and per child table,
/// object store and partition under it), notes under their row, then the
/// run's totals.
pub(crate) fn run_table(r: &RunReport, dry: bool) -> String {
    let mut table = RunTable::new(dry);
    for j in &r.jobs {
        if j.rules.is_empty() {
            table.push_job_without_rules(j);
        }
        for rule in &j.rules {
            table.push_rule(rule);
        }
    }
    let mut out = table.layout();
    out.push_str(&run_summary(r, dry));
    out.push_str(&pending_section(&r.pending));
    out.push_str(&super::requests::run_section(&r.requests));
    out
}

/// The run table being built: its rows (the first is the heading) and the
/// notes printed under a row (`(rows before the note, text)`).
struct RunTable {
    dry: bool,
    rows: Vec<[String; 8]>,
    notes: Vec<(usize, String)>,
}

impl RunTable {
    fn new(dry: bool) -> Self {
        let count_head = if dry { "WOULD" } else { "DONE" };
        let rows: Vec<[String; 8]> = vec![[
            "JOB".into(),
            "RULE".into(),
            "POLICY".into(),
            "TARGET".into(),
            "ACTION".into(),
            count_head.into(),
            "HELD".into(),
            "STATUS".into(),
        ]];
        RunTable {
            dry,
            rows,
            notes: Vec::new(),
        }
    }

    /// A job with no rules still gets a row, with its status.
    fn push_job_without_rules(&mut self, j: &JobReport) {
        self.rows.push([
            j.job.clone(),
            "-".into(),
            j.policy.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            j.status.to_string(),
        ]);
    }

    /// The rule's row, the rows under it, then its notes.
    fn push_rule(&mut self, rule: &RuleReport) {
        let n = if self.dry { rule.matched } else { rule.done };
        self.rows.push([
            rule.job.clone(),
            match &rule.request {
                Some(req) => format!("{} [{req}]", rule.rule),
                None => rule.rule.clone(),
            },
            rule.policy.clone(),
            rule.target.clone(),
            rule.action.to_string(),
            n.to_string(),
            rule.held.to_string(),
            status_word(&rule.status).into(),
        ]);
        self.push_rule_details(rule);
        self.push_rule_notes(rule);
    }

    /// Child tables, object stores and partitions, one row each under the rule.
    fn push_rule_details(&mut self, rule: &RuleReport) {
        for c in &rule.children {
            self.rows.push([
                String::new(),
                String::new(),
                String::new(),
                format!("└ {} ({})", c.target, c.via),
                c.action.clone(),
                c.count.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        for o in &rule.objects {
            self.rows.push([
                String::new(),
                String::new(),
                String::new(),
                format!("└ objects {}", o.via),
                format!("erase: {} versions, {} bytes", o.versions, o.bytes),
                o.objects.to_string(),
                o.held.to_string(),
                String::new(),
            ]);
        }
        // `partitions = "drop"`: each wholly due partition, dropped whole
        // (or to drop) or batched with the reason.
        for p in &rule.partitions {
            self.rows.push([
                String::new(),
                String::new(),
                String::new(),
                format!("└ partition {} (< {})", p.partition, p.below),
                match p.status.as_str() {
                    "would_drop" => "drop whole".to_string(),
                    "dropped" => "dropped whole".to_string(),
                    _ => format!("batched: {}", p.reason.as_deref().unwrap_or("-")),
                },
                p.rows.to_string(),
                String::new(),
                String::new(),
            ]);
        }
    }

    /// What the rule's row needs said beside its numbers.
    fn push_rule_notes(&mut self, rule: &RuleReport) {
        let dry = self.dry;
        if let Some(ds) = &rule.dead_space {
            self.notes.push((
                self.rows.len(),
                format!(
                    "dead space in {}: {} bytes{} ({}): {}",
                    ds.tables.join(", "),
                    ds.bytes,
                    ds.dead_rows
                        .map(|n| format!(", {n} dead row versions"))
                        .unwrap_or_default(),
                    ds.state,
                    ds.note
                ),
            ));
        }
        if let Some(m) = &rule.message {
            self.notes.push((self.rows.len(), m.clone()));
        }
        if dry && let Some(w) = &rule.walk {
            self.notes.push((
                self.rows.len(),
                format!("walks the {} `{}` ({})", w.by.name(), w.column, w.why),
            ));
        }
        for n in &rule.notes {
            self.notes.push((self.rows.len(), n.clone()));
        }
        if let Some(b) = &rule.batch_sizes {
            self.notes.push((
                self.rows.len(),
                format!(
                    "batches sized for {} ms: first {}, smallest {}, largest {}, last {}",
                    b.target_ms, b.first, b.min, b.max, b.last
                ),
            ));
        }
        for k in &rule.kept {
            self.notes.push((self.rows.len(), format!("kept: {k}")));
        }
        if rule.retries > 0 {
            self.notes.push((
                self.rows.len(),
                format!(
                    "{} batch attempt(s) rolled back by a deadlock or lock timeout and tried again",
                    rule.retries
                ),
            ));
        }
    }

    /// Columns padded to their widest cell (counts right-aligned), each
    /// row's notes under it.
    fn layout(&self) -> String {
        let mut out = String::new();
        for (i, line) in column_lines(&self.rows, &[5, 6]).into_iter().enumerate() {
            out.push_str(&line);
            out.push('\n');
            for (after, note) in &self.notes {
                if *after == i + 1 {
                    out.push_str(&format!("    ! {note}\n"));
                }
            }
        }
        out
    }
}

/// The run's totals line, its audit file, and object totals when any.
fn run_summary(r: &RunReport, dry: bool) -> String {
    let mut out = String::new();
    let t = &r.totals;
    out.push_str(&format!(
        "\nrun {} ({}): {}; deleted {}, anonymized {}, held {}, failed rules {}, guard trips {}\naudit: {}\n",
        r.run, if dry { "dry run" } else { "executed" }, r.status, t.deleted, t.anonymized, t.held, t.failed_rules, t.guard_trips, r.audit_file
    ));
    if t.objects_erased > 0 || t.objects_held > 0 {
        out.push_str(&format!(
            "objects: erased {} ({} versions, {} bytes), held by Object Lock {}\n",
            t.objects_erased, t.object_versions_erased, t.object_bytes_erased, t.objects_held
        ));
    }
    out
}

/// Objects Object Lock keeps after their rows went: counts per store and reason.
fn pending_section(lines: &[crate::engine::PendingLine]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let total: u64 = lines.iter().map(|l| l.objects).sum();
    let mut out = format!("pending objects (kept by Object Lock, retried every run): {total}\n");
    for l in lines {
        let why = match (l.reason.as_str(), &l.until) {
            ("legal_hold", _) => "legal hold".to_string(),
            (r, Some(u)) => format!("{r} retention until {u}"),
            (r, None) => format!("{r} retention"),
        };
        out.push_str(&format!("  {}: {} {why}\n", l.store, l.objects));
    }
    out
}

pub(crate) fn run_json(r: &RunReport) -> String {
    let mut out = String::new();
    for j in &r.jobs {
        for rule in &j.rules {
            let mut v = serde_json::to_value(rule).expect("serializes");
            v["v"] = json!(OUTPUT_VERSION);
            v["type"] = json!("rule");
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    for l in &r.pending {
        let mut v = serde_json::to_value(l).expect("serializes");
        v["v"] = json!(OUTPUT_VERSION);
        v["type"] = json!("pending");
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out.push_str(&super::requests::run_json_lines(&r.requests));
    let v = json!({
        "v": OUTPUT_VERSION,
        "type": "summary",
        "run": r.run,
        "mode": r.mode,
        "as_of": r.as_of,
        "status": r.status,
        "totals": r.totals,
        "jobs": r.jobs.iter().map(|j| json!({"job": j.job, "policy": j.policy, "status": j.status})).collect::<Vec<_>>(),
        "audit_file": r.audit_file,
        "exit_code": r.exit.code(),
    });
    out.push_str(&v.to_string());
    out.push('\n');
    out
}

pub(crate) fn check_table(c: &CheckReport) -> String {
    let mut out = String::new();
    for g in &c.graphs {
        out.push_str(&format!(
            "graph: job `{}` rule `{}` ({})\n",
            g.job, g.rule, g.at
        ));
        out.push_str(&g.graph.render());
        out.push('\n');
    }
    if let Some(cov) = &c.coverage {
        out.push_str(&format!(
            "coverage: {} personal-looking columns and {} subject references no rule covers\n",
            cov.columns.len(),
            cov.references.len()
        ));
        for col in &cov.columns {
            out.push_str(&format!(
                "  column {}.{} ({}) looks personal (pattern `{}`)\n",
                col.table, col.column, col.data_type, col.pattern
            ));
        }
        for r in &cov.references {
            out.push_str(&format!(
                "  table {} references {} by {} (constraint `{}`)\n",
                r.table,
                r.references,
                crate::sql::schema::list(&r.columns),
                r.constraint
            ));
        }
        for u in &cov.unreachable {
            out.push_str(&format!("  not read: {u}\n"));
        }
        out.push('\n');
    }
    for u in &c.unreachable {
        out.push_str(&format!("error: {u}\n"));
    }
    for p in &c.problems {
        out.push_str(&format!("error: {p}\n"));
    }
    for w in &c.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for n in &c.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str(&format!(
        "{} rules checked: {} errors, {} warnings, {} unreachable sources\n",
        c.rules_checked,
        c.problems.len(),
        c.warnings.len(),
        c.unreachable.len()
    ));
    out
}

pub(crate) fn check_json(c: &CheckReport) -> String {
    let mut out = String::new();
    for g in &c.graphs {
        let mut v = serde_json::to_value(g).expect("serializes");
        v["v"] = json!(OUTPUT_VERSION);
        v["type"] = json!("graph");
        out.push_str(&format!("{v}\n"));
    }
    if let Some(cov) = &c.coverage {
        let mut v = serde_json::to_value(cov).expect("serializes");
        v["v"] = json!(OUTPUT_VERSION);
        v["type"] = json!("coverage");
        out.push_str(&format!("{v}\n"));
    }
    let mut v = serde_json::to_value(c).expect("serializes");
    v["v"] = json!(OUTPUT_VERSION);
    v["type"] = json!("check");
    v["ok"] = json!(c.ok());
    out.push_str(&format!("{v}\n"));
    out
}

pub(crate) fn verify_table(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if r.missing {
            out.push_str(&format!(
                "{}: MISSING (run {})\n",
                r.file.display(),
                r.run.as_deref().unwrap_or("-")
            ));
        } else {
            out.push_str(&format!(
                "{}: {} records, {} .. {}, {}, {}\n",
                r.file.display(),
                r.records,
                r.first_ts.as_deref().unwrap_or("-"),
                r.last_ts.as_deref().unwrap_or("-"),
                r.chain_status(),
                r.seal_status()
            ));
        }
        for p in &r.problems {
            out.push_str(&format!("    ! {p}\n"));
        }
    }
    let missing = reports.iter().filter(|r| r.missing).count();
    let logs = reports.len() - missing;
    let bad = reports.iter().filter(|r| !r.missing && !r.ok()).count();
    out.push_str(&format!(
        "{} logs verified, {} ok, {} failed",
        logs,
        logs - bad,
        bad
    ));
    if missing > 0 {
        out.push_str(&format!("; MISSING runs: {missing}"));
    }
    out.push('\n');
    out
}

pub(crate) fn verify_json(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let mut v = serde_json::to_value(r).expect("serializes");
        v["v"] = json!(OUTPUT_VERSION);
        v["type"] = json!("verify");
        v["ok"] = json!(r.ok());
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Lay out rows of cells in aligned columns (numeric columns right-aligned).
pub(crate) fn columns<R: AsRef<[String]>>(rows: &[R], right: &[usize]) -> String {
    column_lines(rows, right)
        .into_iter()
        .map(|l| l + "\n")
        .collect()
}

/// Each row as one line: cells padded to their column's widest cell, two
/// spaces apart, the columns in `right` right-aligned, trailing blanks cut.
fn column_lines<R: AsRef<[String]>>(rows: &[R], right: &[usize]) -> Vec<String> {
    let n = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut width = vec![0usize; n];
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.as_ref().iter().enumerate() {
                let pad = " ".repeat(width[c].saturating_sub(cell.chars().count()));
                if right.contains(&c) {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                line.push_str("  ");
            }
            line.trim_end().to_string()
        })
        .collect()
}

pub(crate) fn search_table(hits: &[Hit], stats: &Stats) -> String {
    let mut out = String::new();
    if !hits.is_empty() {
        let mut rows = vec![
            [
                "TIME", "RUN", "JOB", "RULE", "POLICY", "ACTION", "TARGET", "OUTCOME", "BATCH",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for h in hits {
            rows.push(vec![
                h.ts.get(..19).unwrap_or(&h.ts).replace('T', " "),
                h.run.get(..8).unwrap_or(&h.run).to_string(),
                h.job.clone(),
                h.rule.clone(),
                h.policy.clone(),
                h.action.clone(),
                h.target.clone(),
                if h.verified {
                    h.outcome.clone()
                } else {
                    format!("{} (UNVERIFIED LOG)", h.outcome)
                },
                h.batch.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&columns(&rows, &[8]));
        let mut with: Vec<String> = Vec::new();
        for h in hits {
            for c in &h.children {
                let s = format!("{} {} (via {})", c.target, c.action, c.via);
                if !with.contains(&s) {
                    with.push(s);
                }
            }
        }
        if !with.is_empty() {
            out.push_str(&format!(
                "with the subject's rows in: {}\n",
                with.join(", ")
            ));
        }
        out.push('\n');
    }
    let logs_with_hits = hits
        .iter()
        .map(|h| &h.file)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    out.push_str(&format!(
        "{} records about this subject in {} of {} logs ({} records searched; key ids {})\n",
        hits.len(),
        logs_with_hits,
        stats.logs,
        stats.records,
        stats.key_ids.join(", ")
    ));
    if let Some(h) = hits.first() {
        out.push_str(&format!("subject hash (key {}): {}\n", h.kid, h.subject));
    }
    out
}

pub(crate) fn search_json(hits: &[Hit], stats: &Stats) -> String {
    let mut out = String::new();
    for h in hits {
        let mut v = serde_json::to_value(h).expect("serializes");
        v["v"] = json!(OUTPUT_VERSION);
        v["type"] = json!("search_hit");
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let mut v = serde_json::to_value(stats).expect("serializes");
    v["v"] = json!(OUTPUT_VERSION);
    v["type"] = json!("search_summary");
    out.push_str(&v.to_string());
    out.push('\n');
    out
}

pub(crate) fn report_table(file: &std::path::Path, t: &ReportTotals) -> String {
    format!(
        "report: {} ({} runs; erased {}, anonymized {}, held {}, failures {}, guard trips {}; {} logs verified, {} failed)\n",
        file.display(),
        t.runs,
        t.erased,
        t.anonymized,
        t.held,
        t.failures,
        t.guard_trips,
        t.logs_ok,
        t.logs_failed
    )
}

pub(crate) fn report_json(file: &std::path::Path, t: &ReportTotals) -> String {
    format!(
        "{}\n",
        json!({
            "v": OUTPUT_VERSION,
            "type": "report",
            "file": file.display().to_string(),
            "runs": t.runs,
            "executed_runs": t.executed_runs,
            "erased": t.erased,
            "anonymized": t.anonymized,
            "child_rows_deleted": t.child_rows_deleted,
            "child_rows_anonymized": t.child_rows_anonymized,
            "held": t.held,
            "failures": t.failures,
            "guard_trips": t.guard_trips,
            "logs_ok": t.logs_ok,
            "logs_failed": t.logs_failed,
        })
    )
}
