//! Diagnosis -> what people read: terminal text, the documented JSON, Slack Block Kit.

mod audit;
mod json;
mod sanitize;
pub mod slack;
mod status;
mod text;

pub use audit::{audit_text, cause_summary};
pub use json::json;
pub use sanitize::{clean_mrkdwn, escape_mrkdwn, strip_invisible, truncate};
// The Slack renderers, at the paths callers have always used.
pub use slack::{
    AuditSummary, HomeAudit, HomeViewer, MAX_BLOCKS, MAX_DETAILED_FINDINGS, MAX_HOME_BLOCKS,
    as_response, audit_progress_message, audit_summary_message, blocks, cause_line, error_message,
    help_message, home_unavailable_view, home_view, loading_message, plain_message, shared_by,
    status_message, unavailable_message,
};
pub use status::status_text;
pub use text::text;
