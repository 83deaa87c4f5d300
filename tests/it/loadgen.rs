//! A smoke run of the HTTP benchmark's load generator (benches/http/loadgen.rs) against the
//! app on port 0 with the demo org: both modes finish by themselves, every signed request is
//! answered, and the counts add up.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crm_username::demo;
use crm_username::server::Server;
use crm_username::slack::signature::sign;
use crm_username::slack::{AppState, SlackSettings, SlackWebApi};
use crm_username::store::Store;

#[allow(clippy::module_inception)] // the benchmark's file, named as the benchmark names it
#[path = "../../benches/http/loadgen.rs"]
mod loadgen;

use loadgen::{Kind, Mix};

const SECRET: &str = "loadgen-secret";

#[tokio::test]
async fn open_and_closed_loop_runs_stop_by_themselves_and_count_every_request() {
    crm_username::sources::install_crypto_provider();
    let store = Store::memory();
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    let settings = SlackSettings {
        signing_secrets: vec![SecretString::from(SECRET)],
        allowed_team_ids: Vec::new(),
        admin_user_ids: Vec::new(),
        web: SlackWebApi::new("http://127.0.0.1:9", None, Vec::new()),
    };
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        AppState::new(store, None, settings),
    )
    .await
    .unwrap();
    let url = format!("http://{}/slack/commands", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));

    let users = ["sam.sales@acme.com", "ok.user@acme.com", "eve.new@acme.com"];
    let names = ["Sam Sales", "Alex", "Nora North"];
    let mix = Mix {
        name_percent: 30,
        typo_percent: 30,
    };
    let queries = loadgen::queries(
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

    let client = loadgen::client(4);
    let fixed = loadgen::open_loop(
        &client,
        &url,
        loadgen::prepare(SECRET, &queries, sign),
        200,
        Duration::from_millis(250),
        16,
    )
    .await;
    assert_eq!(fixed.requests(), 50);
    assert_eq!((fixed.ok, fixed.errors, fixed.deferred), (50, 0, 0));
    assert!(fixed.elapsed < Duration::from_secs(3));

    let max = loadgen::closed_loop(
        &client,
        &url,
        loadgen::prepare(SECRET, &queries, sign),
        2,
        Duration::from_secs(5),
        40,
    )
    .await;
    assert_eq!(max.requests(), 40);
    assert_eq!(max.ok, 40);
    assert!(max.ms(0.99) >= max.ms(0.5));

    // A wrong secret is counted as an error, not as an answer.
    let refused = loadgen::closed_loop(
        &client,
        &url,
        loadgen::prepare("not-the-secret", &queries, sign),
        1,
        Duration::from_secs(5),
        3,
    )
    .await;
    assert_eq!((refused.ok, refused.errors), (0, 3));

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
