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
        let command = |name: &str| redis::cmd(name);
        let tries: [(&'static str, Cmd); 27] = [
            (
                "set",
                command("SET")
                    .arg(&string)
                    .arg("x")
                    .arg("PX")
                    .arg(60_000)
                    .clone(),
            ),
            ("get", command("GET").arg(&string).clone()),
            ("strlen", command("STRLEN").arg(&string).clone()),
            (
                "getrange",
                command("GETRANGE").arg(&string).arg(0).arg(0).clone(),
            ),
            ("exists", command("EXISTS").arg(&string).clone()),
            (
                "pexpire",
                command("PEXPIRE").arg(&string).arg(60_000).clone(),
            ),
            ("pttl", command("PTTL").arg(&string).clone()),
            ("rename", command("RENAME").arg(&string).arg(&moved).clone()),
            ("hset", command("HSET").arg(&hash).arg("f").arg("v").clone()),
            ("hget", command("HGET").arg(&hash).arg("f").clone()),
            ("hgetall", command("HGETALL").arg(&hash).clone()),
            ("hdel", command("HDEL").arg(&hash).arg("f").clone()),
            ("zadd", command("ZADD").arg(&sorted).arg(0).arg("m").clone()),
            (
                "zrange",
                command("ZRANGE").arg(&sorted).arg(0).arg(-1).clone(),
            ),
            (
                "zrangebylex",
                command("ZRANGEBYLEX")
                    .arg(&sorted)
                    .arg("-")
                    .arg("+")
                    .clone(),
            ),
            (
                "zlexcount",
                command("ZLEXCOUNT").arg(&sorted).arg("-").arg("+").clone(),
            ),
            (
                "zrangebyscore",
                command("ZRANGEBYSCORE")
                    .arg(&sorted)
                    .arg("-inf")
                    .arg("+inf")
                    .clone(),
            ),
            ("zrem", command("ZREM").arg(&sorted).arg("m").clone()),
            ("sadd", command("SADD").arg(&set).arg("m").clone()),
            ("smembers", command("SMEMBERS").arg(&set).clone()),
            ("srem", command("SREM").arg(&set).arg("m").clone()),
            (
                "eval",
                command("EVAL").arg(script).arg(1).arg(&string).clone(),
            ),
            (
                "script|load",
                command("SCRIPT").arg("LOAD").arg(script).clone(),
            ),
            (
                "evalsha",
                command("EVALSHA").arg(&sha).arg(1).arg(&string).clone(),
            ),
            ("del", command("DEL").arg(&string).clone()),
            (
                "unlink",
                command("UNLINK")
                    .arg(&moved)
                    .arg(&hash)
                    .arg(&sorted)
                    .arg(&set)
                    .clone(),
            ),
            ("ping", command("PING").clone()),
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
