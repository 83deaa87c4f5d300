//! The built-in demo org: two business units and a Salesforce user for every cause, including
//! the source article's Scenario 2 example (README "Demo org" lists who shows what).

use chrono::{DateTime, Utc};

use crate::domain::{OrgSnapshot, SnapshotError};

pub const DEMO_ORG_JSON: &str = include_str!("org.json");

/// The demo org with its timestamps moved so that it was fetched at `now`.
pub fn snapshot(now: DateTime<Utc>) -> Result<OrgSnapshot, SnapshotError> {
    let mut snapshot = OrgSnapshot::from_json(DEMO_ORG_JSON, "demo org")?;
    snapshot.shift_to(now);
    Ok(snapshot)
}
