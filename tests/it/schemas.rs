//! The JSON Schemas under `docs/schemas/` describe what the binary really prints and reads:
//! every `check` and `audit` of the demo org and of a generated org, and both snapshot files,
//! validate against them. A schema that accepted anything would pass these, so the last tests
//! prove that each schema refuses what breaks it.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use jsonschema::{Registry, Validator};
use serde_json::Value;

use crm_username::demo;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schemas");
/// The base the schemas' relative `$id`s resolve against; nothing is fetched from it.
const BASE: &str = "json-schema:///";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(name: &str) -> Validator {
    let common = read_json(&Path::new(SCHEMAS).join("common.schema.json"));
    let registry = Registry::new()
        .add(format!("{BASE}common.schema.json"), common)
        .expect("common schema registers")
        .prepare()
        .expect("registry prepares");
    jsonschema::options()
        .with_registry(&registry)
        .with_base_uri(BASE)
        .should_validate_formats(true)
        .build(&read_json(&Path::new(SCHEMAS).join(name)))
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

/// Every violation, as "path: message", so a failure says where the output broke the schema.
fn violations(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let problems = violations(validator, instance);
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

/// Runs the real binary and returns its standard output as JSON.
fn run_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn generated_org(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(["generate-org", "--sf-users", "600", "--ae-users", "200"])
        .args(["--business-units", "3", "--seed", "7"])
        .output()
        .expect("generate-org runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("synthetic.json");
    std::fs::write(&path, out.stdout).expect("writes the org");
    path
}

/// Queries that reach every verdict: each user of the org by username, then a name, a typo
/// and a target.
fn queries_of(snapshot: &Value) -> Vec<String> {
    let mut queries: Vec<String> = snapshot["salesforce"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_owned())
        .collect();
    let first = queries[0].clone();
    queries.push(first[..first.len() - 1].to_owned());
    queries.push("nobody-at-all@nowhere.example".to_owned());
    let ae_id = snapshot["business_units"][0]["users"][0]["id"]
        .as_u64()
        .expect("an AE user");
    queries.push(format!("{first} for {ae_id}"));
    queries
}

#[test]
fn both_snapshot_files_match_the_snapshot_schema() {
    let schema = validator("snapshot.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let demo_org = serde_json::to_value(demo::snapshot(Utc::now()).unwrap()).unwrap();
    assert_valid(&schema, &demo_org, "the demo org, as the bot holds it");
    let demo_file = read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo/org.json"));
    assert_valid(&schema, &demo_file, "src/demo/org.json");
    assert_valid(
        &schema,
        &read_json(&generated_org(dir.path())),
        "generate-org",
    );
}

#[test]
fn every_check_of_the_demo_org_matches_the_check_schema() {
    let schema = validator("check.schema.json");
    let demo_org = serde_json::to_value(demo::snapshot(Utc::now()).unwrap()).unwrap();
    let queries = queries_of(&demo_org);
    let mut verdicts = std::collections::BTreeSet::new();
    for query in queries.iter().map(String::as_str).chain(["alex"]) {
        let mut args = vec!["check"];
        args.extend(query.split(' '));
        args.extend(["--demo", "--format", "json"]);
        let output = run_json(&args);
        assert_valid(&schema, &output, &format!("check {query} --demo"));
        verdicts.insert(output["verdict"].as_str().unwrap().to_owned());
    }
    let all: Vec<&str> = vec!["ambiguous", "blocked", "clear", "not_found"];
    assert_eq!(verdicts.iter().map(String::as_str).collect::<Vec<_>>(), all);
}

#[test]
fn checks_of_a_generated_org_match_the_check_schema() {
    let schema = validator("check.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let org = generated_org(dir.path());
    let org_arg = org.to_str().unwrap();
    let queries = queries_of(&read_json(&org));
    // Every 20th user: 30 checks cover every cause the generator plants without 600 processes.
    for query in queries
        .iter()
        .step_by(20)
        .chain(queries.iter().rev().take(3))
    {
        let mut args = vec!["check"];
        args.extend(query.split(' '));
        args.extend(["--org", org_arg, "--format", "json"]);
        assert_valid(&schema, &run_json(&args), &format!("check {query} --org"));
    }
}

#[test]
fn audits_of_the_demo_and_a_generated_org_match_the_audit_schema() {
    let schema = validator("audit.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let org = generated_org(dir.path());
    let demo_audit = run_json(&["audit", "--demo", "--format", "json"]);
    assert_valid(&schema, &demo_audit, "audit --demo");
    assert!(!demo_audit["rows"].as_array().unwrap().is_empty());
    let unit = demo_audit["business_units"][0][1]
        .as_str()
        .unwrap()
        .to_owned();
    let one_unit = run_json(&["audit", &unit, "--demo", "--format", "json"]);
    assert_valid(&schema, &one_unit, "audit <business unit> --demo");
    let synthetic = run_json(&["audit", "--org", org.to_str().unwrap(), "--format", "json"]);
    assert_valid(&schema, &synthetic, "audit --org synthetic");
}

#[test]
fn each_schema_refuses_output_that_breaks_it() {
    let check = validator("check.schema.json");
    let mut output = run_json(&["check", "email_a@example.com", "--demo", "--format", "json"]);
    assert_valid(&check, &output, "the unchanged output");
    output["findings"][0]["code"] = "some_new_code".into();
    output.as_object_mut().unwrap().remove("data_as_of");
    let problems = violations(&check, &output);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("/findings/0/code")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("data_as_of")),
        "{problems:?}"
    );

    let audit = validator("audit.schema.json");
    let mut report = run_json(&["audit", "--demo", "--format", "json"]);
    report["rows"][0]["kind"] = "someone_else".into();
    assert_eq!(violations(&audit, &report).len(), 1);

    let snapshot = validator("snapshot.schema.json");
    let mut org = serde_json::to_value(demo::snapshot(Utc::now()).unwrap()).unwrap();
    org["salesforce"]["users"][0]["id"] = "005-bad".into();
    org["business_units"][0]["assignment"] = serde_json::json!({"sales": {"teams": []}});
    let problems = violations(&snapshot, &org);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("/salesforce/users/0/id")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("/business_units/0/assignment")),
        "{problems:?}"
    );
}
