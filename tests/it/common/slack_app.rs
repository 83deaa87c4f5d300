//! The bot as Slack sees it, for the tests that drive it over HTTP: the settings every such
//! test uses (one workspace, one admin, a fake Slack), the app served on a free port, and
//! requests signed as Slack signs them.

use std::net::SocketAddr;

use chrono::Utc;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crm_username::fakes::FakeSlack;
use crm_username::server::{HttpLimits, Server};
use crm_username::slack::signature::sign;
use crm_username::slack::{SlackSettings, SlackWebApi};
use crm_username::state::AppState;

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

/// Serves `state` on a free port until the token is cancelled.
pub async fn serve(state: AppState) -> (SocketAddr, CancellationToken) {
    serve_with_limits(state, HttpLimits::default()).await
}

/// `serve`, with connections living under `limits`.
pub async fn serve_with_limits(
    state: AppState,
    limits: HttpLimits,
) -> (SocketAddr, CancellationToken) {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap()
        .with_limits(limits);
    let addr = server.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    (addr, shutdown)
}

/// A POST of `body` to `path`, signed with `SECRET` and a current timestamp.
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
