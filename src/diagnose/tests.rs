//! Table-driven tests of every cause, their combinations, and the `for` target rules.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::domain::{
    AeUser, Assignment, BusinessUnit, FindingCode as C, GroupMember, LinkTemplates, Org,
    OrgSnapshot, PublicGroup, Query, RecordRef, Role, SalesforceOrg, Severity, SfId, SfUser,
    UserManagement, Verdict,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

/// Ids: users `005Aa0000000001`.., groups `00GAa0000000001`.., roles `00EAa0000000001`..
fn id(prefix: &str, n: u32) -> SfId {
    SfId::parse(&format!("{prefix}Aa{n:010}")).unwrap()
}
fn user_id(n: u32) -> SfId {
    id("005", n)
}
fn group_id(n: u32) -> SfId {
    id("00G", n)
}
fn role_id(n: u32) -> SfId {
    id("00E", n)
}
const BU1: &str = "0UvAa0000000001";
const BU2: &str = "0UvAa0000000002";
const STANDARD: &str = "00eAa0000000001";
const CONTRACTOR: &str = "00eAa0000000002";

fn sf_user(n: u32, username: &str) -> SfUser {
    SfUser {
        id: user_id(n),
        username: username.into(),
        email: username.into(),
        name: format!("User {n}"),
        is_active: true,
        profile_id: Some(SfId::parse(STANDARD).unwrap()),
        profile_name: Some("Standard User".into()),
        user_license: Some("Salesforce".into()),
        role_id: None,
        user_type: Some("Standard".into()),
        modified_at: Some(now() - Duration::days(30)),
    }
}

fn ae(id: u64, email: &str, sf: Option<SfId>, deleted: bool) -> AeUser {
    AeUser {
        id,
        email: email.into(),
        username: email.into(),
        first_name: "AE".into(),
        last_name: format!("{id}"),
        role_name: Some("Sales".into()),
        salesforce_id: sf,
        is_deleted: deleted,
        created_at: None,
        updated_at: None,
    }
}

fn bu(id: &str, name: &str) -> BusinessUnit {
    BusinessUnit {
        id: SfId::parse(id).unwrap(),
        name: name.into(),
        ae_url: "https://pi.pardot.com".into(),
        user_sync: false,
        user_management: UserManagement::AccountEngagement,
        profile_roles: Default::default(),
        assignment: Assignment::default(),
        links: LinkTemplates::default(),
        users: Vec::new(),
    }
}

/// Jane (user 1) and two business units with nothing in them.
fn base() -> OrgSnapshot {
    OrgSnapshot {
        fetched_at: now(),
        salesforce: SalesforceOrg {
            org_id: None,
            instance_url: "https://acme.my.salesforce.com".into(),
            lightning_url: None,
            users: vec![sf_user(1, "jane@acme.com")],
            roles: Vec::new(),
            groups: Vec::new(),
            group_members: Vec::new(),
        },
        business_units: vec![bu(BU1, "North"), bu(BU2, "South")],
    }
}

fn run(snapshot: OrgSnapshot, query: &str) -> Diagnosis {
    let org = Org::new(snapshot);
    diagnose(&Query::parse(query).unwrap(), &org, now()).unwrap()
}

/// (code, business unit index or None for org-wide causes)
fn codes(d: &Diagnosis) -> Vec<(C, Option<usize>)> {
    d.findings
        .iter()
        .map(|f| {
            let bu = f.business_unit_id.map(|id| {
                if id == SfId::parse(BU1).unwrap() {
                    0
                } else {
                    1
                }
            });
            (f.code, bu)
        })
        .collect()
}

struct Case {
    name: &'static str,
    setup: fn(&mut OrgSnapshot),
    query: &'static str,
    verdict: Verdict,
    findings: &'static [(C, Option<usize>)],
}

fn nothing(_: &mut OrgSnapshot) {}

fn group(n: u32, name: &str) -> PublicGroup {
    PublicGroup {
        id: group_id(n),
        name: name.into(),
        developer_name: None,
        group_type: "Regular".into(),
        related_id: None,
    }
}

fn member(group: u32, member: SfId) -> GroupMember {
    GroupMember {
        group_id: group_id(group),
        member_id: member,
    }
}

fn role(n: u32, name: &str, parent: Option<u32>) -> Role {
    Role {
        id: role_id(n),
        name: name.into(),
        parent_role_id: parent.map(role_id),
    }
}

/// Regular public groups, `(n, name)`.
fn add_groups(s: &mut OrgSnapshot, groups: &[(u32, &str)]) {
    let groups = groups.iter().map(|&(n, name)| group(n, name));
    s.salesforce.groups.extend(groups);
}

/// Group memberships, `(group n, member)`: the member is a user or a nested group.
fn add_members(s: &mut OrgSnapshot, members: &[(u32, SfId)]) {
    let members = members.iter().map(|&(group, id)| member(group, id));
    s.salesforce.group_members.extend(members);
}

/// Roles, `(n, name, parent n)`.
fn add_roles(s: &mut OrgSnapshot, roles: &[(u32, &str, Option<u32>)]) {
    let roles = roles.iter().map(|&(n, name, parent)| role(n, name, parent));
    s.salesforce.roles.extend(roles);
}

/// The group Salesforce keeps for a role: `Role`, or `RoleAndSubordinates` for the role and
/// every role below it. It has no name of its own.
fn role_group(n: u32, group_type: &str, role: u32) -> PublicGroup {
    PublicGroup {
        id: group_id(n),
        name: String::new(),
        developer_name: None,
        group_type: group_type.into(),
        related_id: Some(role_id(role)),
    }
}

/// South is managed in Salesforce and assigns public group 1.
fn south_managed_in_salesforce(s: &mut OrgSnapshot) {
    s.business_units[1].user_management = UserManagement::Salesforce;
    s.business_units[1].assignment.marketing.public_groups = vec![RecordRef::Id(group_id(1))];
    s.salesforce.groups.push(group(1, "South Team"));
}

/// South syncs users, and Jane's profile (Standard User) has no AE role there.
fn south_syncs_without_janes_profile(s: &mut OrgSnapshot) {
    s.business_units[1].user_sync = true;
    s.business_units[1]
        .profile_roles
        .insert("Marketing User".into(), "Marketing".into());
}

/// South is managed in Salesforce with User Sync on, and Jane's profile is not mapped there;
/// its Sales section assigns public group 1, All Sales, which holds EMEA Sales (2), which
/// holds Jane.
fn south_sales_section_by_nested_group(s: &mut OrgSnapshot) {
    south_syncs_without_janes_profile(s);
    s.business_units[1].user_management = UserManagement::Salesforce;
    s.business_units[1].assignment.sales.public_groups = vec![RecordRef::Id(group_id(1))];
    add_groups(s, &[(1, "All Sales"), (2, "EMEA Sales")]);
    add_members(s, &[(1, group_id(2)), (2, user_id(1))]);
}

/// Jane's role Rep (2) is below VP (1), and South (managed in Salesforce, User Sync on, Jane's
/// profile unmapped) assigns VP and subordinates in no section yet.
fn south_with_role_tree(s: &mut OrgSnapshot) {
    south_syncs_without_janes_profile(s);
    s.business_units[1].user_management = UserManagement::Salesforce;
    add_roles(s, &[(1, "VP", None), (2, "Rep", Some(1))]);
    s.salesforce.users[0].role_id = Some(role_id(2));
}

/// Jane becomes an external user of this type and licence.
fn external(s: &mut OrgSnapshot, user_type: &str, licence: &str) {
    s.salesforce.users[0].user_type = Some(user_type.into());
    s.salesforce.users[0].user_license = Some(licence.into());
}

const EXTERNAL_ONLY: &[(C, Option<usize>)] = &[(C::UnsupportedUserType, None)];
/// Nothing blocks Jane in either business unit.
const CLEAR_IN_BOTH: &[(C, Option<usize>)] =
    &[(C::NoBlockerFound, Some(0)), (C::NoBlockerFound, Some(1))];
/// South (managed in Salesforce) does not assign Jane; nothing blocks her in North.
const NOT_ASSIGNED_IN_SOUTH: &[(C, Option<usize>)] = &[
    (C::NotAssignedToBusinessUnit, Some(1)),
    (C::NoBlockerFound, Some(0)),
];

const CASES: &[Case] = &[
    Case {
        name: "a Sales-section user with an unmapped profile is clear",
        setup: south_sales_section_by_nested_group,
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a Marketing-section user with an unmapped profile is blocked",
        setup: |s| {
            south_sales_section_by_nested_group(s);
            let a = &mut s.business_units[1].assignment;
            a.marketing = std::mem::take(&mut a.sales);
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::ProfileNotMappedToRole, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "a user in both sections is treated as Marketing",
        setup: |s| {
            south_sales_section_by_nested_group(s);
            s.business_units[1].assignment.marketing.users = vec![RecordRef::Id(user_id(1))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::ProfileNotMappedToRole, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "an unassigned user with an unmapped profile is only reported as not assigned",
        setup: |s| {
            south_sales_section_by_nested_group(s);
            s.business_units[1].assignment.sales.public_groups.clear();
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "a Sales section assigning a role and subordinates clears a user below it",
        setup: |s| {
            south_with_role_tree(s);
            s.business_units[1].assignment.sales.roles_and_subordinates =
                vec![RecordRef::Name("VP".into())];
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a Marketing section assigning a role and subordinates leaves the profile map to decide",
        setup: |s| {
            south_with_role_tree(s);
            s.business_units[1]
                .assignment
                .marketing
                .roles_and_subordinates = vec![RecordRef::Id(role_id(1))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::ProfileNotMappedToRole, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "under User Sync with user management in AE an unmapped profile blocks",
        setup: south_syncs_without_janes_profile,
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::ProfileNotMappedToRole, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "a partner community user is not supported",
        setup: |s| external(s, "PowerPartner", "Partner Community"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a customer community plus user is not supported",
        setup: |s| external(s, "PowerCustomerSuccess", "Customer Community Plus"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a customer community user is not supported",
        setup: |s| external(s, "CspLitePortal", "Customer Community"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a customer portal user is not supported",
        setup: |s| external(s, "CustomerSuccess", "Customer Portal Manager Custom"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a self-service portal user is not supported",
        setup: |s| external(s, "SelfService", "Self-Service"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a guest user is not supported",
        setup: |s| external(s, "Guest", "Guest User License"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a Chatter Free user is not supported",
        setup: |s| external(s, "CsnOnly", "Chatter Free"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "a Standard user with a Chatter licence is not supported",
        setup: |s| external(s, "Standard", "Chatter Only"),
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: EXTERNAL_ONLY,
    },
    Case {
        name: "an external user that is also inactive is reported both ways, and nothing per business unit",
        setup: |s| {
            external(s, "PowerPartner", "Partner Community");
            s.salesforce.users[0].is_active = false;
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(user_id(1)), false));
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::UnsupportedUserType, None),
            (C::SalesforceUserInactive, None),
        ],
    },
    Case {
        name: "an Identity-licence user is treated as internal",
        setup: |s| external(s, "Standard", "Identity"),
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a Salesforce Platform licence is internal",
        setup: |s| external(s, "Standard", "Salesforce Platform"),
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "an unobstructed user is clear in every business unit",
        setup: nothing,
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "no business unit data: clear with one org-wide note",
        setup: |s| s.business_units.clear(),
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: &[(C::NoBlockerFound, None)],
    },
    Case {
        name: "unknown username is not found",
        setup: nothing,
        query: "nobody@acme.com",
        verdict: Verdict::NotFound,
        findings: &[(C::SalesforceUserNotFound, None)],
    },
    Case {
        name: "inactive user blocks everywhere and suppresses the all-clear",
        setup: |s| s.salesforce.users[0].is_active = false,
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[(C::SalesforceUserInactive, None)],
    },
    Case {
        name: "mapped to an active AE user in one business unit, clear in the other",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(user_id(1)), false))
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::MappedToActiveUser, Some(0)),
            (C::NoBlockerFound, Some(1)),
        ],
    },
    Case {
        name: "mapped to a deleted AE user in the recycle bin",
        setup: |s| {
            s.business_units[1]
                .users
                .push(ae(8, "old@acme.com", Some(user_id(1)), true))
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::MappedToDeletedUser, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "inactive and mapped to a deleted user: both are reported, org-wide first",
        setup: |s| {
            s.salesforce.users[0].is_active = false;
            s.business_units[0]
                .users
                .push(ae(8, "old@acme.com", Some(user_id(1)), true));
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::SalesforceUserInactive, None),
            (C::MappedToDeletedUser, Some(0)),
        ],
    },
    Case {
        name: "mapped to the target itself is not a blocker",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(user_id(1)), false))
        },
        query: "jane@acme.com for 7",
        verdict: Verdict::Clear,
        findings: &[(C::AlreadyMappedToTarget, Some(0))],
    },
    Case {
        name: "mapped to another AE user than the target blocks the target's business unit",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(user_id(1)), false));
            s.business_units[0]
                .users
                .push(ae(9, "new@acme.com", None, false));
        },
        query: "jane@acme.com for new@acme.com",
        verdict: Verdict::Blocked,
        findings: &[(C::MappedToActiveUser, Some(0))],
    },
    Case {
        name: "with a target, a mapping in another business unit is information only",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(user_id(1)), false));
            s.business_units[1]
                .users
                .push(ae(20, "jane.south@acme.com", None, false));
        },
        query: "jane@acme.com for jane.south@acme.com",
        verdict: Verdict::Clear,
        findings: &[
            (C::MappedInOtherBusinessUnit, Some(0)),
            (C::NoBlockerFound, Some(1)),
        ],
    },
    Case {
        name: "a 15-character salesforceId holds the 18-character user",
        setup: |s| {
            let short = SfId::parse(user_id(1).as_str15()).unwrap();
            s.business_units[0]
                .users
                .push(ae(7, "j@acme.com", Some(short), false));
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::MappedToActiveUser, Some(0)),
            (C::NoBlockerFound, Some(1)),
        ],
    },
    Case {
        name: "scenario 2: an unmapped AE user whose email is the username reserves it",
        setup: |s| {
            s.salesforce.users[0].username = "email_a@example.com".into();
            s.business_units[0]
                .users
                .push(ae(1, "email_a@example.com", None, false));
            s.business_units[0]
                .users
                .push(ae(2, "email_b@example.com", None, false));
        },
        query: "email_a@example.com for email_b@example.com",
        verdict: Verdict::Blocked,
        findings: &[(C::ReservedByEmail, Some(0))],
    },
    Case {
        name: "scenario 2: the username reserved for the target itself is not a blocker",
        setup: |s| {
            s.salesforce.users[0].username = "email_a@example.com".into();
            s.business_units[0]
                .users
                .push(ae(1, "email_a@example.com", None, false));
        },
        query: "email_a@example.com for email_a@example.com",
        verdict: Verdict::Clear,
        findings: &[(C::NoBlockerFound, Some(0))],
    },
    Case {
        name: "email reservation compares case-insensitively",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(1, "JANE@Acme.COM", None, false))
        },
        query: "Jane@ACME.com",
        verdict: Verdict::Blocked,
        findings: &[(C::ReservedByEmail, Some(0)), (C::NoBlockerFound, Some(1))],
    },
    Case {
        name: "a recycle-bin AE user with the username as email does not reserve it",
        setup: |s| {
            s.business_units[0]
                .users
                .push(ae(1, "jane@acme.com", None, true))
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "user sync skips a user whose email an unmapped AE user already has",
        setup: |s| {
            s.salesforce.users[0].email = "jane.personal@acme.com".into();
            s.business_units[0].user_sync = true;
            s.business_units[0]
                .profile_roles
                .insert("Standard User".into(), "Sales".into());
            s.business_units[0]
                .users
                .push(ae(3, "Jane.Personal@acme.com", None, false));
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: &[
            (C::SyncSkippedEmailConflict, Some(0)),
            (C::NoBlockerFound, Some(1)),
        ],
    },
    Case {
        name: "the email conflict needs user sync on",
        setup: |s| {
            s.salesforce.users[0].email = "jane.personal@acme.com".into();
            s.business_units[0]
                .users
                .push(ae(3, "jane.personal@acme.com", None, false));
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "scenario 3: user sync on and the profile has no AE role",
        setup: |s| {
            s.business_units[0].user_sync = true;
            s.business_units[0]
                .profile_roles
                .insert("Marketing User".into(), "Marketing".into());
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::ProfileNotMappedToRole, Some(0)),
            (C::NoBlockerFound, Some(1)),
        ],
    },
    Case {
        name: "the profile map accepts the profile id in 15 or 18 characters",
        setup: |s| {
            s.business_units[0].user_sync = true;
            let id18 = SfId::parse(STANDARD).unwrap().to_18();
            s.business_units[0]
                .profile_roles
                .insert(id18, "Sales".into());
            s.salesforce.users[0].profile_name = None;
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "the profile map accepts the profile name in any case",
        setup: |s| {
            s.business_units[0].user_sync = true;
            s.business_units[0]
                .profile_roles
                .insert("standard user".into(), "Sales".into());
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "an unmapped profile does not matter with user sync off",
        setup: |s| {
            s.salesforce.users[0].profile_id = Some(SfId::parse(CONTRACTOR).unwrap());
            s.salesforce.users[0].profile_name = Some("Contract Manager".into());
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "scenario 4: not assigned to a business unit managed in Salesforce",
        setup: south_managed_in_salesforce,
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "assigned directly by username",
        setup: |s| {
            south_managed_in_salesforce(s);
            s.business_units[1].assignment.marketing.users =
                vec![RecordRef::Name("JANE@acme.com".into())];
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "assigned through a group nested three deep",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_groups(s, &[(2, "Middle"), (3, "Inner")]);
            add_members(s, &[(1, group_id(2)), (2, group_id(3)), (3, user_id(1))]);
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a cycle in group nesting ends and reports not assigned",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_groups(s, &[(2, "Loop A"), (3, "Loop B")]);
            add_members(s, &[(2, group_id(3)), (3, group_id(2)), (3, user_id(1))]);
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "assigned through a cycle that reaches the assigned group",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_groups(s, &[(2, "Loop A"), (3, "Loop B")]);
            add_members(
                s,
                &[
                    (2, group_id(3)),
                    (3, group_id(2)),
                    (1, group_id(2)),
                    (3, user_id(1)),
                ],
            );
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "assigned through the exact role",
        setup: |s| {
            south_managed_in_salesforce(s);
            s.salesforce.roles.push(role(1, "Rep", None));
            s.salesforce.users[0].role_id = Some(role_id(1));
            s.business_units[1].assignment.marketing.roles = vec![RecordRef::Name("rep".into())];
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a role assigned without subordinates does not cover the roles below it",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(s, &[(1, "VP", None), (2, "Rep", Some(1))]);
            s.salesforce.users[0].role_id = Some(role_id(2));
            s.business_units[1].assignment.marketing.roles = vec![RecordRef::Id(role_id(1))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "role and subordinates covers roles two levels below",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(
                s,
                &[
                    (1, "VP", None),
                    (2, "Manager", Some(1)),
                    (3, "Rep", Some(2)),
                ],
            );
            s.salesforce.users[0].role_id = Some(role_id(3));
            s.business_units[1]
                .assignment
                .marketing
                .roles_and_subordinates = vec![RecordRef::Id(role_id(1))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "role and subordinates does not cover roles above or beside it",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(
                s,
                &[
                    (1, "VP", None),
                    (2, "Manager A", Some(1)),
                    (3, "Manager B", Some(1)),
                ],
            );
            s.salesforce.users[0].role_id = Some(role_id(3));
            s.business_units[1]
                .assignment
                .marketing
                .roles_and_subordinates = vec![RecordRef::Id(role_id(2))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "a cycle in the role tree ends",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(s, &[(1, "A", Some(2)), (2, "B", Some(1))]);
            s.salesforce.users[0].role_id = Some(role_id(1));
            s.business_units[1]
                .assignment
                .marketing
                .roles_and_subordinates = vec![RecordRef::Id(role_id(3))];
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "a public group holding a role-and-subordinates group covers users below the role",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(s, &[(1, "VP", None), (2, "Rep", Some(1))]);
            s.salesforce.users[0].role_id = Some(role_id(2));
            s.salesforce
                .groups
                .push(role_group(9, "RoleAndSubordinates", 1));
            s.salesforce.group_members.push(member(1, group_id(9)));
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a public group holding a role group does not cover that role's subordinates",
        setup: |s| {
            south_managed_in_salesforce(s);
            add_roles(s, &[(1, "VP", None), (2, "Rep", Some(1))]);
            s.salesforce.users[0].role_id = Some(role_id(2));
            s.salesforce.groups.push(role_group(9, "Role", 1));
            s.salesforce.group_members.push(member(1, group_id(9)));
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: NOT_ASSIGNED_IN_SOUTH,
    },
    Case {
        name: "assigned and changed 20 minutes ago without an AE user: pending",
        setup: |s| {
            south_managed_in_salesforce(s);
            s.salesforce.group_members.push(member(1, user_id(1)));
            s.salesforce.users[0].modified_at = Some(now() - Duration::minutes(20));
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: &[
            (C::AssignmentPendingSync, Some(1)),
            (C::NoBlockerFound, Some(0)),
        ],
    },
    Case {
        name: "assigned and changed 61 minutes ago: no longer pending",
        setup: |s| {
            south_managed_in_salesforce(s);
            s.salesforce.group_members.push(member(1, user_id(1)));
            s.salesforce.users[0].modified_at = Some(now() - Duration::minutes(61));
        },
        query: "jane@acme.com",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "recently assigned with an AE user already created is mapped, not pending",
        setup: |s| {
            south_managed_in_salesforce(s);
            s.salesforce.group_members.push(member(1, user_id(1)));
            s.salesforce.users[0].modified_at = Some(now() - Duration::minutes(5));
            s.business_units[1]
                .users
                .push(ae(30, "jane@acme.com", Some(user_id(1)), false));
        },
        query: "jane@acme.com for 30",
        verdict: Verdict::Clear,
        findings: &[(C::AlreadyMappedToTarget, Some(1))],
    },
    Case {
        name: "every blocker at once, blockers before warnings before information",
        setup: |s| {
            s.salesforce.users[0].email = "jane.personal@acme.com".into();
            s.business_units[0].user_sync = true;
            s.business_units[0]
                .users
                .push(ae(3, "jane.personal@acme.com", None, false));
            s.business_units[0]
                .users
                .push(ae(4, "jane@acme.com", None, false));
            s.business_units[0]
                .users
                .push(ae(5, "holder@acme.com", Some(user_id(1)), false));
            s.business_units[0]
                .users
                .push(ae(6, "gone@acme.com", Some(user_id(1)), true));
            south_managed_in_salesforce(s);
        },
        query: "jane@acme.com",
        verdict: Verdict::Blocked,
        findings: &[
            (C::MappedToActiveUser, Some(0)),
            (C::MappedToDeletedUser, Some(0)),
            (C::ReservedByEmail, Some(0)),
            (C::ProfileNotMappedToRole, Some(0)),
            (C::NotAssignedToBusinessUnit, Some(1)),
            (C::SyncSkippedEmailConflict, Some(0)),
        ],
    },
    Case {
        name: "an 18-character id in lower case finds the user",
        setup: nothing,
        query: "005aa0000000001iaa",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "a name that matches several users is ambiguous",
        setup: |s| {
            s.salesforce.users[0].name = "Jane Doe".into();
            let mut other = sf_user(2, "jane.roe@acme.com");
            other.name = "Jane Roe".into();
            s.salesforce.users.push(other);
        },
        query: "jane",
        verdict: Verdict::Ambiguous,
        findings: &[],
    },
    Case {
        name: "an exact full name wins over partial matches",
        setup: |s| {
            s.salesforce.users[0].name = "Jane Doe".into();
            let mut other = sf_user(2, "jane.doe2@acme.com");
            other.name = "Jane Doe-Smith".into();
            s.salesforce.users.push(other);
        },
        query: "jane doe",
        verdict: Verdict::Clear,
        findings: CLEAR_IN_BOTH,
    },
    Case {
        name: "an email shared by two users is ambiguous",
        setup: |s| {
            let mut other = sf_user(2, "jane@acme.com.uat");
            other.email = "shared@acme.com".into();
            s.salesforce.users[0].email = "shared@acme.com".into();
            s.salesforce.users.push(other);
        },
        query: "shared@acme.com",
        verdict: Verdict::Ambiguous,
        findings: &[],
    },
];

#[test]
fn every_case_gives_its_verdict_and_exactly_its_findings_in_order() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut snapshot = base();
        (case.setup)(&mut snapshot);
        let d = run(snapshot, case.query);
        let got = codes(&d);
        if d.verdict != case.verdict || got != case.findings {
            failures.push(format!(
                "{}:\n  want {:?} {:?}\n  got  {:?} {:?}",
                case.name, case.verdict, case.findings, d.verdict, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_finding_code_is_covered_by_a_case() {
    for code in C::ALL {
        assert!(
            CASES
                .iter()
                .any(|c| c.findings.iter().any(|(f, _)| *f == code)),
            "no case shows {code:?}"
        );
    }
}

#[test]
fn findings_carry_severity_evidence_steps_and_links() {
    let mut s = base();
    s.business_units[0]
        .users
        .push(ae(8, "old@acme.com", Some(user_id(1)), true));
    let d = run(s, "jane@acme.com");
    let f = &d.findings[0];
    assert_eq!(f.code, C::MappedToDeletedUser);
    assert_eq!(f.severity, Severity::Blocker);
    assert_eq!(f.business_unit_id, Some(SfId::parse(BU1).unwrap()));
    assert!(
        f.detail.contains("old@acme.com") && f.detail.contains("AE user 8"),
        "{}",
        f.detail
    );
    assert_eq!(f.steps.len(), 5);
    assert!(f.steps[0].contains("Admin > Recycle Bin > Users"));
    let actions: Vec<&str> = f.links.iter().map(|l| l.action_id.as_str()).collect();
    assert_eq!(actions, ["open_recycle_bin", "open_ae_user"]);
    assert_eq!(f.links[1].url, "https://pi.pardot.com/user/read/id/8");
    let ae = f.ae_user.as_ref().unwrap();
    assert_eq!((ae.id, ae.is_deleted), (8, true));
}

#[test]
fn link_templates_of_a_business_unit_override_the_defaults() {
    let mut s = base();
    s.business_units[0].ae_url = "https://pi.demo.pardot.com/".into();
    s.business_units[0].links.ae_user =
        Some("{ae_url}/users/{ae_user_id}?bu={business_unit_id}".into());
    s.business_units[0]
        .users
        .push(ae(7, "j@acme.com", Some(user_id(1)), false));
    let d = run(s, "jane@acme.com");
    assert_eq!(
        d.findings[0].links[0].url,
        "https://pi.demo.pardot.com/users/7?bu=0UvAa0000000001KAA"
    );
    assert_eq!(
        d.findings[0].links[1].url,
        "https://pi.demo.pardot.com/user"
    );
}

#[test]
fn salesforce_setup_links_use_the_lightning_host() {
    let mut s = base();
    s.salesforce.users[0].is_active = false;
    let d = run(s, "jane@acme.com");
    assert_eq!(
        d.findings[0].links[0].url,
        "https://acme.lightning.force.com/lightning/setup/ManageUsers/page?address=%2F005Aa0000000001IAA%3Fnoredirect%3D1"
    );
}

#[test]
fn not_assigned_names_the_assignment_and_the_users_groups() {
    let mut s = base();
    south_managed_in_salesforce(&mut s);
    s.salesforce.groups.push(group(5, "Other Team"));
    s.salesforce.group_members.push(member(5, user_id(1)));
    let d = run(s, "jane@acme.com");
    let f = &d.findings[0];
    assert_eq!(f.code, C::NotAssignedToBusinessUnit);
    assert!(
        f.detail
            .contains("Assigned: Marketing section (public groups South Team)."),
        "{}",
        f.detail
    );
    assert!(
        f.detail
            .contains("The user is in the public groups Other Team; role: none."),
        "{}",
        f.detail
    );
    assert!(f.steps[0].contains(
        "Setup > Account Engagement Account Setup > Manage Users > Edit User Assignment"
    ));
}

#[test]
fn pending_assignment_names_the_path_and_the_wait() {
    let mut s = base();
    south_managed_in_salesforce(&mut s);
    s.salesforce.groups.push(group(2, "Inner"));
    add_members(&mut s, &[(1, group_id(2)), (2, user_id(1))]);
    s.salesforce.users[0].modified_at = Some(now() - Duration::minutes(20));
    let d = run(s, "jane@acme.com");
    let f = &d.findings[0];
    assert_eq!(f.code, C::AssignmentPendingSync);
    assert!(
        f.detail
            .contains("as a Marketing user through the public group Inner, nested in South Team"),
        "{}",
        f.detail
    );
    assert_eq!(f.steps[0], "Wait, then re-check in 40 minutes.");
}

#[test]
fn the_evidence_names_the_section_and_the_nested_group_path() {
    let mut s = base();
    south_sales_section_by_nested_group(&mut s);
    s.salesforce.users[0].modified_at = Some(now() - Duration::minutes(20));
    let d = run(s, "jane@acme.com");
    let f = &d.findings[0];
    assert_eq!(f.code, C::AssignmentPendingSync);
    assert_eq!(
        f.detail,
        "jane@acme.com is assigned to South as a Sales user through the public group EMEA Sales, nested in All Sales, and the user changed 20 minutes ago. Account Engagement creates the user 10 to 15 minutes after assignment, sometimes up to an hour."
    );
}

#[test]
fn a_marketing_section_profile_finding_names_the_section_and_offers_the_sales_section() {
    let mut s = base();
    south_with_role_tree(&mut s);
    s.business_units[1]
        .assignment
        .marketing
        .roles_and_subordinates = vec![RecordRef::Id(role_id(1))];
    let d = run(s, "jane@acme.com");
    let f = &d.findings[0];
    assert_eq!(f.code, C::ProfileNotMappedToRole);
    assert!(
        f.detail.contains(
            "It is assigned as a Marketing user through the role and subordinates VP (their role Rep is below it), so its AE role comes from the profile map."
        ),
        "{}",
        f.detail
    );
    assert!(
        f.steps
            .last()
            .is_some_and(|step| step.contains("Sales users section")),
        "{:?}",
        f.steps
    );
}

#[test]
fn an_external_user_is_named_with_its_type_and_licence_and_pointed_at_its_internal_user() {
    let mut s = base();
    let mut community = sf_user(2, "jane@acme.com.community");
    community.email = "Jane@Acme.com".into();
    community.user_type = Some("PowerCustomerSuccess".into());
    community.user_license = Some("Customer Community Plus".into());
    s.salesforce.users.push(community);
    let d = run(s.clone(), "jane@acme.com.community");
    assert_eq!(d.verdict, Verdict::Blocked);
    let f = &d.findings[0];
    assert_eq!(f.code, C::UnsupportedUserType);
    assert_eq!(f.severity, Severity::Blocker);
    assert!(
        f.detail.contains(
            "has user type PowerCustomerSuccess and licence Customer Community Plus. Account Engagement maps only internal users"
        ),
        "{}",
        f.detail
    );
    assert!(
        f.detail.contains(
            "The same person has an internal user with the email Jane@Acme.com: jane@acme.com."
        ),
        "{}",
        f.detail
    );
    assert_eq!(
        f.steps,
        [
            "Map the internal user jane@acme.com instead: check jane@acme.com to see whether it can be picked."
        ]
    );
    assert_eq!(f.links.len(), 1);
    assert!(f.links[0].url.contains("005Aa0000000001"), "{:?}", f.links);

    // Without an internal user of the same email, the fix says to find or create one.
    s.salesforce.users[0].email = "someone.else@acme.com".into();
    s.salesforce.users[0].username = "someone.else@acme.com".into();
    let d = run(s, "jane@acme.com.community");
    assert_eq!(d.findings[0].steps.len(), 2);
    assert!(d.findings[0].steps[1].contains("Identity licences"));
}

#[test]
fn the_flat_assignment_form_means_the_marketing_section() {
    let flat: Assignment =
        serde_json::from_str(r#"{"public_groups": ["00GAa0000000001"]}"#).unwrap();
    assert_eq!(flat.marketing.public_groups, [RecordRef::Id(group_id(1))]);
    assert!(flat.sales.is_empty());
    let both: Assignment = serde_json::from_str(
        r#"{"marketing": {"users": ["jane@acme.com"]}, "sales": {"roles": ["Rep"]}}"#,
    )
    .unwrap();
    assert_eq!(
        both.marketing.users,
        [RecordRef::Name("jane@acme.com".into())]
    );
    assert_eq!(both.sales.roles, [RecordRef::Name("Rep".into())]);
    let twice = serde_json::from_str::<Assignment>(
        r#"{"users": ["a@acme.com"], "marketing": {"users": ["b@acme.com"]}}"#,
    )
    .unwrap_err();
    assert!(
        twice
            .to_string()
            .contains("the Marketing section is written twice"),
        "{twice}"
    );
}

#[test]
fn not_found_offers_close_usernames_and_sandbox_variants() {
    let mut s = base();
    s.salesforce.users.push(sf_user(2, "jane@acme.com.uat"));
    s.salesforce.users.push(sf_user(3, "bob@acme.com"));
    let d = run(s.clone(), "jnae@acme.com");
    let names: Vec<&str> = d.candidates.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(names, ["jane@acme.com"]);

    // Production username typed in a sandbox, and the reverse.
    s.salesforce.users.remove(0);
    let d = run(s.clone(), "jane@acme.com");
    let names: Vec<&str> = d.candidates.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(names, ["jane@acme.com.uat"]);
    let mut prod = base();
    prod.salesforce.users.push(sf_user(3, "bob@acme.com"));
    let d = run(prod, "jane@acme.com.qa");
    let names: Vec<&str> = d.candidates.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(names, ["jane@acme.com"]);
}

#[test]
fn ambiguous_lists_candidates_sorted_by_name() {
    let mut s = base();
    s.salesforce.users[0].name = "Jane Doe".into();
    let mut other = sf_user(2, "j.abbot@acme.com");
    other.name = "Jane Abbot".into();
    s.salesforce.users.push(other);
    let d = run(s, "Jane");
    let names: Vec<&str> = d.candidates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Jane Abbot", "Jane Doe"]);
    assert_eq!(d.candidates_total, 2);
    assert_eq!(d.salesforce_user, None);
}

#[test]
fn an_unknown_target_is_an_error_that_says_what_to_check() {
    let org = Org::new(base());
    let err = diagnose(&Query::parse("jane@acme.com for 404").unwrap(), &org, now()).unwrap_err();
    assert_eq!(err, TargetError::NotFound("404".into()));
}

#[test]
fn a_target_email_in_two_business_units_is_ambiguous() {
    let mut s = base();
    s.business_units[0]
        .users
        .push(ae(1, "dup@acme.com", None, false));
    s.business_units[1]
        .users
        .push(ae(2, "dup@acme.com", None, false));
    let org = Org::new(s);
    let err = diagnose(
        &Query::parse("jane@acme.com for dup@acme.com").unwrap(),
        &org,
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        TargetError::Ambiguous("dup@acme.com".into(), "1 in North, 2 in South".into(), 1)
    );
}

#[test]
fn an_active_target_wins_over_a_deleted_one_with_the_same_email() {
    let mut s = base();
    s.business_units[0]
        .users
        .push(ae(1, "dup@acme.com", None, true));
    s.business_units[1]
        .users
        .push(ae(2, "dup@acme.com", None, false));
    let d = run(s, "jane@acme.com for dup@acme.com");
    assert_eq!(d.target.unwrap().ae_user_id, 2);
}

#[test]
fn hostile_strings_in_every_field_are_carried_verbatim_into_the_diagnosis() {
    let hostile = "<!channel> <@U1> <http://evil|click> &amp; *bold* \u{202E}rtl\u{200B} `x`";
    let mut s = base();
    let user = &mut s.salesforce.users[0];
    user.name = hostile.into();
    user.profile_name = Some(hostile.into());
    user.email = format!("{hostile}@x");
    s.business_units[0].name = hostile.into();
    s.business_units[0].user_sync = true;
    let mut holder = ae(7, hostile, Some(user_id(1)), false);
    holder.first_name = hostile.into();
    s.business_units[0].users.push(holder);
    let d = run(s, "jane@acme.com");
    assert_eq!(d.verdict, Verdict::Blocked);
    // The diagnosis is data: escaping happens in the renderers (see render tests).
    assert!(d.findings.iter().any(|f| f.detail.contains(hostile)));
}

#[test]
fn an_answer_depends_on_the_clock_only_while_a_users_change_is_under_an_hour_old() {
    let at = |minutes_ago: Option<i64>| {
        let mut s = base();
        s.salesforce.users[0].modified_at = minutes_ago.map(|m| now() - Duration::minutes(m));
        depends_on_time(&Org::new(s), now())
    };
    assert!(at(Some(0)), "changed now");
    assert!(at(Some(59)), "changed 59 minutes ago: the pending window");
    assert!(
        at(Some(-5)),
        "dated ahead of the clock: it enters the window later"
    );
    assert!(
        !at(Some(60)),
        "an hour old: the answer can no longer change with time"
    );
    assert!(!at(Some(60 * 24 * 30)), "a month old");
    // Whatever the others, one recent change in the small org is enough.
    let mut s = base();
    for user in &mut s.salesforce.users {
        user.modified_at = Some(now() - Duration::days(30));
    }
    assert!(!depends_on_time(&Org::new(s.clone()), now()));
    if let Some(last) = s.salesforce.users.last_mut() {
        last.modified_at = Some(now() - Duration::minutes(1));
    }
    assert!(depends_on_time(&Org::new(s), now()));
}
