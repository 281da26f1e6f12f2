//! The command line: parse, set up logging, call the library, map the result
//! to an exit code. Usage errors exit 64 (clap's own 2 means "plan: pending").

/// The arguments (public: tests parse command lines with [`args::Cli`]).
pub mod args;
pub(crate) mod audit;
pub(crate) mod demo;
pub(crate) mod output;
pub(crate) mod requests;

use crate::config::{self, Loaded};
use crate::engine::{self, Mode, RunOptions};
use crate::error::{Error, ExitCode};
use crate::keys::Keys;
use args::{Cli, Command, Global, Output};
use clap::Parser;
use std::io::{IsTerminal, Write};
use tokio_util::sync::CancellationToken;

/// Entry point for `main`: returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => ExitCode::Usage.code(),
            };
        }
    };
    init_tracing(&cli.global);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Unexpected.code();
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code.code(),
        Err(e) => {
            // One problem per line, each marked, so every config problem reads alike.
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            e.exit_code().code()
        }
    }
}

fn init_tracing(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_env("LETHE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("lethe={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            // Every span on the path (run id and shard, job and rule) rides on every event.
            .with_current_span(false)
            .with_span_list(true)
            .init();
    }
}

fn load(g: &Global) -> Result<Loaded, Error> {
    Ok(config::load(&g.config, &g.jobs_dir)?)
}

fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Cancel on SIGTERM or SIGINT: the current batch commits, then the run stops.
fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("signal received: finishing the current batch, then stopping");
        t.cancel();
    });
    token
}

/// Record a run's metrics and write or push them where the config says.
fn emit_metrics(loaded: &Loaded, report: &engine::RunReport, shard: Option<(u32, u32)>) {
    let m = &loaded.config.metrics;
    if m.textfile.is_none() && m.pushgateway.is_none() {
        return;
    }
    let registry = crate::metrics::Registry::default();
    registry.record(report);
    if let Some(path) = &m.textfile
        && let Err(e) = crate::metrics::write_textfile(path, &registry.render(None))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics file");
    }
    if let Some(url) = &m.pushgateway {
        let shard = shard
            .map(|(i, n)| format!("{i}-of-{n}"))
            .unwrap_or_else(|| "all".into());
        if let Err(e) = crate::metrics::push(url, &registry, &shard) {
            tracing::warn!(error = %e, "cannot push metrics");
        }
    }
}

/// What every command starts from: the global flags, the instant rules
/// count from, and the shard (from the flag or the environment).
struct Invocation<'a> {
    g: &'a Global,
    as_of: chrono::DateTime<chrono::Utc>,
    shard: Option<(u32, u32)>,
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let g = cli.global;
    let as_of = g.as_of.unwrap_or_else(chrono::Utc::now);
    let shard = args::shard_from_env(g.shard).map_err(Error::Usage)?;
    let inv = Invocation {
        g: &g,
        as_of,
        shard,
    };
    match cli.command {
        Command::Check { graph, coverage } => check_cmd(&inv, graph, coverage).await,
        Command::Plan {
            jobs,
            detailed_exitcode,
        } => plan_cmd(&inv, jobs, detailed_exitcode).await,
        Command::Run {
            jobs,
            dry_run,
            confirm,
        } => run_cmd(&inv, jobs, dry_run, &confirm).await,
        Command::Audit(cmd) => audit::dispatch(&g, cmd).await,
        Command::Request(cmd) => requests::dispatch(&g, cmd, as_of).await,
        Command::Demo { users } => demo::run_demo(&g, users, as_of).await,
        Command::Daemon => daemon(&g, shard).await,
        Command::Healthcheck { addr } => healthcheck_cmd(&g, addr).await,
    }
}

/// `lethe check`: problems exit as a config error, unreachable sources as
/// unexpected.
async fn check_cmd(inv: &Invocation<'_>, graph: bool, coverage: bool) -> Result<ExitCode, Error> {
    let g = inv.g;
    let loaded = load(g)?;
    let opts = crate::check::CheckOptions { graph, coverage };
    let report = crate::check::check_with(&loaded, inv.as_of, opts).await;
    print(&match g.output {
        Output::Table => output::check_table(&report),
        Output::Json => output::check_json(&report),
    });
    Ok(if !report.problems.is_empty() {
        ExitCode::Config
    } else if !report.unreachable.is_empty() {
        ExitCode::Unexpected
    } else {
        ExitCode::Ok
    })
}

/// The engine over `jobs` in `mode`, with the keys the config names.
async fn run_engine(
    inv: &Invocation<'_>,
    loaded: &Loaded,
    mode: Mode,
    jobs: Vec<String>,
) -> Result<engine::RunReport, Error> {
    let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
    let report = engine::run(
        loaded,
        &keys,
        RunOptions {
            as_of: inv.as_of,
            mode,
            jobs,
            cancel: cancel_on_signals(),
            shard: inv.shard.map(Into::into),
            progress: terminal_progress(inv.g),
        },
    )
    .await?;
    Ok(report)
}

/// `lethe plan`: pending work exits 2 only with `--detailed-exitcode`.
async fn plan_cmd(
    inv: &Invocation<'_>,
    jobs: Vec<String>,
    detailed_exitcode: bool,
) -> Result<ExitCode, Error> {
    let g = inv.g;
    let loaded = load(g)?;
    let report = run_engine(inv, &loaded, Mode::Plan, jobs).await?;
    print(&match g.output {
        Output::Table => output::run_table(&report, true),
        Output::Json => output::run_json(&report),
    });
    Ok(match report.exit {
        ExitCode::Pending if !detailed_exitcode => ExitCode::Ok,
        other => other,
    })
}

/// `lethe run`: a real run needs its confirmations first; metrics are
/// emitted before the report is printed.
async fn run_cmd(
    inv: &Invocation<'_>,
    jobs: Vec<String>,
    dry_run: bool,
    confirm: &[String],
) -> Result<ExitCode, Error> {
    let g = inv.g;
    let loaded = load(g)?;
    if !dry_run {
        requests::check_confirmation(&loaded, &jobs, confirm)?;
    }
    let mode = if dry_run { Mode::DryRun } else { Mode::Execute };
    let report = run_engine(inv, &loaded, mode, jobs).await?;
    emit_metrics(&loaded, &report, inv.shard);
    print(&match g.output {
        Output::Table => output::run_table(&report, dry_run),
        Output::Json => output::run_json(&report),
    });
    Ok(match report.exit {
        ExitCode::Pending => ExitCode::Ok,
        other => other,
    })
}

/// `lethe healthcheck`: asks the daemon's health endpoint (the config's
/// address unless one is given).
async fn healthcheck_cmd(
    g: &Global,
    addr: Option<std::net::SocketAddr>,
) -> Result<ExitCode, Error> {
    let addr = match addr {
        Some(a) => a,
        None => load(g)?.config.daemon.health_addr,
    };
    Ok(match crate::health::probe(addr).await {
        Ok(body) => {
            print(&format!("{body}\n"));
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::Unexpected
        }
    })
}

/// The configuration, jobs and keys a daemon's runs start with. A reload
/// swaps the whole of it at once; a run keeps the one it started with.
struct InForce {
    loaded: std::sync::Arc<Loaded>,
    keys: Keys,
}

/// Runs one job through the engine for the daemon, recording its metrics.
struct EngineRunner {
    in_force: std::sync::Arc<std::sync::RwLock<InForce>>,
    shard: Option<(u32, u32)>,
    registry: std::sync::Arc<crate::metrics::Registry>,
}

impl crate::schedule::Runner for EngineRunner {
    fn run(&self, job: String, cancel: CancellationToken) -> crate::schedule::BoxFuture<ExitCode> {
        let (loaded, keys) = {
            // A poisoned lock only means a reload panicked mid-swap; what it
            // holds is still one whole InForce (both fields are set together).
            let f = self
                .in_force
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (f.loaded.clone(), f.keys.clone())
        };
        let (registry, shard) = (self.registry.clone(), self.shard);
        Box::pin(async move {
            let opts = RunOptions {
                as_of: chrono::Utc::now(),
                mode: Mode::Execute,
                jobs: vec![job],
                cancel,
                shard: shard.map(Into::into),
                progress: None,
            };
            match engine::run(&loaded, &keys, opts).await {
                Ok(report) => {
                    registry.record(&report);
                    emit_metrics(&loaded, &report, shard);
                    report.exit
                }
                Err(e) => {
                    tracing::error!(error = %e, "scheduled run failed");
                    e.exit_code()
                }
            }
        })
    }
}

/// The daemon's schedule from a loaded configuration: every scheduled,
/// non-manual job, in the configured time zone. Refused when nothing would fire.
fn schedule_of(loaded: &Loaded) -> Result<crate::schedule::Schedule, Error> {
    use crate::schedule::{Entry, Schedule};
    let tz = loaded.config.daemon.time_zone;
    let mut entries = Vec::new();
    for j in loaded.jobs.iter().filter(|j| !j.manual) {
        let Some(schedule) = &j.schedule else {
            continue;
        };
        entries.push(Entry {
            job: j.name.clone(),
            cron: schedule.cron.clone(),
        });
    }
    if entries.is_empty() {
        return Err(Error::Usage(
            "no job has a schedule: nothing for the daemon to do".into(),
        ));
    }
    Ok(Schedule { entries, tz })
}

/// Everything a reload must get right before it may swap: config and jobs
/// valid, the HMAC key present, a schedule with something to fire.
fn reloadable(g: &Global) -> Result<(InForce, crate::schedule::Schedule), Error> {
    let loaded = load(g)?;
    let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
    let schedule = schedule_of(&loaded)?;
    Ok((
        InForce {
            loaded: std::sync::Arc::new(loaded),
            keys,
        },
        schedule,
    ))
}

/// On every SIGHUP: re-read and validate config and jobs; swap them in only
/// when all of it is valid. A refused reload changes nothing (the old
/// configuration and schedule stay in force) and says why, every problem
/// with its file, line and column.
#[cfg(unix)]
fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    g: Global,
    in_force: std::sync::Arc<std::sync::RwLock<InForce>>,
    tx: tokio::sync::mpsc::UnboundedSender<crate::schedule::Schedule>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            tracing::info!(config = %g.config.display(), jobs = %g.jobs_dir.display(), "SIGHUP: reloading config and jobs");
            match reloadable(&g) {
                Ok((next, schedule)) => {
                    let mut f = in_force
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if next.loaded.config.daemon.health_addr != f.loaded.config.daemon.health_addr {
                        tracing::warn!(
                            "daemon.health_addr changed: the health endpoint moves only on a restart"
                        );
                    }
                    tracing::info!(
                        jobs = schedule.entries.len(),
                        config_digest = %next.loaded.config_digest,
                        jobs_digest = %next.loaded.jobs_digest,
                        "reload accepted"
                    );
                    *f = next;
                    drop(f);
                    if tx.send(schedule).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    for line in e.to_string().lines() {
                        tracing::error!(problem = %line, "reload refused");
                    }
                    tracing::error!(
                        "reload refused: the previous configuration and schedule stay in force"
                    );
                }
            }
        }
    });
}

async fn daemon(g: &Global, shard: Option<(u32, u32)>) -> Result<ExitCode, Error> {
    use crate::schedule::{Daemon, DaemonStats, SystemClock};
    use std::sync::Arc;
    // SIGHUP's default action ends the process: take it over before anything
    // else, so a reload sent early never kills the daemon.
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::Other(format!("cannot install the SIGHUP handler: {e}")))?;
    let loaded = Arc::new(load(g)?);
    let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
    let schedule = schedule_of(&loaded)?;
    let registry = Arc::new(crate::metrics::Registry::default());
    let stats = Arc::new(DaemonStats::default());
    let shutdown = cancel_on_signals();
    let addr = loaded.config.daemon.health_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {addr} for health probes: {e}")))?;
    tracing::info!(%addr, jobs = schedule.entries.len(), time_zone = %schedule.tz, "daemon started");
    let server = tokio::spawn(crate::health::serve(
        listener,
        stats.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let in_force = Arc::new(std::sync::RwLock::new(InForce {
        loaded: loaded.clone(),
        keys,
    }));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    #[cfg(unix)]
    reload_on_sighup(hup, g.clone(), in_force.clone(), tx, shutdown.clone());
    #[cfg(not(unix))]
    drop(tx);
    let daemon = Daemon {
        entries: schedule.entries,
        tz: schedule.tz,
        clock: Arc::new(SystemClock),
        runner: Arc::new(EngineRunner {
            in_force,
            shard,
            registry,
        }),
        stats,
        events: None,
        reload: Some(rx),
    };
    daemon.run(shutdown).await;
    let _ = server.await;
    tracing::info!("daemon stopped");
    Ok(ExitCode::Ok)
}

/// Progress bars, only where a person watches a terminal.
#[derive(Debug)]
struct TerminalProgress;

impl engine::Progress for TerminalProgress {
    fn start(&self, job: &str, rule: &str, total: u64) -> Box<dyn engine::RuleProgress> {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:40} {bar:30} {human_pos:>9}/{human_len:9} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{job}/{rule}"));
        Box::new(Bar(bar))
    }
}

struct Bar(indicatif::ProgressBar);

impl engine::RuleProgress for Bar {
    fn advance(&mut self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

fn terminal_progress(g: &Global) -> Option<std::sync::Arc<dyn engine::Progress>> {
    (std::io::stderr().is_terminal() && !g.quiet)
        .then(|| std::sync::Arc::new(TerminalProgress) as _)
}
