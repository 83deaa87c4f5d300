//! Salesforce auth as it works on real orgs: the token URL and the JWT audience are two
//! settings, and each known token error becomes a message saying what to change.

use chrono::Utc;
use crm_username::demo;
use crm_username::fakes::{FakeSalesforce, FakeSalesforceSettings, TokenHost, token_errors};
use crm_username::sources::{
    RetryPolicy, SalesforceAuth, SalesforceClient, SalesforceConfig, SourceError,
};
use secrecy::SecretString;

/// Generated for these tests only; no connected app trusts it.
const TEST_ONLY_KEY: &str = include_str!("../fixtures/test-only-rsa-key.pem");

async fn fake(settings: FakeSalesforceSettings) -> FakeSalesforce {
    let org = demo::snapshot(Utc::now()).unwrap();
    FakeSalesforce::start(&org, settings).await.unwrap()
}

fn client_credentials(fake: &FakeSalesforce) -> SalesforceConfig {
    let s = fake.settings();
    let mut config = SalesforceConfig::new(
        fake.url(),
        s.client_id.clone(),
        SalesforceAuth::ClientCredentials {
            secret: SecretString::from(s.client_secret.clone()),
        },
    );
    config.retry = RetryPolicy::quick();
    config
}

fn jwt(fake: &FakeSalesforce, audience: Option<&str>) -> SalesforceConfig {
    let mut config = client_credentials(fake);
    config.auth = SalesforceAuth::JwtBearer {
        username: fake.settings().username.clone(),
        private_key_pem: SecretString::from(TEST_ONLY_KEY.to_owned()),
    };
    config.audience = audience.map(str::to_owned);
    config
}

/// The OAuth error and the fix of a refused token.
async fn refusal(config: SalesforceConfig) -> (String, String, String) {
    match SalesforceClient::new(config).unwrap().connect().await {
        Err(SourceError::Auth {
            error,
            description,
            fix,
        }) => (error, description, fix),
        other => panic!("expected a refused token, got {other:?}"),
    }
}

#[tokio::test]
async fn each_known_token_error_in_salesforces_wire_form_becomes_a_fix_naming_what_to_change() {
    let cases = [
        (
            token_errors::NOT_MY_DOMAIN,
            "SALESFORCE_LOGIN_URL to https://<domain>.my.salesforce.com",
        ),
        (token_errors::NO_RUN_AS_USER, "set a Run As user"),
        (token_errors::NOT_APPROVED, "pre-authorize the user"),
        (
            token_errors::UNKNOWN_CLIENT_ID,
            "SALESFORCE_CLIENT_ID is not the consumer key",
        ),
        (
            token_errors::BAD_CLIENT_SECRET,
            "SALESFORCE_CLIENT_SECRET does not match",
        ),
        (
            token_errors::BAD_AUDIENCE,
            "https://test.salesforce.com (sandboxes)",
        ),
        (
            token_errors::BAD_ASSERTION,
            "the certificate of the key in SALESFORCE_PRIVATE_KEY_FILE",
        ),
    ];
    let fake = fake(FakeSalesforceSettings::default()).await;
    for ((error, description), wanted) in cases {
        fake.fail_tokens_with((error, description));
        let (got_error, got_description, fix) = refusal(client_credentials(&fake)).await;
        assert_eq!(
            (got_error.as_str(), got_description.as_str()),
            (error, description)
        );
        assert!(fix.contains(wanted), "{description}: {fix}");
    }
    fake.clear_token_error();
    SalesforceClient::new(client_credentials(&fake))
        .unwrap()
        .connect()
        .await
        .expect("a token once the error is cleared");
}

#[tokio::test]
async fn client_credentials_posted_to_a_login_host_are_refused_as_salesforce_does() {
    let fake = fake(FakeSalesforceSettings {
        host: TokenHost::Login,
        ..FakeSalesforceSettings::default()
    })
    .await;
    let (error, description, fix) = refusal(client_credentials(&fake)).await;
    assert_eq!(error, "invalid_grant");
    assert_eq!(description, "request not supported on this domain");
    assert!(fix.contains("only works on the org's My Domain"), "{fix}");
    // The JWT bearer flow still works on a login host.
    SalesforceClient::new(jwt(&fake, None))
        .unwrap()
        .connect()
        .await
        .expect("JWT works on login.salesforce.com");
}

#[tokio::test]
async fn the_jwt_audience_is_login_salesforce_com_whatever_the_token_url_and_can_be_overridden() {
    // The fake's token URL is 127.0.0.1: the derived audience is still login.salesforce.com.
    let production = fake(FakeSalesforceSettings::default()).await;
    let client = SalesforceClient::new(jwt(&production, None)).unwrap();
    assert_eq!(client.audience(), "https://login.salesforce.com");
    client
        .connect()
        .await
        .expect("the derived audience is accepted");

    let sandbox = fake(FakeSalesforceSettings {
        audience: "https://test.salesforce.com".to_owned(),
        ..FakeSalesforceSettings::default()
    })
    .await;
    let (error, description, fix) = refusal(jwt(&sandbox, None)).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        token_errors::BAD_AUDIENCE
    );
    assert!(
        fix.contains("the assertion's audience was https://login.salesforce.com"),
        "{fix}"
    );
    assert!(fix.contains("SALESFORCE_AUDIENCE"), "{fix}");
    SalesforceClient::new(jwt(&sandbox, Some("https://test.salesforce.com/")))
        .unwrap()
        .connect()
        .await
        .expect("SALESFORCE_AUDIENCE overrides the derived audience");
}
