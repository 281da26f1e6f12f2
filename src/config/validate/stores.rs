//! `[stores.<name>]`: the object stores (S3 buckets, local folders) object
//! rules and `[[rules.objects]]` erase from.
//!
//! A store is only as good as its `kind`: one whose kind-specific settings
//! are wrong is left out after the problem is reported.

use super::Ctx;
use super::names::section_name;
use crate::config::model::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_STORE_CONCURRENCY, MAX_STORE_CONCURRENCY, Store, StoreKind,
};
use crate::config::raw::RawStore;
use toml::Spanned;

/// One store (`[stores.<name>]`); `None` when its kind or settings are wrong.
pub(super) fn store(cx: &mut Ctx, name: &str, spanned: &Spanned<RawStore>) -> Option<Store> {
    let st = spanned.get_ref();
    section_name(cx, "store", name, spanned);
    cx.region(st.region.as_ref(), &format!("store `{name}`"), spanned);
    let kind = store_kind(cx, name, spanned)?;
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
    Some(Store {
        name: name.to_string(),
        kind,
        region: st.region.as_ref().map(|r| r.get_ref().clone()),
        concurrency,
        max_attempts,
        origin: cx.origin(spanned),
    })
}

/// `kind` and the settings that belong to it; `None` after reporting a problem.
fn store_kind(cx: &mut Ctx, name: &str, spanned: &Spanned<RawStore>) -> Option<StoreKind> {
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
            s3_kind(cx, name, spanned)
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
fn s3_kind(cx: &mut Ctx, name: &str, spanned: &Spanned<RawStore>) -> Option<StoreKind> {
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
        Some(e) => match cx.expand(e.get_ref()) {
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
