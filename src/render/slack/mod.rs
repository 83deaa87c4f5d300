//! Slack's side of rendering: Block Kit messages and the Home tab, built as `serde_json`
//! values in the exact shape Slack takes.
//!
//! Our own `serde_json` blocks, not slack-morphism's Block Kit types (`SlackBlock`), for now:
//! its button `url` is a `url::Url`, which rewrites links on the way out (`https://pi.pardot.com`
//! becomes `https://pi.pardot.com/`), so the messages would no longer be byte-identical to
//! their snapshots and to the documented `check --format blocks` output; and callers add
//! `response_type`, `replace_original`, `channel` and `thread_ts` to a message, and trim
//! blocks to Slack's limits, on the JSON value. Worth doing together with a review of the
//! snapshots.

mod audit;
mod blocks;
mod followups;
mod home;
mod messages;
mod shortcut;

pub use audit::{audit_progress_message, audit_summary_message};
pub use blocks::{MAX_BLOCKS, MAX_DETAILED_FINDINGS, blocks, error_message};
pub use followups::{
    FOLLOW_UP, FollowUpStep, STOP_FOLLOW_UP, follow_up_answer, follow_up_limit,
    follow_up_scheduled, follow_up_settled, follow_up_stopped, with_follow_up_button,
    worth_following_up,
};
pub use home::{
    AuditSummary, HomeAudit, HomeViewer, MAX_HOME_BLOCKS, cause_line, home_unavailable_view,
    home_view,
};
pub use messages::{
    as_response, help_message, loading_message, plain_message, shared_by, status_message,
    unavailable_message,
};
pub use shortcut::{PICK_ADDRESS, address_summary, in_thread, no_addresses_message, only_for_you};
