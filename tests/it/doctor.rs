//! `doctor` against the fakes of Salesforce, Account Engagement and Slack, and Redis servers of
//! the tests' own: a healthy configuration passes, and each fault an admin meets on a first
//! day gives the right status with a fix that names the thing to change.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use clap::Parser;
use crm_username::cli::doctor::DoctorArgs;
use crm_username::cli::{Cli, Command as Sub};
use crm_username::demo;
use crm_username::doctor::{Check, Report, Status};
use crm_username::domain::OrgSnapshot;
use crm_username::fakes::{
    FakeAccountEngagement, FakeSalesforce, FakeSalesforceSettings, FakeSlack, FakeUpstreams, Fault,
    Injection, TokenHost,
};

use crate::common;

const SIGNING_SECRET: &str = "signing-secret-doctor-41";
const BOT_TOKEN: &str = "xoxb-doctor-bot-token-93";

struct World {
    org: OrgSnapshot,
    upstreams: FakeUpstreams,
    slack: FakeSlack,
    dir: tempfile::TempDir,
    settings: PathBuf,
}

async fn world_with(settings: FakeSalesforceSettings) -> World {
    let org = demo::snapshot(Utc::now()).unwrap();
    let upstreams = FakeUpstreams {
        salesforce: FakeSalesforce::start(&org, settings).await.unwrap(),
        account_engagement: FakeAccountEngagement::start(&org).await.unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = common::write_settings(dir.path(), &org, &upstreams);
    World {
        org,
        upstreams,
        slack: FakeSlack::start().await.unwrap(),
        dir,
        settings,
    }
}

async fn world() -> World {
    world_with(FakeSalesforceSettings::default()).await
}

impl World {
    /// The command line of a healthy configuration, changed by `extra`: a flag given there
    /// replaces the healthy value (an empty value drops the flag); a flag without a value
    /// (`--socket-mode`) is added.
    fn argv(&self, extra: &[&str]) -> Vec<String> {
        let sf = self.upstreams.salesforce.settings();
        let mut pairs: Vec<(String, String)> = [
            ("--salesforce-login-url", self.upstreams.salesforce.url()),
            ("--salesforce-client-id", &sf.client_id),
            ("--salesforce-client-secret", &sf.client_secret),
            ("--business-units-file", self.settings.to_str().unwrap()),
            ("--redis-url", &common::redis_url()),
            ("--slack-signing-secret", SIGNING_SECRET),
            ("--slack-bot-token", BOT_TOKEN),
            ("--slack-api-url", &self.slack.api_url()),
        ]
        .iter()
        .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
        .collect();
        let mut switches = Vec::new();
        let mut extra = extra.iter().peekable();
        while let Some(flag) = extra.next() {
            match extra.next_if(|v| !v.starts_with("--")) {
                Some(&"") => pairs.retain(|(f, _)| f != flag),
                Some(value) => match pairs.iter_mut().find(|(f, _)| f == flag) {
                    Some(pair) => pair.1 = (*value).to_owned(),
                    None => pairs.push(((*flag).to_owned(), (*value).to_owned())),
                },
                None => switches.push((*flag).to_owned()),
            }
        }
        pairs
            .into_iter()
            .flat_map(|(f, v)| [f, v])
            .chain(switches)
            .collect()
    }

    fn args(&self, extra: &[&str]) -> DoctorArgs {
        let mut argv = vec!["crm-username".to_owned(), "doctor".to_owned()];
        argv.extend(self.argv(extra));
        match Cli::try_parse_from(argv).unwrap().command {
            Sub::Doctor(args) => *args,
            other => panic!("parsed {other:?}"),
        }
    }

    async fn doctor(&self, extra: &[&str]) -> Report {
        self.args(extra).doctor().run().await
    }

    fn write_settings(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn check<'a>(report: &'a Report, id: &str) -> &'a Check {
    report
        .get(id)
        .unwrap_or_else(|| panic!("no check {id}: {}", report.text()))
}

/// Asserts `id`'s status and that its fix names each of `named`.
fn assert_check(report: &Report, id: &str, status: Status, named: &[&str]) {
    let c = check(report, id);
    assert_eq!(c.status, status, "{id}: {}", report.text());
    let fix = c.fix.as_deref().unwrap_or_default();
    for thing in named {
        assert!(
            fix.contains(thing) || c.summary.contains(thing),
            "{id} should name {thing:?}: {c:?}"
        );
    }
}

const NAM: &str = "0UvAk000000NAM1KAO";
const EME: &str = "0UvAk000000EME1KAO";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_configuration_passes_with_every_check_ok_or_skipped() {
    let world = world().await;
    let report = world.doctor(&[]).await;
    let not_ok: Vec<&Check> = report
        .checks
        .iter()
        .filter(|c| !matches!(c.status, Status::Ok | Status::Skip))
        .collect();
    assert!(not_ok.is_empty(), "{}", report.text());
    assert!(report.ok);
    assert_eq!(report.exit_code(), 0);
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "config.environment",
            "config.settings_file",
            "redis.connection",
            "redis.eviction",
            "redis.commands",
            "salesforce.token",
            "salesforce.api_version",
            "salesforce.read.Organization",
            "salesforce.read.User",
            "salesforce.read.Profile",
            "salesforce.read.UserRole",
            "salesforce.read.Group",
            "salesforce.read.GroupMember",
            "salesforce.read.PardotTenant",
            "salesforce.api_headroom",
            &format!("account_engagement.{NAM}"),
            &format!("account_engagement.{EME}"),
            &format!("settings.business_unit.{NAM}"),
            &format!("settings.business_unit.{EME}"),
            "settings.unlisted_business_units",
            &format!("settings.profiles.{NAM}"),
            &format!("settings.assignment.{NAM}"),
            &format!("settings.profiles.{EME}"),
            &format!("settings.assignment.{EME}"),
            "slack.bot_token",
            "slack.scopes",
            "slack.signing_secret",
            "slack.app_token",
        ]
    );
    assert_eq!(world.slack.auth_tests(), 1);
    assert!(world.slack.calls().is_empty(), "doctor posts nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_secret_fails_the_token_naming_the_secret_and_skips_what_needs_it() {
    let world = world().await;
    let report = world
        .doctor(&["--salesforce-client-secret", "wrong-secret-value-77"])
        .await;
    assert_check(
        &report,
        "salesforce.token",
        Status::Fail,
        &["invalid_client", "SALESFORCE_CLIENT_SECRET"],
    );
    assert_eq!(check(&report, "salesforce.read.User").status, Status::Skip);
    assert_eq!(
        check(&report, &format!("account_engagement.{NAM}")).status,
        Status::Skip
    );
    assert_eq!(report.exit_code(), 1);
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("wrong-secret-value-77")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_on_a_login_host_that_is_not_my_domain_fail_naming_my_domain() {
    let world = world_with(FakeSalesforceSettings {
        host: TokenHost::Login,
        ..FakeSalesforceSettings::default()
    })
    .await;
    let report = world.doctor(&[]).await;
    assert_check(
        &report,
        "salesforce.token",
        Status::Fail,
        &[
            "request not supported on this domain",
            "My Domain",
            "SALESFORCE_LOGIN_URL",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_flow_passes_and_the_audience_it_sends_is_shown() {
    let world = world().await;
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-only-rsa-key.pem");
    let username = world.upstreams.salesforce.settings().username.clone();
    let report = world
        .doctor(&[
            "--salesforce-client-secret",
            "",
            "--salesforce-username",
            &username,
            "--salesforce-private-key-file",
            key.to_str().unwrap(),
        ])
        .await;
    assert!(
        check(&report, "config.environment")
            .summary
            .contains("JWT bearer (audience https://login.salesforce.com)"),
        "{}",
        report.text()
    );
    assert_eq!(check(&report, "salesforce.token").status, Status::Ok);
    assert!(report.ok, "{}", report.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_type_and_insufficient_access_on_one_object_fail_that_object_by_name() {
    let world = world().await;
    let sf = &world.upstreams.salesforce;
    sf.inject(
        Injection::new(Fault::salesforce_error(
            400,
            "INVALID_TYPE",
            "sObject type 'Group' is not supported.",
        ))
        .for_object("Group")
        .always(),
    );
    sf.inject(
        Injection::new(Fault::salesforce_error(
            403,
            "INSUFFICIENT_ACCESS",
            "insufficient access rights on object id",
        ))
        .for_object("GroupMember")
        .always(),
    );
    let report = world.doctor(&[]).await;
    assert_check(
        &report,
        "salesforce.read.Group",
        Status::Fail,
        &["INVALID_TYPE", "read access to Group"],
    );
    assert_check(
        &report,
        "salesforce.read.GroupMember",
        Status::Fail,
        &["INSUFFICIENT_ACCESS", "read access to GroupMember"],
    );
    assert_eq!(check(&report, "salesforce.read.User").status, Status::Ok);
    // The settings cannot be compared without the groups: skipped, not guessed.
    assert_eq!(
        check(&report, "settings.business_units").status,
        Status::Skip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ae_code_184_fails_the_business_unit_naming_pardot_api_and_sso() {
    let world = world().await;
    world
        .upstreams
        .account_engagement
        .inject(Injection::new(Fault::ae_code(184)).always());
    let report = world.doctor(&[]).await;
    assert_check(
        &report,
        &format!("account_engagement.{NAM}"),
        Status::Fail,
        &["code 184", "pardot_api", "SSO-enabled"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ae_code_201_tries_the_other_host_and_names_the_one_that_works() {
    let world = world().await;
    let wrong = &world.upstreams.account_engagement;
    wrong.inject(Injection::new(Fault::ae_code(201)).always());
    let right = FakeAccountEngagement::start(&world.org).await.unwrap();
    let mut doctor = world.args(&[]).doctor();
    doctor.ae_host_pairs = vec![(wrong.url().to_owned(), right.url().to_owned())];
    let report = doctor.run().await;
    let want = format!("set ae_url = \"{}\" for business unit {NAM}", right.url());
    assert_check(
        &report,
        &format!("account_engagement.{NAM}"),
        Status::Fail,
        &["code 201", &want],
    );
    assert!(
        right.requests() >= 2,
        "the other host was asked for each unit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_unit_unknown_to_the_org_fails_and_one_left_out_warns() {
    let world = world().await;
    let ae = world.upstreams.account_engagement.url();
    let settings = world.write_settings(
        "bu.toml",
        &format!(
            "[[business_unit]]\nid = \"{NAM}\"\nname = \"NA\"\nae_url = \"{ae}\"\n\n\
             [[business_unit]]\nid = \"0UvAk000000ZZZ9\"\nname = \"Typo\"\nae_url = \"{ae}\"\n"
        ),
    );
    let report = world
        .doctor(&["--business-units-file", settings.to_str().unwrap()])
        .await;
    let typo = crm_username::domain::SfId::parse("0UvAk000000ZZZ9").unwrap();
    assert_check(
        &report,
        &format!("settings.business_unit.{typo}"),
        Status::Fail,
        &["is not in the org", EME, NAM],
    );
    assert_check(
        &report,
        "settings.unlisted_business_units",
        Status::Warn,
        &[EME, "Acme EMEA"],
    );
    assert_eq!(
        check(&report, &format!("settings.business_unit.{NAM}")).status,
        Status::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_typo_warns_with_the_closest_name_and_a_missing_group_fails() {
    let world = world().await;
    let ae = world.upstreams.account_engagement.url();
    let settings = world.write_settings(
        "bu.toml",
        &format!(
            "[[business_unit]]\nid = \"{NAM}\"\nname = \"NA\"\nae_url = \"{ae}\"\nuser_sync = true\n\
             [business_unit.profile_roles]\n\"Standard Usr\" = \"Sales\"\n\"Marketing User\" = \"Marketing\"\n\n\
             [[business_unit]]\nid = \"{EME}\"\nname = \"EMEA\"\nae_url = \"{ae}\"\nuser_management = \"salesforce\"\n\
             [business_unit.assignment]\npublic_groups = [\"00GAk000000EMTMMA4\", \"00GAk000000GONE\"]\n"
        ),
    );
    let report = world
        .doctor(&["--business-units-file", settings.to_str().unwrap()])
        .await;
    assert_check(
        &report,
        &format!("settings.profiles.{NAM}"),
        Status::Warn,
        &[
            "\"Standard Usr\" (did you mean \"Standard User\"?)",
            "profile_roles",
        ],
    );
    assert_check(
        &report,
        &format!("settings.assignment.{EME}"),
        Status::Fail,
        &[&format!(
            "public group \"{}\"",
            crm_username::domain::SfId::parse("00GAk000000GONE").unwrap()
        )],
    );
    assert!(
        !check(&report, &format!("settings.assignment.{EME}"))
            .summary
            .contains("EMTM")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_naming_redis_url() {
    let world = world().await;
    let url = format!("redis://127.0.0.1:{}", common::free_port());
    let report = world.doctor(&["--redis-url", &url]).await;
    assert_check(&report, "redis.connection", Status::Fail, &["REDIS_URL"]);
    assert_eq!(check(&report, "redis.eviction").status, Status::Skip);
    assert_eq!(check(&report, "redis.commands").status, Status::Skip);
    assert_eq!(report.exit_code(), 1);
}

/// An ACL user missing a grant is named before checks fail on it: the test servers' user without
/// `+rename` gets a warning naming it (as does a server with RENAME disabled), one with every
/// grant an ok, and either one outside its key pattern a failure naming the pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_names_what_the_acl_user_may_not_run() {
    let world = world().await;
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name}: start the test servers (scripts/redis-test-servers.sh)")
        })
    };
    let (acl, older) = (var("TEST_REDIS_ACL_URL"), var("TEST_REDIS_ACL_OLDER_URL"));
    let prefix = ["--redis-key-prefix", "test:doctor:"];
    let report = world
        .doctor(&[&["--redis-url", acl.as_str()][..], &prefix].concat())
        .await;
    assert_check(&report, "redis.commands", Status::Ok, &[]);
    let report = world
        .doctor(&[&["--redis-url", older.as_str()][..], &prefix].concat())
        .await;
    assert_check(
        &report,
        "redis.commands",
        Status::Warn,
        &["RENAME", "+rename"],
    );
    // A server that disables RENAME (`rename-command`, as some managed services run) is
    // named the same way: the bot takes the same slower paths there.
    let no_rename = var("TEST_REDIS_NO_RENAME_URL");
    let report = world
        .doctor(&[&["--redis-url", no_rename.as_str()][..], &prefix].concat())
        .await;
    assert_check(
        &report,
        "redis.commands",
        Status::Warn,
        &["RENAME", "rename-command"],
    );
    let report = world.doctor(&["--redis-url", acl.as_str()]).await;
    assert_check(
        &report,
        "redis.commands",
        Status::Fail,
        &["hget", "+hdel", "~crm-username:*"],
    );
    assert_eq!(report.exit_code(), 1);
}

/// A server that disables a command the bot needs (`rename-command UNLINK ""`, as a managed
/// service might) fails the check naming the command, as a refused grant does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_disables_a_command_the_bot_needs_fails_naming_it() {
    let world = world().await;
    let port = common::free_port();
    let _redis = common::OwnRedis::start_with(port, &["--rename-command", "UNLINK", ""]);
    let url = format!("redis://127.0.0.1:{port}");
    let report = world.doctor(&["--redis-url", &url]).await;
    assert_eq!(check(&report, "redis.connection").status, Status::Ok);
    assert_check(
        &report,
        "redis.commands",
        Status::Fail,
        &["may not run unlink ", "disabled on the server", "+unlink"],
    );
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_allkeys_lru_warns_naming_noeviction() {
    let world = world().await;
    let port = common::free_port();
    let _redis = common::OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let report = world.doctor(&["--redis-url", &url]).await;
    assert_eq!(check(&report, "redis.connection").status, Status::Ok);
    assert_check(
        &report,
        "redis.eviction",
        Status::Warn,
        &["allkeys-lru", "noeviction"],
    );
    assert_eq!(report.exit_code(), 0, "a warning alone does not fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_invalid_auth_fails_the_bot_token_naming_it() {
    let world = world().await;
    world.slack.fail_with("invalid_auth");
    let report = world.doctor(&[]).await;
    assert_check(
        &report,
        "slack.bot_token",
        Status::Fail,
        &["invalid_auth", "SLACK_BOT_TOKEN"],
    );
    assert_eq!(check(&report, "slack.scopes").status, Status::Skip);
    assert!(!report.text().contains(BOT_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_missing_from_the_bot_token_fails_naming_the_scope() {
    let world = world().await;
    world
        .slack
        .grant_scopes(&["commands", "chat:write", "app_mentions:read", "im:write"]);
    let report = world.doctor(&[]).await;
    assert_check(
        &report,
        "slack.scopes",
        Status::Fail,
        &["files:write", "reinstall"],
    );
    assert!(
        !check(&report, "slack.scopes")
            .summary
            .contains("chat:write")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_checks_the_app_token_and_skips_the_signing_secret() {
    let world = world().await;
    let report = world
        .doctor(&["--socket-mode", "--slack-app-token", "xapp-1-doctor"])
        .await;
    assert_eq!(check(&report, "slack.app_token").status, Status::Ok);
    assert_eq!(check(&report, "slack.signing_secret").status, Status::Skip);
    let refused = world
        .doctor(&[
            "--socket-mode",
            "--slack-app-token",
            "xoxb-not-an-app-token",
        ])
        .await;
    assert_check(
        &refused,
        "slack.app_token",
        Status::Fail,
        &["invalid_auth", "SLACK_APP_TOKEN"],
    );
}

/// The binary: exit codes and the JSON form.
fn binary(args: &[String], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_0_healthy_1_on_a_failure_and_3_on_a_usage_error() {
    let world = world().await;
    let mut args = vec![
        "doctor".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(world.argv(&[]));
    let (code, out, err) = tokio::task::block_in_place(|| binary(&args, &[]));
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checks"][0]["id"], "config.environment");
    assert_eq!(json["checks"][0]["fix"], serde_json::Value::Null);
    for secret in [
        SIGNING_SECRET,
        BOT_TOKEN,
        &world.upstreams.salesforce.settings().client_secret,
    ] {
        assert!(!out.contains(secret), "{secret} leaked");
    }

    let mut args = vec!["doctor".to_owned()];
    args.extend(world.argv(&["--slack-bot-token", "xoxp-nope"]));
    let (code, out, _) = tokio::task::block_in_place(|| binary(&args, &[]));
    assert_eq!(code, 1, "{out}");

    let (code, _, err) = tokio::task::block_in_place(|| {
        binary(
            &["doctor".to_owned(), "--format".to_owned(), "xml".to_owned()],
            &[],
        )
    });
    assert_eq!(code, 3, "{err}");
}

fn settings_init(world: &World, output: &Path, extra: &[&str]) -> (i32, String, String) {
    let sf = world.upstreams.salesforce.settings();
    let mut args: Vec<String> = [
        "settings",
        "init",
        "--output",
        output.to_str().unwrap(),
        "--ae-url",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(world.upstreams.account_engagement.url().to_owned());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    binary(
        &args,
        &[
            ("SALESFORCE_LOGIN_URL", world.upstreams.salesforce.url()),
            ("SALESFORCE_CLIENT_ID", &sf.client_id),
            ("SALESFORCE_CLIENT_SECRET", &sf.client_secret),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_init_writes_a_file_naming_every_unit_and_profile_that_doctor_accepts_once_filled_in()
 {
    let world = world().await;
    let path = world.dir.path().join("init.toml");
    let (code, _, err) = tokio::task::block_in_place(|| settings_init(&world, &path, &[]));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    let units = crm_username::config::business_units::parse(&text, "init.toml").unwrap();
    assert_eq!(
        units
            .iter()
            .map(|u| (u.id.to_string(), u.name.as_str()))
            .collect::<Vec<_>>(),
        world
            .org
            .business_units
            .iter()
            .map(|bu| (bu.id.to_string(), bu.name.as_str()))
            .collect::<Vec<_>>()
    );
    for profile in [
        "Standard User",
        "Marketing User",
        "Contract Manager",
        "System Administrator",
    ] {
        assert_eq!(
            text.matches(&format!("# \"{profile}\"")).count(),
            2,
            "{profile}: {text}"
        );
    }
    assert!(
        text.contains("#   00GAk000000EMTMMA4  EMEA Team\n"),
        "{text}"
    );
    assert!(
        text.contains("#   00EAk000000NASRMA4  NA Sales Rep\n"),
        "{text}"
    );

    // Never overwritten without --force.
    std::fs::write(&path, "# mine\n").unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| settings_init(&world, &path, &[]));
    assert_eq!(code, 3);
    assert!(err.contains("pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");
    let (code, _, err) = tokio::task::block_in_place(|| settings_init(&world, &path, &["--force"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), text.len());

    // Fill in the placeholders as an admin would, in the first business unit: User Sync on,
    // one profile mapped, one group assigned (in the flat form, which both the flat and the
    // sectioned settings formats read as the Marketing section).
    let mut todo = ["user_sync", "profile", "section", "groups"];
    let filled: String = text
        .lines()
        .map(|line| {
            let mut take = |what: &str| {
                let pending = todo.iter().position(|t| *t == what);
                if let Some(i) = pending {
                    todo[i] = "";
                }
                pending.is_some()
            };
            let out = if line == "user_sync = false" && take("user_sync") {
                "user_sync = true".to_owned()
            } else if line.starts_with("# \"Standard User\"") && take("profile") {
                line[2..].replace("AE role", "Sales")
            } else if line == "# [business_unit.assignment.marketing]" && take("section") {
                "[business_unit.assignment]".to_owned()
            } else if line.starts_with("# public_groups = []") && take("groups") {
                "public_groups = [\"00GAk000000EMTMMA4\"]".to_owned()
            } else {
                line.to_owned()
            };
            out + "\n"
        })
        .collect();
    assert!(
        todo.iter().all(|t| t.is_empty()),
        "placeholders not found: {todo:?}"
    );
    std::fs::write(&path, &filled).unwrap();
    let report = world
        .doctor(&["--business-units-file", path.to_str().unwrap()])
        .await;
    assert!(report.ok, "{}", report.text());
    assert!(
        report
            .checks
            .iter()
            .all(|c| matches!(c.status, Status::Ok | Status::Skip)),
        "{}",
        report.text()
    );
    assert_eq!(
        check(&report, &format!("settings.profiles.{NAM}")).status,
        Status::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_each_check_at_start_and_starts_although_an_upstream_fails() {
    use std::io::BufRead;
    let world = world().await;
    // An upstream fails: serve still starts, and logs the failure with its fix.
    world
        .upstreams
        .account_engagement
        .inject(Injection::new(Fault::ae_code(184)).always());
    let port = common::free_port();
    let sf = world.upstreams.salesforce.settings();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("serve")
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SALESFORCE_LOGIN_URL", world.upstreams.salesforce.url())
        .env("SALESFORCE_CLIENT_ID", &sf.client_id)
        .env("SALESFORCE_CLIENT_SECRET", &sf.client_secret)
        .env("BUSINESS_UNITS_FILE", &world.settings)
        .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("SLACK_API_URL", world.slack.api_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut checks = Vec::new();
    // Generous: the checks take well under a second against the fakes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while checks.len() < 27 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = tokio::task::block_in_place(|| rx.recv_timeout(left)) else {
            break;
        };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(id) = event["check"].as_str() {
            checks.push((
                id.to_owned(),
                event["status"].as_str().unwrap_or("").to_owned(),
                line,
            ));
        }
    }
    crm_username::sources::install_crypto_provider();
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(checks.len(), 27, "{checks:#?}");
    assert_eq!(checks[0].0, "config.environment");
    let nam = checks
        .iter()
        .find(|c| c.0 == format!("account_engagement.{NAM}"))
        .unwrap();
    assert_eq!(nam.1, "fail");
    assert!(nam.2.contains("pardot_api"), "{}", nam.2);
    assert_eq!(ready.unwrap().status(), 200, "serve started anyway");
    for (_, _, line) in &checks {
        assert!(
            !line.contains(SIGNING_SECRET) && !line.contains(BOT_TOKEN),
            "{line}"
        );
        assert!(!line.contains(&sf.client_secret), "{line}");
    }
}
