//! The bot's Home tab: how fresh the data is per source, the last refresh errors, how many
//! mappings are blocked by each cause, and (for admins) the button that runs an audit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::audit::{AuditReport, CauseCount};
use crate::domain::Severity;
use crate::render::{escape_mrkdwn, strip_invisible, truncate};
use crate::store::{SourceStatus, StatusReport};

/// Slack's limit for a Home tab view.
pub const MAX_HOME_BLOCKS: usize = 100;
/// Sources shown one block each; the rest are counted (`status` lists them all).
pub const MAX_HOME_SOURCES: usize = 40;
/// Causes listed; the rest are counted.
pub const MAX_HOME_CAUSES: usize = 12;
/// Longest business unit name shown, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest refresh error shown, in characters.
pub const MAX_ERROR_CHARS: usize = 300;

/// The audit's counts for one generation of the data: what the Home tab shows, without rows.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSummary {
    /// Rows per first cause, most first.
    pub by_cause: Vec<CauseCount>,
    /// Broken mappings, and those of them whose first cause is a blocker.
    pub rows: usize,
    pub blocked: usize,
    pub sf_users_scanned: usize,
    pub ae_users_scanned: usize,
    pub data_as_of: DateTime<Utc>,
    /// Business unit id -> name, for every business unit that has a row.
    pub business_unit_names: BTreeMap<String, String>,
}

impl AuditSummary {
    pub fn of(report: &AuditReport) -> Self {
        AuditSummary {
            by_cause: report.by_cause.clone(),
            rows: report.rows_total,
            blocked: report.blocked(),
            sf_users_scanned: report.sf_users_scanned,
            ae_users_scanned: report.ae_users_scanned,
            data_as_of: report.data_as_of,
            business_unit_names: report
                .business_units
                .iter()
                .map(|(id, name)| (id.to_string(), name.clone()))
                .collect(),
        }
    }
}

/// Where the audit counts of the current data stand.
#[derive(Debug, Clone, PartialEq)]
pub enum HomeAudit {
    /// No data loaded yet: nothing to count.
    NoData,
    /// Being counted; the view is published again when done.
    Counting,
    Ready(AuditSummary),
    /// The counts could not be made (the message goes to the person, bounded).
    Failed(String),
}

/// Who is looking: admins get the audit button, others are told who can run one.
pub struct HomeViewer<'a> {
    pub is_admin: bool,
    pub admin_user_ids: &'a [String],
    /// The admin user groups (`SLACK_ADMIN_USERGROUP_IDS`), named as user group mentions.
    pub admin_usergroup_ids: &'a [String],
}

/// The `view` of `views.publish` (`{"type": "home", "blocks": [...]}`).
pub fn home_view(
    status: &StatusReport,
    business_unit_names: &BTreeMap<String, String>,
    audit: &HomeAudit,
    viewer: &HomeViewer,
) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "crm-username"}}),
        section(format!(
            "Why a Salesforce username is missing from the Account Engagement CRM username dropdown: `/crm-username check jane@acme.com`, or mention the bot in a thread.\n*Data as of* {}",
            when(status.data_as_of)
        )),
        json!({"type": "divider"}),
    ];
    blocks.extend(freshness(status, business_unit_names));
    blocks.push(json!({"type": "divider"}));
    blocks.extend(causes(audit));
    blocks.push(json!({"type": "divider"}));
    blocks.extend(audit_controls(viewer));
    blocks.truncate(MAX_HOME_BLOCKS);
    json!({"type": "home", "blocks": blocks})
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3_000)}})
}

fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&text, 3_000)}]})
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".to_owned())
}

const AE_PREFIX: &str = "account_engagement:";

/// Salesforce first, then each business unit (by name), then the whole refresh: the sources
/// with a recorded status, and the business units that have data but none (demo, files).
fn freshness(status: &StatusReport, names: &BTreeMap<String, String>) -> Vec<Value> {
    let mut sources: Vec<(String, Option<&SourceStatus>)> = Vec::new();
    let mut push = |name: String| {
        if !sources.iter().any(|(n, _)| *n == name) {
            let s = status.sources.get(&name);
            sources.push((name, s));
        }
    };
    push("salesforce".to_owned());
    let mut units: Vec<String> = status
        .ae_users
        .keys()
        .cloned()
        .chain(
            status
                .sources
                .keys()
                .filter_map(|k| k.strip_prefix(AE_PREFIX).map(str::to_owned)),
        )
        .collect();
    units.sort_by_key(|id| (names.get(id).map(|n| n.to_lowercase()), id.clone()));
    units.dedup();
    for id in units {
        push(format!("{AE_PREFIX}{id}"));
    }
    for name in status.sources.keys() {
        push(name.clone());
    }

    let mut blocks = vec![section("*Data freshness*".to_owned())];
    let shown = sources.len().min(MAX_HOME_SOURCES);
    for (name, s) in &sources[..shown] {
        blocks.push(source_block(name, *s, status, names));
    }
    if sources.len() > shown {
        blocks.push(context(format!(
            "… and {} more sources: `/crm-username status` lists them all.",
            sources.len() - shown
        )));
    }
    blocks
}

fn source_block(
    name: &str,
    s: Option<&SourceStatus>,
    status: &StatusReport,
    names: &BTreeMap<String, String>,
) -> Value {
    let title = match name {
        "salesforce" => format!("Salesforce ({} users)", status.sf_users),
        "refresh" => "Last refresh".to_owned(),
        "refresh:full" => "Last full refresh".to_owned(),
        "refresh:incremental" => "Last incremental refresh (what changed)".to_owned(),
        other => match other.strip_prefix(AE_PREFIX) {
            Some(id) => {
                let users = status
                    .ae_users
                    .get(id)
                    .map(|n| format!(", {n} users"))
                    .unwrap_or_default();
                match names.get(id).filter(|n| !n.trim().is_empty()) {
                    Some(bu) => format!(
                        "Account Engagement: {} (`{}`{users})",
                        escape_mrkdwn(&truncate(&strip_invisible(bu), MAX_NAME_CHARS)),
                        escape_mrkdwn(id)
                    ),
                    None => format!("Account Engagement: `{}`{users}", escape_mrkdwn(id)),
                }
            }
            None => format!("`{}`", escape_mrkdwn(other)),
        },
    };
    let Some(s) = s else {
        return section(format!(
            ":white_circle: *{title}*\nNo refresh recorded: the data comes from the demo org or a snapshot file."
        ));
    };
    let failing = match (s.last_error_at, s.last_success_at) {
        (Some(error), Some(success)) => error > success,
        (Some(_), None) => true,
        _ => false,
    };
    let icon = if failing {
        ":warning:"
    } else {
        ":white_check_mark:"
    };
    let mut text = format!(
        "{icon} *{title}*\nLast success: {}",
        when(s.last_success_at)
    );
    if let Some(records) = s.records {
        text.push_str(&format!(" ({records} records"));
        if let Some(ms) = s.duration_ms {
            text.push_str(&format!(", {:.1} s", ms as f64 / 1000.0));
        }
        if let Some(calls) = s.api_calls {
            text.push_str(&format!(", {calls} API calls"));
        }
        text.push(')');
    }
    if let Some(error) = &s.last_error {
        text.push_str(&format!(
            "\nLast error: {}: {}",
            when(s.last_error_at),
            escape_mrkdwn(&truncate(&strip_invisible(error), MAX_ERROR_CHARS))
        ));
    }
    section(text)
}

fn severity(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Blocker => (":no_entry:", "blocker"),
        Severity::Warning => (":warning:", "warning"),
        Severity::Info => (":information_source:", "info"),
    }
}

/// One line of the counts: `:no_entry: *3* \`reserved_by_email\` (blocker)`.
pub fn cause_line(count: &CauseCount) -> String {
    let (icon, label) = severity(count.severity);
    format!(
        "{icon} *{}* `{}` ({label})",
        count.count,
        count.cause.as_str()
    )
}

fn causes(audit: &HomeAudit) -> Vec<Value> {
    let title = "*Missing mappings by cause*".to_owned();
    match audit {
        HomeAudit::NoData => vec![section(format!(
            "{title}\nNo org data has been loaded yet, so there is nothing to count."
        ))],
        HomeAudit::Counting => vec![section(format!(
            "{title}\n:hourglass_flowing_sand: Counting… this tab updates by itself when the counts are ready."
        ))],
        HomeAudit::Failed(problem) => vec![section(format!(
            "{title}\n:warning: The counts could not be made: {}. They are tried again the next time this tab is opened.",
            escape_mrkdwn(&truncate(&strip_invisible(problem), MAX_ERROR_CHARS))
        ))],
        HomeAudit::Ready(summary) if summary.by_cause.is_empty() => vec![
            section(format!(
                "{title}\n:white_check_mark: No missing mapping: every Salesforce user who should have an AE user has one, and every AE user has a CRM username."
            )),
            totals(summary),
        ],
        HomeAudit::Ready(summary) => {
            let shown = summary.by_cause.len().min(MAX_HOME_CAUSES);
            let mut lines: Vec<String> = summary.by_cause[..shown].iter().map(cause_line).collect();
            if summary.by_cause.len() > shown {
                lines.push(format!(
                    "… and {} more causes",
                    summary.by_cause.len() - shown
                ));
            }
            vec![
                json!({"type": "section", "block_id": "causes", "text": {"type": "mrkdwn", "text": truncate(&format!("{title}\n{}", lines.join("\n")), 3_000)}}),
                totals(summary),
            ]
        }
    }
}

fn totals(summary: &AuditSummary) -> Value {
    context(format!(
        "{} missing mappings, {} of them blocked · {} active Salesforce users and {} AE users scanned · data as of {}",
        summary.rows,
        summary.blocked,
        summary.sf_users_scanned,
        summary.ae_users_scanned,
        when(Some(summary.data_as_of))
    ))
}

/// Admins get the button; the server checks again on the click, never trusting the view.
fn audit_controls(viewer: &HomeViewer) -> Vec<Value> {
    if viewer.is_admin {
        return vec![
            section("*Audit*\nAudit every business unit now, from the latest data: the result comes to you in a direct message.".to_owned()),
            json!({"type": "actions", "block_id": "audit", "elements": [{
                "type": "button",
                "action_id": "run_audit",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Run an audit"},
            }]}),
        ];
    }
    // User and group ids come from the configuration; only well-formed ones become mentions.
    let well_formed =
        |id: &&String| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
    let admins: Vec<String> = viewer
        .admin_user_ids
        .iter()
        .filter(well_formed)
        .map(|u| format!("<@{u}>"))
        .chain(
            viewer
                .admin_usergroup_ids
                .iter()
                .filter(well_formed)
                .map(|g| format!("<!subteam^{g}>")),
        )
        .collect();
    let who = if admins.is_empty() {
        "No admin is configured (`SLACK_ADMIN_USER_IDS`, `SLACK_ADMIN_USERGROUP_IDS`), so nobody can run an audit from here."
            .to_owned()
    } else {
        format!("Audits are run by the bot's admins: {}.", admins.join(", "))
    };
    vec![context(who)]
}

/// The Home tab while the data cannot be read at all.
pub fn home_unavailable_view(problem: &str) -> Value {
    json!({"type": "home", "blocks": [
        json!({"type": "header", "text": {"type": "plain_text", "text": "crm-username"}}),
        section(format!(
            ":warning: The org data is unavailable right now: {}. Open this tab again in a minute.",
            escape_mrkdwn(&truncate(&strip_invisible(problem), MAX_ERROR_CHARS))
        )),
    ]})
}
