//! `lethe audit verify | search | export | report`: what auditors run.
//!
//! Every command reads the configured audit folder by default, or the files
//! and folders given. None of them writes to the log or the databases; the
//! state store is only read (to compare heads). Logs are read one file at a
//! time.

use super::args::{AuditCommand, ExportFormat, Global, Output, StateChoice};
use super::{load, output, print};
use crate::audit::export;
use crate::audit::log::{Log, files_under, read_log};
use crate::audit::report::{JobMeta, Report};
use crate::audit::search::{self, Filters};
use crate::audit::verify::{self, FileReport};
use crate::config::Loaded;
use crate::error::{Error, ExitCode};
use crate::keys::KeyRing;
use crate::state::State;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// The configuration: required when no PATH is given (it names the audit
/// folder) or the state store is consulted; otherwise read only if the file
/// exists, so an auditor can work on a copied folder without one.
fn config(g: &Global, required: bool) -> Result<Option<Loaded>, Error> {
    if required {
        return load(g).map(Some);
    }
    if !g.config.exists() {
        return Ok(None);
    }
    match load(g) {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            eprintln!(
                "warning: {} is not usable ({}); going on without it",
                g.config.display(),
                e.to_string().lines().next().unwrap_or("")
            );
            Ok(None)
        }
    }
}

/// The files to read: PATHs, or the configured folder.
fn files(loaded: Option<&Loaded>, paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>), Error> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        let l =
            loaded.ok_or_else(|| Error::Usage("no audit folder: give PATHs or a config".into()))?;
        vec![l.config.audit.dir.clone()]
    } else {
        paths.to_vec()
    };
    let files = files_under(&roots)?;
    Ok((
        files,
        roots.iter().map(|r| r.display().to_string()).collect(),
    ))
}

struct StatePlan {
    use_state: bool,
    complete: bool,
}

fn state_plan(paths: &[PathBuf], s: StateChoice) -> StatePlan {
    StatePlan {
        use_state: s.state_store || (paths.is_empty() && !s.no_state_store),
        complete: paths.is_empty() || s.state_store,
    }
}

/// Per-file reports → verdicts across runs, with the state store if asked.
async fn cross_check(
    loaded: Option<&Loaded>,
    reports: Vec<FileReport>,
    plan: &StatePlan,
) -> Result<Vec<FileReport>, Error> {
    let runs = match (plan.use_state, loaded) {
        (true, Some(l)) => {
            let state = State::open(&l.config.state.url, l.config.state.lease_ttl)
                .await
                .map_err(|e| {
                    Error::State(format!(
                        "{e}; to verify the files alone, add --no-state-store"
                    ))
                })?;
            let runs = state.runs().await;
            state.close().await;
            Some(runs?)
        }
        _ => None,
    };
    Ok(verify::cross_check(reports, runs.as_deref(), plan.complete))
}

fn exit_for(verdicts: &[FileReport]) -> ExitCode {
    if verdicts.iter().all(|r| r.ok()) {
        ExitCode::Ok
    } else {
        ExitCode::Unexpected
    }
}

/// Run one `lethe audit` command.
pub(crate) async fn dispatch(g: &Global, cmd: AuditCommand) -> Result<ExitCode, Error> {
    match cmd {
        AuditCommand::Verify { paths, s3, state } => verify_runs(g, paths, s3, state).await,
        AuditCommand::Search {
            subject,
            run,
            job,
            rule,
            since,
            until,
            action,
            paths,
        } => {
            let filters = Filters {
                run,
                job,
                rule,
                since,
                until,
                action: action.map(|a| a.as_str().to_string()),
            };
            search_subject(g, subject, filters, paths)
        }
        AuditCommand::Export { format, out, paths } => export_logs(g, format, out, paths),
        AuditCommand::Report { html, paths, state } => report_html(g, html, paths, state).await,
    }
}

/// `audit verify`: every file on its own, then across runs (and against the
/// state store when asked); exit 1 when any run fails.
async fn verify_runs(
    g: &Global,
    paths: Vec<PathBuf>,
    s3: bool,
    state: StateChoice,
) -> Result<ExitCode, Error> {
    // The S3 copies are judged like the configured folder: against
    // the state store, so a copy that is missing is reported.
    let plan = state_plan(if s3 { &[] } else { &paths }, state);
    let loaded = config(g, s3 || paths.is_empty() || plan.use_state)?;
    let downloaded = if s3 {
        Some(download_s3_copies(loaded.as_ref()).await?)
    } else {
        None
    };
    let targets: Vec<PathBuf> = match &downloaded {
        Some(dir) => vec![dir.clone()],
        None => paths,
    };
    let (files, _) = files(loaded.as_ref(), &targets)?;
    let reports: Vec<FileReport> = files.iter().map(|f| verify::verify_file(f)).collect();
    let verdicts = cross_check(loaded.as_ref(), reports, &plan).await;
    if let Some(dir) = &downloaded {
        let _ = std::fs::remove_dir_all(dir);
    }
    let verdicts = verdicts?;
    if verdicts.is_empty() {
        return Err(Error::Audit("no audit logs found".into()));
    }
    print(&match g.output {
        Output::Table => output::verify_table(&verdicts),
        Output::Json => output::verify_json(&verdicts),
    });
    Ok(exit_for(&verdicts))
}

/// `verify --s3`: every run's S3 copy, downloaded into a fresh temporary
/// folder (the caller removes it).
async fn download_s3_copies(loaded: Option<&Loaded>) -> Result<PathBuf, Error> {
    let l = loaded.ok_or_else(|| Error::Usage("--s3 needs the config".into()))?;
    let s3 = l
        .config
        .audit
        .s3
        .as_ref()
        .ok_or_else(|| Error::Usage("--s3: the config sets no audit.s3_store".into()))?;
    let sink = crate::audit::s3::S3AuditSink::open(&l.config, s3).await?;
    let dir = std::env::temp_dir().join(format!("lethe-verify-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Audit(format!("cannot create {}: {e}", dir.display())))?;
    sink.download_all(&dir).await?;
    Ok(dir)
}

/// `audit search`: every record that names the subject's keyed hash, under
/// each configured key.
fn search_subject(
    g: &Global,
    subject: String,
    filters: Filters,
    paths: Vec<PathBuf>,
) -> Result<ExitCode, Error> {
    let subject = read_subject(subject)?;
    if subject.is_empty() {
        return Err(Error::Usage("--subject is empty".into()));
    }
    let loaded = config(g, paths.is_empty())?;
    let (key_env, previous) = match &loaded {
        Some(l) => (
            l.config.audit.hmac_key_env.clone(),
            l.config.audit.previous_key_envs.clone(),
        ),
        None => ("LETHE_AUDIT_KEY".to_string(), vec![]),
    };
    let keys = KeyRing::from_env(&key_env, &previous)?;
    for v in &keys.unset {
        eprintln!(
            "warning: {v} (in audit.previous_key_envs) is not set: records written under that key cannot be searched"
        );
    }
    let (files, _) = files(loaded.as_ref(), &paths)?;
    let mut stats = search::Stats {
        key_ids: keys.key_ids(),
        ..search::Stats::default()
    };
    let mut hashes = BTreeMap::new();
    let mut hits = Vec::new();
    for f in &files {
        let log = read_log(f);
        hits.extend(search::search_log(
            &log,
            &subject,
            &keys,
            &filters,
            &mut hashes,
            &mut stats,
        ));
    }
    drop(subject);
    warn_about_search(&stats);
    print(&match g.output {
        Output::Table => output::search_table(&hits, &stats),
        Output::Json => output::search_json(&hits, &stats),
    });
    Ok(ExitCode::Ok)
}

/// `--subject -` reads the subject from standard input (so it stays out of
/// the process list and the shell history); any other value is the subject.
fn read_subject(subject: String) -> Result<String, Error> {
    if subject != "-" {
        return Ok(subject);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Usage(format!("cannot read the subject from standard input: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// What the search could not see, on standard error: broken logs, records
/// under keys no configured variable holds, hold lists cut at 1,000.
fn warn_about_search(stats: &search::Stats) {
    for f in &stats.broken_logs {
        eprintln!(
            "warning: {} fails verification; its records after the break are marked unverified (run `lethe audit verify`)",
            f.display()
        );
    }
    for (kid, n) in &stats.unknown_key_ids {
        eprintln!(
            "warning: {n} records were written under key id {kid}, which no configured key has: add the variable holding that key to audit.previous_key_envs to search them"
        );
    }
    if stats.truncated_holds > 0 {
        eprintln!(
            "warning: {} hold records list only their first 1,000 held subjects: a held subject may be missing from them",
            stats.truncated_holds
        );
    }
}

/// `audit export`: every record as a CSV row or a JSON line, to a file or
/// standard output.
fn export_logs(
    g: &Global,
    format: ExportFormat,
    out: Option<PathBuf>,
    paths: Vec<PathBuf>,
) -> Result<ExitCode, Error> {
    let loaded = config(g, paths.is_empty())?;
    let (files, _) = files(loaded.as_ref(), &paths)?;
    let format = match format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
    };
    let io_err = |e: std::io::Error| Error::Other(format!("cannot write the export: {e}"));
    let mut w: Box<dyn Write> = match &out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| Error::Other(format!("cannot create {}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut broken = 0;
    let written = (|| -> std::io::Result<()> {
        export::write_header(&mut w, format)?;
        for f in &files {
            let log = read_log(f);
            if log.report.broken_at.is_some() {
                broken += 1;
            }
            export::write_log(&mut w, &log, format)?;
        }
        w.flush()
    })();
    match written {
        Ok(()) => {}
        // The reader stopped reading (`| head`): not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::Ok),
        Err(e) => return Err(io_err(e)),
    }
    if broken > 0 {
        eprintln!(
            "warning: {broken} logs fail verification; their rows after the break have verified=false"
        );
    }
    Ok(ExitCode::Ok)
}

/// `audit report`: the HTML report of the runs, judged like `verify`.
async fn report_html(
    g: &Global,
    html: PathBuf,
    paths: Vec<PathBuf>,
    state: StateChoice,
) -> Result<ExitCode, Error> {
    let plan = state_plan(&paths, state);
    let loaded = config(g, paths.is_empty() || plan.use_state)?;
    let (files, roots) = files(loaded.as_ref(), &paths)?;
    let mut report = Report::default();
    let mut reports = Vec::new();
    for f in &files {
        let log: Log = read_log(f);
        report.add_log(&log);
        reports.push(log.report);
    }
    let verdicts = cross_check(loaded.as_ref(), reports, &plan).await?;
    let jobs: BTreeMap<String, JobMeta> = loaded
        .iter()
        .flat_map(|l| l.jobs.iter())
        .map(|j| {
            (
                j.name.clone(),
                JobMeta {
                    policy: j.policy.clone(),
                    description: j.description.clone(),
                },
            )
        })
        .collect();
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let page = report.render(&verdicts, &jobs, &roots, &generated);
    std::fs::write(&html, page)
        .map_err(|e| Error::Other(format!("cannot write {}: {e}", html.display())))?;
    let totals = report.totals(&verdicts);
    print(&match g.output {
        Output::Table => output::report_table(&html, &totals),
        Output::Json => output::report_json(&html, &totals),
    });
    Ok(exit_for(&verdicts))
}
