//! Which Salesforce user the query means, and which AE user is being edited.

use crate::domain::{AeUser, Org, SfUser, Subject, TargetRef};

/// At most this many candidates are returned for `ambiguous` and `not_found`.
pub use crate::suggest::MAX_CANDIDATES;

pub(crate) enum Resolution<'a> {
    Found(&'a SfUser),
    Ambiguous {
        users: Vec<&'a SfUser>,
        total: usize,
    },
    NotFound {
        close: Vec<&'a SfUser>,
    },
}

pub(crate) fn subject<'a>(org: &'a Org, subject: &Subject) -> Resolution<'a> {
    match subject {
        Subject::Id(id) => match org.user_by_id(*id) {
            Some(user) => Resolution::Found(user),
            None => Resolution::NotFound { close: Vec::new() },
        },
        Subject::Login(login) => {
            // Usernames are unique across Salesforce; emails are not.
            if let Some(user) = org.user_by_username(login) {
                return Resolution::Found(user);
            }
            let mut by_email = org.users_by_email(login);
            match by_email.len() {
                0 => Resolution::NotFound {
                    close: org.closest_usernames(login, MAX_CANDIDATES),
                },
                1 => Resolution::Found(by_email[0]),
                total => {
                    by_email.sort_by(|a, b| a.username.cmp(&b.username));
                    by_email.truncate(MAX_CANDIDATES);
                    Resolution::Ambiguous {
                        users: by_email,
                        total,
                    }
                }
            }
        }
        Subject::Name(name) => {
            let result = org.search_name(name, MAX_CANDIDATES);
            match result.total {
                0 => Resolution::NotFound {
                    close: org.closest_names(name, MAX_CANDIDATES),
                },
                1 => Resolution::Found(result.users[0]),
                total => Resolution::Ambiguous {
                    users: result.users,
                    total,
                },
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "No Account Engagement user matches {0:?} in any business unit. Check the AE user's email or id (Account Engagement Settings > User Management > Users)."
    )]
    NotFound(String),
    #[error(
        "{0:?} matches several Account Engagement users: {1}. Name the one being edited by its numeric id, e.g. `for {2}`."
    )]
    Ambiguous(String, String, u64),
}

/// The AE user being edited. Users in the recycle bin cannot be edited, so an active match
/// wins over a deleted one.
pub(crate) fn target<'a>(
    org: &'a Org,
    target: &TargetRef,
) -> Result<(usize, &'a AeUser), TargetError> {
    let mut matches: Vec<(usize, &AeUser)> = Vec::new();
    for bu in 0..org.business_units().len() {
        match target {
            TargetRef::AeId(id) => matches.extend(org.ae_user_by_id(bu, *id).map(|u| (bu, u))),
            TargetRef::Email(email) => {
                matches.extend(org.ae_users_with_email(bu, email).map(|u| (bu, u)))
            }
        }
    }
    if matches.iter().any(|(_, u)| !u.is_deleted) {
        matches.retain(|(_, u)| !u.is_deleted);
    }
    match matches.as_slice() {
        [] => Err(TargetError::NotFound(target.to_string())),
        [one] => Ok(*one),
        several => {
            let listed = several
                .iter()
                .take(5)
                .map(|(bu, u)| format!("{} in {}", u.id, org.business_units()[*bu].label()))
                .collect::<Vec<_>>()
                .join(", ");
            Err(TargetError::Ambiguous(
                target.to_string(),
                listed,
                several[0].1.id,
            ))
        }
    }
}
