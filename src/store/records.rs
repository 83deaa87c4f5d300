//! What the shared cache keeps per Salesforce user, and how a small org is put back together
//! from it so that the one diagnosis code runs on it unchanged.
//!
//! At publish time, each user's [`UserContext`] collects everything a diagnosis of that user
//! reads besides the user itself: the public groups above the user (nested groups and groups
//! standing for their roles, followed to the top), the membership edges between them, the role
//! chain, and the AE users of every business unit that hold the user or match its username or
//! email. Reading a query then costs a fixed number of key lookups, whatever the org's size.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AeUser, BusinessUnit, GroupMember, Org, OrgSnapshot, PublicGroup, Role, RoleGroupKind,
    SalesforceOrg, SfId, SfUser,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserContext {
    pub groups: Vec<PublicGroup>,
    pub group_members: Vec<GroupMember>,
    pub roles: Vec<Role>,
    /// (business unit index, AE user): holders of the user, and AE users whose email is the
    /// user's username or email.
    pub ae_users: Vec<(u32, AeUser)>,
}

/// The parts of a generation that do not depend on the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationMeta {
    pub fetched_at: DateTime<Utc>,
    pub org_id: Option<SfId>,
    pub instance_url: String,
    pub lightning_url: Option<String>,
    /// Settings only: `users` is empty.
    pub business_units: Vec<BusinessUnit>,
    /// Groups and roles named by any business unit's assignment, so that evidence can name them.
    pub referenced_groups: Vec<PublicGroup>,
    pub referenced_roles: Vec<Role>,
    pub sf_user_count: usize,
    pub ae_user_counts: Vec<usize>,
}

impl GenerationMeta {
    pub fn of(org: &Org) -> Self {
        let snapshot = org.snapshot();
        let sf = &snapshot.salesforce;
        let mut referenced_groups = Vec::new();
        let mut referenced_roles = Vec::new();
        for (_, a) in snapshot
            .business_units
            .iter()
            .flat_map(|bu| bu.assignment.sections())
        {
            for r in &a.public_groups {
                referenced_groups.extend(
                    sf.groups
                        .iter()
                        .filter(|g| org.group_matches(r, g))
                        .cloned(),
                );
            }
            for r in a.roles.iter().chain(&a.roles_and_subordinates) {
                referenced_roles.extend(
                    sf.roles
                        .iter()
                        .filter(|role| org.role_matches(r, role))
                        .cloned(),
                );
            }
        }
        dedupe_by(&mut referenced_groups, |g| g.id);
        dedupe_by(&mut referenced_roles, |r| r.id);
        GenerationMeta {
            fetched_at: snapshot.fetched_at,
            org_id: sf.org_id,
            instance_url: sf.instance_url.clone(),
            lightning_url: sf.lightning_url.clone(),
            business_units: snapshot
                .business_units
                .iter()
                .map(|bu| BusinessUnit {
                    users: Vec::new(),
                    ..bu.clone()
                })
                .collect(),
            referenced_groups,
            referenced_roles,
            sf_user_count: sf.users.len(),
            ae_user_counts: snapshot
                .business_units
                .iter()
                .map(|b| b.users.len())
                .collect(),
        }
    }
}

fn dedupe_by<T, K: std::hash::Hash + Eq>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let mut seen = HashSet::new();
    items.retain(|item| seen.insert(key(item)));
}

/// The group nesting and the role tree without user memberships: small next to the users,
/// read only to rebuild one user's context after a live re-check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupGraph {
    pub groups: Vec<PublicGroup>,
    /// Memberships whose member is a group.
    pub group_edges: Vec<GroupMember>,
    pub roles: Vec<Role>,
}

impl GroupGraph {
    pub fn of(org: &Org) -> Self {
        let sf = &org.snapshot().salesforce;
        GroupGraph {
            groups: sf.groups.clone(),
            group_edges: sf
                .group_members
                .iter()
                .filter(|m| m.member_id.key_prefix() == "00G")
                .cloned()
                .collect(),
            roles: sf.roles.clone(),
        }
    }
}

/// The groups among a user's `direct` groups (read live) whose memberships a refresh reads:
/// those reachable from the business units' assignments over the cached nesting. A refresh
/// does not read the memberships of other groups, so keeping them would make a re-checked
/// user's context differ from the one the next refresh publishes.
pub fn reachable_direct_groups(
    direct: Vec<SfId>,
    groups: &[PublicGroup],
    edges: &[GroupMember],
    business_units: &[BusinessUnit],
) -> Vec<SfId> {
    let reachable = crate::domain::reachable_in(groups, edges, business_units);
    direct
        .into_iter()
        .filter(|g| reachable.contains(g))
        .collect()
}

/// Builds every user's context, sharing the work of walking up the group nesting: each
/// group's ancestors are computed once.
pub struct ContextBuilder<'a> {
    org: &'a Org,
    ancestors: FxHashMap<SfId, Vec<&'a PublicGroup>>,
}

impl<'a> ContextBuilder<'a> {
    pub fn new(org: &'a Org) -> Self {
        ContextBuilder {
            org,
            ancestors: FxHashMap::default(),
        }
    }

    /// The group and every group above it, each once, cycles included.
    fn ancestors(&mut self, group: &'a PublicGroup) -> Vec<&'a PublicGroup> {
        if let Some(found) = self.ancestors.get(&group.id) {
            return found.clone();
        }
        let mut seen = HashSet::from([group.id]);
        let mut out = vec![group];
        let mut at = 0;
        while at < out.len() {
            for parent in self.org.groups_containing(out[at].id) {
                if seen.insert(parent.id) {
                    out.push(parent);
                }
            }
            at += 1;
        }
        self.ancestors.insert(group.id, out.clone());
        out
    }

    pub fn context(&mut self, user: &SfUser) -> UserContext {
        let org = self.org;
        let roles: Vec<&Role> = org.role_chain(user);
        let mut start: Vec<&PublicGroup> = org.groups_containing(user.id).collect();
        for (depth, role) in roles.iter().enumerate() {
            start.extend(org.groups_of_role(role.id).filter(|g| match g.role_kind() {
                Some(RoleGroupKind::Role) => depth == 0,
                Some(RoleGroupKind::RoleAndSubordinates) => true,
                None => false,
            }));
        }
        let mut groups: Vec<&PublicGroup> = Vec::new();
        for group in start {
            groups.extend(self.ancestors(group));
        }
        dedupe_by(&mut groups, |g| g.id);
        let reached: HashSet<SfId> = groups.iter().map(|g| g.id).collect();
        let mut group_members: Vec<GroupMember> = org
            .groups_containing(user.id)
            .map(|g| GroupMember {
                group_id: g.id,
                member_id: user.id,
            })
            .collect();
        for group in &groups {
            for parent in org.groups_containing(group.id) {
                if reached.contains(&parent.id) {
                    group_members.push(GroupMember {
                        group_id: parent.id,
                        member_id: group.id,
                    });
                }
            }
        }
        let username = user.username.to_lowercase();
        let email = user.email.trim().to_lowercase();
        let mut ae_users = Vec::new();
        for b in 0..org.business_units().len() {
            let mut here: Vec<&AeUser> = org.ae_users_mapped_to(b, user.id).collect();
            here.extend(org.ae_users_with_email(b, &username));
            if !email.is_empty() && email != username {
                here.extend(org.ae_users_with_email(b, &email));
            }
            dedupe_by(&mut here, |u| u.id);
            ae_users.extend(here.into_iter().map(|u| (b as u32, u.clone())));
        }
        UserContext {
            groups: groups.into_iter().cloned().collect(),
            group_members,
            roles: roles.into_iter().cloned().collect(),
            ae_users,
        }
    }
}

/// A small org holding just what a diagnosis of one query reads: the matched or candidate
/// users, the context of the one user diagnosed (if any), and the AE users a target lookup
/// found. Diagnosing it gives the same answer as diagnosing the whole org.
pub fn assemble(
    meta: &GenerationMeta,
    mut users: Vec<SfUser>,
    context: Option<UserContext>,
    targets: Vec<(u32, AeUser)>,
) -> OrgSnapshot {
    dedupe_by(&mut users, |u| u.id);
    let mut groups = meta.referenced_groups.clone();
    let mut roles = meta.referenced_roles.clone();
    let mut group_members = Vec::new();
    let mut business_units = meta.business_units.clone();
    let mut ae_users = targets;
    if let Some(context) = context {
        groups.extend(context.groups);
        roles.extend(context.roles);
        group_members = context.group_members;
        ae_users.extend(context.ae_users);
    }
    dedupe_by(&mut groups, |g| g.id);
    dedupe_by(&mut roles, |r| r.id);
    dedupe_by(&mut ae_users, |(b, u)| (*b, u.id));
    for (b, user) in ae_users {
        if let Some(bu) = business_units.get_mut(b as usize) {
            bu.users.push(user);
        }
    }
    OrgSnapshot {
        fetched_at: meta.fetched_at,
        salesforce: SalesforceOrg {
            org_id: meta.org_id,
            instance_url: meta.instance_url.clone(),
            lightning_url: meta.lightning_url.clone(),
            users,
            roles,
            groups,
            group_members,
        },
        business_units,
    }
}
