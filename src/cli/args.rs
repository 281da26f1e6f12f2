//! Command-line arguments (clap derive). Global flags work before or after
//! the subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "lethe", version, about = "Retention and deletion batch job runner", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Connections, audit sink and state store.
    #[arg(
        long,
        global = true,
        env = "LETHE_CONFIG",
        default_value = "config/lethe.toml"
    )]
    pub config: PathBuf,
    /// Folder of job files (`*.toml`).
    #[arg(
        long = "jobs",
        global = true,
        env = "LETHE_JOBS",
        default_value = "jobs"
    )]
    pub jobs_dir: PathBuf,
    /// Evaluate retention as of this instant (RFC 3339) instead of now.
    #[arg(long, global = true, value_parser = parse_as_of)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// `table` for people, `json` for machines (JSON Lines, one object per line).
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Only errors on standard error.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on standard error (repeat for even more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

fn parse_as_of(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 instant (e.g. 2026-11-30T02:30:00Z): {e}"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate config and jobs, then compare them with every live schema.
    Check,
    /// Dry run: what every rule would delete, anonymize or skip. Changes nothing
    /// but the audit log's dry-run entry.
    Plan {
        /// Only these jobs (repeatable).
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Exit 2 when work is pending (0 when there is none).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Execute once and exit (the CronJob entry point).
    Run {
        /// Only these jobs (repeatable); manual jobs run only when named.
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Count and report, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read and verify the deletion log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create demo data under var/ and run every shipped job on it.
    Demo {
        /// Users to generate (other tables scale with it).
        #[arg(long, default_value_t = 1_000)]
        users: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash and link; exits 1 on any break or unsealed run.
    Verify {
        /// Files or folders (default: the configured audit folder).
        paths: Vec<PathBuf>,
    },
}
