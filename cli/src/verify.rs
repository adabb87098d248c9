//! `hookline verify`: checks a delivery's signature as a receiver would.

use shared::signing::{self, Secret, VerifyError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyCommandError {
    #[error("--secret: {0}")]
    Secret(#[from] signing::SecretError),
    #[error("--header `{0}` is not `name: value`")]
    BadHeader(String),
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error(transparent)]
    Invalid(#[from] VerifyError),
}

/// Verifies `body` against `headers` (`name: value` lines) with `secret`, at `now` (unix seconds).
pub fn verify(
    secret: &str,
    headers: &[String],
    body: &[u8],
    now: i64,
) -> Result<(), VerifyCommandError> {
    let secret = Secret::parse(secret)?;
    let mut id = None;
    let mut timestamp = None;
    let mut signature = None;
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| VerifyCommandError::BadHeader(header.clone()))?;
        let value = Some(value.trim().to_string());
        match name.trim().to_ascii_lowercase().as_str() {
            "webhook-id" => id = value,
            "webhook-timestamp" => timestamp = value,
            "webhook-signature" => signature = value,
            _ => {}
        }
    }
    let id = id.ok_or(VerifyCommandError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(VerifyCommandError::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyCommandError::MissingHeader("webhook-signature"))?;
    signing::verify(&secret, &id, &timestamp, &signature, body, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_published_vector_and_names_what_is_wrong() {
        let headers = [
            "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek".to_string(),
            "Webhook-Timestamp: 1614265330".to_string(),
            "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string(),
        ];
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert!(verify(secret, &headers, body, 1614265330).is_ok());
        assert!(matches!(
            verify(secret, &headers, b"{}", 1614265330),
            Err(VerifyCommandError::Invalid(VerifyError::NoMatch))
        ));
        assert!(matches!(
            verify(secret, &headers[..2], body, 1614265330),
            Err(VerifyCommandError::MissingHeader("webhook-signature"))
        ));
        assert!(matches!(
            verify(secret, &["nonsense".to_string()], body, 1614265330),
            Err(VerifyCommandError::BadHeader(_))
        ));
    }
}
