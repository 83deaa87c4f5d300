//! The Redis key schema, in one place. Every key starts with the configured prefix, so that
//! several installations (or tests) can share one server.
//!
//! The data of one cache format lives under `{prefix}v{format}:` (its namespace): the current
//! generation, the generations, the per-source status and the refresh lock. A replica reads
//! and writes only the namespace of the format it was built with ([`FORMAT`]), so during a
//! rolling upgrade old and new replicas each refresh and answer from their own data. Every key
//! of a namespace carries a TTL ([`FORMAT_TTL`]) that each refresh renews: the namespace of a
//! format no replica runs any more expires by itself. Slack event ids, job claims and job
//! state stay outside, shared by every version: an event must be answered once, and a
//! periodic job (the digest) run by one replica, whichever versions are running.
//!
//! A refresh writes a complete generation under `gen:{g}:`, then points `current` at it:
//! readers see the old generation or the new one, never a mix. The previous generation is
//! kept until the next publish, so a reader that looked up `current` just before the switch
//! still finds its keys, and learns from its `successor` key which generation replaced it.
//!
//! The braces are a Redis Cluster hash tag: every key of one generation hashes to one slot,
//! so a check's script, a pipeline of a publish or an audit, all touch one slot (a Cluster
//! refuses anything else). Keys outside a generation (`current`, the lock, event ids, claims)
//! are each read or written alone. The prefix therefore holds no braces (`Keys::new`).

use std::time::Duration;

use crate::domain::SfId;

/// The version of what the cache stores: bump it whenever the encoding of any key of a
/// generation (records, metadata, indexes, the suggestions' binary form) or what the read
/// script expects changes. Replicas of another format never read this one's keys.
///
/// 2: `suggestions-digest` is written with `suggestions`, and a replica keeps the "did you
/// mean" index it built while the digest is the same; a writer of format 1 would rewrite the
/// index without it, and readers would keep an index that no longer matches.
pub const FORMAT: u32 = 2;

/// How long a format's namespace lives without a refresh: far longer than the refresh
/// period (15 minutes by default), so that a replica whose refreshes fail for days keeps
/// answering from its last data; short enough that the data of a format no replica runs any
/// more is gone within a week.
pub const FORMAT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// `{prefix}v{format}:`
    namespace: String,
}

impl Keys {
    /// `Err` says what to change when the prefix holds a brace: it would move the hash tag.
    pub fn new(prefix: &str, format: u32) -> Result<Self, String> {
        if prefix.contains(['{', '}']) {
            return Err(format!(
                "REDIS_KEY_PREFIX {prefix:?} holds a brace; remove it: the store puts its own Redis Cluster hash tags in the keys"
            ));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
            namespace: format!("{prefix}v{format}:"),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the keys of this cache format live: every key below it carries a TTL.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The id of the generation readers use.
    pub fn current(&self) -> String {
        format!("{}current", self.namespace)
    }

    /// Generations written (sorted set, score = start time in ms), for clean-up.
    pub fn generations(&self) -> String {
        format!("{}generations", self.namespace)
    }

    /// Per-source status (hash: source -> JSON).
    pub fn status(&self) -> String {
        format!("{}status", self.namespace)
    }

    pub fn refresh_lock(&self) -> String {
        format!("{}refresh-lock", self.namespace)
    }

    /// Slack event ids already handled (deduplication of retries), shared by every format.
    pub fn event(&self, event_id: &str) -> String {
        format!("{}event:{event_id}", self.prefix)
    }

    /// Who runs a periodic job (the audit digest) this period, shared by every format.
    pub fn claim(&self, name: &str) -> String {
        format!("{}claim:{name}", self.prefix)
    }

    /// A periodic job's memory (the audit digest's last rows), kept across restarts and
    /// shared by every format, like the claim.
    pub fn state(&self, name: &str) -> String {
        format!("{}state:{name}", self.prefix)
    }

    /// Follow-up ids by due time (sorted set, score = due time in ms). Every follow-up key
    /// carries the hash tag `{followups}` (one Cluster slot for their scripts) and is shared
    /// by every format, like the claims: any replica runs a due follow-up.
    pub fn follow_ups_due(&self) -> String {
        format!("{}{{followups}}:due", self.prefix)
    }

    /// One follow-up's record (JSON); with an empty id, the prefix of every record.
    pub fn follow_up(&self, id: &str) -> String {
        format!("{}{{followups}}:rec:{id}", self.prefix)
    }

    /// The ids of one person's pending follow-ups (set), for the per-person limit.
    pub fn follow_ups_of_user(&self, team: &str, user: &str) -> String {
        format!("{}{{followups}}:user:{team}:{user}", self.prefix)
    }

    /// The ids of one workspace's pending follow-ups (set), for the per-workspace limit.
    pub fn follow_ups_of_team(&self, team: &str) -> String {
        format!("{}{{followups}}:team:{team}", self.prefix)
    }

    pub fn generation(&self, generation: &str) -> GenerationKeys {
        GenerationKeys {
            base: format!("{}gen:{{{generation}}}:", self.namespace),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerationKeys {
    base: String,
}

impl GenerationKeys {
    /// Every key of the generation matches this (for deletion).
    pub fn pattern(&self) -> String {
        format!("{}*", self.base)
    }
    pub fn meta(&self) -> String {
        format!("{}meta", self.base)
    }
    /// How many times an incremental refresh (or a re-check) patched this generation in
    /// place: what a replica keeps of the generation in memory is read again when it moves.
    pub fn rev(&self) -> String {
        format!("{}rev", self.base)
    }
    /// The id of the generation that replaced this one, set when it was published.
    pub fn successor(&self) -> String {
        format!("{}successor", self.base)
    }
    pub fn user(&self, id: SfId) -> String {
        format!("{}user:{}", self.base, id.as_str15())
    }
    pub fn context(&self, id: SfId) -> String {
        format!("{}ctx:{}", self.base, id.as_str15())
    }
    /// What [`GenerationKeys::user`] puts before the 15-character id (the check's script
    /// reads a username's user with it).
    pub fn user_prefix(&self) -> String {
        format!("{}user:", self.base)
    }
    /// What [`GenerationKeys::context`] puts before the 15-character id.
    pub fn context_prefix(&self) -> String {
        format!("{}ctx:", self.base)
    }
    /// Lower-cased username -> user id.
    pub fn login(&self, lower: &str) -> String {
        format!("{}login:{lower}", self.base)
    }
    /// Lower-cased email -> JSON list of user ids.
    pub fn email(&self, lower: &str) -> String {
        format!("{}email:{lower}", self.base)
    }
    /// Sorted set of `word \0 id \0 name` for name search by prefix.
    pub fn names(&self) -> String {
        format!("{}names", self.base)
    }
    /// Sorted set of `lower-cased username \0 id`, for sandbox variants by prefix.
    pub fn usernames(&self) -> String {
        format!("{}usernames", self.base)
    }
    /// Every user's id, username and name, sorted for "did you mean" (`suggest::Directory`
    /// in its binary form; read only when nothing matched).
    pub fn suggestions(&self) -> String {
        format!("{}suggestions", self.base)
    }
    /// A digest of [`Self::suggestions`]' bytes, written with them: a replica keeps what it
    /// built from them while the digest is the same, across patches and generations.
    pub fn suggestions_digest(&self) -> String {
        format!("{}suggestions-digest", self.base)
    }
    /// The group nesting and role tree (see `records::GroupGraph`).
    pub fn group_graph(&self) -> String {
        format!("{}group-graph", self.base)
    }
    /// Who an audit looks at (see `redis_store::audit::AuditSubjects`).
    pub fn audit_subjects(&self) -> String {
        format!("{}audit-subjects", self.base)
    }
    pub fn ae_user(&self, bu: usize, id: u64) -> String {
        format!("{}ae:{bu}:id:{id}", self.base)
    }
    /// Lower-cased email -> JSON list of AE users of that business unit.
    pub fn ae_email(&self, bu: usize, lower: &str) -> String {
        format!("{}ae:{bu}:email:{lower}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;

    use super::*;

    #[test]
    fn every_key_of_a_generation_hashes_to_one_cluster_slot_and_generations_spread() {
        let keys = Keys::new("crm-username:", FORMAT).unwrap();
        let id = SfId::parse("005Ak00000SAMS1").unwrap();
        let slot_of = |generation: &str| {
            let gk = keys.generation(generation);
            let all = [
                gk.meta(),
                gk.successor(),
                gk.rev(),
                gk.user(id),
                gk.context(id),
                gk.login("sam.sales@acme.com"),
                gk.email("sam.sales@acme.com"),
                gk.names(),
                gk.usernames(),
                gk.suggestions(),
                gk.suggestions_digest(),
                gk.group_graph(),
                gk.audit_subjects(),
                gk.ae_user(2, 1003),
                gk.ae_email(0, "sam.sales@acme.com"),
            ];
            let slots: Vec<Slot> = all.iter().map(Slot::for_key).collect();
            assert!(slots.iter().all(|s| *s == slots[0]), "{all:?}: {slots:?}");
            slots[0]
        };
        let slots: std::collections::HashSet<Slot> = (0..20)
            .map(|n| slot_of(&format!("1768478400000-{n:016x}")))
            .collect();
        assert!(
            slots.len() > 10,
            "generations land on {} slots",
            slots.len()
        );
    }

    #[test]
    fn the_prefixes_the_checks_script_follows_make_the_same_keys_as_a_publish() {
        let gk = Keys::new("crm-username:", FORMAT)
            .unwrap()
            .generation("1768478400000-00000000000000aa");
        let id = SfId::parse("005Ak00000SAMS1AAA").unwrap();
        assert_eq!(
            format!("{}{}", gk.user_prefix(), id.as_str15()),
            gk.user(id)
        );
        assert_eq!(
            format!("{}{}", gk.context_prefix(), id.as_str15()),
            gk.context(id)
        );
    }

    #[test]
    fn a_format_has_its_own_namespace_and_events_and_claims_are_shared() {
        let (old, new) = (Keys::new("crm:", 1).unwrap(), Keys::new("crm:", 2).unwrap());
        assert_eq!(old.current(), "crm:v1:current");
        assert_eq!(new.current(), "crm:v2:current");
        assert_eq!(new.refresh_lock(), "crm:v2:refresh-lock");
        assert_eq!(new.status(), "crm:v2:status");
        assert_eq!(new.generation("g").meta(), "crm:v2:gen:{g}:meta");
        assert_eq!(old.event("Ev1"), new.event("Ev1"));
        assert_eq!(old.claim("digest"), new.claim("digest"));
        assert_eq!(old.state("digest"), new.state("digest"));
        assert_eq!(new.event("Ev1"), "crm:event:Ev1");
    }
}
