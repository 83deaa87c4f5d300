//! An incremental refresh's writes: the keys of the current generation that differ between
//! the org it was written from and the org as it is now, rewritten in one atomic step.
//!
//! [`generation_patch`] is pure: it compares what a publish of `old` wrote with what a
//! publish of `new` would write, and returns only the differences. Applying it to a
//! generation written from `old` leaves exactly the keys a publish of `new` writes (the
//! randomized test in `tests/it/incremental.rs` checks this byte for byte against a full
//! refresh), the digests of the keys included (`store::digest`). The patch runs as one
//! script: readers see the generation before it or after it, never a mix. A full refresh in
//! place (`in_place.rs`) runs the same script with the keys it staged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};

use super::publish::{name_members, suggestions_writes};
use super::{RedisStore, corrupt, to_json};
use crate::domain::snapshot::lower;
use crate::domain::{AeUser, Org, SfUser};
use crate::store::digest::{self, Digests};
use crate::store::keys::{Entry, GenerationKeys, STAGING_TTL};
use crate::store::records::{ContextBuilder, GenerationMeta, GroupGraph};
use crate::store::{GenerationRef, StoreError, random_token};

/// What a key replaced by a renamed one is named for the moment between the two renames.
const REPLACED_SUFFIX: &str = "~old";

/// One write of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    Set(String, Vec<u8>),
    Delete(String),
    /// A record's field in its hash (`keys::Entry`), written or deleted.
    SetField(Entry, Vec<u8>),
    DeleteField(Entry),
    /// A member of a sorted set (score 0), added or removed.
    AddMember(String, Vec<u8>),
    RemoveMember(String, Vec<u8>),
    /// A key written whole under a staging name (`GenerationKeys::staging`; the second)
    /// before the script, which renames it into place (a full refresh in place).
    Replace(String, String),
    /// A difference added to a key's digest (`store::digest`) in `digests`, unless the digest
    /// is unknown; (the `digests` key, the key's name, the difference).
    AddToDigest(String, String, u128),
}

/// Above this many writes, a patch would hold Redis for too long in one step (each write is
/// microseconds; 50,000 of them are tens of milliseconds): a new generation is published
/// instead, a pipeline at a time, as a full refresh does.
pub const MAX_PATCH_OPS: usize = 50_000;

/// What applying a patch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOutcome {
    /// The generation was patched with this many writes of its content (its digests not
    /// counted).
    Applied(usize),
    /// The generation is no longer current (another replica published, or it expired):
    /// nothing was written.
    Stale,
    /// Too many writes for one step: nothing was written.
    TooLarge(usize),
}

/// The writes that turn a generation written from `old` into the one a publish of `new`
/// writes. Both orgs must be canonical (`OrgSnapshot::canonicalize`) and have the same
/// business units in the same order.
pub fn generation_patch(old: &Org, new: &Org, gk: &GenerationKeys) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    // What the writes of records move each key's digest by.
    let mut deltas = Digests::default();
    let set =
        |ops: &mut Vec<PatchOp>, key: String, old: Option<Vec<u8>>, new: Option<Vec<u8>>| match (
            old, new,
        ) {
            (Some(o), Some(n)) if o == n => {}
            (_, Some(n)) => ops.push(PatchOp::Set(key, n)),
            (Some(_), None) => ops.push(PatchOp::Delete(key)),
            (None, None) => {}
        };
    // The small keys of the whole generation: compared whole.
    set(
        &mut ops,
        gk.meta(),
        Some(to_json(&GenerationMeta::of(old))),
        Some(to_json(&GenerationMeta::of(new))),
    );
    let (old_graph, new_graph) = (GroupGraph::of(old), GroupGraph::of(new));
    if old_graph != new_graph {
        ops.push(PatchOp::Set(gk.group_graph(), to_json(&new_graph)));
    }
    set(
        &mut ops,
        gk.audit_subjects(),
        Some(super::audit::subjects_json(old)),
        Some(super::audit::subjects_json(new)),
    );

    // Salesforce users: their own keys when they changed, their context when it did.
    let old_users = &old.snapshot().salesforce.users;
    let new_users = &new.snapshot().salesforce.users;
    let mut old_contexts = ContextBuilder::new(old);
    let mut new_contexts = ContextBuilder::new(new);
    let mut emails: BTreeSet<String> = BTreeSet::new();
    let mut logins: FxHashSet<String> = FxHashSet::default();
    let mut suggestions_changed = false;
    for pair in merge_by_id(old_users, new_users) {
        let (o, n) = pair;
        if o != n {
            user_ops(&mut ops, &mut deltas, &mut logins, gk, o, n);
            emails.extend(o.and_then(email_key));
            emails.extend(n.and_then(email_key));
            suggestions_changed |=
                o.map(|u| (&u.username, &u.name, u.id)) != n.map(|u| (&u.username, &u.name, u.id));
        }
        let old_context = o.map(|u| old_contexts.context(u));
        let new_context = n.map(|u| new_contexts.context(u));
        if old_context != new_context {
            let Some(id) = n.or(o).map(|u| u.id) else {
                continue;
            };
            change(
                &mut deltas,
                gk,
                &gk.context(id),
                old_context.as_ref().map(to_json).as_deref(),
                new_context.as_ref().map(to_json).as_deref(),
            );
            match new_context {
                Some(context) => ops.push(PatchOp::SetField(gk.context(id), to_json(&context))),
                None => ops.push(PatchOp::DeleteField(gk.context(id))),
            }
        }
    }
    // A username's field holds the id of the user with that username (the last one in id
    // order, as a publish writes them): its value before and after, for the digest.
    if !logins.is_empty() {
        let holders = |users: &[SfUser]| -> FxHashMap<String, String> {
            let mut held = FxHashMap::default();
            for user in users {
                let login = lower(&user.username);
                if logins.contains(login.as_ref()) {
                    held.insert(login.into_owned(), user.id.as_str15().to_owned());
                }
            }
            held
        };
        let (before, after) = (holders(old_users), holders(new_users));
        for login in &logins {
            change(
                &mut deltas,
                gk,
                &gk.login(login),
                before.get(login).map(String::as_bytes),
                after.get(login).map(String::as_bytes),
            );
        }
    }
    if !emails.is_empty() {
        let lists = |users: &[SfUser]| {
            let mut ids: FxHashMap<&str, Vec<String>> =
                emails.iter().map(|e| (e.as_str(), Vec::new())).collect();
            for user in users {
                if let Some(email) = email_key(user) {
                    if let Some(list) = ids.get_mut(email.as_str()) {
                        list.push(user.id.as_str15().to_owned());
                    }
                }
            }
            ids
        };
        let (before, mut ids) = (lists(old_users), lists(new_users));
        for email in &emails {
            let list = ids.remove(email.as_str()).unwrap_or_default();
            let entry = gk.email(email);
            let json = |list: Option<&Vec<String>>| list.filter(|l| !l.is_empty()).map(to_json);
            change(
                &mut deltas,
                gk,
                &entry,
                json(before.get(email.as_str())).as_deref(),
                json(Some(&list)).as_deref(),
            );
            if list.is_empty() {
                ops.push(PatchOp::DeleteField(entry));
            } else {
                ops.push(PatchOp::SetField(entry, to_json(&list)));
            }
        }
    }
    if suggestions_changed {
        ops.extend(
            suggestions_writes(new, gk)
                .into_iter()
                .map(|(key, value)| PatchOp::Set(key, value)),
        );
    }

    // AE users, per business unit: the users that changed, and the email lists they are in.
    for (b, (old_bu, new_bu)) in old
        .business_units()
        .iter()
        .zip(new.business_units())
        .enumerate()
    {
        let mut emails: BTreeSet<String> = BTreeSet::new();
        for (o, n) in merge_by_key(&old_bu.users, &new_bu.users, |u| u.id) {
            if o == n {
                continue;
            }
            let id = n.or(o).map(|u| u.id).unwrap_or_default();
            change(
                &mut deltas,
                gk,
                &gk.ae_user(b, id),
                o.map(to_json).as_deref(),
                n.map(to_json).as_deref(),
            );
            match n {
                Some(user) => ops.push(PatchOp::SetField(gk.ae_user(b, id), to_json(user))),
                None => ops.push(PatchOp::DeleteField(gk.ae_user(b, id))),
            }
            emails.extend(o.and_then(ae_email_key));
            emails.extend(n.and_then(ae_email_key));
        }
        for email in emails {
            let same: Vec<&AeUser> = new.ae_users_with_email(b, &email).collect();
            let before: Vec<&AeUser> = old.ae_users_with_email(b, &email).collect();
            let entry = gk.ae_email(b, &email);
            let json = |list: &Vec<&AeUser>| (!list.is_empty()).then(|| to_json(list));
            change(
                &mut deltas,
                gk,
                &entry,
                json(&before).as_deref(),
                json(&same).as_deref(),
            );
            if same.is_empty() {
                ops.push(PatchOp::DeleteField(entry));
            } else {
                ops.push(PatchOp::SetField(entry, to_json(&same)));
            }
        }
    }
    // The digests: a key written whole gets its new one; a record's hash or the name index
    // moves by the difference.
    let whole: Vec<PatchOp> = ops
        .iter()
        .filter_map(|op| match op {
            PatchOp::Set(key, value) => Some(PatchOp::SetField(
                digest_entry(gk, key),
                digest::bytes(digest::entry(b"", value)),
            )),
            PatchOp::Delete(key) => Some(PatchOp::DeleteField(digest_entry(gk, key))),
            _ => None,
        })
        .collect();
    ops.extend(whole);
    ops.extend(
        deltas
            .iter()
            .map(|(name, d)| PatchOp::AddToDigest(gk.digests(name), name.to_owned(), d)),
    );
    // Removals first: a username one user gave up and another took is written, not deleted.
    let (mut removals, writes): (Vec<PatchOp>, Vec<PatchOp>) = ops.into_iter().partition(|op| {
        matches!(
            op,
            PatchOp::Delete(_) | PatchOp::DeleteField(_) | PatchOp::RemoveMember(..)
        )
    });
    removals.extend(writes);
    removals
}

/// A record's field moving from `old` to `new`, in its hash's digest.
fn change(
    deltas: &mut Digests,
    gk: &GenerationKeys,
    entry: &Entry,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) {
    let name = gk.digest_name(&entry.key);
    if let Some(old) = old {
        deltas.remove(name, digest::entry(entry.field.as_bytes(), old));
    }
    if let Some(new) = new {
        deltas.add(name, digest::entry(entry.field.as_bytes(), new));
    }
}

/// The field of `key`'s digest in `digests`.
pub(super) fn digest_entry(gk: &GenerationKeys, key: &str) -> Entry {
    let name = gk.digest_name(key);
    Entry {
        key: gk.digests(name),
        field: name.to_owned(),
    }
}

/// The writes of one user's own keys (record, username, name index), old to new; the
/// usernames it gave up or took go to `logins`, whose digests the caller moves.
fn user_ops(
    ops: &mut Vec<PatchOp>,
    deltas: &mut Digests,
    logins: &mut FxHashSet<String>,
    gk: &GenerationKeys,
    old: Option<&SfUser>,
    new: Option<&SfUser>,
) {
    let id = new.or(old).map(|u| u.id);
    let Some(id) = id else { return };
    change(
        deltas,
        gk,
        &gk.user(id),
        old.map(to_json).as_deref(),
        new.map(to_json).as_deref(),
    );
    match new {
        Some(user) => ops.push(PatchOp::SetField(gk.user(id), to_json(user))),
        None => ops.push(PatchOp::DeleteField(gk.user(id))),
    }
    let old_login = old.map(|u| lower(&u.username).into_owned());
    let new_login = new.map(|u| lower(&u.username).into_owned());
    logins.extend(old_login.iter().chain(&new_login).cloned());
    if let Some(login) = &old_login {
        if new_login.as_ref() != Some(login) {
            ops.push(PatchOp::DeleteField(gk.login(login)));
        }
    }
    if let Some(login) = new_login {
        ops.push(PatchOp::SetField(
            gk.login(&login),
            id.as_str15().as_bytes().to_vec(),
        ));
    }
    let old_names: FxHashSet<Vec<u8>> = old
        .map(name_members)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let new_names: FxHashSet<Vec<u8>> = new
        .map(name_members)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut removed: Vec<&Vec<u8>> = old_names.difference(&new_names).collect();
    removed.sort();
    let mut added: Vec<&Vec<u8>> = new_names.difference(&old_names).collect();
    added.sort();
    let names = gk.names();
    let name = gk.digest_name(&names);
    for member in &removed {
        deltas.remove(name, digest::entry(b"", member));
    }
    for member in &added {
        deltas.add(name, digest::entry(b"", member));
    }
    ops.extend(
        removed
            .into_iter()
            .map(|m| PatchOp::RemoveMember(gk.names(), m.clone())),
    );
    ops.extend(
        added
            .into_iter()
            .map(|m| PatchOp::AddMember(gk.names(), m.clone())),
    );
}

fn email_key(user: &SfUser) -> Option<String> {
    let email = user.email.trim();
    (!email.is_empty()).then(|| lower(email).into_owned())
}

fn ae_email_key(user: &AeUser) -> Option<String> {
    let email = user.email.trim();
    (!email.is_empty()).then(|| lower(email).into_owned())
}

fn merge_by_id<'a>(
    old: &'a [SfUser],
    new: &'a [SfUser],
) -> impl Iterator<Item = (Option<&'a SfUser>, Option<&'a SfUser>)> {
    merge_by_key(old, new, |u| u.id)
}

/// Walks two lists sorted by `key` together, pairing equal keys.
fn merge_by_key<'a, T, K: Ord>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = (Option<&'a T>, Option<&'a T>)> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let pair = match (old.get(i), new.get(j)) {
            (None, None) => return None,
            (Some(o), None) => (Some(o), None),
            (None, Some(n)) => (None, Some(n)),
            (Some(o), Some(n)) => match key(o).cmp(&key(n)) {
                std::cmp::Ordering::Less => (Some(o), None),
                std::cmp::Ordering::Greater => (None, Some(n)),
                std::cmp::Ordering::Equal => (Some(o), Some(n)),
            },
        };
        if pair.0.is_some() {
            i += 1;
        }
        if pair.1.is_some() {
            j += 1;
        }
        Some(pair)
    })
}

/// Applies a patch to one generation, atomically, if it is still current: KEYS are the
/// generation's `meta`, `successor`, `rev` and `epoch`, then every key a write names (all in
/// the generation's hash slot); ARGV the TTL in ms, the new revision, the epoch expected (or
/// empty), the revision expected (or empty), the new epoch (or empty: unchanged), then `op,
/// key index, field, value` per write (the field of a hash; empty for a key of its own).
/// An empty new revision keeps the revision (a script that moves only digests, which no
/// reader reads).
///
/// A large value (`m`) was written before the script under a staging name (its value is
/// that key's index) and is renamed into place: the script then holds Redis for a pointer's
/// move instead of copying megabytes through Lua (an 8 MB value took 15 ms that way). The
/// key it replaces is first renamed out of the way (its name with `~old`; the field of the
/// write is that name's index) and unlinked after, so that Redis frees a large one off its
/// main thread, and so that a user who may not `RENAME` is refused before anything changed.
/// Every staging name is checked before anything is written: a script stopped halfway by an
/// error would leave its first writes.
///
/// `rev` changes with every patch of the generation (a random token: `SET` needs no
/// permission beyond those the bot already has), so that what a replica keeps of it in memory
/// (its metadata, the "did you mean" index) is read again after one. An incremental refresh
/// expects the epoch its replica wrote; a full refresh in place expects the revision it
/// compared against, and sets a new epoch. A key that exists is rewritten with `XX KEEPTTL`,
/// keeping the generation's TTL, and only a new one is given the TTL (`PX`): parsing `PX`
/// for every write held Redis about a third longer (6,000 writes: 15 ms against 11 ms on the
/// build machine, `EVALSHA` time in `INFO commandstats`). Likewise a record's hash keeps its
/// TTL, and only a hash a field was added to is checked for one (a hash the patch created has
/// none yet). A digest (`g`) moves by the difference given unless it is unknown (`?`), and
/// goes when it reaches 0 (a key without entries); the digests are written after the other
/// writes, a thousand to an `HSET`, and added with Redis' `struct` library (an `HSET` each
/// and the additions in hex held Redis about 25 ms more for the digests an incremental
/// refresh of 1% of the bench org moves).
const PATCH_SCRIPT_BODY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[3] then return 0 end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
for i = 6, #ARGV, 4 do
  if ARGV[i] == 'm' and redis.call('EXISTS', KEYS[tonumber(ARGV[i + 3])]) == 0 then return 0 end
end
local ttl = ARGV[1]
local zero = string.rep('\0', 16)
local names = {}
local fresh = {}
local moved = {}
for i = 6, #ARGV, 4 do
  local op, key, field, value = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'h' then
    if redis.call('HSET', key, field, value) == 1 then fresh[key] = true end
  elseif op == 'x' then
    redis.call('HDEL', key, field)
  elseif op == 'g' then
    local list = moved[key]
    if not list then
      list = {}
      moved[key] = list
    end
    list[#list + 1] = field
    list[#list + 1] = value
  elseif op == 's' then
    if not redis.call('SET', key, value, 'XX', 'KEEPTTL') then
      redis.call('SET', key, value, 'PX', ttl)
    end
  elseif op == 'm' then
    if redis.call('EXISTS', key) == 1 then
      local old = KEYS[tonumber(field)]
      redis.call('RENAME', key, old)
      redis.call('RENAME', KEYS[tonumber(value)], key)
      redis.call('UNLINK', old)
    else
      redis.call('RENAME', KEYS[tonumber(value)], key)
    end
    redis.call('PEXPIRE', key, ttl)
  elseif op == 'd' then
    redis.call('UNLINK', key)
  elseif op == 'a' then
    redis.call('ZADD', key, 0, value)
    names[key] = true
  elseif op == 'r' then
    redis.call('ZREM', key, value)
  end
end
-- The digests, per hash, a thousand at a time written by one HSET, not an HSET each.
for digests, list in pairs(moved) do
  for first = 1, #list, 2000 do
    local set, gone = {}, {}
    for i = first, math.min(first + 1999, #list), 2 do
      local was = redis.call('HGET', digests, list[i]) or zero
      if was ~= '?' then
        local sum = add128(was, list[i + 1])
        if sum == zero then
          gone[#gone + 1] = list[i]
        else
          set[#set + 1] = list[i]
          set[#set + 1] = sum
        end
      end
    end
    if #set > 0 then redis.call('HSET', digests, unpack(set)) end
    if #gone > 0 then redis.call('HDEL', digests, unpack(gone)) end
  end
  fresh[digests] = true
end
for key in pairs(names) do redis.call('PEXPIRE', key, ttl) end
for key in pairs(fresh) do
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ttl) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl) end
return 1
"#;

/// Digests one script after a patch moves: the digests of an incremental refresh of 1% of
/// the bench org (about 2,600) in the patch's own script held Redis 5–12 ms longer, and
/// scripts of 300 showed in the benchmark's slow log at 2–5 ms; 100 to a script.
const DIGESTS_PER_SCRIPT: usize = 100;

/// A value this large is written before the script, under a staging name of its key
/// (`GenerationKeys::staging`), and renamed into place by it: the "did you mean" index, the audit's
/// subjects and the group graph (megabytes each in a large org; a few kilobytes in the tests'
/// orgs, so that they take this path too). A user's or a context's record is far smaller.
const STAGED_BYTES: usize = 4 << 10;
/// The script was refused a command: by the Redis user's ACL (`NOPERM` outside a script;
/// inside one, Redis 7 says "The user executing the script can't run this command"), or by
/// the server, which has it disabled (`rename-command RENAME ""`, as some managed Redis
/// services run: "unknown command" outside a script; inside one, "Unknown Redis command
/// called from script" in Redis 7, "… from Lua script" in Redis 6).
pub(super) fn refused(err: &redis::RedisError) -> bool {
    let message = err.to_string();
    let lower = message.to_lowercase();
    err.code() == Some("NOPERM")
        || message.contains("NOPERM")
        || message.contains("can't run this command")
        || lower.contains("unknown redis command called from")
        || lower.contains("unknown command")
}

/// The index in KEYS (from 5: the script's first four are fixed) of `key`, added when new.
fn index_of<'a>(
    index: &mut FxHashMap<&'a str, usize>,
    keys: &mut Vec<&'a str>,
    key: &'a str,
) -> usize {
    let next = 5 + keys.len();
    *index.entry(key).or_insert_with(|| {
        keys.push(key);
        next
    })
}

static PATCH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!("{}{PATCH_SCRIPT_BODY}", digest::ADD_LUA))
});

/// What a patch expects of the generation, and what it changes besides its writes.
#[derive(Debug, Default)]
pub(super) struct Guard<'a> {
    /// The epoch the generation must have (an incremental refresh's); empty: any.
    pub epoch: &'a str,
    /// The revision it must have (a full refresh in place: none written since it compared);
    /// empty: any.
    pub rev: &'a str,
    /// The epoch it gets; empty: unchanged.
    pub new_epoch: &'a str,
    /// The revision stays (a script that moves only digests: nothing a reader reads).
    pub keep_rev: bool,
}

impl RedisStore {
    /// Runs the patch script for `ops`. With a staging token, the large values are written
    /// first under staging names of that token and renamed into place by the script, before
    /// any other write. When the script writes nothing (or fails), the staged keys are
    /// unlinked: those of a `Replace` too.
    pub(super) async fn apply(
        &self,
        conn: &mut super::Conn,
        gk: &GenerationKeys,
        ops: &[PatchOp],
        staging: Option<&str>,
        guard: &Guard<'_>,
    ) -> Result<Result<i64, redis::RedisError>, StoreError> {
        let staged: Vec<String> = ops
            .iter()
            .map(|op| match (op, staging) {
                (PatchOp::Set(key, value), Some(token)) if value.len() >= STAGED_BYTES => {
                    GenerationKeys::staging(key, token)
                }
                (PatchOp::Replace(_, name), _) => name.clone(),
                _ => String::new(),
            })
            .collect();
        for (op, name) in ops.iter().zip(&staged) {
            if let PatchOp::Set(_, value) = op {
                if !name.is_empty() {
                    let _: () = redis::AsyncCommands::set_options(
                        conn,
                        name,
                        value.as_slice(),
                        super::expiring(STAGING_TTL.as_millis() as u64),
                    )
                    .await?;
                }
            }
        }
        let applied = self.invoke_patch(conn, gk, ops, &staged, guard).await?;
        if !matches!(applied, Ok(1)) {
            let names: Vec<&String> = staged.iter().filter(|n| !n.is_empty()).collect();
            for chunk in names.chunks(super::publish::UNLINK_KEYS) {
                let _: () = redis::cmd("UNLINK").arg(chunk).query_async(conn).await?;
            }
        }
        Ok(applied)
    }

    /// The patch script itself, its large values staged as `staged` names (empty: none).
    async fn invoke_patch(
        &self,
        conn: &mut super::Conn,
        gk: &GenerationKeys,
        ops: &[PatchOp],
        staged: &[String],
        guard: &Guard<'_>,
    ) -> Result<Result<i64, redis::RedisError>, StoreError> {
        let mut invocation = PATCH.key(gk.meta());
        invocation
            .key(gk.successor())
            .key(gk.rev())
            .key(gk.epoch())
            .arg(self.ttl_ms)
            .arg(if guard.keep_rev {
                String::new()
            } else {
                random_token()
            })
            .arg(guard.epoch)
            .arg(guard.rev)
            .arg(guard.new_epoch);
        // Where each renamed key's old value goes for a moment (see the script).
        let replaced: Vec<String> = ops
            .iter()
            .zip(staged)
            .map(|(op, name)| match op {
                PatchOp::Set(key, _) | PatchOp::Replace(key, _) if !name.is_empty() => {
                    format!("{key}{REPLACED_SUFFIX}")
                }
                _ => String::new(),
            })
            .collect();
        let mut index: FxHashMap<&str, usize> = FxHashMap::default();
        let mut keys: Vec<&str> = Vec::new();
        // The renames first (each key of theirs is named by no other write): a user who may
        // not RENAME is refused before anything is written.
        let all = || ops.iter().zip(staged.iter().zip(&replaced));
        let order = all()
            .filter(|(_, (name, _))| !name.is_empty())
            .chain(all().filter(|(_, (name, _))| name.is_empty()));
        for (op, (name, old)) in order {
            let (key, field) = match op {
                PatchOp::Set(k, _)
                | PatchOp::Delete(k)
                | PatchOp::Replace(k, _)
                | PatchOp::AddMember(k, _)
                | PatchOp::RemoveMember(k, _) => (k.as_str(), ""),
                PatchOp::SetField(e, _) | PatchOp::DeleteField(e) => {
                    (e.key.as_str(), e.field.as_str())
                }
                PatchOp::AddToDigest(k, name, _) => (k.as_str(), name.as_str()),
            };
            let at = index_of(&mut index, &mut keys, key);
            let (staged_at, old_at);
            let mut field = field;
            let delta;
            let (code, value): (&str, &[u8]) = match op {
                // A replacement's staging name is never empty.
                PatchOp::Set(..) | PatchOp::Replace(..) if !name.is_empty() => {
                    staged_at = index_of(&mut index, &mut keys, name).to_string();
                    old_at = index_of(&mut index, &mut keys, old).to_string();
                    field = &old_at;
                    ("m", staged_at.as_bytes())
                }
                PatchOp::Replace(..) => ("d", b""),
                PatchOp::AddToDigest(_, _, d) => {
                    delta = digest::bytes(*d);
                    ("g", delta.as_slice())
                }
                PatchOp::Set(_, v) => ("s", v),
                PatchOp::Delete(_) => ("d", b""),
                PatchOp::SetField(_, v) => ("h", v),
                PatchOp::DeleteField(_) => ("x", b""),
                PatchOp::AddMember(_, m) => ("a", m),
                PatchOp::RemoveMember(_, m) => ("r", m),
            };
            invocation.arg(code).arg(at).arg(field).arg(value);
        }
        for key in keys {
            invocation.key(key);
        }
        let timeout = self.publish_response_timeout;
        tokio::time::timeout(timeout, invocation.invoke_async(conn))
            .await
            .map_err(|_| StoreError::Unavailable("Redis did not answer while patching".into()))
    }

    /// Rewrites what differs between `old` (what `generation` was written from) and `new`,
    /// in one atomic step, if `generation` is still current.
    pub async fn patch(
        &self,
        generation: &GenerationRef,
        old: Arc<Org>,
        new: Arc<Org>,
    ) -> Result<PatchOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let current = self.current_generation(&mut conn).await;
        match current {
            Ok(current) if current == generation.id => {}
            Ok(_) | Err(StoreError::NoSnapshot) => return Ok(PatchOutcome::Stale),
            Err(err) => return Err(err),
        }
        let gk = self.keys.generation(&generation.id);
        let guard = Guard {
            epoch: &generation.epoch,
            ..Guard::default()
        };
        let ops = {
            let gk = gk.clone();
            crate::background::low_priority(move || generation_patch(&old, &new, &gk))
                .await
                .ok_or_else(|| corrupt("comparing the org with the cached one", "failed"))?
        };
        if ops.len() > MAX_PATCH_OPS {
            return Ok(PatchOutcome::TooLarge(ops.len()));
        }
        // The digests' differences go in short scripts after the patch (see
        // `DIGESTS_PER_SCRIPT`); until the last, `digests-pending` says they lag behind.
        let (moved, mut ops): (Vec<PatchOp>, Vec<PatchOp>) = ops
            .into_iter()
            .partition(|op| matches!(op, PatchOp::AddToDigest(..)));
        if !moved.is_empty() {
            ops.push(PatchOp::Set(gk.digests_pending(), b"1".to_vec()));
        }
        let staging = !self.rename_refused.load(Ordering::Relaxed);
        let token = random_token();
        let started = std::time::Instant::now();
        let applied = match self
            .apply(&mut conn, &gk, &ops, staging.then_some(&token), &guard)
            .await?
        {
            Err(err) if staging && refused(&err) => {
                // Nothing was written: the renames come first in the script. Said once per
                // process; every patch then sends its large values through the script.
                self.rename_refused.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = %err,
                    "Redis refuses RENAME (the user's ACL, or the server disables it): patches send their large values through the script, which holds Redis longer (docs/redis.md, \"An ACL user\")"
                );
                self.apply(&mut conn, &gk, &ops, None, &guard).await??
            }
            applied => applied?,
        };
        log_patch(&ops, started.elapsed());
        if applied != 1 {
            return Ok(PatchOutcome::Stale);
        }
        self.move_digests(&mut conn, &gk, &generation.epoch, moved)
            .await?;
        Ok(PatchOutcome::Applied(content_writes(&gk, &ops)))
    }

    /// Adds a patch's differences to the digests, [`DIGESTS_PER_SCRIPT`] to a script, and
    /// deletes `digests-pending` with the last. If the epoch moved meanwhile (the lock lost to
    /// another replica's full refresh), the rest is left: `digests-pending` stays, and the next
    /// full refresh publishes a new generation rather than trust the digests.
    async fn move_digests(
        &self,
        conn: &mut super::Conn,
        gk: &GenerationKeys,
        epoch: &str,
        moved: Vec<PatchOp>,
    ) -> Result<(), StoreError> {
        let guard = Guard {
            epoch,
            keep_rev: true,
            ..Guard::default()
        };
        let chunks: Vec<&[PatchOp]> = moved.chunks(DIGESTS_PER_SCRIPT).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let mut ops = chunk.to_vec();
            if n + 1 == chunks.len() {
                ops.push(PatchOp::Delete(gk.digests_pending()));
            }
            if self.apply(conn, gk, &ops, None, &guard).await?? != 1 {
                tracing::warn!(
                    "the generation changed while its digests were written; the next full refresh publishes a new one"
                );
                break;
            }
        }
        Ok(())
    }
}

/// How many of `ops` write the generation's content: not its digests.
pub(super) fn content_writes(gk: &GenerationKeys, ops: &[PatchOp]) -> usize {
    let (digests, pending) = (gk.all_digests(), gk.digests_pending());
    ops.iter()
        .filter(|op| match op {
            PatchOp::AddToDigest(..) => false,
            PatchOp::SetField(e, _) | PatchOp::DeleteField(e) => !digests.contains(&e.key),
            PatchOp::Set(key, _) | PatchOp::Delete(key) => *key != pending,
            _ => true,
        })
        .count()
}

/// What a patch wrote, by kind, and how long it took (staging the large values and the
/// script, as this process saw it): which writes make a patch hold Redis longer. The large
/// sets (at least [`STAGED_BYTES`]) are staged and renamed unless the user may not RENAME.
fn log_patch(ops: &[PatchOp], took: std::time::Duration) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let (mut sets, mut set_bytes, mut deletes, mut added, mut removed) = (0, 0, 0, 0, 0);
    let (mut large, mut large_bytes, mut replaced, mut digests) = (0, 0, 0, 0);
    for op in ops {
        match op {
            PatchOp::Set(_, value) | PatchOp::SetField(_, value) => {
                sets += 1;
                set_bytes += value.len();
                if value.len() >= STAGED_BYTES {
                    large += 1;
                    large_bytes += value.len();
                }
            }
            PatchOp::Delete(_) | PatchOp::DeleteField(_) => deletes += 1,
            PatchOp::AddMember(..) => added += 1,
            PatchOp::RemoveMember(..) => removed += 1,
            PatchOp::Replace(..) => replaced += 1,
            PatchOp::AddToDigest(..) => digests += 1,
        }
    }
    tracing::debug!(
        sets,
        set_bytes,
        large_sets = large,
        large_set_bytes = large_bytes,
        deletes,
        index_entries_added = added,
        index_entries_removed = removed,
        keys_replaced = replaced,
        digests_moved = digests,
        ms = took.as_millis() as u64,
        "patch applied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Extension, "server error", text.to_owned()))
    }

    #[test]
    fn a_command_refused_by_the_acl_or_disabled_on_the_server_is_told_from_other_errors() {
        for text in [
            "NOPERM User crm has no permissions to run the 'rename' command",
            "ERR The user executing the script can't run this command or subcommand script: 1d6a, on @user_script:1.",
            // Redis 7.0, `rename-command RENAME ""`: inside a script, then outside one.
            "ERR Unknown Redis command called from script script: 1d6a, on @user_script:1.",
            "ERR unknown command 'rename', with args beginning with: 'a' 'b'",
            // Redis 6, inside a script.
            "ERR Error running script (call to f_1d6a): @user_script:1: @user_script: 1: Unknown Redis command called from Lua script",
        ] {
            assert!(refused(&error(text)), "{text}");
        }
        for text in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR Error running script (call to f_1d6a): @user_script:12: attempt to compare nil with number",
            "OOM command not allowed when used memory > 'maxmemory'.",
        ] {
            assert!(!refused(&error(text)), "{text}");
        }
    }
}
