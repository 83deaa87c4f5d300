//! Loading org snapshot files: the contract's format, defaults, and errors that say where.

use std::io::Write;

use crm_username::domain::{OrgSnapshot, SnapshotError};

fn load(text: &str) -> Result<OrgSnapshot, String> {
    OrgSnapshot::from_json(text, "org.json").map_err(|e| e.to_string())
}

const MINIMAL: &str = r#"{
  "fetched_at": "2026-11-27T10:00:00Z",
  "salesforce": {"instance_url": "https://acme.my.salesforce.com",
    "users": [{"id": "005Aa0000000001", "username": "jane@acme.com"}]},
  "business_units": [{"id": "0UvAa0000000001", "users": [
    {"id": 7, "email": "j@acme.com", "salesforce_id": "", "is_deleted": "true"}]}]
}"#;

#[test]
fn missing_optional_fields_take_their_defaults() {
    let s = load(MINIMAL).unwrap();
    let user = &s.salesforce.users[0];
    assert!(user.is_active);
    assert_eq!(user.email, "");
    assert_eq!(user.id.to_string(), "005Aa0000000001IAA");
    let bu = &s.business_units[0];
    assert_eq!(bu.ae_url, "https://pi.pardot.com");
    assert!(!bu.user_sync);
    assert_eq!(
        bu.users[0].salesforce_id, None,
        "an empty salesforce_id is unmapped"
    );
    assert!(
        bu.users[0].is_deleted,
        "is_deleted accepts the string \"true\""
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let text = MINIMAL.replace("\"fetched_at\"", "\"extra\": [1,2], \"fetched_at\"");
    assert!(load(&text).is_ok());
}

#[test]
fn a_bad_id_names_line_column_and_path() {
    let text = MINIMAL.replace("005Aa0000000001", "005-bad");
    assert_eq!(
        load(&text).unwrap_err(),
        "org.json:4:30: salesforce.users[0].id: invalid Salesforce id \"005-bad\": a Salesforce id has 15 or 18 characters, this one has 7"
    );
}

#[test]
fn a_wrong_type_names_line_and_path() {
    let text = MINIMAL.replace("\"id\": 7", "\"id\": \"seven\"");
    let err = load(&text).unwrap_err();
    assert!(
        err.starts_with(
            "org.json:6:18: business_units[0].users[0].id: invalid type: string \"seven\""
        ),
        "{err}"
    );
}

#[test]
fn a_missing_required_field_is_named() {
    let text = MINIMAL.replace("\"username\": \"jane@acme.com\"", "\"name\": \"Jane\"");
    let err = load(&text).unwrap_err();
    assert!(
        err.contains("salesforce.users[0]: missing field `username`"),
        "{err}"
    );
}

#[test]
fn truncated_json_is_reported_at_its_end() {
    let err = load(&MINIMAL[..60]).unwrap_err();
    assert!(err.starts_with("org.json:3:"), "{err}");
    assert!(err.contains("EOF while parsing"), "{err}");
}

#[test]
fn trailing_garbage_is_refused() {
    let err = load(&format!("{MINIMAL} x")).unwrap_err();
    assert!(err.contains("trailing characters"), "{err}");
}

#[test]
fn an_invalid_is_deleted_string_is_refused() {
    let text = MINIMAL.replace("\"is_deleted\": \"true\"", "\"is_deleted\": \"maybe\"");
    let err = load(&text).unwrap_err();
    assert!(
        err.contains(
            "business_units[0].users[0].is_deleted: expected true or false, found \"maybe\""
        ),
        "{err}"
    );
}

#[test]
fn duplicate_usernames_are_refused_case_insensitively() {
    let text = MINIMAL.replace(
        r#"[{"id": "005Aa0000000001", "username": "jane@acme.com"}]"#,
        r#"[{"id": "005Aa0000000001", "username": "jane@acme.com"},
            {"id": "005Aa0000000002", "username": "JANE@acme.com"}]"#,
    );
    assert_eq!(
        load(&text).unwrap_err(),
        "org.json: salesforce.users[1].username: username \"JANE@acme.com\" appears twice (Salesforce usernames are unique)"
    );
}

#[test]
fn the_same_id_in_15_and_18_characters_is_a_duplicate() {
    let text = MINIMAL.replace(
        r#"[{"id": "005Aa0000000001", "username": "jane@acme.com"}]"#,
        r#"[{"id": "005Aa0000000001", "username": "jane@acme.com"},
            {"id": "005Aa0000000001IAA", "username": "other@acme.com"}]"#,
    );
    assert_eq!(
        load(&text).unwrap_err(),
        "org.json: salesforce.users[1].id: user id 005Aa0000000001IAA appears twice"
    );
}

#[test]
fn a_non_http_ae_url_is_refused() {
    let text = MINIMAL.replace(
        r#""id": "0UvAa0000000001","#,
        r#""id": "0UvAa0000000001", "ae_url": "javascript:alert(1)","#,
    );
    assert_eq!(
        load(&text).unwrap_err(),
        "org.json: business_units[0].ae_url: \"javascript:alert(1)\" is not an http(s) URL"
    );
}

#[test]
fn an_unknown_user_management_value_is_refused() {
    let text = MINIMAL.replace(
        r#""id": "0UvAa0000000001","#,
        r#""id": "0UvAa0000000001", "user_management": "pardot","#,
    );
    let err = load(&text).unwrap_err();
    assert!(
        err.contains("business_units[0].user_management: unknown variant `pardot`"),
        "{err}"
    );
}

#[test]
fn a_missing_file_names_the_file() {
    let err = crm_username::snapshot_file::load(std::path::Path::new("/nonexistent/org.json"))
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/org.json: "),
        "{err}"
    );
}

#[test]
fn a_file_round_trips_through_the_loader() {
    let snapshot = load(MINIMAL).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(serde_json::to_string(&snapshot).unwrap().as_bytes())
        .unwrap();
    assert_eq!(
        crm_username::snapshot_file::load(file.path()).unwrap(),
        snapshot
    );
}

#[test]
fn the_demo_org_loads() {
    let s = OrgSnapshot::from_json(crm_username::demo::DEMO_ORG_JSON, "demo").unwrap();
    assert_eq!(s.business_units.len(), 2);
    assert_eq!(s.salesforce.users.len(), 15);
}
