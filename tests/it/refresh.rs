//! The refresher against the fakes of Salesforce and Account Engagement, publishing to a real
//! Redis: complete snapshots or nothing, status kept, one replica at a time, live re-check.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crm_username::demo;
use crm_username::diagnose::diagnose;
use crm_username::domain::FindingCode;
use crm_username::domain::{Org, OrgSnapshot, Query, Verdict};
use crm_username::fakes::SalesforceEndpoint;
use crm_username::fakes::{FakeUpstreams, Fault, Injection};
use crm_username::refresh::{
    LIVE_LOOKUPS_PER_MINUTE, REFRESH_SOURCE, RefreshError, SALESFORCE_SOURCE, answer,
    business_unit_source, recheck, refresh_locked, refresh_once,
};
use crm_username::sources::SourceError;
use crm_username::store::{RedisStore, Store};
use crm_username::synthetic::{self, Params, Variety};

use crate::common;

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

/// The org as a refresh reads it from the fakes: links point at the fakes' addresses, and
/// only the memberships of groups the assignments reach are read.
fn as_served(
    org: &OrgSnapshot,
    upstreams: &FakeUpstreams,
    sources: &crm_username::refresh::Sources,
) -> OrgSnapshot {
    let mut org = org.clone();
    let reachable = crm_username::domain::reachable_in(
        &org.salesforce.groups,
        &org.salesforce.group_members,
        &sources.business_units,
    );
    org.salesforce
        .group_members
        .retain(|m| reachable.contains(&m.group_id));
    org.salesforce.instance_url = upstreams.salesforce.url().trim_end_matches('/').to_owned();
    for (bu, served) in org.business_units.iter_mut().zip(&sources.business_units) {
        bu.ae_url = served.ae_url.clone();
    }
    org
}

async fn diagnose_text(
    store: &Store,
    query: &str,
) -> Result<crm_username::domain::Diagnosis, crm_username::diagnose::TargetError> {
    common::outcome::check(&store, &Query::parse(query).unwrap(), now())
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
        assert_eq!(
            common::outcome::check(&store, &q, now()).await.unwrap(),
            want,
            "{query}"
        );
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
    let outcome = recheck(&sources, &store, &query, now()).await.unwrap();
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
        let outcome = recheck(&sources, &store, &query, now()).await.unwrap();
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
            common::outcome::check(&store, &q, org.fetched_at)
                .await
                .unwrap(),
            diagnose(&q, &whole, org.fetched_at)
        );
    }
}

#[tokio::test]
async fn refreshing_an_org_whose_users_are_90_percent_external_caches_only_the_internal_ones() {
    let org = synthetic::generate_with(
        Params {
            sf_users: 3_000,
            ae_users: 300,
            business_units: 2,
            seed: 11,
        },
        Variety {
            external_percent: 90,
            sales_section: true,
            ..Variety::default()
        },
    );
    let internal: Vec<_> = org
        .salesforce
        .users
        .iter()
        .filter(|u| u.is_internal())
        .collect();
    let external = org
        .salesforce
        .users
        .iter()
        .find(|u| !u.is_internal())
        .unwrap();
    assert!(
        (150..=450).contains(&internal.len()),
        "about 10% internal: {}",
        internal.len()
    );
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("external-90").await;
    let report = refresh_once(&sources, &store, now()).await.unwrap();
    assert_eq!(report.sf_users, internal.len());
    let status = store.status().await.unwrap();
    assert_eq!(status.sf_users, internal.len());
    assert_eq!(
        status.sources[SALESFORCE_SOURCE].records,
        Some(internal.len())
    );
    // One batch of 2,000 holds every internal user: the external ones never crossed the wire.
    // GroupMember: one request per level of nesting below the assigned groups.
    let levels = nesting_levels(&org, &sources.business_units);
    assert!(
        levels >= 2,
        "the synthetic org nests assigned groups: {levels}"
    );
    assert_eq!(
        upstreams.salesforce.requests(SalesforceEndpoint::Query),
        4 + levels,
        "Organization, User, UserRole, Group: one page each, and GroupMember per level"
    );
    assert_eq!(
        diagnose_text(&store, &internal[0].username)
            .await
            .unwrap()
            .salesforce_user
            .unwrap()
            .id,
        internal[0].id
    );
    assert_eq!(
        diagnose_text(&store, &external.username)
            .await
            .unwrap()
            .verdict,
        Verdict::NotFound,
        "external users are not cached"
    );
}

#[tokio::test]
async fn checking_an_external_user_still_names_it_through_the_live_lookup() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = store("external-live").await;
    refresh_once(&sources, &store, now()).await.unwrap();
    let query = Query::parse("sam.sales@acme.com.partners").unwrap();
    assert_eq!(
        common::outcome::check(&store, &query, now())
            .await
            .unwrap()
            .unwrap()
            .verdict,
        Verdict::NotFound
    );

    let before = upstreams.salesforce.requests(SalesforceEndpoint::Query);
    let d = answer(&sources, &store, &query, now()).await.unwrap();
    assert_eq!(d.verdict, Verdict::Blocked);
    assert_eq!(
        d.salesforce_user.as_ref().unwrap().username,
        "sam.sales@acme.com.partners"
    );
    let codes: Vec<_> = d.findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, [FindingCode::UnsupportedUserType]);
    assert!(
        d.findings[0]
            .detail
            .contains("user type PowerPartner and licence Partner Community"),
        "{}",
        d.findings[0].detail
    );
    assert!(
        d.findings[0].steps[0].contains("Map the internal user sam.sales@acme.com instead"),
        "{:?}",
        d.findings[0].steps
    );
    assert_eq!(
        upstreams.salesforce.requests(SalesforceEndpoint::Query) - before,
        1,
        "one query by username; an external user needs no groups and no AE users"
    );
    assert_eq!(
        upstreams.account_engagement.requests(),
        2,
        "the refresh's only"
    );

    // Now cached: asking again costs Salesforce nothing.
    let again = answer(&sources, &store, &query, now()).await.unwrap();
    assert_eq!(again, d);
    assert_eq!(
        upstreams.salesforce.requests(SalesforceEndpoint::Query) - before,
        1
    );
}

#[tokio::test]
async fn a_user_created_after_the_last_refresh_is_found_by_an_ordinary_check() {
    let old = org();
    let mut fresh = old.clone();
    let mut new_user = fresh.salesforce.users[9].clone();
    new_user.id = crm_username::domain::SfId::parse("005Ak00000NEWU1").unwrap();
    new_user.username = "new.hire@acme.com".into();
    new_user.email = "new.hire@acme.com".into();
    fresh.salesforce.users.push(new_user);
    let store = store("live-new").await;
    store.publish(old).await.unwrap();
    let upstreams = FakeUpstreams::start(&fresh).await.unwrap();
    let sources = upstreams.sources(&fresh).unwrap();
    let query = Query::parse("new.hire@acme.com").unwrap();
    let d = answer(&sources, &store, &query, now()).await.unwrap();
    assert_eq!(d.verdict, Verdict::Clear);
    assert_eq!(d.salesforce_user.unwrap().username, "new.hire@acme.com");
}

#[tokio::test]
async fn a_burst_of_1000_not_found_queries_makes_a_bounded_number_of_salesforce_calls() {
    let org = org();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let sources = upstreams.sources(&org).unwrap();
    let store = Store::memory();
    refresh_once(&sources, &store, now()).await.unwrap();
    let calls = || {
        upstreams.salesforce.requests(SalesforceEndpoint::Query)
            + upstreams.salesforce.requests(SalesforceEndpoint::Token)
    };

    // The same typo, 1,000 times: looked up once (by username, then by email), then
    // remembered as missing.
    let before = calls();
    let typo = Query::parse("sam.sale@acme.com").unwrap();
    for _ in 0..1_000 {
        let d = answer(&sources, &store, &typo, now()).await.unwrap();
        assert_eq!(d.verdict, Verdict::NotFound);
    }
    assert_eq!(calls() - before, 2);

    // 1,000 different typos: the per-minute ceiling holds. (Counted per minute begun, so
    // that a slow machine crossing into a second minute does not fail the test.) A new replica's
    // bounds, so that the first typo's lookup does not count against this minute.
    let sources = upstreams.sources(&org).unwrap();
    let tokens = upstreams.salesforce.requests(SalesforceEndpoint::Token);
    let before = calls();
    let started = std::time::Instant::now();
    for i in 0..1_000 {
        let query = Query::parse(&format!("nobody{i}@acme.com")).unwrap();
        let d = answer(&sources, &store, &query, now()).await.unwrap();
        assert_eq!(d.verdict, Verdict::NotFound);
    }
    let minutes = started.elapsed().as_secs() / 60 + 1;
    let signed_in = upstreams.salesforce.requests(SalesforceEndpoint::Token) - tokens;
    assert_eq!(signed_in, 1, "the new replica signs in once");
    let made = calls() - before - signed_in;
    let per_lookup = 2;
    assert!(
        made >= per_lookup * u64::from(LIVE_LOOKUPS_PER_MINUTE)
            && made <= per_lookup * u64::from(LIVE_LOOKUPS_PER_MINUTE) * minutes,
        "{made} Salesforce calls in {minutes} minute(s) for 1,000 queries"
    );
}

/// How many levels of groups a refresh reads the members of: the assigned groups, the groups
/// they hold, and so on until no new group appears.
fn nesting_levels(org: &OrgSnapshot, business_units: &[crm_username::domain::BusinessUnit]) -> u64 {
    use std::collections::BTreeSet;
    let sf = &org.salesforce;
    let known: BTreeSet<_> = sf.groups.iter().map(|g| g.id).collect();
    let mut level = crm_username::domain::assignment_roots(&sf.groups, business_units);
    let mut seen = level.clone();
    let mut levels = 0;
    while !level.is_empty() {
        levels += 1;
        level = sf
            .group_members
            .iter()
            .filter(|m| level.contains(&m.group_id) && known.contains(&m.member_id))
            .map(|m| m.member_id)
            .filter(|g| seen.insert(*g))
            .collect();
    }
    levels
}
