//! The audit's result: rows grouped by cause, with counts, and what was scanned.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AuditRow;
use crate::domain::{BusinessUnit, FindingCode, Severity, SfId};

/// Which business units an audit covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// One business unit: its index in the org, id and label.
    One {
        index: usize,
        id: SfId,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("No business unit is called {given:?}. Business units: {known}.")]
    Unknown { given: String, known: String },
    #[error("{given:?} names several business units ({matches}): use the business unit id.")]
    Ambiguous { given: String, matches: String },
}

impl Scope {
    /// A business unit named by id (15 or 18 characters) or by name in any case; empty text
    /// means every business unit.
    pub fn parse(text: &str, units: &[BusinessUnit]) -> Result<Scope, ScopeError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Scope::All);
        }
        let by_id = SfId::parse(text).ok();
        let matches: Vec<usize> = units
            .iter()
            .enumerate()
            .filter(|(_, u)| Some(u.id) == by_id || u.name.trim().eq_ignore_ascii_case(text))
            .map(|(i, _)| i)
            .collect();
        let label = |i: &usize| format!("{} ({})", units[*i].label(), units[*i].id);
        match matches.as_slice() {
            [index] => Ok(Scope::One {
                index: *index,
                id: units[*index].id,
                name: units[*index].label(),
            }),
            [] => Err(ScopeError::Unknown {
                given: text.chars().take(100).collect(),
                known: if units.is_empty() {
                    "none are configured".to_owned()
                } else {
                    (0..units.len())
                        .map(|i| label(&i))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            }),
            several => Err(ScopeError::Ambiguous {
                given: text.chars().take(100).collect(),
                matches: several.iter().map(label).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    pub fn index(&self) -> Option<usize> {
        match self {
            Scope::All => None,
            Scope::One { index, .. } => Some(*index),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Scope::All => "every business unit".to_owned(),
            Scope::One { name, .. } => name.clone(),
        }
    }
}

/// How far an audit has come: users looked at, out of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CauseCount {
    pub cause: FindingCode,
    pub severity: Severity,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// `null` for every business unit.
    pub business_unit_id: Option<SfId>,
    pub business_unit_name: String,
    pub data_as_of: DateTime<Utc>,
    pub audited_at: DateTime<Utc>,
    /// The business units audited: (id, name).
    pub business_units: Vec<(SfId, String)>,
    /// Active Salesforce users and AE users looked at.
    pub sf_users_scanned: usize,
    pub ae_users_scanned: usize,
    /// Every row found, kept or not (see `rows`).
    pub rows_total: usize,
    /// Rows whose first cause is a blocker, kept or not.
    pub blocked_total: usize,
    /// Rows per first cause, most first; blockers before warnings on a tie. Counts every row.
    pub by_cause: Vec<CauseCount>,
    /// The rows, sorted. With a limit (the bot keeps at most `max_rows` in memory), the most
    /// severe are kept: `rows.len() < rows_total` says some were left out.
    pub rows: Vec<AuditRow>,
    /// One hash per row found (of `row_key`), sorted: what the digest compares.
    #[serde(skip)]
    pub fingerprints: Vec<u64>,
    #[serde(skip)]
    max_rows: Option<usize>,
}

impl AuditReport {
    pub fn new(
        scope: &Scope,
        data_as_of: DateTime<Utc>,
        audited_at: DateTime<Utc>,
        max_rows: Option<usize>,
    ) -> Self {
        AuditReport {
            business_unit_id: match scope {
                Scope::All => None,
                Scope::One { id, .. } => Some(*id),
            },
            business_unit_name: scope.label(),
            data_as_of,
            audited_at,
            business_units: Vec::new(),
            sf_users_scanned: 0,
            ae_users_scanned: 0,
            rows_total: 0,
            blocked_total: 0,
            by_cause: Vec::new(),
            rows: Vec::new(),
            fingerprints: Vec::new(),
            max_rows,
        }
    }

    /// Counts a row and keeps it (within the limit, the most severe).
    pub fn add(&mut self, row: AuditRow) {
        self.rows_total += 1;
        if row.severity == Severity::Blocker {
            self.blocked_total += 1;
        }
        match self.by_cause.iter_mut().find(|c| c.cause == row.cause) {
            Some(count) => count.count += 1,
            None => self.by_cause.push(CauseCount {
                cause: row.cause,
                severity: row.severity,
                count: 1,
            }),
        }
        self.fingerprints.push(fingerprint(&row_key(&row)));
        self.rows.push(row);
        if let Some(max) = self.max_rows {
            // Trimmed in bulk: memory stays within twice the limit.
            if self.rows.len() >= max.saturating_mul(2).max(1) {
                self.trim(max);
            }
        }
    }

    pub fn add_all(&mut self, rows: impl IntoIterator<Item = AuditRow>) {
        for row in rows {
            self.add(row);
        }
    }

    fn trim(&mut self, max: usize) {
        self.rows.sort_by_key(|r| r.severity);
        self.rows.truncate(max);
    }

    /// Orders the rows (business unit, severity, cause, kind, who) and the counts by cause.
    pub fn finish(&mut self) {
        if let Some(max) = self.max_rows {
            self.trim(max);
        }
        self.rows.sort_by(|a, b| {
            let who = |r: &AuditRow| {
                (
                    r.salesforce_user
                        .as_ref()
                        .map(|u| u.username.to_lowercase()),
                    r.ae_user.as_ref().map(|u| u.id),
                )
            };
            (&a.business_unit_name, a.business_unit_id.as_str15())
                .cmp(&(&b.business_unit_name, b.business_unit_id.as_str15()))
                .then(a.severity.cmp(&b.severity))
                .then(a.cause.cmp(&b.cause))
                .then(a.kind.cmp(&b.kind))
                .then_with(|| who(a).cmp(&who(b)))
        });
        self.by_cause.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.severity.cmp(&b.severity))
                .then(a.cause.cmp(&b.cause))
        });
        self.fingerprints.sort_unstable();
    }

    /// Rows whose first cause is a blocker, kept or not.
    pub fn blocked(&self) -> usize {
        self.blocked_total
    }

    /// Some rows were found but not kept (see `max_rows`).
    pub fn truncated(&self) -> bool {
        self.rows.len() < self.rows_total
    }
}

/// A stable 64-bit hash (FNV-1a) of a row key, the same in every process and version.
pub fn fingerprint(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What identifies a row between two audits: business unit, kind, cause and who.
pub fn row_key(row: &AuditRow) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        row.business_unit_id.as_str15(),
        row.kind.as_str(),
        row.cause.as_str(),
        row.salesforce_user
            .as_ref()
            .map(|u| u.id.as_str15().to_owned())
            .unwrap_or_default(),
        row.ae_user
            .as_ref()
            .map(|u| u.id.to_string())
            .unwrap_or_default()
    )
}

/// How an audit differs from the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rows not in the previous audit (new problems, or a changed cause).
    pub new: usize,
    /// Rows of the previous audit that are gone (fixed, or a changed cause).
    pub gone: usize,
}

impl Changes {
    /// `previous` and `current` are sorted (row keys, or their fingerprints).
    pub fn between<T: Ord>(previous: &[T], current: &[T]) -> Changes {
        let (mut i, mut j) = (0, 0);
        let mut changes = Changes::default();
        while i < previous.len() || j < current.len() {
            match (previous.get(i), current.get(j)) {
                (Some(p), Some(c)) if p == c => {
                    i += 1;
                    j += 1;
                }
                (Some(p), Some(c)) if p < c => {
                    changes.gone += 1;
                    i += 1;
                }
                (Some(_), None) => {
                    changes.gone += 1;
                    i += 1;
                }
                _ => {
                    changes.new += 1;
                    j += 1;
                }
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.new == 0 && self.gone == 0
    }
}
