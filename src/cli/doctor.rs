//! `crm-username doctor [--format text|json]`.

use std::process::ExitCode;

use clap::ValueEnum;

use super::CliResult;
use crate::config::{DataArgs, ServeArgs};
use crate::doctor::Doctor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,
    /// The settings `serve` reads; `--socket-mode` checks for Socket Mode (SLACK_APP_TOKEN)
    /// instead of HTTP (SLACK_SIGNING_SECRET).
    #[command(flatten)]
    pub slack: ServeArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

impl DoctorArgs {
    pub fn doctor(&self) -> Doctor {
        Doctor::new(self.data.clone(), self.slack.clone())
    }
}

/// Exit 0 when nothing fails, 1 when something does (usage errors exit 3 before this runs).
pub async fn run(args: &DoctorArgs) -> CliResult {
    let report = args.doctor().run().await;
    let output = match args.format {
        DoctorFormat::Text => report.text(),
        DoctorFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    super::print(&output)?;
    Ok(ExitCode::from(report.exit_code()))
}
