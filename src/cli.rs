//! The subcommands of docs/reference.md.

pub mod doctor;
pub mod settings;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{DataArgs, LiveSettings, SlackArgs};
use crate::diagnose::diagnose;
use crate::domain::{Org, OrgSnapshot, Query, SnapshotError};
use crate::refresh::{self, Sources};
use crate::sources::{
    AccountEngagementClient, AccountEngagementConfig, SalesforceClient, SourceError,
};
use crate::store::{RedisStore, Store, StoreError};
use crate::{demo, render};

/// Exit code for usage and configuration errors (docs/reference.md).
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
    /// Run the bot: the HTTP endpoints for Slack plus the background refresher.
    Serve(Box<ServeArgs>),
    /// One full refresh of the cache from Salesforce and Account Engagement, then exit.
    Refresh(RefreshArgs),
    /// Data freshness per source and business unit, last errors, counts.
    Status(StatusArgs),
    /// Every broken mapping: active Salesforce users who should have an AE user and have
    /// none, and AE users with no CRM username, with what blocks each, grouped by cause.
    Audit(AuditArgs),
    /// Serve fakes of Salesforce and Account Engagement for a synthetic org on 127.0.0.1,
    /// for trying `refresh` and `serve` without an org, and for benchmarks.
    Fakes(FakesArgs),
    /// Print a synthetic org snapshot (JSON) of any size, for trying and benchmarking.
    GenerateOrg(GenerateOrgArgs),
    /// Check the configuration, Redis, Salesforce, Account Engagement, the settings against
    /// the org, and Slack; say what to fix.
    Doctor(Box<doctor::DoctorArgs>),
    /// The business-unit settings file.
    #[command(subcommand)]
    Settings(Box<settings::SettingsCommand>),
}

#[derive(Debug, clap::Args)]
pub struct FakesArgs {
    #[command(flatten)]
    pub org: GenerateOrgArgs,
    /// Serve the built-in demo org instead of a synthetic one.
    #[arg(long)]
    pub demo: bool,
    /// Where to write the business-unit settings (TOML) pointing at the fake.
    #[arg(long, value_name = "FILE")]
    pub settings_out: PathBuf,
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
    /// Share of Salesforce users (0 to 100) that are external (community, portal, guest,
    /// Chatter): Account Engagement cannot map them, and the refresh does not cache them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub external_percent: u8,
    /// Business units managed in Salesforce assign a Sales users section too, besides the
    /// Marketing users section.
    #[arg(long)]
    pub sales_section: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Blocks,
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
            (None, true) => Some(demo::snapshot(now)),
            (None, false) => None,
        }
    }
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

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Connect to Slack over Socket Mode (SLACK_APP_TOKEN) instead of serving HTTP to it.
    #[arg(long)]
    pub socket_mode: bool,
    /// Serve the built-in demo org from memory instead of live data.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub slack: SlackArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    #[command(flatten)]
    pub data: DataArgs,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

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
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Serve(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(serve(&args))),
        Command::Refresh(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(refresh(&args))),
        Command::Status(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(status(&args))),
        Command::Audit(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(audit(&args))),
        Command::Fakes(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(fakes(&args))),
        Command::GenerateOrg(args) => generate_org(&args),
        Command::Doctor(args) => runtime().map_or_else(|c| c, |rt| rt.block_on(doctor::run(&args))),
        Command::Settings(command) => {
            runtime().map_or_else(|c| c, |rt| rt.block_on(settings::run(&command)))
        }
    }
}

fn synthetic_org(args: &GenerateOrgArgs) -> OrgSnapshot {
    crate::synthetic::generate_with(
        crate::synthetic::Params {
            sf_users: args.sf_users,
            ae_users: args.ae_users,
            business_units: args.business_units,
            seed: args.seed,
        },
        crate::synthetic::Variety {
            external_percent: args.external_percent,
            sales_section: args.sales_section,
        },
    )
}

fn generate_org(args: &GenerateOrgArgs) -> ExitCode {
    let snapshot = synthetic_org(args);
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
    let outcome = if let Some(snapshot) = args.offline.snapshot(now) {
        match snapshot {
            Ok(snapshot) => diagnose(&query, &Org::new(snapshot), now),
            Err(err) => return usage_error(err),
        }
    } else {
        let Ok(rt) = runtime() else {
            return ExitCode::from(EXIT_USAGE);
        };
        match rt.block_on(check_live(&args.data, &query)) {
            Ok(diagnosis) => Ok(diagnosis),
            Err(code) => return code,
        }
    };
    let diagnosis = match outcome {
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    crate::sources::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage_error(format!("cannot start the async runtime: {e}")))
}

/// The configured cache: Redis when REDIS_URL is set; otherwise an in-process store, filled
/// by a refresh now when live data is configured.
async fn open_store(data: &DataArgs, fill: bool) -> Result<(Store, Option<Sources>), ExitCode> {
    let live = data.live().map_err(usage_error)?;
    let sources = match live {
        Some(live) => Some(sources(live).map_err(usage_error)?),
        None => None,
    };
    if let Some(redis) = data.redis() {
        let store = RedisStore::open(&redis, &data.redis_key_prefix, Default::default())
            .map_err(usage_error)?;
        return Ok((Store::Redis(store), sources));
    }
    let Some(sources) = sources else {
        return Err(usage_error(
            "no org data: pass --demo for the built-in demo org or --org FILE for a snapshot file, or configure live data (SALESFORCE_CLIENT_ID and a secret or key, see README \"Configuration\")",
        ));
    };
    let store = Store::memory();
    if fill {
        if let Err(err) = refresh::refresh_once(&sources, &store, Utc::now()).await {
            return Err(usage_error(format!("the refresh at start failed: {err}")));
        }
    }
    Ok((store, Some(sources)))
}

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

/// A failure of the work itself (not of its usage): exit code 1.
fn failure(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

async fn check_live(data: &DataArgs, query: &Query) -> Result<crate::domain::Diagnosis, ExitCode> {
    let (store, sources) = open_store(data, true).await?;
    let outcome = match &sources {
        Some(sources) => refresh::answer(sources, &store, query, Utc::now()).await,
        None => crate::check::check(&store, query, Utc::now()).await,
    };
    outcome.map_err(|err| match err {
        crate::check::CheckError::Store(StoreError::NoSnapshot) => usage_error(
            "the cache holds no data yet: run `crm-username refresh`, or start `crm-username serve`",
        ),
        err => usage_error(err),
    })
}

/// Exit code 0 when no row is blocked, 1 when some are, 3 on usage or configuration errors.
async fn audit(args: &AuditArgs) -> ExitCode {
    let now = Utc::now();
    let store = if let Some(snapshot) = args.offline.snapshot(now) {
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(err) => return usage_error(err),
        };
        let store = Store::memory();
        if let Err(err) = store.publish(snapshot).await {
            return usage_error(err);
        }
        store
    } else {
        match open_store(&args.data, true).await {
            Ok((store, _)) => store,
            Err(code) => return code,
        }
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
        Err(crate::check::AuditError::Scope(scope)) => return usage_error(scope),
        Err(crate::check::AuditError::Store(StoreError::NoSnapshot)) => {
            return usage_error(
                "the cache holds no data yet: run `crm-username refresh`, or start `crm-username serve`",
            );
        }
        Err(err) => return failure(err),
    };
    if terminal {
        eprintln!();
    }
    let output = match args.format {
        AuditFormat::Text => render::audit_text(&report),
        AuditFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        AuditFormat::Csv => crate::audit::to_csv(&report),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(output.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(u8::from(report.blocked() > 0))
}

async fn refresh(args: &RefreshArgs) -> ExitCode {
    let (store, sources) = match open_store(&args.data, false).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let Some(sources) = sources else {
        return usage_error(
            "no live data configured: set SALESFORCE_CLIENT_ID and a secret or key (README \"Configuration\")",
        );
    };
    match refresh::refresh_locked(&sources, &store, Utc::now(), refresh::LOCK_TTL).await {
        Ok(report) => {
            let units: Vec<String> = report
                .ae_users
                .iter()
                .map(|(bu, n)| format!("{n} AE users in {bu}"))
                .collect();
            println!(
                "Refreshed {} Salesforce users{}{} in {:.1} s{}",
                report.sf_users,
                if units.is_empty() { "" } else { ", " },
                units.join(", "),
                report.duration.as_secs_f64(),
                if matches!(store, Store::Memory(_)) {
                    " (no REDIS_URL: nothing is kept after this command)"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(err) => failure(err),
    }
}

async fn status(args: &StatusArgs) -> ExitCode {
    let Some(redis) = args.data.redis() else {
        return usage_error(
            "status reads the shared cache: set REDIS_URL (without it, the cache lives inside `serve`)",
        );
    };
    let store = match RedisStore::open(&redis, &args.data.redis_key_prefix, Default::default()) {
        Ok(store) => Store::Redis(store),
        Err(err) => return usage_error(err),
    };
    let report = match store.status().await {
        Ok(report) => report,
        Err(err) => return failure(err),
    };
    match args.format {
        StatusFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        StatusFormat::Text => print!("{}", render_status(&report)),
    }
    ExitCode::SUCCESS
}

/// `status` for a terminal.
pub fn render_status(report: &crate::store::StatusReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let when = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".to_owned())
    };
    let _ = writeln!(out, "Data as of   {}", when(report.data_as_of));
    let _ = writeln!(out, "Salesforce   {} users", report.sf_users);
    for (bu, n) in &report.ae_users {
        let _ = writeln!(out, "AE {bu}  {n} users");
    }
    for (source, s) in &report.sources {
        let _ = writeln!(out, "\n{source}");
        let _ = writeln!(out, "  last success  {}", when(s.last_success_at));
        if let Some(records) = s.records {
            let _ = writeln!(out, "  records       {records}");
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(
                out,
                "  last error    {} ({})",
                crate::render::strip_invisible(error),
                when(s.last_error_at)
            );
        }
    }
    out
}

/// The business-unit settings file of an org, its AE pages at `ae_url`.
pub fn settings_toml(org: &OrgSnapshot, ae_url: &str) -> String {
    use std::fmt::Write;
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let list = |refs: &[crate::domain::RecordRef]| {
        refs.iter()
            .map(|r| quote(&r.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut toml = String::new();
    for bu in &org.business_units {
        let management = match bu.user_management {
            crate::domain::UserManagement::Salesforce => "salesforce",
            crate::domain::UserManagement::AccountEngagement => "account_engagement",
        };
        let _ = writeln!(
            toml,
            "[[business_unit]]\nid = \"{}\"\nname = {}\nae_url = {}",
            bu.id,
            quote(&bu.name),
            quote(ae_url)
        );
        let _ = writeln!(
            toml,
            "user_sync = {}\nuser_management = \"{management}\"",
            bu.user_sync
        );
        let _ = writeln!(toml, "[business_unit.profile_roles]");
        for (profile, role) in &bu.profile_roles {
            let _ = writeln!(toml, "{} = {}", quote(profile), quote(role));
        }
        for (section, a) in bu.assignment.sections() {
            let _ = writeln!(
                toml,
                "[business_unit.assignment.{}]\nusers = [{}]\npublic_groups = [{}]\nroles = [{}]\nroles_and_subordinates = [{}]",
                section.label().to_ascii_lowercase(),
                list(&a.users),
                list(&a.public_groups),
                list(&a.roles),
                list(&a.roles_and_subordinates)
            );
        }
        toml.push('\n');
    }
    toml
}

async fn fakes(args: &FakesArgs) -> ExitCode {
    let org = if args.demo {
        demo::snapshot(Utc::now())
    } else {
        Ok(synthetic_org(&args.org))
    };
    let org = match org {
        Ok(org) => org,
        Err(err) => return usage_error(err),
    };
    let upstreams = match crate::fakes::FakeUpstreams::start(&org).await {
        Ok(upstreams) => upstreams,
        Err(err) => return failure(format!("cannot start the fakes: {err}")),
    };
    if let Err(err) = std::fs::write(
        &args.settings_out,
        settings_toml(&org, upstreams.account_engagement.url()),
    ) {
        return failure(format!(
            "cannot write {}: {err}",
            args.settings_out.display()
        ));
    }
    let settings = upstreams.salesforce.settings();
    println!("SALESFORCE_LOGIN_URL={}", upstreams.salesforce.url());
    println!("SALESFORCE_CLIENT_ID={}", settings.client_id);
    println!("SALESFORCE_CLIENT_SECRET={}", settings.client_secret);
    println!("BUSINESS_UNITS_FILE={}", args.settings_out.display());
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    use crate::fakes::SalesforceEndpoint as E;
    eprintln!(
        "requests served: Salesforce {} token, {} query, {} tooling; Account Engagement {}",
        upstreams.salesforce.requests(E::Token),
        upstreams.salesforce.requests(E::Query),
        upstreams.salesforce.requests(E::ToolingQuery),
        upstreams.account_engagement.requests()
    );
    ExitCode::SUCCESS
}

fn init_logging(format: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(args: &ServeArgs) -> ExitCode {
    init_logging(args.slack.log_format.as_deref());
    let mut slack_args = args.slack.clone();
    if (args.demo || args.socket_mode)
        && slack_args
            .slack_signing_secret
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
    {
        // Nobody knows this secret: /slack/* refuses every request; the playground signs its
        // own, and Socket Mode signs nothing.
        slack_args.slack_signing_secret = Some(crate::playground::random_secret());
        tracing::info!("no SLACK_SIGNING_SECRET: /slack/* refuses every request");
    }
    let settings = match slack_args.settings() {
        Ok(settings) => settings,
        Err(err) => return usage_error(err),
    };
    let limits = match args.slack.http_limits.limits() {
        Ok(limits) => limits,
        Err(err) => return usage_error(err),
    };
    let app_token = match (
        args.socket_mode,
        args.slack.slack_app_token.as_deref().map(str::trim),
    ) {
        (false, _) => None,
        (true, Some(token)) if token.starts_with("xapp-") => {
            Some(secrecy::SecretString::from(token.to_owned()))
        }
        (true, _) => {
            return usage_error(
                "SLACK_APP_TOKEN: --socket-mode needs the app-level token (xapp-...) with the connections:write scope, from the app's Basic Information page",
            );
        }
    };
    let (store, sources) = if args.demo {
        let store = Store::memory();
        let snapshot = match demo::snapshot(Utc::now()) {
            Ok(snapshot) => snapshot,
            Err(err) => return usage_error(err),
        };
        if let Err(err) = store.publish(snapshot).await {
            return failure(err);
        }
        (store, None)
    } else {
        match open_store(&args.data, false).await {
            Ok(opened) => opened,
            Err(code) => return code,
        }
    };
    let sources = sources.map(std::sync::Arc::new);
    let state = crate::slack::AppState::new(store.clone(), sources.clone(), settings);
    let server = match crate::server::Server::bind(args.slack.bind_addr, state).await {
        Ok(server) => server.with_limits(limits),
        Err(err) => {
            return usage_error(format!("cannot listen on {}: {err}", args.slack.bind_addr));
        }
    };
    tracing::info!(addr = %args.slack.bind_addr, demo = args.demo, "serving Slack");
    if !args.demo {
        // The checks of `doctor`, logged once; the bot serves whatever they find, since
        // answering "data unavailable" beats not answering.
        let doctor = crate::doctor::Doctor::new(args.data.clone(), slack_args, args.socket_mode);
        tokio::spawn(async move { doctor.run().await.log() });
    }
    let playground = if args.demo {
        match crate::playground::Playground::start(store.clone()).await {
            Ok(playground) => Some(playground),
            Err(err) => return failure(format!("cannot start the playground: {err}")),
        }
    } else {
        None
    };
    if let (Some(_), Ok(addr)) = (&playground, server.local_addr()) {
        println!("Playground: {}", crate::playground::page_url(addr));
        let _ = std::io::stdout().flush();
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::server::cancel_on_signal(shutdown.clone());
    crate::server::spawn_refresher(sources, store, args.data.refresh_interval, shutdown.clone());
    if let Some(channel) = args
        .slack
        .audit_digest_channel
        .clone()
        .filter(|c| !c.trim().is_empty())
    {
        let settings = crate::slack::digest::DigestSettings {
            channel: channel.trim().to_owned(),
            interval: args.slack.audit_digest_interval,
        };
        tokio::spawn(crate::slack::digest::run(
            server.state.clone(),
            settings,
            shutdown.clone(),
        ));
    }
    let socket = app_token.map(|token| {
        tracing::info!("connecting to Slack over Socket Mode");
        tokio::spawn(crate::slack::socket_mode::run(
            server.state.clone(),
            token,
            shutdown.clone(),
        ))
    });
    let served = match &playground {
        Some(playground) => server.run_with(playground.routes(), shutdown).await,
        None => server.run(shutdown).await,
    };
    if let Some(socket) = socket {
        let _ = socket.await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure(err),
    }
}
