//! The playground's follow-ups are its own: `serve --demo`'s playground has a store and a
//! follow-up job of its own, so the app's job never takes a follow-up scheduled in the
//! playground (whose answer is in the playground's channel, not the app's Slack), and the
//! playground's "15 minutes pass" never takes the app's. Checked with the app's store in
//! memory and in Redis.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crm_username::fakes::FakeSlack;
use crm_username::slack::followups::FollowUpSettings;
use crm_username::store::{FollowUp, FollowUpReply, RedisStore, Store};

use crate::common::app::{TEAM, TestApp};
use crate::common::{self, clear_prefix, prefix, redis_url};

async fn playground_messages(app: &TestApp) -> Vec<Value> {
    let page: Value = app
        .http
        .get(app.url("/playground/api/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["messages"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most 30 s) until the playground's channel satisfies `done`.
async fn playground_until(
    app: &TestApp,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let messages = playground_messages(app).await;
        if done(&messages) {
            return messages;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited for {what}; the playground holds {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Where the button `action_id` is in `message`: its block and its place in that block.
fn button(message: &Value, action_id: &str) -> (usize, usize) {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find_map(|(b, block)| {
            block["elements"]
                .as_array()?
                .iter()
                .position(|e| e["action_id"] == action_id)
                .map(|e| (b, e))
        })
        .unwrap_or_else(|| panic!("no {action_id} button in {message:#}"))
}

fn mentions(message: &Value, text: &str) -> bool {
    message.to_string().contains(text)
}

async fn separation_with(store: Store) {
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store.clone(), &slack);
    config.playground = true;
    // The app's job looks rarely: the app's follow-up below stays for the playground to
    // (not) take.
    config.follow_ups = FollowUpSettings {
        poll_every: Duration::from_secs(3600),
        ..FollowUpSettings::default()
    };
    let app = TestApp::spawn(config, slack).await;

    // The app's own follow-up, due now, answering in the app's Slack.
    let theirs = FollowUp {
        id: format!("app-follow-up-{}", uuid::Uuid::new_v4().simple()),
        query: "ok.user@acme.com".into(),
        team: TEAM.into(),
        user: "U0ASKER".into(),
        reply: FollowUpReply::Thread {
            channel: "C0APP".into(),
            thread_ts: "1700000000.000100".into(),
        },
        tries: 0,
    };
    let defaults = FollowUpSettings::default();
    store
        .schedule_follow_up(&theirs, Utc::now(), defaults.limits, defaults.delay)
        .await
        .unwrap();

    // A follow-up asked for in the playground.
    post(
        &app,
        "/playground/api/say",
        json!({"text": "@crm-username check nora.north@acme.com"}),
    )
    .await;
    let messages = playground_until(&app, "the answer in the thread", |m| m.len() == 2).await;
    let (block, element) = button(&messages[1], "follow_up");
    post(
        &app,
        "/playground/api/click",
        json!({"message_id": messages[1]["id"], "block": block, "element": element}),
    )
    .await;
    playground_until(&app, "the follow-up's confirmation", |m| {
        m.len() == 3 && mentions(&m[2], "asked for a follow-up")
    })
    .await;

    // The app's store holds none of the playground's: the app's job cannot take it, even
    // once it is due. Its one pending follow-up is the app's own.
    let in_apps_store = store
        .claim_due_follow_ups(Utc::now() + chrono::Duration::days(1), 100)
        .await
        .unwrap();
    assert_eq!(
        in_apps_store
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>(),
        [theirs.id.as_str()]
    );
    store
        .schedule_follow_up(&theirs, Utc::now(), defaults.limits, defaults.delay)
        .await
        .unwrap();

    // 15 minutes pass in the playground: it re-checks its own follow-up only.
    let passed = post(&app, "/playground/api/pass-time", json!({})).await;
    assert_eq!(passed["re_checked"], 1);
    let messages = playground_until(&app, "the re-check in the thread", |m| m.len() == 4).await;
    assert!(mentions(&messages[3], "Follow-up re-check 1 of 4"));
    assert_eq!(messages[3]["thread_ts"], messages[0]["ts"]);

    // The app's follow-up is still there, due, untouched; and the app's Slack got nothing of
    // the playground's.
    let still = store.claim_due_follow_ups(Utc::now(), 100).await.unwrap();
    assert_eq!(still, std::slice::from_ref(&theirs));
    store.finish_follow_up(&theirs).await.unwrap();
    let calls = app.slack.calls();
    assert!(
        calls
            .iter()
            .all(|c| !c.body.to_string().contains("nora.north")),
        "{calls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_follow_ups_and_the_playgrounds_never_take_each_other_with_the_app_in_memory() {
    separation_with(common::demo_memory_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_follow_ups_and_the_playgrounds_never_take_each_other_with_the_app_on_redis() {
    let store = RedisStore::connect(
        &redis_url(),
        &prefix("playground_followups"),
        Default::default(),
    )
    .unwrap();
    clear_prefix(store.keys().prefix()).await;
    let store = Store::Redis(store);
    store
        .publish(crm_username::demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    separation_with(store.clone()).await;
    // Nothing of the playground's went into the app's Redis either.
    let follow_up_keys = common::count_keys(&prefix("playground_followups"), "*follow*").await;
    assert_eq!(follow_up_keys, 0);
}
