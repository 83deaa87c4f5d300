//! `crm-username doctor`: checks, in order, everything the bot needs — the configuration,
//! Redis, Salesforce, Account Engagement per business unit, the settings against the org, and
//! Slack — and says for each what to fix. `serve` runs the same checks at start-up and logs
//! them.
//!
//! One file per upstream; each holds the IO of its checks at the top and pure functions that
//! turn what was read into [`Check`]s below. No check prints a secret: tokens, passwords and
//! keys are never part of a summary or a fix, and text from upstreams is bounded and stripped
//! of invisible characters.

pub mod account_engagement;
pub mod configuration;
pub mod redis;
pub mod salesforce;
pub mod settings;
pub mod slack;

use std::time::Duration;

use serde::Serialize;

use crate::config::{DataArgs, ServeArgs};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something will bite: read the fix.
    Warn,
    /// Broken: the bot cannot do part of its job until the fix is made.
    Fail,
    /// Not checked: not configured, or an earlier check failed.
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One result: `id` is stable (`salesforce.token`, `account_engagement.0Uv...`), `summary` one
/// line, `fix` what to do (none when ok).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: String,
    pub status: Status,
    pub summary: String,
    pub fix: Option<String>,
}

impl Check {
    fn new(id: impl Into<String>, status: Status, summary: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            status,
            summary: summary.into(),
            fix: None,
        }
    }

    pub fn ok(id: impl Into<String>, summary: impl Into<String>) -> Self {
        Check::new(id, Status::Ok, summary)
    }

    pub fn skip(id: impl Into<String>, summary: impl Into<String>) -> Self {
        Check::new(id, Status::Skip, summary)
    }

    pub fn warn(id: impl Into<String>, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            fix: Some(fix.into()),
            ..Check::new(id, Status::Warn, summary)
        }
    }

    pub fn fail(id: impl Into<String>, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            fix: Some(fix.into()),
            ..Check::new(id, Status::Fail, summary)
        }
    }
}

/// `doctor --format json`: `{"ok": bool, "checks": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No check failed (warnings allowed).
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        Report {
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// 0 when nothing failed, 1 when something did.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok)
    }

    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// For a terminal: one line per check, its fix indented below, then the counts.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                check.status.as_str(),
                check.id,
                check.summary
            );
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "      {:<width$}  fix: {fix}", "");
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "\n{} failed, {} warnings, {} ok, {} skipped",
            count(Status::Fail),
            count(Status::Warn),
            count(Status::Ok),
            count(Status::Skip)
        );
        out
    }

    /// Logs each result once: `serve` does this at start-up.
    pub fn log(&self) {
        for c in &self.checks {
            let fix = c.fix.as_deref().unwrap_or("");
            match c.status {
                Status::Fail => {
                    tracing::error!(check = %c.id, status = "fail", fix, "doctor: {}", c.summary)
                }
                Status::Warn => {
                    tracing::warn!(check = %c.id, status = "warn", fix, "doctor: {}", c.summary)
                }
                Status::Ok | Status::Skip => {
                    tracing::info!(check = %c.id, status = c.status.as_str(), "doctor: {}", c.summary)
                }
            }
        }
    }
}

/// What `doctor` checks: the same settings `serve` reads.
#[derive(Debug, Clone)]
pub struct Doctor {
    pub data: DataArgs,
    pub slack: ServeArgs,
    /// Slack over Socket Mode: the app token is checked and the signing secret is not needed.
    pub socket_mode: bool,
    /// Account Engagement hosts that stand in for each other: on code 201 (business unit not
    /// found, or the wrong host) the other one of the pair is tried.
    pub ae_host_pairs: Vec<(String, String)>,
    /// Per upstream request.
    pub timeout: Duration,
}

impl Doctor {
    pub fn new(data: DataArgs, slack: ServeArgs) -> Self {
        Doctor {
            data,
            socket_mode: slack.socket_mode,
            slack,
            ae_host_pairs: vec![(
                crate::domain::DEFAULT_AE_URL.to_owned(),
                "https://pi.demo.pardot.com".to_owned(),
            )],
            timeout: Duration::from_secs(15),
        }
    }

    /// Every check, in order. Upstream checks that cannot run (not configured, or an earlier
    /// check they need failed) are `skip` with the reason.
    pub async fn run(&self) -> Report {
        let mut checks = Vec::new();
        let config = configuration::check(&self.data);
        checks.extend(config.checks);
        checks.extend(
            redis::checks(self.data.redis(), &self.data.redis_key_prefix, self.timeout).await,
        );
        let org = salesforce::checks(self, config.salesforce).await;
        checks.extend(org.checks);
        let business_units = config.business_units.as_deref();
        checks.extend(
            account_engagement::checks(self, org.client.as_ref(), business_units.unwrap_or(&[]))
                .await,
        );
        checks.extend(settings::checks(business_units, org.catalog.as_ref()));
        checks.extend(slack::checks(self).await);
        Report::new(checks)
    }
}

/// `1 role`, `2 roles`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Text from an upstream, safe to print on one line: invisible characters dropped, newlines
/// folded, at most 300 characters.
pub(crate) fn upstream_text(text: &str) -> String {
    let clean = crate::render::strip_invisible(text).replace(['\n', '\r'], " ");
    match clean.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &clean[..at]),
        None => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_ok_with_warnings_and_not_ok_with_one_failure() {
        let warned = Report::new(vec![Check::ok("a", "fine"), Check::warn("b", "hm", "do x")]);
        assert!(warned.ok);
        assert_eq!(warned.exit_code(), 0);
        let failed = Report::new(vec![
            Check::skip("a", "n/a"),
            Check::fail("b", "no", "do y"),
        ]);
        assert!(!failed.ok);
        assert_eq!(failed.exit_code(), 1);
    }

    #[test]
    fn the_json_form_has_ok_and_checks_with_id_status_summary_fix() {
        let report = Report::new(vec![Check::ok("redis.connection", "Redis 7.2 answers")]);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"ok": true, "checks": [
                {"id": "redis.connection", "status": "ok", "summary": "Redis 7.2 answers", "fix": null}
            ]})
        );
    }

    #[test]
    fn the_text_form_puts_each_fix_under_its_check_and_counts_at_the_end() {
        let report = Report::new(vec![
            Check::ok("a.b", "fine"),
            Check::fail("c", "broken", "mend it"),
        ]);
        assert_eq!(
            report.text(),
            "ok    a.b  fine\nfail  c    broken\n           fix: mend it\n\n1 failed, 0 warnings, 1 ok, 0 skipped\n"
        );
    }

    #[test]
    fn upstream_text_is_one_bounded_line_without_invisible_characters() {
        assert_eq!(upstream_text("a\nb\u{202e}c"), "a bc");
        assert_eq!(upstream_text(&"x".repeat(400)).chars().count(), 301);
    }
}
