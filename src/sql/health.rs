//! Health readings [`Db`](super::Db) cannot make: a MariaDB/MySQL replica's
//! lag, for the batch loop's throttle (`engine::throttle`).
//!
//! `SHOW SLAVE STATUS` mixes text and number columns, which `Db::fetch`
//! (every cell as text) cannot decode, so its row is read here by column
//! name, on a connection of the replica's own (this module, like `sql/mod.rs`,
//! hands sqlx a statement it built: `SHOW SLAVE 'name' STATUS`). A PostgreSQL standby answers
//! through a plain `Db` ([`Dialect::replica_lag_sql`](super::Dialect::replica_lag_sql)).
//! Errors are described as `Db` describes its own: no value from a row.

use super::mysql::MySql;
use super::source_error;
use crate::error::Error;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use std::time::Duration;

/// What a replica says of its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaLag {
    /// No replication configured: its lag means nothing.
    NotConfigured,
    /// The replica is not applying changes (its SQL thread stopped, or the
    /// I/O thread cannot connect): no figure at all.
    NotApplying,
    /// How far behind the replica applies.
    Behind(Duration),
}

/// A MariaDB/MySQL replica, on one connection of its own (it is read once
/// per `check_every` at most).
pub(crate) struct Replica {
    /// The name its errors carry (`<source> replica`).
    name: String,
    /// The named connection of a multi-source replica whose lag is read;
    /// `None`: the default connection.
    connection: Option<String>,
    pool: MySqlPool,
}

impl Replica {
    /// Connect to the replica at `url` (`mysql://` or `mariadb://`), whose
    /// replication `connection` (MariaDB multi-source; `None` for the
    /// default one) is read.
    pub(crate) async fn connect(
        name: &str,
        url: &str,
        connection: Option<&str>,
    ) -> Result<Replica, Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .connect(&url.replacen("mariadb://", "mysql://", 1))
            .await
            .map_err(|e| source_error(name, &e))?;
        Ok(Replica {
            name: name.to_string(),
            connection: connection.map(str::to_string),
            pool,
        })
    }

    /// `Seconds_Behind_Master` of the replica's connection (the default one,
    /// or the one named). A name the replica does not know is
    /// [`ReplicaLag::NotConfigured`], as an empty status is.
    pub(crate) async fn lag(&self) -> Result<ReplicaLag, Error> {
        let fail = |e: sqlx::Error| source_error(&self.name, &e);
        // A named connection's statement is built from a name the
        // validation pass allowed only letters, digits, `_`, `-` and `.` in.
        let sql = match &self.connection {
            Some(c) => MySql::replica_status_of(c),
            None => MySql::REPLICA_STATUS.to_string(),
        };
        let row = match sqlx::query(AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await
        {
            Ok(row) => row,
            Err(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .map(|m| m.number())
                    == Some(MySql::NO_SUCH_CONNECTION) =>
            {
                return Ok(ReplicaLag::NotConfigured);
            }
            Err(e) => return Err(fail(e)),
        };
        let Some(row) = row else {
            return Ok(ReplicaLag::NotConfigured);
        };
        let col = MySql::SECONDS_BEHIND;
        let behind = row
            .try_get::<Option<u64>, _>(col)
            .or_else(|_| {
                row.try_get::<Option<i64>, _>(col)
                    .map(|v| v.map(|s| s.max(0).unsigned_abs()))
            })
            .map_err(fail)?;
        Ok(match behind {
            None => ReplicaLag::NotApplying,
            Some(s) => ReplicaLag::Behind(Duration::from_secs(s)),
        })
    }
}
