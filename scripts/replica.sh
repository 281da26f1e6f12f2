#!/usr/bin/env bash
# Replicas of the local test servers, for the throttle tests (`pause_when`):
# replay is paused on purpose to make real replica lag.
#
#   scripts/replica.sh start  pg|mariadb   make (fresh) and start the replica (mariadb: and
#                                          its primary); no-op if it runs
#   scripts/replica.sh stop   pg|mariadb   stop what this script started (by PID)
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
# MariaDB: a pair of our own, from the installed server binaries, because the
# shared server on 3306 writes no binary log (log_bin is not dynamic in
# MariaDB) and may not be restarted: a primary on 127.0.0.1:3308 started with
# --log-bin --server-id=1 (datadir .replica/mariadb-primary/data) and a
# read-only replica on 127.0.0.1:3307 (server-id 2, datadir
# .replica/mariadb/data) following it by GTID. `start` makes both fresh unless
# both already run and replicate; `stop` stops both by their PIDs. Run as
# root, the servers run as the mysql user.
#
# Environment: PG_PRIMARY_PORT (5432), PG_REPLICA_PORT (5433),
# MY_PRIMARY_PORT (3308), MY_REPLICA_PORT (3307).
# Tests read LETHE_TEST_PG_REPLICA_URL, LETHE_TEST_MY_PRIMARY_URL and
# LETHE_TEST_MY_REPLICA_URL, defaulting to these ports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_PRIMARY_PORT="${PG_PRIMARY_PORT:-5432}"
PG_PORT="${PG_REPLICA_PORT:-5433}"
MY_PRIMARY_PORT="${MY_PRIMARY_PORT:-3308}"
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
#
# A pair of our own, so that nothing depends on how the shared server on 3306
# was started: role "primary" (server-id 1, binary log) and role "replica"
# (server-id 2, read-only, follows the primary by GTID).

my_top="$root/.replica"

my_dir() { # the directory of a role: datadir, socket, PID file and logs
  case "$1" in
    primary) echo "$my_top/mariadb-primary" ;;
    replica) echo "$my_top/mariadb" ;;
  esac
}

my_port() {
  case "$1" in
    primary) echo "$MY_PRIMARY_PORT" ;;
    replica) echo "$MY_PORT" ;;
  esac
}

my_sql() { # role, then mariadb client arguments
  local role="$1"; shift
  mariadb -h 127.0.0.1 -P "$(my_port "$role")" -uroot -N -B "$@"
}
my_answers() { my_sql "$1" -e 'select 1' >/dev/null 2>&1; }

my_pid() { # the PID of the role's mariadbd, if it is alive and is ours
  local dir pid
  dir="$(my_dir "$1")"
  [ -f "$dir/mariadbd.pid" ] || return 1
  pid="$(cat "$dir/mariadbd.pid")"
  # A PID file outlives a crash and its PID can be reused: only a mariadbd
  # running on this very datadir counts.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--datadir=$dir/data " \
    && echo "$pid"
}

# mariadbd will not run as root: as root, run it as the packaged mysql user.
my_owner() {
  if [ "$(id -u)" != 0 ]; then
    id -un
  elif id mysql >/dev/null 2>&1; then
    echo mysql
  else
    die "mariadb: running as root and there is no mysql user to run mariadbd as"
  fi
}

my_slave_field() { # name of a SHOW SLAVE STATUS column, read on the replica
  mariadb -h 127.0.0.1 -P "$MY_PORT" -uroot -E -e 'SHOW SLAVE STATUS' 2>/dev/null \
    | sed -n "s/^ *$1: //p"
}

my_primary_ok() { # ours, answering, and writing a binary log as server 1
  my_pid primary >/dev/null \
    && [ "$(my_sql primary -e 'select @@log_bin = 1 and @@server_id = 1' 2>/dev/null)" = "1" ]
}

my_replicating() { # ours, its I/O thread connected to our primary (SQL thread may be paused)
  my_pid replica >/dev/null \
    && [ "$(my_slave_field Slave_IO_Running)" = "Yes" ] \
    && [ "$(my_slave_field Master_Port)" = "$MY_PRIMARY_PORT" ]
}

my_tail_log() { tail -n 20 "$(my_dir "$1")/mariadbd.log" >&2 || true; }

# A fresh datadir for the role, then its mariadbd, until it answers.
my_launch() { # role server-id extra-mariadbd-options...
  local role="$1" id="$2"; shift 2
  local dir port owner
  dir="$(my_dir "$role")"
  port="$(my_port "$role")"
  owner="$(my_owner)"
  rm -rf "$dir"
  mkdir -p "$dir/data"
  chown -R "$owner" "$dir"
  say "mariadb: new $role datadir $dir/data (as $owner)"
  as_user "$owner" mariadb-install-db --no-defaults --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
    || { tail -n 20 "$dir/install.log" >&2; die "mariadb: mariadb-install-db failed for the $role"; }
  say "mariadb: starting the $role on 127.0.0.1:$port (log: $dir/mariadbd.log)"
  as_user "$owner" sh -c "nohup mariadbd --no-defaults --datadir='$dir/data' --port=$port \
    --bind-address=127.0.0.1 --socket='$dir/mariadbd.sock' --pid-file='$dir/mariadbd.pid' \
    --log-error='$dir/mariadbd.log' --server-id=$id --innodb-buffer-pool-size=64M $* \
    >/dev/null 2>&1 &"
  for _ in $(seq 1 60); do
    my_pid "$role" >/dev/null && my_answers "$role" && return 0
    sleep 0.5
  done
  my_tail_log "$role"
  die "mariadb: the $role did not answer on 127.0.0.1:$port after 30 s"
}

my_start() {
  if my_primary_ok && my_replicating; then
    say "mariadb: already running: primary 127.0.0.1:$MY_PRIMARY_PORT (pid $(my_pid primary)), replica 127.0.0.1:$MY_PORT (pid $(my_pid replica))"
    return 0
  fi
  # Half a pair (one crashed, or the replica lost its primary): start over,
  # both fresh; the tests make their own databases.
  my_stop
  local role
  for role in primary replica; do
    if my_answers "$role"; then
      die "mariadb: another server answers on 127.0.0.1:$(my_port "$role") (a pair started from another checkout?); stop it there first"
    fi
  done
  my_launch primary 1 --log-bin=primary-bin --binlog-format=ROW
  my_primary_ok || { my_tail_log primary; die "mariadb: the primary runs but writes no binary log"; }
  my_launch replica 2 --skip-log-bin --read-only=1
  # Both start empty, so the replica can follow from the primary's first
  # GTID: no copy of the data is needed.
  my_sql replica -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MY_PRIMARY_PORT,
    MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE"
  # Healthy means a write on the primary shows up on the replica.
  my_sql primary -e 'CREATE DATABASE lethe_replica_ready'
  for _ in $(seq 1 60); do
    if my_replicating && [ -n "$(my_sql replica -e "show databases like 'lethe_replica_ready'")" ]; then
      my_sql primary -e 'DROP DATABASE lethe_replica_ready'
      say "mariadb: replica 127.0.0.1:$MY_PORT (pid $(my_pid replica)) follows primary 127.0.0.1:$MY_PRIMARY_PORT (pid $(my_pid primary)) by GTID"
      return 0
    fi
    sleep 0.5
  done
  my_tail_log replica
  die "mariadb: the replica does not apply the primary's writes after 30 s: $(my_slave_field Last_IO_Error) $(my_slave_field Last_SQL_Error)"
}

my_stop_one() { # role
  local pid
  if ! pid="$(my_pid "$1")"; then
    say "mariadb: $1 not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { say "mariadb: $1 stopped (pid $pid)"; return 0; }
    sleep 0.5
  done
  die "mariadb: $1 pid $pid still running after 30 s"
}

# The replica first, so it does not log a lost primary.
my_stop() { my_stop_one replica; my_stop_one primary; }

my_status() {
  local hint="start it with scripts/replica.sh start mariadb"
  my_primary_ok || die "mariadb: the primary on 127.0.0.1:$MY_PRIMARY_PORT is not running ($hint)"
  local pid
  pid="$(my_pid replica)" || die "mariadb: the replica on 127.0.0.1:$MY_PORT is not running ($hint)"
  my_replicating \
    || die "mariadb: replica pid $pid runs but does not follow 127.0.0.1:$MY_PRIMARY_PORT: $(my_slave_field Last_IO_Error) ($hint)"
  say "mariadb: replica 127.0.0.1:$MY_PORT (pid $pid) follows primary 127.0.0.1:$MY_PRIMARY_PORT (pid $(my_pid primary)), SQL thread $(my_slave_field Slave_SQL_Running), $(my_slave_field Seconds_Behind_Master) s behind"
}

my_pause() {
  my_status >/dev/null
  my_sql replica -e 'STOP SLAVE SQL_THREAD'
  say "mariadb: SQL thread stopped (writes on the primary now make lag)"
}

my_resume() {
  my_status >/dev/null
  my_sql replica -e 'START SLAVE SQL_THREAD'
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
