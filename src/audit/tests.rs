//! The audit finds exactly the broken mappings, and every row says what `check` says.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::diagnose::diagnose;
use crate::domain::{FindingCode as C, Org, OrgSnapshot, Query, Severity};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

/// One business unit under User Sync with "Standard User" mapped:
/// - jane: mapped to an active AE user, no row;
/// - bob: no AE user, nothing blocks (row, no_blocker_found);
/// - carl: inactive, no row;
/// - dave: profile not mapped, so not expected, no row;
/// - erin: only a recycle-bin AE user holds her (row, mapped_to_deleted_user);
/// - AE 11 (frank@acme.com) is unmapped, and Frank's profile is not mapped (AE row,
///   profile_not_mapped_to_role); AE 12 (ghost@) matches no one (AE row, not found);
///   AE 13 is unmapped but in the recycle bin (no row).
fn org() -> Org {
    let text = r#"{
      "fetched_at": "2026-11-27T09:00:00Z",
      "salesforce": {
        "instance_url": "https://acme.my.salesforce.com",
        "users": [
          {"id": "005Aa0000000001", "username": "jane@acme.com", "email": "jane@acme.com", "name": "Jane", "profile_name": "Standard User"},
          {"id": "005Aa0000000002", "username": "bob@acme.com", "email": "bob@acme.com", "name": "Bob", "profile_name": "Standard User"},
          {"id": "005Aa0000000003", "username": "carl@acme.com", "email": "carl@acme.com", "name": "Carl", "profile_name": "Standard User", "is_active": false},
          {"id": "005Aa0000000004", "username": "dave@acme.com", "email": "dave@acme.com", "name": "Dave", "profile_name": "Contractor"},
          {"id": "005Aa0000000005", "username": "erin@acme.com", "email": "erin@acme.com", "name": "Erin", "profile_name": "Standard User"},
          {"id": "005Aa0000000006", "username": "frank@acme.com", "email": "frank@acme.com", "name": "Frank", "profile_name": "Contractor"}
        ]
      },
      "business_units": [{
        "id": "0UvAa0000000001", "name": "North", "user_sync": true,
        "profile_roles": {"Standard User": "Sales"},
        "users": [
          {"id": 10, "email": "jane@acme.com", "salesforce_id": "005Aa0000000001"},
          {"id": 14, "email": "erin.old@acme.com", "salesforce_id": "005Aa0000000005", "is_deleted": true},
          {"id": 11, "email": "frank@acme.com", "first_name": "Frank", "last_name": "AE"},
          {"id": 12, "email": "ghost@acme.com"},
          {"id": 13, "email": "gone@acme.com", "is_deleted": true}
        ]
      }]
    }"#;
    Org::new(OrgSnapshot::from_json(text, "test").unwrap())
}

fn audit(org: &Org) -> AuditReport {
    audit_org(org, &Scope::All, now(), None, &mut |_| {})
}

fn summary(report: &AuditReport) -> Vec<(RowKind, String, C, Vec<C>)> {
    report
        .rows
        .iter()
        .map(|r| {
            let who = match (&r.salesforce_user, &r.ae_user) {
                (_, Some(ae)) => format!("AE {}", ae.id),
                (Some(sf), None) => sf.username.clone(),
                (None, None) => String::new(),
            };
            (r.kind, who, r.cause, r.causes.clone())
        })
        .collect()
}

#[test]
fn audit_reports_exactly_the_users_that_should_be_mapped_and_are_not() {
    let report = audit(&org());
    assert_eq!(
        summary(&report),
        vec![
            (
                RowKind::AeUserWithoutCrmUsername,
                "AE 12".into(),
                C::SalesforceUserNotFound,
                vec![C::SalesforceUserNotFound]
            ),
            (
                RowKind::SfUserWithoutAeUser,
                "erin@acme.com".into(),
                C::MappedToDeletedUser,
                vec![C::MappedToDeletedUser]
            ),
            (
                RowKind::AeUserWithoutCrmUsername,
                "AE 11".into(),
                C::ProfileNotMappedToRole,
                vec![C::ProfileNotMappedToRole]
            ),
            (
                RowKind::SfUserWithoutAeUser,
                "bob@acme.com".into(),
                C::NoBlockerFound,
                vec![C::NoBlockerFound]
            ),
        ]
    );
    assert_eq!(report.sf_users_scanned, 5, "inactive Carl is not scanned");
    assert_eq!(report.ae_users_scanned, 5);
    assert_eq!(report.blocked(), 3);
    assert_eq!(
        report
            .by_cause
            .iter()
            .map(|c| (c.cause, c.count))
            .collect::<Vec<_>>(),
        vec![
            (C::SalesforceUserNotFound, 1),
            (C::MappedToDeletedUser, 1),
            (C::ProfileNotMappedToRole, 1),
            (C::NoBlockerFound, 1),
        ]
    );
    let frank = &report.rows[2];
    assert_eq!(frank.check, "check frank@acme.com for 11");
    assert_eq!(
        frank.salesforce_user.as_ref().unwrap().username,
        "frank@acme.com"
    );
    assert_eq!(report.rows[0].check, "check ghost@acme.com");
    assert_eq!(
        report.rows[1].reason,
        "profile mapped to an AE role under User Sync"
    );
}

#[test]
fn audit_reports_progress_up_to_every_user() {
    let mut seen = Vec::new();
    audit_org(&org(), &Scope::All, now(), None, &mut |p| seen.push(p));
    assert_eq!(
        seen,
        vec![
            Progress { done: 6, total: 11 },
            Progress {
                done: 11,
                total: 11
            }
        ]
    );
}

/// The causes `check` gives for a row's business unit: blockers and warnings, else the first
/// informational finding, as the audit takes them.
fn check_causes(org: &Org, row: &AuditRow) -> Vec<C> {
    let text = row.check.strip_prefix("check ").unwrap();
    let diagnosis = diagnose(&Query::parse(text).unwrap(), org, now()).unwrap();
    let here: Vec<_> = diagnosis
        .findings
        .iter()
        .filter(|f| {
            f.business_unit_id
                .is_none_or(|id| id == row.business_unit_id)
        })
        .collect();
    let mut causes: Vec<C> = here
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .map(|f| f.code)
        .collect();
    if causes.is_empty() {
        causes.extend(here.first().map(|f| f.code));
    }
    causes
}

fn assert_rows_agree_with_check(org: &Org, report: &AuditReport) {
    assert!(!report.rows.is_empty());
    for row in &report.rows {
        assert_eq!(
            check_causes(org, row),
            row.causes,
            "`{}` in {} disagrees with the audit",
            row.check,
            row.business_unit_name
        );
    }
}

#[test]
fn every_row_of_the_demo_org_agrees_with_check() {
    let org = Org::new(crate::demo::snapshot(now()).unwrap());
    let report = audit(&org);
    assert_rows_agree_with_check(&org, &report);
    let causes: std::collections::BTreeSet<C> =
        report.rows.iter().flat_map(|r| r.causes.clone()).collect();
    // Not profile_not_mapped_to_role nor not_assigned_to_business_unit: under the demo's
    // settings those users are not expected to have an AE user at all.
    assert_eq!(
        causes.into_iter().collect::<Vec<_>>(),
        vec![
            C::SalesforceUserNotFound,
            C::MappedToDeletedUser,
            C::ReservedByEmail,
            C::SyncSkippedEmailConflict,
            C::AssignmentPendingSync,
            C::NoBlockerFound,
        ]
    );
}

#[test]
#[cfg(feature = "demo")] // the synthetic org
fn every_row_of_a_synthetic_org_agrees_with_check() {
    let org = Org::new(crate::synthetic::generate(crate::synthetic::Params {
        sf_users: 2_000,
        ae_users: 400,
        business_units: 3,
        seed: 7,
    }));
    let report = audit(&org);
    assert!(report.rows.len() > 50, "{} rows", report.rows.len());
    assert_rows_agree_with_check(&org, &report);
}

#[test]
fn one_business_unit_is_audited_alone() {
    let org = Org::new(crate::demo::snapshot(now()).unwrap());
    let units = org.business_units();
    let scope = Scope::parse(&units[1].name.to_uppercase(), units).unwrap();
    assert_eq!(scope.index(), Some(1));
    let report = audit_org(&org, &scope, now(), None, &mut |_| {});
    assert!(!report.rows.is_empty());
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.business_unit_id == units[1].id)
    );
    assert_eq!(report.business_unit_id, Some(units[1].id));
    let all = audit(&org);
    assert_eq!(
        report.rows,
        all.rows
            .iter()
            .filter(|r| r.business_unit_id == units[1].id)
            .cloned()
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_business_unit_is_named_by_id_or_name_and_unknown_names_list_the_known_ones() {
    let org = org();
    let units = org.business_units();
    assert_eq!(Scope::parse("  ", units), Ok(Scope::All));
    for text in ["north", "0UvAa0000000001", "0UvAa0000000001AAA"] {
        assert_eq!(
            Scope::parse(text, units).unwrap().index(),
            Some(0),
            "{text}"
        );
    }
    assert_eq!(
        Scope::parse("South", units).unwrap_err().to_string(),
        "No business unit is called \"South\". Business units: North (0UvAa0000000001KAA)."
    );
}

#[test]
fn csv_quotes_values_and_defuses_formulas_from_crm_data() {
    let mut report = audit(&org());
    report
        .rows
        .retain(|r| r.kind == RowKind::SfUserWithoutAeUser);
    report.rows.truncate(1);
    let row = &mut report.rows[0];
    let sf = row.salesforce_user.as_mut().unwrap();
    sf.name = "=HYPERLINK(\"http://evil\",\"x\")".into();
    sf.email = "a,b@acme.com".into();
    row.title = "line one\nline two".into();
    let csv = to_csv(&report);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "business_unit_id,business_unit_name,kind,cause,severity,causes,sf_user_id,sf_username,sf_email,sf_name,sf_is_active,ae_user_id,ae_email,ae_name,reason,title,check"
    );
    assert_eq!(
        csv.split_once('\n').unwrap().1,
        "0UvAa0000000001KAA,North,sf_user_without_ae_user,mapped_to_deleted_user,blocker,mapped_to_deleted_user,005Aa0000000005IAA,erin@acme.com,\"a,b@acme.com\",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",true,,,,profile mapped to an AE role under User Sync,\"line one\nline two\",check erin@acme.com\n"
    );
}

#[test]
fn changes_count_new_and_gone_rows_by_key() {
    let keys = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        Changes::between(&keys(&["a", "c", "d"]), &keys(&["b", "c", "e", "f"])),
        Changes { new: 3, gone: 2 }
    );
    assert!(Changes::between(&keys(&["a", "b"]), &keys(&["a", "b"])).is_empty());
    assert_eq!(
        Changes::between(&[], &keys(&["a"])),
        Changes { new: 1, gone: 0 }
    );
}

#[test]
fn a_row_key_names_business_unit_kind_cause_and_who() {
    let report = audit(&org());
    let keys: Vec<String> = report.rows.iter().map(row_key).collect();
    assert_eq!(
        keys,
        vec![
            "0UvAa0000000001|ae_user_without_crm_username|salesforce_user_not_found||12",
            "0UvAa0000000001|sf_user_without_ae_user|mapped_to_deleted_user|005Aa0000000005|",
            "0UvAa0000000001|ae_user_without_crm_username|profile_not_mapped_to_role|005Aa0000000006|11",
            "0UvAa0000000001|sf_user_without_ae_user|no_blocker_found|005Aa0000000002|",
        ]
    );
}

#[test]
fn with_a_row_limit_the_most_severe_rows_are_kept_and_every_row_is_counted() {
    let all = audit(&org());
    let kept = audit_org(&org(), &Scope::All, now(), Some(2), &mut |_| {});
    assert_eq!(kept.rows_total, 4);
    assert_eq!(kept.blocked(), 3);
    assert!(kept.truncated());
    assert!(!all.truncated());
    assert_eq!(kept.by_cause, all.by_cause);
    assert_eq!(kept.fingerprints, all.fingerprints);
    assert_eq!(kept.rows.len(), 2);
    assert!(kept.rows.iter().all(|r| r.severity == Severity::Blocker));
    let none = audit_org(&org(), &Scope::All, now(), Some(0), &mut |_| {});
    assert_eq!((none.rows.len(), none.rows_total), (0, 4));
}

/// Three business units managed in Salesforce, all with User Sync on and every profile mapped
/// (so mapping the profile expects nothing there), in an org of 10,000 users:
/// - North assigns users 1 to 5 in its Marketing section, and public group All Sales (which
///   holds EMEA Sales, which holds users 10 to 19) in its Sales section;
/// - South assigns role VP and subordinates in its Sales section (users 100 to 109 are Reps
///   below VP);
/// - West assigns the role Ops exactly in its Marketing section (users 200 to 204).
///
/// Assigned but not expected: user 3 is inactive, user 4 is a partner user. AE users exist for
/// users 1, 2, 10, 11, 100 and 200 (and a recycle-bin one for 12, which does not count). AE
/// users without a CRM username: North's AE 900 (the email of unassigned user 5000) and West's
/// AE 901 (an email no one has).
fn three_salesforce_managed_units() -> Org {
    let mut users = Vec::with_capacity(10_000);
    for n in 0..10_000u32 {
        let username = format!("user{n}@acme.com");
        let role = match n {
            100..=109 => Some("00EAa0000000002"),
            200..=204 => Some("00EAa0000000003"),
            _ => None,
        };
        users.push(serde_json::json!({
            "id": format!("005Aa{n:010}"), "username": username, "email": username,
            "name": format!("User {n}"), "profile_name": "Standard User",
            "user_license": "Salesforce", "user_type": "Standard",
            "role_id": role, "is_active": n != 3,
        }));
    }
    users[4]["user_type"] = "PowerPartner".into();
    users[4]["user_license"] = "Partner Community".into();
    let mut members: Vec<serde_json::Value> = (10..20)
        .map(|n| serde_json::json!({"group_id": "00GAa0000000002", "member_id": format!("005Aa{n:010}")}))
        .collect();
    members
        .push(serde_json::json!({"group_id": "00GAa0000000001", "member_id": "00GAa0000000002"}));
    let mapped = |id: u64, n: u32| serde_json::json!({"id": id, "email": format!("user{n}@acme.com"), "salesforce_id": format!("005Aa{n:010}")});
    let unit = |id: &str, name: &str, assignment: serde_json::Value, ae: Vec<serde_json::Value>| {
        serde_json::json!({
            "id": id, "name": name, "user_sync": true, "user_management": "salesforce",
            "profile_roles": {"Standard User": "Sales"}, "assignment": assignment, "users": ae,
        })
    };
    let mut deleted = mapped(12, 12);
    deleted["is_deleted"] = true.into();
    let snapshot = serde_json::json!({
        "fetched_at": "2026-11-27T09:00:00Z",
        "salesforce": {
            "instance_url": "https://acme.my.salesforce.com",
            "users": users,
            "roles": [
                {"id": "00EAa0000000001", "name": "VP"},
                {"id": "00EAa0000000002", "name": "Rep", "parent_role_id": "00EAa0000000001"},
                {"id": "00EAa0000000003", "name": "Ops"},
            ],
            "groups": [
                {"id": "00GAa0000000001", "name": "All Sales"},
                {"id": "00GAa0000000002", "name": "EMEA Sales"},
            ],
            "group_members": members,
        },
        "business_units": [
            unit("0UvAa0000000001", "North", serde_json::json!({
                "marketing": {"users": (1..=5).map(|n| format!("005Aa{n:010}")).collect::<Vec<_>>()},
                "sales": {"public_groups": ["All Sales"]},
            }), vec![mapped(1, 1), mapped(2, 2), mapped(10, 10), mapped(11, 11), deleted,
                     serde_json::json!({"id": 900, "email": "user5000@acme.com"})]),
            unit("0UvAa0000000002", "South", serde_json::json!({
                "sales": {"roles_and_subordinates": ["VP"]},
            }), vec![mapped(100, 100)]),
            unit("0UvAa0000000003", "West", serde_json::json!({
                "marketing": {"roles": ["00EAa0000000003"]},
            }), vec![mapped(200, 200), serde_json::json!({"id": 901, "email": "nobody@acme.com"})]),
        ],
    });
    Org::new(OrgSnapshot::from_json(&snapshot.to_string(), "test").unwrap())
}

#[test]
fn in_salesforce_managed_units_only_assigned_users_are_expected_among_ten_thousand() {
    let org = three_salesforce_managed_units();
    let report = audit(&org);
    let mut got: Vec<(String, RowKind, String)> = report
        .rows
        .iter()
        .map(|r| {
            let who = match (&r.ae_user, &r.salesforce_user) {
                (Some(ae), _) => format!("AE {}", ae.id),
                (None, Some(sf)) => sf.username.clone(),
                (None, None) => String::new(),
            };
            (r.business_unit_name.clone(), r.kind, who)
        })
        .collect();
    got.sort();
    let sf = |bu: &str, n: u32| {
        (
            bu.to_owned(),
            RowKind::SfUserWithoutAeUser,
            format!("user{n}@acme.com"),
        )
    };
    let mut want: Vec<(String, RowKind, String)> = Vec::new();
    want.push(sf("North", 5));
    want.extend((12..20).map(|n| sf("North", n)));
    want.extend((101..110).map(|n| sf("South", n)));
    want.extend((201..205).map(|n| sf("West", n)));
    want.push((
        "North".into(),
        RowKind::AeUserWithoutCrmUsername,
        "AE 900".into(),
    ));
    want.push((
        "West".into(),
        RowKind::AeUserWithoutCrmUsername,
        "AE 901".into(),
    ));
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        report.sf_users_scanned, 9_998,
        "inactive and external users are not scanned"
    );
    // The unassigned user 5000 appears only through the AE user reserving it, as not assigned.
    let ae_900 = report
        .rows
        .iter()
        .find(|r| r.ae_user.as_ref().is_some_and(|a| a.id == 900))
        .unwrap();
    assert_eq!(ae_900.causes, [C::NotAssignedToBusinessUnit]);
    let sales_row = report
        .rows
        .iter()
        .find(|r| r.check == "check user12@acme.com")
        .unwrap();
    assert_eq!(
        sales_row.reason,
        "assigned as a Sales user through the public group EMEA Sales, nested in All Sales"
    );
    assert_rows_agree_with_check(&org, &report);
}
