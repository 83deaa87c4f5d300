//! Scenario 4: user management transferred to Salesforce. A user gets an AE user in a business
//! unit only when assigned to it, in its Marketing or its Sales section: directly, through a
//! public group (nested groups and groups holding roles included), through a role, or below a
//! role assigned with its subordinates.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};

use crate::domain::{
    Assignment, AssignmentSection, Finding, FindingCode, Org, PublicGroup, RecordRef, Role,
    RoleGroupKind, Section, Severity, SfUser, UserManagement,
};

use super::{Context, FindingBuilder};

/// AE creates the user 10 to 15 minutes after assignment, and sometimes takes up to an hour.
pub const PENDING_WINDOW_MINUTES: i64 = 60;

/// How a user is assigned to a business unit: the evidence shown to the admin.
#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentPath<'a> {
    User,
    Role(&'a Role),
    RoleAndSubordinates {
        assigned: &'a Role,
        own: &'a Role,
    },
    /// From the group holding the user directly to the assigned group.
    Group(Vec<&'a PublicGroup>),
}

impl AssignmentPath<'_> {
    pub fn describe(&self) -> String {
        match self {
            AssignmentPath::User => "directly".to_owned(),
            AssignmentPath::Role(role) => format!("through the role {}", role.name),
            AssignmentPath::RoleAndSubordinates { assigned, own } if assigned.id == own.id => {
                format!("through the role and subordinates {}", assigned.name)
            }
            AssignmentPath::RoleAndSubordinates { assigned, own } => format!(
                "through the role and subordinates {} (their role {} is below it)",
                assigned.name, own.name
            ),
            AssignmentPath::Group(chain) => {
                let names: Vec<&str> = chain.iter().map(|g| g.name.as_str()).collect();
                format!("through the public group {}", names.join(", nested in "))
            }
        }
    }
}

/// The section that assigns a user, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned<'a> {
    pub section: Section,
    pub path: AssignmentPath<'a>,
}

impl Assigned<'_> {
    /// `as a Sales user through the public group EMEA Sales, nested in All Sales`
    pub fn describe(&self) -> String {
        format!(
            "as a {} user {}",
            self.section.label(),
            self.path.describe()
        )
    }
}

/// Which section assigns `user`, and how; Marketing wins when both do, since the profile map
/// then decides the AE role.
pub fn assigned<'a>(org: &'a Org, user: &SfUser, assignment: &Assignment) -> Option<Assigned<'a>> {
    assignment.sections().into_iter().find_map(|(section, a)| {
        assignment_path(org, user, a).map(|path| Assigned { section, path })
    })
}

/// How `user` is assigned under `assignment`, or `None` when not at all.
pub fn assignment_path<'a>(
    org: &'a Org,
    user: &SfUser,
    assignment: &AssignmentSection,
) -> Option<AssignmentPath<'a>> {
    let by_user = assignment.users.iter().any(|r| match r {
        RecordRef::Id(id) => *id == user.id,
        RecordRef::Name(name) => name.eq_ignore_ascii_case(&user.username),
    });
    if by_user {
        return Some(AssignmentPath::User);
    }
    let roles = org.role_chain(user);
    if let Some(own) = roles.first() {
        if assignment.roles.iter().any(|r| org.role_matches(r, own)) {
            return Some(AssignmentPath::Role(own));
        }
        for ancestor in &roles {
            if assignment
                .roles_and_subordinates
                .iter()
                .any(|r| org.role_matches(r, ancestor))
            {
                return Some(AssignmentPath::RoleAndSubordinates {
                    assigned: ancestor,
                    own,
                });
            }
        }
    }
    if assignment.public_groups.is_empty() {
        return None;
    }
    group_path(org, user, &roles, &assignment.public_groups).map(AssignmentPath::Group)
}

/// Breadth-first up the group nesting from the user: the shortest chain to an assigned group.
/// Every group is visited once, so cycles in nesting end.
fn group_path<'a>(
    org: &'a Org,
    user: &SfUser,
    roles: &[&Role],
    assigned: &[RecordRef],
) -> Option<Vec<&'a PublicGroup>> {
    // (group, index of the group it was reached from)
    let mut visited: Vec<(&PublicGroup, Option<usize>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    let mut start: Vec<&PublicGroup> = org.groups_containing(user.id).collect();
    for (depth, role) in roles.iter().enumerate() {
        start.extend(org.groups_of_role(role.id).filter(|g| match g.role_kind() {
            Some(RoleGroupKind::Role) => depth == 0,
            Some(RoleGroupKind::RoleAndSubordinates) => true,
            None => false,
        }));
    }
    for group in start {
        if seen.insert(group.id) {
            visited.push((group, None));
            queue.push_back(visited.len() - 1);
        }
    }
    while let Some(at) = queue.pop_front() {
        let group = visited[at].0;
        if assigned.iter().any(|r| org.group_matches(r, group)) {
            let mut chain = vec![group];
            let mut from = visited[at].1;
            while let Some(i) = from {
                chain.push(visited[i].0);
                from = visited[i].1;
            }
            chain.reverse();
            return Some(chain);
        }
        for parent in org.groups_containing(group.id) {
            if seen.insert(parent.id) {
                visited.push((parent, Some(at)));
                queue.push_back(visited.len() - 1);
            }
        }
    }
    None
}

/// Whether `diagnose` on `org` could answer differently at a later time than at `now`: only
/// while a user's last change is under [`PENDING_WINDOW_MINUTES`] old (or dated ahead of
/// `now`) does the answer depend on the clock ("changed N minutes ago"). The clock is the
/// diagnosis's only input besides the query and the org, so an answer made when this is
/// `false` holds for as long as the org is the same.
pub fn depends_on_time(org: &Org, now: DateTime<Utc>) -> bool {
    org.snapshot().salesforce.users.iter().any(|u| {
        u.modified_at
            .is_some_and(|t| (now - t).num_minutes() < PENDING_WINDOW_MINUTES)
    })
}

pub(crate) fn assignment_findings(ctx: &Context<'_>, bu: usize) -> Option<Finding> {
    let unit = ctx.bu(bu);
    if unit.user_management != UserManagement::Salesforce {
        return None;
    }
    let user = ctx.user;
    match assigned(ctx.org, user, &unit.assignment) {
        None => Some(not_assigned(ctx, bu)),
        Some(path) => {
            let has_ae_user = ctx.org.ae_users_mapped_to(bu, user.id).next().is_some();
            let minutes = user
                .modified_at
                .map(|t| (ctx.now - t).num_minutes())
                .filter(|&m| (0..PENDING_WINDOW_MINUTES).contains(&m) && !has_ae_user)?;
            let wait = PENDING_WINDOW_MINUTES - minutes;
            Some(
                FindingBuilder::new(FindingCode::AssignmentPendingSync, Severity::Warning, Some(unit))
                    .title(format!(
                        "Assigned to {}, changed {minutes} minutes ago: the AE user is not created yet",
                        unit.label()
                    ))
                    .detail(format!(
                        "{} is assigned to {} {}, and the user changed {minutes} minutes ago. Account Engagement creates the user 10 to 15 minutes after assignment, sometimes up to an hour.",
                        user.username,
                        unit.label(),
                        path.describe()
                    ))
                    .step(format!("Wait, then re-check in {} minutes.", wait.max(1)))
                    .step(format!(
                        "If no AE user appears within an hour, open Edit User Assignment for {} and check that {} is still included, and that the Salesforce connector is verified.",
                        unit.label(),
                        user.username
                    ))
                    .link(ctx.links.bu_assignment(unit))
                    .build(),
            )
        }
    }
}

fn not_assigned(ctx: &Context<'_>, bu: usize) -> Finding {
    let unit = ctx.bu(bu);
    let user = ctx.user;
    let a = &unit.assignment;
    let assigned = describe_assignment(ctx.org, a);
    let groups: Vec<&str> = ctx
        .org
        .groups_containing(user.id)
        .filter(|g| g.role_kind().is_none())
        .map(|g| g.name.as_str())
        .take(5)
        .collect();
    let role = user
        .role_id
        .and_then(|id| ctx.org.role(id))
        .map(|r| r.name.as_str())
        .unwrap_or("none");
    let member_of = if groups.is_empty() {
        "none of the public groups an assignment reaches".to_owned()
    } else {
        format!("the public groups {}", groups.join(", "))
    };
    let example = a
        .marketing
        .public_groups
        .first()
        .or(a.sales.public_groups.first())
        .map(|r| group_label(ctx.org, r))
        .map(|g| format!(" (for example the public group {g})"))
        .unwrap_or_default();
    let mut finding = FindingBuilder::new(FindingCode::NotAssignedToBusinessUnit, Severity::Blocker, Some(unit))
        .title(format!("{} is not assigned to {}", user.username, unit.label()))
        .detail(format!(
            "User management of {} is in Salesforce, and {} is not assigned to it in either section (Marketing or Sales): not as a user, not in an assigned public group (nested groups included), not in an assigned role, nor below an assigned role and subordinates. Assigned: {assigned}. The user is in {member_of}; role: {role}.",
            unit.label(),
            user.username
        ))
        .step(format!(
            "In Salesforce, go to Setup > Account Engagement Account Setup > Manage Users > Edit User Assignment for {}.",
            unit.label()
        ))
        .step(format!(
            "Add {}, or a public group or role that holds them{example}, to the Sales users section (or to the Marketing users section when the profile map should decide its AE role), and save.",
            user.username
        ))
        .step("Wait 10 to 15 minutes (up to an hour): the AE user is created automatically.")
        .step("Re-check, then map the CRM username if it was not mapped automatically.")
        .link(ctx.links.bu_assignment(unit));
    if !(a.marketing.public_groups.is_empty() && a.sales.public_groups.is_empty()) {
        finding = finding.link(ctx.links.public_groups());
    }
    finding.link(ctx.links.sf_user(user.id)).build()
}

fn group_label(org: &Org, reference: &RecordRef) -> String {
    match reference {
        RecordRef::Id(id) => org
            .group(*id)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| id.to_string()),
        RecordRef::Name(name) => name.clone(),
    }
}

fn role_label(org: &Org, reference: &RecordRef) -> String {
    match reference {
        RecordRef::Id(id) => org
            .role(*id)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| id.to_string()),
        RecordRef::Name(name) => name.clone(),
    }
}

/// `Marketing section (public groups All Marketing; roles CMO), Sales section (roles Rep)`,
/// or `nothing`.
fn describe_assignment(org: &Org, a: &Assignment) -> String {
    let parts: Vec<String> = a
        .sections()
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(section, s)| format!("{} section ({})", section.label(), describe_section(org, s)))
        .collect();
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
}

fn describe_section(org: &Org, a: &AssignmentSection) -> String {
    fn list(items: Vec<String>) -> String {
        let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
        match items.len() {
            n if n > shown.len() => format!("{} and {} more", shown.join(", "), n - shown.len()),
            _ => shown.join(", "),
        }
    }
    let mut parts = Vec::new();
    if !a.users.is_empty() {
        parts.push(match a.users.len() {
            1 => "1 user".to_owned(),
            n => format!("{n} users"),
        });
    }
    if !a.public_groups.is_empty() {
        parts.push(format!(
            "public groups {}",
            list(
                a.public_groups
                    .iter()
                    .map(|r| group_label(org, r))
                    .collect()
            )
        ));
    }
    if !a.roles.is_empty() {
        parts.push(format!(
            "roles {}",
            list(a.roles.iter().map(|r| role_label(org, r)).collect())
        ));
    }
    if !a.roles_and_subordinates.is_empty() {
        parts.push(format!(
            "roles and subordinates {}",
            list(
                a.roles_and_subordinates
                    .iter()
                    .map(|r| role_label(org, r))
                    .collect()
            )
        ));
    }
    parts.join("; ")
}
