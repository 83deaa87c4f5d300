//! `crm-username refresh`: one full refresh of the cache, then exit. With `--watch`, the
//! refresher of `serve` as a process of its own: refreshes on the schedule until SIGTERM or
//! Ctrl-C, with `/healthz` and `/metrics` for its probes and scrapes.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, open_store};
use crate::config::{DataArgs, ProcessArgs};
use crate::refresh::{self, Sources};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// Keep refreshing on the schedule of `serve` (REFRESH_INTERVAL,
    /// REFRESH_INCREMENTAL_INTERVAL) until SIGTERM or Ctrl-C, serving /healthz and /metrics on
    /// BIND_ADDR: the refresher as a process of its own, for `serve` with REFRESH_IN_SERVE=false.
    /// Needs REDIS_URL.
    #[arg(long)]
    pub watch: bool,
    /// Write a whole new generation of the cache, even when only some of its keys differ from
    /// what was read (a full refresh otherwise rewrites those in place): after the cache was
    /// changed by hand, or to rule it out. Not with --watch.
    #[arg(long, conflicts_with = "watch")]
    pub new_generation: bool,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// What `refresh` says when there is nothing to refresh from.
const NO_LIVE_DATA: &str = "no live data configured: set SALESFORCE_CLIENT_ID and a secret or key (README \"Configuration\")";

/// Exit code 0 when a new snapshot was published, 1 when the refresh failed (the previous
/// snapshot stays), 3 on usage or configuration errors. With `--watch`: 0 once stopped by a
/// signal, 1 when the refresher stopped by itself, 3 on usage or configuration errors.
pub async fn run(args: &RefreshArgs) -> CliResult {
    if args.watch {
        return watch(args).await;
    }
    crate::logging::init_at(args.process.log_format.as_deref(), "warn");
    let (store, sources) = open_store(&args.data, false).await?;
    let Some(sources) = sources else {
        return Err(CliError::usage(NO_LIVE_DATA));
    };
    let write = if args.new_generation {
        refresh::FullWrite::NewGeneration
    } else {
        refresh::FullWrite::WhatChanged
    };
    let report =
        refresh::refresh_locked_with(&sources, &store, Utc::now(), refresh::LOCK_TTL, write)
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
        match (&store, report.writes) {
            (Store::Memory(_), _) =>
                " (no REDIS_URL: nothing is kept after this command)".to_owned(),
            (Store::Redis(_), Some(keys)) => {
                let noun = if keys == 1 { "key" } else { "keys" };
                format!("; rewrote {keys} {noun} of the cache in place, the rest was unchanged")
            }
            (Store::Redis(_), None) => "; a new generation of the cache was written".to_owned(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `refresh --watch`: the store and sources as `refresh` opens them, the refresher as `serve`
/// starts it, and the operations endpoints, until SIGTERM or Ctrl-C.
async fn watch(args: &RefreshArgs) -> CliResult {
    crate::logging::init(args.process.log_format.as_deref());
    let (store, sources) = open_store(&args.data, false).await?;
    let Some(sources) = sources else {
        return Err(CliError::usage(NO_LIVE_DATA));
    };
    args.data.check_refresh_watch().map_err(CliError::usage)?;
    let addr = args.process.bind_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
    let shutdown = CancellationToken::new();
    crate::server::cancel_on_signal(shutdown.clone());
    let schedule = args.data.refresh_schedule();
    tracing::info!(
        addr = %addr,
        full_every_s = schedule.full_every.as_secs(),
        incremental_every_s = schedule.incremental_every.map(|d| d.as_secs()),
        "refresher: in this process, serving /healthz and /metrics"
    );
    run_watch(
        Arc::new(sources),
        store,
        schedule,
        refresh::EMPTY_CACHE_CHECK,
        listener,
        shutdown,
    )
    .await
}

/// Runs the refresher and serves its endpoints until `shutdown`; then waits for both to stop.
async fn run_watch(
    sources: Arc<Sources>,
    store: Store,
    schedule: refresh::Schedule,
    watch: std::time::Duration,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> CliResult {
    let server = tokio::spawn(crate::server::serve_refresher(
        listener,
        store.clone(),
        shutdown.clone(),
    ));
    refresh::spawn(sources, store, schedule, watch, shutdown.clone()).await;
    // The refresher only ends once asked to; ending otherwise (its thread could not start),
    // the process stops too, so that it is restarted.
    let stopped_by_itself = !shutdown.is_cancelled();
    shutdown.cancel();
    let served = server.await;
    if stopped_by_itself {
        return Err(CliError::failure(
            "the refresher stopped by itself (see the log above)",
        ));
    }
    match served {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(err)) => Err(CliError::failure(err)),
        Err(err) => Err(CliError::failure(err)),
    }
}
