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

. scripts/lib/fakes.sh
start_fakes

echo "refresh of $SF_USERS Salesforce users and $AE_USERS AE users over $BUSINESS_UNITS business units"
/usr/bin/time -f "run 1: wall %e s, peak RSS %M KB" "$bin" refresh

# Runs 2 and 3 while `check` keeps asking the cache (one process per check, so each time
# includes process start-up): every check must get its verdict (exit 0 or 1).
for run in 2 3; do
  : >"$work/checks"
  (
    while [ ! -e "$work/stop" ]; do
      start=$(date +%s%N)
      code=0; "$bin" check user123@synthetic.example.com >/dev/null 2>&1 || code=$?
      echo "$(( ($(date +%s%N) - start) / 1000000 )) $code" >>"$work/checks"
      sleep 0.05
    done
  ) &
  checker=$!
  /usr/bin/time -f "run $run: wall %e s, peak RSS %M KB" "$bin" refresh
  touch "$work/stop"; wait "$checker"; rm -f "$work/stop"
  sort -n "$work/checks" | awk -v run="$run" '
    { ms[NR] = $1; if ($2 != 0 && $2 != 1) bad++ }
    END { printf "run %s: %d checks during the refresh, %d without a verdict; ms per check (process start-up included): min %d, median %d, max %d\n",
          run, NR, bad + 0, ms[1], ms[int((NR + 1) / 2)], ms[NR] }'
done
stop_fakes
cat "$work/fakes.log"
