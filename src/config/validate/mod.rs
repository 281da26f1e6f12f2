//! Second phase: raw structs → typed model, collecting every problem at once.
//!
//! Offline only: nothing here touches the network. Checks against the live
//! schema (does the table exist, is the foreign key covered) live in
//! `crate::check`.
//!
//! One pass per section, each in the file named after it: the config's
//! [`sources`], [`stores`], [`audit`], [`service`] (`[state]`, `[daemon]`,
//! `[metrics]`), [`coverage`] and [`requests`]; a job's header and its rules
//! in [`job`], a SQL rule in [`rules`], its cascade in [`children`], objects in
//! [`objects`], batch sizing and guards in [`batch`]. Every pass pushes its
//! problems to one [`Ctx`] and goes on, so the order of the diagnostics is the
//! order of the sections, and a user fixes a file in one round trip. No pass
//! may stop the others: a broken value is reported and replaced by its
//! default (or the item dropped), never returned early from the whole file.

mod actions;
mod audit;
mod batch;
mod children;
mod coverage;
mod job;
mod names;
mod objects;
mod requests;
mod rules;
mod service;
mod sources;
mod stores;

pub use crate::anonymize::strategy::parse_strategy;
pub use batch::{PauseError, parse_pause_text};
pub(crate) use job::{check_unique_jobs, validate_job};

use super::diagnostic::{Diagnostic, SourceFile};
use super::interpolate::expand;
use super::model::{Config, Origin};
use super::raw::RawConfig;
use std::collections::BTreeMap;
use toml::Spanned;

/// Collects diagnostics for one file.
struct Ctx<'a> {
    file: &'a SourceFile,
    errors: &'a mut Vec<Diagnostic>,
    /// Where `${VAR}` in a config's URLs expands from (a job expands nothing).
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config's `allowed_regions` (a job declares no region).
    regions: &'a Regions,
}

impl Ctx<'_> {
    /// `${VAR}` / `${VAR:-default}` in `value`, from this file's environment.
    fn expand(&self, value: &str) -> Result<String, String> {
        expand(value, self.env)
    }

    /// A problem at `spanned`; `msg` is a text or a typed error's message.
    fn err<T>(&mut self, spanned: &Spanned<T>, msg: impl std::fmt::Display) {
        self.errors
            .push(self.file.at(spanned.span(), msg.to_string()));
    }

    /// A source's, store's or the audit sink's `region` (see [`Regions::check`]).
    fn region<T>(&mut self, region: Option<&Spanned<String>>, what: &str, owner: &Spanned<T>) {
        let regions = self.regions;
        regions.check(self, region, what, owner);
    }

    fn origin<T>(&self, spanned: &Spanned<T>) -> Origin {
        let (line, column) = self.file.position(spanned.span().start);
        Origin {
            file: self.file.path.clone(),
            line,
            column,
        }
    }
}

/// `allowed_regions`: where personal data may live (policy IV(1)). Empty
/// means no restriction.
struct Regions(Vec<String>);

impl Regions {
    /// A source's, store's or the audit sink's `region` must be allowed;
    /// a missing one is reported at `owner` (the item's table).
    fn check<T>(
        &self,
        cx: &mut Ctx,
        region: Option<&Spanned<String>>,
        what: &str,
        owner: &Spanned<T>,
    ) {
        if self.0.is_empty() {
            return;
        }
        match region {
            Some(r) if self.0.contains(r.get_ref()) => {}
            Some(r) => cx.err(
                r,
                format!(
                    "{what} is in region `{}`, which is not in allowed_regions {:?}: personal data must stay in-country",
                    r.get_ref(),
                    self.0
                ),
            ),
            None => cx.err(
                owner,
                format!("{what} declares no region, but allowed_regions is set: add `region = \"...\"`"),
            ),
        }
    }
}

/// Every `[<section>.<name>]` table that validated (`one` says whether it
/// did), by name; problems are reported in name order.
fn named<R, T>(
    cx: &mut Ctx,
    raw: &BTreeMap<String, Spanned<R>>,
    one: fn(&mut Ctx, &str, &Spanned<R>) -> Option<T>,
) -> BTreeMap<String, T> {
    raw.iter()
        .filter_map(|(name, spanned)| Some((name.clone(), one(cx, name, spanned)?)))
        .collect()
}

/// One of a fixed set of words (`choices`); anything else is reported with
/// `refusal(word)` and read as `fallback`.
fn keyword<T: Clone>(
    cx: &mut Ctx,
    s: &Spanned<String>,
    choices: &[(&str, T)],
    fallback: T,
    refusal: impl FnOnce(&str) -> String,
) -> T {
    match choices.iter().find(|(word, _)| word == s.get_ref()) {
        Some((_, value)) => value.clone(),
        None => {
            cx.err(s, refusal(s.get_ref()));
            fallback
        }
    }
}

/// Validate a config file, section by section, in file-format order.
pub(crate) fn validate_config(
    file: &SourceFile,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Config> {
    let regions = Regions(
        raw.allowed_regions
            .iter()
            .map(|r| r.get_ref().clone())
            .collect(),
    );
    let mut cx = Ctx {
        file,
        errors,
        env,
        regions: &regions,
    };
    let sources = named(&mut cx, &raw.sources, sources::source);
    let stores = named(&mut cx, &raw.stores, stores::store);
    let audit = audit::audit(&mut cx, raw.audit, &stores);
    let state = service::state(&mut cx, raw.state);
    let daemon = service::daemon(&mut cx, raw.daemon.as_ref());
    let metrics = service::metrics(&mut cx, raw.metrics);
    let coverage = coverage::coverage(&mut cx, raw.coverage.as_ref());
    let requests = requests::requests(&mut cx, raw.requests.as_ref(), &sources);
    Some(Config {
        file: file.path.clone(),
        allowed_regions: regions.0,
        sources,
        stores,
        audit,
        state,
        daemon,
        metrics,
        coverage,
        requests,
    })
}
