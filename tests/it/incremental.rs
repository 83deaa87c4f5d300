//! Incremental refreshes: a generation patched with what changed holds exactly what a full
//! publish of the changed org writes, key for key and byte for byte, so every query gets the
//! same answer from either.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use crm_username::domain::{AeUser, GroupMember, Org, OrgSnapshot, SfId};
use crm_username::store::{PatchOutcome, RedisStore, RedisTimeouts, STAGING_TTL, Store};
use crm_username::synthetic::{Params, Rng, Variety, generate_with};

use crate::common::{clear_prefix, connection, prefix, redis_url};

/// A small org with nested groups, roles, several business units and external users.
pub fn small_org(seed: u64) -> OrgSnapshot {
    generate_with(
        Params {
            sf_users: 300,
            ae_users: 120,
            business_units: 3,
            seed,
        },
        Variety {
            external_percent: 10,
            sales_section: true,
            ..Variety::default()
        },
    )
}

/// One random change of the kinds admins make: users added, deactivated, renamed, moved
/// between groups or roles; groups nested and un-nested; AE users created, mapped, sent to
/// the recycle bin or given another email. Returns what it did, for failure messages.
pub fn random_change(org: &mut OrgSnapshot, rng: &mut Rng, n: u64) -> String {
    let sf = &mut org.salesforce;
    let users = sf.users.len();
    match rng.below(10) {
        0 => {
            let mut user = sf.users[rng.below(users)].clone();
            user.id = SfId::parse(&format!("005Ak{:010}", 9_000_000 + n)).unwrap();
            user.username = format!("new{n}@changed.example.com");
            user.email = format!("new{n}@changed.example.com");
            user.name = format!("New Person{n}");
            sf.users.push(user);
            format!("user new{n} added")
        }
        1 => {
            let user = &mut sf.users[rng.below(users)];
            user.is_active = !user.is_active;
            format!("{} active: {}", user.username, user.is_active)
        }
        2 => {
            let user = &mut sf.users[rng.below(users)];
            user.username = format!("renamed{n}.{}", user.username);
            user.name = format!("Renamed{n} {}", user.name);
            format!("renamed to {}", user.username)
        }
        3 => {
            // Shares another user's email: the email index holds both.
            let other = sf.users[rng.below(users)].email.clone();
            let user = &mut sf.users[rng.below(users)];
            user.email = other.clone();
            format!("{} takes email {other}", user.username)
        }
        4 => {
            let user_id = sf.users[rng.below(users)].id;
            let from: Vec<usize> = (0..sf.group_members.len())
                .filter(|&i| sf.group_members[i].member_id == user_id)
                .collect();
            if let Some(&i) = from.first() {
                sf.group_members.remove(i);
            }
            if sf.groups.is_empty() {
                return "no groups".to_owned();
            }
            let group = sf.groups[rng.below(sf.groups.len())].id;
            sf.group_members.push(GroupMember {
                group_id: group,
                member_id: user_id,
            });
            format!("{user_id} moved to group {group}")
        }
        5 => {
            if sf.groups.len() < 2 {
                return "too few groups".to_owned();
            }
            let (a, b) = (
                sf.groups[rng.below(sf.groups.len())].id,
                sf.groups[rng.below(sf.groups.len())].id,
            );
            let nested = sf
                .group_members
                .iter()
                .position(|m| m.group_id == a && m.member_id == b);
            match nested {
                Some(i) => {
                    sf.group_members.remove(i);
                    format!("{b} un-nested from {a}")
                }
                None => {
                    sf.group_members.push(GroupMember {
                        group_id: a,
                        member_id: b,
                    });
                    format!("{b} nested in {a}")
                }
            }
        }
        6 => {
            if sf.roles.is_empty() {
                return "no roles".to_owned();
            }
            let role = sf.roles[rng.below(sf.roles.len())].id;
            let user = &mut sf.users[rng.below(users)];
            user.role_id = Some(role);
            format!("{} gets role {role}", user.username)
        }
        7 => {
            let b = rng.below(org.business_units.len());
            let sf_user = org.salesforce.users[rng.below(users)].clone();
            let bu = &mut org.business_units[b];
            bu.users.push(AeUser {
                id: 900_000 + n,
                email: sf_user.email.clone(),
                username: sf_user.email.clone(),
                first_name: "Created".to_owned(),
                last_name: format!("Later{n}"),
                salesforce_id: Some(sf_user.id),
                ..AeUser::default()
            });
            format!(
                "AE user {} created in bu {b}, mapped to {}",
                900_000 + n,
                sf_user.id
            )
        }
        8 => {
            let b = rng.below(org.business_units.len());
            let bu = &mut org.business_units[b];
            if bu.users.is_empty() {
                return "no AE users".to_owned();
            }
            let i = rng.below(bu.users.len());
            let user = &mut bu.users[i];
            user.is_deleted = !user.is_deleted;
            format!("AE user {} deleted: {}", user.id, user.is_deleted)
        }
        _ => {
            let b = rng.below(org.business_units.len());
            let sf_user = org.salesforce.users[rng.below(users)].clone();
            let bu = &mut org.business_units[b];
            if bu.users.is_empty() {
                return "no AE users".to_owned();
            }
            let i = rng.below(bu.users.len());
            let user = &mut bu.users[i];
            user.salesforce_id = Some(sf_user.id);
            user.email = format!("moved{n}.{}", user.email);
            format!(
                "AE user {} mapped to {} with a new email",
                user.id, sf_user.id
            )
        }
    }
}

/// `org` after `changes` random changes drawn from `seed`.
fn randomly_changed(org: &OrgSnapshot, seed: u64, changes: u64) -> OrgSnapshot {
    let mut changed = org.clone();
    let mut rng = Rng(seed);
    for n in 0..changes {
        random_change(&mut changed, &mut rng, n);
    }
    changed
}

fn canonical(mut snapshot: OrgSnapshot) -> Arc<Org> {
    snapshot.canonicalize();
    Arc::new(Org::without_search(snapshot))
}

/// What every key of `generation` under `prefix` starts with.
fn generation_base(prefix: &str, generation: &str) -> String {
    format!(
        "{prefix}v{}:gen:{{{generation}}}:",
        crm_username::store::FORMAT
    )
}

/// [`generation_base`] of the current generation under `prefix`.
async fn current_base(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> String {
    let current: String = redis::cmd("GET")
        .arg(format!("{prefix}v{}:current", crm_username::store::FORMAT))
        .query_async(conn)
        .await
        .unwrap();
    generation_base(prefix, &current)
}

/// Every key of the current generation under `prefix`, with the generation id taken out of
/// its name, and its value (a sorted set as its sorted members; a hash as one entry per
/// field). The revision and the epoch (random tokens) and the successor (replaced
/// generations only) are left out.
pub async fn dump_current(prefix: &str) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut conn = connection().await;
    let base = current_base(&mut conn, prefix).await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{base}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut types = redis::pipe();
    for key in &keys {
        types.cmd("TYPE").arg(key);
    }
    let kinds: Vec<String> = types.query_async(&mut conn).await.unwrap();
    let mut reads = redis::pipe();
    for (key, kind) in keys.iter().zip(&kinds) {
        match kind.as_str() {
            "zset" => reads.cmd("ZRANGE").arg(key).arg(0).arg(-1),
            "hash" => reads.cmd("HGETALL").arg(key),
            _ => reads.cmd("GET").arg(key),
        };
    }
    let values: Vec<redis::Value> = reads.query_async(&mut conn).await.unwrap();
    let mut out = BTreeMap::new();
    for ((key, kind), value) in keys.iter().zip(&kinds).zip(values) {
        let short = key[base.len()..].to_owned();
        if short == "rev" || short == "successor" || short == "epoch" {
            continue;
        }
        match kind.as_str() {
            "zset" => {
                out.insert(
                    short,
                    redis::FromRedisValue::from_redis_value(value).unwrap(),
                );
            }
            // A record's hash: each field is an entry of its own, named `hash/field`.
            "hash" => {
                let fields: BTreeMap<String, Vec<u8>> =
                    redis::FromRedisValue::from_redis_value(value).unwrap();
                for (field, value) in fields {
                    out.insert(format!("{short}/{field}"), vec![value]);
                }
            }
            _ => {
                out.insert(
                    short,
                    vec![redis::FromRedisValue::from_redis_value(value).unwrap()],
                );
            }
        }
    }
    out
}

/// The first difference between two dumps, said in words.
pub fn first_difference(
    a: &BTreeMap<String, Vec<Vec<u8>>>,
    b: &BTreeMap<String, Vec<Vec<u8>>>,
) -> Option<String> {
    for (key, value) in a {
        match b.get(key) {
            None => return Some(format!("{key} only in the patched generation")),
            Some(other) if other != value => {
                return Some(format!(
                    "{key} differs:\n patched: {:?}\n full:    {:?}",
                    value
                        .iter()
                        .map(|v| String::from_utf8_lossy(v))
                        .collect::<Vec<_>>(),
                    other
                        .iter()
                        .map(|v| String::from_utf8_lossy(v))
                        .collect::<Vec<_>>()
                ));
            }
            _ => {}
        }
    }
    b.keys()
        .find(|k| !a.contains_key(*k))
        .map(|k| format!("{k} only in the full publish"))
}

fn store(prefix: &str) -> Store {
    Store::Redis(RedisStore::connect(&redis_url(), prefix, RedisTimeouts::default()).unwrap())
}

#[tokio::test]
async fn a_generation_patched_round_after_round_holds_exactly_what_a_full_publish_writes() {
    for seed in [1_u64, 2, 3] {
        let (patched_prefix, full_prefix) = (
            prefix(&format!("incr-patched-{seed}")),
            prefix(&format!("incr-full-{seed}")),
        );
        clear_prefix(&patched_prefix).await;
        let patched = store(&patched_prefix);
        let mut rng = Rng(seed);
        let mut org = small_org(seed);
        let mut base = canonical(org.clone());
        let generation = patched.publish_org(base.clone()).await.unwrap();
        let mut changes = Vec::new();
        for round in 0..4_u64 {
            for i in 0..12 {
                changes.push(random_change(&mut org, &mut rng, round * 100 + i));
            }
            org.fetched_at = Utc
                .with_ymd_and_hms(2026, 1, 15, 13, round as u32, 0)
                .unwrap();
            let next = canonical(org.clone());
            let outcome = patched
                .patch(&generation, base.clone(), next.clone())
                .await
                .unwrap();
            assert!(
                matches!(outcome, PatchOutcome::Applied(n) if n > 0),
                "seed {seed} round {round}: {outcome:?}"
            );
            base = next;

            clear_prefix(&full_prefix).await;
            let full = store(&full_prefix);
            full.publish_org(base.clone()).await.unwrap();
            let (a, b) = (
                dump_current(&patched_prefix).await,
                dump_current(&full_prefix).await,
            );
            assert!(
                a.len() > 900,
                "the dump reads the generation: {} keys",
                a.len()
            );
            if let Some(difference) = first_difference(&a, &b) {
                panic!("seed {seed} round {round}: {difference}\nafter the changes: {changes:#?}");
            }
        }
        clear_prefix(&patched_prefix).await;
        clear_prefix(&full_prefix).await;
    }
}

#[tokio::test]
async fn a_patch_of_a_generation_that_is_no_longer_current_writes_nothing() {
    let prefix = prefix("incr-stale");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let org = small_org(5);
    let first = canonical(org.clone());
    let old_generation = store.publish_org(first.clone()).await.unwrap();
    store.publish_org(first.clone()).await.unwrap();
    let before = dump_current(&prefix).await;
    let changed = randomly_changed(&org, 5, 5);
    let outcome = store
        .patch(&old_generation, first, canonical(changed))
        .await
        .unwrap();
    assert_eq!(outcome, PatchOutcome::Stale);
    assert_eq!(dump_current(&prefix).await, before);
    clear_prefix(&prefix).await;
}

/// The key an entry of [`dump_current`] lives in: a record's hash (`hash/field`), or the key.
fn key_of(entry: &str) -> &str {
    entry.split_once('/').map_or(entry, |(key, _)| key)
}

/// The TTL (ms) of every key of the current generation under `prefix`, named as
/// [`dump_current`] names them (after the generation's own prefix; a record's hash once).
async fn current_ttls(prefix: &str) -> BTreeMap<String, i64> {
    let keys: BTreeSet<String> = dump_current(prefix)
        .await
        .keys()
        .map(|entry| key_of(entry).to_owned())
        .collect();
    let mut conn = connection().await;
    let base = current_base(&mut conn, prefix).await;
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("PTTL").arg(format!("{base}{key}"));
    }
    let ttls: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
    keys.into_iter().zip(ttls).collect()
}

#[tokio::test]
async fn a_patch_keeps_the_ttl_of_the_keys_it_rewrites_and_gives_new_keys_the_generations() {
    // A rewritten key (or a record's hash) expires with the rest of its generation (the TTL a
    // publish or its renewal gave it); a key or hash the patch creates gets the TTL a publish
    // gives; no key is left without one.
    let prefix = prefix("incr-ttl");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let org = small_org(9);
    let first = canonical(org.clone());
    let generation = store.publish_org(first.clone()).await.unwrap();
    // An hour left on every key, well under the 7 days a publish gives.
    const HOUR_MS: i64 = 3_600_000;
    let before = dump_current(&prefix).await;
    let keys_before: BTreeSet<&str> = before.keys().map(|entry| key_of(entry)).collect();
    let mut conn = connection().await;
    let base = generation_base(&prefix, &generation.id);
    let mut pipe = redis::pipe();
    for key in &keys_before {
        pipe.cmd("PEXPIRE")
            .arg(format!("{base}{key}"))
            .arg(HOUR_MS)
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    let changed = randomly_changed(&org, 9, 20);
    let outcome = store
        .patch(&generation, first, canonical(changed))
        .await
        .unwrap();
    assert!(matches!(outcome, PatchOutcome::Applied(_)), "{outcome:?}");
    let after = dump_current(&prefix).await;
    let ttls = current_ttls(&prefix).await;
    let rewritten: BTreeSet<&str> = after
        .iter()
        .filter(|(entry, value)| {
            // Values under 4 KB: larger ones are written under a staging name first and
            // renamed into place; `rev` is the patch's own stamp.
            before.get(*entry).is_some_and(|old| old != *value)
                && matches!(value.as_slice(), [one] if one.len() < 4 << 10)
                && !entry.ends_with(":rev")
        })
        .map(|(entry, _)| key_of(entry))
        .collect();
    let created: BTreeSet<&str> = after
        .keys()
        .map(|entry| key_of(entry))
        .filter(|key| !keys_before.contains(key))
        .collect();
    assert!(
        !rewritten.is_empty() && !created.is_empty(),
        "{rewritten:?} {created:?}"
    );
    for key in &rewritten {
        let ttl = ttls[*key];
        assert!(ttl > 0 && ttl <= HOUR_MS, "{key} rewritten: PTTL {ttl}");
    }
    for key in &created {
        let ttl = ttls[*key];
        assert!(ttl > HOUR_MS, "{key} created: PTTL {ttl}");
    }
    // Above the staging TTL: the large values renamed into place got the generation's.
    let staging_ms = STAGING_TTL.as_millis() as i64;
    assert!(ttls.values().all(|ttl| *ttl > staging_ms), "{ttls:?}");
    clear_prefix(&prefix).await;
}

/// The staging names left under `prefix` (`~next.` and a writer's token).
async fn staging_keys(prefix: &str) -> Vec<String> {
    crate::common::keys_matching(&format!("{prefix}*~next.*")).await
}

#[tokio::test]
async fn the_refresher_runs_full_then_incremental_refreshes_and_status_shows_both() {
    use crm_username::fakes::FakeUpstreams;
    use crm_username::refresh::{
        FULL_SOURCE, INCREMENTAL_SOURCE, RefreshError, RefreshKind, Refresher, Schedule,
    };
    use std::time::Duration;

    let org = small_org(11);
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let prefix = prefix("incr-refresher");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let schedule = Schedule {
        full_every: Duration::from_secs(15 * 60),
        incremental_every: Some(Duration::from_secs(60)),
    };
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let minutes = |m: i64| t0 + chrono::Duration::minutes(m);

    let mut mine = Refresher::default();
    let first = mine
        .run_once(&sources, &store, &schedule, t0)
        .await
        .unwrap();
    assert_eq!(
        first.map(|r| r.kind),
        Some(RefreshKind::Full),
        "an empty cache gets a full refresh"
    );
    let second = mine
        .run_once(&sources, &store, &schedule, minutes(1))
        .await
        .unwrap();
    assert_eq!(
        second.as_ref().map(|r| r.kind),
        Some(RefreshKind::Incremental)
    );
    assert_eq!(
        second.and_then(|r| r.writes),
        Some(1),
        "nothing changed upstream: only the metadata (its time) is rewritten"
    );

    // Another replica leaves the data to the one that published it while that one is busy.
    let mut other = Refresher::default();
    let skipped = other
        .run_once(&sources, &store, &schedule, minutes(2))
        .await
        .unwrap();
    assert_eq!(skipped, None);
    // And takes over once it went quiet for three intervals.
    let taken = other
        .run_once(&sources, &store, &schedule, minutes(5))
        .await
        .unwrap();
    assert_eq!(taken.map(|r| r.kind), Some(RefreshKind::Full));
    // The first replica's base is now of a replaced generation: it no longer patches.
    let after = mine
        .run_once(&sources, &store, &schedule, minutes(6))
        .await
        .unwrap();
    assert_eq!(after, None, "the other replica keeps the cache fresh now");
    // The period of full refreshes passes: whoever runs next reads everything.
    let full = mine
        .run_once(&sources, &store, &schedule, minutes(20))
        .await
        .unwrap();
    assert_eq!(full.map(|r| r.kind), Some(RefreshKind::Full));

    let status = store.status().await.unwrap();
    let full_status = &status.sources[FULL_SOURCE];
    let incremental_status = &status.sources[INCREMENTAL_SOURCE];
    assert_eq!(full_status.last_success_at, Some(minutes(20)));
    assert_eq!(incremental_status.last_success_at, Some(minutes(1)));
    assert!(
        incremental_status.api_calls.is_some() && full_status.api_calls.is_some(),
        "each run records its API calls: {status:?}"
    );

    // Runs are one at a time across replicas.
    let lock = store
        .try_lock(Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let busy = other
        .run_once(&sources, &store, &schedule, minutes(21))
        .await;
    assert!(matches!(busy, Err(RefreshError::Busy)), "{busy:?}");
    store.release_lock(&lock).await.unwrap();
    clear_prefix(&prefix).await;
}

/// One random change made in the fakes, as an admin would make it in the org: users added,
/// deactivated, renamed, given another email or role, moved between groups; groups nested and
/// un-nested; AE users created, mapped, sent to the recycle bin.
fn random_fake_change(
    upstreams: &crm_username::fakes::FakeUpstreams,
    business_units: &[SfId],
    rng: &mut Rng,
    n: u64,
) -> String {
    let (sf, ae) = (&upstreams.salesforce, &upstreams.account_engagement);
    let org = sf.org();
    let internal: Vec<&crm_username::domain::SfUser> =
        org.users.iter().filter(|u| u.is_internal()).collect();
    let pick = |rng: &mut Rng| internal[rng.below(internal.len())].clone();
    let public: Vec<SfId> = org
        .groups
        .iter()
        .filter(|g| g.role_kind().is_none())
        .map(|g| g.id)
        .collect();
    match rng.below(10) {
        0 => {
            let mut user = pick(rng);
            user.id = SfId::parse(&format!("005Ak{:010}", 8_000_000 + n)).unwrap();
            user.username = format!("added{n}@changed.example.com");
            user.email = format!("added{n}@changed.example.com");
            user.name = format!("Added Person{n}");
            let group = public[rng.below(public.len())];
            sf.upsert_user(user.clone());
            sf.add_member(group, user.id);
            format!("user {} added to group {group}", user.username)
        }
        1 => {
            let mut user = pick(rng);
            user.is_active = !user.is_active;
            sf.upsert_user(user.clone());
            format!("{} active: {}", user.username, user.is_active)
        }
        2 => {
            let mut user = pick(rng);
            user.username = format!("renamed{n}.{}", user.username);
            user.name = format!("Renamed{n} {}", user.name);
            sf.upsert_user(user.clone());
            format!("renamed to {}", user.username)
        }
        3 => {
            let other = pick(rng).email;
            let mut user = pick(rng);
            user.email = other.clone();
            sf.upsert_user(user.clone());
            format!("{} takes the email {other}", user.username)
        }
        4 => {
            let user = pick(rng);
            let from = org
                .group_members
                .iter()
                .find(|m| m.member_id == user.id)
                .map(|m| m.group_id);
            if let Some(from) = from {
                sf.remove_member(from, user.id);
            }
            let to = public[rng.below(public.len())];
            sf.add_member(to, user.id);
            format!("{} moved from {from:?} to {to}", user.username)
        }
        5 => {
            let (a, b) = (
                public[rng.below(public.len())],
                public[rng.below(public.len())],
            );
            if a == b {
                return "a group is not nested in itself".to_owned();
            }
            if org
                .group_members
                .iter()
                .any(|m| m.group_id == a && m.member_id == b)
            {
                sf.remove_member(a, b);
                format!("{b} un-nested from {a}")
            } else {
                sf.add_member(a, b);
                format!("{b} nested in {a}")
            }
        }
        6 => {
            let role = org.roles[rng.below(org.roles.len())].id;
            let mut user = pick(rng);
            user.role_id = Some(role);
            sf.upsert_user(user.clone());
            format!("{} gets the role {role}", user.username)
        }
        7 => {
            let bu = business_units[rng.below(business_units.len())];
            let user = pick(rng);
            ae.upsert_user(
                bu,
                AeUser {
                    id: 800_000 + n,
                    email: user.email.clone(),
                    username: user.email.clone(),
                    first_name: "Created".to_owned(),
                    last_name: format!("Later{n}"),
                    salesforce_id: Some(user.id),
                    ..AeUser::default()
                },
            );
            format!(
                "AE user {} created in {bu}, mapped to {}",
                800_000 + n,
                user.id
            )
        }
        8 => {
            let bu = business_units[rng.below(business_units.len())];
            let users = ae.users(bu);
            if users.is_empty() {
                return "no AE user".to_owned();
            }
            let id = users[rng.below(users.len())].id;
            ae.delete_user(bu, id);
            format!("AE user {id} of {bu} sent to the recycle bin")
        }
        _ => {
            let bu = business_units[rng.below(business_units.len())];
            let users = ae.users(bu);
            if users.is_empty() {
                return "no AE user".to_owned();
            }
            let mut user = users[rng.below(users.len())].clone();
            let target = pick(rng);
            user.salesforce_id = Some(target.id);
            user.email = format!("moved{n}.{}", user.email);
            ae.upsert_user(bu, user.clone());
            format!("AE user {} of {bu} mapped to {}", user.id, target.id)
        }
    }
}

/// Every answer a query of a user by username, by id, and for an AE user gets.
async fn answers(store: &Store, queries: &[String], now: chrono::DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    for text in queries {
        let query = crm_username::domain::Query::parse(text).unwrap();
        let answer = match crm_username::check::check(store, &query, now).await {
            Ok(diagnosis) => serde_json::to_string(&diagnosis).unwrap(),
            Err(err) => format!("error: {err}"),
        };
        out.push(answer);
    }
    out
}

#[tokio::test]
async fn after_random_changes_in_the_fakes_incremental_refreshes_answer_as_one_full_refresh() {
    use crm_username::fakes::FakeUpstreams;
    use crm_username::refresh::{RefreshKind, Refresher, Schedule, refresh_once};
    use std::time::Duration;

    for seed in [21_u64, 22] {
        let org = small_org(seed);
        let upstreams = FakeUpstreams::start(&org).await.unwrap();
        let sources = upstreams.sources(&org).unwrap();
        let business_units: Vec<SfId> = org.business_units.iter().map(|b| b.id).collect();
        let (incremental_prefix, full_prefix) = (
            prefix(&format!("incr-fakes-{seed}")),
            prefix(&format!("incr-fakes-full-{seed}")),
        );
        clear_prefix(&incremental_prefix).await;
        clear_prefix(&full_prefix).await;
        let incremental = store(&incremental_prefix);
        let schedule = Schedule {
            full_every: Duration::from_secs(24 * 3600),
            incremental_every: Some(Duration::from_secs(60)),
        };
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let mut refresher = Refresher::default();
        let first = refresher
            .run_once(&sources, &incremental, &schedule, t0)
            .await
            .unwrap();
        assert_eq!(first.map(|r| r.kind), Some(RefreshKind::Full));

        let mut rng = Rng(seed);
        let mut changes = Vec::new();
        let mut now = t0;
        for round in 1..=5_u64 {
            for i in 0..8 {
                changes.push(random_fake_change(
                    &upstreams,
                    &business_units,
                    &mut rng,
                    round * 100 + i,
                ));
            }
            now = t0 + chrono::Duration::minutes(round as i64);
            let report = refresher
                .run_once(&sources, &incremental, &schedule, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(report.kind, RefreshKind::Incremental, "round {round}");
            assert!(
                report.api_calls.total() <= 20,
                "round {round}: {:?}",
                report.api_calls
            );
        }

        let full = store(&full_prefix);
        refresh_once(&sources, &full, now).await.unwrap();
        if let Some(difference) = first_difference(
            &dump_current(&incremental_prefix).await,
            &dump_current(&full_prefix).await,
        ) {
            panic!("seed {seed}: {difference}\nafter the changes: {changes:#?}");
        }
        let final_org = upstreams.salesforce.org();
        let mut queries: Vec<String> = final_org
            .users
            .iter()
            .flat_map(|u| [u.username.clone(), u.id.to_18()])
            .collect();
        for bu in &business_units {
            for user in upstreams.account_engagement.users(*bu).iter().take(20) {
                let sf = &final_org.users[rng.below(final_org.users.len())];
                queries.push(format!("{} for {}", sf.username, user.id));
            }
        }
        let (a, b) = (
            answers(&incremental, &queries, now).await,
            answers(&full, &queries, now).await,
        );
        assert_eq!(a.len(), queries.len());
        for ((query, x), y) in queries.iter().zip(&a).zip(&b) {
            assert_eq!(x, y, "seed {seed}: {query} is answered differently");
        }
        clear_prefix(&incremental_prefix).await;
        clear_prefix(&full_prefix).await;
    }
}

#[tokio::test]
async fn on_the_bench_orgs_shape_an_incremental_refresh_of_changes_in_bulk_stays_within_twenty_calls()
 {
    use crm_username::fakes::{Changer, FakeUpstreams};
    use crm_username::refresh::{RefreshKind, Refresher, Schedule, refresh_once};
    use std::time::Duration;

    // The bench org's shape, small: 90% external users, assignments nested five deep, as
    // many membership rows as users, 10 business units.
    let org = generate_with(
        Params {
            sf_users: 3_000,
            ae_users: 120,
            business_units: 10,
            seed: 7,
        },
        Variety {
            external_percent: 90,
            sales_section: true,
            group_members: 3_000,
        },
    );
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let (incremental_prefix, full_prefix) = (prefix("incr-bulk"), prefix("incr-bulk-full"));
    clear_prefix(&incremental_prefix).await;
    clear_prefix(&full_prefix).await;
    let store_a = store(&incremental_prefix);
    let schedule = Schedule {
        full_every: Duration::from_secs(3600),
        incremental_every: Some(Duration::from_secs(60)),
    };
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let mut refresher = Refresher::default();
    refresher
        .run_once(&sources, &store_a, &schedule, t0)
        .await
        .unwrap();

    let mut changer = Changer::new(
        &upstreams,
        org.business_units.iter().map(|b| b.id).collect(),
    );
    let did = changer.apply(&upstreams, 10);
    assert!(did.contains("moved between groups"), "{did}");
    let now = t0 + chrono::Duration::minutes(1);
    let report = refresher
        .run_once(&sources, &store_a, &schedule, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.kind, RefreshKind::Incremental);
    assert!(report.writes.unwrap_or(0) > 100, "{report:?}");
    assert!(report.api_calls.total() <= 20, "{:?}", report.api_calls);

    let store_b = store(&full_prefix);
    refresh_once(&sources, &store_b, now).await.unwrap();
    if let Some(difference) = first_difference(
        &dump_current(&incremental_prefix).await,
        &dump_current(&full_prefix).await,
    ) {
        panic!("after {did}: {difference}");
    }
    clear_prefix(&incremental_prefix).await;
    clear_prefix(&full_prefix).await;
}

/// The URL of one of the test servers (`scripts/redis-test-servers.sh`): its ACL users, or
/// the server with `RENAME` disabled.
fn test_server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test servers with `eval \"$(scripts/redis-test-servers.sh)\"`")
    })
}

/// Where `RENAME` is refused: the ACL user with the rules documented before `+rename`, and a
/// server that disables it (`rename-command`, as some managed services do); with the server
/// variable of a user that may delete the tests' keys there (the bot's users may not SCAN).
const WITHOUT_RENAME: [(&str, &str); 2] = [
    ("TEST_REDIS_ACL_OLDER_URL", "TEST_REDIS_ACL_CLEANUP_URL"),
    ("TEST_REDIS_NO_RENAME_URL", "TEST_REDIS_NO_RENAME_URL"),
];

async fn connect_as(var: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(test_server(var).as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes what a test wrote under `prefix`, as the user of `cleanup_var`.
async fn delete_as(cleanup_var: &str, prefix: &str) {
    let mut conn = connect_as(cleanup_var).await;
    crm_username::store::unlink_matching(&mut conn, &format!("{prefix}*"))
        .await
        .unwrap();
}

/// The staging names under `prefix`, listed by the user of `cleanup_var`.
async fn staging_keys_as(cleanup_var: &str, prefix: &str) -> Vec<String> {
    let mut conn = connect_as(cleanup_var).await;
    let mut keys: Vec<String> = Vec::new();
    let mut found: redis::AsyncIter<String> =
        redis::AsyncCommands::scan_match(&mut conn, format!("{prefix}*~next.*"))
            .await
            .unwrap();
    while let Some(key) = futures_util::StreamExt::next(&mut found).await {
        keys.push(key.unwrap());
    }
    keys
}

/// As the documented ACL user, which may `RENAME`, a patch writes its large values under a
/// staging name and renames them into place; where `RENAME` is refused ([`WITHOUT_RENAME`]:
/// by the ACL, or disabled on the server), the script is refused before it writes anything
/// and the patch sends them through the script instead. Either way every query, "did you
/// mean" included, is answered as after a full publish.
#[tokio::test]
async fn with_or_without_rename_a_patch_answers_as_a_full_publish() {
    let cases = [("TEST_REDIS_ACL_URL", "TEST_REDIS_ACL_CLEANUP_URL", false)]
        .into_iter()
        .chain(WITHOUT_RENAME.map(|(var, cleanup)| (var, cleanup, true)));
    for (n, (var, cleanup, refused)) in cases.enumerate() {
        let url = test_server(var);
        let acl_prefix = prefix(&format!("incr-acl-{n}"));
        let redis = RedisStore::connect(&url, &acl_prefix, RedisTimeouts::default()).unwrap();
        let patched = Store::Redis(redis.clone());
        let mut rng = Rng(31);
        let mut org = small_org(31);
        let base = canonical(org.clone());
        let generation = patched.publish_org(base.clone()).await.unwrap();
        for n in 0..12 {
            random_change(&mut org, &mut rng, n);
        }
        // A rename rewrites the "did you mean" index, a value past the staging size.
        org.salesforce.users[0].username = "renamed.for.acl@changed.example.com".to_owned();
        let next = canonical(org.clone());
        let outcome = patched
            .patch(&generation, base, next.clone())
            .await
            .unwrap();
        assert!(
            matches!(outcome, PatchOutcome::Applied(n) if n > 0),
            "{var}: {outcome:?}"
        );
        assert_eq!(redis.rename_refused(), refused, "{var}");

        let full_prefix = prefix(&format!("incr-acl-full-{refused}"));
        clear_prefix(&full_prefix).await;
        let full = store(&full_prefix);
        full.publish_org(next.clone()).await.unwrap();
        let mut queries: Vec<String> = next
            .snapshot()
            .salesforce
            .users
            .iter()
            .flat_map(|u| [u.username.clone(), u.id.as_str15().to_owned()])
            .collect();
        // Typos: answered from the "did you mean" index.
        queries.extend([
            "renamed.for.acl@changed.example.co".to_owned(),
            "nobody@nowhere.example".to_owned(),
        ]);
        let now = Utc.with_ymd_and_hms(2026, 1, 16, 12, 0, 0).unwrap();
        assert_eq!(
            answers(&patched, &queries, now).await,
            answers(&full, &queries, now).await,
            "{var}"
        );
        clear_prefix(&full_prefix).await;
        delete_as(cleanup, &acl_prefix).await;
    }
}

#[tokio::test]
async fn without_rename_a_full_refresh_leaves_the_generation_whole_and_publishes() {
    for (n, (var, cleanup)) in WITHOUT_RENAME.into_iter().enumerate() {
        let url = test_server(var);
        let acl_prefix = prefix(&format!("in-place-acl-{n}"));
        let redis = RedisStore::connect(&url, &acl_prefix, RedisTimeouts::default()).unwrap();
        let cache = Store::Redis(redis.clone());
        let org = small_org(32);
        let first = canonical(org.clone());
        let published = cache.publish_org(first.clone()).await.unwrap();
        let read = canonical(randomly_changed(&org, 32, 8));
        let queries: Vec<String> = first
            .snapshot()
            .salesforce
            .users
            .iter()
            .chain(&read.snapshot().salesforce.users)
            .flat_map(|u| [u.username.clone(), u.id.as_str15().to_owned()])
            .collect();
        let now = Utc.with_ymd_and_hms(2026, 1, 16, 12, 0, 0).unwrap();
        // The script is refused at its first RENAME, before it changed anything: the
        // generation still answers as the org it was published from, and what was staged
        // for it is gone.
        assert_eq!(
            redis.rewrite_in_place(read.clone()).await.unwrap(),
            None,
            "{var}"
        );
        assert!(redis.rename_refused(), "{var}");
        assert_eq!(
            staging_keys_as(cleanup, &acl_prefix).await,
            Vec::<String>::new(),
            "{var}"
        );
        let full_prefix = prefix(&format!("in-place-acl-full-{n}"));
        clear_prefix(&full_prefix).await;
        let full = store(&full_prefix);
        full.publish_org(first).await.unwrap();
        assert_eq!(
            answers(&cache, &queries, now).await,
            answers(&full, &queries, now).await,
            "{var}"
        );
        // A full refresh then publishes a new generation.
        let (written, keys) = cache.refresh_org(read.clone()).await.unwrap();
        assert_eq!(keys, None, "{var}");
        assert_ne!(written.id, published.id, "{var}");
        clear_prefix(&full_prefix).await;
        full.publish_org(read).await.unwrap();
        assert_eq!(
            answers(&cache, &queries, now).await,
            answers(&full, &queries, now).await,
            "{var}"
        );
        clear_prefix(&full_prefix).await;
        delete_as(cleanup, &acl_prefix).await;
    }
}

/// A generation is deleted by naming its keys (`GenerationKeys::all_keys`), not by a `SCAN`:
/// every key a publish and a patch write must be among them, and none may outlive the
/// deletion.
#[tokio::test]
async fn every_key_a_publish_and_a_patch_write_is_named_by_the_deletion_and_none_survives_it() {
    let prefix = prefix("incr-all-keys");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let org = small_org(13);
    let first = canonical(org.clone());
    let generation = store.publish_org(first.clone()).await.unwrap();
    let changed = randomly_changed(&org, 13, 30);
    let outcome = store
        .patch(&generation, first, canonical(changed.clone()))
        .await
        .unwrap();
    assert!(matches!(outcome, PatchOutcome::Applied(_)), "{outcome:?}");

    let base = generation_base(&prefix, &generation.id);
    let written = crate::common::keys_matching(&format!("{base}*")).await;
    assert!(written.len() > 100, "{} keys", written.len());
    let named: BTreeSet<String> =
        crm_username::store::Keys::new(&prefix, crm_username::store::FORMAT)
            .unwrap()
            .generation(&generation.id)
            .all_keys()
            .into_iter()
            .collect();
    let unnamed: Vec<&String> = written.iter().filter(|k| !named.contains(*k)).collect();
    assert!(
        unnamed.is_empty(),
        "keys a deletion would miss: {unnamed:?}"
    );

    // Two publishes later the patched generation is the oldest, and goes.
    store.publish_org(canonical(changed.clone())).await.unwrap();
    store.publish_org(canonical(changed)).await.unwrap();
    assert_eq!(
        crate::common::keys_matching(&format!("{base}*")).await,
        Vec::<String>::new()
    );
    clear_prefix(&prefix).await;
}

/// The digest of every key name under the current generation of `prefix` (the fields of its
/// `digests:*` hashes).
async fn digests_of(prefix: &str) -> BTreeMap<String, Vec<u8>> {
    dump_current(prefix)
        .await
        .into_iter()
        .filter_map(|(key, mut value)| {
            let (hash, name) = key.split_once('/')?;
            hash.starts_with("digests:")
                .then(|| Some((name.to_owned(), value.pop()?)))?
        })
        .collect()
}

#[tokio::test]
async fn a_full_refresh_in_place_leaves_exactly_what_a_publish_of_the_same_org_writes() {
    for seed in [11_u64, 12, 13] {
        let (in_place_prefix, full_prefix) = (
            prefix(&format!("in-place-{seed}")),
            prefix(&format!("in-place-full-{seed}")),
        );
        clear_prefix(&in_place_prefix).await;
        let cache = store(&in_place_prefix);
        let org = small_org(seed);
        let first = canonical(org.clone());
        let published = cache.publish_org(first.clone()).await.unwrap();
        // An incremental round first, so that the digests compared are the ones patches kept.
        let patched = randomly_changed(&org, seed, 10);
        let outcome = cache
            .patch(&published, first, canonical(patched.clone()))
            .await
            .unwrap();
        assert!(matches!(outcome, PatchOutcome::Applied(_)), "{outcome:?}");
        let mut read = randomly_changed(&patched, seed + 100, 15);
        read.fetched_at = Utc.with_ymd_and_hms(2026, 1, 16, 2, 0, 0).unwrap();
        let read = canonical(read);

        let (written, keys) = cache.refresh_org(read.clone()).await.unwrap();
        let keys = keys.expect("a few keys differ: the generation is rewritten in place");
        assert_eq!(written.id, published.id, "the generation keeps its id");
        assert_ne!(written.epoch, published.epoch, "and gets a new epoch");
        assert!(
            (1..=200).contains(&keys),
            "seed {seed}: {keys} keys rewritten"
        );

        clear_prefix(&full_prefix).await;
        store(&full_prefix).publish_org(read).await.unwrap();
        let (a, b) = (
            dump_current(&in_place_prefix).await,
            dump_current(&full_prefix).await,
        );
        if let Some(difference) = first_difference(&a, &b) {
            panic!("seed {seed}: {difference}");
        }
        assert_eq!(staging_keys(&in_place_prefix).await, Vec::<String>::new());
        // The keys renamed into place expire with the generation, not as staged keys do.
        let staging_ms = STAGING_TTL.as_millis() as i64;
        let ttls = current_ttls(&in_place_prefix).await;
        assert!(ttls.values().all(|ttl| *ttl > staging_ms), "{ttls:?}");
        clear_prefix(&in_place_prefix).await;
        clear_prefix(&full_prefix).await;
    }
}

#[tokio::test]
async fn a_full_refresh_that_reads_what_the_cache_holds_writes_nothing() {
    let prefix = prefix("in-place-same");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let org = canonical(small_org(21));
    let published = store.publish_org(org.clone()).await.unwrap();
    let before = dump_current(&prefix).await;
    let (written, keys) = store.refresh_org(org).await.unwrap();
    assert_eq!(keys, Some(0));
    assert_eq!(written, published, "same generation, same epoch");
    assert_eq!(dump_current(&prefix).await, before);
    clear_prefix(&prefix).await;
}

#[tokio::test]
async fn after_a_recheck_a_full_refresh_rewrites_the_hashes_it_wrote() {
    let prefix = prefix("in-place-recheck");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let org = small_org(22);
    let canonical_org = canonical(org.clone());
    store.publish_org(canonical_org.clone()).await.unwrap();
    let before = dump_current(&prefix).await;
    // A re-check wrote a user as Salesforce has it now: deactivated.
    let mut user = org.salesforce.users[0].clone();
    user.is_active = !user.is_active;
    store
        .update_user(user, Vec::new(), Vec::new())
        .await
        .unwrap();
    let unknown: Vec<String> = digests_of(&prefix)
        .await
        .into_iter()
        .filter(|(_, d)| d == b"?")
        .map(|(name, _)| name)
        .collect();
    assert!(
        unknown.iter().any(|n| n.starts_with("user:"))
            && unknown.iter().any(|n| n.starts_with("ctx:")),
        "the re-check's hashes have unknown digests: {unknown:?}"
    );
    // The next full refresh reads the org as it was published: it rewrites exactly those.
    let (_, keys) = store.refresh_org(canonical_org).await.unwrap();
    assert_eq!(keys, Some(unknown.len()));
    assert_eq!(dump_current(&prefix).await, before);
    clear_prefix(&prefix).await;
}

#[tokio::test]
async fn after_another_replica_rewrote_in_place_the_first_ones_patch_writes_nothing() {
    let prefix = prefix("in-place-epoch");
    clear_prefix(&prefix).await;
    let (mine, other) = (store(&prefix), store(&prefix));
    let org = small_org(23);
    let first = canonical(org.clone());
    let published = mine.publish_org(first.clone()).await.unwrap();
    let theirs = canonical(randomly_changed(&org, 23, 5));
    let (rewritten, keys) = other.refresh_org(theirs).await.unwrap();
    assert!(keys.is_some_and(|k| k > 0), "{keys:?}");
    assert_eq!(
        mine.current_generation().await.unwrap().as_ref(),
        Some(&rewritten)
    );
    let before = dump_current(&prefix).await;
    // Forty changes: enough that the patch stages large values (with five it staged none).
    let outcome = mine
        .patch(&published, first, canonical(randomly_changed(&org, 24, 40)))
        .await
        .unwrap();
    assert_eq!(outcome, PatchOutcome::Stale);
    assert_eq!(dump_current(&prefix).await, before);
    // What the refused patch staged went with it (`dump_current` would list it too).
    assert_eq!(staging_keys(&prefix).await, Vec::<String>::new());
    clear_prefix(&prefix).await;
}

#[tokio::test]
async fn a_full_refresh_of_an_org_unlike_the_cached_one_publishes_a_new_generation() {
    let prefix = prefix("in-place-too-many");
    clear_prefix(&prefix).await;
    let store = store(&prefix);
    let published = store.publish_org(canonical(small_org(25))).await.unwrap();
    let other = generate_with(
        Params {
            sf_users: 2_000,
            ae_users: 400,
            business_units: 3,
            seed: 26,
        },
        Variety::default(),
    );
    let (written, keys) = store.refresh_org(canonical(other)).await.unwrap();
    assert_eq!(keys, None, "more than MAX_IN_PLACE_KEYS keys differ");
    assert_ne!(written.id, published.id);
    clear_prefix(&prefix).await;
}

#[tokio::test]
async fn digests_left_behind_by_a_stopped_patch_make_a_full_refresh_publish() {
    let prefix = prefix("in-place-pending");
    clear_prefix(&prefix).await;
    let cache = store(&prefix);
    let org = small_org(27);
    let published = cache.publish_org(canonical(org.clone())).await.unwrap();
    // A patch whose digest scripts did not all run (the process stopped between them).
    let mut conn = connection().await;
    let pending = format!("{}digests-pending", generation_base(&prefix, &published.id));
    let _: () = redis::AsyncCommands::set(&mut conn, &pending, "1")
        .await
        .unwrap();
    let (written, keys) = cache
        .refresh_org(canonical(randomly_changed(&org, 27, 3)))
        .await
        .unwrap();
    assert_eq!(keys, None, "the digests are not trusted");
    assert_ne!(written.id, published.id);
    clear_prefix(&prefix).await;
}

#[tokio::test]
async fn a_patch_whose_digests_take_several_scripts_leaves_what_a_publish_writes() {
    let (patched_prefix, full_prefix) = (prefix("digests-chunks"), prefix("digests-chunks-full"));
    clear_prefix(&patched_prefix).await;
    clear_prefix(&full_prefix).await;
    let cache = store(&patched_prefix);
    let org = small_org(28);
    let first = canonical(org.clone());
    let published = cache.publish_org(first.clone()).await.unwrap();
    // Enough changes to move several hundred digests: several scripts after the patch.
    let next = canonical(randomly_changed(&org, 28, 250));
    let gk = crm_username::store::Keys::new(&patched_prefix, crm_username::store::FORMAT)
        .unwrap()
        .generation(&published.id);
    let moved = crm_username::store::generation_patch(&first, &next, &gk)
        .iter()
        .filter(|op| matches!(op, crm_username::store::PatchOp::AddToDigest(..)))
        .count();
    assert!(moved > 200, "{moved} digests moved: three scripts at least");
    let outcome = cache.patch(&published, first, next.clone()).await.unwrap();
    assert!(matches!(outcome, PatchOutcome::Applied(_)), "{outcome:?}");
    store(&full_prefix).publish_org(next).await.unwrap();
    let (a, b) = (
        dump_current(&patched_prefix).await,
        dump_current(&full_prefix).await,
    );
    if let Some(difference) = first_difference(&a, &b) {
        panic!("{difference}");
    }
    clear_prefix(&patched_prefix).await;
    clear_prefix(&full_prefix).await;
}
