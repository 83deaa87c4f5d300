//! `crm-username settings init [--output FILE] [--force]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, CliResult};

use crate::config::DataArgs;
use crate::config::settings_init;
use crate::sources::{SalesforceClient, catalog};

#[derive(Debug, clap::Subcommand)]
pub enum SettingsCommand {
    /// Write a commented business-unit settings file from the org's business units,
    /// profiles, roles and public groups.
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write; standard output when left out.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// The Account Engagement host written for every business unit; default:
    /// https://pi.demo.pardot.com for sandboxes and developer orgs, else https://pi.pardot.com.
    #[arg(long, value_name = "URL")]
    pub ae_url: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(command: &SettingsCommand) -> CliResult {
    let SettingsCommand::Init(args) = command;
    init(args).await
}

async fn init(args: &InitArgs) -> CliResult {
    if let Some(path) = &args.output {
        if path.exists() && !args.force {
            return Err(CliError::usage(format!(
                "{} exists; pass --force to overwrite it",
                path.display()
            )));
        }
    }
    // The file is what we are writing: do not read it.
    let data = DataArgs {
        business_units_file: None,
        ..args.data.clone()
    };
    let live = match data.live() {
        Ok(Some(live)) => live,
        Ok(None) => {
            return Err(CliError::usage(
                "settings init reads the org: set SALESFORCE_CLIENT_ID and a secret or key \
                 (docs/setup-salesforce.md)",
            ));
        }
        Err(err) => return Err(CliError::usage(err)),
    };
    let login_url = live.salesforce.login_url.clone();
    let client = match SalesforceClient::new(live.salesforce) {
        Ok(client) => client,
        Err(err) => return Err(CliError::usage(err)),
    };
    let catalog = match catalog::fetch(&client).await {
        Ok(catalog) => catalog,
        Err(err) => {
            return Err(CliError::failure(format!(
                "cannot read {} from the org: {}",
                err.object, err.error
            )));
        }
    };
    let ae_url = match &args.ae_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => settings_init::default_ae_url(&login_url).to_owned(),
    };
    let text = settings_init::render(
        &catalog,
        &ae_url,
        &chrono::Utc::now().format("%Y-%m-%d").to_string(),
    );
    let written = match &args.output {
        Some(path) => std::fs::write(path, &text),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
        }
    };
    if let Err(err) = written {
        return Err(CliError::failure(format!(
            "cannot write the settings: {err}"
        )));
    }
    if let Some(path) = &args.output {
        eprintln!(
            "wrote {} business units, {} profiles, {} roles and {} public groups to {}; fill it \
             in, set BUSINESS_UNITS_FILE, then run `crm-username doctor`",
            catalog.business_units.len(),
            catalog.profiles.len(),
            catalog.roles.len(),
            catalog.groups.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
