//! Socket Mode: the same handlers, over a WebSocket the bot opens to Slack, for installs with
//! no public URL. `apps.connections.open` (with the `xapp-` token) gives a `wss://` URL; every
//! envelope is acknowledged with its `envelope_id` at once (a slash command's ack carries its
//! reply); the socket is reopened when Slack asks (`disconnect`) or when it drops.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{AppState, commands, events, interactions};

/// Waits between reconnection attempts, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SocketModeError {
    #[error("apps.connections.open failed: {0}")]
    Open(String),
    #[error("the socket failed: {0}")]
    Socket(String),
}

enum Closed {
    Shutdown,
    Reconnect,
}

/// Runs until `shutdown`, reconnecting as needed.
pub async fn run(state: AppState, app_token: SecretString, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let result = match open(&state, &app_token).await {
            Ok(url) => serve(&state, &url, &shutdown).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(Closed::Shutdown) => return,
            Ok(Closed::Reconnect) => {
                tracing::info!("Socket Mode: reconnecting");
                backoff = Duration::from_millis(500);
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "Socket Mode connection failed")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn open(state: &AppState, app_token: &SecretString) -> Result<String, SocketModeError> {
    let web = &state.slack.web;
    let response = web
        .http
        .post(format!("{}/apps.connections.open", web.api_url))
        .bearer_auth(app_token.expose_secret())
        .send()
        .await
        .map_err(|e| SocketModeError::Open(e.without_url().to_string()))?;
    let body: Value = response
        .json()
        .await
        .map_err(|e| SocketModeError::Open(e.without_url().to_string()))?;
    match (body["ok"].as_bool(), body["url"].as_str()) {
        (Some(true), Some(url)) => Ok(url.to_owned()),
        _ => Err(SocketModeError::Open(format!(
            "Slack answered {} (check SLACK_APP_TOKEN: an xapp- token with connections:write)",
            body["error"].as_str().unwrap_or("no url")
        ))),
    }
}

async fn serve(
    state: &AppState,
    url: &str,
    shutdown: &CancellationToken,
) -> Result<Closed, SocketModeError> {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| SocketModeError::Socket(e.to_string()))?;
    tracing::info!("Socket Mode connected");
    let (mut sink, mut stream) = socket.split();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(Closed::Shutdown);
            }
        };
        let message = match message {
            None => return Ok(Closed::Reconnect),
            Some(Err(err)) => return Err(SocketModeError::Socket(err.to_string())),
            Some(Ok(message)) => message,
        };
        let envelope: Value = match message {
            Message::Text(text) => match serde_json::from_str(text.as_str()) {
                Ok(envelope) => envelope,
                Err(_) => continue,
            },
            Message::Ping(data) => {
                let _ = sink.send(Message::Pong(data)).await;
                continue;
            }
            Message::Close(_) => return Ok(Closed::Reconnect),
            _ => continue,
        };
        if envelope["type"] == "disconnect" {
            return Ok(Closed::Reconnect);
        }
        if let Some(ack) = handle_envelope(state, &envelope).await {
            sink.send(Message::Text(ack.to_string().into()))
                .await
                .map_err(|e| SocketModeError::Socket(e.to_string()))?;
        }
    }
}

/// The ack for an envelope (`None` for `hello` and unknown types), after starting its work.
async fn handle_envelope(state: &AppState, envelope: &Value) -> Option<Value> {
    let envelope_id = envelope["envelope_id"].as_str()?;
    let payload = &envelope["payload"];
    let ack = match envelope["type"].as_str()? {
        "slash_commands" => {
            match serde_json::from_value::<commands::CommandForm>(payload.clone()) {
                Ok(command) => {
                    json!({"envelope_id": envelope_id, "payload": commands::reply(state, command).await})
                }
                Err(_) => json!({"envelope_id": envelope_id}),
            }
        }
        "interactive" => {
            if let Ok(event) = serde_json::from_value(payload.clone()) {
                interactions::on_interaction(state, event);
            }
            json!({"envelope_id": envelope_id})
        }
        "events_api" => {
            events::on_event(state, payload).await;
            json!({"envelope_id": envelope_id})
        }
        _ => json!({"envelope_id": envelope_id}),
    };
    Some(ack)
}
