//! Follow-up re-checks: the "Re-check in 15 min" and "Stop" buttons, and the background job
//! that re-checks due follow-ups live and posts the new verdict where the answer was (its
//! thread, or its `response_url`). The store keeps them (`Store::schedule_follow_up` and the
//! rest), so any replica runs a due one, exactly once, and they survive restarts. The
//! playground runs the same job on a store of its own, and [`run_due`] for its "15 minutes
//! pass".

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackInteractionActionContainer, SlackInteractionBlockActionsEvent};
use tokio_util::sync::CancellationToken;

use crate::domain::Query;
use crate::render;
use crate::state::AppState;
use crate::store::{FollowUp, FollowUpLimits, FollowUpReply, Scheduled, StoreError};

/// At most this many pending follow-ups per person: enough for the tickets one person works on
/// at once, and a click-happy person cannot fill the workspace's share.
pub const MAX_PER_USER: usize = 3;
/// At most this many per workspace: each re-check is a live Salesforce and Account Engagement
/// lookup, and a hundred every 15 minutes stays far within their API limits.
pub const MAX_PER_TEAM: usize = 100;
/// Re-checks per follow-up: an hour at the default delay, the longest AE takes to create a user
/// after an assignment.
pub const MAX_TRIES: u32 = 4;
/// Follow-ups taken per poll by one replica; the rest wait for its next poll, or another's.
const CLAIM_BATCH: usize = 20;

/// When and how often follow-ups run, and how many may wait.
#[derive(Debug, Clone)]
pub struct FollowUpSettings {
    /// Off: answers carry no "Re-check in" button and its clicks are ignored.
    pub enabled: bool,
    /// How often a replica looks for due follow-ups.
    pub poll_every: Duration,
    /// The time between a click (or a re-check) and the next re-check.
    pub delay: Duration,
    pub tries: u32,
    pub limits: FollowUpLimits,
}

impl Default for FollowUpSettings {
    fn default() -> Self {
        FollowUpSettings {
            enabled: true,
            poll_every: Duration::from_secs(5),
            delay: Duration::from_secs(15 * 60),
            tries: MAX_TRIES,
            limits: FollowUpLimits {
                per_user: MAX_PER_USER,
                per_team: MAX_PER_TEAM,
            },
        }
    }
}

impl FollowUpSettings {
    /// The delay in whole minutes, as the button and the messages say it (at least 1).
    pub fn minutes(&self) -> u64 {
        (self.delay.as_secs() / 60).max(1)
    }
}

/// Posts `message` where the follow-up answers; failures are logged.
async fn post(state: &AppState, reply: &FollowUpReply, message: Value) {
    let sent = match reply {
        FollowUpReply::Thread { channel, thread_ts } => {
            let mut message = render::slack::in_thread(message);
            message["channel"] = json!(channel);
            message["thread_ts"] = json!(thread_ts);
            state.slack.web.post_message(&message).await
        }
        FollowUpReply::ResponseUrl { url } => {
            let message = render::as_response(message, false, Some(true));
            state.slack.web.respond(url, &message).await
        }
    };
    if let Err(err) = sent {
        tracing::warn!(error = %err, "could not post a follow-up");
    }
}

/// Where the answer clicked on lives: a message in a channel (answered in its thread), or an
/// ephemeral one (answered through the click's `response_url`).
fn reply_of(event: &SlackInteractionBlockActionsEvent, response_url: &str) -> FollowUpReply {
    let ephemeral = match &event.container {
        SlackInteractionActionContainer::Message(m) => m.is_ephemeral.unwrap_or(false),
        _ => true,
    };
    match (&event.message, &event.channel, ephemeral) {
        (Some(message), Some(channel), false) => FollowUpReply::Thread {
            channel: channel.id.to_string(),
            thread_ts: message
                .origin
                .thread_ts
                .as_ref()
                .unwrap_or(&message.origin.ts)
                .to_string(),
        },
        _ => FollowUpReply::ResponseUrl {
            url: response_url.to_owned(),
        },
    }
}

/// "Re-check in 15 min": schedules a follow-up of the query (the button's value, parsed
/// again), unless a limit is reached.
pub(crate) fn on_follow_up(
    state: &AppState,
    event: &SlackInteractionBlockActionsEvent,
    value: &str,
    user: &str,
    response_url: String,
) {
    let Ok(query) = Query::parse(value) else {
        return;
    };
    if !state.follow_ups.enabled {
        return;
    }
    let follow_up = FollowUp {
        id: crate::store::random_token(),
        query: query.text.clone(),
        team: event.team.id.to_string(),
        user: user.to_owned(),
        reply: reply_of(event, &response_url),
        tries: 0,
    };
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let settings = &state2.follow_ups;
        let due = Utc::now() + settings.delay;
        let scheduled = state2
            .store
            .schedule_follow_up(&follow_up, due, settings.limits, settings.delay)
            .await;
        let refusal = match scheduled {
            Ok(Scheduled::Yes) => {
                tracing::info!(id = %follow_up.id, "follow-up scheduled");
                let message = render::slack::follow_up_scheduled(
                    &follow_up.query,
                    &follow_up.user,
                    &follow_up.id,
                    settings.minutes(),
                    settings.tries,
                );
                match &follow_up.reply {
                    FollowUpReply::Thread { .. } => post(&state2, &follow_up.reply, message).await,
                    FollowUpReply::ResponseUrl { url } => {
                        let message = render::as_response(message, false, Some(false));
                        if let Err(err) = state2.slack.web.respond(url, &message).await {
                            tracing::warn!(error = %err, "could not confirm a follow-up");
                        }
                    }
                }
                return;
            }
            Ok(Scheduled::UserLimit) => {
                render::slack::follow_up_limit(true, settings.limits.per_user)
            }
            Ok(Scheduled::TeamLimit) => {
                render::slack::follow_up_limit(false, settings.limits.per_team)
            }
            Err(err) => render::unavailable_message(&err.to_string(), None),
        };
        let refusal = render::as_response(refusal, false, Some(false));
        if let Err(err) = state2.slack.web.respond(&response_url, &refusal).await {
            tracing::warn!(error = %err, "could not refuse a follow-up");
        }
    });
}

/// "Stop": removes the follow-up (its id is the button's value) if it is of this workspace.
pub(crate) fn on_stop(
    state: &AppState,
    event: &SlackInteractionBlockActionsEvent,
    id: &str,
    user: &str,
    response_url: String,
) {
    let (state2, id, user, team) = (
        state.clone(),
        id.to_owned(),
        user.to_owned(),
        event.team.id.to_string(),
    );
    state.tasks.spawn(async move {
        let found = match state2.store.follow_up(&id).await {
            Ok(Some(f)) if f.team == team => Some(f),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not stop a follow-up");
                let message = render::unavailable_message(&err.to_string(), None);
                let _ = state2
                    .slack
                    .web
                    .respond(
                        &response_url,
                        &render::as_response(message, false, Some(false)),
                    )
                    .await;
                return;
            }
        };
        let stopped = match &found {
            Some(f) => state2.store.finish_follow_up(f).await.unwrap_or(false),
            None => false,
        };
        match found.filter(|_| stopped) {
            Some(f) => {
                tracing::info!(id = %f.id, "follow-up stopped");
                let message = render::slack::follow_up_stopped(&f.query, &user, true);
                match &f.reply {
                    FollowUpReply::Thread { .. } => post(&state2, &f.reply, message).await,
                    FollowUpReply::ResponseUrl { .. } => {
                        let message = render::as_response(message, false, Some(false));
                        let _ = state2.slack.web.respond(&response_url, &message).await;
                    }
                }
            }
            None => {
                let message = render::slack::follow_up_stopped("", &user, false);
                let message = render::as_response(message, false, Some(false));
                let _ = state2.slack.web.respond(&response_url, &message).await;
            }
        }
    });
}

/// The background job: every `poll_every`, takes the due follow-ups and runs each, until
/// shutdown. Every replica runs it; the store gives each due follow-up to one of them.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let poll_every = state.follow_ups.poll_every;
    // Said once when Redis stops answering, and once when it is back: not every poll.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll_every) => {}
        }
        let due = match state
            .store
            .claim_due_follow_ups(Utc::now(), CLAIM_BATCH)
            .await
        {
            Ok(due) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("looking for due follow-ups again");
                }
                due
            }
            Err(err) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %err, "could not look for due follow-ups; trying again every poll");
                }
                continue;
            }
        };
        for follow_up in due {
            let state2 = state.clone();
            state
                .tasks
                .spawn(async move { run_one(&state2, follow_up).await });
        }
    }
}

/// Takes the follow-ups due by `now` (at most one batch) and re-checks them, posting each
/// answer; returns how many ran, once all have. The playground's "15 minutes pass" calls it with
/// `now` 15 minutes ahead: every pending follow-up is due by then.
pub async fn run_due(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let due = state.store.claim_due_follow_ups(now, CLAIM_BATCH).await?;
    let runs: Vec<_> = due
        .into_iter()
        .map(|follow_up| {
            let state2 = state.clone();
            state
                .tasks
                .spawn(async move { run_one(&state2, follow_up).await })
        })
        .collect();
    let count = runs.len();
    for run in runs {
        if let Err(err) = run.await {
            tracing::warn!(error = %err, "a follow-up re-check did not finish");
        }
    }
    Ok(count)
}

/// One re-check: live, as "Re-check now" does; then again later, or done.
async fn run_one(state: &AppState, mut follow_up: FollowUp) {
    let settings = &state.follow_ups;
    let Ok(query) = Query::parse(&follow_up.query) else {
        let _ = state.store.finish_follow_up(&follow_up).await;
        return;
    };
    let diagnosis = state.diagnose(&query, true).await;
    follow_up.tries += 1;
    let (answer, settled) = match &diagnosis {
        Ok(d) => (render::blocks(d), render::slack::follow_up_settled(d)),
        Err(message) => (message.clone(), false),
    };
    let step = if settled {
        render::slack::FollowUpStep::Settled
    } else if follow_up.tries >= settings.tries {
        render::slack::FollowUpStep::GaveUp {
            diagnosis: diagnosis.as_ref().ok(),
        }
    } else {
        render::slack::FollowUpStep::Again {
            id: &follow_up.id,
            minutes: settings.minutes(),
        }
    };
    // Stopped while it ran: the store says so, and nothing is posted.
    let still_on = match step {
        render::slack::FollowUpStep::Again { .. } => {
            let due = Utc::now() + settings.delay;
            state
                .store
                .reschedule_follow_up(&follow_up, due, settings.delay)
                .await
        }
        _ => state.store.finish_follow_up(&follow_up).await,
    };
    match still_on {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            // Not rescheduled (or not removed: it expires): said, and this answer posted.
            tracing::warn!(error = %err, id = %follow_up.id, "could not update a follow-up");
        }
    }
    tracing::info!(id = %follow_up.id, tries = follow_up.tries, settled, "follow-up re-checked");
    let message = render::slack::follow_up_answer(
        answer,
        &follow_up.query,
        &follow_up.user,
        follow_up.tries,
        settings.tries,
        step,
    );
    post(state, &follow_up.reply, message).await;
}
