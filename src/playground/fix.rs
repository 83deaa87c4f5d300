//! The playground's one change to its own copy of the demo org: the fix of
//! `nora.north@acme.com`, who is blocked in Acme EMEA (`not_assigned_to_business_unit`: her
//! only group, Loop B, nests in a cycle that reaches no assigned group). Assigning her is
//! adding her to the public group EMEA Team, which Acme EMEA assigns to its Marketing
//! section. The demo org never changes by itself; this lets a follow-up re-check find the
//! fix, as it would once an admin made it in Salesforce.

use crate::domain::{GroupMember, OrgSnapshot};

/// Whom the fix is for, as typed in a check.
pub const USERNAME: &str = "nora.north@acme.com";
/// The public group the fix adds her to.
pub const GROUP: &str = "EMEA Team";

/// Adds `USERNAME` to `GROUP` directly; `Ok(false)` when she is in it already, `Err` (what is
/// missing) when the org has no such user or group.
pub fn assign(snapshot: &mut OrgSnapshot) -> Result<bool, &'static str> {
    let sf = &mut snapshot.salesforce;
    let user = sf
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(USERNAME))
        .ok_or("the demo org has no nora.north@acme.com")?
        .id;
    let group = sf
        .groups
        .iter()
        .find(|g| g.name == GROUP)
        .ok_or("the demo org has no public group EMEA Team")?
        .id;
    let membership = GroupMember {
        group_id: group,
        member_id: user,
    };
    if sf.group_members.contains(&membership) {
        return Ok(false);
    }
    sf.group_members.push(membership);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{FindingCode, Org, Query, Verdict};

    fn diagnosis(snapshot: OrgSnapshot) -> crate::domain::Diagnosis {
        let query = Query::parse(USERNAME).unwrap();
        crate::diagnose::diagnose(&query, &Org::new(snapshot), Utc::now()).unwrap()
    }

    #[test]
    fn the_fix_turns_nora_from_not_assigned_in_emea_to_clear_and_is_applied_once() {
        let mut snapshot = crate::demo::snapshot(Utc::now()).unwrap();
        let before = diagnosis(snapshot.clone());
        assert_eq!(before.verdict, Verdict::Blocked);
        assert!(
            before
                .findings
                .iter()
                .any(|f| f.code == FindingCode::NotAssignedToBusinessUnit)
        );
        assert_eq!(assign(&mut snapshot), Ok(true));
        assert_eq!(assign(&mut snapshot), Ok(false));
        let after = diagnosis(snapshot);
        assert_eq!(after.verdict, Verdict::Clear);
        // Settled: a follow-up that finds this stops.
        assert!(crate::render::slack::follow_up_settled(&after));
        let codes: Vec<FindingCode> = after.findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [FindingCode::NoBlockerFound, FindingCode::NoBlockerFound]
        );
    }
}
