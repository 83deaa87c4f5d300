//! `/crm-username check|status|help|refresh|audit`: acknowledged within 3 seconds, answered inline
//! when the diagnosis is ready in time, otherwise through `response_url`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::FutureExt;
use serde_json::Value;
use slack_morphism::prelude::SlackCommandEvent;

use super::{INLINE_DEADLINE, form, malformed_form, split_command};
use crate::domain::Query;
use crate::render;
use crate::render::slack::kit::Message;
use crate::state::AppState;

/// A command's reply: a check's answer as the JSON it was written to (perhaps by an earlier
/// check: `answers.rs`), the short messages typed, the others (status, audit) as JSON values.
#[derive(Debug)]
pub(crate) enum Reply {
    Ready(Bytes),
    Message(Message),
    Json(Value),
}

impl Reply {
    pub(crate) fn into_value(self) -> Value {
        match self {
            // Written by this process from a typed message: it parses.
            Reply::Ready(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Reply::Message(message) => message.into_value(),
            Reply::Json(value) => value,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Ready(body) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Reply::Message(message) => Json(message).into_response(),
            Reply::Json(value) => Json(value).into_response(),
        }
    }
}

fn ephemeral(message: Message) -> Reply {
    Reply::Message(message.as_response(false, None))
}

fn ephemeral_json(message: Value) -> Reply {
    Reply::Json(render::as_response(message, false, None))
}

pub async fn handle(State(state): State<AppState>, body: Bytes) -> Response {
    // Slack sends every field of `SlackCommandEvent`; a form without them is not Slack's.
    let Some(command) = form::<SlackCommandEvent>(&body) else {
        return malformed_form();
    };
    reply(&state, command).await.into_response()
}

/// What the command is answered with at once (the HTTP response, or the Socket Mode ack).
pub(crate) async fn reply(state: &AppState, command: SlackCommandEvent) -> Reply {
    let team_id = command.team_id.to_string();
    if !state.team_allowed(&team_id) {
        tracing::info!(team = %team_id, "refused a command from a workspace not served");
        return ephemeral(render::slack::plain(
            "This workspace is not served by this bot. Ask your Slack admin to add its team id to SLACK_ALLOWED_TEAM_IDS.",
        ));
    }
    let name = if command.command.as_ref().starts_with('/') {
        command.command.as_ref()
    } else {
        "/crm-username"
    };
    let user_id = command.user_id.to_string();
    let response_url = command.response_url.0.to_string();
    let (subcommand, rest) = split_command(command.text.as_deref().unwrap_or_default());
    match subcommand.as_str() {
        "check" if !rest.is_empty() => check(state, rest, response_url).await,
        "status" => match state.store.status().await {
            Ok(report) => ephemeral_json(render::status_message(&report)),
            Err(err) => ephemeral(render::slack::unavailable(&err.to_string(), None)),
        },
        "refresh" => refresh(state, &user_id, response_url),
        "audit" => ephemeral_json(
            super::audit::start_audit(
                state,
                &user_id,
                Some(command.channel_id.to_string()),
                rest,
                super::audit::ReplyTo::ResponseUrl(response_url),
            )
            .unwrap_or_else(|refusal| render::plain_message(&refusal.to_string())),
        ),
        _ => ephemeral(render::slack::help(name)),
    }
}

async fn check(state: &AppState, text: &str, response_url: String) -> Reply {
    let query = match Query::parse(text) {
        Ok(query) => query,
        Err(err) => return ephemeral(render::slack::error(&err.to_string())),
    };
    // Run here, on the request's own task, rather than spawned: a task of its own per check
    // cost a hand-off between threads on every request. Only a diagnosis still running at the
    // deadline moves to a task of its own, and a panic is caught either way.
    let mut work = Box::pin(
        std::panic::AssertUnwindSafe({
            let state = state.clone();
            async move { state.check_reply(&query).await }
        })
        .catch_unwind(),
    );
    match tokio::time::timeout(INLINE_DEADLINE, &mut work).await {
        Ok(Ok(body)) => Reply::Ready(body),
        Ok(Err(_)) => ephemeral(render::slack::plain(
            "Something went wrong while checking. Please try again.",
        )),
        Err(_) => {
            state.respond_later(response_url, async move {
                match work.await {
                    Ok(body) => {
                        let mut message = Reply::Ready(body).into_value();
                        message["replace_original"] = Value::Bool(true);
                        message
                    }
                    Err(_) => render::slack::plain(
                        "Something went wrong while checking. Please try again.",
                    )
                    .as_response(false, Some(true))
                    .into_value(),
                }
            });
            ephemeral(render::slack::plain(
                "Checking… the answer follows in a moment.",
            ))
        }
    }
}

fn refresh(state: &AppState, user_id: &str, response_url: String) -> Reply {
    if !state.is_admin(user_id) {
        return ephemeral(render::slack::plain(
            "Only the bot's admins can start a refresh (SLACK_ADMIN_USER_IDS). The data refreshes by itself on a schedule; `status` shows how fresh it is.",
        ));
    }
    let Some(sources) = state.sources.clone() else {
        return ephemeral(render::slack::plain(
            "This bot has no live data source configured, so there is nothing to refresh.",
        ));
    };
    if state.refresher_elsewhere {
        return ephemeral(render::slack::plain(
            "The refresher runs in a process of its own (REFRESH_IN_SERVE=false) and keeps the data fresh on its schedule; `status` shows how fresh it is. To refresh at once, run `crm-username refresh` where the refresher runs.",
        ));
    }
    let store = state.store.clone();
    state.respond_later(response_url, async move {
        let text = match crate::refresh::refresh_locked(
            &sources,
            &store,
            Utc::now(),
            crate::refresh::LOCK_TTL,
        )
        .await
        {
            Ok(report) => format!(
                "Refreshed: {} Salesforce users, in {:.1} s.",
                report.sf_users,
                report.duration.as_secs_f64()
            ),
            Err(err) => format!("The refresh did not complete: {err}"),
        };
        render::as_response(render::plain_message(&text), false, Some(false))
    });
    ephemeral(render::slack::plain(
        "Refreshing… you will hear back here when it is done.",
    ))
}
