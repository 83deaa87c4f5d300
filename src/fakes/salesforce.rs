//! A fake Salesforce org: OAuth token endpoint, SOQL query with `nextRecordsUrl` paging, the
//! Tooling API's PardotTenant, `Sforce-Limit-Info`, and Salesforce's error replies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};

use super::{Faults, Injection, Server, faulted, json_response, lock};
use crate::domain::{OrgSnapshot, SfId};

/// Who may get a token.
#[derive(Debug, Clone)]
pub struct FakeSalesforceSettings {
    pub client_id: String,
    /// Accepted with the client credentials flow.
    pub client_secret: String,
    /// Accepted as `sub` of a JWT bearer assertion.
    pub username: String,
    /// Records per query batch (Salesforce: up to 2,000).
    pub batch_size: usize,
    /// Daily allowance reported in `Sforce-Limit-Info`; past it, `REQUEST_LIMIT_EXCEEDED`.
    pub api_limit: u64,
    /// The `aud` a JWT bearer assertion must carry (Salesforce: login or test.salesforce.com,
    /// whatever host receives it).
    pub audience: String,
    /// Which Salesforce host this fake plays: client credentials only work on a My Domain.
    pub host: TokenHost,
    /// The public key of the certificate on the connected app ([`rsa_public_key`]): a JWT
    /// bearer assertion must be signed RS256 with its private key, or it is refused as
    /// `invalid assertion`. `None` checks the claims only.
    pub jwt_public_key: Option<Vec<u8>>,
}

/// The host a token request reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHost {
    /// `https://<domain>.my.salesforce.com`: both flows work.
    MyDomain,
    /// `login.salesforce.com` or `test.salesforce.com`: client credentials are refused.
    Login,
}

/// Token errors as Salesforce sends them (`error`, `error_description`), for
/// [`FakeSalesforce::fail_tokens_with`].
pub mod token_errors {
    pub const NOT_MY_DOMAIN: (&str, &str) =
        ("invalid_grant", "request not supported on this domain");
    pub const NO_RUN_AS_USER: (&str, &str) =
        ("invalid_grant", "no client credentials user enabled");
    pub const NOT_APPROVED: (&str, &str) = ("invalid_grant", "user hasn't approved this consumer");
    pub const UNKNOWN_CLIENT_ID: (&str, &str) = ("invalid_client_id", "client identifier invalid");
    pub const BAD_CLIENT_SECRET: (&str, &str) = ("invalid_client", "invalid client credentials");
    pub const BAD_AUDIENCE: (&str, &str) = ("invalid_grant", "audience is invalid");
    pub const BAD_ASSERTION: (&str, &str) = ("invalid_grant", "invalid assertion");
}

impl Default for FakeSalesforceSettings {
    fn default() -> Self {
        FakeSalesforceSettings {
            client_id: "fake-client-id".to_owned(),
            client_secret: "fake-client-secret".to_owned(),
            username: "integration@acme.com".to_owned(),
            batch_size: 2000,
            api_limit: 15_000,
            audience: "https://login.salesforce.com".to_owned(),
            host: TokenHost::MyDomain,
            jwt_public_key: None,
        }
    }
}

/// Requests the fake counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceEndpoint {
    Token,
    /// `query` and its `nextRecordsUrl` pages.
    Query,
    ToolingQuery,
}

pub struct FakeSalesforce {
    state: Arc<SfState>,
    server: Server,
}

struct SfState {
    settings: FakeSalesforceSettings,
    url: Mutex<String>,
    org: OrgSnapshot,
    batch_size: AtomicUsize,
    tokens: Mutex<HashSet<String>>,
    minted: AtomicU64,
    /// Data requests the current tokens still serve before they expire.
    expire_after: Mutex<Option<u64>>,
    api_used: AtomicU64,
    cursors: Mutex<Vec<Arc<Cursor>>>,
    faults: Faults,
    /// Every token request gets this `(error, error_description)` while set.
    token_error: Mutex<Option<(String, String)>>,
    token_requests: AtomicU64,
    query_requests: AtomicU64,
    tooling_requests: AtomicU64,
}

struct Cursor {
    object: String,
    records: Vec<Value>,
    /// `SELECT COUNT() ...`: only `totalSize` is sent.
    count_only: bool,
}

impl FakeSalesforce {
    /// Serves `org`'s Salesforce half (and its business units as PardotTenant records).
    pub async fn start(
        org: &OrgSnapshot,
        settings: FakeSalesforceSettings,
    ) -> std::io::Result<Self> {
        let state = Arc::new(SfState {
            batch_size: AtomicUsize::new(settings.batch_size.max(1)),
            settings,
            url: Mutex::new(String::new()),
            org: org.clone(),
            tokens: Mutex::new(HashSet::new()),
            minted: AtomicU64::new(0),
            expire_after: Mutex::new(None),
            api_used: AtomicU64::new(0),
            cursors: Mutex::new(Vec::new()),
            faults: Faults::default(),
            token_error: Mutex::new(None),
            token_requests: AtomicU64::new(0),
            query_requests: AtomicU64::new(0),
            tooling_requests: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data/", get(versions))
            .route("/services/data/{version}/query", get(query))
            .route("/services/data/{version}/query/{locator}", get(query_more))
            .route("/services/data/{version}/tooling/query", get(tooling_query))
            .with_state(state.clone());
        let server = Server::start(router).await?;
        *lock(&state.url) = server.url.clone();
        Ok(FakeSalesforce { state, server })
    }

    /// Login URL and instance URL alike.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    pub fn settings(&self) -> &FakeSalesforceSettings {
        &self.state.settings
    }

    pub fn set_batch_size(&self, records: usize) {
        self.state
            .batch_size
            .store(records.max(1), Ordering::SeqCst);
    }

    /// The tokens issued so far serve `requests` more data requests, then get 401
    /// `INVALID_SESSION_ID`; tokens minted afterwards work.
    pub fn expire_tokens_after(&self, requests: u64) {
        *lock(&self.state.expire_after) = Some(requests);
    }

    pub fn inject(&self, injection: Injection) {
        self.state.faults.add(injection);
    }

    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// Token requests answer HTTP 400 `{"error", "error_description"}` (see [`token_errors`])
    /// until [`clear_token_error`](Self::clear_token_error).
    pub fn fail_tokens_with(&self, (error, description): (&str, &str)) {
        *lock(&self.state.token_error) = Some((error.to_owned(), description.to_owned()));
    }

    pub fn clear_token_error(&self) {
        *lock(&self.state.token_error) = None;
    }

    pub fn requests(&self, endpoint: SalesforceEndpoint) -> u64 {
        let counter = match endpoint {
            SalesforceEndpoint::Token => &self.state.token_requests,
            SalesforceEndpoint::Query => &self.state.query_requests,
            SalesforceEndpoint::ToolingQuery => &self.state.tooling_requests,
        };
        counter.load(Ordering::SeqCst)
    }

    /// Tokens issued so far.
    pub fn tokens_minted(&self) -> u64 {
        self.state.minted.load(Ordering::SeqCst)
    }
}

async fn token(
    State(state): State<Arc<SfState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let settings = &state.settings;
    let injected = lock(&state.token_error).clone();
    let outcome = match field("grant_type") {
        _ if injected.is_some() => Ok(()),
        "client_credentials" if settings.host == TokenHost::Login => {
            Err(token_errors::NOT_MY_DOMAIN)
        }
        "client_credentials" => {
            if field("client_id") != settings.client_id
                || field("client_secret") != settings.client_secret
            {
                Err(("invalid_client", "invalid client credentials"))
            } else {
                Ok(())
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            check_assertion(&state, field("assertion"))
        }
        _ => Err(("unsupported_grant_type", "grant type not supported")),
    };
    let outcome = match &injected {
        Some((error, description)) => Err((error.as_str(), description.as_str())),
        None => outcome,
    };
    if let Err((error, description)) = outcome {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response();
    }
    let n = state.minted.fetch_add(1, Ordering::SeqCst) + 1;
    let access_token = format!("00DFAKE!token-{n}");
    lock(&state.tokens).insert(access_token.clone());
    let url = lock(&state.url).clone();
    Json(json!({
        "access_token": access_token,
        "instance_url": url,
        "id": format!("{url}/id/00DAk000000FAKE/005Ak000000FAKE"),
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        "signature": "fake",
    }))
    .into_response()
}

/// The public half of an RSA private key in PEM (PKCS#8 or PKCS#1): what the certificate
/// uploaded to the connected app holds, for [`FakeSalesforceSettings::jwt_public_key`].
/// `None` when the PEM is not an RSA key the client could sign with.
pub fn rsa_public_key(private_key_pem: &str) -> Option<Vec<u8>> {
    let key = crate::sources::salesforce::rsa_key_from_pem(private_key_pem).ok()?;
    Some(key.public().as_ref().to_vec())
}

/// Checks a JWT bearer assertion: its claims, and with [`FakeSalesforceSettings::jwt_public_key`]
/// its RS256 signature.
fn check_assertion(state: &SfState, assertion: &str) -> Result<(), (&'static str, &'static str)> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        sub: String,
        aud: String,
        exp: i64,
    }
    // `header.claims.signature`, each base64url without padding; the claims are the middle.
    let [header, claims, signature] = assertion.split('.').collect::<Vec<_>>()[..] else {
        return Err(token_errors::BAD_ASSERTION);
    };
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .ok()
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        .ok_or(token_errors::BAD_ASSERTION)?;
    if let Some(public_key) = &state.settings.jwt_public_key {
        let rs256 = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
            .is_some_and(|header| header["alg"] == "RS256");
        // The signature covers `header.claims` as sent.
        let signed = &assertion[..assertion.len() - signature.len() - 1];
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
        let verified = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
            .verify(signed.as_bytes(), &signature)
            .is_ok();
        if !(rs256 && verified) {
            return Err(token_errors::BAD_ASSERTION);
        }
    }
    if claims.iss != state.settings.client_id {
        return Err(token_errors::UNKNOWN_CLIENT_ID);
    }
    if claims.aud.trim_end_matches('/') != state.settings.audience {
        return Err(token_errors::BAD_AUDIENCE);
    }
    if claims.sub != state.settings.username {
        return Err(token_errors::NOT_APPROVED);
    }
    if claims.exp < chrono::Utc::now().timestamp() {
        return Err(("invalid_grant", "expired authorization code"));
    }
    Ok(())
}

/// `GET /services/data/`: the REST versions the org serves (Salesforce lists every one since
/// 20.0; the fake, 31.0 to 62.0). Needs no token, as on Salesforce.
async fn versions(State(state): State<Arc<SfState>>) -> Response {
    let versions: Vec<Value> = (31..=62)
        .map(|v| {
            json!({
                "label": format!("Release {v}"),
                "url": format!("/services/data/v{v}.0"),
                "version": format!("{v}.0"),
            })
        })
        .collect();
    with_usage(&state, Json(versions).into_response())
}

#[derive(serde::Deserialize)]
struct QueryParams {
    q: Option<String>,
}

async fn query(
    State(state): State<Arc<SfState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Response {
    state.query_requests.fetch_add(1, Ordering::SeqCst);
    start_query(
        &state,
        &version,
        &headers,
        params.q.as_deref().unwrap_or_default(),
        false,
    )
    .await
}

async fn tooling_query(
    State(state): State<Arc<SfState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Response {
    state.tooling_requests.fetch_add(1, Ordering::SeqCst);
    start_query(
        &state,
        &version,
        &headers,
        params.q.as_deref().unwrap_or_default(),
        true,
    )
    .await
}

async fn start_query(
    state: &Arc<SfState>,
    version: &str,
    headers: &HeaderMap,
    soql: &str,
    tooling: bool,
) -> Response {
    if let Some(refused) = admit(state, headers) {
        return refused;
    }
    let cursor = match run_soql(state, soql, tooling) {
        Ok(cursor) => Arc::new(cursor),
        Err(response) => return with_usage(state, *response),
    };
    if cursor.count_only {
        let body = json!({ "totalSize": cursor.records.len(), "done": true, "records": [] });
        let response = match state.faults.take(&cursor.object, 1) {
            Some(fault) => faulted(fault, || Json(body).into_response()).await,
            None => Json(body).into_response(),
        };
        return with_usage(state, response);
    }
    let id = {
        let mut cursors = lock(&state.cursors);
        cursors.push(cursor.clone());
        cursors.len() - 1
    };
    serve_page(state, version, id, cursor, 0).await
}

async fn query_more(
    State(state): State<Arc<SfState>>,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    state.query_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(refused) = admit(&state, &headers) {
        return refused;
    }
    let parsed = locator
        .strip_prefix("01gFAKE")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(id, offset)| Some((id.parse::<usize>().ok()?, offset.parse::<usize>().ok()?)));
    let found =
        parsed.and_then(|(id, offset)| Some((id, lock(&state.cursors).get(id)?.clone(), offset)));
    match found {
        Some((id, cursor, offset)) => serve_page(&state, &version, id, cursor, offset).await,
        None => with_usage(
            &state,
            sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY_LOCATOR",
                "invalid query locator",
            ),
        ),
    }
}

/// Checks the token and the daily allowance; `Some` is the refusal.
fn admit(state: &SfState, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut tokens = lock(&state.tokens);
    let mut expire_after = lock(&state.expire_after);
    if tokens.contains(token) && *expire_after == Some(0) {
        tokens.clear();
        *expire_after = None;
    }
    if !tokens.contains(token) {
        return Some(with_usage(
            state,
            sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ),
        ));
    }
    if let Some(left) = expire_after.as_mut() {
        *left -= 1;
    }
    let used = state.api_used.fetch_add(1, Ordering::SeqCst) + 1;
    if used > state.settings.api_limit {
        return Some(with_usage(
            state,
            sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ),
        ));
    }
    None
}

async fn serve_page(
    state: &SfState,
    version: &str,
    id: usize,
    cursor: Arc<Cursor>,
    offset: usize,
) -> Response {
    let batch = state.batch_size.load(Ordering::SeqCst);
    let page = offset / batch + 1;
    let normal = || {
        let end = (offset + batch).min(cursor.records.len());
        let records = cursor.records.get(offset..end).unwrap_or_default();
        let done = end >= cursor.records.len();
        let mut body = json!({
            "totalSize": cursor.records.len(),
            "done": done,
            "records": records,
        });
        if !done {
            body["nextRecordsUrl"] =
                json!(format!("/services/data/{version}/query/01gFAKE{id}-{end}"));
        }
        Json(body).into_response()
    };
    let response = match state.faults.take(&cursor.object, page) {
        Some(fault) => faulted(fault, normal).await,
        None => normal(),
    };
    with_usage(state, response)
}

fn with_usage(state: &SfState, mut response: Response) -> Response {
    let used = state.api_used.load(Ordering::SeqCst);
    let value = format!("api-usage={used}/{}", state.settings.api_limit);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("Sforce-Limit-Info", value);
    }
    response
}

fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!([{ "message": message, "errorCode": code }]).to_string(),
    )
}

/// Runs the few query shapes the client sends.
fn run_soql(state: &SfState, soql: &str, tooling: bool) -> Result<Cursor, Box<Response>> {
    let malformed = |why: &str| Box::new(sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", why));
    let parsed = parse_soql(soql).map_err(|why| malformed(&why))?;
    let org = &state.org;
    let sf = &org.salesforce;
    let records: Vec<Value> = match (parsed.object.as_str(), tooling) {
        ("Organization", false) => vec![record("Organization", sf.org_id.map(|id| id.to_18()).unwrap_or_else(|| "00DAk000000FAKEMA0".to_owned()), json!({}))],
        ("User", false) => sf
            .users
            .iter()
            .filter(|u| match &parsed.condition {
                None => true,
                Some((field, value)) => match field.as_str() {
                    "Id" => SfId::parse(value).is_ok_and(|id| id == u.id),
                    // SOQL compares text case-insensitively.
                    "Username" => u.username.eq_ignore_ascii_case(value),
                    "Email" => u.email.eq_ignore_ascii_case(value),
                    // A user with no type in the snapshot is an internal one (`Standard`).
                    "UserType" => u
                        .user_type
                        .as_deref()
                        .unwrap_or(crate::domain::INTERNAL_USER_TYPE)
                        .eq_ignore_ascii_case(value),
                    _ => false,
                },
            })
            .map(|u| {
                let profile = match u.profile_id {
                    Some(_) => json!({
                        "attributes": { "type": "Profile" },
                        "Name": u.profile_name,
                        "UserLicense": u.user_license.as_ref().map(|l| json!({
                            "attributes": { "type": "UserLicense" },
                            "Name": l,
                        })),
                    }),
                    None => Value::Null,
                };
                record("User", u.id.to_18(), json!({
                    "Username": u.username,
                    "Email": u.email,
                    "Name": u.name,
                    "IsActive": u.is_active,
                    "UserType": u.user_type.as_deref().unwrap_or(crate::domain::INTERNAL_USER_TYPE),
                    "ProfileId": u.profile_id.map(|id| id.to_18()),
                    "Profile": profile,
                    "UserRoleId": u.role_id.map(|id| id.to_18()),
                    "SystemModstamp": u.modified_at.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()),
                }))
            })
            .collect(),
        ("UserRole", false) => sf
            .roles
            .iter()
            .map(|r| record("UserRole", r.id.to_18(), json!({
                "Name": r.name,
                "ParentRoleId": r.parent_role_id.map(|id| id.to_18()),
            })))
            .collect(),
        ("Group", false) => sf
            .groups
            .iter()
            .map(|g| record("Group", g.id.to_18(), json!({
                "Name": g.name,
                "DeveloperName": g.developer_name,
                "Type": g.group_type,
                "RelatedId": g.related_id.map(|id| id.to_18()),
            })))
            .collect(),
        ("GroupMember", false) => sf
            .group_members
            .iter()
            .filter(|m| match &parsed.condition {
                None => true,
                Some((field, value)) => {
                    field == "UserOrGroupId" && SfId::parse(value).is_ok_and(|id| id == m.member_id)
                }
            })
            .map(|m| json!({
                "attributes": { "type": "GroupMember" },
                "GroupId": m.group_id.to_18(),
                "UserOrGroupId": m.member_id.to_18(),
            }))
            .collect(),
        ("Profile", false) => {
            let mut seen = HashSet::new();
            sf.users
                .iter()
                .filter_map(|u| Some((u.profile_id?, u.profile_name.clone()?)))
                .filter(|(id, _)| seen.insert(*id))
                .map(|(id, name)| record("Profile", id.to_18(), json!({ "Name": name })))
                .collect()
        }
        ("PardotTenant", true) => org
            .business_units
            .iter()
            .map(|bu| record("PardotTenant", bu.id.to_18(), json!({
                "PardotTenantName": bu.name,
                "CreationStatus": "Completed",
            })))
            .collect(),
        (object, _) => {
            return Err(Box::new(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                &format!("sObject type '{object}' is not supported."),
            )));
        }
    };
    let mut records = records;
    if let Some(limit) = parsed.limit {
        records.truncate(limit);
    }
    Ok(Cursor {
        object: parsed.object,
        records,
        count_only: parsed.count_only,
    })
}

fn record(object: &str, id: String, fields: Value) -> Value {
    let mut record = json!({
        "attributes": { "type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{id}") },
        "Id": id,
    });
    if let (Some(record), Value::Object(fields)) = (record.as_object_mut(), fields) {
        record.extend(fields);
    }
    record
}

#[derive(Default)]
struct ParsedSoql {
    object: String,
    /// `Field = 'value'`, unescaped.
    condition: Option<(String, String)>,
    /// `LIMIT n`.
    limit: Option<usize>,
    /// `SELECT COUNT() FROM ...`.
    count_only: bool,
}

/// Just enough SOQL: `SELECT ... FROM Object [WHERE Field = 'literal'] [LIMIT n]`, and
/// `SELECT COUNT() FROM Object`. A `WHERE` on Group (the type filter) is accepted and ignored.
fn parse_soql(soql: &str) -> Result<ParsedSoql, String> {
    let (soql, limit) = match soql.trim_end().rsplit_once(" LIMIT ") {
        Some((head, n)) => (
            head,
            Some(
                n.trim()
                    .parse::<usize>()
                    .map_err(|_| "LIMIT takes a number")?,
            ),
        ),
        None => (soql, None),
    };
    let upper = soql.to_ascii_uppercase();
    let from = upper.find(" FROM ").ok_or("no FROM clause")?;
    let count_only = upper["SELECT".len().min(from)..from].trim() == "COUNT()";
    let rest = soql[from + 6..].trim_start();
    let object_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let object = rest[..object_end].to_owned();
    let rest = rest[object_end..].trim();
    if rest.is_empty() {
        return Ok(ParsedSoql {
            object,
            limit,
            count_only,
            ..ParsedSoql::default()
        });
    }
    let Some(clause) = rest
        .strip_prefix("WHERE ")
        .or_else(|| rest.strip_prefix("where "))
    else {
        return Err(format!("unexpected {rest:?}"));
    };
    if object == "Group" {
        return Ok(ParsedSoql {
            object,
            limit,
            count_only,
            ..ParsedSoql::default()
        });
    }
    let (field, literal) = clause.split_once('=').ok_or("expected Field = 'value'")?;
    let (value, tail) = parse_literal(literal.trim_start())?;
    if !tail.trim().is_empty() {
        return Err(format!(
            "unexpected token after the literal: {:?}",
            tail.trim()
        ));
    }
    Ok(ParsedSoql {
        object,
        condition: Some((field.trim().to_owned(), value)),
        limit,
        count_only,
    })
}

/// A quoted SOQL string literal with backslash escapes; returns it and what follows.
fn parse_literal(text: &str) -> Result<(String, &str), String> {
    let body = text.strip_prefix('\'').ok_or("expected a quoted string")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' => return Ok((value, &body[at + 1..])),
            '\\' => {
                let (_, escaped) = chars.next().ok_or("dangling backslash")?;
                value.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '\\' | '\'' | '"' | '_' | '%' => escaped,
                    other => return Err(format!("invalid escape \\{other}")),
                });
            }
            c => value.push(c),
        }
    }
    Err("unterminated string literal".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_literal_parses_as_one_value_with_nothing_after() {
        let parsed =
            parse_soql(r"SELECT Id FROM User WHERE Username = '\' OR Username != \''").unwrap();
        assert_eq!(parsed.object, "User");
        assert_eq!(
            parsed.condition,
            Some(("Username".to_owned(), "' OR Username != '".to_owned()))
        );
    }

    #[test]
    fn unescaped_quote_leaves_a_tail_and_is_malformed() {
        assert!(parse_soql("SELECT Id FROM User WHERE Username = '' OR Username != ''").is_err());
    }
}
