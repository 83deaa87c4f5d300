//! The load generator of `cargo bench --bench http`: signed Slack slash commands sent over
//! HTTP/1.1 keep-alive connections to 127.0.0.1, in two modes.
//!
//! - **Open loop** (`open_loop`): requests are due at a fixed rate whatever the server does;
//!   each latency is measured from the time the request was *due*, not from when it could be
//!   sent, so a slow server cannot hide its queueing (no coordinated omission).
//! - **Closed loop** (`closed_loop`): N workers each send, wait for the whole response, and
//!   send again: the server's maximum throughput at that concurrency.
//!
//! Both stop by themselves: a bounded number of requests, a bounded duration, and a timeout
//! per request. Latencies go into HDR histograms (microseconds), one per kind of query.
//! Also used by `tests/it/loadgen.rs` (a short smoke run against an in-process app).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

/// What a request asks: lets the report split latencies by path through the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An existing username: index lookups only.
    Username,
    /// A person's full name: the name index, then the user.
    Name,
    /// A username with a typo: not found, so "did you mean" compares it with every username.
    Typo,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Username, Kind::Name, Kind::Typo];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn label(self) -> &'static str {
        match self {
            Kind::Username => "username",
            Kind::Name => "name",
            Kind::Typo => "typo (not found)",
        }
    }
}

/// Percent of each kind of query; the rest of 100 are usernames.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub name_percent: u64,
    pub typo_percent: u64,
}

/// splitmix64, as in `crm_username::synthetic`: deterministic query lists.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `count` queries of the mix: `username(n)` and `name(n)` for users spread over the org,
/// typos made from a username by dropping its second character (`user5@…` → `uer5@…`).
pub fn queries(
    count: usize,
    mix: Mix,
    users: usize,
    seed: u64,
    username: impl Fn(usize) -> String,
    name: impl Fn(usize) -> String,
) -> Vec<(Kind, String)> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let n = rng.below(users);
            let roll = rng.next() % 100;
            if roll < mix.typo_percent {
                let mut typo = username(n);
                if typo.len() > 2 && typo.is_char_boundary(1) && typo.is_char_boundary(2) {
                    typo.remove(1);
                }
                (Kind::Typo, typo)
            } else if roll < mix.typo_percent + mix.name_percent {
                (Kind::Name, name(n))
            } else {
                (Kind::Username, username(n))
            }
        })
        .collect()
}

/// A request ready to send: form body and Slack signature (timestamp of when it was built,
/// valid 5 minutes, so build them just before a run).
pub struct Prepared {
    pub kind: Kind,
    pub body: bytes::Bytes,
    pub timestamp: String,
    pub signature: String,
}

pub fn prepare(
    secret: &str,
    queries: &[(Kind, String)],
    sign: impl Fn(&str, &str, &[u8]) -> String,
) -> Arc<Vec<Prepared>> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    Arc::new(
        queries
            .iter()
            .map(|(kind, query)| {
                let body = serde_urlencoded::to_string([
                    ("token", "bench"),
                    ("team_id", "T0BENCH"),
                    ("channel_id", "C0BENCH"),
                    ("user_id", "U0BENCH"),
                    ("command", "/crm-username"),
                    ("text", &format!("check {query}")),
                    // Never called (only when an answer takes over 2 s), and refused then:
                    // not an allowed host.
                    ("response_url", "http://127.0.0.1:9/bench"),
                    ("trigger_id", "1.2.3"),
                ])
                .unwrap_or_default();
                let signature = sign(secret, &timestamp, body.as_bytes());
                Prepared {
                    kind: *kind,
                    body: bytes::Bytes::from(body),
                    timestamp: timestamp.clone(),
                    signature,
                }
            })
            .collect(),
    )
}

/// Latencies and outcomes of one run.
pub struct Report {
    pub elapsed: Duration,
    /// Every request, microseconds.
    pub all: Histogram<u64>,
    pub by_kind: [Histogram<u64>; 3],
    pub ok: u64,
    /// Non-200, transport errors and timeouts.
    pub errors: u64,
    /// 200, but the answer was deferred to `response_url` ("Checking…").
    pub deferred: u64,
    /// Open loop only: requests that were not sent because the run's time was up.
    pub not_sent: u64,
    /// Open loop only: for each second of the run (by due time), how many requests took
    /// over [`SLOW`].
    pub slow_per_second: Vec<u32>,
}

/// Counts, one per second, as text: `.` for none.
pub fn timeline(counts: impl IntoIterator<Item = u64>) -> String {
    counts
        .into_iter()
        .map(|n| match n {
            0 => ".".to_owned(),
            n => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `slow_per_second` counts.
pub const SLOW: Duration = Duration::from_millis(2);

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl Report {
    fn new() -> Self {
        Report {
            elapsed: Duration::ZERO,
            all: histogram(),
            by_kind: [histogram(), histogram(), histogram()],
            ok: 0,
            errors: 0,
            deferred: 0,
            not_sent: 0,
            slow_per_second: Vec::new(),
        }
    }

    /// `slow_per_second` as text (see [`timeline`]).
    pub fn slow_timeline(&self) -> String {
        timeline(self.slow_per_second.iter().map(|&n| u64::from(n)))
    }

    fn record(&mut self, kind: Kind, latency: Duration, outcome: Outcome) {
        let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.all.saturating_record(us);
        self.by_kind[kind.index()].saturating_record(us);
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Deferred => self.deferred += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    /// One report of several consecutive runs.
    pub fn merge(reports: Vec<Report>) -> Report {
        let mut merged = Report::new();
        for r in reports {
            merged.elapsed += r.elapsed;
            let _ = merged.all.add(&r.all);
            for (into, from) in merged.by_kind.iter_mut().zip(&r.by_kind) {
                let _ = into.add(from);
            }
            merged.ok += r.ok;
            merged.errors += r.errors;
            merged.deferred += r.deferred;
            merged.not_sent += r.not_sent;
            merged.slow_per_second.extend(&r.slow_per_second);
        }
        merged
    }

    pub fn requests(&self) -> u64 {
        self.all.len()
    }

    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Milliseconds at a quantile (0.5, 0.99, 0.999) of all requests.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.all.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn kind_ms(&self, kind: Kind, quantile: f64) -> Option<f64> {
        let h = &self.by_kind[kind.index()];
        (!h.is_empty()).then(|| h.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Deferred,
    Error,
}

/// One client for a run: keep-alive HTTP/1.1, no proxy, a timeout per request.
pub fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}"))
}

async fn send(client: &reqwest::Client, url: &str, request: &Prepared) -> Outcome {
    let sent = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &request.timestamp)
        .header("x-slack-signature", &request.signature)
        .body(request.body.clone())
        .send()
        .await;
    let Ok(response) = sent else {
        return Outcome::Error;
    };
    let status = response.status();
    match response.bytes().await {
        Ok(body) if status.is_success() => {
            // The bot's "answer follows" acknowledgement; the floor never says it.
            if body.windows(9).any(|w| w == b"Checking\xe2") {
                Outcome::Deferred
            } else {
                Outcome::Ok
            }
        }
        _ => Outcome::Error,
    }
}

/// Sends `rate` requests a second for `duration` (at most `rate * duration` requests),
/// cycling through `requests`; at most `max_in_flight` at once (a request waiting for a slot
/// still counts its wait). Returns when every request sent has finished or timed out.
pub async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<Prepared>>,
    rate: u64,
    duration: Duration,
    max_in_flight: usize,
) -> Report {
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    // Never more than the run's duration plus a grace period for stragglers.
    let deadline = start + duration + Duration::from_secs(2);
    // The schedule is kept by a thread of its own: the runtime's timer has a resolution of a
    // millisecond, which would add up to 1 ms to every latency measured from the due time.
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let scheduler = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            if due > deadline {
                return total - i;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send((i, due)).is_err() {
                return total - i;
            }
        }
        0
    });
    while let Some((i, due)) = due_rx.recv().await {
        let request_index = (i as usize) % requests.len().max(1);
        let (client, url, requests, slots, tx) = (
            client.clone(),
            url.to_owned(),
            requests.clone(),
            slots.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let request = &requests[request_index];
            let outcome = send(&client, &url, request).await;
            let _ = tx.send((request.kind, due.elapsed(), outcome, due - start));
        });
    }
    let not_sent = scheduler.join().unwrap_or(0);
    drop(tx);
    let mut report = Report::new();
    while let Some((kind, latency, outcome, at)) = rx.recv().await {
        report.record(kind, latency, outcome);
        if latency > SLOW {
            let second = at.as_secs() as usize;
            if report.slow_per_second.len() <= second {
                report.slow_per_second.resize(second + 1, 0);
            }
            report.slow_per_second[second] += 1;
        }
    }
    report.elapsed = start.elapsed();
    report.not_sent = not_sent;
    report
}

/// `connections` workers, each sending its next request as soon as the previous answer is
/// in, until `duration` is over or `max_requests` were sent.
pub async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    duration: Duration,
    max_requests: u64,
) -> Report {
    let start = Instant::now();
    let end = start + duration;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (client, url, requests, next) = (
            client.clone(),
            url.to_owned(),
            requests.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut report = Report::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= max_requests || Instant::now() >= end {
                    break;
                }
                let request = &requests[(i as usize) % requests.len().max(1)];
                let sent = Instant::now();
                let outcome = send(&client, &url, request).await;
                report.record(request.kind, sent.elapsed(), outcome);
            }
            report
        }));
    }
    let mut report = Report::new();
    for worker in workers {
        if let Ok(part) = worker.await {
            report.all.add(&part.all).unwrap_or_else(|_| unreachable!());
            for (mine, theirs) in report.by_kind.iter_mut().zip(&part.by_kind) {
                mine.add(theirs).unwrap_or_else(|_| unreachable!());
            }
            report.ok += part.ok;
            report.errors += part.errors;
            report.deferred += part.deferred;
        }
    }
    report.elapsed = start.elapsed();
    report
}
