//! Slack request signing: `v0=` + hex HMAC-SHA256(secret, `v0:{timestamp}:{body}`), compared
//! in constant time, with the timestamp at most 5 minutes from now. Several secrets may be
//! accepted at once, so that the signing secret can be rotated without downtime.
//!
//! Our own verifier, not slack-morphism's (`SlackEventSignatureVerifier`, behind its
//! `signature-verifier` feature, which this crate does not enable): that one checks one secret
//! against the wall clock, on a body already read. This one accepts a list of secrets (the
//! current one and, during a rotation, the previous one), takes the clock as an argument (tests
//! verify Slack's published example, and stale requests at the edge of the window), and runs
//! after the route layer has read at most `MAX_BODY_BYTES` of the body, so an unsigned request
//! cannot make the bot buffer more.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const MAX_AGE_SECONDS: i64 = 5 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the request timestamp is not a number or more than 5 minutes off")]
    Stale,
    #[error("the signature does not match")]
    Wrong,
}

/// HMAC-SHA256 of `v0:{timestamp}:{body}` under one secret, not yet finalised.
fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `v0=...` signature of a body under one secret.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

pub fn verify(
    secrets: &[SecretString],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Stale)?;
    if (now_unix - sent).abs() > MAX_AGE_SECONDS {
        return Err(SignatureError::Stale);
    }
    // The signature is compared as the 32 bytes it spells (HMAC's own constant-time
    // `verify_slice`), not as text: no string is built per request and secret.
    let mut sent_mac = [0u8; 32];
    let well_formed = signature
        .strip_prefix("v0=")
        // Lower-case hex only, as Slack writes it (and as the text comparison accepted).
        .filter(|hex_mac| {
            hex_mac
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .is_some_and(|hex_mac| hex::decode_to_slice(hex_mac, &mut sent_mac).is_ok());
    let matches = secrets
        .iter()
        .filter(|s| !s.expose_secret().is_empty())
        .fold(false, |any, secret| {
            let ok = mac(secret.expose_secret(), timestamp, body)
                .verify_slice(&sent_mac)
                .is_ok();
            any | ok
        });
    if matches && well_formed {
        Ok(())
    } else {
        Err(SignatureError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    #[test]
    fn slacks_published_example_verifies() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        let now = 1_531_420_618 + 10;
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_another_secret_is_refused() {
        let now = 1_531_420_618;
        let body = BODY.replace("foobar", "foobaz");
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                body.as_bytes(),
                now
            ),
            Err(SignatureError::Wrong)
        );
        assert_eq!(
            verify(
                &secrets(&["another-apps-secret"]),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Err(SignatureError::Wrong)
        );
        assert_eq!(
            verify(
                &secrets(&[""]),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Err(SignatureError::Wrong)
        );
    }

    #[test]
    fn a_timestamp_over_5_minutes_off_is_stale() {
        let sent = 1_531_420_618;
        let ok = |now| {
            verify(
                &secrets(&[SECRET]),
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now,
            )
        };
        assert_eq!(ok(sent + 300), Ok(()));
        assert_eq!(ok(sent + 301), Err(SignatureError::Stale));
        assert_eq!(ok(sent - 301), Err(SignatureError::Stale));
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                Some("soon"),
                Some(SIGNATURE),
                BODY.as_bytes(),
                sent
            ),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn a_signature_spelled_otherwise_is_refused() {
        let now = 1_531_420_618;
        let refused = |signature: &str| {
            verify(
                &secrets(&[SECRET]),
                Some(TIMESTAMP),
                Some(signature),
                BODY.as_bytes(),
                now,
            )
        };
        let hex_mac = SIGNATURE.strip_prefix("v0=").unwrap();
        for other in [
            format!("v0={}", hex_mac.to_uppercase()),
            format!("v1={hex_mac}"),
            hex_mac.to_owned(),
            format!("v0={}", &hex_mac[..62]),
            format!("v0={hex_mac}00"),
            format!("v0={}zz", &hex_mac[..62]),
            String::new(),
        ] {
            assert_eq!(refused(&other), Err(SignatureError::Wrong), "{other}");
        }
        assert_eq!(refused(SIGNATURE), Ok(()));
    }

    #[test]
    fn missing_headers_are_refused() {
        let now = 1_531_420_618;
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                None,
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                Some(TIMESTAMP),
                None,
                BODY.as_bytes(),
                now
            ),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn during_rotation_either_secret_verifies() {
        let now = 1_531_420_618;
        let both = secrets(&["new-secret", SECRET]);
        assert_eq!(
            verify(
                &both,
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY.as_bytes(),
                now
            ),
            Ok(())
        );
        let new_signature = sign("new-secret", TIMESTAMP, BODY.as_bytes());
        assert_eq!(
            verify(
                &both,
                Some(TIMESTAMP),
                Some(&new_signature),
                BODY.as_bytes(),
                now
            ),
            Ok(())
        );
    }
}
