//! The Salesforce and Account Engagement clients read only what the diagnosis needs: the
//! memberships of the groups the assignments reach, and, incrementally, what changed. An
//! incremental read merged into the previous org equals a fresh full read, after every kind of
//! change the fakes can make; and it stays within its API budget.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use crm_username::domain::{
    AeUser, Assignment, AssignmentSection, BusinessUnit, GroupMember, OrgSnapshot, PublicGroup,
    RecordRef, Role, SalesforceOrg, SfId, SfUser, UserManagement, reachable_in,
};
use crm_username::fakes::{
    FakeAccessToken, FakeAccountEngagement, FakeSalesforce, FakeSalesforceSettings,
    SalesforceEndpoint,
};
use crm_username::sources::org_read::canonical_members;
use crm_username::sources::{
    AccountEngagementClient, AccountEngagementConfig, RetryPolicy, SalesforceAuth,
    SalesforceClient, SalesforceConfig, high_water_ae, merge_ae_users,
};
use secrecy::SecretString;

fn id(prefix: &str, n: usize) -> SfId {
    SfId::parse(&format!("{prefix}Ck{n:010}")).expect("valid id")
}

fn gid(n: usize) -> SfId {
    id("00G", n)
}

fn uid(n: usize) -> SfId {
    id("005", n)
}

fn fetched_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

fn user(n: usize) -> SfUser {
    SfUser {
        id: uid(n),
        username: format!("user{n}@acme.com"),
        email: format!("user{n}@acme.com"),
        name: format!("User {n}"),
        is_active: true,
        profile_id: Some(id("00e", 1)),
        profile_name: Some("Standard User".to_owned()),
        user_license: Some("Salesforce".to_owned()),
        role_id: (n % 3 == 0).then(|| id("00E", 1)),
        user_type: Some("Standard".to_owned()),
        modified_at: Some(fetched_at() - chrono::Duration::days(n as i64 % 90 + 1)),
    }
}

fn external(n: usize) -> SfUser {
    SfUser {
        user_type: Some("PowerPartner".to_owned()),
        user_license: Some("Partner Community".to_owned()),
        ..user(n)
    }
}

fn group(n: usize, name: &str) -> PublicGroup {
    PublicGroup {
        id: gid(n),
        name: name.to_owned(),
        developer_name: Some(name.replace(' ', "_")),
        group_type: "Regular".to_owned(),
        related_id: None,
    }
}

fn member(group: usize, member: SfId) -> GroupMember {
    GroupMember {
        group_id: gid(group),
        member_id: member,
    }
}

fn business_unit(n: usize, management: UserManagement, assignment: Assignment) -> BusinessUnit {
    BusinessUnit {
        id: id("0Uv", n),
        name: format!("BU {n}"),
        ae_url: crm_username::domain::DEFAULT_AE_URL.to_owned(),
        user_sync: false,
        user_management: management,
        profile_roles: Default::default(),
        assignment,
        links: Default::default(),
        users: Vec::new(),
    }
}

fn section(groups: &[RecordRef]) -> AssignmentSection {
    AssignmentSection {
        public_groups: groups.to_vec(),
        ..AssignmentSection::default()
    }
}

fn ae_user(n: u64, salesforce_id: Option<SfId>) -> AeUser {
    AeUser {
        id: n,
        email: format!("ae{n}@acme.com"),
        username: format!("ae{n}@acme.com"),
        first_name: "AE".to_owned(),
        last_name: format!("{n}"),
        role_name: Some("Sales".to_owned()),
        salesforce_id,
        is_deleted: false,
        created_at: Some(fetched_at() - chrono::Duration::days(200)),
        updated_at: Some(fetched_at() - chrono::Duration::days(n as i64 % 100 + 1)),
    }
}

/// A small org with every shape the reads must handle:
/// - groups 1 > 2 > 3 > 4 > 5 > 6 > 1 (five levels below the root "Root A", and a cycle back),
///   assigned by name in BU 1's Marketing section; group 7 "Root B", assigned by id in its Sales
///   section, holding the role group 11;
/// - groups 8 "Unassigned One" (named only by BU 2, managed in Account Engagement), 9 > 10:
///   reachable from nothing; their rows are not read;
/// - each group holds three users; users 41 to 45 are external.
fn small_org() -> OrgSnapshot {
    let mut users: Vec<SfUser> = (1..=40).map(user).collect();
    users.extend((41..=45).map(external));
    let names = [
        "Root A",
        "Level One",
        "Level Two",
        "Level Three",
        "Level Four",
        "Level Five",
        "Root B",
        "Unassigned One",
        "Unassigned Two",
        "Unassigned Three",
    ];
    let mut groups: Vec<PublicGroup> = names
        .iter()
        .enumerate()
        .map(|(i, name)| group(i + 1, name))
        .collect();
    groups.push(PublicGroup {
        id: gid(11),
        name: String::new(),
        developer_name: None,
        group_type: "Role".to_owned(),
        related_id: Some(id("00E", 1)),
    });
    let mut members = Vec::new();
    for g in 1..=6 {
        members.push(member(g, gid(g % 6 + 1)));
    }
    members.push(member(7, gid(11)));
    members.push(member(9, gid(10)));
    for g in 1..=10 {
        for k in 0..3 {
            members.push(member(g, uid(g * 3 + k)));
        }
    }
    members.push(member(8, uid(42)));
    let bu1 = business_unit(
        1,
        UserManagement::Salesforce,
        Assignment {
            marketing: section(&[RecordRef::parse("root a")]),
            sales: section(&[RecordRef::Id(gid(7))]),
        },
    );
    let bu2 = business_unit(
        2,
        UserManagement::AccountEngagement,
        Assignment {
            marketing: section(&[RecordRef::parse("Unassigned One")]),
            sales: AssignmentSection::default(),
        },
    );
    let mut business_units = vec![bu1, bu2];
    business_units[0].users = (1..=5).map(|n| ae_user(n, Some(uid(n as usize)))).collect();
    business_units[1].users = (1..=3).map(|n| ae_user(n, None)).collect();
    OrgSnapshot {
        fetched_at: fetched_at(),
        salesforce: SalesforceOrg {
            org_id: Some(id("00D", 1)),
            instance_url: "https://acme.my.salesforce.com".to_owned(),
            lightning_url: None,
            users,
            roles: vec![
                Role {
                    id: id("00E", 1),
                    name: "Sales Rep".to_owned(),
                    parent_role_id: Some(id("00E", 2)),
                },
                Role {
                    id: id("00E", 2),
                    name: "VP Sales".to_owned(),
                    parent_role_id: None,
                },
            ],
            groups,
            group_members: members,
        },
        business_units,
    }
}

async fn start(org: &OrgSnapshot) -> (FakeSalesforce, FakeAccountEngagement) {
    let salesforce = FakeSalesforce::start(org, FakeSalesforceSettings::default())
        .await
        .expect("fake Salesforce starts");
    let ae = FakeAccountEngagement::start(org)
        .await
        .expect("fake AE starts");
    (salesforce, ae)
}

fn salesforce(fake: &FakeSalesforce) -> SalesforceClient {
    let mut config = SalesforceConfig::new(
        fake.url(),
        fake.settings().client_id.clone(),
        SalesforceAuth::ClientCredentials {
            secret: SecretString::from(fake.settings().client_secret.clone()),
        },
    );
    config.retry = RetryPolicy::quick();
    config.timeout = Duration::from_secs(20);
    SalesforceClient::new(config).expect("client builds")
}

fn account_engagement() -> AccountEngagementClient {
    let config = AccountEngagementConfig {
        timeout: Duration::from_secs(10),
        retry: RetryPolicy::quick(),
        ..AccountEngagementConfig::default()
    };
    AccountEngagementClient::new(config, Arc::new(FakeAccessToken::default()))
        .expect("client builds")
}

/// Users, roles and groups by id, memberships by group then member: two reads of the same
/// data compare equal whatever order their records came in.
fn canonical(org: &SalesforceOrg) -> SalesforceOrg {
    let mut org = org.clone();
    org.users.sort_by_key(|u| u.id);
    org.roles.sort_by_key(|r| r.id);
    org.groups.sort_by_key(|g| g.id);
    canonical_members(&mut org.group_members);
    org
}

/// The memberships a full read should return: those of the groups reachable in `org`.
fn reachable_rows(org: &SalesforceOrg, business_units: &[BusinessUnit]) -> Vec<GroupMember> {
    let reachable = reachable_in(&org.groups, &org.group_members, business_units);
    let mut rows: Vec<GroupMember> = org
        .group_members
        .iter()
        .filter(|m| reachable.contains(&m.group_id))
        .cloned()
        .collect();
    canonical_members(&mut rows);
    rows
}

fn groups_with_rows(org: &SalesforceOrg) -> Vec<usize> {
    let mut groups: Vec<usize> = (1..=11)
        .filter(|&g| org.group_members.iter().any(|m| m.group_id == gid(g)))
        .collect();
    groups.dedup();
    groups
}

#[tokio::test]
async fn a_full_read_returns_only_the_memberships_of_groups_the_assignments_reach() {
    let org = small_org();
    let (fake, _ae) = start(&org).await;
    let client = salesforce(&fake);

    let read = client
        .fetch_org(&org.business_units)
        .await
        .expect("org is read");

    // Root A and the five levels below it (the cycle back to it ends), Root B and its role
    // group; not the unassigned groups, nor the one only an AE-managed business unit names.
    assert_eq!(groups_with_rows(&read.org), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        read.org.group_members,
        reachable_rows(&fake.org(), &org.business_units)
    );
    assert_eq!(read.org.group_members.len(), 6 + 1 + 7 * 3);
    assert_eq!(read.org.users.len(), 40, "internal users only");
    assert_eq!(read.org.groups.len(), 11);
    // Organization, User, UserRole, Group, then one GroupMember request per level: the two
    // roots, 2 and 11, 3, 4, 5, 6 (whose member 1 was read already).
    assert_eq!(read.calls, 4 + 6);
    assert_eq!(fake.requests(SalesforceEndpoint::Query), read.calls);
    assert_eq!(client.calls(), read.calls);
    println!(
        "full read of the small org: {} Salesforce calls",
        read.calls
    );
}

#[tokio::test]
async fn business_units_managed_in_account_engagement_read_no_membership() {
    let mut org = small_org();
    org.business_units.remove(0);
    let (fake, _ae) = start(&org).await;

    let read = salesforce(&fake)
        .fetch_org(&org.business_units)
        .await
        .expect("org is read");

    assert!(read.org.group_members.is_empty());
    // Organization, User, UserRole, Group.
    assert_eq!(read.calls, 4);
}

/// The clients and fakes of one test, and the business units they read.
struct Reader<'a> {
    client: &'a SalesforceClient,
    ae: &'a AccountEngagementClient,
    ae_fake: &'a FakeAccountEngagement,
    business_units: &'a [BusinessUnit],
}

/// What one incremental round gave.
struct Round {
    org: SalesforceOrg,
    ae_users: Vec<Vec<AeUser>>,
    high_water: Option<DateTime<Utc>>,
    calls: u64,
}

impl Reader<'_> {
    /// Reads the changes since `since` (and `ae_since`, per business unit), with an overlap
    /// of a second, and checks that merged into `base` they equal a fresh full read, for
    /// Salesforce and for every business unit's AE users.
    async fn round(
        &self,
        label: &str,
        base: &(SalesforceOrg, Vec<Vec<AeUser>>),
        since: DateTime<Utc>,
        ae_since: &[DateTime<Utc>],
    ) -> Round {
        let overlap = chrono::Duration::seconds(1);
        let changes = self
            .client
            .fetch_changes(&base.0, self.business_units, since - overlap)
            .await
            .unwrap_or_else(|e| panic!("{label}: changes read: {e}"));
        let fresh = self
            .client
            .fetch_org(self.business_units)
            .await
            .unwrap_or_else(|e| panic!("{label}: full read: {e}"));
        assert_eq!(
            canonical(&changes.org),
            canonical(&fresh.org),
            "{label}: merged changes equal a full read"
        );
        assert!(
            changes.high_water.is_none_or(|h| h >= since - overlap),
            "{label}: the high water does not go back"
        );
        let mut ae_users = Vec::new();
        let mut ae_calls = 0;
        for ((bu, base_users), since) in self.business_units.iter().zip(&base.1).zip(ae_since) {
            let before = self.ae.calls();
            let changed = self
                .ae
                .fetch_users_changed(bu.id, self.ae_fake.url(), *since - overlap)
                .await
                .unwrap_or_else(|e| panic!("{label}: AE changes: {e}"))
                .expect("the filter is accepted");
            ae_calls += self.ae.calls() - before;
            let merged = merge_ae_users(base_users, changed);
            let full = self
                .ae
                .fetch_users(bu.id, self.ae_fake.url())
                .await
                .expect("AE users read");
            assert_eq!(merged, full, "{label}: AE users of {}", bu.id);
            ae_users.push(merged);
        }
        println!(
            "{label}: incremental read: {} Salesforce calls, {ae_calls} AE calls",
            changes.calls
        );
        Round {
            org: changes.org,
            ae_users,
            high_water: changes.high_water,
            calls: changes.calls + ae_calls,
        }
    }
}

#[tokio::test]
async fn incremental_reads_merged_equal_a_fresh_full_read_after_every_kind_of_change() {
    let org = small_org();
    let (fake, ae_fake) = start(&org).await;
    let client = salesforce(&fake);
    let ae = account_engagement();
    let bus = &org.business_units;

    let reader = Reader {
        client: &client,
        ae: &ae,
        ae_fake: &ae_fake,
        business_units: bus,
    };
    let first = client.fetch_org(bus).await.expect("first read");
    let mut since = first.high_water.expect("records carry stamps");
    let mut ae_base = Vec::new();
    for bu in bus {
        ae_base.push(ae.fetch_users(bu.id, ae_fake.url()).await.expect("AE read"));
    }
    let mut ae_since: Vec<DateTime<Utc>> = ae_base
        .iter()
        .map(|u| high_water_ae(u).expect("AE users carry stamps"))
        .collect();
    let mut base = (first.org, ae_base);
    let bu1 = bus[0].id;

    // Each step changes Salesforce and AE, then reads the changes.
    type Change = Box<dyn Fn(&FakeSalesforce, &FakeAccountEngagement)>;
    type Check = Box<dyn Fn(&SalesforceOrg)>;
    let steps: Vec<(&str, Change, Check)> = vec![
        (
            "member added and removed, user renamed and deactivated, new user, AE user created",
            Box::new(move |sf, ae| {
                sf.add_member(gid(3), uid(30));
                assert!(sf.remove_member(gid(2), uid(6)));
                let mut renamed = user(5);
                renamed.username = "renamed5@acme.com".to_owned();
                renamed.is_active = false;
                sf.upsert_user(renamed);
                sf.upsert_user(user(46));
                sf.add_member(gid(2), uid(46));
                ae.upsert_user(bu1, ae_user(100, None));
            }),
            Box::new(|org| {
                assert!(org.group_members.contains(&member(3, uid(30))));
                assert!(!org.group_members.contains(&member(2, uid(6))));
                assert!(
                    org.users
                        .iter()
                        .any(|u| u.username == "renamed5@acme.com" && !u.is_active)
                );
            }),
        ),
        (
            "a group nested two levels deep, another un-nested, AE user mapped",
            Box::new(move |sf, ae| {
                // 9 (holding 10) under 4: both become reachable. 6 leaves 5: it and the
                // cycle through it go.
                sf.add_member(gid(4), gid(9));
                assert!(sf.remove_member(gid(5), gid(6)));
                ae.upsert_user(bu1, ae_user(2, Some(uid(33))));
            }),
            Box::new(|org| {
                assert_eq!(groups_with_rows(org), vec![1, 2, 3, 4, 5, 7, 9, 10]);
            }),
        ),
        (
            "the group an assignment names renamed, another given its name; a licence change; AE user deleted",
            Box::new(move |sf, ae| {
                sf.upsert_group(group(1, "Root A (old)"));
                sf.upsert_group(group(8, "Root A"));
                let mut community = user(7);
                community.user_license = Some("Customer Community".to_owned());
                sf.upsert_user(community);
                assert!(ae.delete_user(bu1, 3));
            }),
            Box::new(|org| {
                assert_eq!(groups_with_rows(org), vec![7, 8]);
                assert!(!org.users.iter().any(|u| u.id == uid(7)));
            }),
        ),
        (
            "nothing changed",
            Box::new(|_, _| {}),
            Box::new(|org| assert_eq!(groups_with_rows(org), vec![7, 8])),
        ),
    ];
    for (label, change, check) in steps {
        change(&fake, &ae_fake);
        let round = reader.round(label, &base, since, &ae_since).await;
        check(&round.org);
        since = round.high_water.map_or(since, |h| h.max(since));
        ae_since = round
            .ae_users
            .iter()
            .zip(&ae_since)
            .map(|(u, s)| high_water_ae(u).map_or(*s, |h| h.max(*s)))
            .collect();
        base = (round.org, round.ae_users);
    }
}

/// The largest org's shape, scaled to a test: 100,000 internal users, 10 business units managed
/// in Salesforce, each assigning a tree of 50 groups nested five levels deep (500 reachable
/// groups, 20,000 rows), and 100 unassigned groups.
fn large_org() -> OrgSnapshot {
    let users: Vec<SfUser> = (1..=100_000).map(user).collect();
    let mut groups = Vec::new();
    let mut members = Vec::new();
    let mut business_units = Vec::new();
    for b in 0..10 {
        let first = b * 50 + 1;
        for k in 0..50 {
            let g = first + k;
            groups.push(group(g, &format!("Tree {b} group {k}")));
            if k > 0 {
                members.push(member(first + (k - 1) / 2, gid(g)));
            }
            for u in 0..40 {
                members.push(member(g, uid((g * 40 + u) % 100_000 + 1)));
            }
        }
        let mut bu = business_unit(
            b + 1,
            UserManagement::Salesforce,
            Assignment {
                marketing: section(&[RecordRef::parse(&format!("Tree {b} group 0"))]),
                sales: AssignmentSection::default(),
            },
        );
        bu.users = (1..=100)
            .map(|n| ae_user(n, Some(uid(n as usize * 7))))
            .collect();
        business_units.push(bu);
    }
    for g in 501..=600 {
        groups.push(group(g, &format!("Unassigned {g}")));
        for u in 0..100 {
            members.push(member(g, uid(g * 100 + u)));
        }
    }
    OrgSnapshot {
        fetched_at: fetched_at(),
        salesforce: SalesforceOrg {
            org_id: Some(id("00D", 1)),
            instance_url: "https://acme.my.salesforce.com".to_owned(),
            lightning_url: None,
            users,
            roles: vec![Role {
                id: id("00E", 1),
                name: "Sales Rep".to_owned(),
                parent_role_id: None,
            }],
            groups,
            group_members: members,
        },
        business_units,
    }
}

#[tokio::test]
async fn an_incremental_read_of_the_largest_shape_stays_within_twenty_calls() {
    let org = large_org();
    let (fake, ae_fake) = start(&org).await;
    let client = salesforce(&fake);
    let ae = account_engagement();
    let bus = &org.business_units;

    let first = client.fetch_org(bus).await.expect("full read");
    assert_eq!(first.org.group_members.len(), 500 * 40 + 490);
    let mut ae_base = Vec::new();
    let mut full_ae_calls = 0;
    for bu in bus {
        let before = ae.calls();
        ae_base.push(ae.fetch_users(bu.id, ae_fake.url()).await.expect("AE read"));
        full_ae_calls += ae.calls() - before;
    }
    println!(
        "full read of 100,000 internal users and 500 reachable groups: {} Salesforce calls, \
         {full_ae_calls} AE calls",
        first.calls
    );
    let since = first.high_water.expect("stamps");
    let ae_since: Vec<_> = ae_base.iter().map(|u| high_water_ae(u).unwrap()).collect();

    // 1% of the users changed; memberships added and removed; an AE user changed per unit.
    for n in (1..=100_000).step_by(100) {
        let mut changed = user(n);
        changed.name = format!("User {n} changed");
        fake.upsert_user(changed);
    }
    for (b, bu) in bus.iter().enumerate() {
        fake.add_member(gid(b * 50 + 10), uid(99_000 + b));
        assert!(fake.remove_member(gid(b * 50 + 20), uid(((b * 50 + 20) * 40) % 100_000 + 1)));
        ae_fake.upsert_user(bu.id, ae_user(1_000 + b as u64, None));
    }

    let reader = Reader {
        client: &client,
        ae: &ae,
        ae_fake: &ae_fake,
        business_units: bus,
    };
    let round = reader
        .round("1% changed", &(first.org, ae_base), since, &ae_since)
        .await;
    assert!(round.calls <= 20, "{} calls", round.calls);
}

#[tokio::test]
async fn a_business_unit_refusing_the_updated_since_filter_is_read_in_full_and_not_asked_again() {
    let org = small_org();
    let (_sf, ae_fake) = start(&org).await;
    let ae = account_engagement();
    let (bu1, bu2) = (org.business_units[0].id, org.business_units[1].id);
    let since = fetched_at() - chrono::Duration::days(3);

    ae_fake.reject_updated_at_filter(true);
    let refused = ae
        .fetch_users_changed(bu1, ae_fake.url(), since)
        .await
        .expect("a refusal is no error");
    assert_eq!(refused, None);
    assert_eq!(ae_fake.requests(), 1);

    // Remembered: no second request for this business unit, even once the filter works.
    ae_fake.reject_updated_at_filter(false);
    assert_eq!(
        ae.fetch_users_changed(bu1, ae_fake.url(), since)
            .await
            .unwrap(),
        None
    );
    assert_eq!(ae_fake.requests(), 1);
    // Another business unit still reads its changes: the users updated in the last 3 days.
    let changed = ae
        .fetch_users_changed(bu2, ae_fake.url(), since)
        .await
        .unwrap()
        .expect("accepted");
    let expected: Vec<u64> = org.business_units[1]
        .users
        .iter()
        .filter(|u| u.updated_at >= Some(since))
        .map(|u| u.id)
        .collect();
    assert_eq!(expected, vec![1, 2], "the org has older users too");
    assert_eq!(changed.iter().map(|u| u.id).collect::<Vec<_>>(), expected);
    assert_eq!(ae_fake.requests(), 2);
    assert_eq!(ae.calls(), 2);
}
