//! A check's reads: the small org a query needs, in a fixed number of round trips. One script
//! reads the query's keys in the generation read last (and says when a newer one replaced
//! it), and with a username, the user and context its entry names; the users of a name or an
//! email take one more. An email asked about before in the same generation takes one: the
//! script also reads the user and context of the id it resolved to last time
//! ([`LoginHints`]), and they are used only when the email still resolves to that id in the
//! same reply.

use std::sync::Arc;

use redis::{AsyncCommands, FromRedisValue, Value};

use super::read_cache::ReadKey;
use super::{Conn, KeptSuggestions, RedisStore, corrupt, from_json, hget};
use crate::domain::snapshot::lower;
use crate::domain::{
    AeUser, NameMatch, Org, Query, SfId, SfUser, Subject, TargetRef, name_key, name_match,
};
use crate::store::StoreError;
use crate::store::keys::{Entry, GenerationKeys};
use crate::store::records::{GenerationMeta, UserContext, assemble};
use crate::suggest::{Directory, MAX_CANDIDATES};

/// Name search reads at most this many users per query word.
const MAX_NAME_MATCHES: usize = 1_000;
/// Users sharing one email (an ambiguous query) read at most; an audit reads as many.
pub(super) const MAX_EMAIL_MATCHES: usize = 1_000;
/// Usernames and emails whose id is remembered (about 100 bytes each); past it the hints start
/// again empty.
const MAX_LOGIN_HINTS: usize = 20_000;

/// The user id each username or email asked about resolved to, in one generation: which user
/// and context a repeated check reads in its first round trip. Only a hint: the same script
/// reply says where the username resolves now, and a hint that no longer matches is ignored
/// (the check then reads the user in a second round trip). So a change made
/// in place within a generation (a re-check's `update_user`, or a patch of the current
/// generation) needs no invalidation here: nothing read through a hint is older than the reply
/// that checks it. A new generation empties the hints.
#[derive(Default)]
pub(super) struct LoginHints {
    generation: String,
    ids: rustc_hash::FxHashMap<String, SfId>,
}

impl LoginHints {
    fn get(&self, generation: &str, login: &str) -> Option<SfId> {
        (self.generation == generation)
            .then(|| self.ids.get(login).copied())
            .flatten()
    }

    fn remember(&mut self, generation: &str, login: &str, id: SfId) {
        if self.generation != generation || self.ids.len() >= MAX_LOGIN_HINTS {
            // Freed elsewhere: not in this check, nor in the lock (`background::drop_later`).
            crate::background::drop_later(std::mem::take(&mut self.ids));
            generation.clone_into(&mut self.generation);
        }
        self.ids.insert(login.to_owned(), id);
    }
}

/// The pieces [`read_in_pieces`] reads a large value in: each `GETRANGE` holds Redis while it
/// copies its piece, and checks wait behind it. At the bench org's shape (a 14 MB index),
/// pieces of 1 MB held Redis 2–4 ms each in the scale benchmark's slow log. Pieces a quarter
/// that size cost 42 more round trips for that index (56 instead of 14), on a thread that
/// does not answer checks.
const PIECE_BYTES: usize = 256 << 10;

/// Reads a large value (megabytes) of a generation in pieces into one buffer of its size: a
/// single `GET` would pass it through the client's growing read buffer and a copy, at several
/// times its size in memory. A patch may rewrite the value between two pieces (a shorter one
/// ends the read early), and moves the generation's revision when it does: `None` when the
/// revision is no longer `rev` once the pieces are in (what was read may be a mix; the caller
/// reads again from the start).
async fn read_in_pieces(
    conn: &mut Conn,
    gk: &GenerationKeys,
    key: &str,
    rev: &str,
    piece_bytes: usize,
) -> Result<Option<Vec<u8>>, StoreError> {
    let len: usize = conn.strlen(key).await?;
    let mut value = Vec::with_capacity(len);
    while value.len() < len {
        let start = value.len();
        let end = (start + piece_bytes).min(len) - 1;
        let piece: Vec<u8> = conn.getrange(key, start as isize, end as isize).await?;
        if piece.is_empty() {
            break;
        }
        value.extend_from_slice(&piece);
    }
    let now: Option<String> = conn.get(gk.rev()).await?;
    if now.as_deref() != Some(rev) {
        return Ok(None);
    }
    if value.len() < len {
        return Err(corrupt("suggestions", "deleted while being read"));
    }
    Ok(Some(value))
}

/// A value of the script's reply as bytes, without a copy.
fn owned_bytes(value: Value) -> Option<Vec<u8>> {
    Option::<Vec<u8>>::from_redis_value(value).ok().flatten()
}

/// A user and its context from the script's reply (either may be missing).
fn user_and_context(
    user: Option<Value>,
    context: Option<Value>,
) -> Result<(Vec<SfUser>, Option<UserContext>), StoreError> {
    let user: Option<SfUser> = user
        .and_then(owned_bytes)
        .map(|r| from_json("user", &r))
        .transpose()?;
    let context: Option<UserContext> = context
        .and_then(owned_bytes)
        .map(|r| from_json("user context", &r))
        .transpose()?;
    Ok((user.into_iter().collect(), context))
}

fn target_key(gk: &GenerationKeys, target: &TargetRef, business_unit: usize) -> Entry {
    match target {
        TargetRef::AeId(id) => gk.ae_user(business_unit, *id),
        TargetRef::Email(email) => gk.ae_email(business_unit, email),
    }
}

/// Reads keys of one generation. KEYS: the generation's `meta`, `successor`, name index and
/// `rev`, then the hashes of the records to read (`keys::Entry`). ARGV: the revision of the
/// metadata the caller holds, the name matches limit, the prefixes of the generation's user
/// and context hashes (or two empty strings), the number of words of a name query and the
/// words, then the field of each record. The entries of the word with the fewest (as counted
/// by `ZLEXCOUNT`) come first among the values. With the prefixes, the first record is a
/// username's entry, and the user and context of the id it holds are read too and come last:
/// the only keys the script makes up, from a value the refresh wrote, the generation's own
/// prefix and the bucket of the id (`keys::bucket`, the same function in Lua), so they share
/// the generation's hash slot (a Redis Cluster runs such a script on the node that holds the
/// slot, as it does the follow-ups' script). Atomic, so every value comes from one state of
/// one generation. Returns {'gone'} when the generation was deleted, {'moved', id} when
/// another replaced it, else {'ok', rev, metadata if rev is not the caller's (else false),
/// [entries,] value of each record..., [user, context]}. Runs after `keys::BUCKET_LUA`, which
/// defines `bucket` ([`READS`]).
const READ_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local successor = redis.call('GET', KEYS[2])
if successor then return {'moved', successor} end
local rev = redis.call('GET', KEYS[4]) or '0'
local meta = false
if rev ~= ARGV[1] then meta = redis.call('GET', KEYS[1]) end
local out = {'ok', rev, meta}
local words = tonumber(ARGV[5])
if words > 0 then
  local driver, fewest
  for i = 6, 5 + words do
    local count = redis.call('ZLEXCOUNT', KEYS[3], '[' .. ARGV[i], '[' .. ARGV[i] .. '\255')
    if not fewest or count < fewest then driver, fewest = ARGV[i], count end
  end
  out[#out + 1] = redis.call('ZRANGEBYLEX', KEYS[3], '[' .. driver,
    '[' .. driver .. '\255', 'LIMIT', 0, ARGV[2])
end
local login = false
for i = 5, #KEYS do
  local value = redis.call('HGET', KEYS[i], ARGV[i + 1 + words])
  if i == 5 then login = value end
  out[#out + 1] = value
end
if ARGV[3] ~= '' then
  if login then
    local b = bucket(login)
    out[#out + 1] = redis.call('HGET', ARGV[3] .. b, login)
    out[#out + 1] = redis.call('HGET', ARGV[4] .. b, login)
  else
    out[#out + 1] = false
    out[#out + 1] = false
  end
end
return out
"#;

static READS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!("{}{READ_SCRIPT}", crate::store::keys::BUCKET_LUA))
});

/// The reads of one diagnosis that do not depend on each other: one round trip (`EVALSHA`).
#[derive(Default)]
struct QueryReads {
    records: Vec<Entry>,
    words: Vec<String>,
    /// The prefixes of the generation's user and context keys, to read the user and context
    /// a username's entry names in the same round trip (see [`READ_SCRIPT`]).
    follow: Option<(String, String)>,
}

/// What the read script found.
enum Read {
    /// The generation's revision, its metadata when the caller's revision was another, and
    /// the values (a followed user and context last).
    Values(String, Option<Vec<u8>>, Vec<Value>),
    /// The generation was replaced by this one.
    Moved(String),
    /// The generation is gone: look up `current` again.
    Gone,
}

impl QueryReads {
    fn get(&mut self, record: Entry) -> &mut Self {
        self.records.push(record);
        self
    }

    /// Also reads the user and context of the id the first key (a username's entry) holds.
    fn follow_login(&mut self, gk: &GenerationKeys) {
        self.follow = Some((gk.user_prefix(), gk.context_prefix()));
    }

    fn names_starting_with(&mut self, word: &str) {
        self.words.push(word.to_owned());
    }

    fn targets(&mut self, gk: &GenerationKeys, target: &TargetRef, business_units: usize) {
        for b in 0..business_units {
            self.get(target_key(gk, target, b));
        }
    }

    async fn run(
        &self,
        gk: &GenerationKeys,
        rev: &str,
        conn: &mut Conn,
    ) -> Result<Read, StoreError> {
        let mut invocation = READS.key(gk.meta());
        invocation
            .key(gk.successor())
            .key(gk.names())
            .key(gk.rev())
            .arg(rev)
            .arg(MAX_NAME_MATCHES);
        match &self.follow {
            Some((users, contexts)) => invocation.arg(users.as_str()).arg(contexts.as_str()),
            None => invocation.arg("").arg(""),
        };
        invocation.arg(self.words.len());
        for word in &self.words {
            invocation.arg(word.as_str());
        }
        for record in &self.records {
            invocation
                .key(record.key.as_str())
                .arg(record.field.as_str());
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
            "ok" if items.len() >= 2 => {
                let rev = String::from_redis_value(items.remove(0))
                    .map_err(|e| corrupt("generation revision", e))?;
                let meta = owned_bytes(items.remove(0));
                Ok(Read::Values(rev, meta, items))
            }
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
    /// "Did you mean" needs every username and name: read only when a query matched nothing,
    /// and kept in memory (sorted, about 130 bytes a user) for the next miss. Kept across
    /// patches and new generations while the bytes' digest (written with them) is the same:
    /// an incremental refresh that changed no username or name, or a full one, then costs one
    /// `GET` instead of reading megabytes again and rebuilding (14 MB at 100,000 internal
    /// users, on every replica, after every patch).
    async fn suggestions(
        &self,
        conn: &mut Conn,
        generation: &str,
        rev: &str,
    ) -> Result<Option<Arc<Directory>>, StoreError> {
        let version = format!("{generation}#{rev}");
        let mut cached = self.suggestions.lock().await;
        if let Some(kept) = cached.as_ref() {
            if kept.confirmed == version {
                return Ok(Some(kept.directory.clone()));
            }
        }
        // The digest key is written in the same step as the bytes (the patch script, or the
        // publish before its generation is current): equal digests, equal bytes.
        let gk = self.keys.generation(generation);
        let digest: Option<String> = redis::AsyncCommands::get(conn, gk.suggestions_digest())
            .await
            .map_err(StoreError::from)?;
        if let Some(kept) = cached.as_mut() {
            if digest.is_some() && kept.digest == digest {
                kept.confirmed = version;
                return Ok(Some(kept.directory.clone()));
            }
        }
        // The previous index goes first, so that two never sit in memory (freed off this
        // thread: hundreds of thousands of entries).
        crate::background::drop_later(cached.take());
        let Some(directory) = self.load_suggestions(conn, &gk, rev).await? else {
            return Ok(None);
        };
        let directory = Arc::new(directory);
        *cached = Some(KeptSuggestions {
            confirmed: version,
            digest,
            directory: directory.clone(),
        });
        Ok(Some(directory))
    }

    /// Reads the index's bytes and builds it; `None` when a patch landed meanwhile. Both run
    /// on a thread of their own in the idle class, over a connection of their own: the
    /// megabytes pass through that connection's reader, not the one the checks share, and the
    /// build's tens of milliseconds of CPU time give way to the checks answered meanwhile (at
    /// the bench org's shape, 14 MB, the two took the workers about 50 ms of CPU time within
    /// 0.2 s, and the checks of that second waited; BENCHMARKS.md). Where that thread cannot
    /// be started, on this task and connection.
    async fn load_suggestions(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        rev: &str,
    ) -> Result<Option<Directory>, StoreError> {
        // `rev` is unchanged once the pieces are in, so no patch landed since the check read
        // it: the digest read before is the one of these bytes.
        async fn load(
            conn: &mut Conn,
            gk: &GenerationKeys,
            rev: &str,
        ) -> Result<Option<Directory>, StoreError> {
            let Some(raw) = read_in_pieces(conn, gk, &gk.suggestions(), rev, PIECE_BYTES).await?
            else {
                return Ok(None);
            };
            Directory::from_bytes(&raw)
                .map(Some)
                .map_err(|e| corrupt("suggestions", e))
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (settings, timeouts) = (self.settings.clone(), self.timeouts);
        let (own_gk, own_rev) = (gk.clone(), rev.to_owned());
        drop(crate::background::spawn_low_priority_task(
            "suggestions",
            async move {
                let loaded = match Conn::open(&settings, timeouts) {
                    Ok(mut own) => load(&mut own, &own_gk, &own_rev).await,
                    Err(err) => Err(err),
                };
                let _ = tx.send(loaded);
            },
        ));
        match rx.await {
            Ok(loaded) => loaded,
            // The thread or its runtime did not start (it logged why).
            Err(_) => load(conn, gk, rev).await,
        }
    }

    /// Close usernames (or names) for a query that matched nothing; `None` when a patch moved
    /// the generation's revision meanwhile. The search looks only at
    /// the users that can be close: tens of microseconds at 100,000 users, under a millisecond
    /// in the worst cases measured (BENCHMARKS.md), so it runs here rather than on a blocking
    /// thread, whose two hand-offs cost about as much on a busy machine.
    async fn close_matches(
        &self,
        conn: &mut Conn,
        (generation, rev): (&str, &str),
        text: &str,
        by_name: bool,
    ) -> Result<Option<Vec<SfUser>>, StoreError> {
        let Some(suggestions) = self.suggestions(conn, generation, rev).await? else {
            return Ok(None);
        };
        Ok(Some(if by_name {
            suggestions.closest_names(text, MAX_CANDIDATES)
        } else {
            suggestions.closest_usernames(text, MAX_CANDIDATES)
        }))
    }

    /// The generation read last and its metadata: the one a check reads first (the read
    /// script says when another replaced it).
    fn cached_meta(&self) -> Option<(String, String, Arc<GenerationMeta>)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .clone()
    }

    /// The generation read last, without its metadata: what a cached read checks.
    fn cached_generation(&self) -> Option<String> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .as_ref()
            .map(|(generation, _, _)| generation.clone())
    }

    fn login_hint(&self, generation: &str, login: &str) -> Option<SfId> {
        self.hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(generation, login)
    }

    fn remember_login(&self, generation: &str, login: &str, id: SfId) {
        self.hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(generation, login, id);
    }

    /// The small org a query needs: the users it names (or the candidates for it), the
    /// context of the one user it finds, and the AE users its target names. Diagnosing it
    /// gives the same answer as diagnosing the whole org.
    /// A query read before in the same generation and revision is answered from this
    /// process's read cache (`read_cache.rs`) after one round trip that proves both unchanged.
    pub async fn query_org(&self, query: &Query) -> Result<Arc<Org>, StoreError> {
        let key = ReadKey::of(query);
        if let Some(org) = self.cached_read(&key).await? {
            metrics::counter!(crate::metrics::CHECK_READ_CACHE, "result" => "hit").increment(1);
            return Ok(org);
        }
        metrics::counter!(crate::metrics::CHECK_READ_CACHE, "result" => "miss").increment(1);
        // A username's user and context come in a second read, which checks that no patch
        // landed in between; if one did, the query is read again from the start.
        for _ in 0..3 {
            if let Some((generation, rev, org)) = self.query_org_once(query).await? {
                let org = Arc::new(org);
                self.reads.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    &generation,
                    &rev,
                    key,
                    org.clone(),
                );
                return Ok(org);
            }
        }
        Err(StoreError::Unavailable(
            "the cached data was updated during every read; try again".into(),
        ))
    }

    /// What `key` read before, if its generation is still current and unchanged: one round
    /// trip reading the generation's successor and revision (one hash slot, so a Cluster takes
    /// it too). `None` (read it again) when there is no entry, or when either moved.
    async fn cached_read(&self, key: &ReadKey) -> Result<Option<Arc<Org>>, StoreError> {
        let Some(generation) = self.cached_generation() else {
            return Ok(None);
        };
        let Some((rev, org)) = self
            .reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&generation, key)
        else {
            return Ok(None);
        };
        let gk = self.keys.generation(&generation);
        let mut conn = self.conn.clone();
        // Two GETs in one pipeline rather than an MGET: the same round trip, and no command
        // beyond those the ACL user already has (docs/redis.md).
        let (successor, now): (Option<String>, Option<String>) = redis::pipe()
            .get(gk.successor())
            .get(gk.rev())
            .query_async(&mut conn)
            .await?;
        // Every generation of this format is published with a revision: none means it is
        // being deleted.
        Ok((successor.is_none() && now.as_deref() == Some(rev.as_str())).then_some(org))
    }

    /// [`RedisStore::query_org`], once: the generation and revision read, and the small org;
    /// `None` when a patch landed between its reads.
    async fn query_org_once(
        &self,
        query: &Query,
    ) -> Result<Option<(String, String, Org)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut hint = None;
        let (mut generation, mut rev, mut meta) = match self.cached_meta() {
            Some(cached) => cached,
            None => {
                let generation = self.current_generation(&mut conn).await?;
                let (rev, meta) = self.meta_with_rev(&mut conn, &generation).await?;
                (generation, rev, meta)
            }
        };

        // One round trip while the generation known here is current: the query's own keys
        // in it, the user and context a username's entry names, and the target in every
        // business unit. An email or a name resolves to users in a second one.
        let mut attempts = 0;
        let mut followed = None;
        let values = loop {
            let gk = self.keys.generation(&generation);
            let mut reads = QueryReads::default();
            match &query.subject {
                Subject::Id(id) => {
                    reads.get(gk.user(*id)).get(gk.context(*id));
                }
                Subject::Login(login) => {
                    reads.get(gk.login(login)).get(gk.email(login));
                    hint = self.login_hint(&generation, login);
                    match hint {
                        Some(id) => {
                            reads.get(gk.user(id)).get(gk.context(id));
                        }
                        None => reads.follow_login(&gk),
                    }
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
            match reads.run(&gk, &rev, &mut conn).await? {
                Read::Values(now, fresh, values) => {
                    if let Some(raw) = fresh {
                        // Patched since this replica read the metadata: keep the new one.
                        meta = Arc::new(from_json("generation metadata", &raw)?);
                        self.cache_meta(&generation, &now, meta.clone());
                        // A target read for a number of business units that changed is
                        // read again.
                        if query.target.is_some() {
                            rev = now;
                            attempts += 1;
                            continue;
                        }
                    }
                    rev = now;
                    let mut values = values;
                    if reads.follow.is_some() {
                        let context = values.pop();
                        let user = values.pop();
                        followed = Some((user, context));
                    }
                    break values;
                }
                Read::Moved(next) => generation = next,
                Read::Gone => generation = self.current_generation(&mut conn).await?,
            }
            attempts += 1;
            if attempts > 3 {
                return Err(StoreError::Unavailable(
                    "the cached data was replaced during every read; try again".into(),
                ));
            }
            (rev, meta) = self.meta_with_rev(&mut conn, &generation).await?;
        };
        let gk = self.keys.generation(&generation);
        let business_units = meta.business_units.len();
        let mut subject_values = values;
        let target_values = subject_values
            .split_off(subject_values.len() - query.target.as_ref().map_or(0, |_| business_units));

        let mut targets: Vec<(u32, AeUser)> = Vec::new();
        for (b, value) in target_values.into_iter().enumerate() {
            let Some(raw) = owned_bytes(value) else {
                continue;
            };
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
                let mut values = subject_values.into_iter();
                user_and_context(values.next(), values.next())?
            }
            Subject::Login(login) => {
                let mut values = subject_values.into_iter();
                let by_login: Option<String> = values
                    .next()
                    .and_then(|v| Option::<String>::from_redis_value(v).ok().flatten());
                let by_email: Vec<String> = match values.next().and_then(owned_bytes) {
                    Some(raw) => from_json("users by email", &raw)?,
                    None => Vec::new(),
                };
                let ids: Vec<String> = match &by_login {
                    Some(id) => vec![id.clone()],
                    None => by_email.into_iter().take(MAX_EMAIL_MATCHES).collect(),
                };
                let resolved = match ids.as_slice() {
                    [only] => Some(SfId::parse(only).map_err(|e| corrupt("user id", e))?),
                    _ => None,
                };
                if let Some(id) = resolved {
                    self.remember_login(&generation, login, id);
                }
                let followed = followed.filter(|_| {
                    // Read from the username's entry itself, under the key a publish names
                    // it by (the 15-character id).
                    resolved.is_some_and(|id| by_login.as_deref() == Some(id.as_str15()))
                });
                if hint.is_some() && hint == resolved {
                    // The user and context the script read with the username: current.
                    user_and_context(values.next(), values.next())?
                } else if let Some((user, context)) = followed {
                    user_and_context(user, context)?
                } else if ids.is_empty() {
                    // None: a patch landed while the index was read; read the query again.
                    let Some(close) = self
                        .close_matches(&mut conn, (&generation, &rev), login, false)
                        .await?
                    else {
                        return Ok(None);
                    };
                    (close, None)
                } else {
                    match self.users_with_context(&mut conn, &gk, &rev, &ids).await? {
                        Some(found) => found,
                        None => return Ok(None),
                    }
                }
            }
            Subject::Name(name) => {
                // The entries (`word \0 id \0 name`) of the word with the fewest, from the
                // script.
                let members: Vec<Vec<u8>> = match subject_values.into_iter().next() {
                    Some(value) => Vec::<Vec<u8>>::from_redis_value(value)
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
                        let Some((users, context)) =
                            self.users_with_context(&mut conn, &gk, &rev, &ids).await?
                        else {
                            return Ok(None);
                        };
                        let users = self.with_same_email(&mut conn, &gk, users).await?;
                        let org = Org::new(assemble(&meta, users, context, targets));
                        return Ok(Some((generation, rev, org)));
                    }
                }
                let fetched = self.users(&mut conn, &gk, &ids).await?;
                // Which of them match, exactly as the whole org would say.
                let probe = Org::new(assemble(&meta, fetched.clone(), None, Vec::new()));
                let found = probe.search_name(name, MAX_CANDIDATES);
                if found.total == 1 {
                    let id = found.users[0].id.as_str15().to_owned();
                    drop(probe);
                    match self.users_with_context(&mut conn, &gk, &rev, &[id]).await? {
                        Some(found) => found,
                        None => return Ok(None),
                    }
                } else if found.total == 0 {
                    drop(probe);
                    // None: a patch landed while the index was read; read the query again.
                    let Some(close) = self
                        .close_matches(&mut conn, (&generation, &rev), name, true)
                        .await?
                    else {
                        return Ok(None);
                    };
                    (close, None)
                } else {
                    (fetched, None)
                }
            }
        };
        let users = self.with_same_email(&mut conn, &gk, users).await?;
        let org = Org::new(assemble(&meta, users, context, targets));
        Ok(Some((generation, rev, org)))
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
        let (login, by_email) = (gk.login(&email), gk.email(&email));
        let (by_login, by_email): (Option<String>, Option<Vec<u8>>) = redis::pipe()
            .hget(login.key, login.field)
            .hget(by_email.key, by_email.field)
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
            hget(&mut pipe, gk.user(id));
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        values
            .into_iter()
            .filter_map(owned_bytes)
            .map(|raw| from_json("user", &raw))
            .collect()
    }

    /// The users, and the context of the one user when there is exactly one, read in one
    /// atomic script; `None` when the generation was patched since revision `rev` was read.
    async fn users_with_context(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        rev: &str,
        ids: &[String],
    ) -> Result<Option<(Vec<SfUser>, Option<UserContext>)>, StoreError> {
        if let [only] = ids {
            let id = SfId::parse(only).map_err(|e| corrupt("user id", e))?;
            let mut reads = QueryReads::default();
            reads.get(gk.user(id)).get(gk.context(id));
            let Read::Values(now, _, values) = reads.run(gk, rev, conn).await? else {
                return Ok(None);
            };
            if now != rev {
                return Ok(None);
            }
            let mut values = values.into_iter();
            return user_and_context(values.next(), values.next()).map(Some);
        }
        Ok(Some((self.users(conn, gk, ids).await?, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> SfId {
        SfId::parse(text).unwrap()
    }

    #[test]
    fn hints_hold_for_their_own_generation_only() {
        let mut hints = LoginHints::default();
        hints.remember("g1", "jane@acme.com", id("005Ak00000SAMS1"));
        assert_eq!(
            hints.get("g1", "jane@acme.com"),
            Some(id("005Ak00000SAMS1"))
        );
        assert_eq!(hints.get("g2", "jane@acme.com"), None);
        assert_eq!(hints.get("g1", "bob@acme.com"), None);
        // A new generation starts them again empty.
        hints.remember("g2", "bob@acme.com", id("005Ak00000BOB01"));
        assert_eq!(hints.get("g2", "jane@acme.com"), None);
        assert_eq!(hints.get("g2", "bob@acme.com"), Some(id("005Ak00000BOB01")));
        assert_eq!(hints.ids.len(), 1);
    }

    /// A large value read piece by piece is used only when the generation's revision is still
    /// the one the check read: a patch renames a new value into place and moves the revision
    /// in one script, so an unchanged revision means every piece came from one value. Needs
    /// the tests' Redis server (`TEST_REDIS_URL`, else 127.0.0.1:6379), as the integration
    /// tests do.
    #[tokio::test]
    async fn a_value_read_in_pieces_is_used_only_while_the_revision_is_unchanged() {
        use crate::store::keys::Keys;
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let settings = super::super::connection::RedisSettings::url(&url);
        let mut conn = Conn::open(&settings, super::super::RedisTimeouts::default()).unwrap();
        let prefix = format!("test:pieces:{}:", std::process::id());
        let gk = Keys::new(&prefix, 1).unwrap().generation("g1");
        let key = gk.suggestions();
        let value: Vec<u8> = (0..=255u8).cycle().take(1_000).collect();
        let _: () = redis::pipe()
            .set(&key, &value)
            .set(gk.rev(), "1")
            .query_async(&mut conn)
            .await
            .unwrap();
        // In pieces of 64 bytes (16 of them, the last one short), all from one value.
        let read = read_in_pieces(&mut conn, &gk, &key, "1", 64).await.unwrap();
        assert_eq!(read.as_deref(), Some(value.as_slice()));
        // A patch landed since the check read revision "1": not used.
        let _: () = conn.set(gk.rev(), "2").await.unwrap();
        let read = read_in_pieces(&mut conn, &gk, &key, "1", 64).await.unwrap();
        assert_eq!(read, None);
        let _: () = redis::pipe()
            .del(&key)
            .del(gk.rev())
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[test]
    fn hints_start_again_empty_when_full() {
        let mut hints = LoginHints::default();
        for n in 0..MAX_LOGIN_HINTS {
            hints.remember("g1", &format!("user{n}@acme.com"), id("005Ak00000SAMS1"));
        }
        assert_eq!(hints.ids.len(), MAX_LOGIN_HINTS);
        hints.remember("g1", "one.more@acme.com", id("005Ak00000BOB01"));
        assert_eq!(hints.ids.len(), 1);
        assert_eq!(hints.get("g1", "user0@acme.com"), None);
        assert_eq!(
            hints.get("g1", "one.more@acme.com"),
            Some(id("005Ak00000BOB01"))
        );
    }
}
