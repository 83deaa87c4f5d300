//! Slack's side of rendering: Block Kit messages and the Home tab, in the exact shape Slack
//! takes. The answer to a check (a diagnosis, or why there is none) is typed ([`kit`]) and
//! serialised straight to the reply; the other messages are built as `serde_json` values, and
//! each typed message has a `Value` form for the callers that change messages as JSON.
//!
//! Not slack-morphism's Block Kit types (`SlackBlock`): its button `url` is a `url::Url`,
//! which rewrites links on the way out (`https://pi.pardot.com` becomes
//! `https://pi.pardot.com/`), so the messages would no longer be byte-identical to their
//! snapshots and to the documented `check --format blocks` output.

mod audit;
mod blocks;
mod followups;
mod home;
pub mod kit;
mod messages;
mod shortcut;

pub use audit::{audit_progress_message, audit_summary_message};
pub use blocks::{MAX_BLOCKS, MAX_DETAILED_FINDINGS, blocks, error, error_message, message};
pub use followups::{
    FOLLOW_UP, FollowUpStep, STOP_FOLLOW_UP, add_follow_up_button, follow_up_answer,
    follow_up_limit, follow_up_scheduled, follow_up_settled, follow_up_stopped,
    with_follow_up_button, worth_following_up,
};
pub use home::{
    AuditSummary, HomeAudit, HomeViewer, MAX_HOME_BLOCKS, cause_line, home_unavailable_view,
    home_view,
};
pub use messages::{
    as_response, help, help_message, loading, loading_message, plain, plain_message, shared_by,
    status_message, unavailable, unavailable_message,
};
pub use shortcut::{PICK_ADDRESS, address_summary, in_thread, no_addresses_message, only_for_you};
