//! Account Engagement API v5 client: the users of a business unit, all pages, recycle bin
//! included.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{Failure, RetryPolicy, SourceError, path_of, settle, transport_failure, with_retry};
use crate::domain::{AeUser, SfId, bool_or_string, optional_sf_id};

/// The fields the diagnosis reads; `fields` is required by the API.
pub const USER_FIELDS: &str = "id,email,firstName,lastName,username,jobTitle,role,roleName,\
                               salesforceId,isDeleted,createdAt,updatedAt";

/// The users-list filter of an incremental read: users created or changed at or after the
/// given time (ISO 8601).
pub const UPDATED_SINCE_FILTER: &str = "updatedAtAfterOrEqualTo";

/// Where the access token comes from: the Salesforce client in production, a stub in tests.
pub trait AccessToken: Send + Sync {
    /// A valid token, minted if none is cached.
    fn access_token(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<SecretString>, SourceError>> + Send + '_>>;
    /// `stale` was refused: the next `access_token` must mint a new one.
    fn invalidate(&self, stale: &Arc<SecretString>);
}

#[derive(Debug, Clone)]
pub struct AccountEngagementConfig {
    /// Per request, body included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The API allows 5 concurrent requests per business unit (code 66 beyond).
    pub max_concurrent_per_business_unit: usize,
    /// How many times paging may start over after an expired page token (210/211).
    pub max_paging_restarts: u32,
    /// Users per page; the API's maximum is 1000.
    pub page_size: u32,
}

impl Default for AccountEngagementConfig {
    fn default() -> Self {
        AccountEngagementConfig {
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_concurrent_per_business_unit: 5,
            max_paging_restarts: 3,
            page_size: 1000,
        }
    }
}

pub struct AccountEngagementClient {
    http: reqwest::Client,
    config: AccountEngagementConfig,
    tokens: Arc<dyn AccessToken>,
    permits: Mutex<HashMap<SfId, Arc<Semaphore>>>,
    /// Data requests sent since start (pages and their retries).
    calls: AtomicU64,
    /// Business units that refused [`UPDATED_SINCE_FILTER`]: read in full for the rest of the
    /// process's life, without asking again.
    refused_filter: Mutex<HashSet<SfId>>,
}

impl AccountEngagementClient {
    pub fn new(
        config: AccountEngagementConfig,
        tokens: Arc<dyn AccessToken>,
    ) -> Result<Self, SourceError> {
        let http = super::http_client(config.timeout)?;
        Ok(AccountEngagementClient {
            http,
            config,
            tokens,
            permits: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            refused_filter: Mutex::new(HashSet::new()),
        })
    }

    /// Data requests sent since start: pages and their retries.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The users of the business unit created, changed, sent to the recycle bin or restored
    /// at or after `since` (recycle bin included: `isDeleted` says which). `Ok(None)` when the
    /// business unit refuses the filter: the caller then reads all its users
    /// ([`Self::fetch_users`]). A refusal is remembered for the life of the process, and
    /// logged once.
    pub async fn fetch_users_changed(
        &self,
        business_unit: SfId,
        ae_url: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<AeUser>>, SourceError> {
        if self.filter_refused(business_unit) {
            return Ok(None);
        }
        let bu = BusinessUnitCall {
            id: business_unit,
            source_name: format!("Account Engagement business unit {business_unit}"),
            base: users_url(ae_url, business_unit)?,
        };
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let mut restarts = 0;
        loop {
            match self
                .fetch_all_pages(&bu, &[(UPDATED_SINCE_FILTER, since.as_str())])
                .await
            {
                Err(Failure::RestartPaging) if restarts < self.config.max_paging_restarts => {
                    restarts += 1;
                }
                Err(Failure::Fatal(error)) if refuses_filter(&error) => {
                    let first = self
                        .refused_filter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(business_unit);
                    if first {
                        tracing::warn!(business_unit = %business_unit, %error, "the business unit refuses the updated-since filter; its users are read in full at every refresh");
                    }
                    return Ok(None);
                }
                Err(failure) => return Err(settle(failure, &bu.source_name, "the users list")),
                Ok(users) => return Ok(Some(users)),
            }
        }
    }

    fn filter_refused(&self, business_unit: SfId) -> bool {
        self.refused_filter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&business_unit)
    }

    /// Every user of the business unit, active and in the recycle bin. All or nothing: a
    /// failure on any page fails the whole fetch.
    pub async fn fetch_users(
        &self,
        business_unit: SfId,
        ae_url: &str,
    ) -> Result<Vec<AeUser>, SourceError> {
        let bu = BusinessUnitCall {
            id: business_unit,
            source_name: format!("Account Engagement business unit {business_unit}"),
            base: users_url(ae_url, business_unit)?,
        };
        let mut restarts = 0;
        loop {
            match self.fetch_all_pages(&bu, &[]).await {
                Err(Failure::RestartPaging) if restarts < self.config.max_paging_restarts => {
                    restarts += 1;
                    tracing::info!(business_unit = %business_unit, restarts, "page token expired, paging again from the first page");
                }
                Err(failure) => return Err(settle(failure, &bu.source_name, "the users list")),
                Ok(users) => return Ok(users),
            }
        }
    }

    /// One page of at most `limit` users (ids only): `doctor`'s check that the business unit
    /// answers at `ae_url` with this token. Returns how many users came.
    pub async fn probe_users(
        &self,
        business_unit: SfId,
        ae_url: &str,
        limit: u32,
    ) -> Result<usize, SourceError> {
        let bu = BusinessUnitCall {
            id: business_unit,
            source_name: format!("Account Engagement business unit {business_unit}"),
            base: users_url(ae_url, business_unit)?,
        };
        let mut url = bu.base.clone();
        url.query_pairs_mut()
            .append_pair("fields", "id")
            .append_pair("limit", &limit.to_string());
        self.fetch_page(&bu, &url)
            .await
            .map(|page| page.values.len())
            .map_err(|failure| settle(failure, &bu.source_name, "the users list"))
    }

    /// Every page of the users list, with `filters` added to the first request's parameters.
    async fn fetch_all_pages(
        &self,
        bu: &BusinessUnitCall,
        filters: &[(&str, &str)],
    ) -> Result<Vec<AeUser>, Failure> {
        let mut url = bu.base.clone();
        url.query_pairs_mut()
            .append_pair("fields", USER_FIELDS)
            .append_pair("deleted", "all")
            .append_pair("limit", &self.config.page_size.to_string())
            .extend_pairs(filters);
        let mut users = Vec::new();
        loop {
            let page = self.fetch_page(bu, &url).await?;
            users.extend(page.values.into_iter().map(AeUser::from));
            url = match (page.next_page_url, page.next_page_token) {
                (Some(next), _) if !next.is_empty() => {
                    same_origin(&bu.base, &next).ok_or_else(|| {
                        Failure::Fatal(SourceError::Protocol {
                            source_name: bu.source_name.clone(),
                            request: "the users list".to_owned(),
                            detail: "`nextPageUrl` points at another host".to_owned(),
                        })
                    })?
                }
                (_, Some(token)) if !token.is_empty() => {
                    let mut next = bu.base.clone();
                    next.query_pairs_mut()
                        .append_pair("fields", USER_FIELDS)
                        .append_pair("nextPageToken", &token);
                    next
                }
                _ => return Ok(users),
            };
        }
    }

    /// One page, with retries and at most one new token.
    async fn fetch_page(&self, bu: &BusinessUnitCall, url: &Url) -> Result<UsersPage, Failure> {
        let semaphore = self.semaphore(bu.id);
        let mut reminted = false;
        loop {
            let token = self.tokens.access_token().await.map_err(Failure::Fatal)?;
            let attempt = || async {
                // One permit per request in flight, not per page with its retries' pauses.
                let _permit = semaphore.acquire().await.map_err(|_| {
                    Failure::Fatal(SourceError::Settings {
                        problem: "the request limiter was closed".to_owned(),
                        fix: "restart the process".to_owned(),
                    })
                })?;
                self.get_page_once(bu, url, &token).await
            };
            match with_retry(&self.config.retry, attempt).await {
                Err(Failure::SessionExpired) if !reminted => {
                    reminted = true;
                    self.tokens.invalidate(&token);
                }
                Err(Failure::SessionExpired) => {
                    return Err(Failure::Fatal(config_error(
                        bu,
                        184,
                        "the access token was refused twice".to_owned(),
                    )));
                }
                other => return other,
            }
        }
    }

    async fn get_page_once(
        &self,
        bu: &BusinessUnitCall,
        url: &Url,
        token: &SecretString,
    ) -> Result<UsersPage, Failure> {
        let attempts = self.config.retry.max_attempts;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose_secret())
            .header("Pardot-Business-Unit-Id", bu.id.to_18())
            .send()
            .await
            .map_err(|e| transport_failure(&bu.source_name, url, attempts, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(&bu.source_name, url, attempts, e))?;
        if status.is_success() {
            return super::decode(body).await.map_err(|detail| {
                Failure::Fatal(SourceError::Protocol {
                    source_name: bu.source_name.clone(),
                    request: "the users list".to_owned(),
                    detail,
                })
            });
        }
        let error: ApiError = serde_json::from_slice(&body).unwrap_or_default();
        Err(classify(bu, status, error, url, attempts))
    }

    fn semaphore(&self, business_unit: SfId) -> Arc<Semaphore> {
        let mut permits = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        permits
            .entry(business_unit)
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.config.max_concurrent_per_business_unit.max(1),
                ))
            })
            .clone()
    }
}

/// Whether a refused users request says the updated-since filter is not accepted: HTTP 400
/// (an unknown or invalid parameter), rather than a business unit, token or limit problem.
fn refuses_filter(error: &SourceError) -> bool {
    matches!(error, SourceError::Rejected { status: 400, .. })
}

/// Upserts AE users by id: `changed` replaces or adds, and the result is ordered by id.
pub fn merge_ae_users(base: &[AeUser], changed: Vec<AeUser>) -> Vec<AeUser> {
    let mut by_id: std::collections::BTreeMap<u64, AeUser> =
        base.iter().map(|u| (u.id, u.clone())).collect();
    for user in changed {
        by_id.insert(user.id, user);
    }
    by_id.into_values().collect()
}

/// The latest `updatedAt` (or `createdAt` when a user has none) among `users`: where the next
/// incremental read of the business unit starts, minus an overlap.
pub fn high_water_ae(users: &[AeUser]) -> Option<DateTime<Utc>> {
    users
        .iter()
        .filter_map(|u| u.updated_at.or(u.created_at))
        .max()
}

struct BusinessUnitCall {
    id: SfId,
    source_name: String,
    base: Url,
}

fn users_url(ae_url: &str, business_unit: SfId) -> Result<Url, SourceError> {
    let mut url = Url::parse(ae_url).map_err(|e| SourceError::Settings {
        problem: format!(
            "business unit {business_unit}: the Account Engagement URL {ae_url:?} is not a URL ({e})"
        ),
        fix: "set ae_url to https://pi.pardot.com, or https://pi.demo.pardot.com for sandboxes \
              and developer orgs"
            .to_owned(),
    })?;
    let path = format!("{}/api/v5/objects/users", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    Ok(url)
}

/// `nextPageUrl`, accepted only on the host we called: the bearer token must not travel
/// anywhere else.
fn same_origin(base: &Url, next: &str) -> Option<Url> {
    let next = base.join(next).ok()?;
    (next.origin() == base.origin()).then_some(next)
}

fn classify(
    bu: &BusinessUnitCall,
    status: StatusCode,
    error: ApiError,
    url: &Url,
    attempts: u32,
) -> Failure {
    let transient = |detail: String| {
        Failure::Transient(SourceError::Upstream {
            source_name: bu.source_name.clone(),
            path: path_of(url),
            attempts,
            detail,
        })
    };
    match error.code {
        Some(66) => transient(format!(
            "too many concurrent requests (code 66: {})",
            error.message
        )),
        Some(214) => transient(format!("the API timed out (code 214: {})", error.message)),
        Some(122) => Failure::Fatal(SourceError::DailyLimit {
            source_name: bu.source_name.clone(),
            message: format!("code 122: {}", error.message),
        }),
        Some(184) => Failure::SessionExpired,
        Some(code @ (181 | 182 | 201)) => Failure::Fatal(config_error(bu, code, error.message)),
        Some(210 | 211) => Failure::RestartPaging,
        _ if status == StatusCode::UNAUTHORIZED => Failure::SessionExpired,
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            transient(format!("HTTP {}", status.as_u16()))
        }
        code => Failure::Fatal(SourceError::Rejected {
            source_name: bu.source_name.clone(),
            request: "the users list".to_owned(),
            status: status.as_u16(),
            code: code.map(|c| c.to_string()).unwrap_or_default(),
            message: error.message,
        }),
    }
}

fn config_error(bu: &BusinessUnitCall, code: u32, message: String) -> SourceError {
    let fix = match code {
        181 | 182 => {
            "check the business unit id in BUSINESS_UNITS_FILE: 18 characters starting 0Uv, as \
             Setup > Account Engagement Account Setup shows it"
        }
        184 => {
            "add the `pardot_api` scope (Access Pardot services) to the connected app, and check \
             that the integration user has access to this business unit"
        }
        _ => {
            "check the business unit id, and the host: https://pi.pardot.com for production, \
             https://pi.demo.pardot.com for sandboxes and developer orgs"
        }
    };
    SourceError::Config {
        business_unit: bu.id.to_string(),
        code,
        message,
        fix: fix.to_owned(),
    }
}

#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsersPage {
    #[serde(default)]
    values: Vec<UserRecord>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    next_page_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRecord {
    id: u64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    role_name: Option<String>,
    #[serde(default, deserialize_with = "optional_sf_id")]
    salesforce_id: Option<SfId>,
    #[serde(default, deserialize_with = "bool_or_string")]
    is_deleted: bool,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

impl From<UserRecord> for AeUser {
    fn from(r: UserRecord) -> Self {
        AeUser {
            id: r.id,
            email: r.email.unwrap_or_default(),
            username: r.username.unwrap_or_default(),
            first_name: r.first_name.unwrap_or_default(),
            last_name: r.last_name.unwrap_or_default(),
            role_name: r.role_name,
            salesforce_id: r.salesforce_id,
            is_deleted: r.is_deleted,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_url_on_another_host_is_refused() {
        let base = Url::parse("https://pi.pardot.com/api/v5/objects/users").unwrap();
        assert!(same_origin(&base, "https://pi.pardot.com/api/v5/objects/users?x=1").is_some());
        assert!(same_origin(&base, "https://evil.example/api/v5/objects/users").is_none());
    }

    fn ae(id: u64, email: &str, updated: Option<&str>) -> AeUser {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        AeUser {
            id,
            email: email.to_owned(),
            username: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            role_name: None,
            salesforce_id: None,
            is_deleted: false,
            created_at: Some(t("2025-01-01T00:00:00Z")),
            updated_at: updated.map(t),
        }
    }

    #[test]
    fn merged_ae_users_are_upserted_by_id_and_ordered_by_id() {
        let base = vec![
            ae(9, "nine@x", None),
            ae(2, "two@x", None),
            ae(5, "five@x", None),
        ];
        let mut deleted = ae(5, "five@x", Some("2026-01-02T00:00:00Z"));
        deleted.is_deleted = true;
        let merged = merge_ae_users(&base, vec![deleted.clone(), ae(3, "three@x", None)]);
        assert_eq!(
            merged,
            vec![
                ae(2, "two@x", None),
                ae(3, "three@x", None),
                deleted,
                ae(9, "nine@x", None)
            ]
        );
        assert!(merge_ae_users(&[], Vec::new()).is_empty());
    }

    #[test]
    fn the_ae_high_water_is_the_latest_update_or_creation() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(high_water_ae(&[]), None);
        let users = [
            ae(1, "a@x", Some("2026-01-02T00:00:00Z")),
            ae(2, "b@x", Some("2026-01-03T00:00:00Z")),
            ae(3, "c@x", None),
        ];
        assert_eq!(high_water_ae(&users), Some(t("2026-01-03T00:00:00Z")));
        assert_eq!(high_water_ae(&users[2..]), Some(t("2025-01-01T00:00:00Z")));
    }

    #[test]
    fn only_a_bad_request_counts_as_refusing_the_filter() {
        let rejected = |status| SourceError::Rejected {
            source_name: "AE".to_owned(),
            request: "the users list".to_owned(),
            status,
            code: String::new(),
            message: String::new(),
        };
        assert!(refuses_filter(&rejected(400)));
        assert!(!refuses_filter(&rejected(403)));
        assert!(!refuses_filter(&SourceError::DailyLimit {
            source_name: "AE".to_owned(),
            message: String::new(),
        }));
    }

    #[test]
    fn users_url_keeps_a_base_path() {
        let bu = SfId::parse("0UvAk000000BU01").unwrap();
        assert_eq!(
            users_url("http://127.0.0.1:9/ae/", bu).unwrap().as_str(),
            "http://127.0.0.1:9/ae/api/v5/objects/users"
        );
    }
}
