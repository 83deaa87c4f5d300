//! Values from people and CRM data are untrusted: they are made inert before they are shown.

/// Slack mrkdwn: `&`, `<` and `>` are the only control characters; escaping them makes
/// `<!channel>`, `<@U1>` and `<http://x|y>` print as typed instead of acting.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Drops control characters (terminal escapes included), zero-width characters and
/// bidirectional overrides, which can hide or reorder what a person reads. Newlines stay.
pub fn strip_invisible(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || !(c.is_control() || is_invisible(c)))
        .collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// At most `max` characters, ending in `…` when cut. Never ends inside an `&...;` entity.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&') {
        if !cut[amp..].contains(';') {
            cut.truncate(amp);
        }
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_control_sequences_are_escaped() {
        assert_eq!(
            escape_mrkdwn("<!channel> & <@U1> <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://x|y&gt;"
        );
    }

    #[test]
    fn invisible_and_control_characters_are_removed() {
        assert_eq!(
            strip_invisible("a\u{202E}b\u{200B}c\u{1b}[31md\ne"),
            "abc[31md\ne"
        );
    }

    #[test]
    fn truncation_never_splits_an_entity() {
        assert_eq!(truncate("abc&amp;def", 6), "abc…");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ab&amp;cdefgh", 9), "ab&amp;c…");
    }
}
