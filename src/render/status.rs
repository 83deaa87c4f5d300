//! `crm-username status` for a terminal.

use chrono::{DateTime, Utc};

use crate::store::StatusReport;

/// Data freshness, counts per source and business unit, and the last error of each source.
pub fn status_text(report: &StatusReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let when = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".to_owned())
    };
    let _ = writeln!(out, "Data as of   {}", when(report.data_as_of));
    let _ = writeln!(out, "Salesforce   {} users", report.sf_users);
    for (bu, n) in &report.ae_users {
        let _ = writeln!(out, "AE {bu}  {n} users");
    }
    for (source, s) in &report.sources {
        let _ = writeln!(out, "\n{source}");
        let _ = writeln!(out, "  last success  {}", when(s.last_success_at));
        if let Some(records) = s.records {
            let _ = writeln!(out, "  records       {records}");
        }
        if let Some(ms) = s.duration_ms {
            let _ = writeln!(out, "  took          {:.1} s", ms as f64 / 1000.0);
        }
        if let Some(calls) = s.api_calls {
            let _ = writeln!(out, "  API calls     {calls}");
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(
                out,
                "  last error    {} ({})",
                super::strip_invisible(error),
                when(s.last_error_at)
            );
        }
    }
    out
}
