//! The audit from the shared cache: the generation lists who is audited (`audit-subjects`,
//! written at publish), and each user is diagnosed on the small org its stored context gives,
//! exactly as a `check` of that user is. Users are read in batches, one round trip each, and
//! the next batch is read while the previous one is diagnosed on a blocking thread, so memory
//! stays flat whatever the org's size.

use std::sync::Arc;

use super::Conn;
use chrono::{DateTime, Utc};
use redis::Value;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{RedisStore, bytes, corrupt, from_json};
use crate::audit::{AuditReport, Progress, Scope, ScopeError, ae_user_row, sf_user_rows};
use crate::domain::snapshot::lower;
use crate::domain::{AeUser, Org, SfId, SfUser};
use crate::store::StoreError;
use crate::store::keys::GenerationKeys;
use crate::store::records::{UserContext, assemble};

/// Users per round trip.
const BATCH: usize = 500;
/// Users sharing one email read at most, as a `check` reads them.
const MAX_EMAIL_MATCHES: usize = 1_000;

/// Who the audit looks at, written with each generation.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuditSubjects {
    /// Active internal Salesforce users (15-character ids).
    pub sf: Vec<String>,
    /// AE users with no CRM username, not in the recycle bin: (business unit index, id).
    pub ae: Vec<(u32, u64)>,
}

impl AuditSubjects {
    pub fn of(org: &Org) -> Self {
        let snapshot = org.snapshot();
        AuditSubjects {
            sf: snapshot
                .salesforce
                .users
                .iter()
                .filter(|u| u.is_active && u.is_internal())
                .map(|u| u.id.as_str15().to_owned())
                .collect(),
            ae: snapshot
                .business_units
                .iter()
                .enumerate()
                .flat_map(|(b, bu)| {
                    bu.users
                        .iter()
                        .filter(|u| !u.is_deleted && u.salesforce_id.is_none())
                        .map(move |u| (b as u32, u.id))
                })
                .collect(),
        }
    }
}

type Progressor = Arc<dyn Fn(Progress) + Send + Sync>;

/// One batch's rows, computed off the async workers.
type Pending = tokio::task::JoinHandle<Vec<crate::audit::AuditRow>>;

impl RedisStore {
    pub async fn audit(
        &self,
        scope: &str,
        now: DateTime<Utc>,
        max_rows: Option<usize>,
        progress: Progressor,
    ) -> Result<Result<AuditReport, ScopeError>, StoreError> {
        let mut conn = self.conn.clone();
        let generation = self.current_generation(&mut conn).await?;
        let meta = self.meta(&mut conn, &generation).await?;
        let scope = match Scope::parse(scope, &meta.business_units) {
            Ok(scope) => scope,
            Err(err) => return Ok(Err(err)),
        };
        let gk = self.keys.generation(&generation);
        let raw: Option<Vec<u8>> =
            redis::AsyncCommands::get(&mut conn, gk.audit_subjects()).await?;
        let raw = raw.ok_or_else(|| {
            StoreError::Corrupt(
                "the cached data was written by an older version and has no audit list; the next refresh writes it".into(),
            )
        })?;
        let mut subjects: AuditSubjects = from_json("audit subjects", &raw)?;
        let bu = scope.index();
        subjects
            .ae
            .retain(|(b, _)| bu.is_none_or(|s| s == *b as usize));
        let total = subjects.sf.len() + subjects.ae.len();
        let mut report = AuditReport::new(&scope, meta.fetched_at, now, max_rows);
        report.business_units = meta
            .business_units
            .iter()
            .enumerate()
            .filter(|(b, _)| bu.is_none_or(|s| s == *b))
            .map(|(_, u)| (u.id, u.label()))
            .collect();
        report.sf_users_scanned = subjects.sf.len();
        report.ae_users_scanned = meta
            .ae_user_counts
            .iter()
            .enumerate()
            .filter(|(b, _)| bu.is_none_or(|s| s == *b))
            .map(|(_, n)| n)
            .sum();
        let mut done = 0;
        let mut pending: Option<(Pending, usize)> = None;
        let mut finish = |rows: Vec<crate::audit::AuditRow>, n: usize, report: &mut AuditReport| {
            report.add_all(rows);
            done += n;
            progress(Progress { done, total });
        };
        for ids in subjects.sf.chunks(BATCH) {
            let users = self.users_and_contexts(&mut conn, &gk, ids).await?;
            let job = {
                let meta = meta.clone();
                tokio::task::spawn_blocking(move || {
                    users
                        .into_iter()
                        .flat_map(|(user, context)| {
                            let org =
                                Org::without_search(assemble(&meta, vec![user], context, vec![]));
                            let user = &org.snapshot().salesforce.users[0];
                            sf_user_rows(&org, user, bu, now)
                        })
                        .collect()
                })
            };
            if let Some((previous, n)) = pending.replace((job, ids.len())) {
                finish(joined(previous).await?, n, &mut report);
            }
        }
        for batch in subjects.ae.chunks(BATCH) {
            let work = self.ae_batch(&mut conn, &gk, batch).await?;
            let job = {
                let meta = meta.clone();
                tokio::task::spawn_blocking(move || {
                    work.into_iter()
                        .filter_map(|(b, ae_user, users, context)| {
                            let org = Org::new(assemble(
                                &meta,
                                users,
                                context,
                                vec![(b, ae_user.clone())],
                            ));
                            ae_user_row(&org, b as usize, &ae_user, now)
                        })
                        .collect()
                })
            };
            if let Some((previous, n)) = pending.replace((job, batch.len())) {
                finish(joined(previous).await?, n, &mut report);
            }
        }
        if let Some((last, n)) = pending.take() {
            finish(joined(last).await?, n, &mut report);
        }
        report.finish();
        Ok(Ok(report))
    }

    /// Each user with its context, in one round trip; users gone since (none in a generation,
    /// which is never rewritten but for a re-check) are skipped.
    async fn users_and_contexts(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        ids: &[String],
    ) -> Result<Vec<(SfUser, Option<UserContext>)>, StoreError> {
        let mut pipe = redis::pipe();
        for id in ids {
            let id = SfId::parse(id).map_err(|e| corrupt("user id", e))?;
            pipe.get(gk.user(id)).get(gk.context(id));
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        let mut out = Vec::with_capacity(ids.len());
        for pair in values.chunks(2) {
            let Some(user) = bytes(&pair[0]) else {
                continue;
            };
            let user: SfUser = from_json("user", &user)?;
            let context = bytes(&pair[1])
                .map(|raw| from_json("user context", &raw))
                .transpose()?;
            out.push((user, context));
        }
        Ok(out)
    }

    /// For each AE user: the Salesforce users its email names (as username, and as email),
    /// and the context of the one it would be mapped to. Three round trips per batch.
    async fn ae_batch(
        &self,
        conn: &mut Conn,
        gk: &GenerationKeys,
        batch: &[(u32, u64)],
    ) -> Result<Vec<(u32, AeUser, Vec<SfUser>, Option<UserContext>)>, StoreError> {
        // 1: the AE users, and who their emails name.
        let mut pipe = redis::pipe();
        for (b, id) in batch {
            pipe.get(gk.ae_user(*b as usize, *id));
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        let mut ae_users = Vec::with_capacity(batch.len());
        for ((b, _), value) in batch.iter().zip(&values) {
            if let Some(raw) = bytes(value) {
                ae_users.push((*b, from_json::<AeUser>("AE user", &raw)?));
            }
        }
        let emails: Vec<String> = ae_users
            .iter()
            .map(|(_, u)| lower(u.email.trim()).into_owned())
            .collect();
        let mut pipe = redis::pipe();
        for email in &emails {
            pipe.get(gk.login(email)).get(gk.email(email));
        }
        let values: Vec<Value> = if emails.iter().any(|e| !e.is_empty()) {
            pipe.query_async(conn).await?
        } else {
            vec![Value::Nil; emails.len() * 2]
        };
        let mut named: Vec<Vec<String>> = Vec::with_capacity(emails.len());
        for (email, pair) in emails.iter().zip(values.chunks(2)) {
            let mut ids: Vec<String> = Vec::new();
            if !email.is_empty() {
                if let Some(raw) = bytes(&pair[0]) {
                    ids.push(String::from_utf8_lossy(&raw).into_owned());
                }
                if let Some(raw) = bytes(&pair[1]) {
                    let by_email: Vec<String> = from_json("users by email", &raw)?;
                    ids.extend(by_email.into_iter().take(MAX_EMAIL_MATCHES));
                }
            }
            ids.sort();
            ids.dedup();
            named.push(ids);
        }
        // 2: those users.
        let mut wanted: Vec<&String> = named.iter().flatten().collect();
        wanted.sort();
        wanted.dedup();
        let mut pipe = redis::pipe();
        for id in &wanted {
            let id = SfId::parse(id).map_err(|e| corrupt("user id", e))?;
            pipe.get(gk.user(id));
        }
        let values: Vec<Value> = if wanted.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(conn).await?
        };
        let mut users: FxHashMap<&str, SfUser> = FxHashMap::default();
        for (id, value) in wanted.iter().zip(&values) {
            if let Some(raw) = bytes(value) {
                users.insert(id.as_str(), from_json("user", &raw)?);
            }
        }
        // 3: the context of the user each AE user would be mapped to.
        let mut chosen: Vec<Option<SfId>> = Vec::with_capacity(ae_users.len());
        for ((_, ae_user), ids) in ae_users.iter().zip(&named) {
            let email = lower(ae_user.email.trim());
            let candidates: Vec<&SfUser> =
                ids.iter().filter_map(|id| users.get(id.as_str())).collect();
            let by_username = candidates
                .iter()
                .copied()
                .find(|u| lower(&u.username) == email);
            let by_email: Vec<&SfUser> = candidates
                .iter()
                .copied()
                .filter(|u| lower(u.email.trim()) == email)
                .collect();
            chosen.push(crate::audit::counterpart(by_username, &by_email).map(|u| u.id));
        }
        let mut pipe = redis::pipe();
        for id in chosen.iter().flatten() {
            pipe.get(gk.context(*id));
        }
        let values: Vec<Value> = if chosen.iter().any(Option::is_some) {
            pipe.query_async(conn).await?
        } else {
            Vec::new()
        };
        let mut contexts = values.iter();
        let mut out = Vec::with_capacity(ae_users.len());
        for (((b, ae_user), ids), chosen) in ae_users.into_iter().zip(&named).zip(&chosen) {
            let context = match chosen {
                Some(_) => contexts
                    .next()
                    .and_then(bytes)
                    .map(|raw| from_json("user context", &raw))
                    .transpose()?,
                None => None,
            };
            let candidates: Vec<SfUser> = ids
                .iter()
                .filter_map(|id| users.get(id.as_str()).cloned())
                .collect();
            out.push((b, ae_user, candidates, context));
        }
        Ok(out)
    }
}

async fn joined<T>(job: tokio::task::JoinHandle<T>) -> Result<T, StoreError> {
    job.await
        .map_err(|e| StoreError::Corrupt(format!("the audit of a batch failed: {e}")))
}

/// The list itself is written by the publisher next to the other generation keys.
pub(super) fn subjects_json(org: &Org) -> Vec<u8> {
    super::to_json(&AuditSubjects::of(org))
}
