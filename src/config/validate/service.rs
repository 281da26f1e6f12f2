//! `[state]`, `[daemon]` and `[metrics]`: how Lethe itself runs — where its
//! leases and history live, the daemon's zone and health address, where
//! metrics go.

use super::Ctx;
use crate::config::cron::parse_tz;
use crate::config::model::{
    DEFAULT_HEALTH_ADDR, DEFAULT_STATE_URL, DEFAULT_TIME_ZONE, DaemonConfig, MetricsConfig,
    StateConfig,
};
use crate::config::period::Period;
use crate::config::raw::{RawDaemon, RawMetrics, RawState};
use std::time::Duration;

/// The lease length when the config says nothing (or something wrong).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// `[state]`: the state store's URL (`${VAR}` expanded) and the lease length.
pub(super) fn state(cx: &mut Ctx, raw: Option<RawState>) -> StateConfig {
    let Some(s) = raw else {
        return StateConfig {
            url: DEFAULT_STATE_URL.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
        };
    };
    let url = match &s.url {
        Some(u) => match cx.expand(u.get_ref()) {
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
                DEFAULT_LEASE_TTL
            }
            Err(e) => {
                cx.err(t, e);
                DEFAULT_LEASE_TTL
            }
        },
        None => DEFAULT_LEASE_TTL,
    };
    StateConfig { url, lease_ttl }
}

/// `[daemon]`: the zone cron schedules are read in, the health address.
pub(super) fn daemon(cx: &mut Ctx, raw: Option<&RawDaemon>) -> DaemonConfig {
    let tz = raw.and_then(|d| d.time_zone.as_ref());
    let default_tz = || parse_tz(DEFAULT_TIME_ZONE).expect("valid default zone");
    let time_zone = match tz {
        Some(t) => parse_tz(t.get_ref()).unwrap_or_else(|e| {
            cx.err(t, e);
            default_tz()
        }),
        None => default_tz(),
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
}

/// `[metrics]`: a textfile path and a plain-HTTP Pushgateway.
pub(super) fn metrics(cx: &mut Ctx, raw: Option<RawMetrics>) -> MetricsConfig {
    let Some(m) = raw else {
        return MetricsConfig::default();
    };
    MetricsConfig {
        textfile: m.textfile.map(Into::into),
        pushgateway: m.pushgateway.and_then(|p| match cx.expand(p.get_ref()) {
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
    }
}
