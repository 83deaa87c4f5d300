//! The playground's channel as a person sees it: the messages, and what the bot sends applied
//! the way Slack applies it (`replace_original`, `delete_original`, `response_type`,
//! `thread_ts`). The Slack methods themselves are the Slack fake's ([`FakeSlack`], served on a
//! loopback port of its own, so only this process can post into it); it hands the calls it
//! accepts to this [`Workspace`] through [`SlackWorkspace`].
//!
//! [`FakeSlack`]: crate::fakes::FakeSlack

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::CHANNEL_ID;
use crate::fakes::SlackWorkspace;

/// Older messages are dropped beyond this, so a long-running demo stays small.
const MAX_MESSAGES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// The person at the page.
    Person,
    /// The bot.
    Bot,
    /// The playground itself, e.g. "the bot answered HTTP 401".
    Playground,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: u64,
    /// Slack's message timestamp (`seconds.micros`), unique in the channel.
    pub ts: String,
    pub author: Author,
    /// mrkdwn as Slack stores it (escaped); the fallback `text` for bot messages.
    pub text: String,
    /// Block Kit blocks of a bot message.
    pub blocks: Option<Value>,
    pub ephemeral: bool,
    /// The parent's `ts` for a reply in a thread.
    pub thread_ts: Option<String>,
    /// How many times the message was replaced; Slack shows "(edited)" from 1.
    pub revision: u32,
    /// Reserved for an answer that has not arrived yet: not shown.
    #[serde(skip)]
    pub pending: bool,
}

#[derive(Default)]
struct Messages {
    next_id: u64,
    list: Vec<Message>,
}

/// The channel: messages, and a version that changes with every change (the page waits on it).
pub struct Workspace {
    messages: Mutex<Messages>,
    version: watch::Sender<u64>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace {
            messages: Mutex::default(),
            version: watch::Sender::new(0),
        }
    }
}

impl Workspace {
    fn lock(&self) -> MutexGuard<'_, Messages> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// The visible messages and the version they are at.
    pub fn snapshot(&self) -> (u64, Vec<Message>) {
        let messages = self.lock();
        let version = self.version();
        let visible = messages
            .list
            .iter()
            .filter(|m| !m.pending)
            .cloned()
            .collect();
        (version, visible)
    }

    /// Waits (up to `timeout`) until the version is past `after`.
    pub async fn wait_past(&self, after: u64, timeout: Duration) {
        let mut rx = self.version.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v > after)).await;
    }

    /// Adds a message and returns it.
    pub fn push(
        &self,
        author: Author,
        text: String,
        blocks: Option<Value>,
        ephemeral: bool,
        thread_ts: Option<String>,
        pending: bool,
    ) -> Message {
        let message = {
            let mut messages = self.lock();
            messages.next_id += 1;
            let id = messages.next_id;
            let now = chrono::Utc::now();
            let message = Message {
                id,
                // Unique per message even within one second: the id is in the micros.
                ts: format!("{}.{:06}", now.timestamp(), id % 1_000_000),
                author,
                text,
                blocks,
                ephemeral,
                thread_ts,
                revision: 0,
                pending,
            };
            messages.list.push(message.clone());
            let excess = messages.list.len().saturating_sub(MAX_MESSAGES);
            messages.list.drain(..excess);
            message
        };
        if !pending {
            self.changed();
        }
        message
    }

    pub fn note(&self, text: impl Into<String>) {
        self.push(Author::Playground, text.into(), None, true, None, false);
    }

    pub fn get(&self, id: u64) -> Option<Message> {
        self.lock().list.iter().find(|m| m.id == id).cloned()
    }

    /// Fills a pending message with the bot's first answer; `false` when it was answered
    /// already (a `response_url` post won the race) or is gone.
    pub fn fill(&self, id: u64, body: &Value) -> bool {
        let filled = {
            let mut messages = self.lock();
            match messages.list.iter_mut().find(|m| m.id == id && m.pending) {
                Some(m) => {
                    set_content(m, body);
                    m.ephemeral = body["response_type"] != "in_channel";
                    m.pending = false;
                    true
                }
                None => false,
            }
        };
        if filled {
            self.changed();
        }
        filled
    }

    pub fn remove(&self, id: u64) {
        let removed = {
            let mut messages = self.lock();
            let before = messages.list.len();
            messages.list.retain(|m| m.id != id);
            messages.list.len() != before
        };
        if removed {
            self.changed();
        }
    }

    /// What Slack does with a post to the `response_url` of message `id`.
    pub fn respond(&self, id: u64, body: &Value) -> Result<(), &'static str> {
        let mut messages = self.lock();
        let Some(index) = messages.list.iter().position(|m| m.id == id) else {
            return Err("expired_url");
        };
        if body["delete_original"] == true {
            messages.list.remove(index);
        } else if body["replace_original"] == true {
            let m = &mut messages.list[index];
            if m.pending {
                m.pending = false;
            } else {
                m.revision += 1;
            }
            set_content(m, body);
        } else {
            drop(messages);
            self.push(
                Author::Bot,
                text_of(body),
                body.get("blocks").cloned(),
                body["response_type"] != "in_channel",
                None,
                false,
            );
            return Ok(());
        }
        drop(messages);
        self.changed();
        Ok(())
    }

    fn has_ts(&self, ts: &str) -> bool {
        self.lock().list.iter().any(|m| m.ts == ts)
    }
}

fn text_of(body: &Value) -> String {
    body["text"].as_str().unwrap_or_default().to_owned()
}

fn set_content(m: &mut Message, body: &Value) {
    m.text = text_of(body);
    m.blocks = body.get("blocks").cloned();
}

impl SlackWorkspace for Workspace {
    fn post_message(&self, body: &Value) -> Result<String, &'static str> {
        if body["channel"] != CHANNEL_ID {
            return Err("channel_not_found");
        }
        let thread_ts = body["thread_ts"].as_str().map(str::to_owned);
        if thread_ts.as_deref().is_some_and(|ts| !self.has_ts(ts)) {
            return Err("thread_not_found");
        }
        let message = self.push(
            Author::Bot,
            text_of(body),
            body.get("blocks").cloned(),
            false,
            thread_ts,
            false,
        );
        Ok(message.ts)
    }

    fn respond(&self, id: &str, body: &Value) -> Result<(), &'static str> {
        let Ok(id) = id.parse::<u64>() else {
            return Err("expired_url");
        };
        Workspace::respond(self, id, body)
    }

    fn share_file(
        &self,
        channel: &str,
        title: &str,
        comment: &str,
        size: usize,
    ) -> Result<(), &'static str> {
        if channel != CHANNEL_ID {
            return Err("channel_not_found");
        }
        // The file itself stays with the fake: the channel shows what Slack would.
        self.push(
            Author::Bot,
            format!("{comment}\n:page_facing_up: {title} (CSV, {size} bytes)"),
            None,
            false,
            None,
            false,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bot(workspace: &Workspace, text: &str) -> Message {
        workspace.push(Author::Bot, text.into(), Some(json!([])), true, None, false)
    }

    #[test]
    fn replace_original_replaces_the_message_and_counts_a_revision() {
        let w = Workspace::default();
        let m = bot(&w, "first");
        w.respond(
            m.id,
            &json!({"text": "second", "blocks": [], "replace_original": true}),
        )
        .unwrap();
        let (_, list) = w.snapshot();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].text.as_str(), list[0].revision, list[0].ephemeral),
            ("second", 1, true)
        );
    }

    #[test]
    fn in_channel_without_replace_posts_a_new_visible_message() {
        let w = Workspace::default();
        let m = bot(&w, "first");
        w.respond(
            m.id,
            &json!({"text": "shared", "response_type": "in_channel", "replace_original": false}),
        )
        .unwrap();
        let (_, list) = w.snapshot();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[1].text.as_str(), list[1].ephemeral),
            ("shared", false)
        );
    }

    #[test]
    fn delete_original_removes_it_and_an_unknown_message_is_an_expired_url() {
        let w = Workspace::default();
        let m = bot(&w, "first");
        w.respond(m.id, &json!({"delete_original": true})).unwrap();
        assert!(w.snapshot().1.is_empty());
        assert_eq!(w.respond(m.id, &json!({"text": "x"})), Err("expired_url"));
    }

    #[test]
    fn a_pending_answer_is_hidden_until_filled_and_filled_once() {
        let w = Workspace::default();
        let m = w.push(Author::Bot, String::new(), None, true, None, true);
        assert!(w.snapshot().1.is_empty());
        assert!(w.fill(m.id, &json!({"text": "answer", "blocks": []})));
        assert!(!w.fill(m.id, &json!({"text": "again"})));
        let (_, list) = w.snapshot();
        assert_eq!((list[0].text.as_str(), list[0].revision), ("answer", 0));
    }

    #[test]
    fn older_messages_are_dropped_beyond_the_limit() {
        let w = Workspace::default();
        for i in 0..MAX_MESSAGES + 5 {
            bot(&w, &i.to_string());
        }
        let (_, list) = w.snapshot();
        assert_eq!(list.len(), MAX_MESSAGES);
        assert_eq!(list[0].text, "5");
    }
}
