#!/usr/bin/env bash
# Install what Compression Lab needs; --test adds what the test suite needs (notebook runner, Playwright,
# Debian's Chromium for the browser test and screenshots, and Debian's colour emoji font so page titles render
# in headless screenshots instead of empty boxes). Safe to run again: installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt
if [[ "${1:-}" == "--test" ]]; then
  python -m pip install --quiet -r requirements-test.txt
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  fc-list 2>/dev/null | grep -qi "color emoji" || missing+=(fonts-noto-color-emoji)
  if (( ${#missing[@]} )); then
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
