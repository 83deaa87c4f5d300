//! Keeps the cache fresh: fetches Salesforce and every business unit's AE users, and
//! publishes a complete new snapshot, or nothing. Runs at start-up and on a schedule, one
//! replica at a time, restarted if it panics; re-checks one user live on demand; and looks
//! up live, within bounds, a query that matched no cached user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::check::{CheckError, check};
use crate::domain::{BusinessUnit, Diagnosis, Query, SfUser, Subject, Verdict};

mod runs;
use crate::sources::{AccountEngagementClient, SalesforceClient, SourceError, UserLookup};
use crate::store::{LockToken, Store, StoreError};
pub use runs::{
    ApiCalls, Base, FULL_SOURCE, FullWrite, INCREMENTAL_SOURCE, Next, OVERLAP, RefreshKind,
    RefreshReport, Refresher, Schedule, Seen, full, incremental, next_run, run_scheduled,
};

/// The live upstreams and the business units to read from them.
pub struct Sources {
    pub salesforce: Arc<SalesforceClient>,
    pub account_engagement: AccountEngagementClient,
    /// From the settings file; the refresh fills in their AE users.
    pub business_units: Vec<BusinessUnit>,
    /// Bounds on looking up live the queries the cache cannot answer.
    pub live_lookups: LiveLookups,
}

pub const SALESFORCE_SOURCE: &str = "salesforce";
pub const REFRESH_SOURCE: &str = "refresh";

pub fn business_unit_source(bu: &BusinessUnit) -> String {
    format!("account_engagement:{}", bu.id)
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
    Ok(runs::full(sources, store, now).await?.0)
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
    refresh_locked_with(sources, store, now, ttl, FullWrite::WhatChanged).await
}

/// [`refresh_locked`], writing as `write` says (`refresh --new-generation`).
pub async fn refresh_locked_with(
    sources: &Sources,
    store: &Store,
    now: DateTime<Utc>,
    ttl: Duration,
    write: FullWrite,
) -> Result<RefreshReport, RefreshError> {
    let token = store.try_lock(ttl).await?.ok_or(RefreshError::Busy)?;
    let renewal = tokio::spawn(renew_while_held(store.clone(), token.clone(), ttl));
    let started = Instant::now();
    let result = runs::full_with(sources, store, now, write)
        .await
        .map(|(report, _)| report);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(crate::metrics::REFRESH_RUNS, "result" => outcome, "kind" => "full")
        .increment(1);
    metrics::histogram!(crate::metrics::REFRESH_DURATION, "kind" => "full")
        .record(started.elapsed().as_secs_f64());
    renewal.abort();
    if let Err(err) = store.release_lock(&token).await {
        tracing::warn!(error = %err, "could not release the refresh lock; it expires by itself");
    }
    result
}

pub(crate) async fn renew_while_held(store: Store, token: LockToken, ttl: Duration) {
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

/// The refresher as `serve` and `refresh --watch` run it: [`run_scheduled`] on a thread of
/// its own at a lower priority ([`crate::background::spawn_low_priority_task`]), writing over
/// a Redis connection of its own, until `shutdown`. The future is ready once it has stopped.
pub fn spawn(
    sources: Arc<Sources>,
    store: Store,
    schedule: Schedule,
    watch: Duration,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    crate::background::spawn_low_priority_task("refresher", async move {
        // Opened here, so that its connection is driven by the refresher's runtime.
        let store = store.with_own_connection();
        run_scheduled(sources, store, schedule, watch, shutdown).await
    })
}

/// Full refreshes at once and then every `interval` until `shutdown` (no incremental ones):
/// [`run_scheduled`] with [`Schedule::full_only`].
pub async fn run(
    sources: Arc<Sources>,
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
) {
    run_scheduled(
        sources,
        store,
        Schedule::full_only(interval),
        EMPTY_CACHE_CHECK,
        shutdown,
    )
    .await
}

/// Re-reads one user live from Salesforce and every business unit, updates the cache for
/// that user, and diagnoses again. The query is resolved against the cache first, so that a
/// name finds the user it found before.
pub async fn recheck(
    sources: &Sources,
    store: &Store,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<Diagnosis, CheckError> {
    let cached = match check(store, query, now).await {
        Ok(diagnosis) => diagnosis.salesforce_user,
        Err(CheckError::Target(_) | CheckError::Store(StoreError::NoSnapshot)) => None,
        Err(err) => return Err(err),
    };
    let user = match cached {
        Some(user) => fetch_live_user(sources, &Subject::Id(user.id)).await?,
        None => fetch_live_user(sources, &query.subject).await?,
    };
    if let Some(user) = user {
        load_user(sources, store, user).await?;
    }
    check(store, query, now).await
}

/// The Salesforce user a subject names, read live: by id, or by username and then by email.
/// Names are not looked up live: a name search needs the whole org.
async fn fetch_live_user(
    sources: &Sources,
    subject: &Subject,
) -> Result<Option<SfUser>, SourceError> {
    let salesforce = &sources.salesforce;
    Ok(match subject {
        Subject::Id(id) => salesforce.fetch_user(UserLookup::Id(*id)).await?.pop(),
        Subject::Login(login) => {
            let by_username = salesforce.fetch_user(UserLookup::Username(login)).await?;
            match by_username.into_iter().next() {
                Some(user) => Some(user),
                None => salesforce.fetch_user(UserLookup::Email(login)).await?.pop(),
            }
        }
        Subject::Name(_) => None,
    })
}

/// Puts a user read live into the cache, with the groups holding it and fresh AE users. An
/// external user needs neither: AE cannot map it in any business unit.
async fn load_user(sources: &Sources, store: &Store, user: SfUser) -> Result<(), CheckError> {
    if !user.is_internal() {
        store.update_user(user, Vec::new(), Vec::new()).await?;
        return Ok(());
    }
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
    Ok(())
}

/// Diagnoses a query from the cache. When it matches no cached user (an external user, whom
/// the refresh does not cache, or a user created since the last refresh), Salesforce is asked
/// live before the answer is `not_found`, within the bounds of [`LiveLookups`]. A failed live
/// lookup is logged and the cached answer stands.
pub async fn answer(
    sources: &Sources,
    store: &Store,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<Diagnosis, CheckError> {
    let outcome = check(store, query, now).await;
    answer_live(sources, store, query, now, outcome).await
}

/// [`answer`] for a query whose cached answer is `outcome` (the diagnosis of the small org
/// read for it): a `not_found` is looked up live, within bounds.
pub async fn answer_live(
    sources: &Sources,
    store: &Store,
    query: &Query,
    now: DateTime<Utc>,
    outcome: Result<Diagnosis, CheckError>,
) -> Result<Diagnosis, CheckError> {
    if !matches!(&outcome, Ok(d) if d.verdict == Verdict::NotFound) {
        return outcome;
    }
    let Some(key) = LiveLookups::key(&query.subject) else {
        return outcome;
    };
    if !sources.live_lookups.admit(&key, Instant::now()) {
        return outcome;
    }
    let found = match fetch_live_user(sources, &query.subject).await {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "the live lookup of a query the cache could not answer failed");
            return outcome;
        }
    };
    let Some(user) = found else {
        sources.live_lookups.remember_miss(key, Instant::now());
        return outcome;
    };
    if let Err(err) = load_user(sources, store, user).await {
        tracing::warn!(error = %err, "a user found live could not be added to the cache");
        return outcome;
    }
    check(store, query, now).await
}

/// How long a query Salesforce did not know either is answered `not_found` without asking
/// again: typos are retyped within seconds, and a user created later shows up at the next
/// refresh or re-check.
pub const LIVE_LOOKUP_MISS_TTL: Duration = Duration::from_secs(5 * 60);
/// Live lookups per replica per minute, at most. Each costs one or two Salesforce API calls
/// (and, when an internal user is found, one more plus one AE call per business unit): a burst
/// of typos is cut off at about 60 Salesforce calls a minute, while real lookups (new or
/// external users, asked about a few times a day) never come near it.
pub const LIVE_LOOKUPS_PER_MINUTE: u32 = 30;
/// Misses remembered at most; when full, expired ones are dropped, then all.
const MAX_REMEMBERED_MISSES: usize = 10_000;

/// The bounds on live lookups, per replica: a short negative cache and a per-minute ceiling.
/// Hand-written: two counters and a small map under one lock; a rate-limiting crate would add
/// more code than it saves here.
pub struct LiveLookups {
    miss_ttl: Duration,
    per_minute: u32,
    state: Mutex<LookupState>,
}

#[derive(Default)]
struct LookupState {
    misses: HashMap<String, Instant>,
    /// Start of the current one-minute window, and lookups admitted in it.
    window: Option<(Instant, u32)>,
}

impl Default for LiveLookups {
    fn default() -> Self {
        LiveLookups::new(LIVE_LOOKUP_MISS_TTL, LIVE_LOOKUPS_PER_MINUTE)
    }
}

impl LiveLookups {
    pub fn new(miss_ttl: Duration, per_minute: u32) -> Self {
        LiveLookups {
            miss_ttl,
            per_minute,
            state: Mutex::new(LookupState::default()),
        }
    }

    /// What identifies a lookup: the lower-cased login or the 15-character id; names are not
    /// looked up.
    fn key(subject: &Subject) -> Option<String> {
        match subject {
            Subject::Id(id) => Some(format!("id:{}", id.as_str15())),
            Subject::Login(login) => Some(format!("login:{}", login.to_lowercase())),
            Subject::Name(_) => None,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LookupState> {
        // Each update is a single assignment or insert: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a lookup of `key` may go to Salesforce now: not a recent miss, and under the
    /// ceiling of this minute (then it counts).
    fn admit(&self, key: &str, now: Instant) -> bool {
        let mut state = self.state();
        if state.misses.get(key).is_some_and(|until| *until > now) {
            return false;
        }
        let (start, used) = match state.window {
            Some((start, used)) if now.duration_since(start) < Duration::from_secs(60) => {
                (start, used)
            }
            _ => (now, 0),
        };
        if used >= self.per_minute {
            metrics::counter!(crate::metrics::LIVE_LOOKUPS, "result" => "refused").increment(1);
            return false;
        }
        state.window = Some((start, used + 1));
        metrics::counter!(crate::metrics::LIVE_LOOKUPS, "result" => "admitted").increment(1);
        true
    }

    fn remember_miss(&self, key: String, now: Instant) {
        let mut state = self.state();
        if state.misses.len() >= MAX_REMEMBERED_MISSES {
            state.misses.retain(|_, until| *until > now);
            if state.misses.len() >= MAX_REMEMBERED_MISSES {
                state.misses.clear();
            }
        }
        state.misses.insert(key, now + self.miss_ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_query_is_not_looked_up_again_until_its_miss_expires() {
        let lookups = LiveLookups::new(Duration::from_secs(300), 100);
        let t0 = Instant::now();
        assert!(lookups.admit("login:typo@acme.com", t0));
        lookups.remember_miss("login:typo@acme.com".into(), t0);
        assert!(!lookups.admit("login:typo@acme.com", t0 + Duration::from_secs(299)));
        assert!(lookups.admit("login:other@acme.com", t0 + Duration::from_secs(299)));
        assert!(lookups.admit("login:typo@acme.com", t0 + Duration::from_secs(301)));
    }

    #[test]
    fn lookups_beyond_the_ceiling_wait_for_the_next_minute() {
        let lookups = LiveLookups::new(Duration::from_secs(300), 3);
        let t0 = Instant::now();
        let admitted: Vec<bool> = (0..5)
            .map(|i| lookups.admit(&format!("login:u{i}"), t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert!(lookups.admit("login:u9", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn names_are_not_looked_up_live() {
        assert_eq!(LiveLookups::key(&Subject::Name("jane doe".into())), None);
        assert_eq!(
            LiveLookups::key(&Subject::Login("Jane@Acme.com".into())).as_deref(),
            Some("login:jane@acme.com")
        );
    }
}
