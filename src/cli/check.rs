//! `crm-username check <query...> [--format text|json|blocks] [--demo | --org FILE]`.

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::Utc;
use clap::ValueEnum;

use super::{CliError, CliResult, NO_DATA_YET, OfflineOrg, open_store};
use crate::config::DataArgs;
use crate::diagnose::diagnose;
use crate::domain::{Org, Query};
use crate::render;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Blocks,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A Salesforce username, email, user id (15 or 18 characters) or name, optionally
    /// followed by `for <AE user email or id>` (the AE user being edited).
    #[arg(required = true, value_name = "QUERY")]
    pub query: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub offline: OfflineOrg,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Exit code 0 when the verdict is `clear`, 1 `blocked`, 2 `not_found`/`ambiguous`, 3 usage.
pub fn run(args: &CheckArgs) -> CliResult {
    let query = Query::parse(&args.query.join(" ")).map_err(CliError::usage)?;
    let now = Utc::now();
    let outcome = match args.offline.snapshot(now) {
        Some(snapshot) => diagnose(&query, &Org::new(snapshot.map_err(CliError::usage)?), now),
        None => Ok(super::runtime()?.block_on(check_live(&args.data, &query))?),
    };
    let diagnosis = outcome.map_err(CliError::usage)?;
    let output = match args.format {
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            render::text(&diagnosis, colour)
        }
        Format::Json => render::json(&diagnosis) + "\n",
        Format::Blocks => {
            serde_json::to_string_pretty(&render::blocks(&diagnosis)).unwrap_or_default() + "\n"
        }
    };
    super::print(&output)?;
    Ok(ExitCode::from(diagnosis.verdict.exit_code()))
}

async fn check_live(data: &DataArgs, query: &Query) -> Result<crate::domain::Diagnosis, CliError> {
    let (store, sources) = open_store(data, true).await?;
    let outcome = match &sources {
        Some(sources) => crate::refresh::answer(sources, &store, query, Utc::now()).await,
        None => crate::check::check(&store, query, Utc::now()).await,
    };
    outcome.map_err(|err| match err {
        crate::check::CheckError::Store(StoreError::NoSnapshot) => CliError::usage(NO_DATA_YET),
        err => CliError::usage(err),
    })
}
