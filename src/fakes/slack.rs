//! A fake of Slack's side: the Web API's `chat.postMessage`, `views.publish` and
//! `usergroups.users.list` (from groups a test sets), and `response_url`s. It records
//! what the bot sends, answers as Slack does (`{"ok": true}`, `ok`), and can rate-limit
//! (429 with `Retry-After`) or refuse (`{"ok": false, "error": ...}`).
//!
//! The one implementation of each Slack method the bot calls: the tests use it as it is, and
//! the playground (`serve --demo`) starts it with a [`SlackWorkspace`] that draws what the bot
//! sends in its channel.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Server, lock};

/// Slack refuses larger messages; so does the fake.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Calls kept for [`FakeSlack::calls`]: a playground runs for days.
const MAX_RECORDED: usize = 10_000;

/// A workspace that shows what the bot sends (the playground's channel, drawn in a browser).
/// The fake checks each call as Slack would, records it, then hands it over; each method
/// answers as Slack does, `Err` with Slack's error code.
pub trait SlackWorkspace: Send + Sync + 'static {
    /// `chat.postMessage`: the new message's `ts`.
    fn post_message(&self, body: &Value) -> Result<String, &'static str>;
    /// A post to the `response_url` with this id (what [`FakeSlack::response_url`] was given).
    fn respond(&self, id: &str, body: &Value) -> Result<(), &'static str>;
    /// `files.completeUploadExternal`: a file of `size` bytes shared in `channel`.
    fn share_file(
        &self,
        channel: &str,
        title: &str,
        comment: &str,
        size: usize,
    ) -> Result<(), &'static str>;
}

/// One call the bot made.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// `chat.postMessage`, `views.publish`, or `response_url:<id>`.
    pub target: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// One open Socket Mode connection, as Slack's side sees it.
struct SocketConnection {
    id: u32,
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    /// Told to `disconnect`, or gone silent: no more envelopes are sent on it.
    retired: bool,
}

/// What the fake does next on one connection.
enum Outgoing {
    Text(String),
    /// Sends `disconnect`, then closes the connection after this long, as Slack does.
    Disconnect(std::time::Duration),
    /// Stops reading and writing, keeping the TCP connection open: a half-open socket, which
    /// answers no ping.
    Silence,
    /// Closes the TCP connection at once, as a network failure would.
    Drop,
}

#[derive(Default)]
struct SlackState {
    /// Socket Mode: where the socket listens, the sender into the open socket, the acks
    /// received and how many connections were opened.
    socket_url: Mutex<String>,
    sockets: Mutex<Vec<SocketConnection>>,
    acks: Mutex<Vec<Value>>,
    connections: AtomicU32,
    /// `apps.connections.open` answers `{"ok": false}` with this error.
    refuse_connections: Mutex<Option<String>>,
    /// Acks and calls, in the order they arrived: `ack:<envelope_id>`, or the call's target.
    timeline: Mutex<Vec<String>>,
    calls: Mutex<Vec<SlackCall>>,
    /// After recording the next N Web API calls, answer late or with a 5xx (`after_accepting`).
    after_accepting: Mutex<Option<(u32, AfterAccepting)>>,
    /// Answer the next N Web API calls with 429 and this Retry-After.
    rate_limited: AtomicU32,
    retry_after: AtomicU32,
    /// Rate limit with HTTP 200 `{"ok": false, "error": "ratelimited"}` instead of a 429.
    rate_limit_in_body: std::sync::atomic::AtomicBool,
    error: Mutex<Option<String>>,
    /// This fake's base URL, for the upload URLs it hands out.
    base_url: Mutex<String>,
    /// File id -> the length announced by `files.getUploadURLExternal`, and the length
    /// received at the upload URL.
    uploads: Mutex<std::collections::HashMap<String, (usize, Option<usize>)>>,
    /// Channels the bot is not a member of: posting or sharing a file there fails with
    /// `not_in_channel`.
    not_in_channel: Mutex<Vec<String>>,
    /// The bot scopes `auth.test` reports in `x-oauth-scopes`; `None`: the manifest's.
    scopes: Mutex<Option<Vec<String>>>,
    /// `auth.test` calls so far (not in `calls`: they are checks, not messages).
    auth_tests: AtomicU32,
    /// Where accepted messages and files go, when something shows them.
    workspace: Option<Arc<dyn SlackWorkspace>>,
    /// The only bot token the Web API accepts; `None`: any.
    bot_token: Option<String>,
    /// User groups (`S…` id -> member user ids) that `usergroups.users.list` answers from.
    usergroups: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// `usergroups.users.list` fails so, while set.
    usergroups_failure: Mutex<Option<UsergroupFailure>>,
    /// `usergroups.users.list` calls so far, failed ones included (not in `calls`: they are
    /// reads, not messages).
    usergroup_lookups: AtomicU32,
}

/// How `usergroups.users.list` fails, as Slack can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsergroupFailure {
    /// `{"ok": false, "error": ...}`: `missing_scope`, `no_such_subteam`, `invalid_auth`...
    Error(String),
    /// This HTTP status, with no Slack answer (a 500 from an overloaded Slack).
    Status(u16),
    /// 429 with `Retry-After` of this many seconds.
    RateLimited(u32),
}

/// What the Web API does with a call it has recorded (so, as far as Slack is concerned,
/// accepted), instead of answering at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAccepting {
    /// Answers `{"ok": true}` only after this long: longer than the client waits.
    AnswerAfter(std::time::Duration),
    /// Answers with this 5xx status, as a load balancer does when Slack is slow.
    Status(u16),
}

pub struct FakeSlack {
    state: Arc<SlackState>,
    server: Server,
    socket_task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.socket_task.abort();
    }
}

impl FakeSlack {
    pub async fn start() -> std::io::Result<Self> {
        Self::serve(SlackState::default()).await
    }

    /// A fake whose accepted messages and files go to `workspace`, and whose Web API takes
    /// only `bot_token`.
    pub async fn start_with(
        workspace: Arc<dyn SlackWorkspace>,
        bot_token: &str,
    ) -> std::io::Result<Self> {
        Self::serve(SlackState {
            workspace: Some(workspace),
            bot_token: Some(bot_token.to_owned()),
            ..SlackState::default()
        })
        .await
    }

    async fn serve(state: SlackState) -> std::io::Result<Self> {
        let state = Arc::new(state);
        let router = axum::Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/views.publish", post(views_publish))
            .route("/api/apps.connections.open", post(connections_open))
            .route("/api/auth.test", post(auth_test))
            .route(
                "/api/files.getUploadURLExternal",
                post(get_upload_url_external),
            )
            .route(
                "/api/files.completeUploadExternal",
                post(complete_upload_external),
            )
            .route("/api/conversations.open", post(conversations_open))
            .route("/api/usergroups.users.list", post(usergroups_users_list))
            .route("/response/{id}", post(response_url))
            .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
            // Files are not messages: the upload URL takes more.
            .route("/upload/{id}", post(upload))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        *lock(&state.socket_url) = format!("ws://{}/link", listener.local_addr()?);
        let socket_task = tokio::spawn(accept_sockets(listener, state.clone()));
        let server = Server::start(router).await?;
        *lock(&state.base_url) = server.url.clone();
        Ok(FakeSlack {
            state,
            server,
            socket_task,
        })
    }

    /// `host:port` where the fake listens (for SLACK_RESPONSE_URL_HOSTS).
    pub fn host(&self) -> &str {
        self.server
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
    }

    /// SLACK_API_URL for the bot.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.url)
    }

    /// A `response_url` on this fake.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.server.url)
    }

    pub fn calls(&self) -> Vec<SlackCall> {
        lock(&self.state.calls).clone()
    }

    /// The calls made to one target (`views.publish`, `chat.postMessage`, ...), in order.
    pub fn calls_to(&self, target: &str) -> Vec<SlackCall> {
        lock(&self.state.calls)
            .iter()
            .filter(|c| c.target == target)
            .cloned()
            .collect()
    }

    /// The next `times` Web API calls get 429 with `Retry-After: seconds`.
    pub fn rate_limit(&self, times: u32, seconds: u32) {
        self.state.rate_limit_in_body.store(false, Ordering::SeqCst);
        self.state.retry_after.store(seconds, Ordering::SeqCst);
        self.state.rate_limited.store(times, Ordering::SeqCst);
    }

    /// The next `times` Web API calls get `{"ok": false, "error": "ratelimited"}` with
    /// `Retry-After: seconds`, the form some methods answer with.
    pub fn rate_limit_in_body(&self, times: u32, seconds: u32) {
        self.rate_limit(times, seconds);
        self.state.rate_limit_in_body.store(true, Ordering::SeqCst);
    }

    /// The next `times` Web API calls are recorded (the post is made) and then answered as
    /// `how` says.
    pub fn after_accepting(&self, times: u32, how: AfterAccepting) {
        *lock(&self.state.after_accepting) = Some((times, how));
    }

    /// Socket Mode: sends an envelope on one open connection (the newest one not retired), as
    /// Slack does; `false` if none is open.
    pub fn socket_send(&self, envelope: &Value) -> bool {
        let sockets = lock(&self.state.sockets);
        sockets
            .iter()
            .rev()
            .find(|c| !c.retired)
            .is_some_and(|c| c.tx.send(Outgoing::Text(envelope.to_string())).is_ok())
    }

    /// Socket Mode: sends the same envelope on every open connection (Slack redelivering it);
    /// how many connections it went to.
    pub fn socket_send_all(&self, envelope: &Value) -> usize {
        lock(&self.state.sockets)
            .iter()
            .filter(|c| !c.retired)
            .filter(|c| c.tx.send(Outgoing::Text(envelope.to_string())).is_ok())
            .count()
    }

    /// Socket Mode: drops the newest open connection, as a network failure would.
    pub fn socket_drop(&self) {
        self.on_newest(Outgoing::Drop);
    }

    /// Socket Mode: sends `disconnect` (`refresh_requested`) on the newest connection and
    /// closes it `grace` later; no more envelopes go to it meanwhile.
    pub fn socket_disconnect(&self, grace: std::time::Duration) {
        self.on_newest(Outgoing::Disconnect(grace));
    }

    /// Socket Mode: every open connection goes silent (half-open): nothing read, nothing
    /// written, no pong.
    pub fn socket_silence_all(&self) {
        for connection in lock(&self.state.sockets).iter_mut() {
            connection.retired = true;
            let _ = connection.tx.send(Outgoing::Silence);
        }
    }

    fn on_newest(&self, outgoing: Outgoing) {
        let mut sockets = lock(&self.state.sockets);
        if let Some(connection) = sockets.iter_mut().rev().find(|c| !c.retired) {
            connection.retired = true;
            let _ = connection.tx.send(outgoing);
        }
    }

    /// Socket Mode: the acks received, in order.
    pub fn socket_acks(&self) -> Vec<Value> {
        lock(&self.state.acks).clone()
    }

    /// Socket Mode: connections opened so far.
    pub fn socket_connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Socket Mode: connections open now and not retired (silenced or told to disconnect).
    pub fn socket_open(&self) -> usize {
        lock(&self.state.sockets)
            .iter()
            .filter(|c| !c.retired)
            .count()
    }

    /// `apps.connections.open` fails with `error` (`None`: works again).
    pub fn refuse_connections(&self, error: Option<&str>) {
        *lock(&self.state.refuse_connections) = error.map(str::to_owned);
    }

    /// Acks (`ack:<envelope_id>`) and calls (their target), in the order they arrived.
    pub fn timeline(&self) -> Vec<String> {
        lock(&self.state.timeline).clone()
    }

    /// Posting a message or sharing a file in `channel` fails with `not_in_channel`, as for a
    /// channel the bot has not joined.
    pub fn not_in_channel(&self, channel: &str) {
        lock(&self.state.not_in_channel).push(channel.to_owned());
    }

    /// The bytes uploaded for a file id, as text.
    pub fn uploaded(&self, file_id: &str) -> Option<String> {
        self.calls()
            .into_iter()
            .find(|c| c.target == format!("upload:{file_id}"))
            .and_then(|c| c.body.as_str().map(str::to_owned))
    }

    /// The bot scopes granted, as `auth.test` reports them in `x-oauth-scopes`.
    pub fn grant_scopes(&self, scopes: &[&str]) {
        *lock(&self.state.scopes) = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
    }

    /// `auth.test` calls so far.
    pub fn auth_tests(&self) -> u32 {
        self.state.auth_tests.load(Ordering::SeqCst)
    }

    /// Web API calls answer `{"ok": false, "error": error}`.
    pub fn fail_with(&self, error: &str) {
        *lock(&self.state.error) = Some(error.to_owned());
    }

    /// The user group `id` has these members from now on (`usergroups.users.list`).
    pub fn set_usergroup(&self, id: &str, members: &[&str]) {
        lock(&self.state.usergroups).insert(
            id.to_owned(),
            members.iter().map(|m| (*m).to_owned()).collect(),
        );
    }

    /// `usergroups.users.list` fails as `failure` says from now on; `None`: it answers again.
    pub fn fail_usergroups(&self, failure: Option<UsergroupFailure>) {
        *lock(&self.state.usergroups_failure) = failure;
    }

    /// `usergroups.users.list` calls so far, failed ones included.
    pub fn usergroup_lookups(&self) -> u32 {
        self.state.usergroup_lookups.load(Ordering::SeqCst)
    }
}

fn record(state: &SlackState, target: String, headers: &HeaderMap, body: Value) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut timeline = lock(&state.timeline);
    timeline.push(target.clone());
    let excess = timeline.len().saturating_sub(MAX_RECORDED);
    timeline.drain(..excess);
    let mut calls = lock(&state.calls);
    calls.push(SlackCall {
        target,
        authorization,
        body,
    });
    let excess = calls.len().saturating_sub(MAX_RECORDED);
    calls.drain(..excess);
}

/// `invalid_auth`, as Slack answers, when the fake takes one bot token and this is not it.
fn refuse_token(state: &SlackState, headers: &HeaderMap) -> Option<Response> {
    let expected = state.bot_token.as_deref()?;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (token != Some(expected))
        .then(|| Json(json!({"ok": false, "error": "invalid_auth"})).into_response())
}

fn slack_error(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

async fn post_message(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    let channel = body["channel"].as_str().unwrap_or_default();
    let outsider = lock(&state.not_in_channel).iter().any(|c| c == channel);
    let response = match (
        web_api_call(&state, "chat.postMessage", headers, body.clone()),
        &state.workspace,
    ) {
        (None, _) if outsider => slack_error("not_in_channel"),
        (None, Some(workspace)) => match workspace.post_message(&body) {
            Ok(ts) => {
                Json(json!({"ok": true, "channel": body["channel"], "ts": ts})).into_response()
            }
            Err(error) => slack_error(error),
        },
        (None, None) => Json(json!({"ok": true, "ts": "1700000000.000100"})).into_response(),
        (Some(answered), _) => answered,
    };
    after_accepting(&state, response).await
}

/// Slack checks the arguments of `views.publish`: a user id and a `home` view with at most
/// 100 blocks; anything else is `invalid_arguments`, as Slack answers.
async fn views_publish(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let user_ok = body["user_id"].as_str().is_some_and(|u| !u.is_empty());
    let view_ok = body["view"]["type"] == "home"
        && body["view"]["blocks"]
            .as_array()
            .is_some_and(|b| b.len() <= 100);
    if !(user_ok && view_ok) {
        return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
    }
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    let response = web_api_call(&state, "views.publish", headers, body)
        .unwrap_or_else(|| Json(json!({"ok": true, "view": {"id": "V0HOME"}})).into_response());
    after_accepting(&state, response).await
}

/// A recorded call's answer, late or replaced when `FakeSlack::after_accepting` says so.
async fn after_accepting(state: &SlackState, response: Response) -> Response {
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let how = {
        let mut slot = lock(&state.after_accepting);
        let how = slot.as_ref().map(|(_, how)| *how);
        if let Some((times, _)) = slot.as_mut() {
            *times -= 1;
            if *times == 0 {
                *slot = None;
            }
        }
        how
    };
    match how {
        None => response,
        Some(AfterAccepting::AnswerAfter(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        Some(AfterAccepting::Status(status)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "upstream request timeout",
        )
            .into_response(),
    }
}

/// Rate limits and records one Web API call: the answer when it is not accepted
/// (rate-limited, or refused with the error `fail_with` set), `None` when it is.
fn web_api_call(
    state: &SlackState,
    method: &str,
    headers: HeaderMap,
    body: Value,
) -> Option<Response> {
    let limited = state
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        let wait = state.retry_after.load(Ordering::SeqCst).to_string();
        if state.rate_limit_in_body.load(Ordering::SeqCst) {
            let body = Json(json!({"ok": false, "error": "ratelimited"}));
            return Some(([("retry-after", wait)], body).into_response());
        }
        return Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", wait)], "").into_response());
    }
    record(state, method.to_owned(), &headers, body);
    lock(&state.error).clone().map(|error| slack_error(&error))
}

async fn response_url(
    State(state): State<Arc<SlackState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, format!("response_url:{id}"), &headers, body.clone());
    match state.workspace.as_ref().map(|w| w.respond(&id, &body)) {
        Some(Err(error)) => slack_error(error),
        Some(Ok(())) | None => "ok".into_response(),
    }
}

/// `auth.test`: who the token is, and (as Slack does for a bot token) the granted scopes in
/// the `x-oauth-scopes` header. A token that is not `xoxb-` is `invalid_auth`.
async fn auth_test(State(state): State<Arc<SlackState>>, headers: HeaderMap) -> Response {
    state.auth_tests.fetch_add(1, Ordering::SeqCst);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if let Some(error) = lock(&state.error).clone() {
        return Json(json!({"ok": false, "error": error})).into_response();
    }
    if !token.starts_with("xoxb-") {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let scopes = lock(&state.scopes).clone().unwrap_or_else(|| {
        crate::slack::manifest::bot_scopes()
            .into_iter()
            .map(str::to_owned)
            .collect()
    });
    let body = json!({
        "ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "crm-username",
        "team_id": "T0FAKE", "user_id": "U0BOT", "bot_id": "B0BOT", "is_enterprise_install": false,
    });
    ([("x-oauth-scopes", scopes.join(","))], Json(body)).into_response()
}

async fn connections_open(State(state): State<Arc<SlackState>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !token.starts_with("xapp-") {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    if let Some(error) = lock(&state.refuse_connections).clone() {
        return Json(json!({"ok": false, "error": error})).into_response();
    }
    let url = lock(&state.socket_url).clone();
    Json(json!({"ok": true, "url": url})).into_response()
}

async fn accept_sockets(listener: tokio::net::TcpListener, state: Arc<SlackState>) {
    while let Ok((stream, _)) = listener.accept().await {
        let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
            continue;
        };
        let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        lock(&state.sockets).push(SocketConnection {
            id,
            tx,
            retired: false,
        });
        let state = state.clone();
        tokio::spawn(async move {
            serve_socket(socket, rx, &state).await;
            lock(&state.sockets).retain(|c| c.id != id);
        });
    }
}

/// One connection: `hello`, then envelopes out and acks in until it closes.
async fn serve_socket(
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    state: &SlackState,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut stream) = socket.split();
    let open = lock(&state.sockets).len();
    let hello = json!({"type": "hello", "num_connections": open});
    if sink
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut closes_at: Option<tokio::time::Instant> = None;
    loop {
        let close = async {
            match closes_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Disconnect(grace)) => {
                    let disconnect = json!({"type": "disconnect", "reason": "refresh_requested"});
                    if sink.send(Message::Text(disconnect.to_string().into())).await.is_err() {
                        return;
                    }
                    closes_at = Some(tokio::time::Instant::now() + grace);
                }
                Some(Outgoing::Silence) => {
                    // Hold the TCP connection without reading it (so without answering
                    // pings) until the fake goes or a minute passes.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv()).await;
                    return;
                }
                Some(Outgoing::Drop) | None => return,
            },
            () = close => {
                let _ = sink.send(Message::Close(None)).await;
                return;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ack) = serde_json::from_str::<Value>(text.as_str()) {
                        let id = ack["envelope_id"].as_str().unwrap_or_default();
                        lock(&state.timeline).push(format!("ack:{id}"));
                        lock(&state.acks).push(ack);
                    }
                }
                // Pings are answered by tungstenite itself, as Slack answers them.
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// `files.getUploadURLExternal`: form-encoded `filename` and `length`, as Slack requires.
async fn get_upload_url_external(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    record(
        &state,
        "files.getUploadURLExternal".to_owned(),
        &headers,
        json!(form),
    );
    let length = form.get("length").and_then(|l| l.parse::<usize>().ok());
    let (Some(_), Some(length)) = (form.get("filename"), length) else {
        return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
    };
    let mut uploads = lock(&state.uploads);
    let file_id = format!("F{:08}", uploads.len() + 1);
    uploads.insert(file_id.clone(), (length, None));
    let upload_url = format!("{}/upload/{file_id}", lock(&state.base_url));
    Json(json!({"ok": true, "upload_url": upload_url, "file_id": file_id})).into_response()
}

/// The upload URL: takes the bytes, refuses a length other than the one announced.
async fn upload(
    State(state): State<Arc<SlackState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    record(
        &state,
        format!("upload:{id}"),
        &headers,
        Value::String(String::from_utf8_lossy(&body).into_owned()),
    );
    match lock(&state.uploads).get_mut(&id) {
        Some((length, received)) if *length == body.len() => {
            *received = Some(body.len());
            format!("OK - {length}").into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "length mismatch or unknown file").into_response(),
    }
}

async fn complete_upload_external(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    record(
        &state,
        "files.completeUploadExternal".to_owned(),
        &headers,
        body.clone(),
    );
    let channel = body["channel_id"].as_str().unwrap_or_default();
    if lock(&state.not_in_channel).iter().any(|c| c == channel) {
        return slack_error("not_in_channel");
    }
    // Shared only once its bytes arrived, as Slack does.
    let received = body["files"][0]["id"].as_str().and_then(|id| {
        lock(&state.uploads)
            .get(id)
            .and_then(|(_, received)| *received)
    });
    let Some(size) = received else {
        return slack_error("file_not_found");
    };
    if let Some(workspace) = &state.workspace {
        let title = body["files"][0]["title"].as_str().unwrap_or("file");
        let comment = body["initial_comment"].as_str().unwrap_or_default();
        if let Err(error) = workspace.share_file(channel, title, comment, size) {
            return slack_error(error);
        }
    }
    Json(json!({"ok": true, "files": body["files"]})).into_response()
}

async fn conversations_open(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    record(
        &state,
        "conversations.open".to_owned(),
        &headers,
        body.clone(),
    );
    let user = body["users"].as_str().unwrap_or_default();
    Json(json!({"ok": true, "channel": {"id": format!("D{user}")}})).into_response()
}

/// `usergroups.users.list`: the members of the user group in the form field `usergroup`, as
/// `{"ok": true, "users": [...]}`; an unknown group is `no_such_subteam`, as Slack answers.
async fn usergroups_users_list(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.usergroup_lookups.fetch_add(1, Ordering::SeqCst);
    if let Some(refused) = refuse_token(&state, &headers) {
        return refused;
    }
    if !headers.contains_key("authorization") {
        return slack_error("not_authed");
    }
    match lock(&state.usergroups_failure).clone() {
        Some(UsergroupFailure::Error(error)) => return slack_error(&error),
        Some(UsergroupFailure::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "internal error").into_response();
        }
        Some(UsergroupFailure::RateLimited(seconds)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                "",
            )
                .into_response();
        }
        None => {}
    }
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(id) = form.get("usergroup").filter(|id| !id.is_empty()) else {
        return slack_error("invalid_arguments");
    };
    match lock(&state.usergroups).get(id) {
        Some(users) => Json(json!({"ok": true, "users": users})).into_response(),
        None => slack_error("no_such_subteam"),
    }
}
