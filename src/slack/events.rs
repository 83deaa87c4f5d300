//! Events API: the URL check, mentions of the bot (`@crm-username check ...`) answered in
//! the thread they came from, and the Home tab published when it is opened. Slack delivers at
//! least once: retries are recognised by `event_id` in the store, so every replica agrees.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{home, split_command};
use crate::domain::Query;
use crate::render;
use crate::state::AppState;

pub async fn handle(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed JSON").into_response();
    };
    if event["type"] == "url_verification" {
        let challenge = event["challenge"].as_str().unwrap_or_default();
        return Json(json!({"challenge": challenge})).into_response();
    }
    on_event(&state, &event).await;
    StatusCode::OK.into_response()
}

/// Handles an Events API envelope (`event_callback`), from HTTP or Socket Mode.
pub(crate) async fn on_event(state: &AppState, envelope: &Value) {
    if envelope["type"] == "event_callback" {
        on_callback(state, envelope).await;
    }
}

async fn on_callback(state: &AppState, callback: &Value) {
    let team = callback["team_id"].as_str().unwrap_or_default();
    if !state.team_allowed(team) {
        return;
    }
    let inner = &callback["event"];
    match inner["type"].as_str() {
        Some("app_mention") => {
            // The bot's own messages (and other bots') are not questions.
            if inner.get("bot_id").is_some_and(|b| !b.is_null())
                || inner["subtype"] == "bot_message"
            {
                return;
            }
            if first_delivery(state, callback).await {
                on_mention(state, inner);
            }
        }
        // Opening the Messages tab also sends app_home_opened; only the Home tab is ours.
        Some("app_home_opened") if inner["tab"] == "home" => {
            let Some(user) = inner["user"].as_str().filter(|u| !u.is_empty()) else {
                return;
            };
            if first_delivery(state, callback).await {
                let (state2, user) = (state.clone(), user.to_owned());
                state
                    .tasks
                    .spawn(async move { home::publish_home(&state2, &user).await });
            }
        }
        _ => {}
    }
}

/// `false` for Slack's retries of an event already handled (on any replica).
async fn first_delivery(state: &AppState, callback: &Value) -> bool {
    let event_id = callback["event_id"].as_str().unwrap_or_default();
    match state.store.first_delivery(event_id).await {
        Ok(first) => first,
        Err(err) => {
            tracing::warn!(error = %err, "could not check for a retried event; answering anyway");
            true
        }
    }
}

fn on_mention(state: &AppState, inner: &Value) {
    let (Some(channel), Some(ts)) = (inner["channel"].as_str(), inner["ts"].as_str()) else {
        return;
    };
    let thread_ts = inner["thread_ts"].as_str().unwrap_or(ts).to_owned();
    let channel = channel.to_owned();
    let text = strip_mentions(inner["text"].as_str().unwrap_or_default());
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let (subcommand, rest) = split_command(&text);
        let message = match subcommand.as_str() {
            "check" if !rest.is_empty() => match Query::parse(rest) {
                Ok(query) => state2.answer(&query, false).await,
                Err(err) => render::error_message(&err.to_string()),
            },
            "status" => match state2.store.status().await {
                Ok(report) => render::status_message(&report),
                Err(err) => render::unavailable_message(&err.to_string(), None),
            },
            _ => render::help_message("@crm-username"),
        };
        let mut message = message;
        message["channel"] = json!(channel);
        message["thread_ts"] = json!(thread_ts);
        if let Err(err) = state2.slack.web.post_message(&message).await {
            tracing::warn!(error = %err, "could not answer a mention");
        }
    });
}

/// Drops the leading mention(s) of the bot: `<@U123> check x` -> `check x`.
fn strip_mentions(text: &str) -> String {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("<@") {
        match after.find('>') {
            Some(end) => rest = after[end + 1..].trim_start(),
            None => break,
        }
    }
    rest.to_owned()
}

#[cfg(test)]
mod tests {
    use super::strip_mentions;

    #[test]
    fn leading_mentions_are_stripped() {
        assert_eq!(
            strip_mentions("<@U0BOT> check jane@acme.com"),
            "check jane@acme.com"
        );
        assert_eq!(strip_mentions("  <@U0BOT>  <@U0BOT|bot> status"), "status");
        assert_eq!(strip_mentions("check <@U1>"), "check <@U1>");
        assert_eq!(strip_mentions("<@U0BOT"), "<@U0BOT");
    }
}
