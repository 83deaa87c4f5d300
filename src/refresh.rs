//! Keeps the cache fresh: fetches Salesforce and every business unit's AE users, and
//! publishes a complete new snapshot, or nothing. Runs at start-up and on a schedule, one
//! replica at a time, restarted if it panics; and re-checks one user live on demand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::domain::{BusinessUnit, OrgSnapshot, Query, SfUser, Subject};
use crate::sources::{AccountEngagementClient, SalesforceClient, SourceError, UserLookup};
use crate::store::{LockToken, Outcome, Store, StoreError};

/// The live upstreams and the business units to read from them.
pub struct Sources {
    pub salesforce: Arc<SalesforceClient>,
    pub account_engagement: AccountEngagementClient,
    /// From the settings file; the refresh fills in their AE users.
    pub business_units: Vec<BusinessUnit>,
}

pub const SALESFORCE_SOURCE: &str = "salesforce";
pub const REFRESH_SOURCE: &str = "refresh";

pub fn business_unit_source(bu: &BusinessUnit) -> String {
    format!("account_engagement:{}", bu.id)
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshReport {
    pub sf_users: usize,
    /// (business unit id, AE users)
    pub ae_users: Vec<(String, usize)>,
    pub duration: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("another replica is refreshing; this one skipped")]
    Busy,
}

/// Records the outcome of one source, keeping its last success when it failed.
async fn record(
    store: &Store,
    source: &str,
    now: DateTime<Utc>,
    started: Instant,
    result: Result<usize, &SourceError>,
) -> Result<(), StoreError> {
    let mut status = store.source_status(source).await.unwrap_or_default();
    let kind = if source.starts_with("account_engagement") {
        "account_engagement"
    } else {
        source
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(crate::metrics::SOURCE_RESULTS, "source" => kind.to_owned(), "result" => outcome).increment(1);
    match result {
        Ok(records) => {
            status.last_success_at = Some(now);
            status.records = Some(records);
            status.duration_ms = Some(started.elapsed().as_millis() as u64);
            status.last_error = None;
        }
        Err(err) => {
            status.last_error = Some(err.to_string());
            status.last_error_at = Some(now);
        }
    }
    store.record_status(source, &status).await
}

/// One full refresh. Publishes nothing unless every source answered completely.
pub async fn refresh_once(
    sources: &Sources,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<RefreshReport, RefreshError> {
    let started = Instant::now();
    let salesforce = async {
        let t = Instant::now();
        (sources.salesforce.fetch_org().await, t)
    };
    let business_units =
        futures_util::future::join_all(sources.business_units.iter().map(|bu| async {
            let t = Instant::now();
            (
                sources
                    .account_engagement
                    .fetch_users(bu.id, &bu.ae_url)
                    .await,
                t,
            )
        }));
    let ((salesforce, sf_started), ae_results) = tokio::join!(salesforce, business_units);

    record(
        store,
        SALESFORCE_SOURCE,
        now,
        sf_started,
        salesforce.as_ref().map(|o| o.users.len()),
    )
    .await?;
    for (bu, (result, t)) in sources.business_units.iter().zip(&ae_results) {
        record(
            store,
            &business_unit_source(bu),
            now,
            *t,
            result.as_ref().map(Vec::len),
        )
        .await?;
    }
    let failure = salesforce
        .as_ref()
        .err()
        .or_else(|| ae_results.iter().find_map(|(r, _)| r.as_ref().err()))
        .cloned();
    if let Some(err) = failure {
        record(store, REFRESH_SOURCE, now, started, Err(&err)).await?;
        tracing::warn!(error = %err, "refresh failed; the previous snapshot keeps serving");
        return Err(err.into());
    }
    let salesforce = salesforce?;
    let mut business_units = sources.business_units.clone();
    for (bu, (users, _)) in business_units.iter_mut().zip(ae_results) {
        bu.users = users?;
    }
    let report = RefreshReport {
        sf_users: salesforce.users.len(),
        ae_users: business_units
            .iter()
            .map(|b| (b.id.to_string(), b.users.len()))
            .collect(),
        duration: Duration::ZERO,
    };
    let snapshot = OrgSnapshot {
        fetched_at: now,
        salesforce,
        business_units,
    };
    if let Err(err) = store.publish(snapshot).await {
        let as_source = SourceError::Settings {
            problem: format!("the new snapshot could not be published: {err}"),
            fix: "check the cache (Redis); the previous snapshot keeps serving".to_owned(),
        };
        record(store, REFRESH_SOURCE, now, started, Err(&as_source))
            .await
            .ok();
        return Err(err.into());
    }
    if let Some(usage) = sources.salesforce.api_usage() {
        metrics::gauge!(crate::metrics::SALESFORCE_API_USED).set(usage.used as f64);
        metrics::gauge!(crate::metrics::SALESFORCE_API_MAX).set(usage.max as f64);
    }
    let records = report.sf_users + report.ae_users.iter().map(|(_, n)| n).sum::<usize>();
    record(store, REFRESH_SOURCE, now, started, Ok(records)).await?;
    Ok(RefreshReport {
        duration: started.elapsed(),
        ..report
    })
}

/// How long the refresh lock lives without renewal; renewed every third of it while working.
pub const LOCK_TTL: Duration = Duration::from_secs(60);

/// A refresh under the cache's lock, so that replicas do not refresh at the same time.
pub async fn refresh_locked(
    sources: &Sources,
    store: &Store,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<RefreshReport, RefreshError> {
    let token = store.try_lock(ttl).await?.ok_or(RefreshError::Busy)?;
    let renewal = tokio::spawn(renew_while_held(store.clone(), token.clone(), ttl));
    let started = Instant::now();
    let result = refresh_once(sources, store, now).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(crate::metrics::REFRESH_RUNS, "result" => outcome).increment(1);
    metrics::histogram!(crate::metrics::REFRESH_DURATION).record(started.elapsed().as_secs_f64());
    renewal.abort();
    if let Err(err) = store.release_lock(&token).await {
        tracing::warn!(error = %err, "could not release the refresh lock; it expires by itself");
    }
    result
}

async fn renew_while_held(store: Store, token: LockToken, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_lock(&token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the refresh lock was lost; another replica may refresh too");
                return;
            }
            Err(err) => tracing::warn!(error = %err, "could not renew the refresh lock"),
        }
    }
}

/// How often the cache is looked at between refreshes: a cache found empty (Redis restarted
/// without its data) is refilled then, not at the next interval.
pub const EMPTY_CACHE_CHECK: Duration = Duration::from_secs(10);

/// Refreshes at once and then every `interval` until `shutdown`. Each run is its own task:
/// a panic is logged and the next run goes ahead.
pub async fn run(
    sources: Arc<Sources>,
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
) {
    run_watching(sources, store, interval, EMPTY_CACHE_CHECK, shutdown).await
}

/// [`run`], looking at the cache every `watch` between refreshes.
pub async fn run_watching(
    sources: Arc<Sources>,
    store: Store,
    interval: Duration,
    watch: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let run = tokio::spawn({
            let (sources, store) = (sources.clone(), store.clone());
            async move { refresh_locked(&sources, &store, Utc::now(), LOCK_TTL).await }
        });
        tokio::select! {
            result = run => match result {
                Ok(Ok(report)) => tracing::info!(
                    sf_users = report.sf_users,
                    duration_ms = report.duration.as_millis() as u64,
                    "refresh published a new snapshot"
                ),
                Ok(Err(RefreshError::Busy)) => tracing::debug!("another replica is refreshing"),
                Ok(Err(err)) => tracing::warn!(error = %err, "refresh failed"),
                Err(err) if err.is_panic() => tracing::error!("refresh panicked; it runs again at the next interval"),
                Err(_) => {}
            },
            () = shutdown.cancelled() => return,
        }
        let next = tokio::time::Instant::now() + interval;
        loop {
            let now = tokio::time::Instant::now();
            if now >= next {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep((next - now).min(watch)) => {}
                () = shutdown.cancelled() => return,
            }
            if matches!(store.status().await, Ok(report) if report.data_as_of.is_none()) {
                tracing::warn!(
                    "the cache holds no snapshot (was Redis restarted?); refreshing now"
                );
                break;
            }
        }
    }
}

/// Re-reads one user live from Salesforce and every business unit, updates the cache for
/// that user, and diagnoses again. The query is resolved against the cache first, so that a
/// name finds the user it found before.
pub async fn recheck(
    sources: &Sources,
    store: &Store,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<Outcome, RefreshError> {
    let cached = match store.diagnose(query, now).await {
        Ok(outcome) => outcome.ok().and_then(|d| d.salesforce_user),
        Err(StoreError::NoSnapshot) => None,
        Err(err) => return Err(err.into()),
    };
    let user: Option<SfUser> = match (cached, &query.subject) {
        (Some(user), _) => sources
            .salesforce
            .fetch_user(UserLookup::Id(user.id))
            .await?
            .pop(),
        (None, Subject::Id(id)) => sources
            .salesforce
            .fetch_user(UserLookup::Id(*id))
            .await?
            .pop(),
        (None, Subject::Login(login)) => {
            let by_username = sources
                .salesforce
                .fetch_user(UserLookup::Username(login))
                .await?;
            match by_username.is_empty() {
                true => sources
                    .salesforce
                    .fetch_user(UserLookup::Email(login))
                    .await?
                    .pop(),
                false => by_username.into_iter().next(),
            }
        }
        (None, Subject::Name(_)) => None,
    };
    if let Some(user) = user {
        let direct_groups = sources.salesforce.fetch_direct_groups(user.id).await?;
        let mut fresh = Vec::with_capacity(sources.business_units.len());
        for bu in &sources.business_units {
            let users = sources
                .account_engagement
                .fetch_users(bu.id, &bu.ae_url)
                .await?;
            fresh.push((bu.id, users));
        }
        store.update_user(user, direct_groups, fresh).await?;
    }
    Ok(store.diagnose(query, now).await?)
}
