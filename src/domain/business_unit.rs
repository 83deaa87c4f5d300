//! An Account Engagement business unit: the settings no API exposes, and its AE users.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AeUser, SfId};

pub const DEFAULT_AE_URL: &str = "https://pi.pardot.com";

fn default_ae_url() -> String {
    DEFAULT_AE_URL.to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserManagement {
    /// Users are created and edited in Account Engagement (the classic setup).
    #[default]
    AccountEngagement,
    /// User management was transferred to Salesforce: users, public groups and roles are
    /// assigned to the business unit in Setup, and AE users follow from that.
    Salesforce,
}

/// A reference an admin wrote in the settings: a Salesforce id, or a name
/// (a username for users; a name or developer name for groups and roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRef {
    Id(SfId),
    Name(String),
}

impl RecordRef {
    /// Salesforce ids of users, groups and roles all start with `00`; anything else is a name.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        match SfId::parse(text) {
            Ok(id) if text.starts_with("00") => RecordRef::Id(id),
            _ => RecordRef::Name(text.to_owned()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            RecordRef::Id(id) => id.to_string(),
            RecordRef::Name(name) => name.clone(),
        }
    }
}

impl Serialize for RecordRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for RecordRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(RecordRef::parse(&text))
    }
}

/// What is assigned to the business unit under Salesforce user management.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    #[serde(default)]
    pub users: Vec<RecordRef>,
    #[serde(default)]
    pub public_groups: Vec<RecordRef>,
    #[serde(default)]
    pub roles: Vec<RecordRef>,
    #[serde(default)]
    pub roles_and_subordinates: Vec<RecordRef>,
}

impl Assignment {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.public_groups.is_empty()
            && self.roles.is_empty()
            && self.roles_and_subordinates.is_empty()
    }
}

/// URL templates for Account Engagement pages, whose addresses Salesforce does not document.
/// Placeholders: `{ae_url}`, `{ae_user_id}`, `{business_unit_id}`, `{sf_url}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTemplates {
    #[serde(default)]
    pub ae_user: Option<String>,
    #[serde(default)]
    pub ae_users: Option<String>,
    #[serde(default)]
    pub recycle_bin: Option<String>,
    #[serde(default)]
    pub user_sync_settings: Option<String>,
    #[serde(default)]
    pub bu_assignment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessUnit {
    pub id: SfId,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_ae_url")]
    pub ae_url: String,
    #[serde(default)]
    pub user_sync: bool,
    #[serde(default)]
    pub user_management: UserManagement,
    /// Profile id or profile name -> AE role name.
    #[serde(default)]
    pub profile_roles: BTreeMap<String, String>,
    #[serde(default)]
    pub assignment: Assignment,
    #[serde(default)]
    pub links: LinkTemplates,
    #[serde(default)]
    pub users: Vec<AeUser>,
}

impl BusinessUnit {
    pub fn label(&self) -> String {
        if self.name.trim().is_empty() {
            self.id.to_string()
        } else {
            self.name.clone()
        }
    }
}
