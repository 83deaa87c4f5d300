//! Diagnosis -> what people read: terminal text, CONTRACT.md's JSON, Slack Block Kit.

mod blocks;
mod json;
mod sanitize;
mod text;

pub use blocks::{MAX_BLOCKS, MAX_DETAILED_FINDINGS, blocks, error_message};
pub use json::json;
pub use sanitize::{escape_mrkdwn, strip_invisible, truncate};
pub use text::text;
