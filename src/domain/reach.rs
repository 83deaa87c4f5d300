//! Which public groups' memberships the diagnosis can need: the groups the business units'
//! assignments name, and every group nested in them, at any depth.
//!
//! A user is assigned through a public group when a chain of direct memberships leads from the
//! user (or from a group standing for the user's role) up to an assigned group. Every group on
//! such a chain is nested, directly or not, in the assigned group: so the memberships of the
//! assigned groups and of the groups below them are all the diagnosis reads, and a refresh reads
//! only those ("reachable" groups). Pure: the Salesforce client and the stores share it.

use std::collections::BTreeSet;

use super::{BusinessUnit, GroupMember, PublicGroup, RecordRef, SfId, UserManagement};

/// The key prefix of group ids: a membership whose member starts so is a nested group.
pub const GROUP_ID_PREFIX: &str = "00G";

impl PublicGroup {
    /// Whether a reference from the settings names this group: by id, or by name or developer
    /// name, case-insensitively. The same rule as [`super::Org::group_matches`], without an
    /// index.
    pub fn is_named_by(&self, reference: &RecordRef) -> bool {
        match reference {
            RecordRef::Id(id) => *id == self.id,
            RecordRef::Name(name) => {
                let name = name.to_lowercase();
                self.name.to_lowercase() == name
                    || self
                        .developer_name
                        .as_ref()
                        .is_some_and(|d| d.to_lowercase() == name)
            }
        }
    }
}

/// The groups the assignment sections name, in business units whose user management is in
/// Salesforce (the only ones whose assignment the diagnosis reads). Empty when no business unit
/// is Salesforce-managed, or none assigns a public group: then no membership is needed at all.
pub fn assignment_roots(groups: &[PublicGroup], business_units: &[BusinessUnit]) -> BTreeSet<SfId> {
    let references: Vec<&RecordRef> = business_units
        .iter()
        .filter(|bu| bu.user_management == UserManagement::Salesforce)
        .flat_map(|bu| bu.assignment.sections())
        .flat_map(|(_, section)| section.public_groups.iter())
        .collect();
    if references.is_empty() {
        return BTreeSet::new();
    }
    groups
        .iter()
        .filter(|g| references.iter().any(|r| g.is_named_by(r)))
        .map(|g| g.id)
        .collect()
}

/// The groups among `members` that are nested groups known in `groups`, and not yet in
/// `reached`: the next level to read. Sorted, each once. A member group the Group query did not
/// return (another type, such as the organization-wide group) is left out: the diagnosis only
/// follows known groups.
pub fn new_member_groups<'a>(
    members: impl IntoIterator<Item = &'a GroupMember>,
    known: &BTreeSet<SfId>,
    reached: &BTreeSet<SfId>,
) -> BTreeSet<SfId> {
    members
        .into_iter()
        .map(|m| m.member_id)
        .filter(|id| id.key_prefix() == GROUP_ID_PREFIX)
        .filter(|id| known.contains(id) && !reached.contains(id))
        .collect()
}

/// The roots and every known group nested in them through `edges`, at any depth. Each group is
/// visited once, so cycles in the nesting end.
pub fn reachable_groups(
    roots: &BTreeSet<SfId>,
    known: &BTreeSet<SfId>,
    edges: &[GroupMember],
) -> BTreeSet<SfId> {
    let mut children: std::collections::HashMap<SfId, Vec<&GroupMember>> =
        std::collections::HashMap::new();
    for edge in edges {
        if edge.member_id.key_prefix() == GROUP_ID_PREFIX {
            children.entry(edge.group_id).or_default().push(edge);
        }
    }
    let mut reached: BTreeSet<SfId> = roots
        .iter()
        .filter(|r| known.contains(r))
        .copied()
        .collect();
    let mut frontier = reached.clone();
    while !frontier.is_empty() {
        let below = frontier
            .iter()
            .flat_map(|g| children.get(g).into_iter().flatten().copied());
        let next = new_member_groups(below, known, &reached);
        reached.extend(next.iter().copied());
        frontier = next;
    }
    reached
}

/// The reachable groups of an org's Salesforce half under these business units' assignments.
pub fn reachable_in(
    groups: &[PublicGroup],
    edges: &[GroupMember],
    business_units: &[BusinessUnit],
) -> BTreeSet<SfId> {
    let known: BTreeSet<SfId> = groups.iter().map(|g| g.id).collect();
    reachable_groups(&assignment_roots(groups, business_units), &known, edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Assignment, AssignmentSection};

    fn group(n: usize, name: &str) -> PublicGroup {
        PublicGroup {
            id: gid(n),
            name: name.to_owned(),
            developer_name: Some(name.replace(' ', "_")),
            group_type: "Regular".to_owned(),
            related_id: None,
        }
    }

    fn gid(n: usize) -> SfId {
        SfId::parse(&format!("00GAk0000{n:06}")).unwrap()
    }

    fn uid(n: usize) -> SfId {
        SfId::parse(&format!("005Ak0000{n:06}")).unwrap()
    }

    fn edge(group: usize, member: SfId) -> GroupMember {
        GroupMember {
            group_id: gid(group),
            member_id: member,
        }
    }

    fn unit(management: UserManagement, marketing: &[&str], sales: &[&str]) -> BusinessUnit {
        let section = |refs: &[&str]| AssignmentSection {
            public_groups: refs.iter().map(|r| RecordRef::parse(r)).collect(),
            ..AssignmentSection::default()
        };
        BusinessUnit {
            id: SfId::parse("0UvAk000000BU01").unwrap(),
            name: "NA".to_owned(),
            ae_url: crate::domain::DEFAULT_AE_URL.to_owned(),
            user_sync: false,
            user_management: management,
            profile_roles: Default::default(),
            assignment: Assignment {
                marketing: section(marketing),
                sales: section(sales),
            },
            links: Default::default(),
            users: Vec::new(),
        }
    }

    fn set(ids: impl IntoIterator<Item = usize>) -> BTreeSet<SfId> {
        ids.into_iter().map(gid).collect()
    }

    #[test]
    fn roots_are_the_groups_named_by_id_name_or_developer_name_in_either_section() {
        let groups = vec![
            group(1, "All Sales"),
            group(2, "EMEA Marketing"),
            group(3, "Unrelated"),
            group(4, "Partners Only"),
        ];
        let bus = [unit(
            UserManagement::Salesforce,
            &["all sales", &gid(4).to_18()],
            &["EMEA_Marketing"],
        )];
        assert_eq!(assignment_roots(&groups, &bus), set([1, 2, 4]));
    }

    #[test]
    fn business_units_managed_in_account_engagement_need_no_memberships() {
        let groups = vec![group(1, "All Sales")];
        let bus = [unit(UserManagement::AccountEngagement, &["All Sales"], &[])];
        assert!(assignment_roots(&groups, &bus).is_empty());
        let bus = [unit(UserManagement::Salesforce, &[], &[])];
        assert!(assignment_roots(&groups, &bus).is_empty());
    }

    #[test]
    fn a_name_match_agrees_with_the_diagnosis_rule() {
        use crate::domain::{Org, OrgSnapshot, SalesforceOrg};
        let groups = vec![group(1, "Sales Team"), group(2, "Ops")];
        let org = Org::new(OrgSnapshot {
            fetched_at: chrono::Utc::now(),
            salesforce: SalesforceOrg {
                org_id: None,
                instance_url: "https://x.my.salesforce.com".to_owned(),
                lightning_url: None,
                users: Vec::new(),
                roles: Vec::new(),
                groups: groups.clone(),
                group_members: Vec::new(),
            },
            business_units: Vec::new(),
        });
        for text in [
            "sales team",
            "SALES_TEAM",
            "Ops",
            "ops ",
            "Sales",
            &gid(2).to_18(),
        ] {
            let reference = RecordRef::parse(text);
            for g in &groups {
                assert_eq!(
                    g.is_named_by(&reference),
                    org.group_matches(&reference, g),
                    "{text:?} against {}",
                    g.name
                );
            }
        }
    }

    #[test]
    fn five_levels_of_nesting_are_followed_and_users_are_not_groups() {
        // 1 > 2 > 3 > 4 > 5 > 6, each also holding a user; 7 holds 1 (above the root: not
        // reachable); 8 is unrelated.
        let mut edges = Vec::new();
        for n in 1..=5 {
            edges.push(edge(n, gid(n + 1)));
            edges.push(edge(n, uid(n)));
        }
        edges.push(edge(7, gid(1)));
        edges.push(edge(8, uid(99)));
        let known = set(1..=8);
        assert_eq!(reachable_groups(&set([1]), &known, &edges), set(1..=6));
        assert_eq!(reachable_groups(&set([4]), &known, &edges), set(4..=6));
        assert_eq!(reachable_groups(&set([8]), &known, &edges), set([8]));
    }

    #[test]
    fn cycles_in_the_nesting_end_and_each_group_is_reached_once() {
        // 1 > 2 > 3 > 1, and 3 > 4.
        let edges = vec![
            edge(1, gid(2)),
            edge(2, gid(3)),
            edge(3, gid(1)),
            edge(3, gid(4)),
            edge(2, gid(2)),
        ];
        let known = set(1..=4);
        assert_eq!(reachable_groups(&set([2]), &known, &edges), set(1..=4));
    }

    #[test]
    fn groups_the_group_query_did_not_return_are_not_followed() {
        // 9 is not a known group (another type): neither it nor what it holds is reached.
        let edges = vec![edge(1, gid(9)), edge(9, gid(2))];
        let known = set([1, 2]);
        assert_eq!(reachable_groups(&set([1]), &known, &edges), set([1]));
        // An unknown root is no root.
        assert!(reachable_groups(&set([9]), &known, &edges).is_empty());
    }

    #[test]
    fn the_next_level_is_the_new_known_member_groups_sorted_once() {
        let members = [
            edge(1, gid(3)),
            edge(1, uid(1)),
            edge(2, gid(3)),
            edge(2, gid(2)),
            edge(2, gid(4)),
        ];
        let next = new_member_groups(&members, &set(1..=4), &set([1, 2]));
        assert_eq!(next.into_iter().collect::<Vec<_>>(), vec![gid(3), gid(4)]);
    }
}
