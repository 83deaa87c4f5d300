//! Calls to Slack: `chat.postMessage`, `views.publish` and `usergroups.users.list` on the Web
//! API, and posts to a `response_url`. Slack's errors come as HTTP 200 `{"ok": false, "error": ...}`; rate limits
//! as 429 `Retry-After` (or `{"ok": false, "error": "ratelimited"}`).
//!
//! Our own client on reqwest, not slack-morphism's `SlackClient` (2.31), after reading its
//! connector: it needs the crate's `hyper` feature, so a second HTTP and TLS stack
//! (hyper-rustls, and the `signature-verifier` hashes again) next to the reqwest this bot uses
//! for every other call; and its retries cover rate limits only. It neither retries what
//! cannot have reached Slack (a refused connection) nor tells a post that may already have
//! been accepted (a timeout after sending, an ambiguous 5xx: never sent again here) from a
//! `views.publish` that is harmless to send twice (sent again here). Its types for what Slack
//! sends us are used (`src/slack/events.rs`, `commands.rs`, `interactions.rs`).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Retry-After above this is not waited for: the reply would come too late to matter.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Tries per call, the first included.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackApiError {
    #[error("Slack answered {0}")]
    Api(String),
    #[error("Slack rate-limited the call for {0} s")]
    RateLimited(u64),
    #[error("Slack could not be reached: {0}")]
    Transport(String),
    #[error(
        "Slack may or may not have received the {method} call ({reason}); it was not sent again, so that nothing is posted twice. Look in the conversation before trying again"
    )]
    Unconfirmed {
        method: &'static str,
        reason: String,
    },
    #[error("no SLACK_BOT_TOKEN is configured, so the bot cannot post messages")]
    NoToken,
    #[error("response_url {0:?} is not on an allowed host (SLACK_RESPONSE_URL_HOSTS); not called")]
    ForeignResponseUrl(String),
}

impl SlackApiError {
    /// The `error` label of the errors metric: a fixed set, never Slack's free text.
    pub fn label(&self) -> &'static str {
        match self {
            SlackApiError::Api(_) => "slack_error",
            SlackApiError::RateLimited(_) => "rate_limited",
            SlackApiError::Transport(_) => "transport",
            SlackApiError::Unconfirmed { .. } => "unconfirmed",
            SlackApiError::NoToken => "no_token",
            SlackApiError::ForeignResponseUrl(_) => "foreign_response_url",
        }
    }
}

/// Upload URLs come from Slack's own reply; still, bytes only go over https (or to a
/// loopback fake).
fn upload_url_allowed(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

#[derive(Clone)]
pub struct SlackWebApi {
    pub http: reqwest::Client,
    pub api_url: String,
    pub bot_token: Option<SecretString>,
    /// Hosts a `response_url` may point at.
    pub response_url_hosts: Vec<String>,
    /// Pauses between tries (jittered); a `Retry-After` from Slack is waited for in full.
    pub backoff: ExponentialBuilder,
    /// How long one try may take before it counts as timed out.
    pub timeout: Duration,
}

impl SlackWebApi {
    pub fn new(
        api_url: &str,
        bot_token: Option<SecretString>,
        response_url_hosts: Vec<String>,
    ) -> Self {
        crate::sources::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        SlackWebApi {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            bot_token,
            response_url_hosts,
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(ATTEMPTS - 1)
                .with_jitter(),
            timeout: Duration::from_secs(10),
        }
    }

    pub async fn post_message(&self, message: &Value) -> Result<(), SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/chat.postMessage", self.api_url.trim_end_matches('/'));
        self.post(Call::once("chat.postMessage"), &url, Some(token), message)
            .await
    }

    /// Publishes `user_id`'s Home tab (`views.publish`): `view` is `{"type": "home", "blocks"}`.
    pub async fn publish_home(&self, user_id: &str, view: &Value) -> Result<(), SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/views.publish", self.api_url.trim_end_matches('/'));
        let body = serde_json::json!({"user_id": user_id, "view": view});
        self.post(Call::idempotent("views.publish"), &url, Some(token), &body)
            .await
    }

    /// Posts to a `response_url`, only when it is https on an allowed host (http is allowed
    /// on loopback hosts only, for local fakes).
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), SlackApiError> {
        if !self.allowed_response_url(response_url) {
            return Err(SlackApiError::ForeignResponseUrl(
                response_url.chars().take(100).collect(),
            ));
        }
        self.post(Call::once("response_url"), response_url, None, message)
            .await
    }

    pub fn allowed_response_url(&self, response_url: &str) -> bool {
        let Ok(url) = url::Url::parse(response_url) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let loopback = host == "127.0.0.1" || host == "localhost" || host == "[::1]";
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        scheme_ok
            && url.username().is_empty()
            && self.response_url_hosts.iter().any(|allowed| {
                let allowed = allowed.trim();
                allowed.eq_ignore_ascii_case(host)
                    || url
                        .port()
                        .is_some_and(|p| allowed.eq_ignore_ascii_case(&format!("{host}:{p}")))
            })
    }

    async fn post(
        &self,
        call: Call,
        url: &str,
        token: Option<&SecretString>,
        message: &Value,
    ) -> Result<(), SlackApiError> {
        self.send(call, || {
            let request = self.http.post(url).json(message);
            match token {
                Some(token) => request.bearer_auth(token.expose_secret()),
                None => request,
            }
        })
        .await
        .map(drop)
    }

    /// Calls a Web API method with the bot token and a JSON body; its JSON reply.
    async fn call_json(&self, call: Call, body: &Value) -> Result<Value, SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/{}", self.api_url, call.method);
        self.send(call, || {
            self.http
                .post(&url)
                .bearer_auth(token.expose_secret())
                .json(body)
        })
        .await
    }

    /// Shares a file in a channel with Slack's external upload flow:
    /// `files.getUploadURLExternal`, the bytes to the URL it gives (without the token), then
    /// `files.completeUploadExternal`. Returns the file id.
    pub async fn upload_file(
        &self,
        channel_id: &str,
        filename: &str,
        title: &str,
        bytes: Vec<u8>,
        initial_comment: &str,
    ) -> Result<String, SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/files.getUploadURLExternal", self.api_url);
        let length = bytes.len().to_string();
        let form = [("filename", filename), ("length", length.as_str())];
        // Only asks for an upload URL: harmless to ask twice.
        let reply = self
            .send(Call::idempotent("files.getUploadURLExternal"), || {
                self.http
                    .post(&url)
                    .bearer_auth(token.expose_secret())
                    .form(&form)
            })
            .await?;
        let (Some(upload_url), Some(file_id)) =
            (reply["upload_url"].as_str(), reply["file_id"].as_str())
        else {
            return Err(SlackApiError::Api(
                "files.getUploadURLExternal without upload_url or file_id".into(),
            ));
        };
        if !upload_url_allowed(upload_url) {
            return Err(SlackApiError::Api("an upload URL that is not https".into()));
        }
        self.send(Call::once("file upload"), || {
            self.http
                .post(upload_url)
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(bytes.clone())
        })
        .await?;
        self.call_json(
            Call::once("files.completeUploadExternal"),
            &serde_json::json!({
                "files": [{"id": file_id, "title": title}],
                "channel_id": channel_id,
                "initial_comment": initial_comment,
            }),
        )
        .await?;
        Ok(file_id.to_owned())
    }

    /// The id of the bot's direct-message channel with a user (`conversations.open`).
    pub async fn open_dm(&self, user_id: &str) -> Result<String, SlackApiError> {
        let reply = self
            .call_json(
                Call::idempotent("conversations.open"),
                &serde_json::json!({"users": user_id}),
            )
            .await?;
        reply["channel"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackApiError::Api("conversations.open without a channel".into()))
    }

    /// The members of a user group (`usergroups.users.list`, scope `usergroups:read`): their
    /// user ids. Slack's errors (`no_such_subteam`, `missing_scope`, ...) come back as
    /// [`SlackApiError::Api`]; a rate limit is waited out as for any call.
    pub async fn usergroup_members(
        &self,
        usergroup_id: &str,
    ) -> Result<Vec<String>, SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/usergroups.users.list", self.api_url);
        // A read method: form-encoded, as Slack's read methods take their arguments; harmless
        // to send twice.
        let form = [("usergroup", usergroup_id)];
        let reply = self
            .send(Call::idempotent("usergroups.users.list"), || {
                self.http
                    .post(&url)
                    .bearer_auth(token.expose_secret())
                    .form(&form)
            })
            .await?;
        let Some(users) = reply["users"].as_array() else {
            return Err(SlackApiError::Api(
                "usergroups.users.list without users".into(),
            ));
        };
        Ok(users
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }

    /// Sends a request (built again for each attempt) and reads Slack's answer: the reply's
    /// JSON, or `null` for a plain-text "ok".
    ///
    /// Retried, with jittered exponential backoff: what cannot have reached Slack (connection
    /// refused, DNS or TLS failures before the request was sent), 429 and `ratelimited` after
    /// their `Retry-After`, and for idempotent calls also timeouts and 5xx. A non-idempotent
    /// call (a post, a file share) that timed out or got an ambiguous 5xx is never sent again:
    /// Slack may already have posted it. It is logged, counted and reported as `Unconfirmed`.
    async fn send(
        &self,
        call: Call,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackApiError> {
        let attempt = || async { attempt(call, build().timeout(self.timeout)).await };
        let result = attempt
            .retry(self.backoff)
            .sleep(tokio::time::sleep)
            .when(|failure| failure.retry_after().is_some())
            .adjust(|failure, next| {
                // `None` when the attempts are spent: stop, whatever Slack asked.
                next.and(failure.retry_after())
                    .map(|wait| wait.max(next.unwrap_or_default()))
            })
            .notify(|failure, wait| {
                tracing::info!(method = call.method, error = %failure.error(), retry_in_ms = wait.as_millis() as u64, "retrying a Slack call");
            })
            .await;
        result.map_err(|failure| {
            let error = failure.into_error();
            metrics::counter!(crate::metrics::SLACK_API_ERRORS, "method" => call.method, "error" => error.label())
                .increment(1);
            if let SlackApiError::Unconfirmed { .. } = &error {
                metrics::counter!(crate::metrics::SLACK_API_UNCONFIRMED, "method" => call.method)
                    .increment(1);
                tracing::warn!(method = call.method, error = %error, "a Slack call may or may not have been delivered; not sent again");
            }
            error
        })
    }
}

/// One Web API method (or `response_url`), and whether sending it twice is harmless.
#[derive(Debug, Clone, Copy)]
struct Call {
    /// A fixed name (never a URL: `response_url`s are capabilities), for logs and metrics.
    method: &'static str,
    idempotent: bool,
}

impl Call {
    const fn once(method: &'static str) -> Self {
        Call {
            method,
            idempotent: false,
        }
    }

    const fn idempotent(method: &'static str) -> Self {
        Call {
            method,
            idempotent: true,
        }
    }
}

/// Why one attempt did not succeed, and whether another may follow.
#[derive(Debug)]
enum Failure {
    /// Worth another try after the backoff's pause (at least this long).
    Retry(SlackApiError, Duration),
    Final(SlackApiError),
}

impl Failure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Retry(_, wait) => Some(*wait),
            Failure::Final(_) => None,
        }
    }

    fn error(&self) -> &SlackApiError {
        match self {
            Failure::Retry(error, _) | Failure::Final(error) => error,
        }
    }

    fn into_error(self) -> SlackApiError {
        match self {
            Failure::Retry(error, _) | Failure::Final(error) => error,
        }
    }
}

/// `Retry-After` as Slack sends it (whole seconds); 1 s when missing.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let seconds = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds)
}

fn rate_limited(wait: Duration) -> Failure {
    if wait > MAX_RETRY_AFTER {
        return Failure::Final(SlackApiError::RateLimited(wait.as_secs()));
    }
    Failure::Retry(SlackApiError::RateLimited(wait.as_secs()), wait)
}

/// A failure after the request may have reached Slack: retried only when harmless.
fn ambiguous(call: Call, reason: String) -> Failure {
    if call.idempotent {
        Failure::Retry(SlackApiError::Transport(reason), Duration::ZERO)
    } else {
        Failure::Final(SlackApiError::Unconfirmed {
            method: call.method,
            reason,
        })
    }
}

async fn attempt(call: Call, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
    let response = match request.send().await {
        Ok(response) => response,
        // reqwest errors carry the URL; response_urls are capabilities, keep them out.
        // A connect error (refused, DNS, TLS handshake) means nothing was sent.
        Err(err) if err.is_connect() => {
            return Err(Failure::Retry(
                SlackApiError::Transport(err.without_url().to_string()),
                Duration::ZERO,
            ));
        }
        Err(err) => return Err(ambiguous(call, err.without_url().to_string())),
    };
    let status = response.status();
    if status.as_u16() == 429 {
        return Err(rate_limited(retry_after(response.headers())));
    }
    if status.is_server_error() {
        return Err(ambiguous(call, format!("HTTP {status}")));
    }
    let wait = retry_after(response.headers());
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => return Err(ambiguous(call, err.without_url().to_string())),
    };
    // response_url answers plain "ok"; the Web API answers JSON with "ok".
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if v["ok"] == Value::Bool(false) && v["error"] == "ratelimited" => {
            Err(rate_limited(wait))
        }
        Ok(v) if v["ok"] == Value::Bool(false) => Err(Failure::Final(SlackApiError::Api(
            v["error"]
                .as_str()
                .unwrap_or("an error")
                .chars()
                .take(100)
                .collect(),
        ))),
        Ok(v) if status.is_success() => Ok(v),
        _ if status.is_success() => Ok(Value::Null),
        _ => Err(Failure::Final(SlackApiError::Api(format!("HTTP {status}")))),
    }
}
