#!/usr/bin/env bash
# The one test command (README "Tests"): makes sure what the tests need is there, then runs
# formatting, lints and every test. CI calls exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Tests that need Redis use TEST_REDIS_URL (default: a local server), each on its own key
# prefix. Make sure one answers: start the installed server, or install one as root.
ensure_redis() {
  local url="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
  export TEST_REDIS_URL="$url"
  local hostport="${url#redis://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
  local host="${hostport%%:*}" port="${hostport##*:}"
  [ "$port" = "$hostport" ] && port=6379
  ping() { command -v redis-cli >/dev/null && redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; }
  if ping; then log "Redis answers at $host:$port"; return; fi
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing redis-server"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "error: no Redis at $host:$port and redis-server is not installed." >&2
      echo "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
      echo "or point TEST_REDIS_URL at a running server." >&2
      exit 1
    fi
  fi
  log "starting redis-server on $host:$port"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --dir /tmp --logfile "/tmp/crm-username-test-redis-$port.log"
  for _ in $(seq 1 50); do ping && return; sleep 0.1; done
  echo "error: redis-server did not start; see /tmp/crm-username-test-redis-$port.log" >&2
  exit 1
}

# The playground's browser test (tests/playground) drives headless Chromium. Install Debian's
# package as root when it is missing; otherwise that test says what to install.
ensure_chromium() {
  if [ -n "${CHROMIUM_PATH:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    log "Chromium is installed"; return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: Chromium is not installed; the playground's browser test will fail." >&2
    echo "Install it (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM_PATH." >&2
  fi
}

ensure_redis
# TLS, ACL and Cluster servers for tests/it/redis_deployments.rs (ports 16380-16384).
log "Redis deployments: TLS, ACL user, Cluster"
servers="$(bash scripts/redis-test-servers.sh)"   # an assignment, so that a failure stops here
eval "$servers"
ensure_chromium

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

log "cargo clippy --no-default-features -- -D warnings (the production build: no fakes, playground or synthetic org)"
cargo clippy --locked --no-default-features -- -D warnings

log "links: every relative link and #anchor in the Markdown files resolves"
# First prove the checker catches a broken link and anchor, then run it on the repository.
links_fixture="$(mktemp -d)"
printf '# Title\n[ok](#title) [gone](#nowhere) [missing](missing.md)\n' > "$links_fixture/a.md"
if python3 scripts/check-links.py "$links_fixture" >/dev/null 2>&1; then
  echo "error: scripts/check-links.py accepted a broken link" >&2; exit 1
fi
rm -rf "$links_fixture"
python3 scripts/check-links.py

log "packaging: Dockerfile, Kubernetes manifests, Slack app manifests"
CHECK_MANIFESTS_REQUIRE_ROUTES=1 bash scripts/check-manifests.sh

log "cargo test"
INSTA_UPDATE=no cargo test --locked --all-targets
