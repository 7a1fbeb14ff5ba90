#!/usr/bin/env bash
# Install what Compression Lab needs; --test adds what the test suite needs (notebook runner, Playwright,
# Debian's Chromium for the browser test). Safe to run again: installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt
if [[ "${1:-}" == "--test" ]]; then
  python -m pip install --quiet -r requirements-test.txt
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
