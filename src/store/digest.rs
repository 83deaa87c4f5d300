//! Digests of a generation's keys, so that a full refresh can tell which keys differ from
//! what it would write without reading them back.
//!
//! A key's digest is the sum, modulo 2^128, of a 128-bit hash (XXH3) of each of its entries:
//! each field and value of a hash, each member of a sorted set, the value of a string. A sum
//! does not depend on the order entries were written in, and an entry changed moves it by
//! the difference of two hashes: a patch sends that difference, and Redis adds it
//! ([`ADD_LUA`]), without the refresher reading the digest first. A key without entries has
//! digest 0 and no field in `digests`.
//!
//! The digests tell a full refresh what to rewrite; nothing reads them to answer a check.
//! Equal digests of unequal contents would leave a key stale until it changes again: with
//! 128 bits, by chance, never in practice.

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::Xxh3;

/// What a re-check writes in `digests` for the keys it rewrote: their content is no longer
/// what the refresher's data says, so a full refresh rewrites them whatever it computes.
pub const UNKNOWN: &str = "?";

/// The hash of one entry: a hash's field and value, a sorted set's member (empty field and the
/// member), a string's value (empty field). The field's length comes first, so that no two
/// (field, value) pairs hash the same bytes.
pub fn entry(field: &[u8], value: &[u8]) -> u128 {
    let mut h = Xxh3::new();
    h.update(&(field.len() as u64).to_le_bytes());
    h.update(field);
    h.update(value);
    h.digest128()
}

/// A digest as `digests` holds it: 16 bytes, big-endian (what Lua's `struct` reads as four
/// 32-bit numbers).
pub fn bytes(digest: u128) -> Vec<u8> {
    digest.to_be_bytes().to_vec()
}

/// A digest from `digests`; `None` for [`UNKNOWN`] or anything else that is not one.
pub fn parse(raw: &[u8]) -> Option<u128> {
    Some(u128::from_be_bytes(raw.try_into().ok()?))
}

/// Digests by key name (`GenerationKeys::name_of`), summed as entries are added or removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Digests(FxHashMap<String, u128>);

impl Digests {
    pub fn add(&mut self, name: &str, entry: u128) {
        self.update(name, |d| d.wrapping_add(entry));
    }

    pub fn remove(&mut self, name: &str, entry: u128) {
        self.update(name, |d| d.wrapping_sub(entry));
    }

    fn update(&mut self, name: &str, f: impl FnOnce(u128) -> u128) {
        match self.0.get_mut(name) {
            Some(d) => *d = f(*d),
            None => {
                self.0.insert(name.to_owned(), f(0));
            }
        }
    }

    /// A key's digest: 0 for one without entries.
    pub fn get(&self, name: &str) -> u128 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Every name with a digest other than 0.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u128)> {
        self.0
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|(n, d)| (n.as_str(), *d))
    }
}

/// Lua: `add128(a, b)`, two digests ([`bytes`]) added modulo 2^128. Lua's numbers are
/// doubles, so it adds 32 bits at a time with a carry, read and written by Redis' `struct`
/// library (one call each way: a patch adds thousands of differences in one script).
pub const ADD_LUA: &str = r#"
local function add128(a, b)
  local a1, a2, a3, a4 = struct.unpack('>I4I4I4I4', a)
  local b1, b2, b3, b4 = struct.unpack('>I4I4I4I4', b)
  local s4, s3, s2, s1 = a4 + b4, a3 + b3, a2 + b2, a1 + b1
  if s4 >= 4294967296 then s4, s3 = s4 - 4294967296, s3 + 1 end
  if s3 >= 4294967296 then s3, s2 = s3 - 4294967296, s2 + 1 end
  if s2 >= 4294967296 then s2, s1 = s2 - 4294967296, s1 + 1 end
  if s1 >= 4294967296 then s1 = s1 - 4294967296 end
  return struct.pack('>I4I4I4I4', s1, s2, s3, s4)
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_does_not_depend_on_the_order_of_its_entries_and_removal_undoes_addition() {
        let (a, b, c) = (entry(b"f1", b"x"), entry(b"f2", b"y"), entry(b"", b"m"));
        let mut one = Digests::default();
        one.add("user:1", a);
        one.add("user:1", b);
        let mut other = Digests::default();
        other.add("user:1", b);
        other.add("user:1", c);
        other.remove("user:1", c);
        other.add("user:1", a);
        assert_eq!(one.get("user:1"), other.get("user:1"));
        other.remove("user:1", a);
        other.remove("user:1", b);
        assert_eq!(other.get("user:1"), 0);
        assert_eq!(
            other.iter().count(),
            0,
            "a key without entries has no digest"
        );
    }

    #[test]
    fn the_fields_length_separates_field_from_value() {
        assert_ne!(entry(b"ab", b"c"), entry(b"a", b"bc"));
        assert_ne!(entry(b"", b"m"), entry(b"m", b""));
    }

    #[test]
    fn bytes_round_trip_and_the_unknown_mark_is_not_a_digest() {
        for d in [0, 1, u128::MAX, entry(b"f", b"v")] {
            assert_eq!(parse(&bytes(d)), Some(d));
            assert_eq!(bytes(d).len(), 16);
        }
        assert_eq!(bytes(1)[15], 1, "big-endian");
        assert_eq!(parse(UNKNOWN.as_bytes()), None);
        assert_eq!(parse(b"zz"), None);
    }
}
