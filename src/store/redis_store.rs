//! The Redis store, shared by every replica. Key schema in `keys.rs`; what is kept per user
//! in `records.rs`. A diagnosis reads a fixed number of round trips: one script reads the
//! query's keys in the generation read last (and says when a newer one replaced it); a
//! username's user and context, and the users of a name or an email, take one more.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use redis::{AsyncCommands, FromRedisValue, Value};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod audit;
mod connection;

pub use audit::{AuditBatch, AuditReader, AuditSubject};
use connection::Conn;
pub use connection::RedisSettings;
pub(crate) use connection::explain;

use super::keys::{FORMAT, FORMAT_TTL, GenerationKeys, Keys};
use super::records::{ContextBuilder, GenerationMeta, GroupGraph, UserContext, assemble};
use super::{LockToken, SourceStatus, StatusReport, StoreError, random_token};
use crate::domain::snapshot::lower;
use crate::domain::{
    AeUser, NameMatch, Org, OrgSnapshot, Query, SfId, SfUser, Subject, TargetRef, name_key,
    name_match,
};
use crate::suggest::{Directory, MAX_CANDIDATES};

/// Commands per pipeline when publishing: large enough to amortise round trips, small enough
/// to keep memory flat and to let checks through between pipelines (Redis runs one command at
/// a time: with 2,000, check p99 during a 100k refresh was 19–20 ms; with 500, 14 ms).
const PIPELINE_COMMANDS: usize = 500;
/// Name search reads at most this many users per query word.
pub const MAX_NAME_MATCHES: usize = 1_000;
/// Users sharing one email (an ambiguous query) read at most.
const MAX_EMAIL_MATCHES: usize = 1_000;

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
    meta: Option<(String, Arc<GenerationMeta>)>,
}

/// What "did you mean" searches: one per generation, built once even when several misses
/// arrive together (they wait for the first build, hence an async lock).
type Suggestions = Arc<tokio::sync::Mutex<Option<(String, Arc<Directory>)>>>;

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    cache: Arc<Mutex<GenerationCache>>,
    suggestions: Suggestions,
    /// Publishing uses longer timeouts than requests: it moves a whole org.
    publish_response_timeout: Duration,
    /// The TTL of every key of this format's namespace, in milliseconds (`FORMAT_TTL`).
    ttl_ms: u64,
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

/// Reads a large value (megabytes) in pieces into one buffer of its size: a single `GET`
/// would pass it through the client's growing read buffer and a copy, at several times its
/// size in memory. The value must not change meanwhile (those of a generation do not).
async fn read_in_pieces(conn: &mut Conn, key: &str) -> Result<Vec<u8>, StoreError> {
    const PIECE: usize = 1 << 20;
    let len: usize = conn.strlen(key).await?;
    let mut value = Vec::with_capacity(len);
    while value.len() < len {
        let start = value.len();
        let end = (start + PIECE).min(len) - 1;
        let piece: Vec<u8> = conn.getrange(key, start as isize, end as isize).await?;
        if piece.is_empty() {
            return Err(corrupt("suggestions", "deleted while being read"));
        }
        value.extend_from_slice(&piece);
    }
    Ok(value)
}

fn target_key(gk: &GenerationKeys, target: &TargetRef, business_unit: usize) -> String {
    match target {
        TargetRef::AeId(id) => gk.ae_user(business_unit, *id),
        TargetRef::Email(email) => gk.ae_email(business_unit, email),
    }
}

/// Reads keys of one generation, all named by the caller in KEYS (a Redis Cluster refuses
/// keys a script makes up, and all of them share the generation's hash slot). KEYS: the
/// generation's `meta`, `successor` and name index, then the keys to `GET`. ARGV: the name
/// matches limit, then the words of a name query; the entries of the word with the fewest
/// (as counted by `ZLEXCOUNT`) come first in the reply. Atomic, so every value comes from one
/// generation. Returns {'gone'} when the generation was deleted, {'moved', id} when another
/// replaced it, else {'ok', [entries,] value of each key...}.
const READ_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local successor = redis.call('GET', KEYS[2])
if successor then return {'moved', successor} end
local out = {'ok'}
if #ARGV > 1 then
  local driver, fewest
  for i = 2, #ARGV do
    local count = redis.call('ZLEXCOUNT', KEYS[3], '[' .. ARGV[i], '[' .. ARGV[i] .. '\255')
    if not fewest or count < fewest then driver, fewest = ARGV[i], count end
  end
  out[#out + 1] = redis.call('ZRANGEBYLEX', KEYS[3], '[' .. driver,
    '[' .. driver .. '\255', 'LIMIT', 0, ARGV[1])
end
for i = 4, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
return out
"#;

static READS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(READ_SCRIPT));

/// The reads of one diagnosis that do not depend on each other: one round trip (`EVALSHA`).
#[derive(Default)]
struct QueryReads {
    keys: Vec<String>,
    words: Vec<String>,
}

/// What the read script found.
enum Read {
    Values(Vec<Value>),
    /// The generation was replaced by this one.
    Moved(String),
    /// The generation is gone: look up `current` again.
    Gone,
}

impl QueryReads {
    fn get(&mut self, key: String) -> &mut Self {
        self.keys.push(key);
        self
    }

    fn names_starting_with(&mut self, word: &str) {
        self.words.push(word.to_owned());
    }

    fn targets(&mut self, gk: &GenerationKeys, target: &TargetRef, business_units: usize) {
        for b in 0..business_units {
            self.get(target_key(gk, target, b));
        }
    }

    async fn run(&self, gk: &GenerationKeys, conn: &mut Conn) -> Result<Read, StoreError> {
        let mut invocation = READS.key(gk.meta());
        invocation
            .key(gk.successor())
            .key(gk.names())
            .arg(MAX_NAME_MATCHES);
        for key in &self.keys {
            invocation.key(key.as_str());
        }
        for word in &self.words {
            invocation.arg(word.as_str());
        }
        let value: Value = invocation.invoke_async(conn).await?;
        let Value::Array(mut items) = value else {
            return Err(corrupt("reads", format!("unexpected reply {value:?}")));
        };
        if items.is_empty() {
            return Err(corrupt("reads", "empty reply"));
        }
        let status = String::from_redis_value(items.remove(0)).map_err(|e| corrupt("reads", e))?;
        match status.as_str() {
            "ok" => Ok(Read::Values(items)),
            "gone" => Ok(Read::Gone),
            "moved" if items.len() == 1 => Ok(Read::Moved(
                String::from_redis_value(items.remove(0))
                    .map_err(|e| corrupt("successor generation", e))?,
            )),
            other => Err(corrupt("reads", format!("unexpected status {other:?}"))),
        }
    }
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
            suggestions: Suggestions::default(),
            publish_response_timeout: Duration::from_secs(30),
            ttl_ms: FORMAT_TTL.as_millis() as u64,
        })
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

    async fn current_generation(&self, conn: &mut Conn) -> Result<String, StoreError> {
        let current: Option<String> = conn.get(self.keys.current()).await?;
        current.ok_or(StoreError::NoSnapshot)
    }

    async fn meta(
        &self,
        conn: &mut Conn,
        generation: &str,
    ) -> Result<Arc<GenerationMeta>, StoreError> {
        if let Some((g, meta)) = &self.cache.lock().unwrap_or_else(|e| e.into_inner()).meta {
            if g == generation {
                return Ok(meta.clone());
            }
        }
        let raw: Option<Vec<u8>> = conn.get(self.keys.generation(generation).meta()).await?;
        let raw = raw.ok_or_else(|| corrupt("generation metadata", "missing"))?;
        let meta: Arc<GenerationMeta> = Arc::new(from_json("generation metadata", &raw)?);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).meta =
            Some((generation.to_owned(), meta.clone()));
        Ok(meta)
    }

    /// "Did you mean" needs every username and name: read once per generation, only when a
    /// query matched nothing, and kept in memory (sorted, about 130 bytes a user) for the next
    /// miss.
    async fn suggestions(
        &self,
        conn: &mut Conn,
        generation: &str,
    ) -> Result<Arc<Directory>, StoreError> {
        let mut cached = self.suggestions.lock().await;
        if let Some((g, directory)) = cached.as_ref() {
            if g == generation {
                return Ok(directory.clone());
            }
        }
        // The previous generation's index goes first, so that two never sit in memory.
        *cached = None;
        let raw = read_in_pieces(conn, &self.keys.generation(generation).suggestions()).await?;
        let directory = tokio::task::spawn_blocking(move || {
            Directory::from_bytes(&raw).map_err(|e| corrupt("suggestions", e))
        })
        .await
        .map_err(|e| corrupt("suggestions", e))??;
        let directory = Arc::new(directory);
        *cached = Some((generation.to_owned(), directory.clone()));
        Ok(directory)
    }

    /// Close usernames (or names) for a query that matched nothing. The search looks only at
    /// the users that can be close: tens of microseconds at 100,000 users, under a millisecond
    /// in the worst cases measured (BENCHMARKS.md), so it runs here rather than on a blocking
    /// thread, whose two hand-offs cost about as much on a busy machine.
    async fn close_matches(
        &self,
        conn: &mut Conn,
        generation: &str,
        text: &str,
        by_name: bool,
    ) -> Result<Vec<SfUser>, StoreError> {
        let suggestions = self.suggestions(conn, generation).await?;
        Ok(if by_name {
            suggestions.closest_names(text, MAX_CANDIDATES)
        } else {
            suggestions.closest_usernames(text, MAX_CANDIDATES)
        })
    }

    /// The generation read last and its metadata: the one a check reads first (the read
    /// script says when another replaced it).
    fn cached_meta(&self) -> Option<(String, Arc<GenerationMeta>)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .clone()
    }

    /// The small org a query needs: the users it names (or the candidates for it), the
    /// context of the one user it finds, and the AE users its target names. Diagnosing it
    /// gives the same answer as diagnosing the whole org.
    pub async fn query_org(&self, query: &Query) -> Result<Org, StoreError> {
        let mut conn = self.conn.clone();
        let (mut generation, mut meta) = match self.cached_meta() {
            Some(cached) => cached,
            None => {
                let generation = self.current_generation(&mut conn).await?;
                let meta = self.meta(&mut conn, &generation).await?;
                (generation, meta)
            }
        };

        // One round trip while the generation known here is current: the query's own keys
        // in it and the target in every business unit. A username's user and context follow
        // in a second one (the script reads only keys named before it runs).
        let mut attempts = 0;
        let values = loop {
            let gk = self.keys.generation(&generation);
            let mut reads = QueryReads::default();
            match &query.subject {
                Subject::Id(id) => {
                    reads.get(gk.user(*id)).get(gk.context(*id));
                }
                Subject::Login(login) => {
                    reads.get(gk.login(login)).get(gk.email(login));
                }
                Subject::Name(name) => {
                    for word in name.split(' ').filter(|w| !w.is_empty()) {
                        reads.names_starting_with(word);
                    }
                }
            }
            if let Some(target) = &query.target {
                reads.targets(&gk, target, meta.business_units.len());
            }
            match reads.run(&gk, &mut conn).await? {
                Read::Values(values) => break values,
                Read::Moved(next) => generation = next,
                Read::Gone => generation = self.current_generation(&mut conn).await?,
            }
            attempts += 1;
            if attempts > 3 {
                return Err(StoreError::Unavailable(
                    "the cached data was replaced during every read; try again".into(),
                ));
            }
            meta = self.meta(&mut conn, &generation).await?;
        };
        let gk = self.keys.generation(&generation);
        let business_units = meta.business_units.len();
        let (subject_values, target_values) =
            values.split_at(values.len() - query.target.as_ref().map_or(0, |_| business_units));

        let mut targets: Vec<(u32, AeUser)> = Vec::new();
        for (b, value) in target_values.iter().enumerate() {
            let Some(raw) = bytes(value) else { continue };
            match query.target {
                Some(TargetRef::AeId(_)) => targets.push((b as u32, from_json("AE user", &raw)?)),
                _ => {
                    let users: Vec<AeUser> = from_json("AE users by email", &raw)?;
                    targets.extend(users.into_iter().map(|u| (b as u32, u)));
                }
            }
        }

        let (users, context) = match &query.subject {
            Subject::Id(_) => {
                let user: Option<SfUser> = bytes(&subject_values[0])
                    .map(|r| from_json("user", &r))
                    .transpose()?;
                let context: Option<UserContext> = bytes(&subject_values[1])
                    .map(|r| from_json("user context", &r))
                    .transpose()?;
                (user.into_iter().collect(), context)
            }
            Subject::Login(login) => {
                let by_login: Option<String> =
                    Option::<String>::from_redis_value(subject_values[0].clone())
                        .ok()
                        .flatten();
                let by_email: Vec<String> = match bytes(&subject_values[1]) {
                    Some(raw) => from_json("users by email", &raw)?,
                    None => Vec::new(),
                };
                let ids: Vec<String> = match by_login {
                    Some(id) => vec![id],
                    None => by_email.into_iter().take(MAX_EMAIL_MATCHES).collect(),
                };
                if ids.is_empty() {
                    let close = self
                        .close_matches(&mut conn, &generation, login, false)
                        .await?;
                    (close, None)
                } else {
                    self.users_with_context(&mut conn, &gk, &ids).await?
                }
            }
            Subject::Name(name) => {
                // The entries (`word \0 id \0 name`) of the word with the fewest, from the
                // script.
                let members: Vec<Vec<u8>> = match subject_values.first() {
                    Some(value) => Vec::<Vec<u8>>::from_redis_value(value.clone())
                        .map_err(|e| corrupt("name index", e))?,
                    None => Vec::new(),
                };
                let mut entries: Vec<(String, String)> = members
                    .iter()
                    .filter_map(|m| {
                        let mut parts = m.splitn(3, |&b| b == 0).skip(1);
                        let id = String::from_utf8_lossy(parts.next()?).into_owned();
                        let name = String::from_utf8_lossy(parts.next()?).into_owned();
                        Some((id, name))
                    })
                    .collect();
                entries.sort();
                entries.dedup();
                let mut ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
                ids.dedup();
                if !entries.is_empty() {
                    // Which users match, by their names alone, exactly as the whole org says.
                    let words: Vec<&str> = name.split(' ').filter(|w| !w.is_empty()).collect();
                    let (mut exact, mut partial) = (Vec::new(), Vec::new());
                    for (id, user_name) in &entries {
                        let key = name_key(user_name);
                        match name_match(name, &words, &key) {
                            Some(NameMatch::Exact) => exact.push(id.clone()),
                            Some(NameMatch::Words) => partial.push(id.clone()),
                            None => {}
                        }
                    }
                    ids = if exact.is_empty() { partial } else { exact };
                    ids.dedup();
                    if let [_] = ids.as_slice() {
                        let (users, context) =
                            self.users_with_context(&mut conn, &gk, &ids).await?;
                        let users = self.with_same_email(&mut conn, &gk, users).await?;
                        return Ok(Org::new(assemble(&meta, users, context, targets)));
                    }
                }
                let fetched = self.users(&mut conn, &gk, &ids).await?;
                // Which of them match, exactly as the whole org would say.
                let probe = Org::new(assemble(&meta, fetched.clone(), None, Vec::new()));
                let found = probe.search_name(name, MAX_CANDIDATES);
                if found.total == 1 {
                    let id = found.users[0].id.as_str15().to_owned();
                    drop(probe);
                    self.users_with_context(&mut conn, &gk, &[id]).await?
                } else if found.total == 0 {
                    drop(probe);
                    let close = self
                        .close_matches(&mut conn, &generation, name, true)
                        .await?;
                    (close, None)
                } else {
                    (fetched, None)
                }
            }
        };
        let users = self.with_same_email(&mut conn, &gk, users).await?;
        Ok(Org::new(assemble(&meta, users, context, targets)))
    }

    /// For one external user (AE cannot map it), the users whose username or email is its
    /// email too, so that the diagnosis can point at the person's internal user.
    async fn with_same_email(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        mut users: Vec<SfUser>,
    ) -> Result<Vec<SfUser>, StoreError> {
        let [user] = users.as_slice() else {
            return Ok(users);
        };
        let email = lower(user.email.trim()).into_owned();
        if user.is_internal() || email.is_empty() {
            return Ok(users);
        }
        let own = user.id;
        let (by_login, by_email): (Option<String>, Option<Vec<u8>>) = redis::pipe()
            .get(gk.login(&email))
            .get(gk.email(&email))
            .query_async(conn)
            .await?;
        let mut ids: Vec<String> = match by_email {
            Some(raw) => from_json("users by email", &raw)?,
            None => Vec::new(),
        };
        ids.extend(by_login);
        ids.sort();
        ids.dedup();
        ids.truncate(MAX_EMAIL_MATCHES + 1);
        let others = self.users(conn, gk, &ids).await?;
        users.extend(others.into_iter().filter(|u| u.id != own));
        Ok(users)
    }

    async fn users(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        ids: &[String],
    ) -> Result<Vec<SfUser>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let id = SfId::parse(id).map_err(|e| corrupt("user id", e))?;
            pipe.get(gk.user(id));
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        values
            .iter()
            .filter_map(bytes)
            .map(|raw| from_json("user", &raw))
            .collect()
    }

    /// The users, and the context of the one user when there is exactly one.
    async fn users_with_context(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        ids: &[String],
    ) -> Result<(Vec<SfUser>, Option<UserContext>), StoreError> {
        if let [only] = ids {
            let id = SfId::parse(only).map_err(|e| corrupt("user id", e))?;
            let (user, context): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
                .get(gk.user(id))
                .get(gk.context(id))
                .query_async(conn)
                .await?;
            let user: Option<SfUser> = user.map(|r| from_json("user", &r)).transpose()?;
            let context = context.map(|r| from_json("user context", &r)).transpose()?;
            return Ok((user.into_iter().collect(), context));
        }
        Ok((self.users(conn, gk, ids).await?, None))
    }

    /// Writes a complete new generation, then switches readers to it, then deletes
    /// generations older than the one it replaced.
    pub async fn publish(&self, snapshot: OrgSnapshot) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let previous: Option<String> = conn.get(self.keys.current()).await?;
        let generation = format!("{}-{}", Utc::now().timestamp_millis(), random_token());
        let _: () = conn
            .zadd(
                self.keys.generations(),
                &generation,
                Utc::now().timestamp_millis(),
            )
            .await?;
        let _: bool = conn
            .pexpire(self.keys.generations(), self.ttl_ms as i64)
            .await?;
        let gk = self.keys.generation(&generation);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<redis::Pipeline>(4);
        let ttl_ms = self.ttl_ms;
        let writer =
            tokio::task::spawn_blocking(move || generation_commands(snapshot, &gk, ttl_ms, &tx));
        let timeout = self.publish_response_timeout;
        while let Some(pipe) = rx.recv().await {
            tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("Redis did not answer while publishing".into())
                })??;
        }
        writer
            .await
            .map_err(|e| corrupt("building the generation", e))??;
        let _: () = conn
            .set_options(self.keys.current(), &generation, expiring(self.ttl_ms))
            .await?;
        let _: bool = conn.pexpire(self.keys.status(), self.ttl_ms as i64).await?;
        if let Some(previous) = &previous {
            // Replicas still reading the previous generation learn of this one from it.
            let _: () = conn
                .set_options(
                    self.keys.generation(previous).successor(),
                    &generation,
                    expiring(self.ttl_ms),
                )
                .await?;
        }
        let keep: Vec<&str> = std::iter::once(generation.as_str())
            .chain(previous.as_deref())
            .collect();
        self.delete_generations_except(&mut conn, &keep).await
    }

    async fn delete_generations_except(
        &self,
        conn: &mut Conn,
        keep: &[&str],
    ) -> Result<(), StoreError> {
        let all: Vec<String> = conn.zrange(self.keys.generations(), 0, -1).await?;
        for generation in all.iter().filter(|g| !keep.contains(&g.as_str())) {
            let gk = self.keys.generation(generation);
            // The metadata first: from then on, a check still holding this generation reads
            // `current` again instead of keys being deleted.
            let _: () = conn.unlink(gk.meta()).await?;
            unlink_slot_matching(conn, &gk.meta(), &gk.pattern()).await?;
            let _: () = conn.zrem(self.keys.generations(), generation).await?;
        }
        Ok(())
    }

    /// Rewrites the keys one user's diagnosis reads, in the current generation, from fresh
    /// data: the user, the groups holding it directly, and every business unit's AE users.
    pub async fn update_user(
        &self,
        user: SfUser,
        direct_groups: Vec<SfId>,
        ae_users: Vec<(SfId, Vec<AeUser>)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let generation = self.current_generation(&mut conn).await?;
        let meta = self.meta(&mut conn, &generation).await?;
        let gk = self.keys.generation(&generation);
        let email = lower(user.email.trim()).into_owned();
        let (graph, email_ids): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .get(gk.group_graph())
            .get(gk.email(&email))
            .query_async(&mut conn)
            .await?;
        let graph: GroupGraph =
            from_json("group graph", &graph.unwrap_or_else(|| b"null".to_vec()))?;
        let mut snapshot = assemble(&meta, vec![user.clone()], None, Vec::new());
        snapshot.salesforce.groups = graph.groups;
        snapshot.salesforce.roles = graph.roles;
        snapshot.salesforce.group_members = graph.group_edges;
        snapshot
            .salesforce
            .group_members
            .extend(
                direct_groups
                    .into_iter()
                    .map(|group_id| crate::domain::GroupMember {
                        group_id,
                        member_id: user.id,
                    }),
            );
        for (id, fresh) in ae_users {
            if let Some(bu) = snapshot.business_units.iter_mut().find(|b| b.id == id) {
                bu.users = fresh;
            }
        }
        let org = Org::new(snapshot);
        let context = ContextBuilder::new(&org).context(&user);
        let id = user.id.as_str15();
        let ttl = self.ttl_ms;
        let mut pipe = redis::pipe();
        pipe.set_options(gk.user(user.id), to_json(&user), expiring(ttl))
            .ignore();
        pipe.set_options(gk.login(&lower(&user.username)), id, expiring(ttl))
            .ignore();
        if !email.is_empty() {
            let mut ids: Vec<String> = match email_ids {
                Some(raw) => from_json("users by email", &raw)?,
                None => Vec::new(),
            };
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
            pipe.set_options(gk.email(&email), to_json(&ids), expiring(ttl))
                .ignore();
        }
        for (b, ae) in &context.ae_users {
            let b = *b as usize;
            pipe.set_options(gk.ae_user(b, ae.id), to_json(ae), expiring(ttl))
                .ignore();
            let ae_email = lower(ae.email.trim()).into_owned();
            if !ae_email.is_empty() {
                let same: Vec<&AeUser> = org.ae_users_with_email(b, &ae_email).collect();
                pipe.set_options(gk.ae_email(b, &ae_email), to_json(&same), expiring(ttl))
                    .ignore();
            }
        }
        pipe.set_options(gk.context(user.id), to_json(&context), expiring(ttl))
            .ignore();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
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
    /// are renewed only once half their TTL has passed: that walks every key of the
    /// generation (a few seconds at 100,000 users), once every few days, not every refresh.
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
        expire_slot_matching(&mut conn, &gk.meta(), &gk.pattern(), ttl).await
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

/// `unlink_matching` for keys that share the hash slot of `key` (one generation): in a
/// Cluster, the SCAN runs on the node holding that slot.
async fn unlink_slot_matching(conn: &mut Conn, key: &str, pattern: &str) -> Result<(), StoreError> {
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000);
        let (next, found): (u64, Vec<String>) = conn.on_node_of(key, scan).await?;
        if !found.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&found).query_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Sets the TTL of every key matching `pattern` that shares the hash slot of `key` (one
/// generation), as `unlink_slot_matching` deletes them.
async fn expire_slot_matching(
    conn: &mut Conn,
    key: &str,
    pattern: &str,
    ttl_ms: i64,
) -> Result<(), StoreError> {
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000);
        let (next, found): (u64, Vec<String>) = conn.on_node_of(key, scan).await?;
        if !found.is_empty() {
            let mut pipe = redis::pipe();
            for key in &found {
                pipe.pexpire(key, ttl_ms).ignore();
            }
            let _: () = pipe.query_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Streams the commands that write one generation, a pipeline at a time, so that a large
/// org never sits in memory twice.
struct Batch<'a> {
    pipe: redis::Pipeline,
    commands: usize,
    ttl_ms: u64,
    tx: &'a tokio::sync::mpsc::Sender<redis::Pipeline>,
}

impl Batch<'_> {
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.pipe
            .set_options(key, value, expiring(self.ttl_ms))
            .ignore();
        self.count()
    }

    fn zadd(&mut self, key: &str, members: &[Vec<u8>]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let cmd = self.pipe.cmd("ZADD").arg(key);
        for member in members {
            cmd.arg(0).arg(member);
        }
        self.pipe.ignore();
        self.count()
    }

    /// The TTL of a key written by several commands (the name index), once it is complete.
    fn pexpire(&mut self, key: &str) -> Result<(), StoreError> {
        self.pipe.pexpire(key, self.ttl_ms as i64).ignore();
        self.count()
    }

    fn count(&mut self) -> Result<(), StoreError> {
        self.commands += 1;
        if self.commands >= PIPELINE_COMMANDS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.commands == 0 {
            return Ok(());
        }
        let pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        self.commands = 0;
        self.tx
            .blocking_send(pipe)
            .map_err(|_| StoreError::Unavailable("publishing stopped".into()))
    }
}

fn generation_commands(
    snapshot: OrgSnapshot,
    gk: &GenerationKeys,
    ttl_ms: u64,
    tx: &tokio::sync::mpsc::Sender<redis::Pipeline>,
) -> Result<(), StoreError> {
    let org = Org::without_search(snapshot);
    let mut batch = Batch {
        pipe: redis::pipe(),
        commands: 0,
        ttl_ms,
        tx,
    };
    batch.set(gk.meta(), to_json(&GenerationMeta::of(&org)))?;
    batch.set(gk.group_graph(), to_json(&GroupGraph::of(&org)))?;
    batch.set(gk.audit_subjects(), audit::subjects_json(&org))?;
    let mut contexts = ContextBuilder::new(&org);
    let mut emails: FxHashMap<String, Vec<String>> = FxHashMap::default();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for user in &org.snapshot().salesforce.users {
        let id = user.id.as_str15();
        batch.set(gk.user(user.id), to_json(user))?;
        batch.set(gk.context(user.id), to_json(&contexts.context(user)))?;
        batch.set(gk.login(&lower(&user.username)), id.as_bytes().to_vec())?;
        let email = user.email.trim();
        if !email.is_empty() {
            emails
                .entry(lower(email).into_owned())
                .or_default()
                .push(id.to_owned());
        }
        for word in crate::domain::name_key(&user.name)
            .split(' ')
            .filter(|w| !w.is_empty())
        {
            let mut member = word.as_bytes().to_vec();
            member.push(0);
            member.extend_from_slice(id.as_bytes());
            member.push(0);
            member.extend_from_slice(user.name.as_bytes());
            names.push(member);
        }
        if names.len() >= 500 {
            batch.zadd(&gk.names(), &names)?;
            names.clear();
        }
    }
    batch.zadd(&gk.names(), &names)?;
    batch.pexpire(&gk.names())?;
    for (email, ids) in emails {
        batch.set(gk.email(&email), to_json(&ids))?;
    }
    let users = &org.snapshot().salesforce.users;
    let directory = Directory::new(
        users
            .iter()
            .map(|u| (u.id, u.username.as_str(), u.name.as_str())),
    );
    batch.set(gk.suggestions(), directory.to_bytes())?;
    drop(directory);
    for (b, bu) in org.business_units().iter().enumerate() {
        let mut by_email: FxHashMap<String, Vec<&AeUser>> = FxHashMap::default();
        for user in &bu.users {
            batch.set(gk.ae_user(b, user.id), to_json(user))?;
            let email = user.email.trim();
            if !email.is_empty() {
                by_email
                    .entry(lower(email).into_owned())
                    .or_default()
                    .push(user);
            }
        }
        for (email, users) in by_email {
            batch.set(gk.ae_email(b, &email), to_json(&users))?;
        }
    }
    batch.flush()
}
