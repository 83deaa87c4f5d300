//! Scenario 3: with Salesforce User Sync on, the user's profile must map to an AE role. Under
//! Salesforce user management that holds only for users of the Marketing section: Sales users
//! become AE Sales users whatever their profile.

use crate::domain::{
    BusinessUnit, Finding, FindingCode, Section, Severity, SfId, SfUser, UserManagement,
};

use super::assignment::assigned;
use super::{Context, FindingBuilder};

/// Whether the business unit's profile map gives the user's profile an AE role (by profile id,
/// or by name in any case); `None` when the user carries no profile data, since then there is
/// nothing to compare and silence beats a false blocker.
pub fn profile_mapped(unit: &BusinessUnit, user: &SfUser) -> Option<bool> {
    if user.profile_id.is_none() && user.profile_name.is_none() {
        return None;
    }
    Some(unit.profile_roles.keys().any(|key| {
        let by_id = SfId::parse(key.trim())
            .ok()
            .is_some_and(|id| Some(id) == user.profile_id);
        let by_name = user
            .profile_name
            .as_deref()
            .is_some_and(|name| name.trim().eq_ignore_ascii_case(key.trim()));
        by_id || by_name
    }))
}

pub(crate) fn profile_not_mapped_to_role(ctx: &Context<'_>, bu: usize) -> Option<Finding> {
    let unit = ctx.bu(bu);
    let user = ctx.user;
    if !unit.user_sync || profile_mapped(unit, user) != Some(false) {
        return None;
    }
    // Under Salesforce user management the section decides: a Sales user needs no role from
    // the map, and an unassigned user is reported as not assigned.
    let why = match unit.user_management {
        UserManagement::AccountEngagement => String::new(),
        UserManagement::Salesforce => match assigned(ctx.org, user, &unit.assignment) {
            Some(a) if a.section == Section::Marketing => format!(
                " It is assigned {}, so its AE role comes from the profile map.",
                a.describe()
            ),
            _ => return None,
        },
    };
    let profile = match (&user.profile_name, user.profile_id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(name), None) => name.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => String::new(),
    };
    let known: Vec<&str> = unit
        .profile_roles
        .keys()
        .take(5)
        .map(String::as_str)
        .collect();
    let known = match (known.len(), unit.profile_roles.len()) {
        (0, _) => "none".to_owned(),
        (n, total) if total > n => format!("{} and {} more", known.join(", "), total - n),
        _ => known.join(", "),
    };
    let profile_label = user.profile_name.clone().unwrap_or_else(|| profile.clone());
    let mut finding = FindingBuilder::new(FindingCode::ProfileNotMappedToRole, Severity::Blocker, Some(unit))
        .title(format!(
            "Profile {profile_label} has no Account Engagement role under User Sync in {}",
            unit.label()
        ))
        .detail(format!(
            "Salesforce User Sync is on in {}, and the profile of {}, {profile}, is not mapped to an Account Engagement role, so the username is not offered and no user is synced for it.{why} Profiles mapped: {known}.",
            unit.label(),
            user.username
        ))
        .step(format!(
            "In {}, open Account Engagement Settings > Connectors > Salesforce connector > Edit > User Sync.",
            unit.label()
        ))
        .step(format!("Map the profile {profile_label} to an Account Engagement role, and save the settings."))
        .step(format!("Create the user and map the CRM username {} (User Sync creates it within minutes).", user.username))
        .step("Add the profile to profile_roles in the bot's business-unit settings, so the next check knows.")
        .link(ctx.links.user_sync_settings(unit));
    if unit.user_management == UserManagement::Salesforce {
        finding = finding
            .step(format!(
                "Or, if {} should be an AE Sales user, assign it in the Sales users section of Edit User Assignment for {} instead: Sales users need no role from the profile map.",
                user.username,
                unit.label()
            ))
            .link(ctx.links.bu_assignment(unit));
    }
    if let Some(id) = user.profile_id {
        finding = finding.link(ctx.links.sf_profile(id));
    }
    Some(finding.build())
}
