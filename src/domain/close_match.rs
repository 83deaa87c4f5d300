//! Usernames and names kept sorted for exact lookups and "did you mean", without comparing a
//! query with every user.
//!
//! The keys sit sorted in one buffer and the search walks them as it would a trie: the
//! edit-distance rows of a prefix shared by many keys are computed once, and a prefix already
//! too far from every prefix of the query drops every key that starts with it (the next key
//! without it is found by binary search). What it finds is exactly what a comparison with every
//! key would find; it only skips the keys that cannot be close.

use std::ops::Range;

use super::org::name_key;
use super::snapshot::lower;
use super::{SfId, SfUser};

/// Strings in one buffer: two allocations for any number of them.
#[derive(Default)]
pub struct StringList {
    text: String,
    ends: Vec<u32>,
}

impl StringList {
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.text.as_bytes());
        put_u32s(out, &self.ends);
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        let text = std::str::from_utf8(take_bytes(input)?)
            .map_err(|_| DecodeError("text is not UTF-8"))?
            .to_owned();
        let ends = take_u32s(input)?;
        let mut at = 0;
        for &end in &ends {
            if (end as usize) < at || !text.is_char_boundary(end as usize) {
                return Err(DecodeError("string ends out of order"));
            }
            at = end as usize;
        }
        Ok(StringList { text, ends })
    }
}

/// Why a `Directory` could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("did-you-mean data is damaged: {0}")]
pub struct DecodeError(&'static str);

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    put_u32(out, values.len() as u32);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < n {
        return Err(DecodeError("cut short"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_u32(input: &mut &[u8]) -> Result<u32, DecodeError> {
    let bytes = take(input, 4)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = take_u32(input)? as usize;
    take(input, n)
}

fn take_u32s(input: &mut &[u8]) -> Result<Vec<u32>, DecodeError> {
    let n = take_u32(input)? as usize;
    let bytes = take(input, n.checked_mul(4).ok_or(DecodeError("too long"))?)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Keys grouped by length (in characters), each group sorted (byte order, which for UTF-8 is
/// code-point order), each key with its owner (a user). Within a group every key has the same
/// length, so "the rest of the key must line up with the rest of the query" holds or fails for
/// all keys sharing a prefix at once.
#[derive(Default)]
pub struct SortedKeys {
    keys: StringList,
    owners: Vec<u32>,
    /// (length in characters, first index) of each group, by length.
    groups: Vec<(u32, u32)>,
}

impl SortedKeys {
    pub fn new(entries: Vec<(String, u32)>) -> Self {
        let mut entries: Vec<(u32, String, u32)> = entries
            .into_iter()
            .map(|(key, owner)| (key.chars().count() as u32, key, owner))
            .collect();
        entries.sort_unstable();
        let mut keys = StringList {
            text: String::with_capacity(entries.iter().map(|(_, k, _)| k.len()).sum()),
            ends: Vec::with_capacity(entries.len()),
        };
        let mut owners = Vec::with_capacity(entries.len());
        let mut groups = Vec::new();
        for (i, (length, key, owner)) in entries.into_iter().enumerate() {
            if groups.last().is_none_or(|&(l, _)| l != length) {
                groups.push((length, i as u32));
            }
            keys.push(&key);
            owners.push(owner);
        }
        keys.shrink_to_fit();
        SortedKeys {
            keys,
            owners,
            groups,
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    pub fn key(&self, i: usize) -> &str {
        self.keys.get(i)
    }

    pub fn owner(&self, i: usize) -> u32 {
        self.owners[i]
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.keys.encode(out);
        put_u32s(out, &self.owners);
        let groups: Vec<u32> = self.groups.iter().flat_map(|&(l, s)| [l, s]).collect();
        put_u32s(out, &groups);
    }

    /// Reads what `encode` wrote for owners below `owners`, checking what lookups rely on.
    fn decode(input: &mut &[u8], owners: usize) -> Result<Self, DecodeError> {
        let keys = StringList::decode(input)?;
        let owned = take_u32s(input)?;
        if owned.len() != keys.len() || owned.iter().any(|&o| o as usize >= owners) {
            return Err(DecodeError("keys and owners disagree"));
        }
        let flat = take_u32s(input)?;
        let groups: Vec<(u32, u32)> = flat.chunks_exact(2).map(|g| (g[0], g[1])).collect();
        let ordered = groups
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if flat.len() % 2 != 0
            || !ordered
            || groups.first().is_some_and(|&(_, s)| s != 0)
            || groups
                .last()
                .is_some_and(|&(_, s)| s as usize >= keys.len())
            || (groups.is_empty() && !keys.is_empty())
        {
            return Err(DecodeError("length groups out of order"));
        }
        Ok(SortedKeys {
            keys,
            owners: owned,
            groups,
        })
    }

    /// The groups whose keys have a length in `lengths`: (length, range of indexes).
    fn groups(
        &self,
        lengths: std::ops::RangeInclusive<usize>,
    ) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
        self.groups
            .iter()
            .enumerate()
            .filter(move |(_, (length, _))| lengths.contains(&(*length as usize)))
            .map(|(g, &(length, start))| {
                let end = self
                    .groups
                    .get(g + 1)
                    .map_or(self.len(), |&(_, e)| e as usize);
                (length as usize, start as usize..end)
            })
    }

    /// The first index in `range` where `pred` stops holding (it holds, then does not).
    fn partition_point(&self, range: Range<usize>, pred: impl Fn(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Like `partition_point`, for a point that is usually near the start: galloping, then
    /// binary search (the keys skipped under a pruned prefix are mostly few).
    fn skip(&self, range: Range<usize>, pred: impl Fn(&str) -> bool) -> usize {
        let mut step = 1;
        let mut lo = range.start;
        while lo < range.end && pred(self.key(lo)) {
            let next = (lo + step).min(range.end);
            if next < range.end && pred(self.key(next)) {
                lo = next + 1;
                step *= 2;
            } else {
                return self.partition_point(lo + 1..next, pred);
            }
        }
        lo
    }

    /// Entries whose key equals `key`.
    pub fn equal(&self, key: &str) -> Range<usize> {
        let length = key.chars().count();
        let Some((_, range)) = self.groups(length..=length).next() else {
            return 0..0;
        };
        let start = self.partition_point(range.clone(), |k| k < key);
        start..self.partition_point(start..range.end, |k| k == key)
    }

    /// Entries whose key starts with `prefix`, sorted by key.
    pub fn with_prefix(&self, prefix: &str) -> Vec<usize> {
        let mut found = Vec::new();
        for (_, range) in self.groups(prefix.chars().count()..=usize::MAX) {
            let start = self.partition_point(range.clone(), |k| k < prefix);
            let end = self.partition_point(start..range.end, |k| k.starts_with(prefix));
            found.extend(start..end);
        }
        found.sort_by(|&a, &b| self.key(a).cmp(self.key(b)));
        found
    }

    /// Every entry whose key is within `max` edits (Levenshtein, by character) of `query`,
    /// with its distance. Returns how many keys it looked at.
    pub fn within(&self, query: &str, max: usize, found: &mut Vec<(usize, u32)>) -> usize {
        let mut examined = 0;
        let query: Vec<char> = query.chars().collect();
        let lengths = query.len().saturating_sub(max)..=query.len() + max;
        for (length, range) in self.groups(lengths) {
            let mut walk = Walk::new(&query, max, length);
            let mut previous = "";
            let mut i = range.start;
            while i < range.end {
                let key = self.key(i);
                examined += 1;
                let depth = walk.shared_depth(previous, key);
                previous = key;
                match walk.descend(key, depth) {
                    Step::Match(d) => {
                        found.push((d, self.owners[i]));
                        i += 1;
                    }
                    Step::NotThisKey => i += 1,
                    Step::NoKeyWithPrefix(bytes) => {
                        let prefix = &key[..bytes];
                        i = self.skip(i + 1..range.end, |k| k.starts_with(prefix));
                    }
                }
            }
        }
        examined
    }
}

enum Step {
    Match(usize),
    /// This key is too far; keys sharing its prefix may not be.
    NotThisKey,
    /// No key starting with the first this-many bytes of this key can be close.
    NoKeyWithPrefix(usize),
}

/// The edit-distance rows of the current key's prefixes against the query: row `d` holds the
/// distances between the key's first `d` characters and each prefix of the query, clamped to
/// `max + 1`. Only the band `d - max ..= d + max` of a row can be within `max`; cells outside
/// it are never written and stay at `max + 1`.
struct Walk<'q> {
    query: &'q [char],
    max: usize,
    /// Length of every key walked, in characters.
    length: usize,
    over: u32,
    rows: Vec<u32>,
    /// Byte length of the key's first `d` characters.
    offsets: Vec<usize>,
    /// Rows `0..=valid` describe prefixes of the previous key.
    valid: usize,
}

impl<'q> Walk<'q> {
    fn new(query: &'q [char], max: usize, length: usize) -> Self {
        let over = max as u32 + 1;
        let rows = (0..=query.len()).map(|j| (j as u32).min(over)).collect();
        Walk {
            query,
            max,
            length,
            over,
            rows,
            offsets: vec![0],
            valid: 0,
        }
    }

    fn width(&self) -> usize {
        self.query.len() + 1
    }

    /// How many leading characters `key` shares with `previous` whose rows are still valid.
    fn shared_depth(&self, previous: &str, key: &str) -> usize {
        let limit = self.offsets[self.valid];
        let common = previous.as_bytes()[..limit.min(previous.len())]
            .iter()
            .zip(key.as_bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let mut depth = self.valid;
        while self.offsets[depth] > common {
            depth -= 1;
        }
        depth
    }

    fn descend(&mut self, key: &str, mut depth: usize) -> Step {
        let (m, total) = (self.query.len(), self.length);
        let mut chars = key[self.offsets[depth]..].chars();
        // Characters at the end of the key that equal the end of the query (often a domain),
        // counted when first needed.
        let mut same_end = None;
        loop {
            self.valid = depth;
            let row = &self.rows[depth * self.width()..(depth + 1) * self.width()];
            // A lower bound for every key of this length with this prefix: the rest of the key
            // must line up with the rest of the query, one edit per character of difference.
            let rest = total - depth;
            let (lo, hi) = (depth.saturating_sub(self.max), (depth + self.max).min(m));
            let bound = (lo..=hi)
                .map(|j| row[j] + (m - j).abs_diff(rest) as u32)
                .min()
                .unwrap_or(self.over);
            if bound > self.max as u32 {
                return Step::NoKeyWithPrefix(self.offsets[depth]);
            }
            // The rest of the key is the end of the query: aligning them costs nothing, and
            // no other alignment can cost less than the bound.
            let same_end = *same_end.get_or_insert_with(|| {
                key.chars()
                    .rev()
                    .zip(self.query.iter().rev())
                    .take_while(|(a, b)| a == *b)
                    .count()
            });
            if rest <= same_end && row[m - rest] == bound {
                return Step::Match(bound as usize);
            }
            if depth == total {
                return Step::NotThisKey;
            }
            let Some(c) = chars.next() else {
                return Step::NotThisKey;
            };
            self.push_row(depth + 1, c);
            depth += 1;
        }
    }

    /// Computes row `depth` from row `depth - 1` and the key's character `c` at `depth - 1`.
    fn push_row(&mut self, depth: usize, c: char) {
        let width = self.width();
        if self.rows.len() < (depth + 1) * width {
            self.rows.resize((depth + 1) * width, self.over);
            self.offsets.resize(depth + 1, 0);
        }
        self.offsets[depth] = self.offsets[depth - 1] + c.len_utf8();
        let (before, after) = self.rows.split_at_mut(depth * width);
        let prev = &before[(depth - 1) * width..];
        let cur = &mut after[..width];
        let over = self.over;
        if depth <= self.max {
            cur[0] = depth as u32;
        }
        let lo = depth.saturating_sub(self.max).max(1);
        let hi = (depth + self.max).min(self.query.len());
        for j in lo..=hi {
            let substitute = prev[j - 1] + u32::from(self.query[j - 1] != c);
            let value = substitute.min(prev[j] + 1).min(cur[j - 1] + 1).min(over);
            cur[j] = value;
        }
    }
}

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

const DIRECTORY_MAGIC: &[u8] = b"crm-username directory 1\n";

/// What "did you mean" shows of each user (id, username, name), with the keys to find them:
/// what a store that does not hold the whole org keeps in memory for it, about 130 bytes a
/// user.
pub struct Directory {
    keys: UserKeys,
    ids: Vec<SfId>,
    usernames: StringList,
    names: StringList,
}

impl Directory {
    /// `users`: (id, username, name) of each user.
    pub fn new<'a>(users: impl ExactSizeIterator<Item = (SfId, &'a str, &'a str)>) -> Self {
        let mut ids = Vec::with_capacity(users.len());
        let mut usernames = StringList::default();
        let mut names = StringList::default();
        let mut keys = Vec::with_capacity(users.len());
        for (id, username, name) in users {
            ids.push(id);
            usernames.push(username);
            names.push(name);
            keys.push((lower(username).into_owned(), name_key(name)));
        }
        usernames.shrink_to_fit();
        names.shrink_to_fit();
        Directory {
            keys: UserKeys::new(keys.into_iter()),
            ids,
            usernames,
            names,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A compact binary form, already sorted: reading it back costs a copy, not a sort, and
    /// little more memory than the result.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(DIRECTORY_MAGIC);
        put_u32(&mut out, self.ids.len() as u32);
        for id in &self.ids {
            out.extend_from_slice(id.as_str15().as_bytes());
        }
        self.usernames.encode(&mut out);
        self.names.encode(&mut out);
        self.keys.usernames.encode(&mut out);
        self.keys.names.encode(&mut out);
        out
    }

    pub fn from_bytes(mut input: &[u8]) -> Result<Self, DecodeError> {
        let input = &mut input;
        if take(input, DIRECTORY_MAGIC.len())? != DIRECTORY_MAGIC {
            return Err(DecodeError("not a directory"));
        }
        let n = take_u32(input)? as usize;
        let raw = take(input, n.checked_mul(15).ok_or(DecodeError("too long"))?)?;
        let ids = raw
            .chunks_exact(15)
            .map(|id| {
                std::str::from_utf8(id)
                    .ok()
                    .and_then(|id| SfId::parse(id).ok())
                    .ok_or(DecodeError("bad user id"))
            })
            .collect::<Result<Vec<SfId>, _>>()?;
        let usernames = StringList::decode(input)?;
        let names = StringList::decode(input)?;
        let keys = UserKeys {
            usernames: SortedKeys::decode(input, n)?,
            names: SortedKeys::decode(input, n)?,
        };
        if usernames.len() != n || names.len() != n || !input.is_empty() {
            return Err(DecodeError("counts disagree"));
        }
        Ok(Directory {
            keys,
            ids,
            usernames,
            names,
        })
    }

    /// As `Org::closest_usernames`; the users carry only id, username and name.
    pub fn closest_usernames(&self, login: &str, limit: usize) -> Vec<SfUser> {
        self.users(self.keys.closest_usernames(login, limit), limit)
    }

    /// As `Org::closest_names`; the users carry only id, username and name.
    pub fn closest_names(&self, name: &str, limit: usize) -> Vec<SfUser> {
        self.users(self.keys.closest_names(name, limit), limit)
    }

    fn users(&self, found: Vec<(usize, u32)>, limit: usize) -> Vec<SfUser> {
        best_matches(found, limit, |i| self.usernames.get(i as usize))
            .into_iter()
            .map(|i| {
                let i = i as usize;
                SfUser {
                    id: self.ids[i],
                    username: self.usernames.get(i).to_owned(),
                    email: String::new(),
                    name: self.names.get(i).to_owned(),
                    is_active: true,
                    profile_id: None,
                    profile_name: None,
                    user_license: None,
                    role_id: None,
                    user_type: None,
                    modified_at: None,
                }
            })
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(words: &[&str]) -> SortedKeys {
        SortedKeys::new(
            words
                .iter()
                .enumerate()
                .map(|(i, w)| (w.to_string(), i as u32))
                .collect(),
        )
    }

    /// What comparing with every key finds.
    fn scan(words: &[&str], query: &str, max: usize) -> Vec<(usize, u32)> {
        let mut out: Vec<(usize, u32)> = words
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let d = strsim::levenshtein(w, query);
                (d <= max).then_some((d, i as u32))
            })
            .collect();
        out.sort();
        out
    }

    fn walk(words: &[&str], query: &str, max: usize) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        keys(words).within(query, max, &mut out);
        out.sort();
        out
    }

    #[test]
    fn the_walk_finds_exactly_what_a_scan_finds() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "user1@x.com",
            "user12@x.com",
            "user123@x.com",
            "usr12@x.com",
            "user21@x.com",
            "jane@acme.com",
            "jane@acme.com.uat",
            "jane.doe@acme.com",
            "zoë@acme.com",
            "zoe@acme.com",
            "jöhn",
            "john",
            "jane doe 12",
            "jane doe 123",
        ];
        let queries = [
            "",
            "a",
            "b",
            "abc",
            "user12@x.com",
            "uer12@x.com",
            "usre12@x.com",
            "jnae@acme.com",
            "zoe@acme.com",
            "zoë",
            "john",
            "jane doe 13",
            "xxxxxxxx",
        ];
        for query in queries {
            for max in 0..5 {
                assert_eq!(
                    walk(&words, query, max),
                    scan(&words, query, max),
                    "{query:?} max {max}"
                );
            }
        }
    }

    #[test]
    fn lookups_by_key_and_prefix() {
        let k = keys(&["b", "a.x", "a", "a.y", "c"]);
        assert_eq!(k.key(k.equal("a").start), "a");
        assert_eq!(k.equal("a").len(), 1);
        assert!(k.equal("d").is_empty());
        let with: Vec<&str> = k.with_prefix("a.").iter().map(|&i| k.key(i)).collect();
        assert_eq!(with, ["a.x", "a.y"]);
    }

    proptest::proptest! {
        #[test]
        fn the_walk_agrees_with_a_scan_on_random_keys(
            words in proptest::collection::vec("[abé.@]{0,7}", 0..40),
            query in "[abé.@]{0,7}",
            max in 0usize..4,
        ) {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(walk(&words, &query, max), scan(&words, &query, max));
        }
    }

    const FIRST: [&str; 6] = ["Jane", "John", "Alex", "Maria", "Wei", "Zoë"];
    const LAST: [&str; 5] = ["Doe", "Smith", "García", "Kim", "Novak"];

    /// 100,000 users shaped like a real org's: one domain, names that repeat but for a number.
    fn large() -> (UserKeys, Vec<(String, String)>) {
        let users: Vec<(String, String)> = (0..100_000)
            .map(|i| {
                (
                    format!("user{i}@synthetic.example.com"),
                    format!("{} {} {i}", FIRST[i % 6], LAST[i / 6 % 5]),
                )
            })
            .collect();
        let keys = UserKeys::new(
            users
                .iter()
                .map(|(u, n)| (lower(u).into_owned(), name_key(n))),
        );
        (keys, users)
    }

    #[test]
    fn typical_typos_find_the_user_among_100k_without_looking_at_most_of_them() {
        let (keys, users) = large();
        let best = |found: Vec<(usize, u32)>| -> Vec<String> {
            best_matches(found, 10, |i| &users[i as usize].0)
                .into_iter()
                .map(|i| users[i as usize].0.clone())
                .collect()
        };
        let cases = [
            ("uer12345@synthetic.example.com", "one character missing"),
            ("usser12345@synthetic.example.com", "one character doubled"),
            ("usre12345@synthetic.example.com", "two letters swapped"),
            ("usr12345@synthetic.exmple.com", "two characters missing"),
            ("iser12345@synthetic.example.com", "first letter wrong"),
            ("user12345@synthetic.example.co", "last letter missing"),
        ];
        for (query, what) in cases {
            let (found, examined) = keys.closest_usernames_examined(query, 10);
            assert!(examined < 20_000, "{what}: looked at {examined} usernames");
            let best = best(found);
            assert_eq!(
                best[0], "user12345@synthetic.example.com",
                "{what}: {best:?}"
            );
        }
        // A production username typed in a sandbox.
        let best = best(keys.closest_usernames("user777@synthetic.example.com.uat", 10));
        assert_eq!(best, ["user777@synthetic.example.com"]);
    }

    #[test]
    fn name_typos_find_the_user_among_100k_without_looking_at_most_of_them() {
        let (keys, users) = large();
        // User 4242 is "Jane García 4242".
        assert_eq!(users[4242].1, "Jane García 4242");
        for query in [
            "jnae garcía 4242",
            "jane garcia 4242",
            "jane garcía 424",
            "jane garcíaa 4242",
        ] {
            let mut found = Vec::new();
            let examined = typos(&keys.names, query, 10, &mut found);
            assert!(examined < 20_000, "{query}: looked at {examined} names");
            let best: Vec<u32> = best_matches(found, 10, |i| &users[i as usize].0);
            assert_eq!(best[0], 4242, "{query}");
        }
    }

    fn directory() -> Directory {
        let users: Vec<(SfId, String, String)> = (0..300)
            .map(|i| {
                let id = SfId::parse(&format!("005Sy{i:010}")).unwrap();
                (
                    id,
                    format!("User{i}@Acme.com"),
                    format!("{} Doe {i}", FIRST[i % 6]),
                )
            })
            .collect();
        Directory::new(users.iter().map(|(id, u, n)| (*id, u.as_str(), n.as_str())))
    }

    #[test]
    fn a_directory_read_back_from_bytes_answers_the_same() {
        let original = directory();
        let copy = Directory::from_bytes(&original.to_bytes()).unwrap();
        assert_eq!(copy.len(), 300);
        for login in ["usr12@acme.com", "user1@acme.com.uat", "user12@acme.co"] {
            let want = original.closest_usernames(login, 10);
            assert!(!want.is_empty(), "{login}");
            assert_eq!(copy.closest_usernames(login, 10), want, "{login}");
        }
        let want = original.closest_names("zoe doe 11", 10);
        assert_eq!(want[0].name, "Zoë Doe 11");
        assert_eq!(copy.closest_names("zoe doe 11", 10), want);
    }

    #[test]
    fn damaged_directory_bytes_are_an_error_not_a_panic() {
        let bytes = directory().to_bytes();
        for cut in (0..bytes.len()).step_by(97) {
            assert!(
                Directory::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Directory::from_bytes(&longer).is_err());
        assert!(Directory::from_bytes(b"[{\"id\": 1}]").is_err());
    }
}
