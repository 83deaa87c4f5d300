//! The cache the bot answers from: one interface, a Redis implementation shared by every
//! replica, and an in-process one for a single replica without Redis. It reads and writes
//! org data (and keeps the Slack-side records the replicas share: event ids, job claims,
//! follow-ups) only; the diagnosis of what it returns is `check`'s.

pub mod digest;
mod followups;
mod keys;
mod memory;
pub mod records;
mod redis_store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use followups::{FollowUp, FollowUpLimits, FollowUpReply, Scheduled};
pub use keys::{BUCKET_LUA, BUCKETS, Entry, FORMAT, FORMAT_TTL, Keys, STAGING_TTL, bucket};
pub use memory::MemoryStore;
pub use redis_store::{
    AuditBatch, AuditReader, AuditSubject, MAX_PATCH_OPS, PatchOp, PatchOutcome, RedisSettings,
    RedisStore, RedisTimeouts, generation_patch, unlink_matching,
};

use crate::domain::{AeUser, Org, OrgSnapshot, Query, SfId, SfUser};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no org data has been loaded yet: the first refresh has not finished (see `crm-username status`)"
    )]
    NoSnapshot,
    #[error("the cache (Redis) is unavailable: {0}")]
    Unavailable(String),
    #[error("the cache holds data this version cannot read ({0}); run `crm-username refresh`")]
    Corrupt(String),
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        metrics::counter!(crate::metrics::REDIS_ERRORS).increment(1);
        StoreError::Unavailable(redis_store::explain(&err))
    }
}

/// How one source (Salesforce, or one business unit of Account Engagement) last fared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Records fetched by the last success.
    pub records: Option<usize>,
    pub duration_ms: Option<u64>,
    /// API requests the last success made (the refresh records only): Salesforce and
    /// Account Engagement together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_calls: Option<u64>,
}

/// What `crm-username status` and `/readyz` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub data_as_of: Option<DateTime<Utc>>,
    pub generation: Option<String>,
    pub sf_users: usize,
    /// Business unit id -> AE users (active and in the recycle bin).
    pub ae_users: BTreeMap<String, usize>,
    /// Source name (`salesforce`, `account_engagement:<bu id>`, `refresh`) -> status.
    pub sources: BTreeMap<String, SourceStatus>,
}

/// Held while one replica refreshes; released explicitly, or it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

/// What an audit reads.
pub enum AuditSource {
    /// The whole org, held in memory: audited in one pass.
    Whole(Arc<Org>),
    /// The shared cache: a batch of users at a time, each with its small org.
    Batches(Box<AuditReader>),
}

/// A generation as the replica that wrote it knows it: its id, and the epoch its patches
/// expect (see `GenerationKeys::epoch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRef {
    pub id: String,
    pub epoch: String,
}

#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

impl Store {
    pub fn memory() -> Self {
        Store::Memory(Arc::new(MemoryStore::default()))
    }

    /// This store over a connection of its own (Redis; the in-process store is shared as is):
    /// the refresher's, so that what it writes never queues in front of a check's reads.
    /// Falls back to sharing the connection if another cannot be opened.
    pub fn with_own_connection(&self) -> Store {
        match self {
            Store::Memory(m) => Store::Memory(m.clone()),
            Store::Redis(r) => match r.with_own_connection() {
                Ok(own) => Store::Redis(own),
                Err(err) => {
                    tracing::warn!(error = %err, "the refresher shares the checks' Redis connection");
                    self.clone()
                }
            },
        }
    }

    /// Publishes a complete snapshot atomically; the previous one keeps serving until then.
    pub async fn publish(&self, snapshot: OrgSnapshot) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => m.publish(snapshot).await,
            Store::Redis(r) => r.publish(snapshot).await,
        }
    }

    /// [`Store::publish`] of an org already indexed (`Org::without_search` is enough): returns
    /// the generation written, which [`Store::patch`] takes.
    pub async fn publish_org(&self, org: Arc<Org>) -> Result<GenerationRef, StoreError> {
        match self {
            Store::Memory(m) => {
                m.publish(org.snapshot().clone()).await?;
                Ok(memory_generation())
            }
            Store::Redis(r) => r.publish_org(org).await,
        }
    }

    /// What a full refresh writes: the current generation rewritten in place where only some
    /// of its keys differ from `org` (their number in `Some`), else a new generation
    /// (`None`), as [`Store::publish_org`].
    pub async fn refresh_org(
        &self,
        org: Arc<Org>,
    ) -> Result<(GenerationRef, Option<usize>), StoreError> {
        match self {
            Store::Memory(_) => Ok((self.publish_org(org).await?, None)),
            Store::Redis(r) => match r.rewrite_in_place(org.clone()).await? {
                Some((generation, writes)) => Ok((generation, Some(writes))),
                None => Ok((r.publish_org(org).await?, None)),
            },
        }
    }

    /// Rewrites, in place and atomically, what differs between `old` (the org `generation`
    /// was published or last patched from) and `new`; nothing when `generation` is no longer
    /// current or the patch is too large for one step (the caller publishes `new` instead).
    pub async fn patch(
        &self,
        generation: &GenerationRef,
        old: Arc<Org>,
        new: Arc<Org>,
    ) -> Result<PatchOutcome, StoreError> {
        match self {
            Store::Memory(m) => {
                if generation.id != MEMORY_GENERATION {
                    return Ok(PatchOutcome::Stale);
                }
                m.publish(new.snapshot().clone()).await?;
                Ok(PatchOutcome::Applied(0))
            }
            Store::Redis(r) => r.patch(generation, old, new).await,
        }
    }

    /// The generation readers use, if any, with its epoch.
    pub async fn current_generation(&self) -> Result<Option<GenerationRef>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.current().map(|_| memory_generation())),
            Store::Redis(r) => r.current_generation_ref().await,
        }
    }

    /// The org a query needs: the whole org in memory; from Redis, a small org holding just
    /// the records the query touches (see `RedisStore::query_org`).
    pub async fn query_org(&self, query: &Query) -> Result<Arc<Org>, StoreError> {
        match self {
            Store::Memory(m) => m.current().ok_or(StoreError::NoSnapshot),
            Store::Redis(r) => r.query_org(query).await,
        }
    }

    /// Replaces one Salesforce user, the groups holding it directly, and the AE users of each
    /// business unit (by id) with freshly read ones, for that user's diagnosis; the rest
    /// waits for the next refresh.
    pub async fn update_user(
        &self,
        user: SfUser,
        direct_groups: Vec<SfId>,
        ae_users: Vec<(SfId, Vec<AeUser>)>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => m.update_user(user, direct_groups, ae_users).await,
            Store::Redis(r) => r.update_user(user, direct_groups, ae_users).await,
        }
    }

    /// Renews the expiry of this version's cached data (Redis only: see
    /// `RedisStore::renew_expiry`); each refresh calls it, whether it succeeds or not.
    pub async fn renew_expiry(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(r) => r.renew_expiry().await,
        }
    }

    /// `true` the first time an event id is seen (within an hour), `false` for Slack's retries.
    pub async fn first_delivery(&self, event_id: &str) -> Result<bool, StoreError> {
        // Event ids are short and alphanumeric; anything else is cut down before it is a key.
        let event_id: String = event_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        match self {
            Store::Memory(m) => Ok(m.first_delivery(&event_id)),
            Store::Redis(r) => r.first_delivery(&event_id).await,
        }
    }

    pub async fn record_status(
        &self,
        source: &str,
        status: &SourceStatus,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.record_status(source, status);
                Ok(())
            }
            Store::Redis(r) => r.record_status(source, status).await,
        }
    }

    pub async fn source_status(&self, source: &str) -> Result<SourceStatus, StoreError> {
        Ok(self
            .status()
            .await?
            .sources
            .remove(source)
            .unwrap_or_default())
    }

    pub async fn status(&self) -> Result<StatusReport, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.status()),
            Store::Redis(r) => r.status().await,
        }
    }

    /// What an audit reads: the whole org in memory, or the shared cache's users in batches.
    pub async fn audit_source(&self) -> Result<AuditSource, StoreError> {
        match self {
            Store::Memory(m) => m
                .current()
                .map(AuditSource::Whole)
                .ok_or(StoreError::NoSnapshot),
            Store::Redis(r) => Ok(AuditSource::Batches(Box::new(r.audit_reader().await?))),
        }
    }

    /// `true` for the one replica that claims the periodic job `name` first, until `ttl`
    /// passes.
    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.claim(name, ttl)),
            Store::Redis(r) => r.claim(name, ttl).await,
        }
    }

    /// What a periodic job kept from its last run.
    pub async fn job_state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.job_state(name)),
            Store::Redis(r) => r.job_state(name).await,
        }
    }

    pub async fn set_job_state(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.set_job_state(name, value);
                Ok(())
            }
            Store::Redis(r) => r.set_job_state(name, value).await,
        }
    }

    /// Adds a new follow-up, due at `due`, unless the person or the workspace already has as
    /// many pending as `limits` allow. `delay` is the time between its re-checks.
    pub async fn schedule_follow_up(
        &self,
        follow_up: &FollowUp,
        due: DateTime<Utc>,
        limits: FollowUpLimits,
        delay: Duration,
    ) -> Result<Scheduled, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.follow_ups.schedule(follow_up, due, limits)),
            Store::Redis(r) => {
                let ttl = followups::record_ttl(delay);
                r.schedule_follow_up(follow_up, due, limits, ttl).await
            }
        }
    }

    /// Takes up to `max` follow-ups due by `now`: each is taken by one caller only, whichever
    /// replica, and is not due again until rescheduled.
    pub async fn claim_due_follow_ups(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<FollowUp>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.follow_ups.claim_due(now, max)),
            Store::Redis(r) => r.claim_due_follow_ups(now, max).await,
        }
    }

    /// Due again at `due` with its new record; `false` when it was stopped meanwhile.
    pub async fn reschedule_follow_up(
        &self,
        follow_up: &FollowUp,
        due: DateTime<Utc>,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.follow_ups.reschedule(follow_up, due)),
            Store::Redis(r) => {
                let ttl = followups::record_ttl(delay);
                r.reschedule_follow_up(follow_up, due, ttl).await
            }
        }
    }

    /// A pending (or running) follow-up, by id.
    pub async fn follow_up(&self, id: &str) -> Result<Option<FollowUp>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.follow_ups.get(id)),
            Store::Redis(r) => r.follow_up(id).await,
        }
    }

    /// Removes a follow-up (done or stopped); `false` when it was already gone.
    pub async fn finish_follow_up(&self, follow_up: &FollowUp) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.follow_ups.finish(&follow_up.id)),
            Store::Redis(r) => r.finish_follow_up(follow_up).await,
        }
    }

    /// Only one replica refreshes at a time: `None` when another holds the lock.
    pub async fn try_lock(&self, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.try_lock(ttl)),
            Store::Redis(r) => r.try_lock(ttl).await,
        }
    }

    /// Extends a held lock; `false` when it was lost (expired and taken by another).
    pub async fn renew_lock(&self, token: &LockToken, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.renew_lock(token, ttl)),
            Store::Redis(r) => r.renew_lock(token, ttl).await,
        }
    }

    pub async fn release_lock(&self, token: &LockToken) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.release_lock(token);
                Ok(())
            }
            Store::Redis(r) => r.release_lock(token).await,
        }
    }
}

/// The in-process store holds one generation, always under this id.
const MEMORY_GENERATION: &str = "memory";

fn memory_generation() -> GenerationRef {
    GenerationRef {
        id: MEMORY_GENERATION.to_owned(),
        epoch: String::new(),
    }
}

/// A random hex token (lock owners, generation ids): unique enough, no extra crate.
pub(crate) fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", hasher.finish())
}
