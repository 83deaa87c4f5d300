//! The scheduled audit digest (optional, `AUDIT_DIGEST_CHANNEL`): every
//! `AUDIT_DIGEST_INTERVAL`, one replica audits every business unit and, only when the rows
//! changed since the last digest, posts the summary and the CSV in the channel. The rows of
//! the last digest are kept in the store, so a restart or another replica does not post the
//! same digest twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditReport, Changes};
use crate::render;
use crate::state::AppState;

const STATE: &str = "audit-digest";
/// How often the digest looks for data while the cache is still empty.
const WAIT_FOR_DATA: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DigestSettings {
    /// Channel id (`C…`); the bot must be a member to post and share the CSV there.
    pub channel: String,
    pub interval: Duration,
}

/// What one run of the digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestOutcome {
    /// Another replica (or an earlier run) has this period.
    NotOurTurn,
    /// No data yet.
    NoData,
    Unchanged,
    Posted(Changes),
    Failed(String),
}

/// Runs the digest until shutdown: once data is there, then every `interval`.
pub async fn run(state: AppState, settings: DigestSettings, shutdown: CancellationToken) {
    tracing::info!(channel = %settings.channel, interval_s = settings.interval.as_secs(), "audit digest scheduled");
    loop {
        let outcome = digest_once(&state, &settings, Utc::now()).await;
        tracing::info!(?outcome, "audit digest");
        let wait = match outcome {
            DigestOutcome::NoData => WAIT_FOR_DATA,
            _ => settings.interval,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One run: claim the period, audit, compare with the last digest, post when changed.
pub async fn digest_once(
    state: &AppState,
    settings: &DigestSettings,
    now: DateTime<Utc>,
) -> DigestOutcome {
    match state.store.status().await {
        Ok(status) if status.data_as_of.is_some() => {}
        Ok(_) => return DigestOutcome::NoData,
        Err(err) => return DigestOutcome::Failed(err.to_string()),
    }
    // A little less than the interval, so that the next period can be claimed on time.
    let claim_for = settings.interval.mul_f64(0.9).max(Duration::from_millis(1));
    match state.store.claim(STATE, claim_for).await {
        Ok(true) => {}
        Ok(false) => return DigestOutcome::NotOurTurn,
        Err(err) => return DigestOutcome::Failed(err.to_string()),
    }
    let report = match crate::check::audit(
        &state.store,
        "",
        now,
        Some(crate::audit::MAX_ROWS_KEPT),
        std::sync::Arc::new(|_| {}),
    )
    .await
    {
        Ok(report) => report,
        Err(err) => return DigestOutcome::Failed(err.to_string()),
    };
    let keys = &report.fingerprints;
    let previous: Option<Vec<u64>> = match state.store.job_state(STATE).await {
        Ok(raw) => raw.and_then(|raw| serde_json::from_slice(&raw).ok()),
        Err(err) => return DigestOutcome::Failed(err.to_string()),
    };
    let changes = Changes::between(previous.as_deref().unwrap_or_default(), keys);
    if previous.is_some() && changes.is_empty() {
        return DigestOutcome::Unchanged;
    }
    if let Err(err) = post(state, settings, &report, &changes, previous.is_none()).await {
        return DigestOutcome::Failed(err);
    }
    let saved = serde_json::to_vec(keys).unwrap_or_default();
    if let Err(err) = state.store.set_job_state(STATE, saved).await {
        return DigestOutcome::Failed(err.to_string());
    }
    DigestOutcome::Posted(changes)
}

async fn post(
    state: &AppState,
    settings: &DigestSettings,
    report: &AuditReport,
    changes: &Changes,
    first: bool,
) -> Result<(), String> {
    let mut note = String::new();
    if report.rows_total > 0 {
        let comment = format!("Audit digest: {} rows", report.rows_total);
        match super::audit::upload_csv(state, &settings.channel, report, "Audit digest", &comment)
            .await
        {
            Ok(filename) => {
                note = format!(
                    "{} ({filename}) is shared in this channel.",
                    super::audit::csv_holds(report)
                )
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not share the digest's CSV");
                note = format!("The CSV could not be shared ({err}).");
            }
        }
    }
    let mut message = render::audit_summary_message(report, "/crm-username", &note);
    let since = if first {
        "First digest: every row is new.".to_owned()
    } else {
        format!(
            "Since the last digest: {} new row{}, {} gone (fixed, or their cause changed).",
            changes.new,
            if changes.new == 1 { "" } else { "s" },
            changes.gone
        )
    };
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.insert(
            1,
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{since}*")}}),
        );
    }
    message["text"] = Value::String(format!(
        "Audit digest: {} ({since})",
        message["text"].as_str().unwrap_or_default()
    ));
    message["channel"] = Value::String(settings.channel.clone());
    state
        .slack
        .web
        .post_message(&message)
        .await
        .map_err(|e| e.to_string())
}
