//! One signed POST to an endpoint, and what came back in words an endpoint owner
//! can act on.

use std::time::Duration;

use shared::model::{DeliveryJob, EndpointSecrets};
use shared::net::AddressError;
use shared::retry::parse_retry_after;
use shared::signing::signature_header;
use time::OffsetDateTime;

use crate::Deps;
use crate::dns::check_literal;

/// How much of a response body an attempt keeps.
pub const KEPT_RESPONSE_BYTES: usize = 4096;
/// How much of a response body is read at all before the connection is dropped.
pub const READ_RESPONSE_BYTES: usize = 64 * 1024;

/// What came back from one POST.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exchange {
    pub status: Option<u16>,
    pub body: String,
    /// Why no (complete) response came.
    pub error: Option<String>,
    pub timed_out: bool,
    /// A 429's or 503's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Exchange {
    pub fn error(why: &str) -> Self {
        Self {
            error: Some(why.to_string()),
            ..Self::default()
        }
    }
}

pub(crate) async fn post(
    deps: &Deps,
    url: &str,
    secrets: &EndpointSecrets,
    job: &DeliveryJob,
    now: OffsetDateTime,
    body: Vec<u8>,
) -> Exchange {
    if let Err(blocked) = check_literal(url, deps.config.allow_private_targets) {
        return Exchange::error(&blocked.to_string());
    }
    let timestamp = now.unix_timestamp();
    let signature = signature_header(
        secrets.signing(now),
        job.message_id.as_str(),
        timestamp,
        &body,
    );
    let sent = deps
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", job.message_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let timeout = deps.config.request_timeout;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            return Exchange {
                timed_out: error.is_timeout(),
                ..Exchange::error(&describe(&error, timeout))
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = matches!(status, 429 | 503)
        .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, OffsetDateTime::now_utc().unix_timestamp()));
    let mut kept = Vec::new();
    let mut read = 0usize;
    let mut error = None;
    let mut timed_out = false;
    while read < READ_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = KEPT_RESPONSE_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                timed_out = e.is_timeout();
                error = Some(describe(&e, timeout));
                break;
            }
        }
    }
    // Dropping `response` here closes a connection whose body was not read to the end.
    Exchange {
        status: Some(status),
        body: truncate_utf8(kept),
        error,
        timed_out,
        retry_after,
    }
}

/// The kept bytes of a response body as text of at most [`KEPT_RESPONSE_BYTES`]:
/// bytes that are not UTF-8 shown as U+FFFD (a binary answer still shows, whole),
/// and a character that the limit cut at the end dropped.
pub(crate) fn truncate_utf8(mut bytes: Vec<u8>) -> String {
    let cut_tail = bytes.utf8_chunks().last().map_or(0, |chunk| {
        let invalid = chunk.invalid();
        let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        if incomplete { invalid.len() } else { 0 }
    });
    bytes.truncate(bytes.len() - cut_tail);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // Each replaced byte takes three.
    text.truncate(text.floor_char_boundary(KEPT_RESPONSE_BYTES));
    text
}

/// Why no response came: a timeout, a blocked address, a DNS failure, a refused
/// connection, a TLS failure, or else the error chain as it is.
pub(crate) fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timeout after {} ms", timeout.as_millis());
    }
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(address) = cause.downcast_ref::<AddressError>() {
            return address.to_string();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return "connection refused".to_string();
        }
        chain.push(cause.to_string());
        source = cause.source();
    }
    let chain = chain.join(": ");
    // rustls's errors are not named here (reqwest hides its TLS stack), so they are known by their words.
    let lower = chain.to_ascii_lowercase();
    if [
        "tls",
        "certificate",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
    ]
    .iter()
    .any(|word| lower.contains(word))
    {
        return format!("TLS error: {chain}");
    }
    if error.is_connect() {
        format!("connection failed: {chain}")
    } else {
        format!("request failed: {chain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("héllo".as_bytes()[..2].to_vec()), "h");
        assert_eq!(truncate_utf8(b"ok".to_vec()), "ok");
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_replacements_within_the_limit() {
        assert_eq!(truncate_utf8(b"a\xffb\xfe".to_vec()), "a\u{fffd}b\u{fffd}");
        let binary: Vec<u8> = (0..=255).cycle().take(KEPT_RESPONSE_BYTES).collect();
        let text = truncate_utf8(binary);
        assert!(text.len() <= KEPT_RESPONSE_BYTES);
        assert!(text.len() > KEPT_RESPONSE_BYTES - 3);
        assert!(text.starts_with("\0\u{1}") && text.contains('\u{fffd}'));
    }
}
