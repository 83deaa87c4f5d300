//! `crm-username refresh`: one full refresh of the cache, then exit.

use std::process::ExitCode;

use chrono::Utc;

use super::{CliError, CliResult, open_store};
use crate::config::DataArgs;
use crate::refresh;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

/// Exit code 0 when a new snapshot was published, 1 when the refresh failed (the previous
/// snapshot stays), 3 on usage or configuration errors.
pub async fn run(args: &RefreshArgs) -> CliResult {
    let (store, sources) = open_store(&args.data, false).await?;
    let Some(sources) = sources else {
        return Err(CliError::usage(
            "no live data configured: set SALESFORCE_CLIENT_ID and a secret or key (README \"Configuration\")",
        ));
    };
    let report = refresh::refresh_locked(&sources, &store, Utc::now(), refresh::LOCK_TTL)
        .await
        .map_err(CliError::failure)?;
    let units: Vec<String> = report
        .ae_users
        .iter()
        .map(|(bu, n)| format!("{n} AE users in {bu}"))
        .collect();
    println!(
        "Refreshed {} Salesforce users{}{} in {:.1} s with {} Salesforce and {} Account Engagement API calls{}",
        report.sf_users,
        if units.is_empty() { "" } else { ", " },
        units.join(", "),
        report.duration.as_secs_f64(),
        report.api_calls.salesforce,
        report.api_calls.account_engagement,
        if matches!(store, Store::Memory(_)) {
            " (no REDIS_URL: nothing is kept after this command)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
