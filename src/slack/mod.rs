//! The Slack side: HTTP routes with request verification, the slash command, buttons,
//! mentions in threads, and calls back to Slack.

pub mod audit;
mod commands;
pub mod digest;
mod events;
pub mod home;
mod interactions;
pub mod manifest;
pub mod signature;
pub mod socket_mode;
pub mod web_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::check::CheckError;
use crate::domain::Query;
use crate::refresh::Sources;
use crate::render;
use crate::store::{Store, StoreError};
pub use web_api::{SlackApiError, SlackWebApi};

/// Slack never sends more for these endpoints; anything larger is refused unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Answer inline when the diagnosis is ready by then; otherwise acknowledge and use
/// `response_url` (Slack's limit is 3 s).
pub const INLINE_DEADLINE: Duration = Duration::from_millis(2_000);

#[derive(Clone)]
pub struct SlackSettings {
    /// The current signing secret, and during a rotation the previous one.
    pub signing_secrets: Vec<SecretString>,
    /// Workspaces served; empty = all.
    pub allowed_team_ids: Vec<String>,
    pub admin_user_ids: Vec<String>,
    pub web: SlackWebApi,
}

pub struct Inner {
    pub store: Store,
    pub sources: Option<Arc<Sources>>,
    pub slack: SlackSettings,
    /// Work that goes on after Slack was acknowledged; shutdown waits for it.
    pub tasks: TaskTracker,
    /// When the data last served was fetched: told to people while the data is unavailable.
    pub last_data_as_of: Mutex<Option<DateTime<Utc>>>,
    /// One audit at a time per replica: it reads the whole cache.
    pub audit_running: std::sync::atomic::AtomicBool,
    /// The Home tab's audit counts, per generation of the data.
    pub home: home::HomeSummaries,
    /// When this process started, and so its first refresh: told to people while no data
    /// has been loaded yet.
    pub started_at: DateTime<Utc>,
    /// The Socket Mode connections, when the bot uses them (for `/readyz` and `/healthz`).
    pub socket_mode: socket_mode::Health,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, sources: Option<Arc<Sources>>, slack: SlackSettings) -> Self {
        AppState(Arc::new(Inner {
            store,
            sources,
            slack,
            tasks: TaskTracker::new(),
            last_data_as_of: Mutex::new(None),
            audit_running: std::sync::atomic::AtomicBool::new(false),
            home: home::HomeSummaries::default(),
            started_at: Utc::now(),
            socket_mode: socket_mode::Health::default(),
        }))
    }

    pub fn team_allowed(&self, team_id: &str) -> bool {
        self.slack.allowed_team_ids.is_empty()
            || self.slack.allowed_team_ids.iter().any(|t| t == team_id)
    }

    pub fn is_admin(&self, user_id: &str) -> bool {
        self.slack.admin_user_ids.iter().any(|u| u == user_id)
    }

    /// The diagnosis of a query as a Slack message, whatever happens.
    pub async fn answer(&self, query: &Query, recheck: bool) -> Value {
        let outcome = match (&self.sources, recheck) {
            (Some(sources), true) => {
                crate::refresh::recheck(sources, &self.store, query, Utc::now()).await
            }
            // A query the cache cannot answer is looked up live, within bounds; a re-check
            // without live data answers from the cache.
            (sources, _) => {
                let diagnosed = match sources {
                    Some(sources) => {
                        crate::refresh::answer(sources, &self.store, query, Utc::now()).await
                    }
                    None => crate::check::check(&self.store, query, Utc::now()).await,
                };
                match diagnosed {
                    Err(CheckError::Store(StoreError::NoSnapshot)) => {
                        return render::loading_message(self.started_at);
                    }
                    outcome => outcome,
                }
            }
        };
        match outcome {
            Ok(diagnosis) => {
                crate::metrics::record_diagnosis(&diagnosis);
                *self
                    .last_data_as_of
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(diagnosis.data_as_of);
                render::blocks(&diagnosis)
            }
            Err(CheckError::Target(target)) => render::error_message(&target.to_string()),
            Err(problem) => {
                tracing::warn!(error = %problem, "a diagnosis could not be made");
                let since = *self
                    .last_data_as_of
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                render::unavailable_message(&problem.to_string(), since)
            }
        }
    }

    /// Posts to a response_url in the background, logging (not showing) failures.
    pub fn respond_later(
        &self,
        response_url: String,
        message: impl std::future::Future<Output = Value> + Send + 'static,
    ) {
        let state = self.clone();
        self.tasks.spawn(async move {
            let message = message.await;
            if let Err(err) = state.slack.web.respond(&response_url, &message).await {
                tracing::warn!(error = %err, "could not reply through response_url");
            }
        });
    }
}

/// The Slack endpoints; every request is verified before its handler runs. (A route layer:
/// other paths are not Slack's and answer 404, not 401.)
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/slack/commands", post(commands::handle))
        .route("/slack/interactions", post(interactions::handle))
        .route("/slack/events", post(events::handle))
        .route_layer(middleware::from_fn_with_state(state, verify_request))
}

/// Reads the body (at most 64 KiB) and checks Slack's signature before any handler runs.
async fn verify_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) if crate::server::connections::is_body_timeout(&err) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "request body arrived too slowly",
            )
                .into_response();
        }
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(err) = signature::verify(
        &state.slack.signing_secrets,
        header(signature::TIMESTAMP_HEADER),
        header(signature::SIGNATURE_HEADER),
        &bytes,
        Utc::now().timestamp(),
    ) {
        tracing::info!(reason = %err, path = %parts.uri.path(), "refused an unverified request");
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Form fields Slack sends as `application/x-www-form-urlencoded`.
fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

fn malformed_form() -> Response {
    (StatusCode::BAD_REQUEST, "malformed form body").into_response()
}

/// The first word (lower-cased) and the rest.
fn split_command(text: &str) -> (String, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((first, rest)) => (first.to_lowercase(), rest.trim()),
        None => (text.to_lowercase(), ""),
    }
}
