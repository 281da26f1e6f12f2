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
}

/// Accumulated metrics of the runs this process made.
#[derive(Default)]
pub struct Registry {
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
    pub fn record(&self, report: &RunReport) {
        if report.mode != crate::engine::Mode::Execute {
            return;
        }
        let mut s = self.state.lock().expect("metrics lock");
        let now = chrono::Utc::now().timestamp();
        for job in &report.jobs {
            *s.runs
                .entry((job.job.clone(), job.status.clone()))
                .or_default() += 1;
            s.duration
                .insert(job.job.clone(), job.duration_ms as f64 / 1000.0);
            if job.status == "done" {
                s.last_success.insert(job.job.clone(), now);
            }
            for r in &job.rules {
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
    pub fn render(&self, job_filter: Option<&str>) -> String {
        let s = self.state.lock().expect("metrics lock");
        let keep = |j: &str| job_filter.is_none_or(|f| f == j);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        };
        family(
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
        family(
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
        out.push_str(&self.extra.lock().expect("metrics lock"));
        out
    }

    pub fn jobs(&self) -> Vec<String> {
        let s = self.state.lock().expect("metrics lock");
        let mut j: Vec<String> = s.runs.keys().map(|(j, _)| j.clone()).collect();
        j.dedup();
        j
    }
}

/// Write the exposition atomically (temp file, then rename), as the
/// textfile collector requires.
pub fn write_textfile(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// PUT each job's metrics to `{base}/metrics/job/lethe/lethe_job/{job}/shard/{shard}`.
pub fn push(base: &str, registry: &Registry, shard: &str) -> Result<(), String> {
    for job in registry.jobs() {
        let url = format!("{base}/metrics/job/lethe/lethe_job/{job}/shard/{shard}");
        let body = registry.render(Some(&job));
        ureq::put(&url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(body.as_bytes())
            .map_err(|e| format!("pushgateway {base}: {e}"))?;
    }
    Ok(())
}
