//! The refresher against the fakes of Salesforce and Account Engagement, publishing to a real
//! Redis: complete snapshots or nothing, status kept, one replica at a time, live re-check.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crm_username::demo;
use crm_username::diagnose::diagnose;
use crm_username::domain::{Org, OrgSnapshot, Query, Verdict};
use crm_username::fakes::{FakeUpstreams, Fault, Injection};
use crm_username::refresh::{
    REFRESH_SOURCE, RefreshError, SALESFORCE_SOURCE, business_unit_source, recheck, refresh_locked,
    refresh_once,
};
use crm_username::sources::SourceError;
use crm_username::store::{RedisStore, Store};
use crm_username::synthetic::{self, Params};

mod common;

async fn store(test: &str) -> Store {
    let prefix = common::prefix(&format!("refresh-{test}"));
    common::clear_prefix(&prefix).await;
    Store::Redis(RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap())
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn org() -> OrgSnapshot {
    demo::snapshot(now()).unwrap()
}

/// The org as the fakes serve it: links point at the fakes' addresses.
fn as_served(
    org: &OrgSnapshot,
    upstreams: &FakeUpstreams,
    sources: &crm_username::refresh::Sources,
) -> OrgSnapshot {
    let mut org = org.clone();
    org.salesforce.instance_url = upstreams.salesforce.url().trim_end_matches('/').to_owned();
    for (bu, served) in org.business_units.iter_mut().zip(&sources.business_units) {
        bu.ae_url = served.ae_url.clone();
    }
    org
}

async fn diagnose_text(store: &Store, query: &str) -> crm_username::store::Outcome {
    store
        .diagnose(&Query::parse(query).unwrap(), now())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refresh_publishes_what_the_upstreams_hold() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    upstreams.salesforce.set_batch_size(4);
    let sources = upstreams.sources(&org).unwrap();
    let store = store("publish").await;
    let report = refresh_once(&sources, &store, now()).await.unwrap();
    assert_eq!(report.sf_users, 14, "the partner user is not cached");
    assert_eq!(report.ae_users.iter().map(|(_, n)| n).sum::<usize>(), 10);
    let whole = Org::new(as_served(&org, &upstreams, &sources));
    for query in [
        "sam.sales@acme.com",
        "email_a@example.com for email_b@example.com",
        "nora.north@acme.com",
        "eve.new@acme.com",
        "alex",
        "old.timer@acme.com",
    ] {
        let q = Query::parse(query).unwrap();
        let want = diagnose(&q, &whole, now());
        assert_eq!(store.diagnose(&q, now()).await.unwrap(), want, "{query}");
    }
    let status = store.status().await.unwrap();
    assert_eq!(status.data_as_of, Some(now()));
    assert_eq!(status.sf_users, 14);
    assert_eq!(status.sources[SALESFORCE_SOURCE].records, Some(14));
    assert_eq!(status.sources[REFRESH_SOURCE].last_success_at, Some(now()));
    assert_eq!(
        status.sources[&business_unit_source(&org.business_units[0])].records,
        Some(8)
    );
}

#[tokio::test]
async fn a_failure_on_page_3_of_5_keeps_the_previous_snapshot_and_records_the_error() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    upstreams.salesforce.set_batch_size(3); // 14 internal users: 5 pages
    let sources = upstreams.sources(&org).unwrap();
    let store = store("page3").await;
    refresh_once(&sources, &store, now()).await.unwrap();

    upstreams.salesforce.inject(
        Injection::new(Fault::status(500, "[]"))
            .for_object("User")
            .on_page(3)
            .always(),
    );
    let later = now() + chrono::Duration::minutes(15);
    let err = refresh_once(&sources, &store, later).await.unwrap_err();
    assert!(
        matches!(err, RefreshError::Source(SourceError::Upstream { .. })),
        "{err:?}"
    );

    let status = store.status().await.unwrap();
    assert_eq!(
        status.data_as_of,
        Some(now()),
        "the previous snapshot still serves"
    );
    let sf = &status.sources[SALESFORCE_SOURCE];
    assert_eq!(sf.last_success_at, Some(now()));
    assert_eq!(sf.last_error_at, Some(later));
    assert!(
        sf.last_error
            .as_deref()
            .unwrap()
            .contains("failed after 4 attempts"),
        "{sf:?}"
    );
    assert_eq!(status.sources[REFRESH_SOURCE].last_error_at, Some(later));
    assert_eq!(
        diagnose_text(&store, "sam.sales@acme.com")
            .await
            .unwrap()
            .verdict,
        Verdict::Blocked
    );
}

#[tokio::test]
async fn the_ae_daily_limit_stops_the_refresh_cleanly() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("ae122").await;
    refresh_once(&sources, &store, now()).await.unwrap();
    upstreams
        .account_engagement
        .inject(Injection::new(Fault::ae_code(122)).always());
    let before = upstreams.account_engagement.requests();
    let err = refresh_once(&sources, &store, now() + chrono::Duration::minutes(15))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RefreshError::Source(SourceError::DailyLimit { .. })),
        "{err:?}"
    );
    assert_eq!(
        upstreams.account_engagement.requests() - before,
        2,
        "one request per business unit, no retries"
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.data_as_of, Some(now()));
    let bu = &status.sources[&business_unit_source(&org.business_units[0])];
    assert!(
        bu.last_error
            .as_deref()
            .unwrap()
            .contains("daily API limit"),
        "{bu:?}"
    );
}

#[tokio::test]
async fn the_salesforce_daily_limit_stops_the_refresh_cleanly() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("sf-limit").await;
    upstreams
        .salesforce
        .inject(Injection::new(Fault::salesforce_request_limit()).always());
    let err = refresh_once(&sources, &store, now()).await.unwrap_err();
    assert!(
        matches!(err, RefreshError::Source(SourceError::DailyLimit { .. })),
        "{err:?}"
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.data_as_of, None, "nothing was published");
    assert!(
        status.sources[SALESFORCE_SOURCE]
            .last_error
            .as_deref()
            .unwrap()
            .contains("daily API limit")
    );
}

#[tokio::test]
async fn of_two_racing_refreshers_only_one_runs() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("race").await;
    let ttl = Duration::from_secs(10);
    let (a, b) = tokio::join!(
        refresh_locked(&sources, &store, now(), ttl),
        refresh_locked(&sources, &store, now(), ttl)
    );
    let busy = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(RefreshError::Busy)))
        .count();
    let ran = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!((ran, busy), (1, 1), "{a:?} {b:?}");
    assert_eq!(
        upstreams.account_engagement.requests(),
        2,
        "one refresh's worth of AE requests"
    );
    // The lock was released: the next refresh runs.
    refresh_locked(&sources, &store, now(), ttl).await.unwrap();
}

#[tokio::test]
async fn a_recheck_reads_one_user_live_and_updates_the_cache() {
    let old = org();
    let store = store("recheck").await;
    store.publish(old.clone()).await.unwrap();
    assert_eq!(
        diagnose_text(&store, "dana.deleted@acme.com")
            .await
            .unwrap()
            .verdict,
        Verdict::Blocked
    );

    // Since the last refresh, the admin cleared the deleted AE user's CRM username.
    let mut fresh = old.clone();
    fresh.business_units[0].users.retain(|u| u.id != 1003);
    let upstreams = FakeUpstreams::start(&fresh).await.unwrap();
    let sources = upstreams.sources(&fresh).unwrap();
    let query = Query::parse("dana.deleted@acme.com").unwrap();
    let outcome = recheck(&sources, &store, &query, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.verdict, Verdict::Clear);
    assert_eq!(
        diagnose_text(&store, "dana.deleted@acme.com")
            .await
            .unwrap()
            .verdict,
        Verdict::Clear
    );
    // Others keep the data of the last refresh.
    assert_eq!(
        diagnose_text(&store, "sam.sales@acme.com")
            .await
            .unwrap()
            .verdict,
        Verdict::Blocked
    );
}

#[tokio::test]
async fn a_recheck_finds_a_user_created_after_the_last_refresh() {
    let old = org();
    let mut fresh = old.clone();
    let mut new_user = fresh.salesforce.users[9].clone();
    new_user.id = crm_username::domain::SfId::parse("005Ak00000NEWU1").unwrap();
    new_user.username = "new.hire@acme.com".into();
    new_user.email = "new.hire@acme.com".into();
    fresh.salesforce.users.push(new_user);
    for store in [Store::memory(), store("recheck-new").await] {
        store.publish(old.clone()).await.unwrap();
        assert_eq!(
            diagnose_text(&store, "new.hire@acme.com")
                .await
                .unwrap()
                .verdict,
            Verdict::NotFound
        );
        let upstreams = FakeUpstreams::start(&fresh).await.unwrap();
        let sources = upstreams.sources(&fresh).unwrap();
        let query = Query::parse("new.hire@acme.com").unwrap();
        let outcome = recheck(&sources, &store, &query, now())
            .await
            .unwrap()
            .unwrap();
        let codes: Vec<_> = outcome.findings.iter().map(|f| f.code).collect();
        assert_eq!(outcome.verdict, Verdict::Clear, "{codes:?}");
        assert_eq!(
            outcome.salesforce_user.unwrap().username,
            "new.hire@acme.com"
        );
    }
}

#[tokio::test]
async fn a_larger_org_refreshes_through_many_pages() {
    let org = synthetic::generate(Params {
        sf_users: 5_000,
        ae_users: 3_000,
        business_units: 3,
        seed: 3,
    });
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("larger").await;
    let report = refresh_once(&sources, &store, org.fetched_at)
        .await
        .unwrap();
    assert_eq!(report.sf_users, 5_000);
    assert_eq!(report.ae_users.iter().map(|(_, n)| n).sum::<usize>(), 3_000);
    let whole = Org::new(as_served(&org, &upstreams, &sources));
    for user in org.salesforce.users.iter().step_by(250) {
        let q = Query::parse(&user.username).unwrap();
        assert_eq!(
            store.diagnose(&q, org.fetched_at).await.unwrap(),
            diagnose(&q, &whole, org.fetched_at)
        );
    }
}
