//! `[audit]`: where the hash-chained audit log goes, which variables hold
//! its HMAC keys, and its optional S3 copy.
//!
//! Only the *names* of the key variables are read here; the keys themselves
//! are read when a run starts, so validating a file needs no secret.

use super::Ctx;
use super::names::is_identifier;
use crate::config::model::{AuditConfig, AuditS3, Store, StoreKind};
use crate::config::period::Period;
use crate::config::raw::RawAudit;
use std::collections::BTreeMap;

const DEFAULT_DIR: &str = "var/audit";
const DEFAULT_KEY_ENV: &str = "LETHE_AUDIT_KEY";
const DEFAULT_S3_PREFIX: &str = "lethe-audit/";
const DEFAULT_S3_RETENTION: &str = "3y";

/// The audit settings; the defaults when there is no `[audit]`.
pub(super) fn audit(
    cx: &mut Ctx,
    raw: Option<RawAudit>,
    stores: &BTreeMap<String, Store>,
) -> AuditConfig {
    let Some(a) = raw else {
        return AuditConfig {
            dir: DEFAULT_DIR.into(),
            hmac_key_env: DEFAULT_KEY_ENV.into(),
            previous_key_envs: vec![],
            region: None,
            s3: None,
        };
    };
    let env_name = a
        .hmac_key_env
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_KEY_ENV.into());
    if let Some(k) = &a.hmac_key_env
        && !is_identifier(k.get_ref())
    {
        cx.err(
            k,
            "hmac_key_env names an environment variable: letters, digits and `_`",
        );
    }
    let previous_key_envs = previous_key_envs(cx, &a, &env_name);
    if let Some(r) = &a.region {
        cx.region(Some(r), "the audit sink", r);
    }
    let s3 = audit_s3(cx, &a, stores);
    AuditConfig {
        dir: a.dir.unwrap_or_else(|| DEFAULT_DIR.into()).into(),
        hmac_key_env: env_name,
        previous_key_envs,
        region: a.region.map(|r| r.into_inner()),
        s3,
    }
}

/// Retired keys' variables: valid names, not the current one, each once.
fn previous_key_envs(cx: &mut Ctx, a: &RawAudit, current: &str) -> Vec<String> {
    let mut previous_key_envs: Vec<String> = Vec::new();
    for p in &a.previous_key_envs {
        let name = p.get_ref();
        if !is_identifier(name) {
            cx.err(
                p,
                "previous_key_envs names environment variables: letters, digits and `_`",
            );
        } else if name == current {
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
    previous_key_envs
}

/// `s3_store` must name an S3 store of `[stores]`.
fn audit_s3(cx: &mut Ctx, a: &RawAudit, stores: &BTreeMap<String, Store>) -> Option<AuditS3> {
    let st = a.s3_store.as_ref()?;
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
    let default_retention = || DEFAULT_S3_RETENTION.parse().expect("valid default");
    let retention = match &a.s3_retention {
        None => default_retention(),
        Some(r) => r.get_ref().parse::<Period>().unwrap_or_else(|e| {
            cx.err(r, e);
            default_retention()
        }),
    };
    Some(AuditS3 {
        store: st.get_ref().clone(),
        prefix: a
            .s3_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_S3_PREFIX.into()),
        retention,
    })
}
