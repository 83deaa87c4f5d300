//! Button clicks, the message shortcut (`shortcut.rs`) and the follow-ups' buttons
//! (`followups.rs`). URL buttons only need the acknowledgement. Values are untrusted: each is
//! parsed again as a query, and ids are looked up again, never taken on trust.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use slack_morphism::prelude::SlackInteractionEvent;

use super::audit::{ReplyTo, start_audit};
use super::{form, home, malformed_form, shortcut};
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
    match serde_json::from_str(&payload.payload).map(read_interaction) {
        Ok(Some(event)) => on_interaction(&state, event),
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(error = %err, "an interaction payload could not be read; ignored")
        }
    }
    StatusCode::OK.into_response()
}

/// An interaction payload, typed by slack-morphism; `None` for one it cannot read. A message
/// shortcut carries the whole message, and only its text, `ts`, `thread_ts` and channel are
/// used: the rest (blocks, attachments, files, subtype, profiles) is dropped first, so that a
/// block kind or message subtype slack-morphism does not know (Slack adds them) cannot make
/// the shortcut fail.
pub(crate) fn read_interaction(mut payload: Value) -> Option<SlackInteractionEvent> {
    if payload["type"] == "message_action" {
        if let Some(message) = payload["message"].as_object_mut() {
            message.retain(|field, _| {
                matches!(
                    field.as_str(),
                    "type" | "ts" | "thread_ts" | "text" | "user" | "channel" | "team"
                )
            });
        }
    }
    match serde_json::from_value(payload) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::warn!(error = %err, "an interaction payload could not be read; ignored");
            None
        }
    }
}

/// Starts the work a click asks for; the click itself is acknowledged by the caller.
pub(crate) fn on_interaction(state: &AppState, event: SlackInteractionEvent) {
    let event = match event {
        SlackInteractionEvent::BlockActions(event) => event,
        SlackInteractionEvent::MessageAction(event) => {
            return shortcut::on_message_action(state, event);
        }
        // Other interaction types are not used by this app.
        _ => return,
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
        render::slack::PICK_ADDRESS => {
            // An address of the shortcut's summary: a login or a user id, checked again. The
            // answer is the clicker's; the summary stays in the thread for everyone.
            let Ok(query) = Query::parse(&value) else {
                return;
            };
            if matches!(query.subject, Subject::Name(_)) || query.target.is_some() {
                return;
            }
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                render::as_response(state2.answer(&query, false).await, false, Some(false))
            });
        }
        render::slack::FOLLOW_UP => {
            super::followups::on_follow_up(state, &event, &value, &user_id, response_url);
        }
        render::slack::STOP_FOLLOW_UP => {
            super::followups::on_stop(state, &event, &value, &user_id, response_url);
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
