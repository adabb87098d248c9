//! Standard Webhooks v1 signatures: what Svix's and the Standard Webhooks libraries verify.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the
//! base64-decoded part of the secret after `whsec_`; the header carries one
//! `v1,<base64 HMAC-SHA256>` per secret, space-separated.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Key length bounds from the Standard Webhooks spec.
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;
/// Length of the keys hookline generates.
pub const GENERATED_KEY_BYTES: usize = 32;
/// How far a `webhook-timestamp` may be from now and still verify.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

type HmacSha256 = Hmac<Sha256>;

/// An endpoint's signing secret, `whsec_<base64 key>`. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a secret starts with `whsec_`")]
    MissingPrefix,
    #[error("the part after `whsec_` is not base64")]
    NotBase64,
    #[error("the key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {0}")]
    BadLength(usize),
}

impl Secret {
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self {
            text: format!("{SECRET_PREFIX}{}", BASE64.encode(&key)),
            key,
        }
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self {
            text: text.to_string(),
            key,
        })
    }

    /// The `whsec_…` text, for the few places that hand it to its owner.
    pub fn expose(&self) -> &str {
        &self.text
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

fn signed_content(mac: &mut HmacSha256, msg_id: &str, timestamp: i64, body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
}

/// One signature, `v1,<base64>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    signed_content(&mut mac, msg_id, timestamp, body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than five minutes from now")]
    StaleTimestamp,
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// Checks a delivery as a receiver would: the timestamp within [`TIMESTAMP_TOLERANCE`]
/// of `now` (unix seconds), and any `v1` signature in the header made with `secret`.
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if timestamp.abs_diff(now) > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(VerifyError::StaleTimestamp);
    }
    let matches = signature_header
        .split_whitespace()
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|candidate| {
            let mut mac = secret.mac();
            signed_content(&mut mac, msg_id, timestamp, body);
            // verify_slice compares in constant time.
            mac.verify_slice(&candidate).is_ok()
        });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector published with the Standard Webhooks libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_published_test_vector() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(sign(&secret, MSG_ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn verifies_the_published_test_vector_within_tolerance() {
        let secret = Secret::parse(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            verify(&secret, MSG_ID, &ts, SIGNATURE, BODY, TIMESTAMP + 299),
            Ok(())
        );
        assert_eq!(
            verify(&secret, MSG_ID, &ts, SIGNATURE, BODY, TIMESTAMP + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            verify(&secret, MSG_ID, &ts, SIGNATURE, b"{\"test\": 1}", TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&secret, MSG_ID, "soon", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn any_signature_of_a_rotation_header_verifies() {
        let old = Secret::generate();
        let new = Secret::generate();
        let header = signature_header([&new, &old], MSG_ID, TIMESTAMP, BODY);
        assert_eq!(header.split(' ').count(), 2);
        let ts = TIMESTAMP.to_string();
        for secret in [&new, &old] {
            assert_eq!(
                verify(secret, MSG_ID, &ts, &header, BODY, TIMESTAMP),
                Ok(())
            );
        }
        let stranger = Secret::generate();
        assert_eq!(
            verify(&stranger, MSG_ID, &ts, &header, BODY, TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let secret = Secret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(Secret::parse(secret.expose()).unwrap(), secret);
        assert_ne!(Secret::generate(), secret);
        assert_eq!(format!("{secret:?}"), "Secret(whsec_…)");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::NotBase64));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SecretError::BadLength(3)));
    }

    #[test]
    fn agrees_with_the_standard_webhooks_library() {
        let secret = Secret::generate();
        let body = br#"{"event_type":"sample.created"}"#;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", MSG_ID.parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            signature_header([&secret], MSG_ID, now, body)
                .parse()
                .unwrap(),
        );
        let reference = standardwebhooks::Webhook::new(secret.expose()).unwrap();
        reference.verify(body, &headers).unwrap();
    }
}
