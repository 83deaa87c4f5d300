//! The Redis store, shared by every replica. Key schema in `keys.rs`; what is kept per user
//! in `records.rs`; a check's reads in `query.rs` (a fixed number of round trips), an audit's
//! in `audit.rs`, a refresh's writes in `publish.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{AsyncCommands, FromRedisValue, Value};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod asked_before;
mod audit;
mod connection;
mod followups;
mod in_place;
mod patch;
mod permissions;
mod publish;
mod query;
mod read_cache;

pub use audit::{AuditBatch, AuditReader, AuditSubject};
use connection::Conn;
pub use connection::RedisSettings;
pub(crate) use connection::explain;
pub use patch::{MAX_PATCH_OPS, PatchOp, PatchOutcome, generation_patch};

use super::keys::{FORMAT, FORMAT_TTL, Keys};
use super::records::GenerationMeta;
use super::{GenerationRef, LockToken, SourceStatus, StatusReport, StoreError, random_token};
use crate::suggest::Directory;

#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Default for RedisTimeouts {
    /// Short: a person waiting in Slack must hear "data unavailable" within 3 seconds.
    fn default() -> Self {
        RedisTimeouts {
            connect: Duration::from_millis(800),
            response: Duration::from_millis(800),
        }
    }
}

#[derive(Default)]
struct GenerationCache {
    /// (generation, its revision, its metadata): read again when either moves.
    meta: Option<(String, String, Arc<GenerationMeta>)>,
}

/// What "did you mean" searches, built once even when several misses arrive together (they
/// wait for the first build, hence an async lock).
type Suggestions = Arc<tokio::sync::Mutex<Option<KeptSuggestions>>>;

/// The "did you mean" index this replica built.
struct KeptSuggestions {
    /// `generation#rev` it was last confirmed for.
    confirmed: String,
    /// The digest of the bytes it was built from (`suggestions-digest`); `None` for a
    /// generation written without one, which is then never kept across a patch.
    digest: Option<String>,
    directory: Arc<Directory>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    cache: Arc<Mutex<GenerationCache>>,
    /// Where usernames asked about resolved, in the generation read last (`query.rs`).
    hints: Arc<Mutex<query::LoginHints>>,
    /// The small orgs recent checks read, for their generation and revision (`read_cache.rs`).
    reads: Arc<Mutex<read_cache::ReadCache>>,
    suggestions: Suggestions,
    /// Publishing uses longer timeouts than requests: it moves a whole org.
    publish_response_timeout: Duration,
    /// The TTL of every key of this format's namespace, in milliseconds (`FORMAT_TTL`).
    ttl_ms: u64,
    /// How `conn` was opened: [`RedisStore::with_own_connection`] opens another the same way.
    settings: Arc<RedisSettings>,
    timeouts: RedisTimeouts,
    /// The Redis user was refused `RENAME` (an ACL from before patches staged their large
    /// values): patches then send them through their script (`patch.rs`).
    rename_refused: Arc<std::sync::atomic::AtomicBool>,
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Domain types serialise to JSON without fail: string keys, no non-finite floats.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `SET … PX`: every key of a format's namespace expires unless renewed (`keys::FORMAT_TTL`).
fn expiring(ttl_ms: u64) -> redis::SetOptions {
    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms))
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    Option::<Vec<u8>>::from_redis_value(value.clone())
        .ok()
        .flatten()
}

impl RedisStore {
    /// One plain server at `url` (no CA file, no Cluster): what tests and benchmarks use.
    pub fn connect(url: &str, prefix: &str, timeouts: RedisTimeouts) -> Result<Self, StoreError> {
        Self::open(&RedisSettings::url(url), prefix, timeouts)
    }

    /// Connects lazily: the bot starts (and says "data unavailable") while Redis is down,
    /// and reconnects by itself when it is back. `Err` names a setting to change.
    pub fn open(
        settings: &RedisSettings,
        prefix: &str,
        timeouts: RedisTimeouts,
    ) -> Result<Self, StoreError> {
        Self::open_with_format(settings, prefix, timeouts, FORMAT)
    }

    /// `open` for the cache format `format` instead of this version's own (`FORMAT`): what a
    /// test of a rolling upgrade uses to run two versions side by side.
    pub fn open_with_format(
        settings: &RedisSettings,
        prefix: &str,
        timeouts: RedisTimeouts,
        format: u32,
    ) -> Result<Self, StoreError> {
        let keys = Keys::new(prefix, format).map_err(StoreError::Unavailable)?;
        Ok(RedisStore {
            conn: Conn::open(settings, timeouts)?,
            keys,
            cache: Arc::default(),
            hints: Arc::default(),
            reads: Arc::default(),
            suggestions: Suggestions::default(),
            publish_response_timeout: Duration::from_secs(30),
            ttl_ms: FORMAT_TTL.as_millis() as u64,
            settings: Arc::new(settings.clone()),
            timeouts,
            rename_refused: Arc::default(),
        })
    }

    /// The same store over a connection of its own: what the refresher uses, so that the
    /// megabytes of a publish or a patch never queue in front of a check's reads on the
    /// connection the checks share.
    pub fn with_own_connection(&self) -> Result<Self, StoreError> {
        Ok(RedisStore {
            conn: Conn::open(&self.settings, self.timeouts)?,
            keys: self.keys.clone(),
            cache: Arc::default(),
            hints: Arc::default(),
            reads: Arc::default(),
            suggestions: Suggestions::default(),
            publish_response_timeout: self.publish_response_timeout,
            ttl_ms: self.ttl_ms,
            settings: self.settings.clone(),
            timeouts: self.timeouts,
            rename_refused: self.rename_refused.clone(),
        })
    }

    /// Whether the Redis user was refused `RENAME`, so that patches send their large values
    /// through their script (see `patch.rs`).
    pub fn rename_refused(&self) -> bool {
        self.rename_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A section of `INFO` (e.g. `server` for `redis_version`), from the server holding the
    /// keys of this installation (in a Cluster, the node of `current`).
    pub async fn info(&self, section: &str) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        Ok(conn.on_node_of(&self.keys.current(), cmd).await?)
    }

    /// A server setting (e.g. `maxmemory-policy`), from the same server as `info`; `None` when
    /// the server does not say (managed offerings may refuse `CONFIG`).
    pub async fn config_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let pairs: Vec<String> = conn.on_node_of(&self.keys.current(), cmd).await?;
        Ok(pairs.into_iter().nth(1))
    }

    /// The generation readers use, with its epoch (empty when it has none).
    pub async fn current_generation_ref(&self) -> Result<Option<GenerationRef>, StoreError> {
        let mut conn = self.conn.clone();
        let Some(id): Option<String> = conn.get(self.keys.current()).await? else {
            return Ok(None);
        };
        let epoch: Option<String> = conn.get(self.keys.generation(&id).epoch()).await?;
        Ok(Some(GenerationRef {
            id,
            epoch: epoch.unwrap_or_default(),
        }))
    }

    async fn current_generation(&self, conn: &mut Conn) -> Result<String, StoreError> {
        let current: Option<String> = conn.get(self.keys.current()).await?;
        current.ok_or(StoreError::NoSnapshot)
    }

    async fn meta(
        &self,
        conn: &mut Conn,
        generation: &str,
    ) -> Result<Arc<GenerationMeta>, StoreError> {
        Ok(self.meta_with_rev(conn, generation).await?.1)
    }

    /// The metadata of `generation` and its revision (`keys::GenerationKeys::rev`): from
    /// memory when this replica read it last, else from Redis. A check's read script says
    /// when a patch moved the revision on.
    async fn meta_with_rev(
        &self,
        conn: &mut Conn,
        generation: &str,
    ) -> Result<(String, Arc<GenerationMeta>), StoreError> {
        if let Some((g, rev, meta)) = &self.cache.lock().unwrap_or_else(|e| e.into_inner()).meta {
            if g == generation {
                return Ok((rev.clone(), meta.clone()));
            }
        }
        let gk = self.keys.generation(generation);
        // The revision first: should a patch land between the two reads, the metadata is
        // newer than its revision says, and the next check's script sends it again.
        let (rev, raw): (Option<String>, Option<Vec<u8>>) = redis::pipe()
            .get(gk.rev())
            .get(gk.meta())
            .query_async(conn)
            .await?;
        let raw = raw.ok_or_else(|| corrupt("generation metadata", "missing"))?;
        let meta: Arc<GenerationMeta> = Arc::new(from_json("generation metadata", &raw)?);
        let rev = rev.unwrap_or_else(|| "0".to_owned());
        self.cache_meta(generation, &rev, meta.clone());
        Ok((rev, meta))
    }

    fn cache_meta(&self, generation: &str, rev: &str, meta: Arc<GenerationMeta>) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).meta =
            Some((generation.to_owned(), rev.to_owned(), meta));
    }

    pub async fn record_status(
        &self,
        source: &str,
        status: &SourceStatus,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .hset(self.keys.status(), source, to_json(status))
            .ignore()
            .pexpire(self.keys.status(), self.ttl_ms as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn status(&self) -> Result<StatusReport, StoreError> {
        let mut conn = self.conn.clone();
        let raw: FxHashMap<String, Vec<u8>> = conn.hgetall(self.keys.status()).await?;
        let mut report = StatusReport {
            sources: raw
                .into_iter()
                .filter_map(|(k, v)| serde_json::from_slice(&v).ok().map(|s| (k, s)))
                .collect(),
            ..StatusReport::default()
        };
        match self.current_generation(&mut conn).await {
            Ok(generation) => {
                let meta = self.meta(&mut conn, &generation).await?;
                report.data_as_of = Some(meta.fetched_at);
                report.generation = Some(generation);
                report.sf_users = meta.sf_user_count;
                report.ae_users = meta
                    .business_units
                    .iter()
                    .zip(&meta.ae_user_counts)
                    .map(|(b, n)| (b.id.to_string(), *n))
                    .collect();
            }
            Err(StoreError::NoSnapshot) => {}
            Err(err) => return Err(err),
        }
        Ok(report)
    }

    /// Renews the TTL of this format's namespace (`FORMAT_TTL`), so that it outlives failing
    /// refreshes while some replica of this format runs. The keys of the current generation
    /// are renewed only once half their TTL has passed: that renews every key of the
    /// generation, once every few days, not every refresh.
    pub async fn renew_expiry(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ttl = self.ttl_ms as i64;
        // One key per command: in a Cluster they live on different slots.
        for key in [self.keys.generations(), self.keys.status()] {
            let _: bool = conn.pexpire(key, ttl).await?;
        }
        let Some(generation): Option<String> = conn.get(self.keys.current()).await? else {
            return Ok(());
        };
        let _: bool = conn.pexpire(self.keys.current(), ttl).await?;
        let gk = self.keys.generation(&generation);
        let left: i64 = conn.pttl(gk.meta()).await?;
        // -2: gone (a publish replaced it meanwhile); -1: no TTL, which this format never
        // writes but a hand-made key could have.
        if left == -2 || left > ttl / 2 {
            return Ok(());
        }
        // Every key the generation can hold, by name (a missing one is skipped by Redis).
        for keys in gk.all_keys().chunks(500) {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.pexpire(key, ttl).ignore();
            }
            let _: () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    pub async fn first_delivery(&self, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.event(event_id))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(3600)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn try_lock(&self, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let mut conn = self.conn.clone();
        let token = LockToken(random_token());
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.refresh_lock())
            .arg(&token.0)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.map(|_| token))
    }

    pub async fn renew_lock(&self, token: &LockToken, ttl: Duration) -> Result<bool, StoreError> {
        let script = redis::Script::new(
            "if redis.call('get', KEYS[1]) == ARGV[1] then \
               return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
        );
        let mut conn = self.conn.clone();
        let renewed: i64 = script
            .key(self.keys.refresh_lock())
            .arg(&token.0)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.claim(name))
            .arg(random_token())
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn job_state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.keys.state(name)).await?)
    }

    pub async fn set_job_state(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(self.keys.state(name), value).await?;
        Ok(())
    }

    pub async fn release_lock(&self, token: &LockToken) -> Result<(), StoreError> {
        let script = redis::Script::new(
            "if redis.call('get', KEYS[1]) == ARGV[1] then \
               return redis.call('del', KEYS[1]) else return 0 end",
        );
        let mut conn = self.conn.clone();
        let _: i64 = script
            .key(self.keys.refresh_lock())
            .arg(&token.0)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Adds the read of one record (`HGET` of its field) to `pipe`.
fn hget(pipe: &mut redis::Pipeline, record: crate::store::keys::Entry) {
    pipe.hget(record.key, record.field);
}

/// Deletes every key matching `pattern` (SCAN, not KEYS: the server may hold much else) and
/// says how many there were.
pub async fn unlink_matching<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    pattern: &str,
) -> redis::RedisResult<usize> {
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        if !found.is_empty() {
            deleted += found.len();
            let _: () = redis::cmd("UNLINK").arg(&found).query_async(conn).await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
