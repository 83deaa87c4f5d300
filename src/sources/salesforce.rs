//! Salesforce REST API client: OAuth token (client credentials or JWT bearer), SOQL with
//! paging, and the records the diagnosis reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    AccessToken, ApiUsage, Failure, RetryPolicy, SourceError, path_of, settle, transport_failure,
    with_retry,
};
use crate::domain::{PublicGroup, Role, SfId, SfUser};

const SOURCE: &str = "Salesforce";
pub const DEFAULT_API_VERSION: &str = "62.0";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How the integration user authenticates.
pub enum SalesforceAuth {
    /// Client credentials flow: the connected app's "Run As" user.
    ClientCredentials { secret: SecretString },
    /// JWT bearer flow: an RS256 assertion signed with the key whose certificate the connected
    /// app holds, for a pre-authorized `username`.
    JwtBearer {
        username: String,
        private_key_pem: SecretString,
    },
}

impl std::fmt::Debug for SalesforceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SalesforceAuth::ClientCredentials { .. } => f.write_str("ClientCredentials"),
            SalesforceAuth::JwtBearer { username, .. } => {
                write!(f, "JwtBearer {{ username: {username:?} }}")
            }
        }
    }
}

#[derive(Debug)]
pub struct SalesforceConfig {
    /// Token endpoint base: the org's My Domain URL (required for client credentials), or
    /// `https://login.salesforce.com` / `https://test.salesforce.com`.
    pub login_url: String,
    /// The JWT bearer assertion's `aud`; `None` derives it from `login_url` ([`jwt_audience`]).
    pub audience: Option<String>,
    pub client_id: String,
    pub auth: SalesforceAuth,
    /// REST version without the `v`, e.g. `62.0`.
    pub api_version: String,
    /// Per request, body included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl SalesforceConfig {
    pub fn new(
        login_url: impl Into<String>,
        client_id: impl Into<String>,
        auth: SalesforceAuth,
    ) -> Self {
        SalesforceConfig {
            login_url: login_url.into(),
            audience: None,
            client_id: client_id.into(),
            auth,
            api_version: DEFAULT_API_VERSION.to_owned(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// How to find the user an admin asked about, for a live re-check.
#[derive(Debug, Clone, Copy)]
pub enum UserLookup<'a> {
    Id(SfId),
    Username(&'a str),
    Email(&'a str),
}

/// An Account Engagement business unit as the Tooling API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PardotTenant {
    pub id: SfId,
    #[serde(default)]
    pub pardot_tenant_name: Option<String>,
    #[serde(default)]
    pub creation_status: Option<String>,
}

/// A minted access token and the REST base it is valid for.
struct Session {
    access_token: Arc<SecretString>,
    instance_url: Url,
}

pub struct SalesforceClient {
    http: reqwest::Client,
    config: SalesforceConfig,
    token_url: Url,
    /// Parsed once, so that a bad key is reported at start-up rather than at first refresh.
    jwt_key: Option<RsaKeyPair>,
    session: Mutex<Option<Arc<Session>>>,
    /// Held while minting so that concurrent callers share one new token.
    minting: tokio::sync::Mutex<()>,
    api_usage: Mutex<Option<ApiUsage>>,
    /// API requests sent since start (query pages and their retries; tokens not counted).
    calls: AtomicU64,
}

impl SalesforceClient {
    pub fn new(config: SalesforceConfig) -> Result<Self, SourceError> {
        super::install_crypto_provider();
        let login_url = Url::parse(&config.login_url).map_err(|e| SourceError::Settings {
            problem: format!(
                "the Salesforce login URL {:?} is not a URL ({e})",
                config.login_url
            ),
            fix: "set SALESFORCE_LOGIN_URL to https://login.salesforce.com, \
                  https://test.salesforce.com or the org's My Domain URL"
                .to_owned(),
        })?;
        let token_url = join(&login_url, "/services/oauth2/token");
        let jwt_key = match &config.auth {
            SalesforceAuth::ClientCredentials { .. } => None,
            SalesforceAuth::JwtBearer {
                private_key_pem, ..
            } => Some(rsa_key_from_pem(private_key_pem.expose_secret())?),
        };
        let http = super::http_client(config.timeout)?;
        Ok(SalesforceClient {
            http,
            config,
            token_url,
            jwt_key,
            session: Mutex::new(None),
            minting: tokio::sync::Mutex::new(()),
            api_usage: Mutex::new(None),
            calls: AtomicU64::new(0),
        })
    }

    /// The JWT `aud` this client sends: `SALESFORCE_AUDIENCE`, or derived from the login URL.
    pub fn audience(&self) -> String {
        match &self.config.audience {
            Some(audience) => audience.trim_end_matches('/').to_owned(),
            None => jwt_audience(&self.config.login_url).to_owned(),
        }
    }

    /// Mints a token now if none is cached: what `doctor` checks first.
    pub async fn connect(&self) -> Result<(), SourceError> {
        self.session().await.map(|_| ())
    }

    /// One GET of a REST path on the instance (`/services/data/`, or a query with `soql`),
    /// its JSON as it came: for `doctor`, which reads fields the refresh has no use for
    /// (`totalSize`, the version list).
    pub async fn get_value(
        &self,
        path: &str,
        soql: Option<&str>,
    ) -> Result<serde_json::Value, SourceError> {
        let label = soql.map_or_else(|| format!("GET {path}"), query_label);
        self.get_json(path, soql, &label, &AtomicU64::new(0)).await
    }

    /// The latest `Sforce-Limit-Info` the org sent.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.api_usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Salesforce API requests this client sent since start: query pages and their retries,
    /// tokens not counted.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The users matching `lookup`, read live. Usernames are unique; emails are not.
    pub async fn fetch_user(&self, lookup: UserLookup<'_>) -> Result<Vec<SfUser>, SourceError> {
        let condition = match lookup {
            UserLookup::Id(id) => format!("Id = '{}'", id.to_18()),
            UserLookup::Username(name) => format!("Username = {}", soql_string_literal(name)?),
            UserLookup::Email(email) => format!("Email = {}", soql_string_literal(email)?),
        };
        let users: Vec<UserRecord> = self
            .query(&format!("{USER_SELECT} FROM User WHERE {condition}"))
            .await?;
        Ok(users.into_iter().map(SfUser::from).collect())
    }

    /// The groups holding the user directly (public groups and groups standing for roles).
    pub async fn fetch_direct_groups(&self, user: SfId) -> Result<Vec<SfId>, SourceError> {
        let members: Vec<GroupMemberRecord> = self
            .query(&format!(
                "SELECT GroupId, UserOrGroupId FROM GroupMember WHERE UserOrGroupId = '{}'",
                user.to_18()
            ))
            .await?;
        Ok(members.into_iter().map(|m| m.group_id).collect())
    }

    /// Account Engagement business units of the org, from the Tooling API.
    pub async fn discover_business_units(&self) -> Result<Vec<PardotTenant>, SourceError> {
        self.query_at(
            "tooling/query",
            "SELECT Id, PardotTenantName, CreationStatus FROM PardotTenant",
            &AtomicU64::new(0),
        )
        .await
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` until `done`.
    pub async fn query<T: DeserializeOwned + Send + 'static>(
        &self,
        soql: &str,
    ) -> Result<Vec<T>, SourceError> {
        self.query_at("query", soql, &AtomicU64::new(0)).await
    }

    /// [`Self::query`], adding the requests it sends to `tally` (one read's count).
    pub(super) async fn query_counted<T: DeserializeOwned + Send + 'static>(
        &self,
        soql: &str,
        tally: &AtomicU64,
    ) -> Result<Vec<T>, SourceError> {
        self.query_at("query", soql, tally).await
    }

    /// The query URL without its `q` parameter: what a chunked query's length is measured
    /// against. Mints a token if none is cached (the instance URL comes with it).
    pub(super) async fn query_url(&self) -> Result<Url, SourceError> {
        let session = self.session().await?;
        Ok(join(
            &session.instance_url,
            &format!("/services/data/v{}/query", self.config.api_version),
        ))
    }

    /// The REST base of the current session, as the org snapshot records it.
    pub(super) async fn instance_url(&self) -> Result<String, SourceError> {
        let session = self.session().await?;
        Ok(session
            .instance_url
            .as_str()
            .trim_end_matches('/')
            .to_owned())
    }

    async fn query_at<T: DeserializeOwned + Send + 'static>(
        &self,
        endpoint: &str,
        soql: &str,
        tally: &AtomicU64,
    ) -> Result<Vec<T>, SourceError> {
        let label = query_label(soql);
        let first = format!("/services/data/v{}/{endpoint}", self.config.api_version);
        let mut page: QueryPage<T> = self.get_json(&first, Some(soql), &label, tally).await?;
        let mut records = std::mem::take(&mut page.records);
        while !page.done {
            let Some(next) = page.next_records_url.take() else {
                return Err(SourceError::Protocol {
                    source_name: SOURCE.to_owned(),
                    request: label,
                    detail: "`done` is false but there is no `nextRecordsUrl`".to_owned(),
                });
            };
            page = self.get_json(&next, None, &label, tally).await?;
            records.append(&mut page.records);
        }
        Ok(records)
    }

    /// GETs a REST path on the instance, minting a new token once if the session expired.
    async fn get_json<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        soql: Option<&str>,
        label: &str,
        tally: &AtomicU64,
    ) -> Result<T, SourceError> {
        let mut reminted = false;
        loop {
            let session = self.session().await?;
            if !path.starts_with('/') {
                return Err(SourceError::Protocol {
                    source_name: SOURCE.to_owned(),
                    request: label.to_owned(),
                    detail: "`nextRecordsUrl` is not a path on the instance".to_owned(),
                });
            }
            let url = join(&session.instance_url, path);
            let attempt = || {
                self.calls.fetch_add(1, Ordering::Relaxed);
                tally.fetch_add(1, Ordering::Relaxed);
                self.get_once(&url, soql, &session.access_token, label)
            };
            match with_retry(&self.config.retry, attempt).await {
                Ok(value) => return Ok(value),
                Err(Failure::SessionExpired) if !reminted => {
                    reminted = true;
                    self.forget_session(&session.access_token);
                }
                Err(failure) => return Err(settle(failure, SOURCE, label)),
            }
        }
    }

    async fn get_once<T: DeserializeOwned + Send + 'static>(
        &self,
        url: &Url,
        soql: Option<&str>,
        token: &SecretString,
        label: &str,
    ) -> Result<T, Failure> {
        let mut request = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose_secret());
        if let Some(soql) = soql {
            request = request.query(&[("q", soql)]);
        }
        let attempts = self.config.retry.max_attempts;
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(SOURCE, url, attempts, e))?;
        if let Some(usage) = response
            .headers()
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            *self.api_usage.lock().unwrap_or_else(|p| p.into_inner()) = Some(usage);
        }
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(SOURCE, url, attempts, e))?;
        if status.is_success() {
            return super::decode(body).await.map_err(|detail| {
                Failure::Fatal(SourceError::Protocol {
                    source_name: SOURCE.to_owned(),
                    request: label.to_owned(),
                    detail,
                })
            });
        }
        let error = ApiError::from_body(&body);
        Err(classify(status, error, url, label, attempts))
    }

    async fn session(&self) -> Result<Arc<Session>, SourceError> {
        if let Some(session) = self.current_session() {
            return Ok(session);
        }
        let _minting = self.minting.lock().await;
        // Someone else may have minted while we waited.
        if let Some(session) = self.current_session() {
            return Ok(session);
        }
        let session = Arc::new(self.mint().await?);
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
        Ok(session)
    }

    fn current_session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the cached session if it still holds `stale`, so the next call mints a new one;
    /// a token another caller already replaced is left alone.
    fn forget_session(&self, stale: &Arc<SecretString>) {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.access_token, stale))
        {
            *session = None;
        }
    }

    async fn mint(&self) -> Result<Session, SourceError> {
        let form = self.token_form()?;
        let url = &self.token_url;
        let attempts = self.config.retry.max_attempts;
        let attempt = || async {
            let response = self
                .http
                .post(url.clone())
                .form(&form)
                .send()
                .await
                .map_err(|e| transport_failure(SOURCE, url, attempts, e))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_failure(SOURCE, url, attempts, e))?;
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Failure::Transient(SourceError::Upstream {
                    source_name: SOURCE.to_owned(),
                    path: path_of(url),
                    attempts,
                    detail: format!("HTTP {}", status.as_u16()),
                }));
            }
            if !status.is_success() {
                let reply: TokenError = serde_json::from_slice(&body).unwrap_or_default();
                return Err(Failure::Fatal(auth_error(reply, &self.audience())));
            }
            let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
                Failure::Fatal(SourceError::Protocol {
                    source_name: SOURCE.to_owned(),
                    request: "the token request".to_owned(),
                    detail: format!("malformed JSON ({e})"),
                })
            })?;
            let instance_url = Url::parse(&reply.instance_url).map_err(|_| {
                Failure::Fatal(SourceError::Protocol {
                    source_name: SOURCE.to_owned(),
                    request: "the token request".to_owned(),
                    detail: "`instance_url` is not a URL".to_owned(),
                })
            })?;
            Ok(Session {
                access_token: Arc::new(SecretString::from(reply.access_token)),
                instance_url,
            })
        };
        with_retry(&self.config.retry, attempt)
            .await
            .map_err(|f| settle(f, SOURCE, "the token request"))
    }

    fn token_form(&self) -> Result<Vec<(&'static str, String)>, SourceError> {
        let client_id = self.config.client_id.clone();
        match (&self.config.auth, &self.jwt_key) {
            (SalesforceAuth::ClientCredentials { secret }, _) => Ok(vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", client_id),
                ("client_secret", secret.expose_secret().to_owned()),
            ]),
            (SalesforceAuth::JwtBearer { username, .. }, Some(key)) => {
                let audience = self.audience();
                let claims = JwtClaims {
                    iss: &self.config.client_id,
                    sub: username,
                    aud: &audience,
                    // Salesforce accepts at most 3 minutes ahead.
                    exp: Utc::now().timestamp() + 180,
                };
                let assertion = jwt_assertion(&claims, key)?;
                Ok(vec![
                    ("grant_type", JWT_BEARER_GRANT.to_owned()),
                    ("assertion", assertion),
                ])
            }
            (SalesforceAuth::JwtBearer { .. }, None) => Err(SourceError::Settings {
                problem: "no private key for the JWT bearer flow".to_owned(),
                fix: "set SALESFORCE_PRIVATE_KEY_FILE".to_owned(),
            }),
        }
    }
}

/// Account Engagement accepts the Salesforce access token (with the `pardot_api` scope).
impl AccessToken for SalesforceClient {
    fn access_token(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<SecretString>, SourceError>> + Send + '_>> {
        Box::pin(async move { Ok(self.session().await?.access_token.clone()) })
    }

    fn invalidate(&self, stale: &Arc<SecretString>) {
        self.forget_session(stale);
    }
}

/// A SOQL string literal, quoted, for `value`. Backslash escapes keep a quote in the input
/// from ending the literal, so input like `' OR Username != '` stays a value and cannot widen
/// the query. Control characters other than the escapable ones are refused.
pub fn soql_string_literal(value: &str) -> Result<String, SourceError> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                return Err(SourceError::Settings {
                    problem: "the search text contains a control character".to_owned(),
                    fix: "type the username or email again as plain text".to_owned(),
                });
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// The fields of User the refresh reads.
pub const USER_SELECT: &str = "SELECT Id, Username, Email, Name, IsActive, UserType, ProfileId, \
     Profile.Name, Profile.UserLicense.Name, UserRoleId, SystemModstamp";

/// Names a query in errors by its object: `SOQL query on User`.
fn query_label(soql: &str) -> String {
    let upper = soql.to_ascii_uppercase();
    let object = upper
        .find(" FROM ")
        .and_then(|at| soql[at + 6..].split_whitespace().next())
        .unwrap_or("?");
    format!("SOQL query on {object}")
}

/// `path` may carry a query string (`nextRecordsUrl` does not, but be safe).
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    match path.split_once('?') {
        Some((p, q)) => {
            url.set_path(p);
            url.set_query(Some(q));
        }
        None => {
            url.set_path(path);
            url.set_query(None);
        }
    }
    url
}

fn classify(status: StatusCode, error: ApiError, url: &Url, label: &str, attempts: u32) -> Failure {
    let code = error.code.as_str();
    if status == StatusCode::UNAUTHORIZED || code == "INVALID_SESSION_ID" {
        return Failure::SessionExpired;
    }
    if code == "REQUEST_LIMIT_EXCEEDED" {
        return Failure::Fatal(SourceError::DailyLimit {
            source_name: SOURCE.to_owned(),
            message: error.message,
        });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Failure::Transient(SourceError::Upstream {
            source_name: SOURCE.to_owned(),
            path: path_of(url),
            attempts,
            detail: format!("HTTP {} {}", status.as_u16(), error.code)
                .trim()
                .to_owned(),
        });
    }
    Failure::Fatal(SourceError::Rejected {
        source_name: SOURCE.to_owned(),
        request: label.to_owned(),
        status: status.as_u16(),
        code: error.code,
        message: error.message,
    })
}

/// The JWT `aud` for a login URL: `https://test.salesforce.com` for sandboxes
/// (`test.salesforce.com` or `*.sandbox.my.salesforce.com`), else `https://login.salesforce.com`.
/// Salesforce wants one of these whatever host the assertion is posted to, My Domain included.
pub fn jwt_audience(login_url: &str) -> &'static str {
    let host = Url::parse(login_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com"
    } else {
        "https://login.salesforce.com"
    }
}

/// What to change for a token error, from Salesforce's `error` and `error_description`.
/// `audience` is the `aud` that was sent.
pub fn token_error_fix(error: &str, description: &str, audience: &str) -> String {
    let description = description.to_ascii_lowercase();
    let has = |text: &str| description.contains(text);
    if has("not supported on this domain") {
        return "the client credentials flow only works on the org's My Domain: set \
                SALESFORCE_LOGIN_URL to https://<domain>.my.salesforce.com (sandboxes: \
                https://<domain>--<sandbox>.sandbox.my.salesforce.com), as Setup > My Domain shows it"
            .to_owned();
    }
    if has("no client credentials user enabled") {
        return "set a Run As user for the client credentials flow: in the app's policies \
                (Setup > App Manager or External Client App Manager > the app > Edit Policies), \
                enable the Client Credentials Flow and pick the integration user as Run As"
            .to_owned();
    }
    if has("approved this consumer") {
        return "pre-authorize the user for the app: set Permitted Users to \"Admin approved users \
                are pre-authorized\" and add the integration user's profile or a permission set \
                that holds it (check that SALESFORCE_USERNAME is that user)"
            .to_owned();
    }
    if has("audience") {
        return format!(
            "the assertion's audience was {audience}; Salesforce wants https://login.salesforce.com \
             (production, developer orgs) or https://test.salesforce.com (sandboxes), or an \
             Experience Cloud site URL: fix SALESFORCE_LOGIN_URL or set SALESFORCE_AUDIENCE"
        );
    }
    if has("assertion") || has("certificate") {
        return "the assertion's signature was not accepted: upload to the app the certificate of \
                the key in SALESFORCE_PRIVATE_KEY_FILE (Use digital signatures), and check that \
                the certificate has not expired"
            .to_owned();
    }
    match error {
        "invalid_client_id" => "SALESFORCE_CLIENT_ID is not the consumer key of an app in this \
             org: copy the Consumer Key from the app's OAuth settings (and check \
             SALESFORCE_LOGIN_URL points at the right org)"
            .to_owned(),
        "invalid_client" => "SALESFORCE_CLIENT_SECRET does not match the app's Consumer Secret \
             (or the client id is wrong): copy both again from the app's OAuth settings"
            .to_owned(),
        "unsupported_grant_type" => "enable the OAuth flow in the app (client credentials, or JWT \
             bearer with a digital certificate)"
            .to_owned(),
        "invalid_grant" => "check that the integration user is pre-authorized for the app, that \
             the certificate on the app matches the private key, that SALESFORCE_LOGIN_URL is \
             the org's My Domain URL, and for client credentials that a Run As user is set"
            .to_owned(),
        _ => "check the app's OAuth settings and the integration user".to_owned(),
    }
}

fn auth_error(reply: TokenError, audience: &str) -> SourceError {
    let fix = token_error_fix(&reply.error, &reply.error_description, audience);
    SourceError::Auth {
        error: if reply.error.is_empty() {
            "unknown_error".to_owned()
        } else {
            reply.error
        },
        description: reply.error_description,
        fix,
    }
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// The JOSE header jsonwebtoken sent before, kept byte for byte: Salesforce reads `alg`.
const JWT_HEADER: &str = r#"{"typ":"JWT","alg":"RS256"}"#;

/// The connected app's private key, PEM in either form: PKCS#8 (`BEGIN PRIVATE KEY`, what
/// `openssl req -newkey`, `genpkey` and OpenSSL 3's `genrsa` write) or PKCS#1 (`BEGIN RSA
/// PRIVATE KEY`, what older `openssl genrsa` writes).
pub(crate) fn rsa_key_from_pem(pem: &str) -> Result<RsaKeyPair, SourceError> {
    let not_rsa = || SourceError::Settings {
        problem: "the Salesforce private key is not an RSA key in PEM format".to_owned(),
        fix: "point SALESFORCE_PRIVATE_KEY_FILE at the PEM private key whose \
              certificate is uploaded to the connected app"
            .to_owned(),
    };
    let parsed = match PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| not_rsa())? {
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        _ => return Err(not_rsa()),
    };
    // ring refuses RSA keys under 2048 bits, and anything not RSA inside PKCS#8.
    parsed.map_err(|rejected| SourceError::Settings {
        problem: format!("the Salesforce private key cannot sign RS256 ({rejected})"),
        fix: "use a 2048-bit (or larger) RSA private key in PEM format".to_owned(),
    })
}

/// The JWT bearer assertion: `header.claims.signature`, each part base64url without padding,
/// the signature RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over `header.claims`. Written here
/// rather than with jsonwebtoken, whose RS256 needs `rsa` 0.9 (RUSTSEC-2023-0071) or aws-lc-rs.
fn jwt_assertion(claims: &JwtClaims<'_>, key: &RsaKeyPair) -> Result<String, SourceError> {
    let cannot_sign = || SourceError::Settings {
        problem: "cannot sign the JWT bearer assertion with the private key".to_owned(),
        fix: "use a 2048-bit (or larger) RSA private key in PEM format".to_owned(),
    };
    let claims = serde_json::to_vec(claims).map_err(|_| cannot_sign())?;
    let mut message = URL_SAFE_NO_PAD.encode(JWT_HEADER);
    message.push('.');
    message.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .map_err(|_| cannot_sign())?;
    message.push('.');
    message.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(message)
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// First entry of Salesforce's error array `[{"message","errorCode"}]`.
#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default, rename = "errorCode")]
    code: String,
    #[serde(default)]
    message: String,
}

impl ApiError {
    fn from_body(body: &[u8]) -> Self {
        serde_json::from_slice::<Vec<ApiError>>(body)
            .ok()
            .and_then(|errors| errors.into_iter().next())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage<T> {
    done: bool,
    #[serde(default)]
    next_records_url: Option<String>,
    records: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct IdRecord {
    pub(super) id: SfId,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct UserRecord {
    id: SfId,
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    profile_id: Option<SfId>,
    #[serde(default)]
    profile: Option<ProfileRecord>,
    #[serde(default)]
    user_role_id: Option<SfId>,
    #[serde(default, deserialize_with = "salesforce_datetime")]
    pub(super) system_modstamp: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileRecord {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user_license: Option<NameRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameRecord {
    #[serde(default)]
    name: Option<String>,
}

impl From<UserRecord> for SfUser {
    fn from(r: UserRecord) -> Self {
        let (profile_name, user_license) = match r.profile {
            Some(p) => (p.name, p.user_license.and_then(|l| l.name)),
            None => (None, None),
        };
        SfUser {
            id: r.id,
            username: r.username,
            email: r.email.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
            is_active: r.is_active.unwrap_or(true),
            profile_id: r.profile_id,
            profile_name,
            user_license,
            role_id: r.user_role_id,
            user_type: r.user_type,
            modified_at: r.system_modstamp,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RoleRecord {
    id: SfId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parent_role_id: Option<SfId>,
    #[serde(default, deserialize_with = "salesforce_datetime")]
    pub(super) system_modstamp: Option<DateTime<Utc>>,
}

impl From<RoleRecord> for Role {
    fn from(r: RoleRecord) -> Self {
        Role {
            id: r.id,
            name: r.name.unwrap_or_default(),
            parent_role_id: r.parent_role_id,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GroupRecord {
    id: SfId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    developer_name: Option<String>,
    #[serde(default, rename = "Type")]
    group_type: Option<String>,
    #[serde(default)]
    related_id: Option<SfId>,
    #[serde(default, deserialize_with = "salesforce_datetime")]
    pub(super) system_modstamp: Option<DateTime<Utc>>,
}

impl From<GroupRecord> for PublicGroup {
    fn from(r: GroupRecord) -> Self {
        PublicGroup {
            id: r.id,
            name: r.name.unwrap_or_default(),
            developer_name: r.developer_name,
            group_type: r.group_type.unwrap_or_else(|| "Regular".to_owned()),
            related_id: r.related_id,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GroupMemberRecord {
    pub(super) group_id: SfId,
    pub(super) user_or_group_id: SfId,
    #[serde(default, deserialize_with = "salesforce_datetime")]
    pub(super) system_modstamp: Option<DateTime<Utc>>,
}

/// Salesforce writes `2024-01-15T12:00:00.000+0000` (no colon in the offset), not RFC 3339.
fn salesforce_datetime<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    let Some(text) = text else { return Ok(None) };
    DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(&text))
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| serde::de::Error::custom(format!("invalid date-time {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test-only key in both PEM forms: PKCS#8, and PKCS#1 (`openssl rsa -traditional`).
    const PKCS8_KEY: &str = include_str!("../../tests/fixtures/test-only-rsa-key.pem");
    const PKCS1_KEY: &str = include_str!("../../tests/fixtures/test-only-rsa-key-pkcs1.pem");

    fn claims() -> JwtClaims<'static> {
        JwtClaims {
            iss: "3MVG9client",
            sub: "integration@acme.com",
            aud: "https://login.salesforce.com",
            exp: 1_800_000_000,
        }
    }

    fn decoded_json(part: &str) -> serde_json::Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url without padding");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn the_assertion_signature_verifies_with_the_public_key_for_both_pem_forms() {
        let pkcs8 = rsa_key_from_pem(PKCS8_KEY).expect("PKCS#8 PEM is read");
        let pkcs1 = rsa_key_from_pem(PKCS1_KEY).expect("PKCS#1 PEM is read");
        assert_eq!(
            pkcs8.public().as_ref(),
            pkcs1.public().as_ref(),
            "both files hold the same key"
        );
        let public_key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            pkcs8.public().as_ref().to_vec(),
        );
        for (form, key) in [("PKCS#8", &pkcs8), ("PKCS#1", &pkcs1)] {
            let assertion = jwt_assertion(&claims(), key).expect("signed");
            let (message, signature) = assertion.rsplit_once('.').expect("three parts");
            let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
            assert_eq!(signature.len(), 256, "{form}: a 2048-bit RSA signature");
            assert!(
                public_key.verify(message.as_bytes(), &signature).is_ok(),
                "{form}: the signature verifies"
            );
            let tampered = message.replace('.', ".e");
            assert!(
                public_key.verify(tampered.as_bytes(), &signature).is_err(),
                "{form}: a changed message does not verify"
            );
        }
    }

    #[test]
    fn the_assertion_header_and_claims_are_what_salesforce_expects() {
        let key = rsa_key_from_pem(PKCS8_KEY).expect("PKCS#8 PEM is read");
        let assertion = jwt_assertion(&claims(), &key).expect("signed");
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3, "header.claims.signature");
        assert!(
            parts.iter().all(|p| !p.contains('=')),
            "base64url without padding"
        );
        assert_eq!(
            decoded_json(parts[0]),
            serde_json::json!({"typ": "JWT", "alg": "RS256"})
        );
        assert_eq!(
            decoded_json(parts[1]),
            serde_json::json!({
                "iss": "3MVG9client",
                "sub": "integration@acme.com",
                "aud": "https://login.salesforce.com",
                "exp": 1_800_000_000,
            })
        );
    }

    #[test]
    fn a_private_key_that_is_not_rsa_in_pem_is_refused_at_start() {
        let problem = |pem: &str| match rsa_key_from_pem(pem) {
            Err(SourceError::Settings { problem, .. }) => problem,
            Err(other) => panic!("a settings error, not {other:?}"),
            Ok(_) => panic!("{pem:?} was accepted"),
        };
        let not_rsa = "the Salesforce private key is not an RSA key in PEM format";
        assert_eq!(problem("not a key"), not_rsa);
        assert_eq!(
            problem(&PKCS8_KEY.replace("PRIVATE KEY", "CERTIFICATE")),
            not_rsa
        );
        // A PKCS#8 envelope whose body is not an RSA key.
        let broken = PKCS8_KEY.replacen("MII", "MIH", 1);
        assert!(
            problem(&broken).starts_with("the Salesforce private key"),
            "{}",
            problem(&broken)
        );
    }

    #[test]
    fn soql_literal_escapes_quotes_so_hostile_input_stays_one_value() {
        assert_eq!(
            soql_string_literal("' OR Username != '").unwrap(),
            r"'\' OR Username != \''"
        );
        assert_eq!(soql_string_literal(r"a\'b").unwrap(), r"'a\\\'b'");
        assert_eq!(
            soql_string_literal("o'brien@acme.com").unwrap(),
            r"'o\'brien@acme.com'"
        );
        assert_eq!(soql_string_literal("x\ny").unwrap(), r"'x\ny'");
    }

    #[test]
    fn soql_literal_refuses_other_control_characters() {
        assert!(matches!(
            soql_string_literal("a\u{0}b"),
            Err(SourceError::Settings { .. })
        ));
    }

    #[test]
    fn salesforce_timestamps_without_offset_colon_are_read() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "salesforce_datetime")]
            t: Option<DateTime<Utc>>,
        }
        let t: T = serde_json::from_str(r#"{"t":"2024-01-15T12:00:00.000+0000"}"#).unwrap();
        assert_eq!(t.t.unwrap().to_rfc3339(), "2024-01-15T12:00:00+00:00");
    }

    #[test]
    fn the_jwt_audience_is_test_for_sandbox_login_urls_and_login_otherwise() {
        for (login_url, audience) in [
            ("https://test.salesforce.com", "https://test.salesforce.com"),
            (
                "https://acme--uat.sandbox.my.salesforce.com/",
                "https://test.salesforce.com",
            ),
            (
                "https://ACME--UAT.SANDBOX.MY.SALESFORCE.COM",
                "https://test.salesforce.com",
            ),
            (
                "https://login.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://acme.my.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://acme-dev-ed.develop.my.salesforce.com",
                "https://login.salesforce.com",
            ),
            ("not a url", "https://login.salesforce.com"),
        ] {
            assert_eq!(jwt_audience(login_url), audience, "{login_url}");
        }
    }

    #[test]
    fn queries_are_named_by_their_object_in_errors() {
        assert_eq!(
            query_label("SELECT Id FROM User WHERE Id = 'x'"),
            "SOQL query on User"
        );
    }
}
