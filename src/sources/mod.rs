//! Live org data: the Salesforce REST API and the Account Engagement API v5. Nothing outside
//! this module knows their wire formats; everything here returns domain types or a
//! [`SourceError`].

pub mod account_engagement;
pub mod catalog;
pub mod org_read;
pub mod salesforce;

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

pub use account_engagement::{
    AccessToken, AccountEngagementClient, AccountEngagementConfig, high_water_ae, merge_ae_users,
};
pub use org_read::{MAX_QUERY_URL_BYTES, SalesforceRead};
pub use salesforce::{
    PardotTenant, SalesforceAuth, SalesforceClient, SalesforceConfig, UserLookup, jwt_audience,
    soql_string_literal, token_error_fix,
};

/// Installs ring as the process-wide rustls crypto provider. We keep one provider (ring, which
/// slack-morphism also pulls): with two compiled in, rustls refuses to pick one at first use.
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client both API clients use: ring as the TLS provider, a timeout per request,
/// and compressed replies. Salesforce gzips a reply when asked (`Accept-Encoding: gzip`): a
/// page of 2,000 users is about a tenth of its size then, which is most of a full
/// refresh's download on a large org.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, SourceError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .gzip(true)
        .build()
        .map_err(|e| SourceError::Settings {
            problem: format!("cannot set up the HTTP client ({e})"),
            fix: "check the TLS setup of this machine".to_owned(),
        })
}

/// Replies above this size (a page of records) are decoded on a thread of lower priority
/// (`background::low_priority`), not on the async workers that answer checks meanwhile.
const DECODE_ASIDE_BYTES: usize = 32 * 1024;

/// Decodes a successful reply's JSON; `Err` says why it is malformed.
pub(crate) async fn decode<T: serde::de::DeserializeOwned + Send + 'static>(
    body: axum::body::Bytes,
) -> Result<T, String> {
    let small = body.len() < DECODE_ASIDE_BYTES;
    let parse =
        move || serde_json::from_slice::<T>(&body).map_err(|e| format!("malformed JSON ({e})"));
    if small {
        return parse();
    }
    crate::background::low_priority(parse)
        .await
        .unwrap_or_else(|| Err("the reply could not be decoded".to_owned()))
}

/// Why live data could not be fetched. `Display` says what happened and what to do next; it
/// never contains an access token, a secret or a private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{source_name}: the daily API limit is spent ({message}); the previous snapshot keeps \
         serving; retry tomorrow or raise the limit"
    )]
    DailyLimit {
        /// "Salesforce" or "Account Engagement business unit 0Uv...".
        source_name: String,
        message: String,
    },

    #[error("Salesforce refused to issue an access token ({error}: {description}); {fix}")]
    Auth {
        /// The OAuth `error` code, e.g. `invalid_grant`.
        error: String,
        description: String,
        fix: String,
    },

    #[error("Account Engagement business unit {business_unit}: {message} (code {code}); {fix}")]
    Config {
        business_unit: String,
        code: u32,
        message: String,
        fix: String,
    },

    #[error("{problem}; {fix}")]
    Settings { problem: String, fix: String },

    #[error(
        "{source_name} request {path} failed after {attempts} attempts: {detail}; the previous \
         snapshot keeps serving; retry later, and check the service status if it persists"
    )]
    Upstream {
        source_name: String,
        /// URL path of the request, without its query string.
        path: String,
        attempts: u32,
        detail: String,
    },

    #[error(
        "{source_name} rejected {request} (HTTP {status} {code}: {message}); check the \
         integration user's permissions and the API version"
    )]
    Rejected {
        source_name: String,
        request: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error(
        "{source_name} sent an unreadable reply to {request}: {detail}; the API may have \
         changed or a proxy mangled the reply: report it with the log"
    )]
    Protocol {
        source_name: String,
        request: String,
        detail: String,
    },
}

/// Salesforce's `Sforce-Limit-Info: api-usage=N/M`: calls made today out of the daily allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

impl ApiUsage {
    /// Parses the header value; other entries (`per-app-api-usage=...`) are skipped.
    pub fn parse(header: &str) -> Option<Self> {
        header.split(',').find_map(|entry| {
            let (used, max) = entry.trim().strip_prefix("api-usage=")?.split_once('/')?;
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                max: max.trim().parse().ok()?,
            })
        })
    }
}

/// How often and how patiently to retry transient failures (5xx, 429, timeouts, connection
/// errors). Delays grow exponentially with jitter so that replicas do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included. At least 1.
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Millisecond delays: for tests and demos against the local fakes.
    pub fn quick() -> Self {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

/// How one try of a request ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another try after a pause; the error is what to report if tries run out.
    Transient(SourceError),
    /// The access token was refused: mint a new one and try again, once.
    SessionExpired,
    /// AE page token expired or invalid: start paging again from the first page.
    RestartPaging,
    Fatal(SourceError),
}

impl Failure {
    fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `policy` runs out of tries.
pub(crate) async fn with_retry<T, F, Fut>(policy: &RetryPolicy, attempt: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(Failure::is_transient)
        .notify(|failure, delay| {
            if let Failure::Transient(error) = failure {
                tracing::warn!(%error, ?delay, "transient failure, retrying");
            }
        })
        .await
}

/// The URL path without its query string: what errors may show of a request.
pub(crate) fn path_of(url: &reqwest::Url) -> String {
    url.path().to_owned()
}

/// Classifies a reqwest error that happened before a status was read, or while reading a body.
pub(crate) fn transport_failure(
    source_name: &str,
    url: &reqwest::Url,
    attempts: u32,
    error: reqwest::Error,
) -> Failure {
    let detail = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the reply body was cut short".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    // Without the URL: reqwest's message would repeat it, query string included.
    let detail = format!("{detail} ({})", error.without_url());
    Failure::Transient(SourceError::Upstream {
        source_name: source_name.to_owned(),
        path: path_of(url),
        attempts,
        detail,
    })
}

/// Turns a failure that outlived its retries into the error to report.
pub(crate) fn settle(failure: Failure, source_name: &str, request: &str) -> SourceError {
    match failure {
        Failure::Transient(error) | Failure::Fatal(error) => error,
        // Callers handle these two; reaching here means the second try failed the same way.
        Failure::SessionExpired => SourceError::Auth {
            error: "invalid_session".to_owned(),
            description: format!(
                "{source_name} refused a freshly minted access token for {request}"
            ),
            fix: "check that the integration user still has API access and the scopes `api` and \
                  `pardot_api`"
                .to_owned(),
        },
        Failure::RestartPaging => SourceError::Protocol {
            source_name: source_name.to_owned(),
            request: request.to_owned(),
            detail: "page tokens kept expiring; paging was restarted too many times".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_api_client_asks_for_gzipped_replies_and_reads_them() {
        // A server that says which encodings the request accepted, gzipped when allowed.
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|headers: axum::http::HeaderMap| async move {
                    let accepted = headers
                        .get("accept-encoding")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    format!("accepted: {accepted}\n{}", "x".repeat(4_096))
                }),
            )
            .layer(tower_http::compression::CompressionLayer::new().gzip(true));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = http_client(std::time::Duration::from_secs(10)).unwrap();
        let body = client.get(&url).send().await.unwrap().text().await.unwrap();
        let first = body.lines().next().unwrap();
        assert!(
            first.starts_with("accepted: ") && first.contains("gzip"),
            "{first}"
        );
        assert_eq!(body.len(), first.len() + 1 + 4_096);
    }

    #[test]
    fn api_usage_is_read_from_the_limit_info_header() {
        assert_eq!(
            ApiUsage::parse("api-usage=25/15000"),
            Some(ApiUsage {
                used: 25,
                max: 15000
            })
        );
        assert_eq!(
            ApiUsage::parse("per-app-api-usage=2/250(appName=x), api-usage=7/100"),
            Some(ApiUsage { used: 7, max: 100 })
        );
        assert_eq!(ApiUsage::parse("garbage"), None);
    }
}
