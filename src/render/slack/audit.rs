//! The audit in Slack: the summary and the progress messages. Every CRM value is made inert
//! (invisible characters stripped, mrkdwn escaped).

use serde_json::{Value, json};

use crate::audit::{AuditReport, Progress};
use crate::domain::Severity;
use crate::render::audit::{cause_summary, clean, headline, severity_label, who};
use crate::render::{escape_mrkdwn, truncate};

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3_000)}})
}

/// Slack's summary: the counts by cause, the first blocked rows, and where the CSV is.
pub fn audit_summary_message(report: &AuditReport, command: &str, csv_note: &str) -> Value {
    let headline = headline(report);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("Audit of {}", clean(&report.business_unit_name)), 150)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(&format!(
            "Data as of {} · {} active Salesforce users and {} AE users looked at",
            report.data_as_of.format("%Y-%m-%d %H:%M UTC"),
            report.sf_users_scanned,
            report.ae_users_scanned
        ))}]}),
    ];
    if report.rows_total == 0 {
        blocks.push(section(
            "*Nothing to report:* every user that should be mapped is.".to_owned(),
        ));
    } else {
        blocks.push(section(format!("*{}*", escape_mrkdwn(&clean(&headline)))));
        let causes: Vec<String> = report
            .by_cause
            .iter()
            .take(10)
            .map(|c| {
                format!(
                    "• *{}* `{}` ({}): {}",
                    c.count,
                    c.cause.as_str(),
                    severity_label(c.severity),
                    cause_summary(c.cause)
                )
            })
            .collect();
        blocks.push(section(causes.join("\n")));
        let examples: Vec<String> = report
            .rows
            .iter()
            .filter(|r| r.severity == Severity::Blocker)
            .take(5)
            .map(|r| {
                format!(
                    "• {} in {}: {}\n   `{} {}`",
                    escape_mrkdwn(&who(r)),
                    escape_mrkdwn(&clean(&r.business_unit_name)),
                    escape_mrkdwn(&truncate(&clean(&r.title), 200)),
                    escape_mrkdwn(command),
                    escape_mrkdwn(&clean(&r.check))
                )
            })
            .collect();
        if !examples.is_empty() {
            blocks.push(section(format!(
                "*First blocked rows* (run the command for the fix steps):\n{}",
                examples.join("\n")
            )));
        }
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(csv_note)}]}));
    json!({"text": truncate(&clean(&headline), 3_000), "blocks": blocks})
}

/// "Auditing… 40,000 of 120,000 users".
pub fn audit_progress_message(scope: &str, progress: Option<Progress>) -> Value {
    let text = match progress {
        Some(p) if p.total > 0 => format!(
            "Auditing {}… {} of {} users looked at ({}%).",
            clean(scope),
            p.done,
            p.total,
            p.done * 100 / p.total
        ),
        _ => format!(
            "Auditing {}… the summary and a CSV of every row follow here.",
            clean(scope)
        ),
    };
    json!({"text": text.clone(), "blocks": [section(escape_mrkdwn(&text))]})
}
