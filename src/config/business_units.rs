//! The business-unit settings file (`BUSINESS_UNITS_FILE`, TOML): what no API exposes —
//! User Sync, the profile to AE role map, and the user assignment under Salesforce user
//! management (a Marketing and a Sales section; the older flat form means Marketing). Validated once at start; a bad file stops start-up naming file, line and key.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::domain::{
    Assignment, BusinessUnit, DEFAULT_AE_URL, LinkTemplates, SfId, UserManagement, check_url,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    business_unit: Vec<BusinessUnitSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusinessUnitSettings {
    id: SfId,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ae_url: Option<String>,
    #[serde(default)]
    user_sync: bool,
    #[serde(default)]
    user_management: UserManagement,
    #[serde(default)]
    profile_roles: BTreeMap<String, String>,
    #[serde(default)]
    assignment: Assignment,
    #[serde(default)]
    links: LinkTemplates,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the business-unit settings {file}: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// The business units of the settings file, without AE users (the refresh adds those).
pub fn load(path: &Path) -> Result<Vec<BusinessUnit>, SettingsError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| SettingsError::Read {
        file: file.clone(),
        error,
    })?;
    parse(&text, &file)
}

pub fn parse(text: &str, file: &str) -> Result<Vec<BusinessUnit>, SettingsError> {
    let position = |offset: usize| {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    };
    let de = toml::Deserializer::parse(text).map_err(|err| {
        let (line, column) = position(err.span().map_or(0, |s| s.start));
        SettingsError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key: "(syntax)".to_owned(),
            message: err.message().to_owned(),
        }
    })?;
    let settings: SettingsFile = serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let (line, column) = position(inner.span().map_or(0, |s| s.start));
        SettingsError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key,
            message: inner.message().to_owned(),
        }
    })?;
    validate(settings, text, file)
}

fn validate(
    settings: SettingsFile,
    text: &str,
    file: &str,
) -> Result<Vec<BusinessUnit>, SettingsError> {
    // Semantic errors have no span of their own: point at the id's line.
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1)
    };
    let invalid = |index: usize, id: &SfId, key: &str, message: String| SettingsError::Invalid {
        file: file.to_owned(),
        line: line_of(id.as_str15()),
        column: 1,
        key: format!("business_unit[{index}].{key}"),
        message,
    };
    let mut seen = HashSet::new();
    let mut units = Vec::with_capacity(settings.business_unit.len());
    for (i, bu) in settings.business_unit.into_iter().enumerate() {
        if bu.id.key_prefix() != "0Uv" {
            return Err(invalid(
                i,
                &bu.id,
                "id",
                format!("{} is not a business unit id (they start with 0Uv)", bu.id),
            ));
        }
        if !seen.insert(bu.id) {
            return Err(invalid(
                i,
                &bu.id,
                "id",
                format!("business unit {} appears twice", bu.id),
            ));
        }
        let ae_url = bu.ae_url.unwrap_or_else(|| DEFAULT_AE_URL.to_owned());
        check_url(&ae_url).map_err(|m| invalid(i, &bu.id, "ae_url", m))?;
        if let Some((profile, _)) = bu
            .profile_roles
            .iter()
            .find(|(_, role)| role.trim().is_empty())
        {
            return Err(invalid(
                i,
                &bu.id,
                &format!("profile_roles.{profile}"),
                "the AE role name is empty".to_owned(),
            ));
        }
        units.push(BusinessUnit {
            id: bu.id,
            name: bu.name,
            ae_url: ae_url.trim_end_matches('/').to_owned(),
            user_sync: bu.user_sync,
            user_management: bu.user_management,
            profile_roles: bu.profile_roles,
            assignment: bu.assignment,
            links: bu.links,
            users: Vec::new(),
        });
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordRef;

    const EXAMPLE: &str = r#"
[[business_unit]]
id = "0Uv000000000001AAA"
name = "Acme North America"
ae_url = "https://pi.pardot.com"
user_sync = true
user_management = "salesforce"
[business_unit.profile_roles]
"Standard User" = "Sales"
"00e000000000001AAA" = "Marketing"
[business_unit.assignment]
users = []
public_groups = ["00G000000000001AAA"]
roles = []
roles_and_subordinates = ["00E000000000001AAA"]

[[business_unit]]
id = "0Uv000000000002"
name = "Sandbox"
ae_url = "https://pi.demo.pardot.com/"
"#;

    fn err(text: &str) -> String {
        parse(text, "bu.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_contracts_example_loads_with_defaults() {
        let units = parse(EXAMPLE, "bu.toml").unwrap();
        assert_eq!(units.len(), 2);
        let na = &units[0];
        assert_eq!(na.name, "Acme North America");
        assert!(na.user_sync);
        assert_eq!(na.user_management, UserManagement::Salesforce);
        assert_eq!(na.profile_roles["Standard User"], "Sales");
        assert_eq!(
            na.assignment.marketing.public_groups,
            [RecordRef::Id(SfId::parse("00G000000000001").unwrap())]
        );
        let sandbox = &units[1];
        assert_eq!(sandbox.ae_url, "https://pi.demo.pardot.com");
        assert!(!sandbox.user_sync);
        assert_eq!(sandbox.user_management, UserManagement::AccountEngagement);
    }

    #[test]
    fn a_misspelt_key_names_line_and_key() {
        let text = EXAMPLE.replace("user_sync = true", "user_snyc = true");
        assert_eq!(
            err(&text),
            "bu.toml:6:1: business_unit[0].user_snyc: unknown field `user_snyc`, expected one of `id`, `name`, `ae_url`, `user_sync`, `user_management`, `profile_roles`, `assignment`, `links`"
        );
    }

    #[test]
    fn a_wrong_type_names_line_and_key() {
        let text = EXAMPLE.replace("user_sync = true", "user_sync = \"yes\"");
        assert_eq!(
            err(&text),
            "bu.toml:6:13: business_unit[0].user_sync: invalid type: string \"yes\", expected a boolean"
        );
    }

    #[test]
    fn an_unknown_user_management_names_the_choices() {
        let text = EXAMPLE.replace("\"salesforce\"", "\"pardot\"");
        assert!(
            err(&text).starts_with(
                "bu.toml:7:19: business_unit[0].user_management: unknown variant `pardot`"
            ),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn a_bad_id_names_line_and_key() {
        let text = EXAMPLE.replace("0Uv000000000002", "0Uv-2");
        assert!(
            err(&text)
                .starts_with("bu.toml:18:6: business_unit[1].id: invalid Salesforce id \"0Uv-2\""),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn an_id_of_another_object_is_refused() {
        let text = EXAMPLE.replace("0Uv000000000002", "00G000000000002");
        assert_eq!(
            err(&text),
            "bu.toml:18:1: business_unit[1].id: 00G000000000002EAA is not a business unit id (they start with 0Uv)"
        );
    }

    #[test]
    fn a_duplicate_business_unit_is_refused() {
        let text = EXAMPLE.replace("0Uv000000000002", "0Uv000000000001");
        assert!(
            err(&text)
                .ends_with("business_unit[1].id: business unit 0Uv000000000001CAA appears twice"),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn a_non_https_ae_url_is_refused() {
        let text = EXAMPLE.replace("https://pi.demo.pardot.com/", "ftp://pi.demo.pardot.com");
        assert!(
            err(&text).ends_with(
                "business_unit[1].ae_url: \"ftp://pi.demo.pardot.com\" is not an http(s) URL"
            ),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let text = EXAMPLE.replace("name = \"Sandbox\"", "name = Sandbox");
        assert!(
            err(&text).starts_with("bu.toml:19:8: (syntax): "),
            "{}",
            err(&text)
        );
    }

    #[test]
    fn the_marketing_and_sales_sections_load_and_the_flat_form_means_marketing() {
        let text = EXAMPLE.replace(
            "[business_unit.assignment]\n",
            "[business_unit.assignment.sales]\nroles = [\"Rep\"]\n[business_unit.assignment.marketing]\n",
        );
        let sections = parse(&text, "bu.toml").unwrap();
        let flat = parse(EXAMPLE, "bu.toml").unwrap();
        assert_eq!(
            sections[0].assignment.marketing,
            flat[0].assignment.marketing
        );
        assert_eq!(
            sections[0].assignment.sales.roles,
            [RecordRef::Name("Rep".into())]
        );
        assert!(flat[0].assignment.sales.is_empty());
    }

    #[test]
    fn a_section_written_both_flat_and_nested_names_line_and_key() {
        let text = EXAMPLE.replace(
            "roles_and_subordinates = [\"00E000000000001AAA\"]\n",
            "roles_and_subordinates = [\"00E000000000001AAA\"]\nmarketing = { users = [\"jane@acme.com\"] }\n",
        );
        let message = err(&text);
        assert!(
            message.starts_with(
                "bu.toml:11:1: business_unit[0].assignment: the Marketing section is written twice"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_misspelt_section_is_refused_naming_the_choices() {
        let text = EXAMPLE.replace(
            "[business_unit.assignment]",
            "[business_unit.assignment.sale]",
        );
        let message = err(&text);
        assert!(
            message.contains("business_unit[0].assignment.sale: unknown field `sale`, expected one of `marketing`, `sales`"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_file_has_no_business_units() {
        assert_eq!(parse("", "bu.toml").unwrap(), Vec::new());
    }
}
