//! A job file: its header (name, policy, schedule, trigger, `confirm`) and
//! its `[[rules]]`, each dispatched to a SQL rule ([`super::rules`]) or an
//! object rule ([`super::objects`]); and job names unique across files.

use super::names::is_job_name;
use super::objects::object_rule;
use super::rules::rule;
use super::{Ctx, Regions};
use crate::config::cron::parse_cron;
use crate::config::diagnostic::{Diagnostic, SourceFile};
use crate::config::model::{Config, CronSchedule, Job, ObjectRule, Rule, Trigger};
use crate::config::raw::{RawJob, RawRule};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use toml::Spanned;

/// Validate one job file against the validated config.
pub(crate) fn validate_job(
    file: &SourceFile,
    raw: RawJob,
    config: &Config,
    errors: &mut Vec<Diagnostic>,
) -> Option<Job> {
    let no_regions = Regions(Vec::new());
    let mut cx = Ctx {
        file,
        errors,
        env: &no_env,
        regions: &no_regions,
    };
    header(&mut cx, &raw);
    let schedule = raw.schedule.as_ref().and_then(|s| schedule(&mut cx, s));
    if raw.rules.is_empty() {
        cx.errors.push(file.whole("job has no [[rules]]"));
    }
    let trigger = trigger(&mut cx, raw.trigger.as_ref());
    let confirm = raw.confirm.unwrap_or(false);
    if confirm && !raw.manual.unwrap_or(false) {
        cx.errors.push(file.whole(
            "a job with `confirm = true` must also be `manual = true`: it runs only when named",
        ));
    }
    let (rules, object_rules) = rules(&mut cx, config, &raw.rules, trigger);
    Some(Job {
        name: raw.name.into_inner(),
        policy: raw.policy.into_inner(),
        schedule,
        description: raw.description,
        priority: raw.priority.unwrap_or(0),
        manual: raw.manual.unwrap_or(false),
        trigger,
        confirm,
        rules,
        object_rules,
        file: file.path.clone(),
    })
}

/// A job file expands no `${VAR}`: it holds no connection strings.
fn no_env(_: &str) -> Option<String> {
    None
}

/// Name and policy citation.
fn header(cx: &mut Ctx, raw: &RawJob) {
    if !is_job_name(raw.name.get_ref()) {
        cx.err(
            &raw.name,
            "job name must be lowercase letters, digits, `-` or `_`",
        );
    }
    if raw.policy.get_ref().trim().is_empty() {
        cx.err(
            &raw.policy,
            "policy must cite the policy section this job enforces, e.g. \"IV(2)2\"",
        );
    }
}

/// `schedule`: six fields, seconds first; `None` after reporting a problem.
fn schedule(cx: &mut Ctx, s: &Spanned<String>) -> Option<CronSchedule> {
    let fields = s.get_ref().split_whitespace().count();
    if fields != 6 {
        cx.err(
            s,
            format!("schedule has {fields} fields; Lethe's cron has 6, seconds first (e.g. \"0 30 2 * * *\")"),
        );
        return None;
    }
    match parse_cron(s.get_ref()) {
        Ok(cron) => Some(CronSchedule {
            text: s.get_ref().clone(),
            cron,
        }),
        Err(e) => {
            cx.err(s, e);
            None
        }
    }
}

/// `trigger = "request"`, or by age (the default).
fn trigger(cx: &mut Ctx, t: Option<&Spanned<String>>) -> Trigger {
    match t {
        None => Trigger::Age,
        Some(t) if t.get_ref() == "request" => Trigger::Request,
        Some(t) if t.get_ref() == "age" => Trigger::Age,
        Some(t) => {
            cx.err(
                t,
                format!(
                    "unknown trigger `{}` (use \"request\", or leave it out for rules by age)",
                    t.get_ref()
                ),
            );
            Trigger::Age
        }
    }
}

/// The SQL rules and the object rules, each in file order.
fn rules(
    cx: &mut Ctx,
    config: &Config,
    raw: &[Spanned<RawRule>],
    trigger: Trigger,
) -> (Vec<Rule>, Vec<ObjectRule>) {
    let mut names = BTreeSet::new();
    let mut rules = Vec::new();
    let mut object_rules = Vec::new();
    for spanned in raw {
        let r = spanned.get_ref();
        if !is_job_name(r.name.get_ref()) {
            cx.err(
                &r.name,
                "rule name must be lowercase letters, digits, `-` or `_`",
            );
        }
        if !names.insert(r.name.get_ref().clone()) {
            cx.err(
                &r.name,
                format!("rule `{}` appears twice in this job", r.name.get_ref()),
            );
        }
        match &r.store {
            Some(store) if trigger == Trigger::Request => cx.err(
                store,
                "a request job acts on rows of a subject; link the subject's objects to its rows with [[rules.objects]]",
            ),
            Some(store) => object_rules.extend(object_rule(cx, config, spanned, store)),
            None => rules.extend(rule(cx, config, spanned, trigger)),
        }
    }
    (rules, object_rules)
}

/// Job names must be unique across files.
pub(crate) fn check_unique_jobs(jobs: &[(SourceFile, Job)], errors: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (file, job) in jobs {
        if let Some(first) = seen.insert(job.name.as_str(), file.path.as_path()) {
            errors.push(file.whole(format!(
                "job `{}` is also defined in {}",
                job.name,
                first.display()
            )));
        }
    }
}
