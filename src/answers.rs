//! The replies this replica gave to recent checks, kept for the small org each was made from.
//!
//! The store's read cache hands out the same `Arc<Org>` for a query until any writer changes
//! the data it was read from (a new generation, a patch, a re-check's rewrite, on any
//! replica). The diagnosis is a pure function of the query, that org and the clock, and the
//! clock matters only while a user's change is recent (`diagnose::depends_on_time`). So a
//! check asked again with the same text, on the same org, when the clock did not matter, has
//! the same reply: it is served from here, skipping the diagnosis, the rendering and the JSON
//! writing (about half of a repeated check's CPU time; BENCHMARKS.md).
//!
//! Hand-written rather than an LRU crate: a map under one lock, emptied when full, as the read
//! cache is; the entries are cheap to make again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use rustc_hash::FxHashMap;

use crate::domain::{Diagnosis, Org};

/// Replies kept at most; past it the memo starts again empty.
const MAX_ENTRIES: usize = 512;
/// Bytes of replies kept at most (a reply is a few kilobytes; Slack's limits bound it).
const MAX_BYTES: usize = 4 << 20;

/// One reply: the org it was made from (compared by address: the read cache's `Arc`; a
/// `Weak` keeps the address from being reused while the entry lives, not the org itself),
/// the diagnosis (for the metrics each answer counts), and the reply's JSON.
struct Entry {
    org: Weak<Org>,
    diagnosis: Arc<Diagnosis>,
    body: Bytes,
}

#[derive(Default)]
struct Entries {
    map: FxHashMap<String, Entry>,
    bytes: usize,
}

/// Replies by query text (the text is in the reply, so it is the key as typed).
#[derive(Default)]
pub struct AnswerMemo {
    entries: Mutex<Entries>,
    hits: AtomicU64,
}

impl AnswerMemo {
    /// The reply made before for `text` on this very `org`, if any. Counted (here and in
    /// `crm_username_check_reply_memo_total`).
    pub fn get(&self, text: &str, org: &Arc<Org>) -> Option<(Arc<Diagnosis>, Bytes)> {
        let found = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.map.get(text).and_then(|entry| {
                std::ptr::eq(entry.org.as_ptr(), Arc::as_ptr(org))
                    .then(|| (entry.diagnosis.clone(), entry.body.clone()))
            })
        };
        let result = if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            "hit"
        } else {
            "miss"
        };
        metrics::counter!(crate::metrics::CHECK_REPLY_MEMO, "result" => result).increment(1);
        found
    }

    /// Checks replied to from here since this process started.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Keeps the reply to `text` made on `org`. The caller keeps only replies that do not
    /// depend on the clock, made on an org the store keeps (its read cache keeps a query's
    /// small org from the query's second ask on).
    pub fn insert(&self, text: &str, org: &Arc<Org>, diagnosis: Arc<Diagnosis>, body: Bytes) {
        let size = text.len() + body.len();
        if size > MAX_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            // Freed elsewhere: not in this check, nor in the lock (`background::drop_later`).
            crate::background::drop_later(std::mem::take(&mut entries.map));
            entries.bytes = 0;
        }
        let entry = Entry {
            org: Arc::downgrade(org),
            diagnosis,
            body,
        };
        if let Some(old) = entries.map.insert(text.to_owned(), entry) {
            entries.bytes -= text.len() + old.body.len();
        }
        entries.bytes += size;
    }

    /// Replies kept now.
    pub fn kept(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrgSnapshot, Verdict};

    fn org() -> Arc<Org> {
        let empty: OrgSnapshot = serde_json::from_str(
            r#"{"fetched_at": "2026-01-01T00:00:00Z", "salesforce": {"instance_url": "https://acme.my.salesforce.com"}}"#,
        )
        .unwrap();
        Arc::new(Org::new(empty))
    }

    fn diagnosis(query: &str) -> Arc<Diagnosis> {
        Arc::new(Diagnosis {
            query: query.to_owned(),
            verdict: Verdict::Clear,
            salesforce_user: None,
            target: None,
            findings: Vec::new(),
            candidates: Vec::new(),
            candidates_total: 0,
            data_as_of: chrono::DateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn a_reply_is_given_back_only_for_the_same_text_on_the_very_same_org() {
        let memo = AnswerMemo::default();
        let (a, b) = (org(), org());
        memo.insert(
            "jane@acme.com",
            &a,
            diagnosis("jane@acme.com"),
            Bytes::from_static(b"{\"a\":1}"),
        );
        let (d, body) = memo.get("jane@acme.com", &a).expect("same text, same org");
        assert_eq!(
            (d.query.as_str(), &body[..]),
            ("jane@acme.com", &b"{\"a\":1}"[..])
        );
        // An org read again (another generation or revision) is another Arc, even if equal.
        assert!(memo.get("jane@acme.com", &b).is_none());
        // The text as typed is the key: it is written in the reply.
        assert!(memo.get("JANE@acme.com", &a).is_none());
        // A newer reply for the text replaces the older one.
        memo.insert(
            "jane@acme.com",
            &b,
            diagnosis("jane@acme.com"),
            Bytes::from_static(b"{\"b\":2}"),
        );
        assert!(memo.get("jane@acme.com", &a).is_none());
        assert_eq!(&memo.get("jane@acme.com", &b).unwrap().1[..], b"{\"b\":2}");
        assert_eq!(memo.kept(), 1);
    }

    #[test]
    fn an_org_dropped_by_the_read_cache_is_not_mistaken_for_a_new_one_at_its_address() {
        let memo = AnswerMemo::default();
        let a = org();
        memo.insert("q", &a, diagnosis("q"), Bytes::from_static(b"{}"));
        drop(a);
        // The entry's Weak keeps the allocation, so no new org can take its address.
        let fresh: Vec<Arc<Org>> = (0..64).map(|_| org()).collect();
        assert!(fresh.iter().all(|o| memo.get("q", o).is_none()));
    }

    #[test]
    fn the_memo_starts_again_empty_when_full_so_its_memory_is_bounded() {
        let memo = AnswerMemo::default();
        let a = org();
        for i in 0..MAX_ENTRIES {
            memo.insert(
                &format!("user{i}@acme.com"),
                &a,
                diagnosis("q"),
                Bytes::from_static(b"{}"),
            );
        }
        assert_eq!(memo.kept(), MAX_ENTRIES);
        memo.insert(
            "one-more@acme.com",
            &a,
            diagnosis("q"),
            Bytes::from_static(b"{}"),
        );
        assert_eq!(memo.kept(), 1);
        assert!(memo.get("user0@acme.com", &a).is_none());
        assert!(memo.get("one-more@acme.com", &a).is_some());
        // A reply larger than the whole bound is not kept.
        let huge = Bytes::from(vec![b' '; MAX_BYTES + 1]);
        memo.insert("huge", &a, diagnosis("huge"), huge);
        assert!(memo.get("huge", &a).is_none());
    }
}
