//! The addresses in a Slack message, for the "Check CRM username" message shortcut: the
//! Salesforce usernames, emails and 15/18-character user ids in its text and its `mailto:`
//! links, each parsed as a [`Query`], deduplicated, at most [`MAX_MESSAGE_ADDRESSES`].
//!
//! The text is Slack's: `<mailto:a@b.com|a@b.com>` for an email it linked, `<https://…|label>`
//! for other links, `<@U1>`, `<#C1>`, `<!channel>` for mentions, and `&amp;`, `&lt;`, `&gt;`
//! escapes. Only a `mailto:` link's target is read; any other link is skipped whole, label
//! included (a label is free text: `<https://evil|jane@acme.com>` does not name jane).
//!
//! Our own scanner rather than a regex or a linkify crate: what counts as an address here is
//! the query parser's (an `@` makes a login, `SfId` decides an id), and Slack's `<…>` markup
//! must be taken apart first; a crate would find the same tokens and add a dependency.

use super::{Query, Subject};

/// At most this many addresses are checked per message: one answer each, in one thread.
pub const MAX_MESSAGE_ADDRESSES: usize = 5;
/// Only the start of a message is scanned: a ticket names its user near the top, and Slack
/// messages run to 40,000 characters.
pub const MAX_SCANNED_BYTES: usize = 8_000;
/// Longer tokens are no username (Salesforce's limit is 80) and are skipped.
const MAX_TOKEN_CHARS: usize = 120;

/// The addresses in `text`, in the order they appear, each once.
pub fn message_addresses(text: &str) -> Vec<Query> {
    let text = head(text, MAX_SCANNED_BYTES);
    let mut found: Vec<Query> = Vec::new();
    let mut add = |candidate: &str| {
        if found.len() >= MAX_MESSAGE_ADDRESSES {
            return;
        }
        if let Some(query) = address(candidate) {
            if !found.iter().any(|q| q.subject == query.subject) {
                found.push(query);
            }
        }
    };
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        scan_plain(&rest[..open], &mut add);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            rest = after;
            continue;
        };
        // `<mailto:target|label>`: the target is the address; other links and mentions are
        // skipped with their labels.
        let inner = &after[..close];
        if let Some(mailto) = inner.strip_prefix("mailto:") {
            let target = mailto.split_once('|').map_or(mailto, |(t, _)| t);
            let target = target.split_once('?').map_or(target, |(t, _)| t);
            add(&unescape(target));
        }
        rest = &after[close + 1..];
    }
    scan_plain(rest, &mut add);
    found
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Plain text: split on anything that cannot be part of a username, email or id.
fn scan_plain(text: &str, add: &mut impl FnMut(&str)) {
    let text = unescape(text);
    for token in text.split(|c: char| !is_address_char(c)) {
        add(token);
    }
}

fn is_address_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '%' | '+' | '-' | '\'')
}

/// A token as a query, when it is an email-shaped login or a Salesforce user id.
fn address(token: &str) -> Option<Query> {
    // "jane@acme.com's dropdown": the possessive is not part of the address.
    let token = token.strip_suffix("'s").unwrap_or(token);
    let token = token.trim_matches(|c: char| matches!(c, '.' | '-' | '_' | '\'' | '+' | '%'));
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return None;
    }
    // Logins are case-insensitive: lower-cased, so that the answer names them as the query does.
    let token = if token.contains('@') {
        if !is_email_shaped(token) {
            return None;
        }
        token.to_lowercase()
    } else if is_user_id_shaped(token) {
        token.to_owned()
    } else {
        return None;
    };
    let query = Query::parse(&token).ok()?;
    matches!(query.subject, Subject::Login(_) | Subject::Id(_)).then_some(query)
}

/// `local@domain.tld`: one `@`, a local part, a domain of dot-separated labels of letters,
/// digits and hyphens, the last one letters only.
fn is_email_shaped(token: &str) -> bool {
    let Some((local, domain)) = token.split_once('@') else {
        return false;
    };
    if local.is_empty() || domain.contains('@') {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// 15 or 18 letters and digits starting with `005` (a user): other ids and words are not
/// taken, so a ticket's other record ids are not checked as users.
fn is_user_id_shaped(token: &str) -> bool {
    (token.len() == 15 || token.len() == 18)
        && token.starts_with("005")
        && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(message: &str) -> Vec<String> {
        message_addresses(message)
            .into_iter()
            .map(|q| q.text)
            .collect()
    }

    #[test]
    fn emails_usernames_and_user_ids_are_found_in_order() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Hi, <mailto:Jane@Acme.com|Jane@Acme.com> cannot be picked",
                &["jane@acme.com"],
            ),
            (
                "Username jane@acme.com.uat (sandbox), id 005Ak00000ALXK1 and bob@acme.com.",
                &["jane@acme.com.uat", "005Ak00000ALXK1IAP", "bob@acme.com"],
            ),
            (
                "user: 005Ak00000ALXK1IAP, please check",
                &["005Ak00000ALXK1IAP"],
            ),
            (
                "(sam.sales@acme.com.partners)",
                &["sam.sales@acme.com.partners"],
            ),
            (
                "o'brien+test@acme.co.uk's dropdown",
                &["o'brien+test@acme.co.uk"],
            ),
            ("Nothing here, just a name: Jane Doe", &[]),
            ("Not an address: @here, a@b, 00D000000000001, x@y.1", &[]),
            ("Account 001Ak00000ABCDE and group 00G000000000001", &[]),
        ];
        for (message, expected) in cases {
            assert_eq!(texts(message), *expected, "{message}");
        }
    }

    #[test]
    fn each_address_is_taken_once_whatever_its_case_or_form() {
        assert_eq!(
            texts(
                "<mailto:jane@acme.com|jane@acme.com> JANE@ACME.COM jane@acme.com \
                 005Ak00000ALXK1 005Ak00000ALXK1IAP"
            ),
            ["jane@acme.com", "005Ak00000ALXK1IAP"]
        );
    }

    #[test]
    fn at_most_five_are_taken() {
        let message = (1..=8)
            .map(|n| format!("user{n}@acme.com"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            texts(&message),
            [
                "user1@acme.com",
                "user2@acme.com",
                "user3@acme.com",
                "user4@acme.com",
                "user5@acme.com"
            ]
        );
    }

    #[test]
    fn only_a_mailto_links_target_is_taken_never_another_links_label() {
        assert_eq!(
            texts("<!channel> see <https://evil.example/|jane@acme.com> <@U123> <#C1|support>"),
            Vec::<String>::new()
        );
        // A mailto whose label says otherwise: the target is what Slack links to.
        assert_eq!(
            texts("<mailto:bob@acme.com|jane@acme.com>"),
            ["bob@acme.com"]
        );
        assert_eq!(
            texts("<mailto:bob@acme.com?subject=hi|bob>"),
            ["bob@acme.com"]
        );
    }

    #[test]
    fn escapes_and_unclosed_markup_do_not_hide_or_invent_addresses() {
        assert_eq!(texts("&lt;jane@acme.com&gt;"), ["jane@acme.com"]);
        assert_eq!(texts("<jane@acme.com"), ["jane@acme.com"]);
        assert_eq!(texts("a&amp;b@acme.com"), ["b@acme.com"]);
    }

    #[test]
    fn only_the_start_of_a_long_message_is_scanned() {
        let filler = "é".repeat(MAX_SCANNED_BYTES);
        assert_eq!(
            texts(&format!("{filler} jane@acme.com")),
            Vec::<String>::new()
        );
        assert_eq!(texts(&format!("jane@acme.com {filler}")), ["jane@acme.com"]);
        let long = format!("{}@acme.com", "a".repeat(200));
        assert_eq!(texts(&long), Vec::<String>::new());
    }
}
