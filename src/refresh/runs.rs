//! The refresh runs: a full one reads everything the diagnosis needs and publishes a new
//! generation; an incremental one reads what changed since the last run, merges it into the
//! org this replica published last, and patches the current generation with the
//! differences. The schedule decides which runs when.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{
    REFRESH_SOURCE, RefreshError, SALESFORCE_SOURCE, Sources, business_unit_source, record,
};
use crate::domain::{Org, OrgSnapshot};
use crate::sources::{SourceError, high_water_ae, merge_ae_users};
use crate::store::{GenerationRef, PatchOutcome, SourceStatus, Store, StoreError};

/// Which kind of refresh ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshKind {
    Full,
    Incremental,
}

impl RefreshKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshKind::Full => "full",
            RefreshKind::Incremental => "incremental",
        }
    }

    /// The status entry of the last run of this kind.
    pub fn source(self) -> &'static str {
        match self {
            RefreshKind::Full => FULL_SOURCE,
            RefreshKind::Incremental => INCREMENTAL_SOURCE,
        }
    }
}

/// Status entries of the last full and the last incremental refresh (`status`, Home tab).
pub const FULL_SOURCE: &str = "refresh:full";
pub const INCREMENTAL_SOURCE: &str = "refresh:incremental";

/// API requests one refresh made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCalls {
    pub salesforce: u64,
    pub account_engagement: u64,
}

impl ApiCalls {
    pub fn total(self) -> u64 {
        self.salesforce + self.account_engagement
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshReport {
    pub kind: RefreshKind,
    pub sf_users: usize,
    /// (business unit id, AE users)
    pub ae_users: Vec<(String, usize)>,
    pub duration: Duration,
    pub api_calls: ApiCalls,
    /// Records and keys an incremental refresh rewrote, or keys a full refresh rewrote in
    /// place; `None` when a whole new generation was written.
    pub writes: Option<usize>,
}

/// When each kind of refresh runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// A full refresh at least this often (REFRESH_INTERVAL): it sees what deltas cannot.
    pub full_every: Duration,
    /// An incremental refresh this often (REFRESH_INCREMENTAL_INTERVAL); `None`: full ones only.
    pub incremental_every: Option<Duration>,
}

impl Schedule {
    pub fn full_only(full_every: Duration) -> Self {
        Schedule {
            full_every,
            incremental_every: None,
        }
    }

    /// How often the refresher wakes up.
    pub fn tick(&self) -> Duration {
        self.incremental_every
            .map_or(self.full_every, |i| i.min(self.full_every))
    }
}

/// What a replica keeps of the org it published (or patched) last, to compare the next
/// incremental read with: the org, the generation it is in, and where the next read starts.
pub struct Base {
    pub generation: GenerationRef,
    pub org: Arc<Org>,
    /// The latest `SystemModstamp` read from Salesforce.
    pub sf_high_water: Option<DateTime<Utc>>,
    /// The latest `updatedAt` read from each business unit, in the settings' order.
    pub ae_high_water: Vec<Option<DateTime<Utc>>>,
}

/// Changes are read from a little before the latest stamp already read: a record saved by a
/// transaction that started earlier may carry an earlier stamp than one already read.
/// Reading a record twice is harmless (it is merged by id).
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// What the next run of this replica should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Full,
    Incremental,
    /// Another replica published the current generation and keeps it fresh.
    Skip,
}

/// The state the decision reads.
#[derive(Debug, Clone, Default)]
pub struct Seen<'a> {
    /// The generation readers use.
    pub current: Option<&'a GenerationRef>,
    /// The generation this replica's base is in (an epoch of it: another replica's full
    /// refresh in place moves the epoch on).
    pub base: Option<&'a GenerationRef>,
    pub last_full: Option<DateTime<Utc>>,
    pub last_incremental: Option<DateTime<Utc>>,
}

/// Pure: which refresh runs now. A full one when there is no data, when the last full one is
/// older than its period, or when the replica keeping the data fresh seems gone; an
/// incremental one when this replica published the current generation; else nothing.
pub fn next_run(schedule: &Schedule, seen: &Seen<'_>, now: DateTime<Utc>) -> Next {
    let Some(incremental_every) = schedule.incremental_every else {
        return Next::Full;
    };
    let Some(current) = seen.current else {
        return Next::Full;
    };
    let older_than = |at: Option<DateTime<Utc>>, period: Duration| match (
        at,
        chrono::Duration::from_std(period),
    ) {
        (Some(at), Ok(period)) => now - at >= period,
        _ => true,
    };
    if older_than(seen.last_full, schedule.full_every) {
        return Next::Full;
    }
    if seen.base == Some(current) {
        return Next::Incremental;
    }
    let latest = seen.last_incremental.max(seen.last_full);
    if older_than(latest, incremental_every * 3) {
        Next::Full
    } else {
        Next::Skip
    }
}

/// Counts of API requests made so far by both clients.
fn calls_so_far(sources: &Sources) -> ApiCalls {
    ApiCalls {
        salesforce: sources.salesforce.calls(),
        account_engagement: sources.account_engagement.calls(),
    }
}

fn calls_since(sources: &Sources, before: ApiCalls) -> ApiCalls {
    let now = calls_so_far(sources);
    ApiCalls {
        salesforce: now.salesforce.saturating_sub(before.salesforce),
        account_engagement: now
            .account_engagement
            .saturating_sub(before.account_engagement),
    }
}

/// How a run wrote the cache, as `crm_username_refresh_cache_writes_total` labels it.
fn how_written(report: &RefreshReport) -> &'static str {
    match (report.kind, report.writes) {
        (_, None) => "new_generation",
        (RefreshKind::Full, Some(_)) => "in_place",
        (RefreshKind::Incremental, Some(_)) => "patch",
    }
}

/// Records one run's outcome: its kind's status entry, the refresh entry, metrics and a log
/// line with its API cost.
async fn record_run(
    store: &Store,
    report: &RefreshReport,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let calls = report.api_calls;
    for (api, n) in [
        ("salesforce", calls.salesforce),
        ("account_engagement", calls.account_engagement),
    ] {
        metrics::counter!(crate::metrics::REFRESH_API_CALLS, "kind" => report.kind.as_str(), "api" => api)
            .increment(n);
    }
    metrics::gauge!(crate::metrics::REFRESH_LAST_SUCCESS, "kind" => report.kind.as_str())
        .set(now.timestamp() as f64);
    metrics::counter!(crate::metrics::REFRESH_CACHE_WRITES, "kind" => report.kind.as_str(), "how" => how_written(report))
        .increment(1);
    if let Some(writes) = report.writes {
        metrics::counter!(crate::metrics::REFRESH_KEYS_REWRITTEN, "kind" => report.kind.as_str())
            .increment(writes as u64);
    }
    let duration_ms = report.duration.as_millis() as u64;
    match report.kind {
        RefreshKind::Full => tracing::info!(
            kind = "full",
            sf_users = report.sf_users,
            salesforce_api_calls = calls.salesforce,
            account_engagement_api_calls = calls.account_engagement,
            in_place = report.writes.is_some(),
            keys_rewritten = report.writes,
            duration_ms,
            "refresh published a new snapshot"
        ),
        RefreshKind::Incremental => tracing::info!(
            kind = "incremental",
            sf_users = report.sf_users,
            salesforce_api_calls = calls.salesforce,
            account_engagement_api_calls = calls.account_engagement,
            writes = report.writes,
            duration_ms,
            "incremental refresh brought the cache up to date"
        ),
    }
    let records = report.sf_users + report.ae_users.iter().map(|(_, n)| n).sum::<usize>();
    let status = SourceStatus {
        last_success_at: Some(now),
        records: Some(records),
        duration_ms: Some(report.duration.as_millis() as u64),
        api_calls: Some(calls.total()),
        ..SourceStatus::default()
    };
    store.record_status(report.kind.source(), &status).await?;
    store.record_status(REFRESH_SOURCE, &status).await
}

async fn record_failure(
    store: &Store,
    kind: RefreshKind,
    now: DateTime<Utc>,
    started: Instant,
    err: &SourceError,
) -> Result<(), StoreError> {
    record(store, REFRESH_SOURCE, now, started, Err(err)).await?;
    record(store, kind.source(), now, started, Err(err)).await
}

/// The org as read, before it is indexed: the canonical form both kinds publish.
fn indexed(mut snapshot: OrgSnapshot) -> Org {
    snapshot.canonicalize();
    Org::without_search(snapshot)
}

async fn index(snapshot: OrgSnapshot) -> Result<Arc<Org>, RefreshError> {
    crate::background::low_priority(move || Arc::new(indexed(snapshot)))
        .await
        .ok_or_else(|| RefreshError::Store(StoreError::Corrupt("indexing failed".to_owned())))
}

fn report_of(org: &Org, kind: RefreshKind) -> RefreshReport {
    RefreshReport {
        kind,
        sf_users: org.snapshot().salesforce.users.len(),
        ae_users: org
            .business_units()
            .iter()
            .map(|b| (b.id.to_string(), b.users.len()))
            .collect(),
        duration: Duration::ZERO,
        api_calls: ApiCalls::default(),
        writes: None,
    }
}

/// How a full refresh writes what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullWrite {
    /// Only the keys that differ, in place, when few do; else a new generation.
    WhatChanged,
    /// A whole new generation, whatever the cache holds (`refresh --new-generation`).
    NewGeneration,
}

/// One full refresh: publishes nothing unless every source answered completely. Returns
/// what an incremental refresh starts from.
pub async fn full(
    sources: &Sources,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<(RefreshReport, Base), RefreshError> {
    full_with(sources, store, now, FullWrite::WhatChanged).await
}

/// [`full`], writing as `write` says.
pub async fn full_with(
    sources: &Sources,
    store: &Store,
    now: DateTime<Utc>,
    write: FullWrite,
) -> Result<(RefreshReport, Base), RefreshError> {
    let started = Instant::now();
    let before = calls_so_far(sources);
    // Every attempt keeps this version's data alive, so that failing refreshes do not let it
    // expire (the publish below renews it too).
    if let Err(err) = store.renew_expiry().await {
        tracing::warn!(error = %err, "the expiry of the cached data could not be renewed");
    }
    let salesforce = async {
        let t = Instant::now();
        (
            sources.salesforce.fetch_org(&sources.business_units).await,
            t,
        )
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
        salesforce.as_ref().map(|r| r.org.users.len()),
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
        record_failure(store, RefreshKind::Full, now, started, &err).await?;
        tracing::warn!(error = %err, "full refresh failed; the previous snapshot keeps serving");
        return Err(err.into());
    }
    let salesforce = salesforce?;
    let mut business_units = sources.business_units.clone();
    for (bu, (users, _)) in business_units.iter_mut().zip(ae_results) {
        bu.users = users?;
    }
    let ae_high_water = business_units
        .iter()
        .map(|bu| high_water_ae(&bu.users))
        .collect();
    tracing::debug!(
        duration_ms = started.elapsed().as_millis() as u64,
        "full refresh read every source"
    );
    let org = index(OrgSnapshot {
        fetched_at: now,
        salesforce: salesforce.org,
        business_units,
    })
    .await?;
    tracing::debug!(
        duration_ms = started.elapsed().as_millis() as u64,
        "full refresh indexed the org"
    );
    let written = match write {
        FullWrite::WhatChanged => store.refresh_org(org.clone()).await,
        FullWrite::NewGeneration => store.publish_org(org.clone()).await.map(|g| (g, None)),
    };
    let (generation, writes) = match written {
        Ok(written) => written,
        Err(err) => return Err(write_failed(store, RefreshKind::Full, now, started, err).await),
    };
    record_api_usage(sources);
    let report = RefreshReport {
        duration: started.elapsed(),
        api_calls: calls_since(sources, before),
        writes,
        ..report_of(&org, RefreshKind::Full)
    };
    record_run(store, &report, now).await?;
    Ok((
        report,
        Base {
            generation,
            org,
            sf_high_water: salesforce.high_water,
            ae_high_water,
        },
    ))
}

/// Records that a run's data could not be written to the cache, and gives the error to return.
async fn write_failed(
    store: &Store,
    kind: RefreshKind,
    now: DateTime<Utc>,
    started: Instant,
    err: StoreError,
) -> RefreshError {
    let as_source = SourceError::Settings {
        problem: format!("the new snapshot could not be published: {err}"),
        fix: "check the cache (Redis); the previous snapshot keeps serving".to_owned(),
    };
    record_failure(store, kind, now, started, &as_source)
        .await
        .ok();
    err.into()
}

fn record_api_usage(sources: &Sources) {
    if let Some(usage) = sources.salesforce.api_usage() {
        metrics::gauge!(crate::metrics::SALESFORCE_API_USED).set(usage.used as f64);
        metrics::gauge!(crate::metrics::SALESFORCE_API_MAX).set(usage.max as f64);
    }
}

/// `stamp` minus [`OVERLAP`]; the epoch when nothing was read yet.
fn since(stamp: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
    stamp.map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t - overlap)
}

/// One incremental refresh from `base`: reads the changes, merges them, and patches the
/// current generation (or, for a change too large for one step, publishes a new one).
/// `Ok(None)`: `base` is no longer current; the caller runs a full refresh.
pub async fn incremental(
    sources: &Sources,
    store: &Store,
    base: &Base,
    now: DateTime<Utc>,
) -> Result<Option<(RefreshReport, Base)>, RefreshError> {
    let started = Instant::now();
    let before = calls_so_far(sources);
    let snapshot = base.org.snapshot();
    let salesforce = sources
        .salesforce
        .fetch_changes(
            &snapshot.salesforce,
            &sources.business_units,
            since(base.sf_high_water),
        )
        .await;
    let mut ae_results = Vec::with_capacity(sources.business_units.len());
    for (b, bu) in sources.business_units.iter().enumerate() {
        let known = snapshot
            .business_units
            .iter()
            .find(|known| known.id == bu.id)
            .map_or(&[][..], |known| &known.users[..]);
        let since = since(base.ae_high_water.get(b).copied().flatten());
        let result = match sources
            .account_engagement
            .fetch_users_changed(bu.id, &bu.ae_url, since)
            .await
        {
            Ok(Some(changed)) => Ok(merge_ae_users(known, changed)),
            Ok(None) => {
                sources
                    .account_engagement
                    .fetch_users(bu.id, &bu.ae_url)
                    .await
            }
            Err(err) => Err(err),
        };
        ae_results.push(result);
    }
    let failure = salesforce
        .as_ref()
        .err()
        .or_else(|| ae_results.iter().find_map(|r| r.as_ref().err()))
        .cloned();
    if let Some(err) = failure {
        record_failure(store, RefreshKind::Incremental, now, started, &err).await?;
        tracing::warn!(error = %err, "incremental refresh failed; the previous data keeps serving");
        return Err(err.into());
    }
    let salesforce = salesforce?;
    let mut business_units = sources.business_units.clone();
    for (bu, users) in business_units.iter_mut().zip(ae_results) {
        bu.users = users?;
    }
    let ae_high_water = business_units
        .iter()
        .zip(&base.ae_high_water)
        .map(|(bu, old)| high_water_ae(&bu.users).max(*old))
        .collect();
    let org = index(OrgSnapshot {
        fetched_at: now,
        salesforce: salesforce.org,
        business_units,
    })
    .await?;
    let outcome = store
        .patch(&base.generation, base.org.clone(), org.clone())
        .await;
    let written = match outcome {
        Ok(PatchOutcome::Applied(writes)) => Ok((base.generation.clone(), Some(writes))),
        Ok(PatchOutcome::Stale) => return Ok(None),
        Ok(PatchOutcome::TooLarge(writes)) => {
            tracing::info!(
                writes,
                "the changes are too many to patch in one step; publishing a new generation"
            );
            store.publish_org(org.clone()).await.map(|g| (g, None))
        }
        Err(err) => Err(err),
    };
    let (generation, writes) = match written {
        Ok(written) => written,
        Err(err) => {
            return Err(write_failed(store, RefreshKind::Incremental, now, started, err).await);
        }
    };
    record_api_usage(sources);
    let report = RefreshReport {
        duration: started.elapsed(),
        api_calls: calls_since(sources, before),
        writes,
        ..report_of(&org, RefreshKind::Incremental)
    };
    record_run(store, &report, now).await?;
    let sf_high_water = salesforce.high_water.max(base.sf_high_water);
    Ok(Some((
        report,
        Base {
            generation,
            org,
            sf_high_water,
            ae_high_water,
        },
    )))
}

/// The refresher of one replica: its base between runs.
#[derive(Default)]
pub struct Refresher {
    base: Option<Base>,
}

impl Refresher {
    /// The run the schedule calls for now, under the cache's lock (`Busy` when another
    /// replica holds it; `Ok(None)` when nothing was due).
    pub async fn run_once(
        &mut self,
        sources: &Sources,
        store: &Store,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<Option<RefreshReport>, RefreshError> {
        let token = store
            .try_lock(super::LOCK_TTL)
            .await?
            .ok_or(RefreshError::Busy)?;
        let renewal = tokio::spawn(super::renew_while_held(
            store.clone(),
            token.clone(),
            super::LOCK_TTL,
        ));
        let result = self.due_run(sources, store, schedule, now).await;
        renewal.abort();
        if let Err(err) = store.release_lock(&token).await {
            tracing::warn!(error = %err, "could not release the refresh lock; it expires by itself");
        }
        result
    }

    async fn due_run(
        &mut self,
        sources: &Sources,
        store: &Store,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<Option<RefreshReport>, RefreshError> {
        let current = store.current_generation().await?;
        let status = store.status().await?;
        let last = |kind: RefreshKind| {
            status
                .sources
                .get(kind.source())
                .and_then(|s| s.last_success_at)
        };
        let seen = Seen {
            current: current.as_ref(),
            base: self.base.as_ref().map(|b| &b.generation),
            last_full: last(RefreshKind::Full),
            last_incremental: last(RefreshKind::Incremental),
        };
        let next = next_run(schedule, &seen, now);
        let started = Instant::now();
        let result = match (next, &self.base) {
            (Next::Skip, _) => {
                tracing::debug!("another replica keeps the cache fresh");
                return Ok(None);
            }
            (Next::Incremental, Some(base)) => {
                match incremental(sources, store, base, now).await {
                    Ok(Some(done)) => Ok(done),
                    // Another replica published meanwhile: start again from a full read.
                    Ok(None) => full(sources, store, now).await,
                    Err(err) => Err(err),
                }
            }
            _ => full(sources, store, now).await,
        };
        let kind = match &result {
            Ok((report, _)) => report.kind,
            Err(_) if next == Next::Incremental => RefreshKind::Incremental,
            Err(_) => RefreshKind::Full,
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::REFRESH_RUNS, "result" => outcome, "kind" => kind.as_str())
            .increment(1);
        metrics::histogram!(crate::metrics::REFRESH_DURATION, "kind" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        // A failed run leaves the base as it was: after an incremental one the next run reads
        // the same changes again; after a full one, it still describes the generation readers
        // use.
        let (report, base) = result?;
        self.base = Some(base);
        Ok(Some(report))
    }
}

/// Refreshes on `schedule` until `shutdown`, looking at the cache every `watch` between runs
/// (a cache found empty, as after a Redis restart without its data, is refilled at once).
/// Each run is its own task: a panic is logged, the base is dropped (the next run is a full
/// one), and the next run goes ahead.
pub async fn run_scheduled(
    sources: Arc<Sources>,
    store: Store,
    schedule: Schedule,
    watch: Duration,
    shutdown: CancellationToken,
) {
    let refresher = Arc::new(tokio::sync::Mutex::new(Refresher::default()));
    loop {
        let run = tokio::spawn({
            let (sources, store, refresher) = (sources.clone(), store.clone(), refresher.clone());
            async move {
                let mut refresher = refresher.lock().await;
                let result = refresher
                    .run_once(&sources, &store, &schedule, Utc::now())
                    .await;
                // Nothing is known of what a failed write left in the cache: the next run
                // starts from a full read.
                if matches!(result, Err(RefreshError::Store(_))) {
                    refresher.base = None;
                }
                result
            }
        });
        tokio::select! {
            result = run => match result {
                Ok(Ok(_)) => {}
                Ok(Err(RefreshError::Busy)) => tracing::debug!("another replica is refreshing"),
                Ok(Err(err)) => tracing::warn!(error = %err, "refresh failed"),
                Err(err) if err.is_panic() => {
                    tracing::error!("refresh panicked; it runs again at the next interval");
                    refresher.lock().await.base = None;
                }
                Err(_) => {}
            },
            () = shutdown.cancelled() => return,
        }
        let next = tokio::time::Instant::now() + schedule.tick();
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn g(id: &str) -> &'static GenerationRef {
        Box::leak(Box::new(GenerationRef {
            id: id.to_owned(),
            epoch: "e1".to_owned(),
        }))
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, minute, 0).unwrap()
    }

    const SCHEDULE: Schedule = Schedule {
        full_every: Duration::from_secs(15 * 60),
        incremental_every: Some(Duration::from_secs(60)),
    };

    #[test]
    fn a_run_is_counted_by_how_it_wrote_the_cache() {
        let report = |kind, writes| RefreshReport {
            kind,
            sf_users: 0,
            ae_users: Vec::new(),
            duration: Duration::ZERO,
            api_calls: ApiCalls::default(),
            writes,
        };
        assert_eq!(
            how_written(&report(RefreshKind::Full, None)),
            "new_generation"
        );
        assert_eq!(how_written(&report(RefreshKind::Full, Some(1))), "in_place");
        assert_eq!(how_written(&report(RefreshKind::Full, Some(0))), "in_place");
        assert_eq!(
            how_written(&report(RefreshKind::Incremental, Some(5_957))),
            "patch"
        );
        // An incremental run too large to patch published a new generation.
        assert_eq!(
            how_written(&report(RefreshKind::Incremental, None)),
            "new_generation"
        );
    }

    #[test]
    fn an_empty_cache_or_an_old_full_refresh_calls_for_a_full_one() {
        let empty = Seen::default();
        assert_eq!(next_run(&SCHEDULE, &empty, at(0)), Next::Full);
        let old_full = Seen {
            current: Some(g("g1")),
            base: Some(g("g1")),
            last_full: Some(at(0)),
            last_incremental: Some(at(14)),
        };
        assert_eq!(next_run(&SCHEDULE, &old_full, at(15)), Next::Full);
        assert_eq!(next_run(&SCHEDULE, &old_full, at(14)), Next::Incremental);
    }

    #[test]
    fn the_replica_that_published_refreshes_incrementally_and_the_others_wait() {
        let mine = Seen {
            current: Some(g("g1")),
            base: Some(g("g1")),
            last_full: Some(at(0)),
            last_incremental: Some(at(5)),
        };
        assert_eq!(next_run(&SCHEDULE, &mine, at(6)), Next::Incremental);
        let theirs = Seen {
            base: Some(g("g0")),
            ..mine.clone()
        };
        assert_eq!(next_run(&SCHEDULE, &theirs, at(6)), Next::Skip);
        let no_base = Seen {
            base: None,
            ..mine.clone()
        };
        assert_eq!(next_run(&SCHEDULE, &no_base, at(7)), Next::Skip);
        // The replica keeping it fresh went quiet for three intervals: take over.
        assert_eq!(next_run(&SCHEDULE, &theirs, at(8)), Next::Full);
        // Another replica's full refresh rewrote the generation in place (a new epoch): the
        // base no longer describes it.
        let rewritten = GenerationRef {
            id: "g1".to_owned(),
            epoch: "e2".to_owned(),
        };
        let rewritten_by_another = Seen {
            current: Some(&rewritten),
            ..mine.clone()
        };
        assert_eq!(
            next_run(&SCHEDULE, &rewritten_by_another, at(6)),
            Next::Skip
        );
    }

    #[test]
    fn without_incremental_refreshes_every_run_is_full() {
        let schedule = Schedule::full_only(Duration::from_secs(900));
        let mine = Seen {
            current: Some(g("g1")),
            base: Some(g("g1")),
            last_full: Some(at(0)),
            last_incremental: None,
        };
        assert_eq!(next_run(&schedule, &mine, at(1)), Next::Full);
        assert_eq!(schedule.tick(), Duration::from_secs(900));
        assert_eq!(SCHEDULE.tick(), Duration::from_secs(60));
    }
}
