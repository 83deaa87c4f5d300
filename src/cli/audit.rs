//! `crm-username audit [BUSINESS_UNIT] [--format text|json|csv] [--demo | --org FILE]`.

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::Utc;
use clap::ValueEnum;

use super::{CliError, CliResult, NO_DATA_YET, OfflineOrg, open_store};
use crate::config::DataArgs;
use crate::render;
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// One business unit (id or name); every business unit when left out.
    #[arg(value_name = "BUSINESS_UNIT")]
    pub business_unit: Vec<String>,
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,
    /// Keep at most this many rows, the most severe (the counts still cover every row), as
    /// the bot does in Slack to bound its memory; all rows when left out.
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
    #[command(flatten)]
    pub offline: OfflineOrg,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Csv,
}

/// Exit code 0 when no row is blocked, 1 when some are, 3 on usage or configuration errors.
pub async fn run(args: &AuditArgs) -> CliResult {
    let now = Utc::now();
    let store = match args.offline.snapshot(now) {
        Some(snapshot) => {
            let snapshot = snapshot.map_err(CliError::usage)?;
            let store = Store::memory();
            store.publish(snapshot).await.map_err(CliError::usage)?;
            store
        }
        None => open_store(&args.data, true).await?.0,
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = std::sync::Arc::new(move |p: crate::audit::Progress| {
        if terminal {
            eprint!("\rAuditing… {} of {} users", p.done, p.total);
        }
    });
    let report = match crate::check::audit(
        &store,
        &args.business_unit.join(" "),
        now,
        args.max_rows,
        progress,
    )
    .await
    {
        Ok(report) => report,
        Err(crate::check::AuditError::Scope(scope)) => return Err(CliError::usage(scope)),
        Err(crate::check::AuditError::Store(StoreError::NoSnapshot)) => {
            return Err(CliError::usage(NO_DATA_YET));
        }
        Err(err) => return Err(CliError::failure(err)),
    };
    if terminal {
        eprintln!();
    }
    let output = match args.format {
        AuditFormat::Text => render::audit_text(&report),
        AuditFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        AuditFormat::Csv => crate::audit::to_csv(&report),
    };
    super::print(&output)?;
    Ok(ExitCode::from(u8::from(report.blocked() > 0)))
}
