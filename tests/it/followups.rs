//! Follow-up re-checks: the "Re-check in 15 min" button clicked as Slack sends it (signed
//! `block_actions`), then the background job against a Redis key prefix of the test's own,
//! with short delays. Tests wait on conditions with generous deadlines; none asserts timing.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crm_username::demo;
use crm_username::fakes::{FakeSlack, SlackCall};
use crm_username::slack::followups::FollowUpSettings;
use crm_username::store::{FollowUpLimits, RedisStore, Store};

use common::app::{TEAM, TestApp};

use crate::common::{self, clear_prefix, prefix, redis_url};

const CHANNEL: &str = "C0CHAN";

/// A store on the tests' Redis under the test's own prefix, holding the demo org; emptied
/// first when `fresh`.
async fn redis_store(test: &str, fresh: bool) -> Store {
    let store = RedisStore::connect(&redis_url(), &prefix(test), Default::default()).unwrap();
    if fresh {
        clear_prefix(store.keys().prefix()).await;
    }
    let store = Store::Redis(store);
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    store
}

fn settings(delay: Duration) -> FollowUpSettings {
    FollowUpSettings {
        poll_every: Duration::from_millis(100),
        delay,
        ..FollowUpSettings::default()
    }
}

async fn spawn(store: Store, follow_ups: FollowUpSettings) -> TestApp {
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store, &slack);
    config.follow_ups = follow_ups;
    TestApp::spawn(config, slack).await
}

/// Where the clicked answer is: in a thread of `CHANNEL`, or ephemeral.
enum Answer<'a> {
    InThread(&'a str),
    Ephemeral,
}

impl TestApp {
    /// A click on `action_id` with `value` by `user`, its `response_url` on the fake
    /// (`response_url:<response>`).
    async fn click_button(
        &self,
        action_id: &str,
        value: &str,
        user: &str,
        on: Answer<'_>,
        response: &str,
    ) {
        let mut payload = json!({
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "acme"},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": "A0APP",
            "trigger_id": "1.2.3",
            "channel": {"id": CHANNEL, "name": "support"},
            "response_url": self.slack.response_url(response),
            "actions": [{"type": "button", "action_id": action_id, "block_id": "footer", "value": value, "action_ts": "1700000003.000200"}]
        });
        match on {
            Answer::InThread(thread_ts) => {
                payload["container"] = json!({"type": "message", "message_ts": "1700000009.000100", "channel_id": CHANNEL, "is_ephemeral": false});
                payload["message"] = json!({"type": "message", "ts": "1700000009.000100", "thread_ts": thread_ts, "text": "Blocked", "user": "U0BOT"});
            }
            Answer::Ephemeral => {
                payload["container"] = json!({"type": "message", "message_ts": "1700000009.000100", "channel_id": CHANNEL, "is_ephemeral": true});
            }
        }
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let response = self
            .post_signed(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                &body,
                &[],
            )
            .await;
        assert_eq!(response.status(), 200);
    }
}

/// Waits (at most 60 s) until `done` holds for the calls of `slacks`, and returns them.
async fn wait_for(slacks: &[&FakeSlack], done: impl Fn(&[SlackCall]) -> bool) -> Vec<SlackCall> {
    let started = Instant::now();
    loop {
        let calls: Vec<SlackCall> = slacks.iter().flat_map(|s| s.calls()).collect();
        if done(&calls) {
            return calls;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting; calls: {calls:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn texts(body: &Value) -> String {
    serde_json::to_string(&body["blocks"]).unwrap()
}

/// The follow-ups' re-check answers among `calls`.
fn rechecks(calls: &[SlackCall]) -> Vec<&SlackCall> {
    calls
        .iter()
        .filter(|c| texts(&c.body).contains("Follow-up re-check"))
        .collect()
}

/// The "Stop" button's value (the follow-up's id) of the confirmation among `calls`.
fn follow_up_id(calls: &[SlackCall]) -> Option<String> {
    calls.iter().find_map(|c| {
        c.body["blocks"].as_array()?.iter().find_map(|b| {
            b["elements"].as_array()?.iter().find_map(|e| {
                (e["action_id"] == "stop_follow_up")
                    .then(|| e["value"].as_str().unwrap().to_owned())
            })
        })
    })
}

fn action_ids(body: &Value) -> Vec<String> {
    body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["elements"].as_array())
        .flatten()
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect()
}

/// Some polls of the job, to see that nothing more comes.
async fn a_while() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn answers_whose_fix_takes_time_carry_the_button_and_others_do_not() {
    let app = spawn(
        common::demo_memory_store().await,
        FollowUpSettings::default(),
    )
    .await;
    for (query, expected) in [
        ("chris.contractor@acme.com", true),
        ("eve.new@acme.com", true),
        ("nora.north@acme.com", true),
        ("dana.deleted@acme.com", true),
        ("ok.user@acme.com", true),
        ("sam.sale@acme.com", false),
        ("sam.sales@acme.com for sam@acme.com", false),
        ("email_a@example.com", false),
    ] {
        let response = app
            .command(&format!("check {query}"), TEAM, "U0ASKER")
            .await;
        let body: Value = response.json().await.unwrap();
        let ids = action_ids(&body);
        assert_eq!(
            ids.contains(&"follow_up".to_owned()),
            expected,
            "{query}: {ids:?}"
        );
        if expected {
            assert!(texts(&body).contains("Re-check in 15 min"));
        }
    }
}

#[tokio::test]
async fn a_follow_up_scheduled_before_a_restart_runs_once_after_it() {
    let test = "followups_restart";
    let store = redis_store(test, true).await;
    let mut first = spawn(store, settings(Duration::from_secs(3))).await;
    first
        .click_button(
            "follow_up",
            "ok.user@acme.com",
            "U0ASKER",
            Answer::InThread("1700000000.000500"),
            "fu",
        )
        .await;
    wait_for(&[&first.slack], |calls| follow_up_id(calls).is_some()).await;
    first.stop().await.unwrap();

    let second = spawn(
        redis_store(test, false).await,
        settings(Duration::from_secs(3)),
    )
    .await;
    let slacks = [&first.slack, &second.slack];
    wait_for(&slacks, |calls| !rechecks(calls).is_empty()).await;
    a_while().await;
    let calls: Vec<SlackCall> = slacks.iter().flat_map(|s| s.calls()).collect();
    let rechecks = rechecks(&calls);
    assert_eq!(rechecks.len(), 1, "{rechecks:#?}");
    assert_eq!(rechecks[0].body["thread_ts"], "1700000000.000500");
    assert_eq!(rechecks[0].body["channel"], CHANNEL);
    assert!(texts(&rechecks[0].body).contains("The verdict is clear"));
    clear_prefix(&prefix(test)).await;
}

#[tokio::test]
async fn two_replicas_on_one_redis_run_each_follow_up_exactly_once() {
    let test = "followups_replicas";
    let a = spawn(
        redis_store(test, true).await,
        settings(Duration::from_secs(1)),
    )
    .await;
    let b = spawn(
        redis_store(test, false).await,
        settings(Duration::from_secs(1)),
    )
    .await;
    let threads = [
        "1700000000.000001",
        "1700000000.000002",
        "1700000000.000003",
    ];
    for (i, thread) in threads.iter().enumerate() {
        let clicked_on = if i % 2 == 0 { &a } else { &b };
        clicked_on
            .click_button(
                "follow_up",
                "ok.user@acme.com",
                &format!("U0USER{i}"),
                Answer::InThread(thread),
                "fu",
            )
            .await;
    }
    let slacks = [&a.slack, &b.slack];
    wait_for(&slacks, |calls| rechecks(calls).len() >= threads.len()).await;
    a_while().await;
    let calls: Vec<SlackCall> = slacks.iter().flat_map(|s| s.calls()).collect();
    let rechecks = rechecks(&calls);
    assert_eq!(rechecks.len(), threads.len(), "{rechecks:#?}");
    for thread in threads {
        assert_eq!(
            rechecks
                .iter()
                .filter(|c| c.body["thread_ts"] == thread)
                .count(),
            1,
            "{thread}"
        );
    }
    clear_prefix(&prefix(test)).await;
}

#[tokio::test]
async fn an_ephemeral_answer_is_followed_up_through_its_response_url_until_clear() {
    let app = spawn(
        common::demo_memory_store().await,
        settings(Duration::from_millis(300)),
    )
    .await;
    app.click_button(
        "follow_up",
        "ok.user@acme.com",
        "U0ASKER",
        Answer::Ephemeral,
        "eph",
    )
    .await;
    let calls = wait_for(&[&app.slack], |calls| !rechecks(calls).is_empty()).await;
    let confirmation = &calls[0];
    assert_eq!(confirmation.target, "response_url:eph");
    assert_eq!(confirmation.body["response_type"], "ephemeral");
    assert_eq!(confirmation.body["replace_original"], false);
    a_while().await;
    let calls = app.slack.calls();
    let rechecks = rechecks(&calls);
    assert_eq!(rechecks.len(), 1, "clear at once: {rechecks:#?}");
    assert_eq!(rechecks[0].target, "response_url:eph");
    assert_eq!(rechecks[0].body["replace_original"], true);
    assert!(texts(&rechecks[0].body).contains("The verdict is clear"));
    assert!(!action_ids(&rechecks[0].body).contains(&"stop_follow_up".to_owned()));
}

#[tokio::test]
async fn a_follow_up_that_never_clears_stops_after_four_tries_and_says_what_to_look_at() {
    let test = "followups_tries";
    let app = spawn(
        redis_store(test, true).await,
        settings(Duration::from_millis(300)),
    )
    .await;
    app.click_button(
        "follow_up",
        "chris.contractor@acme.com",
        "U0ASKER",
        Answer::InThread("1700000000.000500"),
        "fu",
    )
    .await;
    let calls = wait_for(&[&app.slack], |calls| rechecks(calls).len() >= 4).await;
    let id = follow_up_id(&calls).unwrap();
    a_while().await;
    let calls = app.slack.calls();
    let rechecks = rechecks(&calls);
    assert_eq!(rechecks.len(), 4, "{rechecks:#?}");
    for (i, call) in rechecks.iter().enumerate() {
        let text = texts(&call.body);
        assert!(
            text.contains(&format!("Follow-up re-check {} of 4", i + 1)),
            "{text}"
        );
        assert!(!action_ids(&call.body).contains(&"share".to_owned()));
        assert!(!action_ids(&call.body).contains(&"follow_up".to_owned()));
        assert_eq!(
            action_ids(&call.body).contains(&"stop_follow_up".to_owned()),
            i < 3
        );
    }
    let last = texts(&rechecks[3].body);
    assert!(last.contains("Still not clear after 4 re-checks"), "{last}");
    assert!(last.contains("profile-to-role mapping"), "{last}");
    assert_eq!(app.state.store.follow_up(&id).await.unwrap(), None);
    clear_prefix(&prefix(test)).await;
}

#[tokio::test]
async fn stop_cancels_a_follow_up_before_and_between_its_re_checks() {
    let test = "followups_stop";
    let app = spawn(
        redis_store(test, true).await,
        settings(Duration::from_secs(3)),
    )
    .await;
    // Before its first re-check.
    app.click_button(
        "follow_up",
        "chris.contractor@acme.com",
        "U0ASKER",
        Answer::InThread("1700000000.000001"),
        "fu",
    )
    .await;
    let calls = wait_for(&[&app.slack], |calls| follow_up_id(calls).is_some()).await;
    let first = follow_up_id(&calls).unwrap();
    app.click_button(
        "stop_follow_up",
        &first,
        "U0OTHER",
        Answer::InThread("1700000000.000001"),
        "stop",
    )
    .await;
    wait_for(&[&app.slack], |calls| {
        calls
            .iter()
            .any(|c| texts(&c.body).contains("stopped the follow-up"))
    })
    .await;
    assert_eq!(app.state.store.follow_up(&first).await.unwrap(), None);
    // A second Stop: already gone, said to the clicker.
    app.click_button(
        "stop_follow_up",
        &first,
        "U0OTHER",
        Answer::InThread("1700000000.000001"),
        "again",
    )
    .await;
    wait_for(&[&app.slack], |calls| {
        calls.iter().any(|c| {
            c.target == "response_url:again" && texts(&c.body).contains("already finished")
        })
    })
    .await;

    // Between re-checks: the Stop button of the first re-check's answer.
    app.click_button(
        "follow_up",
        "chris.contractor@acme.com",
        "U0ASKER",
        Answer::InThread("1700000000.000002"),
        "fu",
    )
    .await;
    let calls = wait_for(&[&app.slack], |calls| rechecks(calls).len() == 1).await;
    let second = follow_up_id(&rechecks(&calls).into_iter().cloned().collect::<Vec<_>>()).unwrap();
    assert_ne!(first, second);
    app.click_button(
        "stop_follow_up",
        &second,
        "U0ASKER",
        Answer::InThread("1700000000.000002"),
        "stop",
    )
    .await;
    wait_for(&[&app.slack], |calls| {
        calls
            .iter()
            .filter(|c| texts(&c.body).contains("stopped the follow-up"))
            .count()
            == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = app.slack.calls();
    assert_eq!(rechecks(&calls).len(), 1, "{:#?}", rechecks(&calls));
    assert!(
        rechecks(&calls)
            .iter()
            .all(|c| c.body["thread_ts"] == "1700000000.000002")
    );
    clear_prefix(&prefix(test)).await;
}

#[tokio::test]
async fn the_limits_per_person_and_per_workspace_are_enforced_and_said() {
    let test = "followups_limits";
    for store in [
        redis_store(test, true).await,
        common::demo_memory_store().await,
    ] {
        let mut follow_ups = settings(Duration::from_secs(600));
        follow_ups.limits = FollowUpLimits {
            per_user: 2,
            per_team: 3,
        };
        let app = spawn(store, follow_ups).await;
        let clicks = [
            ("U0A", "a1"),
            ("U0A", "a2"),
            ("U0A", "a3"),
            ("U0B", "b1"),
            ("U0C", "c1"),
        ];
        for (n, (user, response)) in clicks.iter().enumerate() {
            app.click_button(
                "follow_up",
                "chris.contractor@acme.com",
                user,
                Answer::InThread("1700000000.000500"),
                response,
            )
            .await;
            // One at a time, so the limits apply in this order.
            wait_for(&[&app.slack], |calls| calls.len() > n).await;
        }
        let calls = app.slack.calls();
        let said_to = |response: &str| -> Vec<String> {
            calls
                .iter()
                .filter(|c| c.target == format!("response_url:{response}"))
                .map(|c| texts(&c.body))
                .collect()
        };
        let scheduled = calls
            .iter()
            .filter(|c| follow_up_id(std::slice::from_ref(c)).is_some())
            .count();
        assert_eq!(scheduled, 3, "{calls:#?}");
        let person = said_to("a3");
        assert!(
            person[0].contains("You already have 2 follow-ups pending"),
            "{person:?}"
        );
        let workspace = said_to("c1");
        assert!(
            workspace[0].contains("This workspace already has 3 follow-ups pending"),
            "{workspace:?}"
        );
        assert!(said_to("a1").is_empty() && said_to("b1").is_empty());
    }
    clear_prefix(&prefix(test)).await;
}
