//! What a refresh reads from Salesforce, and no more: internal users, roles, groups, and the
//! memberships of the groups the business units' assignments can reach
//! ([`crate::domain::reachable_groups`]). A full read ([`SalesforceClient::fetch_org`]) and an
//! incremental one ([`SalesforceClient::fetch_changes`]) give the same org.
//!
//! The incremental read sees what `SystemModstamp` sees: users, roles and groups created or
//! changed, memberships added. A removed membership leaves no row, so each reachable group's
//! row count is compared with what the cache holds and a group whose count differs is read
//! again in full. A deleted Group (or a user whose type stops being `Standard`) leaves nothing
//! to see: only the next full read drops it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::SourceError;
use super::salesforce::{
    GroupMemberRecord, GroupRecord, IdRecord, RoleRecord, SalesforceClient, USER_SELECT, UserRecord,
};
use crate::domain::{
    BusinessUnit, GroupMember, INTERNAL_USER_TYPE, PublicGroup, Role, SalesforceOrg, SfId, SfUser,
    assignment_roots, new_member_groups, reachable_groups,
};

/// What one read of Salesforce gave.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceRead {
    pub org: SalesforceOrg,
    /// The latest SystemModstamp seen in any record read (User, Group, UserRole,
    /// GroupMember): where the next incremental read starts (minus an overlap). `None` when no
    /// record carried one; then keep the previous high water.
    pub high_water: Option<DateTime<Utc>>,
    /// Salesforce API requests this read made (query pages; tokens not counted).
    pub calls: u64,
}

/// The longest request URL a chunked query may produce, scheme, host and path included.
///
/// Salesforce refuses a request URI over 16,384 bytes (HTTP 414) and SOQL over 100,000
/// characters. Encoding never shortens text, so a URL within this bound carries SOQL within
/// both limits. 16,000 leaves 384 bytes below the URI limit for a proxy that measures
/// differently (adds a port, or counts the request line). An 18-character id costs 27 encoded
/// bytes in an `IN` list (`%27`, the id, `%27`, `%2C`): one request holds about 580 groups,
/// so the ~500 reachable groups of the largest orgs take one request per query.
pub const MAX_QUERY_URL_BYTES: usize = 16_000;

const TYPES: &str =
    "Type IN ('Regular','Role','RoleAndSubordinates','RoleAndSubordinatesInternal')";
const GROUP_SELECT: &str =
    "SELECT Id, Name, DeveloperName, Type, RelatedId, SystemModstamp FROM Group";
const ROLE_SELECT: &str = "SELECT Id, Name, ParentRoleId, SystemModstamp FROM UserRole";
const MEMBER_SELECT: &str = "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember";
const COUNT_SELECT: &str = "SELECT GroupId, COUNT(Id) FROM GroupMember";

/// How many bytes `text` takes once encoded as a query parameter value, as reqwest encodes it
/// (`application/x-www-form-urlencoded`, via `url`).
fn encoded_len(text: &str) -> usize {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .map(str::len)
        .sum()
}

/// Splits `literals` into as few queries `{head}{a},{b},…{tail}` as fit: the URL
/// `{base_url}?q=<encoded query>` of each stays within `max_url_bytes`. Order is kept and every
/// literal lands in exactly one query. A literal too long to fit alone is an error, never a
/// request that Salesforce would refuse.
pub fn chunk_queries(
    base_url: &str,
    head: &str,
    tail: &str,
    literals: &[String],
    max_url_bytes: usize,
) -> Result<Vec<String>, SourceError> {
    // `?q=` and the fixed parts; the encoding of a concatenation is the concatenation of the
    // encodings, so lengths add up.
    let fixed = base_url.len() + "?q=".len() + encoded_len(head) + encoded_len(tail);
    let comma = encoded_len(",");
    let mut queries = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut length = fixed;
    for literal in literals {
        let cost = encoded_len(literal);
        let extra = if current.is_empty() {
            cost
        } else {
            comma + cost
        };
        if length + extra > max_url_bytes && !current.is_empty() {
            queries.push(format!("{head}{}{tail}", current.join(",")));
            current.clear();
            length = fixed;
        }
        if fixed + cost > max_url_bytes {
            return Err(SourceError::Settings {
                problem: format!(
                    "a query value of {} characters does not fit in one Salesforce request",
                    literal.chars().count()
                ),
                fix: "report this with the log: ids are 18 characters".to_owned(),
            });
        }
        length += if current.is_empty() {
            cost
        } else {
            comma + cost
        };
        current.push(literal);
    }
    if !current.is_empty() {
        queries.push(format!("{head}{}{tail}", current.join(",")));
    }
    Ok(queries)
}

/// A SOQL dateTime literal (unquoted), whole seconds rounded down so that `>=` never misses
/// a record of the same second.
pub fn soql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The latest of the timestamps seen so far.
#[derive(Default)]
struct HighWater(Option<DateTime<Utc>>);

impl HighWater {
    fn see(&mut self, t: Option<DateTime<Utc>>) {
        if let Some(t) = t {
            self.0 = Some(self.0.map_or(t, |h| h.max(t)));
        }
    }
}

/// One row of `SELECT GroupId, COUNT(Id) … GROUP BY GroupId`.
#[derive(Deserialize)]
struct CountRecord {
    #[serde(rename = "GroupId")]
    group_id: SfId,
    expr0: u64,
}

/// Upserts users by id: a changed user replaces its old record in place, a new one is added at
/// the end, and one that is no longer internal (its licence changed) is dropped, as a full
/// read would.
pub fn merge_users(base: &[SfUser], changed: Vec<SfUser>) -> Vec<SfUser> {
    let mut users = base.to_vec();
    let mut at: HashMap<SfId, usize> = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
    let mut dropped = BTreeSet::new();
    for user in changed {
        let internal = user.is_internal();
        match at.get(&user.id) {
            Some(&i) if internal => users[i] = user,
            Some(_) => {
                dropped.insert(user.id);
            }
            None if internal => {
                at.insert(user.id, users.len());
                users.push(user);
            }
            None => {}
        }
    }
    users.retain(|u| !dropped.contains(&u.id));
    users
}

/// Upserts groups by id: changed in place, new at the end.
pub fn merge_groups(base: &[PublicGroup], changed: Vec<PublicGroup>) -> Vec<PublicGroup> {
    let mut groups = base.to_vec();
    let mut at: HashMap<SfId, usize> = groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
    for group in changed {
        match at.get(&group.id) {
            Some(&i) => groups[i] = group,
            None => {
                at.insert(group.id, groups.len());
                groups.push(group);
            }
        }
    }
    groups
}

/// Upserts roles by id: changed in place, new at the end.
pub fn merge_roles(base: &[Role], changed: Vec<Role>) -> Vec<Role> {
    let mut roles = base.to_vec();
    let mut at: HashMap<SfId, usize> = roles.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for role in changed {
        match at.get(&role.id) {
            Some(&i) => roles[i] = role,
            None => {
                at.insert(role.id, roles.len());
                roles.push(role);
            }
        }
    }
    roles
}

/// Memberships in their canonical order (group, then member), each once: a full and an
/// incremental read give the same list, whatever order the requests came back in.
pub fn canonical_members(members: &mut Vec<GroupMember>) {
    members.sort_by_key(|m| (m.group_id, m.member_id));
    members.dedup_by(|a, b| a.group_id == b.group_id && a.member_id == b.member_id);
}

/// Rows per group, each (group, member) pair once.
fn row_counts(members: &[GroupMember]) -> BTreeMap<SfId, u64> {
    let mut counts = BTreeMap::new();
    let pairs: BTreeSet<(SfId, SfId)> = members.iter().map(|m| (m.group_id, m.member_id)).collect();
    for (group, _) in pairs {
        *counts.entry(group).or_insert(0) += 1;
    }
    counts
}

/// The groups whose row count in Salesforce differs from the rows held; a group absent from
/// `remote` has no rows.
pub fn groups_to_reread(
    groups: &BTreeSet<SfId>,
    remote: &BTreeMap<SfId, u64>,
    held: &[GroupMember],
) -> BTreeSet<SfId> {
    let ours = row_counts(held);
    groups
        .iter()
        .filter(|g| remote.get(g).copied().unwrap_or(0) != ours.get(g).copied().unwrap_or(0))
        .copied()
        .collect()
}

fn group_literals(groups: &BTreeSet<SfId>) -> Vec<String> {
    groups.iter().map(|g| format!("'{}'", g.to_18())).collect()
}

/// One read's bookkeeping: its requests and the latest stamp seen.
struct Read<'a> {
    client: &'a SalesforceClient,
    tally: AtomicU64,
    high_water: HighWater,
}

impl<'a> Read<'a> {
    fn new(client: &'a SalesforceClient) -> Self {
        Read {
            client,
            tally: AtomicU64::new(0),
            high_water: HighWater::default(),
        }
    }

    async fn query<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        soql: &str,
    ) -> Result<Vec<T>, SourceError> {
        self.client.query_counted(soql, &self.tally).await
    }

    async fn users(&mut self, since: Option<DateTime<Utc>>) -> Result<Vec<SfUser>, SourceError> {
        let mut soql = format!("{USER_SELECT} FROM User WHERE UserType = '{INTERNAL_USER_TYPE}'");
        if let Some(since) = since {
            soql.push_str(&format!(" AND SystemModstamp >= {}", soql_datetime(since)));
        }
        let records: Vec<UserRecord> = self.query(&soql).await?;
        for r in &records {
            self.high_water.see(r.system_modstamp);
        }
        Ok(records.into_iter().map(SfUser::from).collect())
    }

    /// Every role, or (with `since`) the roles changed since then: a large org has tens of
    /// thousands, a dozen requests that an incremental read need not repeat. A deleted role
    /// shows in the next full read.
    async fn roles(&mut self, since: Option<DateTime<Utc>>) -> Result<Vec<Role>, SourceError> {
        let soql = match since {
            Some(since) => format!(
                "{ROLE_SELECT} WHERE SystemModstamp >= {}",
                soql_datetime(since)
            ),
            None => ROLE_SELECT.to_owned(),
        };
        let records: Vec<RoleRecord> = self.query(&soql).await?;
        for r in &records {
            self.high_water.see(r.system_modstamp);
        }
        Ok(records.into_iter().map(Role::from).collect())
    }

    async fn groups(
        &mut self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<PublicGroup>, SourceError> {
        let mut soql = format!("{GROUP_SELECT} WHERE {TYPES}");
        if let Some(since) = since {
            soql.push_str(&format!(" AND SystemModstamp >= {}", soql_datetime(since)));
        }
        let records: Vec<GroupRecord> = self.query(&soql).await?;
        for r in &records {
            self.high_water.see(r.system_modstamp);
        }
        Ok(records.into_iter().map(PublicGroup::from).collect())
    }

    /// The memberships of `groups` (added since `since`, or all), in as few requests as the
    /// URL bound allows.
    async fn members(
        &mut self,
        groups: &BTreeSet<SfId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<GroupMember>, SourceError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let tail = match since {
            Some(since) => format!(") AND SystemModstamp >= {}", soql_datetime(since)),
            None => ")".to_owned(),
        };
        let head = format!("{MEMBER_SELECT} WHERE GroupId IN (");
        let base = self.client.query_url().await?;
        let mut rows = Vec::new();
        for soql in chunk_queries(
            base.as_str(),
            &head,
            &tail,
            &group_literals(groups),
            MAX_QUERY_URL_BYTES,
        )? {
            let records: Vec<GroupMemberRecord> = self.query(&soql).await?;
            for r in records {
                self.high_water.see(r.system_modstamp);
                rows.push(GroupMember {
                    group_id: r.group_id,
                    member_id: r.user_or_group_id,
                });
            }
        }
        Ok(rows)
    }

    /// Rows per group in Salesforce; a group with none is absent.
    async fn counts(
        &mut self,
        groups: &BTreeSet<SfId>,
    ) -> Result<BTreeMap<SfId, u64>, SourceError> {
        let mut counts = BTreeMap::new();
        if groups.is_empty() {
            return Ok(counts);
        }
        let head = format!("{COUNT_SELECT} WHERE GroupId IN (");
        let base = self.client.query_url().await?;
        for soql in chunk_queries(
            base.as_str(),
            &head,
            ") GROUP BY GroupId",
            &group_literals(groups),
            MAX_QUERY_URL_BYTES,
        )? {
            let records: Vec<CountRecord> = self.query(&soql).await?;
            counts.extend(records.into_iter().map(|r| (r.group_id, r.expr0)));
        }
        Ok(counts)
    }

    /// Reads the full memberships of `frontier`, then of the groups they hold, level by level
    /// until no new group appears. `reached` holds every group read (or being read), so that a
    /// cycle ends. The rows of the groups read replace any `members` held for them.
    async fn expand(
        &mut self,
        mut frontier: BTreeSet<SfId>,
        known: &BTreeSet<SfId>,
        reached: &mut BTreeSet<SfId>,
        members: &mut Vec<GroupMember>,
    ) -> Result<(), SourceError> {
        while !frontier.is_empty() {
            reached.extend(frontier.iter().copied());
            let rows = self.members(&frontier, None).await?;
            let next = new_member_groups(&rows, known, reached);
            members.retain(|m| !frontier.contains(&m.group_id));
            members.extend(rows);
            frontier = next;
        }
        Ok(())
    }

    fn finish(self, org: SalesforceOrg) -> SalesforceRead {
        SalesforceRead {
            org,
            high_water: self.high_water.0,
            calls: self.tally.load(Ordering::Relaxed),
        }
    }
}

impl SalesforceClient {
    /// Everything the diagnosis reads from Salesforce: internal users, roles, groups, and the
    /// memberships of the groups reachable from the business units' assignments. Business units
    /// managed in Account Engagement need no membership at all.
    pub async fn fetch_org(
        &self,
        business_units: &[BusinessUnit],
    ) -> Result<SalesforceRead, SourceError> {
        let mut read = Read::new(self);
        let organizations: Vec<IdRecord> = read.query("SELECT Id FROM Organization").await?;
        // Only internal users can be AE users: external ones (millions in large Experience
        // Cloud orgs) are neither fetched nor cached, and are looked up live when asked about.
        let users: Vec<SfUser> = read
            .users(None)
            .await?
            .into_iter()
            .filter(SfUser::is_internal)
            .collect();
        let roles = read.roles(None).await?;
        let groups = read.groups(None).await?;
        let known: BTreeSet<SfId> = groups.iter().map(|g| g.id).collect();
        let roots = assignment_roots(&groups, business_units);
        let mut group_members = Vec::new();
        read.expand(roots, &known, &mut BTreeSet::new(), &mut group_members)
            .await?;
        canonical_members(&mut group_members);
        let org = SalesforceOrg {
            org_id: organizations.first().map(|o| o.id),
            instance_url: self.instance_url().await?,
            lightning_url: None,
            users,
            roles,
            groups,
            group_members,
        };
        Ok(read.finish(org))
    }

    /// `base` brought up to date with what changed in Salesforce since `since` (pass the last
    /// read's high water minus an overlap of a few minutes: SystemModstamp is set when a
    /// transaction commits, so a record may appear with a slightly older stamp). Returns the
    /// merged org, which equals what [`Self::fetch_org`] would return now, except for what
    /// no stamp shows: a deleted Group stays until the next full read.
    ///
    /// Roles are read in full every time: an org has hundreds, one request.
    pub async fn fetch_changes(
        &self,
        base: &SalesforceOrg,
        business_units: &[BusinessUnit],
        since: DateTime<Utc>,
    ) -> Result<SalesforceRead, SourceError> {
        let mut read = Read::new(self);
        let changed_users = read.users(Some(since)).await?;
        let roles = merge_roles(&base.roles, read.roles(Some(since)).await?);
        let changed_groups = read.groups(Some(since)).await?;
        let groups = merge_groups(&base.groups, changed_groups);
        let known: BTreeSet<SfId> = groups.iter().map(|g| g.id).collect();
        // A renamed group can change which groups the assignments name.
        let roots = assignment_roots(&groups, business_units);
        let held = reachable_groups(&roots, &known, &base.group_members);
        let mut members: Vec<GroupMember> = base
            .group_members
            .iter()
            .filter(|m| held.contains(&m.group_id))
            .cloned()
            .collect();
        // Added rows carry a new stamp; removed rows leave none, but change the count.
        members.extend(read.members(&held, Some(since)).await?);
        canonical_members(&mut members);
        let remote = read.counts(&held).await?;
        let differ = groups_to_reread(&held, &remote, &members);
        let mut covered = held.clone();
        read.expand(differ, &known, &mut covered, &mut members)
            .await?;
        // Groups that became reachable (newly nested, or under a renamed root): read them and
        // what they hold, level by level.
        loop {
            let reach = reachable_groups(&roots, &known, &members);
            let new: BTreeSet<SfId> = reach.difference(&covered).copied().collect();
            if new.is_empty() {
                members.retain(|m| reach.contains(&m.group_id));
                break;
            }
            read.expand(new, &known, &mut covered, &mut members).await?;
        }
        canonical_members(&mut members);
        let org = SalesforceOrg {
            org_id: base.org_id,
            instance_url: base.instance_url.clone(),
            lightning_url: base.lightning_url.clone(),
            users: merge_users(&base.users, changed_users),
            roles,
            groups,
            group_members: members,
        };
        Ok(read.finish(org))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://acme.my.salesforce.com/services/data/v62.0/query";

    fn url_of(soql: &str) -> String {
        let mut url = reqwest::Url::parse(BASE).unwrap();
        url.query_pairs_mut().append_pair("q", soql);
        url.to_string()
    }

    fn literals_in(query: &str, head: &str, tail: &str) -> Vec<String> {
        let list = &query[head.len()..query.len() - tail.len()];
        list.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn encoded_lengths_are_those_of_the_url_reqwest_sends() {
        for soql in [
            "SELECT GroupId FROM GroupMember WHERE GroupId IN ('00GAk000000GRP1AAA')",
            "x y+z%'\"é中😀",
        ] {
            assert_eq!(
                url_of(soql).len(),
                BASE.len() + "?q=".len() + encoded_len(soql),
                "{soql}"
            );
        }
    }

    #[test]
    fn chunks_of_eighteen_character_ids_stay_within_the_bound_and_keep_every_id_once() {
        let head = format!("{MEMBER_SELECT} WHERE GroupId IN (");
        let tail = ") AND SystemModstamp >= 2026-01-01T00:00:00Z";
        let ids: Vec<String> = (0..2_000)
            .map(|n| {
                format!(
                    "'{}'",
                    SfId::parse(&format!("00GAk0000{n:06}")).unwrap().to_18()
                )
            })
            .collect();
        let queries = chunk_queries(BASE, &head, tail, &ids, MAX_QUERY_URL_BYTES).unwrap();
        // 27 bytes an id: about 580 a request, so 2,000 take 4.
        assert_eq!(queries.len(), 4);
        let mut seen = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            assert!(
                url_of(q).len() <= MAX_QUERY_URL_BYTES,
                "{}",
                url_of(q).len()
            );
            if i + 1 < queries.len() {
                assert!(
                    url_of(q).len() > MAX_QUERY_URL_BYTES - 27,
                    "chunks are full"
                );
            }
            assert!(q.len() <= 100_000);
            seen.extend(literals_in(q, &head, tail));
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn five_hundred_groups_take_one_request() {
        let head = format!("{COUNT_SELECT} WHERE GroupId IN (");
        let ids: Vec<String> = (0..500)
            .map(|n| {
                format!(
                    "'{}'",
                    SfId::parse(&format!("00GAk0000{n:06}")).unwrap().to_18()
                )
            })
            .collect();
        let queries =
            chunk_queries(BASE, &head, ") GROUP BY GroupId", &ids, MAX_QUERY_URL_BYTES).unwrap();
        assert_eq!(queries.len(), 1);
    }

    #[test]
    fn hostile_long_values_are_chunked_by_their_encoded_length() {
        // Characters that encode to 3, 6, 9 and 12 bytes each: a count of characters would
        // overshoot the URL limit by up to 12 times.
        let values: Vec<String> = (0..300)
            .map(|n| format!("'{}{n}'", ["%", "é", "中", "😀"][n % 4].repeat(100 + n)))
            .collect();
        let queries =
            chunk_queries(BASE, "SELECT Id FROM X WHERE Y IN (", ")", &values, 16_000).unwrap();
        let mut seen = Vec::new();
        for q in &queries {
            assert!(url_of(q).len() <= 16_000, "{}", url_of(q).len());
            seen.extend(literals_in(q, "SELECT Id FROM X WHERE Y IN (", ")"));
        }
        assert_eq!(seen, values);
        assert!(queries.len() > 1);
    }

    #[test]
    fn a_value_too_long_for_one_request_is_refused_not_sent() {
        let huge = vec!["'a'".to_owned(), format!("'{}'", "b".repeat(16_000))];
        let err = chunk_queries(BASE, "SELECT Id FROM X WHERE Y IN (", ")", &huge, 16_000)
            .expect_err("cannot fit");
        assert!(matches!(err, SourceError::Settings { .. }), "{err:?}");
    }

    #[test]
    fn no_values_make_no_query() {
        assert!(
            chunk_queries(BASE, "h(", ")", &[], 16_000)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn soql_datetimes_are_whole_utc_seconds() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T03:04:05.987+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(soql_datetime(t), "2026-12-02T02:04:05Z");
    }

    fn user(n: usize, name: &str) -> SfUser {
        SfUser {
            id: SfId::parse(&format!("005Ak0000{n:06}")).unwrap(),
            username: format!("u{n}@acme.com"),
            email: String::new(),
            name: name.to_owned(),
            is_active: true,
            profile_id: None,
            profile_name: None,
            user_license: Some("Salesforce".to_owned()),
            role_id: None,
            user_type: Some("Standard".to_owned()),
            modified_at: None,
        }
    }

    #[test]
    fn users_are_upserted_in_place_appended_when_new_and_dropped_when_no_longer_internal() {
        let base = vec![user(1, "One"), user(2, "Two"), user(3, "Three")];
        let mut renamed = user(2, "Two Renamed");
        renamed.is_active = false;
        let mut external = user(3, "Three");
        external.user_license = Some("Customer Community".to_owned());
        let mut new_external = user(5, "Five");
        new_external.user_license = Some("Partner Community".to_owned());
        let merged = merge_users(
            &base,
            vec![renamed.clone(), user(4, "Four"), external, new_external],
        );
        assert_eq!(merged, vec![user(1, "One"), renamed, user(4, "Four")]);
    }

    #[test]
    fn groups_are_upserted_by_id() {
        let g = |n: usize, name: &str| PublicGroup {
            id: SfId::parse(&format!("00GAk0000{n:06}")).unwrap(),
            name: name.to_owned(),
            developer_name: None,
            group_type: "Regular".to_owned(),
            related_id: None,
        };
        let merged = merge_groups(&[g(1, "A"), g(2, "B")], vec![g(2, "B2"), g(3, "C")]);
        assert_eq!(merged, vec![g(1, "A"), g(2, "B2"), g(3, "C")]);
    }

    fn gm(group: usize, member: &str) -> GroupMember {
        GroupMember {
            group_id: SfId::parse(&format!("00GAk0000{group:06}")).unwrap(),
            member_id: SfId::parse(member).unwrap(),
        }
    }

    #[test]
    fn members_are_sorted_by_group_then_member_each_once() {
        let mut members = vec![
            gm(2, "005Ak0000000001"),
            gm(1, "005Ak0000000002"),
            gm(1, "005Ak0000000001"),
            gm(2, "005Ak0000000001"),
        ];
        canonical_members(&mut members);
        assert_eq!(
            members,
            vec![
                gm(1, "005Ak0000000001"),
                gm(1, "005Ak0000000002"),
                gm(2, "005Ak0000000001"),
            ]
        );
    }

    #[test]
    fn a_group_is_read_again_when_its_row_count_differs_or_it_has_none_left() {
        let id = |n: usize| SfId::parse(&format!("00GAk0000{n:06}")).unwrap();
        let held = vec![
            gm(1, "005Ak0000000001"),
            gm(1, "005Ak0000000002"),
            gm(2, "005Ak0000000001"),
            gm(3, "005Ak0000000001"),
        ];
        // 1: same count; 2: one more remotely; 3: absent from the aggregate (no rows left);
        // 4: none held, none remote.
        let remote = BTreeMap::from([(id(1), 2), (id(2), 2)]);
        let groups: BTreeSet<SfId> = (1..=4).map(id).collect();
        assert_eq!(
            groups_to_reread(&groups, &remote, &held),
            BTreeSet::from([id(2), id(3)])
        );
    }

    #[test]
    fn the_high_water_is_the_latest_stamp_seen() {
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let mut h = HighWater::default();
        h.see(None);
        assert_eq!(h.0, None);
        h.see(t("2026-01-02T00:00:00Z"));
        h.see(t("2026-01-01T00:00:00Z"));
        h.see(None);
        assert_eq!(h.0, t("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn aggregate_rows_are_read_as_group_and_count() {
        let rows: Vec<CountRecord> = serde_json::from_str(
            r#"[{"attributes":{"type":"AggregateResult"},"GroupId":"00GAk000000GRP1AAA","expr0":3}]"#,
        )
        .unwrap();
        assert_eq!(rows[0].group_id, SfId::parse("00GAk000000GRP1").unwrap());
        assert_eq!(rows[0].expr0, 3);
    }
}
