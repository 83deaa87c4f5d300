//! An org snapshot: everything the diagnosis reads, as of one moment. Loaded from the JSON
//! format of docs/reference.md (`--org FILE`, the demo org) or built by a refresh.

use rustc_hash::FxHashSet as HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BusinessUnit, SalesforceOrg};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgSnapshot {
    pub fetched_at: DateTime<Utc>,
    pub salesforce: SalesforceOrg,
    #[serde(default)]
    pub business_units: Vec<BusinessUnit>,
}

/// Why a snapshot could not be used. `Display` names the source, the place and the problem.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}:{line}:{column}: {path}: {message}")]
    Parse {
        source_name: String,
        line: usize,
        column: usize,
        /// Where in the document, e.g. `salesforce.users[3].id`.
        path: String,
        message: String,
    },
    #[error("{source_name}: {path}: {message}")]
    Invalid {
        source_name: String,
        path: String,
        message: String,
    },
}

impl OrgSnapshot {
    /// Puts every list in one order (records by id, memberships by group then member, each
    /// once), whatever order the APIs sent them in. A refresh publishes the canonical form,
    /// so that a full refresh and a series of incremental ones that saw the same data write
    /// the same cache, byte for byte (lists of users sharing an email, for instance, follow
    /// the users' order).
    pub fn canonicalize(&mut self) {
        let sf = &mut self.salesforce;
        sf.users.sort_by_key(|u| u.id);
        sf.users.dedup_by_key(|u| u.id);
        sf.roles.sort_by_key(|r| r.id);
        sf.roles.dedup_by_key(|r| r.id);
        sf.groups.sort_by_key(|g| g.id);
        sf.groups.dedup_by_key(|g| g.id);
        sf.group_members.sort_by_key(|m| (m.group_id, m.member_id));
        sf.group_members.dedup_by_key(|m| (m.group_id, m.member_id));
        for bu in &mut self.business_units {
            bu.users.sort_by_key(|u| u.id);
            bu.users.dedup_by_key(|u| u.id);
        }
    }

    /// Parses and validates a snapshot; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self, SnapshotError> {
        // Tracking the path costs a third of the parse: only pay for it to explain an error.
        let snapshot: OrgSnapshot = match serde_json::from_str(text) {
            Ok(snapshot) => snapshot,
            Err(_) => return Err(Self::explain_parse_error(text, source_name)),
        };
        snapshot.validate(source_name)?;
        Ok(snapshot)
    }

    fn explain_parse_error(text: &str, source_name: &str) -> SnapshotError {
        let parse_error = |path: String, inner: serde_json::Error| SnapshotError::Parse {
            source_name: source_name.to_owned(),
            line: inner.line(),
            column: inner.column(),
            path,
            message: strip_position(&inner.to_string()),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, OrgSnapshot>(&mut de) {
            Err(err) => {
                let path = match err.path().to_string() {
                    p if p == "." => "(document)".to_owned(),
                    p => p,
                };
                parse_error(path, err.into_inner())
            }
            Ok(_) => match de.end() {
                Err(inner) => parse_error("(document)".to_owned(), inner),
                Ok(()) => SnapshotError::Invalid {
                    source_name: source_name.to_owned(),
                    path: "(document)".to_owned(),
                    message: "the document could not be read".to_owned(),
                },
            },
        }
    }

    /// Checks what the JSON shape cannot: unique ids and usernames, URLs the links rely on.
    fn validate(&self, source_name: &str) -> Result<(), SnapshotError> {
        let invalid = |path: String, message: String| SnapshotError::Invalid {
            source_name: source_name.to_owned(),
            path,
            message,
        };
        check_url(&self.salesforce.instance_url)
            .map_err(|m| invalid("salesforce.instance_url".into(), m))?;
        if let Some(url) = &self.salesforce.lightning_url {
            check_url(url).map_err(|m| invalid("salesforce.lightning_url".into(), m))?;
        }
        let mut ids =
            HashSet::with_capacity_and_hasher(self.salesforce.users.len(), Default::default());
        let mut usernames =
            HashSet::with_capacity_and_hasher(self.salesforce.users.len(), Default::default());
        for (i, user) in self.salesforce.users.iter().enumerate() {
            if user.username.trim().is_empty() {
                return Err(invalid(
                    format!("salesforce.users[{i}].username"),
                    "a Salesforce user needs a username".into(),
                ));
            }
            if !ids.insert(user.id) {
                return Err(invalid(
                    format!("salesforce.users[{i}].id"),
                    format!("user id {} appears twice", user.id),
                ));
            }
            if !usernames.insert(lower(&user.username)) {
                return Err(invalid(
                    format!("salesforce.users[{i}].username"),
                    format!(
                        "username {:?} appears twice (Salesforce usernames are unique)",
                        user.username
                    ),
                ));
            }
        }
        let mut bu_ids = HashSet::default();
        for (b, bu) in self.business_units.iter().enumerate() {
            if !bu_ids.insert(bu.id) {
                return Err(invalid(
                    format!("business_units[{b}].id"),
                    format!("business unit {} appears twice", bu.id),
                ));
            }
            check_url(&bu.ae_url).map_err(|m| invalid(format!("business_units[{b}].ae_url"), m))?;
            let mut ae_ids = HashSet::default();
            for (u, user) in bu.users.iter().enumerate() {
                if !ae_ids.insert(user.id) {
                    return Err(invalid(
                        format!("business_units[{b}].users[{u}].id"),
                        format!("AE user id {} appears twice in this business unit", user.id),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Moves every timestamp by the same amount so that `fetched_at` becomes `now`: the demo
    /// org keeps its story ("assigned 20 minutes ago") whenever it is run.
    pub fn shift_to(&mut self, now: DateTime<Utc>) {
        let delta = now - self.fetched_at;
        self.fetched_at = now;
        for user in &mut self.salesforce.users {
            if let Some(t) = &mut user.modified_at {
                *t += delta;
            }
        }
        for user in self
            .business_units
            .iter_mut()
            .flat_map(|bu| bu.users.iter_mut())
        {
            for t in [&mut user.created_at, &mut user.updated_at]
                .into_iter()
                .flatten()
            {
                *t += delta;
            }
        }
    }
}

/// Links are built from these, so only absolute http(s) URLs with a host are accepted.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid_host || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not a valid URL"));
    }
    Ok(())
}

/// Lower-cased, allocating only when something changes (most usernames are lower case).
pub fn lower(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(text.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// serde_json appends " at line L column C"; the error already carries both.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
