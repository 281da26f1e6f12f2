#!/usr/bin/env bash
# Make sure the servers the tests talk to are up: PostgreSQL and MariaDB on
# 127.0.0.1 (this machine class starts them; this restarts one that stopped).
# Usage: scripts/services.sh start|status
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
my_up() { mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1 || mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; }

wait_for() { # name, check function
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  echo "$1 did not come up on 127.0.0.1" >&2; return 1
}

case "${1:-start}" in
  start)
    if ! pg_up; then
      echo "starting PostgreSQL" >&2
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
      wait_for PostgreSQL pg_up
    fi
    if ! my_up; then
      echo "starting MariaDB" >&2
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
      wait_for MariaDB my_up
    fi
    echo "services: PostgreSQL and MariaDB are up" >&2
    ;;
  status)
    pg_up && echo "PostgreSQL: up" || echo "PostgreSQL: down"
    my_up && echo "MariaDB: up" || echo "MariaDB: down"
    ;;
  *) echo "usage: $0 start|status" >&2; exit 64 ;;
esac
