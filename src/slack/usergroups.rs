//! Admins by Slack user group (`SLACK_ADMIN_USERGROUP_IDS`): the members of each group, asked
//! of Slack with `usergroups.users.list` (scope `usergroups:read`), kept in this process and
//! asked again every few minutes by a background job. A group Slack cannot resolve keeps the
//! members it had last; the failure is logged once, and again only when it changes or ends.
//!
//! [`AppState::is_admin`](crate::state::AppState::is_admin) consults these members next to
//! `SLACK_ADMIN_USER_IDS`.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::SlackApiError;
use crate::state::AppState;

/// How often the groups' members are asked again. Membership changes by hand, a few times a
/// month; five minutes is within what an admin waits after editing a group, and costs 12
/// calls an hour per group and replica, far below the method's rate limit (Tier 2, 20 a
/// minute).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long `serve` waits for the first resolution before it answers anyone, so that a group
/// admin is not refused in the first moments; past it the bot serves and the job goes on.
pub const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(5);

/// Which user groups make admins, and how often their members are asked again.
#[derive(Debug, Clone)]
pub struct UsergroupSettings {
    /// User group ids (`S…`), validated; empty: no group makes admins.
    pub ids: Vec<String>,
    pub refresh: Duration,
}

impl Default for UsergroupSettings {
    fn default() -> Self {
        UsergroupSettings {
            ids: Vec::new(),
            refresh: REFRESH_EVERY,
        }
    }
}

/// The admin user groups and their members as last resolved, shared by every handler.
#[derive(Default)]
pub struct AdminUsergroups {
    groups: RwLock<Groups>,
}

#[derive(Default)]
struct Groups {
    /// The configured ids, in their order (the Home tab names them).
    ids: Vec<String>,
    /// Members per group, from its last successful resolution; a group never resolved yet
    /// has none.
    members: HashMap<String, HashSet<String>>,
}

impl AdminUsergroups {
    /// The groups whose members are admins; set once, when the app is built.
    pub fn configure(&self, ids: &[String]) {
        let mut groups = self.write();
        groups.ids = ids.to_vec();
        groups.members.retain(|id, _| ids.contains(id));
    }

    pub fn ids(&self) -> Vec<String> {
        self.read().ids.clone()
    }

    /// Whether `user_id` is in any admin user group, as last resolved.
    pub fn contains(&self, user_id: &str) -> bool {
        self.read().members.values().any(|m| m.contains(user_id))
    }

    /// Replaces a group's members; the ones it had.
    fn set_members(&self, group: &str, members: HashSet<String>) -> Option<HashSet<String>> {
        self.write().members.insert(group.to_owned(), members)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Groups> {
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Groups> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What is known of one group's resolution, to log a failure once rather than every round.
#[derive(Default)]
struct GroupHealth {
    /// The failure being reported (its kind and Slack's code), while it lasts.
    failing: Option<String>,
    resolved_once: bool,
}

/// Resolves every group now and then every `settings.refresh`, until `shutdown`. `first` is
/// told when the first round is over, whatever it found.
pub async fn run(
    state: AppState,
    settings: UsergroupSettings,
    first: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut health: HashMap<String, GroupHealth> = HashMap::new();
    let mut first = Some(first);
    let mut ticks = tokio::time::interval(settings.refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for id in &settings.ids {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = state.slack.web.usergroup_members(id) => outcome,
            };
            resolved(&state, id, outcome, health.entry(id.clone()).or_default());
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
    }
}

/// Keeps what one group resolved to, or keeps its previous members and says why once.
fn resolved(
    state: &AppState,
    id: &str,
    outcome: Result<Vec<String>, SlackApiError>,
    health: &mut GroupHealth,
) {
    match outcome {
        Ok(members) => {
            let members: HashSet<String> = members.into_iter().collect();
            let count = members.len();
            let previous = state.admin_usergroups.set_members(id, members.clone());
            // Who gained or lost admin rights, for the record (user ids, not secrets).
            if let Some(previous) = previous.filter(|p| *p != members) {
                let mut added: Vec<&String> = members.difference(&previous).collect();
                let mut removed: Vec<&String> = previous.difference(&members).collect();
                added.sort();
                removed.sort();
                tracing::info!(usergroup = %id, ?added, ?removed, "the admin user group's members changed");
            }
            metrics::gauge!(crate::metrics::ADMIN_USERGROUP_RESOLVED, "usergroup" => id.to_owned())
                .set(chrono::Utc::now().timestamp() as f64);
            metrics::gauge!(crate::metrics::ADMIN_USERGROUP_MEMBERS, "usergroup" => id.to_owned())
                .set(count as f64);
            if health.failing.take().is_some() {
                tracing::info!(usergroup = %id, members = count, "the admin user group resolves again");
            } else if !health.resolved_once {
                tracing::info!(usergroup = %id, members = count, "resolved an admin user group");
            }
            health.resolved_once = true;
        }
        Err(error) => {
            metrics::counter!(crate::metrics::ADMIN_USERGROUP_FAILURES, "usergroup" => id.to_owned(), "error" => error.label())
                .increment(1);
            let kind = failure_kind(&error);
            if health.failing.as_deref() != Some(kind.as_str()) {
                tracing::warn!(
                    usergroup = %id,
                    error = %error,
                    "could not resolve an admin user group; its members as last resolved stay admins \
                     (none if it never resolved). Logged again when this changes"
                );
                health.failing = Some(kind);
            }
        }
    }
}

/// A failure's kind, to tell a new failure from the same one again: Slack's error code, or
/// the error's label (a rate limit of 3 s or of 5 s is the same failure).
fn failure_kind(error: &SlackApiError) -> String {
    match error {
        SlackApiError::Api(code) => format!("slack_error:{code}"),
        other => other.label().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_the_same_whatever_the_wait_slack_asked_for() {
        assert_eq!(
            failure_kind(&SlackApiError::RateLimited(3)),
            failure_kind(&SlackApiError::RateLimited(5))
        );
        assert_ne!(
            failure_kind(&SlackApiError::Api("missing_scope".into())),
            failure_kind(&SlackApiError::Api("no_such_subteam".into()))
        );
    }

    #[test]
    fn members_of_a_configured_group_are_found_and_others_are_not() {
        let groups = AdminUsergroups::default();
        groups.configure(&["S0ADMINS".to_owned()]);
        groups.set_members("S0ADMINS", ["U1".to_owned()].into_iter().collect());
        assert!(groups.contains("U1"));
        assert!(!groups.contains("U2"));
        assert_eq!(groups.ids(), ["S0ADMINS"]);
    }
}
