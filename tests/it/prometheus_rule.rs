//! The alert rules of manifests/k8s/prometheus-rule.yaml name only metrics that `/metrics`
//! really exposes: a rule on a misspelt or removed metric never fires, and nobody notices.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crm_username::demo;
use crm_username::fakes::{AfterAccepting, FakeSlack, FakeUpstreams};
use crm_username::slack::socket_mode::{self, SocketModeConfig};
use crm_username::slack::{SlackSettings, SlackWebApi};
use crm_username::state::AppState;
use crm_username::store::{RedisStore, Store};

use crate::common;
use common::slack_app::serve;

const RULE: &str = include_str!("../../manifests/k8s/prometheus-rule.yaml");

/// The PromQL of every `expr:` of the rule file (each on one line).
fn expressions(rule: &str) -> Vec<String> {
    rule.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_owned())
        .collect()
}

/// Removes `open ... close` spans (label matchers, ranges, strings), nesting ignored.
fn without(text: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in text.chars() {
        match c {
            c if !inside && c == open => inside = true,
            c if inside && c == close => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The metric names a PromQL expression selects: identifiers that are not functions, keywords,
/// aggregation modifiers' label lists, label matchers, ranges or strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    /// Operators, and aggregations (which `by (...)` may separate from their argument).
    const KEYWORDS: &str = "and or unless by without on ignoring group_left group_right bool \
        offset sum min max avg count group stddev stdvar topk bottomk quantile count_values";
    let expr = without(&without(&without(expr, '"', '"'), '{', '}'), '[', ']');
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                after_grouping = true;
            } else if next != Some(&'(')
                && !KEYWORDS.split_whitespace().any(|k| k == word)
                && !after_grouping
            {
                names.insert(word);
            }
            continue;
        }
        if c == ')' {
            after_grouping = false;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (source) (increase(a_total{result="error", x=~"a|b"}[1h])) > 2 and min(b_seconds) == 0"#
        ),
        BTreeSet::from(["a_total".to_owned(), "b_seconds".to_owned()])
    );
}

/// `/metrics` of a bot that has refreshed, answered, lost a Socket Mode connection, sent a
/// post that timed out and met a Redis that is down: every metric the rules use has a sample.
async fn scrape_after_a_day_of_work() -> String {
    crm_username::metrics::handle();
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = Arc::new(upstreams.sources(&org).unwrap());
    let store = Store::memory();
    crm_username::refresh::refresh_locked(&sources, &store, Utc::now(), Duration::from_secs(60))
        .await
        .unwrap();

    let slack = FakeSlack::start().await.unwrap();
    let mut web = SlackWebApi::new(
        &slack.api_url(),
        Some(SecretString::from("xoxb-test")),
        vec!["127.0.0.1".into()],
    );
    web.timeout = Duration::from_millis(500);
    slack.after_accepting(1, AfterAccepting::AnswerAfter(Duration::from_secs(2)));
    let post = web
        .post_message(&json!({"channel": "C0", "text": "x"}))
        .await;
    assert!(post.is_err(), "{post:?}");

    let down = Store::Redis(
        RedisStore::connect(
            &format!("redis://127.0.0.1:{}", common::free_port()),
            "rule:",
            Default::default(),
        )
        .unwrap(),
    );
    assert!(down.status().await.is_err());

    let settings = SlackSettings {
        signing_secrets: Vec::new(),
        allowed_team_ids: Vec::new(),
        admin_user_ids: Vec::new(),
        web,
    };
    let state = AppState::new(store, Some(sources), settings);
    let shutdown = CancellationToken::new();
    tokio::spawn(socket_mode::run_with(
        state.clone(),
        SecretString::from("xapp-test"),
        SocketModeConfig::default(),
        shutdown.clone(),
    ));
    wait_for(|| slack.socket_open() == 2).await;
    slack.socket_drop();
    wait_for(|| slack.socket_connections() == 3 && slack.socket_open() == 2).await;

    let (addr, stop) = serve(state).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    shutdown.cancel();
    text
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alert_rules_use_is_exposed_on_metrics() {
    let exposed: BTreeSet<String> = scrape_after_a_day_of_work()
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect();
    let expressions = expressions(RULE);
    assert_eq!(expressions.len(), 8, "{expressions:?}");
    let used: BTreeSet<String> = expressions.iter().flat_map(|e| metric_names(e)).collect();
    assert_eq!(used.len(), 8, "{used:?}");
    let missing: Vec<&String> = used.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "not on /metrics: {missing:?}\nexposed: {exposed:?}"
    );
}
