//! Scenario 2: an unmapped AE user's email equals the username, so AE reserves the username
//! for it; and the User Sync variant, where the Salesforce email collides.

use crate::domain::{Finding, FindingCode, Severity};

use super::{Context, FindingBuilder, describe_ae_user};

/// Recycle-bin users are not counted: the article's example concerns users in use, and a
/// deleted user cannot be picked in the dropdown either way.
pub(crate) fn reserved_by_email(ctx: &Context<'_>, bu: usize) -> Vec<Finding> {
    let unit = ctx.bu(bu);
    let user = ctx.user;
    let username = user.username.to_lowercase();
    ctx.org
        .ae_users_with_email(bu, &username)
        .filter(|ae| ae.salesforce_id.is_none() && !ae.is_deleted && !ctx.is_target(bu, ae))
        .map(|ae| {
            FindingBuilder::new(FindingCode::ReservedByEmail, Severity::Blocker, Some(unit))
                .title(format!(
                    "Reserved for AE user {} in {}, whose email equals the username",
                    ae.email,
                    unit.label()
                ))
                .detail(format!(
                    "{} in {} has no CRM username, and its email equals the Salesforce username {}. Account Engagement reserves that username for it and hides it from every other user's dropdown.",
                    describe_ae_user(ae),
                    unit.label(),
                    user.username
                ))
                .step(format!(
                    "If {} is the right person, edit that AE user instead and pick {} as its CRM username.",
                    ae.email, user.username
                ))
                .step(format!(
                    "Otherwise change that AE user's email (Account Engagement Settings > User Management > Users > {} > Edit) and save.",
                    ae.email
                ))
                .step(format!("Then edit the user you want to map and pick {}.", user.username))
                .link(ctx.links.ae_user(unit, ae))
                .ae_user(ae, unit)
                .build()
        })
        .collect()
}

pub(crate) fn sync_skipped_email_conflict(ctx: &Context<'_>, bu: usize) -> Vec<Finding> {
    let unit = ctx.bu(bu);
    let user = ctx.user;
    let email = user.email.trim().to_lowercase();
    if !unit.user_sync || email.is_empty() || email == user.username.to_lowercase() {
        return Vec::new();
    }
    ctx.org
        .ae_users_with_email(bu, &email)
        .filter(|ae| ae.salesforce_id.is_none() && !ae.is_deleted && !ctx.is_target(bu, ae))
        .map(|ae| {
            FindingBuilder::new(FindingCode::SyncSkippedEmailConflict, Severity::Warning, Some(unit))
                .title(format!(
                    "User Sync skips {}: AE user {} already has its email",
                    user.username, ae.email
                ))
                .detail(format!(
                    "User Sync is on in {}. Salesforce user {} has the email {}, which differs from its username, and {} has that email and no CRM username, so User Sync skips creating a user for it.",
                    unit.label(),
                    user.username,
                    user.email,
                    describe_ae_user(ae)
                ))
                .step(format!(
                    "Map {} to the existing AE user {}: edit it, pick the CRM username, save.",
                    user.username, ae.email
                ))
                .step("Or change that AE user's email, so that User Sync can create a new user.")
                .link(ctx.links.ae_user(unit, ae))
                .link(ctx.links.user_sync_settings(unit))
                .ae_user(ae, unit)
                .build()
        })
        .collect()
}
