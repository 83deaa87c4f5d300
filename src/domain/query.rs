//! What a person typed after `/crm-username check`, parsed and bounded.
//!
//! Accepts a Salesforce username or email, a 15- or 18-character user id, or a person's name,
//! optionally followed by `for <AE user email or id>` (the AE user being edited). Slack's
//! wrappings (`<mailto:a@b.com|a@b.com>`) and entity escapes (`&amp;`) are undone first.

use std::fmt;

use super::SfId;

/// Longer input is refused before any work: no username, email or name comes close.
pub const MAX_INPUT_BYTES: usize = 4_000;
/// Longest subject or target after normalisation (Salesforce usernames are at most 80).
pub const MAX_PART_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A Salesforce user id (`005...`).
    Id(SfId),
    /// A username or email, lower-cased.
    Login(String),
    /// A full or partial name, lower-cased, single-spaced.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetRef {
    AeId(u64),
    /// Lower-cased email.
    Email(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query as understood, for echoing back (`jane@acme.com for 42`).
    pub text: String,
    pub subject: Subject,
    pub target: Option<TargetRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "Nothing to check. Type a Salesforce username, email, user id or name, e.g. `check jane@acme.com`."
    )]
    Empty,
    #[error(
        "That is too long to be a username, email or name ({0} characters). Type one Salesforce username, email, user id or name."
    )]
    TooLong(usize),
    #[error(
        "A Slack mention cannot be checked: type the person's Salesforce username or email instead."
    )]
    SlackMention,
    #[error("{0:?} is a Salesforce id, but not of a user (user ids start with 005).")]
    NotAUserId(String),
    #[error(
        "Say which Account Engagement user is being edited after `for`, by email or numeric id, e.g. `check jane@acme.com for 42`."
    )]
    EmptyTarget,
    #[error(
        "{0:?} does not name an Account Engagement user: after `for`, use the AE user's email or numeric id."
    )]
    InvalidTarget(String),
}

impl Query {
    pub fn parse(input: &str) -> Result<Self, QueryError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(QueryError::TooLong(input.chars().count()));
        }
        let cleaned = normalize(input)?;
        let tokens: Vec<&str> = cleaned.split(' ').filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(QueryError::Empty);
        }
        let split = tokens
            .iter()
            .rposition(|t| t.eq_ignore_ascii_case("for"))
            .filter(|&i| i > 0);
        let (subject_tokens, target_tokens) = match split {
            Some(i) => (&tokens[..i], Some(&tokens[i + 1..])),
            None => (&tokens[..], None),
        };
        let subject_text = trim_punctuation(&subject_tokens.join(" "));
        let subject = parse_subject(&subject_text)?;
        let target = match target_tokens {
            None => None,
            Some([]) => return Err(QueryError::EmptyTarget),
            Some(tokens) => Some(parse_target(&trim_punctuation(&tokens.join(" ")))?),
        };
        let mut text = match &subject {
            Subject::Id(id) => id.to_string(),
            _ => subject_text,
        };
        if let Some(target) = &target {
            text.push_str(" for ");
            text.push_str(&target.to_string());
        }
        Ok(Query {
            text,
            subject,
            target,
        })
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRef::AeId(id) => write!(f, "{id}"),
            TargetRef::Email(email) => f.write_str(email),
        }
    }
}

fn parse_subject(text: &str) -> Result<Subject, QueryError> {
    if text.is_empty() {
        return Err(QueryError::Empty);
    }
    if text.chars().count() > MAX_PART_CHARS {
        return Err(QueryError::TooLong(text.chars().count()));
    }
    if text.contains('@') {
        return Ok(Subject::Login(text.to_lowercase()));
    }
    if !text.contains(' ') && text.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(id) = SfId::parse(text) {
            return if id.key_prefix() == "005" {
                Ok(Subject::Id(id))
            } else {
                Err(QueryError::NotAUserId(text.to_owned()))
            };
        }
    }
    Ok(Subject::Name(text.to_lowercase()))
}

fn parse_target(text: &str) -> Result<TargetRef, QueryError> {
    if text.is_empty() {
        return Err(QueryError::EmptyTarget);
    }
    if text.chars().count() > MAX_PART_CHARS {
        return Err(QueryError::TooLong(text.chars().count()));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(TargetRef::AeId)
            .map_err(|_| QueryError::InvalidTarget(text.to_owned()));
    }
    if text.contains('@') && !text.contains(' ') {
        return Ok(TargetRef::Email(text.to_lowercase()));
    }
    Err(QueryError::InvalidTarget(text.to_owned()))
}

/// Undoes Slack's formatting and drops characters that only disguise text.
fn normalize(input: &str) -> Result<String, QueryError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        out.push_str(&unwrap_slack_link(&after[..close])?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let unescaped = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let visible: String = unescaped
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| !c.is_control() && !is_invisible(c))
        .collect();
    Ok(visible
        .split(' ')
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}

/// `<mailto:a@b.com|a@b.com>` -> `a@b.com`; `<@U123>`, `<#C1>`, `<!here>` are mentions.
fn unwrap_slack_link(inner: &str) -> Result<String, QueryError> {
    if inner.starts_with('@') || inner.starts_with('#') || inner.starts_with('!') {
        return Err(QueryError::SlackMention);
    }
    let shown = match inner.split_once('|') {
        Some((_, label)) => label,
        None => inner,
    };
    Ok(shown.strip_prefix("mailto:").unwrap_or(shown).to_owned())
}

/// Zero-width and bidirectional-control characters: invisible, and never part of a username.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// People paste `jane@acme.com.` or `"jane@acme.com"`: those characters are never part of it.
fn trim_punctuation(text: &str) -> String {
    text.trim_matches(|c: char| {
        matches!(
            c,
            '.' | ',' | ';' | ':' | '?' | '!' | '"' | '\'' | '`' | '(' | ')' | '*' | '_' | '~'
        )
    })
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(input: &str) -> Subject {
        Query::parse(input).unwrap().subject
    }

    #[test]
    fn plain_username_is_a_lower_cased_login() {
        assert_eq!(
            subject("Jane@Acme.com"),
            Subject::Login("jane@acme.com".into())
        );
    }

    #[test]
    fn slack_mailto_wrapping_is_undone() {
        assert_eq!(
            subject("<mailto:jane@acme.com|jane@acme.com>"),
            Subject::Login("jane@acme.com".into())
        );
        assert_eq!(
            Query::parse("<mailto:a@x.com|a@x.com> for <mailto:b@x.com|b@x.com>").unwrap(),
            Query {
                text: "a@x.com for b@x.com".into(),
                subject: Subject::Login("a@x.com".into()),
                target: Some(TargetRef::Email("b@x.com".into())),
            }
        );
    }

    #[test]
    fn slack_entity_escapes_are_undone() {
        assert_eq!(
            subject("o&amp;brien@acme.com"),
            Subject::Login("o&brien@acme.com".into())
        );
        assert_eq!(
            subject("&lt;jane@acme.com&gt;"),
            Subject::Login("<jane@acme.com>".into())
        );
    }

    #[test]
    fn slack_mentions_are_refused_with_advice() {
        assert_eq!(Query::parse("<@U123ABC>"), Err(QueryError::SlackMention));
        assert_eq!(Query::parse("<!channel>"), Err(QueryError::SlackMention));
    }

    #[test]
    fn user_ids_of_15_and_18_characters_are_ids() {
        let id = SfId::parse("005Dn000003XyZa").unwrap();
        assert_eq!(subject("005Dn000003XyZa"), Subject::Id(id));
        assert_eq!(subject(&id.to_18()), Subject::Id(id));
        assert_eq!(subject(&id.to_18().to_lowercase()), Subject::Id(id));
    }

    #[test]
    fn ids_of_other_objects_are_refused() {
        assert_eq!(
            Query::parse("00GDn000003XyZa"),
            Err(QueryError::NotAUserId("00GDn000003XyZa".into()))
        );
    }

    #[test]
    fn names_are_lower_cased_and_single_spaced() {
        assert_eq!(subject("  Jane   DOE "), Subject::Name("jane doe".into()));
    }

    #[test]
    fn for_introduces_the_target_by_email_or_id() {
        let q = Query::parse("jane@acme.com for 42").unwrap();
        assert_eq!(q.target, Some(TargetRef::AeId(42)));
        let q = Query::parse("jane@acme.com FOR Bob@Acme.com").unwrap();
        assert_eq!(q.target, Some(TargetRef::Email("bob@acme.com".into())));
        assert_eq!(q.text, "jane@acme.com for bob@acme.com");
    }

    #[test]
    fn for_without_a_target_is_an_error() {
        assert_eq!(
            Query::parse("jane@acme.com for"),
            Err(QueryError::EmptyTarget)
        );
        assert_eq!(
            Query::parse("jane@acme.com for bob smith"),
            Err(QueryError::InvalidTarget("bob smith".into()))
        );
        assert_eq!(
            Query::parse("jane@acme.com for 99999999999999999999999"),
            Err(QueryError::InvalidTarget("99999999999999999999999".into()))
        );
    }

    #[test]
    fn a_name_that_is_only_for_is_a_name() {
        assert_eq!(subject("for"), Subject::Name("for".into()));
    }

    #[test]
    fn empty_and_oversized_input_is_refused() {
        assert_eq!(Query::parse("   "), Err(QueryError::Empty));
        assert_eq!(Query::parse("\u{200B}"), Err(QueryError::Empty));
        assert_eq!(
            Query::parse(&"a".repeat(300)),
            Err(QueryError::TooLong(300))
        );
        assert_eq!(
            Query::parse(&"a".repeat(5000)),
            Err(QueryError::TooLong(5000))
        );
    }

    #[test]
    fn invisible_and_control_characters_are_dropped() {
        assert_eq!(
            subject("ja\u{200B}ne@acme.com\u{202E}\u{1b}"),
            Subject::Login("jane@acme.com".into())
        );
    }

    #[test]
    fn surrounding_punctuation_is_dropped() {
        assert_eq!(
            subject("\"jane@acme.com\"."),
            Subject::Login("jane@acme.com".into())
        );
    }

    #[test]
    fn an_unclosed_bracket_is_kept_as_text() {
        assert_eq!(
            subject("<jane@acme.com"),
            Subject::Login("<jane@acme.com".into())
        );
    }
}
