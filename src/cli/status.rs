//! `crm-username status [--format text|json]`: what the shared cache holds, and how fresh.

use std::process::ExitCode;

use clap::ValueEnum;

use super::{CliError, CliResult};
use crate::config::DataArgs;
use crate::store::{RedisStore, Store};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

pub async fn run(args: &StatusArgs) -> CliResult {
    let Some(redis) = args.data.redis() else {
        return Err(CliError::usage(
            "status reads the shared cache: set REDIS_URL (without it, the cache lives inside `serve`)",
        ));
    };
    let store = RedisStore::open(&redis, &args.data.redis_key_prefix, Default::default())
        .map(Store::Redis)
        .map_err(CliError::usage)?;
    let report = store.status().await.map_err(CliError::failure)?;
    match args.format {
        StatusFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        StatusFormat::Text => print!("{}", crate::render::status_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
