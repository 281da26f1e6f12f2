//! `[stores.<name>]`: the object stores (S3 buckets, local folders) object
//! rules and `[[rules.objects]]` erase from.
//!
//! A store is only as good as its `kind`: one whose kind-specific settings
//! are wrong is left out after the problem is reported.

use super::names::section_name;
use super::{Ctx, Regions};
use crate::config::interpolate::expand;
use crate::config::model::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_STORE_CONCURRENCY, MAX_STORE_CONCURRENCY, Store, StoreKind,
};
use crate::config::raw::RawStore;
use std::collections::BTreeMap;
use toml::Spanned;

/// Every store whose kind and settings validated.
pub(super) fn stores(
    cx: &mut Ctx,
    raw: &BTreeMap<String, Spanned<RawStore>>,
    regions: &Regions,
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, Store> {
    let mut stores = BTreeMap::new();
    for (name, spanned) in raw {
        let st = spanned.get_ref();
        section_name(cx, "store", name, spanned);
        regions.check(cx, st.region.as_ref(), &format!("store `{name}`"), spanned);
        let Some(kind) = store_kind(cx, name, spanned, env) else {
            continue;
        };
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
    stores
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
            s3_kind(cx, name, spanned, env)
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

/// `kind = "s3"`: a bucket name S3 accepts and an `http(s)://` endpoint.
fn s3_kind(
    cx: &mut Ctx,
    name: &str,
    spanned: &Spanned<RawStore>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<StoreKind> {
    let st = spanned.get_ref();
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

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}
