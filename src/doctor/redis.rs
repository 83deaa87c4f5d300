//! Redis answers (its version), authentication and TLS work as the URL asks, its
//! `maxmemory-policy` cannot evict the snapshot, and its user may run the bot's commands.

use std::time::Duration;

use super::Check;
use crate::store::{RedisSettings, RedisStore, RedisTimeouts, StoreError};

const CONNECTION: &str = "redis.connection";
const EVICTION: &str = "redis.eviction";
const COMMANDS: &str = "redis.commands";

pub async fn checks(
    settings: Option<RedisSettings>,
    prefix: &str,
    timeout: Duration,
) -> Vec<Check> {
    let Some(settings) = settings.filter(|s| !s.url.trim().is_empty()) else {
        return vec![
            Check::skip(
                CONNECTION,
                "no REDIS_URL: the cache lives inside `serve` (one replica only)",
            ),
            Check::skip(EVICTION, "no REDIS_URL"),
            Check::skip(COMMANDS, "no REDIS_URL"),
        ];
    };
    let place = redacted(&settings.url);
    // The store's own connection: TLS with REDIS_CA_FILE, ACL users and Cluster as `serve` uses them.
    let info = async {
        let store = RedisStore::open(&settings, prefix, RedisTimeouts::default())?;
        let server = store.info("server").await?;
        let memory = store.info("memory").await?;
        Ok::<_, StoreError>((store, format!("{server}\n{memory}")))
    };
    match tokio::time::timeout(timeout, info).await {
        Ok(Ok((store, info))) => {
            let version = field(&info, "redis_version").unwrap_or("unknown");
            vec![
                Check::ok(CONNECTION, format!("Redis {version} answers at {place}")),
                eviction(field(&info, "maxmemory_policy")),
                commands_tried(&store, prefix, timeout).await,
            ]
        }
        Ok(Err(err)) => vec![
            connection_failed(&place, &err),
            Check::skip(EVICTION, "Redis did not answer"),
            Check::skip(COMMANDS, "Redis did not answer"),
        ],
        Err(_) => vec![
            Check::fail(
                CONNECTION,
                format!(
                    "Redis at {place} did not answer within {} s",
                    timeout.as_secs()
                ),
                "check that Redis runs and that this machine may reach it (host, port, firewall \
                 or network policy); for TLS the URL must start with rediss://",
            ),
            Check::skip(EVICTION, "Redis did not answer"),
            Check::skip(COMMANDS, "Redis did not answer"),
        ],
    }
}

/// [`commands`] of what `store` refuses, or a failure when Redis stops answering meanwhile.
async fn commands_tried(store: &RedisStore, prefix: &str, timeout: Duration) -> Check {
    match tokio::time::timeout(timeout, store.refused_commands()).await {
        Ok(Ok(refused)) => commands(&refused, prefix),
        Ok(Err(err)) => Check::fail(
            COMMANDS,
            format!(
                "Redis stopped answering while doctor tried the bot's commands: {}",
                super::upstream_text(&err.to_string())
            ),
            "run doctor again; if it repeats, check Redis' log",
        ),
        Err(_) => Check::fail(
            COMMANDS,
            format!(
                "Redis did not answer the bot's commands within {} s",
                timeout.as_secs()
            ),
            "run doctor again; if it repeats, check Redis' load",
        ),
    }
}

/// Whether the Redis user may run every command the bot uses (`RedisStore::refused_commands`).
/// Without `RENAME` (refused by the ACL, or disabled on the server) patches still land,
/// through a slower path, and full refreshes publish whole generations: a warning. Without any other,
/// checks or refreshes fail on it.
pub fn commands(refused: &[&str], prefix: &str) -> Check {
    const GRANTS: &str = "docs/redis.md, \"An ACL user\"";
    match refused {
        [] => Check::ok(
            COMMANDS,
            "the Redis user may run every command the bot uses",
        ),
        ["rename"] => Check::warn(
            COMMANDS,
            "Redis refuses RENAME to the bot (the user's ACL lacks +rename, or the server disables RENAME with rename-command): incremental refreshes write their large values through their script, which holds Redis longer, and every full refresh writes a whole new generation",
            format!(
                "grant it: ACL SETUSER <user> +rename; where a managed service disables RENAME, enable it in the service's settings if it allows, or accept the slower path ({GRANTS})"
            ),
        ),
        _ => {
            let grants: Vec<String> = refused.iter().map(|c| format!("+{c}")).collect();
            Check::fail(
                COMMANDS,
                format!(
                    "the Redis user may not run {} on keys under {} (refused by its ACL, or disabled on the server): checks or refreshes fail on them",
                    refused.join(", "),
                    super::upstream_text(prefix)
                ),
                format!(
                    "grant the commands and the key pattern: ACL SETUSER <user> ~{}* {}; a command a managed service disables must be enabled in its settings ({GRANTS})",
                    super::upstream_text(prefix),
                    grants.join(" ")
                ),
            )
        }
    }
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

fn connection_failed(place: &str, err: &StoreError) -> Check {
    // The store explains Redis errors with the setting to change; the text never holds the
    // password (the URL is not part of it).
    let text = match err {
        StoreError::Unavailable(text) => text.clone(),
        other => other.to_string(),
    };
    // `explain` appends its fix after the last "; "; the error itself may hold one too.
    let (cause, fix) = match text.rsplit_once("; ") {
        Some((cause, fix)) => (cause, fix),
        None => (
            text.as_str(),
            "start Redis, or correct the host and port in REDIS_URL; for TLS the URL must \
             start with rediss://",
        ),
    };
    Check::fail(
        CONNECTION,
        format!(
            "Redis at {place} does not answer: {}",
            super::upstream_text(cause)
        ),
        fix,
    )
}

/// The URL without its password: scheme, host, port and database.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().unwrap_or(6379),
            u.path()
        ),
        Err(_) => "REDIS_URL".to_owned(),
    }
}

/// Whether the policy can evict the snapshot's keys. Every key of the snapshot carries a TTL
/// (days long, renewed by each refresh, so that the data of a version nobody runs any more
/// expires), so only `noeviction` keeps them:
/// - `noeviction`: nothing is evicted; a full Redis refuses writes, and the refresh says so.
/// - `volatile-*`: keys with a TTL are evicted, the snapshot's included: a reply could read
///   half a snapshot as "no data".
/// - `allkeys-*`: any key, the snapshot's included, with the same effect.
pub fn eviction(policy: Option<&str>) -> Check {
    const FIX: &str = "set maxmemory-policy to noeviction: \
                       `CONFIG SET maxmemory-policy noeviction` and in redis.conf, or the \
                       parameter group of a managed Redis; give Redis room for two snapshots";
    match policy {
        Some("noeviction") => Check::ok(
            EVICTION,
            "maxmemory-policy noeviction: the snapshot is never evicted",
        ),
        Some(p) if p.starts_with("volatile-") => Check::warn(
            EVICTION,
            format!(
                "maxmemory-policy {p} can evict the snapshot's keys: they carry a TTL, so that the data of a version no replica runs any more expires"
            ),
            FIX,
        ),
        Some(p) if p.starts_with("allkeys-") => Check::warn(
            EVICTION,
            format!("maxmemory-policy {p} can evict the snapshot's keys"),
            FIX,
        ),
        Some(p) => Check::warn(
            EVICTION,
            format!(
                "maxmemory-policy {} is unknown to doctor",
                super::upstream_text(p)
            ),
            FIX,
        ),
        None => Check::warn(EVICTION, "Redis did not report its maxmemory-policy", FIX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn only_noeviction_is_ok_every_evicting_policy_and_unknown_ones_are_warnings() {
        let status = |p: &str| eviction(Some(p)).status;
        assert_eq!(status("noeviction"), Status::Ok);
        for p in [
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "something-new",
        ] {
            assert_eq!(status(p), Status::Warn, "{p}");
        }
        assert_eq!(eviction(None).status, Status::Warn);
        assert!(
            eviction(Some("volatile-lru"))
                .summary
                .contains("carry a TTL"),
            "the warning says why"
        );
    }

    #[test]
    fn the_redis_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("redis://app:s3cr3t@cache.internal:6380/2"),
            "redis://cache.internal:6380/2"
        );
        assert_eq!(redacted("rediss://cache"), "rediss://cache:6379");
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n";
        assert_eq!(field(info, "redis_version"), Some("7.2.4"));
        assert_eq!(field(info, "maxmemory_policy"), None);
    }
}
