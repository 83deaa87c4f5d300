//! Plain data of the domain: no IO.

mod account_engagement;
mod business_unit;
mod finding;
mod message_addresses;
mod org;
mod query;
mod reach;
mod salesforce;
mod sf_id;
pub(crate) mod snapshot;

pub use account_engagement::{AeUser, bool_or_string, counterpart, optional_sf_id};
pub use business_unit::{
    Assignment, AssignmentSection, BusinessUnit, DEFAULT_AE_URL, LinkTemplates, RecordRef, Section,
    UserManagement,
};
pub use finding::*;
pub use message_addresses::{MAX_MESSAGE_ADDRESSES, MAX_SCANNED_BYTES, message_addresses};
pub use org::{NameMatch, Org, SearchResult, name_key, name_match};
pub use query::{Query, QueryError, Subject, TargetRef};
pub use reach::{
    GROUP_ID_PREFIX, assignment_roots, new_member_groups, reachable_groups, reachable_in,
};
pub use salesforce::{
    GroupMember, INTERNAL_USER_TYPE, PublicGroup, Role, RoleGroupKind, SalesforceOrg, SfUser,
};
pub use sf_id::{SfId, SfIdError};
pub use snapshot::{OrgSnapshot, SnapshotError, check_url};
