//! The Slack side of the playground: one channel as a person sees it, and the calls Slack
//! receives from the bot (`response_url` posts, `chat.postMessage`, `chat.update`), applied
//! the way Slack applies them (`replace_original`, `delete_original`, `response_type`,
//! `thread_ts`). Served on its own loopback port, so only this process can post into it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{BOT_TOKEN, CHANNEL_ID};

/// Older messages are dropped beyond this, so a long-running demo stays small.
const MAX_MESSAGES: usize = 200;
/// Slack refuses larger messages; so does the playground.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

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
    /// Where this fake listens, for the upload URLs it hands out.
    base_url: Mutex<String>,
    /// File id -> (length announced, length received).
    uploads: Mutex<std::collections::HashMap<String, (usize, Option<usize>)>>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace {
            messages: Mutex::default(),
            version: watch::Sender::new(0),
            base_url: Mutex::default(),
            uploads: Mutex::default(),
        }
    }
}

impl Workspace {
    pub fn set_base_url(&self, url: String) {
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = url;
    }

    fn base_url(&self) -> String {
        self.base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn announce_upload(&self, length: usize) -> String {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("F{:08}", uploads.len() + 1);
        uploads.insert(id.clone(), (length, None));
        id
    }

    fn receive_upload(&self, id: &str, length: usize) -> bool {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match uploads.get_mut(id) {
            Some((announced, received)) if *announced == length => {
                *received = Some(length);
                true
            }
            _ => false,
        }
    }

    /// The size of a file whose bytes arrived.
    fn uploaded(&self, id: &str) -> Option<usize> {
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .and_then(|(_, received)| *received)
    }

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

    /// `chat.update`: replaces the message with `ts`.
    fn update(&self, ts: &str, body: &Value) -> bool {
        let updated = {
            let mut messages = self.lock();
            match messages
                .list
                .iter_mut()
                .find(|m| m.ts == ts && m.author == Author::Bot)
            {
                Some(m) => {
                    m.revision += 1;
                    set_content(m, body);
                    true
                }
                None => false,
            }
        };
        if updated {
            self.changed();
        }
        updated
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

/// The fake Slack endpoints the bot of the playground calls.
pub fn router(workspace: Arc<Workspace>) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/files.getUploadURLExternal",
            post(get_upload_url_external),
        )
        .route("/upload/{id}", post(upload))
        .route("/api/{method}", post(web_api))
        .route("/response/{id}", post(response_url))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(workspace)
}

async fn response_url(
    State(workspace): State<Arc<Workspace>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    match workspace.respond(id, &body) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(error) => Json(json!({"ok": false, "error": error})).into_response(),
    }
}

/// Whether the request carries the playground bot's token.
fn bot_token_in(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {BOT_TOKEN}"))
}

/// `files.getUploadURLExternal` (form-encoded, as Slack takes it): a URL on this fake.
async fn get_upload_url_external(
    State(workspace): State<Arc<Workspace>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    if !bot_token_in(&headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let Some(length) = form.get("length").and_then(|l| l.parse::<usize>().ok()) else {
        return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
    };
    let id = workspace.announce_upload(length);
    let base = workspace.base_url();
    Json(json!({"ok": true, "upload_url": format!("{base}/upload/{id}"), "file_id": id}))
        .into_response()
}

/// The upload URL: takes the bytes announced (and keeps only their size).
async fn upload(
    State(workspace): State<Arc<Workspace>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if workspace.receive_upload(&id, body.len()) {
        format!("OK - {}", body.len()).into_response()
    } else {
        (
            axum::http::StatusCode::BAD_REQUEST,
            "length mismatch or unknown file",
        )
            .into_response()
    }
}

/// The Web API methods a bot of this app calls; others answer `unknown_method`, as Slack does.
async fn web_api(
    State(workspace): State<Arc<Workspace>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !bot_token_in(&headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let channel = if method == "files.completeUploadExternal" {
        &body["channel_id"]
    } else {
        &body["channel"]
    };
    if channel != CHANNEL_ID {
        return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    let reply = match method.as_str() {
        "files.completeUploadExternal" => {
            let id = body["files"][0]["id"].as_str().unwrap_or_default();
            let Some(size) = workspace.uploaded(id) else {
                return Json(json!({"ok": false, "error": "file_not_found"})).into_response();
            };
            // The file itself stays on the server: the channel shows what Slack would.
            let title = body["files"][0]["title"].as_str().unwrap_or("file");
            let comment = body["initial_comment"].as_str().unwrap_or_default();
            workspace.push(
                Author::Bot,
                format!("{comment}\n:page_facing_up: {title} (CSV, {size} bytes)"),
                None,
                false,
                None,
                false,
            );
            json!({"ok": true, "files": [{"id": id, "title": title}]})
        }
        "chat.postMessage" | "chat.postEphemeral" => {
            let thread_ts = body["thread_ts"].as_str().map(str::to_owned);
            if thread_ts.as_deref().is_some_and(|ts| !workspace.has_ts(ts)) {
                return Json(json!({"ok": false, "error": "thread_not_found"})).into_response();
            }
            let ephemeral = method == "chat.postEphemeral";
            let message = workspace.push(
                Author::Bot,
                text_of(&body),
                body.get("blocks").cloned(),
                ephemeral,
                thread_ts,
                false,
            );
            if ephemeral {
                json!({"ok": true, "message_ts": message.ts})
            } else {
                json!({"ok": true, "channel": CHANNEL_ID, "ts": message.ts,
                       "message": {"type": "message", "text": message.text, "ts": message.ts}})
            }
        }
        "chat.update" => {
            let ts = body["ts"].as_str().unwrap_or_default();
            if workspace.update(ts, &body) {
                json!({"ok": true, "channel": CHANNEL_ID, "ts": ts, "text": text_of(&body)})
            } else {
                json!({"ok": false, "error": "message_not_found"})
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    Json(reply).into_response()
}

#[cfg(test)]
mod tests {
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
