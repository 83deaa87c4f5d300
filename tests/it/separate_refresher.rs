//! The refresher as a process of its own: `crm-username refresh --watch` fills the shared
//! Redis on the schedule and serves `/healthz` and `/metrics`; `serve` with
//! `REFRESH_IN_SERVE=false` starts no refresher and answers from what the other one publishes.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crm_username::app::{AppData, RefresherPlace};
use crm_username::demo;
use crm_username::domain::{Query, Verdict};
use crm_username::fakes::{FakeSlack, FakeUpstreams, SalesforceEndpoint};
use crm_username::refresh::{FULL_SOURCE, INCREMENTAL_SOURCE, REFRESH_SOURCE, Schedule};
use crm_username::store::{RedisStore, Store};

use crate::common;
use common::app::{ADMIN, TEAM, TestApp};

/// A Redis store under a prefix of the test's own, emptied first.
async fn redis_store(test: &str) -> (Store, String) {
    let prefix = common::prefix(test);
    common::clear_prefix(&prefix).await;
    let store = Store::Redis(
        RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap(),
    );
    (store, prefix)
}

/// Polls `done` every 50 ms until it holds; fails after `limit`, naming `what`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When the full refresh last succeeded, by the cache's status.
async fn last_full_refresh(store: &Store) -> Option<chrono::DateTime<Utc>> {
    store
        .status()
        .await
        .ok()?
        .sources
        .get(FULL_SOURCE)
        .and_then(|s| s.last_success_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_refresh_in_serve_false_starts_no_refresher_and_answers_from_the_other_process()
{
    let org = demo::snapshot(Utc::now()).unwrap();
    // Two fakes of the same org: serve's live sources read one, the other refresher the
    // other, so that each request shows whose it was.
    let serves = FakeUpstreams::start(&org).await.unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let (store, prefix) = redis_store("split-serve").await;
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store.clone(), &slack);
    config.data = AppData::Cache {
        store: store.clone(),
        sources: Some(Arc::new(serves.sources(&org).unwrap())),
    };
    config.refresh_in_process = false;
    // Were a refresher started, it would refresh at once, and refill the empty cache within
    // 20 ms of finding it empty.
    config.refresh_schedule = Schedule::full_only(Duration::from_millis(200));
    config.refresh_watch = Duration::from_millis(20);
    let app = TestApp::spawn(config, slack).await;
    assert_eq!(app.refresher, RefresherPlace::AnotherProcess);

    // Serving: the app is past the point where it starts (or not) its refresher.
    let before: Value = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        before["text"], "The data is still loading, try again in a minute",
        "{before}"
    );

    // The refresher of `refresh --watch`, in another task with sources of its own.
    let stop = CancellationToken::new();
    let outside = crm_username::refresh::spawn(
        Arc::new(upstreams.sources(&org).unwrap()),
        store.clone(),
        Schedule::full_only(Duration::from_secs(3600)),
        Duration::from_secs(3600),
        stop.clone(),
    );
    wait_for(
        "the other process's refresh",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move { last_full_refresh(&store).await.is_some() }
        },
    )
    .await;
    stop.cancel();
    outside.await;

    let after: Value = app
        .command("check sam.sales@acme.com", TEAM, "U0ASKER")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        after["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: sam.sales@acme.com"),
        "{after}"
    );
    // An admin's `refresh` is left to the refresher outside, too.
    let refresh: Value = app
        .command("refresh", TEAM, ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        refresh["text"],
        "The refresher runs in a process of its own (REFRESH_IN_SERVE=false) and keeps the data fresh on its schedule; `status` shows how fresh it is. To refresh at once, run `crm-username refresh` where the refresher runs.",
        "{refresh}"
    );
    // Serve never called its upstreams: it refreshed nothing (a refresh starts with a token).
    assert_eq!(serves.salesforce.requests(SalesforceEndpoint::Token), 0);
    assert_eq!(serves.salesforce.requests(SalesforceEndpoint::Query), 0);
    assert_eq!(serves.account_engagement.requests(), 0);
    assert_eq!(upstreams.salesforce.requests(SalesforceEndpoint::Token), 1);
    let status = store.status().await.unwrap();
    let mut kinds: Vec<&str> = status.sources.keys().map(String::as_str).collect();
    kinds.retain(|k| [FULL_SOURCE, INCREMENTAL_SOURCE, REFRESH_SOURCE].contains(k));
    kinds.sort_unstable();
    assert_eq!(kinds, [REFRESH_SOURCE, FULL_SOURCE]);
    drop(app);
    common::clear_prefix(&prefix).await;
}

/// `crm-username` with the fakes' settings, the demo org's business units and `extra`.
fn command(upstreams: &FakeUpstreams, settings: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-username"));
    cmd.args(args)
        .env_clear()
        .env("SALESFORCE_LOGIN_URL", upstreams.salesforce.url())
        .env(
            "SALESFORCE_CLIENT_ID",
            &upstreams.salesforce.settings().client_id,
        )
        .env(
            "SALESFORCE_CLIENT_SECRET",
            &upstreams.salesforce.settings().client_secret,
        )
        .env("BUSINESS_UNITS_FILE", settings);
    cmd
}

/// Kills the child if the test fails before it stopped it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the one sample of `metric` whose labels include every one of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    let mut found = metrics.lines().filter(|l| {
        (l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
            && labels.iter().all(|label| l.contains(label))
    });
    let line = found.next()?;
    assert!(found.next().is_none(), "two samples of {metric} {labels:?}");
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_watch_publishes_serves_its_metrics_and_exits_0_on_sigterm() {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    let (store, prefix) = redis_store("split-watch").await;
    let port = common::free_port();
    let log = dir.path().join("refresher.log");
    let child = command(&upstreams, &settings, &["refresh", "--watch"])
        .env("REDIS_URL", common::redis_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("REFRESH_INTERVAL", "1h")
        .env("REFRESH_INCREMENTAL_INTERVAL", "off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    crm_username::sources::install_crypto_provider();
    let http = reqwest::Client::new();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_for("the published generation", Duration::from_secs(30), || {
        let store = store.clone();
        async move { last_full_refresh(&store).await.is_some() }
    })
    .await;
    assert!(store.current_generation().await.unwrap().is_some());
    let outcome = common::outcome::check(
        &store,
        &Query::parse("sam.sales@acme.com").unwrap(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome.verdict, Verdict::Blocked);

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "{}", log_text());
    assert_eq!(health.text().await.unwrap(), "ok");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &metrics,
            "crm_username_refresh_runs_total",
            &[r#"result="ok""#, r#"kind="full""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    let salesforce_calls = upstreams.salesforce.requests(SalesforceEndpoint::Query)
        + upstreams
            .salesforce
            .requests(SalesforceEndpoint::ToolingQuery);
    assert_eq!(
        sample(
            &metrics,
            "crm_username_refresh_api_calls_total",
            &[r#"kind="full""#, r#"api="salesforce""#]
        ),
        Some(salesforce_calls as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "crm_username_refresh_api_calls_total",
            &[r#"kind="full""#, r#"api="account_engagement""#]
        ),
        Some(upstreams.account_engagement.requests() as f64),
        "{metrics}"
    );
    // The first full refresh found an empty cache: a whole new generation, nothing rewritten.
    assert_eq!(
        sample(
            &metrics,
            "crm_username_refresh_cache_writes_total",
            &[r#"kind="full""#, r#"how="new_generation""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "crm_username_refresh_cache_writes_total",
            &[r#"how="in_place""#]
        ),
        None,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "crm_username_refresh_keys_rewritten_total", &[]),
        None,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "crm_username_snapshot_loaded", &[]),
        Some(1.0),
        "{metrics}"
    );

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still running 20 s after SIGTERM\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{}", log_text());
    let log = log_text();
    assert!(
        log.contains("refresher: in this process, serving /healthz and /metrics"),
        "{log}"
    );
    common::clear_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_watch_without_live_data_fails_as_refresh_does_and_without_redis_says_so() {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    let prefix = common::prefix("split-usage");
    let run = |args: &[&str], live: bool, redis: bool| {
        let mut cmd = command(&upstreams, &settings, args);
        if !live {
            cmd.env_remove("SALESFORCE_CLIENT_ID");
        }
        if redis {
            cmd.env("REDIS_URL", common::redis_url())
                .env("REDIS_KEY_PREFIX", &prefix);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (once, watch) = tokio::task::block_in_place(|| {
        (
            run(&["refresh"], false, true),
            run(&["refresh", "--watch"], false, true),
        )
    });
    assert_eq!(once.0, Some(3), "{}", once.1);
    assert_eq!(
        once.1,
        "error: no live data configured: set SALESFORCE_CLIENT_ID and a secret or key (README \"Configuration\")\n"
    );
    assert_eq!(watch, once);

    let (code, err) = tokio::task::block_in_place(|| run(&["refresh", "--watch"], true, false));
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        err,
        "error: REDIS_URL: is required for refresh --watch: it fills the Redis that serve answers from; without it, what it refreshes would stay in this process\n"
    );
}

#[test]
fn serve_with_refresh_in_serve_false_and_no_redis_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("serve")
        .env_clear()
        .env("SLACK_SIGNING_SECRET", "s")
        .env("SALESFORCE_CLIENT_ID", "id")
        .env("SALESFORCE_CLIENT_SECRET", "secret")
        .env("REFRESH_IN_SERVE", "false")
        .env("BIND_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: REFRESH_IN_SERVE: false needs REDIS_URL: without it serve answers from an in-process store that no refresher would ever fill; set REDIS_URL to the Redis that `crm-username refresh --watch` fills, or leave REFRESH_IN_SERVE at true\n"
    );
}
