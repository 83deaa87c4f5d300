//! Stand-ins for the reads of only what changed (to be replaced): each reads everything,
//! which is a correct, if costly, answer to "what changed".

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::{AccountEngagementClient, SalesforceClient, SourceError};
use crate::domain::{AeUser, BusinessUnit, SalesforceOrg, SfId};

pub struct SalesforceRead {
    pub org: SalesforceOrg,
    pub high_water: Option<DateTime<Utc>>,
}

pub(crate) static SF_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SalesforceClient {
    pub async fn read_org(
        &self,
        _business_units: &[BusinessUnit],
    ) -> Result<SalesforceRead, SourceError> {
        let org = self.fetch_org().await?;
        let high_water = org.users.iter().filter_map(|u| u.modified_at).max();
        Ok(SalesforceRead { org, high_water })
    }

    pub async fn read_changes(
        &self,
        _base: &SalesforceOrg,
        business_units: &[BusinessUnit],
        _since: DateTime<Utc>,
    ) -> Result<SalesforceRead, SourceError> {
        self.read_org(business_units).await
    }

    pub fn calls(&self) -> u64 {
        SF_CALLS.load(Ordering::Relaxed)
    }
}

impl AccountEngagementClient {
    pub async fn users_changed(
        &self,
        _business_unit: SfId,
        _ae_url: &str,
        _since: DateTime<Utc>,
    ) -> Result<Option<Vec<AeUser>>, SourceError> {
        Ok(None)
    }

    pub fn calls(&self) -> u64 {
        0
    }
}
