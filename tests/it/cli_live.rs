//! `refresh`, `status` and `check` on live data, as an operator runs them: the binary, its
//! environment, the fakes of Salesforce and Account Engagement, and a real Redis.

use std::process::Command;

use chrono::Utc;
use crm_username::demo;
use crm_username::fakes::FakeUpstreams;

use crate::common;
use common::redis_url;

struct Live {
    upstreams: FakeUpstreams,
    _dir: tempfile::TempDir,
    settings: std::path::PathBuf,
}

async fn live() -> Live {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams::start(&org).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    Live {
        upstreams,
        _dir: dir,
        settings,
    }
}

impl Live {
    /// The command with the fakes' settings (and Redis under `redis_prefix`), nothing else.
    fn command(&self, args: &[&str], redis_prefix: Option<&str>) -> Command {
        let settings = self.upstreams.salesforce.settings();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-username"));
        cmd.args(args)
            .env_clear()
            .env("SALESFORCE_LOGIN_URL", self.upstreams.salesforce.url())
            .env("SALESFORCE_CLIENT_ID", &settings.client_id)
            .env("SALESFORCE_CLIENT_SECRET", &settings.client_secret)
            .env("BUSINESS_UNITS_FILE", &self.settings);
        if let Some(prefix) = redis_prefix {
            cmd.env("REDIS_URL", redis_url())
                .env("REDIS_KEY_PREFIX", prefix);
        }
        cmd
    }

    fn run(&self, args: &[&str], redis_prefix: Option<&str>) -> (i32, String, String) {
        let out = self.command(args, redis_prefix).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_then_status_then_check_through_redis() {
    let live = live().await;
    let prefix = common::prefix("cli-live");
    common::clear_prefix(&prefix).await;
    let (code, out, err) = tokio::task::block_in_place(|| live.run(&["status"], Some(&prefix)));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Data as of   never\n"), "{out}");

    let (code, out, err) = tokio::task::block_in_place(|| live.run(&["refresh"], Some(&prefix)));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Refreshed 14 Salesforce users, 8 AE users in 0UvAk000000NAM1KAO, 2 AE users in 0UvAk000000EME1KAO in "), "{out}");
    assert!(
        out.trim_end()
            .ends_with("; a new generation of the cache was written"),
        "{out}"
    );
    // A second full refresh reads the same org: only the metadata (the time it was read)
    // differs, and it alone is rewritten, in place.
    let (code, out, err) = tokio::task::block_in_place(|| live.run(&["refresh"], Some(&prefix)));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with("; rewrote 1 key of the cache in place, the rest was unchanged"),
        "{out}"
    );
    // Asked for, a whole new generation all the same.
    let (code, out, err) =
        tokio::task::block_in_place(|| live.run(&["refresh", "--new-generation"], Some(&prefix)));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim_end()
            .ends_with("; a new generation of the cache was written"),
        "{out}"
    );

    let (code, out, _) =
        tokio::task::block_in_place(|| live.run(&["status", "--format", "json"], Some(&prefix)));
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["sf_users"], 14);
    assert_eq!(status["sources"]["salesforce"]["records"], 14);
    assert_eq!(
        status["sources"]["account_engagement:0UvAk000000EME1KAO"]["records"],
        2
    );

    let (code, out, err) = tokio::task::block_in_place(|| {
        live.run(&["check", "dana.deleted@acme.com"], Some(&prefix))
    });
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("[mapped_to_deleted_user]"), "{out}");
    let (code, _, _) =
        tokio::task::block_in_place(|| live.run(&["check", "ok.user@acme.com"], Some(&prefix)));
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_redis_refreshes_into_memory_first() {
    let live = live().await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        live.run(&["check", "nora.north@acme.com", "--format", "json"], None)
    });
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"][0]["code"], "not_assigned_to_business_unit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_of_an_uncached_external_user_names_it_through_the_live_lookup() {
    let live = live().await;
    let prefix = common::prefix("cli-live-external");
    common::clear_prefix(&prefix).await;
    let (code, out, err) = tokio::task::block_in_place(|| live.run(&["refresh"], Some(&prefix)));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = tokio::task::block_in_place(|| {
        live.run(
            &["check", "sam.sales@acme.com.partners", "--format", "json"],
            Some(&prefix),
        )
    });
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "blocked");
    assert_eq!(
        v["salesforce_user"]["username"],
        "sam.sales@acme.com.partners"
    );
    assert_eq!(v["findings"][0]["code"], "unsupported_user_type");
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(1));
}

/// The one-shot `refresh` logs as `serve` does (`LOG_FORMAT`, `RUST_LOG`), its warnings and
/// errors only unless `RUST_LOG` says more: a successful run is quiet on standard error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_shot_refresh_logs_what_rust_log_asks_for() {
    let live = live().await;
    let prefix = common::prefix("cli-live-log");
    common::clear_prefix(&prefix).await;
    let refresh = |rust_log: Option<&str>| {
        let mut cmd = live.command(&["refresh"], Some(&prefix));
        cmd.env("LOG_FORMAT", "json");
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };
    let quiet = refresh(None);
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    let told = refresh(Some("info"));
    let err = String::from_utf8_lossy(&told.stderr);
    assert_eq!(told.status.code(), Some(0), "{err}");
    let published: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "refresh published a new snapshot")
        .collect();
    assert_eq!(published.len(), 1, "{err}");
    assert_eq!(published[0]["level"], "INFO");
    assert_eq!(published[0]["kind"], "full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_refresh_with_advice_and_no_secret() {
    let live = live().await;
    let prefix = common::prefix("cli-live-bad");
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_crm-username"))
            .arg("refresh")
            .env_clear()
            .env("SALESFORCE_LOGIN_URL", live.upstreams.salesforce.url())
            .env(
                "SALESFORCE_CLIENT_ID",
                &live.upstreams.salesforce.settings().client_id,
            )
            .env("SALESFORCE_CLIENT_SECRET", "wrong-secret-value")
            .env("REDIS_URL", redis_url())
            .env("REDIS_KEY_PREFIX", &prefix)
            .output()
            .unwrap()
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("wrong-secret-value"), "{err}");
}

#[test]
fn status_without_redis_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("status")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set REDIS_URL"));
}
