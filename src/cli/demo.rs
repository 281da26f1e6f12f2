//! `lethe demo`: reset the demo database, seed it, then plan, run, run
//! again, answer three erasure requests and verify the audit files.
//!
//! This is the command; the sample data it seeds (tables, rows, objects) is
//! [`crate::demo`], which knows nothing of the command line. Keeping the
//! command here makes the dependency run one way, `cli` → `demo`.

use super::args::{Global, Output};
use super::output;
use crate::config;
use crate::demo::{Seeded, create_schema, seed, seed_objects};
use crate::engine::{self, Mode, RunOptions};
use crate::error::{Error, ExitCode};
use crate::keys::{DEMO_KEY, Keys};
use crate::sql::Db;
use chrono::{DateTime, TimeDelta, Utc};

/// `lethe demo`: reset the demo database, seed it, plan, run, verify.
pub(crate) async fn run_demo(
    g: &Global,
    users: u32,
    as_of: DateTime<Utc>,
) -> Result<ExitCode, Error> {
    let loaded = config::load(&g.config, &g.jobs_dir)?;
    let keys = demo_keys(&loaded);
    let seeded = reset_and_seed(&loaded, users, as_of).await?;
    let state =
        crate::state::State::open(&loaded.config.state.url, loaded.config.state.lease_ttl).await?;
    file_demo_requests(&loaded, &keys, &state, &seeded, as_of).await?;

    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = |mode| RunOptions {
        as_of,
        mode,
        jobs: vec![],
        cancel: cancel.clone(),
        shard: None,
        progress: None,
    };
    println!("== lethe plan ==");
    let plan = engine::run(&loaded, &keys, opts(Mode::Plan)).await?;
    print_report(g, &plan, true);
    println!("== lethe run ==");
    let run = engine::run(&loaded, &keys, opts(Mode::Execute)).await?;
    print_report(g, &run, false);
    println!("== lethe run (again: nothing left to do) ==");
    let again = engine::run(&loaded, &keys, opts(Mode::Execute)).await?;
    println!(
        "second run: deleted {}, anonymized {} (status {})\n",
        again.totals.deleted, again.totals.anonymized, again.status
    );
    println!("== lethe request list --all (the demo's requests, answered) ==");
    let mut lines = Vec::new();
    for r in state.requests(None).await? {
        if r.ref_.as_deref().is_some_and(|x| x.starts_with(DEMO_REF)) {
            lines.push(crate::requests::process::line(&loaded, &r, as_of));
        }
    }
    state.close().await;
    println!("{}", super::requests::list_table(&lines));
    println!("== lethe audit verify ==");
    let reports: Vec<_> = [&plan.audit_file, &run.audit_file, &again.audit_file]
        .iter()
        .map(|f| crate::audit::verify::verify_file(std::path::Path::new(f)))
        .collect();
    print!("{}", output::verify_table(&reports));
    let verified = reports.iter().all(|r| r.ok());
    Ok(if !verified {
        ExitCode::Unexpected
    } else {
        run.exit.worst(again.exit)
    })
}

/// The configured key, or the demo's built-in one (with a warning) when its
/// variable is not set, so the demo runs on a fresh checkout.
fn demo_keys(loaded: &config::Loaded) -> Keys {
    let key_env = &loaded.config.audit.hmac_key_env;
    match Keys::from_env(key_env) {
        Ok(k) => k,
        Err(_) => {
            eprintln!(
                "warning: {key_env} is not set; the demo uses its built-in key `{DEMO_KEY}`, which is NOT for production"
            );
            Keys::from_secret(DEMO_KEY.as_bytes())
        }
    }
}

/// Reset the `app` source and the `media` store (when configured) and seed
/// them: the same users, rows and objects for the same `users` and `as_of`.
async fn reset_and_seed(
    loaded: &config::Loaded,
    users: u32,
    as_of: DateTime<Utc>,
) -> Result<Seeded, Error> {
    let src =
        loaded.config.sources.get("app").ok_or_else(|| {
            Error::Usage("the demo needs a source named `app` in the config".into())
        })?;
    if let Some(path) = src.url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or("");
        if let Some(parent) = std::path::Path::new(file).parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Other(format!("cannot create {}: {e}", parent.display())))?;
        }
    }
    let db = Db::connect("app", &src.url, 2, std::time::Duration::ZERO).await?;
    create_schema(&db).await?;
    let seeded = seed(&db, users, as_of).await?;
    db.close().await;
    if let Some(store) = loaded.config.stores.get("media") {
        seed_media(store, &seeded).await?;
    }
    println!(
        "demo: {} users and {} rows of personal data in {} ({} cancelled accounts past the grace period, {} under legal hold)\n",
        seeded.users,
        seeded.rows,
        src.display_url(),
        seeded.cancelled_due.len() + seeded.held.len(),
        seeded.held.len()
    );
    Ok(seeded)
}

/// Empty the demo's folder store (a reset, like the tables) and put the
/// seeded users' objects in it.
async fn seed_media(store: &crate::config::Store, seeded: &Seeded) -> Result<(), Error> {
    if let crate::config::StoreKind::Fs { path } = &store.kind {
        // A reset, like the tables: the demo's folder holds only demo objects.
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "cannot reset {}: {e}",
                    path.display()
                )));
            }
        }
    }
    let s = crate::objects::open(store).await;
    s.info().await?;
    let n = seed_objects(s.as_ref(), seeded).await?;
    println!(
        "demo: {n} objects (avatars, ID-card photos, customer-service photos and voice notes) in store `media` ({})",
        store.display()
    );
    Ok(())
}

/// The `ref` of the demo's requests: a new demo forgets the previous demo's.
const DEMO_REF: &str = "DEMO-";

/// File three erasure requests (O7): an ordinary account, one on a legal
/// hold (it ends `held`), and one received 30 days ago (late: `plan` exits 5
/// until the run answers it).
async fn file_demo_requests(
    loaded: &config::Loaded,
    keys: &Keys,
    state: &crate::state::State,
    seeded: &Seeded,
    as_of: DateTime<Utc>,
) -> Result<(), Error> {
    use crate::requests::{Kind, process};
    // The tables were just re-seeded: requests of an earlier demo name other people now.
    state.forget_requests_with_ref(DEMO_REF).await?;
    let plain = (1..=seeded.users as i64)
        .find(|i| i % 7 != 0 && i % 13 != 0 && i % 50 != 0 && i % 97 != 0 && i % 5 == 0);
    let picks = [
        (plain, as_of - TimeDelta::days(2), "an ordinary account"),
        (
            seeded.held.first().copied(),
            as_of - TimeDelta::days(1),
            "on a legal hold",
        ),
        (
            plain.map(|p| p + 1),
            as_of - TimeDelta::days(30),
            "received 30 days ago: overdue",
        ),
    ];
    println!("== lethe request add (three erasure requests, policy VII(7)) ==");
    for (n, (user, received, what)) in picks.into_iter().enumerate() {
        let Some(user) = user.filter(|u| *u as u64 <= seeded.users) else {
            continue;
        };
        let r = process::add(
            loaded,
            keys,
            state,
            process::NewRequest {
                kind: Kind::Erasure,
                subject: user.to_string(),
                received,
                ref_: Some(format!("{DEMO_REF}{}", n + 1)),
                intake: None,
            },
            as_of,
        )
        .await?;
        println!(
            "request {} ({what}): due {}",
            r.id,
            process::local_ts(loaded, r.due)
        );
    }
    println!();
    Ok(())
}

fn print_report(g: &Global, r: &engine::RunReport, dry: bool) {
    match g.output {
        Output::Table => println!("{}", output::run_table(r, dry)),
        Output::Json => print!("{}", output::run_json(r)),
    }
}
