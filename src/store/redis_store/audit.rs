//! What an audit reads from the shared cache: the generation lists who is audited
//! (`audit-subjects`, written at publish), and each user comes with the small org its stored
//! context gives, exactly as a `check` of that user reads it. Users are read in batches, so
//! that the caller (`check::audit`) diagnoses one batch while the next is read, and memory
//! stays flat whatever the org's size.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::Value;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::Conn;
use super::query::MAX_EMAIL_MATCHES;
use super::{RedisStore, bytes, corrupt, from_json, hget};
use crate::domain::snapshot::lower;
use crate::domain::{AeUser, BusinessUnit, Org, SfId, SfUser, counterpart};
use crate::store::StoreError;
use crate::store::keys::GenerationKeys;
use crate::store::records::{GenerationMeta, UserContext, assemble};

/// Users per round trip.
const BATCH: usize = 500;

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

/// Reads who an audit looks at, a batch at a time, from one generation of the shared cache.
/// Each batch is one round trip for Salesforce users, three for AE users (see `ae_batch`).
pub struct AuditReader {
    store: RedisStore,
    conn: Conn,
    gk: GenerationKeys,
    meta: Arc<GenerationMeta>,
    subjects: AuditSubjects,
    /// Where the next batch starts: Salesforce users, then AE users.
    next_sf: usize,
    next_ae: usize,
}

/// One batch read: Salesforce users with their contexts, or AE users with the Salesforce
/// users their emails name. Turning it into small orgs (`subjects`) is CPU work: do it off
/// the async workers.
pub struct AuditBatch {
    meta: Arc<GenerationMeta>,
    items: BatchItems,
}

enum BatchItems {
    SfUsers(Vec<(SfUser, Option<UserContext>)>),
    AeUsers(Vec<(u32, AeUser, Vec<SfUser>, Option<UserContext>)>),
}

/// One user an audit looks at, with the small org that holds what its diagnosis reads.
pub enum AuditSubject {
    /// An active internal Salesforce user: the org's first user.
    SfUser(Org),
    /// An AE user with no CRM username, in the business unit of this index.
    AeUser {
        business_unit: usize,
        ae_user: AeUser,
        org: Org,
    },
}

impl AuditBatch {
    /// How many users the batch looked at.
    pub fn len(&self) -> usize {
        match &self.items {
            BatchItems::SfUsers(users) => users.len(),
            BatchItems::AeUsers(users) => users.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The users, each with its small org, built one at a time.
    pub fn subjects(self) -> Box<dyn Iterator<Item = AuditSubject> + Send> {
        let meta = self.meta;
        match self.items {
            BatchItems::SfUsers(users) => {
                Box::new(users.into_iter().map(move |(user, context)| {
                    AuditSubject::SfUser(Org::without_search(assemble(
                        &meta,
                        vec![user],
                        context,
                        vec![],
                    )))
                }))
            }
            BatchItems::AeUsers(users) => {
                Box::new(users.into_iter().map(move |(b, ae_user, users, context)| {
                    let org = Org::new(assemble(&meta, users, context, vec![(b, ae_user.clone())]));
                    AuditSubject::AeUser {
                        business_unit: b as usize,
                        ae_user,
                        org,
                    }
                }))
            }
        }
    }
}

impl AuditReader {
    /// The settings of the business units (without their users).
    pub fn business_units(&self) -> &[BusinessUnit] {
        &self.meta.business_units
    }

    pub fn fetched_at(&self) -> DateTime<Utc> {
        self.meta.fetched_at
    }

    /// AE users held per business unit (by index), in the recycle bin or not.
    pub fn ae_user_counts(&self) -> &[usize] {
        &self.meta.ae_user_counts
    }

    /// Active internal Salesforce users, all read.
    pub fn sf_users(&self) -> usize {
        self.subjects.sf.len()
    }

    /// AE users with no CRM username still to be read.
    pub fn ae_users(&self) -> usize {
        self.subjects.ae.len()
    }

    /// Reads only the AE users of this business unit (by index); Salesforce users are read
    /// whatever the scope, as their rows depend on every business unit's settings.
    pub fn only_business_unit(&mut self, business_unit: usize) {
        self.subjects
            .ae
            .retain(|(b, _)| *b as usize == business_unit);
    }

    /// The next batch, `None` when every user has been read.
    pub async fn next(&mut self) -> Result<Option<AuditBatch>, StoreError> {
        let items = if self.next_sf < self.subjects.sf.len() {
            let end = (self.next_sf + BATCH).min(self.subjects.sf.len());
            let ids = &self.subjects.sf[self.next_sf..end];
            let users = self
                .store
                .users_and_contexts(&mut self.conn, &self.gk, ids)
                .await?;
            self.next_sf = end;
            BatchItems::SfUsers(users)
        } else if self.next_ae < self.subjects.ae.len() {
            let end = (self.next_ae + BATCH).min(self.subjects.ae.len());
            let batch = &self.subjects.ae[self.next_ae..end];
            let users = self.store.ae_batch(&mut self.conn, &self.gk, batch).await?;
            self.next_ae = end;
            BatchItems::AeUsers(users)
        } else {
            return Ok(None);
        };
        Ok(Some(AuditBatch {
            meta: self.meta.clone(),
            items,
        }))
    }
}

impl RedisStore {
    /// An audit's reader of the current generation.
    pub async fn audit_reader(&self) -> Result<AuditReader, StoreError> {
        let mut conn = self.conn.clone();
        let generation = self.current_generation(&mut conn).await?;
        let meta = self.meta(&mut conn, &generation).await?;
        let gk = self.keys.generation(&generation);
        let raw: Option<Vec<u8>> =
            redis::AsyncCommands::get(&mut conn, gk.audit_subjects()).await?;
        let raw = raw.ok_or_else(|| corrupt("audit subjects", "missing"))?;
        let subjects: AuditSubjects = from_json("audit subjects", &raw)?;
        Ok(AuditReader {
            store: self.clone(),
            conn,
            gk,
            meta,
            subjects,
            next_sf: 0,
            next_ae: 0,
        })
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
            hget(&mut pipe, gk.user(id));
            hget(&mut pipe, gk.context(id));
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
            hget(&mut pipe, gk.ae_user(*b as usize, *id));
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
            hget(&mut pipe, gk.login(email));
            hget(&mut pipe, gk.email(email));
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
            hget(&mut pipe, gk.user(id));
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
            chosen.push(counterpart(by_username, &by_email).map(|u| u.id));
        }
        let mut pipe = redis::pipe();
        for id in chosen.iter().flatten() {
            hget(&mut pipe, gk.context(*id));
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

/// The list itself is written by the publisher next to the other generation keys.
pub(super) fn subjects_json(org: &Org) -> Vec<u8> {
    super::to_json(&AuditSubjects::of(org))
}
