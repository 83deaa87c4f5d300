//! `crm-username settings init`: the business-unit settings file, written from what the org
//! says (business units, profiles, roles, public groups), with comments that explain each key.
//! Pure: the catalog comes in, TOML text goes out. The file loads as it is written; the choices
//! only an admin knows are comments to uncomment.

use std::fmt::Write;

use crate::domain::DEFAULT_AE_URL;
use crate::sources::catalog::{Named, OrgCatalog};

/// Account Engagement's host for sandboxes and developer orgs.
pub const DEMO_AE_URL: &str = "https://pi.demo.pardot.com";

/// The AE host an org's business units most likely live on, from its instance URL: sandboxes
/// and developer orgs use pi.demo.
pub fn default_ae_url(instance_url: &str) -> &'static str {
    let host = url::Url::parse(instance_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.ends_with(".sandbox.my.salesforce.com")
        || host.ends_with(".develop.my.salesforce.com")
        || host == "test.salesforce.com"
    {
        DEMO_AE_URL
    } else {
        DEFAULT_AE_URL
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    // TOML basic strings escape as JSON strings do, for the characters JSON escapes.
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Text from the org inside a comment: one line, no control characters.
fn comment_text(text: &str) -> String {
    crate::render::strip_invisible(text).replace(['\n', '\r'], " ")
}

fn listing(out: &mut String, title: &str, records: &[Named]) {
    let _ = writeln!(out, "# {title}:");
    if records.is_empty() {
        let _ = writeln!(out, "#   (none)");
    }
    for r in records {
        let _ = writeln!(out, "#   {}  {}", r.id.to_18(), comment_text(&r.name));
    }
    out.push_str("#\n");
}

/// The settings file of an org snapshot (every business unit as the snapshot has it), its AE
/// pages at `ae_url`: what `crm-username fakes` writes for the fake it serves, and the tests use.
pub fn from_snapshot(org: &crate::domain::OrgSnapshot, ae_url: &str) -> String {
    let list = |refs: &[crate::domain::RecordRef]| {
        refs.iter()
            .map(|r| quote(&r.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut toml = String::new();
    for bu in &org.business_units {
        let management = match bu.user_management {
            crate::domain::UserManagement::Salesforce => "salesforce",
            crate::domain::UserManagement::AccountEngagement => "account_engagement",
        };
        let _ = writeln!(
            toml,
            "[[business_unit]]\nid = \"{}\"\nname = {}\nae_url = {}",
            bu.id,
            quote(&bu.name),
            quote(ae_url)
        );
        let _ = writeln!(
            toml,
            "user_sync = {}\nuser_management = \"{management}\"",
            bu.user_sync
        );
        let _ = writeln!(toml, "[business_unit.profile_roles]");
        for (profile, role) in &bu.profile_roles {
            let _ = writeln!(toml, "{} = {}", quote(profile), quote(role));
        }
        for (section, a) in bu.assignment.sections() {
            let _ = writeln!(
                toml,
                "[business_unit.assignment.{}]\nusers = [{}]\npublic_groups = [{}]\nroles = [{}]\nroles_and_subordinates = [{}]",
                section.label().to_ascii_lowercase(),
                list(&a.users),
                list(&a.public_groups),
                list(&a.roles),
                list(&a.roles_and_subordinates)
            );
        }
        toml.push('\n');
    }
    toml
}

/// The settings file for `catalog`; `ae_url` is written for every business unit.
pub fn render(catalog: &OrgCatalog, ae_url: &str, written_at: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Business-unit settings of crm-username (BUSINESS_UNITS_FILE), written by\n\
         # `crm-username settings init` on {written_at}. What no API tells: per business unit,\n\
         # whether User Sync is on, the profile to AE role map, and under Salesforce user\n\
         # management what is assigned to it. Fill in each business unit below, then run\n\
         # `crm-username doctor`. docs/doctor.md describes every key.\n#"
    );
    listing(
        &mut out,
        "Public groups of the org (id, name), for assignment",
        &catalog.groups,
    );
    listing(
        &mut out,
        "Roles of the org (id, name), for assignment",
        &catalog.roles,
    );
    if catalog.business_units.is_empty() {
        out.push_str(
            "# The org has no Account Engagement business unit (PardotTenant) that the\n\
             # integration user can see.\n",
        );
    }
    for tenant in &catalog.business_units {
        let name = tenant.pardot_tenant_name.as_deref().unwrap_or("");
        out.push('\n');
        let _ = writeln!(
            out,
            "[[business_unit]]\nid = \"{}\"\nname = {}",
            tenant.id.to_18(),
            quote(name)
        );
        if let Some(status) = tenant
            .creation_status
            .as_deref()
            .filter(|s| *s != "Completed")
        {
            let _ = writeln!(
                out,
                "# Creation status in the org: {}",
                comment_text(status)
            );
        }
        let _ = writeln!(
            out,
            "# https://pi.pardot.com for production; https://pi.demo.pardot.com for sandboxes and\n\
             # developer orgs. doctor tries the other one when this one does not know the unit.\n\
             ae_url = {}",
            quote(ae_url)
        );
        out.push_str(
            "# Is Salesforce User Sync on for this business unit (Account Engagement Settings >\n\
             # Connectors > Salesforce connector > Edit > User Sync)? true or false.\n\
             user_sync = false\n\
             # Where users are managed: \"account_engagement\" (created and edited in Account\n\
             # Engagement), or \"salesforce\" (user management transferred to Salesforce: users,\n\
             # public groups and roles assigned in Setup > Account Engagement Account Setup >\n\
             # Manage Users > Edit User Assignment).\n\
             user_management = \"account_engagement\"\n\
             # With User Sync: the AE role each Salesforce profile gets, as the connector's User\n\
             # Sync settings map it. Uncomment the mapped profiles and write their AE role\n\
             # (Administrator, Marketing, Sales, Sales Manager, or a custom role).\n\
             [business_unit.profile_roles]\n",
        );
        let width = catalog
            .profiles
            .iter()
            .map(|p| quote(&p.name).chars().count())
            .max()
            .unwrap_or(0);
        for profile in &catalog.profiles {
            let _ = writeln!(
                out,
                "# {:<width$} = \"AE role\"   # {}",
                quote(&comment_text(&profile.name)),
                profile.id.to_18()
            );
        }
        out.push_str(
            "# Under Salesforce user management: what Edit User Assignment assigns, in its two\n\
             # sections. Sales users become AE Sales users whatever their profile; Marketing\n\
             # users (admins belong there) take their role from the profile map. Each list takes\n\
             # ids (or names) from the lists at the top of this file. Uncomment what applies:\n\
             # [business_unit.assignment.marketing]\n\
             # users = []                    # user ids (005...) or usernames\n\
             # public_groups = []            # group ids (00G...)\n\
             # roles = []                    # role ids (00E...)\n\
             # roles_and_subordinates = []   # role ids (00E...)\n\
             # [business_unit.assignment.sales]\n\
             # users = []\n\
             # public_groups = []\n\
             # roles = []\n\
             # roles_and_subordinates = []\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SfId;
    use crate::sources::PardotTenant;
    use crate::sources::catalog::named;

    fn catalog() -> OrgCatalog {
        OrgCatalog {
            business_units: vec![PardotTenant {
                id: SfId::parse("0UvAk000000NAM1KAO").unwrap(),
                pardot_tenant_name: Some("North \"America\"".to_owned()),
                creation_status: Some("Completed".to_owned()),
            }],
            profiles: vec![named("00eAk000000PRO1", "Standard User")],
            roles: vec![named("00EAk000000ROL1", "CEO\n[[business_unit]]")],
            groups: vec![named("00GAk000000GRP1", "Sales")],
        }
    }

    #[test]
    fn the_file_loads_as_written_and_names_each_business_unit_profile_group_and_role() {
        let text = render(&catalog(), "https://pi.pardot.com", "2026-12-01");
        let units = crate::config::business_units::parse(&text, "init.toml").unwrap();
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].name, "North \"America\"");
        assert!(units[0].profile_roles.is_empty());
        assert!(
            text.contains("# \"Standard User\" = \"AE role\"   # 00eAk000000PRO1"),
            "{text}"
        );
        assert!(text.contains("#   00GAk000000GRP1MAO  Sales\n"), "{text}");
        // A newline in a name cannot end the comment and start a table.
        assert!(
            text.contains("#   00EAk000000ROL1MAO  CEO [[business_unit]]\n"),
            "{text}"
        );
    }

    #[test]
    fn sandboxes_and_developer_orgs_get_the_demo_host() {
        assert_eq!(
            default_ae_url("https://acme--uat.sandbox.my.salesforce.com"),
            DEMO_AE_URL
        );
        assert_eq!(
            default_ae_url("https://acme-dev-ed.develop.my.salesforce.com"),
            DEMO_AE_URL
        );
        assert_eq!(
            default_ae_url("https://acme.my.salesforce.com"),
            DEFAULT_AE_URL
        );
    }
}
