//! `[sources.<name>]`: the databases rules act on.
//!
//! A source's URL may hold a secret after `${VAR}` expansion; nothing here
//! ever puts the expanded URL into a message.

use super::batch::parse_pause;
use super::names::section_name;
use super::{Ctx, keyword};
use crate::config::interpolate::has_literal_password;
use crate::config::model::{AfterPurge, DEFAULT_RECONNECT_FOR, Source};
use crate::config::raw::RawSource;
use std::time::Duration;
use toml::Spanned;

/// One source (`[sources.<name>]`); `None` when its URL cannot be
/// expanded (rules naming it then say the source is unknown).
pub(super) fn source(cx: &mut Ctx, name: &str, spanned: &Spanned<RawSource>) -> Option<Source> {
    let src = spanned.get_ref();
    section_name(cx, "source", name, spanned);
    if has_literal_password(src.url.get_ref()) {
        cx.err(
            &src.url,
            format!("source `{name}`: the url holds a literal password; take it from the environment with ${{VAR}}"),
        );
    }
    let url = match cx.expand(src.url.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            cx.err(&src.url, format!("source `{name}`: {e}"));
            return None;
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
            format!(
                "source `{name}`: url must start with postgres://, mysql://, mariadb:// or sqlite:"
            ),
        );
    }
    cx.region(src.region.as_ref(), &format!("source `{name}`"), spanned);
    let batch_pause = match &src.batch_pause {
        None => Duration::ZERO,
        Some(p) => parse_pause(cx, p),
    };
    let reconnect_for = match &src.reconnect_for {
        None => DEFAULT_RECONNECT_FOR,
        Some(p) => parse_pause(cx, p),
    };
    let after_purge = src
        .after_purge
        .as_ref()
        .map_or(AfterPurge::None, |a| after_purge(cx, a));
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
    let pause_when = src.pause_when.as_ref().map(|p| {
        crate::config::throttle::validate(
            p,
            &mut crate::config::throttle::Cx {
                file: cx.file,
                errors: &mut *cx.errors,
                env: cx.env,
                source: name,
                source_url: &url,
            },
        )
    });
    Some(Source {
        name: name.to_string(),
        url,
        region: src.region.as_ref().map(|r| r.get_ref().clone()),
        max_connections,
        batch_pause,
        reconnect_for,
        after_purge,
        pause_when,
    })
}

fn after_purge(cx: &mut Ctx, a: &Spanned<String>) -> AfterPurge {
    let choices = [("none", AfterPurge::None), ("vacuum", AfterPurge::Vacuum)];
    keyword(cx, a, &choices, AfterPurge::None, |other| {
        format!("after_purge = \"{other}\": use \"none\" (the default) or \"vacuum\"")
    })
}
