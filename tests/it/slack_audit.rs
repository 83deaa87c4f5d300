//! `/crm-username audit` in Slack: admins only, acknowledged at once, then the CSV of every
//! row shared with Slack's external upload flow and the summary through `response_url`.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crm_username::audit::Changes;
use crm_username::audit::{Scope, audit_org, to_csv};
use crm_username::demo;
use crm_username::domain::{Org, OrgSnapshot};
use crm_username::fakes::{FakeSlack, SlackCall};
use crm_username::slack::digest::{DigestOutcome, DigestSettings, digest_once};
use crm_username::store::Store;

use crate::common;
use common::app::{TEAM, TestApp};

/// The app, and the org it answers from.
struct App {
    app: TestApp,
    store: Store,
    snapshot: OrgSnapshot,
}

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

async fn spawn_app() -> App {
    let snapshot = demo::snapshot(Utc::now()).unwrap();
    let store = Store::memory();
    store.publish(snapshot.clone()).await.unwrap();
    App {
        app: TestApp::start(store.clone()).await,
        store,
        snapshot,
    }
}

impl App {
    /// `/crm-username <text>` from `user`: the acknowledgement.
    async fn command(&self, text: &str, user: &str) -> Value {
        self.app
            .command(text, TEAM, user)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Waits (at most 10 s) for the summary on the response_url, then returns every call.
    async fn until_summary(&self) -> Vec<SlackCall> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let calls = self.slack.calls();
            if calls.iter().any(|c| c.target == "response_url:cmd") {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no summary within 10 s; calls: {:?}", self.slack.calls());
    }
}

fn targets(calls: &[SlackCall]) -> Vec<&str> {
    calls.iter().map(|c| c.target.as_str()).collect()
}

fn all_text(message: &Value) -> String {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn an_audit_by_someone_else_than_an_admin_is_refused_and_does_nothing() {
    let app = spawn_app().await;
    let ack = app.command("audit", "U0SOMEONE").await;
    assert!(
        ack["text"]
            .as_str()
            .unwrap()
            .starts_with("Only the bot's admins can run an audit"),
        "{ack}"
    );
    assert_eq!(ack["response_type"], "ephemeral");
    // The refusal is the whole answer: a check afterwards is the first thing Slack hears of.
    app.command("check sam.sales@acme.com", "U0SOMEONE").await;
    assert_eq!(targets(&app.slack.calls()), Vec::<&str>::new());
}

#[tokio::test]
async fn an_admin_audit_shares_the_csv_of_every_row_then_the_summary() {
    let app = spawn_app().await;
    let ack = app.command("audit", "UADMIN").await;
    assert_eq!(
        ack["text"],
        "Auditing every business unit… the summary and a CSV of every row follow here."
    );
    let calls = app.until_summary().await;
    assert_eq!(
        targets(&calls),
        vec![
            "files.getUploadURLExternal",
            "upload:F00000001",
            "files.completeUploadExternal",
            "response_url:cmd"
        ]
    );
    let want = audit_org(
        &Org::new(app.snapshot.clone()),
        &Scope::All,
        Utc::now(),
        None,
        &mut |_| {},
    );
    let csv = app.slack.uploaded("F00000001").unwrap();
    assert_eq!(csv, to_csv(&want));
    assert_eq!(calls[0].body["length"], csv.len().to_string());
    assert!(
        calls[0].body["filename"]
            .as_str()
            .unwrap()
            .starts_with("crm-username-audit-")
    );
    // The bytes go to the upload URL without the bot token.
    assert_eq!(calls[1].authorization, None);
    assert_eq!(
        calls[2].authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(calls[2].body["channel_id"], "C0CHAN");
    assert_eq!(calls[2].body["files"][0]["id"], "F00000001");
    assert_eq!(
        calls[2].body["files"][0]["title"],
        "Audit of every business unit"
    );
    let summary = &calls[3].body;
    assert_eq!(summary["replace_original"], true);
    assert_eq!(
        summary["text"],
        format!(
            "{} mappings need attention in every business unit ({} blocked)",
            want.rows.len(),
            want.blocked()
        )
    );
    let text = all_text(summary);
    for count in &want.by_cause {
        assert!(
            text.contains(&format!("*{}* `{}`", count.count, count.cause.as_str())),
            "{} missing from {text}",
            count.cause.as_str()
        );
    }
    assert!(text.contains("is shared in this channel"), "{text}");
    // Once it has ended, the next audit starts (the replica's one-at-a-time mark is cleared
    // when the task ends, just after the summary is posted: asked again until then).
    let started = Instant::now();
    loop {
        let again = app.command("audit", "UADMIN").await;
        if again["text"]
            == "Auditing every business unit… the summary and a CSV of every row follow here."
        {
            break;
        }
        assert_eq!(
            again["text"],
            "An audit is already running; its summary and CSV will be posted when it ends. Try again after that."
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first audit's mark was never cleared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn where_the_bot_is_not_in_the_channel_the_csv_goes_to_a_direct_message() {
    let app = spawn_app().await;
    app.slack.not_in_channel("C0CHAN");
    app.command("audit Acme EMEA", "UADMIN").await;
    let calls = app.until_summary().await;
    assert_eq!(
        targets(&calls),
        vec![
            "files.getUploadURLExternal",
            "upload:F00000001",
            "files.completeUploadExternal",
            "conversations.open",
            "files.getUploadURLExternal",
            "upload:F00000002",
            "files.completeUploadExternal",
            "response_url:cmd"
        ]
    );
    assert_eq!(calls[3].body["users"], "UADMIN");
    assert_eq!(calls[6].body["channel_id"], "DUADMIN");
    let summary = &calls[7].body;
    assert_eq!(summary["blocks"][0]["text"]["text"], "Audit of Acme EMEA");
    assert!(
        all_text(summary).contains("is in your direct messages with the bot"),
        "{summary}"
    );
}

#[tokio::test]
async fn an_unknown_business_unit_is_answered_with_the_known_ones() {
    let app = spawn_app().await;
    app.command("audit Atlantis", "UADMIN").await;
    let calls = app.until_summary().await;
    assert_eq!(targets(&calls), vec!["response_url:cmd"]);
    assert!(
        all_text(&calls[0].body).contains(
            "No business unit is called \\\"Atlantis\\\". Business units: Acme North America (0UvAk000000NAM1KAO), Acme EMEA (0UvAk000000EME1KAO)."
        ),
        "{}",
        calls[0].body
    );
}

#[tokio::test]
async fn the_digest_is_posted_once_per_period_and_only_when_the_rows_change() {
    let app = spawn_app().await;
    let settings = DigestSettings {
        channel: "C0DIGEST".to_owned(),
        interval: Duration::from_millis(100),
    };
    let rows = audit_org(
        &Org::new(app.snapshot.clone()),
        &Scope::All,
        Utc::now(),
        None,
        &mut |_| {},
    )
    .rows
    .len();
    assert_eq!(
        digest_once(&app.state, &settings, Utc::now()).await,
        DigestOutcome::Posted(Changes { new: rows, gone: 0 })
    );
    let calls = app.slack.calls();
    assert_first_digest_posted(&calls);
    // Next period, same rows: nothing is posted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        digest_once(&app.state, &settings, Utc::now()).await,
        DigestOutcome::Unchanged
    );
    assert_eq!(app.slack.calls().len(), 4);
    // Dana's AE user leaves the recycle bin for good: her row changes cause.
    let mut fixed = app.snapshot.clone();
    for bu in &mut fixed.business_units {
        bu.users.retain(|u| u.email != "dana.old@acme.com");
    }
    app.store.publish(fixed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        digest_once(&app.state, &settings, Utc::now()).await,
        DigestOutcome::Posted(Changes { new: 1, gone: 1 })
    );
    let calls = app.slack.calls();
    assert_eq!(calls.len(), 8);
    assert!(
        all_text(&calls[7].body).contains("Since the last digest: 1 new row, 1 gone"),
        "{}",
        calls[7].body
    );
}

#[tokio::test]
async fn the_app_with_a_digest_channel_posts_the_first_digest_by_itself() {
    let store = common::demo_memory_store().await;
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store, &slack);
    config.digest = Some(DigestSettings {
        channel: "C0DIGEST".to_owned(),
        interval: Duration::from_secs(3600),
    });
    let app = TestApp::spawn(config, slack).await;
    let calls = app.calls(4).await;
    assert_first_digest_posted(&calls);
}

#[tokio::test]
async fn a_period_of_the_digest_is_run_by_one_replica_only() {
    let app = spawn_app().await;
    let settings = DigestSettings {
        channel: "C0DIGEST".to_owned(),
        interval: Duration::from_secs(3600),
    };
    assert!(matches!(
        digest_once(&app.state, &settings, Utc::now()).await,
        DigestOutcome::Posted(_)
    ));
    // Another replica (or this one after a restart) asks within the same period.
    assert_eq!(
        digest_once(&app.state, &settings, Utc::now()).await,
        DigestOutcome::NotOurTurn
    );
    assert_eq!(app.slack.calls().len(), 4);
}

/// The first digest's four calls: the CSV uploaded and shared, and the message saying every
/// row is new, all in the digest channel.
fn assert_first_digest_posted(calls: &[SlackCall]) {
    assert_eq!(
        targets(calls),
        vec![
            "files.getUploadURLExternal",
            "upload:F00000001",
            "files.completeUploadExternal",
            "chat.postMessage"
        ]
    );
    assert_eq!(calls[2].body["channel_id"], "C0DIGEST");
    assert_eq!(calls[3].body["channel"], "C0DIGEST");
    assert!(
        all_text(&calls[3].body).contains("First digest: every row is new."),
        "{}",
        calls[3].body
    );
}
