//! Connected sources, opened on first use, for `check`, `plan` and `run`
//! alike: a source that cannot be reached fails only the rules that use it,
//! after being retried for its `reconnect_for`.

use crate::config::Loaded;
use crate::error::Error;
use crate::objects::Stores;
use crate::sql::Db;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Connected sources, opened on first use; a source that cannot be reached
/// fails only the rules that use it.
pub struct Sources<'a> {
    loaded: &'a Loaded,
    open: BTreeMap<String, Result<Db, String>>,
    /// Object stores, opened on first use the same way.
    pub stores: Stores,
}

impl<'a> Sources<'a> {
    /// Nothing is connected until a rule asks for its source.
    pub fn new(loaded: &'a Loaded) -> Self {
        Self {
            loaded,
            open: BTreeMap::new(),
            stores: Stores::new(&loaded.config),
        }
    }

    /// The source's connection, opened (and retried) on the first call;
    /// a source that failed fails again with the same message.
    pub async fn get(&mut self, name: &str) -> Result<&Db, String> {
        if !self.open.contains_key(name) {
            let src = self
                .loaded
                .config
                .sources
                .get(name)
                .ok_or_else(|| format!("unknown source `{name}`"))?;
            let mut outage = Outage::default();
            let res = loop {
                match Db::connect_source(src).await {
                    Ok(mut db) => {
                        db.reconnect_for = src.reconnect_for;
                        db.pause_when = src.pause_when.clone();
                        break Ok(db);
                    }
                    Err(e) => {
                        if let Err(e) = outage.wait(name, src.reconnect_for, e).await {
                            break Err(e);
                        }
                    }
                }
            }
            .map_err(|e| format!("{e} ({})", src.display_url()));
            if let Err(e) = &res {
                tracing::error!(source = name, error = %e, "source unreachable");
            }
            self.open.insert(name.to_string(), res);
        }
        self.open[name].as_ref().map_err(|e| e.clone())
    }

    /// Close every source that was opened.
    pub async fn close(&self) {
        for db in self.open.values().flatten() {
            db.close().await;
        }
    }
}

/// A connection outage in progress: when it began and how many times the
/// work was tried again since. Reset by every commit.
#[derive(Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
    attempts: u32,
}

impl Outage {
    /// After a lost connection (`Error::Connection`, before any commit was
    /// asked for): wait (100 ms, doubling, at most 2 s) and return `Ok` to
    /// try again, for as long as `budget` (the source's `reconnect_for`)
    /// allows since the outage began. Any other error, or an outage longer
    /// than the budget, comes back as `Err`, saying how long was tried.
    pub(crate) async fn wait(
        &mut self,
        source: &str,
        budget: Duration,
        e: Error,
    ) -> Result<(), Error> {
        let Error::Connection { message, .. } = &e else {
            return Err(e);
        };
        let since = *self.since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        if waited >= budget {
            return Err(Error::Connection {
                source_name: source.to_string(),
                message: if budget.is_zero() {
                    format!("{message} (reconnect_for is 0s: not retried)")
                } else {
                    format!(
                        "{message}; still unreachable after reconnecting for {:.1} s (reconnect_for = {} s)",
                        waited.as_secs_f64(),
                        budget.as_secs()
                    )
                },
            });
        }
        self.attempts += 1;
        let wait = Duration::from_millis(100u64 << self.attempts.saturating_sub(1).min(4))
            .min(budget - waited);
        tracing::warn!(
            source,
            attempt = self.attempts,
            wait_ms = wait.as_millis() as u64,
            error = %message,
            "connection lost; reconnecting"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }
}
