//! Account Engagement, per business unit: one users call with a small limit answers. Code 184
//! means the token lacks `pardot_api` or the user is not SSO-enabled there; code 201 means an
//! unknown business unit or the wrong host, so the other host is tried.

use std::sync::Arc;

use super::{Check, Doctor};
use crate::domain::BusinessUnit;
use crate::sources::{AccountEngagementClient, AccountEngagementConfig, RetryPolicy};
use crate::sources::{SalesforceClient, SourceError};

fn id(bu: &BusinessUnit) -> String {
    format!("account_engagement.{}", bu.id)
}

pub async fn checks(
    doctor: &Doctor,
    salesforce: Option<&Arc<SalesforceClient>>,
    business_units: &[BusinessUnit],
) -> Vec<Check> {
    let Some(salesforce) = salesforce else {
        return business_units
            .iter()
            .map(|bu| Check::skip(id(bu), "no Salesforce token"))
            .collect();
    };
    let config = AccountEngagementConfig {
        timeout: doctor.timeout,
        retry: RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        ..AccountEngagementConfig::default()
    };
    let client = match AccountEngagementClient::new(config, salesforce.clone()) {
        Ok(client) => client,
        Err(err) => {
            return business_units
                .iter()
                .map(|bu| {
                    Check::fail(
                        id(bu),
                        err.to_string(),
                        "check the TLS setup of this machine",
                    )
                })
                .collect();
        }
    };
    let mut checks = Vec::with_capacity(business_units.len());
    for bu in business_units {
        let first = client.probe_users(bu.id, &bu.ae_url, 1).await;
        let other = match (&first, other_host(&doctor.ae_host_pairs, &bu.ae_url)) {
            (Err(SourceError::Config { code: 201, .. }), Some(other)) => {
                let answer = client.probe_users(bu.id, &other, 1).await.map(|_| ());
                Some((other, answer))
            }
            _ => None,
        };
        checks.push(outcome(bu, first.map(|_| ()), other));
    }
    checks
}

/// The host that stands in for `ae_url` (pi ↔ pi.demo), if any.
pub fn other_host(pairs: &[(String, String)], ae_url: &str) -> Option<String> {
    let ae_url = ae_url.trim_end_matches('/');
    pairs.iter().find_map(|(a, b)| {
        let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
        if a.eq_ignore_ascii_case(ae_url) {
            Some(b.to_owned())
        } else if b.eq_ignore_ascii_case(ae_url) {
            Some(a.to_owned())
        } else {
            None
        }
    })
}

/// The check for one business unit from its users call, and from the other host's when the
/// first said 201.
pub fn outcome(
    bu: &BusinessUnit,
    first: Result<(), SourceError>,
    other: Option<(String, Result<(), SourceError>)>,
) -> Check {
    let name = super::upstream_text(&bu.label());
    let at = &bu.ae_url;
    match first {
        Ok(()) => Check::ok(id(bu), format!("business unit {name} answers at {at}")),
        Err(SourceError::Config { code: 184, .. }) => Check::fail(
            id(bu),
            format!("business unit {name} refused the token at {at} (code 184)"),
            format!(
                "add the `pardot_api` scope (Access Pardot services) to the app, or make the \
                 integration user an SSO-enabled Account Engagement user in business unit \
                 {name} ({}): its AE user's CRM username must be the integration user",
                bu.id
            ),
        ),
        Err(SourceError::Config { code: 201, .. }) => match other {
            Some((other, Ok(()))) => Check::fail(
                id(bu),
                format!(
                    "business unit {name} is not found at {at} (code 201), but answers at {other}"
                ),
                format!(
                    "set ae_url = \"{other}\" for business unit {} in BUSINESS_UNITS_FILE",
                    bu.id
                ),
            ),
            _ => Check::fail(
                id(bu),
                format!("business unit {name} is not found at {at} (code 201)"),
                format!(
                    "check the id {} against Setup > Account Engagement Account Setup, and the \
                     host: https://pi.pardot.com for production, https://pi.demo.pardot.com for \
                     sandboxes and developer orgs",
                    bu.id
                ),
            ),
        },
        Err(err @ SourceError::Config { .. }) => {
            let fix = match &err {
                SourceError::Config { fix, .. } => fix.clone(),
                _ => String::new(),
            };
            Check::fail(id(bu), err.to_string(), fix)
        }
        Err(err) => Check::fail(
            id(bu),
            err.to_string(),
            format!(
                "check that {at} is reachable from this machine and the business unit's \
                 settings; then run doctor again"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_host_of_pi_is_pi_demo_and_back() {
        let pairs = vec![(
            "https://pi.pardot.com".to_owned(),
            "https://pi.demo.pardot.com".to_owned(),
        )];
        assert_eq!(
            other_host(&pairs, "https://pi.pardot.com/").as_deref(),
            Some("https://pi.demo.pardot.com")
        );
        assert_eq!(
            other_host(&pairs, "https://pi.demo.pardot.com").as_deref(),
            Some("https://pi.pardot.com")
        );
        assert_eq!(other_host(&pairs, "https://ae.example.com"), None);
    }
}
