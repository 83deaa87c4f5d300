//! The fakes at the largest customers' scale, over HTTP as a client sees them: paging of
//! filtered results, Salesforce's length limits, the query shapes of an incremental refresh,
//! and the mutations tests make between two refreshes.

use chrono::{DateTime, TimeZone, Utc};
use crm_username::domain::{OrgSnapshot, PublicGroup, Role, SfId};
use crm_username::fakes::{
    FakeAccountEngagement, FakeSalesforce, FakeSalesforceSettings, INVALID_PARAMETER_CODE,
    MAX_URI_BYTES, UPDATED_AT_FILTER,
};
use crm_username::synthetic::{self, Params, Variety};
use serde_json::Value;

const QUERY_PATH: &str = "/services/data/v62.0/query";

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

fn small_org() -> OrgSnapshot {
    synthetic::generate(Params {
        sf_users: 300,
        ae_users: 40,
        business_units: 2,
        seed: 3,
    })
}

/// A client holding a token of the fake.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn new(fake: &FakeSalesforce) -> Self {
        crm_username::sources::install_crypto_provider();
        let http = reqwest::Client::new();
        let settings = fake.settings();
        let reply: Value = http
            .post(format!("{}/services/oauth2/token", fake.url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", settings.client_id.as_str()),
                ("client_secret", settings.client_secret.as_str()),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token reply");
        Client {
            http,
            base: fake.url().to_owned(),
            token: reply["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// GET `path_and_query` as written (nothing re-encoded): status and JSON body (or null).
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn query(&self, soql: &str) -> (u16, Value) {
        self.get(&query_uri(soql)).await
    }

    /// Every record of a query, following `nextRecordsUrl`, and the number of requests.
    async fn query_all(&self, soql: &str) -> (Vec<Value>, usize) {
        let (status, mut body) = self.query(soql).await;
        assert_eq!(status, 200, "{soql}: {body}");
        let mut records = Vec::new();
        let mut requests = 1;
        loop {
            records.extend(body["records"].as_array().expect("records").iter().cloned());
            let Some(next) = body["nextRecordsUrl"].as_str().map(str::to_owned) else {
                assert_eq!(body["done"], true);
                return (records, requests);
            };
            assert_eq!(body["done"], false);
            let (status, next_body) = self.get(&next).await;
            assert_eq!(status, 200, "{next}: {next_body}");
            body = next_body;
            requests += 1;
        }
    }
}

fn query_uri(soql: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
    format!("{QUERY_PATH}?q={encoded}")
}

fn ids15(records: &[Value], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| r[field].as_str().expect("id")[..15].to_owned())
        .collect()
}

fn in_list(ids: &[SfId]) -> String {
    ids.iter()
        .map(|id| format!("'{}'", id.to_18()))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn fifty_thousand_internal_users_of_55000_come_in_25_pages_of_2000_and_no_external_one() {
    let mut org = synthetic::generate(Params {
        sf_users: 55_000,
        ae_users: 0,
        business_units: 1,
        seed: 5,
    });
    for (i, user) in org.salesforce.users.iter_mut().enumerate() {
        if i % 11 == 10 {
            user.user_type = Some("PowerPartner".to_owned());
        }
    }
    let expected: Vec<String> = org
        .salesforce
        .users
        .iter()
        .filter(|u| u.user_type.as_deref() == Some("Standard"))
        .map(|u| u.id.as_str15().to_owned())
        .collect();
    assert_eq!(expected.len(), 50_000);
    let fake = FakeSalesforce::start_owned(org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;

    let (first_status, first) = client
        .query("SELECT Id, SystemModstamp FROM User WHERE UserType = 'Standard'")
        .await;
    assert_eq!(first_status, 200);
    assert_eq!(first["totalSize"], 50_000);
    assert_eq!(first["records"].as_array().map(Vec::len), Some(2_000));

    let (records, requests) = client
        .query_all("SELECT Id, SystemModstamp FROM User WHERE UserType = 'Standard'")
        .await;
    assert_eq!(requests, 25);
    assert_eq!(ids15(&records, "Id"), expected);
}

#[tokio::test]
async fn the_fake_gzips_a_page_when_the_request_accepts_it_as_salesforce_does() {
    let fake = FakeSalesforce::start(&small_org(), FakeSalesforceSettings::default())
        .await
        .unwrap();
    let client = Client::new(&fake).await;
    // A client that neither asks for nor decodes compression, to see the bytes on the wire.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let uri = format!(
        "{}{}",
        fake.url(),
        query_uri("SELECT Id, Username, Email, Name FROM User")
    );
    let get = |gzip: bool| {
        let mut request = raw.get(&uri).bearer_auth(&client.token);
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let encoding = response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            (encoding, response.bytes().await.unwrap())
        }
    };
    let (plain_encoding, plain) = get(false).await;
    let (gzip_encoding, gzipped) = get(true).await;
    assert_eq!(plain_encoding, None);
    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    assert_eq!(&gzipped[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        gzipped.len() * 4 < plain.len(),
        "{} bytes gzipped, {} plain",
        gzipped.len(),
        plain.len()
    );
    // The client of the tests (reqwest with gzip) reads the same records either way.
    let (status, body) = client
        .query("SELECT Id, Username, Email, Name FROM User")
        .await;
    assert_eq!(status, 200);
    let plain: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(body["records"], plain["records"]);
}

#[tokio::test]
async fn a_uri_of_16384_bytes_is_served_and_one_byte_more_gets_414() {
    let org = small_org();
    let groups: Vec<SfId> = org.salesforce.groups.iter().map(|g| g.id).collect();
    let fake = FakeSalesforce::start(&org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    let soql = format!(
        "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember WHERE GroupId IN ({})",
        in_list(&groups[..3])
    );
    // Trailing spaces encode as one `+` each: pad the URI to the limit exactly.
    let short = MAX_URI_BYTES - query_uri(&soql).len();
    let at_limit = format!("{soql}{}", " ".repeat(short));
    assert_eq!(query_uri(&at_limit).len(), MAX_URI_BYTES);

    let (status, body) = client.query(&at_limit).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = client.query(&format!("{at_limit} ")).await;
    assert_eq!(status, 414);
}

#[tokio::test]
async fn group_member_rows_are_read_by_group_id_in_chunks_and_counted_by_an_aggregate() {
    let org = small_org();
    let groups: Vec<SfId> = org.salesforce.groups.iter().map(|g| g.id).collect();
    let chunk = &groups[..3];
    let expected: Vec<(String, String)> = org
        .salesforce
        .group_members
        .iter()
        .filter(|m| chunk.contains(&m.group_id))
        .map(|m| {
            (
                m.group_id.as_str15().to_owned(),
                m.member_id.as_str15().to_owned(),
            )
        })
        .collect();
    assert!(expected.len() > 3, "the test needs several rows");
    let fake = FakeSalesforce::start(&org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    fake.set_batch_size(2);
    let client = Client::new(&fake).await;

    let (rows, requests) = client
        .query_all(&format!(
            "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember WHERE GroupId IN ({})",
            in_list(chunk)
        ))
        .await;
    let got: Vec<(String, String)> = ids15(&rows, "GroupId")
        .into_iter()
        .zip(ids15(&rows, "UserOrGroupId"))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(requests, expected.len().div_ceil(2));

    let (status, body) = client
        .query(&format!(
            "SELECT GroupId, COUNT(Id) FROM GroupMember WHERE GroupId IN ({}) GROUP BY GroupId",
            in_list(chunk)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done"], true);
    let mut counted: Vec<(String, u64)> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            assert_eq!(r["attributes"]["type"], "AggregateResult");
            assert!(r.get("Id").is_none());
            (
                r["GroupId"].as_str().expect("GroupId")[..15].to_owned(),
                r["expr0"].as_u64().expect("expr0"),
            )
        })
        .collect();
    counted.sort();
    let mut want: Vec<(String, u64)> = chunk
        .iter()
        .map(|g| {
            let n = expected
                .iter()
                .filter(|(gid, _)| gid == g.as_str15())
                .count();
            (g.as_str15().to_owned(), n as u64)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    want.sort();
    assert_eq!(counted, want);
}

#[tokio::test]
async fn an_aggregate_over_more_than_2000_groups_is_refused_as_malformed() {
    // 2,001 groups of one member each.
    let mut org = small_org();
    let user = org.salesforce.users[0].id;
    org.salesforce.groups.clear();
    org.salesforce.group_members.clear();
    for g in 0..2_001 {
        let id = SfId::parse(&format!("00GAg{g:010}")).expect("id");
        org.salesforce.groups.push(PublicGroup {
            id,
            name: format!("G{g}"),
            developer_name: None,
            group_type: "Regular".into(),
            related_id: None,
        });
        org.salesforce
            .group_members
            .push(crm_username::domain::GroupMember {
                group_id: id,
                member_id: user,
            });
    }
    let fake = FakeSalesforce::start_owned(org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    let (status, body) = client
        .query("SELECT GroupId, COUNT(Id) FROM GroupMember GROUP BY GroupId")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "MALFORMED_QUERY");
    fake.remove_member(SfId::parse("00GAg0000000000").expect("id"), user);
    let (status, body) = client
        .query("SELECT GroupId, COUNT(Id) FROM GroupMember GROUP BY GroupId")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], 2_000);
}

#[tokio::test]
async fn the_group_query_of_the_refresh_leaves_queues_out() {
    let org = synthetic::generate_with(
        Params {
            sf_users: 2_000,
            ae_users: 0,
            business_units: 2,
            seed: 1,
        },
        Variety {
            group_members: 4_000,
            ..Variety::default()
        },
    );
    let expected: Vec<String> = org
        .salesforce
        .groups
        .iter()
        .filter(|g| g.group_type != "Queue")
        .map(|g| g.id.as_str15().to_owned())
        .collect();
    assert!(
        org.salesforce
            .groups
            .iter()
            .any(|g| g.group_type == "Queue")
    );
    let fake = FakeSalesforce::start(&org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    let (groups, _) = client
        .query_all(
            "SELECT Id, Name, DeveloperName, Type, RelatedId, SystemModstamp FROM Group WHERE \
             Type IN ('Regular','Role','RoleAndSubordinates','RoleAndSubordinatesInternal')",
        )
        .await;
    assert_eq!(ids15(&groups, "Id"), expected);
}

#[tokio::test]
async fn changes_after_a_time_come_back_through_the_systemmodstamp_filter_and_nothing_else() {
    let org = small_org();
    let fake = FakeSalesforce::start(&org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    let since = t(10, 0);
    fake.set_clock(since);

    let mut user = org.salesforce.users[7].clone();
    user.email = "changed@synthetic.example.com".to_owned();
    fake.upsert_user(user.clone());
    let group = PublicGroup {
        id: SfId::parse("00GNew000000001").expect("id"),
        name: "New group".to_owned(),
        developer_name: Some("New_group".to_owned()),
        group_type: "Regular".to_owned(),
        related_id: None,
    };
    fake.upsert_group(group.clone());
    let role = Role {
        name: "Renamed".to_owned(),
        ..org.salesforce.roles[2].clone()
    };
    fake.upsert_role(role.clone());
    fake.add_member(group.id, user.id);
    // Present already: no new row, no new stamp.
    fake.add_member(group.id, user.id);
    assert_eq!(
        fake.clock(),
        since + chrono::Duration::milliseconds(4),
        "four changes, a millisecond each"
    );

    let after = "2026-12-01T10:00:00Z";
    let (users, _) = client
        .query_all(&format!(
            "SELECT Id, Email, SystemModstamp FROM User WHERE UserType = 'Standard' AND SystemModstamp >= {after}"
        ))
        .await;
    assert_eq!(ids15(&users, "Id"), vec![user.id.as_str15().to_owned()]);
    assert_eq!(users[0]["Email"], "changed@synthetic.example.com");
    assert_eq!(users[0]["SystemModstamp"], "2026-12-01T10:00:00.000+0000");

    let (groups, _) = client
        .query_all(&format!(
            "SELECT Id, Name, DeveloperName, Type, RelatedId, SystemModstamp FROM Group WHERE \
             Type IN ('Regular','Role','RoleAndSubordinates','RoleAndSubordinatesInternal') \
             AND SystemModstamp >= {after}"
        ))
        .await;
    assert_eq!(ids15(&groups, "Id"), vec![group.id.as_str15().to_owned()]);
    assert_eq!(groups[0]["SystemModstamp"], "2026-12-01T10:00:00.001+0000");

    let (roles, _) = client
        .query_all(&format!(
            "SELECT Id, Name, ParentRoleId, SystemModstamp FROM UserRole WHERE SystemModstamp >= {after}"
        ))
        .await;
    assert_eq!(ids15(&roles, "Id"), vec![role.id.as_str15().to_owned()]);
    assert_eq!(roles[0]["Name"], "Renamed");

    // Only the new row, though the group of the chunk is named with earlier ones.
    let old_group = org.salesforce.group_members[0].group_id;
    let (rows, _) = client
        .query_all(&format!(
            "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember WHERE GroupId IN ({}) \
             AND SystemModstamp >= 2026-12-01T10:00:00.003+0000",
            in_list(&[old_group, group.id])
        ))
        .await;
    assert_eq!(
        ids15(&rows, "UserOrGroupId"),
        vec![user.id.as_str15().to_owned()]
    );
    assert_eq!(rows[0]["SystemModstamp"], "2026-12-01T10:00:00.003+0000");

    // Nothing changed a millisecond after the last change.
    let (none, _) = client
        .query_all(
            "SELECT Id, Name, ParentRoleId, SystemModstamp FROM UserRole WHERE SystemModstamp >= 2026-12-01T10:00:00.004Z",
        )
        .await;
    assert!(none.is_empty());
    let held = fake.org();
    assert!(held.groups.contains(&group));
    assert!(held.roles.contains(&role));
}

#[tokio::test]
async fn a_removed_membership_is_gone_from_later_queries_and_counts() {
    let org = small_org();
    let row = org.salesforce.group_members[0].clone();
    let fake = FakeSalesforce::start(&org, FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    let soql = format!(
        "SELECT GroupId, UserOrGroupId, SystemModstamp FROM GroupMember WHERE GroupId = '{}'",
        row.group_id.to_18()
    );
    let (before, _) = client.query_all(&soql).await;
    assert!(ids15(&before, "UserOrGroupId").contains(&row.member_id.as_str15().to_owned()));

    assert!(fake.remove_member(row.group_id, row.member_id));
    assert!(!fake.remove_member(row.group_id, row.member_id));

    let (after, _) = client.query_all(&soql).await;
    assert_eq!(after.len(), before.len() - 1);
    assert!(!ids15(&after, "UserOrGroupId").contains(&row.member_id.as_str15().to_owned()));
    let (all, _) = client
        .query_all("SELECT GroupId, UserOrGroupId FROM GroupMember")
        .await;
    assert_eq!(all.len(), org.salesforce.group_members.len() - 1);
    assert!(!fake.org().group_members.contains(&row));
}

#[tokio::test]
async fn malformed_or_unknown_soql_is_refused_as_salesforce_does() {
    let fake = FakeSalesforce::start(&small_org(), FakeSalesforceSettings::default())
        .await
        .expect("fake starts");
    let client = Client::new(&fake).await;
    for (soql, code) in [
        (
            "SELECT Id FROM User WHERE Username = 'a' OR Username = 'b'",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM UserRole WHERE SystemModstamp >= '2026-12-01T10:00:00Z'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM User WHERE Title = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
    ] {
        let (status, body) = client.query(soql).await;
        assert_eq!(
            (status, body[0]["errorCode"].as_str()),
            (400, Some(code)),
            "{soql}"
        );
    }
}

// ---- Account Engagement -------------------------------------------------------------------

async fn ae_get(fake: &FakeAccountEngagement, bu: SfId, query: &str) -> (u16, Value) {
    crm_username::sources::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v5/objects/users?{query}", fake.url()))
        .bearer_auth("token")
        .header("Pardot-Business-Unit-Id", bu.to_18())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ae_users_changed_since_a_time_page_in_change_order_deleted_ones_included() {
    let org = small_org();
    let bu = &org.business_units[0];
    let fake = FakeAccountEngagement::start(&org)
        .await
        .expect("fake starts");
    fake.set_clock(t(10, 0));
    let mut live = bu.users.iter().filter(|u| !u.is_deleted);
    let (mut changed, deleted) = (
        live.next().expect("a user").clone(),
        live.next().expect("another user").id,
    );
    changed.email = "changed@synthetic.example.com".to_owned();
    let mut added = bu.users[0].clone();
    added.id = 90_000;
    added.is_deleted = false;
    fake.upsert_user(bu.id, added.clone());
    fake.upsert_user(bu.id, changed.clone());
    assert!(fake.delete_user(bu.id, deleted));
    assert!(!fake.delete_user(bu.id, 123_456_789));

    let mut query = format!(
        "fields=id,email,isDeleted,updatedAt&deleted=all&limit=2&orderBy=updatedAt&{UPDATED_AT_FILTER}=2026-12-01T10:00:00Z"
    );
    let mut seen = Vec::new();
    let mut requests = 0;
    loop {
        let (status, body) = ae_get(&fake, bu.id, &query).await;
        assert_eq!(status, 200, "{body}");
        requests += 1;
        for user in body["values"].as_array().expect("values") {
            seen.push((
                user["id"].as_u64().expect("id"),
                user["isDeleted"].as_bool().expect("isDeleted"),
            ));
        }
        match body["nextPageToken"].as_str() {
            Some(token) => {
                query = format!("fields=id,email,isDeleted,updatedAt&nextPageToken={token}")
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![(90_000, false), (changed.id, false), (deleted, true)]
    );
    assert_eq!(requests, 2);
    let held = fake.users(bu.id);
    assert_eq!(
        held.iter()
            .find(|u| u.id == changed.id)
            .and_then(|u| u.updated_at),
        Some(t(10, 0) + chrono::Duration::milliseconds(1))
    );
}

#[tokio::test]
async fn a_business_unit_rejecting_the_updated_at_filter_answers_invalid_parameter() {
    let org = small_org();
    let bu = org.business_units[0].id;
    let fake = FakeAccountEngagement::start(&org)
        .await
        .expect("fake starts");
    fake.reject_updated_at_filter(true);
    let (status, body) = ae_get(
        &fake,
        bu,
        &format!("fields=id&{UPDATED_AT_FILTER}=2026-12-01T10:00:00Z"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], INVALID_PARAMETER_CODE);
    // Without the filter the same business unit answers.
    let (status, _) = ae_get(&fake, bu, "fields=id").await;
    assert_eq!(status, 200);
}
