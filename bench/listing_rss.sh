#!/usr/bin/env bash
# Peak RSS of an object rule over a small and a large prefix (folder store):
# a streamed listing keeps it flat. See bench/listing_rss.py.
#   bench/listing_rss.sh [--release]
# Environment: BENCH_RSS_SMALL (default 20000), BENCH_RSS_LARGE (default 200000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-target}"
profile=debug
if [ "${1:-}" = "--release" ]; then
  cargo build --release --bin lethe
  profile=release
else
  cargo build --bin lethe
fi
exec python3 bench/listing_rss.py "$target/$profile/lethe"
