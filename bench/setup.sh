#!/usr/bin/env bash
# The benchmark's own setup: installs what `cargo bench --bench delete_throughput`
# compares Lethe with. Today that is Percona's pt-archiver (percona-toolkit,
# from the distribution's archive). The bench skips pt-archiver, with a line
# saying so, where it is not installed.
#   bench/setup.sh
set -euo pipefail
if command -v pt-archiver >/dev/null 2>&1; then
  echo "pt-archiver: $(pt-archiver --version 2>/dev/null | head -1)"
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "pt-archiver is not installed and this is not root: install percona-toolkit by hand" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install percona-toolkit with your package manager" >&2
  exit 1
fi
if ! $sudo apt-get install -y percona-toolkit; then
  $sudo apt-get update
  $sudo apt-get install -y percona-toolkit
fi
echo "pt-archiver: $(pt-archiver --version 2>/dev/null | head -1)"
