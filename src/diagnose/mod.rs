//! The diagnosis: (query, org, now) -> every cause that keeps a Salesforce username out of the
//! CRM username dropdown, with evidence and fix steps. Pure: no IO, no clock.
//!
//! One file per cause family of the source article (KB 000381517):
//! `salesforce_user` (the user itself: missing, inactive, not internal), `mapping` (scenario 1), `email_reservation`
//! (scenario 2), `user_sync` (scenario 3), `assignment` (scenario 4).

mod assignment;
mod email_reservation;
mod links;
mod mapping;
mod resolve;
mod salesforce_user;
mod user_sync;

use chrono::{DateTime, Utc};

pub use assignment::{Assigned, AssignmentPath, assigned, assignment_path, depends_on_time};
pub use links::Links;
pub use resolve::{MAX_CANDIDATES, TargetError};
pub use user_sync::profile_mapped;

use crate::domain::{
    AeUser, BusinessUnit, Diagnosis, Finding, FindingCode, Link, Org, Query, Severity, SfUser,
    SfUserSummary, Target, Verdict,
};
use resolve::Resolution;

/// What every cause family needs to know about the user being checked.
pub(crate) struct Context<'a> {
    pub org: &'a Org,
    pub user: &'a SfUser,
    /// The AE user being edited, and the index of its business unit.
    pub target: Option<(usize, &'a AeUser)>,
    pub now: DateTime<Utc>,
    pub links: Links,
}

impl Context<'_> {
    pub fn is_target(&self, bu: usize, ae_user: &AeUser) -> bool {
        self.target
            .is_some_and(|(t_bu, t)| t_bu == bu && t.id == ae_user.id)
    }

    pub fn bu(&self, bu: usize) -> &BusinessUnit {
        &self.org.business_units()[bu]
    }
}

/// Builds a finding; `bu` is `None` for causes that hold in every business unit.
pub(crate) struct FindingBuilder {
    finding: Finding,
}

impl FindingBuilder {
    pub fn new(code: FindingCode, severity: Severity, bu: Option<&BusinessUnit>) -> Self {
        FindingBuilder {
            finding: Finding {
                code,
                severity,
                business_unit_id: bu.map(|b| b.id),
                business_unit_name: bu.map(BusinessUnit::label),
                title: String::new(),
                detail: String::new(),
                steps: Vec::new(),
                links: Vec::new(),
                ae_user: None,
            },
        }
    }

    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.finding.title = title.into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.finding.detail = detail.into();
        self
    }

    pub fn step(mut self, step: impl Into<String>) -> Self {
        self.finding.steps.push(step.into());
        self
    }

    pub fn link(mut self, link: Link) -> Self {
        self.finding.links.push(link);
        self
    }

    pub fn ae_user(mut self, user: &AeUser, bu: &BusinessUnit) -> Self {
        self.finding.ae_user = Some(crate::domain::AeUserSummary::new(user, bu));
        self
    }

    pub fn build(self) -> Finding {
        self.finding
    }
}

/// `Jane Doe <jane@acme.com> (AE user 42)`
pub(crate) fn describe_ae_user(user: &AeUser) -> String {
    let name = user.display_name();
    if name == user.email || user.email.is_empty() {
        format!("{name} (AE user {})", user.id)
    } else {
        format!("{name} <{}> (AE user {})", user.email, user.id)
    }
}

/// Diagnoses one query. `Err` only when the query names an AE target that cannot be found
/// or is ambiguous: a usage error, not a verdict.
pub fn diagnose(query: &Query, org: &Org, now: DateTime<Utc>) -> Result<Diagnosis, TargetError> {
    let target = query
        .target
        .as_ref()
        .map(|t| resolve::target(org, t))
        .transpose()?;
    let data_as_of = org.snapshot().fetched_at;
    let target_summary = target.map(|(bu, user)| {
        let bu = &org.business_units()[bu];
        Target {
            business_unit_id: bu.id,
            ae_user_id: user.id,
            email: user.email.clone(),
            name: user.display_name(),
            business_unit_name: bu.label(),
        }
    });
    let mut diagnosis = Diagnosis {
        query: query.text.clone(),
        verdict: Verdict::NotFound,
        salesforce_user: None,
        target: target_summary,
        findings: Vec::new(),
        candidates: Vec::new(),
        candidates_total: 0,
        data_as_of,
    };
    match resolve::subject(org, &query.subject) {
        Resolution::NotFound { close } => {
            diagnosis
                .findings
                .push(salesforce_user::not_found(org, query, &close));
            diagnosis.candidates_total = close.len();
            diagnosis.candidates = close.into_iter().map(Into::into).collect();
        }
        Resolution::Ambiguous { users, total } => {
            diagnosis.verdict = Verdict::Ambiguous;
            diagnosis.candidates_total = total;
            diagnosis.candidates = users.into_iter().map(Into::into).collect();
        }
        Resolution::Found(user) => {
            let ctx = Context {
                org,
                user,
                target,
                now,
                links: Links::new(&org.snapshot().salesforce),
            };
            diagnosis.salesforce_user = Some(SfUserSummary::from(user));
            diagnosis.findings = findings_for(&ctx);
            diagnosis.verdict = if diagnosis.blockers().next().is_some() {
                Verdict::Blocked
            } else {
                Verdict::Clear
            };
        }
    }
    Ok(diagnosis)
}

/// The findings `diagnose` gives once the user (and the target, with its business unit index)
/// are known: what the audit runs for every user it reports.
pub fn findings_for_user(
    org: &Org,
    user: &SfUser,
    target: Option<(usize, &AeUser)>,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    findings_for(&Context {
        org,
        user,
        target,
        now,
        links: Links::new(&org.snapshot().salesforce),
    })
}

fn findings_for(ctx: &Context<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(salesforce_user::inactive(ctx));
    if let Some(external) = salesforce_user::unsupported_user_type(ctx) {
        // No business unit can map an external user: what holds there does not matter.
        findings.insert(0, external);
        return findings;
    }
    let user_blocked_everywhere = !findings.is_empty();
    let in_scope: Vec<usize> = match ctx.target {
        Some((bu, _)) => vec![bu],
        None => (0..ctx.org.business_units().len()).collect(),
    };
    for bu in 0..ctx.org.business_units().len() {
        if !in_scope.contains(&bu) {
            findings.extend(mapping::mapped_in_other_business_unit(ctx, bu));
            continue;
        }
        let mut here = Vec::new();
        here.extend(mapping::mapped_users(ctx, bu));
        here.extend(email_reservation::reserved_by_email(ctx, bu));
        here.extend(email_reservation::sync_skipped_email_conflict(ctx, bu));
        here.extend(user_sync::profile_not_mapped_to_role(ctx, bu));
        here.extend(assignment::assignment_findings(ctx, bu));
        let settled = here
            .iter()
            .any(|f| f.severity != Severity::Info || f.code == FindingCode::AlreadyMappedToTarget);
        if !settled && !user_blocked_everywhere {
            here.push(salesforce_user::no_blocker_found(ctx, Some(bu)));
        }
        findings.extend(here);
    }
    if ctx.org.business_units().is_empty() && !user_blocked_everywhere {
        findings.push(salesforce_user::no_blocker_found(ctx, None));
    }
    // Stable: within a severity, findings keep business-unit and cause order.
    findings.sort_by_key(|f| f.severity);
    findings
}

#[cfg(test)]
mod tests;
