//! The Slack side: HTTP routes with request verification, the slash command, buttons,
//! the message shortcut, mentions in threads, and calls back to Slack.

pub mod audit;
mod commands;
pub mod digest;
mod events;
pub mod followups;
pub mod home;
mod interactions;
pub mod manifest;
pub mod shortcut;
pub mod signature;
pub mod socket_mode;
pub mod usergroups;
pub mod web_api;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use secrecy::SecretString;

use crate::state::AppState;
// The playground's tests read their payloads as the bot does.
#[cfg(all(test, feature = "demo"))]
pub(crate) use interactions::read_interaction;
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
