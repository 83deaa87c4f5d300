#!/usr/bin/env bash
# Audit benchmark (BENCHMARKS.md "Audit"): a synthetic org served by the fakes of Salesforce and
# Account Engagement is refreshed into Redis, then `crm-username audit` runs from that cache
# three times (CSV to /dev/null). Reports wall time, peak RSS and rows.
#   SF_USERS=100000 AE_USERS=20000 BUSINESS_UNITS=3 bash scripts/bench-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SF_USERS=${SF_USERS:-100000}
AE_USERS=${AE_USERS:-20000}
BUSINESS_UNITS=${BUSINESS_UNITS:-3}
# Database 12 by default, and the keys are deleted afterwards.
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/12}
export REDIS_KEY_PREFIX=${REDIS_KEY_PREFIX:-bench-audit:}

cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-target}/release/crm-username
work=$(mktemp -d)
fakes=
cleanup() {
  [ -n "$fakes" ] && kill -INT "$fakes" 2>/dev/null || true
  rm -rf "$work"
  redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_KEY_PREFIX}*" | xargs -r -n 5000 redis-cli -u "$REDIS_URL" unlink >/dev/null
}
trap cleanup EXIT

"$bin" fakes --sf-users "$SF_USERS" --ae-users "$AE_USERS" --business-units "$BUSINESS_UNITS" \
  --settings-out "$work/business-units.toml" >"$work/env" 2>"$work/fakes.log" &
fakes=$!
for _ in $(seq 1 300); do [ "$(wc -l <"$work/env")" -ge 4 ] && break; sleep 0.1; done
set -a; . "$work/env"; set +a

echo "audit of $SF_USERS Salesforce users and $AE_USERS AE users over $BUSINESS_UNITS business units, from Redis"
"$bin" refresh >/dev/null
kill -INT "$fakes"; wait "$fakes" || true; fakes=
if [ -n "${ONLY_MAX_ROWS:-}" ]; then
  for n in $ONLY_MAX_ROWS; do
    /usr/bin/time -f "--max-rows $n: wall %e s, peak RSS %M KB" "$bin" audit --format csv --max-rows "$n" >/dev/null || true
  done
  exit 0
fi
# The audit reads only the cache: no live data settings.
unset SALESFORCE_CLIENT_ID SALESFORCE_CLIENT_SECRET SALESFORCE_USERNAME SALESFORCE_PRIVATE_KEY_FILE
for run in 1 2 3; do
  code=0
  /usr/bin/time -f "run $run, every row: wall %e s, peak RSS %M KB" "$bin" audit --format csv >"$work/audit.csv" || code=$?
  echo "run $run, every row: exit $code, $(($(wc -l <"$work/audit.csv") - 1)) rows in the CSV"
done
# What the bot does in Slack: at most 10,000 rows kept (the most severe), every row counted.
for run in 1 2 3; do
  code=0
  /usr/bin/time -f "run $run, as the bot (--max-rows 10000): wall %e s, peak RSS %M KB" "$bin" audit --format csv --max-rows 10000 >"$work/audit.csv" || code=$?
  echo "run $run, as the bot: exit $code, $(($(wc -l <"$work/audit.csv") - 1)) rows in the CSV"
done
"$bin" audit --format json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("by cause:", ", ".join("%s %d" % (c["cause"], c["count"]) for c in r["by_cause"]))' || true
