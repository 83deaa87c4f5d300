# Sourced by the benchmark scripts: a release build (or CRM_BIN), the fakes of Salesforce and Account
# Engagement serving a synthetic org in another process, and clean-up of the Redis keys the
# run wrote. Expects SF_USERS, AE_USERS, BUSINESS_UNITS, REDIS_URL and REDIS_KEY_PREFIX;
# EXTERNAL_PERCENT, GROUP_MEMBERS and SALES_SECTION=1 shape the org when set (the bench org:
# docs/development.md).

# CRM_BIN: a binary built before (e.g. of another commit, to compare), instead of this build.
if [ -n "${CRM_BIN:-}" ]; then
  bin=$CRM_BIN
else
  cargo build --release --locked -q
  bin=${CARGO_TARGET_DIR:-target}/release/crm-username
fi
work=$(mktemp -d)
fakes=

cleanup() {
  [ -n "$fakes" ] && kill -INT "$fakes" 2>/dev/null || true
  rm -rf "$work"
  redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_KEY_PREFIX}*" | xargs -r -n 5000 redis-cli -u "$REDIS_URL" unlink >/dev/null
}
trap cleanup EXIT

# Starts the fakes and exports the settings they print (SALESFORCE_*, BUSINESS_UNITS_FILE).
start_fakes() {
  "$bin" fakes --sf-users "$SF_USERS" --ae-users "$AE_USERS" --business-units "$BUSINESS_UNITS" \
    ${EXTERNAL_PERCENT:+--external-percent "$EXTERNAL_PERCENT"} \
    ${GROUP_MEMBERS:+--group-members "$GROUP_MEMBERS"} \
    ${SALES_SECTION:+--sales-section} \
    --settings-out "$work/business-units.toml" >"$work/env" 2>"$work/fakes.log" &
  fakes=$!
  for _ in $(seq 1 300); do [ "$(wc -l <"$work/env")" -ge 4 ] && break; sleep 0.1; done
  set -a; . "$work/env"; set +a
}

stop_fakes() {
  kill -INT "$fakes"; wait "$fakes" || true; fakes=
}
