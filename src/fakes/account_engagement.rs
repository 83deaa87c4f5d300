//! A fake Account Engagement API v5: the users endpoint of every business unit in the
//! snapshot, with its required headers, `fields`, `deleted`, `limit`, page tokens and errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{Fault, Faults, Injection, Server, faulted, json_response, lock};
use crate::domain::{AeUser, OrgSnapshot, SfId};

pub struct FakeAccountEngagement {
    state: Arc<AeState>,
    server: Server,
}

struct AeState {
    url: Mutex<String>,
    /// Users of each business unit, by id.
    business_units: HashMap<SfId, Vec<AeUser>>,
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
        let business_units = org
            .business_units
            .iter()
            .map(|bu| {
                let mut users = bu.users.clone();
                users.sort_by_key(|u| u.id);
                (bu.id, users)
            })
            .collect();
        let state = Arc::new(AeState {
            url: Mutex::new(String::new()),
            business_units,
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
    deleted: String,
}

impl PageToken {
    fn encode(&self) -> String {
        format!("pt.{}.{}.{}", self.offset, self.limit, self.deleted)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix("pt.")?.splitn(3, '.');
        Some(PageToken {
            offset: parts.next()?.parse().ok()?,
            limit: parts.next()?.parse().ok()?,
            deleted: parts.next()?.to_owned(),
        })
    }
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
    let Some(all_users) = state.business_units.get(&bu_id) else {
        return ae_error(201);
    };
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
        None => PageToken {
            offset: 0,
            limit: params
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(200)
                .clamp(1, 1000),
            deleted: params
                .get("deleted")
                .cloned()
                .unwrap_or_else(|| "false".to_owned()),
        },
    };
    let page = position.offset / position.limit + 1;

    let normal = || {
        let selected: Vec<&AeUser> = all_users
            .iter()
            .filter(|u| match position.deleted.as_str() {
                "all" => true,
                "true" => u.is_deleted,
                _ => !u.is_deleted,
            })
            .collect();
        let end = (position.offset + position.limit).min(selected.len());
        let values: Vec<Value> = selected
            .get(position.offset..end)
            .unwrap_or_default()
            .iter()
            .map(|u| user_json(&state, u, &fields))
            .collect();
        let mut body = json!({ "values": values });
        if end < selected.len() {
            let next = PageToken {
                offset: end,
                limit: position.limit,
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
