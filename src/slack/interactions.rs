//! Button clicks. URL buttons only need the acknowledgement. Values are untrusted: each is
//! parsed again as a query, and ids are looked up again, never taken on trust.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slack_morphism::prelude::SlackInteractionEvent;

use super::audit::{ReplyTo, start_audit};
use super::{form, home, malformed_form};
use crate::domain::{Query, Subject};
use crate::render;
use crate::state::AppState;

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

pub async fn handle(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(payload) = form::<InteractionForm>(&body) else {
        return malformed_form();
    };
    match serde_json::from_str(&payload.payload) {
        Ok(event) => on_interaction(&state, event),
        Err(err) => {
            tracing::warn!(error = %err, "an interaction payload could not be read; ignored")
        }
    }
    StatusCode::OK.into_response()
}

/// Starts the work a click asks for; the click itself is acknowledged by the caller.
pub(crate) fn on_interaction(state: &AppState, event: SlackInteractionEvent) {
    // Other interaction types are not used by this app.
    let SlackInteractionEvent::BlockActions(event) = event else {
        return;
    };
    if !state.team_allowed(event.team.id.as_ref()) {
        return;
    }
    let clicked = |id: &str| {
        event
            .actions
            .as_ref()
            .and_then(|a| a.first())
            .is_some_and(|a| a.action_id.as_ref() == id)
    };
    // The Home tab's button: a view has no response_url; the answer goes to a direct message.
    if clicked("run_audit") {
        let user_id = event.user.as_ref().map(|u| u.id.to_string());
        if let Some(user_id) = user_id.filter(|u| !u.is_empty()) {
            run_audit_from_home(state, &user_id);
        }
        return;
    }
    let Some(response_url) = event.response_url.as_ref().map(|u| u.0.to_string()) else {
        return;
    };
    let user_id = event
        .user
        .as_ref()
        .map(|u| u.id.to_string())
        .unwrap_or_default();
    let Some(action) = event.actions.as_ref().and_then(|a| a.first()) else {
        return;
    };
    let value = action.value.clone().unwrap_or_default();
    match action.action_id.as_ref() {
        "recheck" => {
            let Ok(query) = Query::parse(&value) else {
                return;
            };
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                render::as_response(state2.answer(&query, true).await, false, Some(true))
            });
        }
        "share" => {
            let Ok(query) = Query::parse(&value) else {
                return;
            };
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                let message = render::shared_by(state2.answer(&query, false).await, &user_id);
                render::as_response(message, true, Some(false))
            });
        }
        "pick_candidate" => {
            // Only a user id is a valid pick; it is diagnosed (so looked up) again.
            let Ok(query) = Query::parse(&value) else {
                return;
            };
            if !matches!(query.subject, Subject::Id(_)) || query.target.is_some() {
                return;
            }
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                render::as_response(state2.answer(&query, false).await, false, Some(true))
            });
        }
        _ => {}
    }
}

/// The "Run an audit" button of the Home tab. The button is only shown to admins, but a view is
/// no proof: `start_audit` checks again. The answers go to the user's direct messages.
pub(crate) fn run_audit_from_home(state: &AppState, user_id: &str) {
    // Started: the audit posts its own "Auditing…" there first. Refused (not an admin, or an
    // audit already running): told here.
    if let Err(refusal) = start_audit(state, user_id, None, "", ReplyTo::DirectMessage) {
        let (state2, user_id) = (state.clone(), user_id.to_owned());
        state.tasks.spawn(async move {
            home::tell(
                &state2,
                &user_id,
                render::plain_message(&refusal.to_string()),
            )
            .await
        });
    }
}
