//! A synthetic org of any size, deterministic for a seed: for benchmarks, load tests and fakes.
//! Every cause of the diagnosis occurs in it: inactive users, mappings to active and deleted AE
//! users, email reservations and sync conflicts, unmapped profiles, business units managed in
//! Salesforce with nested groups and a role tree, recent assignments. [`Variety`] adds external
//! users (community, portal, guest, Chatter) and a Sales section to the assignments.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::domain::{
    AeUser, Assignment, AssignmentSection, BusinessUnit, GroupMember, LinkTemplates, OrgSnapshot,
    PublicGroup, RecordRef, Role, SalesforceOrg, SfId, SfUser, UserManagement,
};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub sf_users: usize,
    pub ae_users: usize,
    pub business_units: usize,
    pub seed: u64,
}

/// What real orgs add to the basic synthetic org. The default adds nothing, so that an org
/// generated with it is the same as before these options existed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Variety {
    /// Share of Salesforce users (0 to 100) that are external: community, portal, guest or
    /// Chatter users, which Account Engagement cannot map.
    pub external_percent: u8,
    /// Business units managed in Salesforce assign a Sales section too (a public group and a
    /// role with its subordinates), besides the Marketing section.
    pub sales_section: bool,
    /// `GroupMember` rows in all (0: the basic org's groups, as before). When set, the groups
    /// are those of a large org instead: each business unit managed in Salesforce assigns
    /// public groups nested five levels deep (users, groups and role groups as members, about
    /// 2% of the rows in all), and the other rows sit in queues and unassigned public groups
    /// that no assignment reaches. See [`bench_groups`].
    pub group_members: usize,
}

/// (user type, licence, profile) of the external users.
const EXTERNAL: [(&str, &str, &str); 5] = [
    (
        "PowerPartner",
        "Partner Community",
        "Partner Community User",
    ),
    (
        "PowerCustomerSuccess",
        "Customer Community Plus",
        "Customer Community Plus User",
    ),
    (
        "CspLitePortal",
        "Customer Community",
        "Customer Community User",
    ),
    ("Guest", "Guest User License", "Site Guest User"),
    ("CsnOnly", "Chatter Free", "Chatter Free User"),
];

/// splitmix64: small, fast and good enough to spread test data.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const FIRST: [&str; 16] = [
    "Jane", "John", "Maria", "Ahmed", "Wei", "Olga", "Pedro", "Aiko", "Liam", "Noor", "Sam", "Eva",
    "Ravi", "Chloe", "Tomas", "Zara",
];
const LAST: [&str; 16] = [
    "Doe", "Smith", "Garcia", "Khan", "Chen", "Ivanova", "Silva", "Tanaka", "Murphy", "Haddad",
    "Lee", "Novak", "Patel", "Martin", "Berg", "Okafor",
];
const PROFILES: [&str; 5] = [
    "Standard User",
    "Marketing User",
    "System Administrator",
    "Sales Manager",
    "Contract Manager",
];

/// Ids are `<prefix><kind letter><number>`, 15 characters, made unique per kind.
fn make_id(prefix: &str, n: usize) -> SfId {
    let text = format!("{prefix}Sy{n:010}");
    SfId::parse(&text).unwrap_or_else(|_| unreachable!("generated ids are 15 alphanumerics"))
}

pub fn user_id(n: usize) -> SfId {
    make_id("005", n)
}

pub fn username(n: usize) -> String {
    format!("user{n}@synthetic.example.com")
}

pub fn generate(params: Params) -> OrgSnapshot {
    generate_with(params, Variety::default())
}

pub fn generate_with(params: Params, variety: Variety) -> OrgSnapshot {
    let mut rng = Rng(params.seed);
    let fetched_at: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 15, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let n = params.sf_users.max(1);
    let bus = params.business_units.max(1);

    // Role tree: a CEO, one VP per business unit, managers under VPs, reps under managers.
    let mut roles = vec![Role {
        id: make_id("00E", 0),
        name: "CEO".into(),
        parent_role_id: None,
    }];
    for b in 0..bus {
        roles.push(Role {
            id: make_id("00E", 1 + b),
            name: format!("VP Region {b}"),
            parent_role_id: Some(make_id("00E", 0)),
        });
    }
    let managers = (n / 200).max(bus);
    for m in 0..managers {
        roles.push(Role {
            id: make_id("00E", 1 + bus + m),
            name: format!("Manager {m}"),
            parent_role_id: Some(make_id("00E", 1 + m % bus)),
        });
    }
    let reps = (n / 50).max(managers);
    let rep_base = 1 + bus + managers;
    for r in 0..reps {
        roles.push(Role {
            id: make_id("00E", rep_base + r),
            name: format!("Rep {r}"),
            parent_role_id: Some(make_id("00E", 1 + bus + r % managers)),
        });
    }

    // Public groups nested four wide; the last two hold each other (a cycle).
    let group_count = (n / 100).max(4);
    let (mut groups, mut group_members) = if variety.group_members > 0 {
        (Vec::new(), Vec::new())
    } else {
        basic_groups(group_count)
    };
    let users: Vec<SfUser> = (0..n)
        .map(|i| {
            let profile = rng.below(PROFILES.len());
            let username = username(i);
            // Every 25th user has a personal email unlike the username.
            let email = if i % 25 == 7 {
                format!("u{i}.personal@synthetic.example.com")
            } else {
                username.clone()
            };
            let modified = if rng.chance(1) {
                fetched_at - Duration::minutes(rng.below(50) as i64 + 5)
            } else {
                fetched_at - Duration::days(rng.below(700) as i64 + 1)
            };
            // Only drawn when asked for, so that the default org stays as it was.
            let external = (variety.external_percent > 0
                && rng.chance(u64::from(variety.external_percent.min(100))))
            .then(|| EXTERNAL[i % EXTERNAL.len()]);
            if let Some((user_type, licence, profile)) = external {
                return SfUser {
                    id: user_id(i),
                    username,
                    email,
                    name: format!("External {i}"),
                    is_active: true,
                    profile_id: Some(make_id("00e", PROFILES.len() + i % EXTERNAL.len())),
                    profile_name: Some(profile.into()),
                    user_license: Some(licence.into()),
                    role_id: None,
                    user_type: Some(user_type.into()),
                    modified_at: Some(modified),
                };
            }
            SfUser {
                id: user_id(i),
                username,
                email,
                name: format!(
                    "{} {} {i}",
                    FIRST[rng.below(FIRST.len())],
                    LAST[rng.below(LAST.len())]
                ),
                is_active: !rng.chance(2),
                profile_id: Some(make_id("00e", profile)),
                profile_name: Some(PROFILES[profile].into()),
                user_license: Some("Salesforce".into()),
                role_id: rng
                    .chance(90)
                    .then(|| make_id("00E", rep_base + rng.below(reps))),
                user_type: Some("Standard".into()),
                modified_at: Some(modified),
            }
        })
        .collect();
    let bench = (variety.group_members > 0).then(|| {
        let sf_managed: Vec<usize> = (0..bus).filter(|b| b % 2 == 1).collect();
        let trees = if variety.sales_section { 2 } else { 1 };
        bench_groups(
            &sf_managed,
            trees,
            n,
            managers,
            bus,
            variety.group_members,
            &mut groups,
            &mut group_members,
        )
    });
    if bench.is_none() {
        for (i, user) in users.iter().enumerate() {
            if i % 3 == 0 {
                group_members.push(GroupMember {
                    group_id: make_id("00G", rng.below(group_count)),
                    member_id: user.id,
                });
            }
        }
    }

    // Business units alternate: user sync in AE, then user management in Salesforce.
    let per_bu = params.ae_users / bus;
    let mut next_ae_id = 1u64;
    let business_units = (0..bus)
        .map(|b| {
            let managed_in_salesforce = b % 2 == 1;
            let mut profile_roles = BTreeMap::new();
            for p in PROFILES.iter().take(4) {
                profile_roles.insert((*p).to_owned(), "Sales".to_owned());
            }
            let assignment = if managed_in_salesforce {
                let marketing = AssignmentSection {
                    users: vec![RecordRef::Id(user_id(0))],
                    public_groups: vec![RecordRef::Id(match &bench {
                        Some(bench) => bench.root(b, 0),
                        None => make_id("00G", 1),
                    })],
                    roles: Vec::new(),
                    roles_and_subordinates: vec![RecordRef::Id(make_id("00E", 1 + b))],
                };
                let sales = if variety.sales_section {
                    AssignmentSection {
                        public_groups: vec![RecordRef::Id(match &bench {
                            Some(bench) => bench.root(b, 1),
                            None => make_id("00G", 2),
                        })],
                        roles_and_subordinates: vec![RecordRef::Id(make_id(
                            "00E",
                            1 + (b + 1) % bus,
                        ))],
                        ..AssignmentSection::default()
                    }
                } else {
                    AssignmentSection::default()
                };
                Assignment { marketing, sales }
            } else {
                Assignment::default()
            };
            let mut ae_users = Vec::with_capacity(per_bu);
            for _ in 0..per_bu {
                let sf = rng.below(n);
                let kind = rng.below(100);
                let id = next_ae_id;
                next_ae_id += 1;
                let (email, salesforce_id, is_deleted) = match kind {
                    // Unmapped, email equal to a Salesforce username: a reservation.
                    0..=2 => (username(sf), None, false),
                    // Unmapped, email equal to a user's personal email: a sync conflict.
                    3..=4 => {
                        let personal = (sf / 25 * 25 + 7).min(n - 1);
                        (users[personal].email.clone(), None, false)
                    }
                    // In the recycle bin, still mapped.
                    5..=9 => (
                        format!("ae{id}@synthetic.example.com"),
                        Some(users[sf].id),
                        true,
                    ),
                    // Mapped through a 15-character id (SfId keeps the 15 either way).
                    _ => (
                        format!("ae{id}@synthetic.example.com"),
                        Some(users[sf].id),
                        false,
                    ),
                };
                ae_users.push(AeUser {
                    id,
                    email,
                    username: format!("ae{id}"),
                    first_name: FIRST[rng.below(FIRST.len())].into(),
                    last_name: LAST[rng.below(LAST.len())].into(),
                    role_name: Some("Sales".into()),
                    salesforce_id,
                    is_deleted,
                    created_at: Some(fetched_at - Duration::days(30)),
                    // The bench org's AE users were changed at times spread over the last
                    // two years, as a real org's are (an incremental read then finds few);
                    // the basic org keeps one time for all.
                    updated_at: Some(if variety.group_members > 0 {
                        fetched_at - Duration::minutes(((id * 7919) % 1_000_000) as i64 + 10)
                    } else {
                        fetched_at - Duration::days(3)
                    }),
                });
            }
            BusinessUnit {
                id: make_id("0Uv", b),
                name: format!("Business Unit {b}"),
                ae_url: "https://pi.pardot.com".into(),
                user_sync: !managed_in_salesforce || b % 4 == 3,
                user_management: if managed_in_salesforce {
                    UserManagement::Salesforce
                } else {
                    UserManagement::AccountEngagement
                },
                profile_roles,
                assignment,
                links: LinkTemplates::default(),
                users: ae_users,
            }
        })
        .collect();

    OrgSnapshot {
        fetched_at,
        salesforce: SalesforceOrg {
            org_id: Some(make_id("00D", 0)),
            instance_url: "https://synthetic.my.salesforce.com".into(),
            lightning_url: None,
            users,
            roles,
            groups,
            group_members,
        },
        business_units,
    }
}

/// The basic org's public groups: nested four wide, the last two holding each other (a cycle).
fn basic_groups(group_count: usize) -> (Vec<PublicGroup>, Vec<GroupMember>) {
    let groups: Vec<PublicGroup> = (0..group_count)
        .map(|g| PublicGroup {
            id: make_id("00G", g),
            name: format!("Group {g}"),
            developer_name: Some(format!("Group_{g}")),
            group_type: "Regular".into(),
            related_id: None,
        })
        .collect();
    let mut group_members: Vec<GroupMember> = (1..group_count)
        .map(|g| GroupMember {
            group_id: make_id("00G", (g - 1) / 4),
            member_id: make_id("00G", g),
        })
        .collect();
    group_members.push(GroupMember {
        group_id: make_id("00G", group_count - 1),
        member_id: make_id("00G", group_count - 2),
    });
    (groups, group_members)
}

/// Levels of an assigned group tree: the assigned group holds groups that hold groups ...
pub const BENCH_TREE_DEPTH: u32 = 5;
/// Child groups of each group in an assigned tree above the last level.
const BENCH_TREE_FANOUT: usize = 2;
/// Rows per group in the queues and unassigned groups.
const BENCH_FILLER_PER_GROUP: usize = 200;
/// Steps through the users so that the members of one group are distinct (a prime).
const MEMBER_STRIDE: usize = 1_000_003;

/// The assigned trees of the large org's groups.
pub struct BenchGroups {
    /// Business unit index, section (0 Marketing, 1 Sales) → the assigned group.
    roots: BTreeMap<(usize, usize), SfId>,
    /// `GroupMember` rows in the assigned trees (reachable from the assignments).
    pub reachable_rows: usize,
}

impl BenchGroups {
    fn root(&self, business_unit: usize, section: usize) -> SfId {
        self.roots
            .get(&(business_unit, section))
            .copied()
            .unwrap_or_else(|| make_id("00G", 0))
    }
}

/// The groups of a large org. Per business unit managed in Salesforce and per section, a tree
/// of public groups [`BENCH_TREE_DEPTH`] levels deep; the groups of its last level hold a role
/// group each; every group of the trees holds users, so that the trees hold about 2% of
/// `total_rows`. The other rows sit in queues and unassigned public groups of
/// [`BENCH_FILLER_PER_GROUP`] users each (internal and external alike), which no assignment
/// reaches. Group ids follow `00G` + `Sy` + a number: trees first, then role groups, then the
/// rest.
#[allow(clippy::too_many_arguments)]
fn bench_groups(
    sf_managed: &[usize],
    sections: usize,
    users: usize,
    managers: usize,
    business_units: usize,
    total_rows: usize,
    groups: &mut Vec<PublicGroup>,
    members: &mut Vec<GroupMember>,
) -> BenchGroups {
    let stride = if users % MEMBER_STRIDE == 0 {
        1
    } else {
        MEMBER_STRIDE
    };
    let per_tree: usize = (0..BENCH_TREE_DEPTH)
        .map(|level| BENCH_TREE_FANOUT.pow(level))
        .sum();
    let leaves = BENCH_TREE_FANOUT.pow(BENCH_TREE_DEPTH - 1);
    let trees = sf_managed.len() * sections;
    let tree_groups = trees * per_tree;
    let role_groups = (trees * leaves).min(managers);
    let structure_rows = trees * (per_tree - 1) + if role_groups > 0 { trees * leaves } else { 0 };
    let reachable_target = (total_rows / 50).max(structure_rows);
    let users_per_group = (reachable_target - structure_rows)
        .checked_div(tree_groups)
        .unwrap_or(0)
        .min(users);
    members.reserve(total_rows);

    let mut roots = BTreeMap::new();
    let mut next_group = 0;
    let mut next_user = 0usize;
    for (t, (b, section)) in sf_managed
        .iter()
        .flat_map(|b| (0..sections).map(move |s| (*b, s)))
        .enumerate()
    {
        let first = next_group;
        let section_name = if section == 0 { "Marketing" } else { "Sales" };
        for k in 0..per_tree {
            let id = make_id("00G", first + k);
            let level = (k + 1).ilog2() + 1;
            groups.push(PublicGroup {
                id,
                name: format!("BU {b} {section_name} L{level} #{k}"),
                developer_name: Some(format!("BU{b}_{section_name}_{k}")),
                group_type: "Regular".into(),
                related_id: None,
            });
            // Children of k in a heap layout: fanout * k + 1 ..= fanout * k + fanout.
            for c in 1..=BENCH_TREE_FANOUT {
                let child = BENCH_TREE_FANOUT * k + c;
                if child < per_tree {
                    members.push(GroupMember {
                        group_id: id,
                        member_id: make_id("00G", first + child),
                    });
                }
            }
            if k + leaves >= per_tree && role_groups > 0 {
                let leaf = k + leaves - per_tree;
                members.push(GroupMember {
                    group_id: id,
                    member_id: make_id("00G", tree_groups + (t * leaves + leaf) % role_groups),
                });
            }
            for j in 0..users_per_group {
                members.push(GroupMember {
                    group_id: id,
                    member_id: user_id((next_user + j * stride) % users),
                });
            }
            next_user += 7_919;
        }
        roots.insert((b, section), make_id("00G", first));
        next_group += per_tree;
    }
    // Groups standing for a manager's role (Salesforce keeps their members implicit).
    for r in 0..role_groups {
        let role = make_id("00E", 1 + business_units + r);
        groups.push(PublicGroup {
            id: make_id("00G", next_group + r),
            name: format!("Manager {r}"),
            developer_name: None,
            group_type: "Role".into(),
            related_id: Some(role),
        });
    }
    next_group += role_groups;
    let reachable_rows = members.len();

    // Queues and unassigned public groups hold the rest.
    let filler = total_rows.saturating_sub(reachable_rows);
    let per_group = BENCH_FILLER_PER_GROUP.min(users);
    for g in 0..filler.div_ceil(per_group) {
        let id = make_id("00G", next_group + g);
        let queue = g % 2 == 0;
        groups.push(PublicGroup {
            id,
            name: if queue {
                format!("Queue {g}")
            } else {
                format!("Unassigned {g}")
            },
            developer_name: Some(format!("Other_{g}")),
            group_type: if queue { "Queue" } else { "Regular" }.into(),
            related_id: None,
        });
        let rows = per_group.min(filler - g * per_group);
        let offset = g * 104_729;
        for j in 0..rows {
            members.push(GroupMember {
                group_id: id,
                member_id: user_id((offset + j * stride) % users),
            });
        }
    }
    BenchGroups {
        roots,
        reachable_rows,
    }
}
