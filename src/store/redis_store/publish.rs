//! A refresh's writes: a complete new generation, published at once, and one user rewritten
//! after a live re-check. Every key written carries the namespace's TTL (`keys::FORMAT_TTL`).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use redis::AsyncCommands;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{Conn, RedisStore, corrupt, expiring, from_json, to_json};
use crate::domain::snapshot::lower;
use crate::domain::{AeUser, Org, OrgSnapshot, SfId, SfUser};
use crate::store::digest::{self, Digests};
use crate::store::keys::{Entry, GenerationKeys};
use crate::store::records::{
    ContextBuilder, GenerationMeta, GroupGraph, assemble, reachable_direct_groups,
};
use crate::store::{GenerationRef, StoreError, random_token};
use crate::suggest::Directory;

/// Commands per pipeline when publishing: large enough to amortise round trips, small enough
/// to keep memory flat and to let checks through between pipelines (Redis runs one command at
/// a time: with 2,000, check p99 during a 100k refresh was 19–20 ms; with 500, 14 ms; see
/// BENCHMARKS.md for 100).
const PIPELINE_COMMANDS: usize = 100;
/// Keys one `UNLINK` deletes when a generation goes (about 6,000 names). Redis frees a hash of
/// more than 64 fields on a background thread, a smaller one (at 1M users, the AE users'
/// hashes of about 40 fields) on its main thread: at 1M users an `UNLINK` of 512 names held
/// Redis 10–12 ms, and checks waited behind it; 64 keep each near a millisecond.
pub(super) const UNLINK_KEYS: usize = 64;
/// Members of the name index one `ZADD` adds, at most (see `generation_commands`).
const NAMES_PER_ZADD: usize = 100;
impl RedisStore {
    /// Deletes generations older than the current one, writes a complete new generation,
    /// then switches readers to it.
    pub async fn publish(&self, snapshot: OrgSnapshot) -> Result<(), StoreError> {
        let org = tokio::task::spawn_blocking(move || Org::without_search(snapshot))
            .await
            .map_err(|e| corrupt("indexing the org", e))?;
        self.publish_org(Arc::new(org)).await.map(drop)
    }

    /// [`RedisStore::publish`] of an org already indexed (`Org::without_search` is enough);
    /// returns the new generation's id.
    pub async fn publish_org(&self, org: Arc<Org>) -> Result<GenerationRef, StoreError> {
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
        // Generations older than the current one go before the new one is written, not after:
        // nothing reads them any more (a check still holding one reads `current` again), and
        // Redis then holds two generations at most, not three (at 1M users a peak of 508 MB
        // instead of 769 MB), with a key space that does not grow by half while writing.
        let keep: Vec<&str> = std::iter::once(generation.as_str())
            .chain(previous.as_deref())
            .collect();
        self.delete_generations_except(&mut conn, &keep).await?;
        tracing::debug!(generation, "publish deleted the older generations");
        let gk = self.keys.generation(&generation);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<redis::Pipeline>(4);
        let ttl_ms = self.ttl_ms;
        let epoch = random_token();
        let writer = crate::background::low_priority({
            let epoch = epoch.clone();
            move || generation_commands(&org, &gk, &epoch, ttl_ms, &tx)
        });
        self.send_pipelines(&mut conn, &mut rx).await?;
        writer
            .await
            .ok_or_else(|| corrupt("building the generation", "failed"))??;
        tracing::debug!(generation, "publish wrote the generation");
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
        // A generation another publish added meanwhile (two refreshers at once, the lock lost)
        // goes too: at most the new and the previous one stay.
        self.delete_generations_except(&mut conn, &keep).await?;
        Ok(GenerationRef {
            id: generation,
            epoch,
        })
    }

    /// Sends each pipeline a walk of the generation streams, one at a time, until the walk
    /// ends.
    pub(super) async fn send_pipelines(
        &self,
        conn: &mut Conn,
        rx: &mut tokio::sync::mpsc::Receiver<redis::Pipeline>,
    ) -> Result<(), StoreError> {
        let timeout = self.publish_response_timeout;
        while let Some(pipe) = rx.recv().await {
            tokio::time::timeout(timeout, pipe.query_async::<()>(conn))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("Redis did not answer while publishing".into())
                })??;
        }
        Ok(())
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
            // Every key the generation can hold, by name: no `SCAN` over the key space. Redis
            // frees a large hash off its main thread (`UNLINK`).
            for keys in gk.all_keys().chunks(UNLINK_KEYS) {
                let _: () = redis::cmd("UNLINK").arg(keys).query_async(conn).await?;
            }
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
        let by_email = gk.email(&email);
        let (graph, email_ids): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .get(gk.group_graph())
            .hget(&by_email.key, &by_email.field)
            .query_async(&mut conn)
            .await?;
        let graph: GroupGraph =
            from_json("group graph", &graph.unwrap_or_else(|| b"null".to_vec()))?;
        let direct_groups = reachable_direct_groups(
            direct_groups,
            &graph.groups,
            &graph.group_edges,
            &meta.business_units,
        );
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
        let mut written: BTreeSet<String> = BTreeSet::new();
        hset_expiring(
            &mut pipe,
            &mut written,
            gk.user(user.id),
            to_json(&user),
            ttl,
        );
        hset_expiring(
            &mut pipe,
            &mut written,
            gk.login(&lower(&user.username)),
            id,
            ttl,
        );
        if !email.is_empty() {
            let mut ids: Vec<String> = match email_ids {
                Some(raw) => from_json("users by email", &raw)?,
                None => Vec::new(),
            };
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
            hset_expiring(
                &mut pipe,
                &mut written,
                gk.email(&email),
                to_json(&ids),
                ttl,
            );
        }
        for (b, ae) in &context.ae_users {
            let b = *b as usize;
            hset_expiring(
                &mut pipe,
                &mut written,
                gk.ae_user(b, ae.id),
                to_json(ae),
                ttl,
            );
            let ae_email = lower(ae.email.trim()).into_owned();
            if !ae_email.is_empty() {
                let same: Vec<&AeUser> = org.ae_users_with_email(b, &ae_email).collect();
                hset_expiring(
                    &mut pipe,
                    &mut written,
                    gk.ae_email(b, &ae_email),
                    to_json(&same),
                    ttl,
                );
            }
        }
        hset_expiring(
            &mut pipe,
            &mut written,
            gk.context(user.id),
            to_json(&context),
            ttl,
        );
        // The hashes written no longer hold what the refresher's data says: their digests
        // become unknown, so that the next full refresh rewrites them whatever it reads.
        for name in written.iter().filter_map(|key| gk.name_of(key)) {
            pipe.hset(gk.digests(name), name, digest::UNKNOWN).ignore();
        }
        pipe.set_options(gk.rev(), random_token(), expiring(ttl))
            .ignore();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

/// Where the writes of a generation go, as [`generation_writes`] walks them: a pipeline to
/// Redis ([`Batch`]), or only their digests ([`DigestSink`]).
pub(super) trait Sink {
    /// Whether the walk should compute what goes into `key` at all (a full refresh in place
    /// stages only the keys that differ).
    fn wants(&self, _key: &str) -> bool {
        true
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError>;
    fn hset(&mut self, entry: Entry, value: Vec<u8>) -> Result<(), StoreError>;
    fn zadd(&mut self, key: &str, members: &[Vec<u8>]) -> Result<(), StoreError>;
    /// A key written by several commands (the name index) is complete.
    fn complete(&mut self, key: &str) -> Result<(), StoreError>;
}

/// The digests of what a walk writes, by key name (`store::digest`).
pub(super) struct DigestSink<'a> {
    pub gk: &'a GenerationKeys,
    pub digests: Digests,
}

impl DigestSink<'_> {
    fn add(&mut self, key: &str, field: &[u8], value: &[u8]) {
        let name = self.gk.digest_name(key);
        self.digests.add(name, digest::entry(field, value));
    }
}

impl Sink for DigestSink<'_> {
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.add(&key, b"", &value);
        Ok(())
    }
    fn hset(&mut self, entry: Entry, value: Vec<u8>) -> Result<(), StoreError> {
        self.add(&entry.key, entry.field.as_bytes(), &value);
        Ok(())
    }
    fn zadd(&mut self, key: &str, members: &[Vec<u8>]) -> Result<(), StoreError> {
        for member in members {
            self.add(key, b"", member);
        }
        Ok(())
    }
    fn complete(&mut self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Streams the commands that write one generation, a pipeline at a time, so that a large
/// org never sits in memory twice.
pub(super) struct Batch<'a> {
    pipe: redis::Pipeline,
    commands: usize,
    ttl_ms: u64,
    tx: &'a tokio::sync::mpsc::Sender<redis::Pipeline>,
    /// The hashes given their TTL so far: each gets it right after its first field, so that
    /// a publish that stops halfway leaves nothing without one.
    expiring: FxHashSet<String>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(ttl_ms: u64, tx: &'a tokio::sync::mpsc::Sender<redis::Pipeline>) -> Self {
        Batch {
            pipe: redis::pipe(),
            commands: 0,
            ttl_ms,
            tx,
            expiring: FxHashSet::default(),
        }
    }

    fn count(&mut self) -> Result<(), StoreError> {
        self.commands += 1;
        if self.commands >= PIPELINE_COMMANDS {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
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

impl Sink for Batch<'_> {
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.pipe
            .set_options(key, value, expiring(self.ttl_ms))
            .ignore();
        self.count()
    }

    fn hset(&mut self, entry: Entry, value: Vec<u8>) -> Result<(), StoreError> {
        self.pipe.hset(&entry.key, entry.field, value).ignore();
        if !self.expiring.contains(&entry.key) {
            self.pipe.pexpire(&entry.key, self.ttl_ms as i64).ignore();
            self.expiring.insert(entry.key);
        }
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
        // A TTL from the first members on, as a hash gets one: a staged set that a stopped
        // writer left (no deletion names staging names) then expires too.
        if !self.expiring.contains(key) {
            self.pipe.pexpire(key, self.ttl_ms as i64).ignore();
            self.expiring.insert(key.to_owned());
        }
        self.count()
    }

    /// The TTL of a key written by several commands, once it is complete.
    fn complete(&mut self, key: &str) -> Result<(), StoreError> {
        self.pipe.pexpire(key, self.ttl_ms as i64).ignore();
        self.count()
    }
}

/// A publish's sink: the writes go to Redis, and their digests are summed on the way.
struct Publish<'a> {
    batch: Batch<'a>,
    digests: DigestSink<'a>,
}

impl Sink for Publish<'_> {
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.digests.add(&key, b"", &value);
        self.batch.set(key, value)
    }
    fn hset(&mut self, entry: Entry, value: Vec<u8>) -> Result<(), StoreError> {
        self.digests.add(&entry.key, entry.field.as_bytes(), &value);
        self.batch.hset(entry, value)
    }
    fn zadd(&mut self, key: &str, members: &[Vec<u8>]) -> Result<(), StoreError> {
        self.digests.zadd(key, members)?;
        self.batch.zadd(key, members)
    }
    fn complete(&mut self, key: &str) -> Result<(), StoreError> {
        self.batch.complete(key)
    }
}

/// A whole generation: its revision and epoch, everything [`generation_writes`] walks, then
/// the digests of it all.
fn generation_commands(
    org: &Org,
    gk: &GenerationKeys,
    epoch: &str,
    ttl_ms: u64,
    tx: &tokio::sync::mpsc::Sender<redis::Pipeline>,
) -> Result<(), StoreError> {
    let mut sink = Publish {
        batch: Batch::new(ttl_ms, tx),
        digests: DigestSink {
            gk,
            digests: Digests::default(),
        },
    };
    // A revision from the start: a check's cached read (`read_cache.rs`) tells a generation
    // being deleted (no revision) from one never rewritten.
    sink.batch.set(gk.rev(), random_token().into_bytes())?;
    sink.batch.set(gk.epoch(), epoch.as_bytes().to_vec())?;
    generation_writes(org, gk, &mut sink)?;
    let Publish { mut batch, digests } = sink;
    for (name, d) in digests.digests.iter() {
        batch.hset(
            Entry {
                key: gk.digests(name),
                field: name.to_owned(),
            },
            digest::bytes(d),
        )?;
    }
    batch.flush()
}

/// Every write of a generation's content, in one order, to `sink`: what a publish writes,
/// what its digests are computed from, and what a full refresh in place stages. Not the
/// revision, the epoch or the digests themselves.
pub(super) fn generation_writes(
    org: &Org,
    gk: &GenerationKeys,
    sink: &mut impl Sink,
) -> Result<(), StoreError> {
    let (meta, graph, subjects) = (gk.meta(), gk.group_graph(), gk.audit_subjects());
    if sink.wants(&meta) {
        sink.set(meta, to_json(&GenerationMeta::of(org)))?;
    }
    if sink.wants(&graph) {
        sink.set(graph, to_json(&GroupGraph::of(org)))?;
    }
    if sink.wants(&subjects) {
        sink.set(subjects, super::audit::subjects_json(org))?;
    }
    let names_key = gk.names();
    let with_names = sink.wants(&names_key);
    let mut contexts = ContextBuilder::new(org);
    let mut emails: FxHashMap<String, Vec<String>> = FxHashMap::default();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for user in &org.snapshot().salesforce.users {
        let id = user.id.as_str15();
        let entry = gk.user(user.id);
        if sink.wants(&entry.key) {
            sink.hset(entry, to_json(user))?;
        }
        let entry = gk.context(user.id);
        if sink.wants(&entry.key) {
            sink.hset(entry, to_json(&contexts.context(user)))?;
        }
        let entry = gk.login(&lower(&user.username));
        if sink.wants(&entry.key) {
            sink.hset(entry, id.as_bytes().to_vec())?;
        }
        let email = user.email.trim();
        if !email.is_empty() {
            emails
                .entry(lower(email).into_owned())
                .or_default()
                .push(id.to_owned());
        }
        if with_names {
            names.extend(name_members(user));
        }
        // A `ZADD` into a sorted set of hundreds of thousands of entries costs microseconds per
        // member, and Redis answers nothing else meanwhile: at 1M users, batches of 500 held it
        // 2–3 ms each (155 of them during a full refresh); 100 keep each well under a
        // millisecond.
        if names.len() >= NAMES_PER_ZADD {
            sink.zadd(&names_key, &names)?;
            names.clear();
        }
    }
    if with_names {
        sink.zadd(&names_key, &names)?;
        sink.complete(&names_key)?;
    }
    for (email, ids) in emails {
        let entry = gk.email(&email);
        if sink.wants(&entry.key) {
            sink.hset(entry, to_json(&ids))?;
        }
    }
    if sink.wants(&gk.suggestions()) || sink.wants(&gk.suggestions_digest()) {
        for (key, value) in suggestions_writes(org, gk) {
            sink.set(key, value)?;
        }
    }
    for (b, bu) in org.business_units().iter().enumerate() {
        let mut by_email: FxHashMap<String, Vec<&AeUser>> = FxHashMap::default();
        for user in &bu.users {
            let entry = gk.ae_user(b, user.id);
            if sink.wants(&entry.key) {
                sink.hset(entry, to_json(user))?;
            }
            let email = user.email.trim();
            if !email.is_empty() {
                by_email
                    .entry(lower(email).into_owned())
                    .or_default()
                    .push(user);
            }
        }
        for (email, users) in by_email {
            let entry = gk.ae_email(b, &email);
            if sink.wants(&entry.key) {
                sink.hset(entry, to_json(&users))?;
            }
        }
    }
    Ok(())
}

/// A field written outside a publish, with its hash's TTL renewed (the hash may be new).
fn hset_expiring(
    pipe: &mut redis::Pipeline,
    written: &mut BTreeSet<String>,
    entry: Entry,
    value: impl redis::ToSingleRedisArg,
    ttl: u64,
) {
    pipe.hset(&entry.key, entry.field, value).ignore();
    pipe.pexpire(&entry.key, ttl as i64).ignore();
    written.insert(entry.key);
}

/// The name index's members for one user: `word \0 id \0 name`, one per distinct word of the
/// name (a word twice in a name is one member, and counts once in the index's digest).
pub(super) fn name_members(user: &SfUser) -> Vec<Vec<u8>> {
    let id = user.id.as_str15();
    crate::domain::name_key(&user.name)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|word| {
            let mut member = word.as_bytes().to_vec();
            member.push(0);
            member.extend_from_slice(id.as_bytes());
            member.push(0);
            member.extend_from_slice(user.name.as_bytes());
            member
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The "did you mean" index and its digest, the two writes that always go together (a publish,
/// or a patch's one script). The digest is the first 128 bits of the bytes' SHA-256, in hex:
/// equal digests mean equal bytes, so a replica that built its index from bytes of this
/// digest can keep it. (A 64-bit hash would do as well; SHA-256 is ring's, already here, and
/// takes milliseconds for the bench org's 14 MB, once per write.)
pub(super) fn suggestions_writes(org: &Org, gk: &GenerationKeys) -> [(String, Vec<u8>); 2] {
    let bytes = suggestions_bytes(org);
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    [
        (gk.suggestions_digest(), hex.into_bytes()),
        (gk.suggestions(), bytes),
    ]
}

/// Every user's id, username and name, in the binary form "did you mean" reads.
fn suggestions_bytes(org: &Org) -> Vec<u8> {
    let users = &org.snapshot().salesforce.users;
    Directory::new(
        users
            .iter()
            .map(|u| (u.id, u.username.as_str(), u.name.as_str())),
    )
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands of `pipes`, each as its words.
    fn words(pipes: &[redis::Pipeline]) -> Vec<String> {
        pipes
            .iter()
            .flat_map(|pipe| pipe.cmd_iter())
            .map(|cmd| {
                let words: Vec<String> = cmd
                    .args_iter()
                    .map(|arg| match arg {
                        redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => "<cursor>".to_owned(),
                    })
                    .collect();
                words.join(" ")
            })
            .collect()
    }

    #[test]
    fn a_key_written_by_several_commands_gets_its_ttl_with_its_first_and_again_when_complete() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut batch = Batch::new(600_000, &tx);
        batch.zadd("z", &[b"a".to_vec()]).unwrap();
        batch.zadd("z", &[b"b".to_vec(), b"c".to_vec()]).unwrap();
        for (field, value) in [("f", "v"), ("g", "w")] {
            let entry = Entry {
                key: "h".to_owned(),
                field: field.to_owned(),
            };
            batch.hset(entry, value.as_bytes().to_vec()).unwrap();
        }
        batch.complete("z").unwrap();
        batch.flush().unwrap();
        drop(batch);
        drop(tx);
        let mut pipes = Vec::new();
        while let Ok(pipe) = rx.try_recv() {
            pipes.push(pipe);
        }
        assert_eq!(
            words(&pipes),
            [
                "ZADD z 0 a",
                "PEXPIRE z 600000",
                "ZADD z 0 b 0 c",
                "HSET h f v",
                "PEXPIRE h 600000",
                "HSET h g w",
                "PEXPIRE z 600000",
            ]
        );
    }
}
