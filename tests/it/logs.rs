//! Secrets never reach the logs: `serve` runs with every secret set, at debug level, through a
//! refresh, signed and unsigned requests and replies to Slack; its whole log is searched.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use crm_username::demo;
use crm_username::fakes::{FakeSlack, FakeUpstreams};
use crm_username::slack::signature::sign;

use crate::common;

const SIGNING_SECRET: &str = "signing-secret-7d2f9c";
const BOT_TOKEN: &str = "xoxb-bot-token-1b3e77";
const APP_TOKEN: &str = "xapp-app-token-88aa01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_the_logs() {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client_secret = upstreams.salesforce.settings().client_secret.clone();

    let child = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("serve")
        .env_clear()
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SALESFORCE_LOGIN_URL", upstreams.salesforce.url())
        .env(
            "SALESFORCE_CLIENT_ID",
            &upstreams.salesforce.settings().client_id,
        )
        .env("SALESFORCE_CLIENT_SECRET", &client_secret)
        .env("BUSINESS_UNITS_FILE", &settings)
        .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_API_URL", slack.api_url())
        .env("SLACK_RESPONSE_URL_HOSTS", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails before it stops the server itself.
    let mut child = KillOnDrop(child);

    crm_username::sources::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    // Ready comes before the data (readiness ignores it): wait for the first refresh too.
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        let metrics = http.get(format!("{base}/metrics")).send().await;
        let loaded = match metrics {
            Ok(m) => m
                .text()
                .await
                .unwrap_or_default()
                .contains("crm_username_snapshot_loaded 1"),
            Err(_) => false,
        };
        if ready.is_ok_and(|r| r.status() == 200) && loaded {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not become ready with data"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signed = |body: String| {
        let ts = Utc::now().timestamp().to_string();
        let signature = sign(SIGNING_SECRET, &ts, body.as_bytes());
        http.post(format!("{base}/slack/events"))
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(body)
    };
    let mention = serde_json::json!({
        "type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "Ev0LOGS", "event_time": 1,
        "event": {"type": "app_mention", "user": "U1", "text": "<@U0BOT> check sam.sales@acme.com", "ts": "1.2", "channel": "C1"}
    });
    assert_eq!(
        signed(mention.to_string()).send().await.unwrap().status(),
        200
    );
    let unsigned = http
        .post(format!("{base}/slack/events"))
        .header("x-slack-signature", "v0=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let started = Instant::now();
    while slack.calls().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        slack.calls().len(),
        1,
        "the mention was answered with the bot token"
    );

    sigterm(child.0.id());
    let mut log = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}\n{log}"
    );
    assert!(
        log.contains("refresh published a new snapshot"),
        "the refresh ran: {log}"
    );
    assert!(log.contains("refused an unverified request"), "{log}");
    assert!(
        log.contains("request_id"),
        "requests are logged with their id"
    );
    for secret in [
        SIGNING_SECRET,
        BOT_TOKEN,
        APP_TOKEN,
        client_secret.as_str(),
        "00DFAKE!token",
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log");
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
