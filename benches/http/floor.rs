//! The floor: what any HTTP service answering from Redis costs on this machine. The same
//! requests as the bot gets (body read, not verified), one Redis GET, a small JSON answer;
//! the same runtime shape and allocator as `serve`. A benchmark starts its own binary again
//! with [`ENV`] set ([`spawn`]), and its `main` hands over to [`serve`] first thing.
//! Shared by `cargo bench --bench http` and `cargo bench --bench scale`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

/// Set (to "<redis url> <key>") in the environment of the benchmark binary started as the floor.
pub const ENV: &str = "CRM_BENCH_FLOOR_REDIS";

/// A server process of a benchmark (the floor, started by [`spawn`], or `serve`), killed
/// when dropped (also if the benchmark panics).
pub struct Process {
    pub child: Child,
    /// Where to send the slash commands.
    pub url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this benchmark binary again as the floor server, reading `key` from `redis_url`;
/// it prints its port.
pub fn spawn(redis_url: &str, key: &str) -> Process {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ENV, format!("{redis_url} {key}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("floor said {line:?}"));
    Process {
        child,
        url: format!("http://127.0.0.1:{port}/slack/commands"),
    }
}

#[derive(Clone)]
struct Floor {
    conn: ConnectionManager,
    key: String,
}

async fn handle(State(floor): State<Floor>, body: axum::body::Bytes) -> Json<Value> {
    let mut conn = floor.conn.clone();
    let value: Option<String> = redis::cmd("GET")
        .arg(&floor.key)
        .query_async(&mut conn)
        .await
        .ok()
        .flatten();
    Json(json!({"response_type": "ephemeral", "text": value, "bytes": body.len()}))
}

/// `spec` is "<redis url> <key>". Stops when the parent closes stdin (or dies).
pub fn serve(spec: &str) {
    let (url, key) = spec.split_once(' ').unwrap_or((spec, "current"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(url).unwrap();
        let conn = ConnectionManager::new(client).await.unwrap();
        let app = axum::Router::new()
            .route("/slack/commands", post(handle))
            .with_state(Floor {
                conn,
                key: key.to_owned(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        println!("{port}");
        let _ = std::io::stdout().flush();
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stdin_closed.await;
            })
            .await
            .unwrap();
    });
}
