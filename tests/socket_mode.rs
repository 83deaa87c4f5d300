//! Socket Mode: the same answers over a WebSocket, each envelope acknowledged with its id,
//! reconnecting when the socket drops.

use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crm_username::demo;
use crm_username::fakes::FakeSlack;
use crm_username::slack::{AppState, SlackSettings, SlackWebApi, socket_mode};
use crm_username::store::Store;

async fn connect() -> (FakeSlack, CancellationToken) {
    let slack = FakeSlack::start().await.unwrap();
    let store = Store::memory();
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let settings = SlackSettings {
        signing_secrets: vec![SecretString::from("unused-over-the-socket")],
        allowed_team_ids: vec!["T0TEAM".into()],
        admin_user_ids: Vec::new(),
        web: SlackWebApi::new(
            &slack.api_url(),
            Some(SecretString::from("xoxb-test")),
            vec!["127.0.0.1".into()],
        ),
    };
    let shutdown = CancellationToken::new();
    let state = AppState::new(store, None, settings);
    tokio::spawn(socket_mode::run(
        state,
        SecretString::from("xapp-test"),
        shutdown.clone(),
    ));
    wait_for(|| slack.socket_connections() == 1).await;
    (slack, shutdown)
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends until the socket accepts it (the client may still be between hello and reading).
async fn send(slack: &FakeSlack, envelope: Value) {
    wait_for(|| slack.socket_send(&envelope)).await;
}

fn command(envelope_id: &str, text: &str) -> Value {
    json!({
        "envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"team_id": "T0TEAM", "user_id": "U0ASKER", "command": "/crm-username", "text": text,
                    "channel_id": "C0CHAN", "response_url": "http://127.0.0.1:9/unused", "trigger_id": "1.2.3"}
    })
}

#[tokio::test]
async fn a_slash_command_is_answered_in_its_ack() {
    let (slack, shutdown) = connect().await;
    send(&slack, command("env-1", "check dana.deleted@acme.com")).await;
    wait_for(|| !slack.socket_acks().is_empty()).await;
    let ack = &slack.socket_acks()[0];
    assert_eq!(ack["envelope_id"], "env-1");
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert_eq!(
        ack["payload"]["blocks"][4]["block_id"],
        "finding:mapped_to_deleted_user:0"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_mention_is_acked_and_answered_once_in_its_thread() {
    let (slack, shutdown) = connect().await;
    let event = |envelope_id: &str, retry: u32| {
        json!({
            "envelope_id": envelope_id, "type": "events_api", "retry_attempt": retry, "accepts_response_payload": false,
            "payload": {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0", "event_id": "Ev0SOCKET", "event_time": 1,
                        "event": {"type": "app_mention", "user": "U0ASKER", "text": "<@U0BOT> check alex", "ts": "2.2", "thread_ts": "1.1", "channel": "C0CHAN"}}
        })
    };
    send(&slack, event("env-a", 0)).await;
    send(&slack, event("env-b", 1)).await;
    wait_for(|| slack.socket_acks().len() == 2 && !slack.calls().is_empty()).await;
    let acks = slack.socket_acks();
    let acked: Vec<&str> = acks
        .iter()
        .filter_map(|a| a["envelope_id"].as_str())
        .collect();
    assert_eq!(acked, ["env-a", "env-b"]);
    let calls = slack.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].body["thread_ts"], "1.1");
    shutdown.cancel();
}

#[tokio::test]
async fn a_button_click_is_acked_and_replies_through_response_url() {
    let (slack, shutdown) = connect().await;
    let click = json!({
        "envelope_id": "env-click", "type": "interactive", "accepts_response_payload": false,
        "payload": {"type": "block_actions", "team": {"id": "T0TEAM", "domain": "acme"}, "user": {"id": "U0ASKER"},
                    "api_app_id": "A0", "trigger_id": "1.2.3",
                    "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0CHAN", "is_ephemeral": true},
                    "response_url": slack.response_url("click"),
                    "actions": [{"type": "button", "action_id": "recheck", "block_id": "footer", "value": "old.timer@acme.com"}]}
    });
    send(&slack, click).await;
    wait_for(|| !slack.calls().is_empty()).await;
    assert_eq!(slack.socket_acks()[0]["envelope_id"], "env-click");
    assert_eq!(slack.calls()[0].target, "response_url:click");
    assert_eq!(slack.calls()[0].body["replace_original"], true);
    shutdown.cancel();
}

#[tokio::test]
async fn the_client_reconnects_when_the_socket_drops_or_slack_asks() {
    let (slack, shutdown) = connect().await;
    slack.socket_drop();
    wait_for(|| slack.socket_connections() == 2).await;
    send(
        &slack,
        json!({"type": "disconnect", "reason": "refresh_requested"}),
    )
    .await;
    wait_for(|| slack.socket_connections() == 3).await;
    send(&slack, command("env-after", "check alex")).await;
    wait_for(|| !slack.socket_acks().is_empty()).await;
    assert_eq!(slack.socket_acks()[0]["envelope_id"], "env-after");
    shutdown.cancel();
}
