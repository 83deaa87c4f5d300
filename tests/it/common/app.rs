//! The bot as the tests run it: [`TestApp`] builds the app with `App::build`, the assembly
//! `serve` uses, on port 0 against a fake Slack (and the fake upstreams or a Redis key prefix
//! of the test's own where the test says so), and sends requests signed as Slack signs them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crm_username::app::{App, AppConfig, AppData, AppError, RefresherPlace};
use crm_username::fakes::{FakeSlack, SlackCall};
use crm_username::slack::signature::sign;
use crm_username::slack::{SlackSettings, SlackWebApi};
use crm_username::state::AppState;
use crm_username::store::Store;

pub const SECRET: &str = "test-signing-secret";
pub const TEAM: &str = "T0TEAM";
pub const ADMIN: &str = "UADMIN";

/// Requests signed with `SECRET`, workspace `TEAM`, admin `ADMIN`, the Web API and
/// `response_url`s on `slack`.
pub fn settings(slack: &FakeSlack) -> SlackSettings {
    SlackSettings {
        signing_secrets: vec![SecretString::from(SECRET)],
        allowed_team_ids: vec![TEAM.to_owned()],
        admin_user_ids: vec![ADMIN.to_owned()],
        web: SlackWebApi::new(
            &slack.api_url(),
            Some(SecretString::from("xoxb-test-token")),
            vec!["127.0.0.1".to_owned()],
        ),
    }
}

/// The bot, running in this process until the test drops it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// What the handlers share (the store, Socket Mode's health, the Home tab's audits).
    pub state: AppState,
    /// The fake Slack the bot calls.
    pub slack: FakeSlack,
    /// Where the refresher filling its store runs, as the app decided (it starts one only for
    /// [`RefresherPlace::ThisProcess`]).
    pub refresher: RefresherPlace,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// The configuration the tests start from: port 0, answers from `store` with no live
    /// sources, `settings(slack)`; the rest as `serve` has it by default.
    pub fn config(store: Store, slack: &FakeSlack) -> AppConfig {
        AppConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            settings(slack),
            AppData::Cache {
                store,
                sources: None,
            },
        )
    }

    /// The app of `config`, running, calling `slack`.
    pub async fn spawn(config: AppConfig, slack: FakeSlack) -> TestApp {
        crm_username::sources::install_crypto_provider();
        let app = App::build(config).await.expect("the app builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let refresher = app.refresher();
        let shutdown = app.shutdown_token();
        let running = tokio::spawn(app.run_until_stopped());
        TestApp {
            addr,
            state,
            slack,
            refresher,
            http: reqwest::Client::new(),
            shutdown,
            running: Some(running),
        }
    }

    /// The app answering from `store`, with a fake Slack of its own.
    pub async fn start(store: Store) -> TestApp {
        let slack = FakeSlack::start().await.unwrap();
        TestApp::spawn(TestApp::config(store, &slack), slack).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the app as SIGTERM does, and waits until it has drained and returned.
    pub async fn stop(&mut self) -> Result<(), AppError> {
        self.shutdown.cancel();
        let running = self.running.take().expect("the app was not stopped yet");
        running.await.expect("the app did not panic")
    }

    /// A POST of `body` to `path`, signed with `SECRET` and a current timestamp.
    pub fn signed(&self, path: &str, content_type: &str, body: &str) -> reqwest::RequestBuilder {
        signed(&self.http, self.addr, path, content_type, body)
    }

    /// `signed`, with `headers` added, sent.
    pub async fn post_signed(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut request = self.signed(path, content_type, body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    /// `/crm-username <text>` from `user` in `team`, its `response_url` on the fake
    /// (`response_url:cmd`).
    pub async fn command(&self, text: &str, team: &str, user: &str) -> reqwest::Response {
        let body = serde_urlencoded::to_string([
            ("team_id", team),
            ("channel_id", "C0CHAN"),
            ("user_id", user),
            ("command", "/crm-username"),
            ("text", text),
            ("response_url", &self.slack.response_url("cmd")),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        self.post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            &[],
        )
        .await
    }

    /// Waits (at most 10 s) for the fake to have received `n` calls (replies are sent after
    /// the ack), and returns them all.
    pub async fn calls(&self, n: usize) -> Vec<SlackCall> {
        let started = Instant::now();
        while self.slack.calls().len() < n && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.slack.calls()
    }
}

/// A POST of `body` to `path` on `addr`, signed with `SECRET` and a current timestamp.
pub fn signed(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let ts = Utc::now().timestamp().to_string();
    http.post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(SECRET, &ts, body.as_bytes()))
        .body(body.to_owned())
}
