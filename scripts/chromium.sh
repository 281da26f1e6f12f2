#!/usr/bin/env bash
# Headless Chromium for the HTML report test (tests/audit_tools.rs).
#
# Usage:
#   scripts/chromium.sh ensure            install Chromium if it is missing (Debian: apt-get), print its path
#   scripts/chromium.sh path              print its path; exit 1 with the install command if missing
#   scripts/chromium.sh dump-dom FILE     print the DOM of FILE as Chromium renders it
#   scripts/chromium.sh screenshot FILE PNG [WIDTHxHEIGHT]   render FILE to PNG (default 1280x2400)
#
# The binary is looked up as $LETHE_CHROMIUM, then chromium, chromium-browser,
# google-chrome on PATH. Every run uses a fresh profile and no network:
# host resolution is mapped to nothing, so a page that tried to fetch
# anything would fail to, and the report test proves it made no request.
set -euo pipefail

find_chromium() {
  if [ -n "${LETHE_CHROMIUM:-}" ] && [ -x "$LETHE_CHROMIUM" ]; then echo "$LETHE_CHROMIUM"; return 0; fi
  for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

hint="Chromium is not installed: run \`scripts/chromium.sh ensure\` (as root on Debian: apt-get update && apt-get install -y chromium), or set LETHE_CHROMIUM to a Chromium binary"

run_headless() { # extra chromium args...
  local bin profile rc
  bin=$(find_chromium) || { echo "$hint" >&2; exit 1; }
  profile=$(mktemp -d)
  set +e
  "$bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --host-resolver-rules="MAP * ~NOTFOUND" \
    --user-data-dir="$profile" "$@" 2> >(grep -v -e 'dbus' -e 'Fontconfig' >&2)
  rc=$?
  set -e
  rm -rf "$profile"
  return $rc
}

case "${1:-}" in
  ensure)
    if ! find_chromium >/dev/null; then
      if ! command -v apt-get >/dev/null; then echo "$hint" >&2; exit 1; fi
      echo "installing Chromium (apt-get)" >&2
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    fi
    find_chromium || { echo "$hint" >&2; exit 1; }
    ;;
  path)
    find_chromium || { echo "$hint" >&2; exit 1; }
    ;;
  dump-dom)
    [ $# -eq 2 ] || { echo "usage: $0 dump-dom FILE" >&2; exit 64; }
    run_headless --dump-dom "file://$(realpath "$2")"
    ;;
  screenshot)
    [ $# -ge 3 ] || { echo "usage: $0 screenshot FILE PNG [WIDTHxHEIGHT]" >&2; exit 64; }
    size=${4:-1280x2400}
    run_headless --hide-scrollbars --window-size="${size/x/,}" --screenshot="$(realpath -m "$3")" "file://$(realpath "$2")"
    ;;
  *)
    echo "usage: $0 ensure|path|dump-dom FILE|screenshot FILE PNG [WIDTHxHEIGHT]" >&2; exit 64 ;;
esac
