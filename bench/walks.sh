#!/usr/bin/env bash
# Walks and one-statement anonymize, by hand, on PostgreSQL (release build):
#   bench/walks.sh [delete|anonymize|all]
#
# delete:    ROWS rows (30 % expired, spread over the whole key range), NO
#            index on created_at: raw `DELETE … WHERE created_at < cutoff` vs
#            `lethe run` at batch_size 1,000 and 5,000 (the key walk), then
#            the same with ROWS × 4.
# anonymize: AROWS rows (30 % due), index on created_at: raw `UPDATE … SET
#            user_ref = <HMAC-SHA-256 in SQL>, payload = NULL WHERE …` vs
#            `lethe run` with { user_ref = "hash", payload = "null" }, at
#            batch_size 5,000 and "auto" (batch_time 50 ms).
#
# Environment: ROWS (400000), AROWS (2000000), PG (postgres://postgres@127.0.0.1:5432),
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
  rm -rf "$work"
}
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
fill() {
  psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null
  q -c "CREATE TABLE events (id BIGINT PRIMARY KEY, created_at TIMESTAMP NOT NULL, user_ref TEXT, payload TEXT)"
  q -c "INSERT INTO events SELECT g,
          CASE WHEN g % 10 < 3 THEN TIMESTAMP '2024-01-01' + (g % 5000) * INTERVAL '1 hour'
               ELSE TIMESTAMP '2026-01-01' + (g % 5000) * INTERVAL '1 minute' END,
          'user-' || (g % 100000), repeat('x', 60) FROM generate_series(1, $1) g"
  if [ "${2:-}" = index ]; then q -c "CREATE INDEX events_created ON events (created_at)"; fi
  q -c "VACUUM ANALYZE events"
}

# lethe_run NAME ACTION BATCH: time one `lethe run`, check what it left.
lethe_run() {
  local name="$1" action="$2" batch="$3"
  mkdir -p "$work/jobs" "$work/audit"
  rm -f "$work"/jobs/* "$work"/audit/* "$work/state.db"
  cat >"$work/lethe.toml" <<EOF
[sources.app]
url = "$PG/$db"
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
target = "app.events"
select = { column = "created_at", older_than = "180d" }
action = $action
batch_size = $batch
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
    echo "delete rows=$rows expired=$expired no-index raw_delete ${r}s left=$left"
    for batch in 1000 5000; do
      fill "$rows"
      read -r t longest walk < <(lethe_run delete '"delete"' "$batch")
      left=$(q -c "SELECT COUNT(*) FROM events")
      ratio=$(echo "scale=3; $r / $t" | bc)
      echo "delete rows=$rows expired=$expired no-index lethe batch=$batch walk=$walk ${t}s longest_batch=${longest}ms left=$left ratio_vs_raw=$ratio"
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
