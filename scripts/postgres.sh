#!/usr/bin/env bash
# A local PostgreSQL for the multi-worker search tests (tests/test_workers.py) and for trying `--storage
# postgresql://…` by hand: Debian's server, a cluster started on localhost:5432, role and database "compressor"
# (password "compressor"). Safe to run again: what exists is kept, a running server is left running.
set -euo pipefail
SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
if ! command -v pg_ctlcluster >/dev/null; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
pg_lsclusters -h | grep -q "^$version main" || $SUDO pg_createcluster "$version" main >/dev/null
$SUDO pg_ctlcluster "$version" main start 2>/dev/null || true  # already running is fine
as_postgres() { $SUDO su postgres -c "$1"; }
as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='compressor'\"" | grep -q 1 \
  || as_postgres "psql -qc \"CREATE ROLE compressor LOGIN PASSWORD 'compressor'\""
as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='compressor'\"" | grep -q 1 \
  || as_postgres "createdb -O compressor compressor"
