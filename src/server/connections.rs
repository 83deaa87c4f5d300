//! The connection loop of `serve`: what a connection may cost before it has sent a request.
//!
//! Signing stops forged commands only once a request is complete, so every connection is
//! bounded before that: hyper's header read timeout (which, in hyper 1, also starts again
//! right after each response, so it closes idle keep-alive connections too), a body read
//! timeout, a total time per request (shorter for Slack's routes, which Slack gives up on
//! after 3 s), and a cap on open connections. At the cap, the connection that has waited
//! longest with no request in progress (idle, or still sending its headers) is closed to make
//! room, so a flood of half-open connections cannot lock out Slack and the probes; when every
//! connection has a request in progress, the new one is closed at once. Both are counted, and
//! requests already in progress always finish. docs/http-limits.md says what one idle
//! connection costs and how the default cap follows from it.
//!
//! axum::serve offers none of these knobs, hence this loop; it keeps axum::serve's graceful
//! shutdown (stop accepting, let open requests finish, close idle connections).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
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
    let service = limited(app, limits.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(OpenConnections::default());
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
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => match make_room(&open, &slots).await {
                Some(slot) => slot,
                None => {
                    // Dropping the stream closes it; the client sees the connection end at once.
                    metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED).increment(1);
                    drop(stream);
                    continue;
                }
            },
        };
        let (id, state) = open.insert();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(Tracked {
                inner: service.clone(),
                state: state.clone(),
            }),
        );
        let connection = graceful.watch(connection);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).increment(1.0);
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                closed = connection => if let Err(err) = closed {
                    // Timeouts and clients that hang up; nothing the operator can act on one by one.
                    tracing::debug!(error = %err, "connection closed with an error");
                },
                // Dropping the connection closes its socket; it had no request in progress.
                () = state.evict.cancelled() => {}
            }
            open.remove(id);
            metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How long the accept loop waits for an evicted connection to give its slot back: its task
/// only has to be scheduled, so this bounds a stall, it is not a pace.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// At the cap: closes the connection that has waited longest with no request in progress, and
/// takes its slot. `None` when every open connection has a request in progress.
async fn make_room(
    open: &OpenConnections,
    slots: &Arc<Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if !open.evict_oldest_idle() {
        return None;
    }
    metrics::counter!(crate::metrics::HTTP_CONNECTIONS_EVICTED).increment(1);
    tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// What the accept loop knows of one open connection.
#[derive(Default)]
struct ConnectionState {
    /// Requests whose response has not been sent whole yet.
    in_progress: AtomicUsize,
    /// Cancelled to close the connection and give its slot to a new one.
    evict: CancellationToken,
}

/// The open connections by accept order, oldest first.
#[derive(Default)]
struct OpenConnections {
    by_age: Mutex<(u64, BTreeMap<u64, Arc<ConnectionState>>)>,
}

impl OpenConnections {
    fn insert(&self) -> (u64, Arc<ConnectionState>) {
        let mut guard = self.by_age.lock().unwrap_or_else(|e| e.into_inner());
        let (next, open) = &mut *guard;
        let id = *next;
        *next += 1;
        let state = Arc::new(ConnectionState::default());
        open.insert(id, state.clone());
        (id, state)
    }

    fn remove(&self, id: u64) {
        let mut guard = self.by_age.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.remove(&id);
    }

    /// Marks the oldest connection with no request in progress for closing, and forgets it.
    /// A scan of at most the cap, only when the cap is reached.
    fn evict_oldest_idle(&self) -> bool {
        let mut guard = self.by_age.lock().unwrap_or_else(|e| e.into_inner());
        let open = &mut guard.1;
        let idle = open
            .iter()
            .find(|(_, state)| state.in_progress.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(state) => {
                state.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Counts a connection's requests in progress, from the moment its head has arrived until its
/// response has been sent whole (the count drops when hyper drops the response body).
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnectionState>,
}

struct InProgress(Arc<ConnectionState>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> tower::Service<Request<hyper::body::Incoming>> for Tracked<S>
where
    S: tower::Service<
            Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        self.state.in_progress.fetch_add(1, Ordering::AcqRel);
        let guard = InProgress(self.state.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _in_progress = &guard;
                    frame
                }))
            }))
        })
    }
}

/// `app` with the body read timeout and the total time per request, Slack's or the others'.
fn limited(
    app: Router,
    limits: HttpLimits,
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
