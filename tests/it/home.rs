//! The Home tab: `app_home_opened` publishes the data's freshness at once and the audit counts
//! when they are ready (one audit per generation of the data), admins get the audit button and
//! the server checks them again on the click. Signed requests against the app on port 0, a
//! fake Slack recording what the bot sends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};

use crm_username::app::SocketMode;
use crm_username::audit::{AuditReport, Scope, audit_org};
use crm_username::demo;
use crm_username::domain::{Org, OrgSnapshot};
use crm_username::fakes::{FakeSlack, SlackCall};
use crm_username::render::{self, AuditSummary, HomeAudit, HomeViewer, MAX_HOME_BLOCKS};
use crm_username::store::{RedisStore, SourceStatus, StatusReport, Store};

use crate::common;
use common::app::{ADMIN, TEAM, TestApp};

const NORTH_AMERICA: &str = "0UvAk000000NAM1KAO";

/// The demo org in the in-process store, and the audit of that same snapshot.
async fn demo_store() -> (Store, OrgSnapshot) {
    let snapshot = demo::snapshot(Utc::now()).unwrap();
    let store = Store::memory();
    store.publish(snapshot.clone()).await.unwrap();
    (store, snapshot)
}

fn expected_audit(snapshot: &OrgSnapshot) -> AuditReport {
    audit_org(
        &Org::new(snapshot.clone()),
        &Scope::All,
        Utc::now(),
        None,
        &mut |_| {},
    )
}

async fn spawn_app(store: Store) -> TestApp {
    TestApp::start(store).await
}

impl TestApp {
    /// A signed POST, as Slack's retry when `retry`; its status.
    async fn post_signed_retried(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        retry: bool,
    ) -> u16 {
        let retry_headers = [
            ("x-slack-retry-num", "1".to_owned()),
            ("x-slack-retry-reason", "http_timeout".to_owned()),
        ];
        let headers: &[(&str, String)] = if retry { &retry_headers } else { &[] };
        self.post_signed(path, content_type, body, headers)
            .await
            .status()
            .as_u16()
    }

    async fn event(&self, body: &Value, retry: bool) {
        let status = self
            .post_signed_retried(
                "/slack/events",
                "application/json",
                &body.to_string(),
                retry,
            )
            .await;
        assert_eq!(status, 200);
    }

    async fn click_run_audit(&self, user: &str) {
        let payload = home_click(user);
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let status = self
            .post_signed_retried(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                &body,
                false,
            )
            .await;
        assert_eq!(status, 200);
    }

    /// The `views.publish` calls once there are at least `n` (bounded wait).
    async fn publishes(&self, n: usize) -> Vec<SlackCall> {
        wait_for(|| self.slack.calls_to("views.publish").len() >= n).await;
        self.slack.calls_to("views.publish")
    }

    async fn messages(&self, n: usize) -> Vec<SlackCall> {
        wait_for(|| self.slack.calls_to("chat.postMessage").len() >= n).await;
        self.slack.calls_to("chat.postMessage")
    }
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn home_opened(event_id: &str, team: &str, user: &str, tab: &str) -> Value {
    json!({
        "token": "x", "team_id": team, "api_app_id": "A0APP", "type": "event_callback",
        "event_id": event_id, "event_time": 1700000000,
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": tab,
                  "event_ts": "1700000000.000900"}
    })
}

/// A click on the Home tab's button, as Slack sends it: from a view, with no response_url.
fn home_click(user: &str) -> Value {
    json!({
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "team_id": TEAM},
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
    })
}

fn view_of(call: &SlackCall) -> &Value {
    &call.body["view"]
}

/// Every text of a view (sections, contexts, headers), in order.
fn texts(view: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(t)) = map.get("text") {
                    out.push(t.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(view, &mut out);
    out
}

fn action_ids(view: &Value) -> Vec<String> {
    view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().iter())
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect()
}

fn causes_text(view: &Value) -> Option<String> {
    view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == "causes")
        .and_then(|b| b["text"]["text"].as_str().map(str::to_owned))
}

fn expected_causes_text(report: &AuditReport) -> String {
    let lines: Vec<String> = report.by_cause.iter().map(render::cause_line).collect();
    format!("*Missing mappings by cause*\n{}", lines.join("\n"))
}

#[tokio::test]
async fn opening_the_home_tab_publishes_freshness_at_once_then_the_demo_orgs_cause_counts() {
    let (store, snapshot) = demo_store().await;
    let at = Utc::now();
    store
        .record_status(
            "salesforce",
            &SourceStatus {
                last_success_at: Some(at),
                records: Some(14),
                duration_ms: Some(1_200),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .record_status(
            &format!("account_engagement:{NORTH_AMERICA}"),
            &SourceStatus {
                last_success_at: Some(at - chrono::Duration::hours(2)),
                last_error: Some("code 184: <!channel> invalid API key".to_owned()),
                last_error_at: Some(at),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let want = expected_audit(&snapshot);
    assert!(
        !want.by_cause.is_empty(),
        "the demo org has broken mappings"
    );
    let app = spawn_app(store).await;

    app.event(&home_opened("Ev1", TEAM, ADMIN, "home"), false)
        .await;
    let calls = app.publishes(2).await;

    assert_eq!(calls.len(), 2, "published at once, then with the counts");
    assert!(calls.iter().all(|c| c.body["user_id"] == ADMIN));
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    let first = texts(view_of(&calls[0])).join("\n");
    assert!(first.contains("Counting…"), "{first}");
    assert_eq!(causes_text(view_of(&calls[0])), None);

    let last = view_of(&calls[1]);
    assert_eq!(last["type"], "home");
    assert_eq!(
        causes_text(last).as_deref(),
        Some(expected_causes_text(&want).as_str())
    );
    let all = texts(last).join("\n");
    assert!(
        all.contains(&format!(
            "{} missing mappings, {} of them blocked",
            want.rows.len(),
            want.blocked()
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            ":white_check_mark: *Salesforce ({} users)*",
            snapshot.salesforce.users.len()
        )),
        "{all}"
    );
    assert!(all.contains("(14 records, 1.2 s)"), "{all}");
    // The business unit by name, failing since its last success; the error escaped.
    assert!(
        all.contains(&format!(
            ":warning: *Account Engagement: Acme North America (`{NORTH_AMERICA}`, "
        )),
        "{all}"
    );
    assert!(
        all.contains("code 184: &lt;!channel&gt; invalid API key"),
        "{all}"
    );
    assert!(!all.contains("<!channel>"));
    assert_eq!(app.state.home.audits_run(), 1);
}

#[tokio::test]
async fn admins_get_the_audit_button_and_others_are_told_who_can_run_one() {
    let (store, _) = demo_store().await;
    let app = spawn_app(store).await;

    app.event(&home_opened("EvAdmin", TEAM, ADMIN, "home"), false)
        .await;
    app.publishes(2).await;
    app.event(&home_opened("EvOther", TEAM, "U0READER", "home"), false)
        .await;
    let calls = app.publishes(3).await;

    let admin = view_of(&calls[1]);
    let other = view_of(&calls[2]);
    assert_eq!(calls[2].body["user_id"], "U0READER");
    assert_eq!(action_ids(admin), ["run_audit"]);
    assert_eq!(action_ids(other), Vec::<String>::new());
    assert!(
        texts(other)
            .iter()
            .any(|t| t == "Audits are run by the bot's admins: <@UADMIN>."),
        "{:?}",
        texts(other)
    );
}

#[tokio::test]
async fn a_retried_event_and_later_openings_do_not_audit_the_same_data_again() {
    let (store, snapshot) = demo_store().await;
    let app = spawn_app(store).await;
    let opened = home_opened("EvRetried", TEAM, ADMIN, "home");

    app.event(&opened, false).await;
    app.event(&opened, true).await;
    app.event(&opened, true).await;
    app.publishes(2).await;
    // Someone else opens the tab later: the counts come from the cache, in one publish.
    app.event(&home_opened("EvLater", TEAM, "U0READER", "home"), false)
        .await;
    let calls = app.publishes(3).await;

    let to = |user: &str| calls.iter().filter(|c| c.body["user_id"] == user).count();
    assert_eq!((to(ADMIN), to("U0READER")), (2, 1));
    assert_eq!(
        causes_text(view_of(&calls[2])).as_deref(),
        Some(expected_causes_text(&expected_audit(&snapshot)).as_str())
    );
    assert_eq!(app.state.home.audits_run(), 1);
}

#[tokio::test]
async fn from_redis_the_counts_are_those_of_the_cached_org_and_made_once_per_generation() {
    let prefix = common::prefix("home-redis");
    common::clear_prefix(&prefix).await;
    let store = Store::Redis(
        RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap(),
    );
    let snapshot = demo::snapshot(Utc::now()).unwrap();
    store.publish(snapshot.clone()).await.unwrap();
    let app = spawn_app(store).await;

    app.event(&home_opened("EvRedis1", TEAM, ADMIN, "home"), false)
        .await;
    app.publishes(2).await;
    app.event(&home_opened("EvRedis2", TEAM, "U0READER", "home"), false)
        .await;
    let calls = app.publishes(3).await;

    let want = expected_causes_text(&expected_audit(&snapshot));
    assert_eq!(
        causes_text(view_of(&calls[1])).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(
        causes_text(view_of(&calls[2])).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(app.state.home.audits_run(), 1);
    common::clear_prefix(&prefix).await;
}

#[tokio::test]
async fn many_openings_at_once_share_one_audit() {
    let (store, _) = demo_store().await;
    let app = spawn_app(store).await;
    let events: Vec<Value> = (0..6)
        .map(|i| home_opened(&format!("EvCrowd{i}"), TEAM, &format!("U0CROWD{i}"), "home"))
        .collect();

    futures_util::future::join_all(events.iter().map(|e| app.event(e, false))).await;
    // Until every one of them has been shown the counts.
    wait_for(|| {
        let calls = app.slack.calls_to("views.publish");
        (0..6).all(|i| {
            calls.iter().any(|c| {
                c.body["user_id"] == format!("U0CROWD{i}") && causes_text(view_of(c)).is_some()
            })
        })
    })
    .await;

    assert_eq!(app.state.home.audits_run(), 1);
}

#[tokio::test]
async fn new_data_is_counted_again() {
    let (store, snapshot) = demo_store().await;
    let app = spawn_app(store.clone()).await;
    app.event(&home_opened("EvGen1", TEAM, ADMIN, "home"), false)
        .await;
    app.publishes(2).await;

    let mut newer = snapshot.clone();
    newer.fetched_at += chrono::Duration::minutes(15);
    store.publish(newer).await.unwrap();
    app.event(&home_opened("EvGen2", TEAM, ADMIN, "home"), false)
        .await;
    let calls = app.publishes(4).await;

    assert!(texts(view_of(&calls[2])).join("\n").contains("Counting…"));
    assert!(causes_text(view_of(&calls[3])).is_some());
    assert_eq!(app.state.home.audits_run(), 2);
}

#[tokio::test]
async fn a_foreign_workspace_and_the_messages_tab_get_nothing_published() {
    let (store, _) = demo_store().await;
    let app = spawn_app(store).await;

    app.event(
        &home_opened("EvForeign", "T0OTHER", "U0STRANGER", "home"),
        false,
    )
    .await;
    app.event(
        &home_opened("EvMessages", TEAM, "U0CHATTER", "messages"),
        false,
    )
    .await;
    // A later opening that is served: once its publishes are in, the others would be too.
    app.event(&home_opened("EvServed", TEAM, "U0READER", "home"), false)
        .await;
    let calls = app.publishes(2).await;

    let users: Vec<&str> = calls
        .iter()
        .map(|c| c.body["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["U0READER", "U0READER"]);
}

#[tokio::test]
async fn a_non_admin_clicking_run_audit_is_refused_and_nothing_is_audited() {
    let (store, _) = demo_store().await;
    let app = spawn_app(store).await;

    app.click_run_audit("U0READER").await;
    let messages = app.messages(1).await;

    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["channel"], "U0READER");
    assert_eq!(
        messages[0].body["text"],
        "Only the bot's admins can run an audit (SLACK_ADMIN_USER_IDS). To check one user, type `check` and their username."
    );
    assert_eq!(app.state.home.audits_run(), 0);
}

#[tokio::test]
async fn an_admin_clicking_run_audit_gets_the_summary_and_the_csv_in_a_direct_message() {
    let (store, snapshot) = demo_store().await;
    let app = spawn_app(store).await;

    app.click_run_audit(ADMIN).await;
    let messages = app.messages(2).await;

    let want = expected_audit(&snapshot);
    // The bot's direct-message channel with the admin (conversations.open).
    let dm = format!("D{ADMIN}");
    assert!(messages.iter().all(|m| m.body["channel"] == dm.as_str()));
    assert_eq!(
        messages[0].body["text"],
        "Auditing every business unit… the summary and a CSV of every row follow here."
    );
    assert_eq!(
        messages[1].body["text"],
        format!(
            "{} mappings need attention in every business unit ({} blocked)",
            want.rows.len(),
            want.blocked()
        )
    );
    let shared = app.slack.calls_to("files.completeUploadExternal");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].body["channel_id"], dm.as_str());
    assert_eq!(
        app.slack.uploaded("F00000001").unwrap(),
        crm_username::audit::to_csv(&want)
    );
}

#[tokio::test]
async fn the_home_tab_is_published_over_socket_mode_too() {
    let (store, _) = demo_store().await;
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store, &slack);
    config.socket_mode = Some(SocketMode {
        app_token: SecretString::from("xapp-test"),
        config: Default::default(),
    });
    let app = TestApp::spawn(config, slack).await;
    let slack = &app.slack;
    let envelope = json!({
        "envelope_id": "env-home", "type": "events_api", "accepts_response_payload": false,
        "retry_attempt": 0, "retry_reason": "",
        "payload": home_opened("EvSocket", TEAM, "U0READER", "home"),
    });
    wait_for(|| slack.socket_send(&envelope)).await;
    wait_for(|| slack.calls_to("views.publish").len() >= 2).await;

    let calls = slack.calls_to("views.publish");
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.body["user_id"] == "U0READER"));
    assert!(causes_text(view_of(&calls[1])).is_some());
}

// The renderer on fixed data: snapshots, Slack's limits, hostile data.

fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

fn fixed_status() -> StatusReport {
    let now = fixed_now();
    let mut sources = BTreeMap::new();
    sources.insert(
        "salesforce".to_owned(),
        SourceStatus {
            last_success_at: Some(now),
            records: Some(14),
            duration_ms: Some(850),
            ..Default::default()
        },
    );
    sources.insert(
        format!("account_engagement:{NORTH_AMERICA}"),
        SourceStatus {
            last_success_at: Some(now - chrono::Duration::hours(3)),
            last_error: Some(format!("code 184: {}", "<!channel> ".repeat(60))),
            last_error_at: Some(now - chrono::Duration::minutes(5)),
            records: Some(9),
            duration_ms: Some(400),
            ..Default::default()
        },
    );
    sources.insert(
        "refresh".to_owned(),
        SourceStatus {
            last_success_at: Some(now - chrono::Duration::hours(3)),
            last_error: Some("Account Engagement business unit failed".to_owned()),
            last_error_at: Some(now - chrono::Duration::minutes(5)),
            ..Default::default()
        },
    );
    let mut ae_users = BTreeMap::new();
    ae_users.insert(NORTH_AMERICA.to_owned(), 9);
    ae_users.insert("0UvAk000000EME1KAO".to_owned(), 5);
    StatusReport {
        data_as_of: Some(now),
        generation: Some("1764237600000-abc".to_owned()),
        sf_users: 14,
        ae_users,
        sources,
    }
}

fn fixed_summary() -> AuditSummary {
    let org = Org::new(demo::snapshot(fixed_now()).unwrap());
    AuditSummary::of(&audit_org(
        &org,
        &Scope::All,
        fixed_now(),
        None,
        &mut |_| {},
    ))
}

fn viewer(is_admin: bool) -> HomeViewer<'static> {
    static ADMINS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    HomeViewer {
        is_admin,
        admin_user_ids: ADMINS.get_or_init(|| vec![ADMIN.to_owned(), "U0SECOND".to_owned()]),
        admin_usergroup_ids: &[],
    }
}

#[test]
fn home_view_for_an_admin_with_the_demo_orgs_counts() {
    let summary = fixed_summary();
    let names = summary.business_unit_names.clone();
    insta::assert_json_snapshot!(render::home_view(
        &fixed_status(),
        &names,
        &HomeAudit::Ready(summary),
        &viewer(true)
    ));
}

#[test]
fn home_view_for_someone_else_while_counting() {
    insta::assert_json_snapshot!(render::home_view(
        &fixed_status(),
        &BTreeMap::new(),
        &HomeAudit::Counting,
        &viewer(false)
    ));
}

#[test]
fn a_home_view_of_many_business_units_stays_within_slacks_limits() {
    let mut status = fixed_status();
    let mut names = BTreeMap::new();
    for i in 0..500 {
        let id = format!("0UvAk{i:013}");
        status.ae_users.insert(id.clone(), i);
        names.insert(id, format!("<@U1> BU {i} {}", "x".repeat(5_000)));
    }
    let view = render::home_view(
        &status,
        &names,
        &HomeAudit::Ready(fixed_summary()),
        &viewer(true),
    );
    let blocks = view["blocks"].as_array().unwrap();
    assert!(blocks.len() <= MAX_HOME_BLOCKS, "{} blocks", blocks.len());
    assert!(
        texts(&view)
            .iter()
            .any(|t| t == "… and 464 more sources: `/crm-username status` lists them all."),
        "{:?}",
        texts(&view)
    );
    for t in texts(&view) {
        assert!(
            t.chars().count() <= 3_000,
            "a text of {} chars",
            t.chars().count()
        );
        assert!(!t.contains("<@U1>"), "unescaped CRM data: {t}");
    }
    assert_eq!(action_ids(&view), ["run_audit"]);
}
