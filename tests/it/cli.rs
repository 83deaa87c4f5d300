//! `crm-username check` as a person runs it: formats, exit codes, errors.

use std::process::Command;

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("check")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn exit_code_is_1_when_blocked() {
    let (code, out, _) = check(&["email_a@example.com", "--demo"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("BLOCKED  email_a@example.com\n"), "{out}");
    assert!(out.contains("[reserved_by_email]"));
}

#[test]
fn exit_code_is_0_when_clear() {
    let (code, out, _) = check(&[
        "email_a@example.com",
        "for",
        "email_a@example.com",
        "--demo",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn exit_code_is_2_when_not_found_or_ambiguous() {
    assert_eq!(check(&["nobody@acme.com", "--demo"]).0, 2);
    assert_eq!(check(&["alex", "--demo"]).0, 2);
}

#[test]
fn exit_code_is_3_with_a_message_on_usage_errors() {
    let (code, _, err) = check(&["jane@acme.com"]);
    assert_eq!(code, 3);
    assert!(err.contains("no org data: pass --demo"), "{err}");
    let (code, _, err) = check(&["jane@acme.com", "for", "--demo"]);
    assert_eq!(code, 3);
    assert!(err.contains("after `for`"), "{err}");
    let (code, _, err) = check(&["jane@acme.com", "for", "999", "--demo"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("No Account Engagement user matches \"999\""),
        "{err}"
    );
    let (code, _, err) = check(&["--demo"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = check(&["x@y.z", "--demo", "--format", "xml"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn a_bad_org_file_exits_3_naming_the_file_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.json");
    std::fs::write(&path, "{\n  \"fetched_at\": 12\n}").unwrap();
    let (code, _, err) = check(&["x@y.z", "--org", path.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with(&format!(
            "error: {}:2:18: fetched_at: invalid type: integer `12`",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn json_format_is_the_contract_json() {
    let (code, out, _) = check(&[
        "<mailto:sam.sales@acme.com|sam.sales@acme.com>",
        "--demo",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["query"], "sam.sales@acme.com");
    assert_eq!(v["verdict"], "blocked");
    assert_eq!(v["salesforce_user"]["id"], "005Ak00000SAMS1IAP");
    assert_eq!(v["findings"][0]["code"], "mapped_to_active_user");
}

#[test]
fn blocks_format_is_a_slack_message() {
    let (_, out, _) = check(&["dana.deleted@acme.com", "--demo", "--format", "blocks"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("Blocked: dana.deleted@acme.com")
    );
    assert_eq!(
        v["blocks"][4]["block_id"],
        "finding:mapped_to_deleted_user:0"
    );
}

#[test]
fn an_org_file_written_by_generate_org_can_be_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(["generate-org", "--sf-users", "50", "--ae-users", "20"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let (code, text, err) = check(&[
        "user7@synthetic.example.com",
        "--org",
        path.to_str().unwrap(),
    ]);
    assert!(code == 0 || code == 1, "{text}{err}");
    assert!(text.contains("user7@synthetic.example.com"));
}
