#!/usr/bin/env bash
# moto: the S3-speaking server the object-store tests and the benchmark run against.
#
#   scripts/moto.sh start    create .venv (pinned moto[server], boto3) if needed,
#                            start moto_server on $MOTO_HOST:$MOTO_PORT in the
#                            background, wait until it answers; no-op if it already does
#   scripts/moto.sh stop     stop the server this script started (pid file), if any
#   scripts/moto.sh status   exit 0 and print the endpoint if it answers, else exit 1
#   scripts/moto.sh install  only create/update .venv
#
# Environment: MOTO_HOST (default 127.0.0.1), MOTO_PORT (default 5077).
# Files: .venv/ (virtualenv), target/moto/moto.pid, target/moto/moto.log.
# Tests read the endpoint from LETHE_TEST_S3_ENDPOINT (default http://127.0.0.1:5077).
set -euo pipefail

MOTO_VERSION="5.2.5"
BOTO3_VERSION="1.44.8"
HOST="${MOTO_HOST:-127.0.0.1}"
PORT="${MOTO_PORT:-5077}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
rundir="$root/target/moto"
pidfile="$rundir/moto.pid"
logfile="$rundir/moto.log"
endpoint="http://$HOST:$PORT"

answers() {
  # moto answers ListBuckets on / ; any HTTP answer at all means it is up.
  curl -s -o /dev/null --max-time 2 "$endpoint/" 2>/dev/null
}

install() {
  local stamp="$venv/.lethe-moto-$MOTO_VERSION-boto3-$BOTO3_VERSION"
  if [ -f "$stamp" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "moto: creating $venv"
    python3 -m venv "$venv"
  fi
  echo "moto: installing moto[server]==$MOTO_VERSION boto3==$BOTO3_VERSION into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"
  touch "$stamp"
}

start() {
  if answers; then
    echo "moto: already answering at $endpoint"
    return 0
  fi
  install
  mkdir -p "$rundir"
  echo "moto: starting moto_server on $endpoint (log: $logfile)"
  nohup "$venv/bin/moto_server" -H "$HOST" -p "$PORT" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    if answers; then
      echo "moto: ready at $endpoint (pid $(cat "$pidfile"))"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "moto: the server exited; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2 || true
      rm -f "$pidfile"
      return 1
    fi
    sleep 0.5
  done
  echo "moto: no answer at $endpoint after 30 s; see $logfile" >&2
  return 1
}

stop() {
  if [ ! -f "$pidfile" ]; then
    echo "moto: not started by this script (no $pidfile)"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    echo "moto: stopped (pid $pid)"
  else
    echo "moto: pid $pid was not running"
  fi
  rm -f "$pidfile"
}

status() {
  if answers; then
    echo "moto: answering at $endpoint"
    return 0
  fi
  echo "moto: not answering at $endpoint (start it with scripts/moto.sh start)"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  install) install ;;
  *)
    echo "usage: scripts/moto.sh start|stop|status|install" >&2
    exit 64
    ;;
esac
