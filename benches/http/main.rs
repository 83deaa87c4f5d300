//! End-to-end HTTP benchmark of `crm-username serve` (BENCHMARKS.md, "Slash commands over
//! HTTP"). Run: `cargo bench --bench http`.
//!
//! For each org size (1,000 SF / 200 AE users, and 100,000 / 20,000; 3 business units) it
//! publishes a synthetic org into Redis under a prefix of its own (once: a later run reuses it),
//! measures the start-up of the real binary to a ready `/readyz` (5 times), then drives signed
//! `/slack/commands` `check` requests at it: open loop at a fixed rate, then closed loop at
//! maximum throughput. The same load then goes to a "floor": a server in another process that
//! does one Redis GET per request and answers a small JSON. Peak RSS of `serve` is read from
//! /proc after the load. Everything is on 127.0.0.1; every loop is bounded in count and time.
//!
//! Settings (environment): BENCH_REDIS_URL (default redis://127.0.0.1:6379/14),
//! BENCH_SIZES (`1k,100k`), BENCH_SECONDS (20), BENCH_RATE (500), BENCH_CONNECTIONS (32),
//! BENCH_NAME_PERCENT (5), BENCH_TYPO_PERCENT (5), BENCH_CLEAN=1 (delete the orgs afterwards),
//! BENCH_DURING_REFRESH=1 (then, at each size, the fixed rate again while a full refresh from
//! the fakes of Salesforce and Account Engagement publishes the same org: `check` p99 during a
//! refresh).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod floor;
mod loadgen;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crm_username::domain::OrgSnapshot;
use crm_username::slack::signature::sign;
use crm_username::store::{RedisStore, Store};
use crm_username::synthetic::{Params, generate, username};
use floor::Process as Server;
use loadgen::{Kind, Mix, Report};

const SECRET: &str = "bench-signing-secret";
const SEED: u64 = 7;
/// Distinct prepared requests per run (cycled).
const DISTINCT_REQUESTS: usize = 20_000;
const BIN: &str = env!("CARGO_BIN_EXE_crm-username");

struct Settings {
    redis_url: String,
    sizes: Vec<(&'static str, usize, usize)>,
    duration: Duration,
    rate: u64,
    connections: usize,
    mix: Mix,
    clean: bool,
    during_refresh: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot read {v:?}")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let sizes = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "1k,100k".to_owned());
        Settings {
            redis_url: env_or("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14".to_owned()),
            sizes: sizes
                .split(',')
                .map(|s| match s.trim() {
                    "1k" => ("1k", 1_000, 200),
                    "100k" => ("100k", 100_000, 20_000),
                    other => panic!("BENCH_SIZES: {other:?} is not 1k or 100k"),
                })
                .collect(),
            duration: Duration::from_secs_f64(env_or("BENCH_SECONDS", 20.0_f64).clamp(1.0, 120.0)),
            rate: env_or("BENCH_RATE", 500_u64).clamp(1, 50_000),
            connections: env_or("BENCH_CONNECTIONS", 32_usize).clamp(1, 512),
            mix: Mix {
                name_percent: env_or("BENCH_NAME_PERCENT", 5),
                typo_percent: env_or("BENCH_TYPO_PERCENT", 5),
            },
            clean: std::env::var("BENCH_CLEAN").is_ok_and(|v| v == "1"),
            during_refresh: std::env::var("BENCH_DURING_REFRESH").is_ok_and(|v| v == "1"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var(floor::ENV) {
        floor::serve(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (scripts/test.sh) runs this
    // binary without it, and must not start a benchmark of minutes: tests/it/loadgen.rs covers
    // the load generator there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("the HTTP benchmark runs with `cargo bench --bench http`; nothing to do here");
        return;
    }
    crm_username::sources::install_crypto_provider();
    let settings = Settings::from_env();
    // The load generator gets one thread: the bot, the floor and Redis share the machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(settings));
}

struct SizeResult {
    label: &'static str,
    sf_users: usize,
    startup_ms: Vec<f64>,
    bot_fixed: Report,
    bot_max: Report,
    floor_fixed: Report,
    floor_max: Report,
    peak_rss_kb: Option<u64>,
}

async fn run(settings: Settings) {
    println!(
        "crm-username HTTP benchmark: {} s per run, fixed rate {}/s, {} connections for max, mix {}% usernames / {}% names / {}% typos, Redis {}",
        settings.duration.as_secs_f64(),
        settings.rate,
        settings.connections,
        100 - settings.mix.name_percent - settings.mix.typo_percent,
        settings.mix.name_percent,
        settings.mix.typo_percent,
        settings.redis_url
    );
    let mut results = Vec::new();
    for &(label, sf_users, ae_users) in &settings.sizes {
        results.push(bench_size(&settings, label, sf_users, ae_users).await);
    }
    print_tables(&settings, &results);
    if settings.clean {
        for &(label, ..) in &settings.sizes {
            clear_prefix(&settings.redis_url, &prefix(label)).await;
        }
        println!("deleted the benchmark orgs from Redis");
    }
}

fn prefix(label: &str) -> String {
    format!("bench-http:{label}:")
}

async fn bench_size(
    settings: &Settings,
    label: &'static str,
    sf_users: usize,
    ae_users: usize,
) -> SizeResult {
    let prefix = prefix(label);
    let snapshot = generate(Params {
        sf_users,
        ae_users,
        business_units: 3,
        seed: SEED,
    });
    let names: Vec<String> = snapshot
        .salesforce
        .users
        .iter()
        .map(|u| u.name.clone())
        .collect();
    ensure_published(&settings.redis_url, &prefix, snapshot, sf_users, ae_users).await;
    let queries = loadgen::queries(
        DISTINCT_REQUESTS,
        settings.mix,
        sf_users,
        SEED,
        username,
        |n| names[n].clone(),
    );

    // Start-up to ready, 5 times; the last one serves the load.
    let mut startup_ms = Vec::new();
    let mut bot = None;
    for i in 0..5 {
        let (server, took) = spawn_serve(&settings.redis_url, &prefix).await;
        startup_ms.push(took.as_secs_f64() * 1000.0);
        if i == 4 {
            bot = Some(server);
        }
    }
    let bot = bot.unwrap_or_else(|| unreachable!());
    println!(
        "[{label}] serve ready in {:.0}–{:.0} ms; loading it",
        startup_ms.iter().cloned().fold(f64::MAX, f64::min),
        startup_ms.iter().cloned().fold(0.0, f64::max)
    );
    let (bot_fixed, bot_max) = drive(settings, &bot.url, &queries, label, "bot").await;
    if settings.during_refresh {
        during_refresh(
            settings, &bot.url, &queries, label, sf_users, ae_users, &prefix,
        )
        .await;
    }
    let peak_rss_kb = vm_hwm_kb(bot.child.id());
    drop(bot);

    let floor = floor::spawn(&settings.redis_url, &format!("{prefix}current"));
    let (floor_fixed, floor_max) = drive(settings, &floor.url, &queries, label, "floor").await;
    drop(floor);
    SizeResult {
        label,
        sf_users,
        startup_ms,
        bot_fixed,
        bot_max,
        floor_fixed,
        floor_max,
        peak_rss_kb,
    }
}

/// Warm-up (2 s closed loop, which also loads "did you mean" data), then the fixed rate,
/// then the maximum.
async fn drive(
    settings: &Settings,
    url: &str,
    queries: &[(Kind, String)],
    label: &str,
    who: &str,
) -> (Report, Report) {
    let client = loadgen::client(settings.connections);
    let warm = loadgen::prepare(SECRET, queries, sign);
    let _ = loadgen::closed_loop(
        &client,
        url,
        warm,
        settings.connections,
        Duration::from_secs(2),
        1_000_000,
    )
    .await;
    let requests = loadgen::prepare(SECRET, queries, sign);
    let fixed = loadgen::open_loop(
        &client,
        url,
        requests,
        settings.rate,
        settings.duration,
        1_024,
    )
    .await;
    report_line(label, who, "fixed", &fixed);
    let requests = loadgen::prepare(SECRET, queries, sign);
    let max = loadgen::closed_loop(
        &client,
        url,
        requests,
        settings.connections,
        settings.duration,
        10_000_000,
    )
    .await;
    report_line(label, who, "max", &max);
    (fixed, max)
}

/// The fixed rate again while `crm-username refresh` (another process, as another replica would)
/// reads the same org from the fakes and publishes it into the cache `serve` answers from. The
/// load starts with the refresh and lasts as long as it does.
async fn during_refresh(
    settings: &Settings,
    url: &str,
    queries: &[(Kind, String)],
    label: &str,
    sf_users: usize,
    ae_users: usize,
    prefix: &str,
) {
    let dir = std::env::temp_dir().join(format!("crm-bench-refresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut fakes = Command::new(BIN)
        .args(["fakes", "--sf-users", &sf_users.to_string()])
        .args(["--ae-users", &ae_users.to_string(), "--business-units", "3"])
        .args(["--seed", &SEED.to_string(), "--settings-out"])
        .arg(dir.join("business-units.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN} fakes: {e}"));
    let mut env = Vec::new();
    let mut lines = BufReader::new(fakes.stdout.take().unwrap()).lines();
    while env.len() < 4 {
        let line = lines.next().expect("the fakes print 4 settings").unwrap();
        if let Some((name, value)) = line.split_once('=') {
            env.push((name.to_owned(), value.to_owned()));
        }
    }
    let client = loadgen::client(settings.connections);
    let started = Instant::now();
    let mut refresh = Command::new(BIN)
        .arg("refresh")
        .envs(env)
        .env("REDIS_URL", &settings.redis_url)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN} refresh: {e}"));
    // The load runs in slices until the refresh ends; every slice is one report.
    let mut slices = Vec::new();
    let status = loop {
        let requests = loadgen::prepare(SECRET, queries, sign);
        slices.push(
            loadgen::open_loop(
                &client,
                url,
                requests,
                settings.rate,
                Duration::from_secs(2),
                1_024,
            )
            .await,
        );
        if let Some(status) = refresh.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the refresh took over 2 minutes"
        );
    };
    let refresh_s = started.elapsed().as_secs_f64();
    let _ = fakes.kill();
    let _ = fakes.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let merged = Report::merge(slices);
    println!(
        "[{label}] refresh of {sf_users} SF / {ae_users} AE users from the fakes: {status}, {refresh_s:.1} s (load for {:.1} s)",
        merged.elapsed.as_secs_f64()
    );
    report_line(label, "bot", "fixed, during a refresh", &merged);
}

fn report_line(label: &str, who: &str, mode: &str, r: &Report) {
    println!(
        "[{label}] {who} {mode}: {} requests in {:.1} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, errors {}, deferred {}, not sent {}",
        r.requests(),
        r.elapsed.as_secs_f64(),
        r.throughput(),
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999),
        r.all.max() as f64 / 1000.0,
        r.errors,
        r.deferred,
        r.not_sent
    );
}

/// Publishes the org under `prefix` unless the marker says the same org is already there.
async fn ensure_published(
    url: &str,
    prefix: &str,
    snapshot: OrgSnapshot,
    sf_users: usize,
    ae_users: usize,
) {
    let marker_key = format!("{prefix}bench-org");
    let wanted = format!("sf={sf_users} ae={ae_users} bu=3 seed={SEED}");
    let store = Store::Redis(RedisStore::connect(url, prefix, Default::default()).unwrap());
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url}: {e}"));
    let marker: Option<String> = redis::cmd("GET")
        .arg(&marker_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let status = store.status().await.unwrap();
    if let (Some(marker), Some(generation)) = (&marker, &status.generation) {
        if *marker == format!("{wanted} generation={generation}") {
            println!("[{prefix}] reusing the org already in Redis ({wanted})");
            return;
        }
    }
    let started = Instant::now();
    store.publish(snapshot).await.unwrap();
    let generation = store.status().await.unwrap().generation.unwrap_or_default();
    let _: () = redis::cmd("SET")
        .arg(&marker_key)
        .arg(format!("{wanted} generation={generation}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    println!(
        "[{prefix}] published {wanted} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Deletes every key under `prefix` (SCAN, not KEYS).
async fn clear_prefix(url: &str, prefix: &str) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    crm_username::store::unlink_matching(&mut conn, &format!("{prefix}*"))
        .await
        .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts `crm-username serve` on a free port and waits (at most 10 s) until `/readyz`
/// answers 200; returns it and the time from spawn to ready.
async fn spawn_serve(redis_url: &str, prefix: &str) -> (Server, Duration) {
    let port = free_port();
    let mut command = Command::new(BIN);
    command.arg("serve");
    // No live data (no refresher) and no Slack other than the requests: only the cache.
    for (name, _) in std::env::vars() {
        if name.starts_with("SALESFORCE_")
            || name.starts_with("SLACK_")
            || name == "BUSINESS_UNITS_FILE"
        {
            command.env_remove(name);
        }
    }
    command
        .env("REDIS_URL", redis_url)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let child = command.spawn().unwrap_or_else(|e| panic!("{BIN}: {e}"));
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/slack/commands"),
    };
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(response) = probe.get(&ready).send().await {
            if response.status() == 200 {
                return (server, started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("crm-username serve was not ready within 10 s");
}

/// Peak resident set size (kB) of a process: VmHWM in /proc/<pid>/status.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let mut status = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut status))
        .ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn quantiles(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn print_tables(settings: &Settings, results: &[SizeResult]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n| org (SF users) | server | mode | requests/s | p50 ms | p99 ms | p99.9 ms | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in results {
        for (who, mode, report) in [
            ("bot", format!("fixed {}/s", settings.rate), &r.bot_fixed),
            (
                "floor",
                format!("fixed {}/s", settings.rate),
                &r.floor_fixed,
            ),
            (
                "bot",
                format!("max, {} conn.", settings.connections),
                &r.bot_max,
            ),
            (
                "floor",
                format!("max, {} conn.", settings.connections),
                &r.floor_max,
            ),
        ] {
            let _ = writeln!(
                out,
                "| {} ({}) | {who} | {mode} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                r.label,
                r.sf_users,
                report.throughput(),
                report.ms(0.5),
                report.ms(0.99),
                report.ms(0.999),
                report.errors + report.deferred + report.not_sent,
            );
        }
    }
    let _ = writeln!(out, "\np99 by kind of query (bot), ms:\n");
    let _ = writeln!(
        out,
        "| org | mode | {} |",
        Kind::ALL.map(Kind::label).join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in results {
        for (mode, report) in [("fixed", &r.bot_fixed), ("max", &r.bot_max)] {
            let cells: Vec<String> = Kind::ALL
                .iter()
                .map(|k| {
                    report
                        .kind_ms(*k, 0.99)
                        .map_or("—".to_owned(), |ms| format!("{ms:.2}"))
                })
                .collect();
            let _ = writeln!(out, "| {} | {mode} | {} |", r.label, cells.join(" | "));
        }
    }
    let _ = writeln!(
        out,
        "\n| org | start-up to ready ms (min / median / max of 5) | peak RSS of serve (VmHWM) | max throughput bot / floor | p99 at max bot / floor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in results {
        let (min, median, max) = quantiles(&r.startup_ms);
        let _ = writeln!(
            out,
            "| {} | {min:.0} / {median:.0} / {max:.0} | {} | {:.2} | {:.2} |",
            r.label,
            r.peak_rss_kb.map_or("—".to_owned(), |kb| format!(
                "{:.1} MB",
                kb as f64 / 1024.0
            )),
            r.bot_max.throughput() / r.floor_max.throughput().max(1e-9),
            r.bot_max.ms(0.99) / r.floor_max.ms(0.99).max(1e-9),
        );
    }
    if let [small, big] = results {
        let _ = writeln!(
            out,
            "\np99 at {} / p99 at {}: fixed rate {:.2}, max {:.2}",
            big.label,
            small.label,
            big.bot_fixed.ms(0.99) / small.bot_fixed.ms(0.99).max(1e-9),
            big.bot_max.ms(0.99) / small.bot_max.ms(0.99).max(1e-9),
        );
    }
}
