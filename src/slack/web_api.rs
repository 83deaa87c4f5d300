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
        let mut last = SlackApiError::Transport("not attempted".into());
        for _ in 0..ATTEMPTS {
            let mut request = self.http.post(url).json(message);
            if let Some(token) = token {
                request = request.bearer_auth(token.expose_secret());
            }
            let response = match request.send().await {
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
                _ if status.is_success() => Ok(()),
                _ => Err(SlackApiError::Api(format!("HTTP {status}"))),
            };
        }
        Err(last)
    }
}
