#!/usr/bin/env bash
# Install what Compression Lab needs; --serve adds nginx (scripts/serve.sh: several processes for a big room);
# --test adds what the test suite needs (notebook runner, Playwright, Debian's Chromium for the browser test and
# screenshots, Debian's colour emoji font so page titles render in headless screenshots instead of empty boxes,
# nginx for the serve.sh test, and a local PostgreSQL for the multi-worker search tests: scripts/postgres.sh).
# Safe to run again: installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt
SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
debian_packages=()
if [[ "${1:-}" == "--test" ]]; then
  python -m pip install --quiet -r requirements-test.txt
  command -v chromium >/dev/null 2>&1 || debian_packages+=(chromium)
  fc-list 2>/dev/null | grep -qi "color emoji" || debian_packages+=(fonts-noto-color-emoji)
fi
if [[ "${1:-}" == "--test" || "${1:-}" == "--serve" ]]; then
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || debian_packages+=(nginx)
fi
if [[ ${#debian_packages[@]} -gt 0 ]]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${debian_packages[@]}" >/dev/null
fi
if [[ "${1:-}" == "--test" ]]; then
  bash scripts/postgres.sh
fi
