//! `lethe audit verify`: is this log whole and unaltered?
//!
//! Two levels. Inside one run's file (`verify_file`): every record's hash, its
//! link to the previous record, its sequence number and run id, and the seal
//! (`run_end`) at the end — this finds an edit, reorder or removal inside a
//! run, and a file cut short without its seal. Across runs (`cross_check`):
//! what the state store recorded of each executed run (its head and record
//! count, kept outside the log) and the link each `run_start` carries to the
//! run before it — this finds a whole run deleted, and a log cut at its end
//! and re-sealed so that its own chain still looks intact.
//!
//! A run that crashed (killed, out of memory) leaves a log without its seal.
//! The next run of its jobs records a `recovery` naming it, with the record
//! count and head it found (`Pin`); verify then accepts that unsealed log as
//! `crashed, recovered by <run>` only while it ends exactly there, and the
//! state store keeps the same count and head as a second anchor.
//!
//! The chain is plain SHA-256: anyone can recompute it. What makes a rewrite
//! detectable is a head held elsewhere — the state store, and the next run's
//! `run_start` — so verification is only as strong as those are kept apart.

use crate::state::StateRun;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::findings::{FileReport, Pin};
pub use super::log::audit_files;

/// Verify one file on its own.
pub fn verify_file(path: &Path) -> FileReport {
    super::log::read_log(path).report
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Checks across runs. `state`: every run of the state store, when it is
/// consulted. `complete`: the reports are the whole log (the configured
/// folder), so a run named by the state store or by a later run's link but
/// absent from them was deleted. Returns the reports in time order, with a
/// report (`missing`) for each run found deleted.
pub(crate) fn cross_check(
    mut reports: Vec<FileReport>,
    state: Option<&[StateRun]>,
    complete: bool,
) -> Vec<FileReport> {
    name_empty_files(&mut reports, state);
    let mut across = Across {
        by_run: index_by_run(&mut reports),
        complete,
        missing: BTreeMap::new(),
    };
    across.check_pins(&mut reports);
    if let Some(state) = state {
        across.check_state(&mut reports, state);
    }
    across.check_links(&mut reports);
    reports.extend(across.missing.into_values());
    reports.sort_by(|a, b| {
        let key = |r: &FileReport| (r.first_ts.clone().unwrap_or_default(), r.missing as u8 ^ 1);
        key(a).cmp(&key(b)).then_with(|| a.file.cmp(&b.file))
    });
    reports
}

/// An empty file has no record to name its run: the state store's row or a
/// recovery names it by its file name; one nobody names is `empty`.
fn name_empty_files(reports: &mut [FileReport], state: Option<&[StateRun]>) {
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for s in state.into_iter().flatten() {
        if let Some(n) = file_name(Path::new(&s.audit_file)) {
            named.insert(n, s.run_id.clone());
        }
    }
    for p in reports.iter().flat_map(|r| r.recovers.iter()) {
        named.insert(p.file.clone(), p.run.clone());
    }
    for r in reports.iter_mut() {
        if r.run.is_none() && r.records == 0 && r.broken_at.is_none() {
            match file_name(&r.file).and_then(|n| named.get(&n)) {
                Some(run) => r.run = Some(run.clone()),
                None => r.empty = true,
            }
        }
    }
}

/// Each run's files (normally one); a run in two files is flagged in both.
fn index_by_run(reports: &mut [FileReport]) -> BTreeMap<String, Vec<usize>> {
    let mut by_run: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        if let Some(run) = &r.run {
            by_run.entry(run.clone()).or_default().push(i);
        }
    }
    for idx in by_run.values().filter(|v| v.len() > 1) {
        for &i in idx {
            reports[i].problems.push(format!(
                "the same run is in {} files (a copy, or a forged run)",
                idx.len()
            ));
        }
    }
    by_run
}

/// What the checks across runs share: where each run's file is, whether the
/// files are the whole log (so a run named but absent is missing), and the
/// runs found missing so far (each reported once, with every reason).
struct Across {
    by_run: BTreeMap<String, Vec<usize>>,
    complete: bool,
    missing: BTreeMap<String, FileReport>,
}

impl Across {
    /// Recoveries: a later run pinned a crashed run's log as it found it.
    fn check_pins(&mut self, reports: &mut [FileReport]) {
        let pins: Vec<(String, Pin)> = reports
            .iter()
            .filter(|r| r.broken_at.is_none())
            .flat_map(|r| {
                let by = r.run.clone().unwrap_or_default();
                r.recovers.iter().map(move |p| (by.clone(), p.clone()))
            })
            .collect();
        for (by, pin) in pins {
            let Some(idx) = self.by_run.get(&pin.run) else {
                if self.complete {
                    let m = self.missing.entry(pin.run.clone()).or_insert_with(|| {
                        let mut m = FileReport::new(PathBuf::from(format!("(run {})", pin.run)));
                        m.run = Some(pin.run.clone());
                        m.missing = true;
                        m
                    });
                    m.problems.push(format!(
                        "run {by} recovered this crashed run ({} records, head {}…), and its log is missing: the whole run was deleted",
                        pin.records,
                        short(&pin.head)
                    ));
                }
                continue;
            };
            for &i in idx {
                let r = &mut reports[i];
                if r.broken_at.is_some() {
                    // The chain itself is broken; that is the finding.
                } else if r.records != pin.records || r.head.as_deref() != Some(pin.head.as_str()) {
                    r.problems.push(format!(
                        "run {by} recovered this crashed run at {} records ending at {}…, but the log has {} records ending at {}…: cut, extended or rewritten after the recovery",
                        pin.records,
                        short(&pin.head),
                        r.records,
                        r.head.as_deref().map(short).unwrap_or("-")
                    ));
                } else if r.recovered_by.is_none() {
                    r.recovered_by = Some(by.clone());
                }
            }
        }
    }

    /// The state store's row of each executed run: its record count and head.
    fn check_state(&mut self, reports: &mut [FileReport], state: &[StateRun]) {
        let known: BTreeMap<&str, &StateRun> =
            state.iter().map(|s| (s.run_id.as_str(), s)).collect();
        for s in state {
            let Some(idx) = self.by_run.get(&s.run_id) else {
                if self.complete {
                    let mut m = FileReport::new(PathBuf::from(&s.audit_file));
                    m.run = Some(s.run_id.clone());
                    m.missing = true;
                    m.first_ts = Some(ms_to_rfc3339(s.started_ms));
                    m.records = 0;
                    m.problems.push(format!(
                        "the state store records run {} (started {}, status {}{}) but its log is missing: the whole run was deleted",
                        s.run_id,
                        ms_to_rfc3339(s.started_ms),
                        s.status,
                        s.records.map(|n| format!(", {n} records")).unwrap_or_default()
                    ));
                    m.state = Some(s.clone());
                    self.missing.insert(s.run_id.clone(), m);
                }
                continue;
            };
            for &i in idx {
                let r = &mut reports[i];
                r.state = Some(s.clone());
                match (&s.head_hash, s.records) {
                    (Some(head), Some(n)) => {
                        if r.broken_at.is_some() {
                            // The chain itself is broken; that is the finding.
                        } else if r.records < n {
                            r.problems.push(format!(
                                "truncated at its end: the log has {} records, the state store recorded {n} (head {}…)",
                                r.records,
                                short(head)
                            ));
                        } else if r.records > n {
                            r.problems.push(format!(
                                "the log has {} records, the state store recorded {n}: records were added after the run ended",
                                r.records
                            ));
                        } else if r.head.as_deref() != Some(head.as_str()) {
                            r.problems.push(format!(
                                "rewritten: its last record's hash {}… is not the head the state store recorded ({}…)",
                                r.head.as_deref().map(short).unwrap_or("-"),
                                short(head)
                            ));
                        }
                    }
                    // Recovered, but the state store's row was not updated
                    // (the recovering run could not write it): the pin in
                    // the recovering run's own log is the anchor.
                    _ if r.recovered_by.is_some() => {}
                    _ => r.problems.push(format!(
                        "the state store says this run never ended (status {}): it crashed, or is still running",
                        s.status
                    )),
                }
            }
        }
        for r in reports.iter_mut() {
            if let (Some(run), Some(false)) = (&r.run, r.dry_run)
                && !known.contains_key(run.as_str())
            {
                r.problems.push(
                    "an executed run the state store has no record of (a log from another installation, or the state store lost its row)".into(),
                );
            }
        }
    }

    /// Links: each executed run names the run before it and that run's head.
    fn check_links(&mut self, reports: &mut [FileReport]) {
        let links: Vec<(usize, String, Option<String>)> = reports
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.prev_run.clone().map(|p| (i, p, r.prev_head.clone())))
            .collect();
        for (i, prev_run, prev_head) in links {
            let next_run = reports[i].run.clone().unwrap_or_default();
            match self.by_run.get(&prev_run) {
                Some(idx) => {
                    let Some(head) = prev_head else { continue };
                    for &j in idx {
                        let p = &mut reports[j];
                        if p.broken_at.is_none() && p.head.as_deref() != Some(head.as_str()) {
                            p.problems.push(format!(
                                "run {next_run} recorded this run's head as {}…, but the log ends at {}…: cut or rewritten at its end",
                                short(&head),
                                p.head.as_deref().map(short).unwrap_or("-")
                            ));
                        }
                    }
                }
                None if self.complete => {
                    let m = self.missing.entry(prev_run.clone()).or_insert_with(|| {
                        let mut m = FileReport::new(PathBuf::from(format!("(run {prev_run})")));
                        m.run = Some(prev_run.clone());
                        m.missing = true;
                        m
                    });
                    m.problems.push(format!(
                        "run {next_run} names run {prev_run} as the run before it, and its log is missing: the whole run was deleted"
                    ));
                    if m.first_ts.is_none() {
                        // Place it just before the run that names it.
                        m.first_ts = reports[i].first_ts.clone();
                    }
                }
                None => {}
            }
        }
    }
}

/// Every record of a file that parses, in file order (for tests and tools
/// that do not need the verdict; `log::read_log` gives both).
pub fn read_records(path: &Path) -> std::io::Result<Vec<super::event::Record>> {
    std::fs::metadata(path)?;
    Ok(super::log::read_log(path)
        .entries
        .into_iter()
        .map(|e| e.record)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, records: u64, head: &str, prev: Option<(&str, &str)>) -> FileReport {
        let mut r = FileReport::new(PathBuf::from(format!("run-{id}.jsonl")));
        r.run = Some(id.into());
        r.records = records;
        r.sealed = true;
        r.head = Some(head.into());
        r.dry_run = Some(false);
        r.first_ts = Some(format!("2026-01-0{}T00:00:00Z", records));
        r.prev_run = prev.map(|p| p.0.into());
        r.prev_head = prev.map(|p| p.1.into());
        r
    }

    fn state(id: &str, records: u64, head: &str) -> StateRun {
        StateRun {
            run_id: id.into(),
            command: "run".into(),
            started_ms: 0,
            ended_ms: Some(1),
            status: "completed".into(),
            audit_file: format!("run-{id}.jsonl"),
            head_hash: Some(head.into()),
            records: Some(records),
        }
    }

    #[test]
    fn garbage_is_a_finding_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run-x.jsonl");
        let fake_hash = "é".repeat(32);
        let text = format!(
            "not json\n{{\"v\":1}},\"hash\":\"{fake_hash}\"}}\n\u{0}\u{ffff}\n{{\"prev_head\":\"ééééééééééééé\"}}\n"
        );
        std::fs::write(&f, text).unwrap();
        std::fs::write(dir.path().join("run-y.jsonl"), [0xff, 0xfe, b'\n', b'{']).unwrap();
        for file in audit_files(dir.path()).unwrap() {
            let r = verify_file(&file);
            assert_eq!(r.broken_at.as_ref().map(|b| b.0), Some(1), "{r:?}");
            assert!(!r.ok());
        }
        let out = cross_check(
            vec![verify_file(&f)],
            Some(&[state("é", 1, "ééééééééééééééé")]),
            true,
        );
        assert!(out.iter().all(|r| !r.ok()));
    }

    #[test]
    fn agreeing_logs_pass() {
        let logs = vec![
            run("a", 3, "ha", None),
            run("b", 4, "hb", Some(("a", "ha"))),
        ];
        let st = [state("a", 3, "ha"), state("b", 4, "hb")];
        let out = cross_check(logs, Some(&st), true);
        assert!(out.iter().all(|r| r.ok()), "{out:?}");
    }

    /// A crashed run (unsealed, never ended in the state store) is accepted
    /// only with a recovery pin that matches its log exactly.
    #[test]
    fn a_crash_is_accepted_only_as_pinned() {
        let crashed = |records: u64, head: &str| {
            let mut r = run("a", records, head, None);
            r.sealed = false;
            r
        };
        let recovering = |records: u64, head: &str| {
            let mut r = run("b", 4, "hb", Some(("a", "x")));
            r.prev_head = None;
            r.recovers = vec![Pin {
                run: "a".into(),
                file: "run-a.jsonl".into(),
                records,
                head: head.into(),
            }];
            r
        };
        let mut never = state("a", 3, "ha");
        never.status = "running".into();
        never.head_hash = None;
        never.records = None;
        // Not recovered: fails, with or without the state store.
        let out = cross_check(vec![crashed(3, "ha")], Some(&[never.clone()]), true);
        assert!(!out[0].ok() && out[0].problems[0].contains("never ended"));
        assert!(!cross_check(vec![crashed(3, "ha")], None, false)[0].ok());
        // Recovered as found: ok, and says by whom.
        for st in [None, Some(vec![never.clone(), state("b", 4, "hb")])] {
            let out = cross_check(
                vec![crashed(3, "ha"), recovering(3, "ha")],
                st.as_deref(),
                st.is_some(),
            );
            assert!(out.iter().all(|r| r.ok()), "{out:?}");
            assert_eq!(out[0].recovered_by.as_deref(), Some("b"));
            assert_eq!(out[0].seal_status(), "crashed, recovered by b");
        }
        // Cut or rewritten after the recovery: fails.
        for (n, h) in [(2, "ha"), (3, "hx"), (4, "ha")] {
            let out = cross_check(vec![crashed(n, h), recovering(3, "ha")], None, false);
            assert!(!out[0].ok(), "{n} {h}: {out:?}");
            assert!(out[0].recovered_by.is_none());
            assert!(out[0].problems[0].contains("after the recovery"));
        }
        // An empty file no run claims touched nothing; one a pin names is that run.
        let mut empty = FileReport::new(PathBuf::from("run-e.jsonl"));
        empty.head = Some("0".repeat(64));
        let out = cross_check(vec![empty.clone()], None, false);
        assert!(out[0].ok() && out[0].empty, "{out:?}");
        let mut r = recovering(0, &"0".repeat(64));
        r.recovers[0].file = "run-e.jsonl".into();
        let out = cross_check(vec![empty, r], None, false);
        assert_eq!(out[0].run.as_deref(), Some("a"));
        assert_eq!(out[0].recovered_by.as_deref(), Some("b"));
    }

    #[test]
    fn a_missing_run_and_a_cut_log_are_named() {
        let logs = vec![run("c", 2, "hc2", Some(("b", "hb")))];
        let st = [state("a", 3, "ha"), state("c", 5, "hc")];
        let out = cross_check(logs, Some(&st), true);
        let a = out.iter().find(|r| r.run.as_deref() == Some("a")).unwrap();
        assert!(a.missing && a.problems[0].contains("whole run was deleted"));
        let b = out.iter().find(|r| r.run.as_deref() == Some("b")).unwrap();
        assert!(b.missing && b.problems[0].contains("names run b"));
        let c = out.iter().find(|r| r.run.as_deref() == Some("c")).unwrap();
        assert!(c.problems[0].contains("truncated at its end"), "{c:?}");
        // Files given alone (not the whole log): no run is called missing.
        let out = cross_check(vec![run("c", 2, "hc2", Some(("b", "hb")))], None, false);
        assert!(out.iter().all(|r| r.ok()));
    }
}
