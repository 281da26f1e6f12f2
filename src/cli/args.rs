//! Command-line arguments (clap derive). Global flags work before or after
//! the subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The whole command line (public: tests parse argument lists with
/// `Cli::try_parse_from` to check what the binary would accept).
#[derive(Debug, Parser)]
#[command(name = "lethe", version, about = "Retention and deletion batch job runner", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after its name.
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
    /// Handle shard I of N (`0/3`): N processes share every rule without overlap.
    /// In a Kubernetes Indexed Job it defaults to JOB_COMPLETION_INDEX/JOB_COMPLETIONS.
    #[arg(long, global = true, value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Only errors on standard error.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on standard error (repeat for even more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--output`: tables for people, JSON Lines for machines.
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

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not I/N (e.g. 0/3)"))?;
    let (i, n): (u32, u32) = (
        i.parse()
            .map_err(|_| format!("`{i}` is not a shard index"))?,
        n.parse()
            .map_err(|_| format!("`{n}` is not a shard count"))?,
    );
    if n == 0 || i >= n {
        return Err(format!(
            "shard {i}/{n}: the index must be below the count, counting from 0"
        ));
    }
    Ok((i, n))
}

/// The shard from `--shard`, else from a Kubernetes Indexed Job's environment.
pub fn shard_from_env(flag: Option<(u32, u32)>) -> Result<Option<(u32, u32)>, String> {
    if flag.is_some() {
        return Ok(flag);
    }
    match (
        std::env::var("JOB_COMPLETION_INDEX"),
        std::env::var("JOB_COMPLETIONS"),
    ) {
        (Ok(i), Ok(n)) => parse_shard(&format!("{i}/{n}")).map(|s| (s.1 > 1).then_some(s)),
        _ => Ok(None),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate config and jobs, then compare them with every live schema.
    Check {
        /// Also print, per rule, the tree of tables its deletion reaches and
        /// each foreign key's status.
        #[arg(long)]
        graph: bool,
        /// Also list personal-looking columns and subject references no rule covers.
        #[arg(long)]
        coverage: bool,
    },
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
        /// Confirm a job marked `confirm = true` (the business-suspension
        /// job): its name again, as `--job <name> --confirm <name>`.
        #[arg(long)]
        confirm: Vec<String>,
    },
    /// Erasure requests: file, list, show, reject, and the receipt for the person.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Run every scheduled job on its `schedule` until SIGTERM.
    Daemon,
    /// Ask a running daemon whether it is healthy (exit 0) or not (exit 1).
    Healthcheck {
        /// The daemon's health address (default: `daemon.health_addr` from the config).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
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

/// `lethe request …`.
#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// File a request; prints its id and due instant.
    Add {
        /// The requester's id as the application knows it (a user id), or
        /// `-` to read it from standard input. Kept only while the request is open.
        #[arg(long)]
        subject: String,
        /// What is asked for.
        #[arg(long, default_value = "erasure")]
        kind: String,
        /// When it was received (RFC 3339); default: now (or --as-of).
        #[arg(long, value_parser = parse_as_of)]
        received: Option<chrono::DateTime<chrono::Utc>>,
        /// The company's ticket id (no personal data).
        #[arg(long = "ref")]
        ref_: Option<String>,
    },
    /// Open requests, or every request in one state; exits 5 while one is overdue.
    List {
        /// pending, done, held or rejected (default: the open ones, pending and held).
        #[arg(long)]
        state: Option<String>,
        /// Every request, closed ones too.
        #[arg(long, conflicts_with = "state")]
        all: bool,
    },
    /// One request.
    Show { id: String },
    /// Reject an open request on one of the policy's VII(7) grounds.
    Reject {
        id: String,
        /// legal-obligation, national-security, public-interest,
        /// criminal-proceedings, bad-faith, vital-interests, harm-to-others,
        /// trade-secrets, unfounded-repetition, excessive-means, unrealistic.
        #[arg(long)]
        reason: String,
        /// The operator's note (no personal data).
        #[arg(long)]
        note: String,
    },
    /// What a reply to the person needs: erased per rule and policy section,
    /// what was kept and why, due instant and completion. No personal data.
    Receipt {
        id: String,
        /// Also write the receipt as a self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

/// `lethe audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash and link, every run's seal, and (for the
    /// configured folder) the state store's heads and the links between runs;
    /// exits 1 on any finding.
    Verify {
        /// Files or folders (default: the configured audit folder).
        paths: Vec<PathBuf>,
        /// Verify the copies in the configured S3 audit sink (`audit.s3_store`)
        /// instead of local files, against the state store.
        #[arg(long, conflicts_with = "paths")]
        s3: bool,
        #[command(flatten)]
        state: StateChoice,
    },
    /// Every record about one subject, across runs: was it erased, when, by
    /// which rule, under which policy section.
    Search {
        /// The subject's raw id (e.g. a user id), or `-` to read it from
        /// standard input. Only its keyed hash is compared; it is never printed.
        #[arg(long)]
        subject: String,
        /// Only this run (its id or a prefix of it).
        #[arg(long)]
        run: Option<String>,
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only records at or after this instant (RFC 3339).
        #[arg(long, value_parser = parse_as_of)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only records at or before this instant (RFC 3339).
        #[arg(long, value_parser = parse_as_of)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this action.
        #[arg(long, value_enum)]
        action: Option<SearchAction>,
        /// Files or folders (default: the configured audit folder).
        paths: Vec<PathBuf>,
    },
    /// Every record as one flat table (CSV or JSON Lines), one row per record.
    Export {
        /// `csv` for spreadsheets, `json` (JSON Lines) for SIEMs.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Files or folders (default: the configured audit folder).
        paths: Vec<PathBuf>,
    },
    /// One self-contained HTML page: runs over time, per job and rule counts,
    /// guard trips, failures, verification of every log, policy sections.
    Report {
        /// The HTML file to write.
        #[arg(long)]
        html: PathBuf,
        /// Files or folders (default: the configured audit folder).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        state: StateChoice,
    },
}

/// Whether verification also compares the logs with the state store.
#[derive(Debug, Args, Clone, Copy)]
pub struct StateChoice {
    /// Also compare with the state store when PATHs are given (they are then
    /// taken as the whole log). On by default without PATHs.
    #[arg(long, conflicts_with = "no_state_store")]
    pub state_store: bool,
    /// Verify the files alone, without the state store.
    #[arg(long)]
    pub no_state_store: bool,
}

/// `audit search --action`: the kinds of record a search can be narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchAction {
    Delete,
    Anonymize,
    Hold,
}

impl SearchAction {
    /// The action as the audit log spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchAction::Delete => "delete",
            SearchAction::Anonymize => "anonymize",
            SearchAction::Hold => "hold",
        }
    }
}

/// `audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}
