//! The check service: turns a query into a diagnosis, and runs the audit, from the cache.
//!
//! Each step at its own level: the store reads (the small org a query needs, or the audit's
//! users a batch at a time), the pure code resolves and diagnoses (`diagnose`, `audit`). The
//! store never diagnoses, and nothing here knows Redis.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::{
    AuditReport, AuditRow, Progress, Scope, ScopeError, ae_user_row, audit_org, sf_user_rows,
};
use crate::diagnose::{TargetError, diagnose};
use crate::domain::{Diagnosis, Query};
use crate::sources::SourceError;
use crate::store::{AuditBatch, AuditReader, AuditSource, AuditSubject, Store, StoreError};

/// Why a query got no diagnosis.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The cache could not be read (or holds no data yet).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query's target (`for …`) names no AE user, or several: a usage error.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A live read (a re-check) failed.
    #[error(transparent)]
    Live(#[from] SourceError),
}

/// Why an audit gave no report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The business unit asked for is unknown or ambiguous: a usage error.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The work on a blocking thread panicked or was cancelled.
    #[error("the audit stopped: {0}")]
    Stopped(String),
}

/// Diagnoses one query from the cache: read the org it needs, then resolve and diagnose.
pub async fn check(
    store: &Store,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<Diagnosis, CheckError> {
    let org = store.query_org(query).await?;
    Ok(diagnose(query, &org, now)?)
}

/// The audit of every business unit, or of the one `scope` names (id or name), from the
/// cache, keeping at most `max_rows` rows (the most severe; counts cover all). `progress`
/// hears how many users have been looked at, out of how many.
pub async fn audit(
    store: &Store,
    scope: &str,
    now: DateTime<Utc>,
    max_rows: Option<usize>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<AuditReport, AuditError> {
    match store.audit_source().await? {
        AuditSource::Whole(org) => {
            let scope = Scope::parse(scope, org.business_units())?;
            tokio::task::spawn_blocking(move || {
                audit_org(&org, &scope, now, max_rows, &mut |p| progress(p))
            })
            .await
            .map_err(|e| AuditError::Stopped(e.to_string()))
        }
        AuditSource::Batches(reader) => {
            audit_batches(*reader, scope, now, max_rows, progress).await
        }
    }
}

/// One batch's rows, computed off the async workers.
type Pending = tokio::task::JoinHandle<Vec<AuditRow>>;

/// The audit of the shared cache: the next batch is read while the previous one is diagnosed
/// on a blocking thread, so memory stays flat whatever the org's size.
async fn audit_batches(
    mut reader: AuditReader,
    scope: &str,
    now: DateTime<Utc>,
    max_rows: Option<usize>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<AuditReport, AuditError> {
    let scope = Scope::parse(scope, reader.business_units())?;
    let bu = scope.index();
    if let Some(b) = bu {
        reader.only_business_unit(b);
    }
    let total = reader.sf_users() + reader.ae_users();
    let in_scope = |b: &usize| bu.is_none_or(|s| s == *b);
    let mut report = AuditReport::new(&scope, reader.fetched_at(), now, max_rows);
    report.business_units = reader
        .business_units()
        .iter()
        .enumerate()
        .filter(|(b, _)| in_scope(b))
        .map(|(_, u)| (u.id, u.label()))
        .collect();
    report.sf_users_scanned = reader.sf_users();
    report.ae_users_scanned = reader
        .ae_user_counts()
        .iter()
        .enumerate()
        .filter(|(b, _)| in_scope(b))
        .map(|(_, n)| n)
        .sum();
    let mut done = 0;
    let mut pending: Option<(Pending, usize)> = None;
    while let Some(batch) = reader.next().await? {
        let n = batch.len();
        let job = tokio::task::spawn_blocking(move || rows(batch, bu, now));
        if let Some((previous, n)) = pending.replace((job, n)) {
            report.add_all(joined(previous).await?);
            done += n;
            progress(Progress { done, total });
        }
    }
    if let Some((last, n)) = pending.take() {
        report.add_all(joined(last).await?);
        done += n;
        progress(Progress { done, total });
    }
    report.finish();
    Ok(report)
}

/// The rows of one batch: pure, on the small org of each user.
fn rows(batch: AuditBatch, scope: Option<usize>, now: DateTime<Utc>) -> Vec<AuditRow> {
    batch
        .subjects()
        .flat_map(|subject| match subject {
            AuditSubject::SfUser(org) => {
                let user = &org.snapshot().salesforce.users[0];
                sf_user_rows(&org, user, scope, now)
            }
            AuditSubject::AeUser {
                business_unit,
                ae_user,
                org,
            } => ae_user_row(&org, business_unit, &ae_user, now)
                .into_iter()
                .collect(),
        })
        .collect()
}

async fn joined<T>(job: tokio::task::JoinHandle<T>) -> Result<T, AuditError> {
    job.await
        .map_err(|e| AuditError::Stopped(format!("the audit of a batch failed: {e}")))
}
