#!/usr/bin/env bash
# Run every fuzz target for a while, starting from the kept corpus.
#
#   fuzz/run.sh [seconds per target, default 150] [target…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); a stable toolchain works
# through RUSTC_BOOTSTRAP=1. New inputs go to a scratch corpus under
# fuzz/target/ (never into fuzz/corpus/, which is kept small by hand: copy a
# crasher there once fixed, so tests/fuzz_corpus.rs replays it for ever).
# Crashers land in fuzz/artifacts/<target>/. No sanitizer: the code is safe
# Rust, and a panic is what we look for.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-150}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config job duration cron strategy template)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none --release
for t in "${targets[@]}"; do
  scratch="target/corpus/$t"
  mkdir -p "$scratch"
  cp -n corpus/"$t"/* "$scratch"/ 2>/dev/null || true
  echo "== $t (${secs}s)"
  cargo fuzz run -s none --release "$t" "$scratch" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread '|panicked)" || true
done
