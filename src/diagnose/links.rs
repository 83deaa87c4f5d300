//! Buttons that open the page where a fix is made.
//!
//! Salesforce Setup URLs are widely used and stable; Account Engagement page URLs are not
//! documented, so they come from per-business-unit templates (`links` in the settings) with
//! defaults that match the classic `pi.pardot.com` pages.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::{AeUser, BusinessUnit, Link, SalesforceOrg, SfId};

pub const DEFAULT_AE_USER: &str = "{ae_url}/user/read/id/{ae_user_id}";
pub const DEFAULT_AE_USERS: &str = "{ae_url}/user";
pub const DEFAULT_RECYCLE_BIN: &str = "{ae_url}/recycleBin";
pub const DEFAULT_USER_SYNC_SETTINGS: &str = "{ae_url}/connector";
pub const DEFAULT_BU_ASSIGNMENT: &str = "{sf_url}/lightning/setup/PardotAccountSetup/home";

pub struct Links {
    sf_url: String,
}

impl Links {
    pub fn new(salesforce: &SalesforceOrg) -> Self {
        Links {
            sf_url: salesforce.lightning_base(),
        }
    }

    fn fill(&self, template: &str, bu: &BusinessUnit, ae_user: Option<&AeUser>) -> String {
        let ae_user_id = ae_user.map(|u| u.id.to_string()).unwrap_or_default();
        template
            .replace("{ae_url}", bu.ae_url.trim_end_matches('/'))
            .replace("{sf_url}", &self.sf_url)
            .replace("{business_unit_id}", &encode(&bu.id.to_string()))
            .replace("{ae_user_id}", &encode(&ae_user_id))
    }

    pub fn ae_user(&self, bu: &BusinessUnit, user: &AeUser) -> Link {
        let template = bu.links.ae_user.as_deref().unwrap_or(DEFAULT_AE_USER);
        let label = if user.is_deleted {
            "Open deleted AE user"
        } else {
            "Open AE user"
        };
        link("open_ae_user", label, self.fill(template, bu, Some(user)))
    }

    pub fn ae_users(&self, bu: &BusinessUnit) -> Link {
        let template = bu.links.ae_users.as_deref().unwrap_or(DEFAULT_AE_USERS);
        link(
            "open_ae_users",
            "Open AE users",
            self.fill(template, bu, None),
        )
    }

    pub fn recycle_bin(&self, bu: &BusinessUnit) -> Link {
        let template = bu
            .links
            .recycle_bin
            .as_deref()
            .unwrap_or(DEFAULT_RECYCLE_BIN);
        link(
            "open_recycle_bin",
            "Open recycle bin",
            self.fill(template, bu, None),
        )
    }

    pub fn user_sync_settings(&self, bu: &BusinessUnit) -> Link {
        let template = bu
            .links
            .user_sync_settings
            .as_deref()
            .unwrap_or(DEFAULT_USER_SYNC_SETTINGS);
        link(
            "open_user_sync_settings",
            "Open connector settings",
            self.fill(template, bu, None),
        )
    }

    pub fn bu_assignment(&self, bu: &BusinessUnit) -> Link {
        let template = bu
            .links
            .bu_assignment
            .as_deref()
            .unwrap_or(DEFAULT_BU_ASSIGNMENT);
        link(
            "open_bu_assignment",
            "Open user assignment",
            self.fill(template, bu, None),
        )
    }

    pub fn sf_user(&self, id: SfId) -> Link {
        let address = encode(&format!("/{id}?noredirect=1"));
        link(
            "open_sf_user",
            "Open Salesforce user",
            format!(
                "{}/lightning/setup/ManageUsers/page?address={address}",
                self.sf_url
            ),
        )
    }

    pub fn sf_profile(&self, id: SfId) -> Link {
        let address = encode(&format!("/{id}"));
        link(
            "open_sf_profile",
            "Open profile",
            format!(
                "{}/lightning/setup/EnhancedProfiles/page?address={address}",
                self.sf_url
            ),
        )
    }

    pub fn public_groups(&self) -> Link {
        link(
            "open_public_group",
            "Open public groups",
            format!("{}/lightning/setup/PublicGroups/home", self.sf_url),
        )
    }
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

fn link(action_id: &str, label: &str, url: String) -> Link {
    Link {
        action_id: action_id.to_owned(),
        label: label.to_owned(),
        url,
    }
}
