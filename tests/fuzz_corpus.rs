//! The fuzzers' kept corpus, replayed in the ordinary test suite.
//!
//! Every file under `fuzz/corpus/<target>/` (seeds, inputs the fuzzer found
//! interesting, and every crasher once fixed) goes through the same checks
//! the fuzz target runs (`fuzz/harness.rs`): no panic, and a refused input
//! is refused with a clean error. A regression that brings back a fixed
//! crash fails here, without a nightly toolchain or cargo-fuzz.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("config", harness::config),
    ("job", harness::job),
    ("duration", harness::duration),
    ("cron", harness::cron),
    ("strategy", harness::strategy),
    ("template", harness::template),
];

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_targets_checks() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 3,
            "fuzz/corpus/{target} keeps only {} files",
            files.len()
        );
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(format!("{target}: {}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "panicked on:\n{}", failures.join("\n"));
}

#[test]
fn the_shipped_files_are_in_the_corpus_and_valid() {
    // The shipped config and jobs are the best seeds; they must also pass
    // the harness as *valid* inputs (a harness that refused them would be
    // checking nothing).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Its real path: the shipped config names files beside it (the calendar).
    let cfg_path = root.join("config/lethe.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    lethe::config::config_from_text(&cfg_path, &cfg, &|_| None)
        .expect("the shipped config parses from text");
    let jc = lethe::config::config_from_text(
        std::path::Path::new("fuzz.toml"),
        harness::JOB_CONFIG,
        &|_| None,
    )
    .expect("the harness's config is valid");
    for f in lethe::config::job_files(&root.join("jobs")).unwrap() {
        let text = std::fs::read_to_string(&f).unwrap();
        lethe::config::job_from_text(&f, &text, &jc)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap();
        assert!(
            root.join("fuzz/corpus/job").join(name).exists(),
            "{} is not a job seed in fuzz/corpus/job",
            name.to_string_lossy()
        );
    }
}
