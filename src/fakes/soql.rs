//! The SOQL the fake Salesforce understands: `SELECT fields FROM Object [WHERE condition
//! [AND condition ...]] [GROUP BY field] [LIMIT n]`, where a condition is `Field = 'text'`,
//! `Field IN ('text', ...)` or `Field >= <datetime>`. Our own small parser: the fake needs these
//! shapes only, and a general SOQL crate would accept far more than the fake can answer.
//! Anything else is refused as Salesforce refuses it, `MALFORMED_QUERY`.

use chrono::{DateTime, Utc};

/// Salesforce refuses a SOQL statement longer than this (characters).
pub const MAX_SOQL_CHARS: usize = 100_000;

/// One condition of a `WHERE` clause; the field as written (compare case-insensitively).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `Field = 'text'`.
    Eq(String, String),
    /// `Field IN ('text', ...)`.
    In(String, Vec<String>),
    /// `Field >= 2026-12-01T10:00:00Z`.
    AtOrAfter(String, DateTime<Utc>),
}

impl Condition {
    pub fn field(&self) -> &str {
        match self {
            Condition::Eq(field, _) | Condition::In(field, _) | Condition::AtOrAfter(field, _) => {
                field
            }
        }
    }
}

/// A parsed statement.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Soql {
    /// The select list as written: fields, `COUNT()` or `COUNT(Id)`.
    pub fields: Vec<String>,
    pub object: String,
    /// All must hold (`AND`).
    pub conditions: Vec<Condition>,
    pub group_by: Option<String>,
    pub limit: Option<usize>,
}

impl Soql {
    /// `SELECT COUNT() FROM ...`: only `totalSize` is answered.
    pub fn count_only(&self) -> bool {
        matches!(&self.fields[..], [only] if only.eq_ignore_ascii_case("COUNT()"))
    }

    /// Whether the select list has an aggregate function, `COUNT(field)`.
    pub fn is_aggregate(&self) -> bool {
        self.fields.iter().any(|f| {
            let upper = f.to_ascii_uppercase();
            upper.starts_with("COUNT(") && upper != "COUNT()"
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    /// Numbers and datetimes, which SOQL writes unquoted.
    Bare(String),
    Open,
    Close,
    Comma,
    Op(&'static str),
}

fn tokenize(soql: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = soql;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (token, len) = match c {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '\'' => {
                let (value, tail) = parse_literal(rest)?;
                rest = tail;
                tokens.push(Token::Text(value));
                continue;
            }
            '>' | '<' | '!' | '=' => {
                let op = ["!=", ">=", "<=", "<>", "=", ">", "<"]
                    .into_iter()
                    .find(|op| rest.starts_with(op))
                    .ok_or_else(|| format!("unexpected {c:?}"))?;
                (Token::Op(op), op.len())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(rest.len());
                (Token::Word(rest[..len].to_owned()), len)
            }
            c if c.is_ascii_digit() || c == '-' => {
                let len = rest
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-'))
                    })
                    .unwrap_or(rest.len());
                (Token::Bare(rest[..len].to_owned()), len)
            }
            other => return Err(format!("unexpected character {other:?}")),
        };
        tokens.push(token);
        rest = &rest[len..];
    }
    Ok(tokens)
}

struct Tokens {
    tokens: Vec<Token>,
    at: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    /// Consumes the keyword if it comes next.
    fn keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword));
        if found {
            self.at += 1;
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), String> {
        if self.keyword(keyword) {
            Ok(())
        } else {
            Err(format!(
                "expected {keyword}, found {}",
                describe(self.peek())
            ))
        }
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(word)) if !is_keyword(&word) => Ok(word),
            other => Err(format!(
                "expected {what}, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn expect(&mut self, token: Token) -> Result<(), String> {
        match self.next() {
            Some(found) if found == token => Ok(()),
            other => Err(format!(
                "expected {}, found {}",
                describe(Some(&token)),
                describe(other.as_ref())
            )),
        }
    }
}

fn is_keyword(word: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "GROUP", "BY", "LIMIT",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(word))
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "the end".to_owned(),
        Some(Token::Word(w)) | Some(Token::Bare(w)) => format!("{w:?}"),
        Some(Token::Text(_)) => "a string".to_owned(),
        Some(Token::Open) => "'('".to_owned(),
        Some(Token::Close) => "')'".to_owned(),
        Some(Token::Comma) => "','".to_owned(),
        Some(Token::Op(op)) => format!("'{op}'"),
    }
}

/// Parses the shapes above; `Err` is the `MALFORMED_QUERY` message.
pub fn parse(soql: &str) -> Result<Soql, String> {
    if soql.chars().count() > MAX_SOQL_CHARS {
        return Err(format!(
            "the SOQL statement is longer than {MAX_SOQL_CHARS} characters"
        ));
    }
    let mut tokens = Tokens {
        tokens: tokenize(soql)?,
        at: 0,
    };
    tokens.expect_keyword("SELECT")?;
    let mut fields = Vec::new();
    loop {
        let field = tokens.word("a field")?;
        if tokens.peek() == Some(&Token::Open) {
            tokens.next();
            let argument = match tokens.peek() {
                Some(Token::Close) => String::new(),
                _ => tokens.word("a field")?,
            };
            tokens.expect(Token::Close)?;
            if !field.eq_ignore_ascii_case("COUNT") {
                return Err(format!("unsupported function {field}()"));
            }
            fields.push(format!("{field}({argument})"));
        } else {
            fields.push(field);
        }
        if tokens.peek() != Some(&Token::Comma) {
            break;
        }
        tokens.next();
    }
    tokens.expect_keyword("FROM")?;
    // `Group` is an object, though GROUP is a keyword too.
    let object = match tokens.next() {
        Some(Token::Word(word)) => word,
        other => {
            return Err(format!(
                "expected an object, found {}",
                describe(other.as_ref())
            ));
        }
    };
    let mut conditions = Vec::new();
    if tokens.keyword("WHERE") {
        loop {
            conditions.push(condition(&mut tokens)?);
            if !tokens.keyword("AND") {
                break;
            }
        }
    }
    let mut group_by = None;
    if tokens.keyword("GROUP") {
        tokens.expect_keyword("BY")?;
        group_by = Some(tokens.word("a field")?);
    }
    let mut limit = None;
    if tokens.keyword("LIMIT") {
        match tokens.next() {
            Some(Token::Bare(n)) => {
                limit = Some(n.parse::<usize>().map_err(|_| "LIMIT takes a number")?);
            }
            _ => return Err("LIMIT takes a number".to_owned()),
        }
    }
    if let Some(extra) = tokens.peek() {
        return Err(format!("unexpected {}", describe(Some(extra))));
    }
    let soql = Soql {
        fields,
        object,
        conditions,
        group_by,
        limit,
    };
    if soql.count_only() && soql.group_by.is_some() {
        return Err("COUNT() cannot be grouped".to_owned());
    }
    Ok(soql)
}

fn condition(tokens: &mut Tokens) -> Result<Condition, String> {
    let field = tokens.word("a field")?;
    if tokens.keyword("IN") {
        tokens.expect(Token::Open)?;
        let mut values = Vec::new();
        loop {
            match tokens.next() {
                Some(Token::Text(value)) => values.push(value),
                other => {
                    return Err(format!(
                        "expected a string in IN (...), found {}",
                        describe(other.as_ref())
                    ));
                }
            }
            match tokens.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => break,
                other => {
                    return Err(format!(
                        "expected ',' or ')', found {}",
                        describe(other.as_ref())
                    ));
                }
            }
        }
        return Ok(Condition::In(field, values));
    }
    match (tokens.next(), tokens.next()) {
        (Some(Token::Op("=")), Some(Token::Text(value))) => Ok(Condition::Eq(field, value)),
        (Some(Token::Op(">=")), Some(Token::Bare(value))) => {
            Ok(Condition::AtOrAfter(field, parse_datetime(&value)?))
        }
        (Some(Token::Op(op)), _) if op != "=" && op != ">=" => {
            Err(format!("the operator {op} is not supported by the fake"))
        }
        (op, value) => Err(format!(
            "expected Field = 'text' or Field >= datetime, found {} {}",
            describe(op.as_ref()),
            describe(value.as_ref())
        )),
    }
}

/// A SOQL datetime literal: `2026-12-01T10:00:00Z`, `…T10:00:00.000Z`, `…T10:00:00+0000`,
/// `…T10:00:00.000+01:00`.
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("invalid datetime {text:?}"))
}

/// A quoted SOQL string literal with backslash escapes; returns it and what follows.
fn parse_literal(text: &str) -> Result<(String, &str), String> {
    let body = text.strip_prefix('\'').ok_or("expected a quoted string")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' => return Ok((value, &body[at + 1..])),
            '\\' => {
                let (_, escaped) = chars.next().ok_or("dangling backslash")?;
                value.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '\\' | '\'' | '"' | '_' | '%' => escaped,
                    other => return Err(format!("invalid escape \\{other}")),
                });
            }
            c => value.push(c),
        }
    }
    Err("unterminated string literal".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, s).unwrap()
    }

    #[test]
    fn hostile_literal_parses_as_one_value_with_nothing_after() {
        let parsed = parse(r"SELECT Id FROM User WHERE Username = '\' OR Username != \''").unwrap();
        assert_eq!(parsed.object, "User");
        assert_eq!(
            parsed.conditions,
            vec![Condition::Eq(
                "Username".to_owned(),
                "' OR Username != '".to_owned()
            )]
        );
    }

    #[test]
    fn unescaped_quote_leaves_a_tail_and_is_malformed() {
        assert!(parse("SELECT Id FROM User WHERE Username = '' OR Username != ''").is_err());
    }

    #[test]
    fn in_list_and_modstamp_are_two_conditions_joined_by_and() {
        let parsed = parse(
            "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember WHERE GroupId IN \
             ('00GSy0000000001', '00GSy0000000002','00GSy0000000003') AND \
             SystemModstamp >= 2026-12-01T10:00:00Z",
        )
        .unwrap();
        assert_eq!(
            parsed,
            Soql {
                fields: vec![
                    "GroupId".into(),
                    "UserOrGroupId".into(),
                    "SystemModstamp".into()
                ],
                object: "GroupMember".into(),
                conditions: vec![
                    Condition::In(
                        "GroupId".into(),
                        vec![
                            "00GSy0000000001".into(),
                            "00GSy0000000002".into(),
                            "00GSy0000000003".into()
                        ]
                    ),
                    Condition::AtOrAfter("SystemModstamp".into(), at(10, 0, 0)),
                ],
                group_by: None,
                limit: None,
            }
        );
    }

    #[test]
    fn keywords_and_fields_are_case_insensitive() {
        let parsed = parse(
            "select id from group where type in ('Regular') and systemmodstamp >= 2026-12-01T10:00:00Z limit 5",
        )
        .unwrap();
        assert_eq!(parsed.object, "group");
        assert_eq!(parsed.conditions[0].field(), "type");
        assert_eq!(parsed.limit, Some(5));
    }

    #[test]
    fn datetimes_are_read_in_every_form_soql_writes() {
        for text in [
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00.000Z",
            "2026-12-01T10:00:00+0000",
            "2026-12-01T10:00:00.000+0000",
            "2026-12-01T11:00:00+01:00",
        ] {
            assert_eq!(parse_datetime(text), Ok(at(10, 0, 0)), "{text}");
        }
        assert_eq!(
            parse_datetime("2026-12-01T10:00:00.250Z"),
            Ok(at(10, 0, 0) + chrono::Duration::milliseconds(250))
        );
    }

    #[test]
    fn a_quoted_or_malformed_datetime_is_refused() {
        for soql in [
            "SELECT Id FROM UserRole WHERE SystemModstamp >= '2026-12-01T10:00:00Z'",
            "SELECT Id FROM UserRole WHERE SystemModstamp >= 2026-13-01T10:00:00Z",
            "SELECT Id FROM UserRole WHERE SystemModstamp >= yesterday",
        ] {
            assert!(parse(soql).is_err(), "{soql}");
        }
    }

    #[test]
    fn aggregate_with_group_by_parses() {
        let parsed = parse(
            "SELECT GroupId, COUNT(Id) FROM GroupMember WHERE GroupId IN ('00GSy0000000001') GROUP BY GroupId",
        )
        .unwrap();
        assert!(parsed.is_aggregate());
        assert!(!parsed.count_only());
        assert_eq!(parsed.fields, vec!["GroupId", "COUNT(Id)"]);
        assert_eq!(parsed.group_by.as_deref(), Some("GroupId"));
    }

    #[test]
    fn count_without_argument_is_count_only() {
        let parsed = parse("SELECT COUNT() FROM User").unwrap();
        assert!(parsed.count_only());
        assert!(!parsed.is_aggregate());
    }

    #[test]
    fn statements_over_100000_characters_are_refused_and_at_the_limit_parse() {
        let ids = |n: usize| {
            (0..n)
                .map(|i| format!("'00GSy{i:010}'"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let head = "SELECT GroupId FROM GroupMember WHERE GroupId IN (";
        // Each id is 17 characters and a comma: pad the last with spaces to the limit exactly.
        let body = ids(5_000);
        let mut at_limit = format!("{head}{body})");
        let short = MAX_SOQL_CHARS - at_limit.len();
        at_limit.insert_str(head.len(), &" ".repeat(short));
        assert_eq!(at_limit.len(), MAX_SOQL_CHARS);
        assert_eq!(parse(&at_limit).unwrap().conditions.len(), 1);
        let over = format!("{at_limit} ");
        assert_eq!(
            parse(&over),
            Err("the SOQL statement is longer than 100000 characters".to_owned())
        );
    }

    #[test]
    fn malformed_shapes_are_refused() {
        for soql in [
            "",
            "SELECT FROM User",
            "SELECT Id User",
            "SELECT Id FROM User WHERE",
            "SELECT Id FROM User WHERE Id = 'a' OR Id = 'b'",
            "SELECT Id FROM User WHERE Id IN ()",
            "SELECT Id FROM User WHERE Id IN ('a' 'b')",
            "SELECT Id FROM User WHERE Id IN ('a',",
            "SELECT Id FROM User WHERE Id != 'a'",
            "SELECT Id FROM User WHERE Id = 5",
            "SELECT Id FROM User LIMIT many",
            "SELECT Id FROM User GROUP Id",
            "SELECT MAX(Id) FROM User",
            "SELECT Id FROM User; DELETE",
            "SELECT Id FROM User WHERE Username = 'unterminated",
            "SELECT COUNT() FROM GroupMember GROUP BY GroupId",
        ] {
            assert!(parse(soql).is_err(), "{soql:?} parsed");
        }
    }
}
