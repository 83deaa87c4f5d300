//! The local playground of `serve --demo`: a page at `/` where a person types what they would
//! type in Slack and sees the bot's reply drawn close to Slack's look, buttons included.
//!
//! The page never calls the bot's handlers directly. The playground builds the exact requests
//! Slack would send (a slash command form, a `payload=` block_actions or message_action form,
//! an `app_mention` event), signs them with a secret of its own, and passes them through the same router and
//! middleware as Slack's requests (`server::router`, signature check first). Its bot talks back
//! to the Slack fake ([`FakeSlack`], the same one the tests use) on a loopback port of its own:
//! `response_url`s and the Web API (`chat.postMessage`, the file upload flow) land there, and
//! the fake hands them to the channel the page shows ([`workspace`]). The real `/slack/*`
//! routes keep the operator's secret and Slack settings untouched.
//!
//! Its bot has a store of its own, in memory, with its own copy of the demo org and its own
//! follow-ups, and its own follow-up job ([`Playground::run_follow_ups`]): the app's store
//! (memory or Redis) and the app's job never see the playground's follow-ups, and the
//! playground's job never sees the app's, which post to the operator's Slack. Two controls of
//! the page act on the playground only: "15 minutes pass" runs every pending follow-up now
//! (as its job would 15 minutes later), and "Assign nora.north" applies the demo's fix
//! ([`fix`]) to its copy of the org, so a follow-up can be seen to find it.

mod fix;
mod workspace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::fakes::FakeSlack;
use crate::render::escape_mrkdwn;
use crate::slack::followups::FollowUpSettings;
use crate::slack::{SlackSettings, SlackWebApi, signature};
use crate::state::AppState;
use crate::store::Store;
use workspace::{Author, Workspace};

/// The page, its script and styles inline; nothing is loaded from elsewhere.
const PAGE: &str = include_str!("page.html");
/// The playground's workspace, channel, person and bot, as Slack would name them.
pub const TEAM_ID: &str = "T0PLAYGROUND";
pub const CHANNEL_ID: &str = "C0PLAYGROUND";
pub const USER_ID: &str = "U0PLAYGROUND";
pub const BOT_USER_ID: &str = "U0CRMUSERNAME";
/// Only ever sent to the playground's own fake of the Web API.
const BOT_TOKEN: &str = "xoxb-playground";
const COMMAND: &str = "/crm-username";
/// What a person may type at once (the bot refuses longer input anyway).
const MAX_TYPED_BYTES: usize = 4_000;
/// How long the page's request for news waits before answering "nothing new".
const LONG_POLL: Duration = Duration::from_secs(20);

/// A random secret (two v4 UUIDs: 244 random bits), for the playground's requests and for a
/// demo started without `SLACK_SIGNING_SECRET`.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where to open the page of a server listening on `addr` (any address: this machine).
pub fn page_url(addr: std::net::SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/", addr.port())
}

pub struct Playground {
    /// The bot's routes over the playground's own state: what Slack's requests go through.
    bot: Router,
    /// That state: the playground's own store (its demo org and follow-ups) and Slack.
    state: AppState,
    workspace: Arc<Workspace>,
    secret: SecretString,
    /// Slack's side: stops when the playground goes.
    slack: FakeSlack,
    /// The demo's fix was applied to the playground's org.
    fixed: AtomicBool,
    /// One "15 minutes pass" at a time.
    passing: tokio::sync::Mutex<()>,
}

impl Playground {
    /// Starts the fake Slack side on a loopback port and a bot that answers from a store of its
    /// own holding the demo org, with follow-ups on (run by [`Playground::run_follow_ups`]).
    pub async fn start() -> std::io::Result<Arc<Self>> {
        // Its own store: what the playground schedules, only its job runs, and the other way
        // round; and its fix changes no org but its own.
        let store = Store::memory();
        let snapshot = crate::demo::snapshot(Utc::now()).map_err(std::io::Error::other)?;
        store
            .publish(snapshot)
            .await
            .map_err(std::io::Error::other)?;
        let workspace = Arc::new(Workspace::default());
        let slack = FakeSlack::start_with(workspace.clone(), BOT_TOKEN).await?;
        let secret = random_secret();
        let settings = SlackSettings {
            signing_secrets: vec![SecretString::from(secret.clone())],
            allowed_team_ids: vec![TEAM_ID.to_owned()],
            // Admin-only commands can be tried; the demo has no live source to harm.
            admin_user_ids: vec![USER_ID.to_owned()],
            web: SlackWebApi::new(
                &slack.api_url(),
                Some(SecretString::from(BOT_TOKEN)),
                vec![slack.host().to_owned()],
            ),
        };
        // Follow-ups as `serve` has them: 15 minutes, 4 tries; "15 minutes pass" skips the wait.
        let state =
            AppState::new(store, None, settings).with_follow_ups(FollowUpSettings::default());
        let bot = crate::server::router(state.clone());
        Ok(Arc::new(Playground {
            bot,
            state,
            workspace,
            secret: SecretString::from(secret),
            slack,
            fixed: AtomicBool::new(false),
            passing: tokio::sync::Mutex::new(()),
        }))
    }

    /// The playground's follow-up job, on its own store, until `shutdown`: a follow-up left
    /// alone runs after 15 real minutes, as in Slack.
    pub async fn run_follow_ups(self: Arc<Self>, shutdown: CancellationToken) {
        crate::slack::followups::run(self.state.clone(), shutdown).await;
    }

    /// "15 minutes pass": every follow-up due within the delay (every pending one) is re-checked
    /// now and posts its answer; returns how many. The follow-ups' own times are untouched:
    /// the next re-check of one is due 15 real minutes later, or at the next press.
    async fn pass_time(&self) -> usize {
        let _one_at_a_time = self.passing.lock().await;
        let ahead = Utc::now()
            + chrono::Duration::from_std(self.state.follow_ups.delay).unwrap_or_default();
        let ran = match crate::slack::followups::run_due(&self.state, ahead).await {
            Ok(ran) => ran,
            Err(err) => {
                self.workspace.note(escape_mrkdwn(&format!(
                    "The follow-ups could not be read: {err}"
                )));
                return 0;
            }
        };
        if ran == 0 {
            self.workspace.note(format!(
                ":fast_forward: {} minutes passed, and no follow-up was pending. Press *Re-check in {} min* on an answer first (try `@crm-username check {}`).",
                self.state.follow_ups.minutes(),
                self.state.follow_ups.minutes(),
                fix::USERNAME
            ));
        }
        ran
    }

    /// Applies the demo's fix to the playground's org (nobody else's), and says so.
    async fn apply_fix(&self) -> Result<(), String> {
        let query = crate::domain::Query::parse(fix::USERNAME).map_err(|e| e.to_string())?;
        let org = self
            .state
            .store
            .query_org(&query)
            .await
            .map_err(|e| e.to_string())?;
        let mut snapshot = org.snapshot().clone();
        drop(org);
        let changed = fix::assign(&mut snapshot)?;
        if changed {
            self.state
                .store
                .publish(snapshot)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.fixed.store(true, Ordering::SeqCst);
        if changed {
            self.workspace.note(format!(
                ":wrench: In this playground's demo org (nowhere else), {} was added to the public group *{}*, which Acme EMEA assigns to its Marketing section: she is now assigned to Acme EMEA. *Re-check now*, or a follow-up's next re-check, finds it.",
                fix::USERNAME,
                fix::GROUP
            ));
        }
        Ok(())
    }

    /// `GET /` and the page's API under `/playground/api/`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/playground/api/messages", get(messages))
            .route("/playground/api/say", post(say))
            .route("/playground/api/click", post(click))
            .route("/playground/api/shortcut", post(shortcut))
            .route("/playground/api/pass-time", post(pass_time))
            .route("/playground/api/fix", post(apply_fix))
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(self.clone())
    }

    fn response_url(&self, message_id: u64) -> String {
        self.slack.response_url(&message_id.to_string())
    }

    /// Signs `body` as Slack would and runs it through the bot's router.
    async fn send_signed(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let ts = Utc::now().timestamp().to_string();
        let signature = signature::sign(self.secret.expose_secret(), &ts, body.as_bytes());
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .header(signature::TIMESTAMP_HEADER, ts)
            .header(signature::SIGNATURE_HEADER, signature)
            .body(Body::from(body));
        let Ok(request) = request else {
            return (StatusCode::INTERNAL_SERVER_ERROR, Value::Null);
        };
        let response = match self.bot.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    fn note_failure(&self, what: &str, status: StatusCode, body: &Value) {
        let body = match body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.workspace.note(escape_mrkdwn(&format!(
            "The bot answered the {what} with HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        )));
    }

    /// A slash command: the person's line, then the bot's answer in its place.
    async fn command(&self, text: &str) {
        self.workspace.push(
            Author::Person,
            escape_mrkdwn(&format!("{COMMAND} {text}")),
            None,
            true,
            None,
            false,
        );
        let answer = self
            .workspace
            .push(Author::Bot, String::new(), None, true, None, true);
        let form = serde_urlencoded::to_string([
            ("token", "playground"),
            ("team_id", TEAM_ID),
            ("team_domain", "playground"),
            ("channel_id", CHANNEL_ID),
            ("channel_name", "playground"),
            ("user_id", USER_ID),
            ("user_name", "you"),
            ("command", COMMAND),
            // Slack escapes &, < and > in what people type.
            ("text", &escape_mrkdwn(text)),
            ("api_app_id", "A0PLAYGROUND"),
            ("is_enterprise_install", "false"),
            ("response_url", &self.response_url(answer.id)),
            ("trigger_id", &trigger_id()),
        ])
        .unwrap_or_default();
        let (status, body) = self
            .send_signed("/slack/commands", "application/x-www-form-urlencoded", form)
            .await;
        if status == StatusCode::OK && body.is_object() {
            self.workspace.fill(answer.id, &body);
        } else {
            self.workspace.remove(answer.id);
            self.note_failure("slash command", status, &body);
        }
    }

    /// A message that mentions the bot: it answers in the message's thread.
    async fn mention(&self, text: &str) {
        let text = format!("<@{BOT_USER_ID}> {}", escape_mrkdwn(text));
        let message = self
            .workspace
            .push(Author::Person, text.clone(), None, false, None, false);
        let envelope = json!({
            "token": "playground",
            "team_id": TEAM_ID,
            "api_app_id": "A0PLAYGROUND",
            "type": "event_callback",
            "event_id": format!("Ev0PLAYGROUND{}", message.id),
            "event_time": Utc::now().timestamp(),
            "event": {
                "type": "app_mention",
                "user": USER_ID,
                "text": text,
                "ts": message.ts,
                "channel": CHANNEL_ID,
                "event_ts": message.ts,
            },
        });
        let (status, body) = self
            .send_signed("/slack/events", "application/json", envelope.to_string())
            .await;
        if status != StatusCode::OK {
            self.note_failure("mention", status, &body);
        }
    }

    /// A plain message in the channel (a ticket, say): nothing is sent to the bot until someone
    /// uses a shortcut on it.
    fn post(&self, text: &str) {
        self.workspace.push(
            Author::Person,
            escape_mrkdwn(text),
            None,
            false,
            None,
            false,
        );
    }

    /// The "Check CRM username" message shortcut used on a message of the channel, as Slack
    /// reports it (`message_action`); its `response_url` answers next to that message.
    async fn shortcut(&self, message_id: u64) -> Result<(), &'static str> {
        let message = self
            .workspace
            .get(message_id)
            .filter(|m| !m.ephemeral && m.author != Author::Playground)
            .ok_or("there is no message with a shortcut menu there")?;
        let payload = message_action(&message, &self.response_url(message.id));
        self.send_interaction("message shortcut", payload).await
    }

    /// A click on a button of a bot message, as Slack reports it (URL buttons too).
    async fn click(&self, click: &Click) -> Result<(), &'static str> {
        let message = self
            .workspace
            .get(click.message_id)
            .filter(|m| m.author == Author::Bot)
            .ok_or("that message is gone")?;
        let payload = block_actions(
            &message,
            click.block,
            click.element,
            &self.response_url(message.id),
        )
        .ok_or("there is no button there")?;
        self.send_interaction("button click", payload).await
    }

    /// An interaction payload posted to `/slack/interactions` as Slack posts it: a form with
    /// one `payload` field, signed. A refusal is noted in the channel as `what`.
    async fn send_interaction(&self, what: &str, payload: Value) -> Result<(), &'static str> {
        let form = serde_urlencoded::to_string([("payload", payload.to_string())])
            .map_err(|_| "the interaction could not be encoded")?;
        let (status, body) = self
            .send_signed(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                form,
            )
            .await;
        if status != StatusCode::OK {
            self.note_failure(what, status, &body);
        }
        Ok(())
    }
}

fn trigger_id() -> String {
    format!(
        "{}.{}.{}",
        Utc::now().timestamp(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The `message_action` payload Slack sends when the "Check CRM username" shortcut is used on
/// `message`.
fn message_action(message: &workspace::Message, response_url: &str) -> Value {
    let user = match message.author {
        Author::Bot => BOT_USER_ID,
        _ => USER_ID,
    };
    let mut the_message = json!({
        "type": "message",
        "user": user,
        "ts": message.ts,
        "text": message.text,
        "team": TEAM_ID,
    });
    if let Some(thread_ts) = &message.thread_ts {
        the_message["thread_ts"] = json!(thread_ts);
    }
    if let Some(blocks) = &message.blocks {
        the_message["blocks"] = blocks.clone();
    }
    json!({
        "type": "message_action",
        "token": "playground",
        "action_ts": format!("{}.000000", Utc::now().timestamp()),
        "team": {"id": TEAM_ID, "domain": "playground"},
        "user": {"id": USER_ID, "username": "you", "name": "you", "team_id": TEAM_ID},
        "channel": {"id": CHANNEL_ID, "name": "playground"},
        "is_enterprise_install": false,
        "callback_id": crate::slack::shortcut::CALLBACK_ID,
        "trigger_id": trigger_id(),
        "message_ts": message.ts,
        "message": the_message,
        "response_url": response_url,
    })
}

/// The `block_actions` payload Slack sends for a click on the button at `block` (its
/// `element`, or its accessory when `None`) of `message`; `None` if there is no button there.
fn block_actions(
    message: &workspace::Message,
    block: usize,
    element: Option<usize>,
    response_url: &str,
) -> Option<Value> {
    let blocks = message.blocks.as_ref()?.as_array()?;
    let the_block = blocks.get(block)?;
    let button = match element {
        Some(i) => the_block["elements"].as_array()?.get(i)?,
        None => the_block.get("accessory")?,
    };
    if button["type"] != "button" {
        return None;
    }
    // Slack gives blocks without an id one of its own.
    let block_id = the_block["block_id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("playground-block-{block}"));
    let mut action = json!({
        "type": "button",
        "action_id": button["action_id"],
        "block_id": block_id,
        "text": button["text"],
        "action_ts": format!("{}.000000", Utc::now().timestamp()),
    });
    for field in ["value", "url", "style"] {
        if let Some(v) = button.get(field) {
            action[field] = v.clone();
        }
    }
    let mut payload = json!({
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "playground"},
        "user": {"id": USER_ID, "username": "you", "name": "you", "team_id": TEAM_ID},
        "api_app_id": "A0PLAYGROUND",
        "token": "playground",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": CHANNEL_ID,
            "is_ephemeral": message.ephemeral,
        },
        "trigger_id": trigger_id(),
        "channel": {"id": CHANNEL_ID, "name": "playground"},
        "response_url": response_url,
        "actions": [action],
    });
    // Slack includes the message itself only when it is not ephemeral.
    if !message.ephemeral {
        payload["message"] = json!({
            "type": "message",
            "user": BOT_USER_ID,
            "ts": message.ts,
            "text": message.text,
            "blocks": message.blocks,
        });
        // A reply in a thread says which: the follow-ups post in that thread.
        if let Some(thread_ts) = &message.thread_ts {
            payload["message"]["thread_ts"] = json!(thread_ts);
        }
    }
    Some(payload)
}

async fn page() -> Response {
    // A fresh nonce per page: only the page's own script runs, nothing injected could.
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        PAGE.replace("{{NONCE}}", &nonce),
    )
        .into_response()
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

/// The channel's messages: at once without `after`, otherwise once the version is past it (or
/// after a long-poll timeout).
async fn messages(State(playground): State<Arc<Playground>>, Query(q): Query<After>) -> Response {
    if let Some(after) = q.after {
        playground.workspace.wait_past(after, LONG_POLL).await;
    }
    let (version, messages) = playground.workspace.snapshot();
    Json(json!({
        "version": version,
        "you": USER_ID,
        "people": {USER_ID: "you", BOT_USER_ID: "crm-username"},
        "channel": {"id": CHANNEL_ID, "name": "playground"},
        "messages": messages,
        "fixed": playground.fixed.load(Ordering::SeqCst),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Said {
    text: String,
}

/// What a person typed: a command for `/crm-username`, a message mentioning the bot, or a
/// plain message (`ticket: …`, for the message shortcut).
#[derive(Debug, PartialEq, Eq)]
enum Typed<'a> {
    Command(&'a str),
    Mention(&'a str),
    Ticket(&'a str),
    OtherCommand(&'a str),
}

fn interpret(text: &str) -> Typed<'_> {
    let text = text.trim();
    let after = |prefix: &str| {
        let head = text.get(..prefix.len())?;
        let rest = &text[prefix.len()..];
        (head.eq_ignore_ascii_case(prefix)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace)))
        .then(|| rest.trim())
    };
    if let Some(rest) = after("@crm-username") {
        Typed::Mention(rest)
    } else if let Some(rest) = after("ticket:") {
        Typed::Ticket(rest)
    } else if let Some(rest) = after(COMMAND) {
        Typed::Command(rest)
    } else if text.starts_with('/') {
        Typed::OtherCommand(text.split_whitespace().next().unwrap_or(text))
    } else {
        Typed::Command(text)
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn say(State(playground): State<Arc<Playground>>, Json(said): Json<Said>) -> Response {
    let text = said.text.trim();
    if text.is_empty() {
        return bad_request("Type something first, e.g. check email_a@example.com");
    }
    if text.len() > MAX_TYPED_BYTES {
        return bad_request("That is longer than Slack would take from one message.");
    }
    match interpret(text) {
        Typed::Command(rest) => playground.command(rest).await,
        Typed::Mention(rest) => playground.mention(rest).await,
        Typed::Ticket(rest) if !rest.is_empty() => playground.post(text),
        Typed::Ticket(_) => return bad_request("Type the ticket after `ticket:`."),
        Typed::OtherCommand(name) => {
            playground.workspace.note(escape_mrkdwn(&format!(
                "{name} is not a command here: try `{COMMAND} check …` or `@crm-username check …`."
            )));
        }
    }
    Json(json!({"version": playground.workspace.version()})).into_response()
}

#[derive(Deserialize)]
struct Click {
    message_id: u64,
    block: usize,
    /// The button's place in an actions block; none for a section's accessory.
    element: Option<usize>,
}

async fn click(State(playground): State<Arc<Playground>>, Json(click): Json<Click>) -> Response {
    match playground.click(&click).await {
        Ok(()) => Json(json!({"version": playground.workspace.version()})).into_response(),
        Err(problem) => bad_request(problem),
    }
}

#[derive(Deserialize)]
struct Shortcut {
    message_id: u64,
}

async fn shortcut(
    State(playground): State<Arc<Playground>>,
    Json(shortcut): Json<Shortcut>,
) -> Response {
    match playground.shortcut(shortcut.message_id).await {
        Ok(()) => Json(json!({"version": playground.workspace.version()})).into_response(),
        Err(problem) => bad_request(problem),
    }
}

/// "15 minutes pass": answers once the pending follow-ups have posted their re-checks.
async fn pass_time(State(playground): State<Arc<Playground>>) -> Response {
    let ran = playground.pass_time().await;
    Json(json!({"version": playground.workspace.version(), "re_checked": ran})).into_response()
}

/// The demo's fix, applied to the playground's org.
async fn apply_fix(State(playground): State<Arc<Playground>>) -> Response {
    match playground.apply_fix().await {
        Ok(()) => Json(json!({"version": playground.workspace.version()})).into_response(),
        Err(problem) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("The fix could not be applied: {problem}")})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::prelude::SlackInteractionEvent;

    #[test]
    fn typed_text_is_a_command_a_mention_or_another_command() {
        assert_eq!(interpret("check a@b.com"), Typed::Command("check a@b.com"));
        assert_eq!(
            interpret(" /crm-username  check a@b.com "),
            Typed::Command("check a@b.com")
        );
        assert_eq!(
            interpret("@CRM-username check a@b.com"),
            Typed::Mention("check a@b.com")
        );
        assert_eq!(
            interpret("/crm-usernames x"),
            Typed::OtherCommand("/crm-usernames")
        );
        assert_eq!(interpret("/giphy cat"), Typed::OtherCommand("/giphy"));
        assert_eq!(
            interpret("Ticket: jane@acme.com is missing"),
            Typed::Ticket("jane@acme.com is missing")
        );
        assert_eq!(
            interpret("@crm-usernamex"),
            Typed::Command("@crm-usernamex")
        );
    }

    fn bot_message(ephemeral: bool) -> workspace::Message {
        let org = crate::demo::snapshot(Utc::now()).unwrap();
        let query =
            crate::domain::Query::parse("email_a@example.com for email_b@example.com").unwrap();
        let diagnosis =
            crate::diagnose::diagnose(&query, &crate::domain::Org::new(org), Utc::now()).unwrap();
        let message = crate::render::blocks(&diagnosis);
        workspace::Message {
            id: 7,
            ts: "1700000000.000007".into(),
            author: Author::Bot,
            text: message["text"].as_str().unwrap().into(),
            blocks: Some(message["blocks"].clone()),
            ephemeral,
            thread_ts: None,
            revision: 0,
            pending: false,
        }
    }

    #[test]
    fn a_click_becomes_the_block_actions_payload_slack_sends_and_the_bot_reads_it() {
        for ephemeral in [true, false] {
            let message = bot_message(ephemeral);
            let footer = message.blocks.as_ref().unwrap().as_array().unwrap().len() - 1;
            let payload =
                block_actions(&message, footer, Some(0), "http://127.0.0.1:1/response/7").unwrap();
            assert_eq!(payload["actions"][0]["action_id"], "recheck");
            assert_eq!(payload["actions"][0]["block_id"], "footer");
            assert_eq!(
                payload["actions"][0]["value"],
                "email_a@example.com for email_b@example.com"
            );
            assert_eq!(payload["message"].is_null(), ephemeral);
            let event: SlackInteractionEvent = serde_json::from_value(payload).unwrap();
            let SlackInteractionEvent::BlockActions(event) = event else {
                panic!("not read as block_actions");
            };
            assert_eq!(
                event.response_url.unwrap().0.as_str(),
                "http://127.0.0.1:1/response/7"
            );
        }
    }

    #[test]
    fn a_shortcut_becomes_the_message_action_payload_slack_sends_and_the_bot_reads_it() {
        let mut message = bot_message(false);
        message.thread_ts = Some("1700000000.000001".into());
        let payload = message_action(&message, "http://127.0.0.1:1/response/7");
        let payload = crate::slack::read_interaction(payload);
        let Some(SlackInteractionEvent::MessageAction(event)) = payload else {
            panic!("not read as message_action");
        };
        assert_eq!(event.callback_id.as_ref(), "check_crm_username");
        let read = event.message.unwrap();
        assert_eq!(read.origin.ts.as_ref(), "1700000000.000007");
        assert_eq!(read.origin.thread_ts.unwrap().as_ref(), "1700000000.000001");
        assert_eq!(read.content.text.as_deref(), Some(message.text.as_str()));
    }

    #[test]
    fn a_click_in_a_thread_says_which_thread_as_slack_does() {
        let mut message = bot_message(false);
        message.thread_ts = Some("1700000000.000001".into());
        let footer = message.blocks.as_ref().unwrap().as_array().unwrap().len() - 1;
        let payload =
            block_actions(&message, footer, Some(0), "http://127.0.0.1:1/response/7").unwrap();
        let event: SlackInteractionEvent = serde_json::from_value(payload).unwrap();
        let SlackInteractionEvent::BlockActions(event) = event else {
            panic!("not read as block_actions");
        };
        let origin = event.message.unwrap().origin;
        assert_eq!(origin.ts.as_ref(), "1700000000.000007");
        assert_eq!(origin.thread_ts.unwrap().as_ref(), "1700000000.000001");
    }

    #[test]
    fn a_click_where_there_is_no_button_is_refused() {
        let message = bot_message(true);
        // Block 0 is the header, 1 the summary section without an accessory.
        assert!(block_actions(&message, 0, Some(0), "u").is_none());
        assert!(block_actions(&message, 1, None, "u").is_none());
        assert!(block_actions(&message, 99, Some(0), "u").is_none());
    }
}
