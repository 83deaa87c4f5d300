//! Faults: Redis emptied or stopped under load, a publish stopped halfway, shutdown during
//! work. Each test runs its own Redis server where it stops one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};

use crm_username::app::{AppData, RefresherPlace};
use crm_username::demo;
use crm_username::domain::{Query, Verdict};
use crm_username::fakes::{FakeSlack, FakeUpstreams};
use crm_username::slack::signature::sign;
use crm_username::store::{FORMAT, RedisStore, Store};
use crm_username::synthetic::{self, Params};

use crate::common;
use common::app::TestApp;
use common::{OwnRedis, free_port};

const SECRET: &str = "fault-test-secret";

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_refilled_without_waiting_for_the_interval() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let store = Store::Redis(
        RedisStore::connect(
            &format!("redis://127.0.0.1:{port}"),
            "refill:",
            Default::default(),
        )
        .unwrap(),
    );
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = Arc::new(upstreams.sources(&org).unwrap());
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store.clone(), &slack);
    config.data = AppData::Cache {
        store: store.clone(),
        sources: Some(sources),
    };
    config.refresh_schedule.full_every = Duration::from_secs(3600);
    config.refresh_watch = Duration::from_millis(100);
    let app = TestApp::spawn(config, slack).await;
    // REFRESH_IN_SERVE keeps its default: the refresher runs in the app.
    assert_eq!(app.refresher, RefresherPlace::ThisProcess);
    let has_data = || async { matches!(store.status().await, Ok(r) if r.data_as_of.is_some()) };
    wait_for("the first refresh", Duration::from_secs(10), has_data).await;

    redis.stop();
    let _redis = OwnRedis::start(port);
    // The restarted server is empty; the refresher sees it and refills it, long before an hour.
    wait_for("the refill", Duration::from_secs(10), has_data).await;
    let outcome = common::outcome::check(
        &store,
        &Query::parse("sam.sales@acme.com").unwrap(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome.verdict, Verdict::Blocked);
    drop(app);
}

#[tokio::test]
async fn a_publish_stopped_halfway_leaves_the_previous_snapshot_serving() {
    let prefix = common::prefix("halfway");
    common::clear_prefix(&prefix).await;
    let store = Store::Redis(
        RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap(),
    );
    let before = demo::snapshot(Utc::now()).unwrap();
    store.publish(before.clone()).await.unwrap();
    let query = Query::parse("sam.sales@acme.com").unwrap();
    let want = common::outcome::check(&store, &query, Utc::now())
        .await
        .unwrap();

    // A large publish, stopped (as a killed process would be) once it has written part of
    // its generation.
    let big = synthetic::generate(Params {
        sf_users: 8_000,
        ae_users: 2_000,
        business_units: 3,
        seed: 5,
    });
    let publishing = tokio::spawn({
        let (store, big) = (store.clone(), big.clone());
        async move { store.publish(big).await }
    });
    let written = || async {
        common::count_fields(&format!("{prefix}v{FORMAT}:"), "gen:*:user:*").await
            > before.salesforce.users.len() + 100
    };
    wait_for(
        "part of the new generation",
        Duration::from_secs(30),
        written,
    )
    .await;
    publishing.abort();
    assert!(
        publishing.await.unwrap_err().is_cancelled(),
        "the publish was still running when stopped"
    );
    assert_eq!(
        common::outcome::check(&store, &query, Utc::now())
            .await
            .unwrap(),
        want,
        "readers still get the previous snapshot"
    );

    // The next complete publish serves, and removes the half-written generation.
    store.publish(big.clone()).await.unwrap();
    assert_eq!(
        common::count_keys(&format!("{prefix}v{FORMAT}:"), "gen:*:meta").await,
        2
    );
    assert_eq!(
        common::count_fields(&format!("{prefix}v{FORMAT}:"), "gen:*:user:*").await,
        before.salesforce.users.len() + big.salesforce.users.len()
    );
    common::clear_prefix(&prefix).await;
}

/// The app answering from `store`, calling `slack`; any workspace, requests signed with
/// `SECRET`.
async fn spawn(store: Store, slack: FakeSlack) -> TestApp {
    let mut config = TestApp::config(store, &slack);
    config.slack.signing_secrets = vec![SecretString::from(SECRET)];
    config.slack.allowed_team_ids = Vec::new();
    config.slack.admin_user_ids = Vec::new();
    TestApp::spawn(config, slack).await
}

async fn signed(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    path: &str,
    body: String,
) -> reqwest::Response {
    let ts = Utc::now().timestamp().to_string();
    http.post(format!("http://{addr}{path}"))
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(SECRET, &ts, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_replies_already_promised() {
    let store = common::demo_memory_store().await;
    let slack = FakeSlack::start().await.unwrap();
    slack.rate_limit(1, 1); // the first reply waits a second: shutdown comes while it waits
    let mut app = spawn(store, slack).await;
    let addr = app.addr;
    let http = reqwest::Client::new();
    for n in 0..10 {
        let event = json!({"type": "event_callback", "team_id": "T1", "api_app_id": "A0APP", "event_id": format!("Ev0DRAIN{n}"), "event_time": 1,
            "event": {"type": "app_mention", "user": "U1", "text": "<@U0BOT> check alex", "ts": format!("1.{n}"), "channel": "C1"}});
        assert_eq!(
            signed(&http, addr, "/slack/events", event.to_string())
                .await
                .status(),
            200
        );
    }
    app.stop().await.unwrap();
    assert_eq!(
        app.slack.calls().len(),
        10,
        "every acknowledged mention was answered before exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_answers_in_time_while_redis_stops_and_the_bot_recovers() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let store = Store::Redis(
        RedisStore::connect(
            &format!("redis://127.0.0.1:{port}"),
            "burst:",
            Default::default(),
        )
        .unwrap(),
    );
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let app = spawn(store.clone(), slack).await;
    let addr = app.addr;
    let http = reqwest::Client::new();
    let command = || {
        serde_urlencoded::to_string([
            ("team_id", "T1"),
            ("user_id", "U1"),
            ("command", "/crm-username"),
            ("text", "check sam.sales@acme.com"),
            ("response_url", &app.slack.response_url("burst")),
            ("channel_id", "C0CHAN"),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap()
    };

    let mut requests = Vec::new();
    for n in 0..40 {
        let (http, body) = (http.clone(), command());
        requests.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n * 10)).await;
            let started = Instant::now();
            let response = signed(&http, addr, "/slack/commands", body).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (
                status,
                started.elapsed(),
                body["text"].as_str().unwrap_or_default().to_owned(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.stop();
    let mut answered = 0;
    let mut unavailable = 0;
    for request in requests {
        let (status, took, text) = request.await.unwrap();
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(3), "answered in {took:?}");
        if text.starts_with("Blocked: sam.sales@acme.com") {
            answered += 1;
        } else if text == "The org data is unavailable right now" || text.starts_with("Checking") {
            unavailable += 1;
        } else {
            panic!("unexpected answer {text:?}");
        }
    }
    assert!(
        answered > 0 && unavailable > 0,
        "answered {answered}, unavailable {unavailable}"
    );

    // Redis comes back empty; once a refresh publishes again, the same process answers.
    let _redis = OwnRedis::start(port);
    wait_for("Redis", Duration::from_secs(10), || async {
        store.status().await.is_ok()
    })
    .await;
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let response = signed(&http, addr, "/slack/commands", command()).await;
    let body: Value = response.json().await.unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: sam.sales@acme.com"),
        "{body}"
    );
    drop(app);
}
