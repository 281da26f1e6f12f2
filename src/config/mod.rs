//! Configuration: `config/lethe.toml` (where) and `jobs/*.toml` (what).
//!
//! Loading is two phases, after the model of vector's config compiler: strict
//! serde parsing into [`raw`] structs, then [`validate`], which reports every
//! problem at once with file, line and column and yields the typed [`model`].

pub mod diagnostic;
pub mod interpolate;
pub mod model;
pub mod period;
pub mod raw;
pub mod validate;

pub use diagnostic::{Diagnostic, SourceFile};
pub use model::*;
pub use period::Period;

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

pub fn load_with_env(
    config_path: &Path,
    jobs_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    use sha2::{Digest, Sha256};
    let mut errors = Vec::new();
    let cfg_file = read(config_path).map_err(|d| ConfigErrors(vec![d]))?;
    let raw: raw::RawConfig = toml::from_str(&cfg_file.text)
        .map_err(|e| ConfigErrors(vec![diagnostic::from_toml_error(&cfg_file, &e)]))?;
    let config = validate::validate_config(&cfg_file, raw, env, &mut errors);

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
        let raw: raw::RawJob = match toml::from_str(&file.text) {
            Ok(r) => r,
            Err(e) => {
                errors.push(diagnostic::from_toml_error(&file, &e));
                continue;
            }
        };
        if let Some(cfg) = &config
            && let Some(job) = validate::validate_job(&file, raw, cfg, &mut errors)
        {
            jobs.push((file, job));
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
