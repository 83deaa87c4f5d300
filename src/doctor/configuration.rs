//! The environment and the business-unit settings file parse.

use super::Check;
use crate::config::{ConfigError, DataArgs, business_units};
use crate::domain::BusinessUnit;
use crate::sources::{SalesforceAuth, SalesforceConfig, jwt_audience};

pub struct Configuration {
    pub checks: Vec<Check>,
    /// Live Salesforce settings, when the environment names them and they parse.
    pub salesforce: Option<SalesforceConfig>,
    /// The settings file's business units, when it is set and parses.
    pub business_units: Option<Vec<BusinessUnit>>,
}

pub fn check(data: &DataArgs) -> Configuration {
    let without_file = DataArgs {
        business_units_file: None,
        ..data.clone()
    };
    let (environment, salesforce) = match without_file.live() {
        Ok(Some(live)) => {
            let flow = match live.salesforce.auth {
                SalesforceAuth::ClientCredentials { .. } => "client credentials".to_owned(),
                SalesforceAuth::JwtBearer { .. } => format!(
                    "JWT bearer (audience {})",
                    live.salesforce
                        .audience
                        .as_deref()
                        .unwrap_or_else(|| jwt_audience(&live.salesforce.login_url))
                ),
            };
            let summary = format!(
                "the environment parses: Salesforce {flow} flow at {}, refresh every {}",
                live.salesforce.login_url,
                humantime(data.refresh_interval)
            );
            (
                Check::ok("config.environment", summary),
                Some(live.salesforce),
            )
        }
        Ok(None) => (
            Check::fail(
                "config.environment",
                "SALESFORCE_CLIENT_ID is not set: the bot has no org data",
                "set SALESFORCE_CLIENT_ID with SALESFORCE_CLIENT_SECRET (client credentials flow) \
                 or with SALESFORCE_USERNAME and SALESFORCE_PRIVATE_KEY_FILE (JWT bearer flow); \
                 see docs/setup-salesforce.md",
            ),
            None,
        ),
        Err(err) => (
            Check::fail(
                "config.environment",
                err.to_string(),
                match &err {
                    ConfigError::Invalid { variable, .. } => {
                        format!("correct {variable}, then run doctor again")
                    }
                    ConfigError::Settings(_) => "correct the settings file".to_owned(),
                },
            ),
            None,
        ),
    };
    let (settings, business_units) = match &data.business_units_file {
        None => (
            Check::warn(
                "config.settings_file",
                "BUSINESS_UNITS_FILE is not set: no Account Engagement data is read",
                "write one with `crm-username settings init --output business-units.toml`, fill \
                 it in, and set BUSINESS_UNITS_FILE to it",
            ),
            None,
        ),
        Some(path) => match business_units::load(path) {
            Ok(units) => (
                Check::ok(
                    "config.settings_file",
                    format!(
                        "{} parses: {}",
                        path.display(),
                        super::count(units.len(), "business unit")
                    ),
                ),
                Some(units),
            ),
            Err(err) => (
                Check::fail(
                    "config.settings_file",
                    err.to_string(),
                    "correct the file at the line and key named (docs/doctor.md shows the format; \
                     `crm-username settings init` writes a fresh one)",
                ),
                None,
            ),
        },
    };
    Configuration {
        checks: vec![environment, settings],
        salesforce,
        business_units,
    }
}

/// `15m`, `90s`, `1h`: as REFRESH_INTERVAL is written.
pub(crate) fn humantime(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
