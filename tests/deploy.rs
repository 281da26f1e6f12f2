//! The container image and Kubernetes manifests, checked without a cluster or
//! a Docker engine: structure, the fields a platform team expects, exit codes
//! that exist, arguments the real CLI accepts, and config that matches the repo.

mod common;

use clap::Parser;
use serde_yaml::Value;
use std::path::Path;

fn docs(file: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(common::repo().join("deploy/kubernetes").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

use serde::Deserialize;

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[key],
        };
        assert!(!cur.is_null(), "missing `{path}` (at `{key}`)");
    }
    cur
}

fn lethe_codes() -> Vec<i64> {
    lethe::ExitCode::ALL
        .iter()
        .map(|c| i64::from(c.code()))
        .collect()
}

/// Checks every pod template shares: non-root, exit-code policy, secrets by reference, valid args.
fn check_job_spec(job: &Value, pod: &Value, what: &str) {
    at(job, "backoffLimit");
    at(job, "activeDeadlineSeconds");
    at(job, "ttlSecondsAfterFinished");
    let rules = at(job, "podFailurePolicy.rules").as_sequence().unwrap();
    let codes = lethe_codes();
    let mut named = 0;
    for r in rules {
        if let Some(values) = r["onExitCodes"]["values"].as_sequence() {
            assert_eq!(r["onExitCodes"]["containerName"], "lethe", "{what}");
            for v in values {
                let c = v.as_i64().unwrap();
                assert!(
                    codes.contains(&c),
                    "{what}: exit code {c} is not one Lethe uses ({codes:?})"
                );
                named += 1;
            }
        }
    }
    assert!(named > 0, "{what}: the policy keys on Lethe's exit codes");
    assert_eq!(
        at(pod, "restartPolicy"),
        "Never",
        "{what}: podFailurePolicy needs restartPolicy Never"
    );
    assert!(
        at(pod, "terminationGracePeriodSeconds").as_i64().unwrap() >= 30,
        "{what}"
    );
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true),
        "{what}"
    );
    let c = &at(pod, "containers").as_sequence().unwrap()[0];
    assert_eq!(c["name"], "lethe");
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{what}"
    );
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let argv = std::iter::once("lethe".to_string()).chain(args.iter().cloned());
    lethe::cli::args::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{what}: args {args:?} are not valid: {e}"));
    let env = c["env"].as_sequence().unwrap();
    for secret in ["LETHE_AUDIT_KEY", "APP_DATABASE_URL", "LETHE_STATE_URL"] {
        let e = env
            .iter()
            .find(|e| e["name"] == secret)
            .unwrap_or_else(|| panic!("{what}: no {secret}"));
        assert!(
            e["value"].is_null(),
            "{what}: {secret} must come from a Secret, not a literal"
        );
        assert_eq!(
            e["valueFrom"]["secretKeyRef"]["name"], "lethe-secrets",
            "{what}"
        );
    }
}

#[test]
fn the_cronjob_is_what_a_platform_team_expects() {
    let d = docs("cronjob.yaml");
    let cj = &d[0];
    assert_eq!(cj["kind"], "CronJob");
    assert_eq!(at(cj, "spec.concurrencyPolicy"), "Forbid");
    lethe::schedule::parse_tz(at(cj, "spec.timeZone").as_str().unwrap()).unwrap();
    at(cj, "spec.startingDeadlineSeconds");
    let job = at(cj, "spec.jobTemplate.spec");
    check_job_spec(job, at(job, "template.spec"), "cronjob");
    let args = &at(job, "template.spec.containers.0.args")[0];
    assert_eq!(args, "run");
}

#[test]
fn the_indexed_job_shards_through_the_completion_index() {
    let d = docs("indexed-job.yaml");
    let j = &d[0];
    assert_eq!(j["kind"], "Job");
    assert_eq!(at(j, "spec.completionMode"), "Indexed");
    let n = at(j, "spec.completions").as_i64().unwrap();
    assert!(n > 1);
    assert_eq!(
        at(j, "spec.parallelism").as_i64().unwrap(),
        n,
        "all shards run side by side"
    );
    let spec = at(j, "spec");
    check_job_spec(spec, at(spec, "template.spec"), "indexed job");
    let args = format!("{:?}", at(spec, "template.spec.containers.0.args"));
    assert!(
        !args.contains("--shard"),
        "the shard comes from JOB_COMPLETION_INDEX, not a fixed flag"
    );
}

#[test]
fn the_dry_run_job_only_plans() {
    let d = docs("dry-run-job.yaml");
    let j = &d[0];
    let spec = at(j, "spec");
    check_job_spec(spec, at(spec, "template.spec"), "dry-run job");
    assert_eq!(at(spec, "template.spec.containers.0.args.0"), "plan");
}

#[test]
fn the_configmaps_match_the_repository() {
    let d = docs("configmap.yaml");
    let repo = common::repo();
    let config = d
        .iter()
        .find(|m| m["metadata"]["name"] == "lethe-config")
        .unwrap();
    let want = std::fs::read_to_string(repo.join("config/lethe.toml")).unwrap();
    assert_eq!(
        config["data"]["lethe.toml"].as_str().unwrap(),
        want,
        "config drifted: run scripts/configmap.sh"
    );
    // The calendar [requests] names is mounted beside lethe.toml.
    let calendar = std::fs::read_to_string(repo.join("config/calendar-cn.toml")).unwrap();
    assert_eq!(
        config["data"]["calendar-cn.toml"].as_str().unwrap(),
        calendar,
        "calendar drifted: run scripts/configmap.sh"
    );
    let jobs = d
        .iter()
        .find(|m| m["metadata"]["name"] == "lethe-jobs")
        .unwrap();
    let files = lethe::config::job_files(&repo.join("jobs")).unwrap();
    assert_eq!(
        jobs["data"].as_mapping().unwrap().len(),
        files.len(),
        "jobs drifted: run scripts/configmap.sh"
    );
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let want = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            jobs["data"][name].as_str().unwrap_or_default(),
            want,
            "{name} drifted: run scripts/configmap.sh"
        );
    }
}

#[test]
fn the_dockerfile_builds_the_tested_binary_as_non_root() {
    let repo = common::repo();
    let text = std::fs::read_to_string(repo.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    let builds: Vec<&&str> = lines.iter().filter(|l| l.contains("cargo build")).collect();
    assert_eq!(
        builds.len(),
        2,
        "a cached dependency layer, then the real build"
    );
    for b in &builds {
        assert!(
            b.contains("--release --locked --bin lethe"),
            "the locked lethe binary: {b}"
        );
        assert!(
            !b.contains("--features") && !b.contains("--no-default-features"),
            "the tests' feature set: {b}"
        );
    }
    let deps_layer = text.find("cargo build").unwrap();
    assert!(text.find("COPY Cargo.toml Cargo.lock").unwrap() < deps_layer);
    assert!(
        text.find("COPY src").unwrap() > deps_layer,
        "sources come after the dependency layer"
    );
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    if manifest.contains("[[bench]]") {
        assert!(
            text[..deps_layer].contains("COPY benches"),
            "declared bench targets must exist for the dependency build"
        );
    }
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(
        !user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"),
        "non-root: {user}"
    );
    let entry = lines
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("an ENTRYPOINT");
    let json: Vec<String> = serde_json::from_str(entry.trim_start_matches("ENTRYPOINT").trim())
        .expect("exec form (a JSON array)");
    assert_eq!(json, ["/usr/local/bin/lethe"]);
    let rust = text
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .unwrap();
    let want = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let v = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        v(rust) >= v(want),
        "the image's Rust ({rust}) is at least the crate's rust-version ({want})"
    );
    assert!(Path::new(&repo.join(".dockerignore")).exists());
}
