use super::sorted_keys::*;
use super::*;
use crate::domain::snapshot::lower;
use crate::domain::{SfId, name_key};

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
