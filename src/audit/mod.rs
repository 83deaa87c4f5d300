//! The audit: every mapping that is broken before anyone opens a ticket.
//!
//! Two kinds of rows, per business unit:
//! - an active internal Salesforce user who should have an AE user there (see
//!   [`expected_reason`]: assigned through either section under Salesforce user management, or
//!   with a mapped profile under User Sync) and has none that is not in the recycle bin;
//! - an AE user with no CRM username (not in the recycle bin).
//!
//! Each row carries what blocks the mapping: the causes the per-user diagnosis gives for that
//! business unit, so that an audit row and `check` always agree. The functions here take an
//! [`Org`] that holds at least the user's data: the whole org (in-process store, `--org`), or
//! the small org the Redis store assembles for one user.

mod csv;
mod report;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::domain::counterpart;
pub use csv::to_csv;
pub use report::{
    AuditReport, CauseCount, Changes, Progress, Scope, ScopeError, fingerprint, row_key,
};

use crate::diagnose::{assigned, findings_for_user, profile_mapped};
use crate::domain::snapshot::lower;
use crate::domain::{
    AeUser, AeUserSummary, BusinessUnit, Finding, FindingCode, Org, Severity, SfId, SfUser,
    SfUserSummary, UserManagement,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// An active SF user who should have an AE user in the business unit and has none.
    SfUserWithoutAeUser,
    /// An AE user with no CRM username.
    AeUserWithoutCrmUsername,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::SfUserWithoutAeUser => "sf_user_without_ae_user",
            RowKind::AeUserWithoutCrmUsername => "ae_user_without_crm_username",
        }
    }
}

/// One broken (or missing) mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub kind: RowKind,
    pub business_unit_id: SfId,
    pub business_unit_name: String,
    /// The first cause: a blocker when there is one. Rows are grouped by it.
    pub cause: FindingCode,
    pub severity: Severity,
    /// Every blocker and warning in this business unit, blockers first; or the one
    /// informational cause (`no_blocker_found`) when nothing blocks.
    pub causes: Vec<FindingCode>,
    /// The first cause's title, with its evidence.
    pub title: String,
    /// Why the row is expected: "profile mapped under User Sync", "assigned through …".
    pub reason: String,
    pub salesforce_user: Option<SfUserSummary>,
    pub ae_user: Option<AeUserSummary>,
    /// What to type after `/crm-username` for the whole diagnosis, with fix steps.
    pub check: String,
}

/// Why a Salesforce user should have an AE user in a business unit, or `None`. Only active
/// internal users are expected, and per kind of business unit:
/// - Salesforce-managed: those assigned through either section, never an unassigned one;
/// - AE-managed with User Sync: those whose profile is mapped to an AE role;
/// - without User Sync: none (AE users are made by hand).
pub fn expected_reason(org: &Org, unit: &BusinessUnit, user: &SfUser) -> Option<String> {
    if !user.is_active || !user.is_internal() {
        return None;
    }
    match unit.user_management {
        UserManagement::Salesforce => {
            assigned(org, user, &unit.assignment).map(|a| format!("assigned {}", a.describe()))
        }
        UserManagement::AccountEngagement => (unit.user_sync
            && profile_mapped(unit, user) == Some(true))
        .then(|| "profile mapped to an AE role under User Sync".to_owned()),
    }
}

/// The rows of one Salesforce user: one per business unit in scope where it should have an AE
/// user and has none. The diagnosis runs only when there is such a business unit.
pub fn sf_user_rows(
    org: &Org,
    user: &SfUser,
    scope: Option<usize>,
    now: DateTime<Utc>,
) -> Vec<AuditRow> {
    let mut missing: Vec<(usize, String)> = Vec::new();
    for (b, unit) in org.business_units().iter().enumerate() {
        if scope.is_some_and(|s| s != b) {
            continue;
        }
        let Some(reason) = expected_reason(org, unit, user) else {
            continue;
        };
        if org.ae_users_mapped_to(b, user.id).any(|u| !u.is_deleted) {
            continue;
        }
        missing.push((b, reason));
    }
    if missing.is_empty() {
        return Vec::new();
    }
    let findings = findings_for_user(org, user, None, now);
    missing
        .into_iter()
        .map(|(b, reason)| {
            let unit = &org.business_units()[b];
            row(
                RowKind::SfUserWithoutAeUser,
                unit,
                &findings,
                reason,
                Some(user),
                None,
                format!("check {}", user.username),
            )
        })
        .collect()
}

/// The row of one AE user with no CRM username (none when it has one, or is in the recycle
/// bin). The cause comes from diagnosing its counterpart with it as the target.
pub fn ae_user_row(org: &Org, b: usize, ae_user: &AeUser, now: DateTime<Utc>) -> Option<AuditRow> {
    if ae_user.is_deleted || ae_user.salesforce_id.is_some() {
        return None;
    }
    let unit = &org.business_units()[b];
    let email = lower(ae_user.email.trim()).into_owned();
    let by_email = if email.is_empty() {
        Vec::new()
    } else {
        org.users_by_email(&email)
    };
    let by_username = if email.is_empty() {
        None
    } else {
        org.user_by_username(&email)
    };
    let Some(user) = counterpart(by_username, &by_email) else {
        let what = if email.is_empty() {
            "has no email, so no Salesforce user can be matched to it".to_owned()
        } else if by_email.len() > 1 {
            format!(
                "has the email {email}, which {} Salesforce users share: pick the right one by hand",
                by_email.len()
            )
        } else {
            format!(
                "has the email {email}, and no internal Salesforce user has it as username or email"
            )
        };
        return Some(AuditRow {
            kind: RowKind::AeUserWithoutCrmUsername,
            business_unit_id: unit.id,
            business_unit_name: unit.label(),
            cause: FindingCode::SalesforceUserNotFound,
            severity: Severity::Blocker,
            causes: vec![FindingCode::SalesforceUserNotFound],
            title: format!("{} {what}", crate::diagnose::describe_ae_user(ae_user)),
            reason: "AE user with no CRM username".to_owned(),
            salesforce_user: None,
            ae_user: Some(AeUserSummary::new(ae_user, unit)),
            check: if email.is_empty() {
                format!("check <Salesforce username> for {}", ae_user.id)
            } else {
                format!("check {email}")
            },
        });
    };
    let findings = findings_for_user(org, user, Some((b, ae_user)), now);
    Some(row(
        RowKind::AeUserWithoutCrmUsername,
        unit,
        &findings,
        "AE user with no CRM username".to_owned(),
        Some(user),
        Some(ae_user),
        format!("check {} for {}", user.username, ae_user.id),
    ))
}

/// The causes of one business unit: every blocker and warning there (and those that hold in
/// every business unit, such as an inactive user), else its informational finding.
fn causes_in<'a>(findings: &'a [Finding], unit: &BusinessUnit) -> Vec<&'a Finding> {
    let here = |f: &&Finding| f.business_unit_id.is_none_or(|id| id == unit.id);
    let mut causes: Vec<&Finding> = findings
        .iter()
        .filter(here)
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if causes.is_empty() {
        causes.extend(findings.iter().filter(here).take(1));
    }
    causes
}

fn row(
    kind: RowKind,
    unit: &BusinessUnit,
    findings: &[Finding],
    reason: String,
    user: Option<&SfUser>,
    ae_user: Option<&AeUser>,
    check: String,
) -> AuditRow {
    let causes = causes_in(findings, unit);
    let (cause, severity, title) = match causes.first() {
        Some(first) => (first.code, first.severity, first.title.clone()),
        // The diagnosis always says something about a business unit in scope; kept total.
        None => (
            FindingCode::NoBlockerFound,
            Severity::Info,
            String::from("No cause found"),
        ),
    };
    let title = match (cause, kind, user, ae_user) {
        (FindingCode::NoBlockerFound, RowKind::AeUserWithoutCrmUsername, Some(u), Some(a)) => {
            format!(
                "Nothing blocks it: pick {} as the CRM username of {}",
                u.username,
                crate::diagnose::describe_ae_user(a)
            )
        }
        (FindingCode::NoBlockerFound, RowKind::SfUserWithoutAeUser, Some(u), _) => format!(
            "{} has no AE user in {} ({reason}), and nothing blocks one: create or map it, or check that the connector syncs users",
            u.username,
            unit.label()
        ),
        _ => title,
    };
    AuditRow {
        kind,
        business_unit_id: unit.id,
        business_unit_name: unit.label(),
        cause,
        severity,
        causes: if causes.is_empty() {
            vec![cause]
        } else {
            causes.iter().map(|f| f.code).collect()
        },
        title,
        reason,
        salesforce_user: user.map(SfUserSummary::from),
        ae_user: ae_user.map(|a| AeUserSummary::new(a, unit)),
        check,
    }
}

/// The audit of a whole org held in memory. `progress` hears how many users (SF and AE) have
/// been looked at, out of how many.
pub fn audit_org(
    org: &Org,
    scope: &Scope,
    now: DateTime<Utc>,
    max_rows: Option<usize>,
    progress: &mut dyn FnMut(Progress),
) -> AuditReport {
    let snapshot = org.snapshot();
    let bu = scope.index();
    let ae_users: usize = org
        .business_units()
        .iter()
        .enumerate()
        .filter(|(b, _)| bu.is_none_or(|s| s == *b))
        .map(|(_, u)| u.users.len())
        .sum();
    let total = snapshot.salesforce.users.len() + ae_users;
    let mut report = AuditReport::new(scope, snapshot.fetched_at, now, max_rows);
    report.business_units = org
        .business_units()
        .iter()
        .enumerate()
        .filter(|(b, _)| bu.is_none_or(|s| s == *b))
        .map(|(_, u)| (u.id, u.label()))
        .collect();
    let mut done = 0;
    for chunk in snapshot.salesforce.users.chunks(PROGRESS_EVERY) {
        for user in chunk {
            report.sf_users_scanned += usize::from(user.is_active && user.is_internal());
            report.add_all(sf_user_rows(org, user, bu, now));
        }
        done += chunk.len();
        progress(Progress { done, total });
    }
    for (b, unit) in org.business_units().iter().enumerate() {
        if bu.is_some_and(|s| s != b) {
            continue;
        }
        for chunk in unit.users.chunks(PROGRESS_EVERY) {
            for ae_user in chunk {
                report.ae_users_scanned += 1;
                report.add_all(ae_user_row(org, b, ae_user, now));
            }
            done += chunk.len();
            progress(Progress { done, total });
        }
    }
    report.finish();
    report
}

/// Rows the bot keeps in memory for an audit in Slack (the counts cover every row); the CLI
/// keeps them all.
pub const MAX_ROWS_KEPT: usize = 10_000;

/// How often (in users) an audit reports progress.
pub const PROGRESS_EVERY: usize = 1_000;

#[cfg(test)]
mod tests;
