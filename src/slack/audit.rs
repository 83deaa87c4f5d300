//! `/crm-username audit [business unit]` (admins only): acknowledged at once, then run in the
//! background. Progress replaces the "Auditing…" message now and then; at the end the CSV of
//! every row is shared in the channel (or, where the bot is not a member, in a direct message)
//! with Slack's external upload flow, and the summary replaces the progress message.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::web_api::SlackApiError;
use crate::audit::{AuditReport, MAX_ROWS_KEPT, Progress, to_csv};
use crate::render;
use crate::state::AppState;

/// How often progress replaces the "Auditing…" message.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// A `response_url` takes five posts: at most this many go to progress, the rest to the end.
const PROGRESS_POSTS: usize = 2;

/// Where the audit's answers go: the command's `response_url`, or (from the Home tab) a
/// direct message to the admin.
#[derive(Debug, Clone)]
pub enum ReplyTo {
    ResponseUrl(String),
    DirectMessage,
}

/// Why an audit was not started; the caller tells the person (`to_string` says what to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditRefused {
    #[error(
        "Only the bot's admins can run an audit (SLACK_ADMIN_USER_IDS). To check one user, type `check` and their username."
    )]
    NotAdmin,
    #[error(
        "An audit is already running; its summary and CSV will be posted when it ends. Try again after that."
    )]
    AlreadyRunning,
}

/// Starts an audit for `user_id`: `Ok` with what to acknowledge at once, or why not.
pub(crate) fn start_audit(
    state: &AppState,
    user_id: &str,
    channel_id: Option<String>,
    scope: &str,
    reply_to: ReplyTo,
) -> Result<Value, AuditRefused> {
    if !state.is_admin(user_id) {
        tracing::info!(user = %user_id, "refused an audit to someone who is not an admin");
        return Err(AuditRefused::NotAdmin);
    }
    if state.audit_running.swap(true, Ordering::SeqCst) {
        return Err(AuditRefused::AlreadyRunning);
    }
    let scope = scope.trim().to_owned();
    let label = if scope.is_empty() {
        "every business unit".to_owned()
    } else {
        scope.chars().take(100).collect()
    };
    let ack = render::audit_progress_message(&label, None);
    let first = ack.clone();
    let state = state.clone();
    let user_id = user_id.to_owned();
    state.clone().tasks.spawn(async move {
        // Cleared however the audit ends, a panic included, so that audits do not stay refused.
        let _running = Running(state.clone());
        let replies = Replies {
            state: &state,
            user_id: &user_id,
            reply_to,
            dm: tokio::sync::OnceCell::new(),
        };
        if let ReplyTo::DirectMessage = replies.reply_to {
            // Nobody was acknowledged in a channel: say it started where the rest will come.
            replies.deliver(first).await;
        }
        run(&replies, channel_id, &scope, label).await;
    });
    Ok(ack)
}

/// Marks the replica's audit as running until dropped.
struct Running(AppState);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.audit_running.store(false, Ordering::SeqCst);
    }
}

/// Where one audit's answers go; the direct-message channel is opened once, when first needed.
struct Replies<'a> {
    state: &'a AppState,
    user_id: &'a str,
    reply_to: ReplyTo,
    dm: tokio::sync::OnceCell<String>,
}

impl Replies<'_> {
    async fn dm(&self) -> Result<&str, SlackApiError> {
        self.dm
            .get_or_try_init(|| self.state.slack.web.open_dm(self.user_id))
            .await
            .map(String::as_str)
    }

    async fn deliver(&self, message: Value) {
        let web = &self.state.slack.web;
        let sent = match &self.reply_to {
            ReplyTo::ResponseUrl(url) => {
                web.respond(url, &render::as_response(message, false, Some(true)))
                    .await
            }
            ReplyTo::DirectMessage => match self.dm().await {
                Ok(dm) => {
                    let mut message = message;
                    message["channel"] = Value::String(dm.to_owned());
                    web.post_message(&message).await
                }
                Err(err) => Err(err),
            },
        };
        if let Err(err) = sent {
            tracing::warn!(error = %err, "could not post the audit's answer");
        }
    }
}

async fn run(replies: &Replies<'_>, channel_id: Option<String>, scope: &str, label: String) {
    let state = replies.state;
    let started = std::time::Instant::now();
    let (tx, rx) = tokio::sync::watch::channel(None::<Progress>);
    let progress = Arc::new(move |p: Progress| {
        tx.send_replace(Some(p));
    });
    let reporter = match &replies.reply_to {
        ReplyTo::ResponseUrl(url) => Some(tokio::spawn(report_progress(
            state.clone(),
            url.clone(),
            label,
            rx,
            PROGRESS_EVERY,
        ))),
        ReplyTo::DirectMessage => None,
    };
    let outcome = crate::check::audit(
        &state.store,
        scope,
        Utc::now(),
        Some(MAX_ROWS_KEPT),
        progress,
    )
    .await;
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    let message = match outcome {
        Ok(report) => {
            tracing::info!(
                rows = report.rows_total,
                blocked = report.blocked(),
                sf_users = report.sf_users_scanned,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "audit finished"
            );
            let note = share_csv(replies, channel_id.as_deref(), &report).await;
            render::audit_summary_message(&report, "/crm-username", &note)
        }
        Err(crate::check::AuditError::Scope(scope)) => render::error_message(&scope.to_string()),
        Err(err) => {
            tracing::warn!(error = %err, "the audit could not read the cache");
            render::unavailable_message(&err.to_string(), None)
        }
    };
    replies.deliver(message).await;
}

/// Replaces the "Auditing…" message with the progress every few seconds, a few times.
async fn report_progress(
    state: AppState,
    response_url: String,
    label: String,
    mut rx: tokio::sync::watch::Receiver<Option<Progress>>,
    every: Duration,
) {
    let mut posted = 0;
    let mut last = None;
    while posted < PROGRESS_POSTS {
        tokio::time::sleep(every).await;
        let progress = *rx.borrow_and_update();
        // Nothing new to say: keep the post for later.
        let Some(progress) = progress.filter(|p| Some(*p) != last) else {
            continue;
        };
        last = Some(progress);
        posted += 1;
        let message = render::as_response(
            render::audit_progress_message(&label, Some(progress)),
            false,
            Some(true),
        );
        if let Err(err) = state.slack.web.respond(&response_url, &message).await {
            tracing::warn!(error = %err, "could not post the audit's progress");
        }
    }
}

/// The report's CSV, as a file, uploaded to `channel`; the file name.
pub(crate) async fn upload_csv(
    state: &AppState,
    channel: &str,
    report: &AuditReport,
    title: &str,
    comment: &str,
) -> Result<String, SlackApiError> {
    let filename = format!(
        "crm-username-audit-{}.csv",
        report.audited_at.format("%Y%m%d-%H%M")
    );
    let csv = to_csv(report).into_bytes();
    state
        .slack
        .web
        .upload_file(channel, &filename, title, csv, comment)
        .await?;
    Ok(filename)
}

/// Shares the CSV; returns where it went (or why not), for the summary.
async fn share_csv(
    replies: &Replies<'_>,
    channel_id: Option<&str>,
    report: &AuditReport,
) -> String {
    let state = replies.state;
    if report.rows_total == 0 {
        return "No CSV: there are no rows.".to_owned();
    }
    if state.slack.web.bot_token.is_none() {
        return "The CSV of every row could not be shared: no SLACK_BOT_TOKEN is configured. `crm-username audit --format csv` writes it.".to_owned();
    }
    let title = format!("Audit of {}", report.business_unit_name);
    let comment = format!(
        "{} rows ({} blocked), data as of {}",
        report.rows_total,
        report.blocked(),
        report.data_as_of.format("%Y-%m-%d %H:%M UTC")
    );
    if let Some(channel) = channel_id.filter(|c| !c.is_empty()) {
        match upload_csv(state, channel, report, &title, &comment).await {
            Ok(filename) => {
                return format!(
                    "{} ({filename}) is shared in this channel.",
                    csv_holds(report)
                );
            }
            Err(SlackApiError::Api(error))
                if error == "not_in_channel" || error == "channel_not_found" =>
            {
                tracing::info!(%error, "the bot cannot share in the channel; sending the CSV by direct message");
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not share the audit CSV");
                return format!(
                    "The CSV could not be shared ({err}). `crm-username audit --format csv` writes it."
                );
            }
        }
    }
    let shared = match replies.dm().await {
        Ok(dm) => upload_csv(state, dm, report, &title, &comment).await,
        Err(err) => Err(err),
    };
    match shared {
        Ok(filename) => format!(
            "{} ({filename}) is in your direct messages with the bot.",
            csv_holds(report)
        ),
        Err(err) => {
            tracing::warn!(error = %err, "could not share the audit CSV by direct message");
            format!(
                "The CSV could not be shared ({err}). `crm-username audit --format csv` writes it."
            )
        }
    }
}

/// "The CSV of every row", or how many of them it holds when the bot kept only the most severe.
pub(crate) fn csv_holds(report: &AuditReport) -> String {
    if report.truncated() {
        format!(
            "The CSV of the {} most severe rows of {} (`crm-username audit --format csv` writes them all)",
            report.rows.len(),
            report.rows_total
        )
    } else {
        "The CSV of every row".to_owned()
    }
}

#[cfg(all(test, feature = "demo"))] // the Slack fake
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::fakes::FakeSlack;
    use crate::slack::{SlackSettings, SlackWebApi};
    use crate::store::Store;

    #[tokio::test]
    async fn progress_replaces_the_auditing_message_at_most_twice_keeping_the_rest_for_the_end() {
        let slack = FakeSlack::start().await.unwrap();
        let state = AppState::new(
            Store::memory(),
            None,
            SlackSettings {
                signing_secrets: vec![SecretString::from("s")],
                allowed_team_ids: Vec::new(),
                admin_user_ids: Vec::new(),
                web: SlackWebApi::new(&slack.api_url(), None, vec!["127.0.0.1".to_owned()]),
            },
        );
        let (tx, rx) = tokio::sync::watch::channel(Some(Progress {
            done: 40_000,
            total: 120_000,
        }));
        let reporter = tokio::spawn(report_progress(
            state,
            slack.response_url("cmd"),
            "every business unit".to_owned(),
            rx,
            Duration::from_millis(5),
        ));
        let posts = || slack.calls().len();
        let wait_for = |n: usize| async move {
            let started = std::time::Instant::now();
            while posts() < n {
                assert!(started.elapsed() < Duration::from_secs(10), "no post {n}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        wait_for(1).await;
        // The same progress again is not posted again; new progress is, once more at most.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(posts(), 1);
        tx.send_replace(Some(Progress {
            done: 90_000,
            total: 120_000,
        }));
        wait_for(2).await;
        tx.send_replace(Some(Progress {
            done: 100_000,
            total: 120_000,
        }));
        reporter.await.unwrap();
        let calls = slack.calls();
        let texts: Vec<&str> = calls
            .iter()
            .map(|c| c.body["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "Auditing every business unit… 40000 of 120000 users looked at (33%).",
                "Auditing every business unit… 90000 of 120000 users looked at (75%).",
            ]
        );
        for call in &calls {
            assert_eq!(call.target, "response_url:cmd");
            assert_eq!(call.body["replace_original"], true);
        }
    }
}
