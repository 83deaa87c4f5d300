//! Slack: the bot token works (`auth.test`), the granted scopes (`x-oauth-scopes`) cover the
//! manifest's, the admin user groups resolve (`usergroups.users.list`, when some are set), the
//! signing secret is set for HTTP mode, and the app token opens a Socket Mode connection
//! (`apps.connections.open`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Check, Doctor};

const BOT_TOKEN: &str = "slack.bot_token";
const SCOPES: &str = "slack.scopes";
const SIGNING_SECRET: &str = "slack.signing_secret";
const APP_TOKEN: &str = "slack.app_token";
const ADMIN_USERGROUPS: &str = "slack.admin_usergroups";

use crate::config::non_empty_secret as non_empty;

pub async fn checks(doctor: &Doctor) -> Vec<Check> {
    let slack = &doctor.slack;
    let api_url = slack.slack_api_url.trim_end_matches('/').to_owned();
    let http = match crate::sources::http_client(doctor.timeout) {
        Ok(http) => http,
        Err(err) => {
            let fail = |id: &str| Check::fail(id, err.to_string(), "check the TLS setup");
            return vec![fail(BOT_TOKEN), fail(SCOPES), fail(APP_TOKEN)];
        }
    };
    let mut checks = Vec::new();
    match non_empty(&slack.slack_bot_token) {
        None => {
            checks.push(Check::warn(
                BOT_TOKEN,
                "no SLACK_BOT_TOKEN: the bot cannot answer in threads, publish the Home tab or \
                 send the audit's CSV",
                "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...) from the app's OAuth \
                 & Permissions page",
            ));
            checks.push(Check::skip(SCOPES, "no SLACK_BOT_TOKEN"));
            if !slack.slack_admin_usergroup_ids.is_empty() {
                checks.push(Check::fail(
                    ADMIN_USERGROUPS,
                    "SLACK_ADMIN_USERGROUP_IDS is set but SLACK_BOT_TOKEN is not: the groups \
                     cannot be resolved, so their members are not admins",
                    "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...), or list the \
                     admins in SLACK_ADMIN_USER_IDS instead",
                ));
            }
        }
        Some(token) => {
            let reply = call(&http, &api_url, "auth.test", &token).await;
            let (bot, scopes) = bot_token(reply);
            checks.push(bot);
            let token_works = scopes.is_some();
            checks.push(match scopes {
                Some(granted) => {
                    scope_check(&granted, &crate::slack::manifest::bot_scopes(), |setting| {
                        setting == "SLACK_ADMIN_USERGROUP_IDS"
                            && !slack.slack_admin_usergroup_ids.is_empty()
                    })
                }
                None => Check::skip(SCOPES, "the bot token did not work"),
            });
            if !slack.slack_admin_usergroup_ids.is_empty() {
                checks.push(match token_works {
                    true => admin_usergroups(doctor, &api_url, token).await,
                    false => Check::skip(ADMIN_USERGROUPS, "the bot token did not work"),
                });
            }
        }
    }
    checks.push(signing_secret(
        doctor.socket_mode,
        non_empty(&slack.slack_signing_secret).is_some(),
    ));
    checks.push(match non_empty(&slack.slack_app_token) {
        None if doctor.socket_mode => Check::fail(
            APP_TOKEN,
            "Socket Mode without SLACK_APP_TOKEN",
            "set SLACK_APP_TOKEN to an app-level token (xapp-...) with the connections:write \
             scope, from the app's Basic Information page",
        ),
        None => Check::skip(APP_TOKEN, "HTTP mode: no SLACK_APP_TOKEN needed"),
        Some(token) => {
            let reply = call(&http, &api_url, "apps.connections.open", &token).await;
            app_token(reply)
        }
    });
    checks
}

/// Each group of SLACK_ADMIN_USERGROUP_IDS resolves to its members, as `serve` asks for them.
async fn admin_usergroups(doctor: &Doctor, api_url: &str, token: SecretString) -> Check {
    let groups = match doctor.slack.admin_usergroups() {
        Ok(groups) => groups,
        Err(err) => {
            return Check::fail(
                ADMIN_USERGROUPS,
                err.to_string(),
                "correct SLACK_ADMIN_USERGROUP_IDS, then run doctor again",
            );
        }
    };
    let mut web = crate::slack::SlackWebApi::new(api_url, Some(token), Vec::new());
    web.timeout = doctor.timeout;
    let mut resolved = Vec::new();
    for id in &groups.ids {
        match web.usergroup_members(id).await {
            Ok(members) => resolved.push(format!("{id} ({} members)", members.len())),
            Err(err) => {
                let fix = match &err {
                    crate::slack::SlackApiError::Api(code) if code == "missing_scope" => {
                        "add usergroups:read to the app's bot token scopes (or update the app \
                         from manifests/slack-app.yaml) and reinstall the app to the workspace"
                    }
                    crate::slack::SlackApiError::Api(code) if code == "no_such_subteam" => {
                        "no such user group in this workspace: copy its id again (People > User \
                         groups, open the group, Copy group ID) into SLACK_ADMIN_USERGROUP_IDS"
                    }
                    _ => {
                        "run doctor again later; meanwhile serve keeps the members it last resolved"
                    }
                };
                return Check::fail(
                    ADMIN_USERGROUPS,
                    format!(
                        "the admin user group {id} does not resolve: {}",
                        super::upstream_text(&err.to_string())
                    ),
                    fix,
                );
            }
        }
    }
    Check::ok(
        ADMIN_USERGROUPS,
        format!("the admin user groups resolve: {}", resolved.join(", ")),
    )
}

/// What a Web API call answered: the body and the `x-oauth-scopes` header, or why not.
pub struct Reply {
    pub body: Value,
    pub scopes: Option<String>,
}

async fn call(
    http: &reqwest::Client,
    api_url: &str,
    method: &str,
    token: &SecretString,
) -> Result<Reply, String> {
    let response = http
        .post(format!("{api_url}/{method}"))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(|e| format!("Slack could not be reached ({})", e.without_url()))?;
    let scopes = response
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|_| format!("Slack answered HTTP {} without JSON", status.as_u16()))?;
    Ok(Reply { body, scopes })
}

fn slack_error(body: &Value) -> String {
    super::upstream_text(body["error"].as_str().unwrap_or("unknown_error"))
}

/// `auth.test`'s check, and the granted scopes when the token works.
pub fn bot_token(reply: Result<Reply, String>) -> (Check, Option<Vec<String>>) {
    match reply {
        Ok(reply) if reply.body["ok"] == true => {
            let summary = format!(
                "the bot token works: {} in {}",
                super::upstream_text(reply.body["user"].as_str().unwrap_or("?")),
                super::upstream_text(reply.body["team"].as_str().unwrap_or("?"))
            );
            let scopes = reply
                .scopes
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            (Check::ok(BOT_TOKEN, summary), Some(scopes))
        }
        Ok(reply) => (
            Check::fail(
                BOT_TOKEN,
                format!(
                    "Slack refused SLACK_BOT_TOKEN ({})",
                    slack_error(&reply.body)
                ),
                "copy the Bot User OAuth Token (xoxb-...) again from the app's OAuth & \
                 Permissions page; if the app was uninstalled or the token revoked, reinstall \
                 the app to the workspace",
            ),
            None,
        ),
        Err(why) => (
            Check::fail(
                BOT_TOKEN,
                why,
                "check SLACK_API_URL and that this machine may reach Slack over HTTPS",
            ),
            None,
        ),
    }
}

/// Scopes of the manifest that only an optional setting uses, with that setting.
const OPTIONAL_SCOPES: &[(&str, &str)] = &[("usergroups:read", "SLACK_ADMIN_USERGROUP_IDS")];

/// The manifest's bot scopes against the granted ones: a missing one fails, naming it; a
/// missing optional scope only warns while its setting is not in use (`in_use`), since nothing
/// calls the method it allows.
pub fn scope_check(granted: &[String], wanted: &[&str], in_use: impl Fn(&str) -> bool) -> Check {
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !granted.iter().any(|g| g == w))
        .collect();
    if missing.is_empty() {
        return Check::ok(
            SCOPES,
            format!(
                "the bot token has every scope of the manifest: {}",
                wanted.join(", ")
            ),
        );
    }
    let unused: Vec<(&str, &str)> = OPTIONAL_SCOPES
        .iter()
        .copied()
        .filter(|(scope, setting)| missing.contains(scope) && !in_use(setting))
        .collect();
    let fix = format!(
        "add {} to the app's bot token scopes (OAuth & Permissions, or update the app from \
         manifests/slack-app.yaml) and reinstall the app to the workspace",
        missing.join(", ")
    );
    if unused.len() == missing.len() {
        let only_for: Vec<String> = unused
            .iter()
            .map(|(scope, setting)| format!("{scope} (only {setting} needs it)"))
            .collect();
        return Check::warn(
            SCOPES,
            format!("the bot token lacks the scopes {}", only_for.join(", ")),
            fix,
        );
    }
    Check::fail(
        SCOPES,
        format!("the bot token lacks the scopes {}", missing.join(", ")),
        fix,
    )
}

pub fn signing_secret(socket_mode: bool, set: bool) -> Check {
    match (socket_mode, set) {
        (true, _) => Check::skip(
            SIGNING_SECRET,
            "Socket Mode: requests come over the socket, no signing secret needed",
        ),
        (false, true) => Check::ok(SIGNING_SECRET, "SLACK_SIGNING_SECRET is set"),
        (false, false) => Check::fail(
            SIGNING_SECRET,
            "SLACK_SIGNING_SECRET is not set: serve refuses to start over HTTP",
            "copy the Signing Secret from the app's Basic Information page into \
             SLACK_SIGNING_SECRET, or run in Socket Mode (--socket-mode)",
        ),
    }
}

pub fn app_token(reply: Result<Reply, String>) -> Check {
    match reply {
        Ok(reply) if reply.body["ok"] == true => {
            Check::ok(APP_TOKEN, "the app token opens Socket Mode connections")
        }
        Ok(reply) => Check::fail(
            APP_TOKEN,
            format!(
                "Slack refused SLACK_APP_TOKEN ({})",
                slack_error(&reply.body)
            ),
            "generate an app-level token with the connections:write scope (Basic Information > \
             App-Level Tokens), put it in SLACK_APP_TOKEN, and turn Socket Mode on for the app",
        ),
        Err(why) => Check::fail(
            APP_TOKEN,
            why,
            "check SLACK_API_URL and that this machine may reach Slack over HTTPS",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn granted(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_missing_optional_scope_warns_while_its_setting_is_unused_and_fails_once_it_is_used() {
        let wanted = ["commands", "chat:write", "usergroups:read"];
        let has = granted(&["commands", "chat:write"]);
        let unused = scope_check(&has, &wanted, |_| false);
        assert_eq!(unused.status, Status::Warn);
        assert_eq!(
            unused.summary,
            "the bot token lacks the scopes usergroups:read (only SLACK_ADMIN_USERGROUP_IDS needs it)"
        );
        let used = scope_check(&has, &wanted, |s| s == "SLACK_ADMIN_USERGROUP_IDS");
        assert_eq!(used.status, Status::Fail);
        assert_eq!(
            used.summary,
            "the bot token lacks the scopes usergroups:read"
        );
    }

    #[test]
    fn a_missing_required_scope_fails_and_names_every_missing_scope() {
        let wanted = ["commands", "chat:write", "usergroups:read"];
        let check = scope_check(&granted(&["commands"]), &wanted, |_| false);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.summary,
            "the bot token lacks the scopes chat:write, usergroups:read"
        );
        let all = scope_check(&granted(&wanted), &wanted, |_| false);
        assert_eq!(all.status, Status::Ok);
    }
}
