//! Account Engagement (formerly Pardot) users, as the v5 API describes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::{SfId, SfUser};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AeUser {
    pub id: u64,
    #[serde(default)]
    pub email: String,
    /// The AE login name: not the CRM username.
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub role_name: Option<String>,
    /// The Salesforce user this AE user is mapped to (its CRM username), if any.
    #[serde(default, deserialize_with = "optional_sf_id")]
    pub salesforce_id: Option<SfId>,
    /// In the recycle bin.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub is_deleted: bool,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl AeUser {
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let name = name.trim();
        if name.is_empty() {
            self.email.clone()
        } else {
            name.to_owned()
        }
    }
}

/// AE sends an unmapped user's `salesforceId` as `null` or as an empty string.
pub fn optional_sf_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SfId>, D::Error> {
    let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => SfId::parse(text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid Salesforce id {text:?}: {e}"))),
    }
}

/// `isDeleted` has been documented both as a boolean and as the string "false".
pub fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag<'a> {
        Bool(bool),
        Text(std::borrow::Cow<'a, str>),
        Null(()),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Null(()) => Ok(false),
        Flag::Text(t) if t.eq_ignore_ascii_case("true") || t == "1" => Ok(true),
        Flag::Text(t) if t.eq_ignore_ascii_case("false") || t == "0" || t.is_empty() => Ok(false),
        Flag::Text(t) => Err(serde::de::Error::custom(format!(
            "expected true or false, found {t:?}"
        ))),
    }
}

/// The Salesforce user an AE user with no CRM username would be mapped to: the user whose
/// username is the AE user's email, else the one user whose email it is (an active one when
/// several share it).
pub fn counterpart<'a>(
    by_username: Option<&'a SfUser>,
    by_email: &[&'a SfUser],
) -> Option<&'a SfUser> {
    if let Some(user) = by_username {
        return Some(user);
    }
    match by_email {
        [] => None,
        [one] => Some(*one),
        several => {
            let mut active = several.iter().filter(|u| u.is_active);
            match (active.next(), active.next()) {
                (Some(one), None) => Some(*one),
                _ => None,
            }
        }
    }
}
