//! Which of the commands the bot uses this Redis user may run: for `doctor`, so that an ACL user
//! missing a grant (after an upgrade that needs a new command, say) is named before checks and
//! refreshes fail on it.

use redis::Cmd;

use super::RedisStore;
use super::patch::refused;
use crate::store::{StoreError, random_token};

impl RedisStore {
    /// The commands `serve`, the refresher and the follow-ups run (docs/redis.md, "An ACL
    /// user"; not `INFO` and `CONFIG GET`, which only `doctor` uses) that the server refuses this user (`NOPERM`), each tried once on
    /// probe keys of this prefix (one hash tag, so that a Cluster takes the multi-key ones),
    /// which are deleted after (and expire within a minute if the user may not delete them).
    /// Other errors (a key of the wrong type, say) do not count.
    pub async fn refused_commands(&self) -> Result<Vec<&'static str>, StoreError> {
        let mut conn = self.conn.clone();
        let base = format!("{}doctor-probe:{{{}}}:", self.keys.prefix(), random_token());
        let key = |name: &str| format!("{base}{name}");
        let (string, moved, hash, sorted, set) =
            (key("s"), key("s2"), key("h"), key("z"), key("set"));
        let script = "return 1";
        let sha = redis::Script::new(script).get_hash().to_owned();
        let tries: [(&'static str, Cmd); 27] = [
            (
                "set",
                redis::cmd("SET")
                    .arg(&string)
                    .arg("x")
                    .arg("PX")
                    .arg(60_000)
                    .clone(),
            ),
            ("get", redis::cmd("GET").arg(&string).clone()),
            ("strlen", redis::cmd("STRLEN").arg(&string).clone()),
            (
                "getrange",
                redis::cmd("GETRANGE").arg(&string).arg(0).arg(0).clone(),
            ),
            ("exists", redis::cmd("EXISTS").arg(&string).clone()),
            (
                "pexpire",
                redis::cmd("PEXPIRE").arg(&string).arg(60_000).clone(),
            ),
            ("pttl", redis::cmd("PTTL").arg(&string).clone()),
            (
                "rename",
                redis::cmd("RENAME").arg(&string).arg(&moved).clone(),
            ),
            (
                "hset",
                redis::cmd("HSET").arg(&hash).arg("f").arg("v").clone(),
            ),
            ("hget", redis::cmd("HGET").arg(&hash).arg("f").clone()),
            ("hgetall", redis::cmd("HGETALL").arg(&hash).clone()),
            ("hdel", redis::cmd("HDEL").arg(&hash).arg("f").clone()),
            (
                "zadd",
                redis::cmd("ZADD").arg(&sorted).arg(0).arg("m").clone(),
            ),
            (
                "zrange",
                redis::cmd("ZRANGE").arg(&sorted).arg(0).arg(-1).clone(),
            ),
            (
                "zrangebylex",
                redis::cmd("ZRANGEBYLEX")
                    .arg(&sorted)
                    .arg("-")
                    .arg("+")
                    .clone(),
            ),
            (
                "zlexcount",
                redis::cmd("ZLEXCOUNT")
                    .arg(&sorted)
                    .arg("-")
                    .arg("+")
                    .clone(),
            ),
            (
                "zrangebyscore",
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&sorted)
                    .arg("-inf")
                    .arg("+inf")
                    .clone(),
            ),
            ("zrem", redis::cmd("ZREM").arg(&sorted).arg("m").clone()),
            ("sadd", redis::cmd("SADD").arg(&set).arg("m").clone()),
            ("smembers", redis::cmd("SMEMBERS").arg(&set).clone()),
            ("srem", redis::cmd("SREM").arg(&set).arg("m").clone()),
            (
                "eval",
                redis::cmd("EVAL").arg(script).arg(1).arg(&string).clone(),
            ),
            (
                "script|load",
                redis::cmd("SCRIPT").arg("LOAD").arg(script).clone(),
            ),
            (
                "evalsha",
                redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&string).clone(),
            ),
            ("del", redis::cmd("DEL").arg(&string).clone()),
            (
                "unlink",
                redis::cmd("UNLINK")
                    .arg(&moved)
                    .arg(&hash)
                    .arg(&sorted)
                    .arg(&set)
                    .clone(),
            ),
            ("ping", redis::cmd("PING").clone()),
        ];
        let mut refused_here = Vec::new();
        for (name, cmd) in tries {
            // Routed by the key where there is one; `SCRIPT LOAD` and `PING` go to the node of
            // the probe's slot too, where `EVALSHA` then finds the script.
            match conn.on_node_of::<redis::Value>(&string, cmd).await {
                Ok(_) => {}
                Err(err) if refused(&err) => refused_here.push(name),
                Err(err) if is_connection_error(&err) => return Err(err.into()),
                Err(_) => {}
            }
        }
        Ok(refused_here)
    }
}

/// An error of the connection, not of one command: the probe stops there.
fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_timeout()
}
