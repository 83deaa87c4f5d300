//! A fake Account Engagement API v5: the users endpoint of every business unit in the
//! snapshot, with its required headers, `fields`, `deleted`, `limit`, the
//! `updatedAtAfterOrEqualTo` filter and `orderBy`, page tokens and errors. Users can be changed
//! while it runs; every change is stamped with a fake clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::{Fault, Faults, Injection, Server, faulted, json_response, lock};
use crate::domain::{AeUser, OrgSnapshot, SfId};

/// The filter of changed users (Account Engagement API v5 query filters).
pub const UPDATED_AT_FILTER: &str = "updatedAtAfterOrEqualTo";

/// The error code answered for a parameter a business unit does not accept (assumed: code 3,
/// "Invalid parameter", HTTP 400).
pub const INVALID_PARAMETER_CODE: u32 = 3;

struct AeData {
    business_units: HashMap<SfId, Vec<AeUser>>,
    clock: DateTime<Utc>,
}

pub struct FakeAccountEngagement {
    state: Arc<AeState>,
    server: Server,
}

struct AeState {
    url: Mutex<String>,
    /// Users of each business unit, by id, and the fake clock.
    data: Mutex<AeData>,
    reject_updated_at_filter: AtomicBool,
    revoked: Mutex<HashSet<String>>,
    /// Data requests the token in use still serves before it is revoked.
    expire_after: Mutex<Option<u64>>,
    faults: Faults,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    is_deleted_as_string: AtomicBool,
    salesforce_id_15: AtomicBool,
    send_page_url: AtomicBool,
    send_page_token: AtomicBool,
}

impl FakeAccountEngagement {
    /// Serves the AE users of every business unit in `org`, whatever their `ae_url`: point
    /// the client at [`url`](Self::url) instead.
    pub async fn start(org: &OrgSnapshot) -> std::io::Result<Self> {
        let business_units: HashMap<SfId, Vec<AeUser>> = org
            .business_units
            .iter()
            .map(|bu| {
                let mut users = bu.users.clone();
                users.sort_by_key(|u| u.id);
                (bu.id, users)
            })
            .collect();
        let latest = business_units
            .values()
            .flatten()
            .filter_map(|u| u.updated_at)
            .max();
        let clock = match latest {
            Some(t) if t >= org.fetched_at => t + Duration::milliseconds(1),
            _ => org.fetched_at,
        };
        let state = Arc::new(AeState {
            url: Mutex::new(String::new()),
            data: Mutex::new(AeData {
                business_units,
                clock,
            }),
            reject_updated_at_filter: AtomicBool::new(false),
            revoked: Mutex::new(HashSet::new()),
            expire_after: Mutex::new(None),
            faults: Faults::default(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            is_deleted_as_string: AtomicBool::new(false),
            salesforce_id_15: AtomicBool::new(false),
            send_page_url: AtomicBool::new(true),
            send_page_token: AtomicBool::new(true),
        });
        let router = Router::new()
            .route("/api/v5/objects/users", get(users))
            .with_state(state.clone());
        let server = Server::start(router).await?;
        *lock(&state.url) = server.url.clone();
        Ok(FakeAccountEngagement { state, server })
    }

    /// The `ae_url` of every business unit served.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    pub fn inject(&self, injection: Injection) {
        self.state.faults.add(injection);
    }

    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// The bearer token in use serves `requests` more requests, then gets code 184.
    pub fn expire_token_after(&self, requests: u64) {
        *lock(&self.state.expire_after) = Some(requests);
    }

    /// `isDeleted` as the string `"true"`/`"false"` instead of a boolean.
    pub fn send_is_deleted_as_string(&self, on: bool) {
        self.state.is_deleted_as_string.store(on, Ordering::SeqCst);
    }

    /// `salesforceId` in its 15-character form instead of 18.
    pub fn send_15_char_salesforce_ids(&self, on: bool) {
        self.state.salesforce_id_15.store(on, Ordering::SeqCst);
    }

    /// Which paging links replies carry (both by default).
    pub fn set_paging_links(&self, next_page_url: bool, next_page_token: bool) {
        self.state
            .send_page_url
            .store(next_page_url, Ordering::SeqCst);
        self.state
            .send_page_token
            .store(next_page_token, Ordering::SeqCst);
    }

    /// Requests to the users endpoint so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests carrying [`UPDATED_AT_FILTER`] get the error for an unknown parameter (code
    /// [`INVALID_PARAMETER_CODE`]), as from a business unit that does not support it.
    pub fn reject_updated_at_filter(&self, on: bool) {
        self.state
            .reject_updated_at_filter
            .store(on, Ordering::SeqCst);
    }

    /// Sets the fake clock: the next change is stamped `now`, the one after a millisecond
    /// later, and so on. By default it starts after every `updatedAt` in the org.
    pub fn set_clock(&self, now: DateTime<Utc>) {
        lock(&self.state.data).clock = now;
    }

    /// Inserts or replaces (by id) an AE user in a business unit; stamps `updated_at`. A
    /// business unit the fake does not serve yet is added.
    pub fn upsert_user(&self, business_unit: SfId, mut user: AeUser) {
        let mut data = lock(&self.state.data);
        let now = data.clock;
        data.clock = now + Duration::milliseconds(1);
        user.updated_at = Some(now);
        let users = data.business_units.entry(business_unit).or_default();
        match users.binary_search_by_key(&user.id, |u| u.id) {
            Ok(at) => users[at] = user,
            Err(at) => users.insert(at, user),
        }
    }

    /// Sends a user to the recycle bin (`isDeleted` true), stamped. False when there is no
    /// such user in the business unit.
    pub fn delete_user(&self, business_unit: SfId, id: u64) -> bool {
        let mut data = lock(&self.state.data);
        let now = data.clock;
        let Some(users) = data.business_units.get_mut(&business_unit) else {
            return false;
        };
        let Ok(at) = users.binary_search_by_key(&id, |u| u.id) else {
            return false;
        };
        users[at].is_deleted = true;
        users[at].updated_at = Some(now);
        data.clock = now + Duration::milliseconds(1);
        true
    }

    /// The users of a business unit as the fake holds them now, by id.
    pub fn users(&self, business_unit: SfId) -> Vec<AeUser> {
        lock(&self.state.data)
            .business_units
            .get(&business_unit)
            .cloned()
            .unwrap_or_default()
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a AeState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a AeState) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn ae_error(code: u32) -> Response {
    match Fault::ae_code(code) {
        Fault::Status { status, body } => json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body,
        ),
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Where paging stands; sent as an opaque page token.
struct PageToken {
    offset: usize,
    limit: usize,
    /// `updatedAtAfterOrEqualTo`, in milliseconds since the epoch.
    updated_since: Option<i64>,
    /// `orderBy=updatedAt` rather than by id.
    by_updated_at: bool,
    deleted: String,
}

impl PageToken {
    fn encode(&self) -> String {
        let since = self
            .updated_since
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        let order = if self.by_updated_at { "u" } else { "i" };
        format!(
            "pt.{}.{}.{since}.{order}.{}",
            self.offset, self.limit, self.deleted
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix("pt.")?.splitn(5, '.');
        Some(PageToken {
            offset: parts.next()?.parse().ok()?,
            limit: parts.next()?.parse().ok()?,
            updated_since: match parts.next()? {
                "-" => None,
                t => Some(t.parse().ok()?),
            },
            by_updated_at: match parts.next()? {
                "u" => true,
                "i" => false,
                _ => return None,
            },
            deleted: parts.next()?.to_owned(),
        })
    }
}

fn invalid_parameter(name: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({
            "code": INVALID_PARAMETER_CODE,
            "message": format!("Invalid parameter: {name}"),
        })
        .to_string(),
    )
}

async fn users(
    State(state): State<Arc<AeState>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state);

    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    {
        let mut revoked = lock(&state.revoked);
        let mut expire_after = lock(&state.expire_after);
        if !token.is_empty() && *expire_after == Some(0) {
            revoked.insert(token.clone());
            *expire_after = None;
        }
        if token.is_empty() || revoked.contains(&token) {
            return ae_error(184);
        }
        if let Some(left) = expire_after.as_mut() {
            *left -= 1;
        }
    }

    let Some(bu_header) = headers.get("pardot-business-unit-id") else {
        return ae_error(181);
    };
    let Some(bu_id) = bu_header.to_str().ok().and_then(|v| SfId::parse(v).ok()) else {
        return ae_error(182);
    };
    if !lock(&state.data).business_units.contains_key(&bu_id) {
        return ae_error(201);
    }
    let Some(fields) = params.get("fields").filter(|f| !f.is_empty()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "code": 1000, "message": "The fields parameter is required" }).to_string(),
        );
    };
    let fields: Vec<&str> = fields.split(',').map(str::trim).collect();

    let position = match params.get("nextPageToken") {
        Some(text) => match PageToken::decode(text) {
            Some(position) => position,
            None => return ae_error(211),
        },
        None => {
            let updated_since = match params.get(UPDATED_AT_FILTER) {
                None => None,
                Some(_) if state.reject_updated_at_filter.load(Ordering::SeqCst) => {
                    return invalid_parameter(UPDATED_AT_FILTER);
                }
                Some(text) => match DateTime::parse_from_rfc3339(text) {
                    Ok(t) => Some(t.timestamp_millis()),
                    Err(_) => return invalid_parameter(UPDATED_AT_FILTER),
                },
            };
            let by_updated_at = match params.get("orderBy").map(|o| o.trim()) {
                None => false,
                Some(order) => match order.split_whitespace().collect::<Vec<_>>()[..] {
                    ["id"] | ["id", "asc" | "ASC"] => false,
                    ["updatedAt"] | ["updatedAt", "asc" | "ASC"] => true,
                    _ => return invalid_parameter("orderBy"),
                },
            };
            PageToken {
                offset: 0,
                limit: params
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(200)
                    .clamp(1, 1000),
                updated_since,
                by_updated_at,
                deleted: params
                    .get("deleted")
                    .cloned()
                    .unwrap_or_else(|| "false".to_owned()),
            }
        }
    };
    let page = position.offset / position.limit + 1;

    let normal = || {
        let data = lock(&state.data);
        let all_users = data
            .business_units
            .get(&bu_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let since = position
            .updated_since
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        let mut selected: Vec<&AeUser> = all_users
            .iter()
            .filter(|u| match position.deleted.as_str() {
                "all" => true,
                "true" => u.is_deleted,
                _ => !u.is_deleted,
            })
            .filter(|u| since.is_none_or(|since| u.updated_at.is_some_and(|t| t >= since)))
            .collect();
        if position.by_updated_at {
            selected.sort_by_key(|u| (u.updated_at, u.id));
        }
        let end = (position.offset + position.limit).min(selected.len());
        let values: Vec<Value> = selected
            .get(position.offset.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(|u| user_json(&state, u, &fields))
            .collect();
        let mut body = json!({ "values": values });
        if end < selected.len() {
            let next = PageToken {
                offset: end,
                limit: position.limit,
                updated_since: position.updated_since,
                by_updated_at: position.by_updated_at,
                deleted: position.deleted.clone(),
            }
            .encode();
            if state.send_page_token.load(Ordering::SeqCst) {
                body["nextPageToken"] = json!(next);
            }
            if state.send_page_url.load(Ordering::SeqCst) {
                let url = lock(&state.url).clone();
                body["nextPageUrl"] = json!(format!(
                    "{url}/api/v5/objects/users?nextPageToken={next}&fields={}",
                    fields.join(",")
                ));
            }
        }
        Json(body).into_response()
    };
    match state.faults.take("users", page) {
        Some(fault) => faulted(fault, normal).await,
        None => normal(),
    }
}

/// The user as the API writes it, with only the requested fields.
fn user_json(state: &AeState, user: &AeUser, fields: &[&str]) -> Value {
    let salesforce_id = user.salesforce_id.map(|id| {
        if state.salesforce_id_15.load(Ordering::SeqCst) {
            id.as_str15().to_owned()
        } else {
            id.to_18()
        }
    });
    let is_deleted = if state.is_deleted_as_string.load(Ordering::SeqCst) {
        json!(user.is_deleted.to_string())
    } else {
        json!(user.is_deleted)
    };
    let full = json!({
        "id": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "username": user.username,
        "jobTitle": Value::Null,
        "role": Value::Null,
        "roleName": user.role_name,
        "salesforceId": salesforce_id,
        "isDeleted": is_deleted,
        "createdAt": user.created_at.map(|t| t.to_rfc3339()),
        "updatedAt": user.updated_at.map(|t| t.to_rfc3339()),
    });
    let mut out = Map::new();
    if let Value::Object(full) = full {
        for (key, value) in full {
            if fields.contains(&key.as_str()) {
                out.insert(key, value);
            }
        }
    }
    Value::Object(out)
}
