//! Slack messages other than a diagnosis: help, status, "data unavailable", acknowledgements.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::kit::{Block, Message};
use crate::render::{escape_mrkdwn, strip_invisible, truncate};
use crate::store::StatusReport;

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3_000)}})
}

pub fn help_message(command: &str) -> Value {
    help(command).into_value()
}

/// How to use the command, typed.
pub fn help(command: &str) -> Message {
    let c = escape_mrkdwn(command);
    let text = format!(
        "*{c} check <username, email, user id or name> [for <AE user email or id>]*\n\
         Explains why a Salesforce username is missing from the Account Engagement CRM username dropdown, with the fix.\n\n\
         Examples:\n\
         • `{c} check jane@acme.com`\n\
         • `{c} check jane@acme.com for bob@acme.com` (while editing AE user bob@acme.com)\n\
         • `{c} check 005Ak00000SAMS1IAP` or `{c} check Jane Doe`\n\
         • `{c} status`: how fresh the data is\n\
         • `{c} audit [business unit]`: every broken mapping, grouped by cause, with a CSV (admins)\n\n\
         In a thread, mention the bot instead: `@crm-username check jane@acme.com`."
    );
    Message::new(
        format!("How to use {command}"),
        vec![Block::section(None, &text)],
    )
}

pub fn status_message(report: &StatusReport) -> Value {
    let when = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "never".to_owned())
    };
    let mut text = format!(
        "*Data as of* {}\n*Salesforce:* {} users",
        when(report.data_as_of),
        report.sf_users
    );
    for (bu, n) in &report.ae_users {
        text.push_str(&format!("\n*AE {}:* {n} users", escape_mrkdwn(bu)));
    }
    for (source, s) in &report.sources {
        text.push_str(&format!(
            "\n• `{}` last success {}",
            escape_mrkdwn(source),
            when(s.last_success_at)
        ));
        if let Some(error) = &s.last_error {
            text.push_str(&format!(
                "; last error {}: {}",
                when(s.last_error_at),
                escape_mrkdwn(&truncate(&strip_invisible(error), 300))
            ));
        }
    }
    json!({"text": format!("Data as of {}", when(report.data_as_of)), "blocks": [section(text)]})
}

/// No data has been loaded yet: the first refresh, started at `since`, is still running.
pub fn loading_message(since: DateTime<Utc>) -> Value {
    loading(since).into_value()
}

/// [`loading_message`], typed.
pub fn loading(since: DateTime<Utc>) -> Message {
    let text = format!(
        ":hourglass_flowing_sand: The data is still loading: the first refresh started at {}. Try again in a minute.",
        since.format("%Y-%m-%d %H:%M UTC")
    );
    Message::new(
        "The data is still loading, try again in a minute".to_owned(),
        vec![Block::section(None, &text)],
    )
}

/// The data cannot be read right now: say so, since when the last good data is, and what to do.
pub fn unavailable_message(problem: &str, last_data: Option<DateTime<Utc>>) -> Value {
    unavailable(problem, last_data).into_value()
}

/// [`unavailable_message`], typed.
pub fn unavailable(problem: &str, last_data: Option<DateTime<Utc>>) -> Message {
    let since = last_data
        .map(|t| {
            format!(
                " The last data this bot served was as of {}.",
                t.format("%Y-%m-%d %H:%M UTC")
            )
        })
        .unwrap_or_default();
    let text = format!(
        ":warning: The org data is unavailable right now: {}.{since} Try again in a minute; if it persists, ask an admin to run `crm-username status`.",
        escape_mrkdwn(&strip_invisible(problem))
    );
    Message::new(
        "The org data is unavailable right now".to_owned(),
        vec![Block::section(None, &text)],
    )
}

pub fn plain_message(text: &str) -> Value {
    plain(text).into_value()
}

/// [`plain_message`], typed.
pub fn plain(text: &str) -> Message {
    let text = escape_mrkdwn(&strip_invisible(text));
    Message::new(text.clone(), vec![Block::section(None, &text)])
}

/// Adds `response_type` (and `replace_original`) to a message for a slash command reply or a
/// `response_url` post.
pub fn as_response(mut message: Value, in_channel: bool, replace_original: Option<bool>) -> Value {
    message["response_type"] = json!(if in_channel {
        "in_channel"
    } else {
        "ephemeral"
    });
    if let Some(replace) = replace_original {
        message["replace_original"] = json!(replace);
    }
    message
}

/// "Shared by @user" on top of a shared diagnosis. The user id comes from Slack's signed
/// payload and is checked to be an id before it becomes a mention.
pub fn shared_by(mut message: Value, user_id: &str) -> Value {
    let who = if !user_id.is_empty() && user_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        format!("<@{user_id}>")
    } else {
        "someone".to_owned()
    };
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.insert(0, json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Shared by {who}")}]}));
        // The re-check and share buttons belong to the person who asked.
        blocks.retain(|b| b["block_id"] != "footer");
    }
    message
}
