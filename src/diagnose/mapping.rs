//! Scenario 1: the username is already mapped to another AE user, active or in the recycle bin.

use crate::domain::{Finding, FindingCode, Severity};

use super::{Context, FindingBuilder, describe_ae_user};

/// AE users of this business unit holding the user: `mapped_to_active_user`,
/// `mapped_to_deleted_user`, or `already_mapped_to_target` when it is the one being edited.
pub(crate) fn mapped_users(ctx: &Context<'_>, bu: usize) -> Vec<Finding> {
    let unit = ctx.bu(bu);
    let user = ctx.user;
    let mut holders: Vec<_> = ctx.org.ae_users_mapped_to(bu, user.id).collect();
    holders.sort_by_key(|u| (u.is_deleted, u.id));
    holders
        .into_iter()
        .map(|ae| {
            let who = describe_ae_user(ae);
            if ctx.is_target(bu, ae) {
                FindingBuilder::new(FindingCode::AlreadyMappedToTarget, Severity::Info, Some(unit))
                    .title(format!("{} already has {} as its CRM username", ae.email, user.username))
                    .detail(format!(
                        "{who} in {} is already mapped to {}: the dropdown shows it as the current value.",
                        unit.label(), user.username
                    ))
                    .step("Nothing to do.")
                    .link(ctx.links.ae_user(unit, ae))
                    .ae_user(ae, unit)
                    .build()
            } else if ae.is_deleted {
                FindingBuilder::new(FindingCode::MappedToDeletedUser, Severity::Blocker, Some(unit))
                    .title(format!(
                        "Held by deleted AE user {} in the recycle bin of {}",
                        ae.email, unit.label()
                    ))
                    .detail(format!(
                        "{who} is in the recycle bin of {} and still has {} as its CRM username. Deleted users keep their mapping, so the username is not offered to anyone else.",
                        unit.label(), user.username
                    ))
                    .step(format!(
                        "In {}, go to Admin > Recycle Bin > Users and find {} (AE user {}).",
                        unit.label(), ae.email, ae.id
                    ))
                    .step("Restore (undelete) the user.")
                    .step("Edit the restored user, clear its CRM username, and save.")
                    .step("Delete the user again.")
                    .step(format!("Edit the user you want to map and pick {} as CRM username.", user.username))
                    .link(ctx.links.recycle_bin(unit))
                    .link(ctx.links.ae_user(unit, ae))
                    .ae_user(ae, unit)
                    .build()
            } else {
                FindingBuilder::new(FindingCode::MappedToActiveUser, Severity::Blocker, Some(unit))
                    .title(format!(
                        "Already mapped to AE user {} in {}",
                        ae.email, unit.label()
                    ))
                    .detail(format!(
                        "{who} in {} has {} as its CRM username. A CRM username is mapped to one Account Engagement user per business unit, so it is not offered to any other.",
                        unit.label(), user.username
                    ))
                    .step(format!(
                        "Open {} in Account Engagement Settings > User Management > Users.",
                        ae.email
                    ))
                    .step("Edit the user, clear or change its CRM username, and save.")
                    .step(format!("Edit the user you want to map and pick {} as CRM username.", user.username))
                    .link(ctx.links.ae_user(unit, ae))
                    .link(ctx.links.ae_users(unit))
                    .ae_user(ae, unit)
                    .build()
            }
        })
        .collect()
}

/// With a target, mappings in other business units do not block; they are worth knowing.
pub(crate) fn mapped_in_other_business_unit(ctx: &Context<'_>, bu: usize) -> Vec<Finding> {
    let unit = ctx.bu(bu);
    let target_bu = ctx
        .target
        .map(|(t, _)| ctx.bu(t).label())
        .unwrap_or_default();
    ctx.org
        .ae_users_mapped_to(bu, ctx.user.id)
        .map(|ae| {
            let state = if ae.is_deleted { " (in the recycle bin)" } else { "" };
            FindingBuilder::new(FindingCode::MappedInOtherBusinessUnit, Severity::Info, Some(unit))
                .title(format!("Also mapped in {}, to AE user {}", unit.label(), ae.email))
                .detail(format!(
                    "In {}, {}{state} has {} as its CRM username. A Salesforce user may be mapped in several business units: this does not block {target_bu}.",
                    unit.label(), describe_ae_user(ae), ctx.user.username
                ))
                .step(format!("Nothing to do for {target_bu}."))
                .link(ctx.links.ae_user(unit, ae))
                .ae_user(ae, unit)
                .build()
        })
        .collect()
}
