//! Usernames and names kept sorted for exact lookups and "did you mean", without comparing a
//! query with every user.
//!
//! The keys sit sorted in one buffer and the search walks them as it would a trie: the
//! edit-distance rows of a prefix shared by many keys are computed once, and a prefix already
//! too far from every prefix of the query drops every key that starts with it (the next key
//! without it is found by binary search). What it finds is exactly what a comparison with every
//! key would find; it only skips the keys that cannot be close.
//!
//! A search index, not domain data: the in-memory org (`domain::Org`) and the Redis store's
//! "did you mean" (`Directory`) both build on it.

mod directory;
mod sorted_keys;
#[cfg(test)]
mod tests;

pub use directory::Directory;
pub use sorted_keys::SortedKeys;

/// At most this many candidates are returned for `ambiguous` and `not_found`.
pub const MAX_CANDIDATES: usize = 10;

/// How many edits "did you mean" allows: more for longer queries.
pub fn max_distance(query: &str) -> usize {
    match query.chars().count() {
        0..=4 => 1,
        5..=9 => 2,
        _ => 3,
    }
}

/// Every user's lower-cased username and name key (`name_key`), sorted, for lookups and
/// "did you mean". Users are numbered by the order they were given in.
#[derive(Default)]
pub struct UserKeys {
    usernames: SortedKeys,
    names: SortedKeys,
}

impl UserKeys {
    /// `users`: (lower-cased username, name key) of each user, in user order.
    pub fn new(users: impl Iterator<Item = (String, String)>) -> Self {
        let mut usernames = Vec::new();
        let mut names = Vec::new();
        for (i, (username, name)) in users.enumerate() {
            usernames.push((username, i as u32));
            names.push((name, i as u32));
        }
        UserKeys {
            usernames: SortedKeys::new(usernames),
            names: SortedKeys::new(names),
        }
    }

    pub fn user_by_username(&self, lower: &str) -> Option<u32> {
        let found = self.usernames.equal(lower);
        (!found.is_empty()).then(|| self.usernames.owner(found.start))
    }

    /// Close usernames for a login that matched nothing, unsorted, each with a rank: sandbox
    /// variants of it (`jane@acme.com.uat` for `jane@acme.com`, and the reverse) rank 0,
    /// typos their edit distance. Enough of them for the best `limit` (see `best_matches`).
    pub fn closest_usernames(&self, login: &str, limit: usize) -> Vec<(usize, u32)> {
        self.closest_usernames_examined(login, limit).0
    }

    /// Close names for a name key that matched nothing, unsorted, ranked by edit distance.
    /// Enough of them for the best `limit`.
    pub fn closest_names(&self, name: &str, limit: usize) -> Vec<(usize, u32)> {
        let mut found = Vec::new();
        typos(&self.names, name, limit, &mut found);
        found
    }

    /// Also says how many usernames the typo search looked at.
    fn closest_usernames_examined(&self, login: &str, limit: usize) -> (Vec<(usize, u32)>, usize) {
        let mut found = Vec::new();
        let dotted = format!("{login}.");
        for i in self.usernames.with_prefix(&dotted).into_iter().take(limit) {
            found.push((0, self.usernames.owner(i)));
        }
        if let Some((production, _)) = login.rsplit_once('.').filter(|(p, _)| {
            p.contains('@') && p.rsplit('@').next().is_some_and(|d| d.contains('.'))
        }) {
            if let Some(user) = self.user_by_username(production) {
                found.push((0, user));
            }
        }
        let examined = typos(&self.usernames, login, limit, &mut found);
        (found, examined)
    }
}

/// Adds the keys within `max_distance(query)` edits of `query` (an equal key excepted) to
/// `found`, or, when fewer edits already give `limit` users, only those: a user further away
/// would rank after all of them. Returns how many keys it looked at.
fn typos(keys: &SortedKeys, query: &str, limit: usize, found: &mut Vec<(usize, u32)>) -> usize {
    let start = found.len();
    let mut examined = 0;
    for max in 1..=max_distance(query) {
        found.truncate(start);
        examined += keys.within(query, max, found);
        // The query itself matched nothing: an equal key is no suggestion.
        let mut at = start;
        while at < found.len() {
            if found[at].0 == 0 {
                found.swap_remove(at);
            } else {
                at += 1;
            }
        }
        let users: rustc_hash::FxHashSet<u32> = found.iter().map(|&(_, u)| u).collect();
        if users.len() >= limit {
            break;
        }
    }
    examined
}

/// The best `limit` of ranked matches: lowest rank first, then by username; each user once.
pub fn best_matches<'a>(
    mut found: Vec<(usize, u32)>,
    limit: usize,
    username: impl Fn(u32) -> &'a str,
) -> Vec<u32> {
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| username(a.1).cmp(username(b.1))));
    let mut seen = rustc_hash::FxHashSet::default();
    found
        .into_iter()
        .filter(|(_, u)| seen.insert(*u))
        .map(|(_, u)| u)
        .take(limit)
        .collect()
}
