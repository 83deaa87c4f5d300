//! The audit as CSV: one row per broken mapping, every cause, and the command that shows the
//! whole diagnosis. Values come from CRM data: a cell that a spreadsheet would read as a
//! formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.

use super::{AuditReport, AuditRow};

pub const HEADER: [&str; 17] = [
    "business_unit_id",
    "business_unit_name",
    "kind",
    "cause",
    "severity",
    "causes",
    "sf_user_id",
    "sf_username",
    "sf_email",
    "sf_name",
    "sf_is_active",
    "ae_user_id",
    "ae_email",
    "ae_name",
    "reason",
    "title",
    "check",
];

/// Neutralises spreadsheet formulas (CSV injection) in a value from CRM data.
fn cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    }
}

fn record(row: &AuditRow) -> [String; 17] {
    let sf = row.salesforce_user.as_ref();
    let ae = row.ae_user.as_ref();
    [
        row.business_unit_id.to_string(),
        cell(&row.business_unit_name),
        row.kind.as_str().to_owned(),
        row.cause.as_str().to_owned(),
        format!("{:?}", row.severity).to_lowercase(),
        row.causes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(";"),
        sf.map(|u| u.id.to_string()).unwrap_or_default(),
        cell(sf.map_or("", |u| u.username.as_str())),
        cell(sf.map_or("", |u| u.email.as_str())),
        cell(sf.map_or("", |u| u.name.as_str())),
        sf.map(|u| u.is_active.to_string()).unwrap_or_default(),
        ae.map(|u| u.id.to_string()).unwrap_or_default(),
        cell(ae.map_or("", |u| u.email.as_str())),
        cell(ae.map_or("", |u| u.name.as_str())),
        cell(&row.reason),
        cell(&row.title),
        cell(&row.check),
    ]
}

/// The whole report as CSV (RFC 4180 quoting, `\n` line ends, a header row).
pub fn to_csv(report: &AuditReport) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail; a row that somehow did would only be left out.
    let _ = writer.write_record(HEADER);
    for row in &report.rows {
        let _ = writer.write_record(record(row));
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}
