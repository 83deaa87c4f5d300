//! Events API: the URL check, mentions of the bot (`@crm-username check ...`) answered in
//! the thread they came from, and the Home tab published when it is opened. Slack delivers at
//! least once: retries are recognised by `event_id` in the store, so every replica agrees.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use slack_morphism::prelude::{
    SlackAppMentionEvent, SlackEventCallbackBody, SlackPushEvent, SlackPushEventCallback,
};

use super::{home, split_command};
use crate::domain::Query;
use crate::render;
use crate::state::AppState;

pub async fn handle(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(envelope) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed JSON").into_response();
    };
    match read_push(envelope) {
        Some((SlackPushEvent::UrlVerification(check), _)) => {
            Json(json!({"challenge": check.challenge})).into_response()
        }
        Some((SlackPushEvent::EventCallback(callback), sender)) => {
            on_callback(&state, callback, sender).await;
            StatusCode::OK.into_response()
        }
        // Acknowledged, so that Slack does not send it again; nothing to do.
        Some((SlackPushEvent::AppRateLimited(_), _)) | None => StatusCode::OK.into_response(),
    }
}

/// An Events API envelope, typed by slack-morphism, with what its types leave out. `None` for
/// an envelope of a type it does not know (or of a shape Slack does not send): such envelopes
/// are acknowledged and ignored. An event type it does not know inside a known envelope
/// parses, as [`SlackEventCallbackBody::Unknown`].
pub(crate) fn read_push(envelope: Value) -> Option<(SlackPushEvent, Sender)> {
    let sender = Sender::deserialize(&envelope["event"]).unwrap_or_default();
    match serde_json::from_value::<SlackPushEvent>(envelope) {
        Ok(push) => Some((push, sender)),
        Err(err) => {
            tracing::debug!(error = %err, "an Events API envelope of a kind this app does not handle; ignored");
            None
        }
    }
}

/// Who posted a message: slack-morphism's `SlackAppMentionEvent` has no `bot_id` or
/// `subtype`, which tell the bot's own messages (and other bots') from people's.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Sender {
    bot_id: Option<String>,
    subtype: Option<String>,
}

impl Sender {
    fn is_bot(&self) -> bool {
        self.bot_id.is_some() || self.subtype.as_deref() == Some("bot_message")
    }
}

/// Handles an `event_callback`, from HTTP or Socket Mode.
pub(crate) async fn on_callback(
    state: &AppState,
    callback: SlackPushEventCallback,
    sender: Sender,
) {
    if !state.team_allowed(callback.team_id.as_ref()) {
        return;
    }
    match &callback.event {
        SlackEventCallbackBody::AppMention(mention) => {
            // The bot's own messages (and other bots') are not questions.
            if sender.is_bot() {
                return;
            }
            if first_delivery(state, &callback).await {
                on_mention(state, mention);
            }
        }
        // Opening the Messages tab also sends app_home_opened; only the Home tab is ours.
        SlackEventCallbackBody::AppHomeOpened(opened) if opened.tab.as_deref() == Some("home") => {
            let user = opened.user.to_string();
            if user.is_empty() {
                return;
            }
            if first_delivery(state, &callback).await {
                let state2 = state.clone();
                state
                    .tasks
                    .spawn(async move { home::publish_home(&state2, &user).await });
            }
        }
        _ => {}
    }
}

/// `false` for Slack's retries of an event already handled (on any replica).
async fn first_delivery(state: &AppState, callback: &SlackPushEventCallback) -> bool {
    match state.store.first_delivery(callback.event_id.as_ref()).await {
        Ok(first) => first,
        Err(err) => {
            tracing::warn!(error = %err, "could not check for a retried event; answering anyway");
            true
        }
    }
}

fn on_mention(state: &AppState, mention: &SlackAppMentionEvent) {
    let channel = mention.channel.to_string();
    let thread_ts = mention
        .origin
        .thread_ts
        .as_ref()
        .unwrap_or(&mention.origin.ts)
        .to_string();
    let text = strip_mentions(mention.content.text.as_deref().unwrap_or_default());
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
        // A thread is already public: no "Share in channel" button.
        let mut message = render::slack::in_thread(message);
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
