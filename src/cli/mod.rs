//! The subcommands of docs/reference.md, one file each. Every subcommand returns its exit code,
//! or a [`CliError`] that carries the code and what a person reads; [`main`] prints it.

mod audit;
mod check;
pub mod doctor;
#[cfg(feature = "demo")]
mod fakes;
#[cfg(feature = "demo")]
mod generate_org;
mod refresh;
pub mod serve;
pub mod settings;
mod status;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::config::{DataArgs, LiveSettings};
use crate::domain::{OrgSnapshot, SnapshotError};
use crate::refresh::Sources;
use crate::sources::{
    AccountEngagementClient, AccountEngagementConfig, SalesforceClient, SourceError,
};
use crate::store::{RedisStore, Store};

pub use audit::{AuditArgs, AuditFormat};
pub use check::{CheckArgs, Format};
#[cfg(feature = "demo")]
pub use fakes::FakesArgs;
#[cfg(feature = "demo")]
pub use generate_org::GenerateOrgArgs;
pub use refresh::RefreshArgs;
pub use serve::ServeCommand;
pub use status::{StatusArgs, StatusFormat};

/// Exit code for usage and configuration errors (docs/reference.md).
pub const EXIT_USAGE: u8 = 3;
/// Exit code when the work itself failed (not its usage).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "crm-username",
    version,
    about = "Explains why a Salesforce username is missing from the Account Engagement CRM username dropdown"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose one query, exactly as the Slack command would.
    Check(CheckArgs),
    /// Run the bot: the HTTP endpoints for Slack plus the background refresher (unless
    /// REFRESH_IN_SERVE=false: then `refresh --watch` runs it).
    Serve(Box<ServeCommand>),
    /// One full refresh of the cache from Salesforce and Account Engagement, then exit; with
    /// `--watch`, the refresher of `serve` as a process of its own, until SIGTERM.
    Refresh(RefreshArgs),
    /// Data freshness per source and business unit, last errors, counts.
    Status(StatusArgs),
    /// Every broken mapping: active Salesforce users who should have an AE user and have
    /// none, and AE users with no CRM username, with what blocks each, grouped by cause.
    Audit(AuditArgs),
    /// Serve fakes of Salesforce and Account Engagement for a synthetic org on 127.0.0.1,
    /// for trying `refresh` and `serve` without an org, and for benchmarks.
    #[cfg(feature = "demo")]
    Fakes(FakesArgs),
    /// Print a synthetic org snapshot (JSON) of any size, for trying and benchmarking.
    #[cfg(feature = "demo")]
    GenerateOrg(GenerateOrgArgs),
    /// Check the configuration, Redis, Salesforce, Account Engagement, the settings against
    /// the org, and Slack; say what to fix.
    Doctor(Box<doctor::DoctorArgs>),
    /// The business-unit settings file.
    #[command(subcommand)]
    Settings(Box<settings::SettingsCommand>),
}

/// Why a subcommand stopped: its exit code, and what the person at the terminal reads (what
/// happened, and what to do next). `None`: the reason was already shown, or there is no one to
/// show it to (standard output is closed).
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    pub code: u8,
    pub message: Option<String>,
}

impl CliError {
    /// A usage or configuration error: exit code 3.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: Some(message.to_string()),
        }
    }

    /// A failure of the work itself (not of its usage): exit code 1.
    pub fn failure(message: impl std::fmt::Display) -> Self {
        CliError {
            code: EXIT_FAILURE,
            message: Some(message.to_string()),
        }
    }

    /// Standard output could not be written: exit code 3, nothing more to say.
    pub fn output_closed() -> Self {
        CliError {
            code: EXIT_USAGE,
            message: None,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(message) => write!(f, "{message}"),
            None => write!(f, "exit code {}", self.code),
        }
    }
}

impl std::error::Error for CliError {}

/// What a subcommand returns: its exit code when it ran (check's verdict, audit's "something is
/// blocked"), or why it stopped.
pub type CliResult = Result<ExitCode, CliError>;

/// Parses the command line and runs it; usage errors exit with code 3, as docs/reference.md says.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            if let Some(message) = &err.message {
                eprintln!("error: {message}");
            }
            ExitCode::from(err.code)
        }
    }
}

fn run(command: Command) -> CliResult {
    match command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => runtime()?.block_on(serve::run(&args)),
        Command::Refresh(args) => runtime()?.block_on(refresh::run(&args)),
        Command::Status(args) => runtime()?.block_on(status::run(&args)),
        Command::Audit(args) => runtime()?.block_on(audit::run(&args)),
        #[cfg(feature = "demo")]
        Command::Fakes(args) => runtime()?.block_on(fakes::run(&args)),
        #[cfg(feature = "demo")]
        Command::GenerateOrg(args) => generate_org::run(&args),
        Command::Doctor(args) => runtime()?.block_on(doctor::run(&args)),
        Command::Settings(command) => runtime()?.block_on(settings::run(&command)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    crate::sources::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))
}

/// Writes `output` to standard output, all of it.
fn print(output: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|_| CliError::output_closed())
}

/// `--demo` or `--org FILE`: an org read at once, instead of the configured cache.
#[derive(Debug, clap::Args)]
pub struct OfflineOrg {
    /// Use the built-in demo org.
    #[arg(long, conflicts_with = "org")]
    pub demo: bool,
    /// Use an org snapshot file (JSON, see README "Org snapshot file").
    #[arg(long, value_name = "FILE")]
    pub org: Option<PathBuf>,
}

impl OfflineOrg {
    /// The org asked for, or `None` when neither flag is given (the cache is used).
    fn snapshot(&self, now: DateTime<Utc>) -> Option<Result<OrgSnapshot, SnapshotError>> {
        match (&self.org, self.demo) {
            (Some(path), _) => Some(crate::snapshot_file::load(path)),
            (None, true) => Some(crate::demo::snapshot(now)),
            (None, false) => None,
        }
    }
}

/// What `check` and `audit` say when the cache is empty.
const NO_DATA_YET: &str =
    "the cache holds no data yet: run `crm-username refresh`, or start `crm-username serve`";

/// The configured cache: Redis when REDIS_URL is set; otherwise an in-process store, filled
/// by a refresh now when live data is configured.
async fn open_store(data: &DataArgs, fill: bool) -> Result<(Store, Option<Sources>), CliError> {
    let live = data.live().map_err(CliError::usage)?;
    let sources = match live {
        Some(live) => Some(sources(live).map_err(CliError::usage)?),
        None => None,
    };
    if let Some(redis) = data.redis() {
        let store = RedisStore::open(&redis, &data.redis_key_prefix, Default::default())
            .map_err(CliError::usage)?;
        return Ok((Store::Redis(store), sources));
    }
    let Some(sources) = sources else {
        return Err(CliError::usage(
            "no org data: pass --demo for the built-in demo org or --org FILE for a snapshot file, or configure live data (SALESFORCE_CLIENT_ID and a secret or key, see README \"Configuration\")",
        ));
    };
    let store = Store::memory();
    if fill {
        if let Err(err) = crate::refresh::refresh_once(&sources, &store, Utc::now()).await {
            return Err(CliError::usage(format!(
                "the refresh at start failed: {err}"
            )));
        }
    }
    Ok((store, Some(sources)))
}

/// The live clients for validated live settings.
pub fn sources(live: LiveSettings) -> Result<Sources, SourceError> {
    let salesforce = std::sync::Arc::new(SalesforceClient::new(live.salesforce)?);
    let account_engagement =
        AccountEngagementClient::new(AccountEngagementConfig::default(), salesforce.clone())?;
    Ok(Sources {
        salesforce,
        account_engagement,
        business_units: live.business_units,
        live_lookups: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_only_subcommands_exist_only_in_builds_with_the_demo_feature() {
        for argv in [
            &["crm-username", "generate-org"][..],
            &["crm-username", "fakes", "--settings-out", "bu.toml"],
        ] {
            let parsed = Cli::try_parse_from(argv);
            if cfg!(feature = "demo") {
                assert!(parsed.is_ok(), "{argv:?}: {parsed:?}");
            } else {
                let err = parsed.expect_err("not in this build");
                assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
            }
        }
    }

    #[test]
    fn a_usage_error_exits_3_and_a_failure_1_each_with_its_message() {
        assert_eq!(
            CliError::usage("bad flag"),
            CliError {
                code: 3,
                message: Some("bad flag".into())
            }
        );
        assert_eq!(CliError::failure("it broke").code, 1);
        assert_eq!(CliError::output_closed().message, None);
    }
}
