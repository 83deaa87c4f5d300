//! The small orgs recent checks read, kept in this process for the generation and revision
//! they were read in. A check asked again is then answered after one cheap round trip
//! (`GET` of its generation's `successor` and `rev`, pipelined: has another replaced it, has anything been
//! rewritten in it?) instead of the reads, the JSON decoding and the indexing.
//!
//! Every write to a generation moves its revision (`rev`): an incremental refresh's patch, a
//! re-check's rewrite of one user (`update_user`), on any replica. A new generation names a
//! successor in the old one. So an entry is used only while its generation is current and its
//! revision unchanged, which the round trip proves for each check; nothing needs to be told.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::asked_before::AskedBefore;
use crate::domain::{Org, Query, Subject, TargetRef};

/// Entries kept at most; past it the cache starts again empty (like the login hints). Each
/// small org carries its own copy of the business units' settings: with 4,096 entries of the
/// bench org's 10 business units, `serve` held about 100 MB.
const MAX_ENTRIES: usize = 512;
/// Estimated bytes kept at most (see [`approx_bytes`]): a bound on memory whatever the
/// queries. Past it the cache starts again empty.
const MAX_BYTES: usize = 8 << 20;
/// A small org above this estimate is not kept: a name query matching hundreds of people is
/// rare, and would crowd out the rest.
const MAX_ENTRY_BYTES: usize = 256 << 10;

/// What a query's reads depend on: its subject and target, not how it was typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ReadKey {
    subject: Subject,
    target: Option<TargetRef>,
}

impl ReadKey {
    pub(super) fn of(query: &Query) -> Self {
        ReadKey {
            subject: query.subject.clone(),
            target: query.target.clone(),
        }
    }
}

/// The cache of one generation and revision.
#[derive(Default)]
pub(super) struct ReadCache {
    generation: String,
    rev: String,
    entries: FxHashMap<ReadKey, Arc<Org>>,
    bytes: usize,
    /// Queries asked before: what a query read is kept from its second ask on
    /// (`asked_before.rs`).
    asked: AskedBefore,
}

/// A rough size of a small org in memory: enough to bound the cache, not an accounting.
fn approx_bytes(org: &Org) -> usize {
    let snapshot = org.snapshot();
    let salesforce = &snapshot.salesforce;
    let ae_users: usize = snapshot.business_units.iter().map(|b| b.users.len()).sum();
    let settings: usize = snapshot
        .business_units
        .iter()
        .map(|b| {
            2_048
                + b.profile_roles.len() * 128
                + [&b.assignment.marketing, &b.assignment.sales]
                    .iter()
                    .map(|s| {
                        (s.users.len()
                            + s.public_groups.len()
                            + s.roles.len()
                            + s.roles_and_subordinates.len())
                            * 128
                    })
                    .sum::<usize>()
        })
        .sum();
    1_024
        + settings
        + salesforce.users.len() * 1_024
        + ae_users * 512
        + salesforce.groups.len() * 256
        + salesforce.roles.len() * 256
        + salesforce.group_members.len() * 64
}

impl ReadCache {
    /// The entry for `key` read in `generation`, whatever its revision (the caller checks
    /// it), with that revision.
    pub(super) fn get(&self, generation: &str, key: &ReadKey) -> Option<(String, Arc<Org>)> {
        if self.generation != generation {
            return None;
        }
        self.entries
            .get(key)
            .map(|org| (self.rev.clone(), org.clone()))
    }

    /// Keeps what `key` read in `generation` at revision `rev`, unless `key` is asked for the
    /// first time. Entries of another generation or revision are dropped first: they can no
    /// longer be used.
    pub(super) fn insert(&mut self, generation: &str, rev: &str, key: ReadKey, org: Arc<Org>) {
        if !self.asked.again(&key) {
            return;
        }
        let size = approx_bytes(&org);
        if size > MAX_ENTRY_BYTES {
            return;
        }
        if self.generation != generation
            || self.rev != rev
            || self.entries.len() >= MAX_ENTRIES
            || self.bytes + size > MAX_BYTES
        {
            // Freeing hundreds of small orgs takes milliseconds: not in this check, nor in
            // the lock the others wait for.
            crate::background::drop_later(std::mem::take(&mut self.entries));
            self.bytes = 0;
            generation.clone_into(&mut self.generation);
            rev.clone_into(&mut self.rev);
        }
        if let Some(old) = self.entries.insert(key, org) {
            self.bytes -= approx_bytes(&old);
        }
        self.bytes += size;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrgSnapshot;

    fn org(users: usize) -> Arc<Org> {
        let mut snapshot: OrgSnapshot = serde_json::from_value(serde_json::json!({
            "fetched_at": "2026-12-01T00:00:00Z",
            "salesforce": {"instance_url": "https://acme.my.salesforce.com"},
        }))
        .unwrap();
        let user = serde_json::from_value(serde_json::json!({
            "id": "005Ak00000SAMS1", "username": "sam@acme.com", "email": "sam@acme.com",
            "name": "Sam Sales", "is_active": true,
        }))
        .unwrap();
        snapshot.salesforce.users = vec![user; users];
        Arc::new(Org::new(snapshot))
    }

    fn key(text: &str) -> ReadKey {
        ReadKey::of(&Query::parse(text).unwrap())
    }

    /// [`ReadCache::insert`] for a query asked before.
    fn asked_again(
        cache: &mut ReadCache,
        generation: &str,
        rev: &str,
        key: ReadKey,
        org: Arc<Org>,
    ) {
        cache.asked.again(&key);
        cache.insert(generation, rev, key, org);
    }

    #[test]
    fn what_a_query_asked_for_the_first_time_read_is_not_kept() {
        let mut cache = ReadCache::default();
        cache.insert("g1", "r1", key("sam@acme.com"), org(1));
        assert_eq!(cache.len(), 0);
        assert!(cache.get("g1", &key("sam@acme.com")).is_none());
        // Typed otherwise, it is the same query.
        cache.insert("g1", "r1", key("Sam@Acme.com"), org(1));
        assert_eq!(cache.len(), 1, "kept from its second ask on");
        assert!(cache.get("g1", &key("sam@acme.com")).is_some());
    }

    #[test]
    fn an_entry_is_found_only_in_its_generation_and_says_its_revision() {
        let mut cache = ReadCache::default();
        let sam = org(1);
        asked_again(&mut cache, "g1", "r1", key("sam@acme.com"), sam.clone());
        let (rev, found) = cache.get("g1", &key("sam@acme.com")).unwrap();
        assert_eq!(rev, "r1");
        assert!(Arc::ptr_eq(&found, &sam));
        assert!(cache.get("g2", &key("sam@acme.com")).is_none());
        assert!(cache.get("g1", &key("bob@acme.com")).is_none());
    }

    #[test]
    fn the_same_subject_typed_differently_shares_an_entry_and_a_target_makes_another() {
        assert_eq!(
            key("Sam@Acme.com"),
            key("<mailto:sam@acme.com|sam@acme.com>")
        );
        assert_ne!(key("sam@acme.com"), key("sam@acme.com for 42"));
    }

    #[test]
    fn a_new_revision_or_generation_drops_every_older_entry() {
        let mut cache = ReadCache::default();
        asked_again(&mut cache, "g1", "r1", key("sam@acme.com"), org(1));
        asked_again(&mut cache, "g1", "r1", key("bob@acme.com"), org(1));
        assert_eq!(cache.len(), 2);
        asked_again(&mut cache, "g1", "r2", key("bob@acme.com"), org(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("g1", &key("sam@acme.com")).is_none());
        assert_eq!(cache.get("g1", &key("bob@acme.com")).unwrap().0, "r2");
        asked_again(&mut cache, "g2", "r2", key("ann@acme.com"), org(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("g1", &key("bob@acme.com")).is_none());
    }

    #[test]
    fn memory_stays_bounded_by_entries_bytes_and_entry_size() {
        let mut cache = ReadCache::default();
        // Too large to keep at all.
        asked_again(
            &mut cache,
            "g1",
            "r1",
            key("big"),
            org(MAX_ENTRY_BYTES / 1_024 + 1),
        );
        assert_eq!(cache.len(), 0);
        // Entries past the count start the cache again empty.
        let small = org(1);
        for n in 0..MAX_ENTRIES {
            asked_again(
                &mut cache,
                "g1",
                "r1",
                key(&format!("user{n}@acme.com")),
                small.clone(),
            );
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        asked_again(
            &mut cache,
            "g1",
            "r1",
            key("one.more@acme.com"),
            small.clone(),
        );
        assert_eq!(cache.len(), 1);
        // Bytes too: entries of 200 users (about 200 KB each) fill 8 MB in about 40.
        let mut cache = ReadCache::default();
        let large = org(200);
        let each = approx_bytes(&large);
        let fit = MAX_BYTES / each;
        for n in 0..fit {
            asked_again(
                &mut cache,
                "g1",
                "r1",
                key(&format!("user{n}@acme.com")),
                large.clone(),
            );
        }
        assert_eq!(cache.len(), fit);
        assert_eq!(cache.bytes, fit * each);
        asked_again(&mut cache, "g1", "r1", key("one.more@acme.com"), large);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes, each);
    }
}
