//! What an admin picks from when writing the business-unit settings: the org's business units
//! (Tooling API `PardotTenant`), profiles, roles and public groups. Read by `doctor` to check
//! the settings against the org, and by `settings init` to write them.

use super::salesforce::{GroupRecord, RoleRecord};
use super::{PardotTenant, SalesforceClient, SourceError};
use crate::domain::{PublicGroup, Role, SfId};

/// A record an admin refers to by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: SfId,
    pub name: String,
    /// Groups have an API name too; settings may use either.
    pub developer_name: Option<String>,
}

impl Named {
    /// Whether a settings value (an id of 15 or 18 characters, a name or a developer name)
    /// means this record. Ids compare on their 15-character identity; names as Salesforce
    /// compares text, ignoring case.
    pub fn is_called(&self, reference: &str) -> bool {
        let reference = reference.trim();
        SfId::parse(reference).is_ok_and(|id| id == self.id)
            || self.name.eq_ignore_ascii_case(reference)
            || self
                .developer_name
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(reference))
    }
}

/// A record with an id and a name, for tests.
#[cfg(test)]
pub(crate) fn named(id: &str, name: &str) -> Named {
    Named {
        id: SfId::parse(id).expect("a valid id"),
        name: name.to_owned(),
        developer_name: None,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgCatalog {
    pub business_units: Vec<PardotTenant>,
    pub profiles: Vec<Named>,
    pub roles: Vec<Named>,
    /// Public groups only (`Type = 'Regular'`): what Edit User Assignment offers.
    pub groups: Vec<Named>,
}

/// The object each read of [`fetch`] is about, for naming it when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub object: &'static str,
    pub error: SourceError,
}

/// Reads the catalog: four queries (the business units from the Tooling API).
pub async fn fetch(client: &SalesforceClient) -> Result<OrgCatalog, CatalogError> {
    let named = |object: &'static str| move |error| CatalogError { object, error };
    let business_units = client
        .discover_business_units()
        .await
        .map_err(named("PardotTenant"))?;
    // Profiles have an id and a name, like roles: the role record reads both.
    let profiles: Vec<RoleRecord> = client
        .query("SELECT Id, Name FROM Profile")
        .await
        .map_err(named("Profile"))?;
    let roles: Vec<RoleRecord> = client
        .query("SELECT Id, Name FROM UserRole")
        .await
        .map_err(named("UserRole"))?;
    let groups: Vec<GroupRecord> = client
        .query("SELECT Id, Name, DeveloperName, Type FROM Group WHERE Type = 'Regular'")
        .await
        .map_err(named("Group"))?;
    let by_name = |mut out: Vec<Named>| {
        out.sort_by_key(|n| n.name.to_lowercase());
        out
    };
    let without_api_name = |role: Role| Named {
        id: role.id,
        name: role.name,
        developer_name: None,
    };
    let groups = groups
        .into_iter()
        .map(PublicGroup::from)
        // The WHERE is Salesforce's to apply; filtering again costs nothing.
        .filter(|g| g.group_type == "Regular")
        .map(|g| Named {
            id: g.id,
            name: g.name,
            developer_name: g.developer_name,
        })
        .collect();
    Ok(OrgCatalog {
        business_units,
        profiles: by_name(
            profiles
                .into_iter()
                .map(Role::from)
                .map(without_api_name)
                .collect(),
        ),
        roles: by_name(
            roles
                .into_iter()
                .map(Role::from)
                .map(without_api_name)
                .collect(),
        ),
        groups: by_name(groups),
    })
}
