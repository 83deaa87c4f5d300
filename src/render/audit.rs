//! The audit for people: a terminal report, and Slack's summary and progress messages. Every
//! CRM value is made inert (invisible characters stripped; mrkdwn escaped in Slack).

use serde_json::{Value, json};

use super::{escape_mrkdwn, strip_invisible, truncate};
use crate::audit::{AuditReport, AuditRow, Progress, RowKind};
use crate::domain::{FindingCode, Severity};

/// What a cause means for the rows it groups, in a few words.
pub fn cause_summary(code: FindingCode) -> &'static str {
    match code {
        FindingCode::SalesforceUserNotFound => "no Salesforce user has the AE user's email",
        FindingCode::SalesforceUserInactive => "the Salesforce user is inactive",
        FindingCode::MappedToActiveUser => "another AE user holds the username",
        FindingCode::MappedToDeletedUser => "an AE user in the recycle bin holds the username",
        FindingCode::ReservedByEmail => "an unmapped AE user's email reserves the username",
        FindingCode::SyncSkippedEmailConflict => "User Sync skips it: an AE user has the email",
        FindingCode::ProfileNotMappedToRole => "the profile has no AE role under User Sync",
        FindingCode::NotAssignedToBusinessUnit => "not assigned to the business unit",
        FindingCode::AssignmentPendingSync => "assigned recently: the AE user is on its way",
        FindingCode::MappedInOtherBusinessUnit => "mapped in another business unit",
        FindingCode::AlreadyMappedToTarget => "already mapped",
        FindingCode::UnsupportedUserType => "not an internal user: AE cannot map it",
        FindingCode::NoBlockerFound => {
            "nothing blocks it: map it, or check the connector if it should sync"
        }
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Blocker => "blocker",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn clean(text: &str) -> String {
    strip_invisible(text).replace('\n', " ")
}

fn who(row: &AuditRow) -> String {
    match (&row.kind, &row.salesforce_user, &row.ae_user) {
        (RowKind::AeUserWithoutCrmUsername, _, Some(ae)) => {
            format!("AE user {} <{}>", ae.id, clean(&ae.email))
        }
        (_, Some(sf), _) => clean(&sf.username),
        _ => String::new(),
    }
}

fn headline(report: &AuditReport) -> String {
    format!(
        "{} mapping{} need{} attention in {} ({} blocked)",
        report.rows_total,
        if report.rows_total == 1 { "" } else { "s" },
        if report.rows_total == 1 { "s" } else { "" },
        report.business_unit_name,
        report.blocked()
    )
}

/// The terminal report: counts by cause, then every row by business unit.
pub fn audit_text(report: &AuditReport) -> String {
    let mut out = format!(
        "AUDIT  {}\nData as of {}; {} active Salesforce users and {} AE users looked at.\n",
        clean(&headline(report)),
        report.data_as_of.format("%Y-%m-%d %H:%M UTC"),
        report.sf_users_scanned,
        report.ae_users_scanned
    );
    if report.rows_total == 0 {
        out.push_str("\nNothing to report: every user that should be mapped is.\n");
        return out;
    }
    out.push_str("\nBy cause:\n");
    for count in &report.by_cause {
        out.push_str(&format!(
            "  {:>7}  {:<31} {:<8} {}\n",
            count.count,
            count.cause.as_str(),
            severity_label(count.severity),
            cause_summary(count.cause)
        ));
    }
    let mut unit = String::new();
    for row in &report.rows {
        if row.business_unit_name != unit {
            unit.clone_from(&row.business_unit_name);
            out.push_str(&format!(
                "\n{} ({})\n",
                clean(&row.business_unit_name),
                row.business_unit_id
            ));
        }
        out.push_str(&format!(
            "  {:<8} {:<31} {}\n           {}\n           → {}\n",
            severity_label(row.severity).to_uppercase(),
            row.cause.as_str(),
            who(row),
            truncate(&clean(&row.title), 300),
            clean(&row.check)
        ));
    }
    out
}

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
