//! The in-process store: one replica, no Redis. The whole org stays in memory, indexed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{LockToken, SourceStatus, StatusReport, StoreError, random_token};
use crate::domain::{AeUser, GroupMember, Org, OrgSnapshot, SfId, SfUser};

#[derive(Default)]
pub struct MemoryStore {
    org: RwLock<Option<Arc<Org>>>,
    sources: Mutex<BTreeMap<String, SourceStatus>>,
    lock: Mutex<Option<(LockToken, Instant)>>,
    events: Mutex<std::collections::HashMap<String, Instant>>,
    claims: Mutex<std::collections::HashMap<String, Instant>>,
    job_states: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    pub(super) follow_ups: super::followups::MemoryFollowUps,
}

/// Slack retries an event for a few minutes at most; an hour is ample.
const EVENT_MEMORY: Duration = Duration::from_secs(3600);

fn poisoned<T>(err: std::sync::PoisonError<T>) -> T {
    // A panic elsewhere cannot leave these maps half-written: each update is one assignment.
    err.into_inner()
}

impl MemoryStore {
    pub async fn publish(&self, snapshot: OrgSnapshot) -> Result<(), StoreError> {
        let org = tokio::task::spawn_blocking(move || Org::new(snapshot))
            .await
            .map_err(|e| StoreError::Corrupt(format!("indexing failed: {e}")))?;
        *self.org.write().unwrap_or_else(poisoned) = Some(Arc::new(org));
        Ok(())
    }

    pub async fn update_user(
        &self,
        user: SfUser,
        direct_groups: Vec<SfId>,
        ae_users: Vec<(SfId, Vec<AeUser>)>,
    ) -> Result<(), StoreError> {
        let org = self.current().ok_or(StoreError::NoSnapshot)?;
        let mut snapshot = org.snapshot().clone();
        drop(org);
        let direct_groups = super::records::reachable_direct_groups(
            direct_groups,
            &snapshot.salesforce.groups,
            &snapshot.salesforce.group_members,
            &snapshot.business_units,
        );
        let members = &mut snapshot.salesforce.group_members;
        members.retain(|m| m.member_id != user.id);
        members.extend(direct_groups.into_iter().map(|group_id| GroupMember {
            group_id,
            member_id: user.id,
        }));
        let users = &mut snapshot.salesforce.users;
        match users.iter_mut().find(|u| u.id == user.id) {
            Some(existing) => *existing = user,
            None => users.push(user),
        }
        for (id, fresh) in ae_users {
            if let Some(bu) = snapshot.business_units.iter_mut().find(|b| b.id == id) {
                bu.users = fresh;
            }
        }
        self.publish(snapshot).await
    }

    pub fn current(&self) -> Option<Arc<Org>> {
        self.org.read().unwrap_or_else(poisoned).clone()
    }

    pub fn claim(&self, name: &str, ttl: Duration) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(poisoned);
        let now = Instant::now();
        match claims.get(name) {
            Some(until) if *until > now => false,
            _ => {
                claims.insert(name.to_owned(), now + ttl);
                true
            }
        }
    }

    pub fn job_state(&self, name: &str) -> Option<Vec<u8>> {
        self.job_states
            .lock()
            .unwrap_or_else(poisoned)
            .get(name)
            .cloned()
    }

    pub fn set_job_state(&self, name: &str, value: Vec<u8>) {
        self.job_states
            .lock()
            .unwrap_or_else(poisoned)
            .insert(name.to_owned(), value);
    }

    pub fn record_status(&self, source: &str, status: &SourceStatus) {
        self.sources
            .lock()
            .unwrap_or_else(poisoned)
            .insert(source.to_owned(), status.clone());
    }

    pub fn status(&self) -> StatusReport {
        let org = self.current();
        StatusReport {
            data_as_of: org.as_ref().map(|o| o.snapshot().fetched_at),
            generation: org.as_ref().map(|_| super::MEMORY_GENERATION.to_owned()),
            sf_users: org
                .as_ref()
                .map_or(0, |o| o.snapshot().salesforce.users.len()),
            ae_users: org
                .as_ref()
                .map(|o| {
                    o.business_units()
                        .iter()
                        .map(|b| (b.id.to_string(), b.users.len()))
                        .collect()
                })
                .unwrap_or_default(),
            sources: self.sources.lock().unwrap_or_else(poisoned).clone(),
        }
    }

    pub fn first_delivery(&self, event_id: &str) -> bool {
        let mut events = self.events.lock().unwrap_or_else(poisoned);
        let now = Instant::now();
        if events.len() > 10_000 {
            events.retain(|_, seen| now.duration_since(*seen) < EVENT_MEMORY);
        }
        match events.get(event_id) {
            Some(seen) if now.duration_since(*seen) < EVENT_MEMORY => false,
            _ => {
                events.insert(event_id.to_owned(), now);
                true
            }
        }
    }

    pub fn try_lock(&self, ttl: Duration) -> Option<LockToken> {
        let mut lock = self.lock.lock().unwrap_or_else(poisoned);
        if lock
            .as_ref()
            .is_some_and(|(_, until)| *until > Instant::now())
        {
            return None;
        }
        let token = LockToken(random_token());
        *lock = Some((token.clone(), Instant::now() + ttl));
        Some(token)
    }

    pub fn renew_lock(&self, token: &LockToken, ttl: Duration) -> bool {
        let mut lock = self.lock.lock().unwrap_or_else(poisoned);
        match lock.as_mut() {
            Some((held, until)) if held == token && *until > Instant::now() => {
                *until = Instant::now() + ttl;
                true
            }
            _ => false,
        }
    }

    pub fn release_lock(&self, token: &LockToken) {
        let mut lock = self.lock.lock().unwrap_or_else(poisoned);
        if lock.as_ref().is_some_and(|(held, _)| held == token) {
            *lock = None;
        }
    }
}
