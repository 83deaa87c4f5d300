//! Salesforce records the diagnosis reads: users, roles, public groups and their members.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SfId;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SfUser {
    pub id: SfId,
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub profile_id: Option<SfId>,
    #[serde(default)]
    pub profile_name: Option<String>,
    #[serde(default)]
    pub user_license: Option<String>,
    #[serde(default)]
    pub role_id: Option<SfId>,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub modified_at: Option<DateTime<Utc>>,
}

/// The user type of internal users, the only ones Account Engagement can map.
pub const INTERNAL_USER_TYPE: &str = "Standard";

impl SfUser {
    /// Whether Account Engagement can map this user: user type `Standard` with a Salesforce
    /// licence (`Salesforce`, `Salesforce Platform`, ...) or an `Identity` licence (AE-only
    /// users). What the data does not say is taken as internal: snapshot files written before
    /// these fields existed carry neither, and silence beats a false blocker.
    pub fn is_internal(&self) -> bool {
        let type_ok = self
            .user_type
            .as_deref()
            .is_none_or(|t| t.trim().eq_ignore_ascii_case(INTERNAL_USER_TYPE));
        let licence_ok = self.user_license.as_deref().is_none_or(|l| {
            let l = l.trim().to_ascii_lowercase();
            l.starts_with("salesforce") || l == "identity"
        });
        type_ok && licence_ok
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: SfId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub parent_role_id: Option<SfId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicGroup {
    pub id: SfId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub developer_name: Option<String>,
    /// `Regular` for public groups. Salesforce also represents roles as groups (`Role`,
    /// `RoleAndSubordinates`, `RoleAndSubordinatesInternal`) so that a public group can hold a
    /// role: for those, `related_id` is the role's id.
    #[serde(default = "regular", rename = "type")]
    pub group_type: String,
    #[serde(default)]
    pub related_id: Option<SfId>,
}

impl PublicGroup {
    /// For a group that stands for a role: does it include the role's subordinates?
    pub fn role_kind(&self) -> Option<RoleGroupKind> {
        match self.group_type.as_str() {
            "Role" => Some(RoleGroupKind::Role),
            "RoleAndSubordinates" | "RoleAndSubordinatesInternal" => {
                Some(RoleGroupKind::RoleAndSubordinates)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleGroupKind {
    Role,
    RoleAndSubordinates,
}

fn regular() -> String {
    "Regular".to_owned()
}

/// A direct membership: `member_id` is a user (`005`) or another group (`00G`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    pub group_id: SfId,
    pub member_id: SfId,
}

/// The Salesforce half of an org snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesforceOrg {
    #[serde(default)]
    pub org_id: Option<SfId>,
    pub instance_url: String,
    /// Lightning Experience base URL for Setup links; derived from `instance_url` when absent.
    #[serde(default)]
    pub lightning_url: Option<String>,
    #[serde(default)]
    pub users: Vec<SfUser>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub groups: Vec<PublicGroup>,
    #[serde(default)]
    pub group_members: Vec<GroupMember>,
}

impl SalesforceOrg {
    /// Where Setup pages live: `acme.my.salesforce.com` serves Lightning at
    /// `acme.lightning.force.com` (sandboxes: `acme--uat.sandbox.lightning.force.com`).
    pub fn lightning_base(&self) -> String {
        if let Some(url) = &self.lightning_url {
            return url.trim_end_matches('/').to_owned();
        }
        let base = self.instance_url.trim_end_matches('/');
        match base.strip_suffix(".my.salesforce.com") {
            Some(prefix) => format!("{prefix}.lightning.force.com"),
            None => base.to_owned(),
        }
    }
}
