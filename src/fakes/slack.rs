//! A fake of Slack's side: the Web API's `chat.postMessage` and `response_url`s. It records
//! what the bot sends, answers as Slack does (`{"ok": true}`, `ok`), and can rate-limit
//! (429 with `Retry-After`) or refuse (`{"ok": false, "error": ...}`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Server, lock};

/// One call the bot made.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// `chat.postMessage`, or `response_url:<id>`.
    pub target: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct SlackState {
    calls: Mutex<Vec<SlackCall>>,
    /// Answer the next N Web API calls with 429 and this Retry-After.
    rate_limited: AtomicU32,
    retry_after: AtomicU32,
    error: Mutex<Option<String>>,
}

pub struct FakeSlack {
    state: Arc<SlackState>,
    server: Server,
}

impl FakeSlack {
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(SlackState::default());
        let router = axum::Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/response/{id}", post(response_url))
            .with_state(state.clone());
        Ok(FakeSlack {
            state,
            server: Server::start(router).await?,
        })
    }

    /// SLACK_API_URL for the bot.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.url)
    }

    /// A `response_url` on this fake.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.server.url)
    }

    pub fn calls(&self) -> Vec<SlackCall> {
        lock(&self.state.calls).clone()
    }

    /// The next `times` Web API calls get 429 with `Retry-After: seconds`.
    pub fn rate_limit(&self, times: u32, seconds: u32) {
        self.state.retry_after.store(seconds, Ordering::SeqCst);
        self.state.rate_limited.store(times, Ordering::SeqCst);
    }

    /// Web API calls answer `{"ok": false, "error": error}`.
    pub fn fail_with(&self, error: &str) {
        *lock(&self.state.error) = Some(error.to_owned());
    }
}

fn record(state: &SlackState, target: String, headers: &HeaderMap, body: Value) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&state.calls).push(SlackCall {
        target,
        authorization,
        body,
    });
}

async fn post_message(
    State(state): State<Arc<SlackState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let limited = state
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        let wait = state.retry_after.load(Ordering::SeqCst).to_string();
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", wait)], "").into_response();
    }
    record(&state, "chat.postMessage".to_owned(), &headers, body);
    match lock(&state.error).clone() {
        Some(error) => Json(json!({"ok": false, "error": error})).into_response(),
        None => Json(json!({"ok": true, "ts": "1700000000.000100"})).into_response(),
    }
}

async fn response_url(
    State(state): State<Arc<SlackState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, format!("response_url:{id}"), &headers, body);
    "ok".into_response()
}
