//! Refresh cost as the org grows (BENCHMARKS.md, "Refresh at scale"). Run:
//! `cargo bench --bench scale` (sizes with `BENCH_SCALE_SIZES=10k,100k,1m`).
//!
//! For each size it generates the bench org's shape (90% external users, AE users 4% of the
//! Salesforce users over 10 business units, as many `GroupMember` rows as users, assignments
//! nested five deep), serves it from `crm-username fakes` (another process, real paging), and
//! uses a Redis server of its own (started here, so that its memory is the cache's alone):
//!
//! 1. `crm-username refresh`: one full refresh; wall time and peak RSS (`/usr/bin/time`), the
//!    API calls it logged, and the Redis memory it took.
//! 2. `crm-username serve` with incremental refreshes every 5 s: a quiet incremental run
//!    (nothing changed); 500 signed `check` requests a second for 10 s with nothing else
//!    running (a refresher apart is paused: what checks cost on this machine at that
//!    moment), and right after, the same load for as long to the floor of `cargo bench
//!    --bench http` (one Redis GET of a short value and a small JSON answer, in another
//!    process, on the same Redis): the latency any service answering from Redis gets here at
//!    that moment, to read the checks' against. Then the checks for 20 s while the fakes
//!    change 1% of the internal users (and as many AE users and memberships): the incremental
//!    run that reads them (time, API calls, keys and records rewritten) and the checks' latency.
//! 3. The same load while a full refresh runs (`crm-username refresh` in another process, as
//!    another replica would; `serve` then refreshes in full too, as its generation was
//!    replaced): the checks' latency.
//!
//! The fakes and that other replica stand for other machines; sharing two cores with `serve`,
//! Redis and the load generator here, they run in the idle scheduling class (`chrt --idle 0`):
//! they get the CPU time the checks leave, as if they ran elsewhere.
//! 4. The same load to the floor while the same two kinds of refresh run (another 1% changed,
//!    then another replica's full refresh), `serve` idle: what any service answering from this
//!    Redis gets on these CPUs while they run (`BENCH_FLOOR_REFRESHES=0` skips these windows).
//! 5. `serve`'s resident memory (now and peak).
//!
//! `BENCH_REFRESHER=separate` (the default) runs the scheduled refresher as its own process,
//! `crm-username refresh --watch` in the idle class (another pod in production), and `serve`
//! with `REFRESH_IN_SERVE=false`; `BENCH_REFRESHER=serve` refreshes inside `serve`, as the
//! default settings do. The checks ask about users the warm-up did not ask about, so that
//! they read Redis (the replica's read cache would answer a repeated one from memory); the
//! table says how many were answered from memory all the same.
//!
//! Each window also says how much of the CPU time the hypervisor took (`steal` in
//! `/proc/stat`): on a shared virtual machine, time when nothing here runs, Redis included;
//! how many checks took over 2 ms; and what held Redis 2 ms or more (its slow log).
//!
//! The incremental and full windows also print a timeline: checks over 2 ms each second, at
//! the load generator and inside `serve`, and when each step of the full refreshes ended.
//! `BENCH_OTHER_REDIS=1` has the other process's full refresh write to a Redis of its own.
//!
//! Everything is on 127.0.0.1; every wait is bounded.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "http/floor.rs"]
mod floor;
#[path = "http/loadgen.rs"]
mod loadgen;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crm_username::slack::signature::sign;
use crm_username::synthetic::{Params, Variety, generate_with};
use loadgen::{Kind, Report};

const SECRET: &str = "bench-signing-secret";
const SEED: u64 = 7;
const BIN: &str = env!("CARGO_BIN_EXE_crm-username");
const INCREMENTAL_EVERY: &str = "5s";
/// The key the floor reads (not one of the cache's).
const FLOOR_KEY: &str = "bench-floor";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot read {v:?}")),
        Err(_) => default,
    }
}

fn main() {
    if let Ok(spec) = std::env::var(floor::ENV) {
        floor::serve(&spec);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("the scale benchmark runs with `cargo bench --bench scale`; nothing to do here");
        return;
    }
    crm_username::sources::install_crypto_provider();
    if let Some(cpus) = pinning() {
        // This process (the load generator) and every process it starts but `serve` (Redis,
        // the fakes, the refresher, the other replica): one CPU, `serve` the other.
        pin_self(cpus.others);
        println!(
            "pinned: serve on CPU {}, Redis, the load generator and the stand-ins on CPU {} (BENCH_PIN=1)",
            cpus.serve, cpus.others
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// Which CPU `serve` has to itself, and which one the rest shares.
#[derive(Clone, Copy)]
struct Cpus {
    serve: usize,
    others: usize,
}

/// `BENCH_PIN=1` (on two CPUs or more): in production Redis, the refresher, the APIs and
/// Slack run on other machines than a bot replica, so here they share one CPU and `serve` has
/// the other. The default, `BENCH_PIN=0`, lets the scheduler place everything on both (on this
/// machine the checks waited longer pinned: the load generator then shares Redis's CPU).
fn pinning() -> Option<Cpus> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (env_or("BENCH_PIN", 0u8) == 1 && cpus >= 2).then_some(Cpus {
        serve: 0,
        others: 1,
    })
}

fn pin_self(cpu: usize) {
    // SAFETY: `set` is a plain bit set on the stack, initialised by CPU_ZERO, and pid 0 is
    // this thread (before the runtime starts, the only one; children inherit it).
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        pinned,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

struct Size {
    label: String,
    sf_users: usize,
}

fn sizes() -> Vec<Size> {
    let spec = std::env::var("BENCH_SCALE_SIZES").unwrap_or_else(|_| "10k,100k,1m".to_owned());
    spec.split(',')
        .map(|s| {
            let s = s.trim().to_lowercase();
            let n = match s.strip_suffix('k') {
                Some(k) => k.parse::<usize>().map(|k| k * 1_000),
                None => match s.strip_suffix('m') {
                    Some(m) => m.parse::<usize>().map(|m| m * 1_000_000),
                    None => s.parse::<usize>(),
                },
            }
            .unwrap_or_else(|_| panic!("BENCH_SCALE_SIZES: {s:?} is not like 10k or 1m"));
            Size {
                label: s,
                sf_users: n,
            }
        })
        .collect()
}

#[derive(Default)]
struct Row {
    label: String,
    internal_users: usize,
    ae_users: usize,
    full_wall_s: f64,
    full_rss_mb: f64,
    full_sf_calls: u64,
    full_ae_calls: u64,
    redis_mb: f64,
    quiet: Option<Incremental>,
    changed: Option<Incremental>,
    quiet_checks: Option<Report>,
    /// The same load sent to the floor right after the quiet checks, and again while each
    /// kind of refresh runs (quiet, incremental, full): what any service answering from this
    /// Redis, on these CPUs, gets at those moments.
    floor_checks: [Option<Report>; 3],
    checks_during_incremental: Option<Report>,
    checks_during_full: Option<Report>,
    /// Percent of the machine's CPU time the hypervisor took during each window (quiet,
    /// incremental, full): on a virtual machine, time when nothing here ran at all.
    steal: [f64; 3],
    serve_full_s: Option<f64>,
    serve_rss_mb: f64,
    serve_peak_rss_mb: f64,
    /// (now, peak) of `refresh --watch`, when it ran apart from `serve`.
    refresher_rss_mb: Option<(f64, f64)>,
    /// Checks answered from the replica's read cache, of all checks.
    cache_hits: Option<(u64, u64)>,
}

/// What held Redis 2 ms or more during a window (its slow log).
#[derive(Debug, Clone, Default)]
struct Stalls {
    count: usize,
    total_ms: f64,
    /// The longest three: command name and time.
    longest: Vec<String>,
    /// The commands that took the most time in all: how many, name, total.
    by_command: Vec<String>,
}

impl std::fmt::Display for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} commands held Redis 2 ms or more, {:.0} ms in all",
            self.count, self.total_ms
        )?;
        if !self.longest.is_empty() {
            write!(
                f,
                " (longest: {}; most in all: {})",
                self.longest.join(", "),
                self.by_command.join(", ")
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Incremental {
    ms: u64,
    sf_calls: u64,
    ae_calls: u64,
    writes: u64,
}

/// Where the scheduled refresher runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresher {
    /// `refresh --watch`, a process of its own; `serve` with `REFRESH_IN_SERVE=false`.
    Separate,
    /// Inside `serve`.
    InServe,
}

fn refresher() -> Refresher {
    match std::env::var("BENCH_REFRESHER").as_deref() {
        Ok("serve") => Refresher::InServe,
        Ok("separate") | Err(_) => Refresher::Separate,
        Ok(other) => panic!("BENCH_REFRESHER: {other:?} is neither separate nor serve"),
    }
}

async fn run() {
    let rate: u64 = env_or("BENCH_RATE", 500);
    let seconds: f64 = env_or("BENCH_SECONDS", 20.0);
    let change_percent: u32 = env_or("BENCH_CHANGE_PERCENT", 1);
    println!(
        "crm-username scale benchmark: checks at {rate}/s for {seconds} s per window, {change_percent}% of internal users changed"
    );
    let mut rows = Vec::new();
    for size in sizes() {
        rows.push(bench_size(&size, rate, seconds, change_percent).await);
    }
    print_table(&rows, rate);
}

fn ae_users_for(sf_users: usize) -> usize {
    (sf_users * 4 / 100).max(10)
}

async fn bench_size(size: &Size, rate: u64, seconds: f64, change_percent: u32) -> Row {
    let label = &size.label;
    let ae_users = ae_users_for(size.sf_users);
    let dir = std::env::temp_dir().join(format!("crm-bench-scale-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The internal users' usernames, for the checks: the refresh caches only those.
    let org = generate_with(
        Params {
            sf_users: size.sf_users,
            ae_users,
            business_units: 10,
            seed: SEED,
        },
        bench_variety(size.sf_users),
    );
    let internal: Vec<String> = org
        .salesforce
        .users
        .iter()
        .filter(|u| u.is_internal())
        .map(|u| u.username.clone())
        .collect();
    drop(org);
    // The measured checks ask about the first half of the internal users, the warm-up about
    // the second half.
    let half = (internal.len() / 2).max(1);
    let pick = |i: usize, offset: usize| {
        (
            Kind::Username,
            internal[(offset + (i * 7919) % half) % internal.len()].clone(),
        )
    };
    let queries: Vec<(Kind, String)> = (0..20_000).map(|i| pick(i, 0)).collect();
    let quiet_queries: Vec<(Kind, String)> = (20_000..40_000).map(|i| pick(i, 0)).collect();
    let warm_queries: Vec<(Kind, String)> = (0..20_000).map(|i| pick(i, half)).collect();
    println!(
        "[{label}] {} internal users of {}",
        internal.len(),
        size.sf_users
    );

    let redis = RedisServer::start(&dir);
    let before = redis.used_memory();
    let (mut fakes, env) = start_fakes(size.sf_users, ae_users, change_percent, &dir);

    // 1. One full refresh, alone.
    let time_file = dir.join("time");
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&time_file)
        .arg(BIN)
        .arg("refresh")
        .envs(env.iter().cloned())
        .env("REDIS_URL", redis.url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "refresh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let time = std::fs::read_to_string(&time_file).unwrap();
    let mut time = time.split_whitespace();
    let full_wall_s: f64 = time.next().unwrap().parse().unwrap();
    let full_rss_mb = time.next().unwrap().parse::<f64>().unwrap() / 1024.0;
    // "… in 1.2 s with 66 Salesforce and 10 Account Engagement API calls"
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    let calls: Vec<u64> = said
        .rsplit_once(" s with ")
        .map(|(_, tail)| {
            tail.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (full_sf_calls, full_ae_calls) = match calls[..] {
        [sf, ae, ..] => (sf, ae),
        _ => panic!(
            "the refresh says its API calls: {said}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    };
    let redis_mb = (redis.used_memory() - before) as f64 / 1_048_576.0;
    println!(
        "[{label}] full refresh: {full_wall_s:.1} s, {full_rss_mb:.0} MB peak RSS, {full_sf_calls} + {full_ae_calls} API calls, Redis {redis_mb:.0} MB"
    );

    // 2. serve, and the refresher refreshing incrementally (in serve, or apart).
    let place = refresher();
    let serve_log = dir.join("serve.log");
    let (mut serve, url) = start_serve(&env, &redis.url(), &serve_log, place).await;
    let (mut watcher, refresher_log) = match place {
        Refresher::InServe => (None, serve_log.clone()),
        Refresher::Separate => {
            let log = dir.join("refresher.log");
            (Some(start_watcher(&env, &redis.url(), &log)), log)
        }
    };
    let mut log = LogTail::new(&refresher_log);
    // It refreshes in full first (the data in the cache is another process's), then
    // incrementally.
    let serve_full = log
        .wait_for("refresh published a new snapshot", Duration::from_secs(300))
        .expect("the refresher refreshes in full first");
    let quiet = log
        .wait_for(INCREMENTAL_MESSAGE, Duration::from_secs(60))
        .map(|v| incremental_of(&v));
    println!("[{label}] quiet incremental refresh: {quiet:?}");

    let client = loadgen::client(32);
    let warm = loadgen::prepare(SECRET, &warm_queries, sign);
    let _ = loadgen::closed_loop(&client, &url, warm, 16, Duration::from_secs(2), 1_000_000).await;

    // The checks with nothing else running: what they cost on this machine at this moment, to
    // set the windows below against. A refresher apart is paused meanwhile (SIGSTOP); one in
    // `serve` keeps running its incremental runs (they find nothing to change).
    let window = Duration::from_secs_f64(seconds);
    let requests = loadgen::prepare(SECRET, &quiet_queries, sign);
    let signal = |pid: u32, signal: &str| {
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    };
    if let Some(watcher) = &watcher {
        signal(watcher.id(), "-STOP");
    }
    let cpu = CpuTimes::now();
    redis.reset_stalls();
    let server = ServerTimes::now(&url, serve.id()).await;
    let quiet_checks =
        loadgen::open_loop(&client, &url, requests.clone(), rate, window / 2, 1_024).await;
    let quiet_steal = cpu.stolen_percent();
    let quiet_stalls = redis.stalls();
    let quiet_server = ServerTimes::since(&server, &url, serve.id()).await;
    println!(
        "[{label}] checks with nothing to refresh: p50 {:.2} ms, p99 {:.2} ms, {} of {} over 2 ms ({quiet_steal:.0}% of the CPU time stolen by the host); {quiet_server}; {quiet_stalls}",
        quiet_checks.ms(0.5),
        quiet_checks.ms(0.99),
        over(&quiet_checks, 2.0),
        quiet_checks.requests()
    );
    // The same load, at once, to the floor (one Redis GET of a short value, a small JSON
    // answer), `serve` idle: what this machine gives any service answering from Redis now.
    let floor_checks = {
        redis.set(FLOOR_KEY, "a-generation-id-of-the-usual-length");
        let floor = floor::spawn(&redis.url(), FLOOR_KEY);
        let cpu = CpuTimes::now();
        let checks =
            loadgen::open_loop(&client, &floor.url, requests, rate, window / 2, 1_024).await;
        println!(
            "[{label}] the same load to the floor: p50 {:.2} ms, p99 {:.2} ms, {} of {} over 2 ms ({:.0}% stolen)",
            checks.ms(0.5),
            checks.ms(0.99),
            over(&checks, 2.0),
            checks.requests(),
            cpu.stolen_percent()
        );
        checks
    };
    if let Some(watcher) = &watcher {
        signal(watcher.id(), "-CONT");
    }

    // The checks while the changes are read: the signal lands one second into the window.
    let requests = loadgen::prepare(SECRET, &queries, sign);
    let cpu = CpuTimes::now();
    redis.reset_stalls();
    let fakes_pid = fakes.id();
    // The fakes change 1% of the org one second into a window.
    let change_in_a_second = || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal(fakes_pid, "-USR1");
    };
    let server = ServerTimes::now(&url, serve.id()).await;
    let (during_incremental, (), incremental_in_serve) = tokio::join!(
        loadgen::open_loop(&client, &url, requests, rate, window, 1_024),
        change_in_a_second(),
        ServerTimes::timeline(&url, serve.id(), window)
    );
    let incremental_steal = cpu.stolen_percent();
    let incremental_stalls = redis.stalls();
    let incremental_server = ServerTimes::since(&server, &url, serve.id()).await;
    let changed = log.largest_incremental();
    println!(
        "[{label}] incremental refresh with the changes: {changed:?}; checks p99 {:.2} ms, {} of {} over 2 ms ({incremental_steal:.0}% stolen); {incremental_server}; {incremental_stalls}",
        during_incremental.ms(0.99),
        over(&during_incremental, 2.0),
        during_incremental.requests()
    );
    println!(
        "[{label}] incremental window, checks over 2 ms each second: {}; in serve: {incremental_in_serve}",
        during_incremental.slow_timeline()
    );

    // 3. The checks while a full refresh runs in another process (and then in serve).
    let requests = loadgen::prepare(SECRET, &queries, sign);
    let full_window = Duration::from_secs_f64(seconds.max(full_wall_s * 2.0 + 5.0));
    let other_log = dir.join("other-replica.log");
    // An experiment: `BENCH_OTHER_REDIS=1` has the other replica write to a Redis server of
    // its own, so that only its CPU time, not its writes, meets the checks.
    let own_redis = (env_or("BENCH_OTHER_REDIS", 0u8) == 1).then(|| {
        let dir = dir.join("other-redis");
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer::start(&dir)
    });
    let other_redis_url = own_redis.as_ref().unwrap_or(&redis).url();
    let other = other_replica_refresh(env.clone(), other_redis_url.clone(), other_log.clone());
    let cpu = CpuTimes::now();
    redis.reset_stalls();
    let server = ServerTimes::now(&url, serve.id()).await;
    let full_started = chrono::Utc::now();
    let (during_full, status, full_in_serve) = tokio::join!(
        loadgen::open_loop(&client, &url, requests, rate, full_window, 1_024),
        other,
        ServerTimes::timeline(&url, serve.id(), full_window)
    );
    let full_steal = cpu.stolen_percent();
    let full_stalls = redis.stalls();
    let full_server = ServerTimes::since(&server, &url, serve.id()).await;
    assert!(
        status.success(),
        "the other replica's refresh failed: {}",
        std::fs::read_to_string(&other_log).unwrap_or_default()
    );
    println!(
        "[{label}] checks during full refreshes: p99 {:.2} ms, {} of {} over 2 ms ({full_steal:.0}% stolen); {full_server}; {full_stalls}",
        during_full.ms(0.99),
        over(&during_full, 2.0),
        during_full.requests()
    );
    println!(
        "[{label}] full window, checks over 2 ms each second: {}; in serve: {full_in_serve}; the other replica's refresh {}; the refresher's {}",
        during_full.slow_timeline(),
        refreshes_since(&other_log, full_started),
        refreshes_since(&refresher_log, full_started),
    );

    // 4. The same load to the floor while the same two kinds of refresh run, `serve` idle:
    // what any service answering from this Redis gets on these CPUs meanwhile, to read the
    // checks' windows against. First the refresher's own full refresh (the other replica
    // replaced its generation) and its next incremental run end, as before the checks'.
    let (floor_incremental, floor_full) = if env_or("BENCH_FLOOR_REFRESHES", 1u8) == 1 {
        let _ = log.wait_for("refresh published a new snapshot", Duration::from_secs(120));
        let _ = log.wait_for(INCREMENTAL_MESSAGE, Duration::from_secs(60));
        let floor = floor::spawn(&redis.url(), FLOOR_KEY);
        let requests = loadgen::prepare(SECRET, &queries, sign);
        let cpu = CpuTimes::now();
        let (incremental, ()) = tokio::join!(
            loadgen::open_loop(&client, &floor.url, requests.clone(), rate, window, 1_024),
            change_in_a_second()
        );
        let changed = log.largest_incremental();
        println!(
            "[{label}] the floor during an incremental refresh ({changed:?}): p99 {:.2} ms, {} of {} over 2 ms ({:.0}% stolen); over 2 ms each second: {}",
            incremental.ms(0.99),
            over(&incremental, 2.0),
            incremental.requests(),
            cpu.stolen_percent(),
            incremental.slow_timeline()
        );
        let cpu = CpuTimes::now();
        let started = chrono::Utc::now();
        let (full, status) = tokio::join!(
            loadgen::open_loop(&client, &floor.url, requests, rate, full_window, 1_024),
            other_replica_refresh(env.clone(), other_redis_url, other_log.clone())
        );
        println!(
            "[{label}] the floor during full refreshes (the other replica's {}): p99 {:.2} ms, {} of {} over 2 ms ({:.0}% stolen); over 2 ms each second: {}; the other replica's refresh {}",
            if status.success() {
                "succeeded"
            } else {
                "failed"
            },
            full.ms(0.99),
            over(&full, 2.0),
            full.requests(),
            cpu.stolen_percent(),
            full.slow_timeline(),
            refreshes_since(&other_log, started),
        );
        (Some(incremental), Some(full))
    } else {
        (None, None)
    };

    let (serve_rss_mb, serve_peak_rss_mb) = memory_mb(serve.id());
    let refresher_rss_mb = watcher.as_ref().map(|w| memory_mb(w.id()));
    let cache_hits = read_cache_counts(&url).await;
    let _ = serve.kill();
    let _ = serve.wait();
    if let Some(watcher) = watcher.as_mut() {
        let _ = watcher.kill();
        let _ = watcher.wait();
    }
    let _ = fakes.kill();
    let _ = fakes.wait();
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        label: label.clone(),
        internal_users: internal.len(),
        ae_users,
        full_wall_s,
        full_rss_mb,
        full_sf_calls,
        full_ae_calls,
        redis_mb,
        quiet,
        changed,
        quiet_checks: Some(quiet_checks),
        floor_checks: [Some(floor_checks), floor_incremental, floor_full],
        checks_during_incremental: Some(during_incremental),
        checks_during_full: Some(during_full),
        steal: [quiet_steal, incremental_steal, full_steal],
        serve_full_s: serve_full["duration_ms"].as_f64().map(|ms| ms / 1000.0),
        serve_rss_mb,
        serve_peak_rss_mb,
        refresher_rss_mb,
        cache_hits,
    }
}

/// A full refresh by another replica: `crm-username refresh` in the idle class (on another
/// machine in production). It skips while the refresher holds the refresh lock (an
/// incremental run that is late), so it tries again for up to a minute.
async fn other_replica_refresh(
    env: Vec<(String, String)>,
    redis_url: String,
    log: PathBuf,
) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let status = Command::new("chrt")
                .args(["--idle", "0", BIN])
                .arg("refresh")
                .envs(env.iter().cloned())
                .env("REDIS_URL", &redis_url)
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", REFRESH_STEPS_LOG)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .status()
                .unwrap();
            let skipped = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("another replica is refreshing");
            if status.success() || !skipped || started.elapsed() > Duration::from_secs(60) {
                return status;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap()
}

/// `serve`'s `/metrics` text (empty when it cannot be read).
async fn metrics_text(commands_url: &str) -> String {
    // One client for every read: building one costs CPU time (its TLS set-up), which the
    // windows' once-a-second reads would take from the checks.
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
    });
    let metrics_url = commands_url.replace("/slack/commands", "/metrics");
    let response = CLIENT.get(metrics_url).send().await;
    match response {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// (hits, hits + misses) of the replica's read cache, from its `/metrics`.
async fn read_cache_counts(commands_url: &str) -> Option<(u64, u64)> {
    let text = metrics_text(commands_url).await;
    let count = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("crm_username_check_read_cache_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    };
    let (hits, misses) = (count("hit"), count("miss"));
    (hits + misses > 0).then_some((hits, hits + misses))
}

/// The time `serve` itself took over slash commands (its request-duration histogram, from
/// the request's arrival in the router to its response): what the load generator measures
/// less the HTTP connection, the loopback and its own scheduling. Read at a window's start
/// and end; the difference is the window's.
struct ServerTimes {
    /// (upper bound in seconds, requests at or under it), as Prometheus counts them.
    buckets: Vec<(f64, u64)>,
    /// `serve`'s CPU time (user + system) so far, in clock ticks.
    cpu_ticks: u64,
}

/// A process's CPU time (user + system) so far, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    fields.iter().sum()
}

impl ServerTimes {
    async fn now(commands_url: &str, pid: u32) -> Self {
        let text = metrics_text(commands_url).await;
        let buckets = text
            .lines()
            .filter(|l| {
                l.starts_with("crm_username_http_request_duration_seconds_bucket")
                    && l.contains("route=\"/slack/commands\"")
            })
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let count = l.rsplit(' ').next()?.parse::<f64>().ok()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count as u64))
            })
            .collect();
        ServerTimes {
            buckets,
            cpu_ticks: cpu_ticks(pid),
        }
    }

    /// Requests so far that took over 2 ms.
    fn over_2ms(&self) -> u64 {
        let all = self.buckets.last().map_or(0, |&(_, c)| c);
        all.saturating_sub(count_at(&self.buckets, 0.002))
    }

    /// Requests over 2 ms inside `serve` in each second of the next `window`, as text (`.`
    /// for none), read from its histogram once a second.
    async fn timeline(commands_url: &str, pid: u32, window: Duration) -> String {
        let start = Instant::now();
        let mut last = ServerTimes::now(commands_url, pid).await.over_2ms();
        let mut counts = Vec::new();
        for second in 1..=window.as_secs() {
            tokio::time::sleep_until((start + Duration::from_secs(second)).into()).await;
            let now = ServerTimes::now(commands_url, pid).await.over_2ms();
            counts.push(now.saturating_sub(last));
            last = now;
        }
        loadgen::timeline(counts)
    }

    /// "N of M over 2 ms, 99% under X ms" for the requests since `start`.
    async fn since(start: &ServerTimes, commands_url: &str, pid: u32) -> String {
        let end = ServerTimes::now(commands_url, pid).await;
        let before = |le: f64| {
            start
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |(_, c)| *c)
        };
        let window: Vec<(f64, u64)> = end
            .buckets
            .iter()
            .map(|&(le, c)| (le, c.saturating_sub(before(le))))
            .collect();
        let total = window.last().map_or(0, |&(_, c)| c);
        let at_2ms = count_at(&window, 0.002);
        let p99_bound = window
            .iter()
            .find(|&&(_, c)| c as f64 >= 0.99 * total as f64)
            .map_or(f64::INFINITY, |&(le, _)| le * 1000.0);
        // Clock ticks are 10 ms on Linux (USER_HZ 100).
        let cpu_ms = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 * 10.0;
        format!(
            "in serve: {} of {total} over 2 ms, p99 at most {p99_bound} ms, {:.0} µs of CPU a check",
            total - at_2ms,
            1000.0 * cpu_ms / total.max(1) as f64
        )
    }
}

/// Requests at or under the bucket bound `le` (seconds) in Prometheus buckets.
fn count_at(buckets: &[(f64, u64)], le: f64) -> u64 {
    buckets
        .iter()
        .find(|(l, _)| (*l - le).abs() < 1e-9)
        .map_or(0, |&(_, c)| c)
}

/// `crm-username refresh --watch` at a lower priority: the refresher as another pod.
fn start_watcher(env: &[(String, String)], redis_url: &str, log: &Path) -> Child {
    let mut command = Command::new("chrt");
    command.args(["--idle", "0", BIN, "refresh", "--watch"]);
    long_running(&mut command, env, redis_url, free_port(), log)
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN} refresh --watch: {e}"))
}

/// The settings `serve` and `refresh --watch` share here: the fakes' settings, Redis, a port,
/// JSON logs to `log`, a full refresh hourly and incremental ones every `INCREMENTAL_EVERY`.
fn long_running<'a>(
    command: &'a mut Command,
    env: &[(String, String)],
    redis_url: &str,
    port: u16,
    log: &Path,
) -> &'a mut Command {
    command
        .envs(env.iter().cloned())
        .env("REDIS_URL", redis_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", REFRESH_STEPS_LOG)
        .env("REFRESH_INTERVAL", "1h")
        .env("REFRESH_INCREMENTAL_INTERVAL", INCREMENTAL_EVERY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
}

/// The log filter of the refreshing processes: their steps' debug lines (`refreshes_since`).
const REFRESH_STEPS_LOG: &str = "info,crm_username::refresh=debug,crm_username::store::redis_store::publish=debug,crm_username::store::redis_store::patch=debug,crm_username::store::redis_store::in_place=debug";

const INCREMENTAL_MESSAGE: &str = "incremental refresh brought the cache up to date";

fn incremental_of(v: &serde_json::Value) -> Incremental {
    Incremental {
        ms: v["duration_ms"].as_u64().unwrap_or(0),
        sf_calls: v["salesforce_api_calls"].as_u64().unwrap_or(0),
        ae_calls: v["account_engagement_api_calls"].as_u64().unwrap_or(0),
        writes: v["writes"].as_u64().unwrap_or(0),
    }
}

/// The bench org's shape at any size.
fn bench_variety(sf_users: usize) -> Variety {
    Variety {
        external_percent: 90,
        sales_section: true,
        group_members: sf_users,
    }
}

fn start_fakes(
    sf_users: usize,
    ae_users: usize,
    change_percent: u32,
    dir: &Path,
) -> (Child, Vec<(String, String)>) {
    // The fakes stand for Salesforce and Account Engagement, which run on other machines:
    // here they share two cores with everything else, so they run at a lower priority.
    let mut fakes = Command::new("chrt")
        .args(["--idle", "0", BIN])
        .args(["fakes", "--sf-users", &sf_users.to_string()])
        .args(["--external-percent", "90", "--sales-section"])
        .args(["--group-members", &sf_users.to_string()])
        .args([
            "--ae-users",
            &ae_users.to_string(),
            "--business-units",
            "10",
        ])
        .args(["--seed", &SEED.to_string()])
        .args(["--change-on-signal", &change_percent.to_string()])
        .arg("--settings-out")
        .arg(dir.join("business-units.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("fakes.log")).unwrap())
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
    (fakes, env)
}

async fn start_serve(
    env: &[(String, String)],
    redis_url: &str,
    log: &Path,
    place: Refresher,
) -> (Child, String) {
    let port = free_port();
    let mut command = match pinning() {
        Some(cpus) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &cpus.serve.to_string(), BIN]);
            taskset
        }
        None => Command::new(BIN),
    };
    command
        .arg("serve")
        .env(
            "REFRESH_IN_SERVE",
            (place == Refresher::InServe).to_string(),
        )
        .env("SLACK_SIGNING_SECRET", SECRET);
    let mut child = long_running(&mut command, env, redis_url, port, log)
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN} serve: {e}"));
    let ready = format!("http://127.0.0.1:{port}/healthz");
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if probe
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return (child, format!("http://127.0.0.1:{port}/slack/commands"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("crm-username serve did not answer within 30 s");
}

/// Reads a JSON log file as it grows.
struct LogTail {
    path: PathBuf,
    seen: usize,
    started: usize,
}

impl LogTail {
    fn new(path: &Path) -> Self {
        LogTail {
            path: path.to_owned(),
            seen: 0,
            started: 0,
        }
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            let _ = file.read_to_string(&mut text);
        }
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The next line with `message` after those seen, waiting up to `limit`.
    fn wait_for(&mut self, message: &str, limit: Duration) -> Option<serde_json::Value> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let lines = self.lines();
            if let Some((i, v)) = lines
                .iter()
                .enumerate()
                .skip(self.seen)
                .find(|(_, v)| v["message"] == message)
            {
                self.seen = i + 1;
                self.started = self.seen;
                return Some(v.clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The incremental run since the last `wait_for` that rewrote the most keys.
    fn largest_incremental(&mut self) -> Option<Incremental> {
        self.all_since_start(INCREMENTAL_MESSAGE)
            .into_iter()
            .map(|v| incremental_of(&v))
            .max_by_key(|i| i.writes)
    }

    /// Every line with `message` since the last `wait_for`.
    fn all_since_start(&mut self, message: &str) -> Vec<serde_json::Value> {
        let lines = self.lines();
        let found = lines
            .iter()
            .skip(self.started)
            .filter(|v| v["message"] == message)
            .cloned()
            .collect();
        self.seen = lines.len();
        self.started = lines.len();
        found
    }
}

/// When the steps of the full refreshes logged in `log` since `since` ended, in seconds from
/// `since` (their debug lines: read, indexed, old deleted, written or rewritten in place with
/// the number of keys, done).
fn refreshes_since(log: &Path, since: chrono::DateTime<chrono::Utc>) -> String {
    const STEPS: [(&str, &str); 6] = [
        ("full refresh read every source", "read"),
        ("full refresh indexed the org", "indexed"),
        ("publish deleted the older generations", "old deleted"),
        ("publish wrote the generation", "written"),
        (
            "full refresh rewrote the generation in place",
            "keys rewritten in place",
        ),
        ("refresh published a new snapshot", "done"),
    ];
    LogTail::new(log)
        .lines()
        .into_iter()
        .filter_map(|v| {
            let step = STEPS.iter().find(|(m, _)| v["message"] == *m)?.1;
            let at: chrono::DateTime<chrono::Utc> = v["timestamp"].as_str()?.parse().ok()?;
            let at_s = (at - since).num_milliseconds() as f64 / 1000.0;
            let keys = v["keys"]
                .as_u64()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default();
            (at_s > 0.0).then(|| format!("{step}{keys} {at_s:.1}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Redis server of this run's own, with no persistence.
struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                // Every command that held Redis 2 ms or more: what a check may wait behind.
                "--slowlog-log-slower-than",
                "2000",
                "--slowlog-max-len",
                "100000",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let pong = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
            if pong {
                return RedisServer { port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on {port} did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a window: forgets the commands logged so far.
    fn reset_stalls(&self) {
        let _ = self.query::<()>(redis::cmd("SLOWLOG").arg("RESET"));
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        redis::Client::open(self.url())?
            .get_connection()
            .and_then(|mut c| cmd.query(&mut c))
    }

    fn set(&self, key: &str, value: &str) {
        self.query::<()>(redis::cmd("SET").arg(key).arg(value))
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
    }

    /// The commands that held Redis 2 ms or more since the last reset: how many, their total
    /// and longest time, and the names of the longest three.
    fn stalls(&self) -> Stalls {
        let entries: Vec<redis::Value> = self
            .query(redis::cmd("SLOWLOG").arg("GET").arg(100_000))
            .unwrap_or_default();
        // Each entry: id, timestamp, microseconds, the command's words, client, client name.
        let mut stalls: Vec<(i64, String)> = entries
            .into_iter()
            .filter_map(|entry| match entry {
                redis::Value::Array(fields) => match (fields.get(2), fields.get(3)) {
                    (Some(redis::Value::Int(us)), Some(redis::Value::Array(words))) => {
                        let word = |i: usize| match words.get(i) {
                            Some(redis::Value::BulkString(w)) => {
                                String::from_utf8_lossy(w).into_owned()
                            }
                            _ => "?".to_owned(),
                        };
                        // A script by how many keys it named: a check's names a few, a
                        // patch's hundreds or thousands.
                        let name = match word(0).to_ascii_uppercase().as_str() {
                            "EVALSHA" | "EVAL" => format!("{} ({} keys)", word(0), word(2)),
                            _ => word(0),
                        };
                        Some((*us, name))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        stalls.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut by_command: Vec<(String, usize, i64)> = Vec::new();
        for (us, name) in &stalls {
            match by_command.iter_mut().find(|(n, _, _)| n == name) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += us;
                }
                None => by_command.push((name.clone(), 1, *us)),
            }
        }
        by_command.sort_by_key(|c| std::cmp::Reverse(c.2));
        Stalls {
            count: stalls.len(),
            total_ms: stalls.iter().map(|s| s.0).sum::<i64>() as f64 / 1000.0,
            longest: stalls
                .iter()
                .take(3)
                .map(|(us, name)| format!("{name} {:.1} ms", *us as f64 / 1000.0))
                .collect(),
            by_command: by_command
                .into_iter()
                .take(4)
                .map(|(name, n, us)| format!("{n} {name} {:.0} ms", us as f64 / 1000.0))
                .collect(),
        }
    }

    fn used_memory(&self) -> i64 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "info", "memory"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The machine's CPU time counters (`/proc/stat`), to tell how much of a window the
/// hypervisor took (`steal`): on a shared host it stalls everything here, Redis included.
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|n| n.parse().ok())
            .collect();
        CpuTimes {
            total: fields.iter().sum(),
            steal: fields.get(7).copied().unwrap_or(0),
        }
    }

    fn stolen_percent(&self) -> f64 {
        let now = CpuTimes::now();
        let total = now.total.saturating_sub(self.total).max(1);
        100.0 * now.steal.saturating_sub(self.steal) as f64 / total as f64
    }
}

/// (VmRSS, VmHWM) of a process, in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How many checks of a window took longer than `ms`.
fn over(report: &Report, ms: f64) -> u64 {
    let above = (ms * 1000.0) as u64;
    report
        .all
        .iter_recorded()
        .filter(|v| v.value_iterated_to() > above)
        .map(|v| v.count_at_value())
        .sum()
}

fn print_table(rows: &[Row], rate: u64) {
    println!(
        "\n| org (SF users) | internal / AE users | full refresh: wall, peak RSS | full: SF + AE API calls | Redis memory | incremental, nothing changed: time, calls | incremental, 1% changed: time, calls, keys and records rewritten | check p99 at {rate}/s: no change / incremental / full refresh (CPU stolen by the host) | floor p99 at {rate}/s, same run: no change / incremental / full refresh | serve RSS now / peak | refresher RSS now / peak | checks from the read cache |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let inc = |i: &Option<Incremental>, writes: bool| match i {
            Some(i) if writes => format!(
                "{:.2} s, {} + {} calls, {} written",
                i.ms as f64 / 1000.0,
                i.sf_calls,
                i.ae_calls,
                i.writes
            ),
            Some(i) => format!(
                "{:.2} s, {} + {} calls",
                i.ms as f64 / 1000.0,
                i.sf_calls,
                i.ae_calls
            ),
            None => "—".to_owned(),
        };
        let p99 = |r: &Option<Report>| {
            r.as_ref()
                .map_or("—".to_owned(), |r| format!("{:.2}", r.ms(0.99)))
        };
        println!(
            "| {} | {} / {} | {:.1} s, {:.0} MB | {} + {} | {:.0} MB | {} | {} | {} / {} / {} ms ({:.0}% / {:.0}% / {:.0}%) | {} / {} / {} ms | {:.0} / {:.0} MB | {} | {} |",
            r.label,
            r.internal_users,
            r.ae_users,
            r.full_wall_s,
            r.full_rss_mb,
            r.full_sf_calls,
            r.full_ae_calls,
            r.redis_mb,
            inc(&r.quiet, false),
            inc(&r.changed, true),
            p99(&r.quiet_checks),
            p99(&r.checks_during_incremental),
            p99(&r.checks_during_full),
            r.steal[0],
            r.steal[1],
            r.steal[2],
            p99(&r.floor_checks[0]),
            p99(&r.floor_checks[1]),
            p99(&r.floor_checks[2]),
            r.serve_rss_mb,
            r.serve_peak_rss_mb,
            r.refresher_rss_mb
                .map_or("in serve".to_owned(), |(now, peak)| format!(
                    "{now:.0} / {peak:.0} MB"
                )),
            r.cache_hits
                .map_or("—".to_owned(), |(hits, all)| format!("{hits} of {all}")),
        );
    }
    for r in rows {
        if let Some(s) = r.serve_full_s {
            println!(
                "[{}] the refresher's own full refresh took {s:.1} s",
                r.label
            );
        }
    }
}
