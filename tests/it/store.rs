//! The cache on a real Redis server: the Redis store answers exactly as the whole org does,
//! publishes atomically, cleans up, locks, and survives Redis restarting.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crm_username::demo;
use crm_username::diagnose::diagnose;
use crm_username::domain::{Org, OrgSnapshot, Query, Verdict};
use crm_username::store::{RedisStore, Store, StoreError};
use crm_username::synthetic::{self, Params};

use crate::common;
use common::{OwnRedis, clear_prefix, count_keys, free_port, prefix, redis_url};

async fn redis_store(test: &str) -> RedisStore {
    let store = RedisStore::connect(&redis_url(), &prefix(test), Default::default()).unwrap();
    clear_prefix(store.keys().prefix()).await;
    store
}

async fn key_count(store: &RedisStore, pattern: &str) -> usize {
    count_keys(store.keys().namespace(), pattern).await
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn queries_for(snapshot: &OrgSnapshot) -> Vec<String> {
    let users = &snapshot.salesforce.users;
    let mut queries = Vec::new();
    for (i, user) in users.iter().enumerate().step_by((users.len() / 60).max(1)) {
        queries.push(user.username.clone());
        queries.push(user.username.to_uppercase());
        queries.push(user.id.to_string());
        queries.push(user.id.as_str15().to_owned());
        queries.push(user.email.clone());
        queries.push(user.name.clone());
        if let Some(first) = user.name.split(' ').next() {
            queries.push(first.to_owned());
        }
        // A typo, a sandbox variant, and targets in each business unit.
        queries.push(user.username.replacen('e', "", 1));
        queries.push(format!("{}.uat", user.username));
        for bu in &snapshot.business_units {
            if let Some(ae) = bu.users.get(i % bu.users.len().max(1)) {
                queries.push(format!("{} for {}", user.username, ae.id));
                queries.push(format!("{} for {}", user.username, ae.email));
            }
        }
    }
    queries.extend(
        [
            "alex",
            "nobody@nowhere.example",
            "Jnae Xoe",
            "user1",
            "005Sy0000000001",
        ]
        .map(String::from),
    );
    queries
}

async fn assert_same_answers(snapshot: OrgSnapshot, test: &str) {
    let store = redis_store(test).await;
    let whole = Org::new(snapshot.clone());
    store.publish(snapshot.clone()).await.unwrap();
    let store = Store::Redis(store);
    let mut checked = 0;
    let mut verdicts = HashSet::new();
    for text in queries_for(&snapshot) {
        let Ok(query) = Query::parse(&text) else {
            continue;
        };
        let want = diagnose(&query, &whole, now());
        let got = common::outcome::check(&store, &query, now()).await.unwrap();
        assert_eq!(got, want, "query {text:?}");
        if let Ok(d) = &want {
            verdicts.insert(d.verdict as u8);
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} queries");
    assert_eq!(verdicts.len(), 4, "every verdict occurs among the queries");
}

#[tokio::test]
async fn redis_answers_exactly_as_the_whole_demo_org() {
    assert_same_answers(demo::snapshot(now()).unwrap(), "same-demo").await;
}

#[tokio::test]
async fn redis_answers_exactly_as_the_whole_synthetic_org() {
    let snapshot = synthetic::generate(Params {
        sf_users: 3_000,
        ae_users: 900,
        business_units: 3,
        seed: 11,
    });
    assert_same_answers(snapshot, "same-synthetic").await;
}

#[tokio::test]
async fn a_store_without_a_snapshot_says_so() {
    let store = Store::Redis(redis_store("empty").await);
    let err = common::outcome::check(&store, &Query::parse("jane@acme.com").unwrap(), now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSnapshot), "{err:?}");
    let err = common::outcome::check(
        &Store::memory(),
        &Query::parse("jane@acme.com").unwrap(),
        now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::NoSnapshot), "{err:?}");
}

/// Two orgs that disagree about everything a reader checks: a reader that mixed them would
/// see one generation's timestamp with the other's findings.
fn generation(n: i64) -> OrgSnapshot {
    let mut s = demo::snapshot(now() + chrono::Duration::minutes(n)).unwrap();
    if n % 2 == 1 {
        for user in &mut s.salesforce.users {
            user.is_active = false;
        }
        for bu in &mut s.business_units {
            bu.users.clear();
        }
    }
    s
}

#[tokio::test]
async fn readers_never_see_a_mix_of_two_generations() {
    let store = redis_store("atomic").await;
    store.publish(generation(0)).await.unwrap();
    let store = Store::Redis(store);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let store = store.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let query = Query::parse(
                [
                    "sam.sales@acme.com",
                    "old.timer@acme.com",
                    "alex",
                    "email_a@example.com for 1011",
                ][r],
            )
            .unwrap();
            let mut seen = HashSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let outcome = common::outcome::check(&store, &query, now()).await.unwrap();
                let n = match &outcome {
                    Ok(d) => (d.data_as_of - now()).num_minutes(),
                    // Only odd generations lack the target AE user.
                    Err(_) => {
                        assert_eq!(r, 3);
                        1
                    }
                };
                // The whole answer is the one that generation gives, not only its timestamp.
                let want = diagnose(&query, &Org::new(generation(n)), now());
                assert_eq!(outcome, want, "generation {n}");
                seen.insert(n % 2);
            }
            seen
        }));
    }
    for n in 1..=6 {
        store.publish(generation(n)).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = HashSet::new();
    for reader in readers {
        seen.extend(reader.await.unwrap());
    }
    assert_eq!(seen.len(), 2, "readers saw both kinds of generation");
}

#[tokio::test]
async fn a_target_is_read_from_the_business_units_of_the_generation_answering() {
    // The store reads a target in as many business units as the generation it last saw
    // had; a refresh that adds or removes one must not leave a reader with the old count.
    let both = demo::snapshot(now()).unwrap();
    let mut one = both.clone();
    one.business_units.truncate(1);
    let store = redis_store("bu-count").await;
    let store = Store::Redis(store);
    let queries = [
        "mia.multi@acme.com for 2001",
        "email_a@example.com for email_b@example.com",
    ];
    for snapshot in [both.clone(), one, both] {
        store.publish(snapshot.clone()).await.unwrap();
        let whole = Org::new(snapshot);
        for text in queries {
            let query = Query::parse(text).unwrap();
            let got = common::outcome::check(&store, &query, now()).await.unwrap();
            assert_eq!(got, diagnose(&query, &whole, now()), "{text}");
        }
    }
}

#[tokio::test]
async fn publishing_keeps_only_the_current_and_previous_generation() {
    let store = redis_store("cleanup").await;
    for n in 0..4 {
        store.publish(generation(n * 2)).await.unwrap();
    }
    let metas = key_count(&store, "gen:*:meta").await;
    assert_eq!(metas, 2);
    let users_per_generation = demo::snapshot(now()).unwrap().salesforce.users.len();
    assert_eq!(
        common::count_fields(store.keys().namespace(), "gen:*:user:*").await,
        2 * users_per_generation
    );
}

/// Redis holds two generations at most: a publish deletes the ones before the current one
/// before it writes a key of the new one (watched with `MONITOR`).
#[tokio::test]
async fn a_publish_deletes_the_older_generations_before_writing_the_new_one() {
    use redis::AsyncCommands;
    let store = redis_store("delete-first").await;
    store.publish(generation(0)).await.unwrap();
    store.publish(generation(2)).await.unwrap();
    let mut conn = common::connection().await;
    let generations = store.keys().generations();
    let before: Vec<String> = conn.zrange(&generations, 0, -1).await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    let lines = monitored(&store, async {
        store.publish(generation(4)).await.unwrap();
    })
    .await;
    let after: Vec<String> = conn.zrange(&generations, 0, -1).await.unwrap();
    let new = after.iter().find(|g| !before.contains(g)).unwrap();
    assert_eq!(after, vec![before[1].clone(), new.clone()]);
    let first = |command: &str, generation: &str| {
        let key = store.keys().generation(generation).meta();
        let key = key.trim_end_matches("meta");
        lines
            .iter()
            .position(|l| l.contains(&format!("\"{command}\"")) && l.contains(key))
    };
    let deleted = first("UNLINK", &before[0]).expect("the oldest generation is unlinked");
    let written = first("SET", new).expect("the new generation is written");
    assert!(
        deleted < written,
        "the oldest generation was unlinked (command {deleted}) after the new one's first SET (command {written})"
    );
}

#[tokio::test]
async fn only_one_of_two_racing_refreshers_gets_the_lock() {
    let store = Store::Redis(redis_store("lock").await);
    let ttl = Duration::from_secs(5);
    let (a, b) = tokio::join!(store.try_lock(ttl), store.try_lock(ttl));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "exactly one holds the lock");
    let held = a.or(b).unwrap();
    assert!(store.try_lock(ttl).await.unwrap().is_none());
    assert!(store.renew_lock(&held, ttl).await.unwrap());
    store.release_lock(&held).await.unwrap();
    assert!(
        !store.renew_lock(&held, ttl).await.unwrap(),
        "a released lock cannot be renewed"
    );
    let again = store.try_lock(ttl).await.unwrap();
    assert!(again.is_some());
}

#[tokio::test]
async fn an_expired_lock_can_be_taken_and_the_old_holder_cannot_release_it() {
    let store = Store::Redis(redis_store("lock-expiry").await);
    let old = store
        .try_lock(Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = store
        .try_lock(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    store.release_lock(&old).await.unwrap();
    assert!(
        store
            .try_lock(Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "the new holder still holds it"
    );
    assert!(
        store
            .renew_lock(&new, Duration::from_secs(5))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_in_process_lock_behaves_the_same() {
    let store = Store::memory();
    let ttl = Duration::from_secs(5);
    let held = store.try_lock(ttl).await.unwrap().unwrap();
    assert!(store.try_lock(ttl).await.unwrap().is_none());
    store.release_lock(&held).await.unwrap();
    assert!(store.try_lock(ttl).await.unwrap().is_some());
}

#[tokio::test]
async fn the_store_reconnects_after_redis_restarts() {
    let port = free_port();
    let mut server = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let store = Store::Redis(RedisStore::connect(&url, "restart:", Default::default()).unwrap());
    store.publish(demo::snapshot(now()).unwrap()).await.unwrap();
    let query = Query::parse("sam.sales@acme.com").unwrap();
    assert_eq!(
        common::outcome::check(&store, &query, now())
            .await
            .unwrap()
            .unwrap()
            .verdict,
        Verdict::Blocked
    );

    server.stop();
    let started = std::time::Instant::now();
    let err = common::outcome::check(&store, &query, now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an unavailable cache is reported quickly"
    );

    let _server = OwnRedis::start(server.port);
    // The restarted server kept nothing: the store says so, then serves a new publish.
    let mut outcome = common::outcome::check(&store, &query, now()).await;
    for _ in 0..50 {
        if !matches!(outcome, Err(StoreError::Unavailable(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = common::outcome::check(&store, &query, now()).await;
    }
    assert!(
        matches!(outcome, Err(StoreError::NoSnapshot)),
        "{outcome:?}"
    );
    store.publish(demo::snapshot(now()).unwrap()).await.unwrap();
    assert_eq!(
        common::outcome::check(&store, &query, now())
            .await
            .unwrap()
            .unwrap()
            .verdict,
        Verdict::Blocked
    );
}

/// The users of the small org a query reads, by id and username.
async fn users_read(store: &RedisStore, text: &str) -> Vec<(String, String, bool)> {
    let org = store.query_org(&Query::parse(text).unwrap()).await.unwrap();
    org.snapshot()
        .salesforce
        .users
        .iter()
        .map(|u| (u.id.to_string(), u.username.clone(), u.is_active))
        .collect()
}

/// What `MONITOR` showed while `during` ran, one line a command, in order (scripts' commands
/// and other tests' included).
async fn monitored<F: std::future::Future<Output = ()>>(
    store: &RedisStore,
    during: F,
) -> Vec<String> {
    use futures_util::StreamExt;
    use redis::AsyncCommands;
    let prefix = store.keys().prefix().to_owned();
    let (start, end) = (
        format!("{prefix}monitor-start"),
        format!("{prefix}monitor-end"),
    );
    let monitor = redis::Client::open(redis_url())
        .unwrap()
        .get_async_monitor()
        .await
        .unwrap();
    let mut conn = common::connection().await;
    let watched = {
        let end = end.clone();
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut stream = monitor.into_on_message::<String>();
            while let Some(line) = stream.next().await {
                let done = line.contains(&end);
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        })
    };
    // MONITOR starts showing commands at some point after it is asked for: wait until it
    // shows a marker.
    let _: Option<String> = conn.get(&start).await.unwrap();
    during.await;
    let _: Option<String> = conn.get(&end).await.unwrap();
    let lines = tokio::time::timeout(Duration::from_secs(30), watched)
        .await
        .expect("MONITOR shows the end marker")
        .unwrap();
    let from = lines
        .iter()
        .position(|l| l.contains(&start))
        .expect("MONITOR shows the start marker");
    lines[from + 1..lines.len() - 1].to_vec()
}

/// The commands a client (not a script) sent with the store's prefix while `during` ran: each
/// is one line of `MONITOR`, so their number is the round trips of a check that sends one
/// command at a time.
async fn commands_sent<F: std::future::Future<Output = ()>>(
    store: &RedisStore,
    during: F,
) -> Vec<String> {
    let prefix = store.keys().prefix().to_owned();
    monitored(store, during)
        .await
        .into_iter()
        .filter(|l| !l.contains(" lua]") && l.contains(&prefix))
        .collect()
}

#[tokio::test]
async fn a_first_check_of_a_username_reads_its_user_and_context_in_one_round_trip() {
    // A username's entry names the user id; the check's script reads that user and its
    // context in the same call, so a username never asked before costs one round trip (on a
    // managed Redis across a network, a round trip is most of a check's time).
    let store = redis_store("one-round-trip").await;
    store.publish(demo::snapshot(now()).unwrap()).await.unwrap();
    // Another query first, so that the replica knows the generation and its metadata.
    users_read(&store, "ok.user@acme.com").await;
    let mut read = Vec::new();
    let commands = commands_sent(&store, async {
        read = users_read(&store, "Sam.Sales@acme.com").await;
    })
    .await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].1, "sam.sales@acme.com");
    assert_eq!(commands.len(), 1, "{commands:#?}");
    assert!(commands[0].contains("\"EVALSHA\""), "{commands:#?}");
    // The context came with it: the same answer as the whole org gives.
    let query = Query::parse("sam.sales@acme.com").unwrap();
    let whole = Org::new(demo::snapshot(now()).unwrap());
    let small = store.query_org(&query).await.unwrap();
    assert_eq!(
        diagnose(&query, &small, now()),
        diagnose(&query, &whole, now())
    );
    clear_prefix(store.keys().prefix()).await;
}

#[tokio::test]
async fn a_username_asked_again_reads_what_a_change_in_place_wrote() {
    // The second check of a username reads its user with the username (one round trip, from
    // where it resolved last time): a re-check's write in the same generation must show, and
    // so must the username now resolving to another user.
    let store = redis_store("hints").await;
    let snapshot = demo::snapshot(now()).unwrap();
    let user = |name: &str| {
        snapshot
            .salesforce
            .users
            .iter()
            .find(|u| u.username == name)
            .unwrap()
            .clone()
    };
    let (ok, other) = (user("ok.user@acme.com"), user("dana.deleted@acme.com"));
    store.publish(snapshot.clone()).await.unwrap();
    let first = users_read(&store, "ok.user@acme.com").await;
    assert_eq!(
        first,
        [(ok.id.to_string(), "ok.user@acme.com".to_owned(), true)]
    );
    assert_eq!(users_read(&store, "ok.user@acme.com").await, first);

    let mut inactive = ok.clone();
    inactive.is_active = false;
    store
        .update_user(inactive, Vec::new(), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        users_read(&store, "ok.user@acme.com").await,
        [(ok.id.to_string(), "ok.user@acme.com".to_owned(), false)]
    );

    let mut moved = other.clone();
    moved.username = "ok.user@acme.com".to_owned();
    store
        .update_user(moved, Vec::new(), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        users_read(&store, "ok.user@acme.com").await,
        [(
            other.id.to_string(),
            "ok.user@acme.com".to_owned(),
            other.is_active
        )]
    );
    clear_prefix(store.keys().prefix()).await;
}

#[tokio::test]
async fn a_patch_that_changes_no_name_keeps_the_did_you_mean_index_and_one_that_does_reads_it_again()
 {
    // "Did you mean" reads every username and name (megabytes in a large org) and builds an
    // index of them. Every patch moves the generation's revision; one that changed no username
    // or name leaves the index's digest as it was, and replica `a` keeps what it built.
    let a = redis_store("did-you-mean-kept").await;
    let b = RedisStore::connect(
        &redis_url(),
        &prefix("did-you-mean-kept"),
        Default::default(),
    )
    .unwrap();
    let snapshot = demo::snapshot(now()).unwrap();
    b.publish(snapshot.clone()).await.unwrap();
    let generation = b.current_generation_ref().await.unwrap().unwrap();
    let suggestions = b.keys().generation(&generation.id).suggestions();
    let usernames = |read: Vec<(String, String, bool)>| -> Vec<String> {
        read.into_iter().map(|(_, username, _)| username).collect()
    };
    let typo = "ok.usr@acme.com";
    assert!(usernames(users_read(&a, typo).await).contains(&"ok.user@acme.com".to_owned()));

    let patch = |from: OrgSnapshot, to: OrgSnapshot| {
        let b = &b;
        let generation = generation.clone();
        async move {
            let outcome = b
                .patch(
                    &generation,
                    std::sync::Arc::new(Org::without_search(from)),
                    std::sync::Arc::new(Org::without_search(to)),
                )
                .await
                .unwrap();
            assert!(
                matches!(outcome, crm_username::store::PatchOutcome::Applied(_)),
                "{outcome:?}"
            );
        }
    };
    let mut deactivated = snapshot.clone();
    let ok = |s: &mut OrgSnapshot| -> usize {
        s.salesforce
            .users
            .iter()
            .position(|u| u.username == "ok.user@acme.com")
            .unwrap()
    };
    let i = ok(&mut deactivated);
    deactivated.salesforce.users[i].is_active = false;
    patch(snapshot.clone(), deactivated.clone()).await;
    let mut read = Vec::new();
    let commands = commands_sent(&a, async {
        read = users_read(&a, typo).await;
    })
    .await;
    assert!(usernames(read.clone()).contains(&"ok.user@acme.com".to_owned()));
    let index_reads: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains(&format!("\"{suggestions}\"")))
        .collect();
    assert!(index_reads.is_empty(), "{index_reads:#?}");
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.contains("\"GET\"") && c.ends_with(":suggestions-digest\""))
            .count(),
        1,
        "{commands:#?}"
    );

    // A patch that renames a user rewrites the index and its digest: `a` reads it again.
    let mut renamed = deactivated.clone();
    renamed.salesforce.users[i].username = "ok.renamed@acme.com".to_owned();
    patch(deactivated, renamed).await;
    let commands = commands_sent(&a, async {
        read = users_read(&a, "ok.renamd@acme.com").await;
    })
    .await;
    assert!(
        usernames(read.clone()).contains(&"ok.renamed@acme.com".to_owned()),
        "{read:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.contains("\"GETRANGE\"") && c.contains(&format!("\"{suggestions}\""))),
        "{commands:#?}"
    );
    clear_prefix(a.keys().prefix()).await;
}

#[tokio::test]
async fn the_did_you_mean_index_is_read_over_a_connection_of_its_own_not_the_checks_one() {
    // The index is megabytes in a large org: read on the connection the checks share, its
    // pieces would queue in front of their reads (and be parsed by the workers that answer
    // them). It is read over a connection opened for it, on a thread of its own.
    let store = redis_store("did-you-mean-own-connection").await;
    store.publish(demo::snapshot(now()).unwrap()).await.unwrap();
    let generation = store.current_generation_ref().await.unwrap().unwrap().id;
    let suggestions = store.keys().generation(&generation).suggestions();
    let mut read = Vec::new();
    let lines = monitored(&store, async {
        read = users_read(&store, "ok.usr@acme.com").await;
    })
    .await;
    assert!(
        read.iter()
            .any(|(_, username, _)| username == "ok.user@acme.com"),
        "{read:?}"
    );
    // `1733312345.123456 [0 127.0.0.1:54321] "GETRANGE" …`: the client is in the brackets.
    let client = |line: &String| -> String {
        line.split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(client, _)| client.to_owned())
            .unwrap_or_default()
    };
    let prefix = store.keys().prefix().to_owned();
    let checks: std::collections::BTreeSet<String> = lines
        .iter()
        .filter(|l| l.contains("\"EVALSHA\"") && l.contains(&prefix))
        .map(client)
        .collect();
    let index: std::collections::BTreeSet<String> = lines
        .iter()
        .filter(|l| l.contains("\"GETRANGE\"") && l.contains(&format!("\"{suggestions}\"")))
        .map(client)
        .collect();
    assert_eq!(checks.len(), 1, "the check's reads: {lines:#?}");
    assert_eq!(index.len(), 1, "the index's pieces: {lines:#?}");
    assert!(checks.is_disjoint(&index), "{checks:?} {index:?}");
    clear_prefix(store.keys().prefix()).await;
}

#[tokio::test]
async fn a_check_asked_again_is_answered_from_memory_until_any_replica_writes_its_generation() {
    // Replica `a` answers checks; replica `b` (another store on the same cache) writes.
    let a = redis_store("read-cache").await;
    let b = RedisStore::connect(&redis_url(), &prefix("read-cache"), Default::default()).unwrap();
    let snapshot = demo::snapshot(now()).unwrap();
    let ok = snapshot
        .salesforce
        .users
        .iter()
        .find(|u| u.username == "ok.user@acme.com")
        .unwrap()
        .clone();
    b.publish(snapshot.clone()).await.unwrap();
    let active = [(ok.id.to_string(), "ok.user@acme.com".to_owned(), true)];
    let inactive = [(ok.id.to_string(), "ok.user@acme.com".to_owned(), false)];
    assert_eq!(users_read(&a, "ok.user@acme.com").await, active);

    // The user's record rewritten behind the bot's back, the revision left as it was (none of
    // the bot's writers does that). What a query read on its first ask is not kept (most are
    // asked once): the second ask reads Redis and sees the rewrite.
    let generation = b.current_generation_ref().await.unwrap().unwrap();
    let gk = b.keys().generation(&generation.id);
    let conn = common::connection().await;
    let rewrite = |is_active: bool| {
        let mut behind = ok.clone();
        behind.is_active = is_active;
        let mut conn = conn.clone();
        let record = gk.user(ok.id);
        async move {
            let _: () = redis::AsyncCommands::hset(
                &mut conn,
                record.key,
                record.field,
                serde_json::to_vec(&behind).unwrap(),
            )
            .await
            .unwrap();
        }
    };
    rewrite(false).await;
    assert_eq!(users_read(&a, "ok.user@acme.com").await, inactive);
    // From the second ask on it is kept: the third does not read the next rewrite, so it
    // came from memory. A query not asked before reads Redis and sees it.
    rewrite(true).await;
    assert_eq!(users_read(&a, "ok.user@acme.com").await, inactive);
    assert_eq!(users_read(&a, ok.id.as_str15()).await, active);

    // A re-check on the other replica moves the revision: the next check reads Redis again.
    let mut rechecked = ok.clone();
    rechecked.name = "Ok Rechecked".to_owned();
    b.update_user(rechecked, Vec::new(), Vec::new())
        .await
        .unwrap();
    let org = a
        .query_org(&Query::parse("ok.user@acme.com").unwrap())
        .await
        .unwrap();
    assert_eq!(org.snapshot().salesforce.users[0].name, "Ok Rechecked");

    // So does an incremental refresh's patch of the generation.
    let old = std::sync::Arc::new(Org::without_search(snapshot.clone()));
    let mut changed = snapshot.clone();
    changed
        .salesforce
        .users
        .iter_mut()
        .find(|u| u.id == ok.id)
        .unwrap()
        .name = "Ok Patched".to_owned();
    let new = std::sync::Arc::new(Org::without_search(changed.clone()));
    assert!(matches!(
        b.patch(&generation, old, new).await.unwrap(),
        crm_username::store::PatchOutcome::Applied(_)
    ));
    let org = a
        .query_org(&Query::parse("ok.user@acme.com").unwrap())
        .await
        .unwrap();
    assert_eq!(org.snapshot().salesforce.users[0].name, "Ok Patched");

    // And a new generation.
    changed
        .salesforce
        .users
        .iter_mut()
        .find(|u| u.id == ok.id)
        .unwrap()
        .name = "Ok Republished".to_owned();
    b.publish(changed).await.unwrap();
    let org = a
        .query_org(&Query::parse("ok.user@acme.com").unwrap())
        .await
        .unwrap();
    assert_eq!(org.snapshot().salesforce.users[0].name, "Ok Republished");
    clear_prefix(a.keys().prefix()).await;
}

/// The demo org as a refresh reads it: the memberships of the groups its assignments reach.
fn as_refreshed(mut snapshot: OrgSnapshot) -> OrgSnapshot {
    let reachable = crm_username::domain::reachable_in(
        &snapshot.salesforce.groups,
        &snapshot.salesforce.group_members,
        &snapshot.business_units,
    );
    let members = &mut snapshot.salesforce.group_members;
    members.retain(|m| reachable.contains(&m.group_id));
    crm_username::sources::org_read::canonical_members(members);
    snapshot
}

#[tokio::test]
async fn a_recheck_caches_the_same_context_as_a_full_refresh_on_both_stores() {
    use crm_username::domain::{GroupMember, SfId};
    let demo = demo::snapshot(now()).unwrap();
    let group = |name: &str| {
        demo.salesforce
            .groups
            .iter()
            .find(|g| g.name == name)
            .unwrap()
            .id
    };
    let nora = demo
        .salesforce
        .users
        .iter()
        .find(|u| u.username == "nora.north@acme.com")
        .unwrap()
        .clone();
    let query = Query::parse("nora.north@acme.com").unwrap();
    let fresh_ae: Vec<_> = demo
        .business_units
        .iter()
        .map(|bu| (bu.id, bu.users.clone()))
        .collect();
    // Read live: Nora's direct groups are Loop B (nested in no assigned group: a refresh
    // does not read its members), then Loop B and EMEA Sales (assigned through EMEA Team).
    let cases: [Vec<SfId>; 2] = [
        vec![group("Loop B")],
        vec![group("Loop B"), group("EMEA Sales")],
    ];
    for (case, live) in cases.iter().enumerate() {
        // What a full refresh after the change publishes.
        let mut changed = demo.clone();
        changed
            .salesforce
            .group_members
            .retain(|m| m.member_id != nora.id);
        changed
            .salesforce
            .group_members
            .extend(live.iter().map(|&group_id| GroupMember {
                group_id,
                member_id: nora.id,
            }));
        let refreshed = as_refreshed(changed.clone());
        let want = diagnose(&query, &Org::new(refreshed), now());
        if case == 0 {
            // Keeping every live group would answer differently: the filter matters.
            assert_ne!(
                diagnose(&query, &Org::new(changed), now()),
                want,
                "the unreachable group shows in the answer"
            );
        }

        let redis = Store::Redis(redis_store(&format!("recheck-reach-{case}")).await);
        for (name, store) in [("memory", Store::memory()), ("redis", redis)] {
            store.publish(as_refreshed(demo.clone())).await.unwrap();
            store
                .update_user(nora.clone(), live.clone(), fresh_ae.clone())
                .await
                .unwrap();
            let got = common::outcome::check(&store, &query, now()).await.unwrap();
            assert_eq!(got, want, "case {case}, {name} store");
        }
    }
}

/// The check's script finds a username's user by computing its hash bucket in Lua: it must be
/// the bucket the refresh wrote it to, for every byte a field can hold.
#[tokio::test]
async fn redis_lua_computes_the_same_record_bucket_as_the_refresh() {
    let mut conn = common::connection().await;
    let script = redis::Script::new(&format!(
        "{}\nreturn bucket(ARGV[1])",
        crm_username::store::BUCKET_LUA
    ));
    let long = "x".repeat(300);
    let fields = [
        "",
        "005Ak00000SAMS1",
        "sam.sales@acme.com",
        "émile.zoë@exämple.com",
        "0:1003",
        "9:\u{7f}\u{ff}@\u{10ffff}",
        long.as_str(),
    ];
    for field in fields {
        let lua: u32 = script.arg(field).invoke_async(&mut conn).await.unwrap();
        assert_eq!(lua, crm_username::store::bucket(field), "{field:?}");
    }
}

#[tokio::test]
async fn redis_lua_adds_digests_as_the_refresher_does() {
    use crm_username::store::digest;
    let mut conn = common::connection().await;
    let script = redis::Script::new(&format!(
        "{}\nreturn add128(ARGV[1], ARGV[2])",
        digest::ADD_LUA
    ));
    // Splitmix64, for numbers spread over all 128 bits.
    let mut state = 7_u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        u128::from(z ^ (z >> 31))
    };
    let mut pairs: Vec<(u128, u128)> = vec![
        (u128::MAX, 1),
        (u128::MAX, u128::MAX),
        (0xffff_ffff, 1),
        (0, 0),
        (1 << 96, (1 << 96) + (1 << 95)),
    ];
    for _ in 0..50 {
        let (a, b) = ((next() << 64) | next(), (next() << 64) | next());
        pairs.push((a, b));
    }
    for (a, b) in pairs {
        let sum: Vec<u8> = script
            .arg(digest::bytes(a))
            .arg(digest::bytes(b))
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(sum, digest::bytes(a.wrapping_add(b)), "{a:x} + {b:x}");
    }
}
