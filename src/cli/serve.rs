//! `crm-username serve [--socket-mode] [--demo]`: the arguments become an [`AppConfig`], and
//! [`App`] runs until SIGTERM or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

use secrecy::{ExposeSecret, SecretString};

use super::{CliError, CliResult, open_store};
use crate::app::{App, AppConfig, AppData, AppError, SocketMode};
use crate::config::{DataArgs, ServeArgs};
use crate::slack::digest::DigestSettings;

#[derive(Debug, clap::Args)]
pub struct ServeCommand {
    /// Serve the built-in demo org from memory instead of live data (with the playground page
    /// in builds with the `demo` feature, the default).
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

impl From<AppError> for CliError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::DemoOrg(_) | AppError::Listen { .. } => CliError::usage(err),
            AppError::Publish(_) | AppError::Playground(_) | AppError::Serve(_) => {
                CliError::failure(err)
            }
        }
    }
}

pub async fn run(args: &ServeCommand) -> CliResult {
    crate::logging::init(args.serve.process.log_format.as_deref());
    let app = App::build(config(args).await?).await?;
    if let Some(url) = app.playground_url() {
        println!("Playground: {url}");
        let _ = std::io::stdout().flush();
    }
    crate::server::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// The app `serve` runs, from its arguments; a setting that is wrong is a usage error.
async fn config(args: &ServeCommand) -> Result<AppConfig, CliError> {
    let mut serve = args.serve.clone();
    if (args.demo || serve.socket_mode)
        && crate::config::non_empty_secret(&serve.slack_signing_secret).is_none()
    {
        // Nobody knows this secret: /slack/* refuses every request; the playground signs its
        // own, and Socket Mode signs nothing.
        serve.slack_signing_secret = Some(unguessable_secret());
        tracing::info!("no SLACK_SIGNING_SECRET: /slack/* refuses every request");
    }
    let slack = serve.settings().map_err(CliError::usage)?;
    let http_limits = serve.http_limits.limits().map_err(CliError::usage)?;
    let admin_usergroups = serve.admin_usergroups().map_err(CliError::usage)?;
    // The demo org is never refreshed: the setting does not matter there.
    let refresh_in_process = match args.demo {
        true => serve.refresh_in_serve,
        false => serve.runs_refresher(&args.data).map_err(CliError::usage)?,
    };
    let app_token = match (
        serve.socket_mode,
        serve
            .slack_app_token
            .as_ref()
            .map(|t| t.expose_secret().trim()),
    ) {
        (false, _) => None,
        (true, Some(token)) if token.starts_with("xapp-") => Some(SecretString::from(token)),
        (true, _) => {
            return Err(CliError::usage(
                "SLACK_APP_TOKEN: --socket-mode needs the app-level token (xapp-...) with the connections:write scope, from the app's Basic Information page",
            ));
        }
    };
    let data = if args.demo {
        AppData::Demo
    } else {
        let (store, sources) = open_store(&args.data, false).await?;
        AppData::Cache {
            store,
            sources: sources.map(std::sync::Arc::new),
        }
    };
    let mut config = AppConfig::new(serve.process.bind_addr, slack, data);
    config.http_limits = http_limits;
    config.refresh_schedule = args.data.refresh_schedule();
    config.refresh_in_process = refresh_in_process;
    config.admin_usergroups = admin_usergroups;
    config.socket_mode = app_token.map(|app_token| SocketMode {
        app_token,
        config: Default::default(),
    });
    config.digest = serve
        .audit_digest_channel
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|channel| DigestSettings {
            channel: channel.to_owned(),
            interval: serve.audit_digest_interval,
        });
    if !args.demo {
        config.doctor = Some(crate::doctor::Doctor::new(args.data.clone(), serve));
    }
    #[cfg(feature = "demo")]
    {
        config.playground = args.demo;
    }
    Ok(config)
}

/// A signing secret nobody knows (two random UUIDs, 244 bits).
fn unguessable_secret() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_person_must_fix_exits_3_and_what_failed_while_running_exits_1() {
        let listen = AppError::Listen {
            addr: "127.0.0.1:3000".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            CliError::from(listen),
            CliError::usage("cannot listen on 127.0.0.1:3000: address in use")
        );
        let playground = AppError::Playground(std::io::Error::other("no loopback"));
        assert_eq!(
            CliError::from(playground),
            CliError::failure("cannot start the playground: no loopback")
        );
    }
}
