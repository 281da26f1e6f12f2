//! The command line: parse, set up logging, call the library, map the result
//! to an exit code. Usage errors exit 64 (clap's own 2 means "plan: pending").

pub mod args;
pub mod audit;
pub mod output;

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
            .with_current_span(true)
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

async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let g = cli.global;
    let as_of = g.as_of.unwrap_or_else(chrono::Utc::now);
    match cli.command {
        Command::Check => {
            let loaded = load(&g)?;
            let report = crate::check::check(&loaded, as_of).await;
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
        Command::Plan {
            jobs,
            detailed_exitcode,
        } => {
            let loaded = load(&g)?;
            let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
            let report = engine::run(
                &loaded,
                &keys,
                RunOptions {
                    as_of,
                    mode: Mode::Plan,
                    jobs,
                    cancel: cancel_on_signals(),
                },
            )
            .await?;
            print(&match g.output {
                Output::Table => output::run_table(&report, true),
                Output::Json => output::run_json(&report),
            });
            Ok(match report.exit {
                ExitCode::Pending if !detailed_exitcode => ExitCode::Ok,
                other => other,
            })
        }
        Command::Run { jobs, dry_run } => {
            let loaded = load(&g)?;
            let keys = Keys::from_env(&loaded.config.audit.hmac_key_env)?;
            let mode = if dry_run { Mode::DryRun } else { Mode::Execute };
            let report = engine::run(
                &loaded,
                &keys,
                RunOptions {
                    as_of,
                    mode,
                    jobs,
                    cancel: cancel_on_signals(),
                },
            )
            .await?;
            print(&match g.output {
                Output::Table => output::run_table(&report, dry_run),
                Output::Json => output::run_json(&report),
            });
            Ok(match report.exit {
                ExitCode::Pending => ExitCode::Ok,
                other => other,
            })
        }
        Command::Audit(cmd) => audit::dispatch(&g, cmd).await,
        Command::Demo { users } => crate::demo::run_demo(&g, users, as_of).await,
    }
}
