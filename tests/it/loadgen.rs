//! A smoke run of the HTTP benchmark's load generator (benches/http/loadgen.rs) against the
//! app on port 0 with the demo org: both modes finish by themselves, every signed request is
//! answered, and the counts add up.

use std::time::Duration;

use secrecy::SecretString;

use crm_username::fakes::FakeSlack;
use crm_username::slack::signature::sign;
use crm_username::slack::{SlackSettings, SlackWebApi};

use crate::common;
use crate::common::app::TestApp;

#[path = "../../benches/http/loadgen.rs"]
mod http_loadgen;

use http_loadgen::{Kind, Mix};

const SECRET: &str = "loadgen-secret";

#[tokio::test]
async fn open_and_closed_loop_runs_stop_by_themselves_and_count_every_request() {
    crm_username::sources::install_crypto_provider();
    let store = common::demo_memory_store().await;
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store, &slack);
    config.slack = SlackSettings {
        signing_secrets: vec![SecretString::from(SECRET)],
        allowed_team_ids: Vec::new(),
        admin_user_ids: Vec::new(),
        web: SlackWebApi::new("http://127.0.0.1:9", None, Vec::new()),
    };
    let mut app = TestApp::spawn(config, slack).await;
    let url = app.url("/slack/commands");

    let users = ["sam.sales@acme.com", "ok.user@acme.com", "eve.new@acme.com"];
    let names = ["Sam Sales", "Alex", "Nora North"];
    let mix = Mix {
        name_percent: 30,
        typo_percent: 30,
    };
    let queries = http_loadgen::queries(
        50,
        mix,
        users.len(),
        1,
        |n| users[n].to_owned(),
        |n| names[n].to_owned(),
    );
    assert!(
        Kind::ALL
            .iter()
            .all(|k| queries.iter().any(|(q, _)| q == k))
    );
    assert!(
        queries
            .iter()
            .filter(|(k, _)| *k == Kind::Typo)
            .all(|(_, q)| q.contains("@acme.com") && !users.contains(&q.as_str()))
    );

    let client = http_loadgen::client(4);
    let fixed = http_loadgen::open_loop(
        &client,
        &url,
        http_loadgen::prepare(SECRET, &queries, sign),
        200,
        Duration::from_millis(250),
        16,
    )
    .await;
    assert_eq!(fixed.requests(), 50);
    assert_eq!((fixed.ok, fixed.errors, fixed.deferred), (50, 0, 0));
    assert!(fixed.elapsed < Duration::from_secs(3));

    let max = http_loadgen::closed_loop(
        &client,
        &url,
        http_loadgen::prepare(SECRET, &queries, sign),
        2,
        Duration::from_secs(5),
        40,
    )
    .await;
    assert_eq!(max.requests(), 40);
    assert_eq!(max.ok, 40);
    assert!(max.ms(0.99) >= max.ms(0.5));

    // A wrong secret is counted as an error, not as an answer.
    let refused = http_loadgen::closed_loop(
        &client,
        &url,
        http_loadgen::prepare("not-the-secret", &queries, sign),
        1,
        Duration::from_secs(5),
        3,
    )
    .await;
    assert_eq!((refused.ok, refused.errors), (0, 3));

    app.stop().await.unwrap();
}
