//! The "Check CRM username" message shortcut's messages: the answer in a thread, the summary
//! of several addresses, nothing found, and the answer shown only to the clicker when the bot
//! cannot post in the channel.

use serde_json::{Value, json};

use super::blocks::{MAX_BLOCKS, button, headline, mrkdwn_section, v};
use crate::domain::{Diagnosis, Query};
use crate::render::truncate;

/// The pick button of the summary: answers one of its addresses in full.
pub const PICK_ADDRESS: &str = "pick_address";

/// A message for a thread: a thread is already public, so no "Share in channel" button.
pub fn in_thread(mut message: Value) -> Value {
    if let Some(blocks) = message["blocks"].as_array_mut() {
        for block in blocks.iter_mut() {
            if let Some(elements) = block["elements"].as_array_mut() {
                elements.retain(|e| e["action_id"] != "share");
            }
        }
        blocks.retain(|b| b["type"] != "actions" || b["elements"] != json!([]));
    }
    message
}

/// One line per address (its verdict, and the first blocker's title), each with a button that
/// shows its full answer.
pub fn address_summary(checked: &[(Query, Result<Diagnosis, Value>)]) -> Value {
    let mut blocks = vec![mrkdwn_section(
        Some("addresses".into()),
        format!(
            "*{} addresses in this message.* Pick one for the full answer:",
            checked.len()
        ),
    )];
    let mut fallback = Vec::new();
    for (i, (query, outcome)) in checked.iter().enumerate() {
        let line = match outcome {
            Ok(d) => {
                let (emoji, verdict) = headline(d);
                fallback.push(format!("{verdict}: {}", d.query));
                let mut line = format!("{emoji} *{verdict}:* {}", v(&d.query));
                if let Some(u) = &d.salesforce_user {
                    line.push_str(&format!(" · {}", v(&u.name)));
                }
                if let Some(blocker) = d.blockers().next() {
                    line.push_str(&format!("\n{}", v(&blocker.title)));
                }
                line
            }
            Err(problem) => {
                fallback.push(format!("Not checked: {}", query.text));
                let why = problem["text"].as_str().unwrap_or("could not be checked");
                format!(":warning: *{}:* {}", v(&query.text), v(why))
            }
        };
        let mut section = mrkdwn_section(Some(format!("address:{i}")), line);
        section["accessory"] = button(PICK_ADDRESS, "Show the answer", Some(&query.text), None);
        blocks.push(section);
    }
    json!({"text": v(&truncate(&fallback.join("; "), 3_000)), "blocks": blocks})
}

/// The shortcut found nothing to check: said to the clicker only, with what it looks for.
pub fn no_addresses_message() -> Value {
    let text = ":mag: I found no Salesforce username, email or user id in that message, so there is nothing to check.\n\
                The shortcut looks in the message's text and its email links for usernames and emails (`jane@acme.com`) \
                and for 15- or 18-character user ids (`005…`), at most 5 per message. \
                To check a name or anything else, use `/crm-username check …` or mention me in the thread: `@crm-username check …`.";
    json!({
        "text": "No Salesforce username, email or user id found in that message",
        "blocks": [mrkdwn_section(None, text.to_owned())],
    })
}

/// The thread answer, shown only to the clicker because the bot could not post in the
/// channel; with how to let it answer there next time.
pub fn only_for_you(mut message: Value, not_a_member: bool) -> Value {
    let why = if not_a_member {
        "Only you can see this: I am not a member of this channel, so I could not answer in the thread. \
         To let me answer there, invite me: `/invite @crm-username`."
    } else {
        "Only you can see this: I could not post in the thread."
    };
    let note = json!({
        "type": "context",
        "block_id": "only_for_you",
        "elements": [{"type": "mrkdwn", "text": format!(":information_source: {why}")}],
    });
    if let Some(blocks) = message["blocks"].as_array_mut() {
        if blocks.len() >= MAX_BLOCKS {
            // Room for the note: the last block before the footer goes.
            blocks.remove(blocks.len().saturating_sub(2));
        }
        blocks.insert(0, note);
    }
    message
}
