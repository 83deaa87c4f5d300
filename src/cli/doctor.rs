//! `crm-username doctor [--format text|json]`.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::config::{DataArgs, SlackArgs};
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
    /// Check for Socket Mode (SLACK_APP_TOKEN) instead of HTTP (SLACK_SIGNING_SECRET).
    #[arg(long)]
    pub socket_mode: bool,
    #[command(flatten)]
    pub slack: SlackArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

impl DoctorArgs {
    pub fn doctor(&self) -> Doctor {
        Doctor::new(self.data.clone(), self.slack.clone(), self.socket_mode)
    }
}

/// Exit 0 when nothing fails, 1 when something does (usage errors exit 3 before this runs).
pub async fn run(args: &DoctorArgs) -> ExitCode {
    let report = args.doctor().run().await;
    let output = match args.format {
        DoctorFormat::Text => report.text(),
        DoctorFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(super::EXIT_USAGE);
    }
    ExitCode::from(report.exit_code())
}
