//! The running bot, assembled once: the store and its live sources, the refresher (unless
//! REFRESH_IN_SERVE is false: then another process runs it), the audit
//! digest, the follow-up re-checks, Socket Mode, the admin user groups' resolution, the HTTP
//! server with its connection limits, the doctor's checks at start, and in demo builds the
//! playground of `serve --demo`.
//! `crm-username serve` builds it from the command line; the integration tests build it from
//! an [`AppConfig`] of their own, on port 0 against fakes, so the wiring they test is the
//! wiring that runs.
//!
//! [`App::build`] binds and prepares (it fails on what a person must fix: a port in use, a
//! broken demo org); [`App::run_until_stopped`] starts the background jobs and serves until
//! the shutdown token is cancelled, then drains the replies in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::doctor::Doctor;
use crate::domain::SnapshotError;
use crate::refresh::Sources;
use crate::server::{HttpLimits, Server};
use crate::slack::SlackSettings;
use crate::slack::digest::DigestSettings;
use crate::slack::followups::FollowUpSettings;
use crate::slack::socket_mode::SocketModeConfig;
use crate::slack::usergroups::{FIRST_RESOLUTION_WAIT, UsergroupSettings};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Everything the bot needs, validated: built from `ServeArgs` by `serve`, directly by tests.
pub struct AppConfig {
    /// Where the HTTP server listens; port 0 picks a free port ([`App::port`] tells which).
    pub bind_addr: SocketAddr,
    pub http_limits: HttpLimits,
    pub slack: SlackSettings,
    pub data: AppData,
    /// When the refresher runs (when there are live sources and it runs here).
    pub refresh_schedule: crate::refresh::Schedule,
    /// How often the refresher looks at the cache between refreshes, to refill an emptied one.
    pub refresh_watch: Duration,
    /// Run the refresher in this process (REFRESH_IN_SERVE); `false`: another process
    /// (`refresh --watch`) fills the shared cache, and the sources serve live lookups and
    /// re-checks only.
    pub refresh_in_process: bool,
    /// Connect to Slack over Socket Mode too.
    pub socket_mode: Option<SocketMode>,
    /// Post the scheduled audit digest.
    pub digest: Option<DigestSettings>,
    /// Run these checks once at start and log what they find.
    pub doctor: Option<Doctor>,
    /// Slack user groups whose members are admins too, resolved in the background.
    pub admin_usergroups: UsergroupSettings,
    /// Follow-up re-checks: how often due ones are looked for, their delay, tries and limits.
    pub follow_ups: FollowUpSettings,
    /// Serve the playground page next to the bot (`serve --demo`).
    #[cfg(feature = "demo")]
    pub playground: bool,
}

impl AppConfig {
    /// The defaults of `serve`: the documented HTTP limits, a refresh every 15 minutes, no
    /// Socket Mode, no digest, no checks at start, no playground.
    pub fn new(bind_addr: SocketAddr, slack: SlackSettings, data: AppData) -> Self {
        AppConfig {
            bind_addr,
            http_limits: HttpLimits::default(),
            slack,
            data,
            refresh_schedule: crate::refresh::Schedule {
                full_every: Duration::from_secs(15 * 60),
                incremental_every: Some(Duration::from_secs(60)),
            },
            refresh_watch: crate::refresh::EMPTY_CACHE_CHECK,
            refresh_in_process: true,
            socket_mode: None,
            digest: None,
            doctor: None,
            admin_usergroups: UsergroupSettings::default(),
            follow_ups: FollowUpSettings::default(),
            #[cfg(feature = "demo")]
            playground: false,
        }
    }
}

/// Where the answers come from.
pub enum AppData {
    /// The built-in demo org, from memory; nothing refreshes it.
    Demo,
    /// A cache opened by the caller (Redis under its key prefix, or in-process), and the live
    /// sources the refresher fills it from, when configured.
    Cache {
        store: Store,
        sources: Option<Arc<Sources>>,
    },
}

/// Where the refresher that fills this app's store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefresherPlace {
    /// Here, on a thread of its own: live sources and REFRESH_IN_SERVE (the default).
    ThisProcess,
    /// Elsewhere (`crm-username refresh --watch`, or another replica's): REFRESH_IN_SERVE is
    /// false, or this process has no live sources and answers from Redis.
    AnotherProcess,
    /// Nowhere: the built-in demo org is never refreshed.
    Nowhere,
}

/// Socket Mode: the app-level token (`xapp-`) and the connections' timing.
pub struct SocketMode {
    pub app_token: SecretString,
    pub config: SocketModeConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    DemoOrg(#[from] SnapshotError),
    #[error("{0}")]
    Publish(StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the playground: {0}")]
    Playground(std::io::Error),
    #[error("{0}")]
    Serve(std::io::Error),
}

/// A bound bot, not yet serving.
pub struct App {
    server: Server,
    bind_addr: SocketAddr,
    local_addr: SocketAddr,
    demo: bool,
    sources: Option<Arc<Sources>>,
    refresher: RefresherPlace,
    refresh_schedule: crate::refresh::Schedule,
    refresh_watch: Duration,
    socket_mode: Option<SocketMode>,
    digest: Option<DigestSettings>,
    doctor: Option<Doctor>,
    admin_usergroups: UsergroupSettings,
    #[cfg(feature = "demo")]
    playground: Option<Arc<crate::playground::Playground>>,
    shutdown: CancellationToken,
}

impl App {
    /// Opens the data, binds the listener and prepares the playground; nothing runs yet.
    pub async fn build(config: AppConfig) -> Result<App, AppError> {
        let demo = matches!(config.data, AppData::Demo);
        let refresher = match &config.data {
            AppData::Demo => RefresherPlace::Nowhere,
            AppData::Cache {
                sources: Some(_), ..
            } if config.refresh_in_process => RefresherPlace::ThisProcess,
            AppData::Cache { .. } => RefresherPlace::AnotherProcess,
        };
        let (store, sources) = match config.data {
            AppData::Demo => {
                let store = Store::memory();
                let snapshot = crate::demo::snapshot(Utc::now())?;
                store.publish(snapshot).await.map_err(AppError::Publish)?;
                (store, None)
            }
            AppData::Cache { store, sources } => (store, sources),
        };
        let state = AppState::new(store.clone(), sources.clone(), config.slack)
            .with_follow_ups(config.follow_ups)
            .with_refresher_elsewhere(refresher == RefresherPlace::AnotherProcess);
        state
            .admin_usergroups
            .configure(&config.admin_usergroups.ids);
        let listen = |source| AppError::Listen {
            addr: config.bind_addr,
            source,
        };
        let server = Server::bind(config.bind_addr, state)
            .await
            .map_err(listen)?
            .with_limits(config.http_limits);
        let local_addr = server.local_addr().map_err(listen)?;
        #[cfg(feature = "demo")]
        let playground = match config.playground {
            true => Some(
                crate::playground::Playground::start()
                    .await
                    .map_err(AppError::Playground)?,
            ),
            false => None,
        };
        Ok(App {
            server,
            bind_addr: config.bind_addr,
            local_addr,
            demo,
            sources,
            refresher,
            refresh_schedule: config.refresh_schedule,
            refresh_watch: config.refresh_watch,
            socket_mode: config.socket_mode,
            digest: config.digest,
            doctor: config.doctor,
            admin_usergroups: config.admin_usergroups,
            #[cfg(feature = "demo")]
            playground,
            shutdown: CancellationToken::new(),
        })
    }

    /// The port the HTTP server listens on (the one picked, when built with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the refresher that fills the store runs; `run_until_stopped` starts it only for
    /// [`RefresherPlace::ThisProcess`].
    pub fn refresher(&self) -> RefresherPlace {
        self.refresher
    }

    /// What the handlers share: the store, the Slack settings, Socket Mode's health.
    pub fn state(&self) -> &AppState {
        &self.server.state
    }

    /// Cancel it to stop the app: it stops accepting, and drains the replies in flight.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Where to open the playground page, when the app serves one.
    pub fn playground_url(&self) -> Option<String> {
        #[cfg(feature = "demo")]
        if self.playground.is_some() {
            return Some(crate::playground::page_url(self.local_addr));
        }
        None
    }

    /// Starts the refresher, the digest, the follow-ups, Socket Mode, the admin user groups'
    /// resolution and the checks at start, and serves until the shutdown token is cancelled;
    /// then finishes the replies already promised.
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let shutdown = self.shutdown;
        let state = self.server.state.clone();
        tracing::info!(addr = %self.bind_addr, demo = self.demo, "serving Slack");
        if let Some(doctor) = self.doctor {
            // The checks of `doctor`, logged once; the bot serves whatever they find, since
            // answering "data unavailable" beats not answering.
            tokio::spawn(async move { doctor.run().await.log() });
        }
        match (self.refresher, self.sources) {
            (RefresherPlace::ThisProcess, Some(sources)) => {
                tracing::info!(refresher = "this_process", "refresher: in this process");
                // It runs until shutdown; serving does not wait for it to stop.
                drop(crate::refresh::spawn(
                    sources,
                    state.store.clone(),
                    self.refresh_schedule,
                    self.refresh_watch,
                    shutdown.clone(),
                ));
            }
            (RefresherPlace::Nowhere, _) => {
                tracing::info!(refresher = "none", "refresher: none (the demo org)");
            }
            _ => tracing::info!(refresher = "another_process", "refresher: another process"),
        }
        if let Some(digest) = self.digest {
            tokio::spawn(crate::slack::digest::run(
                state.clone(),
                digest,
                shutdown.clone(),
            ));
        }
        if !self.admin_usergroups.ids.is_empty() {
            let (resolved, first_round) = tokio::sync::oneshot::channel();
            tokio::spawn(crate::slack::usergroups::run(
                state.clone(),
                self.admin_usergroups,
                resolved,
                shutdown.clone(),
            ));
            // Bounded: a Slack that does not answer delays the start by this much at most.
            if tokio::time::timeout(FIRST_RESOLUTION_WAIT, first_round)
                .await
                .is_err()
            {
                tracing::info!(
                    "the admin user groups are not resolved yet; serving, their members become admins once they are"
                );
            }
        }
        // Every replica looks for due follow-ups; the store gives each to one of them.
        tokio::spawn(crate::slack::followups::run(
            state.clone(),
            shutdown.clone(),
        ));
        // The playground's own job, on its own store: the two never take each other's.
        #[cfg(feature = "demo")]
        if let Some(playground) = &self.playground {
            tokio::spawn(playground.clone().run_follow_ups(shutdown.clone()));
        }
        let socket = self.socket_mode.map(|socket| {
            tracing::info!("connecting to Slack over Socket Mode");
            tokio::spawn(crate::slack::socket_mode::run_with(
                state.clone(),
                socket.app_token,
                socket.config,
                shutdown.clone(),
            ))
        });
        #[cfg(feature = "demo")]
        let routes = match &self.playground {
            Some(playground) => playground.routes(),
            None => axum::Router::new(),
        };
        #[cfg(not(feature = "demo"))]
        let routes = axum::Router::new();
        let served = self.server.run_with(routes, shutdown).await;
        if let Some(socket) = socket {
            let _ = socket.await;
        }
        served.map_err(AppError::Serve)
    }
}
