//! Hostile input, generated: the parsers and loaders never panic and answer with a clear
//! error; hostile CRM data always renders inert and within Slack's limits. Bounded (a few
//! hundred cases each) so the test script stays fast; `PROPTEST_CASES=100000` runs longer.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use crm_username::config::business_units;
use crm_username::diagnose::diagnose;
use crm_username::domain::{
    MAX_MESSAGE_ADDRESSES, Org, OrgSnapshot, Query, Subject, message_addresses,
};
use crm_username::{demo, render};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

/// Strings that mix Slack syntax, escapes, control and invisible characters, and plain text.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("<".to_owned()),
        Just(">".to_owned()),
        Just("&amp;".to_owned()),
        Just("&lt;".to_owned()),
        Just("<!channel>".to_owned()),
        Just("<@U123>".to_owned()),
        Just("<mailto:a@b.c|a@b.c>".to_owned()),
        Just("<http://evil.example|click>".to_owned()),
        Just(" for ".to_owned()),
        Just("for".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("\u{200B}".to_owned()),
        Just("\u{1b}[31m".to_owned()),
        Just("005Ak00000SAMS1IAP".to_owned()),
        Just("@".to_owned()),
        Just("*_~`".to_owned()),
        "[a-zA-Z0-9.@ ]{0,12}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(pieces, 0..40).prop_map(|p| p.concat())
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_query_parser_never_panics_and_bounds_what_it_keeps(text in hostile_text()) {
        if let Ok(query) = Query::parse(&text) {
            prop_assert!(query.text.chars().count() <= 2 * 200 + 5);
            prop_assert!(!query.text.chars().any(|c| c.is_control()));
        }
    }

    #[test]
    fn a_messages_addresses_are_at_most_five_plain_logins_or_user_ids(text in hostile_text()) {
        let found = message_addresses(&text);
        prop_assert!(found.len() <= MAX_MESSAGE_ADDRESSES);
        for query in found {
            prop_assert!(matches!(query.subject, Subject::Login(_) | Subject::Id(_)));
            prop_assert!(query.target.is_none());
            // Nothing Slack reads as markup, mentions or formatting survives into an address.
            prop_assert!(!query.text.contains(['<', '>', '&', '|', '*', '~', '`', ' ']), "{}", query.text);
            prop_assert!(!query.text.chars().any(|c| c.is_control() || !c.is_ascii()));
        }
    }

    #[test]
    fn the_query_parser_survives_arbitrary_unicode(text in ".{0,300}") {
        let _ = Query::parse(&text);
    }

    #[test]
    fn any_parsed_query_can_be_diagnosed_and_rendered_within_limits(text in hostile_text()) {
        let org = Org::new(demo::snapshot(now()).unwrap());
        if let Ok(query) = Query::parse(&text) {
            if let Ok(d) = diagnose(&query, &org, now()) {
                let message = render::blocks(&d);
                prop_assert!(message["blocks"].as_array().unwrap().len() <= 50);
                prop_assert!(!message["text"].as_str().unwrap().is_empty());
            }
        }
    }

    #[test]
    fn hostile_crm_names_render_inert(name in hostile_text(), bu in hostile_text(), email in hostile_text()) {
        let mut snapshot = demo::snapshot(now()).unwrap();
        snapshot.salesforce.users[1].name = name;
        snapshot.business_units[0].name = bu;
        snapshot.business_units[0].users[1].email = email;
        let org = Org::new(snapshot);
        let d = diagnose(&Query::parse("sam.sales@acme.com").unwrap(), &org, now()).unwrap();
        let message = render::blocks(&d);
        for block in message["blocks"].as_array().unwrap() {
            if let Some(text) = block["text"]["text"].as_str() {
                if block["text"]["type"] == "mrkdwn" {
                    prop_assert!(!text.contains('<') && !text.contains('>'), "{}", text);
                }
                prop_assert!(text.chars().count() <= 3000);
                let invisible = text.contains('\u{202E}') || text.contains('\u{1b}');
                prop_assert!(!invisible, "invisible characters in {:?}", text);
            }
        }
        let terminal = render::text(&d, false);
        let escape = terminal.contains('\u{1b}');
        prop_assert!(!escape, "a terminal escape in {:?}", terminal);
    }

    #[test]
    fn the_snapshot_loader_never_panics_on_garbage(text in ".{0,400}") {
        let loaded = OrgSnapshot::from_json(&text, "x.json");
        prop_assert!(loaded.is_err(), "garbage loaded: {:?}", text);
    }

    #[test]
    fn the_snapshot_loader_never_panics_on_damaged_snapshots(cuts in proptest::collection::vec((0usize..30_000, any::<u8>()), 1..8)) {
        let mut bytes = demo::DEMO_ORG_JSON.as_bytes().to_vec();
        for (at, byte) in cuts {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(err) = OrgSnapshot::from_json(&text, "damaged.json") {
            prop_assert!(err.to_string().starts_with("damaged.json"), "{}", err);
        }
    }

    #[test]
    fn the_settings_loader_never_panics(text in ".{0,400}") {
        if let Err(err) = business_units::parse(&text, "bu.toml") {
            prop_assert!(err.to_string().starts_with("bu.toml:"), "{}", err);
        }
    }

    #[test]
    fn the_settings_loader_never_panics_on_damaged_files(at in 0usize..400, byte in any::<u8>()) {
        let example = "[[business_unit]]\nid = \"0Uv000000000001AAA\"\nname = \"Acme\"\nuser_sync = true\nuser_management = \"salesforce\"\n[business_unit.profile_roles]\n\"Standard User\" = \"Sales\"\n[business_unit.assignment]\npublic_groups = [\"00G000000000001AAA\"]\n";
        let mut bytes = example.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = business_units::parse(&String::from_utf8_lossy(&bytes), "bu.toml");
    }
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = OrgSnapshot::from_json(&deep, "deep.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recursion limit exceeded") || err.contains("invalid type"),
        "{err}"
    );
}
