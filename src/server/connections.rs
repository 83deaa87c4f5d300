//! The connection loop of `serve`: what a connection may cost before it has sent a request.
//!
//! Signing stops forged commands only once a request is complete, so every connection is
//! bounded before that: hyper's header read timeout (which, in hyper 1, also starts again
//! right after each response, so it closes idle keep-alive connections too), a body read
//! timeout, a total time per request (shorter for Slack's routes, which Slack gives up on
//! after 3 s), and a cap on open connections. Past the cap a connection is closed at once and
//! counted; the connections already open, and their requests, go on. docs/http-limits.md
//! says what one idle connection costs and how the default cap follows from it.
//!
//! axum::serve offers none of these knobs, hence this loop; it keeps axum::serve's graceful
//! shutdown (stop accepting, let open requests finish, close idle connections).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::steer::Steer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The limits every connection of `serve` lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// From accept, or from the end of the previous response, until the request head
    /// (request line and headers) has arrived; so also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// The longest pause while a request body arrives.
    pub body_read_timeout: Duration,
    /// The whole of a request to `/slack/...`, body included; below Slack's 3 s.
    pub slack_request_timeout: Duration,
    /// The whole of any other request: probes, `/metrics`, the playground of `--demo`.
    pub request_timeout: Duration,
    /// Open connections at most; the next one is closed at once.
    pub max_connections: usize,
}

/// Defaults; docs/http-limits.md explains each.
impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            slack_request_timeout: Duration::from_millis(2500),
            request_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Sized from the measured cost of an idle connection so that a full house stays well inside
/// the pod's 256 MiB (docs/http-limits.md, "Memory").
pub const DEFAULT_MAX_CONNECTIONS: usize = 2_000;

/// The requests whose total time is `slack_request_timeout`.
const SLACK_PREFIX: &str = "/slack/";

/// Serves `app` on `listener` under `limits` until `shutdown`, then stops accepting and
/// returns once every open connection has finished its request in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let service = limited(app, limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Dropping the stream closes it; the client sees the connection end at once.
            metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).increment(1.0);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                // Timeouts and clients that hang up; nothing the operator can act on one by one.
                tracing::debug!(error = %err, "connection closed with an error");
            }
            metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `app` with the body read timeout and the total time per request, Slack's or the others'.
fn limited(
    app: Router,
    limits: &HttpLimits,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    // 503: the bot did not answer in time; the client sent its request whole.
    let total = |timeout| TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout);
    let by_route = Steer::new(
        [
            total(limits.slack_request_timeout).layer(app.clone()),
            total(limits.request_timeout).layer(app),
        ],
        |request: &Request<_>, _: &[_]| {
            usize::from(!request.uri().path().starts_with(SLACK_PREFIX))
        },
    );
    RequestBodyTimeoutLayer::new(limits.body_read_timeout).layer(by_route)
}

/// Whether reading a request body failed because it paused longer than `body_read_timeout`.
pub fn is_body_timeout(err: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// What axum::serve does too: errors of one connection are skipped; others (such as running
/// out of file descriptors) pause accepting for a moment so as not to spin.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
