//! The subcommands of CONTRACT.md.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};

use crate::diagnose::diagnose;
use crate::domain::{Org, OrgSnapshot, Query};
use crate::{demo, render};

/// Exit code for usage and configuration errors (CONTRACT.md).
pub const EXIT_USAGE: u8 = 3;

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
    /// Print a synthetic org snapshot (JSON) of any size, for trying and benchmarking.
    GenerateOrg(GenerateOrgArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateOrgArgs {
    #[arg(long, default_value_t = 1_000)]
    pub sf_users: usize,
    #[arg(long, default_value_t = 200)]
    pub ae_users: usize,
    #[arg(long, default_value_t = 2)]
    pub business_units: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

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
    /// Use the built-in demo org.
    #[arg(long, conflicts_with = "org")]
    pub demo: bool,
    /// Use an org snapshot file (JSON, see README "Org snapshot file").
    #[arg(long, value_name = "FILE")]
    pub org: Option<PathBuf>,
}

/// Parses the command line and runs it; usage errors exit with code 3, as CONTRACT.md says.
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
    match cli.command {
        Command::Check(args) => check(&args),
        Command::GenerateOrg(args) => generate_org(&args),
    }
}

fn generate_org(args: &GenerateOrgArgs) -> ExitCode {
    let snapshot = crate::synthetic::generate(crate::synthetic::Params {
        sf_users: args.sf_users,
        ae_users: args.ae_users,
        business_units: args.business_units,
        seed: args.seed,
    });
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer(&mut stdout, &snapshot)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => usage_error(format!("cannot write the org: {err}")),
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

pub fn check(args: &CheckArgs) -> ExitCode {
    let query = match Query::parse(&args.query.join(" ")) {
        Ok(query) => query,
        Err(err) => return usage_error(err),
    };
    let now = Utc::now();
    let snapshot = if args.demo {
        demo::snapshot(now)
    } else if let Some(path) = &args.org {
        OrgSnapshot::load(path)
    } else {
        return usage_error(
            "no org data: pass --demo for the built-in demo org, or --org FILE for an org snapshot file",
        );
    };
    let org = match snapshot {
        Ok(snapshot) => Org::new(snapshot),
        Err(err) => return usage_error(err),
    };
    let diagnosis = match diagnose(&query, &org, now) {
        Ok(diagnosis) => diagnosis,
        Err(err) => return usage_error(err),
    };
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
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(output.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(diagnosis.verdict.exit_code())
}
