#!/usr/bin/env bash
# Serve Compression Lab to a room: N Streamlit processes behind nginx, one address for everyone.
#
#   bash scripts/serve.sh --workers 4 [--port 8080] [--address 0.0.0.0] [--cache-dir DIR]
#
# Why several processes: one Python process runs one script at a time per core at best (the GIL), so a
# room's slider moves queue up behind each other; N processes use N cores. Sessions are sticky: nginx hashes
# a cookie it sets on the first request (clab_worker) to pick a process, so a browser's page, websocket,
# uploads and media all reach the process that holds its session (Streamlit keeps them in memory). Processes
# share measured reports, sweep rows and pipeline stages through a content-addressed directory on disk
# (ui/disk_cache.py): one process computes a configuration, the others read it. By default that directory is
# temporary and removed on exit; --cache-dir keeps it (entries are keyed by a fingerprint of the code, so a
# changed checkout never reads an old result). Ctrl-C (or SIGTERM) stops nginx and every worker.
# Needs nginx (Debian package: `bash scripts/install.sh --serve`).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=2 PORT=8080 ADDRESS=0.0.0.0 CACHE_DIR=""
usage() { echo "usage: $0 [--workers N (1-32)] [--port P] [--address A] [--cache-dir DIR]" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) WORKERS="${2:-}"; shift 2 ;;
    --port) PORT="${2:-}"; shift 2 ;;
    --address) ADDRESS="${2:-}"; shift 2 ;;
    --cache-dir) CACHE_DIR="${2:-}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "serve.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 1 && "$WORKERS" -le 32 ]] \
  || { echo "serve.sh: --workers '$WORKERS' must be a whole number from 1 to 32" >&2; exit 2; }
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]] \
  || { echo "serve.sh: --port '$PORT' must be a whole number from 1 to 65535" >&2; exit 2; }
NGINX="$(command -v nginx || true)"; [[ -n "$NGINX" ]] || NGINX=/usr/sbin/nginx
[[ -x "$NGINX" ]] || { echo "serve.sh: nginx is not installed (bash scripts/install.sh --serve)" >&2; exit 2; }

RUN="$(mktemp -d -t clab-serve.XXXXXX)"
chmod 755 "$RUN"
if [[ -z "$CACHE_DIR" ]]; then CACHE_DIR="$RUN/cache"; fi
mkdir -p "$CACHE_DIR" "$RUN/tmp"
PIDS=()
stop() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap stop EXIT
trap 'exit 0' INT TERM

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SECRET="$(python -c 'import secrets; print(secrets.token_hex(32))')"  # one XSRF/cookie secret for every worker
UPSTREAM=""
for i in $(seq 1 "$WORKERS"); do
  port="$(free_port)"
  CLAB_SHARED_CACHE="$CACHE_DIR" STREAMLIT_SERVER_COOKIE_SECRET="$SECRET" python -m streamlit run app.py --server.port "$port" --server.address 127.0.0.1 \
    --server.headless true --browser.gatherUsageStats false \
    >"$RUN/worker-$i.log" 2>&1 &
  PIDS+=("$!")
  UPSTREAM+="    server 127.0.0.1:$port max_fails=0;"$'\n'
done

cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $RUN/tmp/body;
  proxy_temp_path $RUN/tmp/proxy;
  fastcgi_temp_path $RUN/tmp/fastcgi;
  uwsgi_temp_path $RUN/tmp/uwsgi;
  scgi_temp_path $RUN/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  # Sticky sessions: a browser keeps the worker its first request was hashed to (a random id until it has one).
  map \$cookie_clab_worker \$sticky { '' \$request_id; default \$cookie_clab_worker; }
  upstream streamlit {
    hash \$sticky consistent;
$UPSTREAM  }
  server {
    listen $ADDRESS:$PORT;
    client_max_body_size 200m;
    location / {
      proxy_pass http://streamlit;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 1d;
      proxy_send_timeout 1d;
      proxy_buffering off;
      add_header Set-Cookie "clab_worker=\$sticky; Path=/; HttpOnly; SameSite=Lax" always;
    }
  }
}
EOF
chmod -R 777 "$RUN/tmp"

for i in $(seq 1 "$WORKERS"); do  # every worker answers before the room gets the address
  port="$(sed -n "${i}p" <<<"$UPSTREAM" | grep -o '127.0.0.1:[0-9]*' | cut -d: -f2)"
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/_stcore/health" >/dev/null 2>&1 && break
    kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || { echo "serve.sh: worker $i died:" >&2; tail -20 "$RUN/worker-$i.log" >&2; exit 1; }
    sleep 0.2
  done
done
# Warm every worker before the room arrives: the first render of a page imports and computes (seconds); the first
# worker computes the pages' default results into the shared cache, the others then only read them.
warm() { python benchmarks/bench_room.py --warm-only --url "http://127.0.0.1:$1" >/dev/null 2>&1 || true; }
ports=($(grep -o '127.0.0.1:[0-9]*' <<<"$UPSTREAM" | cut -d: -f2))
warm "${ports[0]}"
warming=()
for port in "${ports[@]:1}"; do warm "$port" & warming+=("$!"); done
for pid in "${warming[@]}"; do wait "$pid" || true; done
"$NGINX" -c "$RUN/nginx.conf" -p "$RUN" -e "$RUN/nginx-error.log" &
PIDS+=("$!")
echo "Compression Lab: http://$ADDRESS:$PORT ($WORKERS workers, shared results in $CACHE_DIR, pids ${PIDS[*]})"
wait -n "${PIDS[@]}" || true
echo "serve.sh: a process exited; stopping the others" >&2
