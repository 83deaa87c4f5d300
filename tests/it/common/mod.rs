//! Shared by the tests that need a Redis server (scripts/test.sh makes sure one answers).

pub mod app;
pub mod outcome;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An in-process store holding the demo org, as of now.
pub async fn demo_memory_store() -> crm_username::store::Store {
    let store = crm_username::store::Store::memory();
    store
        .publish(crm_username::demo::snapshot(chrono::Utc::now()).unwrap())
        .await
        .unwrap();
    store
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix of its own per test, so that tests run in parallel on one server.
pub fn prefix(test: &str) -> String {
    format!("test:{test}:{}:", std::process::id())
}

/// A connection to the tests' Redis for set-up and clean-up. Its response timeout is generous:
/// a SCAN of a server other runs have filled, on a busy machine, can take longer than the
/// client's default of half a second, and no test asserts on that time.
pub async fn connection() -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)))
        .set_connection_timeout(Some(std::time::Duration::from_secs(10)));
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Deletes every key under `prefix`.
pub async fn clear_prefix(prefix: &str) {
    let mut conn = connection().await;
    crm_username::store::unlink_matching(&mut conn, &format!("{prefix}*"))
        .await
        .unwrap();
}

/// How many keys match `pattern` under `prefix`.
pub async fn count_keys(prefix: &str, pattern: &str) -> usize {
    keys_matching(&format!("{prefix}{pattern}")).await.len()
}

/// Every key matching `pattern`, sorted.
pub async fn keys_matching(pattern: &str) -> Vec<String> {
    let mut conn = connection().await;
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        found.extend(keys);
        if next == 0 {
            found.sort();
            return found;
        }
        cursor = next;
    }
}

/// How many fields the hashes matching `pattern` under `prefix` hold together (a generation's
/// records are fields of hashes: `gen:*:user:*` counts its users).
pub async fn count_fields(prefix: &str, pattern: &str) -> usize {
    let mut conn = connection().await;
    let mut count = 0;
    for key in keys_matching(&format!("{prefix}{pattern}")).await {
        let fields: usize = redis::cmd("HLEN")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        count += fields;
    }
    count
}

/// A Redis server of the test's own, on a free port, that the test can stop and start.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// A server started with `extra` settings besides the port and no persistence.
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh makes sure)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis {
            port,
            child: Some(child),
        }
    }

    /// A store on this server, under `prefix`, holding the demo org.
    pub async fn demo_store(
        &self,
        prefix: &str,
        timeouts: crm_username::store::RedisTimeouts,
    ) -> crm_username::store::Store {
        use crm_username::store::{RedisStore, Store};
        let url = format!("redis://127.0.0.1:{}", self.port);
        let store = Store::Redis(RedisStore::connect(&url, prefix, timeouts).unwrap());
        let org = crm_username::demo::snapshot(chrono::Utc::now()).unwrap();
        store.publish(org).await.unwrap();
        store
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server answer again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill is installed");
            assert!(status.success(), "kill {signal} failed");
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Paused by `pause`: let it run so that it exits at once.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the business-unit settings of `org`, its AE pages served by `upstreams`, into
/// `dir`, and returns the file's path (for `BUSINESS_UNITS_FILE`).
pub fn write_settings(
    dir: &std::path::Path,
    org: &crm_username::domain::OrgSnapshot,
    upstreams: &crm_username::fakes::FakeUpstreams,
) -> std::path::PathBuf {
    let path = dir.join("business-units.toml");
    let toml =
        crm_username::config::settings_init::from_snapshot(org, upstreams.account_engagement.url());
    std::fs::write(&path, toml).expect("the settings file is written");
    path
}
