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

. scripts/lib/fakes.sh
start_fakes

echo "audit of $SF_USERS Salesforce users and $AE_USERS AE users over $BUSINESS_UNITS business units, from Redis"
"$bin" refresh >/dev/null
stop_fakes
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
