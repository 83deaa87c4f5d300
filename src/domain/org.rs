//! An org snapshot with the indexes a diagnosis needs, so that no lookup scans the org.

use rustc_hash::FxHashMap as HashMap;

use super::snapshot::lower;
use crate::suggest::{UserKeys, best_matches};

use super::{AeUser, BusinessUnit, OrgSnapshot, PublicGroup, RecordRef, Role, SfId, SfUser};

type Idx = u32;

struct BusinessUnitIndex {
    by_salesforce_id: HashMap<SfId, Vec<Idx>>,
    by_email: HashMap<String, Vec<Idx>>,
    by_id: HashMap<u64, Idx>,
}

/// Matches of a search, best first, with how many there were in all.
#[derive(Debug)]
pub struct SearchResult<'a> {
    pub users: Vec<&'a SfUser>,
    pub total: usize,
}

pub struct Org {
    snapshot: OrgSnapshot,
    by_email: HashMap<String, Vec<Idx>>,
    by_id: HashMap<SfId, Idx>,
    /// (lower-cased name word, user), sorted: prefix search by binary search.
    name_words: Vec<(Box<str>, Idx)>,
    /// Lower-cased usernames and name keys, sorted: exact lookups, sandbox variants
    /// (`jane@acme.com.uat`) and "did you mean".
    keys: UserKeys,
    groups_of_member: HashMap<SfId, Vec<Idx>>,
    group_by_id: HashMap<SfId, Idx>,
    groups_by_name: HashMap<String, Vec<Idx>>,
    role_by_id: HashMap<SfId, Idx>,
    /// Role id -> the groups that stand for that role (see `PublicGroup::related_id`).
    groups_of_role: HashMap<SfId, Vec<Idx>>,
    roles_by_name: HashMap<String, Vec<Idx>>,
    business_units: Vec<BusinessUnitIndex>,
}

fn with_capacity<K, V>(n: usize) -> HashMap<K, V> {
    HashMap::with_capacity_and_hasher(n, Default::default())
}

fn push<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Idx>>, key: K, idx: usize) {
    map.entry(key).or_default().push(idx as Idx);
}

/// A name as compared: lower case, single spaces.
pub fn name_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.extend(word.chars().flat_map(char::to_lowercase));
    }
    key
}

/// How a name matches a name query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// The whole name (lower case, single spaces) is the query.
    Exact,
    /// Each word of the query starts a word of the name.
    Words,
}

/// Whether the name key `name` (see `name_key`) matches `query` (a name key too, split into
/// `words`), and how. A search shows the exact matches if there are any, else the others.
pub fn name_match(query: &str, words: &[&str], name: &str) -> Option<NameMatch> {
    if name == query {
        Some(NameMatch::Exact)
    } else if words
        .iter()
        .all(|w| name.split(' ').any(|nw| nw.starts_with(w)))
    {
        Some(NameMatch::Words)
    } else {
        None
    }
}

impl Org {
    /// The user's role, then its parent, up to the top. Stops at a missing role or a cycle.
    pub fn role_chain(&self, user: &SfUser) -> Vec<&Role> {
        let mut chain = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = user.role_id;
        while let Some(id) = next {
            if !seen.insert(id) {
                break;
            }
            let Some(role) = self.role(id) else { break };
            chain.push(role);
            next = role.parent_role_id;
        }
        chain
    }

    pub fn new(snapshot: OrgSnapshot) -> Self {
        Self::build(snapshot, true)
    }

    /// Without the indexes for finding users by username, email or name ("did you mean"
    /// included): what publishing per-user records needs, in less memory.
    pub fn without_search(snapshot: OrgSnapshot) -> Self {
        Self::build(snapshot, false)
    }

    fn build(snapshot: OrgSnapshot, searchable: bool) -> Self {
        let sf = &snapshot.salesforce;
        let users = &sf.users;
        let mut by_email = HashMap::default();
        let mut by_id = with_capacity(users.len());
        let mut name_words = Vec::with_capacity(users.len() * 2);
        let mut keys = Vec::with_capacity(if searchable { users.len() } else { 0 });
        for (i, user) in users.iter().enumerate() {
            by_id.insert(user.id, i as Idx);
            if !searchable {
                continue;
            }
            let email = user.email.trim();
            if !email.is_empty() {
                push(&mut by_email, lower(email).into_owned(), i);
            }
            let name = name_key(&user.name);
            for word in name.split(' ') {
                name_words.push((Box::from(word), i as Idx));
            }
            keys.push((lower(&user.username).into_owned(), name));
        }
        name_words.sort_unstable();
        let keys = UserKeys::new(keys.into_iter());

        let group_by_id: HashMap<SfId, Idx> = sf
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id, i as Idx))
            .collect();
        let mut groups_of_member = with_capacity(sf.group_members.len());
        for member in &sf.group_members {
            if let Some(&g) = group_by_id.get(&member.group_id) {
                push(&mut groups_of_member, member.member_id, g as usize);
            }
        }
        let mut groups_by_name = HashMap::default();
        let mut groups_of_role = HashMap::default();
        for (i, group) in sf.groups.iter().enumerate() {
            if let (Some(role), Some(_)) = (group.related_id, group.role_kind()) {
                push(&mut groups_of_role, role, i);
            }
            push(&mut groups_by_name, group.name.to_lowercase(), i);
            if let Some(dev) = &group.developer_name {
                push(&mut groups_by_name, dev.to_lowercase(), i);
            }
        }
        let role_by_id = sf
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i as Idx))
            .collect();
        let mut roles_by_name = HashMap::default();
        for (i, role) in sf.roles.iter().enumerate() {
            push(&mut roles_by_name, role.name.to_lowercase(), i);
        }

        let business_units = snapshot
            .business_units
            .iter()
            .map(|bu| {
                let mut index = BusinessUnitIndex {
                    by_salesforce_id: with_capacity(bu.users.len()),
                    by_email: with_capacity(bu.users.len()),
                    by_id: with_capacity(bu.users.len()),
                };
                for (i, user) in bu.users.iter().enumerate() {
                    if let Some(sf_id) = user.salesforce_id {
                        push(&mut index.by_salesforce_id, sf_id, i);
                    }
                    if !user.email.trim().is_empty() {
                        push(
                            &mut index.by_email,
                            lower(user.email.trim()).into_owned(),
                            i,
                        );
                    }
                    index.by_id.insert(user.id, i as Idx);
                }
                index
            })
            .collect();

        Org {
            snapshot,
            by_email,
            by_id,
            name_words,
            keys,
            groups_of_member,
            group_by_id,
            groups_by_name,
            role_by_id,
            groups_of_role,
            roles_by_name,
            business_units,
        }
    }

    pub fn snapshot(&self) -> &OrgSnapshot {
        &self.snapshot
    }

    pub fn business_units(&self) -> &[BusinessUnit] {
        &self.snapshot.business_units
    }

    fn user(&self, idx: Idx) -> &SfUser {
        &self.snapshot.salesforce.users[idx as usize]
    }

    pub fn user_by_username(&self, lower: &str) -> Option<&SfUser> {
        self.keys.user_by_username(lower).map(|i| self.user(i))
    }

    pub fn user_by_id(&self, id: SfId) -> Option<&SfUser> {
        self.by_id.get(&id).map(|&i| self.user(i))
    }

    pub fn users_by_email(&self, lower: &str) -> Vec<&SfUser> {
        self.by_email
            .get(lower)
            .map(|ids| ids.iter().map(|&i| self.user(i)).collect())
            .unwrap_or_default()
    }

    /// Users whose name equals `query` (lower-cased, single-spaced), or failing that, whose
    /// name has a word starting with each word of the query.
    pub fn search_name(&self, query: &str, limit: usize) -> SearchResult<'_> {
        let words: Vec<&str> = query.split(' ').filter(|w| !w.is_empty()).collect();
        // Walk the query word with the fewest matching name words; check the others per user.
        let Some(driver) = words.iter().min_by_key(|w| self.word_prefix_range(w).len()) else {
            return SearchResult {
                users: Vec::new(),
                total: 0,
            };
        };
        let mut exact = Vec::new();
        let mut partial = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        for &(_, idx) in &self.name_words[self.word_prefix_range(driver)] {
            if !seen.insert(idx) {
                continue;
            }
            let user = self.user(idx);
            match name_match(query, &words, &name_key(&user.name)) {
                Some(NameMatch::Exact) => exact.push(user),
                Some(NameMatch::Words) => partial.push(user),
                None => {}
            }
        }
        let mut users = if exact.is_empty() { partial } else { exact };
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.username.cmp(&b.username)));
        let total = users.len();
        users.truncate(limit);
        SearchResult { users, total }
    }

    fn word_prefix_range(&self, prefix: &str) -> std::ops::Range<usize> {
        let start = self.name_words.partition_point(|(w, _)| &**w < prefix);
        let len = self.name_words[start..].partition_point(|(w, _)| w.starts_with(prefix));
        start..start + len
    }

    /// Close usernames for a login that matched nothing: sandbox variants of it first
    /// (`jane@acme.com.uat` for `jane@acme.com`, and the reverse), then small typos.
    pub fn closest_usernames(&self, login: &str, limit: usize) -> Vec<&SfUser> {
        self.best(self.keys.closest_usernames(login, limit), limit)
    }

    /// Close names for a name that matched nothing.
    pub fn closest_names(&self, name: &str, limit: usize) -> Vec<&SfUser> {
        self.best(self.keys.closest_names(name, limit), limit)
    }

    fn best(&self, found: Vec<(usize, Idx)>, limit: usize) -> Vec<&SfUser> {
        best_matches(found, limit, |i| &self.user(i).username)
            .into_iter()
            .map(|i| self.user(i))
            .collect()
    }

    pub fn groups_containing(&self, member: SfId) -> impl Iterator<Item = &PublicGroup> {
        self.groups_of_member
            .get(&member)
            .into_iter()
            .flatten()
            .map(|&g| &self.snapshot.salesforce.groups[g as usize])
    }

    /// Groups that stand for this role (`Role`, `RoleAndSubordinates...`).
    pub fn groups_of_role(&self, role: SfId) -> impl Iterator<Item = &PublicGroup> {
        self.groups_of_role
            .get(&role)
            .into_iter()
            .flatten()
            .map(|&g| &self.snapshot.salesforce.groups[g as usize])
    }

    pub fn group(&self, id: SfId) -> Option<&PublicGroup> {
        self.group_by_id
            .get(&id)
            .map(|&g| &self.snapshot.salesforce.groups[g as usize])
    }

    pub fn role(&self, id: SfId) -> Option<&Role> {
        self.role_by_id
            .get(&id)
            .map(|&r| &self.snapshot.salesforce.roles[r as usize])
    }

    /// Does this settings reference name that group? (by id, name or developer name)
    pub fn group_matches(&self, reference: &RecordRef, group: &PublicGroup) -> bool {
        match reference {
            RecordRef::Id(id) => *id == group.id,
            RecordRef::Name(name) => {
                self.groups_by_name
                    .get(&name.to_lowercase())
                    .is_some_and(|ids| {
                        ids.iter()
                            .any(|&g| self.snapshot.salesforce.groups[g as usize].id == group.id)
                    })
            }
        }
    }

    /// Does this settings reference name that role? (by id or name)
    pub fn role_matches(&self, reference: &RecordRef, role: &Role) -> bool {
        match reference {
            RecordRef::Id(id) => *id == role.id,
            RecordRef::Name(name) => {
                self.roles_by_name
                    .get(&name.to_lowercase())
                    .is_some_and(|ids| {
                        ids.iter()
                            .any(|&r| self.snapshot.salesforce.roles[r as usize].id == role.id)
                    })
            }
        }
    }

    /// AE users of business unit `bu` (an index into `business_units()`) mapped to `sf_id`.
    pub fn ae_users_mapped_to(&self, bu: usize, sf_id: SfId) -> impl Iterator<Item = &AeUser> {
        self.ae_users_of(bu, self.business_units[bu].by_salesforce_id.get(&sf_id))
    }

    /// AE users of business unit `bu` whose email is `lower` (case-insensitive).
    pub fn ae_users_with_email(&self, bu: usize, lower: &str) -> impl Iterator<Item = &AeUser> {
        self.ae_users_of(bu, self.business_units[bu].by_email.get(lower))
    }

    pub fn ae_user_by_id(&self, bu: usize, id: u64) -> Option<&AeUser> {
        self.business_units[bu]
            .by_id
            .get(&id)
            .map(|&i| &self.snapshot.business_units[bu].users[i as usize])
    }

    fn ae_users_of<'a>(
        &'a self,
        bu: usize,
        ids: Option<&'a Vec<Idx>>,
    ) -> impl Iterator<Item = &'a AeUser> + 'a {
        let users = &self.snapshot.business_units[bu].users;
        ids.into_iter().flatten().map(move |&i| &users[i as usize])
    }
}
