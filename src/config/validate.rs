//! Second phase: raw structs → typed model, collecting every problem at once.
//!
//! Offline only: nothing here touches the network. Checks against the live
//! schema (does the table exist, is the foreign key covered) live in
//! `crate::check`.

use super::diagnostic::{Diagnostic, SourceFile};
use super::interpolate::{expand, has_literal_password};
use super::model::*;
use super::period::Period;
use super::raw::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Collects diagnostics for one file.
struct Ctx<'a> {
    file: &'a SourceFile,
    errors: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, spanned: &Spanned<T>, msg: impl Into<String>) {
        self.errors.push(self.file.at(spanned.span(), msg));
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

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn is_job_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub fn validate_config(
    file: &SourceFile,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Config> {
    let mut cx = Ctx { file, errors };
    let allowed_regions: Vec<String> = raw
        .allowed_regions
        .iter()
        .map(|r| r.get_ref().clone())
        .collect();
    let region_ok = |cx: &mut Ctx,
                     region: &Option<Spanned<String>>,
                     what: &str,
                     at: &dyn Fn(&mut Ctx, String)| {
        if allowed_regions.is_empty() {
            return;
        }
        match region {
            Some(r) if allowed_regions.contains(r.get_ref()) => {}
            Some(r) => cx.err(
                r,
                format!(
                    "{what} is in region `{}`, which is not in allowed_regions {:?}: personal data must stay in-country",
                    r.get_ref(),
                    allowed_regions
                ),
            ),
            None => at(
                cx,
                format!("{what} declares no region, but allowed_regions is set: add `region = \"...\"`"),
            ),
        }
    };

    let mut sources = BTreeMap::new();
    for (name, spanned) in &raw.sources {
        let src = spanned.get_ref();
        if !is_identifier(name) {
            cx.err(
                spanned,
                format!("source name `{name}` must be letters, digits and `_`"),
            );
        }
        if has_literal_password(src.url.get_ref()) {
            cx.err(
                &src.url,
                format!("source `{name}`: the url holds a literal password; take it from the environment with ${{VAR}}"),
            );
        }
        let url = match expand(src.url.get_ref(), env) {
            Ok(u) => u,
            Err(e) => {
                cx.err(&src.url, format!("source `{name}`: {e}"));
                continue;
            }
        };
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://")
            || url.starts_with("sqlite:"))
        {
            cx.err(
                &src.url,
                format!("source `{name}`: url must start with postgres://, mysql://, mariadb:// or sqlite:"),
            );
        }
        region_ok(
            &mut cx,
            &src.region,
            &format!("source `{name}`"),
            &|cx, m| cx.err(spanned, m),
        );
        let batch_pause = match &src.batch_pause {
            None => Duration::ZERO,
            Some(p) => parse_pause(&mut cx, p),
        };
        let reconnect_for = match &src.reconnect_for {
            None => super::model::DEFAULT_RECONNECT_FOR,
            Some(p) => parse_pause(&mut cx, p),
        };
        let after_purge = match &src.after_purge {
            None => AfterPurge::None,
            Some(a) => {
                match a.get_ref().as_str() {
                    "none" => AfterPurge::None,
                    "vacuum" => AfterPurge::Vacuum,
                    other => {
                        cx.err(
                        a,
                        format!("after_purge = \"{other}\": use \"none\" (the default) or \"vacuum\""),
                    );
                        AfterPurge::None
                    }
                }
            }
        };
        let max_connections = src
            .max_connections
            .as_ref()
            .map(|m| *m.get_ref())
            .unwrap_or(4);
        if let Some(m) = &src.max_connections
            && *m.get_ref() == 0
        {
            cx.err(m, "max_connections must be at least 1");
        }
        sources.insert(
            name.clone(),
            Source {
                name: name.clone(),
                url,
                region: src.region.as_ref().map(|r| r.get_ref().clone()),
                max_connections,
                batch_pause,
                reconnect_for,
                after_purge,
            },
        );
    }

    let mut stores = BTreeMap::new();
    for (name, spanned) in &raw.stores {
        let st = spanned.get_ref();
        if !is_identifier(name) {
            cx.err(
                spanned,
                format!("store name `{name}` must be letters, digits and `_`"),
            );
        }
        region_ok(&mut cx, &st.region, &format!("store `{name}`"), &|cx, m| {
            cx.err(spanned, m)
        });
        if let Some(kind) = store_kind(&mut cx, name, spanned, env) {
            let concurrency = match &st.concurrency {
                None => DEFAULT_STORE_CONCURRENCY,
                Some(c) if (1..=MAX_STORE_CONCURRENCY as i64).contains(c.get_ref()) => {
                    *c.get_ref() as usize
                }
                Some(c) => {
                    cx.err(
                        c,
                        format!("concurrency must be between 1 and {MAX_STORE_CONCURRENCY}"),
                    );
                    DEFAULT_STORE_CONCURRENCY
                }
            };
            let max_attempts = match &st.max_attempts {
                None => DEFAULT_MAX_ATTEMPTS,
                Some(m) if (1..=20).contains(m.get_ref()) => *m.get_ref() as u32,
                Some(m) => {
                    cx.err(m, "max_attempts must be between 1 and 20");
                    DEFAULT_MAX_ATTEMPTS
                }
            };
            stores.insert(
                name.clone(),
                Store {
                    name: name.clone(),
                    kind,
                    region: st.region.as_ref().map(|r| r.get_ref().clone()),
                    concurrency,
                    max_attempts,
                    origin: cx.origin(spanned),
                },
            );
        }
    }

    let audit = match raw.audit {
        Some(a) => {
            let env_name = a
                .hmac_key_env
                .as_ref()
                .map(|s| s.get_ref().clone())
                .unwrap_or_else(|| "LETHE_AUDIT_KEY".into());
            if let Some(k) = &a.hmac_key_env
                && !is_identifier(k.get_ref())
            {
                cx.err(
                    k,
                    "hmac_key_env names an environment variable: letters, digits and `_`",
                );
            }
            let mut previous_key_envs: Vec<String> = Vec::new();
            for p in &a.previous_key_envs {
                let name = p.get_ref();
                if !is_identifier(name) {
                    cx.err(
                        p,
                        "previous_key_envs names environment variables: letters, digits and `_`",
                    );
                } else if *name == env_name {
                    cx.err(
                        p,
                        format!("`{name}` is the current key (hmac_key_env), not a previous one"),
                    );
                } else if previous_key_envs.contains(name) {
                    cx.err(p, format!("`{name}` is listed twice"));
                } else {
                    previous_key_envs.push(name.clone());
                }
            }
            if let Some(r) = &a.region {
                region_ok(&mut cx, &Some(r.clone()), "the audit sink", &|_, _| {});
            }
            let s3 = a.s3_store.as_ref().and_then(|st| {
                match stores.get(st.get_ref()) {
                    Some(Store {
                        kind: StoreKind::S3 { .. },
                        ..
                    }) => {}
                    Some(_) => {
                        cx.err(
                            st,
                            format!(
                                "audit s3_store `{}` is not an S3 store (kind = \"s3\")",
                                st.get_ref()
                            ),
                        );
                        return None;
                    }
                    None => {
                        cx.err(
                            st,
                            format!(
                                "audit s3_store `{}` is not a store in [stores]",
                                st.get_ref()
                            ),
                        );
                        return None;
                    }
                }
                let retention = match &a.s3_retention {
                    None => "3y".parse().expect("valid default"),
                    Some(r) => r.get_ref().parse::<Period>().unwrap_or_else(|e| {
                        cx.err(r, e);
                        "3y".parse().expect("valid default")
                    }),
                };
                Some(AuditS3 {
                    store: st.get_ref().clone(),
                    prefix: a.s3_prefix.clone().unwrap_or_else(|| "lethe-audit/".into()),
                    retention,
                })
            });
            AuditConfig {
                dir: a.dir.unwrap_or_else(|| "var/audit".into()).into(),
                hmac_key_env: env_name,
                previous_key_envs,
                region: a.region.map(|r| r.into_inner()),
                s3,
            }
        }
        None => AuditConfig {
            dir: "var/audit".into(),
            hmac_key_env: "LETHE_AUDIT_KEY".into(),
            previous_key_envs: vec![],
            region: None,
            s3: None,
        },
    };

    let state = match raw.state {
        Some(s) => {
            let url = match &s.url {
                Some(u) => match expand(u.get_ref(), env) {
                    Ok(v) => v,
                    Err(e) => {
                        cx.err(u, format!("state url: {e}"));
                        String::new()
                    }
                },
                None => DEFAULT_STATE_URL.into(),
            };
            let lease_ttl = match &s.lease_ttl {
                Some(t) => match t.get_ref().parse::<Period>() {
                    Ok(p) if p.as_std() >= Duration::from_secs(5) => p.as_std(),
                    Ok(_) => {
                        cx.err(t, "lease_ttl must be at least 5s");
                        Duration::from_secs(60)
                    }
                    Err(e) => {
                        cx.err(t, e);
                        Duration::from_secs(60)
                    }
                },
                None => Duration::from_secs(60),
            };
            StateConfig { url, lease_ttl }
        }
        None => StateConfig {
            url: DEFAULT_STATE_URL.into(),
            lease_ttl: Duration::from_secs(60),
        },
    };

    let daemon = {
        let raw = raw.daemon.as_ref();
        let tz = raw.and_then(|d| d.time_zone.as_ref());
        let time_zone = match tz {
            Some(t) => match crate::schedule::parse_tz(t.get_ref()) {
                Ok(_) => t.get_ref().clone(),
                Err(e) => {
                    cx.err(t, e);
                    DEFAULT_TIME_ZONE.into()
                }
            },
            None => DEFAULT_TIME_ZONE.into(),
        };
        let addr = raw.and_then(|d| d.health_addr.as_ref());
        let health_addr = match addr {
            Some(a) => a.get_ref().parse().unwrap_or_else(|_| {
                cx.err(
                    a,
                    format!(
                        "`{}` is not an address:port such as 127.0.0.1:9464",
                        a.get_ref()
                    ),
                );
                DEFAULT_HEALTH_ADDR.parse().expect("valid default")
            }),
            None => DEFAULT_HEALTH_ADDR.parse().expect("valid default"),
        };
        DaemonConfig {
            time_zone,
            health_addr,
        }
    };

    let metrics = match raw.metrics {
        None => MetricsConfig::default(),
        Some(m) => MetricsConfig {
            textfile: m.textfile.map(Into::into),
            pushgateway: m.pushgateway.and_then(|p| match expand(p.get_ref(), env) {
                Ok(u) if u.starts_with("http://") => Some(u.trim_end_matches('/').to_string()),
                Ok(_) => {
                    cx.err(&p, "pushgateway must be an http:// URL (Lethe pushes plain HTTP inside the cluster)");
                    None
                }
                Err(e) => {
                    cx.err(&p, format!("pushgateway: {e}"));
                    None
                }
            }),
        },
    };

    let coverage = {
        let c = raw.coverage.as_ref();
        let mut out = Vec::new();
        let given: Vec<(Option<&Spanned<String>>, String)> =
            match c.and_then(|c| c.patterns.as_ref()) {
                Some(ps) => ps.iter().map(|p| (Some(p), p.get_ref().clone())).collect(),
                None => DEFAULT_PERSONAL_PATTERNS
                    .iter()
                    .map(|p| (None, p.to_string()))
                    .collect(),
            };
        let extra = c
            .map(|c| {
                c.extra_patterns
                    .iter()
                    .map(|p| (Some(p), p.get_ref().clone()))
            })
            .into_iter()
            .flatten();
        for (span, text) in given.into_iter().chain(extra) {
            match PersonalPattern::parse(&text) {
                Ok(p) => out.push(p),
                Err(e) => {
                    if let Some(s) = span {
                        cx.err(s, format!("coverage: {e}"));
                    }
                }
            }
        }
        out
    };
    let requests = requests_config(&mut cx, raw.requests.as_ref(), &sources);

    Some(Config {
        file: file.path.clone(),
        allowed_regions,
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

/// `[requests]`: the calendar file (read here, its problems reported with
/// its own file, line and column), N, the zone and the intake table.
fn requests_config(
    cx: &mut Ctx,
    raw: Option<&RawRequests>,
    sources: &BTreeMap<String, Source>,
) -> RequestsConfig {
    use crate::requests::calendar::{Calendar, Deadlines};
    let working_days = match raw.and_then(|r| r.deadline_working_days.as_ref()) {
        None => DEFAULT_DEADLINE_WORKING_DAYS,
        Some(n) if (1..=366).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            cx.err(n, "deadline_working_days must be between 1 and 366");
            DEFAULT_DEADLINE_WORKING_DAYS
        }
    };
    let default_tz = || {
        DEFAULT_REQUESTS_TIME_ZONE
            .parse::<chrono_tz::Tz>()
            .expect("valid default zone")
    };
    let tz = match raw.and_then(|r| r.time_zone.as_ref()) {
        None => default_tz(),
        Some(t) => crate::schedule::parse_tz(t.get_ref()).unwrap_or_else(|e| {
            cx.err(t, e);
            default_tz()
        }),
    };
    let mut calendar_file = None;
    let calendar = match raw.and_then(|r| r.calendar.as_ref()) {
        None => Calendar::default(),
        Some(c) => {
            let base = cx.file.path.parent().unwrap_or(Path::new(""));
            let path = base.join(c.get_ref());
            calendar_file = Some(path.clone());
            if !path.is_file() {
                cx.err(
                    c,
                    format!(
                        "calendar {} does not exist (the path is relative to this file's folder)",
                        path.display()
                    ),
                );
                Calendar::default()
            } else {
                match Calendar::load(&path) {
                    Ok(cal) => cal,
                    Err(problems) => {
                        cx.errors.extend(problems);
                        Calendar::default()
                    }
                }
            }
        }
    };
    let intake = raw.and_then(|r| r.intake.as_ref()).and_then(|i| {
        let parts: Vec<&str> = i.get_ref().split('.').collect();
        let (source, schema, table) = match parts.as_slice() {
            [src, t] => (*src, None, *t),
            [src, sch, t] => (*src, Some(*sch), *t),
            _ => {
                cx.err(i, "intake must be `<source>.<table>`");
                return None;
            }
        };
        if !sources.contains_key(source) {
            cx.err(
                i,
                format!("intake names source `{source}`, which [sources] does not define"),
            );
            return None;
        }
        if !schema
            .iter()
            .chain(std::iter::once(&table))
            .all(|p| is_identifier(p))
        {
            cx.err(i, "intake: table names are letters, digits and `_`");
            return None;
        }
        Some(TableRef {
            source: source.into(),
            schema: schema.map(str::to_string),
            table: table.into(),
        })
    });
    RequestsConfig {
        deadlines: Deadlines {
            calendar,
            working_days,
            tz,
        },
        calendar_file,
        intake,
    }
}

/// `kind` and the settings that belong to it; `None` after reporting a problem.
fn store_kind(
    cx: &mut Ctx,
    name: &str,
    spanned: &Spanned<RawStore>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<StoreKind> {
    let st = spanned.get_ref();
    let not_for = |cx: &mut Ctx, present: bool, key: &str, kind: &str| {
        if present {
            cx.err(
                spanned,
                format!("store `{name}`: `{key}` does not apply to kind \"{kind}\""),
            );
        }
    };
    match st.kind.get_ref().as_str() {
        "s3" => {
            not_for(cx, st.path.is_some(), "path", "s3");
            let bucket = match &st.bucket {
                Some(b) if is_bucket_name(b.get_ref()) => b.get_ref().clone(),
                Some(b) => {
                    cx.err(
                        b,
                        format!("store `{name}`: `{}` is not a bucket name (3 to 63 lowercase letters, digits, `.` and `-`)", b.get_ref()),
                    );
                    return None;
                }
                None => {
                    cx.err(
                        spanned,
                        format!("store `{name}`: kind \"s3\" needs `bucket`"),
                    );
                    return None;
                }
            };
            let endpoint = match &st.endpoint {
                None => None,
                Some(e) => match expand(e.get_ref(), env) {
                    Ok(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
                    Ok(_) => {
                        cx.err(
                            e,
                            format!("store `{name}`: endpoint must start with http:// or https://"),
                        );
                        return None;
                    }
                    Err(err) => {
                        cx.err(e, format!("store `{name}`: {err}"));
                        return None;
                    }
                },
            };
            Some(StoreKind::S3 {
                bucket,
                endpoint,
                path_style: st.path_style.unwrap_or(false),
            })
        }
        "fs" => {
            not_for(cx, st.bucket.is_some(), "bucket", "fs");
            not_for(cx, st.endpoint.is_some(), "endpoint", "fs");
            not_for(cx, st.path_style.is_some(), "path_style", "fs");
            not_for(cx, st.max_attempts.is_some(), "max_attempts", "fs");
            match &st.path {
                Some(p) if !p.get_ref().trim().is_empty() => Some(StoreKind::Fs {
                    path: p.get_ref().into(),
                }),
                Some(p) => {
                    cx.err(p, format!("store `{name}`: `path` is empty"));
                    None
                }
                None => {
                    cx.err(spanned, format!("store `{name}`: kind \"fs\" needs `path`"));
                    None
                }
            }
        }
        other => {
            cx.err(
                &st.kind,
                format!("store `{name}`: unknown kind `{other}` (use \"s3\" or \"fs\")"),
            );
            None
        }
    }
}

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `[[rules.objects]]` entries: a known store and exactly one way to name objects.
fn object_links(cx: &mut Ctx, config: &Config, raw: &[Spanned<RawObjects>]) -> Vec<ObjectLink> {
    let mut out = Vec::new();
    for o in raw {
        let ro = o.get_ref();
        if !config.stores.contains_key(ro.store.get_ref()) {
            let known: Vec<&String> = config.stores.keys().collect();
            cx.err(
                &ro.store,
                format!(
                    "objects name store `{}`, which config does not define (known: {known:?})",
                    ro.store.get_ref()
                ),
            );
            continue;
        }
        let names = match (&ro.prefix, &ro.key_column) {
            (Some(p), None) => match Template::parse(p.get_ref()) {
                Ok(t) if t.columns().is_empty() => {
                    cx.err(p, "the prefix names no column (e.g. \"avatars/{id}/\"): every row would erase the same objects");
                    continue;
                }
                Ok(t) if matches!(t.parts.last(), Some(TemplatePart::Column(_))) => {
                    cx.err(
                        p,
                        format!("prefix `{}` ends with a column: the prefix for id 1 would also match id 10, 11, …; end it with `/`", p.get_ref()),
                    );
                    continue;
                }
                Ok(t) => ObjectNames::Prefix(t),
                Err(e) => {
                    cx.err(p, e);
                    continue;
                }
            },
            (None, Some(k)) => ObjectNames::KeyColumn(column(cx, k, "key_column")),
            _ => {
                cx.err(
                    o,
                    "objects need exactly one of `prefix` (a template) or `key_column`",
                );
                continue;
            }
        };
        out.push(ObjectLink {
            store: ro.store.get_ref().clone(),
            names,
            origin: cx.origin(o),
        });
    }
    out
}

/// A rule with `store = ...`: prefix, age and tags over a store's objects.
fn object_rule(
    cx: &mut Ctx,
    config: &Config,
    spanned: &Spanned<RawRule>,
    store: &Spanned<String>,
) -> Option<ObjectRule> {
    let r = spanned.get_ref();
    let mut misplaced = |present: bool, key: &str, why: &str| {
        if present {
            cx.err(
                spanned,
                format!("`{key}` does not apply to an object rule (`store`): {why}"),
            );
        }
    };
    misplaced(
        r.target.is_some(),
        "target",
        "a rule acts on a table or on a store, not both",
    );
    misplaced(r.key.is_some(), "key", "objects are named by their keys");
    misplaced(
        r.concurrency.is_some(),
        "concurrency",
        "requests in flight are set on the store (`stores.<name>.concurrency`)",
    );
    misplaced(
        r.walk.is_some(),
        "walk",
        "a store is listed in key order; there is no index to choose",
    );
    misplaced(
        r.batch_time.is_some() || r.batch_size_max.is_some(),
        "batch_time",
        "object batches are sized by `batch_size` (DeleteObjects takes 1,000 keys)",
    );
    misplaced(
        r.partitions.is_some(),
        "partitions",
        "a store has no partitions",
    );
    misplaced(
        r.subject.is_some(),
        "subject",
        "a store holds no subject column; link objects to rows with [[rules.objects]] instead",
    );
    misplaced(
        r.where_.is_some(),
        "where",
        "objects are selected by prefix, select.older_than and tags",
    );
    misplaced(
        r.hold.is_some(),
        "hold",
        "objects are held by S3 Object Lock (legal hold or retention)",
    );
    misplaced(
        !r.children.is_empty(),
        "children",
        "objects have no children",
    );
    misplaced(
        !r.objects.is_empty(),
        "objects",
        "the rule's own objects are selected by prefix",
    );
    if let Some(a) = &r.action
        && !matches!(a.get_ref(), RawAction::Delete)
    {
        cx.err(
            a,
            "an object rule can only delete (objects cannot be anonymized)",
        );
    }
    if !config.stores.contains_key(store.get_ref()) {
        let known: Vec<&String> = config.stores.keys().collect();
        cx.err(
            store,
            format!(
                "store `{}` is not defined in config (known: {known:?})",
                store.get_ref()
            ),
        );
        return None;
    }
    let older_than = r.select.as_ref().and_then(|s| {
        let sel = s.get_ref();
        if let Some(c) = &sel.column {
            cx.err(
                c,
                "an object rule selects on last-modified time: drop `column`",
            );
        }
        if let Some(f) = &sel.format {
            cx.err(
                f,
                "an object rule selects on last-modified time: drop `format`",
            );
        }
        if let Some(n) = &sel.newer_than {
            cx.err(n, "an object rule takes `older_than` only");
        }
        match &sel.older_than {
            Some(o) => match o.get_ref().parse::<Period>() {
                Ok(p) => Some(p),
                Err(e) => {
                    cx.err(o, e);
                    None
                }
            },
            None => {
                cx.err(s, "select needs `older_than`");
                None
            }
        }
    });
    let tags = r
        .tags
        .as_ref()
        .map(|t| {
            if t.get_ref().is_empty() {
                cx.err(t, "`tags` is empty: drop it or name a tag");
            }
            t.get_ref().clone()
        })
        .unwrap_or_default();
    let prefix = match &r.prefix {
        Some(p) => {
            if p.get_ref().is_empty() && older_than.is_none() && tags.is_empty() {
                cx.err(
                    p,
                    "an empty prefix with no `select` and no `tags` would erase the whole store",
                );
            }
            if p.get_ref().contains('{') {
                cx.err(
                    p,
                    "an object rule's prefix is literal; templates belong in [[rules.objects]]",
                );
            }
            p.get_ref().clone()
        }
        None => {
            cx.err(
                spanned,
                "an object rule needs `prefix` (it may be \"\" when `select` or `tags` narrows it)",
            );
            String::new()
        }
    };
    let batch_size = match &r.batch_size {
        None => DEFAULT_OBJECT_BATCH_SIZE,
        Some(b) if matches!(b.get_ref(), RawBatchSize::Rows(n) if (1..=100_000).contains(n)) => {
            match b.get_ref() {
                RawBatchSize::Rows(n) => *n as usize,
                RawBatchSize::Word(_) => unreachable!("matched above"),
            }
        }
        Some(b) => {
            cx.err(
                b,
                "batch_size of an object rule must be between 1 and 100000",
            );
            DEFAULT_OBJECT_BATCH_SIZE
        }
    };
    let (max_rows, max_fraction) = guards(cx, r);
    Some(ObjectRule {
        name: r.name.get_ref().clone(),
        store: store.get_ref().clone(),
        prefix,
        older_than,
        tags,
        batch_size,
        max_rows,
        max_fraction,
        origin: cx.origin(spanned),
    })
}

fn guards(cx: &mut Ctx, r: &RawRule) -> (Option<u64>, Option<f64>) {
    let max_rows = r.max_rows.as_ref().and_then(|m| {
        if *m.get_ref() < 0 {
            cx.err(m, "max_rows cannot be negative");
            None
        } else {
            Some(*m.get_ref() as u64)
        }
    });
    let max_fraction = r.max_fraction.as_ref().and_then(|m| {
        let v = *m.get_ref();
        if !(v > 0.0 && v <= 1.0) {
            cx.err(m, "max_fraction must be greater than 0 and at most 1");
            None
        } else {
            Some(v)
        }
    });
    (max_rows, max_fraction)
}

/// Where leases and run history live when the config says nothing.
pub const DEFAULT_STATE_URL: &str = "sqlite://var/state.db?mode=rwc";

/// `batch_size` (a number or `"auto"`), `batch_time` and `batch_size_max`
/// of a SQL rule: (first or fixed size, target duration, ceiling).
fn batch_sizing(cx: &mut Ctx, r: &RawRule) -> (usize, Option<Duration>, usize) {
    let mut auto = false;
    let mut size = None;
    match r.batch_size.as_ref() {
        None => {}
        Some(b) => match b.get_ref() {
            RawBatchSize::Rows(v) if *v >= 1 && *v as usize <= MAX_BATCH_SIZE => {
                size = Some(*v as usize)
            }
            RawBatchSize::Rows(_) => cx.err(
                b,
                format!("batch_size must be between 1 and {MAX_BATCH_SIZE}, or \"auto\""),
            ),
            RawBatchSize::Word(w) if w == "auto" => auto = true,
            RawBatchSize::Word(w) => cx.err(
                b,
                format!(
                    "batch_size: invalid type: string `{w}`, expected a number of rows or \"auto\""
                ),
            ),
        },
    }
    let time = match &r.batch_time {
        None if auto => Some(DEFAULT_BATCH_TIME),
        None => None,
        Some(t) => {
            let d = parse_pause(cx, t);
            if d.is_zero() || d > Duration::from_secs(60) {
                cx.err(t, "batch_time must be between 1ms and 60s (e.g. \"50ms\")");
                None
            } else {
                Some(d)
            }
        }
    };
    let max = match &r.batch_size_max {
        None => MAX_BATCH_SIZE,
        Some(m) => {
            let v = *m.get_ref();
            if time.is_none() {
                cx.err(m, "batch_size_max bounds a batch sized by time: set batch_time (or batch_size = \"auto\") too");
            }
            if v < 1 || v as usize > MAX_BATCH_SIZE {
                cx.err(
                    m,
                    format!("batch_size_max must be between 1 and {MAX_BATCH_SIZE}"),
                );
                MAX_BATCH_SIZE
            } else {
                v as usize
            }
        }
    };
    let first = match (size, time) {
        (Some(n), _) => n,
        (None, Some(_)) => DEFAULT_AUTO_FIRST_BATCH.min(max),
        (None, None) => DEFAULT_BATCH_SIZE,
    };
    if time.is_some()
        && first > max
        && let Some(m) = &r.batch_size_max
    {
        cx.err(
            m,
            format!("batch_size_max ({max}) is below batch_size ({first})"),
        );
    }
    (first, time, max)
}

fn parse_pause(cx: &mut Ctx, p: &Spanned<String>) -> Duration {
    parse_pause_text(p.get_ref()).unwrap_or_else(|e| {
        cx.err(p, e);
        Duration::ZERO
    })
}

/// A pause or timer length: `50ms`, or any [`Period`] (`1s`, `2m`).
pub fn parse_pause_text(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("`{s}` is not a pause (e.g. `50ms`, `1s`)"));
    }
    s.parse::<Period>().map(|per| per.as_std())
}

/// Parse `source.table` or `source.schema.table`.
fn parse_table(cx: &mut Ctx, config: &Config, s: &Spanned<String>, what: &str) -> Option<TableRef> {
    let parts: Vec<&str> = s.get_ref().split('.').collect();
    let (source, schema, table) = match parts.as_slice() {
        [src, t] => (*src, None, *t),
        [src, sch, t] => (*src, Some(*sch), *t),
        _ => {
            cx.err(
                s,
                format!(
                    "{what} `{}` must be `<source>.<table>` or `<source>.<schema>.<table>`",
                    s.get_ref()
                ),
            );
            return None;
        }
    };
    if !config.sources.contains_key(source) {
        let known: Vec<&String> = config.sources.keys().collect();
        cx.err(s, format!("{what} `{}` names source `{source}`, which config does not define (known: {known:?})", s.get_ref()));
        return None;
    }
    for part in schema.iter().chain(std::iter::once(&table)) {
        if !is_identifier(part) {
            cx.err(
                s,
                format!("{what}: `{part}` is not a plain identifier (letters, digits, `_`)"),
            );
            return None;
        }
    }
    Some(TableRef {
        source: source.to_string(),
        schema: schema.map(str::to_string),
        table: table.to_string(),
    })
}

fn column(cx: &mut Ctx, s: &Spanned<String>, what: &str) -> String {
    if !is_identifier(s.get_ref()) {
        cx.err(
            s,
            format!(
                "{what} `{}` is not a plain column name (letters, digits, `_`)",
                s.get_ref()
            ),
        );
    }
    s.get_ref().clone()
}

/// One anonymization strategy as a job writes it (`mask:4`, `fixed:x`).
pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    let (head, arg) = match s.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (s, None),
    };
    Ok(match (head, arg) {
        ("null", None) => Strategy::Null,
        ("redact", None) => Strategy::Redact,
        ("hash", None) => Strategy::Hash,
        ("mask", None) => Strategy::Mask(4),
        ("mask", Some(n)) => Strategy::Mask(n.parse().map_err(|_| {
            format!("`mask:{n}`: the number of characters to keep must be a whole number")
        })?),
        ("year", None) => Strategy::Year,
        ("month", None) => Strategy::Month,
        ("fixed", Some(v)) => Strategy::Fixed(v.to_string()),
        ("fixed", None) => return Err("`fixed` needs a value: `fixed:<value>`".into()),
        _ => {
            return Err(format!(
                "unknown strategy `{s}` (use null, fixed:<value>, redact, hash, mask, mask:<n>, year or month)"
            ));
        }
    })
}

fn action(cx: &mut Ctx, a: &Spanned<RawAction>) -> Action {
    match a.get_ref() {
        RawAction::Delete => Action::Delete,
        RawAction::Anonymize(cols) => {
            if cols.is_empty() {
                cx.err(a, "anonymize names no columns");
            }
            let mut out = Vec::new();
            for (col, strat) in cols {
                if !is_identifier(col) {
                    cx.err(strat, format!("`{col}` is not a plain column name"));
                }
                match parse_strategy(strat.get_ref()) {
                    Ok(s) => out.push((col.clone(), s)),
                    Err(e) => cx.err(strat, format!("column `{col}`: {e}")),
                }
            }
            Action::Anonymize(out)
        }
    }
}

fn children(
    cx: &mut Ctx,
    config: &Config,
    parent: &TableRef,
    raw: &[Spanned<RawChild>],
    depth: usize,
) -> Vec<Child> {
    let mut out = Vec::new();
    for c in raw {
        let rc = c.get_ref();
        if depth > 4 {
            cx.err(c, "children nest more than four levels deep");
            continue;
        }
        let Some(target) = parse_table(cx, config, &rc.target, "child target") else {
            continue;
        };
        if target.source != parent.source {
            cx.err(
                &rc.target,
                format!(
                    "child `{target}` is on source `{}` but its parent is on `{}`: a batch is one transaction, so children must share the parent's source",
                    target.source, parent.source
                ),
            );
        }
        let foreign_key = column(cx, &rc.foreign_key, "foreign_key");
        let key = rc.key.as_ref().map(|k| column(cx, k, "key"));
        let act = action(cx, &rc.action);
        let grandchildren = children(cx, config, &target, &rc.children, depth + 1);
        if depth > 1 && !rc.objects.is_empty() {
            cx.err(
                &rc.objects[0],
                "objects can be linked to a rule's rows and its direct children's rows, not deeper",
            );
        }
        let objects = object_links(cx, config, &rc.objects);
        out.push(Child {
            target,
            foreign_key,
            key,
            action: act,
            children: grandchildren,
            objects,
            origin: cx.origin(c),
        });
    }
    out
}

pub fn validate_job(
    file: &SourceFile,
    raw: RawJob,
    config: &Config,
    errors: &mut Vec<Diagnostic>,
) -> Option<Job> {
    let mut cx = Ctx { file, errors };
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
    if let Some(s) = &raw.schedule {
        let fields = s.get_ref().split_whitespace().count();
        if fields != 6 {
            cx.err(
                s,
                format!("schedule has {fields} fields; Lethe's cron has 6, seconds first (e.g. \"0 30 2 * * *\")"),
            );
        } else if let Err(e) = crate::schedule::parse_cron(s.get_ref()) {
            cx.err(s, e);
        }
    }
    if raw.rules.is_empty() {
        cx.errors.push(file.whole("job has no [[rules]]"));
    }
    let trigger = match &raw.trigger {
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
    };
    let confirm = raw.confirm.unwrap_or(false);
    if confirm && !raw.manual.unwrap_or(false) {
        cx.errors.push(file.whole(
            "a job with `confirm = true` must also be `manual = true`: it runs only when named",
        ));
    }
    let mut names = BTreeSet::new();
    let mut rules = Vec::new();
    let mut object_rules = Vec::new();
    for spanned in &raw.rules {
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
        if let Some(store) = &r.store {
            if trigger == Trigger::Request {
                cx.err(
                    store,
                    "a request job acts on rows of a subject; link the subject's objects to its rows with [[rules.objects]]",
                );
                continue;
            }
            if let Some(o) = object_rule(&mut cx, config, spanned, store) {
                object_rules.push(o);
            }
            continue;
        }
        let Some(target_s) = &r.target else {
            cx.err(
                spanned,
                "rule needs `target = \"<source>.<table>\"` (rows) or `store = \"<store>\"` (objects)",
            );
            continue;
        };
        if let Some(p) = &r.prefix {
            cx.err(p, "`prefix` belongs to object rules (`store`); link objects to rows with [[rules.objects]]");
        }
        if let Some(t) = &r.tags {
            cx.err(t, "`tags` belongs to object rules (`store`)");
        }
        let Some(target) = parse_table(&mut cx, config, target_s, "target") else {
            continue;
        };
        let key = r
            .key
            .as_ref()
            .map(|k| column(&mut cx, k, "key"))
            .unwrap_or_else(|| "id".into());
        let subject = r.subject.as_ref().map(|s| column(&mut cx, s, "subject"));
        let select = r.select.as_ref().map(|s| {
            let sel = s.get_ref();
            let column = match &sel.column {
                Some(c) => column(&mut cx, c, "select column"),
                None => {
                    cx.err(s, "select needs `column` (the time column to compare)");
                    String::new()
                }
            };
            let (period_s, older) = match (&sel.older_than, &sel.newer_than) {
                (Some(o), None) => (Some(o), true),
                (None, Some(n)) => (Some(n), false),
                _ => {
                    cx.err(s, "select needs exactly one of `older_than` or `newer_than`");
                    (None, true)
                }
            };
            let period = match period_s.map(|p| (p, p.get_ref().parse::<Period>())) {
                Some((_, Ok(p))) => p,
                Some((sp, Err(e))) => {
                    cx.err(sp, e);
                    Period { amount: 0, unit: super::period::Unit::Days }
                }
                None => Period { amount: 0, unit: super::period::Unit::Days },
            };
            let format = match sel.format.as_ref().map(|f| f.get_ref().as_str()) {
                None | Some("native") => TimeFormat::Native,
                Some("rfc3339") => TimeFormat::Rfc3339,
                Some("unix") => TimeFormat::Unix,
                Some("unix_ms") => TimeFormat::UnixMs,
                Some("date") => TimeFormat::Date,
                Some(other) => {
                    cx.err(
                        sel.format.as_ref().expect("format is set"),
                        format!("unknown time format `{other}` (use native, rfc3339, date, unix or unix_ms)"),
                    );
                    TimeFormat::Native
                }
            };
            Select { column, period, older, format }
        });
        let where_ = r.where_.as_ref().map(|w| {
            if w.get_ref().contains(';') {
                cx.err(w, "`where` must be one SQL predicate, without `;`");
            }
            w.get_ref().clone()
        });
        if trigger == Trigger::Request {
            if let Some(sel) = &r.select {
                cx.err(
                    sel,
                    "a request job's rules have no `select`: the open requests' subjects pick the rows",
                );
            }
            if r.subject.is_none() {
                cx.err(
                    spanned,
                    "a request job's rule needs `subject = \"<column>\"`: the column holding the requester's id",
                );
            }
        } else if select.is_none() && where_.is_none() {
            cx.err(
                spanned,
                "rule selects nothing: give `select = { column, older_than }`, `where`, or both",
            );
        }
        let hold = r.hold.as_ref().and_then(|h| {
            let parts: Vec<&str> = h.get_ref().rsplitn(2, '.').collect();
            if parts.len() != 2 {
                cx.err(h, "hold must be `<source>.<table>.<column>`");
                return None;
            }
            let table_spanned = Spanned::new(h.span(), parts[1].to_string());
            let table = parse_table(&mut cx, config, &table_spanned, "hold table")?;
            if table.source != target.source {
                cx.err(h, "the hold list must live on the same source as the target, so it is read in the same transaction");
            }
            if subject.is_none() {
                cx.err(h, "a hold lists subjects: the rule needs `subject = \"<column>\"` too");
            }
            if !is_identifier(parts[0]) {
                cx.err(h, format!("`{}` is not a plain column name", parts[0]));
            }
            Some(HoldRef { table, column: parts[0].to_string() })
        });
        let act = match &r.action {
            Some(a) => action(&mut cx, a),
            None => {
                cx.err(
                    spanned,
                    "rule needs `action` (\"delete\" or { anonymize = {...} })",
                );
                Action::Delete
            }
        };
        let (batch_size, batch_time, batch_size_max) = batch_sizing(&mut cx, r);
        let walk = r.walk.as_ref().and_then(|w| match w.get_ref().as_str() {
            "select" if select.is_none() => {
                cx.err(w, "walk = \"select\" needs `select` (a column to walk)");
                None
            }
            "select" => Some(Walk::Select),
            "key" => Some(Walk::Key),
            other => {
                cx.err(
                    w,
                    format!("unknown walk `{other}` (use \"select\" or \"key\")"),
                );
                None
            }
        });
        let (max_rows, max_fraction) = guards(&mut cx, r);
        let concurrency = match &r.concurrency {
            None => 1,
            Some(c) => {
                let v = *c.get_ref();
                if v < 1 || v as usize > MAX_RULE_CONCURRENCY {
                    cx.err(
                        c,
                        format!("concurrency must be between 1 and {MAX_RULE_CONCURRENCY}"),
                    );
                    1
                } else if v > 1
                    && (!matches!(act, Action::Delete)
                        || !r.children.is_empty()
                        || !r.objects.is_empty())
                {
                    cx.err(
                        c,
                        "concurrency above 1 applies only to a plain delete \
                         (action = \"delete\", no children, no objects)",
                    );
                    1
                } else {
                    v as usize
                }
            }
        };
        let partitions = match &r.partitions {
            None => Partitions::Batch,
            Some(p) => match p.get_ref().as_str() {
                "batch" => Partitions::Batch,
                "drop" => {
                    let mut why = Vec::new();
                    if !matches!(act, Action::Delete) {
                        why.push("action = \"delete\"");
                    }
                    if !select.as_ref().is_some_and(|s| s.older) {
                        why.push("select = { column = ..., older_than = ... }");
                    }
                    if !r.children.is_empty() {
                        why.push("no children");
                    }
                    if !r.objects.is_empty() {
                        why.push("no objects");
                    }
                    if r.where_.is_some() {
                        why.push("no `where`");
                    }
                    if why.is_empty() {
                        Partitions::Drop
                    } else {
                        cx.err(
                            p,
                            format!(
                                "partitions = \"drop\" needs a plain age-based delete: {}",
                                why.join(", ")
                            ),
                        );
                        Partitions::Batch
                    }
                }
                other => {
                    cx.err(
                        p,
                        format!(
                            "partitions = \"{other}\": use \"batch\" (the default) or \"drop\""
                        ),
                    );
                    Partitions::Batch
                }
            },
        };
        let kids = children(&mut cx, config, &target, &r.children, 1);
        let objects = object_links(&mut cx, config, &r.objects);
        rules.push(Rule {
            name: r.name.get_ref().clone(),
            target,
            key,
            subject,
            select,
            where_,
            by_request: trigger == Trigger::Request,
            hold,
            action: act,
            batch_size,
            walk,
            batch_time,
            batch_size_max,
            concurrency,
            partitions,
            max_rows,
            max_fraction,
            children: kids,
            objects,
            origin: cx.origin(spanned),
        });
    }
    Some(Job {
        name: raw.name.into_inner(),
        policy: raw.policy.into_inner(),
        schedule: raw.schedule.map(|s| s.into_inner()),
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

/// Job names must be unique across files.
pub fn check_unique_jobs(jobs: &[(SourceFile, Job)], errors: &mut Vec<Diagnostic>) {
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
