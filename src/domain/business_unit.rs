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

/// One section of Setup > Account Engagement Account Setup > Manage Users > Edit User
/// Assignment: the users, public groups, roles and roles-and-subordinates it assigns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentSection {
    #[serde(default)]
    pub users: Vec<RecordRef>,
    #[serde(default)]
    pub public_groups: Vec<RecordRef>,
    #[serde(default)]
    pub roles: Vec<RecordRef>,
    #[serde(default)]
    pub roles_and_subordinates: Vec<RecordRef>,
}

impl AssignmentSection {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.public_groups.is_empty()
            && self.roles.is_empty()
            && self.roles_and_subordinates.is_empty()
    }
}

/// The two sections of Edit User Assignment. Sales users become AE Sales users whatever their
/// profile; Marketing users (admins among them) take their AE role from the profile map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Marketing,
    Sales,
}

impl Section {
    pub fn label(self) -> &'static str {
        match self {
            Section::Marketing => "Marketing",
            Section::Sales => "Sales",
        }
    }
}

/// What is assigned to the business unit under Salesforce user management, per section.
/// Read from `{marketing = {...}, sales = {...}}`, or from the older flat form (the four lists
/// directly), which means the Marketing section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "AssignmentForm")]
pub struct Assignment {
    pub marketing: AssignmentSection,
    pub sales: AssignmentSection,
}

impl Assignment {
    pub fn is_empty(&self) -> bool {
        self.marketing.is_empty() && self.sales.is_empty()
    }

    /// Marketing first: a user in both sections counts as Marketing.
    pub fn sections(&self) -> [(Section, &AssignmentSection); 2] {
        [
            (Section::Marketing, &self.marketing),
            (Section::Sales, &self.sales),
        ]
    }

    pub fn section_mut(&mut self, section: Section) -> &mut AssignmentSection {
        match section {
            Section::Marketing => &mut self.marketing,
            Section::Sales => &mut self.sales,
        }
    }
}

/// Both forms an admin may write; see [`Assignment`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentForm {
    #[serde(default)]
    marketing: Option<AssignmentSection>,
    #[serde(default)]
    sales: Option<AssignmentSection>,
    #[serde(default)]
    users: Option<Vec<RecordRef>>,
    #[serde(default)]
    public_groups: Option<Vec<RecordRef>>,
    #[serde(default)]
    roles: Option<Vec<RecordRef>>,
    #[serde(default)]
    roles_and_subordinates: Option<Vec<RecordRef>>,
}

impl TryFrom<AssignmentForm> for Assignment {
    type Error = String;

    fn try_from(form: AssignmentForm) -> Result<Self, String> {
        let flat_used = form.users.is_some()
            || form.public_groups.is_some()
            || form.roles.is_some()
            || form.roles_and_subordinates.is_some();
        let flat = AssignmentSection {
            users: form.users.unwrap_or_default(),
            public_groups: form.public_groups.unwrap_or_default(),
            roles: form.roles.unwrap_or_default(),
            roles_and_subordinates: form.roles_and_subordinates.unwrap_or_default(),
        };
        let marketing = match (form.marketing, flat_used) {
            (Some(_), true) => {
                return Err("the Marketing section is written twice: flat (users, public_groups, roles, roles_and_subordinates directly under assignment) and under assignment.marketing; keep one".to_owned());
            }
            (Some(section), false) => section,
            (None, _) => flat,
        };
        Ok(Assignment {
            marketing,
            sales: form.sales.unwrap_or_default(),
        })
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
