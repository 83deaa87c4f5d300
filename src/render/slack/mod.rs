//! Slack's side of rendering: Block Kit messages and the Home tab, built as `serde_json`
//! values in the exact shape Slack takes.

mod audit;
mod blocks;
mod home;
mod messages;

pub use audit::{audit_progress_message, audit_summary_message};
pub use blocks::{MAX_BLOCKS, MAX_DETAILED_FINDINGS, blocks, error_message};
pub use home::{
    AuditSummary, HomeAudit, HomeViewer, MAX_HOME_BLOCKS, cause_line, home_unavailable_view,
    home_view,
};
pub use messages::{
    as_response, help_message, loading_message, plain_message, shared_by, status_message,
    unavailable_message,
};
