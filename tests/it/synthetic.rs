//! The synthetic org used by benchmarks and the fakes exercises every cause of the diagnosis.

use std::collections::BTreeSet;

use crm_username::diagnose::diagnose;
use crm_username::domain::{FindingCode, Org, Query};
use crm_username::synthetic::{Params, Variety, generate_with};

#[test]
fn every_finding_code_occurs_in_a_synthetic_org() {
    let snapshot = generate_with(
        Params {
            sf_users: 3_000,
            ae_users: 900,
            business_units: 3,
            seed: 1,
        },
        Variety {
            external_percent: 5,
            sales_section: true,
            ..Variety::default()
        },
    );
    let now = snapshot.fetched_at;
    let org = Org::new(snapshot.clone());
    let mut seen = BTreeSet::new();
    let mut check = |text: &str| {
        if let Ok(Ok(d)) = Query::parse(text).map(|q| diagnose(&q, &org, now)) {
            seen.extend(d.findings.iter().map(|f| f.code));
        }
    };
    for user in &snapshot.salesforce.users {
        check(&user.username);
    }
    check("nobody@synthetic.example.com");
    // With targets: the AE user holding a username, and an AE user of another business unit.
    for (b, bu) in snapshot.business_units.iter().enumerate().take(2) {
        for ae in bu.users.iter().filter(|u| !u.is_deleted).take(50) {
            if let Some(sf) = ae
                .salesforce_id
                .and_then(|id| snapshot.salesforce.users.iter().find(|u| u.id == id))
            {
                check(&format!("{} for {}", sf.username, ae.id));
                let other = &snapshot.business_units[(b + 1) % snapshot.business_units.len()];
                if let Some(elsewhere) = other.users.iter().find(|u| !u.is_deleted) {
                    check(&format!("{} for {}", sf.username, elsewhere.id));
                }
            }
        }
    }
    let missing: Vec<_> = FindingCode::ALL
        .iter()
        .filter(|c| !seen.contains(c))
        .collect();
    assert!(missing.is_empty(), "codes never found: {missing:?}");
}

#[test]
fn bench_org_assignments_reach_groups_five_levels_deep_holding_about_two_percent_of_the_rows() {
    use crm_username::domain::{RecordRef, SfId};
    use std::collections::{HashMap, HashSet};

    let total = 50_000;
    let snapshot = generate_with(
        Params {
            sf_users: 50_000,
            ae_users: 400,
            business_units: 4,
            seed: 1,
        },
        Variety {
            external_percent: 90,
            sales_section: true,
            group_members: total,
        },
    );
    let sf = &snapshot.salesforce;
    assert_eq!(sf.group_members.len(), total);
    let types: HashMap<SfId, &str> = sf
        .groups
        .iter()
        .map(|g| (g.id, g.group_type.as_str()))
        .collect();
    let mut members: HashMap<SfId, Vec<SfId>> = HashMap::new();
    for m in &sf.group_members {
        members.entry(m.group_id).or_default().push(m.member_id);
    }
    // Every membership row is unique.
    let unique: HashSet<_> = sf
        .group_members
        .iter()
        .map(|m| (m.group_id, m.member_id))
        .collect();
    assert_eq!(unique.len(), total);

    // Level by level from the assigned groups, as the refresh reads them.
    let mut level: Vec<SfId> = snapshot
        .business_units
        .iter()
        .flat_map(|bu| bu.assignment.sections())
        .flat_map(|(_, section)| section.public_groups.iter())
        .map(|r| match r {
            RecordRef::Id(id) => *id,
            other => panic!("the generator assigns groups by id, not {other:?}"),
        })
        .collect();
    assert_eq!(level.len(), 4, "two sections in each of two business units");
    let mut seen: HashSet<SfId> = level.iter().copied().collect();
    let mut reachable_rows = 0;
    let mut levels_of_public_groups = 0;
    let mut role_groups = 0;
    while !level.is_empty() {
        if level.iter().any(|g| types[g] == "Regular") {
            levels_of_public_groups += 1;
        }
        role_groups += level.iter().filter(|g| types[g] == "Role").count();
        let mut next = Vec::new();
        for group in &level {
            for member in members.get(group).into_iter().flatten() {
                reachable_rows += 1;
                if member.as_str15().starts_with("00G") && seen.insert(*member) {
                    next.push(*member);
                }
            }
        }
        level = next;
    }
    assert_eq!(levels_of_public_groups, 5);
    assert!(role_groups > 0, "role groups are members too");
    assert!(
        (total / 50 * 9 / 10..=total / 50).contains(&reachable_rows),
        "{reachable_rows} rows reachable of {total}"
    );
    assert!(seen.iter().all(|g| types[g] != "Queue"));
    let queues = sf.groups.iter().filter(|g| g.group_type == "Queue").count();
    assert!(queues > 0);
}
