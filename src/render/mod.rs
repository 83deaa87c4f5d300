//! Diagnosis -> what people read: terminal text, the documented JSON, Slack Block Kit.

mod audit;
mod blocks;
mod home;
mod json;
mod sanitize;
mod slack_messages;
mod status;
mod text;

pub use audit::{audit_progress_message, audit_summary_message, audit_text, cause_summary};
pub use blocks::{MAX_BLOCKS, MAX_DETAILED_FINDINGS, blocks, error_message};
pub use home::{
    AuditSummary, HomeAudit, HomeViewer, MAX_HOME_BLOCKS, cause_line, home_unavailable_view,
    home_view,
};
pub use json::json;
pub use sanitize::{escape_mrkdwn, strip_invisible, truncate};
pub use slack_messages::{
    as_response, help_message, loading_message, plain_message, shared_by, status_message,
    unavailable_message,
};
pub use status::status_text;
pub use text::text;
