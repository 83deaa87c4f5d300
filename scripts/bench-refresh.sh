#!/usr/bin/env bash
# Refresh benchmark (BENCHMARKS.md): one full refresh of a synthetic org served by the fakes
# of Salesforce and Account Engagement (another process), into Redis. Reports wall time and
# peak RSS of `crm-username refresh`, and the requests it made.
#   SF_USERS=100000 AE_USERS=20000 BUSINESS_UNITS=3 bash scripts/bench-refresh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SF_USERS=${SF_USERS:-100000}
AE_USERS=${AE_USERS:-20000}
BUSINESS_UNITS=${BUSINESS_UNITS:-3}
# Database 15 by default, and the keys are deleted afterwards.
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
export REDIS_KEY_PREFIX=${REDIS_KEY_PREFIX:-bench-refresh:}

cargo build --release --locked -q
bin=target/release/crm-username
work=$(mktemp -d)
cleanup() {
  kill -INT "$fakes" 2>/dev/null || true
  rm -rf "$work"
  redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_KEY_PREFIX}*" | xargs -r -n 5000 redis-cli -u "$REDIS_URL" unlink >/dev/null
}
trap cleanup EXIT

"$bin" fakes --sf-users "$SF_USERS" --ae-users "$AE_USERS" --business-units "$BUSINESS_UNITS" \
  --settings-out "$work/business-units.toml" >"$work/env" 2>"$work/fakes.log" &
fakes=$!
for _ in $(seq 1 300); do [ "$(wc -l <"$work/env")" -ge 4 ] && break; sleep 0.1; done
set -a; . "$work/env"; set +a

echo "refresh of $SF_USERS Salesforce users and $AE_USERS AE users over $BUSINESS_UNITS business units"
for run in 1 2 3; do
  /usr/bin/time -f "run $run: wall %e s, peak RSS %M KB" "$bin" refresh
done
kill -INT "$fakes"; wait "$fakes" || true
cat "$work/fakes.log"
