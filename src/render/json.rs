use crate::domain::Diagnosis;

/// `check --format json` (docs/schemas/check.schema.json), pretty-printed.
pub fn json(diagnosis: &Diagnosis) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(diagnosis).unwrap_or_default()
}
