//! The Salesforce user itself: missing, inactive, or not an internal user. And the all-clear.

use crate::domain::snapshot::lower;
use crate::domain::{
    BusinessUnit, Finding, FindingCode, Org, Query, Section, Severity, SfUser, Subject,
    UserManagement,
};

use super::assignment::assigned;
use super::user_sync::profile_mapped;
use super::{Context, FindingBuilder};

pub(crate) fn not_found(org: &Org, query: &Query, close: &[&SfUser]) -> Finding {
    let what = match query.subject {
        Subject::Id(_) => "the user id",
        Subject::Login(_) => "the username or email",
        Subject::Name(_) => "the name",
    };
    let subject = query.text.split(" for ").next().unwrap_or(&query.text);
    let mut detail = format!(
        "No user in the Salesforce org at {} has {what} {subject}.",
        org.snapshot().salesforce.instance_url
    );
    if !close.is_empty() {
        let names: Vec<&str> = close.iter().take(3).map(|u| u.username.as_str()).collect();
        detail.push_str(&format!(" Close matches: {}.", names.join(", ")));
    }
    let mut finding =
        FindingBuilder::new(FindingCode::SalesforceUserNotFound, Severity::Blocker, None)
            .title(format!("No Salesforce user matches {subject}"))
            .detail(detail);
    finding = match close.first() {
        Some(best) => finding.step(format!(
            "Check the spelling: did you mean {}?",
            best.username
        )),
        None => finding.step("Check the spelling of the username, email or name."),
    };
    finding
        .step("Check the org: sandbox usernames end with the sandbox name (jane@acme.com.uat), production usernames do not.")
        .step("If the user was created after the data was fetched, re-check with fresh data.")
        .build()
}

pub(crate) fn inactive(ctx: &Context<'_>) -> Option<Finding> {
    let user = ctx.user;
    if user.is_active {
        return None;
    }
    Some(
        FindingBuilder::new(FindingCode::SalesforceUserInactive, Severity::Blocker, None)
            .title(format!("Salesforce user {} is inactive", user.username))
            .detail(format!(
                "{} ({}, {}) has IsActive = false. Account Engagement only offers active Salesforce users as CRM usernames, and User Sync ignores inactive users.",
                display_name(user), user.username, user.id
            ))
            .step(format!(
                "In Salesforce Setup > Users, open {} and tick Active, then save (this takes a Salesforce licence).",
                user.username
            ))
            .step("Or, if this person has another Salesforce user that is active, check and map that username instead.")
            .step("Re-check once the connector has synced the change.")
            .link(ctx.links.sf_user(user.id))
            .build(),
    )
}

/// Account Engagement maps only internal users (user type `Standard`, with a Salesforce or
/// Identity licence): partner and customer community, portal, guest and Chatter (`CsnOnly`)
/// users never appear in the dropdown, in any business unit.
pub(crate) fn unsupported_user_type(ctx: &Context<'_>) -> Option<Finding> {
    let user = ctx.user;
    if user.is_internal() {
        return None;
    }
    let user_type = user.user_type.as_deref().unwrap_or("unknown");
    let licence = user.user_license.as_deref().unwrap_or("unknown");
    let internal = internal_account(ctx.org, user);
    let mut detail = format!(
        "{} ({}, {}) has user type {user_type} and licence {licence}. Account Engagement maps only internal users: user type Standard, with a Salesforce or Identity licence. Community, portal, guest and Chatter users cannot hold a CRM username.",
        display_name(user),
        user.username,
        user.id
    );
    let mut finding = FindingBuilder::new(
        FindingCode::UnsupportedUserType,
        Severity::Blocker,
        None,
    )
    .title(format!(
        "{} is not an internal user (user type {user_type}): Account Engagement cannot map it",
        user.username
    ));
    // One Salesforce user button: Slack refuses two with the same action id in a message block.
    let shown = internal.map_or(user.id, |u| u.id);
    match internal {
        Some(other) => {
            detail.push_str(&format!(
                " The same person has an internal user with the email {}: {}.",
                user.email.trim(),
                other.username
            ));
            finding = finding.step(format!(
                "Map the internal user {} instead: check {} to see whether it can be picked.",
                other.username, other.username
            ));
        }
        None => {
            finding = finding
                .step("Find the person's internal Salesforce user (user type Standard) and map that username instead.")
                .step("If they have none, create an internal user for them with a Salesforce or Identity licence (Identity licences exist for Account Engagement-only users), then map it.");
        }
    }
    Some(
        finding
            .detail(detail)
            .link(ctx.links.sf_user(shown))
            .build(),
    )
}

/// Another user of the same person that AE can map: an internal user whose username or email
/// is this user's email (an active one first).
fn internal_account<'a>(org: &'a Org, user: &SfUser) -> Option<&'a SfUser> {
    let email = lower(user.email.trim()).into_owned();
    if email.is_empty() {
        return None;
    }
    let mut candidates: Vec<&SfUser> = org
        .user_by_username(&email)
        .into_iter()
        .chain(org.users_by_email(&email))
        .filter(|u| u.id != user.id && u.is_internal())
        .collect();
    candidates.sort_by_key(|u| (!u.is_active, u.username.clone()));
    candidates.into_iter().next()
}

pub(crate) fn no_blocker_found(ctx: &Context<'_>, bu: Option<usize>) -> Finding {
    let user = ctx.user;
    let Some(b) = bu else {
        return FindingBuilder::new(FindingCode::NoBlockerFound, Severity::Info, None)
            .title("No blocker found")
            .detail(format!(
                "{} is active. No Account Engagement business unit data is loaded, so mappings, email reservations, User Sync and user assignment could not be checked.",
                user.username
            ))
            .step("Configure the business units (BUSINESS_UNITS_FILE) so that the bot can check Account Engagement users.")
            .build();
    };
    let unit = ctx.bu(b);
    FindingBuilder::new(FindingCode::NoBlockerFound, Severity::Info, Some(unit))
        .title(format!("No blocker found in {}", unit.label()))
        .detail(format!(
            "{} is active, and no Account Engagement user in {} holds or reserves it; User Sync and user assignment allow it.{} It should be offered in the CRM username dropdown.",
            user.username,
            unit.label(),
            assignment_note(ctx, unit)
        ))
        .step(format!(
            "Check that the Salesforce connector of {} is verified (Account Engagement Settings > Connectors).",
            unit.label()
        ))
        .step("Reload the AE user's edit page: the dropdown is filled when the page opens.")
        .step(format!(
            "Re-check with fresh data: this answer uses data as of {}.",
            ctx.org.snapshot().fetched_at.format("%Y-%m-%d %H:%M UTC")
        ))
        .link(ctx.links.user_sync_settings(unit))
        .build()
}

/// Under Salesforce user management, how the user is assigned; for a Sales user whose profile
/// the User Sync map lacks, why that does not matter.
fn assignment_note(ctx: &Context<'_>, unit: &BusinessUnit) -> String {
    if unit.user_management != UserManagement::Salesforce {
        return String::new();
    }
    let Some(assigned) = assigned(ctx.org, ctx.user, &unit.assignment) else {
        return String::new();
    };
    let mut note = format!(" It is assigned {}.", assigned.describe());
    if assigned.section == Section::Sales
        && unit.user_sync
        && profile_mapped(unit, ctx.user) == Some(false)
    {
        note.push_str(&format!(
            " Sales users become AE Sales users whatever their profile, so the unmapped profile {} does not matter here.",
            ctx.user
                .profile_name
                .as_deref()
                .unwrap_or("of this user")
        ));
    }
    note
}

pub(crate) fn display_name(user: &SfUser) -> &str {
    if user.name.trim().is_empty() {
        &user.username
    } else {
        &user.name
    }
}
