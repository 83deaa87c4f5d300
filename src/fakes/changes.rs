//! Changes to the fakes' org in bulk, as a day's work of admins: for benchmarks of the
//! incremental refresh (`crm-username fakes --change-on-signal`). Deterministic: the same org
//! and the same rounds give the same changes.

use std::collections::HashMap;

use super::FakeUpstreams;
use crate::domain::{SfId, SfUser};

/// What the changes start from, taken once (reading the whole org at each round would cost
/// the fakes seconds at a million users, in the middle of a measurement).
pub struct Changer {
    users: Vec<SfUser>,
    /// One public group holding each internal user, if any.
    group_of: HashMap<SfId, SfId>,
    /// Public groups holding internal users: where moved users go.
    groups: Vec<SfId>,
    business_units: Vec<SfId>,
    round: usize,
}

impl Changer {
    pub fn new(upstreams: &FakeUpstreams, business_units: Vec<SfId>) -> Self {
        let org = upstreams.salesforce.org();
        let public: std::collections::HashSet<SfId> = org
            .groups
            .iter()
            .filter(|g| g.group_type == "Regular")
            .map(|g| g.id)
            .collect();
        let users: Vec<SfUser> = org.users.into_iter().filter(SfUser::is_internal).collect();
        let internal: std::collections::HashSet<SfId> = users.iter().map(|u| u.id).collect();
        let mut group_of = HashMap::new();
        let mut groups = Vec::new();
        for m in &org.group_members {
            if public.contains(&m.group_id) && internal.contains(&m.member_id) {
                group_of.entry(m.member_id).or_insert(m.group_id);
                groups.push(m.group_id);
            }
        }
        groups.sort();
        groups.dedup();
        Changer {
            users,
            group_of,
            groups,
            business_units,
            round: 0,
        }
    }

    /// Changes `percent` of the internal users (a third renamed, a third deactivated or
    /// reactivated, a third moved to another public group) and `percent` of each business
    /// unit's AE users (a new email). Returns what it did.
    pub fn apply(&mut self, upstreams: &FakeUpstreams, percent: u32) -> String {
        self.round += 1;
        let (sf, ae) = (&upstreams.salesforce, &upstreams.account_engagement);
        let n = (self.users.len() * percent as usize / 100).max(1);
        let mut moved = 0;
        for i in 0..n.min(self.users.len()) {
            let at = ((self.round * n + i) * 7919) % self.users.len();
            let user = &mut self.users[at];
            match i % 3 {
                0 => {
                    user.name = format!("{} R{}", user.name, self.round);
                    user.username = format!("r{}.{}", self.round, user.username);
                    sf.upsert_user(user.clone());
                }
                1 => {
                    user.is_active = !user.is_active;
                    sf.upsert_user(user.clone());
                }
                _ => {
                    if self.groups.is_empty() {
                        continue;
                    }
                    let to = self.groups[(at + self.round) % self.groups.len()];
                    if let Some(from) = self.group_of.insert(user.id, to) {
                        sf.remove_member(from, user.id);
                    }
                    sf.add_member(to, user.id);
                    moved += 1;
                }
            }
        }
        let mut ae_changed = 0;
        for bu in &self.business_units {
            let users = ae.users(*bu);
            let m = (users.len() * percent as usize / 100)
                .max(1)
                .min(users.len());
            for i in 0..m {
                let mut user = users[((self.round * m + i) * 7919) % users.len()].clone();
                user.email = format!("r{}.{}", self.round, user.email);
                ae.upsert_user(*bu, user);
                ae_changed += 1;
            }
        }
        format!(
            "round {}: {n} Salesforce users changed ({moved} moved between groups), {ae_changed} AE users changed",
            self.round
        )
    }
}
