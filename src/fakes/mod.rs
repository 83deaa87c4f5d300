//! Fakes of Salesforce and Account Engagement: real HTTP servers on 127.0.0.1 that speak the
//! real wire formats, paging and errors included, served from an [`OrgSnapshot`].
//! Tests, the demo and benchmarks share them. Faults can be injected while they run.
//!
//! [`OrgSnapshot`]: crate::domain::OrgSnapshot

mod account_engagement;
mod changes;
mod salesforce;
mod slack;
mod soql;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

pub use account_engagement::{FakeAccountEngagement, INVALID_PARAMETER_CODE, UPDATED_AT_FILTER};
pub use changes::Changer;
pub use salesforce::{
    FakeSalesforce, FakeSalesforceSettings, MAX_AGGREGATE_ROWS, MAX_URI_BYTES, SalesforceEndpoint,
    TokenHost, rsa_public_key, token_errors,
};
pub use slack::{AfterAccepting, FakeSlack, SlackCall, SlackWorkspace, UsergroupFailure};
pub use soql::MAX_SOQL_CHARS;

use crate::domain::OrgSnapshot;
use crate::sources::{AccessToken, SourceError};

/// What a fake does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status and body, verbatim (JSON content type).
    Status { status: u16, body: String },
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 whose body stops halfway: the connection is cut before `Content-Length` bytes.
    TruncatedBody,
    /// Waits this long, then answers normally: longer than the client's timeout.
    Hang(Duration),
}

impl Fault {
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Fault::Status {
            status,
            body: body.into(),
        }
    }

    /// Salesforce's daily allowance is spent.
    pub fn salesforce_request_limit() -> Self {
        Fault::status(
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        )
    }

    /// A Salesforce REST error reply, `[{"message","errorCode"}]`, e.g. `INVALID_TYPE` (400),
    /// `INVALID_FIELD` (400) or `INSUFFICIENT_ACCESS` (403).
    pub fn salesforce_error(status: u16, code: &str, message: &str) -> Self {
        Fault::status(
            status,
            serde_json::json!([{ "message": message, "errorCode": code }]).to_string(),
        )
    }

    /// An Account Engagement error reply with `code` (HTTP status as the API sends it).
    pub fn ae_code(code: u32) -> Self {
        let (status, message) = match code {
            66 => (400, "Too many concurrent API requests"),
            122 => (400, "Daily API rate limit met"),
            181 => (400, "Missing Pardot-Business-Unit-Id header"),
            182 => (400, "Invalid Pardot-Business-Unit-Id header"),
            184 => (
                401,
                "Access token is invalid, has expired, or has been revoked",
            ),
            201 => (400, "Business unit not found"),
            210 => (400, "Page token expired"),
            211 => (400, "Page token invalid"),
            214 => (400, "Request timed out"),
            _ => (400, "Error"),
        };
        Fault::status(
            status,
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
    }
}

/// A fault to inject: on which requests, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub fault: Fault,
    /// 1-based page of a listing; `None`: any request.
    pub page: Option<usize>,
    /// Salesforce object of the query (`User`, `Group`, ...); `None`: any. Ignored by AE.
    pub object: Option<String>,
    /// How many matching requests get the fault; `u32::MAX` for every one.
    pub times: u32,
}

impl Injection {
    /// Once, on the next request.
    pub fn new(fault: Fault) -> Self {
        Injection {
            fault,
            page: None,
            object: None,
            times: 1,
        }
    }

    pub fn on_page(mut self, page: usize) -> Self {
        self.page = Some(page);
        self
    }

    pub fn for_object(mut self, object: &str) -> Self {
        self.object = Some(object.to_owned());
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    pub fn always(self) -> Self {
        self.times(u32::MAX)
    }
}

#[derive(Default)]
struct Faults(Mutex<Vec<Injection>>);

impl Faults {
    fn add(&self, injection: Injection) {
        lock(&self.0).push(injection);
    }

    fn clear(&self) {
        lock(&self.0).clear();
    }

    /// The first injection matching this request, used up by one.
    fn take(&self, object: &str, page: usize) -> Option<Fault> {
        let mut injections = lock(&self.0);
        let found = injections.iter_mut().find(|i| {
            i.times > 0
                && i.page.is_none_or(|p| p == page)
                && i.object
                    .as_deref()
                    .is_none_or(|o| o.eq_ignore_ascii_case(object))
        })?;
        if found.times != u32::MAX {
            found.times -= 1;
        }
        Some(found.fault.clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The reply for `fault`; after a hang, or for a cut body, it is built from `normal`.
async fn faulted(fault: Fault, normal: impl FnOnce() -> Response) -> Response {
    match fault {
        Fault::Status { status, body } => json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
        Fault::MalformedJson => json_response(StatusCode::OK, "{\"records\": [ oops".to_owned()),
        Fault::TruncatedBody => truncated(normal()).await,
        Fault::Hang(duration) => {
            tokio::time::sleep(duration).await;
            normal()
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Sends half of `response`'s body, then fails the stream so the connection is cut.
async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let full = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = full.slice(..full.len() / 2);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(half), Err(std::io::Error::other("cut short"))];
    Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)))
}

/// A bound server that stops when dropped.
struct Server {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(router: axum::Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "fake server stopped");
            }
        });
        Ok(Server { url, task })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An [`AccessToken`] that mints `fake-token-1`, `fake-token-2`, ... and counts them: for
/// Account Engagement tests that do not need the Salesforce fake.
#[derive(Default)]
pub struct FakeAccessToken {
    minted: AtomicU64,
    current: Mutex<Option<Arc<SecretString>>>,
}

impl FakeAccessToken {
    /// How many tokens were minted so far.
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::SeqCst)
    }
}

impl AccessToken for FakeAccessToken {
    fn access_token(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<SecretString>, SourceError>> + Send + '_>> {
        Box::pin(async move {
            let mut current = lock(&self.current);
            if let Some(token) = current.as_ref() {
                return Ok(token.clone());
            }
            let n = self.minted.fetch_add(1, Ordering::SeqCst) + 1;
            let token = Arc::new(SecretString::from(format!("fake-token-{n}")));
            *current = Some(token.clone());
            Ok(token)
        })
    }

    fn invalidate(&self, stale: &Arc<SecretString>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, stale)) {
            *current = None;
        }
    }
}

/// Both fakes serving one org, and clients pointed at them: what tests, the demo and the
/// benchmarks use as "the live org".
pub struct FakeUpstreams {
    pub salesforce: FakeSalesforce,
    pub account_engagement: FakeAccountEngagement,
}

impl FakeUpstreams {
    pub async fn start(org: &OrgSnapshot) -> std::io::Result<Self> {
        Ok(FakeUpstreams {
            salesforce: FakeSalesforce::start(org, FakeSalesforceSettings::default()).await?,
            account_engagement: FakeAccountEngagement::start(org).await?,
        })
    }

    /// [`start`](Self::start) without a copy of the Salesforce half: the fake keeps `org`.
    pub async fn start_owned(org: OrgSnapshot) -> std::io::Result<Self> {
        let account_engagement = FakeAccountEngagement::start(&org).await?;
        Ok(FakeUpstreams {
            salesforce: FakeSalesforce::start_owned(org, FakeSalesforceSettings::default()).await?,
            account_engagement,
        })
    }

    /// The Salesforce settings a client needs to talk to the fake (client credentials).
    pub fn salesforce_config(&self) -> crate::sources::SalesforceConfig {
        let settings = self.salesforce.settings();
        let mut config = crate::sources::SalesforceConfig::new(
            self.salesforce.url(),
            settings.client_id.clone(),
            crate::sources::SalesforceAuth::ClientCredentials {
                secret: SecretString::from(settings.client_secret.clone()),
            },
        );
        config.retry = crate::sources::RetryPolicy::quick();
        config.timeout = std::time::Duration::from_secs(5);
        config
    }

    /// Live sources reading `org`'s business units (settings only) from the fakes.
    pub fn sources(
        &self,
        org: &OrgSnapshot,
    ) -> Result<crate::refresh::Sources, crate::sources::SourceError> {
        let salesforce = Arc::new(crate::sources::SalesforceClient::new(
            self.salesforce_config(),
        )?);
        let config = crate::sources::AccountEngagementConfig {
            retry: crate::sources::RetryPolicy::quick(),
            timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        };
        let account_engagement =
            crate::sources::AccountEngagementClient::new(config, salesforce.clone())?;
        let business_units = org
            .business_units
            .iter()
            .map(|bu| crate::domain::BusinessUnit {
                ae_url: self.account_engagement.url().to_owned(),
                users: Vec::new(),
                ..bu.clone()
            })
            .collect();
        Ok(crate::refresh::Sources {
            salesforce,
            account_engagement,
            business_units,
            live_lookups: Default::default(),
        })
    }
}
