//! `serve` under connections that never finish their request: each is closed by its timeout,
//! a signed command is answered meanwhile, and at the connection cap the oldest connection
//! with no request in progress makes room, or the new one is closed when none can.
//! Timeouts here are short; the deadlines the tests wait for are generous on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crm_username::fakes::FakeSlack;
use crm_username::server::HttpLimits;

use crate::common;
use common::app::{TEAM, TestApp, signed};

/// Longer than any timeout below, many times over: only a connection left open misses it.
const GENEROUS: Duration = Duration::from_secs(30);

fn short_limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        slack_request_timeout: Duration::from_millis(2500),
        // Far past GENEROUS: a Slack request cut off in time was cut by its own timeout.
        request_timeout: Duration::from_secs(600),
        max_connections: 2_000,
    }
}

/// The app serving the demo org under `limits`; it runs until dropped.
async fn spawn_app(limits: HttpLimits) -> TestApp {
    let store = common::demo_memory_store().await;
    let slack = FakeSlack::start().await.unwrap();
    let mut config = TestApp::config(store, &slack);
    config.http_limits = limits;
    TestApp::spawn(config, slack).await
}

/// A connection that sent `bytes` and then nothing more.
async fn half_open(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent before closing.
/// `None` if it is still open after `GENEROUS`.
async fn until_closed(mut stream: TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    match tokio::time::timeout(GENEROUS, stream.read_to_end(&mut seen)).await {
        Ok(_) => Some(String::from_utf8_lossy(&seen).into_owned()),
        Err(_) => None,
    }
}

const HALF_A_REQUEST_LINE: &[u8] = b"POST /slack/comm";
const HALF_THE_HEADERS: &[u8] =
    b"POST /slack/commands HTTP/1.1\r\nhost: bot\r\ncontent-type: application/x-www-fo";
const A_BODY_THAT_NEVER_COMPLETES: &[u8] = b"POST /slack/commands HTTP/1.1\r\nhost: bot\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nteam_id=T0";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: bot\r\n\r\n";

/// Sends a whole request on a kept-alive connection and reads its one response.
async fn request_on(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn signed_check(addr: SocketAddr, slack: &FakeSlack) -> reqwest::Response {
    let body = serde_urlencoded::to_string([
        ("team_id", TEAM),
        ("channel_id", "C0CHAN"),
        ("user_id", "U0ASKER"),
        ("command", "/crm-username"),
        ("text", "check dana.deleted@acme.com"),
        ("response_url", &slack.response_url("cmd")),
        ("trigger_id", "1.2.3"),
    ])
    .unwrap();
    signed(
        &reqwest::Client::new(),
        addr,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stalled_connections_are_each_closed_by_their_timeout_while_a_signed_command_is_answered()
 {
    let app = spawn_app(short_limits()).await;
    let (addr, slack) = (app.addr, &app.slack);
    let mut stalled = JoinSet::new();
    for i in 0..400 {
        let sent: &[u8] = match i % 4 {
            0 => b"",
            1 => HALF_A_REQUEST_LINE,
            2 => HALF_THE_HEADERS,
            _ => A_BODY_THAT_NEVER_COMPLETES,
        };
        let stream = half_open(addr, sent).await;
        stalled.spawn(async move { (i % 4, until_closed(stream).await) });
    }
    // A keep-alive connection that was served once and then went quiet.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        request_on(&mut idle, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    stalled.spawn(async move { (4, until_closed(idle).await) });

    let response = signed_check(addr, slack).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: dana.deleted@acme.com"),
        "{body}"
    );

    let mut closed = [0usize; 5];
    while let Some(joined) = stalled.join_next().await {
        let (kind, seen) = joined.unwrap();
        let seen = seen.unwrap_or_else(|| panic!("a connection of kind {kind} is still open"));
        if kind == 3 {
            assert!(seen.starts_with("HTTP/1.1 408 Request Timeout"), "{seen}");
            assert!(seen.ends_with("request body arrived too slowly"), "{seen}");
        } else {
            assert_eq!(seen, "", "closed without an answer (kind {kind})");
        }
        closed[kind] += 1;
    }
    assert_eq!(closed, [100, 100, 100, 100, 1]);
}

#[tokio::test]
async fn a_slack_request_whose_body_trickles_in_is_cut_off_by_the_total_request_timeout() {
    let app = spawn_app(HttpLimits {
        slack_request_timeout: Duration::from_secs(2),
        ..short_limits()
    })
    .await;
    let addr = app.addr;
    let (mut reader, mut writer) = half_open(addr, A_BODY_THAT_NEVER_COMPLETES)
        .await
        .into_split();
    // One byte every 200 ms: never the 1 s pause of the body read timeout.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let finished = tokio::time::timeout(GENEROUS, async {
        tokio::select! {
            () = read => {}
            () = trickle => {}
        }
    })
    .await;
    assert!(finished.is_ok(), "the connection is still open");
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{seen}"
    );
}

/// A counter of the connection cap, as `/metrics` shows it.
fn counter(name: &str) -> u64 {
    let text = crm_username::metrics::handle().unwrap().render();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |n| n.trim().parse().unwrap())
}

const REFUSED: &str = "crm_username_http_connections_refused_total";
const EVICTED: &str = "crm_username_http_connections_evicted_total";

/// A request whose body the server is waiting for: with `expect: 100-continue`, the server
/// says "100 Continue" only once the request is in progress, which this waits for.
async fn request_in_progress(addr: SocketAddr) -> TcpStream {
    let mut stream = half_open(
        addr,
        b"POST /slack/commands HTTP/1.1\r\nhost: bot\r\ncontent-type: application/x-www-form-urlencoded\r\nexpect: 100-continue\r\ncontent-length: 1000\r\n\r\n",
    )
    .await;
    let mut buf = vec![0; 256];
    let n = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
        .await
        .expect("100 Continue")
        .unwrap();
    let seen = String::from_utf8_lossy(&buf[..n]);
    assert!(seen.starts_with("HTTP/1.1 100 Continue"), "{seen}");
    stream
}

/// Cap 2, header and body timeouts of a minute: only the cap can close a connection here.
fn cap_of_two() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        slack_request_timeout: Duration::from_secs(60),
        max_connections: 2,
        ..short_limits()
    }
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_place_of_the_oldest_with_no_request_in_progress() {
    let app = spawn_app(cap_of_two()).await;
    let addr = app.addr;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(
        request_on(&mut first, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(
        request_on(&mut second, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let evicted_before = counter(EVICTED);

    // Both are idle; the third is served, and the first, the oldest, makes room for it.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(
        request_on(&mut third, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    assert_eq!(until_closed(first).await.as_deref(), Some(""));
    assert_eq!(counter(EVICTED), evicted_before + 1);

    // The second and the third keep being served.
    assert!(
        request_on(&mut second, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    assert!(
        request_on(&mut third, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
}

#[tokio::test]
async fn past_the_cap_with_every_request_in_progress_a_connection_is_closed_at_once_until_room_frees()
 {
    let app = spawn_app(cap_of_two()).await;
    let addr = app.addr;
    let first = request_in_progress(addr).await;
    let second = request_in_progress(addr).await;
    let refused_before = counter(REFUSED);

    // The third is closed without an answer, long before any timeout: nothing could give way.
    let third = half_open(addr, HEALTHZ).await;
    assert_eq!(until_closed(third).await.as_deref(), Some(""));
    assert_eq!(counter(REFUSED), refused_before + 1);

    // Once one of them closes, a new connection is served again.
    drop(first);
    let deadline = tokio::time::Instant::now() + GENEROUS;
    let answered = loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        next.write_all(HEALTHZ).await.unwrap();
        let mut buf = vec![0; 1024];
        let n = next.read(&mut buf).await.unwrap_or(0);
        if n > 0 || tokio::time::Instant::now() > deadline {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered:?}");
    drop(second);
}
