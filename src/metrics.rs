//! Prometheus metrics on `/metrics`. Names and labels in one place; label values are fixed
//! sets (routes, outcomes, verdicts, finding codes, sources), never user input.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Diagnosis;

pub const HTTP_REQUESTS: &str = "crm_username_http_requests_total";
pub const HTTP_DURATION: &str = "crm_username_http_request_duration_seconds";
pub const DIAGNOSES: &str = "crm_username_diagnoses_total";
pub const FINDINGS: &str = "crm_username_findings_total";
pub const REFRESH_RUNS: &str = "crm_username_refresh_runs_total";
pub const REFRESH_DURATION: &str = "crm_username_refresh_duration_seconds";
/// API requests the refreshes made, by kind (`full`, `incremental`) and API (`salesforce`,
/// `account_engagement`): their cost against the org's daily allowance.
pub const REFRESH_API_CALLS: &str = "crm_username_refresh_api_calls_total";
/// When the last refresh of each kind succeeded (Unix time).
pub const REFRESH_LAST_SUCCESS: &str = "crm_username_refresh_last_success_timestamp_seconds";
/// Successful refreshes by `kind` and by how they wrote the cache (`how`: `in_place`, a full
/// refresh that rewrote only the keys that differ; `new_generation`; `patch`, an incremental
/// one): full refreshes that keep publishing whole generations load Redis the most.
pub const REFRESH_CACHE_WRITES: &str = "crm_username_refresh_cache_writes_total";
/// Keys a full refresh rewrote in place, and records and keys an incremental one rewrote, by
/// `kind` (a whole new generation is not counted here).
pub const REFRESH_KEYS_REWRITTEN: &str = "crm_username_refresh_keys_rewritten_total";
pub const SOURCE_RESULTS: &str = "crm_username_source_fetches_total";
pub const SNAPSHOT_AGE: &str = "crm_username_snapshot_age_seconds";
pub const SALESFORCE_API_USED: &str = "crm_username_salesforce_api_requests_used";
pub const SALESFORCE_API_MAX: &str = "crm_username_salesforce_api_requests_max";
/// Slack calls that failed in the end (after retries), by `method` and `error`
/// ([`crate::slack::SlackApiError::label`]: `slack_error`, `rate_limited`, `transport`,
/// `unconfirmed`).
pub const SLACK_API_ERRORS: &str = "crm_username_slack_api_errors_total";
/// Non-idempotent Slack calls (posts, file shares) that timed out or got an ambiguous 5xx:
/// maybe delivered, never sent again.
pub const SLACK_API_UNCONFIRMED: &str = "crm_username_slack_api_unconfirmed_total";

/// 1 when the cache holds a snapshot, 0 before the first refresh ends (measured at scrape).
pub const SNAPSHOT_LOADED: &str = "crm_username_snapshot_loaded";
/// Errors Redis answered with (or no answer in time), counted where the store converts them.
pub const REDIS_ERRORS: &str = "crm_username_redis_errors_total";
/// Socket Mode connections open now (two when all is well).
pub const SOCKET_MODE_CONNECTIONS: &str = "crm_username_socket_mode_connections";
/// Socket Mode connections replaced, by `reason`: `disconnect` (Slack asked), `pong_missed`,
/// `closed`, `failed` (could not open).
pub const SOCKET_MODE_RECONNECTS: &str = "crm_username_socket_mode_reconnects_total";
/// Envelopes delivered again (on either connection) and not handled twice.
pub const SOCKET_MODE_DUPLICATES: &str = "crm_username_socket_mode_duplicate_envelopes_total";
/// Connections closed at once because `HTTP_MAX_CONNECTIONS` were already open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "crm_username_http_connections_refused_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "crm_username_http_connections_open";
/// Connections closed at the cap to make room: the oldest with no request in progress.
pub const HTTP_CONNECTIONS_EVICTED: &str = "crm_username_http_connections_evicted_total";
/// Checks answered from Redis by the small orgs this process read before (`result`: `hit`),
/// or read again (`miss`): src/store/redis_store/read_cache.rs.
pub const CHECK_READ_CACHE: &str = "crm_username_check_read_cache_total";
/// Slash-command checks replied to with the reply made before for the same text on the same
/// data (`answers.rs`), or diagnosed: `result` = hit | miss.
pub const CHECK_REPLY_MEMO: &str = "crm_username_check_reply_memo_total";
/// Live lookups of queries the cache could not answer, by `result` (`admitted`, `refused`).
pub const LIVE_LOOKUPS: &str = "crm_username_live_lookups_total";
/// When each admin user group (`usergroup`: a configured `S…` id) was last resolved, as a Unix
/// time; absent until it first is.
pub const ADMIN_USERGROUP_RESOLVED: &str =
    "crm_username_admin_usergroup_last_resolved_timestamp_seconds";
/// Members of each admin user group as last resolved, by `usergroup`.
pub const ADMIN_USERGROUP_MEMBERS: &str = "crm_username_admin_usergroup_members";
/// Resolutions of an admin user group that failed (its previous members stay admins), by
/// `usergroup` and `error` ([`crate::slack::SlackApiError::label`]).
pub const ADMIN_USERGROUP_FAILURES: &str = "crm_username_admin_usergroup_resolution_failures_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".to_owned()),
                    &[
                        0.00025, 0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Counts requests by route and status class, with their latency.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let outcome = match response.status().as_u16() {
        200..=299 => "ok",
        401 => "unauthorized",
        400..=499 => "client_error",
        _ => "server_error",
    };
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

pub fn record_diagnosis(diagnosis: &Diagnosis) {
    metrics::counter!(DIAGNOSES, "verdict" => diagnosis.verdict.as_str()).increment(1);
    for finding in &diagnosis.findings {
        metrics::counter!(FINDINGS, "code" => finding.code.as_str()).increment(1);
    }
}
