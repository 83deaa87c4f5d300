//! The Slack message (Block Kit) for a diagnosis. Stays within Slack's limits whatever the
//! data: at most 50 blocks, 3,000 characters a section, 150 a header, 75 a button label.

use std::fmt::Write;

use serde_json::{Value, json};

use super::kit::{Block, Button, Message};
use crate::domain::{Diagnosis, Finding, Severity, Verdict};

use crate::render::{clean_mrkdwn, strip_invisible, truncate};

pub const MAX_BLOCKS: usize = 50;
/// Findings shown in full; the rest are summarised by cause.
pub const MAX_DETAILED_FINDINGS: usize = 15;
const MAX_SECTION: usize = 3_000;
const MAX_HEADER: usize = 150;
const MAX_BUTTON_TEXT: usize = 75;
const MAX_BUTTON_VALUE: usize = 2_000;
const MAX_URL: usize = 3_000;
const MAX_FALLBACK: usize = 3_000;

/// A value from a person or CRM data, ready for mrkdwn.
pub(super) fn v(text: &str) -> String {
    clean_mrkdwn(text)
}

pub(super) fn mrkdwn_section(block_id: Option<String>, text: String) -> Value {
    let mut block = json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&text, MAX_SECTION)},
    });
    if let Some(id) = block_id {
        block["block_id"] = json!(id);
    }
    block
}

pub(super) fn button(
    action_id: &str,
    label: &str,
    value: Option<&str>,
    url: Option<&str>,
) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": truncate(&strip_invisible(label), MAX_BUTTON_TEXT), "emoji": false},
    });
    if let Some(value) = value {
        b["value"] = json!(truncate(value, MAX_BUTTON_VALUE));
    }
    if let Some(url) = url {
        b["url"] = json!(url);
    }
    b
}

fn severity_emoji(s: Severity) -> &'static str {
    match s {
        Severity::Blocker => ":no_entry:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

pub(super) fn headline(d: &Diagnosis) -> (&'static str, &'static str) {
    match d.verdict {
        Verdict::Blocked => (":no_entry:", "Blocked"),
        Verdict::Clear => (":white_check_mark:", "Clear"),
        Verdict::NotFound => (":mag:", "Not found"),
        Verdict::Ambiguous => (":busts_in_silhouette:", "Several users match"),
    }
}

/// The plain `text` of the message: notifications and screen readers use it.
fn fallback(d: &Diagnosis) -> String {
    let (_, verdict) = headline(d);
    let mut text = format!("{verdict}: {}", d.query);
    let blockers: Vec<&str> = d.blockers().map(|f| f.title.as_str()).take(3).collect();
    if !blockers.is_empty() {
        text.push_str(" — ");
        text.push_str(&blockers.join("; "));
    }
    truncate(&v(&text), MAX_FALLBACK)
}

fn finding_text(f: &Finding) -> String {
    let mut text = format!("{} *{}*", severity_emoji(f.severity), v(&f.title));
    if let Some(bu) = &f.business_unit_name {
        text.push_str(&format!("  _({})_", v(bu)));
    }
    text.push('\n');
    text.push_str(&v(&f.detail));
    if !f.steps.is_empty() {
        text.push_str("\n*Fix*");
        for (n, step) in f.steps.iter().enumerate() {
            text.push_str(&format!("\n{}. {}", n + 1, v(step)));
        }
    }
    text
}

fn finding_buttons(f: &Finding) -> Vec<Button> {
    let mut seen = Vec::new();
    f.links
        .iter()
        .filter(|l| {
            l.url.len() <= MAX_URL && !seen.contains(&l.action_id) && {
                seen.push(l.action_id.clone());
                true
            }
        })
        .take(5)
        .map(|l| Button::new(&l.action_id, &l.label, None, Some(&l.url)))
        .collect()
}

/// Summarises findings that did not fit: "and 485 more: 480 × Already mapped to ...".
fn more_findings(rest: &[Finding]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for f in rest {
        match counts.iter_mut().find(|(c, _)| *c == f.code.as_str()) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.code.as_str(), 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} × `{c}`")).collect();
    format!(
        "…and {} more findings: {}. Run `crm-username check --format json` for all of them.",
        rest.len(),
        parts.join(", ")
    )
}

/// `{"text": ..., "blocks": [...]}` for a diagnosis, as JSON.
pub fn blocks(d: &Diagnosis) -> Value {
    message(d).into_value()
}

/// The message for a diagnosis, typed: the answer to a check is written from it directly.
pub fn message(d: &Diagnosis) -> Message {
    let (emoji, verdict) = headline(d);
    let mut blocks = vec![Block::header(
        &format!("{verdict}: {}", strip_invisible(&d.query)),
        MAX_HEADER,
    )];
    let mut summary = String::new();
    if let Some(u) = &d.salesforce_user {
        let state = if u.is_active { "active" } else { "*inactive*" };
        let _ = write!(
            summary,
            "{emoji} *Salesforce user:* {} · {} · `{}` · {state}",
            v(&u.name),
            v(&u.username),
            u.id
        );
        if !u.email.eq_ignore_ascii_case(&u.username)
            && u.email.to_lowercase() != u.username.to_lowercase()
        {
            let _ = write!(summary, " · email {}", v(&u.email));
        }
    } else {
        let _ = write!(summary, "{emoji} *{verdict}:* {}", v(&d.query));
    }
    if let Some(t) = &d.target {
        let _ = write!(
            summary,
            "\n*Editing:* {} ({}) · AE user {} in {}",
            v(&t.name),
            v(&t.email),
            t.ae_user_id,
            v(&t.business_unit_name)
        );
    }
    blocks.push(Block::section(Some("summary".into()), &summary));
    let blockers = d.blockers().count();
    let warnings = d
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let as_of = format!("data as of {}", d.data_as_of.format("%Y-%m-%d %H:%M UTC"));
    let context = if d.salesforce_user.is_some() {
        format!("{blockers} blocker(s), {warnings} warning(s) · {as_of}")
    } else {
        as_of
    };
    blocks.push(Block::context(context));
    blocks.push(Block::divider());

    // Header, summary, context, divider, "more", candidates heading and footer are fixed.
    let candidate_blocks = d.candidates.len().min(10);
    let room = (MAX_BLOCKS - 7 - candidate_blocks) / 2;
    let shown = d.findings.len().min(MAX_DETAILED_FINDINGS).min(room);
    for (i, f) in d.findings.iter().enumerate().take(shown) {
        blocks.push(Block::section(
            Some(format!("finding:{}:{i}", f.code.as_str())),
            &finding_text(f),
        ));
        let links = finding_buttons(f);
        if !links.is_empty() {
            blocks.push(Block::actions(Some(format!("links:{i}")), links));
        }
    }
    if d.findings.len() > shown {
        blocks.push(Block::section(None, &more_findings(&d.findings[shown..])));
    }
    if !d.candidates.is_empty() {
        let heading = match d.verdict {
            Verdict::Ambiguous => format!("*{} users match.* Pick one:", d.candidates_total),
            _ => "*Close matches.* Pick one to check it:".to_owned(),
        };
        let heading = if d.candidates_total > candidate_blocks {
            format!("{heading} (showing {candidate_blocks})")
        } else {
            heading
        };
        blocks.push(Block::section(Some("candidates".into()), &heading));
        for (i, c) in d.candidates.iter().take(candidate_blocks).enumerate() {
            blocks.push(Block::section_with(
                Some(format!("candidate:{i}")),
                &format!("{} · {} · `{}`", v(&c.name), v(&c.username), c.id),
                Button::new(
                    "pick_candidate",
                    "Check this user",
                    Some(&c.id.to_string()),
                    None,
                ),
            ));
        }
    }
    blocks.push(Block::actions(
        Some("footer".into()),
        vec![
            Button::new("recheck", "Re-check now", Some(&d.query), None),
            Button::new("share", "Share in channel", Some(&d.query), None),
        ],
    ));
    Message::new(fallback(d), blocks)
}

/// A reply for a query that could not be diagnosed (usage error, unknown target).
pub fn error_message(message: &str) -> Value {
    error(message).into_value()
}

/// [`error_message`], typed.
pub fn error(message: &str) -> Message {
    let text = truncate(&v(message), MAX_SECTION);
    let section = Block::section(None, &format!(":warning: {text}"));
    Message::new(text, vec![section])
}
