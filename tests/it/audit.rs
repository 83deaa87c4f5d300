//! The audit from the Redis cache: it equals the audit of the whole org, reports progress, and
//! its CSV agrees with `check` answered from the same cache.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};

use crm_username::audit::{AuditReport, Progress, Scope, audit_org, to_csv};
use crm_username::demo;
use crm_username::domain::{Org, OrgSnapshot, Query, Severity};
use crm_username::store::{RedisStore, Store};
use crm_username::synthetic::{self, Params};

use crate::common;
use common::{clear_prefix, prefix, redis_url};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

async fn published(snapshot: &OrgSnapshot, test: &str) -> Store {
    let store = RedisStore::connect(&redis_url(), &prefix(test), Default::default()).unwrap();
    clear_prefix(store.keys().prefix()).await;
    store.publish(snapshot.clone()).await.unwrap();
    Store::Redis(store)
}

async fn audit(store: &Store, scope: &str) -> (AuditReport, Vec<Progress>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let report = common::outcome::audit(
        &store,
        scope,
        now(),
        None,
        Arc::new(move |p| sink.lock().unwrap().push(p)),
    )
    .await
    .unwrap()
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    (report, seen)
}

fn synthetic_org() -> OrgSnapshot {
    synthetic::generate(Params {
        sf_users: 3_000,
        ae_users: 600,
        business_units: 3,
        seed: 11,
    })
}

/// Equal reports; on a difference, names the first row that differs rather than both reports.
fn assert_same_report(got: &AuditReport, want: &AuditReport) {
    for (i, (g, w)) in got.rows.iter().zip(&want.rows).enumerate() {
        assert_eq!(g, w, "row {i} differs");
    }
    assert_eq!(got.rows.len(), want.rows.len(), "row counts differ");
    assert_eq!(got, want);
}

async fn assert_redis_audit_equals_whole_org_audit(snapshot: OrgSnapshot, test: &str) {
    let store = published(&snapshot, test).await;
    let whole = Org::new(snapshot);
    let want = audit_org(&whole, &Scope::All, now(), None, &mut |_| {});
    let (got, progress) = audit(&store, "").await;
    assert!(!want.rows.is_empty());
    assert_same_report(&got, &want);
    // Progress grows to the number of users audited, and ends there.
    let total = progress[0].total;
    assert!(progress.windows(2).all(|w| w[0].done < w[1].done));
    assert_eq!(progress.last().unwrap().done, total);
    // One business unit alone, named as an admin would type it.
    let unit = &whole.business_units()[1];
    let scope = Scope::parse(&unit.name, whole.business_units()).unwrap();
    let want = audit_org(&whole, &scope, now(), None, &mut |_| {});
    let (got, _) = audit(&store, &unit.name.to_lowercase()).await;
    assert_same_report(&got, &want);
    // Keeping only a few rows keeps the same most severe ones, and every count.
    let want = audit_org(&whole, &Scope::All, now(), Some(5), &mut |_| {});
    let got = common::outcome::audit(&store, "", now(), Some(5), Arc::new(|_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_same_report(&got, &want);
    assert_eq!(got.rows.len(), 5);
    clear_prefix(&prefix(test)).await;
}

#[tokio::test]
async fn the_redis_audit_of_the_demo_org_equals_the_whole_org_audit() {
    assert_redis_audit_equals_whole_org_audit(demo::snapshot(now()).unwrap(), "audit-demo").await;
}

#[tokio::test]
async fn the_redis_audit_of_a_synthetic_org_equals_the_whole_org_audit() {
    assert_redis_audit_equals_whole_org_audit(synthetic_org(), "audit-synthetic").await;
}

#[tokio::test]
async fn an_unknown_business_unit_is_refused_with_the_known_ones() {
    let store = published(&demo::snapshot(now()).unwrap(), "audit-unknown").await;
    let err = common::outcome::audit(&store, "Atlantis", now(), None, Arc::new(|_| {}))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "No business unit is called \"Atlantis\". Business units: Acme North America (0UvAk000000NAM1KAO), Acme EMEA (0UvAk000000EME1KAO)."
    );
    clear_prefix(&prefix("audit-unknown")).await;
}

/// Reads the CSV back and runs each sampled row's `check` against the same cache: the causes
/// in the row's business unit are exactly the row's causes.
#[tokio::test]
async fn csv_rows_agree_with_check_answered_from_the_cache() {
    let store = published(&synthetic_org(), "audit-csv").await;
    let (report, _) = audit(&store, "").await;
    let csv = to_csv(&report);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (bu, causes, check) = (
        column("business_unit_id"),
        column("causes"),
        column("check"),
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), report.rows.len());
    let mut compared = 0;
    for record in records.iter().step_by(7) {
        let text = record[check].strip_prefix("check ").unwrap();
        let diagnosis = common::outcome::check(&store, &Query::parse(text).unwrap(), now())
            .await
            .unwrap()
            .unwrap();
        let here: Vec<_> = diagnosis
            .findings
            .iter()
            .filter(|f| {
                f.business_unit_id
                    .is_none_or(|id| id.to_string() == record[bu])
            })
            .collect();
        let mut want: Vec<&str> = here
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .map(|f| f.code.as_str())
            .collect();
        if want.is_empty() {
            want.extend(here.first().map(|f| f.code.as_str()));
        }
        assert_eq!(
            record[causes].split(';').collect::<Vec<_>>(),
            want,
            "`{}`",
            &record[check]
        );
        compared += 1;
    }
    assert!(compared > 20, "only {compared} rows compared");
    clear_prefix(&prefix("audit-csv")).await;
}
