//! Socket Mode against a fake Slack WebSocket server: two connections, each envelope acked at
//! once with its id whatever its work, handled once across connections, and connections
//! replaced when Slack asks, when they drop, or when a pong does not come.

use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};

use crm_username::app::{AppConfig, SocketMode};
use crm_username::demo;
use crm_username::fakes::FakeSlack;
use crm_username::slack::socket_mode::SocketModeConfig;
use crm_username::slack::{SlackSettings, SlackWebApi};
use crm_username::store::{RedisTimeouts, Store};

use crate::common;
use common::app::TestApp;
use common::{OwnRedis, free_port};

/// The app over Socket Mode: a workspace of its own, no admin, answering from `store`.
fn config(slack: &FakeSlack, store: Store, socket_mode: SocketModeConfig) -> AppConfig {
    let mut config = TestApp::config(store, slack);
    config.slack = SlackSettings {
        // Socket Mode verifies nothing: Slack is the other end of a socket the bot opened.
        signing_secrets: Vec::new(),
        allowed_team_ids: vec!["T0TEAM".into()],
        admin_user_ids: Vec::new(),
        web: SlackWebApi::new(
            &slack.api_url(),
            Some(SecretString::from("xoxb-test")),
            vec!["127.0.0.1".into()],
        ),
    };
    config.socket_mode = Some(SocketMode {
        app_token: SecretString::from("xapp-test"),
        config: socket_mode,
    });
    config
}

/// Quick pings, so that a missed pong shows within a second.
fn quick() -> SocketModeConfig {
    SocketModeConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(600),
        ..SocketModeConfig::default()
    }
}

async fn connect_with(store: Store, socket_mode: SocketModeConfig) -> TestApp {
    let slack = FakeSlack::start().await.unwrap();
    let config = config(&slack, store, socket_mode);
    let app = TestApp::spawn(config, slack).await;
    wait_for(|| app.slack.socket_open() == 2 && app.state.socket_mode.open_connections() == 2)
        .await;
    app
}

/// Connected with the default pings: no missed pong on a busy machine, so the connection
/// counts the tests assert are exact.
async fn connect() -> TestApp {
    connect_with(
        common::demo_memory_store().await,
        SocketModeConfig::default(),
    )
    .await
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends until a connection takes it (the client may be between connections).
async fn send(slack: &FakeSlack, envelope: Value) {
    wait_for(|| slack.socket_send(&envelope)).await;
}

fn command(envelope_id: &str, text: &str, response_url: &str) -> Value {
    json!({
        "envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"team_id": "T0TEAM", "user_id": "U0ASKER", "command": "/crm-username", "text": text,
                    "channel_id": "C0CHAN", "response_url": response_url, "trigger_id": "1.2.3"}
    })
}

/// A click on a message's button, answered through `response_url`.
fn click(envelope_id: &str, action_id: &str, value: &str, response_url: &str) -> Value {
    json!({
        "envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": false,
        "payload": {"type": "block_actions", "team": {"id": "T0TEAM", "domain": "acme"}, "user": {"id": "U0ASKER"},
                    "api_app_id": "A0", "trigger_id": "1.2.3",
                    "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0CHAN", "is_ephemeral": true},
                    "response_url": response_url,
                    "actions": [{"type": "button", "action_id": action_id, "block_id": "footer", "value": value}]}
    })
}

/// The bot, connected again, acks a command.
async fn assert_answers(slack: &FakeSlack) {
    let envelope = command("env-after", "help", "http://127.0.0.1:9/unused");
    send(slack, envelope).await;
    wait_for(|| acked(slack) == ["env-after"]).await;
}

fn acked(slack: &FakeSlack) -> Vec<String> {
    slack
        .socket_acks()
        .iter()
        .filter_map(|a| a["envelope_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_slash_command_is_answered_in_its_ack() {
    let app = connect().await;
    let slack = &app.slack;
    send(
        slack,
        command(
            "env-1",
            "check dana.deleted@acme.com",
            "http://127.0.0.1:9/unused",
        ),
    )
    .await;
    wait_for(|| !slack.socket_acks().is_empty()).await;
    let ack = &slack.socket_acks()[0];
    assert_eq!(ack["envelope_id"], "env-1");
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert_eq!(
        ack["payload"]["blocks"][4]["block_id"],
        "finding:mapped_to_deleted_user:0"
    );
}

#[tokio::test]
async fn a_mention_is_acked_and_answered_once_in_its_thread() {
    let app = connect().await;
    let slack = &app.slack;
    let event = |envelope_id: &str, retry: u32| {
        json!({
            "envelope_id": envelope_id, "type": "events_api", "retry_attempt": retry, "accepts_response_payload": false,
            "payload": {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0", "event_id": "Ev0SOCKET", "event_time": 1,
                        "event": {"type": "app_mention", "user": "U0ASKER", "text": "<@U0BOT> check alex", "ts": "2.2", "thread_ts": "1.1", "channel": "C0CHAN"}}
        })
    };
    send(slack, event("env-a", 0)).await;
    send(slack, event("env-b", 1)).await;
    wait_for(|| slack.socket_acks().len() == 2 && !slack.calls().is_empty()).await;
    assert_eq!(acked(slack), ["env-a", "env-b"]);
    let calls = slack.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].body["thread_ts"], "1.1");
}

#[tokio::test]
async fn a_button_click_is_acked_and_replies_through_response_url() {
    let app = connect().await;
    let slack = &app.slack;
    let click = click(
        "env-click",
        "recheck",
        "old.timer@acme.com",
        &slack.response_url("click"),
    );
    send(slack, click).await;
    wait_for(|| !slack.calls().is_empty()).await;
    assert_eq!(slack.socket_acks()[0]["envelope_id"], "env-click");
    assert_eq!(slack.calls()[0].target, "response_url:click");
    assert_eq!(slack.calls()[0].body["replace_original"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_envelopes_after_a_slow_command_are_all_acked_before_its_answer() {
    // The slow command reads a Redis that is frozen for five seconds.
    let redis = OwnRedis::start(free_port());
    let timeouts = RedisTimeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_secs(30),
    };
    let store = redis.demo_store("socket-slow:", timeouts).await;
    let app = connect_with(store, SocketModeConfig::default()).await;
    let slack = &app.slack;
    redis.pause();
    let slow_started = Instant::now();
    send(
        slack,
        command(
            "env-slow",
            "check sam.sales@acme.com",
            &slack.response_url("slow"),
        ),
    )
    .await;
    for i in 0..20 {
        send(
            slack,
            command(&format!("env-{i}"), "help", "http://127.0.0.1:9/unused"),
        )
        .await;
    }
    wait_for(|| acked(slack).len() == 21 || slow_started.elapsed() > Duration::from_secs(5)).await;
    tokio::time::sleep_until((slow_started + Duration::from_secs(5)).into()).await;
    redis.resume();
    wait_for(|| !slack.calls_to("response_url:slow").is_empty()).await;

    let timeline = slack.timeline();
    let answered = timeline
        .iter()
        .position(|t| t == "response_url:slow")
        .unwrap();
    let before: Vec<&String> = timeline[..answered]
        .iter()
        .filter(|t| t.starts_with("ack:env-") && *t != "ack:env-slow")
        .collect();
    assert_eq!(before.len(), 20, "{timeline:?}");
    // Nor did they wait for the slow one's ack, which waits up to the inline deadline.
    let slow_acked = timeline.iter().position(|t| t == "ack:env-slow").unwrap();
    assert_eq!(
        timeline[..slow_acked]
            .iter()
            .filter(|t| t.starts_with("ack:"))
            .count(),
        20,
        "{timeline:?}"
    );
    // The slow one was acked too, without its answer, which came through response_url.
    let slow_ack = slack
        .socket_acks()
        .into_iter()
        .find(|a| a["envelope_id"] == "env-slow")
        .unwrap();
    assert_eq!(
        slow_ack["payload"]["text"],
        "Checking… the answer follows in a moment."
    );
    let answer = &slack.calls_to("response_url:slow")[0].body;
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    assert!(
        answer["blocks"][0]
            .to_string()
            .contains("sam.sales@acme.com"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_missed_pong_causes_a_reconnect() {
    crm_username::metrics::handle();
    let app = connect_with(common::demo_memory_store().await, quick()).await;
    let slack = &app.slack;
    slack.socket_silence_all();
    // Both silent connections are replaced after their pong deadline passes.
    wait_for(|| slack.socket_connections() >= 4 && slack.socket_open() == 2).await;
    wait_for(|| app.state.socket_mode.open_connections() == 2).await;
    assert_answers(slack).await;
    // Counted under its reason (only this test lets pongs go missing).
    let metrics = crm_username::metrics::handle().unwrap().render();
    let missed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with(r#"crm_username_socket_mode_reconnects_total{reason="pong_missed"}"#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(missed >= 2.0, "{metrics}");
}

#[tokio::test]
async fn a_disconnect_envelope_loses_no_envelope() {
    let app = connect().await;
    let slack = &app.slack;
    let mut sent = Vec::new();
    for round in 0..3 {
        // Slack warns, keeps the old connection a second, then closes it; envelopes keep
        // coming on whatever connection is open.
        slack.socket_disconnect(Duration::from_secs(1));
        for i in 0..15 {
            let id = format!("env-{round}-{i}");
            send(slack, command(&id, "help", "http://127.0.0.1:9/unused")).await;
            sent.push(id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_for(|| slack.socket_open() == 2).await;
    }
    wait_for(|| acked(slack).len() >= sent.len()).await;
    let mut acks = acked(slack);
    acks.sort();
    sent.sort();
    assert_eq!(acks, sent);
    assert_eq!(slack.socket_connections(), 5);
}

#[tokio::test]
async fn an_envelope_delivered_on_both_connections_is_handled_once() {
    let app = connect().await;
    let slack = &app.slack;
    let click = click("env-twice", "recheck", "alex", &slack.response_url("twice"));
    assert_eq!(slack.socket_send_all(&click), 2);
    wait_for(|| acked(slack).len() == 2 && !slack.calls().is_empty()).await;
    // Both deliveries are acked; the work is done once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(acked(slack), ["env-twice", "env-twice"]);
    assert_eq!(slack.calls_to("response_url:twice").len(), 1);
}

#[tokio::test]
async fn the_client_reconnects_when_a_socket_drops() {
    let app = connect().await;
    let slack = &app.slack;
    slack.socket_drop();
    wait_for(|| slack.socket_connections() == 3 && slack.socket_open() == 2).await;
    assert_answers(slack).await;
}

#[tokio::test]
async fn probes_report_socket_mode_down_longer_than_its_thresholds() {
    let config = SocketModeConfig {
        not_ready_after: Duration::from_millis(300),
        unhealthy_after: Duration::from_secs(5),
        ..quick()
    };
    let app = connect_with(common::demo_memory_store().await, config).await;
    let health = &app.state.socket_mode;
    assert_eq!(health.not_ready(), None);
    assert_eq!(health.unhealthy(), None);
    app.slack.refuse_connections(Some("service_unavailable"));
    app.slack.socket_drop();
    app.slack.socket_drop();
    wait_for(|| health.not_ready().is_some()).await;
    assert_eq!(
        health.unhealthy(),
        None,
        "not yet past the liveness threshold"
    );
    wait_for(|| health.unhealthy().is_some()).await;
    assert!(
        health
            .unhealthy()
            .unwrap()
            .starts_with("no Socket Mode connection to Slack for"),
        "{:?}",
        health.unhealthy()
    );
    app.slack.refuse_connections(None);
    wait_for(|| health.not_ready().is_none() && health.unhealthy().is_none()).await;
}

/// `serve --socket-mode` as a process, killed when dropped.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_in_socket_mode_needs_no_signing_secret_and_is_ready_only_once_connected() {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = crm_username::fakes::FakeUpstreams::start(&org)
        .await
        .unwrap();
    let slack = FakeSlack::start().await.unwrap();
    slack.refuse_connections(Some("internal_error"));
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    let port = free_port();
    let salesforce = upstreams.salesforce.settings();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(["serve", "--socket-mode"])
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SALESFORCE_LOGIN_URL", upstreams.salesforce.url())
        .env("SALESFORCE_CLIENT_ID", &salesforce.client_id)
        .env("SALESFORCE_CLIENT_SECRET", &salesforce.client_secret)
        .env("BUSINESS_UNITS_FILE", &settings)
        .env("SLACK_APP_TOKEN", "xapp-test")
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SLACK_API_URL", slack.api_url())
        .env("SLACK_RESPONSE_URL_HOSTS", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    crm_username::sources::install_crypto_provider();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://127.0.0.1:{port}{path}")).send();

    // Listening, alive, but not ready: Slack refuses the connection.
    let started = Instant::now();
    while get("/healthz").await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.text().await.unwrap(),
        "Socket Mode has not connected to Slack yet"
    );

    slack.refuse_connections(None);
    wait_for(|| slack.socket_open() == 2).await;
    let started = Instant::now();
    while get("/readyz").await.unwrap().status() != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(
        &slack,
        command("env-help", "help", "http://127.0.0.1:9/unused"),
    )
    .await;
    wait_for(|| acked(&slack) == ["env-help"]).await;
}

#[tokio::test]
async fn the_message_shortcut_is_acked_and_answered_in_the_messages_thread() {
    let app = connect().await;
    let slack = &app.slack;
    let shortcut = json!({
        "envelope_id": "env-shortcut", "type": "interactive", "accepts_response_payload": false,
        "payload": {"type": "message_action", "team": {"id": "T0TEAM", "domain": "acme"},
                    "user": {"id": "U0ASKER", "team_id": "T0TEAM"}, "channel": {"id": "C0CHAN", "name": "support"},
                    "callback_id": "check_crm_username", "trigger_id": "1.2.3", "message_ts": "1.2",
                    "message": {"type": "message", "user": "U0ASKER", "ts": "1.2", "thread_ts": "1.1",
                                "text": "<mailto:old.timer@acme.com|old.timer@acme.com> is missing"},
                    "response_url": slack.response_url("shortcut")}
    });
    send(slack, shortcut).await;
    wait_for(|| !slack.calls().is_empty()).await;
    assert_eq!(acked(slack), ["env-shortcut"]);
    let calls = slack.calls();
    assert_eq!(calls[0].target, "chat.postMessage");
    assert_eq!(calls[0].body["channel"], "C0CHAN");
    assert_eq!(calls[0].body["thread_ts"], "1.1");
    assert_eq!(
        calls[0].body["blocks"][0]["text"]["text"],
        "Blocked: old.timer@acme.com"
    );
}
