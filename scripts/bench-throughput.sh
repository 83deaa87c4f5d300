#!/usr/bin/env bash
# Check throughput with wrk (BENCHMARKS.md, "Slash commands over HTTP"): signed `check`
# slash commands against the release `crm-username serve`, then the same load against the
# floor (an axum handler doing one Redis GET: the one of `cargo bench --bench http`), in one
# run. Prints requests/s and p50/p99 of both, their ratio, and the peak RSS of `serve`.
#
#   bash scripts/bench-throughput.sh
#   SF_USERS=100000 AE_USERS=20000 THREADS=2 CONNECTIONS=16 SECONDS_PER_RUN=10 ROUNDS=1 \
#     USERS=64 bash scripts/bench-throughput.sh
#
# The org is a synthetic one served by the fakes of Salesforce and Account Engagement and loaded
# by one `crm-username refresh` into Redis (database 13, prefix `bench-wrk:`, deleted at the
# end). Everything is on 127.0.0.1; wrk runs for a bounded time and stops by itself. Installs
# wrk (Debian's package) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SF_USERS=${SF_USERS:-100000}
AE_USERS=${AE_USERS:-20000}
BUSINESS_UNITS=${BUSINESS_UNITS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-16}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-1}
# Distinct users asked about (usernames spread over the org), each request signed. A username
# asked again is read in one Redis round trip instead of two: USERS=100000 measures mostly
# first asks (each wrk thread starts at another place in the list).
USERS=${USERS:-64}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/13}
export REDIS_KEY_PREFIX=${REDIS_KEY_PREFIX:-bench-wrk:}
SECRET=bench-signing-secret

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

# The floor is the HTTP benchmark's binary run with CRM_BENCH_FLOOR_REDIS. It does not depend on
# the bot's code, so one built before is reused (its build, with the dev-dependencies' features,
# would build the crate a second time); FLOOR_REBUILD=1 builds it again.
target=${CARGO_TARGET_DIR:-target}
floor_bin=$(ls -t "$target"/release/deps/http-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
if [ -z "$floor_bin" ] || [ "${FLOOR_REBUILD:-0}" = 1 ]; then
  floor_bin=$(cargo bench --locked --bench http --no-run --message-format=json -q 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "http") | .executable' | tail -1)
fi
[ -x "$floor_bin" ] || { echo "could not build the floor (cargo bench --bench http --no-run)" >&2; exit 1; }

. scripts/lib/fakes.sh
server=
floor_feed=
stop_servers() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  [ -n "$floor_feed" ] && kill "$floor_feed" 2>/dev/null || true
  server= floor_feed=
}
trap 'stop_servers; cleanup' EXIT

echo "loading a synthetic org of $SF_USERS Salesforce and $AE_USERS AE users into $REDIS_URL under $REDIS_KEY_PREFIX"
start_fakes
"$bin" refresh >"$work/refresh.log" || { cat "$work/refresh.log" "$work/fakes.log" >&2; exit 1; }
stop_fakes
unset SALESFORCE_CLIENT_ID SALESFORCE_CLIENT_SECRET SALESFORCE_LOGIN_URL SALESFORCE_PRIVATE_KEY_FILE \
  SALESFORCE_USERNAME BUSINESS_UNITS_FILE

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A wrk script of $USERS signed requests, cycled; signed now (Slack's window is 5 minutes).
write_requests() {
  local ts lua=$work/requests.lua
  ts=$(date +%s)
  {
    # Signed with Python's hmac: thousands of requests in well under a second.
    # One "body signature" line per request, read by the Lua script (a Lua chunk holds at most
    # 65,536 constants).
    SECRET=$SECRET TS=$ts USERS=$USERS SF_USERS=$SF_USERS FIRST=$work/first python3 - >"$work/requests.txt" <<'PY'
import hashlib, hmac, os
secret, ts = os.environ["SECRET"].encode(), os.environ["TS"]
users, sf_users = int(os.environ["USERS"]), int(os.environ["SF_USERS"])
for i in range(users):
    n = (i * 1543 + 7) % sf_users
    body = ("token=bench&team_id=T0BENCH&channel_id=C0BENCH&user_id=U0BENCH"
            "&command=%2Fcrm-username&text=check+user{}%40synthetic.example.com"
            "&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fbench&trigger_id=1.2.3").format(n)
    sig = hmac.new(secret, "v0:{}:{}".format(ts, body).encode(), hashlib.sha256).hexdigest()
    print("{} v0={}".format(body, sig))
    if i == 0:
        with open(os.environ["FIRST"], "w") as first:
            first.write("{}\nv0={}\n{}\n".format(body, sig, ts))
PY
    cat <<EOF
local bodies, sigs = {}, {}
for line in io.lines("$work/requests.txt") do
  local body, sig = line:match("^(%S+) (%S+)$")
  bodies[#bodies + 1], sigs[#sigs + 1] = body, sig
end
local requests, i, threads = {}, 0, 0
-- Each thread (and each run) starts elsewhere in the list: with many users, few are asked twice.
function setup(thread)
  thread:set("offset", threads * 7919 + os.time() * 104729)
  threads = threads + 1
end
function init(args)
  i = (offset or 0) % #bodies
  for k = 1, #bodies do
    requests[k] = wrk.format("POST", "/slack/commands", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Slack-Request-Timestamp"] = "$ts",
      ["X-Slack-Signature"] = sigs[k],
    }, bodies[k])
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
EOF
  } >"$lua"
  echo "$lua"
}

# wrk against one server: a 2 s warm-up, then the measured run; prints one summary line.
measure() {
  local who=$1 url=$2 lua out
  lua=$(write_requests)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$lua" "$url" >/dev/null
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$lua" "$url")
  echo "$out" >"$work/wrk-$who.txt"
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $5} /Socket errors:/ {print $0}' <<<"$out")
  printf '%-5s %10s req/s  p50 %8s  p99 %8s  %s\n' "$who" "$rps" "$p50" "$p99" "${bad:+errors: $bad}"
  [ -z "$bad" ] || { echo "$who answered with errors: the numbers above do not count" >&2; cat "$work/wrk-$who.txt" >&2; exit 1; }
  eval "${who}_rps=$rps"
}

for round in $(seq 1 "$ROUNDS"); do
  # The bot: no live data (no refresher), only the cache and the signed requests.
  port=$(free_port)
  SLACK_SIGNING_SECRET=$SECRET BIND_ADDR=127.0.0.1:$port LOG_FORMAT=json RUST_LOG=warn \
    "$bin" serve </dev/null >/dev/null 2>"$work/serve.log" &
  server=$!
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.05
  done
  # One request by hand: the answer must be a diagnosis, not an error.
  write_requests >/dev/null
  { read -r body; read -r sig; read -r ts; } <"$work/first"
  answer=$(curl -sf -X POST "http://127.0.0.1:$port/slack/commands" \
    -H "X-Slack-Request-Timestamp: $ts" -H "X-Slack-Signature: $sig" --data "$body")
  grep -q '"type":"header"' <<<"$answer" || { echo "serve did not answer with a diagnosis: $answer" >&2; exit 1; }

  echo "round $round: wrk -t$THREADS -c$CONNECTIONS -d${SECONDS_PER_RUN}s --latency, $USERS signed check requests, $SF_USERS SF users"
  measure bot "http://127.0.0.1:$port/slack/commands"
  rss=$(awk '/^VmHWM:/ {printf "%.1f MB", $2 / 1024}' "/proc/$server/status")
  kill "$server"; wait "$server" 2>/dev/null || true; server=

  # The floor: reads its port from its first line; stops when its stdin closes.
  coproc FLOOR { CRM_BENCH_FLOOR_REDIS="$REDIS_URL ${REDIS_KEY_PREFIX}current" exec "$floor_bin"; }
  floor_feed=$FLOOR_PID
  read -r floor_port <&"${FLOOR[0]}"
  measure floor "http://127.0.0.1:$floor_port/slack/commands"
  stop_servers

  awk -v b="$bot_rps" -v f="$floor_rps" -v rss="$rss" \
    'BEGIN { printf "bot / floor throughput: %.2f; peak RSS of serve (VmHWM): %s\n", b / f, rss }'
done
