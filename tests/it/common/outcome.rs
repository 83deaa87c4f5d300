//! The check service's answers in the shape the tests compare with the pure code on the whole
//! org (`diagnose`, `audit_org`): the result, or why the query's target (the audit's scope)
//! could not be used; the cache's error outside.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_username::audit::{AuditReport, Progress, ScopeError};
use crm_username::check::{AuditError, CheckError};
use crm_username::diagnose::TargetError;
use crm_username::domain::{Diagnosis, Query};
use crm_username::store::{RedisStore, Store, StoreError};

/// The stores the tests hold: the app's, or a Redis store of their own.
pub trait AsStore {
    fn as_store(&self) -> Store;
}

impl AsStore for Store {
    fn as_store(&self) -> Store {
        self.clone()
    }
}

impl AsStore for RedisStore {
    fn as_store(&self) -> Store {
        Store::Redis(self.clone())
    }
}

impl<T: AsStore + ?Sized> AsStore for &T {
    fn as_store(&self) -> Store {
        (**self).as_store()
    }
}

pub async fn check(
    store: &impl AsStore,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<Result<Diagnosis, TargetError>, StoreError> {
    match crm_username::check::check(&store.as_store(), query, now).await {
        Ok(diagnosis) => Ok(Ok(diagnosis)),
        Err(CheckError::Target(err)) => Ok(Err(err)),
        Err(CheckError::Store(err)) => Err(err),
        Err(CheckError::Live(err)) => panic!("a check from the cache read live: {err}"),
    }
}

pub async fn audit(
    store: &impl AsStore,
    scope: &str,
    now: DateTime<Utc>,
    max_rows: Option<usize>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<Result<AuditReport, ScopeError>, StoreError> {
    match crm_username::check::audit(&store.as_store(), scope, now, max_rows, progress).await {
        Ok(report) => Ok(Ok(report)),
        Err(AuditError::Scope(err)) => Ok(Err(err)),
        Err(AuditError::Store(err)) => Err(err),
        Err(AuditError::Stopped(err)) => panic!("{err}"),
    }
}
