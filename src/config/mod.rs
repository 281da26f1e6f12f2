//! Configuration: `config/lethe.toml` (where) and `jobs/*.toml` (what).
//!
//! Loading is two phases, after the model of vector's config compiler: strict
//! serde parsing into [`raw`] structs, then [`validate`], which reports every
//! problem at once with file, line and column and yields the typed [`model`].

pub(crate) mod calendar;
pub(crate) mod cron;
pub(crate) mod diagnostic;
pub(crate) mod interpolate;
pub mod model;
pub mod period;
pub(crate) mod raw;
pub mod throttle;
pub mod validate;

pub use diagnostic::{Diagnostic, SourceFile};
pub use model::*;
pub use period::{Period, PeriodError};

use std::fmt;
use std::path::{Path, PathBuf};

/// Every problem found while loading, in file order.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<ConfigErrors> for crate::error::Error {
    fn from(e: ConfigErrors) -> Self {
        crate::error::Error::Config(e.to_string())
    }
}

/// The configuration and all jobs, validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub jobs: Vec<Job>,
    /// SHA-256 of the config file's bytes, recorded in every audit run.
    pub config_digest: String,
    /// SHA-256 over the jobs' file names and bytes, in name order.
    pub jobs_digest: String,
}

impl Loaded {
    /// The job called `name`, as `run --job` and the daemon name it.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile::new(path, text))
        .map_err(|e| Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })
}

/// The job files of a directory, sorted by name.
pub fn job_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| Diagnostic {
        file: dir.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the jobs directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Load and validate with the process environment.
pub fn load(config_path: &Path, jobs_dir: &Path) -> Result<Loaded, ConfigErrors> {
    load_with_env(config_path, jobs_dir, &|k| std::env::var(k).ok())
}

/// Load and validate with `env` standing in for the process environment,
/// so tests and the fuzzers decide what `${VAR}` expands to.
pub fn load_with_env(
    config_path: &Path,
    jobs_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    use sha2::{Digest, Sha256};
    let mut errors = Vec::new();
    let cfg_file = read(config_path).map_err(|d| ConfigErrors(vec![d]))?;
    let config = config_from_file(&cfg_file, env, &mut errors)?;

    let files = job_files(jobs_dir).map_err(|d| ConfigErrors(vec![d]))?;
    let mut jobs_hasher = Sha256::new();
    let mut jobs = Vec::new();
    for path in files {
        let file = match read(&path) {
            Ok(f) => f,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        jobs_hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        jobs_hasher.update([0u8]);
        jobs_hasher.update(file.text.as_bytes());
        jobs_hasher.update([0u8]);
        if let Some(cfg) = &config
            && let Some(job) = job_from_file(&file, cfg, &mut errors)
        {
            jobs.push((file, job));
        } else if config.is_none() {
            // The config is broken, yet a job's own syntax errors still count.
            if let Err(e) = toml::from_str::<raw::RawJob>(&file.text) {
                errors.push(diagnostic::from_toml_error(&file, &e));
            }
        }
    }
    validate::check_unique_jobs(&jobs, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let config = config.expect("no errors means the config validated");
    let mut jobs: Vec<Job> = jobs.into_iter().map(|(_, j)| j).collect();
    // Highest priority first; ties in name order, so runs are reproducible.
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Loaded {
        config,
        jobs,
        config_digest: hex::encode(Sha256::digest(cfg_file.text.as_bytes())),
        jobs_digest: hex::encode(jobs_hasher.finalize()),
    })
}

/// Parse and validate a config file's text. A TOML syntax or type error stops
/// here (the rest cannot be read); validation problems are pushed to `errors`
/// and yield `Ok(None)` when the config cannot be used.
fn config_from_file(
    file: &SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> Result<Option<Config>, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(&file.text)
        .map_err(|e| ConfigErrors(vec![diagnostic::from_toml_error(file, &e)]))?;
    Ok(validate::validate_config(file, raw, env, errors))
}

fn job_from_file(file: &SourceFile, config: &Config, errors: &mut Vec<Diagnostic>) -> Option<Job> {
    match toml::from_str::<raw::RawJob>(&file.text) {
        Ok(raw) => validate::validate_job(file, raw, config, errors),
        Err(e) => {
            errors.push(diagnostic::from_toml_error(file, &e));
            None
        }
    }
}

/// One config file's text, parsed and validated exactly as [`load`] does
/// (without reading the jobs). The fuzzers and `tests/fuzz_corpus.rs` enter
/// here, so whatever they prove holds for the loader.
pub fn config_from_text(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = SourceFile::new(path, text.to_string());
    let mut errors = Vec::new();
    let config = config_from_file(&file, env, &mut errors)?;
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(errors)),
    }
}

/// One job file's text, parsed and validated against `config` exactly as
/// [`load`] does (uniqueness across jobs aside).
pub fn job_from_text(path: &Path, text: &str, config: &Config) -> Result<Job, ConfigErrors> {
    let file = SourceFile::new(path, text.to_string());
    let mut errors = Vec::new();
    match job_from_file(&file, config, &mut errors) {
        Some(j) if errors.is_empty() => Ok(j),
        _ => Err(ConfigErrors(errors)),
    }
}
