//! The "Check CRM username" message shortcut, as Slack sends it (signed `message_action`
//! payloads): answered in the message's thread, a summary for several addresses, the clicker
//! told when there is nothing to check or the bot is not in the channel.

use chrono::Utc;
use serde_json::{Value, json};

use crm_username::demo;
use crm_username::fakes::SlackCall;
use crm_username::store::Store;

use common::app::{TEAM, TestApp};

use crate::common;

const TOP_LEVEL_TS: &str = "1700000000.000500";
const PARENT_TS: &str = "1699999999.000100";

async fn spawn_app() -> TestApp {
    let store = Store::memory();
    store
        .publish(demo::snapshot(Utc::now()).unwrap())
        .await
        .unwrap();
    TestApp::start(store).await
}

/// Slack's payload for the shortcut used on a message in `channel` (a reply in the thread of
/// `thread_ts` when given), its `response_url` on the fake (`response_url:sc`). The message
/// carries blocks as Slack's do, one of a kind no library knows yet, and a new subtype.
fn shortcut_payload(app: &TestApp, channel: &str, text: &str, thread_ts: Option<&str>) -> Value {
    let ts = if thread_ts.is_some() {
        "1700000000.000900"
    } else {
        TOP_LEVEL_TS
    };
    let mut message = json!({
        "type": "message", "user": "U0ASKER", "ts": ts, "text": text, "team": TEAM,
        "subtype": "a_subtype_from_the_future", "edited": {"user": "U0ASKER", "ts": ts, "extra": 1},
        "blocks": [
            {"type": "rich_text", "block_id": "b1", "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]},
            {"type": "a_block_kind_from_the_future", "block_id": "b2"}
        ],
    });
    if let Some(thread_ts) = thread_ts {
        message["thread_ts"] = json!(thread_ts);
        message["parent_user_id"] = json!("U0ASKER");
    }
    json!({
        "type": "message_action", "token": "x", "action_ts": "1700000001.000100",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": "U0CLICKER", "username": "clicker", "team_id": TEAM, "name": "clicker"},
        "channel": {"id": channel, "name": "support"},
        "is_enterprise_install": false, "enterprise": null,
        "callback_id": "check_crm_username", "trigger_id": "1.2.3",
        "message_ts": ts, "message": message,
        "response_url": app.slack.response_url("sc"),
    })
}

impl TestApp {
    async fn use_shortcut(&self, channel: &str, text: &str, thread_ts: Option<&str>) {
        let payload = shortcut_payload(self, channel, text, thread_ts);
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let response = self
            .post_signed(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                &body,
                &[],
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "", "acknowledged at once");
    }

    async fn pick(&self, value: &str, response_url: &str) {
        let payload = json!({
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "acme"},
            "user": {"id": "U0CLICKER", "team_id": TEAM},
            "api_app_id": "A0APP",
            "container": {"type": "message", "message_ts": "1700000002.000100", "channel_id": "C0CHAN", "is_ephemeral": false},
            "trigger_id": "1.2.3",
            "channel": {"id": "C0CHAN", "name": "support"},
            "response_url": response_url,
            "actions": [{"type": "button", "action_id": "pick_address", "block_id": "address:1", "value": value, "action_ts": "1700000003.000200"}]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &body,
            &[],
        )
        .await;
    }
}

fn block_ids(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
        .collect()
}

/// Every button's action id, in order.
fn action_ids(message: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for block in message["blocks"].as_array().unwrap() {
        if let Some(id) = block["accessory"]["action_id"].as_str() {
            ids.push(id.to_owned());
        }
        for element in block["elements"].as_array().into_iter().flatten() {
            if let Some(id) = element["action_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

fn targets(calls: &[SlackCall]) -> Vec<&str> {
    calls.iter().map(|c| c.target.as_str()).collect()
}

/// Waits for `n` calls, then a little longer to see that no more come.
async fn settled(app: &TestApp, n: usize) -> Vec<SlackCall> {
    app.calls(n).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.slack.calls()
}

#[tokio::test]
async fn a_top_level_message_with_one_address_gets_the_full_answer_in_a_thread_on_it() {
    let app = spawn_app().await;
    app.use_shortcut(
        "C0CHAN",
        "Hi team, <mailto:Old.Timer@acme.com|Old.Timer@acme.com> is missing from the CRM username dropdown",
        None,
    )
    .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["chat.postMessage"]);
    let body = &calls[0].body;
    assert_eq!(body["channel"], "C0CHAN");
    assert_eq!(body["thread_ts"], TOP_LEVEL_TS);
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "Blocked: old.timer@acme.com"
    );
    assert!(block_ids(body).contains(&"finding:salesforce_user_inactive:0".to_owned()));
    // A thread is public already: Re-check, but no "Share in channel".
    assert_eq!(
        action_ids(body)
            .into_iter()
            .filter(|a| a == "recheck" || a == "share")
            .collect::<Vec<_>>(),
        ["recheck"]
    );
}

#[tokio::test]
async fn a_reply_in_a_thread_with_three_addresses_gets_one_summary_in_that_thread() {
    let app = spawn_app().await;
    app.use_shortcut(
        "C0CHAN",
        "Three people cannot be picked: <mailto:email_a@example.com|email_a@example.com>, \
         old.timer@acme.com and user 005Ak00000ALXK1IAP. Also email_a@example.com again.",
        Some(PARENT_TS),
    )
    .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["chat.postMessage"]);
    let body = &calls[0].body;
    assert_eq!(body["channel"], "C0CHAN");
    assert_eq!(body["thread_ts"], PARENT_TS);
    assert_eq!(
        block_ids(body),
        ["addresses", "address:0", "address:1", "address:2"]
    );
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "*3 addresses in this message.* Pick one for the full answer:"
    );
    let values: Vec<&str> = body["blocks"].as_array().unwrap()[1..]
        .iter()
        .map(|b| {
            assert_eq!(b["accessory"]["action_id"], "pick_address");
            b["accessory"]["value"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        values,
        [
            "email_a@example.com",
            "old.timer@acme.com",
            "005Ak00000ALXK1IAP"
        ]
    );
    let old_timer = body["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(
        old_timer.starts_with(":no_entry: *Blocked:* old.timer@acme.com"),
        "{old_timer}"
    );
    assert!(!action_ids(body).contains(&"share".to_owned()));

    // A pick answers that address in full, to the clicker, and leaves the summary in place.
    app.pick("old.timer@acme.com", &app.slack.response_url("pick"))
        .await;
    let calls = settled(&app, 2).await;
    assert_eq!(targets(&calls), ["chat.postMessage", "response_url:pick"]);
    let picked = &calls[1].body;
    assert_eq!(picked["replace_original"], false);
    assert_eq!(picked["response_type"], "ephemeral");
    assert!(block_ids(picked).contains(&"finding:salesforce_user_inactive:0".to_owned()));
}

#[tokio::test]
async fn a_pick_takes_only_an_address_never_a_name_or_a_target() {
    let app = spawn_app().await;
    app.pick("alex", &app.slack.response_url("p0")).await;
    app.pick("old.timer@acme.com for 7", &app.slack.response_url("p1"))
        .await;
    app.pick("005Ak00000ALXK1IAP", &app.slack.response_url("p2"))
        .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["response_url:p2"]);
}

#[tokio::test]
async fn a_message_without_an_address_is_answered_to_the_clicker_only() {
    let app = spawn_app().await;
    app.use_shortcut(
        "C0CHAN",
        "Jane Doe cannot be picked, ticket 00001234, see <https://acme.my.salesforce.com/005|her record>",
        Some(PARENT_TS),
    )
    .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["response_url:sc"]);
    let body = &calls[0].body;
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(
        body["text"],
        "No Salesforce username, email or user id found in that message"
    );
    let text = body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("usernames and emails"), "{text}");
    assert!(text.contains("user ids (`005…`), at most 5"), "{text}");
}

#[tokio::test]
async fn hostile_text_is_never_echoed_and_a_fake_links_label_is_not_checked() {
    let app = spawn_app().await;
    // Only a mention and a link whose label looks like an address: nothing to check.
    app.use_shortcut(
        "C0CHAN",
        "<!channel> <!here> please check <https://evil.example/login|sam.sales@acme.com> *now* <@U0ADMIN>",
        None,
    )
    .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["response_url:sc"]);
    let said = calls[0].body.to_string();
    for hostile in [
        "<!channel>",
        "<!here>",
        "evil.example",
        "sam.sales",
        "<@U0ADMIN>",
    ] {
        assert!(!said.contains(hostile), "{hostile} echoed: {said}");
    }

    // The same next to a real email link: only the link's address is answered.
    app.use_shortcut(
        "C0CHAN",
        "<!channel> <https://evil.example/login|sam.sales@acme.com> \
         <mailto:old.timer@acme.com|old.timer@acme.com> &lt;!everyone&gt;",
        None,
    )
    .await;
    let calls = settled(&app, 2).await;
    assert_eq!(targets(&calls), ["response_url:sc", "chat.postMessage"]);
    let body = &calls[1].body;
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "Blocked: old.timer@acme.com"
    );
    let said = body.to_string();
    for hostile in ["<!channel>", "<!everyone>", "evil.example", "sam.sales"] {
        assert!(!said.contains(hostile), "{hostile} echoed: {said}");
    }
}

#[tokio::test]
async fn where_the_bot_is_not_a_member_the_clicker_gets_the_answer_and_how_to_invite_it() {
    let app = spawn_app().await;
    app.slack.not_in_channel("C0PRIVATE");
    app.use_shortcut(
        "C0PRIVATE",
        "old.timer@acme.com cannot be picked",
        Some(PARENT_TS),
    )
    .await;
    let calls = settled(&app, 2).await;
    assert_eq!(targets(&calls), ["chat.postMessage", "response_url:sc"]);
    assert_eq!(calls[0].body["channel"], "C0PRIVATE");
    let body = &calls[1].body;
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(body["blocks"][0]["block_id"], "only_for_you");
    let note = body["blocks"][0]["elements"][0]["text"].as_str().unwrap();
    assert!(note.contains("I am not a member of this channel"), "{note}");
    assert!(note.contains("`/invite @crm-username`"), "{note}");
    assert_eq!(
        body["blocks"][1]["text"]["text"],
        "Blocked: old.timer@acme.com"
    );
    assert!(block_ids(body).contains(&"finding:salesforce_user_inactive:0".to_owned()));
    assert!(!action_ids(body).contains(&"share".to_owned()));
}

#[tokio::test]
async fn another_callback_id_or_workspace_is_ignored() {
    let app = spawn_app().await;
    let mut other_shortcut = shortcut_payload(&app, "C0CHAN", "old.timer@acme.com", None);
    other_shortcut["callback_id"] = json!("something_else");
    let mut other_team = shortcut_payload(&app, "C0CHAN", "old.timer@acme.com", None);
    other_team["team"]["id"] = json!("T0OTHER");
    for payload in [other_shortcut, other_team] {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let response = app
            .post_signed(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                &body,
                &[],
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let calls = settled(&app, 0).await;
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_mention_in_a_thread_is_answered_without_the_share_button() {
    let app = spawn_app().await;
    let event = json!({"type": "app_mention", "user": "U0ASKER", "text": "<@U0BOT> check old.timer@acme.com",
        "ts": "1700000000.000700", "thread_ts": PARENT_TS, "channel": "C0CHAN", "event_ts": "1700000000.000700"});
    let body = json!({"token": "x", "team_id": TEAM, "api_app_id": "A0APP", "type": "event_callback",
        "event_id": "Ev0NOSHARE", "event_time": 1700000000, "event": event});
    app.post_signed("/slack/events", "application/json", &body.to_string(), &[])
        .await;
    let calls = settled(&app, 1).await;
    assert_eq!(targets(&calls), ["chat.postMessage"]);
    assert_eq!(
        action_ids(&calls[0].body)
            .into_iter()
            .filter(|a| a == "recheck" || a == "share")
            .collect::<Vec<_>>(),
        ["recheck"]
    );
}
