//! The "Check CRM username" message shortcut (`callback_id` `check_crm_username`): the
//! addresses in the message it was used on are checked and answered in that message's
//! thread, where the ticket lives. Nothing found, or no way to post there: the clicker is
//! answered through `response_url`, seen by them only.

use serde_json::{Value, json};
use slack_morphism::prelude::SlackInteractionMessageActionEvent;

use super::SlackApiError;
use crate::domain::{Query, message_addresses};
use crate::render::{self, slack as blocks};
use crate::state::AppState;

/// The shortcut's `callback_id`, as the Slack app manifests declare it.
pub const CALLBACK_ID: &str = "check_crm_username";

/// Starts the answer to a message shortcut; the click itself is acknowledged by the caller.
pub(crate) fn on_message_action(state: &AppState, event: SlackInteractionMessageActionEvent) {
    if event.callback_id.as_ref() != CALLBACK_ID || !state.team_allowed(event.team.id.as_ref()) {
        return;
    }
    let response_url = event.response_url.0.to_string();
    let Some(message) = event.message else {
        return;
    };
    let channel = event
        .channel
        .map(|c| c.id.to_string())
        .or_else(|| message.origin.channel.as_ref().map(|c| c.to_string()))
        .unwrap_or_default();
    // In a thread: its parent. Otherwise the message starts one.
    let thread_ts = message
        .origin
        .thread_ts
        .as_ref()
        .unwrap_or(&message.origin.ts)
        .to_string();
    let queries = message_addresses(message.content.text.as_deref().unwrap_or_default());
    if queries.is_empty() {
        state.respond_later(response_url, async {
            render::as_response(blocks::no_addresses_message(), false, None)
        });
        return;
    }
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let answer = blocks::in_thread(answer(&state2, &queries).await);
        post_in_thread(&state2, answer, &channel, &thread_ts, &response_url).await;
    });
}

/// One address: its full answer. Several: one line each, with a button for the full answer.
async fn answer(state: &AppState, queries: &[Query]) -> Value {
    if let [query] = queries {
        return state.answer(query, false).await;
    }
    let diagnoses =
        futures_util::future::join_all(queries.iter().map(|q| state.diagnose(q, false)));
    let checked: Vec<_> = queries.iter().cloned().zip(diagnoses.await).collect();
    blocks::address_summary(&checked)
}

/// Posts in the thread; when the bot may not post in the channel, the clicker gets the answer
/// through `response_url` instead, with how to invite the bot.
async fn post_in_thread(
    state: &AppState,
    answer: Value,
    channel: &str,
    thread_ts: &str,
    response_url: &str,
) {
    let mut message = answer.clone();
    message["channel"] = json!(channel);
    message["thread_ts"] = json!(thread_ts);
    let not_a_member = match state.slack.web.post_message(&message).await {
        Ok(()) => return,
        Err(SlackApiError::Api(error))
            if error == "not_in_channel" || error == "channel_not_found" =>
        {
            true
        }
        Err(SlackApiError::NoToken) => false,
        Err(err) => {
            tracing::warn!(error = %err, "could not answer a message shortcut in its thread");
            return;
        }
    };
    let fallback = render::as_response(blocks::only_for_you(answer, not_a_member), false, None);
    if let Err(err) = state.slack.web.respond(response_url, &fallback).await {
        tracing::warn!(error = %err, "could not answer a message shortcut through response_url");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_manifests_declare_the_shortcut_with_this_callback_id() {
        for manifest in [
            include_str!("../../manifests/slack-app.yaml"),
            include_str!("../../manifests/slack-app-socket-mode.yaml"),
        ] {
            let shortcut = manifest
                .split("  shortcuts:\n")
                .nth(1)
                .expect("a features.shortcuts list");
            assert!(shortcut.contains("      type: message\n"));
            assert!(shortcut.contains(&format!("      callback_id: {}\n", super::CALLBACK_ID)));
        }
    }
}
