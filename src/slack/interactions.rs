//! Button clicks. URL buttons only need the acknowledgement. Values are untrusted: each is
//! parsed again as a query, and ids are looked up again, never taken on trust.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slack_morphism::prelude::SlackInteractionEvent;

use super::{AppState, form, malformed_form};
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
    let Ok(SlackInteractionEvent::BlockActions(event)) = serde_json::from_str(&payload.payload)
    else {
        // Other interaction types are not used by this app; acknowledge and ignore.
        return StatusCode::OK.into_response();
    };
    if !state.team_allowed(event.team.id.as_ref()) {
        return StatusCode::OK.into_response();
    }
    let Some(response_url) = event.response_url.as_ref().map(|u| u.0.to_string()) else {
        return StatusCode::OK.into_response();
    };
    let user_id = event
        .user
        .as_ref()
        .map(|u| u.id.to_string())
        .unwrap_or_default();
    let Some(action) = event.actions.as_ref().and_then(|a| a.first()) else {
        return StatusCode::OK.into_response();
    };
    let value = action.value.clone().unwrap_or_default();
    match action.action_id.as_ref() {
        "recheck" => {
            let Ok(query) = Query::parse(&value) else {
                return StatusCode::OK.into_response();
            };
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                render::as_response(state2.answer(&query, true).await, false, Some(true))
            });
        }
        "share" => {
            let Ok(query) = Query::parse(&value) else {
                return StatusCode::OK.into_response();
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
                return StatusCode::OK.into_response();
            };
            if !matches!(query.subject, Subject::Id(_)) || query.target.is_some() {
                return StatusCode::OK.into_response();
            }
            let state2 = state.clone();
            state.respond_later(response_url, async move {
                render::as_response(state2.answer(&query, false).await, false, Some(true))
            });
        }
        _ => {}
    }
    StatusCode::OK.into_response()
}
