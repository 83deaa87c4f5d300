//! The result of a diagnosis: a verdict and the findings behind it. Serialises to the JSON of
//! docs/reference.md (`check --format json`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AeUser, BusinessUnit, SfId, SfUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Blocker,
    Warning,
    Info,
}

/// The causes (docs/using.md), spelled as the JSON spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    SalesforceUserNotFound,
    SalesforceUserInactive,
    MappedToActiveUser,
    MappedToDeletedUser,
    ReservedByEmail,
    SyncSkippedEmailConflict,
    ProfileNotMappedToRole,
    NotAssignedToBusinessUnit,
    AssignmentPendingSync,
    MappedInOtherBusinessUnit,
    AlreadyMappedToTarget,
    UnsupportedUserType,
    NoBlockerFound,
}

impl FindingCode {
    pub const ALL: [FindingCode; 13] = [
        FindingCode::SalesforceUserNotFound,
        FindingCode::SalesforceUserInactive,
        FindingCode::MappedToActiveUser,
        FindingCode::MappedToDeletedUser,
        FindingCode::ReservedByEmail,
        FindingCode::SyncSkippedEmailConflict,
        FindingCode::ProfileNotMappedToRole,
        FindingCode::NotAssignedToBusinessUnit,
        FindingCode::AssignmentPendingSync,
        FindingCode::MappedInOtherBusinessUnit,
        FindingCode::AlreadyMappedToTarget,
        FindingCode::UnsupportedUserType,
        FindingCode::NoBlockerFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::SalesforceUserNotFound => "salesforce_user_not_found",
            FindingCode::SalesforceUserInactive => "salesforce_user_inactive",
            FindingCode::MappedToActiveUser => "mapped_to_active_user",
            FindingCode::MappedToDeletedUser => "mapped_to_deleted_user",
            FindingCode::ReservedByEmail => "reserved_by_email",
            FindingCode::SyncSkippedEmailConflict => "sync_skipped_email_conflict",
            FindingCode::ProfileNotMappedToRole => "profile_not_mapped_to_role",
            FindingCode::NotAssignedToBusinessUnit => "not_assigned_to_business_unit",
            FindingCode::AssignmentPendingSync => "assignment_pending_sync",
            FindingCode::MappedInOtherBusinessUnit => "mapped_in_other_business_unit",
            FindingCode::AlreadyMappedToTarget => "already_mapped_to_target",
            FindingCode::UnsupportedUserType => "unsupported_user_type",
            FindingCode::NoBlockerFound => "no_blocker_found",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Blocked,
    Clear,
    NotFound,
    Ambiguous,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Blocked => "blocked",
            Verdict::Clear => "clear",
            Verdict::NotFound => "not_found",
            Verdict::Ambiguous => "ambiguous",
        }
    }

    /// Exit code of `crm-username check` (docs/reference.md).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clear => 0,
            Verdict::Blocked => 1,
            Verdict::NotFound | Verdict::Ambiguous => 2,
        }
    }
}

/// A button target. `action_id` is one of the documented names (docs/reference.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub action_id: String,
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfUserSummary {
    pub id: SfId,
    pub username: String,
    pub email: String,
    pub name: String,
    pub is_active: bool,
}

impl From<&SfUser> for SfUserSummary {
    fn from(user: &SfUser) -> Self {
        SfUserSummary {
            id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            is_active: user.is_active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeUserSummary {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub is_deleted: bool,
    pub business_unit_id: SfId,
}

impl AeUserSummary {
    pub fn new(user: &AeUser, bu: &BusinessUnit) -> Self {
        AeUserSummary {
            id: user.id,
            email: user.email.clone(),
            name: user.display_name(),
            is_deleted: user.is_deleted,
            business_unit_id: bu.id,
        }
    }
}

/// The AE user being edited, when the query names one (`... for jane@acme.com`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub business_unit_id: SfId,
    pub ae_user_id: u64,
    /// Shown to people; beyond the fields the JSON first promised.
    pub email: String,
    pub name: String,
    pub business_unit_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    pub business_unit_id: Option<SfId>,
    pub business_unit_name: Option<String>,
    pub title: String,
    pub detail: String,
    pub steps: Vec<String>,
    pub links: Vec<Link>,
    pub ae_user: Option<AeUserSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: SfId,
    pub username: String,
    pub name: String,
}

impl From<&SfUser> for Candidate {
    fn from(user: &SfUser) -> Self {
        Candidate {
            id: user.id,
            username: user.username.clone(),
            name: user.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub query: String,
    pub verdict: Verdict,
    pub salesforce_user: Option<SfUserSummary>,
    pub target: Option<Target>,
    pub findings: Vec<Finding>,
    pub candidates: Vec<Candidate>,
    /// How many matched in all, when `candidates` was cut short.
    pub candidates_total: usize,
    pub data_as_of: DateTime<Utc>,
}

impl Diagnosis {
    pub fn blockers(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
    }
}
