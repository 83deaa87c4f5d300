#!/usr/bin/env bash
# Connection flood benchmark (docs/http-limits.md, BENCHMARKS.md): `serve --demo` under
# CONNECTIONS half-open connections held for SECONDS (scripts/lib/connection_flood.py reopens
# each one the server closes). Reports serve's RSS, and the latency of GET /healthz and of a
# signed slash command sent meanwhile. Not part of scripts/test.sh.
#   CONNECTIONS=10000 SECONDS_HELD=30 bash scripts/bench-connection-flood.sh
# BIN=target/debug/crm-username measures an existing build instead of building for release.
# Any HTTP_* setting in the environment reaches serve (e.g. HTTP_MAX_CONNECTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-10000}
SECONDS_HELD=${SECONDS_HELD:-30}
PORT=${PORT:-3917}
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=${CARGO_TARGET_DIR:-target}/release/crm-username
fi

# Each side holds CONNECTIONS sockets: raise the soft descriptor limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNECTIONS + 100)) ]; then
  echo "the file-descriptor limit ($(ulimit -n)) is below $((CONNECTIONS + 100)): raise the hard limit" >&2
  exit 1
fi

log=$(mktemp)
secret=bench-flood-secret
SLACK_SIGNING_SECRET=$secret BIND_ADDR=127.0.0.1:$PORT LOG_FORMAT=json \
  "$BIN" serve --demo >"$log" 2>&1 &
serve=$!
trap 'kill -TERM $serve 2>/dev/null || true; wait $serve 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "serve --demo ($BIN, pid $serve) on 127.0.0.1:$PORT; $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/lib/connection_flood.py 127.0.0.1 "$PORT" "$serve" "$secret" "$CONNECTIONS" "$SECONDS_HELD"
curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^crm_username_http_connections' || true
