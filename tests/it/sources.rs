//! Black-box tests of the Salesforce and Account Engagement clients against the fakes, on
//! 127.0.0.1 only, with millisecond backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crm_username::domain::{OrgSnapshot, SfId};
use crm_username::fakes::{
    FakeAccessToken, FakeAccountEngagement, FakeSalesforce, FakeSalesforceSettings, Fault,
    Injection, SalesforceEndpoint, rsa_public_key,
};
use crm_username::sources::{
    AccessToken, AccountEngagementClient, AccountEngagementConfig, ApiUsage, RetryPolicy,
    SalesforceAuth, SalesforceClient, SalesforceConfig, SourceError, UserLookup,
};
use secrecy::SecretString;
use serde_json::json;

const BU: &str = "0UvAk000000BU01";
/// Generated for these tests only; no connected app trusts it.
const TEST_ONLY_KEY: &str = include_str!("../fixtures/test-only-rsa-key.pem");
/// A second test-only key, for an assertion the connected app's certificate does not match.
const OTHER_TEST_ONLY_KEY: &str = include_str!("../fixtures/test-only-other-rsa-key.pem");

fn sf_id(prefix: &str, n: usize) -> String {
    format!("{prefix}Ak00000X{n:04}")
}

/// An org with `users` Salesforce users and `users` AE users in one business unit; every
/// third AE user is in the recycle bin, every AE user is mapped to the SF user of its number.
fn org(users: usize) -> OrgSnapshot {
    let sf_users: Vec<_> = (1..=users)
        .map(|n| {
            json!({
                "id": sf_id("005", n), "username": format!("user{n}@acme.com"),
                "email": format!("user{n}@acme.com"), "name": format!("User {n}"),
                "is_active": n % 4 != 0, "profile_id": "00eAk000000STDU",
                "profile_name": "Standard User", "user_license": "Salesforce",
                "role_id": if n % 2 == 0 { json!("00EAk000000ROLE") } else { json!(null) },
                "user_type": "Standard", "modified_at": "2025-12-01T09:00:00Z"
            })
        })
        .collect();
    let ae_users: Vec<_> = (1..=users)
        .map(|n| {
            json!({
                "id": n, "email": format!("user{n}@acme.com"), "username": format!("ae{n}@acme.com"),
                "first_name": "User", "last_name": format!("{n}"), "role_name": "Sales",
                "salesforce_id": sf_id("005", n), "is_deleted": n % 3 == 0,
                "created_at": "2025-11-01T08:00:00Z", "updated_at": "2025-12-01T08:00:00Z"
            })
        })
        .collect();
    let snapshot = json!({
        "fetched_at": "2026-01-15T12:00:00Z",
        "salesforce": {
            "org_id": "00DAk000000ACME", "instance_url": "https://acme.my.salesforce.com",
            "users": sf_users,
            "roles": [{"id": "00EAk000000ROLE", "name": "Sales", "parent_role_id": null}],
            "groups": [{"id": "00GAk000000GRP1", "name": "Marketing", "developer_name": "Marketing", "type": "Regular"}],
            "group_members": [{"group_id": "00GAk000000GRP1", "member_id": sf_id("005", 1)}]
        },
        "business_units": [{"id": BU, "name": "Acme NA", "users": ae_users}]
    });
    OrgSnapshot::from_json(&snapshot.to_string(), "test org").expect("test org is valid")
}

fn bu() -> SfId {
    SfId::parse(BU).expect("valid id")
}

async fn fake_salesforce(org: &OrgSnapshot, batch_size: usize) -> FakeSalesforce {
    let settings = FakeSalesforceSettings {
        batch_size,
        ..FakeSalesforceSettings::default()
    };
    FakeSalesforce::start(org, settings)
        .await
        .expect("fake starts")
}

fn client_credentials(fake: &FakeSalesforce) -> SalesforceConfig {
    let mut config = SalesforceConfig::new(
        fake.url(),
        fake.settings().client_id.clone(),
        SalesforceAuth::ClientCredentials {
            secret: SecretString::from(fake.settings().client_secret.clone()),
        },
    );
    config.retry = RetryPolicy::quick();
    config.timeout = Duration::from_millis(300);
    config
}

fn salesforce(fake: &FakeSalesforce) -> SalesforceClient {
    SalesforceClient::new(client_credentials(fake)).expect("client builds")
}

fn account_engagement(page_size: u32, tokens: Arc<dyn AccessToken>) -> AccountEngagementClient {
    let config = AccountEngagementConfig {
        timeout: Duration::from_millis(300),
        retry: RetryPolicy::quick(),
        page_size,
        ..AccountEngagementConfig::default()
    };
    AccountEngagementClient::new(config, tokens).expect("client builds")
}

async fn user_ids(client: &SalesforceClient) -> Result<Vec<String>, SourceError> {
    let users: Vec<serde_json::Value> = client
        .query("SELECT Id, Username, Email, Name, IsActive, UserType, ProfileId, Profile.Name, Profile.UserLicense.Name, UserRoleId, SystemModstamp FROM User")
        .await?;
    Ok(users
        .iter()
        .map(|u| u["Id"].as_str().unwrap_or_default()[..15].to_owned())
        .collect())
}

fn expected_sf_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| sf_id("005", i)).collect()
}

// ---- Salesforce: paging, mapping, tokens -------------------------------------------------

#[tokio::test]
async fn salesforce_org_is_read_across_five_pages_of_users_and_mapped_to_the_domain() {
    let org = org(10);
    let fake = fake_salesforce(&org, 2).await;
    let client = salesforce(&fake);

    let read = client
        .fetch_org(&org.business_units)
        .await
        .expect("org is fetched");
    let fetched = read.org;

    assert_eq!(fetched.users, org.salesforce.users);
    assert_eq!(fetched.roles, org.salesforce.roles);
    assert_eq!(fetched.groups, org.salesforce.groups);
    // The only business unit manages its users in Account Engagement: no membership is read.
    assert_eq!(fetched.group_members, Vec::new());
    assert_eq!(fetched.org_id, org.salesforce.org_id);
    assert_eq!(fetched.instance_url, fake.url());
    // Organization 1 + User 5 pages + UserRole 1 + Group 1; no GroupMember.
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 8);
    assert_eq!(read.calls, 8);
    assert_eq!(client.calls(), 8);
    assert_eq!(fake.requests(SalesforceEndpoint::Token), 1);
    // At least the latest user's stamp (roles and groups carry their own).
    let latest_user = org
        .salesforce
        .users
        .iter()
        .filter_map(|u| u.modified_at)
        .max();
    assert!(read.high_water >= latest_user);
    assert_eq!(
        client.api_usage(),
        Some(ApiUsage {
            used: 8,
            max: 15_000
        })
    );
}

#[tokio::test]
async fn demo_org_round_trips_through_the_salesforce_fake() {
    let org = OrgSnapshot::from_json(crm_username::demo::DEMO_ORG_JSON, "demo").expect("demo org");
    let fake = fake_salesforce(&org, 2000).await;

    let fetched = salesforce(&fake)
        .fetch_org(&org.business_units)
        .await
        .expect("org is fetched")
        .org;

    // Internal users only: the partner user is not fetched.
    let internal: Vec<_> = org
        .salesforce
        .users
        .iter()
        .filter(|u| u.is_internal())
        .cloned()
        .collect();
    assert_eq!(internal.len(), org.salesforce.users.len() - 1);
    assert_eq!(fetched.users, internal);
    // Memberships of the groups the assignments reach only, in canonical order.
    let reachable = crm_username::domain::reachable_in(
        &org.salesforce.groups,
        &org.salesforce.group_members,
        &org.business_units,
    );
    let mut expected: Vec<_> = org
        .salesforce
        .group_members
        .iter()
        .filter(|m| reachable.contains(&m.group_id))
        .cloned()
        .collect();
    crm_username::sources::org_read::canonical_members(&mut expected);
    assert!(!expected.is_empty(), "the demo assigns public groups");
    assert_eq!(fetched.group_members, expected);
}

#[tokio::test]
async fn salesforce_token_expiring_mid_run_is_reminted_once_and_the_run_completes() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.expire_tokens_after(2);

    let ids = user_ids(&client).await.expect("query completes");

    assert_eq!(ids, expected_sf_ids(10));
    assert_eq!(fake.tokens_minted(), 2);
    // Pages 1-2, page 3 refused with 401, page 3 again, pages 4-5.
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 6);
}

/// A fake Salesforce that verifies assertions with the public half of `app_certificate_key`,
/// and a client of the JWT bearer flow signing with `TEST_ONLY_KEY`.
async fn jwt_client(app_certificate_key: &str) -> (FakeSalesforce, SalesforceClient) {
    let settings = FakeSalesforceSettings {
        jwt_public_key: rsa_public_key(app_certificate_key),
        ..FakeSalesforceSettings::default()
    };
    let fake = FakeSalesforce::start(&org(3), settings).await.unwrap();
    let mut config = client_credentials(&fake);
    config.auth = SalesforceAuth::JwtBearer {
        username: fake.settings().username.clone(),
        private_key_pem: SecretString::from(TEST_ONLY_KEY.to_owned()),
    };
    let client = SalesforceClient::new(config).expect("key is read");
    (fake, client)
}

#[tokio::test]
async fn salesforce_jwt_bearer_flow_gets_a_token_and_reads_data() {
    let (fake, client) = jwt_client(TEST_ONLY_KEY).await;

    assert_eq!(
        user_ids(&client).await.expect("query works"),
        expected_sf_ids(3)
    );
    assert_eq!(fake.tokens_minted(), 1);
}

#[tokio::test]
async fn a_jwt_assertion_signed_with_a_key_other_than_the_apps_certificate_is_refused() {
    let (fake, client) = jwt_client(OTHER_TEST_ONLY_KEY).await;

    let error = client.fetch_org(&[]).await.expect_err("token is refused");

    assert!(
        matches!(&error, SourceError::Auth { error, description, .. }
        if error == "invalid_grant" && description == "invalid assertion"),
        "{error:?}"
    );
    assert_eq!(fake.tokens_minted(), 0);
}

#[tokio::test]
async fn salesforce_jwt_for_a_user_not_pre_authorized_is_an_invalid_grant_auth_error() {
    let fake = fake_salesforce(&org(3), 2000).await;
    let mut config = client_credentials(&fake);
    config.auth = SalesforceAuth::JwtBearer {
        username: "someone.else@acme.com".to_owned(),
        private_key_pem: SecretString::from(TEST_ONLY_KEY.to_owned()),
    };
    let client = SalesforceClient::new(config).expect("key is read");

    let error = client.fetch_org(&[]).await.expect_err("token is refused");

    let SourceError::Auth {
        error: code, fix, ..
    } = &error
    else {
        panic!("expected Auth, got {error:?}");
    };
    assert_eq!(code, "invalid_grant");
    assert!(fix.contains("pre-authorized"), "{fix}");
    assert_eq!(fake.requests(SalesforceEndpoint::Token), 1);
}

#[tokio::test]
async fn salesforce_client_credentials_with_a_wrong_secret_is_an_invalid_client_error_without_the_secret()
 {
    let fake = fake_salesforce(&org(3), 2000).await;
    let mut config = client_credentials(&fake);
    config.auth = SalesforceAuth::ClientCredentials {
        secret: SecretString::from("wrong-secret-value".to_owned()),
    };
    let client = SalesforceClient::new(config).expect("client builds");

    let error = client.fetch_org(&[]).await.expect_err("token is refused");

    assert!(
        matches!(&error, SourceError::Auth { error, description, .. }
        if error == "invalid_client" && description == "invalid client credentials")
    );
    assert!(!error.to_string().contains("wrong-secret-value"));
    assert_eq!(fake.requests(SalesforceEndpoint::Token), 1);
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 0);
}

#[tokio::test]
async fn a_malformed_private_key_is_a_settings_error_at_construction() {
    let fake = fake_salesforce(&org(1), 2000).await;
    let mut config = client_credentials(&fake);
    config.auth = SalesforceAuth::JwtBearer {
        username: "integration@acme.com".to_owned(),
        private_key_pem: SecretString::from("not a key".to_owned()),
    };
    assert!(matches!(
        SalesforceClient::new(config),
        Err(SourceError::Settings { .. })
    ));
}

// ---- Salesforce: retries and failures ----------------------------------------------------

#[tokio::test]
async fn salesforce_503_429_and_a_timeout_are_retried_until_the_pages_arrive() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.inject(
        Injection::new(Fault::status(
            503,
            r#"[{"message":"busy","errorCode":"SERVER_UNAVAILABLE"}]"#,
        ))
        .on_page(2),
    );
    fake.inject(Injection::new(Fault::status(429, "[]")).on_page(3));
    fake.inject(Injection::new(Fault::Hang(Duration::from_millis(1500))).on_page(4));

    let ids = user_ids(&client).await.expect("query completes");

    assert_eq!(ids, expected_sf_ids(10));
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 8);
}

#[tokio::test]
async fn salesforce_body_cut_short_once_is_retried() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.inject(Injection::new(Fault::TruncatedBody).on_page(2));

    assert_eq!(
        user_ids(&client).await.expect("query completes"),
        expected_sf_ids(10)
    );
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 6);
}

#[tokio::test]
async fn salesforce_500_persisting_on_page_3_of_5_is_an_upstream_error_with_no_partial_result() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.inject(Injection::new(Fault::status(500, "[]")).on_page(3).always());

    let error = user_ids(&client).await.expect_err("the query fails");

    let SourceError::Upstream {
        source_name,
        path,
        attempts,
        ..
    } = &error
    else {
        panic!("expected Upstream, got {error:?}");
    };
    assert_eq!(source_name, "Salesforce");
    assert!(path.starts_with("/services/data/v62.0/query/"), "{path}");
    assert_eq!(*attempts, 4);
    assert!(!error.to_string().contains("token-"));
    // Pages 1-2, then 4 tries of page 3.
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 6);
}

#[tokio::test]
async fn salesforce_malformed_json_on_page_3_is_a_protocol_error_naming_the_query() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.inject(Injection::new(Fault::MalformedJson).on_page(3).always());

    let error = user_ids(&client).await.expect_err("the query fails");

    assert!(
        matches!(&error, SourceError::Protocol { request, .. } if request == "SOQL query on User"),
        "{error:?}"
    );
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 3);
}

#[tokio::test]
async fn salesforce_request_limit_exceeded_stops_at_once_with_daily_limit() {
    let fake = fake_salesforce(&org(10), 2).await;
    let client = salesforce(&fake);
    fake.inject(
        Injection::new(Fault::salesforce_request_limit())
            .on_page(2)
            .always(),
    );

    let error = user_ids(&client).await.expect_err("the query stops");

    assert!(
        matches!(&error, SourceError::DailyLimit { source_name, .. } if source_name == "Salesforce"),
        "{error:?}"
    );
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 2);
}

#[tokio::test]
async fn salesforce_allowance_spent_mid_run_stops_with_daily_limit_and_reports_usage() {
    let settings = FakeSalesforceSettings {
        batch_size: 2,
        api_limit: 3,
        ..FakeSalesforceSettings::default()
    };
    let fake = FakeSalesforce::start(&org(10), settings)
        .await
        .expect("fake starts");
    let client = salesforce(&fake);

    let error = user_ids(&client).await.expect_err("the query stops");

    assert!(matches!(error, SourceError::DailyLimit { .. }));
    assert_eq!(fake.requests(SalesforceEndpoint::Query), 4);
    assert_eq!(client.api_usage(), Some(ApiUsage { used: 4, max: 3 }));
}

// ---- Salesforce: live user lookup and business units -------------------------------------

#[tokio::test]
async fn hostile_username_input_stays_one_soql_literal_and_matches_no_user() {
    let fake = fake_salesforce(&org(5), 2000).await;
    let client = salesforce(&fake);

    let users = client
        .fetch_user(UserLookup::Username("' OR Username != '"))
        .await
        .expect("query is well formed");

    assert_eq!(users, vec![]);
}

#[tokio::test]
async fn user_lookup_by_username_with_a_quote_email_and_15_char_id_finds_exactly_that_user() {
    let mut org = org(3);
    org.salesforce.users[1].username = "o'brien\\x@acme.com".to_owned();
    let fake = fake_salesforce(&org, 2000).await;
    let client = salesforce(&fake);

    let by_name = client
        .fetch_user(UserLookup::Username("O'Brien\\x@acme.com"))
        .await
        .expect("lookup works");
    let by_email = client
        .fetch_user(UserLookup::Email("user3@acme.com"))
        .await
        .expect("lookup works");
    let id = SfId::parse(&sf_id("005", 1)).expect("valid id");
    let by_id = client
        .fetch_user(UserLookup::Id(id))
        .await
        .expect("lookup works");

    assert_eq!(by_name, vec![org.salesforce.users[1].clone()]);
    assert_eq!(by_email, vec![org.salesforce.users[2].clone()]);
    assert_eq!(by_id, vec![org.salesforce.users[0].clone()]);
}

#[tokio::test]
async fn business_units_are_discovered_from_pardot_tenants_via_the_tooling_api() {
    let fake = fake_salesforce(&org(1), 2000).await;

    let tenants = salesforce(&fake)
        .discover_business_units()
        .await
        .expect("tenants listed");

    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].id, bu());
    assert_eq!(tenants[0].pardot_tenant_name.as_deref(), Some("Acme NA"));
    assert_eq!(fake.requests(SalesforceEndpoint::ToolingQuery), 1);
}

// ---- Account Engagement ------------------------------------------------------------------

async fn fake_ae(org: &OrgSnapshot) -> FakeAccountEngagement {
    FakeAccountEngagement::start(org)
        .await
        .expect("fake starts")
}

fn ae_ids(users: &[crm_username::domain::AeUser]) -> Vec<u64> {
    users.iter().map(|u| u.id).collect()
}

#[tokio::test]
async fn ae_users_are_read_across_five_pages_following_next_page_url_and_mapped_to_the_domain() {
    let org = org(10);
    let fake = fake_ae(&org).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    assert_eq!(users, org.business_units[0].users);
    assert_eq!(fake.requests(), 5);
}

#[tokio::test]
async fn ae_paging_with_only_next_page_token_reads_every_user() {
    let org = org(10);
    let fake = fake_ae(&org).await;
    fake.set_paging_links(false, true);
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    assert_eq!(ae_ids(&users), (1..=10).collect::<Vec<_>>());
    assert_eq!(fake.requests(), 5);
}

#[tokio::test]
async fn ae_15_char_salesforce_ids_and_is_deleted_as_string_map_like_the_documented_forms() {
    let org = org(10);
    let fake = fake_ae(&org).await;
    fake.send_15_char_salesforce_ids(true);
    fake.send_is_deleted_as_string(true);
    let client = account_engagement(1000, Arc::new(FakeAccessToken::default()));

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    assert_eq!(users, org.business_units[0].users);
    assert_eq!(users.iter().filter(|u| u.is_deleted).count(), 3);
}

#[tokio::test]
async fn ae_token_refused_mid_run_with_184_is_reminted_once_and_the_run_completes() {
    let fake = fake_ae(&org(10)).await;
    let tokens = Arc::new(FakeAccessToken::default());
    let client = account_engagement(2, tokens.clone());
    fake.expire_token_after(2);

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    assert_eq!(ae_ids(&users), (1..=10).collect::<Vec<_>>());
    assert_eq!(tokens.minted(), 2);
    assert_eq!(fake.requests(), 6);
}

#[tokio::test]
async fn ae_503_timeout_code_66_and_214_are_retried_until_the_pages_arrive() {
    let fake = fake_ae(&org(10)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    fake.inject(Injection::new(Fault::status(503, "")).on_page(1));
    fake.inject(Injection::new(Fault::ae_code(66)).on_page(2));
    fake.inject(Injection::new(Fault::Hang(Duration::from_millis(1500))).on_page(3));
    fake.inject(Injection::new(Fault::ae_code(214)).on_page(4));

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    assert_eq!(ae_ids(&users), (1..=10).collect::<Vec<_>>());
    assert_eq!(fake.requests(), 9);
}

#[tokio::test]
async fn ae_500_persisting_on_page_3_of_5_is_an_upstream_error_with_no_partial_result() {
    let fake = fake_ae(&org(10)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    fake.inject(Injection::new(Fault::status(500, "")).on_page(3).always());

    let error = client
        .fetch_users(bu(), fake.url())
        .await
        .expect_err("fetch fails");

    assert!(
        matches!(&error, SourceError::Upstream { source_name, path, attempts: 4, .. }
        if source_name.contains(&bu().to_string()) && path == "/api/v5/objects/users"),
        "{error:?}"
    );
    assert_eq!(fake.requests(), 6);
}

#[tokio::test]
async fn ae_code_122_stops_at_once_with_daily_limit_for_the_business_unit() {
    let fake = fake_ae(&org(10)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    fake.inject(Injection::new(Fault::ae_code(122)).always());

    let error = client
        .fetch_users(bu(), fake.url())
        .await
        .expect_err("fetch stops");

    assert!(
        matches!(&error, SourceError::DailyLimit { source_name, .. }
        if source_name == &format!("Account Engagement business unit {}", bu())),
        "{error:?}"
    );
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn ae_code_201_for_an_unknown_business_unit_is_a_config_error_naming_it_and_the_hosts() {
    let fake = fake_ae(&org(2)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    let unknown = SfId::parse("0UvAk000000NOPE").expect("valid id");

    let error = client
        .fetch_users(unknown, fake.url())
        .await
        .expect_err("fetch fails");

    assert!(
        matches!(&error, SourceError::Config { business_unit, code: 201, .. }
        if business_unit == &unknown.to_string()),
        "{error:?}"
    );
    assert!(error.to_string().contains("pi.demo.pardot.com"));
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn ae_code_210_restarts_paging_and_returns_every_user_exactly_once() {
    let fake = fake_ae(&org(10)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    fake.inject(Injection::new(Fault::ae_code(210)).on_page(3));

    let users = client
        .fetch_users(bu(), fake.url())
        .await
        .expect("users fetched");

    let ids = ae_ids(&users);
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10);
    // Pages 1-2, page 3 refused, then pages 1-5 again.
    assert_eq!(fake.requests(), 8);
}

#[tokio::test]
async fn ae_page_token_expiring_on_every_try_gives_up_after_the_bounded_restarts() {
    let fake = fake_ae(&org(10)).await;
    let client = account_engagement(2, Arc::new(FakeAccessToken::default()));
    fake.inject(Injection::new(Fault::ae_code(210)).on_page(2).always());

    let error = client
        .fetch_users(bu(), fake.url())
        .await
        .expect_err("fetch gives up");

    assert!(matches!(error, SourceError::Protocol { .. }), "{error:?}");
    // 1 + 3 restarts, 2 requests each.
    assert_eq!(fake.requests(), 8);
}

#[tokio::test]
async fn ae_requests_per_business_unit_never_exceed_five_at_once() {
    let fake = fake_ae(&org(4)).await;
    let client = Arc::new(account_engagement(
        1000,
        Arc::new(FakeAccessToken::default()),
    ));
    fake.inject(Injection::new(Fault::Hang(Duration::from_millis(100))).times(8));

    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = fake.url().to_owned();
            tokio::spawn(async move { client.fetch_users(bu(), &url).await })
        })
        .collect();
    for fetch in fetches {
        let users = fetch.await.expect("task runs").expect("users fetched");
        assert_eq!(users.len(), 4);
    }

    assert_eq!(fake.max_in_flight(), 5);
    assert_eq!(fake.requests(), 8);
}

#[tokio::test]
async fn ae_client_uses_the_salesforce_access_token() {
    let org = org(4);
    let salesforce_fake = fake_salesforce(&org, 2000).await;
    let ae_fake = fake_ae(&org).await;
    let salesforce = Arc::new(salesforce(&salesforce_fake));
    let client = account_engagement(1000, salesforce.clone());

    let users = client
        .fetch_users(bu(), ae_fake.url())
        .await
        .expect("users fetched");

    assert_eq!(users.len(), 4);
    assert_eq!(salesforce_fake.requests(SalesforceEndpoint::Token), 1);
}
