#!/usr/bin/env bash
# Starts the Redis servers the deployment tests (tests/it/redis_deployments.rs) need, on loopback
# and fixed ports, and prints the variables that point the tests at them:
#
#   eval "$(scripts/redis-test-servers.sh)"      # then: cargo test --test it redis_deployments
#
#   16380        redis-server with TLS only (a CA and server certificate made here, by openssl)
#   16381        redis-server with an ACL user `crm` (the default user is off), `crm-older`
#                with the same rules but `+rename`, and `crm-cleanup`, which only lists and
#                deletes the tests' keys (the bot's users may not `SCAN`)
#   16382-16384  a Redis Cluster of three masters (cluster bus: 26382-26384)
#   16385        redis-server with RENAME disabled (`rename-command RENAME ""`), as some
#                managed Redis services run it
#
# Idempotent: a server that already answers is reused. State (certificates, pid files, logs,
# cluster configs) lives in $CRM_TEST_REDIS_DIR (default /tmp/crm-username-test-redis).
# Stop them: scripts/redis-test-servers.sh stop
# Installs redis-server and openssl with apt-get when they are missing and this runs as root.
set -euo pipefail

DIR="${CRM_TEST_REDIS_DIR:-/tmp/crm-username-test-redis}"
TLS_PORT=16380
ACL_PORT=16381
CLUSTER_PORTS=(16382 16383 16384)
NO_RENAME_PORT=16385
ACL_USER=crm
ACL_PASSWORD=crm-test-password
# What the bot needs (docs/redis.md, "An ACL user"), on the key prefix the tests use.
ACL_OLDER_RULES=(on ">$ACL_PASSWORD" "~test:*" resetchannels -@all
  +get +set +del +unlink +exists +eval +evalsha +script\|load +zadd +zrange +zrangebylex
  +zlexcount +zrem +strlen +getrange +hset +hget +hdel +hgetall +ping +info +config\|get
  +pexpire +pttl +zrangebyscore +sadd +srem +smembers)
ACL_RULES=("${ACL_OLDER_RULES[@]}" +rename)
# A second user with the rules documented before `+rename` (patches then fall back).
ACL_OLDER_USER=crm-older
# The tests' cleanup: the bot's users may not SCAN, so another user deletes what they wrote.
ACL_CLEANUP_USER=crm-cleanup
ACL_CLEANUP_RULES=(on ">$ACL_PASSWORD" "~test:*" resetchannels -@all +scan +unlink +ping)

say() { printf '%s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }

ensure_tools() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    fail "missing ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install redis-server openssl)"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stops a server this script started (its pid file), and only that one.
stop_own() {
  local pidfile="$DIR/redis-$1.pid"
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 50); do port_free "$1" && break; sleep 0.1; done
    rm -f "$pidfile"
  fi
}

start() {
  local port="$1"; shift
  port_free "$port" || fail "port $port is taken by something this script did not start; free it or stop that server"
  redis-server --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" --daemonize yes \
    --pidfile "$DIR/redis-$port.pid" --logfile "$DIR/redis-$port.log" "$@"
}

wait_for() {
  local what="$1"; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
  fail "$what did not answer; see the logs in $DIR"
}

tls_cli() { redis-cli -p "$TLS_PORT" --tls --cacert "$DIR/ca.pem" "$@"; }
acl_cli() { redis-cli -p "$ACL_PORT" --user "$ACL_USER" --pass "$ACL_PASSWORD" --no-auth-warning "$@"; }
# Output captured before matching: `grep -q` in a pipe can end it early (SIGPIPE, pipefail).
pong() { local out; out="$("$@" ping 2>/dev/null)" || return 1; [[ $out == *PONG* ]]; }

make_certificates() {
  say "making a test CA and server certificate in $DIR"
  openssl req -x509 -new -nodes -newkey rsa:2048 -days 30 -subj "/CN=crm-username test CA" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -subj "/CN=localhost" \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$DIR/server.ext"
  openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 30 -extfile "$DIR/server.ext" -out "$DIR/server.pem" 2>/dev/null
  chmod 600 "$DIR/ca.key" "$DIR/server.key"
}

ensure_tls() {
  if [ -f "$DIR/ca.pem" ] && pong tls_cli; then say "TLS Redis answers on $TLS_PORT"; return; fi
  stop_own "$TLS_PORT"
  make_certificates
  say "starting TLS Redis on $TLS_PORT"
  start "$TLS_PORT" --port 0 --tls-port "$TLS_PORT" --tls-cert-file "$DIR/server.pem" \
    --tls-key-file "$DIR/server.key" --tls-ca-cert-file "$DIR/ca.pem" --tls-auth-clients no
  wait_for "TLS Redis on $TLS_PORT" pong tls_cli
}

# Whether the ACL users have the rules above: a server started with older rules lacks some.
acl_current() {
  local out
  for probe in pttl smembers; do
    out="$(acl_cli "$probe" test:acl-probe 2>&1)" || return 1
    [[ $out != *NOPERM* ]] || return 1
  done
  out="$(acl_cli hget test:acl-probe f 2>&1)" || return 1
  [[ $out != *NOPERM* ]] || return 1
  out="$(acl_cli rename test:acl-probe test:acl-probe-2 2>&1)" || true
  [[ $out != *NOPERM* ]] || return 1
  # Older rules allowed SCAN; the bot no longer needs it, and its users may not.
  out="$(acl_cli scan 0 2>&1)" || true
  [[ $out == *NOPERM* ]] || return 1
  pong redis-cli -p "$ACL_PORT" --user "$ACL_OLDER_USER" --pass "$ACL_PASSWORD" --no-auth-warning &&
    pong redis-cli -p "$ACL_PORT" --user "$ACL_CLEANUP_USER" --pass "$ACL_PASSWORD" --no-auth-warning
}

ensure_acl() {
  if pong acl_cli && acl_current; then say "ACL Redis answers on $ACL_PORT"; return; fi
  stop_own "$ACL_PORT"
  say "starting Redis with ACL user $ACL_USER on $ACL_PORT"
  start "$ACL_PORT" --port "$ACL_PORT" --user default off --user "$ACL_USER" "${ACL_RULES[@]}" \
    --user "$ACL_OLDER_USER" "${ACL_OLDER_RULES[@]}" \
    --user "$ACL_CLEANUP_USER" "${ACL_CLEANUP_RULES[@]}"
  wait_for "ACL Redis on $ACL_PORT" pong acl_cli
}

cluster_ok() {
  local out; out="$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null)" || return 1
  [[ $out == *cluster_state:ok* ]]
}

ensure_cluster() {
  if cluster_ok; then say "Redis Cluster answers on ${CLUSTER_PORTS[*]}"; return; fi
  for port in "${CLUSTER_PORTS[@]}"; do
    stop_own "$port"
    rm -f "$DIR/nodes-$port.conf"
  done
  say "starting a three-master Redis Cluster on ${CLUSTER_PORTS[*]}"
  local nodes=()
  for port in "${CLUSTER_PORTS[@]}"; do
    start "$port" --port "$port" --cluster-enabled yes --cluster-config-file "$DIR/nodes-$port.conf" \
      --cluster-node-timeout 5000
    wait_for "cluster node $port" pong redis-cli -p "$port"
    nodes+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1 \
    || fail "redis-cli --cluster create failed; see $DIR/cluster-create.log"
  wait_for "the Redis Cluster (cluster_state:ok)" cluster_ok
}

# A server answering RENAME with "unknown command": one this script started with the setting.
no_rename_ok() {
  local out; out="$(redis-cli -p "$NO_RENAME_PORT" rename test:no-rename-probe test:no-rename-probe-2 2>&1)" || true
  [[ $out == *"unknown command"* ]]
}

ensure_no_rename() {
  if pong redis-cli -p "$NO_RENAME_PORT" && no_rename_ok; then
    say "Redis without RENAME answers on $NO_RENAME_PORT"; return
  fi
  stop_own "$NO_RENAME_PORT"
  say "starting Redis with RENAME disabled on $NO_RENAME_PORT"
  start "$NO_RENAME_PORT" --port "$NO_RENAME_PORT" --rename-command RENAME ""
  wait_for "Redis without RENAME on $NO_RENAME_PORT" pong redis-cli -p "$NO_RENAME_PORT"
}

mkdir -p "$DIR"
if [ "${1:-}" = stop ]; then
  for port in "$TLS_PORT" "$ACL_PORT" "${CLUSTER_PORTS[@]}" "$NO_RENAME_PORT"; do stop_own "$port"; done
  exit 0
fi
ensure_tools
# Debian's redis-server links OpenSSL (BUILD_TLS=yes); one built without it cannot serve TLS.
linked="$(ldd "$(command -v redis-server)" 2>/dev/null || echo libssl-unknown)"
[[ $linked == *libssl* ]] || fail "this redis-server is built without TLS; install one with TLS (Debian's redis-server has it)"
ensure_tls
ensure_acl
ensure_cluster
ensure_no_rename
echo "export TEST_REDIS_TLS_URL=rediss://127.0.0.1:$TLS_PORT"
echo "export TEST_REDIS_TLS_CA=$DIR/ca.pem"
echo "export TEST_REDIS_ACL_URL=redis://$ACL_USER:$ACL_PASSWORD@127.0.0.1:$ACL_PORT"
echo "export TEST_REDIS_ACL_OLDER_URL=redis://$ACL_OLDER_USER:$ACL_PASSWORD@127.0.0.1:$ACL_PORT"
echo "export TEST_REDIS_ACL_CLEANUP_URL=redis://$ACL_CLEANUP_USER:$ACL_PASSWORD@127.0.0.1:$ACL_PORT"
echo "export TEST_REDIS_CLUSTER_URL=redis://127.0.0.1:${CLUSTER_PORTS[0]}"
echo "export TEST_REDIS_NO_RENAME_URL=redis://127.0.0.1:$NO_RENAME_PORT"
