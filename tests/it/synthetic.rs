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
