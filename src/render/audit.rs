//! The audit for people: the terminal report, and the wording Slack's summary shares
//! (`slack/audit.rs`). Every CRM value is made inert (invisible characters stripped).

use super::{strip_invisible, truncate};
use crate::audit::{AuditReport, AuditRow, RowKind};
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

pub(super) fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Blocker => "blocker",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

pub(super) fn clean(text: &str) -> String {
    strip_invisible(text).replace('\n', " ")
}

pub(super) fn who(row: &AuditRow) -> String {
    match (&row.kind, &row.salesforce_user, &row.ae_user) {
        (RowKind::AeUserWithoutCrmUsername, _, Some(ae)) => {
            format!("AE user {} <{}>", ae.id, clean(&ae.email))
        }
        (_, Some(sf), _) => clean(&sf.username),
        _ => String::new(),
    }
}

pub(super) fn headline(report: &AuditReport) -> String {
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
