#!/usr/bin/env bash
# Walks and one-statement anonymize, by hand, on PostgreSQL (release build):
#   bench/walks.sh [delete|anonymize|partitioned|all]
#
# delete:    ROWS rows (30 % expired, spread over the whole key range), NO
#            index on created_at: raw `DELETE … WHERE created_at < cutoff` vs
#            `lethe run` at batch_size 1,000 and 5,000 (the key walk), then
#            the same with ROWS × 4.
# anonymize: AROWS rows (30 % due), index on created_at: raw `UPDATE … SET
#            user_ref = <HMAC-SHA-256 in SQL>, payload = NULL WHERE …` vs
#            `lethe run` with { user_ref = "hash", payload = "null" }, at
#            batch_size 5,000 and "auto" (batch_time 50 ms).
# partitioned: MariaDB, ROWS rows in a `PARTITION BY HASH (id)` table with an
#            index on created_at alone (30 % due): raw `UPDATE` vs `lethe run`
#            anonymizing with the walk Lethe chooses (the key), then with
#            walk = "select" (ORDER BY created_at, id: a sort of every due row
#            per batch); then ROWS × 4 (walk = "select" there only with
#            SELECT_X4=1: it took 219 s at 1.6M rows).
#
# delete also runs the key walk (walk = "key") beside the walk Lethe
# chooses (the heap on PostgreSQL 14+).
#
# Environment: ROWS (400000), AROWS (2000000), LAYOUT (correlated; or random), PG (postgres://postgres@127.0.0.1:5432),
# MY (mysql://root@127.0.0.1:3306; the `mariadb` client on 127.0.0.1:3306 as root),
# CARGO_TARGET_DIR (target), LETHE_BIN (skip the build, use this binary). Each case gets a database of its own, dropped at
# the end. Prints one line per measurement; figures are wall-clock seconds of
# one run on whatever else the machine is doing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
what="${1:-all}"
ROWS="${ROWS:-400000}"
AROWS="${AROWS:-2000000}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
target="${CARGO_TARGET_DIR:-target}"
if [ -n "${LETHE_BIN:-}" ]; then
  lethe="$LETHE_BIN"            # a smoke run of this script with another build
else
  cargo build --release --bin lethe >&2
  lethe="$target/release/lethe"
fi
db="lethe_walks_$$"
work="$(mktemp -d)"
cleanup() {
  psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$what" = partitioned ] || [ "$what" = all ]; then
    my -e "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
my() { mariadb -h 127.0.0.1 -u root -N -B "$@"; }
MY="${MY:-mysql://root@127.0.0.1:3306}"
trap cleanup EXIT
if ! psql "$PG/postgres" -qAtc "SELECT 1" >/dev/null; then
  echo "PostgreSQL is not reachable at $PG: start it with scripts/services.sh start" >&2
  exit 1
fi
q() { psql "$PG/$db" -qAt -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
export PGOPTIONS="--client-min-messages=warning"
export LETHE_AUDIT_KEY="bench-walks-secret-0123456789"
AS_OF="2026-06-15T12:00:00Z"   # cutoff 180 days before: 2025-12-17

# fill N [index]: events(id, created_at, user_ref, payload), 30 % before the cutoff.
# LAYOUT=random writes the rows in random key order (the key walk then jumps
# around the heap; the heap walk does not).
order=""
if [ "${LAYOUT:-}" = random ]; then order="ORDER BY random()"; fi
fill() {
  psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null
  q -c "CREATE TABLE events (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, payload TEXT)"
  q -c "INSERT INTO events SELECT g,
          CASE WHEN g % 10 < 3 THEN TIMESTAMP '2024-01-01' + (g % 5000) * INTERVAL '1 hour'
               ELSE TIMESTAMP '2026-01-01' + (g % 5000) * INTERVAL '1 minute' END,
          'user-' || (g % 100000), repeat('x', 60) FROM generate_series(1, $1) g $order"
  if [ "${2:-}" = index ]; then q -c "CREATE INDEX events_created ON events (created_at)"; fi
  q -c "VACUUM ANALYZE events"
}

# lethe_run NAME ACTION BATCH [URL [TABLE [EXTRA]]]: time one `lethe run`.
lethe_run() {
  local name="$1" action="$2" batch="$3" url="${4:-$PG/$db}" table="${5:-events}" extra="${6:-}"
  mkdir -p "$work/jobs" "$work/audit"
  rm -f "$work"/jobs/* "$work"/audit/* "$work/state.db"
  cat >"$work/lethe.toml" <<EOF
[sources.app]
url = "$url"
[audit]
dir = "$work/audit"
hmac_key_env = "LETHE_AUDIT_KEY"
[state]
url = "sqlite://$work/state.db?mode=rwc"
EOF
  cat >"$work/jobs/bench.toml" <<EOF
name = "bench"
policy = "II(2)2"
[[rules]]
name = "$name"
target = "app.$table"
select = { column = "created_at", older_than = "180d" }
action = $action
batch_size = $batch
$extra
EOF
  local t0 t1
  t0=$(now)
  "$lethe" run --config "$work/lethe.toml" --jobs "$work/jobs" --as-of "$AS_OF" --output json --quiet >"$work/out.json"
  t1=$(now)
  local longest walk
  longest=$(grep '"type":"rule"' "$work/out.json" | sed -E 's/.*"longest_batch_ms":([0-9]+).*/\1/')
  walk=$(grep '"type":"rule"' "$work/out.json" | sed -E 's/.*"walk":\{"by":"([a-z]+)".*/\1/')
  echo "$(secs "$t0" "$t1") $longest $walk"
}

raw() {
  local t0 t1
  t0=$(now)
  q -c "$1" >/dev/null
  t1=$(now)
  secs "$t0" "$t1"
}

if [ "$what" = delete ] || [ "$what" = all ]; then
  for rows in "$ROWS" $((ROWS * 4)); do
    expired=$((rows * 3 / 10))
    fill "$rows"
    r=$(raw "DELETE FROM events WHERE created_at < '2025-12-17 12:00:00'")
    left=$(q -c "SELECT COUNT(*) FROM events")
    echo "delete rows=$rows expired=$expired no-index layout=${LAYOUT:-correlated} raw_delete ${r}s left=$left"
    for batch in 1000 5000; do
      for forced in "" 'walk = "key"'; do
        fill "$rows"
        read -r t longest walk < <(lethe_run delete '"delete"' "$batch" "$PG/$db" events "$forced")
        left=$(q -c "SELECT COUNT(*) FROM events")
        ratio=$(echo "scale=3; $r / $t" | bc)
        echo "delete rows=$rows expired=$expired no-index layout=${LAYOUT:-correlated} lethe batch=$batch walk=$walk ${t}s longest_batch=${longest}ms left=$left ratio_vs_raw=$ratio"
      done
    done
  done
fi

if [ "$what" = anonymize ] || [ "$what" = all ]; then
  rows="$AROWS"
  due=$((rows * 3 / 10))
  fill "$rows" index
  # The same HMAC-SHA-256 Lethe computes, in SQL (the pads of a fixed key).
  ipad=$(printf '%0128d' 0 | sed 's/0/6/g' | head -c 128)
  opad=$(printf '%0128d' 0 | sed 's/0/5c/g' | head -c 128)
  r=$(raw "UPDATE events SET user_ref = encode(sha256(decode('$opad', 'hex') || sha256(decode('$ipad', 'hex') || convert_to(user_ref, 'UTF8'))), 'hex'), payload = NULL WHERE created_at < '2025-12-17 12:00:00'")
  echo "anonymize rows=$rows due=$due index raw_update ${r}s"
  for batch in 5000 '"auto"'; do
    fill "$rows" index
    read -r t longest walk < <(lethe_run pseudonymize '{ anonymize = { user_ref = "hash", payload = "null" } }' "$batch")
    left=$(q -c "SELECT COUNT(*) FROM events WHERE created_at < '2025-12-17 12:00:00' AND payload IS NOT NULL")
    ratio=$(echo "scale=3; $r / $t" | bc)
    echo "anonymize rows=$rows due=$due index lethe batch=$batch walk=$walk ${t}s longest_batch=${longest}ms left=$left ratio_vs_raw=$ratio"
  done
fi

if [ "$what" = partitioned ] || [ "$what" = all ]; then
  if ! my -e "SELECT 1" >/dev/null; then
    echo "MariaDB is not reachable on 127.0.0.1:3306: start it with scripts/services.sh start" >&2
    exit 1
  fi
  # myfill N: evh(id, created_at, user_ref, payload), HASH(id) in 4 partitions.
  myfill() {
    my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
    my "$db" -e "CREATE TABLE evh (id BIGINT NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL,
          user_ref VARCHAR(64), payload VARCHAR(100), KEY evh_created (created_at)) ENGINE=InnoDB
          PARTITION BY HASH (id) PARTITIONS 4;
        INSERT INTO evh SELECT seq, IF(seq % 10 < 3, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq % 5000 HOUR,
          TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq % 5000 MINUTE), CONCAT('user-', seq % 100000), REPEAT('x', 60)
          FROM seq_1_to_$1;
        ANALYZE TABLE evh" >/dev/null
  }
  cut="2025-12-17 12:00:00"
  for rows in "$ROWS" $((ROWS * 4)); do
    due=$((rows * 3 / 10))
    myfill "$rows"
    t0=$(now)
    my "$db" -e "UPDATE evh SET user_ref = SHA2(user_ref, 256), payload = NULL WHERE created_at < '$cut'"
    r=$(secs "$t0" "$(now)")
    echo "partitioned-anonymize rows=$rows due=$due raw_update ${r}s"
    walks="chosen select"
    if [ "$rows" != "$ROWS" ] && [ -z "${SELECT_X4:-}" ]; then walks="chosen"; fi
    for w in $walks; do
      myfill "$rows"
      extra=""
      if [ "$w" = select ]; then extra='walk = "select"'; fi
      read -r t longest walk < <(lethe_run pseudonymize '{ anonymize = { user_ref = "hash", payload = "null" } }' 2000 "$MY/$db" evh "$extra")
      left=$(my "$db" -e "SELECT COUNT(*) FROM evh WHERE created_at < '$cut' AND payload IS NOT NULL")
      ratio=$(echo "scale=3; $r / $t" | bc)
      echo "partitioned-anonymize rows=$rows due=$due lethe batch=2000 walk=$walk ${t}s longest_batch=${longest}ms left=$left ratio_vs_raw=$ratio"
    done
  done
fi
