#!/usr/bin/env bash
# Replicas of the local test servers, for the throttle tests (`pause_when`):
# replay is paused on purpose to make real replica lag.
#
#   scripts/replica.sh start  pg|mariadb   make (fresh) and start the replica; no-op if it runs
#   scripts/replica.sh stop   pg|mariadb   stop the replica this script started (by its PID)
#   scripts/replica.sh status pg|mariadb   exit 0 and print its state if it runs and replicates
#   scripts/replica.sh pause  pg|mariadb   stop applying changes (lag grows with primary writes)
#   scripts/replica.sh resume pg|mariadb   apply again (the replica catches up)
#
# PostgreSQL: a streaming replica of 127.0.0.1:5432 made with `pg_basebackup -R`
# into .replica/pg/data, run by the installed server binaries of the primary's
# major version, as the OS user that owns the primary's data directory, on
# 127.0.0.1:5433. A replication connection needs a `host replication` line in
# the primary's pg_hba.conf: `start` adds one for 127.0.0.1 (trust, as the
# other lines) and reloads the primary (pg_reload_conf(), no restart) if the
# primary refuses replication connections. Every `start` of a stopped replica
# takes a new base backup (the test databases are small), so no replication
# slot is left behind to hold WAL on the primary.
#
# MariaDB: a second mariadbd on 127.0.0.1:3307 with its datadir in
# .replica/mariadb/data, replicating from 127.0.0.1:3306 with GTID. The primary
# must write a binary log (log_bin is not dynamic in MariaDB: it needs a
# restart with --log-bin); `start` says so and exits 69 when it does not.
#
# Environment: PG_PRIMARY_PORT (5432), PG_REPLICA_PORT (5433),
# MY_PRIMARY_PORT (3306), MY_REPLICA_PORT (3307).
# Tests read LETHE_TEST_PG_REPLICA_URL / LETHE_TEST_MY_REPLICA_URL, defaulting
# to these ports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_PRIMARY_PORT="${PG_PRIMARY_PORT:-5432}"
PG_PORT="${PG_REPLICA_PORT:-5433}"
MY_PRIMARY_PORT="${MY_PRIMARY_PORT:-3306}"
MY_PORT="${MY_REPLICA_PORT:-3307}"

say() { echo "replica: $*"; }
die() { echo "replica: $*" >&2; exit "${2:-1}"; }

# Run a command as the given OS user (directly if we already are that user).
as_user() {
  local user="$1"; shift
  if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_dir="$root/.replica/pg"
pg_data="$pg_dir/data"
pg_log="$pg_dir/postgres.log"

pg_primary() { psql -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -d postgres -XAtq "$@"; }
pg_replica() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtq "$@"; }

pg_pid() { # the replica's postmaster PID, if it is alive
  local pid
  [ -f "$pg_data/postmaster.pid" ] || return 1
  pid="$(head -n 1 "$pg_data/postmaster.pid")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

pg_streaming() {
  [ "$(pg_replica -c "select status from pg_stat_wal_receiver" 2>/dev/null)" = "streaming" ]
}

pg_owner() { stat -c %U "$(pg_primary -c 'show data_directory')"; }

pg_bindir() {
  local major
  major=$(( $(pg_primary -c 'show server_version_num') / 10000 ))
  [ -x "/usr/lib/postgresql/$major/bin/postgres" ] \
    || die "no server binaries for PostgreSQL $major in /usr/lib/postgresql/$major/bin"
  echo "/usr/lib/postgresql/$major/bin"
}

# The primary accepts replication connections from 127.0.0.1, or is made to.
pg_allow_replication() {
  local ok
  ok="$(pg_primary -c "select count(*) from pg_hba_file_rules where type = 'host'
        and 'replication' = any(database) and address = '127.0.0.1' and error is null")"
  [ "$ok" != "0" ] && return 0
  local hba
  hba="$(pg_primary -c 'show hba_file')"
  say "adding 'host replication all 127.0.0.1/32 trust' to $hba and reloading the primary"
  printf '\n# added by lethe scripts/replica.sh: the test replica streams from here\nhost replication all 127.0.0.1/32 trust\n' >>"$hba"
  pg_primary -c 'select pg_reload_conf()' >/dev/null
  sleep 0.5
}

pg_start() {
  pg_primary -c 'select 1' >/dev/null 2>&1 \
    || die "the PostgreSQL primary on 127.0.0.1:$PG_PRIMARY_PORT does not answer (scripts/services.sh start)"
  if pg_pid >/dev/null && pg_streaming; then
    say "pg: already running and streaming on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
    return 0
  fi
  [ -z "$(pg_pid || true)" ] || pg_stop
  if pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then
    die "pg: another server answers on 127.0.0.1:$PG_PORT (a replica started from another checkout?); stop it there first"
  fi
  local owner bindir
  owner="$(pg_owner)"
  bindir="$(pg_bindir)"
  pg_allow_replication
  rm -rf "$pg_data"
  mkdir -p "$pg_dir"
  chown "$owner" "$pg_dir"
  say "pg: base backup of 127.0.0.1:$PG_PRIMARY_PORT into $pg_data (as $owner)"
  as_user "$owner" "$bindir/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres \
    -D "$pg_data" -R -X stream -c fast
  # The Debian primary keeps its config in /etc: the copy gets its own.
  # A hot standby refuses to run with fewer of these than its primary has.
  local same
  same="$(pg_primary -c "select string_agg(name || ' = ' || setting, E'\\n') from pg_settings
    where name in ('max_connections', 'max_worker_processes', 'max_wal_senders',
                   'max_prepared_transactions', 'max_locks_per_transaction')")"
  as_user "$owner" sh -c "cat >'$pg_data/postgresql.conf'" <<EOF
# lethe test replica (scripts/replica.sh)
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_dir'
hot_standby = on
hot_standby_feedback = off
max_standby_streaming_delay = -1
wal_receiver_status_interval = 1s
shared_buffers = 32MB
logging_collector = off
$same
EOF
  as_user "$owner" sh -c "cat >'$pg_data/pg_hba.conf'" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  as_user "$owner" touch "$pg_data/pg_ident.conf"
  say "pg: starting on 127.0.0.1:$PG_PORT (log: $pg_log)"
  as_user "$owner" "$bindir/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$pg_log" >&2; die "pg: the replica did not start"; }
  for _ in $(seq 1 60); do
    if pg_streaming; then
      say "pg: streaming from 127.0.0.1:$PG_PRIMARY_PORT on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$pg_log" >&2
  die "pg: started but not streaming after 30 s; see $pg_log"
}

pg_stop() {
  local pid
  if ! pid="$(pg_pid)"; then
    say "pg: not running"
    return 0
  fi
  kill -INT "$pid" # fast shutdown
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { say "pg: stopped (pid $pid)"; return 0; }
    sleep 0.5
  done
  die "pg: pid $pid still running after 30 s"
}

pg_status() {
  local pid
  pid="$(pg_pid)" || die "pg: not running (start it with scripts/replica.sh start pg)"
  pg_streaming || die "pg: pid $pid runs but does not stream from the primary; see $pg_log"
  say "pg: streaming on 127.0.0.1:$PG_PORT (pid $pid), $(pg_replica -c "select 'replay ' ||
     pg_get_wal_replay_pause_state() || ', lag ' || case when pg_last_wal_receive_lsn() =
     pg_last_wal_replay_lsn() then '0' else coalesce(round(extract(epoch from now() -
     pg_last_xact_replay_timestamp())::numeric, 1)::text, '?') end || ' s'")"
}

pg_pause() {
  pg_status >/dev/null
  pg_replica -c 'select pg_wal_replay_pause()' >/dev/null
  say "pg: replay paused (writes on the primary now make lag)"
}

pg_resume() {
  pg_status >/dev/null
  pg_replica -c 'select pg_wal_replay_resume()' >/dev/null
  say "pg: replay resumed"
}

# ------------------------------------------------------------------- MariaDB

my_dir="$root/.replica/mariadb"
my_data="$my_dir/data"
my_sock="$my_dir/mariadbd.sock"
my_pidfile="$my_dir/mariadbd.pid"
my_log="$my_dir/mariadbd.log"

my_primary() { mariadb -h 127.0.0.1 -P "$MY_PRIMARY_PORT" -uroot -N -B "$@"; }
my_replica() { mariadb -h 127.0.0.1 -P "$MY_PORT" -uroot -N -B "$@"; }

my_pid() {
  local pid
  [ -f "$my_pidfile" ] || return 1
  pid="$(cat "$my_pidfile")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

my_slave_field() { # name of a SHOW SLAVE STATUS column
  mariadb -h 127.0.0.1 -P "$MY_PORT" -uroot -E -e 'SHOW SLAVE STATUS' 2>/dev/null \
    | sed -n "s/^ *$1: //p"
}

my_replicating() {
  [ "$(my_slave_field Slave_IO_Running)" = "Yes" ]
}

my_start() {
  my_primary -e 'select 1' >/dev/null 2>&1 \
    || die "the MariaDB primary on 127.0.0.1:$MY_PRIMARY_PORT does not answer (scripts/services.sh start)"
  if my_pid >/dev/null && my_replicating; then
    say "mariadb: already running and replicating on 127.0.0.1:$MY_PORT (pid $(my_pid))"
    return 0
  fi
  if [ "$(my_primary -e 'select @@log_bin')" != "1" ]; then
    die "mariadb: the primary on 127.0.0.1:$MY_PRIMARY_PORT writes no binary log (log_bin=OFF).
  log_bin cannot be set at run time in MariaDB; the primary must be restarted with
  --log-bin --server-id=1 (e.g. a [mariadbd] log_bin / server_id in /etc/mysql/mariadb.conf.d/)
  before a replica can follow it." 69
  fi
  [ -z "$(my_pid || true)" ] || my_stop
  if my_replica -e 'select 1' >/dev/null 2>&1; then
    die "mariadb: another server answers on 127.0.0.1:$MY_PORT (a replica started from another checkout?); stop it there first"
  fi
  local owner
  owner="$(stat -c %U "$(my_primary -e 'select @@datadir')")"
  rm -rf "$my_data"
  mkdir -p "$my_data"
  chown -R "$owner" "$my_dir"
  say "mariadb: new datadir $my_data (as $owner)"
  as_user "$owner" mariadb-install-db --no-defaults --datadir="$my_data" \
    --auth-root-authentication-method=normal --skip-test-db >"$my_dir/install.log" 2>&1 \
    || { tail -n 20 "$my_dir/install.log" >&2; die "mariadb: mariadb-install-db failed"; }
  say "mariadb: starting on 127.0.0.1:$MY_PORT (log: $my_log)"
  as_user "$owner" sh -c "nohup mariadbd --no-defaults --datadir='$my_data' --port=$MY_PORT \
    --bind-address=127.0.0.1 --socket='$my_sock' --pid-file='$my_pidfile' \
    --log-error='$my_log' --server-id=$((MY_PORT)) --skip-log-bin --read-only=1 \
    --innodb-buffer-pool-size=64M >/dev/null 2>&1 &"
  for _ in $(seq 1 60); do
    my_replica -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  my_replica -e 'select 1' >/dev/null 2>&1 \
    || { tail -n 20 "$my_log" >&2; die "mariadb: the replica did not answer after 30 s"; }
  # The primary's data, consistent with its GTID position, then follow it.
  # (mysql.* is left out: the replica keeps its own users.)
  local dbs
  dbs="$(my_primary -e "select schema_name from information_schema.schemata where schema_name
        not in ('mysql','information_schema','performance_schema','sys')" | tr '\n' ' ')"
  say "mariadb: copying the primary's databases"
  # shellcheck disable=SC2086
  mariadb-dump -h 127.0.0.1 -P "$MY_PRIMARY_PORT" -uroot --single-transaction --gtid \
    --master-data=1 --databases $dbs | my_replica
  my_replica -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MY_PRIMARY_PORT,
    MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE"
  for _ in $(seq 1 60); do
    if my_replicating; then
      say "mariadb: replicating from 127.0.0.1:$MY_PRIMARY_PORT on 127.0.0.1:$MY_PORT (pid $(my_pid))"
      return 0
    fi
    sleep 0.5
  done
  die "mariadb: started but not replicating: $(my_slave_field Last_IO_Error)"
}

my_stop() {
  local pid
  if ! pid="$(my_pid)"; then
    say "mariadb: not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { say "mariadb: stopped (pid $pid)"; return 0; }
    sleep 0.5
  done
  die "mariadb: pid $pid still running after 30 s"
}

my_status() {
  local pid
  pid="$(my_pid)" || die "mariadb: not running (start it with scripts/replica.sh start mariadb)"
  my_replicating || die "mariadb: pid $pid runs but does not replicate: $(my_slave_field Last_IO_Error)"
  say "mariadb: replicating on 127.0.0.1:$MY_PORT (pid $pid), SQL thread $(my_slave_field Slave_SQL_Running), $(my_slave_field Seconds_Behind_Master) s behind"
}

my_pause() {
  my_status >/dev/null
  my_replica -e 'STOP SLAVE SQL_THREAD'
  say "mariadb: SQL thread stopped (writes on the primary now make lag)"
}

my_resume() {
  my_status >/dev/null
  my_replica -e 'START SLAVE SQL_THREAD'
  say "mariadb: SQL thread started"
}

# ---------------------------------------------------------------------------

usage() { die "usage: scripts/replica.sh start|stop|status|pause|resume pg|mariadb" 64; }

[ $# -eq 2 ] || usage
case "$2" in
  pg | postgres | postgresql) engine=pg ;;
  mariadb | mysql) engine=my ;;
  *) usage ;;
esac
case "$1" in
  start | stop | status | pause | resume) "${engine}_$1" ;;
  *) usage ;;
esac
