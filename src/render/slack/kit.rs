//! The Block Kit pieces our messages use, as typed structs serialised straight to Slack's JSON
//! (serde derive): the answer to a check is built and written without an intermediate
//! `serde_json::Value` tree.
//!
//! Our own small structs, not slack-morphism's `SlackBlock` family: its button `url` is a
//! `url::Url`, which rewrites links on the way out (`https://pi.pardot.com` becomes
//! `https://pi.pardot.com/`), so Slack would no longer receive the JSON our snapshots and the
//! documented `check --format blocks` output show. The fields of every struct are declared in
//! the alphabetical order `serde_json::Value` (a sorted map) writes them in, and each block
//! carries its `type` as a field set by its constructor: the bytes are the same as those of the
//! `Value` messages, key order included (tests below and in tests/it/render.rs compare them).
//! Messages that callers still change as JSON (shared answers, the Home tab, follow-ups) get a
//! `Value` from [`Message::into_value`].

use serde::Serialize;
use serde_json::Value;

use crate::render::truncate;

/// Slack's limit on a section's text.
const MAX_SECTION: usize = 3_000;
const MAX_BUTTON_TEXT: usize = 75;
const MAX_BUTTON_VALUE: usize = 2_000;

/// A message: its fallback `text` and blocks, and for a slash command reply or a
/// `response_url` post, `response_type` and `replace_original`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub blocks: Vec<Block>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_original: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    pub text: String,
}

impl Message {
    pub fn new(text: String, blocks: Vec<Block>) -> Self {
        Message {
            blocks,
            replace_original: None,
            response_type: None,
            text,
        }
    }

    /// Adds `response_type` (and `replace_original`), as [`crate::render::as_response`] does
    /// to a `Value`.
    pub fn as_response(mut self, in_channel: bool, replace_original: Option<bool>) -> Self {
        self.response_type = Some(if in_channel {
            "in_channel"
        } else {
            "ephemeral"
        });
        if replace_original.is_some() {
            self.replace_original = replace_original;
        }
        self
    }

    /// The same message as a JSON value, for the callers that still change it as JSON.
    pub fn into_value(self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| unreachable!("a message serialises"))
    }

    /// The elements of the `footer` actions block, if the message has one.
    pub fn footer_elements(&mut self) -> Option<&mut Vec<Button>> {
        self.blocks.iter_mut().find_map(|b| match b {
            Block::Actions(a) if a.block_id.as_deref() == Some("footer") => Some(&mut a.elements),
            _ => None,
        })
    }
}

/// One block; each variant writes its own `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Block {
    Header(Header),
    Section(Section),
    Context(Context),
    Divider(Divider),
    Actions(Actions),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    text: PlainText,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accessory: Option<Button>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    text: Mrkdwn,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    elements: Vec<Mrkdwn>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divider {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    pub elements: Vec<Button>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Button {
    action_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
    text: PlainText,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct PlainText {
    emoji: bool,
    text: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Mrkdwn {
    text: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Mrkdwn {
    fn new(text: String) -> Self {
        Mrkdwn {
            text,
            kind: "mrkdwn",
        }
    }
}

impl Block {
    /// A header; `text` is cut to `max` characters.
    pub fn header(text: &str, max: usize) -> Self {
        Block::Header(Header {
            text: PlainText {
                emoji: true,
                text: truncate(text, max),
                kind: "plain_text",
            },
            kind: "header",
        })
    }

    /// A mrkdwn section, its text cut to Slack's 3,000 characters.
    pub fn section(block_id: Option<String>, text: &str) -> Self {
        Block::Section(Section {
            accessory: None,
            block_id,
            text: Mrkdwn::new(truncate(text, MAX_SECTION)),
            kind: "section",
        })
    }

    /// A section with a button beside its text.
    pub fn section_with(block_id: Option<String>, text: &str, accessory: Button) -> Self {
        let Block::Section(mut section) = Block::section(block_id, text) else {
            unreachable!("a section")
        };
        section.accessory = Some(accessory);
        Block::Section(section)
    }

    /// A context block of one mrkdwn text.
    pub fn context(text: String) -> Self {
        Block::Context(Context {
            elements: vec![Mrkdwn::new(text)],
            kind: "context",
        })
    }

    pub fn divider() -> Self {
        Block::Divider(Divider { kind: "divider" })
    }

    pub fn actions(block_id: Option<String>, elements: Vec<Button>) -> Self {
        Block::Actions(Actions {
            block_id,
            elements,
            kind: "actions",
        })
    }
}

impl Button {
    /// A button; its label is cut to 75 characters and its value to 2,000.
    pub fn new(action_id: &str, label: &str, value: Option<&str>, url: Option<&str>) -> Self {
        Button {
            action_id: action_id.to_owned(),
            style: None,
            text: PlainText {
                emoji: false,
                text: truncate(&crate::render::strip_invisible(label), MAX_BUTTON_TEXT),
                kind: "plain_text",
            },
            kind: "button",
            url: url.map(str::to_owned),
            value: value.map(|v| truncate(v, MAX_BUTTON_VALUE)),
        }
    }

    pub fn danger(mut self) -> Self {
        self.style = Some("danger");
        self
    }
}
