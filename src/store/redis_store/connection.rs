//! How the store reaches Redis: one server (`redis://`, `rediss://`) through the redis crate's
//! connection manager, or a Redis Cluster through its cluster client. Both speak
//! `ConnectionLike`, so every command, pipeline and script of the store is written once; the
//! key schema (`keys.rs`) keeps each script and pipeline within one hash slot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value,
};

use super::RedisTimeouts;
use crate::store::StoreError;

/// Where the cache is and how to reach it (REDIS_URL, REDIS_CA_FILE, REDIS_CLUSTER).
#[derive(Debug, Clone, Default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` or `rediss://…`; a seed node for a Cluster.
    pub url: String,
    /// PEM bundle of the CAs a `rediss://` server's certificate is checked against; `None` =
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `REDIS_URL` names a seed node of a Redis Cluster.
    pub cluster: bool,
}

impl RedisSettings {
    pub fn url(url: &str) -> Self {
        RedisSettings {
            url: url.to_owned(),
            ..RedisSettings::default()
        }
    }
}

#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Connects lazily: the bot starts (and says "data unavailable") while Redis is down, and
    /// reconnects by itself when it is back.
    pub(crate) fn open(
        settings: &RedisSettings,
        timeouts: RedisTimeouts,
    ) -> Result<Conn, StoreError> {
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid(format!("REDIS_URL is not valid ({e}); expected redis://[user:password@]host:port/db or rediss://…")))?;
        // TCP_NODELAY, which redis-rs leaves off: with Nagle's algorithm a check's command,
        // written while another on the shared connection waits for its reply, is held back
        // until that reply's ACK arrives.
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let certs = match (&settings.ca_file, tls) {
            (Some(path), true) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(read_ca_file(path)?),
            }),
            (Some(_), false) => {
                return Err(invalid(
                    "REDIS_CA_FILE is set but REDIS_URL is not rediss://: use rediss:// for TLS, or unset REDIS_CA_FILE".to_owned(),
                ));
            }
            (None, _) => None,
        };
        if settings.cluster {
            let mut builder = ClusterClient::builder(vec![info]);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder
                .build()
                .map_err(|e| invalid(format!("REDIS_URL is not valid for a Cluster: {e}")))?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeouts.connect)
                .set_response_timeout(timeouts.response);
            return Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(config),
            ));
        }
        let client = match certs {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        }
        .map_err(|e| invalid(format!("REDIS_URL is not valid: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// Runs `cmd` on the server holding `key` (a SCAN for the keys of one hash slot); on one
    /// server, just runs it.
    pub(crate) async fn on_node_of<T: redis::FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> redis::RedisResult<T> {
        let value = match self {
            Conn::Single(c) => cmd.query_async(c).await?,
            Conn::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await?
            }
        };
        Ok(T::from_redis_value(value)?)
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

/// The CA bundle, read once at start; a missing or empty file is named with what to do.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let pem = std::fs::read(path).map_err(|e| {
        invalid(format!(
            "REDIS_CA_FILE {} cannot be read ({e}): point it at the PEM bundle of the CA that signed the Redis server's certificate",
            path.display()
        ))
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!(
            "REDIS_CA_FILE {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at the CA bundle of the Redis server",
            path.display()
        )));
    }
    Ok(pem)
}

/// What went wrong with Redis, and which setting to look at: a person reads this in `status`,
/// in `doctor` and in the logs. The redis crate's message comes first (it never holds the
/// password: the URL is not part of it).
pub(crate) fn explain(err: &redis::RedisError) -> String {
    let text = err.to_string();
    let has = |needle: &str| text.to_ascii_lowercase().contains(needle);
    let fix = if err.kind() == redis::ErrorKind::AuthenticationFailed
        || has("wrongpass")
        || has("noauth")
        || has("invalid password")
    {
        "check the user name and password in REDIS_URL (redis://user:password@host:port)"
    } else if has("noperm") {
        "the ACL user in REDIS_URL lacks a command or key: grant what docs/redis.md lists"
    } else if has("certificate") || has("unknownissuer") || has("tls") || has("handshake") {
        "check the TLS settings: REDIS_URL must be rediss:// for a TLS port, and REDIS_CA_FILE the CA bundle that signed the server's certificate (unset: the system's roots)"
    } else if has("cluster support disabled") {
        "this server is not a Redis Cluster: unset REDIS_CLUSTER (or set it to false)"
    } else if has("moved") || has("crossslot") {
        "this server is part of a Redis Cluster: set REDIS_CLUSTER=true"
    } else if err.is_connection_refusal()
        || err.is_timeout()
        || err.is_io_error()
        || err.kind() == redis::ErrorKind::ClusterConnectionNotFound
    {
        "check that Redis runs, that REDIS_URL names its host and port (with REDIS_CLUSTER=true, any reachable node of the Cluster), and that it starts with rediss:// if the server speaks TLS"
    } else {
        return text;
    };
    format!("{text}; {fix}")
}
