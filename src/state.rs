//! What every handler shares: the store, the live sources, the Slack settings and the work
//! that goes on after Slack was acknowledged. Used by the Slack routes, Socket Mode, the
//! digest and the playground alike, so it lives outside `slack/`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::check::CheckError;
use crate::domain::{Diagnosis, Query, Verdict};
use crate::refresh::Sources;
use crate::render;
use crate::render::slack::kit::Message;
use crate::slack::followups::FollowUpSettings;
use crate::slack::{SlackSettings, home, socket_mode, usergroups};
use crate::store::{Store, StoreError};

pub struct Inner {
    pub store: Store,
    pub sources: Option<Arc<Sources>>,
    pub slack: SlackSettings,
    /// Work that goes on after Slack was acknowledged; shutdown waits for it.
    pub tasks: TaskTracker,
    /// When the data last served was fetched: told to people while the data is unavailable.
    pub last_data_as_of: Mutex<Option<DateTime<Utc>>>,
    /// One audit at a time per replica: it reads the whole cache.
    pub audit_running: std::sync::atomic::AtomicBool,
    /// The Home tab's audit counts, per generation of the data.
    pub home: home::HomeSummaries,
    /// When this process started, and so its first refresh: told to people while no data
    /// has been loaded yet.
    pub started_at: DateTime<Utc>,
    /// The Socket Mode connections, when the bot uses them (for `/readyz` and `/healthz`).
    pub socket_mode: socket_mode::Health,
    /// The admin user groups (`SLACK_ADMIN_USERGROUP_IDS`) and their members as last resolved.
    pub admin_usergroups: usergroups::AdminUsergroups,
    /// When follow-up re-checks run and how many may wait (`with_follow_ups`).
    pub follow_ups: FollowUpSettings,
    /// Another process runs the refresher (`with_refresher_elsewhere`): a refresh asked for in
    /// Slack is left to it, so that this process never holds a whole org.
    pub refresher_elsewhere: bool,
    /// Replies to recent checks, for the data they were made from (`answers.rs`).
    pub answers: crate::answers::AnswerMemo,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, sources: Option<Arc<Sources>>, slack: SlackSettings) -> Self {
        AppState(Arc::new(Inner {
            store,
            sources,
            slack,
            tasks: TaskTracker::new(),
            last_data_as_of: Mutex::new(None),
            audit_running: std::sync::atomic::AtomicBool::new(false),
            home: home::HomeSummaries::default(),
            started_at: Utc::now(),
            socket_mode: socket_mode::Health::default(),
            admin_usergroups: usergroups::AdminUsergroups::default(),
            follow_ups: FollowUpSettings::default(),
            refresher_elsewhere: false,
            answers: crate::answers::AnswerMemo::default(),
        }))
    }

    /// Another process runs the refresher (REFRESH_IN_SERVE=false): `/crm-username refresh`
    /// then starts no refresh here. Set once while the state is built (before it is shared).
    pub fn with_refresher_elsewhere(mut self, elsewhere: bool) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.refresher_elsewhere = elsewhere,
            None => {
                tracing::warn!("the refresher's place given after the state was shared; ignored")
            }
        }
        self
    }

    /// The follow-ups' settings, set once while the state is built (before it is shared).
    pub fn with_follow_ups(mut self, settings: FollowUpSettings) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => inner.follow_ups = settings,
            None => tracing::warn!("follow-up settings given after the state was shared; ignored"),
        }
        self
    }

    pub fn team_allowed(&self, team_id: &str) -> bool {
        self.slack.allowed_team_ids.is_empty()
            || self.slack.allowed_team_ids.iter().any(|t| t == team_id)
    }

    /// Listed in `SLACK_ADMIN_USER_IDS`, or a member of a group of `SLACK_ADMIN_USERGROUP_IDS`
    /// as last resolved. Every admin-only action asks here.
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.slack.admin_user_ids.iter().any(|u| u == user_id)
            || self.admin_usergroups.contains(user_id)
    }

    /// The diagnosis of a query as a Slack message, whatever happens.
    pub async fn answer(&self, query: &Query, recheck: bool) -> Value {
        self.answer_message(query, recheck).await.into_value()
    }

    /// [`AppState::answer`], typed.
    pub async fn answer_message(&self, query: &Query, recheck: bool) -> Message {
        match self.diagnose_typed(query, recheck).await {
            Ok(diagnosis) => self.message_for(&diagnosis),
            Err(message) => message,
        }
    }

    fn message_for(&self, diagnosis: &Diagnosis) -> Message {
        let mut message = render::slack::message(diagnosis);
        if self.follow_ups.enabled {
            render::slack::add_follow_up_button(&mut message, diagnosis, self.follow_ups.minutes());
        }
        message
    }

    /// The reply to `/crm-username check …` given at once (the HTTP response's body, or the
    /// Socket Mode acknowledgement's payload), as JSON. Served from the memo (`answers.rs`)
    /// when this replica answered the same text on the same data before and the clock did not
    /// matter: then only the read cache's round trip is made.
    pub async fn check_reply(&self, query: &Query) -> Bytes {
        let now = Utc::now();
        let (outcome, keep) = match self.store.query_org(query).await {
            Ok(org) => {
                if let Some((diagnosis, body)) = self.answers.get(&query.text, &org) {
                    self.served(&diagnosis);
                    return body;
                }
                let outcome = crate::diagnose::diagnose(query, &org, now).map_err(CheckError::from);
                // Kept only when made from `org` alone: a `not_found` may be looked up live
                // (and is cheap to make again), and an answer that depends on the clock
                // changes by itself. And only when the store keeps `org` (its read cache, or
                // the whole org in memory): the memo finds a reply by its org's address, so
                // one made on an org nobody else holds (a query asked for the first time, or
                // a small org too large for the read cache) could never be served.
                let keep = matches!(&outcome, Ok(d) if d.verdict != Verdict::NotFound)
                    && !crate::diagnose::depends_on_time(&org, now)
                    && Arc::strong_count(&org) > 1;
                (outcome, keep.then_some(org))
            }
            Err(err) => (Err(err.into()), None),
        };
        let outcome = match &self.sources {
            Some(sources) => {
                crate::refresh::answer_live(sources, &self.store, query, now, outcome).await
            }
            None => outcome,
        };
        match self.settle(outcome) {
            Ok(diagnosis) => {
                let body = json_body(&self.message_for(&diagnosis).as_response(false, None));
                if let Some(org) = keep {
                    self.answers
                        .insert(&query.text, &org, Arc::new(diagnosis), body.clone());
                }
                body
            }
            Err(message) => json_body(&message.as_response(false, None)),
        }
    }

    /// The diagnosis of a query, or the Slack message that says why there is none (data
    /// loading or unavailable, unknown target).
    pub async fn diagnose(&self, query: &Query, recheck: bool) -> Result<Diagnosis, Value> {
        self.diagnose_typed(query, recheck)
            .await
            .map_err(Message::into_value)
    }

    async fn diagnose_typed(&self, query: &Query, recheck: bool) -> Result<Diagnosis, Message> {
        let outcome = match (&self.sources, recheck) {
            (Some(sources), true) => {
                crate::refresh::recheck(sources, &self.store, query, Utc::now()).await
            }
            // A query the cache cannot answer is looked up live, within bounds; a re-check
            // without live data answers from the cache.
            (Some(sources), false) => {
                crate::refresh::answer(sources, &self.store, query, Utc::now()).await
            }
            (None, _) => crate::check::check(&self.store, query, Utc::now()).await,
        };
        self.settle(outcome)
    }

    /// A diagnosis counted and returned, or the message that says why there is none.
    fn settle(&self, outcome: Result<Diagnosis, CheckError>) -> Result<Diagnosis, Message> {
        match outcome {
            Ok(diagnosis) => {
                self.served(&diagnosis);
                Ok(diagnosis)
            }
            Err(CheckError::Store(StoreError::NoSnapshot)) => {
                Err(render::slack::loading(self.started_at))
            }
            Err(CheckError::Target(target)) => Err(render::slack::error(&target.to_string())),
            Err(problem) => {
                tracing::warn!(error = %problem, "a diagnosis could not be made");
                let since = *self
                    .last_data_as_of
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                Err(render::slack::unavailable(&problem.to_string(), since))
            }
        }
    }

    /// Counts an answer given (metrics, and the data's age told while it is unavailable).
    fn served(&self, diagnosis: &Diagnosis) {
        crate::metrics::record_diagnosis(diagnosis);
        *self
            .last_data_as_of
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(diagnosis.data_as_of);
    }

    /// Posts to a response_url in the background, logging (not showing) failures.
    pub fn respond_later(
        &self,
        response_url: String,
        message: impl std::future::Future<Output = Value> + Send + 'static,
    ) {
        let state = self.clone();
        self.tasks.spawn(async move {
            let message = message.await;
            if let Err(err) = state.slack.web.respond(&response_url, &message).await {
                tracing::warn!(error = %err, "could not reply through response_url");
            }
        });
    }
}

/// A reply as the JSON Slack reads.
fn json_body(reply: &impl serde::Serialize) -> Bytes {
    // Typed structs and strings only: writing them to memory cannot fail.
    Bytes::from(serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec()))
}
