//! Follow-up re-checks as the store keeps them: the record, the limits, and the in-process
//! implementation (the Redis one is `redis_store/followups.rs`). The store only keeps them;
//! running them is `slack::followups`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A pending follow-up: what to re-check, for whom, and where to post the new verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// A random token; the "Stop" button's value.
    pub id: String,
    /// The query, as typed (parsed again when it runs).
    pub query: String,
    pub team: String,
    pub user: String,
    pub reply: FollowUpReply,
    /// Re-checks already made.
    pub tries: u32,
}

/// Where a follow-up posts: in the thread of a public answer, or through the `response_url`
/// of an ephemeral one (replacing it, while Slack keeps the URL valid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FollowUpReply {
    Thread { channel: String, thread_ts: String },
    ResponseUrl { url: String },
}

/// How many follow-ups may be pending at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUpLimits {
    pub per_user: usize,
    pub per_team: usize,
}

/// What scheduling a new follow-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    Yes,
    /// The person already has `per_user` pending.
    UserLimit,
    /// The workspace already has `per_team` pending.
    TeamLimit,
}

/// `team` and `user` as they go into a key: Slack ids are alphanumeric, anything else is cut.
pub(crate) fn key_part(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect()
}

/// The in-process follow-ups: the records, and when each is due (absent while one runs).
#[derive(Default)]
pub struct MemoryFollowUps {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    records: HashMap<String, FollowUp>,
    due: HashMap<String, DateTime<Utc>>,
}

impl MemoryFollowUps {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // Each update below leaves both maps consistent before it could panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn schedule(
        &self,
        follow_up: &FollowUp,
        due: DateTime<Utc>,
        limits: FollowUpLimits,
    ) -> Scheduled {
        let mut inner = self.lock();
        let of_team = inner.records.values().filter(|f| f.team == follow_up.team);
        let (team, user) = of_team.fold((0, 0), |(t, u), f| {
            (t + 1, u + usize::from(f.user == follow_up.user))
        });
        if user >= limits.per_user {
            return Scheduled::UserLimit;
        }
        if team >= limits.per_team {
            return Scheduled::TeamLimit;
        }
        inner
            .records
            .insert(follow_up.id.clone(), follow_up.clone());
        inner.due.insert(follow_up.id.clone(), due);
        Scheduled::Yes
    }

    pub fn claim_due(&self, now: DateTime<Utc>, max: usize) -> Vec<FollowUp> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .due
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(id, _)| id.clone())
            .take(max)
            .collect();
        ids.iter()
            .filter_map(|id| {
                inner.due.remove(id);
                inner.records.get(id).cloned()
            })
            .collect()
    }

    pub fn reschedule(&self, follow_up: &FollowUp, due: DateTime<Utc>) -> bool {
        let mut inner = self.lock();
        if !inner.records.contains_key(&follow_up.id) {
            return false;
        }
        inner
            .records
            .insert(follow_up.id.clone(), follow_up.clone());
        inner.due.insert(follow_up.id.clone(), due);
        true
    }

    pub fn get(&self, id: &str) -> Option<FollowUp> {
        self.lock().records.get(id).cloned()
    }

    pub fn finish(&self, id: &str) -> bool {
        let mut inner = self.lock();
        inner.due.remove(id);
        inner.records.remove(id).is_some()
    }
}

/// How long a record outlives its last due time in Redis: a replica that died while running
/// it leaves it counted against the limits until then.
pub(crate) fn record_ttl(delay: Duration) -> Duration {
    delay * 2 + Duration::from_secs(3600)
}
