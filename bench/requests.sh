#!/usr/bin/env bash
# Issue 11's benchmark: a request job for REQUESTS subjects at once vs the
# same cascade run by age, on the demo schema (SQLite, release build):
#   bench/requests.sh
#
# 1. Seed: `lethe demo --users USERS` in target/rbench/seed with a jobs folder
#    holding only erasure-requests.toml (the demo seeds tables and objects,
#    files its three requests and erases those two accounts; nothing else
#    runs). Then the seeded copy is made neutral: no account is past its
#    cancellation grace, the state store and audit folder are removed.
# 2. Pick REQUESTS ordinary accounts (not cancelled, not on a legal hold),
#    spread over the id range.
# 3. Request copy: file one erasure request per account with `lethe request
#    add` in a loop (timed on its own), then time `lethe run --job
#    erasure-requests` (all at once).
# 4. Age copy (a fresh copy of the same seed): set those accounts'
#    cancelled_at 20 days back (grace 15 days) and time `lethe run --job
#    cancelled-accounts`. Its job file is derived from erasure-requests.toml
#    (same rule, children and objects; `select` instead of `trigger`, the
#    shipped cancelled-accounts' batch_size 500) so both runs do the same
#    cascade; the shipped cancelled-accounts job differs (no promotion
#    entrants or sessions, and a second rule deleting old anonymized orders).
# 5. Counts per table (and objects) before and after, in both copies: the
#    two runs must remove / anonymize exactly the same, or the script fails.
#
# Environment: USERS (100000), REQUESTS (1000), CARGO_TARGET_DIR (target),
# LETHE_BIN (skip the build, use this binary), KEEP=1 (keep target/rbench).
# Figures are wall-clock seconds of one run on whatever else the machine does.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
USERS="${USERS:-100000}"
REQUESTS="${REQUESTS:-1000}"
target="${CARGO_TARGET_DIR:-target}"
if [ -n "${LETHE_BIN:-}" ]; then
  lethe="$LETHE_BIN"
else
  cargo build --release --bin lethe >&2
  lethe="$target/release/lethe"
fi
lethe="$(cd "$(dirname "$lethe")" && pwd)/$(basename "$lethe")"
work="$root/target/rbench"
rm -rf "$work"
mkdir -p "$work"
cleanup() { if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; fi; }
trap cleanup EXIT
export LETHE_AUDIT_KEY="bench-requests-secret-0123456789"
unset APP_DATABASE_URL LETHE_STATE_URL LETHE_CONFIG LETHE_JOBS
AS_OF="2026-06-15T04:00:00Z"   # a Monday, 12:00 in Asia/Shanghai
now() { date +%s.%N; }
secs() { echo "scale=3; ($2 - $1) / 1" | bc; }
div() { echo "scale=${3:-3}; $1 / $2" | bc; }

# --- 1. seed -------------------------------------------------------------
mkdir -p "$work/seed/jobs"
cp -r config "$work/seed/config"
cp jobs/erasure-requests.toml "$work/seed/jobs/"
t0=$(now)
(cd "$work/seed" && "$lethe" -q demo --users "$USERS" --as-of "$AS_OF" \
  --config config/lethe.toml --jobs jobs >"$work/seed.log" 2>&1) || {
  echo "seeding failed:" >&2; tail -20 "$work/seed.log" >&2; exit 1; }
t1=$(now)
sq() { sqlite3 -bail "$1/var/app.db" "$2"; }
# Neutral: no account past its grace, so the age run finds only ours.
sq "$work/seed" "UPDATE users SET cancelled_at = NULL
  WHERE cancelled_at IS NOT NULL AND cancelled_at < datetime('$AS_OF', '-15 days')"
rm -rf "$work/seed/var/state.db"* "$work/seed/var/audit"
echo "seed: $USERS users in $(secs "$t0" "$t1") s (lethe demo)"

# --- 2. the subjects -----------------------------------------------------
sq "$work/seed" "SELECT id FROM users WHERE cancelled_at IS NULL
  AND id NOT IN (SELECT user_id FROM legal_holds)
  ORDER BY (id * 7919) % 1000003 LIMIT $REQUESTS" >"$work/subjects.txt"
got=$(wc -l <"$work/subjects.txt")
[ "$got" -eq "$REQUESTS" ] || { echo "only $got ordinary accounts to pick from" >&2; exit 1; }

TABLES="users posts comments locations promotion_entrants sessions events tickets orders sms_codes legal_holds"
# counts DIR: one line "table count" per table, then anonymized orders and objects.
counts() {
  for t in $TABLES; do echo "$t $(sq "$1" "SELECT count(*) FROM $t")"; done
  echo "orders_without_user $(sq "$1" "SELECT count(*) FROM orders WHERE user_id IS NULL")"
  echo "objects $(find "$1/var/objects" -type f | wc -l)"
}
counts "$work/seed" >"$work/before.txt"

copy() {  # copy NAME: a fresh copy of the seed
  mkdir -p "$work/$1"
  cp -r "$work/seed/config" "$work/$1/config"
  cp -r jobs "$work/$1/jobs"
  cp -a "$work/seed/var" "$work/$1/var"
}

# --- 3. requests ---------------------------------------------------------
copy req
cd "$work/req"
t0=$(now)
while read -r id; do
  "$lethe" -q request add --subject "$id" --as-of "$AS_OF" --received "$AS_OF" \
    --ref "BENCH-$id" >/dev/null
done <"$work/subjects.txt"
t1=$(now)
filed=$(sqlite3 var/state.db "SELECT count(*) FROM lethe_requests WHERE state = 'pending'")
t2=$(now)
rc=0
"$lethe" run --job erasure-requests --as-of "$AS_OF" --output json >"$work/req.json" 2>"$work/req.err" || rc=$?
t3=$(now)
[ "$rc" -eq 0 ] || { echo "request run exited $rc" >&2; tail -5 "$work/req.err" >&2; exit 1; }
done_n=$(sqlite3 var/state.db "SELECT count(*) FROM lethe_requests WHERE state = 'done'")
cd "$root"
counts "$work/req" >"$work/after-req.txt"
file_s=$(secs "$t0" "$t1")
req_s=$(secs "$t2" "$t3")

# --- 4. by age -----------------------------------------------------------
copy age
ids=$(paste -sd, "$work/subjects.txt")
sq "$work/age" "UPDATE users SET cancelled_at = datetime('$AS_OF', '-20 days') WHERE id IN ($ids)"
rm "$work/age/jobs/cancelled-accounts.toml"
sed -e 's/^name  *= "erasure-requests"/name        = "cancelled-accounts"/' \
    -e 's/^trigger .*$//' \
    -e 's/^max_rows = 1$/select   = { column = "cancelled_at", older_than = "15d" }\nbatch_size = 500\nmax_fraction = 0.5/' \
    jobs/erasure-requests.toml >"$work/age/jobs/cancelled-accounts.toml"
grep -q 'older_than = "15d"' "$work/age/jobs/cancelled-accounts.toml" \
  || { echo "could not derive the age job from erasure-requests.toml" >&2; exit 1; }
cd "$work/age"
t0=$(now)
rc=0
"$lethe" run --job cancelled-accounts --as-of "$AS_OF" --output json >"$work/age.json" 2>"$work/age.err" || rc=$?
t1=$(now)
[ "$rc" -eq 0 ] || { echo "age run exited $rc" >&2; tail -5 "$work/age.err" >&2; exit 1; }
cd "$root"
counts "$work/age" >"$work/after-age.txt"
age_s=$(secs "$t0" "$t1")

# --- 5. same rows? -------------------------------------------------------
printf '\n%-22s %10s %10s %10s %10s %10s\n' table before "after req" "after age" "-req" "-age"
same=1
while read -r t b; do
  r=$(awk -v t="$t" '$1 == t { print $2 }' "$work/after-req.txt")
  a=$(awk -v t="$t" '$1 == t { print $2 }' "$work/after-age.txt")
  printf '%-22s %10s %10s %10s %10s %10s\n' "$t" "$b" "$r" "$a" "$((b - r))" "$((b - a))"
  [ "$r" = "$a" ] || same=0
done <"$work/before.txt"
# Per-subject figures: the JSON report has one `rule` line per request (one
# batch each: its ms); the run's audit file has one `batch` record per
# subject, so the gaps between their timestamps are each subject's whole
# turn (batch, objects, re-query, settling, pauses).
lat=$(python3 - "$work/req.json" "$work/req" <<'EOF2'
import json, sys, statistics
from datetime import datetime
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def stats(xs):
    xs = sorted(xs)
    return f"median {statistics.median(xs):.1f} ms, p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))]:.1f} ms, max {xs[-1]:.1f} ms"
batch = [l["longest_batch_ms"] for l in lines if l.get("type") == "rule" and l.get("longest_batch_ms") is not None]
audit = [l["audit_file"] for l in lines if l.get("type") == "summary"][0]
ts = []
for l in open(f"{sys.argv[2]}/{audit}"):
    r = json.loads(l)
    if r.get("type") == "batch":
        ts.append(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")))
gaps = [(b - a).total_seconds() * 1000 for a, b in zip(ts, ts[1:])]
print(f"per-request batch ({len(batch)} rule lines of the JSON report): {stats(batch)}")
if gaps:
    print(f"per-subject turn ({len(gaps)} gaps between the audit's batch records): {stats(gaps)}")
EOF2
)
age_batch=$(jq -r 'select(.type == "rule") | "\(.batches) batches, longest \(.longest_batch_ms) ms"' "$work/age.json" | head -1)
echo
echo "filing:      $REQUESTS x lethe request add: $file_s s ($(div "$REQUESTS" "$file_s" 1) requests/s; pending afterwards: $filed)"
echo "request run: $req_s s, $(div "$REQUESTS" "$req_s" 1) subjects/s, $(div "$req_s * 1000" "$REQUESTS" 1) ms per subject (done: $done_n)"
echo "age run:     $age_s s, $(div "$REQUESTS" "$age_s" 1) subjects/s, $(div "$age_s * 1000" "$REQUESTS" 1) ms per subject"
echo "ratio:       request job / age cascade = $(div "$req_s" "$age_s" 2)"
echo "$lat"
echo "age run batches: $age_batch"
echo "machine:     $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), lethe $(git rev-parse --short HEAD)"
if [ "$same" != 1 ]; then
  echo "FAILED: the two runs did not change the same rows (table above)" >&2
  exit 1
fi
echo "same rows erased and anonymized by both runs"
