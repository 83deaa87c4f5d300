//! Button clicks. URL buttons only need the acknowledgement. Values are untrusted: each is
//! parsed again as a query, and ids are looked up again, never taken on trust.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slack_morphism::prelude::SlackInteractionEvent;

use super::{AppState, form, home, malformed_form};
use crate::domain::{Query, Subject};
use crate::render;

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

/// The Home tab's "Run an audit". Who clicked is checked here, on the server: the button is
/// only shown to admins, but a view is no proof. The one call site of the audit from the Home
/// tab: once `commands::start_audit` (the `/crm-username audit` command) exists, this calls it
/// with the user's direct message as where to reply.
pub(crate) fn run_audit_from_home(state: &AppState, user_id: &str) {
    let (state2, user_id) = (state.clone(), user_id.to_owned());
    state.tasks.spawn(async move {
        if !state2.is_admin(&user_id) {
            tracing::info!(user = %user_id, "refused an audit to someone who is not an admin");
            home::tell(&state2, &user_id, render::plain_message(
                "Only the bot's admins can run an audit (SLACK_ADMIN_USER_IDS). The Home tab shows the counts of the latest data.",
            ))
            .await;
            return;
        }
        home::tell(
            &state2,
            &user_id,
            render::plain_message(
                "Audit of every business unit started; the counts follow here when it is done.",
            ),
        )
        .await;
        let message = match state2.home.run(&state2.store).await {
            Ok(report) => render::audit_summary_message(&render::AuditSummary::of(&report)),
            Err(problem) => render::plain_message(&format!("The audit could not be made: {problem}")),
        };
        home::tell(&state2, &user_id, message).await;
    });
}
