#!/usr/bin/env bash
# Benchmark object erasure: Lethe vs a plain boto3 loop on the same moto server.
#   bench/objects.sh [--release]
# Environment: BENCH_OBJECTS (default 20000), BENCH_CONCURRENCY (default 4),
# LETHE_TEST_S3_ENDPOINT (default http://127.0.0.1:5077).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile=debug
if [ "${1:-}" = "--release" ]; then
  cargo build --release --bin lethe
  profile=release
else
  cargo build --bin lethe
fi
scripts/moto.sh start
exec .venv/bin/python bench/objects.py "target/$profile/lethe"
