//! Salesforce: a token is minted with the configured flow, the API version is served, every
//! object and field the refresh reads can be read, and the daily API allowance leaves room for
//! the refreshes REFRESH_INTERVAL implies.

use std::sync::Arc;
use std::time::Duration;

use super::{Check, Doctor};
use crate::sources::catalog::{self, OrgCatalog};
use crate::sources::salesforce::USER_SELECT;
use crate::sources::{ApiUsage, RetryPolicy, SalesforceClient, SalesforceConfig, SourceError};

const TOKEN: &str = "salesforce.token";
const VERSION: &str = "salesforce.api_version";
const HEADROOM: &str = "salesforce.api_headroom";
/// Records per query batch: Salesforce sends up to 2,000.
const BATCH: u64 = 2000;

/// One cheap query per object the bot reads: `(object, fields, Tooling API?)`.
const READS: [(&str, &str, bool); 7] = [
    ("Organization", "Id", false),
    ("User", "", false),
    ("Profile", "Id, Name", false),
    ("UserRole", "Id, Name, ParentRoleId, SystemModstamp", false),
    (
        "Group",
        "Id, Name, DeveloperName, Type, RelatedId, SystemModstamp",
        false,
    ),
    (
        "GroupMember",
        "Id, GroupId, UserOrGroupId, SystemModstamp",
        false,
    ),
    ("PardotTenant", "Id, PardotTenantName, CreationStatus", true),
];

pub struct SalesforceOutcome {
    pub checks: Vec<Check>,
    /// A client holding a working token, for the Account Engagement checks.
    pub client: Option<Arc<SalesforceClient>>,
    /// The org's business units, profiles, roles and groups, for the settings checks.
    pub catalog: Option<OrgCatalog>,
}

pub async fn checks(doctor: &Doctor, config: Option<SalesforceConfig>) -> SalesforceOutcome {
    let skipped = |why: &str| SalesforceOutcome {
        checks: [TOKEN, VERSION]
            .into_iter()
            .map(str::to_owned)
            .chain(READS.iter().map(|(object, ..)| read_id(object)))
            .chain([HEADROOM.to_owned()])
            .map(|id| Check::skip(id, why))
            .collect(),
        client: None,
        catalog: None,
    };
    let Some(mut config) = config else {
        return skipped("no Salesforce settings (see config.environment)");
    };
    config.timeout = doctor.timeout;
    // Two tries: a check should say soon that something is down, not wait it out.
    config.retry = RetryPolicy {
        max_attempts: 2,
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    };
    let api_version = config.api_version.clone();
    let login_url = config.login_url.clone();
    let client = match SalesforceClient::new(config) {
        Ok(client) => Arc::new(client),
        Err(err) => {
            let mut outcome = skipped("no Salesforce token");
            outcome.checks[0] = Check::fail(TOKEN, err.to_string(), fix_of(&err));
            return outcome;
        }
    };
    if let Err(err) = client.connect().await {
        let mut outcome = skipped("no Salesforce token");
        outcome.checks[0] = token_failed(&login_url, &err);
        return outcome;
    }
    let mut checks = vec![Check::ok(
        TOKEN,
        format!("a token was minted at {login_url}"),
    )];
    checks.push(match client.get_value("/services/data/", None).await {
        Ok(list) => api_version_check(&api_version, &list),
        Err(err) => Check::fail(VERSION, err.to_string(), fix_of(&err)),
    });
    for (object, fields, tooling) in READS {
        let fields = if fields.is_empty() {
            USER_SELECT.trim_start_matches("SELECT ")
        } else {
            fields
        };
        let endpoint = if tooling { "tooling/query" } else { "query" };
        let path = format!("/services/data/v{api_version}/{endpoint}");
        let soql = format!("SELECT {fields} FROM {object} LIMIT 1");
        checks.push(match client.get_value(&path, Some(&soql)).await {
            Ok(_) => Check::ok(read_id(object), format!("{object} can be read")),
            Err(err) => read_failed(object, fields, tooling, &err),
        });
    }
    checks.push(headroom_check(doctor, &client, &api_version).await);
    let catalog = catalog::fetch(&client).await.ok();
    SalesforceOutcome {
        checks,
        client: Some(client),
        catalog,
    }
}

fn read_id(object: &str) -> String {
    format!("salesforce.read.{object}")
}

async fn headroom_check(doctor: &Doctor, client: &SalesforceClient, version: &str) -> Check {
    let path = format!("/services/data/v{version}/query");
    let mut rows = Vec::new();
    for object in ["User", "GroupMember"] {
        let count = client
            .get_value(&path, Some(&format!("SELECT COUNT() FROM {object}")))
            .await
            .ok()
            .and_then(|v| v["totalSize"].as_u64());
        match count {
            Some(n) => rows.push(n),
            None => return Check::skip(HEADROOM, format!("{object} could not be counted")),
        }
    }
    match client.api_usage() {
        Some(usage) => headroom(usage, &rows, doctor.data.refresh_interval),
        None => Check::skip(HEADROOM, "Salesforce sent no Sforce-Limit-Info header"),
    }
}

/// Calls one refresh makes: Organization, UserRole and Group (one batch each), and the
/// batches of User and GroupMember (`rows`).
pub fn calls_per_refresh(rows: &[u64]) -> u64 {
    3 + rows.iter().map(|n| n.div_ceil(BATCH).max(1)).sum::<u64>()
}

/// The daily allowance against the calls the refreshes of a day need: more than the whole
/// allowance fails; more than half of it (the rest of the org shares it) is a warning.
pub fn headroom(usage: ApiUsage, rows: &[u64], interval: Duration) -> Check {
    let per_refresh = calls_per_refresh(rows);
    let refreshes = 86_400u64.div_ceil(interval.as_secs().max(1));
    let daily = refreshes * per_refresh;
    let percent = daily.saturating_mul(100) / usage.max.max(1);
    let summary = format!(
        "refreshing every {} takes about {daily} API calls a day ({refreshes} refreshes of \
         {per_refresh}), {percent}% of the org's {} a day; {} used so far today",
        super::configuration::humantime(interval),
        usage.max,
        usage.used
    );
    // The interval at which the refreshes take a quarter of the allowance.
    let calmer = (86_400 * per_refresh * 4)
        .div_ceil(usage.max.max(1))
        .div_ceil(60)
        .max(1);
    let fix = format!(
        "set REFRESH_INTERVAL to {calmer}m or more, or raise the org's daily API allowance; \
         live re-checks from Slack need calls too"
    );
    if daily >= usage.max {
        Check::fail(HEADROOM, summary, fix)
    } else if daily * 2 > usage.max {
        Check::warn(HEADROOM, summary, fix)
    } else {
        Check::ok(HEADROOM, summary)
    }
}

/// `GET /services/data/` lists `[{"version": "62.0", ...}]`.
pub fn api_version_check(wanted: &str, list: &serde_json::Value) -> Check {
    let versions: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["version"].as_str()).collect())
        .unwrap_or_default();
    let newest = versions
        .iter()
        .copied()
        .max_by(|a, b| {
            let n = |v: &str| v.parse::<f64>().unwrap_or(0.0);
            n(a).total_cmp(&n(b))
        })
        .unwrap_or("?");
    if versions.contains(&wanted) {
        Check::ok(
            VERSION,
            format!("API version {wanted} is served (newest: {newest})"),
        )
    } else {
        Check::fail(
            VERSION,
            format!(
                "the org does not serve API version {}",
                super::upstream_text(wanted)
            ),
            format!("set SALESFORCE_API_VERSION to a version the org serves, e.g. {newest}"),
        )
    }
}

fn token_failed(login_url: &str, err: &SourceError) -> Check {
    match err {
        SourceError::Auth {
            error, description, ..
        } => Check::fail(
            TOKEN,
            format!(
                "Salesforce refused a token at {login_url}: {}: {}",
                super::upstream_text(error),
                super::upstream_text(description)
            ),
            fix_of(err),
        ),
        SourceError::Upstream { .. } => Check::fail(
            TOKEN,
            format!("Salesforce did not answer at {login_url}: {err}"),
            "check SALESFORCE_LOGIN_URL (the org's My Domain URL) and that this machine may \
             reach it over HTTPS",
        ),
        other => Check::fail(TOKEN, other.to_string(), fix_of(other)),
    }
}

/// The fix a [`SourceError`] carries, or what to do for its kind.
fn fix_of(err: &SourceError) -> String {
    match err {
        SourceError::Auth { fix, .. }
        | SourceError::Config { fix, .. }
        | SourceError::Settings { fix, .. } => fix.clone(),
        SourceError::DailyLimit { .. } => {
            "wait for the daily allowance to reset, or raise it; then run doctor again".to_owned()
        }
        SourceError::Upstream { .. } => "retry later; check the service's status".to_owned(),
        SourceError::Rejected { .. } | SourceError::Protocol { .. } => {
            "check the integration user's permissions and SALESFORCE_API_VERSION".to_owned()
        }
    }
}

/// A read refused: names the object, and the fields when one of them is the cause.
pub fn read_failed(object: &str, fields: &str, tooling: bool, err: &SourceError) -> Check {
    let id = read_id(object);
    let SourceError::Rejected { code, message, .. } = err else {
        return Check::fail(id, err.to_string(), fix_of(err));
    };
    let tooling_note = if tooling {
        " (a Tooling API object: the user needs the View Setup and Configuration permission too)"
    } else {
        ""
    };
    let summary = format!(
        "{object} cannot be read: {}: {}",
        super::upstream_text(code),
        super::upstream_text(message)
    );
    let fix = match code.as_str() {
        "INVALID_FIELD" => format!(
            "give the integration user read access (field-level security) to these fields of \
             {object}: {fields}; the message above names the one refused"
        ),
        "INVALID_TYPE" | "INSUFFICIENT_ACCESS" | "INSUFFICIENT_ACCESS_OR_READONLY" => format!(
            "give the integration user read access to {object} in its profile or a permission \
             set{tooling_note}"
        ),
        _ => format!(
            "check the integration user's access to {object}{tooling_note} and \
             SALESFORCE_API_VERSION"
        ),
    };
    Check::fail(id, summary, fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn a_refresh_reads_three_single_batches_plus_the_batches_of_users_and_members() {
        assert_eq!(calls_per_refresh(&[0, 0]), 5);
        assert_eq!(calls_per_refresh(&[2000, 2001]), 6);
        assert_eq!(calls_per_refresh(&[100_000, 30_000]), 3 + 50 + 15);
    }

    #[test]
    fn headroom_fails_past_the_allowance_and_warns_past_half_of_it() {
        let usage = |max| ApiUsage { used: 10, max };
        let every = |m: u64| Duration::from_secs(m * 60);
        // 96 refreshes a day of 5 calls: 480 calls.
        assert_eq!(
            headroom(usage(15_000), &[10, 10], every(15)).status,
            Status::Ok
        );
        assert_eq!(
            headroom(usage(900), &[10, 10], every(15)).status,
            Status::Warn
        );
        let failed = headroom(usage(400), &[10, 10], every(15));
        assert_eq!(failed.status, Status::Fail);
        // 480 calls in a quarter of 400 a day: every 72 min.
        assert_eq!(
            failed.fix.as_deref(),
            Some(
                "set REFRESH_INTERVAL to 72m or more, or raise the org's daily API allowance; \
                 live re-checks from Slack need calls too"
            )
        );
    }

    #[test]
    fn a_refused_field_names_the_object_and_its_fields_and_a_tooling_object_its_permission() {
        let rejected = |code: &str, message: &str| SourceError::Rejected {
            source_name: "Salesforce".to_owned(),
            request: "SOQL query on User".to_owned(),
            status: 400,
            code: code.to_owned(),
            message: message.to_owned(),
        };
        let field = read_failed(
            "User",
            "Id, Username",
            false,
            &rejected(
                "INVALID_FIELD",
                "No such column 'Username' on entity 'User'",
            ),
        );
        assert_eq!(field.id, "salesforce.read.User");
        assert_eq!(
            field.summary,
            "User cannot be read: INVALID_FIELD: No such column 'Username' on entity 'User'"
        );
        assert_eq!(
            field.fix.as_deref(),
            Some(
                "give the integration user read access (field-level security) to these fields \
                 of User: Id, Username; the message above names the one refused"
            )
        );
        let tooling = read_failed(
            "PardotTenant",
            "Id",
            true,
            &rejected("INSUFFICIENT_ACCESS", "insufficient access"),
        );
        assert!(
            tooling
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("PardotTenant") && f.contains("View Setup")),
            "{tooling:?}"
        );
    }

    #[test]
    fn an_api_version_the_org_does_not_list_fails_naming_the_newest() {
        let list =
            serde_json::json!([{"version": "61.0"}, {"version": "62.0"}, {"version": "9.0"}]);
        assert_eq!(api_version_check("62.0", &list).status, Status::Ok);
        let check = api_version_check("99.0", &list);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.fix.as_deref(),
            Some("set SALESFORCE_API_VERSION to a version the org serves, e.g. 62.0")
        );
    }
}
