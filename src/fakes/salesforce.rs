//! A fake Salesforce org: OAuth token endpoint, SOQL query with `nextRecordsUrl` paging, the
//! Tooling API's PardotTenant, `Sforce-Limit-Info`, and Salesforce's error replies.
//!
//! The org is mutable state with a `SystemModstamp` per record and a fake clock, so that tests
//! can change it between refreshes and read the changes back through
//! `SystemModstamp >= <datetime>`. A query keeps the indexes of the matching records (the
//! membership rows themselves, which can be deleted) and serialises a page when it is asked
//! for, so that a million-user org is served without a JSON value per record up front.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use serde_json::{Value, json};

use super::soql::{self, Condition, Soql};
use super::{Faults, Injection, Server, faulted, json_response, lock};
use crate::domain::{GroupMember, OrgSnapshot, PublicGroup, Role, SalesforceOrg, SfId, SfUser};

/// Salesforce answers a request whose URI is longer than this (bytes) with HTTP 414.
pub const MAX_URI_BYTES: usize = 16_384;
/// Rows an aggregate query may return: it has no `nextRecordsUrl`.
pub const MAX_AGGREGATE_ROWS: usize = 2_000;
/// Query cursors kept open; opening one more releases the oldest (Salesforce keeps 10 per
/// user; the fake keeps more so that tests running many queries at once keep theirs).
const OPEN_CURSORS: usize = 100;

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
    data: RwLock<OrgData>,
    batch_size: AtomicUsize,
    tokens: Mutex<HashSet<String>>,
    minted: AtomicU64,
    /// Data requests the current tokens still serve before they expire.
    expire_after: Mutex<Option<u64>>,
    api_used: AtomicU64,
    cursors: Mutex<Cursors>,
    faults: Faults,
    /// Every token request gets this `(error, error_description)` while set.
    token_error: Mutex<Option<(String, String)>>,
    token_requests: AtomicU64,
    query_requests: AtomicU64,
    tooling_requests: AtomicU64,
}

/// Open query cursors, oldest first, by locator number.
#[derive(Default)]
struct Cursors {
    next: usize,
    open: VecDeque<(usize, Arc<Cursor>)>,
}

struct Cursor {
    object: &'static str,
    items: Items,
    /// `SELECT COUNT() ...`: only `totalSize` is sent.
    count_only: bool,
}

/// The records of a query: indexes into the org (users, groups and roles are never deleted),
/// the membership rows themselves, or small results built whole.
enum Items {
    Users(Vec<u32>),
    Groups(Vec<u32>),
    Roles(Vec<u32>),
    Members(Vec<MemberRow>),
    Values(Vec<Value>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Users(v) | Items::Groups(v) | Items::Roles(v) => v.len(),
            Items::Members(v) => v.len(),
            Items::Values(v) => v.len(),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Items::Users(v) | Items::Groups(v) | Items::Roles(v) => v.truncate(n),
            Items::Members(v) => v.truncate(n),
            Items::Values(v) => v.truncate(n),
        }
    }

    /// Records `from..to` as Salesforce writes them.
    fn page<'a>(&self, data: &'a OrgData, from: usize, to: usize) -> PageRecords<'a> {
        let pick = |v: &[u32]| v.get(from..to).unwrap_or_default().to_vec();
        let values = match self {
            Items::Users(v) => {
                return PageRecords::Users(
                    pick(v)
                        .into_iter()
                        .map(|i| UserRow::of(&data.users[i as usize]))
                        .collect(),
                );
            }
            Items::Groups(v) => pick(v)
                .into_iter()
                .map(|i| group_json(&data.groups[i as usize], data.group_stamps[i as usize]))
                .collect(),
            Items::Roles(v) => pick(v)
                .into_iter()
                .map(|i| role_json(&data.roles[i as usize], data.role_stamps[i as usize]))
                .collect(),
            Items::Members(v) => v
                .get(from..to)
                .unwrap_or_default()
                .iter()
                .map(member_json)
                .collect(),
            Items::Values(v) => v.get(from..to).unwrap_or_default().to_vec(),
        };
        PageRecords::Values(values)
    }
}

/// The records of one page: `User` rows typed, the rest as JSON values. A full refresh of the
/// bench org reads 100,000 users in 50 pages; building each row as a `serde_json::Value` tree
/// (a `BTreeMap` per object), then serialising and dropping it, took most of the fakes' CPU
/// time, which on a benchmark machine is taken from the bot they stand beside: typed, the
/// fakes spend 0.6-0.7 s of CPU time on a full refresh of the bench org instead of 1.4 s.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum PageRecords<'a> {
    Users(Vec<UserRow<'a>>),
    Values(Vec<Value>),
}

/// One page of a query's answer, as the REST API sends it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage<'a> {
    total_size: usize,
    done: bool,
    records: PageRecords<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_records_url: Option<String>,
}

#[derive(serde::Serialize)]
struct RowAttributes {
    #[serde(rename = "type")]
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// A `User` row with every field the bot selects, the profile and its license as nested
/// objects.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct UserRow<'a> {
    #[serde(rename = "attributes")]
    attributes: RowAttributes,
    id: String,
    username: &'a str,
    email: &'a str,
    name: &'a str,
    is_active: bool,
    user_type: &'a str,
    profile_id: Option<String>,
    profile: Option<ProfileRow<'a>>,
    user_role_id: Option<String>,
    system_modstamp: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileRow<'a> {
    #[serde(rename = "attributes")]
    attributes: RowAttributes,
    name: Option<&'a str>,
    user_license: Option<LicenseRow<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct LicenseRow<'a> {
    #[serde(rename = "attributes")]
    attributes: RowAttributes,
    name: &'a str,
}

impl<'a> UserRow<'a> {
    fn of(u: &'a SfUser) -> Self {
        let id = u.id.to_18();
        let only = |object| RowAttributes { object, url: None };
        UserRow {
            attributes: RowAttributes {
                object: "User",
                url: Some(sobject_url("User", &id)),
            },
            id,
            username: &u.username,
            email: &u.email,
            name: &u.name,
            is_active: u.is_active,
            user_type: u
                .user_type
                .as_deref()
                .unwrap_or(crate::domain::INTERNAL_USER_TYPE),
            profile_id: u.profile_id.map(|id| id.to_18()),
            profile: u.profile_id.map(|_| ProfileRow {
                attributes: only("Profile"),
                name: u.profile_name.as_deref(),
                user_license: u.user_license.as_deref().map(|name| LicenseRow {
                    attributes: only("UserLicense"),
                    name,
                }),
            }),
            user_role_id: u.role_id.map(|id| id.to_18()),
            system_modstamp: u.modified_at.map(sf_time),
        }
    }
}

/// A `GroupMember` row with its `SystemModstamp`.
#[derive(Debug, Clone, Copy)]
struct MemberRow {
    group: SfId,
    member: SfId,
    stamp: DateTime<Utc>,
}

/// The org as the fake holds it: records, their stamps, indexes by id, and the fake clock.
struct OrgData {
    org_id: Option<SfId>,
    instance_url: String,
    lightning_url: Option<String>,
    users: Vec<SfUser>,
    user_index: FxHashMap<SfId, u32>,
    roles: Vec<Role>,
    role_stamps: Vec<DateTime<Utc>>,
    role_index: FxHashMap<SfId, u32>,
    groups: Vec<PublicGroup>,
    group_stamps: Vec<DateTime<Utc>>,
    group_index: FxHashMap<SfId, u32>,
    /// `None`: a deleted row.
    members: Vec<Option<MemberRow>>,
    /// Rows of each group, by position in `members`.
    members_by_group: FxHashMap<SfId, Vec<u32>>,
    /// Business units, as PardotTenant records.
    tenants: Vec<(SfId, String)>,
    clock: DateTime<Utc>,
}

/// A stamp before `fetched_at` that depends on the record only (up to about 400 days back):
/// the snapshot format has no `SystemModstamp` for roles, groups and memberships.
fn initial_stamp(fetched_at: DateTime<Utc>, key: impl Hash) -> DateTime<Utc> {
    let mut hasher = FxHasher::default();
    key.hash(&mut hasher);
    fetched_at - Duration::seconds(1 + (hasher.finish() % (400 * 86_400)) as i64)
}

fn index_of<T>(records: &[T], id: impl Fn(&T) -> SfId) -> FxHashMap<SfId, u32> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| (id(r), i as u32))
        .collect()
}

impl OrgData {
    fn new(org: OrgSnapshot) -> Self {
        let fetched_at = org.fetched_at;
        let sf = org.salesforce;
        let role_stamps = sf
            .roles
            .iter()
            .map(|r| initial_stamp(fetched_at, r.id))
            .collect();
        let group_stamps = sf
            .groups
            .iter()
            .map(|g| initial_stamp(fetched_at, g.id))
            .collect();
        let mut members_by_group: FxHashMap<SfId, Vec<u32>> = FxHashMap::default();
        let members: Vec<Option<MemberRow>> = sf
            .group_members
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                members_by_group
                    .entry(m.group_id)
                    .or_default()
                    .push(i as u32);
                Some(MemberRow {
                    group: m.group_id,
                    member: m.member_id,
                    stamp: initial_stamp(fetched_at, (m.group_id, m.member_id)),
                })
            })
            .collect();
        let latest_user = sf.users.iter().filter_map(|u| u.modified_at).max();
        let clock = match latest_user {
            Some(t) if t >= fetched_at => t + Duration::milliseconds(1),
            _ => fetched_at,
        };
        OrgData {
            org_id: sf.org_id,
            instance_url: sf.instance_url,
            lightning_url: sf.lightning_url,
            user_index: index_of(&sf.users, |u| u.id),
            users: sf.users,
            role_index: index_of(&sf.roles, |r| r.id),
            roles: sf.roles,
            role_stamps,
            group_index: index_of(&sf.groups, |g| g.id),
            groups: sf.groups,
            group_stamps,
            members,
            members_by_group,
            tenants: org
                .business_units
                .into_iter()
                .map(|bu| (bu.id, bu.name))
                .collect(),
            clock,
        }
    }

    /// The time to stamp a change with; the clock moves on by a millisecond.
    fn tick(&mut self) -> DateTime<Utc> {
        let now = self.clock;
        self.clock = now + Duration::milliseconds(1);
        now
    }
}

impl FakeSalesforce {
    /// Serves `org`'s Salesforce half (and its business units as PardotTenant records).
    pub async fn start(
        org: &OrgSnapshot,
        settings: FakeSalesforceSettings,
    ) -> std::io::Result<Self> {
        Self::start_owned(org.clone(), settings).await
    }

    /// [`start`](Self::start) without a copy of the org: for a million users, one copy is
    /// enough.
    pub async fn start_owned(
        org: OrgSnapshot,
        settings: FakeSalesforceSettings,
    ) -> std::io::Result<Self> {
        let state = Arc::new(SfState {
            batch_size: AtomicUsize::new(settings.batch_size.max(1)),
            settings,
            url: Mutex::new(String::new()),
            data: RwLock::new(OrgData::new(org)),
            tokens: Mutex::new(HashSet::new()),
            minted: AtomicU64::new(0),
            expire_after: Mutex::new(None),
            api_used: AtomicU64::new(0),
            cursors: Mutex::new(Cursors::default()),
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
            .layer(axum::middleware::from_fn(refuse_long_uris))
            // As Salesforce does: a reply is gzipped when the request accepts it. At the
            // fastest level: the fake stands for servers elsewhere, and on a benchmark's
            // machine its CPU time is taken from what it measures.
            .layer(
                tower_http::compression::CompressionLayer::new()
                    .quality(tower_http::CompressionLevel::Fastest)
                    .gzip(true)
                    .no_br()
                    .no_deflate()
                    .no_zstd(),
            )
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, OrgData> {
        self.state.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the fake clock: the next change is stamped `now`, the one after a millisecond
    /// later, and so on.
    pub fn set_clock(&self, now: DateTime<Utc>) {
        self.write().clock = now;
    }

    /// The time the next change will be stamped with.
    pub fn clock(&self) -> DateTime<Utc> {
        read(&self.state).clock
    }

    /// Inserts or replaces (by id) a user; stamps `modified_at` (its `SystemModstamp`).
    pub fn upsert_user(&self, mut user: SfUser) {
        let mut data = self.write();
        user.modified_at = Some(data.tick());
        match data.user_index.get(&user.id) {
            Some(&i) => data.users[i as usize] = user,
            None => {
                let i = data.users.len() as u32;
                data.user_index.insert(user.id, i);
                data.users.push(user);
            }
        }
    }

    /// Inserts or replaces (by id) a group (public group, queue or role group); stamps it.
    pub fn upsert_group(&self, group: PublicGroup) {
        let mut data = self.write();
        let stamp = data.tick();
        match data.group_index.get(&group.id) {
            Some(&i) => {
                data.groups[i as usize] = group;
                data.group_stamps[i as usize] = stamp;
            }
            None => {
                let i = data.groups.len() as u32;
                data.group_index.insert(group.id, i);
                data.groups.push(group);
                data.group_stamps.push(stamp);
            }
        }
    }

    /// Inserts or replaces (by id) a role; stamps it.
    pub fn upsert_role(&self, role: Role) {
        let mut data = self.write();
        let stamp = data.tick();
        match data.role_index.get(&role.id) {
            Some(&i) => {
                data.roles[i as usize] = role;
                data.role_stamps[i as usize] = stamp;
            }
            None => {
                let i = data.roles.len() as u32;
                data.role_index.insert(role.id, i);
                data.roles.push(role);
                data.role_stamps.push(stamp);
            }
        }
    }

    /// Adds a membership row (stamped); no-op if present.
    pub fn add_member(&self, group: SfId, member: SfId) {
        let mut data = self.write();
        let data = &mut *data;
        let rows = data.members_by_group.entry(group).or_default();
        let present = rows
            .iter()
            .any(|&r| data.members[r as usize].is_some_and(|m| m.member == member));
        if present {
            return;
        }
        let stamp = data.clock;
        data.clock = stamp + Duration::milliseconds(1);
        rows.push(data.members.len() as u32);
        data.members.push(Some(MemberRow {
            group,
            member,
            stamp,
        }));
    }

    /// Removes a membership row (a real delete: later queries do not return it). False when
    /// there was no such row.
    pub fn remove_member(&self, group: SfId, member: SfId) -> bool {
        let mut data = self.write();
        let data = &mut *data;
        let Some(rows) = data.members_by_group.get_mut(&group) else {
            return false;
        };
        let Some(at) = rows
            .iter()
            .position(|&r| data.members[r as usize].is_some_and(|m| m.member == member))
        else {
            return false;
        };
        let row = rows.remove(at);
        data.members[row as usize] = None;
        true
    }

    /// The org as the fake holds it now (without the stamps of roles, groups and rows).
    pub fn org(&self) -> SalesforceOrg {
        let data = read(&self.state);
        SalesforceOrg {
            org_id: data.org_id,
            instance_url: data.instance_url.clone(),
            lightning_url: data.lightning_url.clone(),
            users: data.users.clone(),
            roles: data.roles.clone(),
            groups: data.groups.clone(),
            group_members: data
                .members
                .iter()
                .flatten()
                .map(|m| GroupMember {
                    group_id: m.group,
                    member_id: m.member,
                })
                .collect(),
        }
    }
}

fn read(state: &SfState) -> std::sync::RwLockReadGuard<'_, OrgData> {
    state.data.read().unwrap_or_else(|p| p.into_inner())
}

/// Salesforce refuses a URI longer than [`MAX_URI_BYTES`] with 414 before reading the query:
/// clients must split long `IN (...)` lists.
async fn refuse_long_uris(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return (StatusCode::URI_TOO_LONG, "URI Too Long").into_response();
    }
    next.run(request).await
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
        let body = json!({ "totalSize": cursor.items.len(), "done": true, "records": [] });
        let response = match state.faults.take(cursor.object, 1) {
            Some(fault) => faulted(fault, || Json(body).into_response()).await,
            None => Json(body).into_response(),
        };
        return with_usage(state, response);
    }
    let batch = batch_size(state, &cursor);
    // A result that fits one batch needs no cursor.
    let id = if cursor.items.len() > batch {
        let mut cursors = lock(&state.cursors);
        let id = cursors.next;
        cursors.next += 1;
        cursors.open.push_back((id, cursor.clone()));
        if cursors.open.len() > OPEN_CURSORS {
            cursors.open.pop_front();
        }
        id
    } else {
        usize::MAX
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
    let found = parsed.and_then(|(id, offset)| {
        let cursors = lock(&state.cursors);
        let (_, cursor) = cursors.open.iter().find(|(open, _)| *open == id)?;
        Some((id, cursor.clone(), offset))
    });
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

/// Records per batch: an aggregate result comes whole (it has at most
/// [`MAX_AGGREGATE_ROWS`]).
fn batch_size(state: &SfState, cursor: &Cursor) -> usize {
    if cursor.object == "AggregateResult" {
        MAX_AGGREGATE_ROWS
    } else {
        state.batch_size.load(Ordering::SeqCst)
    }
}

async fn serve_page(
    state: &SfState,
    version: &str,
    id: usize,
    cursor: Arc<Cursor>,
    offset: usize,
) -> Response {
    let batch = batch_size(state, &cursor);
    let page = offset / batch + 1;
    let normal = || {
        let total = cursor.items.len();
        let end = (offset + batch).min(total);
        let data = read(state);
        let done = end >= total;
        let page = QueryPage {
            total_size: total,
            done,
            records: cursor.items.page(&data, offset.min(end), end),
            next_records_url: (!done)
                .then(|| format!("/services/data/{version}/query/01gFAKE{id}-{end}")),
        };
        json_response(
            StatusCode::OK,
            serde_json::to_string(&page).unwrap_or_default(),
        )
    };
    let response = match state.faults.take(cursor.object, page) {
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

/// `SystemModstamp` as Salesforce writes it.
fn sf_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn group_json(g: &PublicGroup, stamp: DateTime<Utc>) -> Value {
    record(
        "Group",
        g.id.to_18(),
        json!({
            "Name": g.name,
            "DeveloperName": g.developer_name,
            "Type": g.group_type,
            "RelatedId": g.related_id.map(|id| id.to_18()),
            "SystemModstamp": sf_time(stamp),
        }),
    )
}

fn role_json(r: &Role, stamp: DateTime<Utc>) -> Value {
    record(
        "UserRole",
        r.id.to_18(),
        json!({
            "Name": r.name,
            "ParentRoleId": r.parent_role_id.map(|id| id.to_18()),
            "SystemModstamp": sf_time(stamp),
        }),
    )
}

fn member_json(m: &MemberRow) -> Value {
    json!({
        "attributes": { "type": "GroupMember" },
        "GroupId": m.group.to_18(),
        "UserOrGroupId": m.member.to_18(),
        "SystemModstamp": sf_time(m.stamp),
    })
}

/// A field's value as a condition compares it.
enum Field<'a> {
    Id(Option<SfId>),
    Text(Option<&'a str>),
    Stamp(Option<DateTime<Utc>>),
}

/// Whether `field` satisfies `condition`: text compares case-insensitively, as SOQL does; ids
/// in either length; a datetime only with `>=`.
fn holds(condition: &Condition, field: Field<'_>) -> bool {
    match (condition, field) {
        (Condition::Eq(_, value), Field::Id(id)) => {
            id.is_some_and(|id| SfId::parse(value).is_ok_and(|v| v == id))
        }
        (Condition::In(_, values), Field::Id(id)) => id.is_some_and(|id| {
            values
                .iter()
                .any(|value| SfId::parse(value).is_ok_and(|v| v == id))
        }),
        (Condition::Eq(_, value), Field::Text(text)) => {
            text.is_some_and(|t| t.eq_ignore_ascii_case(value))
        }
        (Condition::In(_, values), Field::Text(text)) => {
            text.is_some_and(|t| values.iter().any(|v| t.eq_ignore_ascii_case(v)))
        }
        (Condition::AtOrAfter(_, at), Field::Stamp(stamp)) => stamp.is_some_and(|s| s >= *at),
        _ => false,
    }
}

fn all_hold<'a>(conditions: &[(&Condition, String)], field_of: impl Fn(&str) -> Field<'a>) -> bool {
    conditions
        .iter()
        .all(|(condition, field)| holds(condition, field_of(field)))
}

/// The fields each object can be filtered on here.
fn filterable(object: &str) -> &'static [&'static str] {
    match object {
        "User" => &["id", "username", "email", "usertype", "systemmodstamp"],
        "Group" => &["id", "type", "systemmodstamp"],
        "UserRole" => &["id", "systemmodstamp"],
        "GroupMember" => &["groupid", "userorgroupid", "systemmodstamp"],
        _ => &[],
    }
}

fn user_field<'a>(u: &'a SfUser, field: &str) -> Field<'a> {
    match field {
        "id" => Field::Id(Some(u.id)),
        "username" => Field::Text(Some(&u.username)),
        "email" => Field::Text(Some(&u.email)),
        // A user with no type in the snapshot is an internal one (`Standard`).
        "usertype" => Field::Text(Some(
            u.user_type
                .as_deref()
                .unwrap_or(crate::domain::INTERNAL_USER_TYPE),
        )),
        _ => Field::Stamp(u.modified_at),
    }
}

fn group_field<'a>(g: &'a PublicGroup, stamp: DateTime<Utc>, field: &str) -> Field<'a> {
    match field {
        "id" => Field::Id(Some(g.id)),
        "type" => Field::Text(Some(&g.group_type)),
        _ => Field::Stamp(Some(stamp)),
    }
}

fn member_field(m: &MemberRow, field: &str) -> Field<'static> {
    match field {
        "groupid" => Field::Id(Some(m.group)),
        "userorgroupid" => Field::Id(Some(m.member)),
        _ => Field::Stamp(Some(m.stamp)),
    }
}

/// The object as Salesforce names it, if the fake serves it (on the Tooling API or not).
fn known_object(object: &str, tooling: bool) -> Option<&'static str> {
    let known: &[&'static str] = if tooling {
        &["PardotTenant"]
    } else {
        &[
            "Organization",
            "User",
            "UserRole",
            "Group",
            "GroupMember",
            "Profile",
        ]
    };
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(object))
        .copied()
}

/// Runs the query shapes the client sends (module docs of [`soql`]).
fn run_soql(state: &SfState, text: &str, tooling: bool) -> Result<Cursor, Box<Response>> {
    let error = |code: &str, why: &str| Box::new(sf_error(StatusCode::BAD_REQUEST, code, why));
    let parsed = soql::parse(text).map_err(|why| error("MALFORMED_QUERY", &why))?;
    let object = known_object(&parsed.object, tooling).ok_or_else(|| {
        error(
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", parsed.object),
        )
    })?;
    // Lower-cased field names of the conditions, checked against what the fake can filter.
    let mut conditions = Vec::with_capacity(parsed.conditions.len());
    for condition in &parsed.conditions {
        let field = condition.field().to_ascii_lowercase();
        if !filterable(object).contains(&field.as_str()) {
            return Err(error(
                "INVALID_FIELD",
                &format!(
                    "No such column '{}' on entity '{object}' (or the fake cannot filter on it).",
                    condition.field()
                ),
            ));
        }
        conditions.push((condition, field));
    }
    if parsed.is_aggregate() || parsed.group_by.is_some() {
        return aggregate(state, &parsed, object, &conditions)
            .map_err(|why| error("MALFORMED_QUERY", &why));
    }
    let data = read(state);
    let sf_id_18 = |id: Option<SfId>| id.map(|id| id.to_18());
    let mut items = match object {
        "Organization" => Items::Values(vec![record(
            "Organization",
            sf_id_18(data.org_id).unwrap_or_else(|| "00DAk000000FAKEMA0".to_owned()),
            json!({}),
        )]),
        "User" => Items::Users(
            (0..data.users.len() as u32)
                .filter(|&i| {
                    let u = &data.users[i as usize];
                    all_hold(&conditions, |f| user_field(u, f))
                })
                .collect(),
        ),
        "UserRole" => Items::Roles(
            (0..data.roles.len() as u32)
                .filter(|&i| {
                    let (r, stamp) = (&data.roles[i as usize], data.role_stamps[i as usize]);
                    all_hold(&conditions, |f| match f {
                        "id" => Field::Id(Some(r.id)),
                        _ => Field::Stamp(Some(stamp)),
                    })
                })
                .collect(),
        ),
        "Group" => Items::Groups(
            (0..data.groups.len() as u32)
                .filter(|&i| {
                    let (g, stamp) = (&data.groups[i as usize], data.group_stamps[i as usize]);
                    all_hold(&conditions, |f| group_field(g, stamp, f))
                })
                .collect(),
        ),
        "GroupMember" => Items::Members(
            member_rows(&data, &conditions)
                .filter(|m| all_hold(&conditions, |f| member_field(m, f)))
                .collect(),
        ),
        "Profile" => {
            let mut seen = HashSet::new();
            Items::Values(
                data.users
                    .iter()
                    .filter_map(|u| Some((u.profile_id?, u.profile_name.clone()?)))
                    .filter(|(id, _)| seen.insert(*id))
                    .map(|(id, name)| record("Profile", id.to_18(), json!({ "Name": name })))
                    .collect(),
            )
        }
        _ => Items::Values(
            data.tenants
                .iter()
                .map(|(id, name)| {
                    record(
                        "PardotTenant",
                        id.to_18(),
                        json!({ "PardotTenantName": name, "CreationStatus": "Completed" }),
                    )
                })
                .collect(),
        ),
    };
    if let Some(limit) = parsed.limit {
        items.truncate(limit);
    }
    Ok(Cursor {
        object,
        items,
        count_only: parsed.count_only(),
    })
}

/// The membership rows a query can match: those of the groups it names by `GroupId = ` or
/// `GroupId IN (...)` (through the index, in row order), else every row.
fn member_rows<'a>(
    data: &'a OrgData,
    conditions: &[(&Condition, String)],
) -> Box<dyn Iterator<Item = MemberRow> + 'a> {
    let named = conditions.iter().find_map(|(condition, field)| {
        if field != "groupid" {
            return None;
        }
        match condition {
            Condition::Eq(_, value) => Some(vec![value.clone()]),
            Condition::In(_, values) => Some(values.clone()),
            Condition::AtOrAfter(..) => None,
        }
    });
    match named {
        Some(values) => {
            let groups: FxHashSet<SfId> =
                values.iter().filter_map(|v| SfId::parse(v).ok()).collect();
            let mut rows: Vec<u32> = groups
                .iter()
                .filter_map(|g| data.members_by_group.get(g))
                .flatten()
                .copied()
                .collect();
            rows.sort_unstable();
            Box::new(rows.into_iter().filter_map(|r| data.members[r as usize]))
        }
        None => Box::new(data.members.iter().flatten().copied()),
    }
}

/// `SELECT GroupId, COUNT(Id) FROM GroupMember [WHERE ...] GROUP BY GroupId`, and
/// `SELECT COUNT(Id) FROM GroupMember [WHERE ...]`: `AggregateResult` records, the count as
/// `expr0`, in one batch. Salesforce cannot page an aggregate result: more than
/// [`MAX_AGGREGATE_ROWS`] rows is an error (the fake's message; the real one may differ).
fn aggregate(
    state: &SfState,
    parsed: &Soql,
    object: &'static str,
    conditions: &[(&Condition, String)],
) -> Result<Cursor, String> {
    let unsupported = || {
        format!(
            "the fake answers only SELECT GroupId, COUNT(Id) FROM GroupMember ... GROUP BY \
             GroupId, not this aggregate on {object}"
        )
    };
    if object != "GroupMember" {
        return Err(unsupported());
    }
    let field = |f: &str, name: &str| f.eq_ignore_ascii_case(name);
    let grouped = match (&parsed.fields[..], parsed.group_by.as_deref()) {
        ([group, count], Some(by))
            if field(group, "GroupId") && field(count, "COUNT(Id)") && field(by, "GroupId") =>
        {
            true
        }
        ([count], None) if field(count, "COUNT(Id)") => false,
        _ => return Err(unsupported()),
    };
    let data = read(state);
    let rows =
        member_rows(&data, conditions).filter(|m| all_hold(conditions, |f| member_field(m, f)));
    let records: Vec<Value> = if grouped {
        let mut order = Vec::new();
        let mut counts: FxHashMap<SfId, u64> = FxHashMap::default();
        for m in rows {
            let count = counts.entry(m.group).or_insert_with(|| {
                order.push(m.group);
                0
            });
            *count += 1;
        }
        if order.len() > MAX_AGGREGATE_ROWS {
            return Err(format!(
                "the aggregate query returns {} rows, more than {MAX_AGGREGATE_ROWS}: narrow \
                 it (fewer ids in GroupId IN (...))",
                order.len()
            ));
        }
        order
            .into_iter()
            .map(|g| {
                json!({
                    "attributes": { "type": "AggregateResult" },
                    "GroupId": g.to_18(),
                    "expr0": counts[&g],
                })
            })
            .collect()
    } else {
        vec![json!({ "attributes": { "type": "AggregateResult" }, "expr0": rows.count() })]
    };
    let mut items = Items::Values(records);
    if let Some(limit) = parsed.limit {
        items.truncate(limit);
    }
    Ok(Cursor {
        object: "AggregateResult",
        items,
        count_only: false,
    })
}

/// A record's `attributes.url`.
fn sobject_url(object: &str, id: &str) -> String {
    format!("/services/data/v62.0/sobjects/{object}/{id}")
}

fn record(object: &str, id: String, fields: Value) -> Value {
    let mut record = json!({
        "attributes": { "type": object, "url": sobject_url(object, &id) },
        "Id": id,
    });
    if let (Some(record), Value::Object(fields)) = (record.as_object_mut(), fields) {
        record.extend(fields);
    }
    record
}
