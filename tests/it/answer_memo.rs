//! The reply memo (`src/answers.rs`): a slash-command check asked again with the same text on
//! the same data gets the reply made before (from the third ask: the first is not kept), and
//! never one made from data since changed, on any replica, or one that depends on the clock.

use chrono::{Duration, Utc};
use serde_json::Value;

use crm_username::demo;
use crm_username::domain::OrgSnapshot;
use crm_username::store::{RedisStore, Store};

use crate::common;
use common::app::{TEAM, TestApp};

const QUERY: &str = "check ok.user@acme.com";

async fn reply(app: &TestApp, text: &str) -> Value {
    let response = app.command(text, TEAM, "U0ASKER").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn ok_user(snapshot: &OrgSnapshot) -> crm_username::domain::SfUser {
    snapshot
        .salesforce
        .users
        .iter()
        .find(|u| u.username == "ok.user@acme.com")
        .unwrap()
        .clone()
}

fn with_ok_user(
    snapshot: &mut OrgSnapshot,
    change: impl FnOnce(&mut crm_username::domain::SfUser),
) {
    change(
        snapshot
            .salesforce
            .users
            .iter_mut()
            .find(|u| u.username == "ok.user@acme.com")
            .unwrap(),
    );
}

#[tokio::test]
async fn a_check_asked_again_gets_the_same_reply_until_the_data_changes_on_any_replica() {
    let prefix = common::prefix("answer-memo");
    common::clear_prefix(&prefix).await;
    let connect =
        || RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap();
    // Replica `other` writes (publishes, re-checks); the app answers.
    let other = connect();
    let snapshot = demo::snapshot(Utc::now()).unwrap();
    other.publish(snapshot.clone()).await.unwrap();
    let app = TestApp::start(Store::Redis(connect())).await;

    let first = reply(&app, QUERY).await;
    assert_eq!(first["text"], "Clear: ok.user@acme.com", "{first}");
    assert_eq!(app.state.answers.hits(), 0);
    // What a query asked for the first time read is not kept (most are asked once), nor its
    // reply: a reply is kept with the small org it was made on, from the second ask on.
    assert_eq!(reply(&app, QUERY).await, first);
    assert_eq!(app.state.answers.hits(), 0);
    assert_eq!(reply(&app, QUERY).await, first);
    assert_eq!(
        app.state.answers.hits(),
        1,
        "the same text on the same data"
    );
    // Typed otherwise, the text is another key (it is written in the reply).
    let other_casing = reply(&app, "check OK.User@acme.com").await;
    assert_eq!(
        other_casing["text"], "Clear: OK.User@acme.com",
        "{other_casing}"
    );
    assert_eq!(app.state.answers.hits(), 1);

    // Another replica's re-check rewrites the user: the next reply is made again from it.
    let ok = ok_user(&snapshot);
    let mut deactivated = ok.clone();
    deactivated.is_active = false;
    other
        .update_user(deactivated, Vec::new(), Vec::new())
        .await
        .unwrap();
    let after_recheck = reply(&app, QUERY).await;
    let text = after_recheck["text"].as_str().unwrap();
    assert!(
        text.starts_with("Blocked: ok.user@acme.com — "),
        "{after_recheck}"
    );
    assert_eq!(app.state.answers.hits(), 1);
    assert_eq!(reply(&app, QUERY).await, after_recheck);
    assert_eq!(app.state.answers.hits(), 2);

    // A new generation, the user active again: made again.
    let mut republished = snapshot.clone();
    with_ok_user(&mut republished, |u| u.name = "Ok Republished".to_owned());
    other.publish(republished.clone()).await.unwrap();
    let after_publish = reply(&app, QUERY).await;
    assert_eq!(
        after_publish["text"], "Clear: ok.user@acme.com",
        "{after_publish}"
    );
    assert_ne!(after_publish, first, "the new name is in the reply");
    assert!(after_publish.to_string().contains("Ok Republished"));
    assert_eq!(app.state.answers.hits(), 2);

    // A user changed minutes ago: the reply depends on the clock, so it is never kept.
    with_ok_user(&mut republished, |u| {
        u.modified_at = Some(Utc::now() - Duration::minutes(5))
    });
    other.publish(republished).await.unwrap();
    let recent = reply(&app, QUERY).await;
    assert_eq!(reply(&app, QUERY).await, recent);
    assert_eq!(reply(&app, QUERY).await, recent);
    assert_eq!(app.state.answers.hits(), 2, "never from the memo");
    common::clear_prefix(&prefix).await;
}

#[tokio::test]
async fn no_reply_is_kept_for_a_small_org_the_read_cache_does_not_keep() {
    let prefix = common::prefix("answer-memo-large");
    common::clear_prefix(&prefix).await;
    // The user in 1,500 public groups: its small org is past what the read cache keeps of
    // one query, so each check reads it again, and a reply kept for it could never be served.
    let mut snapshot = demo::snapshot(Utc::now()).unwrap();
    let ok = ok_user(&snapshot).id;
    for n in 0..1_500 {
        let id = crm_username::domain::SfId::parse(&format!("00GAk{n:010}")).unwrap();
        snapshot.salesforce.groups.push(
            serde_json::from_value(serde_json::json!({"id": id, "name": format!("Group {n}")}))
                .unwrap(),
        );
        snapshot
            .salesforce
            .group_members
            .push(crm_username::domain::GroupMember {
                group_id: id,
                member_id: ok,
            });
    }
    let store = RedisStore::connect(&common::redis_url(), &prefix, Default::default()).unwrap();
    store.publish(snapshot).await.unwrap();
    let app = TestApp::start(Store::Redis(store)).await;

    let first = reply(&app, QUERY).await;
    assert_eq!(first["text"], "Clear: ok.user@acme.com", "{first}");
    for _ in 0..3 {
        assert_eq!(reply(&app, QUERY).await, first);
    }
    assert_eq!(app.state.answers.kept(), 0);
    assert_eq!(app.state.answers.hits(), 0);
    // A user with a small org of the usual size is kept from its second ask on.
    let usual = "check sam.sales@acme.com";
    let usual_reply = reply(&app, usual).await;
    reply(&app, usual).await;
    assert_eq!(app.state.answers.kept(), 1, "{usual_reply}");
    assert_eq!(reply(&app, usual).await, usual_reply);
    assert_eq!(app.state.answers.hits(), 1);
    common::clear_prefix(&prefix).await;
}
