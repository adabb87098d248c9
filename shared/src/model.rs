//! The domain: endpoints, messages, delivery jobs and attempts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::signing::Secret;

/// What an endpoint receives: the full envelope, or the `{"text": …}` a Slack incoming webhook takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Standard,
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Slack => "slack",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "standard" => Some(Format::Standard),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

/// An endpoint as its owner sees it; secrets travel separately (see [`EndpointSecrets`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub id: EndpointId,
    #[serde(skip)]
    pub account: String,
    pub url: String,
    pub description: String,
    pub version: u32,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// `None`: every dataset of the account.
    pub datasets: Option<Vec<String>>,
    pub format: Format,
    pub disabled: bool,
    #[serde(with = "crate::timefmt")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timefmt")]
    pub updated_at: OffsetDateTime,
}

impl Endpoint {
    /// Whether an event of `event_type` in `dataset` is delivered here.
    pub fn subscribes(&self, event_type: &str, dataset: &str) -> bool {
        !self.disabled
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && self
                .datasets
                .as_ref()
                .is_none_or(|datasets| datasets.iter().any(|d| d == dataset))
    }
}

/// The secrets that sign an endpoint's deliveries: the current one, and during a
/// rotation the previous one until it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSecrets {
    pub current: Secret,
    pub previous: Option<(Secret, OffsetDateTime)>,
}

impl EndpointSecrets {
    pub fn new(current: Secret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// The secrets that sign at `now`: current first, then an unexpired previous one.
    pub fn signing(&self, now: OffsetDateTime) -> Vec<&Secret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(secret, _)| secret);
        std::iter::once(&self.current).chain(previous).collect()
    }
}

/// One accepted event, stored once and delivered to every subscribed endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub account: String,
    pub event_type: String,
    pub dataset: String,
    /// As the platform sent it (validated RFC 3339), or the time it was accepted.
    pub created_at: String,
    /// The exact `standard` body every delivery sends (see [`crate::payload`]).
    pub payload: String,
    pub received_at: OffsetDateTime,
}

/// One message to one endpoint: the body of an SQS job. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub account: String,
    pub event_type: String,
    /// The message's payload when it fits on the queue; otherwise the dispatcher reads the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// Payloads larger than this stay in the table; SQS takes 256 KiB per message in all.
pub const MAX_INLINE_PAYLOAD: usize = 192 * 1024;

impl DeliveryJob {
    pub fn new(message: &Message, endpoint_id: EndpointId) -> Self {
        let payload =
            (message.payload.len() <= MAX_INLINE_PAYLOAD).then(|| message.payload.clone());
        Self {
            message_id: message.id.clone(),
            endpoint_id,
            account: message.account.clone(),
            event_type: message.event_type.clone(),
            payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "succeeded" => Some(AttemptStatus::Succeeded),
            "failed" => Some(AttemptStatus::Failed),
            _ => None,
        }
    }
}

/// The record of one delivery attempt, as CONTRACT's attempt object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub id: AttemptId,
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    #[serde(skip)]
    pub account: String,
    pub event_type: String,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub response_status: Option<u16>,
    pub response_body: String,
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(with = "crate::timefmt")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "crate::timefmt::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn endpoint(event_types: &[&str], datasets: Option<&[&str]>) -> Endpoint {
        let now = OffsetDateTime::now_utc();
        Endpoint {
            id: EndpointId::new(),
            account: "jane".into(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            version: 1,
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            datasets: datasets.map(|d| d.iter().map(|s| s.to_string()).collect()),
            format: Format::Standard,
            disabled: false,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn subscription_rules() {
        let all = endpoint(&[], None);
        assert!(all.subscribes("sample.created", "jane/flowers"));
        let samples = endpoint(&["sample.created"], None);
        assert!(samples.subscribes("sample.created", "jane/flowers"));
        assert!(!samples.subscribes("sample.deleted", "jane/flowers"));
        let flowers = endpoint(&[], Some(&["jane/flowers"]));
        assert!(flowers.subscribes("issue.created", "jane/flowers"));
        assert!(!flowers.subscribes("issue.created", "jane/trees"));
        let none = endpoint(&[], Some(&[]));
        assert!(!none.subscribes("issue.created", "jane/flowers"));
        let mut disabled = endpoint(&[], None);
        disabled.disabled = true;
        assert!(!disabled.subscribes("sample.created", "jane/flowers"));
    }

    #[test]
    fn previous_secret_signs_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let current = Secret::generate();
        let previous = Secret::generate();
        let secrets = EndpointSecrets {
            current: current.clone(),
            previous: Some((previous.clone(), now + Duration::hours(24))),
        };
        assert_eq!(secrets.signing(now), vec![&current, &previous]);
        assert_eq!(secrets.signing(now + Duration::hours(25)), vec![&current]);
    }

    #[test]
    fn large_payloads_stay_off_the_queue() {
        let mut message = Message {
            id: MessageId::new(),
            account: "jane".into(),
            event_type: "sample.created".into(),
            dataset: "jane/flowers".into(),
            created_at: "2021-08-09T14:40:19Z".into(),
            payload: "{}".into(),
            received_at: OffsetDateTime::now_utc(),
        };
        assert_eq!(
            DeliveryJob::new(&message, EndpointId::new())
                .payload
                .as_deref(),
            Some("{}")
        );
        message.payload = "x".repeat(MAX_INLINE_PAYLOAD + 1);
        assert_eq!(DeliveryJob::new(&message, EndpointId::new()).payload, None);
    }
}
