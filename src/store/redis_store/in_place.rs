//! A full refresh in place: the current generation keeps its id, and only the keys whose
//! digest (`store::digest`) differs from what a publish of the org would write are rewritten,
//! each written whole under its staging name and renamed into place by one script, with the
//! new digests and a new epoch. Readers see the generation before the script or after it.
//!
//! A full refresh reads every source to see what deltas cannot (a removed group member, a
//! deleted user's assignment), but the org it reads is mostly the one the cache already
//! holds: at 1M users, rewriting a whole generation took Redis 50–100 ms of CPU time in
//! every 100 ms for three to four seconds; in place, only what changed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};

use super::patch::{Guard, PatchOp, digest_entry, refused};
use super::publish::{Batch, DigestSink, Sink, generation_writes};
use super::{RedisStore, corrupt};
use crate::domain::Org;
use crate::store::digest::{self, Digests};
use crate::store::keys::{Entry, GenerationKeys, STAGING_TTL};
use crate::store::{GenerationRef, StoreError, random_token};

/// At most this many keys are rewritten in place (a sixth of a generation's 6,144 hashes);
/// with more, a new generation is published instead: the script would hold Redis longer (an
/// `UNLINK` and a `RENAME` per key), and the writing would cost about as much as a publish.
pub const MAX_IN_PLACE_KEYS: usize = 1_024;

/// What the comparison reads of the generation first: whether its `meta`, `successor` and
/// `digests-pending` exist, its revision and its epoch.
type State = (bool, bool, bool, Option<String>, Option<String>);

/// How many times the comparison starts again when a re-check wrote meanwhile.
const ATTEMPTS: usize = 2;

/// Where a full refresh in place sends a walk of the generation: the keys that differ to
/// their staging names, the strings among them kept for the script.
struct Staging<'a> {
    wanted: FxHashSet<String>,
    /// This attempt's staging token (`GenerationKeys::staging`).
    token: &'a str,
    batch: Batch<'a>,
    strings: Vec<(String, Vec<u8>)>,
}

impl Sink for Staging<'_> {
    fn wants(&self, key: &str) -> bool {
        self.wanted.contains(key)
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        if self.wanted.contains(&key) {
            self.strings.push((key, value));
        }
        Ok(())
    }
    fn hset(&mut self, entry: Entry, value: Vec<u8>) -> Result<(), StoreError> {
        let staged = Entry {
            key: GenerationKeys::staging(&entry.key, self.token),
            field: entry.field,
        };
        self.batch.hset(staged, value)
    }
    fn zadd(&mut self, key: &str, members: &[Vec<u8>]) -> Result<(), StoreError> {
        self.batch
            .zadd(&GenerationKeys::staging(key, self.token), members)
    }
    fn complete(&mut self, key: &str) -> Result<(), StoreError> {
        self.batch
            .complete(&GenerationKeys::staging(key, self.token))
    }
}

/// The names whose digest in `stored` (the generation's `digests`) is not the one `wanted`
/// (what a publish would write): unknown ones (`?`) included, sorted.
pub fn differing(stored: &FxHashMap<String, Vec<u8>>, wanted: &Digests) -> Vec<String> {
    let mut names: Vec<String> = stored
        .iter()
        .filter(|(name, raw)| digest::parse(raw) != Some(wanted.get(name)))
        .map(|(name, _)| name.clone())
        .chain(
            wanted
                .iter()
                .filter(|(name, _)| !stored.contains_key(*name))
                .map(|(name, _)| name.to_owned()),
        )
        .collect();
    names.sort();
    names
}

/// The script's writes for the keys in `differ`: a string set (or deleted), a key staged
/// with `token` renamed into place (or deleted when it has no entries now), and each one's
/// new digest.
fn switch_ops(
    gk: &GenerationKeys,
    differ: &[String],
    wanted: &Digests,
    strings: Vec<(String, Vec<u8>)>,
    token: &str,
) -> Vec<PatchOp> {
    let mut strings: FxHashMap<String, Vec<u8>> = strings.into_iter().collect();
    let mut ops = Vec::with_capacity(2 * differ.len());
    for name in differ {
        let key = gk.key_of(name);
        let d = wanted.get(name);
        ops.push(if let Some(value) = strings.remove(&key) {
            PatchOp::Set(key.clone(), value)
        } else if d == 0 {
            PatchOp::Delete(key.clone())
        } else {
            PatchOp::Replace(key.clone(), GenerationKeys::staging(&key, token))
        });
        ops.push(if d == 0 {
            PatchOp::DeleteField(digest_entry(gk, &key))
        } else {
            PatchOp::SetField(digest_entry(gk, &key), digest::bytes(d))
        });
    }
    ops
}

impl RedisStore {
    /// A full refresh's writes when the current generation differs from `org` in at most
    /// [`MAX_IN_PLACE_KEYS`] keys: those keys rewritten in place, atomically, and the
    /// generation as this replica now knows it, with how many keys were rewritten. `None`: no
    /// generation, digests that lag behind (`digests-pending`), too many differences, a
    /// re-check writing each time it tried, or a Redis user that may not `RENAME`; the caller
    /// publishes a new generation.
    pub async fn rewrite_in_place(
        &self,
        org: Arc<Org>,
    ) -> Result<Option<(GenerationRef, usize)>, StoreError> {
        if self.rename_refused.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let Some(id): Option<String> =
            redis::AsyncCommands::get(&mut conn, self.keys.current()).await?
        else {
            return Ok(None);
        };
        let gk = self.keys.generation(&id);
        let wanted = {
            let (org, gk) = (org.clone(), gk.clone());
            crate::background::low_priority(move || {
                let mut sink = DigestSink {
                    gk: &gk,
                    digests: Digests::default(),
                };
                generation_writes(&org, &gk, &mut sink).map(|()| sink.digests)
            })
            .await
            .ok_or_else(|| corrupt("computing the digests of the org", "failed"))??
        };
        for _ in 0..ATTEMPTS {
            // The revision before the digests: a patch between the two moves it, and the
            // script below then refuses.
            let (meta, successor, pending, rev, epoch): State = redis::pipe()
                .exists(gk.meta())
                .exists(gk.successor())
                .exists(gk.digests_pending())
                .get(gk.rev())
                .get(gk.epoch())
                .query_async(&mut conn)
                .await?;
            let (true, false, false, Some(rev), Some(epoch)) =
                (meta, successor, pending, rev, epoch)
            else {
                return Ok(None);
            };
            // One hash at a time: each is a short command (about 1,000 fields at most).
            let mut stored: FxHashMap<String, Vec<u8>> = FxHashMap::default();
            for key in gk.all_digests() {
                let part: FxHashMap<String, Vec<u8>> =
                    redis::AsyncCommands::hgetall(&mut conn, key).await?;
                stored.extend(part);
            }
            let differ = differing(&stored, &wanted);
            if differ.is_empty() {
                return Ok(Some((GenerationRef { id, epoch }, 0)));
            }
            if differ.len() > MAX_IN_PLACE_KEYS {
                tracing::debug!(
                    keys = differ.len(),
                    "too many keys differ to rewrite in place; publishing a new generation"
                );
                return Ok(None);
            }
            let keys: FxHashSet<String> = differ.iter().map(|n| gk.key_of(n)).collect();
            // A token of this attempt's own: no other writer (one that lost the refresh lock,
            // say) writes under these staging names.
            let token = random_token();
            let strings = self
                .stage(&mut conn, org.clone(), &gk, keys, token.clone())
                .await?;
            let ops = switch_ops(&gk, &differ, &wanted, strings, &token);
            let new_epoch = random_token();
            let guard = Guard {
                rev: &rev,
                new_epoch: &new_epoch,
                ..Guard::default()
            };
            // The script's staged keys are unlinked when it writes nothing.
            match self
                .apply(&mut conn, &gk, &ops, Some(&token), &guard)
                .await?
            {
                Ok(1) => {
                    tracing::debug!(
                        keys = differ.len(),
                        "full refresh rewrote the generation in place"
                    );
                    return Ok(Some((
                        GenerationRef {
                            id,
                            epoch: new_epoch,
                        },
                        differ.len(),
                    )));
                }
                // A re-check wrote meanwhile (or the generation went): compare again.
                Ok(_) => continue,
                Err(err) if refused(&err) => {
                    self.rename_refused.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        error = %err,
                        "Redis refuses RENAME (the user's ACL, or the server disables it): full refreshes publish a new generation each time (docs/redis.md, \"An ACL user\")"
                    );
                    return Ok(None);
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(None)
    }

    /// Writes `keys` as a publish of `org` would, under their staging names of `token`,
    /// which expire within `STAGING_TTL` unless the script renames them into place; returns
    /// the strings among them.
    async fn stage(
        &self,
        conn: &mut super::Conn,
        org: Arc<Org>,
        gk: &GenerationKeys,
        keys: FxHashSet<String>,
        token: String,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<redis::Pipeline>(4);
        let gk = gk.clone();
        let writer = crate::background::low_priority(move || {
            let mut sink = Staging {
                wanted: keys,
                token: &token,
                batch: Batch::new(STAGING_TTL.as_millis() as u64, &tx),
                strings: Vec::new(),
            };
            generation_writes(&org, &gk, &mut sink)?;
            sink.batch.flush()?;
            Ok::<_, StoreError>(sink.strings)
        });
        self.send_pipelines(conn, &mut rx).await?;
        writer
            .await
            .ok_or_else(|| corrupt("staging the keys that differ", "failed"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_differs_when_its_digest_is_another_unknown_or_missing_on_either_side() {
        let mut wanted = Digests::default();
        wanted.add("user:1", 5);
        wanted.add("user:2", 7);
        wanted.add("user:3", 9);
        wanted.add("names", 11);
        let stored: FxHashMap<String, Vec<u8>> = [
            ("user:1", digest::bytes(5)),
            ("user:2", digest::bytes(8)),
            ("names", digest::UNKNOWN.as_bytes().to_vec()),
            ("ctx:4", digest::bytes(1)),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_owned(), d))
        .collect();
        assert_eq!(
            differing(&stored, &wanted),
            ["ctx:4", "names", "user:2", "user:3"]
        );
    }
}
