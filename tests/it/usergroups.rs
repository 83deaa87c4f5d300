//! Admins by Slack user group (`SLACK_ADMIN_USERGROUP_IDS`): the members Slack lists with
//! `usergroups.users.list` may run `refresh` and `audit` until they leave the group; a failed
//! resolution keeps the members last listed, and `serve` says so once; `SLACK_ADMIN_USER_IDS`
//! stays in force throughout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crm_username::demo;
use crm_username::fakes::{FakeSlack, UsergroupFailure};
use crm_username::slack::SlackApiError;
use crm_username::slack::usergroups::UsergroupSettings;
use crm_username::store::Store;

use crate::common;
use common::app::{ADMIN, SECRET, TEAM, TestApp, settings, signed};

const GROUP: &str = "S0ADMINS";
const MEMBER: &str = "U0GROUPIE";
/// Long enough for any of these conditions on a busy machine; the tests never wait it out
/// when all is well.
const DEADLINE: Duration = Duration::from_secs(30);

/// The app with the demo org, its admin `ADMIN`, and the admin user group `GROUP` asked again
/// every 100 ms; the fake Slack lists `members` in it from the start.
async fn spawn_app(members: &[&str]) -> TestApp {
    let store = Store::memory();
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let slack = FakeSlack::start().await.unwrap();
    slack.set_usergroup(GROUP, members);
    let mut config = TestApp::config(store, &slack);
    config.admin_usergroups = UsergroupSettings {
        ids: vec![GROUP.to_owned()],
        refresh: Duration::from_millis(100),
    };
    TestApp::spawn(config, slack).await
}

/// Waits until `condition` holds, failing the test after [`DEADLINE`].
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/crm-username <text>` from `user`: the acknowledgement's text.
async fn command(app: &TestApp, text: &str, user: &str) -> String {
    let body: Value = app.command(text, TEAM, user).await.json().await.unwrap();
    body["text"].as_str().unwrap_or_default().to_owned()
}

const REFRESH_REFUSED: &str = "Only the bot's admins can start a refresh";
/// What an admin hears from `refresh` on a bot without live sources: past the admin check.
const REFRESH_ALLOWED: &str = "This bot has no live data source configured";
const AUDIT_REFUSED: &str = "Only the bot's admins can run an audit";
const AUDIT_STARTED: &str = "Auditing every business unit";

/// `refresh` and `audit` from `user` pass the admin check (`true`) or are refused (`false`),
/// both of them; an audit started is waited for, so that the next one may start.
async fn admin_actions_allowed(app: &TestApp, user: &str) -> bool {
    let refresh = command(app, "refresh", user).await;
    let audit = command(app, "audit", user).await;
    match (
        refresh.starts_with(REFRESH_ALLOWED),
        audit.starts_with(AUDIT_STARTED),
    ) {
        (true, true) => {
            until("the audit's end", || {
                !app.state.audit_running.load(Ordering::SeqCst)
            })
            .await;
            true
        }
        (false, false) => {
            assert!(refresh.starts_with(REFRESH_REFUSED), "{refresh}");
            assert!(audit.starts_with(AUDIT_REFUSED), "{audit}");
            false
        }
        _ => panic!("refresh and audit disagree on {user}: {refresh:?} / {audit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_an_admin_user_group_runs_refresh_and_audit_until_removed_from_it() {
    let app = spawn_app(&[MEMBER]).await;
    until("the group is resolved", || app.state.is_admin(MEMBER)).await;
    assert!(admin_actions_allowed(&app, MEMBER).await);
    assert!(!admin_actions_allowed(&app, "U0SOMEONE").await);

    app.slack.set_usergroup(GROUP, &["U0SOMEONE"]);
    until("the removal is seen", || !app.state.is_admin(MEMBER)).await;
    assert!(!admin_actions_allowed(&app, MEMBER).await);
    assert!(admin_actions_allowed(&app, "U0SOMEONE").await);
    // Listed in SLACK_ADMIN_USER_IDS, in no group: an admin all along.
    assert!(admin_actions_allowed(&app, ADMIN).await);
    let lookups = app.slack.calls_to("usergroups.users.list");
    assert!(lookups.is_empty(), "lookups are not messages: {lookups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_resolution_keeps_the_last_members() {
    let app = spawn_app(&[MEMBER]).await;
    until("the group is resolved", || app.state.is_admin(MEMBER)).await;

    for failure in [
        UsergroupFailure::Error("missing_scope".into()),
        UsergroupFailure::Status(500),
        UsergroupFailure::RateLimited(120),
    ] {
        app.slack.fail_usergroups(Some(failure));
        let before = app.slack.usergroup_lookups();
        until("two failed rounds", || {
            app.slack.usergroup_lookups() >= before + 2
        })
        .await;
        assert!(admin_actions_allowed(&app, MEMBER).await);
        assert!(admin_actions_allowed(&app, ADMIN).await);
    }

    // Slack answers again, with other members: they replace the kept ones.
    app.slack.set_usergroup(GROUP, &["U0NEWCOMER"]);
    app.slack.fail_usergroups(None);
    until("the new members", || app.state.is_admin("U0NEWCOMER")).await;
    assert!(!admin_actions_allowed(&app, MEMBER).await);
    assert!(admin_actions_allowed(&app, ADMIN).await);
}

/// `serve`'s log, read as it is written.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn follow(stderr: std::process::ChildStderr) -> Log {
        let log = Log::default();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut text = lines.0.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        log
    }

    fn count(&self, text: &str) -> usize {
        self.0.lock().unwrap().matches(text).count()
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Through the real `serve` and its settings: a failure is logged once while it lasts, again
/// when it changes, and its end once; the group's member stays an admin meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_a_failing_resolution_once_per_error_and_its_recovery() {
    const FAILED: &str = "could not resolve an admin user group";
    const RECOVERED: &str = "the admin user group resolves again";
    let slack = FakeSlack::start().await.unwrap();
    slack.set_usergroup(GROUP, &[MEMBER]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_crm-username"))
            .args(["serve", "--demo"])
            .env_clear()
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .env("BIND_ADDR", addr.to_string())
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("SLACK_BOT_TOKEN", "xoxb-test-token")
            .env("SLACK_API_URL", slack.api_url())
            .env("SLACK_RESPONSE_URL_HOSTS", "127.0.0.1")
            .env("SLACK_ADMIN_USER_IDS", ADMIN)
            .env("SLACK_ADMIN_USERGROUP_IDS", format!(" {GROUP} "))
            .env("SLACK_ADMIN_USERGROUP_REFRESH", "100ms")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Log::follow(child.0.stderr.take().unwrap());
    crm_username::sources::install_crypto_provider();
    let http = reqwest::Client::new();
    let refresh_by = |user: &str| {
        let body = serde_urlencoded::to_string([
            ("team_id", TEAM),
            ("channel_id", "C0CHAN"),
            ("user_id", user),
            ("command", "/crm-username"),
            ("text", "refresh"),
            ("response_url", &slack.response_url("cmd")),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        let request = signed(
            &http,
            addr,
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
        );
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("refresh answered {status}: {text}"));
            body["text"].as_str().unwrap_or_default().to_owned()
        }
    };
    until("the group is resolved", || {
        log.count("resolved an admin user group") == 1
    })
    .await;
    assert!(refresh_by(MEMBER).await.starts_with(REFRESH_ALLOWED));

    slack.fail_usergroups(Some(UsergroupFailure::Error("missing_scope".into())));
    let before = slack.usergroup_lookups();
    until("three refused rounds", || {
        slack.usergroup_lookups() >= before + 3
    })
    .await;
    assert!(refresh_by(MEMBER).await.starts_with(REFRESH_ALLOWED));
    assert_eq!(log.count(FAILED), 1);
    assert_eq!(log.count("missing_scope"), 1);

    // Another error: logged once more. A 500 is tried three times a round.
    slack.fail_usergroups(Some(UsergroupFailure::Status(500)));
    let before = slack.usergroup_lookups();
    until("two rounds of 500s", || {
        slack.usergroup_lookups() >= before + 6
    })
    .await;
    assert!(refresh_by(MEMBER).await.starts_with(REFRESH_ALLOWED));
    assert_eq!(log.count(FAILED), 2);
    assert_eq!(log.count(RECOVERED), 0);

    slack.set_usergroup(GROUP, &[]);
    slack.fail_usergroups(None);
    until("the recovery", || log.count(RECOVERED) == 1).await;
    let changed: Vec<Value> = log
        .0
        .lock()
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == "the admin user group's members changed")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["removed"], format!("[\"{MEMBER}\"]"));
    assert_eq!(changed[0]["added"], "[]");
    assert!(refresh_by(MEMBER).await.starts_with(REFRESH_REFUSED));
    assert!(refresh_by(ADMIN).await.starts_with(REFRESH_ALLOWED));
    assert_eq!(log.count(FAILED), 2);

    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "crm_username_admin_usergroup_members{usergroup=\"S0ADMINS\"} 0",
        "crm_username_admin_usergroup_resolution_failures_total{usergroup=\"S0ADMINS\",error=\"slack_error\"}",
        "crm_username_admin_usergroup_resolution_failures_total{usergroup=\"S0ADMINS\",error=\"transport\"}",
        "crm_username_admin_usergroup_last_resolved_timestamp_seconds{usergroup=\"S0ADMINS\"}",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_group_nobody_could_resolve_makes_no_admin_and_the_user_ids_still_do() {
    let store = Store::memory();
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let slack = FakeSlack::start().await.unwrap();
    // No such group in the workspace: `no_such_subteam`, every round.
    let mut config = TestApp::config(store, &slack);
    config.admin_usergroups = UsergroupSettings {
        ids: vec!["S0UNKNOWN".to_owned()],
        refresh: Duration::from_millis(100),
    };
    let app = TestApp::spawn(config, slack).await;
    until("two rounds", || app.slack.usergroup_lookups() >= 2).await;
    assert!(!admin_actions_allowed(&app, MEMBER).await);
    assert!(admin_actions_allowed(&app, ADMIN).await);
}

#[tokio::test]
async fn usergroups_users_list_answers_as_slack_does() {
    let slack = FakeSlack::start().await.unwrap();
    slack.set_usergroup(GROUP, &["U1", "U2"]);
    let web = settings(&slack).web;
    assert_eq!(
        web.usergroup_members(GROUP).await,
        Ok(vec!["U1".to_owned(), "U2".to_owned()])
    );
    assert_eq!(
        web.usergroup_members("S0NOPE").await,
        Err(SlackApiError::Api("no_such_subteam".into()))
    );
    slack.fail_usergroups(Some(UsergroupFailure::Error("missing_scope".into())));
    assert_eq!(
        web.usergroup_members(GROUP).await,
        Err(SlackApiError::Api("missing_scope".into()))
    );
    // A wait longer than the client's limit is not waited for.
    slack.fail_usergroups(Some(UsergroupFailure::RateLimited(120)));
    assert_eq!(
        web.usergroup_members(GROUP).await,
        Err(SlackApiError::RateLimited(120))
    );
    let mut without_token = settings(&slack).web;
    without_token.bot_token = None;
    assert_eq!(
        without_token.usergroup_members(GROUP).await,
        Err(SlackApiError::NoToken)
    );
}

/// The Home tab's button and the click on it ask the same question: a group member gets the
/// button and a click audits; others are told who the admins are, the group among them.
#[tokio::test]
async fn the_home_tabs_audit_button_and_its_click_count_a_group_member_as_an_admin() {
    let app = spawn_app(&[MEMBER]).await;
    until("the group is resolved", || app.state.is_admin(MEMBER)).await;
    let post = |path: &'static str, content_type: &'static str, body: String| {
        let app = &app;
        async move {
            let response = app.post_signed(path, content_type, &body, &[]).await;
            assert_eq!(response.status(), 200);
        }
    };
    let opened = |event_id: &str, user: &str| {
        serde_json::json!({
            "token": "x", "team_id": TEAM, "api_app_id": "A0APP", "type": "event_callback",
            "event_id": event_id, "event_time": 1700000000,
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                      "event_ts": "1700000000.000900"}
        })
        .to_string()
    };
    let published_for = |user: &str| {
        app.slack
            .calls_to("views.publish")
            .into_iter()
            .rev()
            .find(|c| c.body["user_id"] == user)
            .map(|c| c.body["view"].to_string())
    };

    post(
        "/slack/events",
        "application/json",
        opened("Ev0MEMBER", MEMBER),
    )
    .await;
    until("the member's Home tab", || {
        published_for(MEMBER).is_some_and(|v| v.contains("\"run_audit\""))
    })
    .await;
    post(
        "/slack/events",
        "application/json",
        opened("Ev0OTHER", "U0READER"),
    )
    .await;
    until("the reader's Home tab", || {
        published_for("U0READER").is_some()
    })
    .await;
    let other = published_for("U0READER").unwrap();
    assert!(!other.contains("\"run_audit\""), "{other}");
    assert!(
        other.contains("Audits are run by the bot's admins: <@UADMIN>, <!subteam^S0ADMINS>."),
        "{other}"
    );

    let click = serde_json::json!({
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": MEMBER, "team_id": TEAM},
        "api_app_id": "A0APP",
        "token": "x",
        "container": {"type": "view", "view_id": "V0HOME"},
        "trigger_id": "1.2.3",
        "view": {
            "id": "V0HOME", "team_id": TEAM, "type": "home", "blocks": [],
            "private_metadata": "", "callback_id": "", "state": {"values": {}},
            "hash": "1700000000.abc", "clear_on_close": false, "notify_on_close": false,
            "root_view_id": "V0HOME", "app_id": "A0APP", "external_id": "",
            "app_installed_team_id": TEAM, "bot_id": "B0BOT"
        },
        "actions": [{"type": "button", "action_id": "run_audit", "block_id": "audit",
                     "text": {"type": "plain_text", "text": "Run an audit"},
                     "action_ts": "1700000001.000200"}]
    });
    let body = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    post(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        body,
    )
    .await;
    until("the audit's first message", || {
        !app.slack.calls_to("chat.postMessage").is_empty()
    })
    .await;
    let first = &app.slack.calls_to("chat.postMessage")[0];
    assert_eq!(first.body["channel"], format!("D{MEMBER}"));
    assert_eq!(
        first.body["text"],
        "Auditing every business unit… the summary and a CSV of every row follow here."
    );
}

/// `doctor` with SLACK_ADMIN_USERGROUP_IDS and the fake Slack only (the other checks fail or
/// skip here): its `slack.admin_usergroups` check.
async fn doctor_usergroups_check(slack: &FakeSlack, ids: &str) -> crm_username::doctor::Check {
    use clap::Parser;
    use crm_username::cli::{Cli, Command as Sub};
    let argv = [
        "crm-username",
        "doctor",
        "--slack-bot-token",
        "xoxb-test-token",
        "--slack-api-url",
        &slack.api_url(),
        "--slack-admin-usergroup-ids",
        ids,
    ];
    let Sub::Doctor(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("doctor parses");
    };
    let report = args.doctor().run().await;
    report
        .get("slack.admin_usergroups")
        .unwrap_or_else(|| panic!("no slack.admin_usergroups check: {}", report.text()))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_resolves_each_admin_user_group_and_names_the_fix_when_one_does_not() {
    use crm_username::doctor::Status;
    let slack = FakeSlack::start().await.unwrap();
    slack.set_usergroup(GROUP, &[MEMBER, "U0OTHER"]);

    let ok = doctor_usergroups_check(&slack, GROUP).await;
    assert_eq!(ok.status, Status::Ok, "{ok:?}");
    assert_eq!(
        ok.summary,
        "the admin user groups resolve: S0ADMINS (2 members)"
    );

    let unknown = doctor_usergroups_check(&slack, "S0ADMINS,S0NOPE").await;
    assert_eq!(unknown.status, Status::Fail, "{unknown:?}");
    assert!(unknown.summary.contains("S0NOPE"), "{unknown:?}");
    assert!(unknown.summary.contains("no_such_subteam"), "{unknown:?}");
    assert!(unknown.fix.unwrap().contains("Copy group ID"));

    slack.fail_usergroups(Some(UsergroupFailure::Error("missing_scope".into())));
    let scope = doctor_usergroups_check(&slack, GROUP).await;
    assert_eq!(scope.status, Status::Fail, "{scope:?}");
    assert!(scope.fix.unwrap().contains("usergroups:read"));

    let malformed = doctor_usergroups_check(&slack, "U0NOTAGROUP").await;
    assert_eq!(malformed.status, Status::Fail, "{malformed:?}");
    assert!(
        malformed
            .summary
            .starts_with("SLACK_ADMIN_USERGROUP_IDS: \"U0NOTAGROUP\" is not a Slack user group id"),
        "{malformed:?}"
    );
}
