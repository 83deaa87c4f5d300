//! Keys sorted by length, searched like a trie, and the strings they live in.

use std::ops::Range;

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

    pub(super) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.text.as_bytes());
        put_u32s(out, &self.ends);
    }

    pub(super) fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
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
pub struct DecodeError(pub(super) &'static str);

pub(super) fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

pub(super) fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    put_u32(out, values.len() as u32);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < n {
        return Err(DecodeError("cut short"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

pub(super) fn take_u32(input: &mut &[u8]) -> Result<u32, DecodeError> {
    let bytes = take(input, 4)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub(super) fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = take_u32(input)? as usize;
    take(input, n)
}

pub(super) fn take_u32s(input: &mut &[u8]) -> Result<Vec<u32>, DecodeError> {
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

    pub fn key(&self, i: usize) -> &str {
        self.keys.get(i)
    }

    pub fn owner(&self, i: usize) -> u32 {
        self.owners[i]
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        self.keys.encode(out);
        put_u32s(out, &self.owners);
        let groups: Vec<u32> = self.groups.iter().flat_map(|&(l, s)| [l, s]).collect();
        put_u32s(out, &groups);
    }

    /// Reads what `encode` wrote for owners below `owners`, checking what lookups rely on.
    pub(super) fn decode(input: &mut &[u8], owners: usize) -> Result<Self, DecodeError> {
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
    pub(super) fn groups(
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
    pub(super) fn partition_point(
        &self,
        range: Range<usize>,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
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
    pub(super) fn skip(&self, range: Range<usize>, pred: impl Fn(&str) -> bool) -> usize {
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
    pub(super) fn new(query: &'q [char], max: usize, length: usize) -> Self {
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

    pub(super) fn width(&self) -> usize {
        self.query.len() + 1
    }

    /// How many leading characters `key` shares with `previous` whose rows are still valid.
    pub(super) fn shared_depth(&self, previous: &str, key: &str) -> usize {
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

    pub(super) fn descend(&mut self, key: &str, mut depth: usize) -> Step {
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
    pub(super) fn push_row(&mut self, depth: usize, c: char) {
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
