//! A rolling upgrade: replicas of two cache formats against one Redis, each refreshing from
//! its own fakes and answering from its own namespace; and the namespaces' expiry.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crm_username::app::AppData;
use crm_username::check::check;
use crm_username::demo;
use crm_username::domain::{OrgSnapshot, Query, SfId, Verdict};
use crm_username::fakes::{FakeSlack, FakeUpstreams, Fault, Injection};
use crm_username::refresh::refresh_once;
use crm_username::store::{FORMAT, FORMAT_TTL, RedisSettings, RedisStore, Store};

use crate::common;
use crate::common::app::{TEAM, TestApp};

/// The format of the version being replaced, and of the one replacing it.
const OLD: u32 = FORMAT;
const NEW: u32 = FORMAT + 1;

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, hour, 0, 0).unwrap()
}

fn instance(prefix: &str, format: u32) -> Store {
    Store::Redis(
        RedisStore::open_with_format(
            &RedisSettings::url(&common::redis_url()),
            prefix,
            Default::default(),
            format,
        )
        .unwrap(),
    )
}

/// The demo org, plus (when `with_new_hire`) a user only this org knows.
fn org(now: DateTime<Utc>, with_new_hire: bool) -> OrgSnapshot {
    let mut org = demo::snapshot(now).unwrap();
    if with_new_hire {
        let mut user = org
            .salesforce
            .users
            .iter()
            .find(|u| u.username == "sam.sales@acme.com")
            .unwrap()
            .clone();
        user.id = SfId::parse("005Ak00000NEWH1").unwrap();
        user.username = "nina.newhire@acme.com".to_owned();
        user.email = "nina.newhire@acme.com".to_owned();
        user.name = "Nina Newhire".to_owned();
        org.salesforce.users.push(user);
    }
    org
}

async fn ask(store: &Store, text: &str) -> (Verdict, DateTime<Utc>) {
    let d = check(store, &Query::parse(text).unwrap(), at(18))
        .await
        .unwrap();
    (d.verdict, d.data_as_of)
}

async fn redis() -> redis::aio::MultiplexedConnection {
    common::connection().await
}

/// The TTL (ms) of every key under `pattern`.
async fn ttls(pattern: &str) -> Vec<(String, i64)> {
    let mut conn = redis().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((key, ttl));
    }
    out
}

#[tokio::test]
async fn two_formats_side_by_side_each_refresh_and_answer_from_their_own_data() {
    let prefix = common::prefix("format-rolling");
    common::clear_prefix(&prefix).await;

    // The old version runs; its upstreams do not know the new hire yet.
    let old_org = org(at(10), false);
    let old_upstreams = FakeUpstreams::start(&old_org).await.unwrap();
    let old_sources = old_upstreams.sources(&old_org).unwrap();
    let old = instance(&prefix, OLD);
    refresh_once(&old_sources, &old, at(10)).await.unwrap();

    // The new version starts during the rollout: no data of its format yet, whatever the
    // old one holds.
    let new_org = org(at(11), true);
    let new_upstreams = FakeUpstreams::start(&new_org).await.unwrap();
    let new_sources = new_upstreams.sources(&new_org).unwrap();
    let new = instance(&prefix, NEW);
    assert!(new.status().await.unwrap().data_as_of.is_none());
    refresh_once(&new_sources, &new, at(11)).await.unwrap();

    // Each answers from its own refresh: the new hire only from the new data.
    assert_eq!(
        ask(&old, "nina.newhire@acme.com").await,
        (Verdict::NotFound, at(10))
    );
    assert_eq!(
        ask(&new, "nina.newhire@acme.com").await,
        (Verdict::Clear, at(11))
    );
    assert_eq!(
        ask(&old, "sam.sales@acme.com").await,
        (Verdict::Blocked, at(10))
    );
    assert_eq!(
        ask(&new, "sam.sales@acme.com").await,
        (Verdict::Blocked, at(11))
    );
    // Each format has its own refresh lock: the new version refreshing does not keep the old
    // one from it.
    let lock = new
        .try_lock(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(
        old.try_lock(Duration::from_secs(30))
            .await
            .unwrap()
            .is_some()
    );
    new.release_lock(&lock).await.unwrap();

    // A replica of the old version started later (a rollback, or a pod restarted mid-rollout)
    // reads the old namespace, without refreshing.
    let late = instance(&prefix, OLD);
    assert_eq!(
        ask(&late, "nina.newhire@acme.com").await,
        (Verdict::NotFound, at(10))
    );
    assert_eq!(late.status().await.unwrap().data_as_of, Some(at(10)));

    // Slack event ids are shared: an event is answered once, whichever version sees it.
    assert!(old.first_delivery("Ev0ROLLING1").await.unwrap());
    assert!(!new.first_delivery("Ev0ROLLING1").await.unwrap());

    common::clear_prefix(&prefix).await;
}

#[tokio::test]
async fn every_key_of_a_format_expires_and_each_refresh_renews_its_own_even_when_it_fails() {
    let prefix = common::prefix("format-expiry");
    common::clear_prefix(&prefix).await;
    let full = FORMAT_TTL.as_millis() as i64;
    let org = org(at(10), false);
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let (old, new) = (instance(&prefix, OLD), instance(&prefix, NEW));
    refresh_once(&sources, &old, at(10)).await.unwrap();
    refresh_once(&sources, &new, at(10)).await.unwrap();

    // Every key of either namespace carries the TTL.
    for format in [OLD, NEW] {
        let keys = ttls(&format!("{prefix}v{format}:*")).await;
        assert!(keys.len() > 20, "{keys:?}");
        for (key, ttl) in &keys {
            assert!(*ttl > full - 60_000 && *ttl <= full, "{key}: {ttl} ms");
        }
    }

    // Days pass while both versions' refreshes fail: an hour is left to every key.
    let mut conn = redis().await;
    for (key, _) in ttls(&format!("{prefix}v*:*")).await {
        let _: bool = redis::cmd("PEXPIRE")
            .arg(&key)
            .arg(3_600_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    upstreams
        .salesforce
        .inject(Injection::new(Fault::status(500, "[]")).always());

    // Only the new version still runs: its failing refresh renews its own namespace, and the
    // old namespace, which no replica refreshes any more, keeps counting down.
    refresh_once(&sources, &new, at(11)).await.unwrap_err();
    for (key, ttl) in ttls(&format!("{prefix}v{NEW}:*")).await {
        if key.ends_with("refresh-lock") {
            continue;
        }
        assert!(ttl > full - 60_000, "{key} renewed: {ttl} ms");
    }
    for (key, ttl) in ttls(&format!("{prefix}v{OLD}:*")).await {
        assert!(ttl > 0 && ttl <= 3_600_000, "{key} not renewed: {ttl} ms");
    }
    // The new version keeps answering from its last data.
    assert_eq!(
        ask(&new, "sam.sales@acme.com").await,
        (Verdict::Blocked, at(10))
    );

    common::clear_prefix(&prefix).await;
}

/// One replica as `serve` runs it: the app on `store`, refreshing from `sources` by itself.
async fn replica(store: Store, sources: crm_username::refresh::Sources) -> TestApp {
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store.clone(), &slack);
    config.data = AppData::Cache {
        store,
        sources: Some(std::sync::Arc::new(sources)),
    };
    TestApp::spawn(config, slack).await
}

/// Waits (at most 60 s) until the replica's first refresh has published its data.
async fn refreshed(app: &TestApp) {
    let started = std::time::Instant::now();
    while app.state.store.status().await.unwrap().data_as_of.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no refresh within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The plain text of the replica's answer to `/crm-username check <query>`: in the
/// acknowledgement, or through the `response_url` when the answer took longer.
async fn answer(app: &TestApp, query: &str) -> String {
    let before = app.slack.calls().len();
    let ack = app
        .command(&format!("check {query}"), TEAM, "U0ASKER")
        .await;
    assert_eq!(ack.status(), 200);
    let ack: serde_json::Value = ack.json().await.unwrap();
    let text = ack["text"].as_str().unwrap().to_owned();
    if !text.starts_with("Checking") {
        return text;
    }
    let calls = app.calls(before + 1).await;
    calls[before].body["text"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_replicas_of_two_formats_refresh_by_themselves_and_answer_from_their_own_data()
{
    let prefix = common::prefix("format-replicas");
    common::clear_prefix(&prefix).await;
    let now = Utc::now();
    let (old_org, new_org) = (org(now, false), org(now, true));
    let old_upstreams = FakeUpstreams::start(&old_org).await.unwrap();
    let new_upstreams = FakeUpstreams::start(&new_org).await.unwrap();
    let old = replica(
        instance(&prefix, OLD),
        old_upstreams.sources(&old_org).unwrap(),
    )
    .await;
    let new = replica(
        instance(&prefix, NEW),
        new_upstreams.sources(&new_org).unwrap(),
    )
    .await;
    refreshed(&old).await;
    refreshed(&new).await;

    // Each replica read its own upstreams into its own namespace, and answers from it.
    assert_eq!(
        answer(&old, "nina.newhire@acme.com").await,
        "Not found: nina.newhire@acme.com — No Salesforce user matches nina.newhire@acme.com"
    );
    assert_eq!(
        answer(&new, "nina.newhire@acme.com").await,
        "Clear: nina.newhire@acme.com"
    );
    assert!(
        answer(&old, "sam.sales@acme.com")
            .await
            .starts_with("Blocked: sam.sales@acme.com"),
    );
    assert!(
        answer(&new, "sam.sales@acme.com")
            .await
            .starts_with("Blocked: sam.sales@acme.com"),
    );
    assert!(common::count_keys(&format!("{prefix}v{OLD}:"), "gen:*:meta").await >= 1);
    assert!(common::count_keys(&format!("{prefix}v{NEW}:"), "gen:*:meta").await >= 1);

    drop((old, new));
    common::clear_prefix(&prefix).await;
}
