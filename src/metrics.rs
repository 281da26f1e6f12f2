//! Prometheus metrics: what each run did, per job and rule.
//!
//! One registry accumulates run reports; it renders the text exposition
//! format for a textfile (node_exporter's collector), a Pushgateway push
//! (one group per job and shard, so shards never overwrite each other), and
//! the daemon's `/metrics`. Labels carry names from the config only.

use crate::engine::{RuleStatus, RunReport};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Default)]
struct State {
    rows: BTreeMap<(String, String, &'static str), u64>,
    child_rows: BTreeMap<(String, String, String, String), u64>,
    failures: BTreeMap<(String, String), u64>,
    guard_trips: BTreeMap<(String, String), u64>,
    runs: BTreeMap<(String, String), u64>,
    duration: BTreeMap<String, f64>,
    last_success: BTreeMap<String, i64>,
    /// Open and overdue requests by kind, as of the last run (gauges).
    requests_open: BTreeMap<String, u64>,
    requests_overdue: BTreeMap<String, u64>,
    /// Working days each completed request took, by kind (a histogram).
    completions: BTreeMap<String, Vec<i64>>,
    /// Jobs that acted on requests: their pushes carry the request metrics.
    request_jobs: std::collections::BTreeSet<String>,
    /// Seconds paused by `pause_when`, per source and reason.
    throttle: BTreeMap<(String, crate::engine::throttle::Reason), f64>,
}

/// Upper bounds (working days) of `lethe_request_completion_working_days`.
const COMPLETION_BUCKETS: [i64; 9] = [1, 2, 3, 5, 8, 10, 12, 15, 20];

/// Accumulated metrics of the runs this process made.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
    /// Extra exposition appended by the owner (the daemon's own counters).
    pub extra: Mutex<String>,
}

/// Escape a label value (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Registry {
    /// Add one run's report. Dry runs count nothing.
    pub(crate) fn record(&self, report: &RunReport) {
        if report.mode != crate::engine::Mode::Execute {
            return;
        }
        let mut s = self.state.lock().expect("metrics lock");
        let now = chrono::Utc::now().timestamp();
        // Requests: gauges replaced by each run's view, completions added.
        s.requests_open.clear();
        s.requests_overdue.clear();
        s.requests_open.insert("erasure".into(), 0);
        s.requests_overdue.insert("erasure".into(), 0);
        for l in &report.requests {
            *s.requests_open.entry(l.kind.as_str().into()).or_default() += 1;
            *s.requests_overdue
                .entry(l.kind.as_str().into())
                .or_default() += u64::from(l.overdue);
        }
        for c in &report.request_completions {
            s.completions
                .entry(c.kind.as_str().into())
                .or_default()
                .push(c.working_days);
        }
        for job in &report.jobs {
            if job.rules.iter().any(|r| r.request.is_some()) {
                s.request_jobs.insert(job.job.clone());
            }
        }
        for job in &report.jobs {
            *s.runs
                .entry((job.job.clone(), job.status.to_string()))
                .or_default() += 1;
            s.duration
                .insert(job.job.clone(), job.duration_ms as f64 / 1000.0);
            if job.status == "done" {
                s.last_success.insert(job.job.clone(), now);
            }
            for r in &job.rules {
                // A rule's target is `source.table`.
                let source = r.target.split('.').next().unwrap_or_default();
                for (reason, secs) in &r.throttled {
                    *s.throttle.entry((source.to_string(), *reason)).or_default() += secs;
                }
                let outcome = if r.action == "delete" {
                    "deleted"
                } else {
                    "anonymized"
                };
                *s.rows
                    .entry((r.job.clone(), r.rule.clone(), outcome))
                    .or_default() += r.done;
                *s.rows
                    .entry((r.job.clone(), r.rule.clone(), "held"))
                    .or_default() += r.held;
                for c in &r.children {
                    *s.child_rows
                        .entry((
                            r.job.clone(),
                            r.rule.clone(),
                            c.target.clone(),
                            c.action.clone(),
                        ))
                        .or_default() += c.count;
                }
                *s.failures
                    .entry((r.job.clone(), r.rule.clone()))
                    .or_default() += u64::from(r.status == RuleStatus::Failed);
                *s.guard_trips
                    .entry((r.job.clone(), r.rule.clone()))
                    .or_default() += u64::from(r.status == RuleStatus::Guard);
            }
        }
    }

    /// The text exposition of every metric, or only of `job`'s.
    pub(crate) fn render(&self, job_filter: Option<&str>) -> String {
        let s = self.state.lock().expect("metrics lock");
        let keep = |j: &str| job_filter.is_none_or(|f| f == j);
        let mut out = String::new();
        rule_families(&mut out, &s, &keep);
        job_families(&mut out, &s, &keep);
        if job_filter.is_none_or(|j| s.request_jobs.contains(j)) {
            request_families(&mut out, &s);
        }
        // Absent until a loop has paused, so a source without pause_when
        // renders exactly as before.
        if !s.throttle.is_empty() {
            out.push_str(&crate::engine::throttle::render_metric(&s.throttle));
        }
        out.push_str(&self.extra.lock().expect("metrics lock"));
        out
    }

    pub(crate) fn jobs(&self) -> Vec<String> {
        let s = self.state.lock().expect("metrics lock");
        let mut j: Vec<String> = s.runs.keys().map(|(j, _)| j.clone()).collect();
        j.dedup();
        j
    }
}

/// Write the exposition atomically (temp file, then rename), as the
/// textfile collector requires.
pub(crate) fn write_textfile(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// A Pushgateway that refused or could not be reached. The run is not
/// failed for it (the caller warns): metrics are an observer, not a duty.
#[derive(Debug, thiserror::Error)]
#[error("pushgateway {base}: {source}")]
pub(crate) struct PushError {
    base: String,
    source: ureq::Error,
}

/// PUT each job's metrics to `{base}/metrics/job/lethe/lethe_job/{job}/shard/{shard}`.
pub(crate) fn push(base: &str, registry: &Registry, shard: &str) -> Result<(), PushError> {
    for job in registry.jobs() {
        let url = format!("{base}/metrics/job/lethe/lethe_job/{job}/shard/{shard}");
        let body = registry.render(Some(&job));
        ureq::put(&url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(body.as_bytes())
            .map_err(|source| PushError {
                base: base.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, lines: Vec<String>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

/// Per job and rule: rows, child rows, failures and guard trips.
fn rule_families(out: &mut String, s: &State, keep: &dyn Fn(&str) -> bool) {
    family(
        out,
        "lethe_rows_total",
        "counter",
        "Rows acted on in rule targets, by outcome (deleted, anonymized, held).",
        s.rows
            .iter()
            .filter(|((j, _, _), _)| keep(j))
            .map(|((j, r, o), v)| {
                format!(
                    "lethe_rows_total{{job=\"{}\",rule=\"{}\",outcome=\"{o}\"}} {v}",
                    label(j),
                    label(r)
                )
            })
            .collect(),
    );
    family(
        out,
        "lethe_child_rows_total",
        "counter",
        "Child rows acted on with their parents, by child table and action.",
        s.child_rows
            .iter()
            .filter(|((j, ..), _)| keep(j))
            .map(|((j, r, t, a), v)| {
                format!(
                    "lethe_child_rows_total{{job=\"{}\",rule=\"{}\",target=\"{}\",action=\"{}\"}} {v}",
                    label(j),
                    label(r),
                    label(t),
                    label(a)
                )
            })
            .collect(),
    );
    family(
        out,
        "lethe_rule_failures_total",
        "counter",
        "Rule runs that failed.",
        s.failures
            .iter()
            .filter(|((j, _), _)| keep(j))
            .map(|((j, r), v)| {
                format!(
                    "lethe_rule_failures_total{{job=\"{}\",rule=\"{}\"}} {v}",
                    label(j),
                    label(r)
                )
            })
            .collect(),
    );
    family(
        out,
        "lethe_guard_trips_total",
        "counter",
        "Rule runs a guard stopped before they touched anything.",
        s.guard_trips
            .iter()
            .filter(|((j, _), _)| keep(j))
            .map(|((j, r), v)| {
                format!(
                    "lethe_guard_trips_total{{job=\"{}\",rule=\"{}\"}} {v}",
                    label(j),
                    label(r)
                )
            })
            .collect(),
    );
}

/// Per job: runs by status, last duration, last success.
fn job_families(out: &mut String, s: &State, keep: &dyn Fn(&str) -> bool) {
    family(
        out,
        "lethe_job_runs_total",
        "counter",
        "Job runs by final status (done, partial, guard, interrupted, locked).",
        s.runs
            .iter()
            .filter(|((j, _), _)| keep(j))
            .map(|((j, st), v)| {
                format!(
                    "lethe_job_runs_total{{job=\"{}\",status=\"{}\"}} {v}",
                    label(j),
                    label(st)
                )
            })
            .collect(),
    );
    family(
        out,
        "lethe_run_duration_seconds",
        "gauge",
        "Duration of the job's last run.",
        s.duration
            .iter()
            .filter(|(j, _)| keep(j))
            .map(|(j, v)| format!("lethe_run_duration_seconds{{job=\"{}\"}} {v:.3}", label(j)))
            .collect(),
    );
    family(
        out,
        "lethe_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the job's last fully successful run.",
        s.last_success
            .iter()
            .filter(|(j, _)| keep(j))
            .map(|(j, v)| {
                format!(
                    "lethe_last_success_timestamp_seconds{{job=\"{}\"}} {v}",
                    label(j)
                )
            })
            .collect(),
    );
}

/// Erasure requests: open and overdue gauges, and the completion histogram.
fn request_families(out: &mut String, s: &State) {
    family(
        out,
        "lethe_requests_open",
        "gauge",
        "Open erasure requests (pending or held) after the last run, by kind.",
        s.requests_open
            .iter()
            .map(|(k, v)| format!("lethe_requests_open{{kind=\"{}\"}} {v}", label(k)))
            .collect(),
    );
    family(
        out,
        "lethe_requests_overdue",
        "gauge",
        "Pending requests past their due instant (15 working days) after the last run, by kind.",
        s.requests_overdue
            .iter()
            .map(|(k, v)| format!("lethe_requests_overdue{{kind=\"{}\"}} {v}", label(k)))
            .collect(),
    );
    family(
        out,
        "lethe_request_completion_working_days",
        "histogram",
        "Working days from receipt to completion of each request done.",
        completion_lines(s),
    );
}

/// The histogram's samples: per kind, each bucket, `+Inf`, sum and count.
fn completion_lines(s: &State) -> Vec<String> {
    let mut lines = Vec::new();
    for (k, days) in &s.completions {
        let k = label(k);
        for le in COMPLETION_BUCKETS {
            let n = days.iter().filter(|d| **d <= le).count();
            lines.push(format!(
                "lethe_request_completion_working_days_bucket{{kind=\"{k}\",le=\"{le}\"}} {n}"
            ));
        }
        lines.push(format!(
            "lethe_request_completion_working_days_bucket{{kind=\"{k}\",le=\"+Inf\"}} {}",
            days.len()
        ));
        lines.push(format!(
            "lethe_request_completion_working_days_sum{{kind=\"{k}\"}} {}",
            days.iter().sum::<i64>()
        ));
        lines.push(format!(
            "lethe_request_completion_working_days_count{{kind=\"{k}\"}} {}",
            days.len()
        ));
    }
    lines
}
