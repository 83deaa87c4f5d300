//! Follow-ups in Redis: a sorted set of ids by due time, one JSON record per follow-up, and
//! a set of ids per person and per workspace for the limits. Every key carries the hash tag
//! `{followups}`, so each script below touches one Redis Cluster slot. They live outside the
//! cache format's namespace, like event ids and claims: any version runs them.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::{RedisStore, from_json, to_json};
use crate::store::StoreError;
use crate::store::followups::{FollowUp, FollowUpLimits, Scheduled, key_part};

/// Counts the live members of a set (dropping those whose record expired), then adds the
/// follow-up unless a limit is reached: 0 scheduled, 1 the person's limit, 2 the workspace's.
const SCHEDULE: &str = r"
local function live(set)
  local n = 0
  for _, id in ipairs(redis.call('smembers', set)) do
    if redis.call('exists', ARGV[6] .. id) == 1 then n = n + 1 else redis.call('srem', set, id) end
  end
  return n
end
if live(KEYS[3]) >= tonumber(ARGV[4]) then return 1 end
if live(KEYS[4]) >= tonumber(ARGV[5]) then return 2 end
redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[7])
redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
redis.call('sadd', KEYS[3], ARGV[1])
redis.call('pexpire', KEYS[3], ARGV[7])
redis.call('sadd', KEYS[4], ARGV[1])
redis.call('pexpire', KEYS[4], ARGV[7])
return 0
";

/// Takes the due ids out of the sorted set and returns their records: a script runs alone,
/// so each id is taken by exactly one caller, whichever replica.
const CLAIM: &str = r"
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  if redis.call('zrem', KEYS[1], id) == 1 then
    local record = redis.call('get', ARGV[3] .. id)
    if record then table.insert(out, record) end
  end
end
return out
";

/// Due again, unless it was stopped (its record deleted) while it ran.
const RESCHEDULE: &str = r"
if redis.call('exists', KEYS[2]) == 0 then return 0 end
redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
return 1
";

/// Done or stopped: the record, its due time and its place in both sets go.
const FINISH: &str = r"
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('srem', KEYS[3], ARGV[1])
redis.call('srem', KEYS[4], ARGV[1])
return redis.call('del', KEYS[2])
";

static SCHEDULE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCHEDULE));
static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CLAIM));
static RESCHEDULE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(RESCHEDULE));
static FINISH_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FINISH));

impl RedisStore {
    fn follow_up_keys(&self, follow_up: &FollowUp) -> [String; 4] {
        let keys = &self.keys;
        [
            keys.follow_ups_due(),
            keys.follow_up(&follow_up.id),
            keys.follow_ups_of_user(&key_part(&follow_up.team), &key_part(&follow_up.user)),
            keys.follow_ups_of_team(&key_part(&follow_up.team)),
        ]
    }

    pub async fn schedule_follow_up(
        &self,
        follow_up: &FollowUp,
        due: DateTime<Utc>,
        limits: FollowUpLimits,
        ttl: std::time::Duration,
    ) -> Result<Scheduled, StoreError> {
        let mut conn = self.conn.clone();
        let mut script = SCHEDULE_SCRIPT.prepare_invoke();
        for key in self.follow_up_keys(follow_up) {
            script.key(key);
        }
        let outcome: i64 = script
            .arg(&follow_up.id)
            .arg(to_json(follow_up))
            .arg(due.timestamp_millis())
            .arg(limits.per_user)
            .arg(limits.per_team)
            .arg(self.keys.follow_up(""))
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(match outcome {
            0 => Scheduled::Yes,
            1 => Scheduled::UserLimit,
            _ => Scheduled::TeamLimit,
        })
    }

    pub async fn claim_due_follow_ups(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<FollowUp>, StoreError> {
        let mut conn = self.conn.clone();
        let records: Vec<Vec<u8>> = CLAIM_SCRIPT
            .key(self.keys.follow_ups_due())
            .arg(now.timestamp_millis())
            .arg(max)
            .arg(self.keys.follow_up(""))
            .invoke_async(&mut conn)
            .await?;
        records
            .iter()
            .map(|r| from_json("a follow-up", r))
            .collect()
    }

    pub async fn reschedule_follow_up(
        &self,
        follow_up: &FollowUp,
        due: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let done: i64 = RESCHEDULE_SCRIPT
            .key(self.keys.follow_ups_due())
            .key(self.keys.follow_up(&follow_up.id))
            .arg(&follow_up.id)
            .arg(to_json(follow_up))
            .arg(due.timestamp_millis())
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }

    pub async fn follow_up(&self, id: &str) -> Result<Option<FollowUp>, StoreError> {
        use redis::AsyncCommands;
        let mut conn = self.conn.clone();
        let record: Option<Vec<u8>> = conn.get(self.keys.follow_up(id)).await?;
        record.map(|r| from_json("a follow-up", &r)).transpose()
    }

    pub async fn finish_follow_up(&self, follow_up: &FollowUp) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut script = FINISH_SCRIPT.prepare_invoke();
        for key in self.follow_up_keys(follow_up) {
            script.key(key);
        }
        let deleted: i64 = script.arg(&follow_up.id).invoke_async(&mut conn).await?;
        Ok(deleted == 1)
    }
}
