//! `lethe audit report`: one self-contained HTML page for people.
//!
//! Runs over time, per job and rule what was erased, anonymized, held and
//! what failed, guard trips, the verification verdict of every log and the
//! policy section each job enforces. Charts are inline SVG drawn here; styles
//! are inline; there is no script, no font, no image and no link to fetch,
//! and a Content-Security-Policy forbids the browser to fetch anything, so
//! the page can be mailed, archived and opened offline.
//!
//! The page shows counts, names from the configuration and run ids — never a
//! subject hash, never a value read from a row.
//!
//! Counting: a batch counts once its run did not roll it back; rows of child
//! tables are counted separately from the rule's own table; `held` is what
//! the most recent run found held (holds are re-counted every run); failures
//! are failed rules and rolled-back batches.

use super::event::{ChildCount, Event, Scope};
use super::findings::FileReport;
use super::log::Log;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

/// What the configuration says of a job (when the config is at hand).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobMeta {
    pub policy: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RunRow {
    pub file: String,
    pub started: String,
    pub ended: String,
    /// `run`, `dry run` or `plan`.
    pub mode: String,
    pub jobs: Vec<String>,
    pub status: String,
    pub deleted: u64,
    pub anonymized: u64,
    pub held: u64,
    pub failures: u64,
    pub guard_trips: u64,
    pub records: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RuleRow {
    pub job: String,
    pub rule: String,
    pub policy: String,
    pub target: String,
    pub action: String,
    pub erased: u64,
    pub anonymized: u64,
    /// Rows of child tables: (target, action) → rows.
    pub children: BTreeMap<(String, String), u64>,
    /// Held in the most recent run that reported the rule's holds.
    pub held: u64,
    pub failures: u64,
    pub guard_trips: u64,
    pub batches: u64,
    pub subjects: u64,
    pub last_ts: String,
    subject_set: HashSet<u64>,
}

/// Totals over every log read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub runs: u64,
    pub executed_runs: u64,
    pub erased: u64,
    pub anonymized: u64,
    pub child_rows_deleted: u64,
    pub child_rows_anonymized: u64,
    pub held: u64,
    pub failures: u64,
    pub guard_trips: u64,
    pub logs_ok: u64,
    pub logs_failed: u64,
}

/// Collects what the page shows, one log at a time (logs in time order).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub runs: Vec<RunRow>,
    pub rules: BTreeMap<(String, String), RuleRow>,
    /// Job → the policy sections its records cite (normally one).
    pub job_policies: BTreeMap<String, BTreeSet<String>>,
    /// Erasure requests by id, from their `request_*` records.
    pub requests: BTreeMap<String, RequestRow>,
}

/// One erasure request as its records tell it (no subject, only the id).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestRow {
    pub received: String,
    pub due: String,
    /// `open`, `held`, `done` or `rejected`.
    pub state: String,
    pub completed: Option<String>,
    pub on_time: Option<bool>,
}

fn rule_entry<'a>(
    rules: &'a mut BTreeMap<(String, String), RuleRow>,
    job: &str,
    rule: &str,
) -> &'a mut RuleRow {
    rules
        .entry((job.to_string(), rule.to_string()))
        .or_insert_with(|| RuleRow {
            job: job.to_string(),
            rule: rule.to_string(),
            ..RuleRow::default()
        })
}

fn subject_key(h: &str) -> u64 {
    u64::from_str_radix(h.get(..16).unwrap_or(h), 16).unwrap_or(0)
}

/// Batches of one log that do not count: rolled back, or never confirmed
/// (job, rule, batch).
struct SkippedBatches<'a> {
    rolled_back: BTreeSet<(&'a str, &'a str, u64)>,
    unconfirmed: BTreeSet<(&'a str, &'a str, u64)>,
}

impl SkippedBatches<'_> {
    fn contains(&self, job: &str, rule: &str, batch: u64) -> bool {
        self.rolled_back.contains(&(job, rule, batch))
            || self.unconfirmed.contains(&(job, rule, batch))
    }
}

/// One record about a rule, with the rule it is about and its instant.
struct ScopedEntry<'a> {
    scope: Scope<'a>,
    event: &'a Event,
    ts: &'a str,
}

/// The run's row before its records are read: file, first and last instant,
/// and `not sealed` until a `run_end` says otherwise.
fn new_run_row(log: &Log) -> RunRow {
    RunRow {
        file: log.report.file.display().to_string(),
        started: log.report.first_ts.clone().unwrap_or_default(),
        ended: log.report.last_ts.clone().unwrap_or_default(),
        status: "not sealed".into(),
        records: log.entries.len() as u64,
        ..RunRow::default()
    }
}

/// Counts a scoped record on its rule `r` and on the run.
fn count_scoped(
    r: &mut RuleRow,
    run: &mut RunRow,
    entry: &ScopedEntry<'_>,
    skipped: &SkippedBatches<'_>,
) {
    let ts = entry.ts;
    match entry.event {
        Event::Batch {
            action,
            batch,
            count,
            children,
            subjects,
            ..
        } => {
            r.action = action.clone();
            r.last_ts = ts.to_string();
            if skipped.contains(entry.scope.job, entry.scope.rule, *batch) {
                return;
            }
            count_batch(r, run, action, *count, children, subjects);
        }
        Event::BatchRollback { .. } | Event::BatchUnknown { .. } => {
            r.failures += 1;
            run.failures += 1;
        }
        // Object rules: objects erased count as erased, locked ones as held.
        Event::ObjectBatch { objects, .. } => {
            r.action = "erase".into();
            r.last_ts = ts.to_string();
            r.batches += 1;
            r.erased += objects.objects;
            run.deleted += objects.objects;
        }
        Event::ObjectHold { objects, .. } => {
            r.held += objects.objects;
            run.held += objects.objects;
        }
        Event::ObjectErrors { failed, .. } => {
            let n: u64 = failed.values().sum();
            r.failures += n;
            run.failures += n;
        }
        Event::Hold { count, .. } => {
            r.held = *count;
            run.held += count;
        }
        Event::Guard { .. } => {
            r.guard_trips += 1;
            r.last_ts = ts.to_string();
            run.guard_trips += 1;
        }
        Event::Failure { .. } => {
            r.failures += 1;
            r.last_ts = ts.to_string();
            run.failures += 1;
        }
        Event::Plan { action, .. } => r.action = action.clone(),
        // No scope: handled by `add_unscoped` (`scope()` is `None` for these).
        Event::RunStart { .. }
        | Event::PendingRetry { .. }
        | Event::Locked { .. }
        | Event::Recovery { .. }
        | Event::RunEnd { .. }
        | Event::RequestReceived { .. }
        | Event::RequestDone { .. }
        | Event::RequestHeld { .. }
        | Event::RequestRejected { .. } => {}
    }
}

/// A batch that counts: its rows as erased or anonymized, its child rows,
/// and its distinct subjects.
fn count_batch(
    r: &mut RuleRow,
    run: &mut RunRow,
    action: &str,
    count: u64,
    children: &[ChildCount],
    subjects: &[String],
) {
    r.batches += 1;
    if action == "delete" {
        r.erased += count;
        run.deleted += count;
    } else {
        r.anonymized += count;
        run.anonymized += count;
    }
    for c in children {
        *r.children
            .entry((c.target.clone(), c.action.clone()))
            .or_default() += c.count;
    }
    r.subject_set
        .extend(subjects.iter().map(|s| subject_key(s)));
    r.subjects = r.subject_set.len() as u64;
}

impl Report {
    /// Adds one log: its run row, and what each record says of its rule or
    /// of an erasure request.
    pub(crate) fn add_log(&mut self, log: &Log) {
        let skipped = SkippedBatches {
            rolled_back: log.rolled_back(),
            unconfirmed: log.unconfirmed(),
        };
        let mut run = new_run_row(log);
        for e in &log.entries {
            let event = &e.record.event;
            let Some(scope) = event.scope() else {
                self.add_unscoped(event, &mut run);
                continue;
            };
            let entry = ScopedEntry {
                scope,
                event,
                ts: &e.record.ts,
            };
            self.add_scoped(&entry, &skipped, &mut run);
        }
        self.runs.push(run);
    }

    /// A record about no rule: the run's own start and end, pending objects
    /// retried, and erasure requests.
    fn add_unscoped(&mut self, event: &Event, run: &mut RunRow) {
        match event {
            Event::RunStart {
                command,
                dry_run,
                jobs,
                ..
            } => {
                run.mode = match (command.as_str(), dry_run) {
                    ("plan", _) => "plan",
                    (_, true) => "dry run",
                    _ => "run",
                }
                .into();
                run.jobs = jobs.clone();
            }
            Event::RunEnd { status, .. } => run.status = status.clone(),
            // Pending objects erased once their hold ended count like
            // any other erased object.
            Event::PendingRetry { erased, .. } => run.deleted += erased.objects,
            _ => self.add_request_event(event),
        }
    }

    /// An erasure request's record moves its row on: received → open,
    /// held, done or rejected (a later hold never reopens a closed one).
    fn add_request_event(&mut self, event: &Event) {
        match event {
            Event::RequestReceived {
                request,
                received,
                due,
                ..
            } => {
                let r = self.requests.entry(request.clone()).or_default();
                r.received = received.clone();
                r.due = due.clone();
                if r.state.is_empty() {
                    r.state = "open".into();
                }
            }
            Event::RequestDone {
                request,
                received,
                due,
                completed,
                on_time,
                ..
            } => {
                let r = self.requests.entry(request.clone()).or_default();
                r.received = received.clone();
                r.due = due.clone();
                r.state = "done".into();
                r.completed = Some(completed.clone());
                r.on_time = Some(*on_time);
            }
            Event::RequestHeld { request, due, .. } => {
                let r = self.requests.entry(request.clone()).or_default();
                r.due = due.clone();
                if r.state != "done" && r.state != "rejected" {
                    r.state = "held".into();
                }
            }
            Event::RequestRejected { request, due, .. } => {
                let r = self.requests.entry(request.clone()).or_default();
                r.due = due.clone();
                r.state = "rejected".into();
            }
            _ => {}
        }
    }

    /// A record about one rule: files the job's policy, names the rule's
    /// policy and target, then counts the record on the rule and the run.
    fn add_scoped(
        &mut self,
        entry: &ScopedEntry<'_>,
        skipped: &SkippedBatches<'_>,
        run: &mut RunRow,
    ) {
        let scope = entry.scope;
        if let Some(policy) = scope.policy {
            self.job_policies
                .entry(scope.job.to_string())
                .or_default()
                .insert(policy.to_string());
        }
        let r = rule_entry(&mut self.rules, scope.job, scope.rule);
        if let Some(policy) = scope.policy {
            r.policy = policy.to_string();
        }
        if let Some(target) = scope.target {
            r.target = target.to_string();
        }
        count_scoped(r, run, entry, skipped);
    }

    pub(crate) fn totals(&self, verdicts: &[FileReport]) -> Totals {
        let mut t = Totals {
            runs: self.runs.len() as u64,
            executed_runs: self.runs.iter().filter(|r| r.mode == "run").count() as u64,
            ..Totals::default()
        };
        for r in self.rules.values() {
            t.erased += r.erased;
            t.anonymized += r.anonymized;
            t.held += r.held;
            t.failures += r.failures;
            t.guard_trips += r.guard_trips;
            for ((_, action), n) in &r.children {
                if action == "delete" {
                    t.child_rows_deleted += n;
                } else {
                    t.child_rows_anonymized += n;
                }
            }
        }
        t.logs_ok = verdicts.iter().filter(|v| v.ok()).count() as u64;
        t.logs_failed = verdicts.len() as u64 - t.logs_ok;
        t
    }

    /// The page. `verdicts`: every log's verification (with missing runs);
    /// `jobs`: the configuration's jobs, when at hand; `sources`: what was read.
    pub(crate) fn render(
        &self,
        verdicts: &[FileReport],
        jobs: &BTreeMap<String, JobMeta>,
        sources: &[String],
        generated: &str,
    ) -> String {
        let t = self.totals(verdicts);
        let mut h = String::with_capacity(64 * 1024);
        self.push_header(&mut h, sources, generated);
        push_banner(&mut h, &t, verdicts);
        push_cards(&mut h, &t);

        h.push_str("<section><h2>Runs over time</h2><p class=\"hint\">Rows erased and anonymized per executed run (rule tables; child rows not included). Red marks: failures or guard trips.</p>");
        h.push_str(&runs_chart(&self.runs));
        h.push_str("</section>\n");

        h.push_str("<section><h2>By job and rule</h2>");
        h.push_str(&rules_chart(&self.rules));
        h.push_str(&self.rules_table());
        h.push_str("</section>\n");

        if !self.requests.is_empty() {
            h.push_str(&self.requests_section(generated));
        }
        h.push_str(&self.jobs_table(jobs));
        h.push_str(&runs_table(&self.runs, verdicts));
        push_footer(&mut h);
        h
    }

    /// The page's head and title line: when it was made, from what, and the
    /// period its runs cover.
    fn push_header(&self, h: &mut String, sources: &[String], generated: &str) {
        let first = self
            .runs
            .iter()
            .map(|r| r.started.as_str())
            .filter(|s| !s.is_empty())
            .min();
        let last = self.runs.iter().map(|r| r.ended.as_str()).max();
        h.push_str(HEAD);
        let _ = writeln!(
            h,
            "<header><h1>Lethe audit report</h1><p class=\"meta\">Generated {} from {}. Period {} – {}.</p></header>",
            esc(generated),
            esc(&sources.join(", ")),
            esc(&first.map(short_ts).unwrap_or_else(|| "-".into())),
            esc(&last.map(short_ts).unwrap_or_else(|| "-".into())),
        );
    }

    /// Requests received, done on time, late, open, held and rejected, and
    /// one row per request (ids and instants only). An open request past its
    /// due instant as of `now` (the page's generation time) is late too.
    fn requests_section(&self, now: &str) -> String {
        let count = |f: &dyn Fn(&RequestRow) -> bool| {
            self.requests.values().filter(|r| f(r)).count() as u64
        };
        let overdue =
            |r: &RequestRow| r.state == "open" && !r.due.is_empty() && r.due.as_str() < now;
        let mut h = String::from("<section><h2>Erasure requests (policy VII(7))</h2>");
        let _ = write!(
            h,
            "<table id=\"requests-summary\"><thead><tr><th class=\"r\">received</th><th class=\"r\">done on time</th><th class=\"r\">done late</th><th class=\"r\">open</th><th class=\"r\">open and overdue</th><th class=\"r\">held</th><th class=\"r\">rejected</th></tr></thead><tbody><tr><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td></tr></tbody></table>",
            num(self.requests.len() as u64),
            num(count(&|r| r.on_time == Some(true))),
            num(count(&|r| r.on_time == Some(false))),
            num(count(&|r| r.state == "open")),
            num(count(&overdue)),
            num(count(&|r| r.state == "held")),
            num(count(&|r| r.state == "rejected")),
        );
        h.push_str("<table id=\"requests\"><thead><tr><th>request</th><th>received (UTC)</th><th>due (UTC)</th><th>state</th><th>completed (UTC)</th><th>on time</th></tr></thead><tbody>");
        for (id, r) in &self.requests {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(id),
                esc(&r.received),
                esc(&r.due),
                esc(if overdue(r) {
                    "open, OVERDUE"
                } else {
                    r.state.as_str()
                }),
                esc(r.completed.as_deref().unwrap_or("-")),
                match r.on_time {
                    Some(true) => "yes",
                    Some(false) => "late",
                    None => "-",
                }
            );
        }
        h.push_str("</tbody></table></section>\n");
        h
    }

    fn rules_table(&self) -> String {
        let mut h = String::from(
            "<table id=\"rules\"><thead><tr><th>job</th><th>rule</th><th>policy</th><th>target</th><th>action</th><th class=\"r\">erased</th><th class=\"r\">anonymized</th><th class=\"r\">held</th><th class=\"r\">failures</th><th class=\"r\">guard trips</th><th class=\"r\">subjects</th><th>child rows</th></tr></thead><tbody>",
        );
        for r in self.rules.values() {
            let children = r
                .children
                .iter()
                .map(|((t, a), n)| format!("{t} {a} {}", num(*n)))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = write!(
                h,
                "<tr data-job=\"{}\" data-rule=\"{}\"><td>{}</td><td>{}</td><td class=\"policy\">{}</td><td><code>{}</code></td><td>{}</td><td class=\"r erased\">{}</td><td class=\"r anonymized\">{}</td><td class=\"r held\">{}</td><td class=\"r failures{}\">{}</td><td class=\"r guard-trips{}\">{}</td><td class=\"r subjects\">{}</td><td class=\"small\">{}</td></tr>",
                esc(&r.job),
                esc(&r.rule),
                esc(&r.job),
                esc(&r.rule),
                esc(&r.policy),
                esc(&r.target),
                esc(&r.action),
                num(r.erased),
                num(r.anonymized),
                num(r.held),
                if r.failures > 0 { " warn" } else { "" },
                num(r.failures),
                if r.guard_trips > 0 { " warn" } else { "" },
                num(r.guard_trips),
                num(r.subjects),
                esc_keep_br(&children),
            );
        }
        h.push_str("</tbody></table>");
        h
    }

    fn jobs_table(&self, jobs: &BTreeMap<String, JobMeta>) -> String {
        let mut names: BTreeSet<&String> = self.job_policies.keys().collect();
        names.extend(jobs.keys());
        let mut h = String::from(
            "<section><h2>Jobs and the policy sections they enforce</h2><table id=\"jobs\"><thead><tr><th>job</th><th>policy section</th><th>what it does</th></tr></thead><tbody>",
        );
        for name in names {
            let recorded: Vec<&str> = self
                .job_policies
                .get(name)
                .map(|s| s.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let meta = jobs.get(name);
            let mut policy = if recorded.is_empty() {
                meta.map(|m| m.policy.clone()).unwrap_or_default()
            } else {
                recorded.join(", ")
            };
            if let Some(m) = meta
                && !recorded.is_empty()
                && !recorded.contains(&m.policy.as_str())
            {
                policy.push_str(&format!(" (job file now cites {})", m.policy));
            }
            let what = match meta {
                Some(m) => m.description.clone().unwrap_or_default(),
                None => "(not in the current configuration)".into(),
            };
            let _ = write!(
                h,
                "<tr data-job=\"{}\"><td>{}</td><td class=\"policy\">{}</td><td>{}</td></tr>",
                esc(name),
                esc(name),
                esc(&policy),
                esc(&what)
            );
        }
        h.push_str("</tbody></table></section>\n");
        h
    }
}

/// The verification banner: all logs verified, or which failed and why.
fn push_banner(h: &mut String, t: &Totals, verdicts: &[FileReport]) {
    if t.logs_failed == 0 {
        let _ = writeln!(
            h,
            "<section class=\"banner ok\" id=\"verification\"><strong>All {} logs verified.</strong> Every chain is intact, every run is sealed{}{}.</section>",
            t.logs_ok,
            match verdicts.iter().filter(|v| v.recovered_by.is_some()).count() {
                0 => String::new(),
                n => format!(
                    " or, for {n} that crashed, recovered by a later run that recorded where its log ended"
                ),
            },
            if verdicts.iter().any(|v| v.state.is_some()) {
                ", and the state store agrees with every head"
            } else {
                ""
            }
        );
    } else {
        let _ = write!(
            h,
            "<section class=\"banner bad\" id=\"verification\"><strong>{} of {} logs failed verification.</strong> Numbers below include what those logs say; do not rely on them until the findings are explained.<ul>",
            t.logs_failed,
            verdicts.len()
        );
        for v in verdicts.iter().filter(|v| !v.ok()) {
            let _ = write!(
                h,
                "<li><code>{}</code>: {}</li>",
                esc(&file_name(&v.file.display().to_string())),
                esc(&verdict_text(v))
            );
        }
        h.push_str("</ul></section>\n");
    }
}

/// The totals cards (failures and guard trips marked when non-zero).
fn push_cards(h: &mut String, t: &Totals) {
    h.push_str("<section class=\"cards\">");
    for (id, label, n, note) in [
        (
            "total-erased",
            "rows erased",
            t.erased,
            format!("+ {} child rows deleted", num(t.child_rows_deleted)),
        ),
        (
            "total-anonymized",
            "rows anonymized",
            t.anonymized,
            format!("+ {} child rows anonymized", num(t.child_rows_anonymized)),
        ),
        (
            "total-held",
            "held (latest run)",
            t.held,
            "legal holds, never deleted".into(),
        ),
        (
            "total-failures",
            "failures",
            t.failures,
            "failed rules and rolled-back batches".into(),
        ),
        (
            "total-guard-trips",
            "guard trips",
            t.guard_trips,
            "rules stopped before touching anything".into(),
        ),
        (
            "total-runs",
            "runs",
            t.runs,
            format!(
                "{} executed, {} dry runs or plans",
                t.executed_runs,
                t.runs - t.executed_runs
            ),
        ),
    ] {
        let _ = write!(
            h,
            "<div class=\"card {id}{}\"><div class=\"n\" id=\"{id}\">{}</div><div class=\"l\">{label}</div><div class=\"s\">{}</div></div>",
            if n > 0 && matches!(id, "total-failures" | "total-guard-trips") {
                " warn"
            } else {
                ""
            },
            num(n),
            esc(&note)
        );
    }
    h.push_str("</section>\n");
}

/// How to read the page, and the end of the document.
fn push_footer(h: &mut String) {
    h.push_str("<footer><p>This page holds no personal data: the audit log records subjects only as keyed hashes (HMAC-SHA-256), and this report shows only counts, names from the configuration and run ids.</p>");
    h.push_str("<p>How it counts: a batch counts unless its run rolled it back; child-table rows are counted apart from the rule's own table; <em>held</em> is what the latest run found held; failures are failed rules plus rolled-back batches. Verification: every record's SHA-256 and link, the closing <code>run_end</code> seal, and, where consulted, the head and record count the state store keeps outside the log.</p></footer>\n");
    h.push_str("</main></body></html>\n");
}

fn verdict_text(v: &FileReport) -> String {
    let mut parts = Vec::new();
    if v.missing {
        parts.push("MISSING".to_string());
    } else {
        parts.push(v.chain_status());
        parts.push(v.seal_status());
    }
    parts.extend(v.problems.iter().cloned());
    parts.join("; ")
}

fn runs_table(runs: &[RunRow], verdicts: &[FileReport]) -> String {
    let mut h = String::from(
        "<section><h2>Runs and the verification of their logs</h2><table id=\"runs\"><thead><tr><th>started (UTC)</th><th>run</th><th>mode</th><th>status</th><th class=\"r\">erased</th><th class=\"r\">anonymized</th><th class=\"r\">held</th><th class=\"r\">failures</th><th class=\"r\">guard trips</th><th class=\"r\">records</th><th>log</th></tr></thead><tbody>",
    );
    let by_file: BTreeMap<String, &RunRow> = runs.iter().map(|r| (r.file.clone(), r)).collect();
    for v in verdicts {
        let file = v.file.display().to_string();
        let row = by_file.get(&file);
        let ok = v.ok();
        let run = v.run.clone().unwrap_or_default();
        let cells = match row {
            Some(r) if !v.missing => format!(
                "<td>{}</td><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td>",
                esc(&r.mode),
                esc(&r.status),
                num(r.deleted),
                num(r.anonymized),
                num(r.held),
                num(r.failures),
                num(r.guard_trips),
                num(r.records)
            ),
            _ => "<td>-</td><td>-</td><td class=\"r\">-</td><td class=\"r\">-</td><td class=\"r\">-</td><td class=\"r\">-</td><td class=\"r\">-</td><td class=\"r\">-</td>".into(),
        };
        let _ = write!(
            h,
            "<tr data-run=\"{}\" class=\"{}\"><td>{}</td><td><code title=\"{}\">{}</code></td>{cells}<td class=\"verdict\"><span class=\"badge {}\">{}</span> {}</td></tr>",
            esc(&run),
            if ok { "ok" } else { "bad" },
            esc(&v
                .first_ts
                .as_deref()
                .map(short_ts)
                .unwrap_or_else(|| "-".into())),
            esc(&file),
            esc(run.get(..8).unwrap_or(&run)),
            if ok { "ok" } else { "bad" },
            if ok { "verified" } else { "FAILED" },
            esc(&verdict_text(v))
        );
    }
    h.push_str("</tbody></table></section>\n");
    h
}

/// Stacked bars per executed run (per day when there are many runs).
fn runs_chart(runs: &[RunRow]) -> String {
    let executed: Vec<&RunRow> = runs.iter().filter(|r| r.mode == "run").collect();
    if executed.is_empty() {
        return "<p class=\"empty\">No executed run in these logs.</p>".into();
    }
    // (label, deleted, anonymized, trouble)
    let mut bars: Vec<(String, u64, u64, u64)> = Vec::new();
    if executed.len() <= 60 {
        for r in &executed {
            bars.push((
                r.started.get(5..16).unwrap_or(&r.started).replace('T', " "),
                r.deleted,
                r.anonymized,
                r.failures + r.guard_trips,
            ));
        }
    } else {
        let mut days: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for r in &executed {
            let d = days
                .entry(r.started.get(..10).unwrap_or("?").to_string())
                .or_default();
            d.0 += r.deleted;
            d.1 += r.anonymized;
            d.2 += r.failures + r.guard_trips;
        }
        bars = days
            .into_iter()
            .map(|(k, (a, b, c))| (k, a, b, c))
            .collect();
    }
    let max = bars.iter().map(|b| b.1 + b.2).max().unwrap_or(0).max(1);
    let (w, hgt, left, bottom, top) = (960.0, 280.0, 64.0, 64.0, 28.0);
    let plot_h = hgt - bottom - top;
    let step = (w - left - 8.0) / bars.len() as f64;
    let bw = (step * 0.7).clamp(2.0, 48.0);
    let mut s = format!(
        "<svg id=\"runs-chart\" class=\"chart\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"Rows erased and anonymized per run\">"
    );
    // Axis and three grid lines with labels.
    for k in 0..=3 {
        let v = max as f64 * k as f64 / 3.0;
        let y = top + plot_h - plot_h * k as f64 / 3.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            w - 4.0,
            left - 6.0,
            y + 4.0,
            num(v.round() as u64)
        );
    }
    let label_every = (bars.len() / 12).max(1);
    for (i, (label, del, anon, trouble)) in bars.iter().enumerate() {
        let x = left + step * i as f64 + (step - bw) / 2.0;
        let hd = plot_h * *del as f64 / max as f64;
        let ha = plot_h * *anon as f64 / max as f64;
        let yd = top + plot_h - hd;
        let ya = yd - ha;
        let _ = write!(
            s,
            "<g class=\"bar\"><title>{}: {} erased, {} anonymized{}</title><rect x=\"{x:.1}\" y=\"{yd:.1}\" width=\"{bw:.1}\" height=\"{hd:.1}\" class=\"del\"/><rect x=\"{x:.1}\" y=\"{ya:.1}\" width=\"{bw:.1}\" height=\"{ha:.1}\" class=\"anon\"/>",
            esc(label),
            num(*del),
            num(*anon),
            if *trouble > 0 {
                format!(", {trouble} failures or guard trips")
            } else {
                String::new()
            }
        );
        if *trouble > 0 {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" class=\"trouble\"/>",
                x + bw / 2.0,
                (ya - 9.0).max(6.0)
            );
        }
        s.push_str("</g>");
        if i % label_every == 0 {
            let lx = x + bw / 2.0;
            let ly = top + plot_h + 12.0;
            let _ = write!(
                s,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" class=\"axis\" text-anchor=\"end\" transform=\"rotate(-35 {lx:.1} {ly:.1})\">{}</text>",
                esc(label)
            );
        }
    }
    let _ = write!(
        s,
        "<g class=\"legend\" transform=\"translate({},4)\"><rect width=\"12\" height=\"12\" class=\"del\"/><text x=\"18\" y=\"11\">erased</text><rect x=\"90\" width=\"12\" height=\"12\" class=\"anon\"/><text x=\"108\" y=\"11\">anonymized</text><circle cx=\"216\" cy=\"6\" r=\"5\" class=\"trouble\"/><text x=\"226\" y=\"11\">failures or guard trips</text></g></svg>",
        w - 380.0
    );
    s
}

/// Horizontal stacked bars per rule: erased, anonymized, held.
fn rules_chart(rules: &BTreeMap<(String, String), RuleRow>) -> String {
    let rows: Vec<&RuleRow> = rules.values().collect();
    if rows.is_empty() {
        return "<p class=\"empty\">No rule has acted yet.</p>".into();
    }
    let max = rows
        .iter()
        .map(|r| r.erased + r.anonymized + r.held)
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, row_h, label_w) = (960.0, 26.0, 400.0);
    let hgt = row_h * rows.len() as f64 + 34.0;
    let plot_w = w - label_w - 120.0;
    let mut s = format!(
        "<svg id=\"rules-chart\" class=\"chart\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"Rows per job and rule\">"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let mut x = label_w;
        let label = format!("{} · {}", r.job, r.rule);
        let shown = if label.chars().count() > 58 {
            format!("{}…", label.chars().take(57).collect::<String>())
        } else {
            label.clone()
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\"><title>{}</title>{}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(&label),
            esc(&shown)
        );
        for (n, class) in [(r.erased, "del"), (r.anonymized, "anon"), (r.held, "held")] {
            if n == 0 {
                continue;
            }
            let bw = (plot_w * n as f64 / max as f64).max(1.5);
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" class=\"{class}\"><title>{} {}</title></rect>",
                y + 3.0,
                row_h - 8.0,
                num(n),
                match class {
                    "del" => "erased",
                    "anon" => "anonymized",
                    _ => "held",
                }
            );
            x += bw;
        }
        let mut note = num(r.erased + r.anonymized);
        if r.held > 0 {
            note.push_str(&format!(" (+{} held)", num(r.held)));
        }
        if r.failures + r.guard_trips > 0 {
            note.push_str(" ⚠");
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
            x + 6.0,
            y + 15.0,
            esc(&note)
        );
    }
    let _ = write!(
        s,
        "<g class=\"legend\" transform=\"translate({label_w},{:.1})\"><rect width=\"12\" height=\"12\" class=\"del\"/><text x=\"18\" y=\"11\">erased</text><rect x=\"90\" width=\"12\" height=\"12\" class=\"anon\"/><text x=\"108\" y=\"11\">anonymized</text><rect x=\"216\" width=\"12\" height=\"12\" class=\"held\"/><text x=\"234\" y=\"11\">held</text></g></svg>",
        hgt - 18.0
    );
    s
}

fn file_name(p: &str) -> String {
    p.rsplit(['/', '\\']).next().unwrap_or(p).to_string()
}

/// `2026-06-15T12:00:01.123456Z` → `2026-06-15 12:00:01` (UTC).
fn short_ts(ts: &str) -> String {
    ts.get(..19).unwrap_or(ts).replace('T', " ")
}

/// Thousands separated by commas.
pub(crate) fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Escape text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape, keeping the `<br>` separators this module put in.
fn esc_keep_br(s: &str) -> String {
    s.split("<br>").map(esc).collect::<Vec<_>>().join("<br>")
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lethe audit report</title>
<style>
:root { --del: #1f4e89; --anon: #6fa8dc; --held: #c9a227; --bad: #b3261e; --ok: #1e7b34; --ink: #1b1f24; --muted: #5b6570; --line: #d8dde3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Liberation Sans", Arial, sans-serif; color: var(--ink); background: #f6f7f9; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 30px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta, .hint, footer { color: var(--muted); font-size: 13px; }
.banner { margin: 16px 0; padding: 12px 16px; border-radius: 6px; }
.banner.ok { background: #e6f4ea; border: 1px solid #9ccfa8; }
.banner.bad { background: #fce8e6; border: 1px solid #e8a29c; }
.banner ul { margin: 6px 0 0; padding-left: 20px; font-size: 14px; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .n { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .l { font-weight: 600; }
.card .s { color: var(--muted); font-size: 12px; }
.card.warn .n { color: var(--bad); }
.chart { width: 100%; height: auto; display: block; margin: 6px 0 14px; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart text { font-size: 12px; fill: var(--muted); }
.chart .label { fill: var(--ink); font-size: 12px; }
.chart .value { fill: var(--ink); font-size: 12px; }
.chart .legend text { fill: var(--ink); }
.del { fill: var(--del); } .anon { fill: var(--anon); } .held { fill: var(--held); } .trouble { fill: var(--bad); }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 6px 0 10px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: var(--bad); font-weight: 600; }
td.small { font-size: 12px; color: var(--muted); white-space: nowrap; }
tr.bad td { background: #fdf1f0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; font-weight: 600; color: #fff; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
code { font: 12.5px ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
.empty { color: var(--muted); font-style: italic; }
@media print { body { background: #fff; } main { padding: 0; } }
</style></head><body><main>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_are_made_safe_for_the_page() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1_000), "1,000");
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc_keep_br("a<b<br>c"), "a&lt;b<br>c");
    }
}
