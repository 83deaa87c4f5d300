//! The Home tab (`app_home_opened` -> `views.publish`). The audit counts it shows take seconds
//! on a large org, so they are computed in the background, once per generation of the data
//! and one audit at a time; the tab is published at once with what is known ("counting…") and
//! again when the counts are ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::audit::AuditReport;
use crate::render::{self, AuditSummary, HomeAudit, HomeViewer};
use crate::state::AppState;
use crate::store::{StatusReport, Store};

/// One generation of the data: the store's generation id and when its data was fetched (the
/// in-process store has one generation id for every snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    pub generation: String,
    pub data_as_of: DateTime<Utc>,
}

impl DataKey {
    pub fn of(status: &StatusReport) -> Option<DataKey> {
        Some(DataKey {
            generation: status.generation.clone()?,
            data_as_of: status.data_as_of?,
        })
    }
}

/// The audit counts of the latest generation, computed at most once per generation.
#[derive(Default)]
pub struct HomeSummaries {
    latest: std::sync::Mutex<Option<(DataKey, AuditSummary)>>,
    /// Held while an audit runs: one at a time on this replica.
    running: tokio::sync::Mutex<()>,
    audits_run: AtomicUsize,
}

impl HomeSummaries {
    pub fn cached(&self, key: &DataKey) -> Option<AuditSummary> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
    }

    /// Audits run on this replica so far (the Home tab's counts and the Home tab's button).
    pub fn audits_run(&self) -> usize {
        self.audits_run.load(Ordering::SeqCst)
    }

    fn remember(&self, key: &DataKey, summary: &AuditSummary) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((key.clone(), summary.clone()));
    }

    /// The counts of `key`'s data: cached, or computed now by the only audit running.
    /// Failures are not cached: the next opening tries again.
    pub async fn summary(&self, store: &Store, key: &DataKey) -> Result<AuditSummary, String> {
        if let Some(summary) = self.cached(key) {
            return Ok(summary);
        }
        let _running = self.running.lock().await;
        // Another opening may have counted this generation while this one waited.
        if let Some(summary) = self.cached(key) {
            return Ok(summary);
        }
        let report = self.run_locked(store).await?;
        let summary = AuditSummary::of(&report);
        // The data may have moved on since `key` was read: cache only what matches it.
        if summary.data_as_of == key.data_as_of {
            self.remember(key, &summary);
        }
        Ok(summary)
    }

    /// Runs an audit of every business unit now (the button), after any audit under way, and
    /// keeps its counts for the Home tab.
    pub async fn run(&self, store: &Store) -> Result<AuditReport, String> {
        let _running = self.running.lock().await;
        let key = store.status().await.ok().as_ref().and_then(DataKey::of);
        let report = self.run_locked(store).await?;
        if let Some(key) = key.filter(|k| k.data_as_of == report.data_as_of) {
            self.remember(&key, &AuditSummary::of(&report));
        }
        Ok(report)
    }

    /// Only called with `running` held.
    async fn run_locked(&self, store: &Store) -> Result<AuditReport, String> {
        self.audits_run.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        // Only the counts are shown: no row is kept.
        let outcome = crate::check::audit(store, "", Utc::now(), Some(0), Arc::new(|_| {})).await;
        match outcome {
            Ok(report) => {
                tracing::info!(
                    rows = report.rows_total,
                    ms = started.elapsed().as_millis() as u64,
                    "audited every business unit"
                );
                Ok(report)
            }
            // An empty scope means every business unit; kept total all the same.
            Err(crate::check::AuditError::Scope(scope)) => Err(scope.to_string()),
            Err(err) => {
                tracing::warn!(error = %err, "the audit could not be made");
                Err(err.to_string())
            }
        }
    }
}

/// Publishes `user_id`'s Home tab now, and again when the audit counts are ready.
pub(crate) async fn publish_home(state: &AppState, user_id: &str) {
    let admin_usergroup_ids = state.admin_usergroups.ids();
    let viewer = HomeViewer {
        is_admin: state.is_admin(user_id),
        admin_user_ids: &state.slack.admin_user_ids,
        admin_usergroup_ids: &admin_usergroup_ids,
    };
    let status = match state.store.status().await {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!(error = %err, "the Home tab could not read the data's status");
            publish(
                state,
                user_id,
                render::home_unavailable_view(&err.to_string()),
            )
            .await;
            return;
        }
    };
    let Some(key) = DataKey::of(&status) else {
        let view = render::home_view(&status, &names(state, None), &HomeAudit::NoData, &viewer);
        publish(state, user_id, view).await;
        return;
    };
    if let Some(summary) = state.home.cached(&key) {
        let view = render::home_view(
            &status,
            &names(state, Some(&summary)),
            &HomeAudit::Ready(summary),
            &viewer,
        );
        publish(state, user_id, view).await;
        return;
    }
    let counting = render::home_view(&status, &names(state, None), &HomeAudit::Counting, &viewer);
    publish(state, user_id, counting).await;
    let (audit, summary) = match state.home.summary(&state.store, &key).await {
        Ok(summary) => (HomeAudit::Ready(summary.clone()), Some(summary)),
        Err(problem) => (HomeAudit::Failed(problem), None),
    };
    let view = render::home_view(&status, &names(state, summary.as_ref()), &audit, &viewer);
    publish(state, user_id, view).await;
}

/// Business unit names: from the settings file when live data is configured, else those the
/// audit saw.
fn names(state: &AppState, summary: Option<&AuditSummary>) -> BTreeMap<String, String> {
    let mut names = summary
        .map(|s| s.business_unit_names.clone())
        .unwrap_or_default();
    if let Some(sources) = &state.sources {
        for unit in &sources.business_units {
            names.insert(unit.id.to_string(), unit.label());
        }
    }
    names
}

async fn publish(state: &AppState, user_id: &str, view: Value) {
    if let Err(err) = state.slack.web.publish_home(user_id, &view).await {
        tracing::warn!(error = %err, "could not publish the Home tab");
    }
}

/// A direct message to `user_id` (the app's Messages tab): `chat.postMessage` with the user id
/// as channel.
pub(crate) async fn tell(state: &AppState, user_id: &str, message: Value) {
    let mut message = message;
    message["channel"] = json!(user_id);
    if let Err(err) = state.slack.web.post_message(&message).await {
        tracing::warn!(error = %err, "could not send a direct message");
    }
}
