//! The settings file against the org: business units (compared on the 15-character id), the
//! profiles of `profile_roles`, and the groups and roles of `assignment`. Pure.

use super::Check;
use crate::domain::{BusinessUnit, RecordRef};
use crate::sources::PardotTenant;
use crate::sources::catalog::{Named, OrgCatalog};

const UNLISTED: &str = "settings.unlisted_business_units";

pub fn checks(business_units: Option<&[BusinessUnit]>, catalog: Option<&OrgCatalog>) -> Vec<Check> {
    let Some(business_units) = business_units else {
        return vec![Check::skip(
            "settings.business_units",
            "no settings file to compare with the org",
        )];
    };
    let Some(catalog) = catalog else {
        return vec![Check::skip(
            "settings.business_units",
            "the org's business units, profiles, roles and groups could not be read (see \
             salesforce.token and salesforce.read.*)",
        )];
    };
    let mut checks = Vec::new();
    for bu in business_units {
        checks.push(business_unit(bu, catalog));
    }
    checks.push(unlisted(business_units, catalog));
    for bu in business_units {
        checks.push(profiles(bu, &catalog.profiles));
        checks.push(assignment(bu, catalog));
    }
    checks
}

fn business_unit(bu: &BusinessUnit, catalog: &OrgCatalog) -> Check {
    let id = format!("settings.business_unit.{}", bu.id);
    let name = super::upstream_text(&bu.label());
    match catalog.business_units.iter().find(|t| t.id == bu.id) {
        Some(tenant) => Check::ok(
            id,
            format!(
                "business unit {name} ({}) is in the org as \"{}\"",
                bu.id,
                super::upstream_text(tenant.pardot_tenant_name.as_deref().unwrap_or(""))
            ),
        ),
        None => {
            let known: Vec<String> = catalog.business_units.iter().map(tenant_label).collect();
            Check::fail(
                id,
                format!("business unit {name} ({}) is not in the org", bu.id),
                format!(
                    "correct its id in BUSINESS_UNITS_FILE, or remove it; the org's business \
                     units: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        }
    }
}

/// `0Uv... "Name"`.
fn tenant_label(tenant: &PardotTenant) -> String {
    format!(
        "{} \"{}\"",
        tenant.id,
        super::upstream_text(tenant.pardot_tenant_name.as_deref().unwrap_or(""))
    )
}

fn unlisted(business_units: &[BusinessUnit], catalog: &OrgCatalog) -> Check {
    let missing: Vec<String> = catalog
        .business_units
        .iter()
        .filter(|t| business_units.iter().all(|bu| bu.id != t.id))
        .map(tenant_label)
        .collect();
    if missing.is_empty() {
        return Check::ok(
            UNLISTED,
            "every business unit of the org is in the settings",
        );
    }
    Check::warn(
        UNLISTED,
        format!(
            "{} of the org {} not in the settings: {}",
            super::count(missing.len(), "business unit"),
            if missing.len() == 1 { "is" } else { "are" },
            missing.join(", ")
        ),
        "add them to BUSINESS_UNITS_FILE (`crm-username settings init` lists them all), or leave \
         them out on purpose: the bot then says nothing about their users",
    )
}

fn profiles(bu: &BusinessUnit, org_profiles: &[Named]) -> Check {
    let id = format!("settings.profiles.{}", bu.id);
    if bu.profile_roles.is_empty() {
        return Check::skip(id, "no profile_roles in this business unit");
    }
    let unknown: Vec<String> = bu
        .profile_roles
        .keys()
        .filter(|p| !org_profiles.iter().any(|o| o.is_called(p)))
        .map(|p| match closest(p, org_profiles) {
            Some(near) => format!(
                "\"{}\" (did you mean \"{}\"?)",
                super::upstream_text(p),
                near
            ),
            None => format!("\"{}\"", super::upstream_text(p)),
        })
        .collect();
    let name = super::upstream_text(&bu.label());
    if unknown.is_empty() {
        return Check::ok(
            id,
            format!(
                "every profile mapped in business unit {name} exists ({})",
                super::count(bu.profile_roles.len(), "profile")
            ),
        );
    }
    Check::warn(
        id,
        format!(
            "business unit {name}: profile_roles names profiles the org does not have: {}",
            unknown.join(", ")
        ),
        "correct the names in [business_unit.profile_roles] (profile names or ids, as Setup > \
         Profiles shows them); `crm-username settings init` lists the org's profiles",
    )
}

/// The closest profile name, when it is close enough to be a typo of `typed`.
fn closest(typed: &str, profiles: &[Named]) -> Option<String> {
    let typed = typed.trim().to_lowercase();
    let (distance, name) = profiles
        .iter()
        .map(|p| (strsim::levenshtein(&typed, &p.name.to_lowercase()), &p.name))
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))?;
    (distance <= (typed.chars().count() / 3).max(2)).then(|| super::upstream_text(name))
}

/// The public groups and the roles an assignment names, in both sections (Marketing, then
/// Sales): one place that knows its layout.
fn assignment_refs(bu: &BusinessUnit) -> (Vec<&RecordRef>, Vec<&RecordRef>) {
    let sections = bu.assignment.sections();
    let groups = sections
        .iter()
        .flat_map(|(_, s)| s.public_groups.iter())
        .collect();
    let roles = sections
        .iter()
        .flat_map(|(_, s)| s.roles.iter().chain(&s.roles_and_subordinates))
        .collect();
    (groups, roles)
}

fn assignment(bu: &BusinessUnit, catalog: &OrgCatalog) -> Check {
    let id = format!("settings.assignment.{}", bu.id);
    let (groups, roles) = assignment_refs(bu);
    if groups.is_empty() && roles.is_empty() {
        return Check::skip(
            id,
            "no public groups or roles assigned in this business unit",
        );
    }
    let missing = |refs: &[&RecordRef], known: &[Named], kind: &str| -> Vec<String> {
        refs.iter()
            .filter(|r| !known.iter().any(|k| k.is_called(&r.label())))
            .map(|r| format!("{kind} \"{}\"", super::upstream_text(&r.label())))
            .collect()
    };
    let mut absent = missing(&groups, &catalog.groups, "public group");
    absent.extend(missing(&roles, &catalog.roles, "role"));
    let name = super::upstream_text(&bu.label());
    if absent.is_empty() {
        return Check::ok(
            id,
            format!(
                "everything assigned in business unit {name} exists ({}, {})",
                super::count(groups.len(), "public group"),
                super::count(roles.len(), "role")
            ),
        );
    }
    Check::fail(
        id,
        format!(
            "business unit {name}: the assignment names what the org does not have: {}",
            absent.join(", ")
        ),
        "correct the ids or names in the business unit's assignment (public groups: Setup > \
         Public Groups; roles: Setup > Roles); `crm-username settings init` lists them with \
         their ids",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::catalog::named;

    #[test]
    fn a_profile_typo_suggests_the_closest_name_and_nonsense_suggests_none() {
        let profiles = [
            named("00e000000000001", "Standard User"),
            named("00e000000000002", "System Administrator"),
        ];
        assert_eq!(
            closest("Standard Usr", &profiles).as_deref(),
            Some("Standard User")
        );
        assert_eq!(
            closest("system administator", &profiles).as_deref(),
            Some("System Administrator")
        );
        assert_eq!(closest("Marketing Ops", &profiles), None);
    }

    #[test]
    fn ids_of_15_and_18_characters_name_the_same_record() {
        let group = named("00G000000000001AAA", "Sales");
        assert!(group.is_called("00G000000000001"));
        assert!(group.is_called("00G000000000001AAA"));
        assert!(group.is_called("sales"));
        assert!(!group.is_called("00G000000000002"));
    }
}
