//! Web API calls: what is retried (nothing that may already have reached Slack, unless sending
//! it twice is harmless), and Slack's `Retry-After` is waited out.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;

use crm_username::fakes::{AfterAccepting, FakeSlack};
use crm_username::slack::{SlackApiError, SlackWebApi};

use crate::common;

/// A client of `slack` that gives up on a try after one second.
fn web_api(slack: &FakeSlack) -> SlackWebApi {
    let mut web = SlackWebApi::new(
        &slack.api_url(),
        Some(SecretString::from("xoxb-test")),
        vec!["127.0.0.1".into()],
    );
    web.timeout = Duration::from_secs(1);
    web
}

fn message() -> serde_json::Value {
    json!({"channel": "C0CHAN", "thread_ts": "1.1", "text": "answer"})
}

/// The samples of `name` with every one of `labels` on `/metrics`' text, summed.
fn counted(name: &str, labels: &[&str]) -> f64 {
    let text = crm_username::metrics::handle().unwrap().render();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_post_that_times_out_after_slack_accepted_it_is_sent_exactly_once() {
    crm_username::metrics::handle();
    let before = counted(
        "crm_username_slack_api_unconfirmed_total",
        &[r#"method="chat.postMessage""#],
    );
    let errors_before = counted(
        "crm_username_slack_api_errors_total",
        &[r#"method="chat.postMessage""#, r#"error="unconfirmed""#],
    );
    let slack = FakeSlack::start().await.unwrap();
    slack.after_accepting(3, AfterAccepting::AnswerAfter(Duration::from_secs(3)));
    let result = web_api(&slack).post_message(&message()).await;
    assert!(
        matches!(
            result,
            Err(SlackApiError::Unconfirmed {
                method: "chat.postMessage",
                ..
            })
        ),
        "{result:?}"
    );
    // Whatever a retry would have done, it would have been sent by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.calls_to("chat.postMessage").len(), 1);
    let after = counted(
        "crm_username_slack_api_unconfirmed_total",
        &[r#"method="chat.postMessage""#],
    );
    assert!(after >= before + 1.0, "counted: {before} -> {after}");
    let errors_after = counted(
        "crm_username_slack_api_errors_total",
        &[r#"method="chat.postMessage""#, r#"error="unconfirmed""#],
    );
    assert!(
        errors_after >= errors_before + 1.0,
        "errors counted: {errors_before} -> {errors_after}"
    );
}

#[tokio::test]
async fn a_post_answered_with_an_ambiguous_5xx_is_not_sent_again_and_says_what_to_do() {
    let slack = FakeSlack::start().await.unwrap();
    slack.after_accepting(3, AfterAccepting::Status(504));
    let error = web_api(&slack).post_message(&message()).await.unwrap_err();
    assert_eq!(slack.calls_to("chat.postMessage").len(), 1);
    assert_eq!(
        error.to_string(),
        "Slack may or may not have received the chat.postMessage call (HTTP 504 Gateway Timeout); it was not sent again, so that nothing is posted twice. Look in the conversation before trying again"
    );
}

#[tokio::test]
async fn an_idempotent_home_publish_is_sent_again_after_a_timeout() {
    let slack = FakeSlack::start().await.unwrap();
    slack.after_accepting(1, AfterAccepting::AnswerAfter(Duration::from_secs(3)));
    let view = json!({"type": "home", "blocks": []});
    web_api(&slack)
        .publish_home("U0ASKER", &view)
        .await
        .unwrap();
    assert_eq!(slack.calls_to("views.publish").len(), 2);
}

/// Posts once while `slack` rate-limits the first try for two seconds; the post arrives once,
/// not before `Retry-After` has passed.
async fn assert_retried_after_retry_after(slack: &FakeSlack) {
    let started = Instant::now();
    web_api(slack).post_message(&message()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(slack.calls_to("chat.postMessage").len(), 1);
}

#[tokio::test]
async fn a_rate_limited_post_is_sent_again_only_after_retry_after() {
    let slack = FakeSlack::start().await.unwrap();
    slack.rate_limit(1, 2);
    assert_retried_after_retry_after(&slack).await;
}

#[tokio::test]
async fn a_ratelimited_error_body_is_sent_again_only_after_retry_after() {
    let slack = FakeSlack::start().await.unwrap();
    slack.rate_limit_in_body(1, 2);
    assert_retried_after_retry_after(&slack).await;
}

#[tokio::test]
async fn a_refused_connection_is_reported_as_never_sent() {
    let port = common::free_port();
    let web = SlackWebApi::new(
        &format!("http://127.0.0.1:{port}/api"),
        Some(SecretString::from("xoxb-test")),
        Vec::new(),
    );
    let error = web.post_message(&message()).await.unwrap_err();
    assert!(
        matches!(error, SlackApiError::Transport(_)),
        "nothing was sent, so this is no Unconfirmed: {error:?}"
    );
}
