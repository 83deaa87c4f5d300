//! Reading an org snapshot file (`--org FILE`): the IO at the edge; parsing and validation are
//! the domain's (`OrgSnapshot::from_json`).

use std::path::Path;

use crate::domain::{OrgSnapshot, SnapshotError};

/// Reads and parses the snapshot file at `path`; errors name the file.
pub fn load(path: &Path) -> Result<OrgSnapshot, SnapshotError> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| SnapshotError::Read {
        source_name: source_name.clone(),
        error,
    })?;
    OrgSnapshot::from_json(&text, &source_name)
}
