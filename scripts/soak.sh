#!/usr/bin/env bash
# Soak (SECURITY.md, BENCHMARKS.md): `crm-username serve` for SOAK_SECONDS (default 600) under
# mixed signed traffic — checks of usernames, names and typos, status, re-check clicks — while
# the refresher runs every 60 s against the fakes of Salesforce and Account Engagement
# (20,000 SF / 4,000 AE users). Samples the server's memory every 10 s and reports it with
# the requests sent and any answer that was not 200. Loopback only; stops by itself.
#   SOAK_SECONDS=600 bash scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-600}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/13}
export REDIS_KEY_PREFIX=soak:
SECRET=soak-signing-secret

cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-target}/release/crm-username
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  kill "${serve:-}" "${fakes:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli -u "$REDIS_URL" --scan --pattern 'soak:*' | xargs -r -n 5000 redis-cli -u "$REDIS_URL" unlink >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" fakes --sf-users 20000 --ae-users 4000 --business-units 3 --settings-out "$work/bu.toml" >"$work/env" 2>/dev/null &
fakes=$!
for _ in $(seq 1 300); do [ "$(wc -l <"$work/env")" -ge 4 ] && break; sleep 0.1; done
set -a; . "$work/env"; set +a

SLACK_SIGNING_SECRET=$SECRET SLACK_BOT_TOKEN=xoxb-soak SLACK_RESPONSE_URL_HOSTS=127.0.0.1 \
  REFRESH_INTERVAL=60s BIND_ADDR=127.0.0.1:$port LOG_FORMAT=json RUST_LOG=warn \
  "$bin" serve 2>"$work/serve.log" &
serve=$!
# Ready (listening) comes before the data: wait for the first refresh to load it too.
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null &&
    curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^crm_username_snapshot_loaded 1' && break
  sleep 0.1
done

send() { # path, body
  local ts sig
  ts=$(date +%s)
  sig="v0=$(printf 'v0:%s:%s' "$ts" "$2" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)"
  curl -s -o /dev/null -w '%{http_code}\n' -X POST "http://127.0.0.1:$port$1" \
    -H "x-slack-request-timestamp: $ts" -H "x-slack-signature: $sig" --data-binary "$2"
}
traffic() { # one client: mixed requests until the deadline
  local n=$1 deadline=$2 i=0 text
  while [ "$(date +%s)" -lt "$deadline" ]; do
    i=$((i + 1))
    case $((i % 10)) in
      0) text="check uer$(( (i * 7919 + n) % 20000 ))@synthetic.example.com" ;;
      1) text="check Jane" ;;
      2) text="status" ;;
      *) text="check user$(( (i * 7919 + n) % 20000 ))@synthetic.example.com" ;;
    esac
    send /slack/commands "team_id=T1&user_id=U1&command=%2Fcrm-username&text=$(printf '%s' "$text" | sed 's/ /+/g;s/@/%40/g')&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fr"
    if [ $((i % 50)) -eq 0 ]; then
      payload="{\"type\":\"block_actions\",\"team\":{\"id\":\"T1\",\"domain\":\"x\"},\"user\":{\"id\":\"U1\"},\"api_app_id\":\"A1\",\"container\":{\"type\":\"message\",\"message_ts\":\"1.1\",\"channel_id\":\"C1\",\"is_ephemeral\":true},\"trigger_id\":\"1.2\",\"response_url\":\"http://127.0.0.1:9/r\",\"actions\":[{\"type\":\"button\",\"action_id\":\"recheck\",\"block_id\":\"footer\",\"value\":\"user$n@synthetic.example.com\"}]}"
      send /slack/interactions "payload=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$payload")"
    fi
  done >>"$work/codes.$n"
}

deadline=$(( $(date +%s) + SOAK_SECONDS ))
for n in 1 2 3; do traffic "$n" "$deadline" & done
echo "soak: $SOAK_SECONDS s of mixed traffic (3 clients) against serve (pid $serve), refresh every 60 s"
echo "seconds  RSS_MB"
start=$(date +%s)
while [ "$(date +%s)" -lt "$deadline" ]; do
  echo "$(( $(date +%s) - start ))  $(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$serve/status)"
  sleep 10
done
wait $(jobs -p | grep -v -e "^$serve$" -e "^$fakes$") 2>/dev/null || true
cat "$work"/codes.* | sort | uniq -c | awk '{printf "HTTP %s: %d requests\n", $2, $1}'
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^crm_username_refresh_runs_total|^crm_username_diagnoses_total' || true
echo "peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$serve/status)"
echo "log lines at warn or above: $(wc -l <"$work/serve.log")"
