//! The bot as Slack sees it: the app on port 0, a fake Slack recording what the bot sends,
//! signed requests, and a real Redis where the test says so.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crm_username::app::AppData;
use crm_username::demo;
use crm_username::fakes::FakeSlack;
use crm_username::slack::signature::sign;
use crm_username::store::{RedisStore, Store};

use crate::common;
use common::app::{SECRET, TEAM, TestApp};

async fn spawn_app(store: Store) -> TestApp {
    TestApp::start(store).await
}

impl TestApp {
    async fn click(
        &self,
        action_id: &str,
        value: &str,
        team: &str,
        response_url: &str,
    ) -> reqwest::Response {
        let payload = json!({
            "type": "block_actions",
            "team": {"id": team, "domain": "acme"},
            "user": {"id": "U0CLICKER", "team_id": team},
            "api_app_id": "A0APP",
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0CHAN", "is_ephemeral": true},
            "trigger_id": "1.2.3",
            "channel": {"id": "C0CHAN", "name": "support"},
            "response_url": response_url,
            "actions": [{"type": "button", "action_id": action_id, "block_id": "footer", "value": value, "action_ts": "1700000001.000200"}]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &body,
            &[],
        )
        .await
    }
}

fn mention(event_id: &str, text: &str, thread_ts: Option<&str>) -> String {
    let mut event = json!({"type": "app_mention", "user": "U0ASKER", "text": text, "ts": "1700000000.000500", "channel": "C0CHAN", "event_ts": "1700000000.000500"});
    if let Some(thread) = thread_ts {
        event["thread_ts"] = json!(thread);
    }
    json!({"token": "x", "team_id": TEAM, "api_app_id": "A0APP", "type": "event_callback", "event_id": event_id, "event_time": 1700000000, "event": event}).to_string()
}

fn block_ids(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_signed_slash_command_gets_the_diagnosis_inline() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let response = app
        .command("check dana.deleted@acme.com", TEAM, "U0ASKER")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: dana.deleted@acme.com")
    );
    assert_eq!(
        block_ids(&body),
        [
            "summary",
            "finding:mapped_to_deleted_user:0",
            "links:0",
            "finding:no_blocker_found:1",
            "links:1",
            "footer"
        ]
    );
    assert!(
        app.slack.calls().is_empty(),
        "answered inline, nothing sent later"
    );
}

#[tokio::test]
async fn empty_text_and_unknown_subcommands_get_the_help() {
    let app = spawn_app(common::demo_memory_store().await).await;
    for text in ["", "frobnicate", "check"] {
        let body: Value = app
            .command(text, TEAM, "U0ASKER")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["text"], "How to use /crm-username", "{text:?}");
    }
}

#[tokio::test]
async fn a_slash_command_for_a_user_the_cache_lacks_is_answered_through_the_live_lookup() {
    // The refresh caches internal users only; the partner user is read live when asked about.
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = crm_username::fakes::FakeUpstreams::start(&org)
        .await
        .unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = Store::memory();
    crm_username::refresh::refresh_once(&sources, &store, Utc::now())
        .await
        .unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store.clone(), &slack);
    config.data = AppData::Cache {
        store,
        sources: Some(std::sync::Arc::new(sources)),
    };
    let app = TestApp::spawn(config, slack).await;
    let body: Value = app
        .command("check sam.sales@acme.com.partners", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: sam.sales@acme.com.partners"),
        "{body}"
    );
    assert_eq!(
        block_ids(&body),
        [
            "summary",
            "finding:unsupported_user_type:0",
            "links:0",
            "footer"
        ]
    );
}

#[tokio::test]
async fn a_bad_query_says_what_to_type() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body: Value = app
        .command("check <@U123>", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("A Slack mention cannot be checked"),
        "{body}"
    );
}

#[tokio::test]
async fn status_reports_the_data_freshness() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body: Value = app
        .command("status", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"].as_str().unwrap().starts_with("Data as of 20"),
        "{body}"
    );
}

#[tokio::test]
async fn refresh_is_for_admins_only_and_says_why() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body: Value = app
        .command("refresh", TEAM, "U0SOMEONE")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Only the bot's admins"),
        "{body}"
    );
    let body: Value = app
        .command("refresh", TEAM, "UADMIN")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("no live data source"),
        "{body}"
    );
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_stale_requests_get_401_and_do_nothing() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body = mention("Ev0SIG", "<@U0BOT> check sam.sales@acme.com", None);
    let url = format!("http://{}/slack/events", app.addr);
    let now = Utc::now().timestamp();
    let stale = (now - 301).to_string();
    let cases: Vec<(Option<String>, Option<String>)> = vec![
        (None, None),
        (Some(now.to_string()), None),
        (
            Some(now.to_string()),
            Some(sign(
                "another-apps-secret",
                &now.to_string(),
                body.as_bytes(),
            )),
        ),
        (
            Some(now.to_string()),
            Some(sign(SECRET, &now.to_string(), b"another body")),
        ),
        (
            Some(stale.clone()),
            Some(sign(SECRET, &stale, body.as_bytes())),
        ),
    ];
    for (ts, signature) in cases {
        let mut request = app.http.post(&url).body(body.clone());
        if let Some(ts) = &ts {
            request = request.header("x-slack-request-timestamp", ts);
        }
        if let Some(signature) = &signature {
            request = request.header("x-slack-signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{ts:?} {signature:?}");
        assert_eq!(response.text().await.unwrap(), "invalid request signature");
    }
    // Nothing was posted, and the event id was not used up: the signed delivery is answered.
    let response = app
        .post_signed("/slack/events", "application/json", &body, &[])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.calls(1).await.len(), 1);
}

#[tokio::test]
async fn an_unsigned_command_gets_401() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let response = app
        .http
        .post(format!("http://{}/slack/commands", app.addr))
        .body("text=check+x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body = format!("text={}", "a".repeat(70 * 1024));
    let response = app
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            &[],
        )
        .await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn the_url_verification_challenge_is_echoed() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let response = app
        .post_signed("/slack/events", "application/json", &body, &[])
        .await;
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

async fn deliver_with_retries(apps: &[&TestApp], body: &str) {
    for attempt in 0..4 {
        let app = apps[attempt % apps.len()];
        let mut headers = Vec::new();
        if attempt > 0 {
            headers.push(("x-slack-retry-num", attempt.to_string()));
            headers.push(("x-slack-retry-reason", "http_timeout".to_owned()));
        }
        let response = app
            .post_signed("/slack/events", "application/json", body, &headers)
            .await;
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn a_thread_mention_is_answered_once_in_its_thread_despite_three_retries() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body = mention(
        "Ev0THREAD",
        "<@U0BOT> check email_a@example.com for email_b@example.com",
        Some("1699999999.000100"),
    );
    deliver_with_retries(&[&app], &body).await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.target, "chat.postMessage");
    assert_eq!(
        call.authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(call.body["channel"], "C0CHAN");
    assert_eq!(call.body["thread_ts"], "1699999999.000100");
    assert!(block_ids(&call.body).contains(&"finding:reserved_by_email:0".to_owned()));
}

#[tokio::test]
async fn a_mention_outside_a_thread_starts_one_on_its_message() {
    let app = spawn_app(common::demo_memory_store().await).await;
    deliver_with_retries(
        &[&app],
        &mention("Ev0CHANNEL", "<@U0BOT> check sam.sales@acme.com", None),
    )
    .await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["thread_ts"], "1700000000.000500");
}

#[tokio::test]
async fn replicas_sharing_redis_answer_a_retried_mention_once() {
    let prefix = common::prefix("slack-dedupe");
    common::clear_prefix(&prefix).await;
    let store = || async {
        let store = Store::Redis(
            RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap(),
        );
        store
            .publish(demo::snapshot(Utc::now()).unwrap())
            .await
            .unwrap();
        store
    };
    let a = spawn_app(store().await).await;
    // The second replica posts to the same fake Slack.
    let b = {
        let mut config = TestApp::config(store().await, &a.slack);
        config.slack.admin_user_ids = Vec::new();
        TestApp::spawn(config, FakeSlack::start().await.unwrap()).await
    };
    deliver_with_retries(
        &[&a, &b],
        &mention("Ev0REPLICAS", "<@U0BOT> check alex", Some("1.1")),
    )
    .await;
    let calls = a.calls(1).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
}

#[tokio::test]
async fn the_bots_own_messages_are_ignored() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let mut event: Value =
        serde_json::from_str(&mention("Ev0BOT", "<@U0BOT> check alex", None)).unwrap();
    event["event"]["bot_id"] = json!("B0BOT");
    app.post_signed("/slack/events", "application/json", &event.to_string(), &[])
        .await;
    // A normal mention afterwards is answered: so had the bot's own been, it would be first.
    deliver_with_retries(&[&app], &mention("Ev0HUMAN", "<@U0BOT> check alex", None)).await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("Several users match: alex")
    );
}

#[tokio::test]
async fn recheck_replaces_the_original_message() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let response = app
        .click(
            "recheck",
            "old.timer@acme.com",
            TEAM,
            &app.slack.response_url("r1"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let calls = app.calls(1).await;
    assert_eq!(calls[0].target, "response_url:r1");
    assert_eq!(calls[0].body["replace_original"], true);
    assert_eq!(calls[0].body["response_type"], "ephemeral");
    assert!(block_ids(&calls[0].body).contains(&"finding:salesforce_user_inactive:0".to_owned()));
}

#[tokio::test]
async fn share_posts_the_diagnosis_in_the_channel_with_who_shared_it() {
    let app = spawn_app(common::demo_memory_store().await).await;
    app.click(
        "share",
        "sam.sales@acme.com",
        TEAM,
        &app.slack.response_url("s1"),
    )
    .await;
    let calls = app.calls(1).await;
    let body = &calls[0].body;
    assert_eq!(body["response_type"], "in_channel");
    assert_eq!(body["replace_original"], false);
    assert_eq!(
        body["blocks"][0]["elements"][0]["text"],
        "Shared by <@U0CLICKER>"
    );
    assert!(!block_ids(body).contains(&"footer".to_owned()));
}

#[tokio::test]
async fn pick_candidate_diagnoses_the_picked_user_and_ignores_tampered_values() {
    let app = spawn_app(common::demo_memory_store().await).await;
    app.click(
        "pick_candidate",
        "jane@acme.com for 7",
        TEAM,
        &app.slack.response_url("p0"),
    )
    .await;
    app.click(
        "pick_candidate",
        "005Ak00000ALXK1IAP",
        TEAM,
        &app.slack.response_url("p1"),
    )
    .await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1, "only the id was acted on: {calls:?}");
    assert_eq!(calls[0].target, "response_url:p1");
    let summary = calls[0].body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(summary.contains("alex.kim@acme.com"), "{summary}");
}

#[tokio::test]
async fn url_buttons_are_acknowledged_without_a_reply() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let response = app
        .click("open_recycle_bin", "", TEAM, &app.slack.response_url("u1"))
        .await;
    assert_eq!(response.status(), 200);
    app.click("recheck", "alex", TEAM, &app.slack.response_url("u2"))
        .await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].target, "response_url:u2");
}

#[tokio::test]
async fn a_foreign_workspace_is_refused() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let body: Value = app
        .command("check sam.sales@acme.com", "T0OTHER", "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("This workspace is not served by this bot"),
        "{body}"
    );
    app.click(
        "recheck",
        "sam.sales@acme.com",
        "T0OTHER",
        &app.slack.response_url("f1"),
    )
    .await;
    let mut event: Value =
        serde_json::from_str(&mention("Ev0FOREIGN", "<@U0BOT> check alex", None)).unwrap();
    event["team_id"] = json!("T0OTHER");
    app.post_signed("/slack/events", "application/json", &event.to_string(), &[])
        .await;
    // A served team's click afterwards is the only call.
    app.click("recheck", "alex", TEAM, &app.slack.response_url("f2"))
        .await;
    let calls = app.calls(1).await;
    assert_eq!(
        calls.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(),
        ["response_url:f2"]
    );
}

#[tokio::test]
async fn a_response_url_on_a_foreign_host_is_never_called() {
    let app = spawn_app(common::demo_memory_store().await).await;
    let foreign = app
        .slack
        .response_url("x1")
        .replace("127.0.0.1", "localhost");
    app.click("recheck", "alex", TEAM, &foreign).await;
    app.click("recheck", "alex", TEAM, "https://evil.example/steal")
        .await;
    app.click("recheck", "alex", TEAM, &app.slack.response_url("x2"))
        .await;
    let calls = app.calls(1).await;
    assert_eq!(
        calls.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(),
        ["response_url:x2"]
    );
}

#[tokio::test]
async fn slacks_rate_limit_is_waited_out() {
    let app = spawn_app(common::demo_memory_store().await).await;
    app.slack.rate_limit(1, 1);
    let started = Instant::now();
    deliver_with_retries(&[&app], &mention("Ev0LIMIT", "<@U0BOT> check alex", None)).await;
    let calls = app.calls(1).await;
    assert_eq!(calls.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the reply waited for Retry-After"
    );
}

#[tokio::test]
async fn with_the_cache_down_people_still_get_an_answer_in_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = Store::Redis(
        RedisStore::connect(
            &format!("redis://127.0.0.1:{port}"),
            "down:",
            Default::default(),
        )
        .unwrap(),
    );
    let app = spawn_app(store).await;
    let started = Instant::now();
    let response = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["text"], "The org data is unavailable right now",
        "{body}"
    );
}

#[tokio::test]
async fn readiness_does_not_depend_on_the_data_and_a_check_before_the_first_refresh_says_it_is_loading()
 {
    let empty = spawn_app(Store::memory()).await;
    let get = |path: &str| {
        empty
            .http
            .get(format!("http://{}{path}", empty.addr))
            .send()
    };
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let response = empty
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["text"], "The data is still loading, try again in a minute",
        "{body}"
    );
    let shown = body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        shown.starts_with(
            ":hourglass_flowing_sand: The data is still loading: the first refresh started at 20"
        ),
        "{shown}"
    );
    assert!(shown.ends_with(" UTC. Try again in a minute."), "{shown}");
    drop(empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_the_pod_stays_ready_and_a_check_says_data_unavailable_in_time() {
    let mut redis = common::OwnRedis::start(common::free_port());
    let app = spawn_app(redis.demo_store("stopped:", Default::default()).await).await;
    let answered: Value = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(answered["text"], "The org data is unavailable right now");
    redis.stop();

    let ready = app
        .http
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let started = Instant::now();
    let response = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await;
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["text"], "The org data is unavailable right now",
        "{body}"
    );
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    drop(app);
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_outcomes_and_verdicts() {
    let app = spawn_app(common::demo_memory_store().await).await;
    app.command("check dana.deleted@acme.com", TEAM, "U0ASKER")
        .await;
    app.command("check ok.user@acme.com", TEAM, "U0ASKER").await;
    app.http
        .post(format!("http://{}/slack/commands", app.addr))
        .body("x")
        .send()
        .await
        .unwrap();
    let response = app
        .http
        .get(format!("http://{}/metrics", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let at_least = |name: &str, labels: &[&str], min: f64| {
        let value = sample(&text, name, labels);
        assert!(
            value.is_some_and(|n| n >= min),
            "{name} {labels:?}: {value:?}, not at least {min}, in\n{text}"
        );
    };
    at_least(
        "crm_username_http_requests_total",
        &["route=\"/slack/commands\"", "outcome=\"ok\""],
        2.0,
    );
    at_least(
        "crm_username_http_requests_total",
        &["outcome=\"unauthorized\""],
        1.0,
    );
    at_least(
        "crm_username_diagnoses_total",
        &["verdict=\"blocked\""],
        1.0,
    );
    at_least("crm_username_diagnoses_total", &["verdict=\"clear\""], 1.0);
    at_least(
        "crm_username_findings_total",
        &["code=\"mapped_to_deleted_user\""],
        1.0,
    );
    at_least(
        "crm_username_http_request_duration_seconds_count",
        &["route=\"/slack/commands\""],
        3.0,
    );
    let age = sample(&text, "crm_username_snapshot_age_seconds", &[]).unwrap();
    assert!(
        (0.0..60.0).contains(&age),
        "the demo snapshot was just published: {age}"
    );
}

/// Bodies an attacker with a valid signature could send (a leaked secret, a buggy proxy):
/// garbage, invalid UTF-8, deep JSON, wrong shapes. None may break the app.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\xff\xfe\xfd".to_vec(),
        b"text=check+%ff%fe&team_id=T0TEAM".to_vec(),
        b"payload=".to_vec(),
        b"payload=%7B%7D".to_vec(),
        b"payload=not-json".to_vec(),
        format!("payload={}", "%5B".repeat(5_000)).into_bytes(),
        "[".repeat(10_000).into_bytes(),
        br#"{"type":"event_callback","event":{"type":"app_mention"}}"#.to_vec(),
        br#"{"type":"event_callback","team_id":"T0TEAM","event_id":"Ev0X","event":{"type":"app_mention","channel":"C1","ts":"1.1","text":null}}"#.to_vec(),
        br#"{"type":"url_verification"}"#.to_vec(),
        br#"{"type":42}"#.to_vec(),
        format!("team_id={TEAM}&text=check+{}", "a".repeat(60_000)).into_bytes(),
        format!("team_id={TEAM}&text=check+%3C%40U1%3E%26amp%3B%E2%80%AE").into_bytes(),
    ];
    // Deterministic noise: every byte value, in varied lengths.
    let mut seed: u64 = 0x5eed;
    for n in 0..60 {
        let len = (n * 37) % 700;
        let body = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        bodies.push(body);
    }
    bodies
}

#[tokio::test]
async fn signed_hostile_bodies_never_break_the_app() {
    let app = spawn_app(common::demo_memory_store().await).await;
    for path in ["/slack/commands", "/slack/interactions", "/slack/events"] {
        for body in hostile_bodies() {
            let ts = Utc::now().timestamp().to_string();
            let response = app
                .http
                .post(format!("http://{}{path}", app.addr))
                .header("x-slack-request-timestamp", &ts)
                .header("x-slack-signature", sign(SECRET, &ts, &body))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(
                response.status().as_u16() < 500,
                "{path} {:?}: {}",
                String::from_utf8_lossy(&body[..body.len().min(80)]),
                response.status()
            );
        }
    }
    // Still serving.
    let body: Value = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: sam.sales@acme.com")
    );
}
