#!/usr/bin/env bash
# checkov: the IaC security scan of what we ship (deploy/ and the Dockerfile).
#
#   scripts/checkov.sh          install if needed, scan, exit non-zero on any failed check
#   scripts/checkov.sh install  only create/update .venv-checkov
#
# The scanner is pinned and lives in its own virtualenv (.venv-checkov/, beside
# moto's .venv/) so its many dependencies never clash with moto's. It runs
# offline: no Prisma Cloud key, no download of external checks, no version check.
# A check that cannot apply to Lethe is skipped in the manifest itself with
# `checkov:skip=CKV_…: reason`, never here, so the reason sits beside the field.
set -euo pipefail

CHECKOV_VERSION="3.3.30"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-checkov"

install() {
  local stamp="$venv/.lethe-checkov-$CHECKOV_VERSION"
  if [ -f "$stamp" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "checkov: creating $venv" >&2
    python3 -m venv "$venv"
  fi
  echo "checkov: installing checkov==$CHECKOV_VERSION into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION"
  touch "$stamp"
}

scan() {
  install
  cd "$root"
  # No telemetry, no update check, no network at all.
  export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false \
    BC_SCA_SKIP=TRUE SKIP_CHECKOV_VERSION_CHECK=TRUE
  # Two scans: given --directory, checkov ignores --file. Both must pass.
  local failed=0
  "$venv/bin/checkov" --quiet --compact --skip-download \
    --framework kubernetes --directory deploy || failed=1
  "$venv/bin/checkov" --quiet --compact --skip-download \
    --framework dockerfile --file Dockerfile || failed=1
  if [ "$failed" -ne 0 ]; then
    echo "checkov: failed checks above (fix the manifest, or skip with a written reason in it)" >&2
    return 1
  fi
  echo "checkov: 0 failed checks on deploy/ and Dockerfile" >&2
}

case "${1:-scan}" in
  scan) scan ;;
  install) install ;;
  *)
    echo "usage: scripts/checkov.sh [scan|install]" >&2
    exit 64
    ;;
esac
