//! The bot on the Redis deployments platform teams run: a TLS server (`rediss://`, a CA of the
//! test's own), a server with an ACL user, and a three-master Redis Cluster. On each, the same
//! scenario (a refresh from the fakes, the refresh lock between two instances, checks by
//! username, id and name and with a typo, a re-check, the audit, mention dedupe and the digest
//! claim between two instances, follow-ups scheduled and taken by two instances, two more
//! refreshes) gives exactly what it gives on one plain Redis. `scripts/redis-test-servers.sh`
//! starts the servers (scripts/test.sh runs it).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crm_username::demo;
use crm_username::domain::{OrgSnapshot, Query};
use crm_username::fakes::FakeUpstreams;
use crm_username::refresh::{RefreshError, Sources, recheck, refresh_locked};
use crm_username::store::{
    FollowUp, FollowUpLimits, FollowUpReply, RedisSettings, RedisStore, Store, StoreError,
};

use crate::common;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

/// A server URL the test script exported; without it the test fails and says how to start it.
fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test servers with `eval \"$(scripts/redis-test-servers.sh)\"` \
             (TLS, ACL and Cluster Redis on ports 16380-16384; scripts/test.sh does this), then run the tests again"
        )
    })
}

fn plain() -> RedisSettings {
    RedisSettings::url(&common::redis_url())
}

fn tls() -> RedisSettings {
    RedisSettings {
        url: server("TEST_REDIS_TLS_URL"),
        ca_file: Some(server("TEST_REDIS_TLS_CA").into()),
        cluster: false,
    }
}

fn acl() -> RedisSettings {
    RedisSettings::url(&server("TEST_REDIS_ACL_URL"))
}

fn cluster() -> RedisSettings {
    RedisSettings {
        url: server("TEST_REDIS_CLUSTER_URL"),
        ca_file: None,
        cluster: true,
    }
}

/// A prefix no other run shares (the ACL user may only touch `test:*`).
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:deploy-{test}:{}-{nanos}:", std::process::id())
}

fn open(settings: &RedisSettings, prefix: &str) -> Store {
    Store::Redis(RedisStore::open(settings, prefix, Default::default()).unwrap())
}

/// The demo org as the fakes serve it, and the same org after an admin cleared the deleted AE
/// user's CRM username (for the re-check).
struct Upstreams {
    served: FakeUpstreams,
    sources: Sources,
    fresh: FakeUpstreams,
    fresh_sources: Sources,
}

async fn upstreams() -> Upstreams {
    let org: OrgSnapshot = demo::snapshot(now()).unwrap();
    let mut fresh = org.clone();
    fresh.business_units[0].users.retain(|u| u.id != 1003);
    let served = FakeUpstreams::start(&org).await.unwrap();
    let sources = served.sources(&org).unwrap();
    let fresh_upstreams = FakeUpstreams::start(&fresh).await.unwrap();
    let fresh_sources = fresh_upstreams.sources(&fresh).unwrap();
    Upstreams {
        served,
        sources,
        fresh: fresh_upstreams,
        fresh_sources,
    }
}

const QUERIES: &[&str] = &[
    // By username, any case, and by email.
    "sam.sales@acme.com",
    "SAM.SALES@ACME.COM",
    "nora.north@acme.com",
    "old.timer@acme.com",
    "eve.new@acme.com",
    "dana.deleted@acme.com",
    // By id, 15 and 18 characters.
    "005Ak00000SAMS1",
    "005Ak00000SAMS1IAP",
    "005Ak00000NORA1IAP",
    // By name and part of one.
    "Sam Sales",
    "alex",
    "Nora",
    // Typos and a sandbox variant: "did you mean".
    "sam.sals@acme.com",
    "Nroa North",
    "sam.sales@acme.com.uat",
    "nobody@nowhere.example",
    // With a target, by email and by id.
    "email_a@example.com for email_b@example.com",
    "sam.sales@acme.com for 1003",
];

/// Everything the scenario saw, as text, step by step.
type Transcript = Vec<(String, String)>;

fn note(transcript: &mut Transcript, step: impl Into<String>, value: impl std::fmt::Debug) {
    transcript.push((step.into(), format!("{value:#?}")));
}

async fn checks(transcript: &mut Transcript, round: &str, a: &Store, b: &Store) {
    for (i, text) in QUERIES.iter().enumerate() {
        let query = Query::parse(text).unwrap();
        // Alternate the instances: each answers from what the other published.
        let store = if i % 2 == 0 { a } else { b };
        note(
            transcript,
            format!("{round}: check {text}"),
            common::outcome::check(&store, &query, now()).await,
        );
    }
}

/// The scenario, on two instances (two connections, as two replicas) of one deployment.
async fn scenario(settings: &RedisSettings, test: &str, upstreams: &Upstreams) -> Transcript {
    let prefix = unique_prefix(test);
    let (a, b) = (open(settings, &prefix), open(settings, &prefix));
    let mut transcript = Transcript::new();

    note(
        &mut transcript,
        "before any refresh",
        common::outcome::check(&a, &Query::parse("sam.sales@acme.com").unwrap(), now()).await,
    );

    // The refresh lock between two instances: one refreshes, the other is told it is busy.
    let ttl = Duration::from_secs(30);
    let (ra, rb) = tokio::join!(
        refresh_locked(&upstreams.sources, &a, now(), ttl),
        refresh_locked(&upstreams.sources, &b, now(), ttl)
    );
    let mut outcomes: Vec<String> = [ra, rb]
        .into_iter()
        .map(|r| match r {
            Ok(report) => format!("refreshed {} {:?}", report.sf_users, report.ae_users),
            Err(RefreshError::Busy) => "busy".to_owned(),
            Err(err) => format!("failed: {err}"),
        })
        .collect();
    outcomes.sort();
    note(&mut transcript, "two instances refresh at once", outcomes);

    checks(&mut transcript, "first generation", &a, &b).await;

    // A re-check reads one user live and updates the cache both instances read.
    let query = Query::parse("dana.deleted@acme.com").unwrap();
    note(
        &mut transcript,
        "re-check",
        recheck(&upstreams.fresh_sources, &a, &query, now()).await,
    );
    note(
        &mut transcript,
        "check after the re-check, other instance",
        common::outcome::check(&b, &query, now()).await,
    );

    let audit = |store: Store| async move {
        common::outcome::audit(&store, "", now(), None, Arc::new(|_| {}))
            .await
            .map(|r| {
                r.map(|report| {
                    (
                        report.rows,
                        report.sf_users_scanned,
                        report.ae_users_scanned,
                    )
                })
            })
    };
    note(&mut transcript, "audit", audit(b.clone()).await);

    // A mention delivered to both instances (Slack's retry) is handled by one.
    let (da, db) = tokio::join!(
        a.first_delivery("Ev0MENTION1"),
        b.first_delivery("Ev0MENTION1")
    );
    let mut deliveries = vec![da.unwrap(), db.unwrap()];
    deliveries.sort();
    note(
        &mut transcript,
        "mention delivered to both instances: first?",
        deliveries,
    );

    // The digest is claimed by one instance per period; its memory is shared.
    let (ca, cb) = tokio::join!(a.claim("digest", ttl), b.claim("digest", ttl));
    let mut claims = vec![ca.unwrap(), cb.unwrap()];
    claims.sort();
    note(
        &mut transcript,
        "digest claimed by both instances: won?",
        claims,
    );
    a.set_job_state("digest", b"last rows".to_vec())
        .await
        .unwrap();
    note(
        &mut transcript,
        "digest memory, other instance",
        b.job_state("digest").await,
    );

    // Follow-ups: the limits, and a due one taken by one instance only.
    let follow_up = |id: &str, user: &str| FollowUp {
        id: id.to_owned(),
        query: "eve.new@acme.com".to_owned(),
        team: "T0TEAM".to_owned(),
        user: user.to_owned(),
        reply: FollowUpReply::Thread {
            channel: "C0CHAN".to_owned(),
            thread_ts: "1700000000.000500".to_owned(),
        },
        tries: 0,
    };
    let limits = FollowUpLimits {
        per_user: 1,
        per_team: 2,
    };
    let delay = Duration::from_secs(900);
    let mut scheduled = Vec::new();
    for (id, user) in [("f1", "U1"), ("f2", "U1"), ("f3", "U2"), ("f4", "U3")] {
        let store = if id == "f3" { &b } else { &a };
        let outcome = store
            .schedule_follow_up(&follow_up(id, user), now(), limits, delay)
            .await;
        scheduled.push(format!("{id}: {outcome:?}"));
    }
    note(&mut transcript, "follow-ups scheduled", scheduled);
    let later = Utc::now() + chrono::Duration::days(1);
    let (fa, fb) = tokio::join!(
        a.claim_due_follow_ups(later, 10),
        b.claim_due_follow_ups(later, 10)
    );
    let mut claimed: Vec<String> = [fa.unwrap(), fb.unwrap()]
        .into_iter()
        .flatten()
        .map(|f| f.id)
        .collect();
    claimed.sort();
    note(
        &mut transcript,
        "due follow-ups taken by both instances",
        claimed,
    );
    let mut again = follow_up("f1", "U1");
    again.tries = 1;
    note(
        &mut transcript,
        "follow-up rescheduled, then read by the other instance",
        (
            b.reschedule_follow_up(&again, now(), delay).await,
            a.follow_up("f1").await.map(|f| f.map(|f| f.tries)),
        ),
    );
    note(
        &mut transcript,
        "follow-up finished, then rescheduled",
        (
            a.finish_follow_up(&follow_up("f3", "U2")).await,
            b.reschedule_follow_up(&follow_up("f3", "U2"), now(), delay)
                .await,
            a.follow_up("f3").await,
        ),
    );

    // Two more refreshes, in place: the second rewrites the hashes the re-check wrote (staged
    // under names of its own and renamed into place in the generation's slot), the third
    // the AE user the admin removed meanwhile. Each says how many keys it rewrote.
    let second = refresh_locked(&upstreams.sources, &a, now(), ttl)
        .await
        .unwrap();
    note(&mut transcript, "second refresh rewrote", second.writes);
    checks(&mut transcript, "second refresh", &a, &b).await;
    let third = refresh_locked(&upstreams.fresh_sources, &a, now(), ttl)
        .await
        .unwrap();
    note(&mut transcript, "third refresh rewrote", third.writes);
    checks(&mut transcript, "third refresh", &b, &a).await;
    let status = b.status().await.unwrap();
    note(
        &mut transcript,
        "status",
        (
            status.data_as_of,
            status.sf_users,
            status.ae_users,
            status.sources.keys().collect::<Vec<_>>(),
        ),
    );

    // What `doctor` reads: the server's version and eviction policy.
    let Store::Redis(redis) = &a else {
        unreachable!()
    };
    let info = redis.info("server").await.unwrap();
    note(
        &mut transcript,
        "INFO names the version",
        info.contains("redis_version:"),
    );
    note(
        &mut transcript,
        "maxmemory-policy",
        redis.config_get("maxmemory-policy").await,
    );

    delete_prefix(settings, &prefix).await;
    transcript
}

/// Deletes the test's keys: on each master of a Cluster, one key at a time (they hash to
/// different slots), else with one `SCAN` and `UNLINK`s.
async fn delete_prefix(settings: &RedisSettings, prefix: &str) {
    let pattern = format!("{prefix}*");
    if !settings.cluster {
        // The bot's ACL user may not SCAN: the cleanup user deletes what it wrote.
        let url = if settings.url == server("TEST_REDIS_ACL_URL") {
            server("TEST_REDIS_ACL_CLEANUP_URL")
        } else {
            settings.url.clone()
        };
        let client = redis::Client::build_with_tls(
            url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: settings.ca_file.as_ref().map(|f| std::fs::read(f).unwrap()),
            },
        )
        .or_else(|_| redis::Client::open(url.as_str()))
        .unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        crm_username::store::unlink_matching(&mut conn, &pattern)
            .await
            .unwrap();
        return;
    }
    let seed = redis::Client::open(settings.url.as_str()).unwrap();
    let mut conn = seed.get_multiplexed_async_connection().await.unwrap();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    for line in nodes.lines().filter(|l| l.contains("master")) {
        let addr = line.split(' ').nth(1).unwrap().split('@').next().unwrap();
        let node = redis::Client::open(format!("redis://{addr}")).unwrap();
        let mut conn = node.get_multiplexed_async_connection().await.unwrap();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in keys {
                let _: () = redis::cmd("UNLINK")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

/// Runs the scenario on one plain Redis and on `deployment`, and compares them line by line.
async fn assert_same_as_one_redis(deployment: RedisSettings, test: &str) {
    let upstreams = upstreams().await;
    let want = scenario(&plain(), &format!("{test}-plain"), &upstreams).await;
    let got = scenario(&deployment, test, &upstreams).await;
    for ((step, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g, w, "{test}: {step}");
    }
    assert_eq!(got.len(), want.len());
    // What one Redis itself must show, so that equal cannot mean equally broken.
    let find = |step: &str| &want.iter().find(|(s, _)| s == step).unwrap().1;
    assert!(find("before any refresh").contains("NoSnapshot"));
    assert!(find("two instances refresh at once").contains("\"busy\""));
    // The refresh caches the demo org's internal users only.
    let internal = demo::snapshot(now())
        .unwrap()
        .salesforce
        .users
        .iter()
        .filter(|u| u.is_internal())
        .count();
    let refreshed = find("two instances refresh at once");
    assert!(
        refreshed.contains(&format!("refreshed {internal} ")),
        "{refreshed}"
    );
    assert_eq!(
        find("mention delivered to both instances: first?"),
        &format!("{:#?}", [false, true])
    );
    assert_eq!(
        find("digest claimed by both instances: won?"),
        &format!("{:#?}", [false, true])
    );
    assert!(find("re-check").contains("Clear"), "{}", find("re-check"));
    assert!(find("check after the re-check, other instance").contains("Clear"));
    assert!(find("third refresh: check sam.sales@acme.com").contains("Blocked"));
    // Both later refreshes rewrote in place, four keys each: the metadata and three keys the
    // re-check wrote, then the metadata and three keys the removed AE user was in.
    assert_eq!(find("second refresh rewrote"), &format!("{:#?}", Some(4)));
    assert_eq!(find("third refresh rewrote"), &format!("{:#?}", Some(4)));
    assert!(find("first generation: check sam.sals@acme.com").contains("sam.sales@acme.com"));
    assert!(find("audit").contains("Ok("));
    assert_eq!(find("INFO names the version"), "true");
    assert!(find("maxmemory-policy").starts_with("Ok(\n    Some("));
    // Both upstream sets were read.
    assert!(upstreams.served.account_engagement.requests() > 0);
    assert!(
        upstreams
            .fresh
            .salesforce
            .requests(crm_username::fakes::SalesforceEndpoint::Query)
            > 0
    );
}

#[tokio::test]
async fn over_tls_with_a_ca_file_every_result_equals_one_plain_redis() {
    assert_same_as_one_redis(tls(), "tls").await;
}

#[tokio::test]
async fn as_an_acl_user_every_result_equals_one_plain_redis() {
    assert_same_as_one_redis(acl(), "acl").await;
}

#[tokio::test]
async fn on_a_three_master_cluster_every_result_equals_one_plain_redis() {
    assert_same_as_one_redis(cluster(), "cluster").await;
}

/// The message a check gets from a store that cannot be used.
async fn unavailable(settings: RedisSettings) -> String {
    let store = open(&settings, &unique_prefix("broken"));
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        common::outcome::check(&store, &Query::parse("sam.sales@acme.com").unwrap(), now()),
    )
    .await
    .expect("a broken Redis answers within 30 s");
    match result {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_password_says_to_check_the_user_and_password_in_redis_url() {
    let url = server("TEST_REDIS_ACL_URL").replace("crm-test-password", "wrong-password");
    let message = unavailable(RedisSettings::url(&url)).await;
    assert!(
        message.contains("check the user name and password in REDIS_URL"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-password"),
        "the password is not shown: {message}"
    );
}

#[tokio::test]
async fn a_tls_server_signed_by_an_unknown_ca_says_to_set_redis_ca_file() {
    let settings = RedisSettings {
        ca_file: None,
        ..tls()
    };
    let message = unavailable(settings).await;
    assert!(message.contains("REDIS_CA_FILE"), "{message}");
}

#[tokio::test]
async fn plain_redis_on_a_tls_port_says_to_use_rediss() {
    let url = server("TEST_REDIS_TLS_URL").replace("rediss://", "redis://");
    let message = unavailable(RedisSettings::url(&url)).await;
    assert!(message.contains("starts with rediss://"), "{message}");
}

#[tokio::test]
async fn an_unreachable_cluster_seed_says_to_check_redis_url() {
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{}", common::free_port()),
        ca_file: None,
        cluster: true,
    };
    let message = unavailable(settings).await;
    assert!(message.contains("REDIS_URL"), "{message}");
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_refused_with_what_to_do() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "not a certificate").unwrap();
    let settings = RedisSettings {
        url: "rediss://127.0.0.1:16380".into(),
        ca_file: Some(file.path().to_owned()),
        cluster: false,
    };
    let err = RedisStore::open(&settings, "test:", Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("REDIS_CA_FILE"), "{err}");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

#[test]
fn a_key_prefix_with_a_brace_is_refused_because_it_would_move_the_hash_tag() {
    let err = RedisStore::open(&plain(), "crm{x}:", Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("REDIS_KEY_PREFIX"), "{err}");
}
