//! Every setting, from flags and the environment (each variable is also a `--flag`),
//! validated once. Secrets are wrapped so that they never reach a log or an error message.

pub mod business_units;
pub mod settings_init;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::BusinessUnit;
use crate::sources::salesforce::DEFAULT_API_VERSION;
use crate::sources::{SalesforceAuth, SalesforceConfig};

/// Where org data comes from and where it is cached.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Shared cache; unset = an in-process store (one replica only).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,
    /// PEM bundle of the CAs that sign a `rediss://` server's certificate; unset = the
    /// system's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// `true`: REDIS_URL names a seed node of a Redis Cluster.
    #[arg(
        long,
        env = "REDIS_CLUSTER",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub redis_cluster: bool,
    /// Prefix of every Redis key, so that installations can share a server.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "crm-username:")]
    pub redis_key_prefix: String,
    /// Where tokens are requested: the org's My Domain URL (required for client credentials).
    #[arg(
        long,
        env = "SALESFORCE_LOGIN_URL",
        default_value = "https://login.salesforce.com"
    )]
    pub salesforce_login_url: String,
    /// The JWT bearer assertion's `aud`; default: https://test.salesforce.com for sandbox login
    /// URLs, else https://login.salesforce.com.
    #[arg(long, env = "SALESFORCE_AUDIENCE")]
    pub salesforce_audience: Option<String>,
    /// Connected (or external client) app id; required for live data.
    #[arg(long, env = "SALESFORCE_CLIENT_ID")]
    pub salesforce_client_id: Option<String>,
    /// Selects the client credentials flow.
    #[arg(long, env = "SALESFORCE_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub salesforce_client_secret: Option<SecretString>,
    /// With SALESFORCE_PRIVATE_KEY_FILE, selects the JWT bearer flow.
    #[arg(long, env = "SALESFORCE_USERNAME")]
    pub salesforce_username: Option<String>,
    #[arg(long, env = "SALESFORCE_PRIVATE_KEY_FILE")]
    pub salesforce_private_key_file: Option<PathBuf>,
    #[arg(long, env = "SALESFORCE_API_VERSION", default_value = DEFAULT_API_VERSION)]
    pub salesforce_api_version: String,
    /// The business-unit settings (TOML); none = no Account Engagement data.
    #[arg(long, env = "BUSINESS_UNITS_FILE")]
    pub business_units_file: Option<PathBuf>,
    /// Full refresh period, e.g. `15m`, `90s`, `1h`.
    #[arg(long, env = "REFRESH_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// Incremental refresh period (only what changed since the last run), e.g. `1m`; `off`
    /// for full refreshes only.
    #[arg(long, env = "REFRESH_INCREMENTAL_INTERVAL", default_value = "1m", value_parser = parse_optional_duration)]
    pub refresh_incremental_interval: OptionalDuration,
}

/// A duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

/// `off` (or `0`) for none, else as [`parse_duration`].
pub fn parse_optional_duration(text: &str) -> Result<OptionalDuration, String> {
    match text.trim() {
        "off" | "0" => Ok(OptionalDuration(None)),
        other => parse_duration(other)
            .map(|d| OptionalDuration(Some(d)))
            .map_err(|e| format!("{e}, or off")),
    }
}

/// A secret, from a flag or the environment, straight into a [`SecretString`]: no plain
/// `String` copy of it is kept in the parsed arguments, and `Debug` prints it redacted.
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// A secret that is set and not blank, trimmed.
pub fn non_empty_secret(value: &Option<SecretString>) -> Option<SecretString> {
    value
        .as_ref()
        .map(|v| v.expose_secret().trim())
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

/// The settings of `serve` that `doctor` checks too: Slack (over HTTP or Socket Mode), the
/// HTTP listener and its limits, the audit digest, logging.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Connect to Slack over Socket Mode (SLACK_APP_TOKEN) instead of serving HTTP to it
    /// (`doctor`: check the app token instead of the signing secret).
    #[arg(long)]
    pub socket_mode: bool,
    /// Verifies requests; required for `serve`.
    #[arg(long, env = "SLACK_SIGNING_SECRET", hide_env_values = true, value_parser = secret)]
    pub slack_signing_secret: Option<SecretString>,
    /// The previous signing secret, accepted too while rotating (README "Rotating the signing secret").
    #[arg(long, env = "SLACK_SIGNING_SECRET_PREVIOUS", hide_env_values = true, value_parser = secret)]
    pub slack_signing_secret_previous: Option<SecretString>,
    /// `xoxb-` token for Web API calls (replies in threads).
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true, value_parser = secret)]
    pub slack_bot_token: Option<SecretString>,
    /// `xapp-` token for Socket Mode.
    #[arg(long, env = "SLACK_APP_TOKEN", hide_env_values = true, value_parser = secret)]
    pub slack_app_token: Option<SecretString>,
    #[arg(long, env = "SLACK_API_URL", default_value = "https://slack.com/api")]
    pub slack_api_url: String,
    /// Hosts a `response_url` may point at (comma-separated).
    #[arg(
        long,
        env = "SLACK_RESPONSE_URL_HOSTS",
        default_value = "hooks.slack.com",
        value_delimiter = ','
    )]
    pub slack_response_url_hosts: Vec<String>,
    /// Workspaces served (comma-separated team ids); unset = all.
    #[arg(long, env = "SLACK_ALLOWED_TEAM_IDS", value_delimiter = ',')]
    pub slack_allowed_team_ids: Vec<String>,
    /// Who may run admin-only actions such as `refresh` (comma-separated user ids).
    #[arg(long, env = "SLACK_ADMIN_USER_IDS", value_delimiter = ',')]
    pub slack_admin_user_ids: Vec<String>,
    /// Slack user groups (comma-separated `S…` ids) whose members are admins too, resolved
    /// with `usergroups.users.list` (scope `usergroups:read`) every few minutes.
    #[arg(long, env = "SLACK_ADMIN_USERGROUP_IDS", value_delimiter = ',')]
    pub slack_admin_usergroup_ids: Vec<String>,
    /// How often the admin user groups' members are asked again (default: why, at
    /// [`REFRESH_EVERY`](crate::slack::usergroups::REFRESH_EVERY)).
    #[arg(long, env = "SLACK_ADMIN_USERGROUP_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub slack_admin_usergroup_refresh: Duration,
    /// Channel id for the scheduled audit digest; unset = no digest.
    #[arg(long, env = "AUDIT_DIGEST_CHANNEL")]
    pub audit_digest_channel: Option<String>,
    /// How often the audit digest runs (posted only when the rows changed).
    #[arg(long, env = "AUDIT_DIGEST_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub audit_digest_interval: Duration,
    /// `false`: this process runs no refresher, another one (`refresh --watch`) fills the
    /// shared cache; live lookups and re-checks still use the live sources. Needs REDIS_URL.
    #[arg(
        long,
        env = "REFRESH_IN_SERVE",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub refresh_in_serve: bool,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub http_limits: HttpLimitArgs,
}

/// What the long-running processes (`serve`, `refresh --watch`) share: where their HTTP
/// endpoints listen and how they log.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Where the HTTP endpoints listen (`refresh`: with `--watch` only, for /healthz and
    /// /metrics).
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:3000")]
    pub bind_addr: std::net::SocketAddr,
    /// `json` or `pretty`; default: pretty on a terminal, else json (`refresh`: with
    /// `--watch` only).
    #[arg(long, env = "LOG_FORMAT", value_parser = ["json", "pretty"])]
    pub log_format: Option<String>,
}

impl ServeArgs {
    pub fn settings(&self) -> Result<crate::slack::SlackSettings, ConfigError> {
        let Some(secret) = non_empty_secret(&self.slack_signing_secret) else {
            return Err(ConfigError::Invalid {
                variable: "SLACK_SIGNING_SECRET",
                problem:
                    "is required for serve: copy it from your Slack app's Basic Information page"
                        .into(),
            });
        };
        let mut signing_secrets = vec![secret];
        signing_secrets.extend(non_empty_secret(&self.slack_signing_secret_previous));
        crate::domain::check_url(&self.slack_api_url).map_err(|problem| ConfigError::Invalid {
            variable: "SLACK_API_URL",
            problem,
        })?;
        let list = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        };
        Ok(crate::slack::SlackSettings {
            signing_secrets,
            allowed_team_ids: list(&self.slack_allowed_team_ids),
            admin_user_ids: list(&self.slack_admin_user_ids),
            web: crate::slack::SlackWebApi::new(
                &self.slack_api_url,
                non_empty_secret(&self.slack_bot_token),
                list(&self.slack_response_url_hosts),
            ),
        })
    }
}

impl ServeArgs {
    /// Whether `serve` runs the refresher itself (REFRESH_IN_SERVE). `false` needs REDIS_URL:
    /// an in-process store would never be filled.
    pub fn runs_refresher(&self, data: &DataArgs) -> Result<bool, ConfigError> {
        if !self.refresh_in_serve && data.redis().is_none() {
            return Err(ConfigError::Invalid {
                variable: "REFRESH_IN_SERVE",
                problem: "false needs REDIS_URL: without it serve answers from an in-process store that no refresher would ever fill; set REDIS_URL to the Redis that `crm-username refresh --watch` fills, or leave REFRESH_IN_SERVE at true".into(),
            });
        }
        Ok(self.refresh_in_serve)
    }

    /// The admin user groups, each a Slack user group id (`S` and capitals or digits), blanks
    /// dropped, resolved every SLACK_ADMIN_USERGROUP_REFRESH.
    pub fn admin_usergroups(
        &self,
    ) -> Result<crate::slack::usergroups::UsergroupSettings, ConfigError> {
        let mut ids: Vec<String> = Vec::new();
        for id in self.slack_admin_usergroup_ids.iter().map(|s| s.trim()) {
            if id.is_empty() || ids.iter().any(|known| known == id) {
                continue;
            }
            let well_formed = id.len() > 1
                && id.starts_with('S')
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !well_formed {
                return Err(ConfigError::Invalid {
                    variable: "SLACK_ADMIN_USERGROUP_IDS",
                    problem: format!(
                        "{:?} is not a Slack user group id: those look like S0123ABCD (in Slack, open the group under People > User groups, then \"Copy group ID\")",
                        id.chars().take(40).collect::<String>()
                    ),
                });
            }
            ids.push(id.to_owned());
        }
        Ok(crate::slack::usergroups::UsergroupSettings {
            ids,
            refresh: self.slack_admin_usergroup_refresh,
        })
    }
}

/// What a connection to `serve` may cost (docs/http-limits.md).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimitArgs {
    /// Time for a request's line and headers, from connect or from the previous response
    /// (so also how long an idle keep-alive connection stays open).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub http_header_read_timeout: Duration,
    /// Longest pause while a request body arrives.
    #[arg(long, env = "HTTP_BODY_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub http_body_read_timeout: Duration,
    /// Whole time of a request to /slack/...; below Slack's 3 s.
    #[arg(long, env = "HTTP_SLACK_REQUEST_TIMEOUT", default_value = "2500ms", value_parser = parse_duration)]
    pub http_slack_request_timeout: Duration,
    /// Whole time of any other request (probes, /metrics).
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_request_timeout: Duration,
    /// Open connections at most; past it a new connection is closed at once.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value = "2000",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,
}

impl HttpLimitArgs {
    pub fn limits(&self) -> Result<crate::server::HttpLimits, ConfigError> {
        if self.http_slack_request_timeout >= Duration::from_secs(3) {
            return Err(ConfigError::Invalid {
                variable: "HTTP_SLACK_REQUEST_TIMEOUT",
                problem: "Slack gives up on a request after 3 s: set it below 3s, e.g. 2500ms"
                    .into(),
            });
        }
        Ok(crate::server::HttpLimits {
            header_read_timeout: self.http_header_read_timeout,
            body_read_timeout: self.http_body_read_timeout,
            slack_request_timeout: self.http_slack_request_timeout,
            request_timeout: self.http_request_timeout,
            max_connections: self.http_max_connections as usize,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Settings(#[from] business_units::SettingsError),
    #[error("{variable}: {problem}")]
    Invalid {
        variable: &'static str,
        problem: String,
    },
}

/// Live data settings, once validated.
pub struct LiveSettings {
    pub salesforce: SalesforceConfig,
    pub business_units: Vec<BusinessUnit>,
}

impl DataArgs {
    /// The refresher's schedule: a full refresh every REFRESH_INTERVAL, an incremental one
    /// every REFRESH_INCREMENTAL_INTERVAL (unless `off`). `serve` and `refresh --watch` share it.
    pub fn refresh_schedule(&self) -> crate::refresh::Schedule {
        crate::refresh::Schedule {
            full_every: self.refresh_interval,
            incremental_every: self.refresh_incremental_interval.0,
        }
    }

    /// `refresh --watch` fills the shared cache for the `serve` processes: without REDIS_URL
    /// it would fill an in-process store nobody reads.
    pub fn check_refresh_watch(&self) -> Result<(), ConfigError> {
        match self.redis() {
            Some(_) => Ok(()),
            None => Err(ConfigError::Invalid {
                variable: "REDIS_URL",
                problem: "is required for refresh --watch: it fills the Redis that serve answers from; without it, what it refreshes would stay in this process".into(),
            }),
        }
    }

    /// How to reach the shared cache; `None` without REDIS_URL.
    pub fn redis(&self) -> Option<crate::store::RedisSettings> {
        Some(crate::store::RedisSettings {
            // The store's client keeps the URL (and its password) as the redis crate needs it.
            url: self.redis_url.as_ref()?.expose_secret().to_owned(),
            ca_file: self.redis_ca_file.clone(),
            cluster: self.redis_cluster,
        })
    }

    /// `None` when no live data is configured (no SALESFORCE_CLIENT_ID).
    pub fn live(&self) -> Result<Option<LiveSettings>, ConfigError> {
        let Some(client_id) = self
            .salesforce_client_id
            .clone()
            .filter(|c| !c.trim().is_empty())
        else {
            return Ok(None);
        };
        crate::domain::check_url(&self.salesforce_login_url).map_err(|problem| {
            ConfigError::Invalid {
                variable: "SALESFORCE_LOGIN_URL",
                problem,
            }
        })?;
        let auth = match (
            &self.salesforce_client_secret,
            &self.salesforce_username,
            &self.salesforce_private_key_file,
        ) {
            (Some(secret), _, None) => SalesforceAuth::ClientCredentials {
                secret: secret.clone(),
            },
            (None, Some(username), Some(path)) => {
                let pem = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    variable: "SALESFORCE_PRIVATE_KEY_FILE",
                    problem: format!("cannot read {}: {e}", path.display()),
                })?;
                SalesforceAuth::JwtBearer {
                    username: username.clone(),
                    private_key_pem: SecretString::from(pem),
                }
            }
            (Some(_), _, Some(_)) => {
                return Err(ConfigError::Invalid {
                    variable: "SALESFORCE_CLIENT_SECRET",
                    problem: "set either SALESFORCE_CLIENT_SECRET (client credentials flow) or SALESFORCE_USERNAME with SALESFORCE_PRIVATE_KEY_FILE (JWT bearer flow), not both".into(),
                });
            }
            (None, _, _) => {
                return Err(ConfigError::Invalid {
                    variable: "SALESFORCE_CLIENT_ID",
                    problem: "is set, but neither SALESFORCE_CLIENT_SECRET nor SALESFORCE_USERNAME with SALESFORCE_PRIVATE_KEY_FILE is: set one of them".into(),
                });
            }
        };
        if !self
            .salesforce_api_version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError::Invalid {
                variable: "SALESFORCE_API_VERSION",
                problem: format!(
                    "{:?} is not a version like 62.0",
                    self.salesforce_api_version
                ),
            });
        }
        let mut salesforce = SalesforceConfig::new(
            self.salesforce_login_url.trim_end_matches('/'),
            client_id,
            auth,
        );
        salesforce.api_version = self.salesforce_api_version.clone();
        salesforce.audience = self
            .salesforce_audience
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        let business_units = match &self.business_units_file {
            Some(path) => business_units::load(path)?,
            None => Vec::new(),
        };
        Ok(Some(LiveSettings {
            salesforce,
            business_units,
        }))
    }
}

/// `15m`, `90s`, `1h`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 15m, 90s or 1h"))?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} is not a duration like 15m, 90s or 1h")),
    };
    if duration.is_zero() {
        return Err("a duration of zero would refresh without pause".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        data: DataArgs,
    }

    #[derive(Parser)]
    struct ServeCli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn slack_secrets_are_parsed_into_secrets_that_debug_does_not_show() {
        let serve = ServeCli::try_parse_from([
            "test",
            "--slack-signing-secret",
            " s3cr3t-signing ",
            "--slack-bot-token",
            "xoxb-s3cr3t",
            "--slack-app-token",
            "xapp-s3cr3t",
        ])
        .unwrap()
        .serve;
        let shown = format!("{serve:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(
            non_empty_secret(&serve.slack_signing_secret)
                .unwrap()
                .expose_secret(),
            "s3cr3t-signing"
        );
        assert!(non_empty_secret(&Some(SecretString::from("  "))).is_none());
    }

    #[derive(Parser)]
    struct HttpCli {
        #[command(flatten)]
        http: HttpLimitArgs,
    }

    fn http_limits(extra: &[&str]) -> Result<crate::server::HttpLimits, ConfigError> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(extra);
        HttpCli::try_parse_from(argv).unwrap().http.limits()
    }

    #[test]
    fn the_http_limit_flags_default_to_the_documented_limits() {
        assert_eq!(
            http_limits(&[]).unwrap(),
            crate::server::HttpLimits::default()
        );
    }

    #[test]
    fn http_limits_are_read_from_their_flags() {
        let limits = http_limits(&[
            "--http-header-read-timeout",
            "2s",
            "--http-body-read-timeout",
            "3s",
            "--http-slack-request-timeout",
            "1500ms",
            "--http-request-timeout",
            "1m",
            "--http-max-connections",
            "64",
        ])
        .unwrap();
        assert_eq!(
            limits,
            crate::server::HttpLimits {
                header_read_timeout: Duration::from_secs(2),
                body_read_timeout: Duration::from_secs(3),
                slack_request_timeout: Duration::from_millis(1500),
                request_timeout: Duration::from_secs(60),
                max_connections: 64,
            }
        );
    }

    #[test]
    fn a_slack_request_timeout_of_three_seconds_or_more_is_refused() {
        let err = http_limits(&["--http-slack-request-timeout", "3s"])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "HTTP_SLACK_REQUEST_TIMEOUT: Slack gives up on a request after 3 s: set it below 3s, e.g. 2500ms"
        );
    }

    #[test]
    fn a_connection_cap_of_zero_is_refused() {
        assert!(HttpCli::try_parse_from(["test", "--http-max-connections", "0"]).is_err());
    }

    fn args(extra: &[&str]) -> DataArgs {
        let mut argv = vec!["test"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().data
    }

    #[test]
    fn admin_usergroup_ids_are_trimmed_deduplicated_and_checked() {
        let groups = ServeCli::try_parse_from([
            "test",
            "--slack-admin-usergroup-ids",
            " S0ADMINS, ,S0ADMINS,S0OPS",
        ])
        .unwrap()
        .serve
        .admin_usergroups()
        .unwrap();
        assert_eq!(groups.ids, ["S0ADMINS", "S0OPS"]);
        assert_eq!(groups.refresh, crate::slack::usergroups::REFRESH_EVERY);
        let every_minute =
            ServeCli::try_parse_from(["test", "--slack-admin-usergroup-refresh", "1m"])
                .unwrap()
                .serve
                .admin_usergroups()
                .unwrap();
        assert_eq!(every_minute.refresh, Duration::from_secs(60));
        assert!(every_minute.ids.is_empty());
        for wrong in ["U0ADMIN", "s0admins", "S", "S0<!channel>"] {
            let err = ServeCli::try_parse_from(["test", "--slack-admin-usergroup-ids", wrong])
                .unwrap()
                .serve
                .admin_usergroups()
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "SLACK_ADMIN_USERGROUP_IDS: {wrong:?} is not a Slack user group id"
                )),
                "{err}"
            );
        }
    }

    #[derive(Parser)]
    struct ServeDataCli {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        data: DataArgs,
    }

    /// Whether serve runs the refresher for `argv`, as `serve` validates it.
    fn runs_refresher(extra: &[&str]) -> Result<bool, String> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(extra);
        let cli = ServeDataCli::try_parse_from(argv).unwrap();
        cli.serve
            .runs_refresher(&cli.data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn serve_runs_the_refresher_unless_refresh_in_serve_is_false_with_redis() {
        assert_eq!(runs_refresher(&[]), Ok(true));
        assert_eq!(runs_refresher(&["--refresh-in-serve"]), Ok(true));
        assert_eq!(
            runs_refresher(&["--refresh-in-serve", "true", "--redis-url", "redis://h"]),
            Ok(true)
        );
        assert_eq!(
            runs_refresher(&["--refresh-in-serve", "false", "--redis-url", "redis://h"]),
            Ok(false)
        );
        assert!(ServeDataCli::try_parse_from(["test", "--refresh-in-serve", "no"]).is_err());
    }

    #[test]
    fn refresh_in_serve_false_without_redis_is_refused_with_what_to_set() {
        assert_eq!(
            runs_refresher(&["--refresh-in-serve", "false"]),
            Err("REFRESH_IN_SERVE: false needs REDIS_URL: without it serve answers from an in-process store that no refresher would ever fill; set REDIS_URL to the Redis that `crm-username refresh --watch` fills, or leave REFRESH_IN_SERVE at true".to_owned())
        );
    }

    #[test]
    fn refresh_watch_needs_redis_and_shares_the_schedule_of_serve() {
        assert_eq!(
            args(&[]).check_refresh_watch().err().unwrap().to_string(),
            "REDIS_URL: is required for refresh --watch: it fills the Redis that serve answers from; without it, what it refreshes would stay in this process"
        );
        assert!(
            args(&["--redis-url", "redis://h"])
                .check_refresh_watch()
                .is_ok()
        );
        assert_eq!(
            args(&[]).refresh_schedule(),
            crate::refresh::Schedule {
                full_every: Duration::from_secs(15 * 60),
                incremental_every: Some(Duration::from_secs(60)),
            }
        );
        assert_eq!(
            args(&[
                "--refresh-interval",
                "1h",
                "--refresh-incremental-interval",
                "off"
            ])
            .refresh_schedule(),
            crate::refresh::Schedule::full_only(Duration::from_secs(3600))
        );
    }

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn the_redis_flags_name_the_url_the_ca_file_and_cluster_mode() {
        let redis = args(&[
            "--redis-url",
            "rediss://crm:secret@redis.example:6380",
            "--redis-ca-file",
            "/etc/redis-ca.pem",
            "--redis-cluster",
        ])
        .redis()
        .unwrap();
        assert_eq!(redis.url, "rediss://crm:secret@redis.example:6380");
        assert_eq!(redis.ca_file, Some(PathBuf::from("/etc/redis-ca.pem")));
        assert!(redis.cluster);
        let off = args(&["--redis-url", "redis://h", "--redis-cluster", "false"]);
        assert!(!off.redis().unwrap().cluster);
        assert!(args(&[]).redis().is_none());
    }

    #[test]
    fn without_a_client_id_there_is_no_live_data() {
        assert!(args(&[]).live().unwrap().is_none());
    }

    #[test]
    fn a_client_secret_selects_client_credentials() {
        let live = args(&[
            "--salesforce-client-id",
            "id",
            "--salesforce-client-secret",
            "s3cr3t",
        ])
        .live()
        .unwrap()
        .unwrap();
        assert!(matches!(
            live.salesforce.auth,
            SalesforceAuth::ClientCredentials { .. }
        ));
        assert!(
            !format!("{:?}", live.salesforce).contains("s3cr3t"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn a_client_id_alone_names_what_is_missing() {
        let err = args(&["--salesforce-client-id", "id"])
            .live()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("SALESFORCE_CLIENT_ID: is set, but neither SALESFORCE_CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn both_flows_at_once_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "x").unwrap();
        let err = args(&[
            "--salesforce-client-id",
            "id",
            "--salesforce-client-secret",
            "s",
            "--salesforce-private-key-file",
            key.to_str().unwrap(),
        ])
        .live()
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let err = args(&[
            "--salesforce-client-id",
            "id",
            "--salesforce-username",
            "u@acme.com",
            "--salesforce-private-key-file",
            "/nonexistent/key.pem",
        ])
        .live()
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("SALESFORCE_PRIVATE_KEY_FILE: cannot read /nonexistent/key.pem"),
            "{err}"
        );
    }
}
