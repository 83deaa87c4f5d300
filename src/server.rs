//! The HTTP server of `crm-username serve` (src/app.rs assembles the rest): the Slack routes,
//! the operations endpoints, and a graceful shutdown that finishes the replies already promised.
//! `refresh --watch` serves the operations endpoints alone ([`serve_refresher`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::slack;
use crate::state::AppState;
use crate::store::Store;

pub mod connections;
pub use connections::HttpLimits;

/// How long shutdown waits for replies still being delivered.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub fn router(state: AppState) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(slack::routes(state.clone()))
        .route_layer(axum::middleware::from_fn(crate::metrics::track_requests))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// Alive, unless Socket Mode has been down for long (a restart may help; nothing else will).
async fn health(State(state): State<AppState>) -> Response {
    match state.socket_mode.unhealthy() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, problem).into_response(),
    }
}

/// Ready when this pod can answer Slack: its configuration was valid (it would not have
/// started otherwise), it listens (this answer), and in Socket Mode it is connected. Neither
/// Redis nor the data matter: a pod out of the Service cannot even say "data unavailable", and
/// a Redis outage would take every pod out at once. Metrics and alerts watch the data.
async fn ready(State(state): State<AppState>) -> Response {
    match state.socket_mode.not_ready() {
        None => (StatusCode::OK, "ready").into_response(),
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, problem).into_response(),
    }
}

/// Prometheus text format. The snapshot age is measured now, from the cache.
async fn metrics(State(state): State<AppState>) -> Response {
    render_metrics(&state.store).await
}

/// The process's metrics in Prometheus text format, with the snapshot's age in `store`
/// measured now: `/metrics` of `serve` and of `refresh --watch`.
async fn render_metrics(store: &Store) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are not available").into_response();
    };
    if let Ok(report) = store.status().await {
        metrics::gauge!(crate::metrics::SNAPSHOT_LOADED).set(if report.data_as_of.is_some() {
            1.0
        } else {
            0.0
        });
        if let Some(as_of) = report.data_as_of {
            let age = (chrono::Utc::now() - as_of).num_milliseconds() as f64 / 1000.0;
            metrics::gauge!(crate::metrics::SNAPSHOT_AGE).set(age.max(0.0));
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// The endpoints of `refresh --watch`: `/healthz` (the process answers; the refresher runs as
/// long as it does) and `/metrics`, the refreshes' among them.
pub fn refresher_router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(store): State<Store>| async move { render_metrics(&store).await }),
        )
        .route_layer(axum::middleware::from_fn(crate::metrics::track_requests))
        .with_state(store)
}

/// Serves [`refresher_router`] on `listener`, with the default connection limits, until
/// `shutdown`.
pub async fn serve_refresher(
    listener: TcpListener,
    store: Store,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    crate::metrics::handle();
    connections::serve(
        listener,
        refresher_router(store),
        &HttpLimits::default(),
        shutdown,
    )
    .await
}

/// A bound server, not yet running: tests bind port 0 and read the address.
pub struct Server {
    pub listener: TcpListener,
    pub state: AppState,
    pub limits: HttpLimits,
}

impl Server {
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        crate::metrics::handle();
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            state,
            limits: HttpLimits::default(),
        })
    }

    /// Serves under `limits` instead of the defaults.
    pub fn with_limits(self, limits: HttpLimits) -> Self {
        Server { limits, ..self }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`; then stops accepting, finishes in-flight requests, and waits
    /// (up to `DRAIN_TIMEOUT`) for replies that were acknowledged but not yet delivered.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        self.run_with(Router::new(), shutdown).await
    }

    /// `run`, with `extra` routes served next to the bot's (the playground of `serve --demo`).
    pub async fn run_with(self, extra: Router, shutdown: CancellationToken) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = router(self.state).merge(extra);
        connections::serve(self.listener, app, &self.limits, shutdown).await?;
        state.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: some replies were still running and were dropped");
        }
        Ok(())
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing the replies in flight");
        token.cancel();
    });
}
