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
//! readers see the old generation or the new one, never a mix. Incremental refreshes, and
//! full ones that find only some keys changed (by the generation's `digests`), rewrite the
//! current generation in place instead, in one script each. The previous generation is
//! kept until the next publish, so a reader that looked up `current` just before the switch
//! still finds its keys, and learns from its `successor` key which generation replaced it.
//! A generation's records are fields of hashes ([`Entry`], [`BUCKETS`] per kind), so that
//! deleting it names every key it can hold ([`GenerationKeys::all_keys`]) instead of scanning.
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
///
/// 3: a generation's records (users, contexts, usernames, emails, AE users and their emails)
/// are fields of hashes, [`BUCKETS`] per family, instead of a key each.
///
/// 4: a generation carries `digests` (a digest of every key's content, kept up to date by
/// patches) and `epoch` (changed when a full refresh rewrites it in place): a full refresh
/// rewrites only the keys whose digest differs, and a replica whose patch expects another
/// epoch starts again from a full read. A writer of format 3 would leave the digests wrong.
pub const FORMAT: u32 = 4;

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

/// How many hashes each family of records is spread over (see [`Entry`]): at 100,000
/// internal users about 100 records a hash, so that each stays small for Redis to write,
/// read and free, and a generation has a few thousand keys instead of hundreds of
/// thousands. The check's script computes the same buckets ([`BUCKET_LUA`]).
pub const BUCKETS: u32 = 1024;

/// The hash bucket of a record's field: a 31-polynomial over its bytes, modulo 2^32, its
/// upper 16 bits added to it (the low bits alone spread usernames that differ in a digit
/// badly: 9 of 1,024 buckets empty and one with 233 of 100,000), then modulo [`BUCKETS`]. Lua
/// computes it the same way ([`BUCKET_LUA`]), exactly: its numbers are doubles, exact up to
/// 2^53, and no intermediate value passes 2^37.
pub fn bucket(field: &str) -> u32 {
    let h = field
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    ((u64::from(h) + u64::from(h >> 16)) % u64::from(BUCKETS)) as u32
}

/// [`bucket`] as a Lua function, for scripts that name a record's hash themselves.
pub const BUCKET_LUA: &str = r#"
local function bucket(field)
  local h = 0
  for i = 1, #field do h = (h * 31 + string.byte(field, i)) % 4294967296 end
  return (h + math.floor(h / 65536)) % 1024
end
"#;

/// Where one record lives: a field of one of its family's hashes. A generation's records
/// (users, contexts, usernames, emails, AE users and their emails) are spread over
/// [`BUCKETS`] hashes per family rather than one key each: deleting a generation is then one
/// `UNLINK` per hash, each freed by Redis off its main thread, with no `SCAN`; and Redis keeps
/// no key, TTL or object header per record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The hash: `{base}{family}:{bucket}`.
    pub key: String,
    pub field: String,
}

/// What a key's staging name adds to it, before the writer's token
/// ([`GenerationKeys::staging`]). Readers never read such a key; it shares the generation's
/// hash slot.
pub const STAGING_SUFFIX: &str = "~next.";

/// How long a staged key lives unless the script that renames it into place gives it the
/// generation's TTL: staging and the script are seconds apart, so a key a stopped writer left
/// goes by itself, and a writer paused longer finds its staged keys gone and writes nothing.
pub const STAGING_TTL: Duration = Duration::from_secs(10 * 60);

/// The families of records stored as hash fields, by the name their hashes carry.
const FAMILIES: [&str; 6] = ["user", "ctx", "login", "email", "ae-user", "ae-email"];

/// The digests of the keys that are not records' hashes ([`GenerationKeys::digests`]).
const SINGLE_DIGESTS: &str = "keys";

/// The keys of a generation that are not hash buckets.
const SINGLE_KEYS: [&str; 11] = [
    "meta",
    "rev",
    "epoch",
    "digests-pending",
    "successor",
    "names",
    "usernames",
    "suggestions",
    "suggestions-digest",
    "group-graph",
    "audit-subjects",
];

impl GenerationKeys {
    fn single(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }
    fn entry(&self, family: &str, field: String) -> Entry {
        Entry {
            key: format!("{}{family}:{}", self.base, bucket(&field)),
            field,
        }
    }
    /// Every key a generation can hold: its single keys and every hash bucket of every
    /// family, whether or not it exists. Deleting these deletes the generation without a
    /// `SCAN`. Staging names are not among them: each writer's are its own, and expire within
    /// [`STAGING_TTL`] unless renamed into place.
    pub fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            Vec::with_capacity(SINGLE_KEYS.len() + FAMILIES.len() * BUCKETS as usize + 7);
        for name in SINGLE_KEYS {
            keys.push(self.single(name));
        }
        for family in FAMILIES {
            for b in 0..BUCKETS {
                keys.push(format!("{}{family}:{b}", self.base));
            }
        }
        keys.extend(self.all_digests());
        keys
    }
    /// A key's name within its generation (`user:17`, `meta`): how `digests` names it.
    /// `None` for a key of another generation.
    pub fn name_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.base.as_str())
    }
    /// [`Self::name_of`], or the key as it is when it is of another generation: what a
    /// digest is filed under.
    pub fn digest_name<'a>(&self, key: &'a str) -> &'a str {
        self.name_of(key).unwrap_or(key)
    }
    /// The key of a name within this generation ([`Self::name_of`] reversed).
    pub fn key_of(&self, name: &str) -> String {
        self.single(name)
    }
    /// What a key is written under before it is renamed into place, by the writer whose
    /// token is `token` (a random one per patch or per attempt of a full refresh in place):
    /// two writers never share a staging name, so one that lost the refresh lock and wakes
    /// up cannot write into what the other staged.
    pub fn staging(key: &str, token: &str) -> String {
        format!("{key}{STAGING_SUFFIX}{token}")
    }
    pub fn meta(&self) -> String {
        self.single("meta")
    }
    /// How many times an incremental refresh (or a re-check) patched this generation in
    /// place: what a replica keeps of the generation in memory is read again when it moves.
    pub fn rev(&self) -> String {
        self.single("rev")
    }
    /// Changed when a full refresh rewrites this generation in place (a random token, set
    /// when it is published): a replica whose patch expects another epoch no longer knows
    /// what the generation holds, and reads the org in full again.
    pub fn epoch(&self) -> String {
        self.single("epoch")
    }
    /// The hash holding the digest of the key named `name` ([`Self::name_of`]): key name ->
    /// a digest of the key's content, 16 bytes (see `store::digest`); no field for a key that
    /// does not exist, `?` for one whose content a re-check changed. One hash per family of
    /// records (`digests:user` for `user:17`) and one for the other keys (`digests:keys`), so
    /// that reading them all is several short commands rather than one of 6,000 fields.
    pub fn digests(&self, name: &str) -> String {
        let family = name.split_once(':').map_or(SINGLE_DIGESTS, |(f, _)| f);
        format!("{}digests:{family}", self.base)
    }
    /// Every hash of [`Self::digests`].
    pub fn all_digests(&self) -> Vec<String> {
        FAMILIES
            .iter()
            .chain(&[SINGLE_DIGESTS])
            .map(|f| format!("{}digests:{f}", self.base))
            .collect()
    }
    /// Set while the digests lag behind the content: an incremental refresh writes the
    /// digests its patch moved in short scripts after the patch, and deletes this with the
    /// last. A full refresh finding it does not trust the digests, and publishes.
    pub fn digests_pending(&self) -> String {
        self.single("digests-pending")
    }
    /// The id of the generation that replaced this one, set when it was published.
    pub fn successor(&self) -> String {
        self.single("successor")
    }
    /// User id (15 characters) -> the user's record.
    pub fn user(&self, id: SfId) -> Entry {
        self.entry("user", id.as_str15().to_owned())
    }
    /// User id (15 characters) -> what the diagnosis needs around the user.
    pub fn context(&self, id: SfId) -> Entry {
        self.entry("ctx", id.as_str15().to_owned())
    }
    /// What the hashes of [`GenerationKeys::user`] are named before their bucket (the
    /// check's script reads a username's user with it).
    pub fn user_prefix(&self) -> String {
        self.single("user:")
    }
    /// What the hashes of [`GenerationKeys::context`] are named before their bucket.
    pub fn context_prefix(&self) -> String {
        self.single("ctx:")
    }
    /// Lower-cased username -> user id.
    pub fn login(&self, lower: &str) -> Entry {
        self.entry("login", lower.to_owned())
    }
    /// Lower-cased email -> JSON list of user ids.
    pub fn email(&self, lower: &str) -> Entry {
        self.entry("email", lower.to_owned())
    }
    /// Sorted set of `word \0 id \0 name` for name search by prefix.
    pub fn names(&self) -> String {
        self.single("names")
    }
    /// Sorted set of `lower-cased username \0 id`, for sandbox variants by prefix.
    pub fn usernames(&self) -> String {
        self.single("usernames")
    }
    /// Every user's id, username and name, sorted for "did you mean" (`suggest::Directory`
    /// in its binary form; read only when nothing matched).
    pub fn suggestions(&self) -> String {
        self.single("suggestions")
    }
    /// A digest of [`Self::suggestions`]' bytes, written with them: a replica keeps what it
    /// built from them while the digest is the same, across patches and generations.
    pub fn suggestions_digest(&self) -> String {
        self.single("suggestions-digest")
    }
    /// The group nesting and role tree (see `records::GroupGraph`).
    pub fn group_graph(&self) -> String {
        self.single("group-graph")
    }
    /// Who an audit looks at (see `redis_store::audit::AuditSubjects`).
    pub fn audit_subjects(&self) -> String {
        self.single("audit-subjects")
    }
    /// `{business unit}:{AE user id}` -> the AE user.
    pub fn ae_user(&self, bu: usize, id: u64) -> Entry {
        self.entry("ae-user", format!("{bu}:{id}"))
    }
    /// `{business unit}:{lower-cased email}` -> JSON list of AE users of that business unit.
    pub fn ae_email(&self, bu: usize, lower: &str) -> Entry {
        self.entry("ae-email", format!("{bu}:{lower}"))
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
            let mut all = vec![
                gk.meta(),
                gk.successor(),
                gk.rev(),
                gk.user(id).key,
                gk.context(id).key,
                gk.login("sam.sales@acme.com").key,
                gk.email("sam.sales@acme.com").key,
                gk.names(),
                gk.usernames(),
                gk.suggestions(),
                gk.suggestions_digest(),
                gk.group_graph(),
                gk.audit_subjects(),
                gk.ae_user(2, 1003).key,
                gk.ae_email(0, "sam.sales@acme.com").key,
            ];
            all.extend(gk.all_keys());
            all.push(GenerationKeys::staging(
                &gk.user(id).key,
                "0123456789abcdef",
            ));
            all.push(GenerationKeys::staging(
                &gk.suggestions(),
                "0123456789abcdef",
            ));
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
        let field = id.as_str15().to_owned();
        let bucket = bucket(&field);
        assert_eq!(
            gk.user(id),
            Entry {
                key: format!("{}{bucket}", gk.user_prefix()),
                field: field.clone()
            }
        );
        assert_eq!(
            gk.context(id),
            Entry {
                key: format!("{}{bucket}", gk.context_prefix()),
                field
            }
        );
    }

    #[test]
    fn every_record_key_is_among_the_keys_a_deletion_names() {
        let gk = Keys::new("crm-username:", FORMAT).unwrap().generation("g");
        let all: std::collections::HashSet<String> = gk.all_keys().into_iter().collect();
        let id = SfId::parse("005Ak00000SAMS1").unwrap();
        for entry in [
            gk.user(id),
            gk.context(id),
            gk.login("sam.sales@acme.com"),
            gk.email("émile@acme.com"),
            gk.ae_user(9, u64::MAX),
            gk.ae_email(3, "sam.sales@acme.com"),
        ] {
            assert!(all.contains(&entry.key), "{entry:?}");
        }
        assert!(!all.contains(&GenerationKeys::staging(&gk.user(id).key, "t")));
        assert_eq!(all.len(), SINGLE_KEYS.len() + 6 * 1024 + 7);
        for name in ["user:17", "ae-email:3", "meta", "names"] {
            assert!(all.contains(&gk.digests(name)), "{name}");
        }
        assert_eq!(gk.name_of(&gk.digests("user:17")), Some("digests:user"));
        assert_eq!(gk.name_of(&gk.digests("meta")), Some("digests:keys"));
        assert_eq!(
            gk.key_of(gk.name_of(&gk.user(id).key).unwrap()),
            gk.user(id).key
        );
    }

    #[test]
    fn records_spread_evenly_over_the_buckets() {
        // 100,000 usernames of one domain, as an org's are: no bucket holds more than twice
        // its share, none is empty.
        let mut counts = vec![0u32; BUCKETS as usize];
        for n in 0..100_000 {
            counts[bucket(&format!("user{n}@bench.example.com")) as usize] += 1;
        }
        let share = 100_000 / BUCKETS;
        assert!(
            counts.iter().all(|c| (1..=2 * share).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_lua_bucket_function_takes_the_same_modulus() {
        assert!(BUCKET_LUA.contains(&format!(") % {BUCKETS}\n")));
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
