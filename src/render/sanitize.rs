//! Values from people and CRM data are untrusted: they are made inert before they are shown.

/// Slack mrkdwn: `&`, `<` and `>` are the only control characters; escaping them makes
/// `<!channel>`, `<@U1>` and `<http://x|y>` print as typed instead of acting.
pub fn escape_mrkdwn(text: &str) -> String {
    // Runs of ordinary text are copied whole: most text has nothing to escape. memchr3 finds
    // the next of the three bytes a word at a time (a reply escapes about 18 KB of text, and a
    // search by `char` was a tenth of its rendering time).
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = memchr::memchr3(b'&', b'<', b'>', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

/// [`strip_invisible`], then [`escape_mrkdwn`]: a value from a person or CRM data made safe for
/// mrkdwn, in one copy when it is printable ASCII (nearly always).
pub fn clean_mrkdwn(text: &str) -> String {
    if is_printable_ascii(text) {
        escape_mrkdwn(text)
    } else {
        escape_mrkdwn(&strip_invisible(text))
    }
}

fn is_printable_ascii(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
}

/// Drops control characters (terminal escapes included), zero-width characters and
/// bidirectional overrides, which can hide or reorder what a person reads. Newlines stay.
pub fn strip_invisible(text: &str) -> String {
    // Printable ASCII (and newlines) has nothing to drop: copied whole.
    if is_printable_ascii(text) {
        return text.to_owned();
    }
    text.chars()
        .filter(|&c| c == '\n' || !(c.is_control() || is_invisible(c)))
        .collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// At most `max` characters, ending in `…` when cut. Never ends inside an `&...;` entity.
pub fn truncate(text: &str, max: usize) -> String {
    // A text of at most `max` bytes has at most `max` characters: no need to count them.
    if text.len() <= max || text.chars().count() <= max {
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
    fn clean_mrkdwn_strips_then_escapes_whatever_the_text() {
        for text in [
            "plain <b> & text",
            "Zoë\u{200B} <Ünïcode>\u{202E} & co",
            "tab\there\u{7f} <x>",
            "line\nbreak & <y>",
            "",
        ] {
            assert_eq!(
                clean_mrkdwn(text),
                escape_mrkdwn(&strip_invisible(text)),
                "{text:?}"
            );
        }
        assert_eq!(
            clean_mrkdwn("Zoë\u{200B} <b>"),
            "Zoë &lt;b&gt;",
            "the zero-width space is dropped, the brackets escaped"
        );
    }

    #[test]
    fn a_short_text_is_not_cut_and_a_long_one_is_cut_by_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 3), "ééé", "6 bytes, 3 characters");
        assert_eq!(truncate("éééé", 3), "éé…");
        assert_eq!(truncate("a &amp; b", 5), "a …", "never inside an entity");
    }

    #[test]
    fn text_around_escapes_is_kept_whole() {
        assert_eq!(escape_mrkdwn("plain text"), "plain text");
        assert_eq!(
            escape_mrkdwn("Zoë <Ünïcode> & co"),
            "Zoë &lt;Ünïcode&gt; &amp; co"
        );
        assert_eq!(escape_mrkdwn(">>"), "&gt;&gt;");
        assert_eq!(strip_invisible("plain\ntext ~"), "plain\ntext ~");
        assert_eq!(strip_invisible("tab\there\u{7f}"), "tabhere");
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
