//! Socket Mode: the same handlers, over WebSockets the bot opens to Slack, for installs with
//! no public URL. `apps.connections.open` (with the `xapp-` token) gives a `wss://` URL.
//!
//! Our own client, not slack-morphism's listener (docs/socket-mode.md says why in full): its
//! reader awaits each envelope's handler before it reads the next one, so one slow command
//! delays every envelope behind it, and it neither drops envelopes delivered twice across its
//! connections nor tells anyone whether it is connected. Here:
//! - two connections are kept open, so a `disconnect` (or a dropped socket) leaves no gap; a
//!   connection Slack asks to close is replaced at once and served until Slack closes it;
//! - every envelope is acknowledged at once on the connection it came on, and its work runs
//!   on its own task. A slash command's answer rides in its ack only when it is ready within
//!   [`INLINE_DEADLINE`], as over HTTP; otherwise it follows through `response_url`;
//! - an envelope id seen on either connection is handled once;
//! - each connection sends a ping every `ping_interval` and is replaced when no pong comes
//!   within `pong_timeout` (a half-open socket otherwise leaves the bot deaf);
//! - [`Health`] tells `/readyz` and `/healthz` how long no connection has been open.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackCommandEvent, SlackPushEvent};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{INLINE_DEADLINE, commands, events, interactions};
use crate::metrics::{
    SLACK_API_ERRORS, SOCKET_MODE_CONNECTIONS, SOCKET_MODE_DUPLICATES, SOCKET_MODE_RECONNECTS,
};
use crate::render;
use crate::state::AppState;

/// An envelope id seen within this long is a duplicate (Slack redelivers unacknowledged
/// envelopes within seconds; ten minutes covers both connections with room to spare).
const DEDUPE_WINDOW: Duration = Duration::from_secs(600);
/// A command whose reply is not ready by then is acked with "the answer follows" and answered
/// through `response_url`; a little over the HTTP path's deadline, which `check` applies
/// itself, so that `check` answers the same way over both.
const ACK_DEADLINE: Duration = INLINE_DEADLINE.saturating_add(Duration::from_millis(300));

#[derive(Debug, Clone)]
pub struct SocketModeConfig {
    /// Connections kept open at once (Slack allows up to 10).
    pub connections: usize,
    pub ping_interval: Duration,
    /// A connection whose pong does not come within this is replaced.
    pub pong_timeout: Duration,
    /// How long a connection Slack asked to close (`disconnect`) is still served while its
    /// replacement opens. Slack closes it sooner.
    pub drain: Duration,
    /// `/readyz` fails when no connection has been open for this long (or none ever was).
    pub not_ready_after: Duration,
    /// `/healthz` fails when no connection has been open for this long.
    pub unhealthy_after: Duration,
}

impl Default for SocketModeConfig {
    fn default() -> Self {
        SocketModeConfig {
            connections: 2,
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(30),
            not_ready_after: Duration::from_secs(10),
            unhealthy_after: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketModeError {
    #[error("apps.connections.open failed: {0}")]
    Open(String),
    #[error("the socket failed: {0}")]
    Socket(String),
}

/// Whether Socket Mode is connected, for the probes.
#[derive(Default)]
pub struct Health {
    enabled: AtomicBool,
    open: AtomicUsize,
    /// Since when no connection is open (start-up, or the last one closing); `None` while one
    /// is open.
    down_since: Mutex<Option<Instant>>,
    ever_connected: AtomicBool,
    thresholds: Mutex<(Duration, Duration)>,
}

impl Health {
    fn start(&self, config: &SocketModeConfig) {
        *lock(&self.thresholds) = (config.not_ready_after, config.unhealthy_after);
        *lock(&self.down_since) = Some(Instant::now());
        self.enabled.store(true, Ordering::SeqCst);
    }

    fn opened(&self) {
        let mut down = lock(&self.down_since);
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        *down = None;
        self.ever_connected.store(true, Ordering::SeqCst);
        metrics::gauge!(SOCKET_MODE_CONNECTIONS).set(open as f64);
    }

    fn closed(&self) {
        let mut down = lock(&self.down_since);
        let open = self.open.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        if open == 0 {
            *down = Some(Instant::now());
        }
        metrics::gauge!(SOCKET_MODE_CONNECTIONS).set(open as f64);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Why this pod cannot answer Slack, for `/readyz`: Socket Mode never connected, or down
    /// longer than its threshold. `None` over HTTP.
    pub fn not_ready(&self) -> Option<String> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        if !self.ever_connected.load(Ordering::SeqCst) {
            return Some("Socket Mode has not connected to Slack yet".to_owned());
        }
        self.down_longer_than(lock(&self.thresholds).0)
    }

    /// Why this process is stuck, for `/healthz`: Socket Mode down for long.
    pub fn unhealthy(&self) -> Option<String> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        self.down_longer_than(lock(&self.thresholds).1)
    }

    fn down_longer_than(&self, threshold: Duration) -> Option<String> {
        let down = (*lock(&self.down_since))?.elapsed();
        (down > threshold).then(|| {
            format!(
                "no Socket Mode connection to Slack for {} s (apps.connections.open and the WebSocket: see the log)",
                down.as_secs()
            )
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a connection is being replaced (the `reason` label of the reconnect metric).
#[derive(Debug, Clone, Copy)]
enum Replace {
    /// Slack sent `disconnect` (`refresh_requested`, `warning`, ...).
    Disconnect,
    PongMissed,
    /// The socket closed or failed.
    Closed,
}

impl Replace {
    fn label(self) -> &'static str {
        match self {
            Replace::Disconnect => "disconnect",
            Replace::PongMissed => "pong_missed",
            Replace::Closed => "closed",
        }
    }
}

/// Envelope ids seen lately, across all connections.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl Seen {
    /// `true` the first time `id` is seen within the window.
    fn first(&mut self, id: &str) -> bool {
        let now = Instant::now();
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) < DEDUPE_WINDOW {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_owned());
        self.order.push_back((now, id.to_owned()));
        true
    }
}

/// What every connection shares: the app, the token, the envelopes seen.
struct Client {
    state: AppState,
    app_token: SecretString,
    config: SocketModeConfig,
    seen: Mutex<Seen>,
}

/// Runs until `shutdown` with the default configuration.
pub async fn run(state: AppState, app_token: SecretString, shutdown: CancellationToken) {
    run_with(state, app_token, SocketModeConfig::default(), shutdown).await
}

/// Keeps `config.connections` connections open until `shutdown`.
pub async fn run_with(
    state: AppState,
    app_token: SecretString,
    config: SocketModeConfig,
    shutdown: CancellationToken,
) {
    state.socket_mode.start(&config);
    metrics::gauge!(SOCKET_MODE_CONNECTIONS).set(0.0);
    let client = Arc::new(Client {
        state,
        app_token,
        config,
        seen: Mutex::default(),
    });
    let slots: Vec<_> = (0..client.config.connections.max(1))
        .map(|_| tokio::spawn(keep_connected(client.clone(), shutdown.clone())))
        .collect();
    for slot in slots {
        let _ = slot.await;
    }
}

/// One connection slot: opens a connection, and a new one whenever it must be replaced.
async fn keep_connected(client: Arc<Client>, shutdown: CancellationToken) {
    // Jittered, so that replicas (and the two slots) do not reconnect in step.
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .with_jitter();
    let mut pauses = backoff.build();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (replace_tx, replace_rx) = oneshot::channel();
        match connect(&client).await {
            Ok(socket) => {
                pauses = backoff.build();
                let served =
                    tokio::spawn(serve(client.clone(), socket, replace_tx, shutdown.clone()));
                tokio::select! {
                    reason = replace_rx => {
                        let reason = reason.unwrap_or(Replace::Closed);
                        tracing::info!(reason = reason.label(), "Socket Mode: opening a new connection");
                        metrics::counter!(SOCKET_MODE_RECONNECTS, "reason" => reason.label()).increment(1);
                        continue;
                    }
                    () = shutdown.cancelled() => {
                        let _ = served.await;
                        return;
                    }
                }
            }
            Err(err) => {
                let pause = pauses.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "Socket Mode connection failed");
                metrics::counter!(SOCKET_MODE_RECONNECTS, "reason" => "failed").increment(1);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(client: &Client) -> Result<Socket, SocketModeError> {
    let url = open(client).await?;
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| SocketModeError::Socket("no WebSocket handshake within 10 s".into()))?
    .map_err(|e| SocketModeError::Socket(e.to_string()))?;
    Ok(socket)
}

async fn open(client: &Client) -> Result<String, SocketModeError> {
    const METHOD: &str = "apps.connections.open";
    // Counted with the other Slack calls that end in an error (by method and error kind).
    let failed = |error: &'static str, reason: String| {
        metrics::counter!(SLACK_API_ERRORS, "method" => METHOD, "error" => error).increment(1);
        SocketModeError::Open(reason)
    };
    let web = &client.state.slack.web;
    let response = web
        .http
        .post(format!("{}/{METHOD}", web.api_url))
        .bearer_auth(client.app_token.expose_secret())
        .timeout(web.timeout)
        .send()
        .await
        .map_err(|e| failed("transport", e.without_url().to_string()))?;
    let body: Value = response
        .json()
        .await
        .map_err(|e| failed("transport", e.without_url().to_string()))?;
    match (body["ok"].as_bool(), body["url"].as_str()) {
        (Some(true), Some(url)) => Ok(url.to_owned()),
        _ => Err(failed(
            "slack_error",
            format!(
                "Slack answered {} (check SLACK_APP_TOKEN: an xapp- token with connections:write)",
                body["error"].as_str().unwrap_or("no url")
            ),
        )),
    }
}

/// Serves one connection until it closes, its pong is missed, it has drained after a
/// `disconnect`, or shutdown. `replace` is told as soon as a new connection should open.
async fn serve(
    client: Arc<Client>,
    socket: Socket,
    replace: oneshot::Sender<Replace>,
    shutdown: CancellationToken,
) {
    let health = &client.state.socket_mode;
    health.opened();
    tracing::info!(open = health.open_connections(), "Socket Mode connected");
    let (mut sink, mut stream) = socket.split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Value>();
    let mut replace = Some(replace);
    let mut ping = tokio::time::interval(client.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut pong_due: Option<tokio::time::Instant> = None;
    let mut drained_at: Option<tokio::time::Instant> = None;
    let ended = loop {
        let pong_deadline = deadline(pong_due);
        let drain_deadline = deadline(drained_at);
        tokio::select! {
            () = shutdown.cancelled() => break None,
            Some(ack) = ack_rx.recv() => {
                if sink.send(Message::Text(ack.to_string().into())).await.is_err() {
                    break Some(Replace::Closed);
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(envelope) = serde_json::from_str::<Envelope>(text.as_str()) else {
                        continue;
                    };
                    if envelope.kind == "disconnect" {
                        tracing::info!(reason = envelope.reason.as_deref().unwrap_or("none"), "Socket Mode: Slack asked to reconnect");
                        if let Some(replace) = replace.take() {
                            let _ = replace.send(Replace::Disconnect);
                        }
                        drained_at.get_or_insert(tokio::time::Instant::now() + client.config.drain);
                        continue;
                    }
                    dispatch(&client, envelope, &ack_tx);
                }
                Some(Ok(Message::Ping(data))) => {
                    if sink.send(Message::Pong(data)).await.is_err() {
                        break Some(Replace::Closed);
                    }
                }
                Some(Ok(Message::Pong(_))) => pong_due = None,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break Some(Replace::Closed),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if pong_due.is_none() {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break Some(Replace::Closed);
                    }
                    pong_due = Some(tokio::time::Instant::now() + client.config.pong_timeout);
                }
            }
            () = pong_deadline => {
                tracing::warn!(timeout_ms = client.config.pong_timeout.as_millis() as u64, "Socket Mode: no pong from Slack in time; replacing the connection");
                break Some(Replace::PongMissed);
            }
            () = drain_deadline => break Some(Replace::Disconnect),
        }
    };
    if let (Some(reason), Some(replace)) = (ended, replace.take()) {
        let _ = replace.send(reason);
    }
    health.closed();
    // A half-open socket may never answer the close handshake: do not wait for it.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Resolves at `at`, never when `None`.
async fn deadline(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A Socket Mode frame: read first on its own, so that every envelope, of a type this app
/// knows or not, is acknowledged (Slack would deliver it again otherwise); its payload is
/// typed second, with slack-morphism's types ([`SlackCommandEvent`],
/// `SlackInteractionEvent`, [`SlackPushEvent`]), and ignored when it does not fit them.
///
/// Our own struct for the envelope: slack-morphism's `SlackSocketModeEvent` is not reachable
/// from outside the crate (2.31: its `models::socket_mode` module is shadowed by the
/// `socket_mode` listener module), and its enum fails on types it does not know.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    kind: String,
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
    /// Why Slack sent `disconnect`.
    reason: Option<String>,
}

/// Acknowledges an envelope on its connection (at once, or for a command with its reply when
/// ready in time) and starts its work, unless the envelope was seen already.
fn dispatch(client: &Arc<Client>, envelope: Envelope, ack: &mpsc::UnboundedSender<Value>) {
    // `hello` and other messages without an id are not acknowledged.
    let Some(envelope_id) = envelope.envelope_id else {
        return;
    };
    let bare_ack = json!({"envelope_id": envelope_id});
    if !lock(&client.seen).first(&envelope_id) {
        metrics::counter!(SOCKET_MODE_DUPLICATES).increment(1);
        let _ = ack.send(bare_ack);
        return;
    }
    let state = client.state.clone();
    match envelope.kind.as_str() {
        "slash_commands" => {
            let ack = ack.clone();
            let command = serde_json::from_value::<SlackCommandEvent>(envelope.payload);
            state.tasks.clone().spawn(async move {
                let reply = match command {
                    Ok(command) => command_ack(&state, envelope_id, command).await,
                    Err(_) => bare_ack,
                };
                let _ = ack.send(reply);
            });
        }
        "interactive" => {
            let _ = ack.send(bare_ack);
            if let Some(event) = interactions::read_interaction(envelope.payload) {
                interactions::on_interaction(&state, event);
            }
        }
        "events_api" => {
            let _ = ack.send(bare_ack);
            if let Some((SlackPushEvent::EventCallback(callback), sender)) =
                events::read_push(envelope.payload)
            {
                state
                    .tasks
                    .clone()
                    .spawn(async move { events::on_callback(&state, callback, sender).await });
            }
        }
        _ => {
            let _ = ack.send(bare_ack);
        }
    }
}

/// A command's ack: with its reply when ready within `ACK_DEADLINE`; otherwise with "the
/// answer follows", the reply then going through the command's `response_url`.
async fn command_ack(state: &AppState, envelope_id: String, command: SlackCommandEvent) -> Value {
    let response_url = command.response_url.0.to_string();
    let mut work = tokio::spawn({
        let state = state.clone();
        async move { commands::reply(&state, command).await.into_value() }
    });
    let reply = match tokio::time::timeout(ACK_DEADLINE, &mut work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => render::as_response(
            render::plain_message("Something went wrong. Please try again."),
            false,
            None,
        ),
        Err(_) => {
            state.respond_later(response_url, async move {
                work.await.unwrap_or_else(|_| {
                    render::plain_message("Something went wrong. Please try again.")
                })
            });
            render::as_response(
                render::plain_message("Working on it… the answer follows in a moment."),
                false,
                None,
            )
        }
    };
    json!({"envelope_id": envelope_id, "payload": reply})
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn an_envelope_id_is_first_once_whatever_came_between() {
        let mut seen = Seen::default();
        assert!(seen.first("env-1"));
        assert!(seen.first("env-2"));
        assert!(!seen.first("env-1"));
        assert!(!seen.first("env-2"));
        assert!(seen.first("env-3"));
        assert_eq!(seen.ids.len(), 3);
        assert_eq!(seen.order.len(), 3);
    }
}
