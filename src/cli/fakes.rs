//! `crm-username fakes`: fakes of Salesforce and Account Engagement serving a synthetic (or the
//! demo) org on 127.0.0.1, until Ctrl-C (demo builds only).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::{CliError, CliResult, GenerateOrgArgs};
use crate::config::settings_init;

#[derive(Debug, clap::Args)]
pub struct FakesArgs {
    #[command(flatten)]
    pub org: GenerateOrgArgs,
    /// Serve the built-in demo org instead of a synthetic one.
    #[arg(long, conflicts_with = "org_file")]
    pub demo: bool,
    /// Serve the org snapshot in this file (JSON, as `generate-org` writes it) instead of
    /// generating one.
    #[arg(long = "org", value_name = "FILE")]
    pub org_file: Option<PathBuf>,
    /// Where to write the business-unit settings (TOML) pointing at the fake.
    #[arg(long, value_name = "FILE")]
    pub settings_out: PathBuf,
    /// On each SIGUSR1, change this percentage of the internal users (renamed, deactivated,
    /// moved between groups) and of each business unit's AE users: for benchmarks of the
    /// incremental refresh.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub change_on_signal: Option<u32>,
}

pub async fn run(args: &FakesArgs) -> CliResult {
    let org = if args.demo {
        crate::demo::snapshot(Utc::now()).map_err(CliError::usage)?
    } else if let Some(path) = &args.org_file {
        crate::snapshot_file::load(path).map_err(|err| CliError::usage(err.to_string()))?
    } else {
        args.org.synthetic_org()
    };
    // The settings need the business units only: keep those, and give the org to the fakes.
    let business_units = crate::domain::OrgSnapshot {
        fetched_at: org.fetched_at,
        salesforce: crate::domain::SalesforceOrg {
            org_id: None,
            instance_url: String::new(),
            lightning_url: None,
            users: Vec::new(),
            roles: Vec::new(),
            groups: Vec::new(),
            group_members: Vec::new(),
        },
        business_units: org.business_units.clone(),
    };
    let upstreams = crate::fakes::FakeUpstreams::start_owned(org)
        .await
        .map_err(|err| CliError::failure(format!("cannot start the fakes: {err}")))?;
    std::fs::write(
        &args.settings_out,
        settings_init::from_snapshot(&business_units, upstreams.account_engagement.url()),
    )
    .map_err(|err| {
        CliError::failure(format!(
            "cannot write {}: {err}",
            args.settings_out.display()
        ))
    })?;
    let settings = upstreams.salesforce.settings();
    println!("SALESFORCE_LOGIN_URL={}", upstreams.salesforce.url());
    println!("SALESFORCE_CLIENT_ID={}", settings.client_id);
    println!("SALESFORCE_CLIENT_SECRET={}", settings.client_secret);
    println!("BUSINESS_UNITS_FILE={}", args.settings_out.display());
    let _ = std::io::stdout().flush();
    match args.change_on_signal {
        Some(percent) => change_on_signal(&upstreams, &business_units, percent).await?,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    use crate::fakes::SalesforceEndpoint as E;
    eprintln!(
        "requests served: Salesforce {} token, {} query, {} tooling; Account Engagement {}",
        upstreams.salesforce.requests(E::Token),
        upstreams.salesforce.requests(E::Query),
        upstreams.salesforce.requests(E::ToolingQuery),
        upstreams.account_engagement.requests()
    );
    Ok(ExitCode::SUCCESS)
}

/// Serves until Ctrl-C, changing `percent` of the org at each SIGUSR1.
async fn change_on_signal(
    upstreams: &crate::fakes::FakeUpstreams,
    org: &crate::domain::OrgSnapshot,
    percent: u32,
) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut changer =
        crate::fakes::Changer::new(upstreams, org.business_units.iter().map(|b| b.id).collect());
    let mut usr1 = signal(SignalKind::user_defined1())
        .map_err(|err| CliError::failure(format!("cannot listen for SIGUSR1: {err}")))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = usr1.recv() => eprintln!("{}", changer.apply(upstreams, percent)),
        }
    }
}
