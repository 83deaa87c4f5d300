//! Calls to Slack: `chat.postMessage` and `views.publish` on the Web API, and posts to a
//! `response_url`. Slack's errors come as HTTP 200 `{"ok": false, "error": ...}`; rate limits
//! as 429 `Retry-After`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Retry-After above this is not waited for: the reply would come too late to matter.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackApiError {
    #[error("Slack answered {0}")]
    Api(String),
    #[error("Slack rate-limited the call for {0} s")]
    RateLimited(u64),
    #[error("Slack could not be reached: {0}")]
    Transport(String),
    #[error("no SLACK_BOT_TOKEN is configured, so the bot cannot post messages")]
    NoToken,
    #[error("response_url {0:?} is not on an allowed host (SLACK_RESPONSE_URL_HOSTS); not called")]
    ForeignResponseUrl(String),
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
}

impl SlackWebApi {
    pub fn new(
        api_url: &str,
        bot_token: Option<SecretString>,
        response_url_hosts: Vec<String>,
    ) -> Self {
        crate::sources::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        SlackWebApi {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            bot_token,
            response_url_hosts,
        }
    }

    pub async fn post_message(&self, message: &Value) -> Result<(), SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/chat.postMessage", self.api_url.trim_end_matches('/'));
        self.post(&url, Some(token), message).await
    }

    /// Publishes `user_id`'s Home tab (`views.publish`): `view` is `{"type": "home", "blocks"}`.
    pub async fn publish_home(&self, user_id: &str, view: &Value) -> Result<(), SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/views.publish", self.api_url.trim_end_matches('/'));
        let body = serde_json::json!({"user_id": user_id, "view": view});
        self.post(&url, Some(token), &body).await
    }

    /// Posts to a `response_url`, only when it is https on an allowed host (http is allowed
    /// on loopback hosts only, for local fakes).
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), SlackApiError> {
        if !self.allowed_response_url(response_url) {
            return Err(SlackApiError::ForeignResponseUrl(
                response_url.chars().take(100).collect(),
            ));
        }
        self.post(response_url, None, message).await
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
        url: &str,
        token: Option<&SecretString>,
        message: &Value,
    ) -> Result<(), SlackApiError> {
        self.send(|| {
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
    async fn call_json(&self, method: &str, body: &Value) -> Result<Value, SlackApiError> {
        let token = self.bot_token.as_ref().ok_or(SlackApiError::NoToken)?;
        let url = format!("{}/{method}", self.api_url);
        self.send(|| {
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
        let reply = self
            .send(|| {
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
        self.send(|| {
            self.http
                .post(upload_url)
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(bytes.clone())
        })
        .await?;
        self.call_json(
            "files.completeUploadExternal",
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
            .call_json("conversations.open", &serde_json::json!({"users": user_id}))
            .await?;
        reply["channel"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackApiError::Api("conversations.open without a channel".into()))
    }

    /// Sends a request (built again for each attempt), retrying on transport errors, 5xx and
    /// 429 with a short `Retry-After`. The reply's JSON, or `null` for a plain-text "ok".
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackApiError> {
        let mut last = SlackApiError::Transport("not attempted".into());
        for _ in 0..ATTEMPTS {
            let response = match build().send().await {
                Ok(response) => response,
                Err(err) => {
                    // reqwest errors carry the URL; response_urls are capabilities, keep them out.
                    last = SlackApiError::Transport(err.without_url().to_string());
                    continue;
                }
            };
            let status = response.status();
            if status.as_u16() == 429 {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                if Duration::from_secs(wait) > MAX_RETRY_AFTER {
                    return Err(SlackApiError::RateLimited(wait));
                }
                tracing::info!(
                    retry_after = wait,
                    "Slack rate-limited a call; waiting as asked"
                );
                tokio::time::sleep(Duration::from_secs(wait)).await;
                last = SlackApiError::RateLimited(wait);
                continue;
            }
            if status.is_server_error() {
                last = SlackApiError::Transport(format!("HTTP {status}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            // response_url answers plain "ok"; the Web API answers JSON with "ok".
            return match serde_json::from_str::<Value>(&body) {
                Ok(v) if v["ok"] == Value::Bool(false) => Err(SlackApiError::Api(
                    v["error"]
                        .as_str()
                        .unwrap_or("an error")
                        .chars()
                        .take(100)
                        .collect(),
                )),
                Ok(v) if status.is_success() => Ok(v),
                _ if status.is_success() => Ok(Value::Null),
                _ => Err(SlackApiError::Api(format!("HTTP {status}"))),
            };
        }
        Err(last)
    }
}
