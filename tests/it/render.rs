//! The three renderers: snapshots of representative diagnoses, Slack's limits, and hostile data.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crm_username::diagnose::diagnose;
use crm_username::domain::{AeUser, Diagnosis, Org, OrgSnapshot, Query};
use crm_username::{demo, render};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

fn demo_diagnosis(query: &str) -> Diagnosis {
    let org = Org::new(demo::snapshot(now()).unwrap());
    diagnose(&Query::parse(query).unwrap(), &org, now()).unwrap()
}

/// Every way a Slack message can break Slack's published limits, as readable strings.
fn slack_limit_violations(message: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let text = message["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        problems.push("no top-level text".to_owned());
    }
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > 50 {
        problems.push(format!("{} blocks", blocks.len()));
    }
    for (i, block) in blocks.iter().enumerate() {
        let kind = block["type"].as_str().unwrap_or_default();
        let len = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
        match kind {
            "header" if len(&block["text"]["text"]) > 150 => {
                problems.push(format!("block {i}: header over 150"))
            }
            "section" if len(&block["text"]["text"]) > 3000 => {
                problems.push(format!("block {i}: section over 3000"))
            }
            _ => {}
        }
        if let Some(id) = block["block_id"].as_str() {
            if id.len() > 255 {
                problems.push(format!("block {i}: block_id over 255"));
            }
        }
        let mut buttons: Vec<&Value> = block["elements"]
            .as_array()
            .map(|e| e.iter().collect())
            .unwrap_or_default();
        if kind == "actions" && buttons.len() > 25 {
            problems.push(format!("block {i}: {} elements", buttons.len()));
        }
        if block["accessory"].is_object() {
            buttons.push(&block["accessory"]);
        }
        let mut action_ids = std::collections::HashSet::new();
        for b in buttons.iter().filter(|b| b["type"] == "button") {
            if len(&b["text"]["text"]) > 75 {
                problems.push(format!("block {i}: button text over 75"));
            }
            if len(&b["value"]) > 2000 {
                problems.push(format!("block {i}: button value over 2000"));
            }
            if len(&b["url"]) > 3000 {
                problems.push(format!("block {i}: url over 3000"));
            }
            if !action_ids.insert(b["action_id"].as_str().unwrap_or_default().to_owned()) {
                problems.push(format!("block {i}: repeated action_id"));
            }
        }
    }
    problems
}

/// Every mrkdwn string in a message.
fn mrkdwn_texts(message: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                    if let Some(t) = map.get("text").and_then(Value::as_str) {
                        out.push(t.to_owned());
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = vec![message["text"].as_str().unwrap_or_default().to_owned()];
    walk(message, &mut out);
    out
}

#[test]
fn text_of_a_deleted_user_holding_the_username() {
    insta::assert_snapshot!(render::text(
        &demo_diagnosis("dana.deleted@acme.com"),
        false
    ));
}

#[test]
fn text_of_an_ambiguous_name() {
    insta::assert_snapshot!(render::text(&demo_diagnosis("alex"), false));
}

#[test]
fn text_of_a_typo() {
    insta::assert_snapshot!(render::text(&demo_diagnosis("sam.sale@acme.com"), false));
}

#[test]
fn text_in_colour_wraps_the_verdict_in_ansi_codes() {
    let text = render::text(&demo_diagnosis("dana.deleted@acme.com"), true);
    assert!(
        text.starts_with("\u{1b}[1m\u{1b}[31mBLOCKED\u{1b}[0m  dana.deleted@acme.com"),
        "{text:?}"
    );
}

#[test]
fn json_of_the_articles_scenario_2() {
    let d = demo_diagnosis("email_a@example.com for email_b@example.com");
    insta::assert_snapshot!(render::json(&d));
}

#[test]
fn json_of_an_inactive_user_also_held_by_a_deleted_ae_user() {
    insta::assert_snapshot!(render::json(&demo_diagnosis("old.timer@acme.com")));
}

#[test]
fn json_has_every_field_of_the_contract() {
    let v: Value =
        serde_json::from_str(&render::json(&demo_diagnosis("sam.sales@acme.com"))).unwrap();
    for key in [
        "query",
        "verdict",
        "salesforce_user",
        "target",
        "findings",
        "candidates",
        "data_as_of",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["target"], Value::Null);
    let f = &v["findings"][0];
    for key in [
        "code",
        "severity",
        "business_unit_id",
        "title",
        "detail",
        "steps",
        "links",
        "ae_user",
    ] {
        assert!(f.get(key).is_some(), "finding lacks {key}");
    }
    assert_eq!(f["code"], "mapped_to_active_user");
    assert_eq!(f["severity"], "blocker");
    assert_eq!(f["ae_user"]["id"], 1002);
    assert_eq!(f["links"][0]["action_id"], "open_ae_user");
    assert_eq!(v["data_as_of"], "2026-11-27T10:00:00Z");
}

#[test]
fn blocks_of_a_blocked_user() {
    insta::assert_json_snapshot!(render::blocks(&demo_diagnosis("dana.deleted@acme.com")));
}

#[test]
fn blocks_of_a_pending_assignment() {
    insta::assert_json_snapshot!(render::blocks(&demo_diagnosis("eve.new@acme.com")));
}

#[test]
fn blocks_of_an_ambiguous_name_offer_pick_buttons() {
    let message = render::blocks(&demo_diagnosis("alex"));
    insta::assert_json_snapshot!(message);
}

#[test]
fn blocks_of_a_clear_user_with_a_target() {
    insta::assert_json_snapshot!(render::blocks(&demo_diagnosis(
        "mia.multi@acme.com for 2001"
    )));
}

#[test]
fn finding_blocks_are_identified_by_code_and_index() {
    let message = render::blocks(&demo_diagnosis("old.timer@acme.com"));
    let ids: Vec<&str> = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["block_id"].as_str())
        .filter(|id| id.starts_with("finding:"))
        .collect();
    assert_eq!(
        ids,
        [
            "finding:salesforce_user_inactive:0",
            "finding:mapped_to_deleted_user:1"
        ]
    );
}

#[test]
fn every_demo_answer_fits_slacks_limits() {
    for query in [
        "email_a@example.com",
        "email_a@example.com for email_b@example.com",
        "sam.sales@acme.com",
        "dana.deleted@acme.com",
        "old.timer@acme.com",
        "pat.personal@acme.com",
        "chris.contractor@acme.com",
        "nora.north@acme.com",
        "eve.new@acme.com",
        "mia.multi@acme.com for 2001",
        "ok.user@acme.com",
        "alex",
        "sam.sale@acme.com",
    ] {
        let message = render::blocks(&demo_diagnosis(query));
        assert_eq!(
            slack_limit_violations(&message),
            Vec::<String>::new(),
            "{query}"
        );
    }
}

fn holder(id: u64, name: &str, sf: &str) -> AeUser {
    serde_json::from_value(serde_json::json!({
        "id": id, "email": format!("holder{id}@acme.com"), "first_name": name,
        "last_name": name, "salesforce_id": sf, "is_deleted": id % 2 == 0,
    }))
    .unwrap()
}

#[test]
fn a_username_held_by_500_ae_users_stays_within_slacks_limits() {
    let mut snapshot: OrgSnapshot = demo::snapshot(now()).unwrap();
    let long = "L".repeat(500);
    for i in 0..500 {
        snapshot.business_units[i % 2].users.push(holder(
            10_000 + i as u64,
            &long,
            "005Ak00000SAMS1IAP",
        ));
    }
    snapshot.salesforce.users[1].name = "N".repeat(2_000);
    let org = Org::new(snapshot);
    let d = diagnose(&Query::parse("sam.sales@acme.com").unwrap(), &org, now()).unwrap();
    assert_eq!(d.findings.len(), 501);
    let message = render::blocks(&d);
    assert_eq!(slack_limit_violations(&message), Vec::<String>::new());
    let blocks = message["blocks"].as_array().unwrap();
    let more = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .find(|t| t.starts_with("…and "))
        .expect("a summary of the findings that did not fit");
    assert!(more.starts_with("…and 486 more findings: "), "{more}");
    assert!(message["text"].as_str().unwrap().chars().count() <= 3000);
}

const HOSTILE: &str = "<!channel> <@U012AB> <http://evil.example|click me> &amp; &lt;b&gt; *b* _i_ \u{202E}gnp.exe\u{200B} \u{1b}[31mred";

#[test]
fn hostile_crm_data_renders_inert_in_slack() {
    let mut snapshot = demo::snapshot(now()).unwrap();
    let user = &mut snapshot.salesforce.users[1];
    user.name = HOSTILE.into();
    user.email = format!("{HOSTILE}@acme.com");
    user.profile_name = Some(HOSTILE.into());
    snapshot.business_units[0].name = HOSTILE.into();
    let ae = &mut snapshot.business_units[0].users[1];
    ae.first_name = HOSTILE.into();
    ae.email = HOSTILE.into();
    let org = Org::new(snapshot);
    let d = diagnose(&Query::parse("sam.sales@acme.com").unwrap(), &org, now()).unwrap();
    let message = render::blocks(&d);
    assert_eq!(slack_limit_violations(&message), Vec::<String>::new());
    for text in mrkdwn_texts(&message) {
        assert!(
            !text.contains('<') && !text.contains('>'),
            "unescaped bracket in {text:?}"
        );
        assert!(
            !text.contains("&amp;amp;") || text.contains("&amp;amp;"),
            "double escaping is fine only for a literal &amp;"
        );
        for c in ['\u{202E}', '\u{200B}', '\u{1b}'] {
            assert!(!text.contains(c), "invisible {c:?} in {text:?}");
        }
        // Every & starts an entity.
        for (at, _) in text.match_indices('&') {
            let rest = &text[at..];
            assert!(
                rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
                "{rest:?}"
            );
        }
    }
    let all = mrkdwn_texts(&message).join("\n");
    assert!(all.contains("&lt;!channel&gt; &lt;@U012AB&gt; &lt;http://evil.example|click me&gt; &amp;amp; &amp;lt;b&amp;gt;"), "{all}");
}

#[test]
fn hostile_query_text_renders_inert_in_slack() {
    let org = Org::new(demo::snapshot(now()).unwrap());
    let d = diagnose(&Query::parse("&lt;!here&gt; nobody").unwrap(), &org, now()).unwrap();
    let message = render::blocks(&d);
    for text in mrkdwn_texts(&message) {
        assert!(!text.contains("<!here>"), "{text}");
    }
    let header = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(
        header, "Not found: <!here> nobody",
        "plain_text shows the query as typed"
    );
}

#[test]
fn hostile_crm_data_cannot_drive_the_terminal() {
    let mut snapshot = demo::snapshot(now()).unwrap();
    snapshot.salesforce.users[1].name = HOSTILE.into();
    let org = Org::new(snapshot);
    let d = diagnose(&Query::parse("sam.sales@acme.com").unwrap(), &org, now()).unwrap();
    let text = render::text(&d, false);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202E}'),
        "{text:?}"
    );
    assert!(
        text.contains("<!channel>"),
        "plain text shows values as they are"
    );
}

/// The demo queries of every kind: each cause, a target, an ambiguous name, a typo.
const WIRE_QUERIES: [&str; 14] = [
    "email_a@example.com",
    "email_a@example.com for email_b@example.com",
    "sam.sales@acme.com",
    "dana.deleted@acme.com",
    "old.timer@acme.com",
    "pat.personal@acme.com",
    "chris.contractor@acme.com",
    "nora.north@acme.com",
    "eve.new@acme.com",
    "mia.multi@acme.com for 2001",
    "ok.user@acme.com",
    "alex",
    "sam.sale@acme.com",
    "Sam Sales",
];

/// A diagnosis as the slash command's reply (the answer with its follow-up button when it
/// gets one, ephemeral): the typed message the reply is written from, and the `Value` the
/// other callers get.
fn answer(d: &Diagnosis) -> (render::slack::kit::Message, Value) {
    let mut typed = render::slack::message(d);
    render::slack::add_follow_up_button(&mut typed, d, 15);
    let value = render::as_response(
        render::slack::with_follow_up_button(render::blocks(d), d, 15),
        false,
        None,
    );
    (typed.as_response(false, None), value)
}

/// Every demo answer, and the messages that say why there is none, typed and as `Value`.
fn wire_messages() -> Vec<(String, render::slack::kit::Message, Value)> {
    let mut messages: Vec<_> = WIRE_QUERIES
        .iter()
        .map(|q| {
            let (typed, value) = answer(&demo_diagnosis(q));
            (q.to_string(), typed, value)
        })
        .collect();
    for (what, typed, value) in [
        (
            "error",
            render::slack::error("no AE user <@x> & co"),
            render::error_message("no AE user <@x> & co"),
        ),
        (
            "plain",
            render::slack::plain("Checking… the answer follows"),
            render::plain_message("Checking… the answer follows"),
        ),
        (
            "loading",
            render::slack::loading(now()),
            render::loading_message(now()),
        ),
        (
            "unavailable",
            render::slack::unavailable("Redis <down>", Some(now())),
            render::unavailable_message("Redis <down>", Some(now())),
        ),
        (
            "help",
            render::slack::help("/crm-username"),
            render::help_message("/crm-username"),
        ),
    ] {
        messages.push((
            what.to_owned(),
            typed.as_response(false, Some(true)),
            render::as_response(value, false, Some(true)),
        ));
    }
    messages
}

#[test]
fn the_bytes_slack_receives_for_each_demo_answer_and_refusal() {
    let mut wire = String::new();
    for (what, typed, _) in wire_messages() {
        wire.push_str(&format!(
            "{what}\n{}\n",
            serde_json::to_string(&typed).unwrap()
        ));
    }
    insta::assert_snapshot!(wire);
}

#[test]
fn a_typed_reply_is_byte_for_byte_its_json_value() {
    for (what, typed, value) in wire_messages() {
        let bytes = serde_json::to_string(&typed).unwrap();
        assert_eq!(bytes, serde_json::to_string(&value).unwrap(), "{what}");
        assert_eq!(
            serde_json::from_str::<Value>(&bytes).unwrap(),
            value,
            "{what}"
        );
    }
}
