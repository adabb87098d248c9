//! The domain: endpoints, messages, delivery jobs and attempts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::account::Account;
use crate::email::EmailSettings;
use crate::event_type::EventType;
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::queue::MAX_MESSAGE_BYTES;
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
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub account: Account,
    /// A webhook's URL; empty for an email endpoint.
    pub url: String,
    pub description: String,
    pub version: u32,
    /// Empty: every event type.
    pub event_types: Vec<EventType>,
    /// `None`: every dataset of the account.
    pub datasets: Option<Vec<String>>,
    pub format: Format,
    pub disabled: bool,
    /// Why hookline disabled it (see [`crate::operational`]); `None` when it did not.
    pub disabled_reason: Option<String>,
    /// When its current run of failures began; `None` after a success. Not part of
    /// what its owner sees: auto-disable reads it.
    pub failing_since: Option<OffsetDateTime>,
    /// `Some` for an email endpoint: what it sends and to whom.
    pub email: Option<EmailSettings>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Endpoint {
    /// CONTRACT's `type`: `"webhook"` or `"email"`.
    pub fn kind(&self) -> &'static str {
        if self.email.is_some() {
            "email"
        } else {
            "webhook"
        }
    }

    /// Whether an event of `event_type` in `dataset` is delivered here. An empty list
    /// of types is every type but the operational ones ([`crate::operational::receives`]).
    pub fn subscribes(&self, event_type: &EventType, dataset: &str) -> bool {
        let every =
            self.event_types.is_empty() && !crate::catalog::is_operational(event_type.as_str());
        !self.disabled
            && (every || self.event_types.iter().any(|t| t == event_type))
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
    pub account: Account,
    pub event_type: EventType,
    /// Empty for hookline's operational events, which are about no dataset (see [`Message::dataset`]).
    pub dataset: String,
    /// As the platform sent it (validated RFC 3339), or the time it was accepted.
    pub created_at: String,
    /// The exact `standard` body every delivery sends (see [`crate::payload`]).
    pub payload: String,
    pub received_at: OffsetDateTime,
}

impl Message {
    /// The dataset the message is about; `None` for an operational event.
    pub fn dataset(&self) -> Option<&str> {
        Some(self.dataset.as_str()).filter(|d| !d.is_empty())
    }
}

/// One message to one endpoint: the body of an SQS job. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub account: Account,
    pub event_type: EventType,
    /// The message's payload when it fits on the queue; otherwise the dispatcher reads the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The endpoint's `updated_at` as the fan-out read it: the dispatcher delivers with
    /// that version of the endpoint or a later one (a secret rotated before the event
    /// was accepted signs it). `None` where the fan-out did not read the endpoint.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub endpoint_updated_at: Option<OffsetDateTime>,
    /// `message.attempt.failing` was raised for this message at this endpoint before
    /// this job's attempts (which a replay counts afresh): its success raises
    /// `recovered`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_failing: bool,
}

/// An endpoint a message goes to, with the version of it the fan-out read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RecipientBody")]
pub struct Recipient {
    pub id: EndpointId,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
}

/// A recipient as a queue body holds it: an object, or a bare endpoint id as fan-out
/// tasks named their endpoints before they carried versions (still read, so such a
/// task queued across a deployment is done, not dropped as malformed).
#[derive(Deserialize)]
#[serde(untagged)]
enum RecipientBody {
    Id(EndpointId),
    Read {
        id: EndpointId,
        #[serde(default, with = "crate::timefmt::option")]
        updated_at: Option<OffsetDateTime>,
    },
}

impl From<RecipientBody> for Recipient {
    fn from(body: RecipientBody) -> Self {
        match body {
            RecipientBody::Id(id) => id.into(),
            RecipientBody::Read { id, updated_at } => Self { id, updated_at },
        }
    }
}

impl From<&Endpoint> for Recipient {
    fn from(endpoint: &Endpoint) -> Self {
        Self {
            id: endpoint.id.clone(),
            updated_at: Some(endpoint.updated_at),
        }
    }
}

/// An endpoint known by its id alone, not read.
impl From<EndpointId> for Recipient {
    fn from(id: EndpointId) -> Self {
        Self {
            id,
            updated_at: None,
        }
    }
}

impl DeliveryJob {
    /// The job for one endpoint; see [`DeliveryJob::for_endpoints`].
    pub fn new(message: &Message, recipient: impl Into<Recipient>) -> Self {
        Self::for_endpoints(message, vec![recipient.into()])
            .pop()
            .expect("one job per endpoint")
    }

    /// One job per endpoint, carrying the payload inline when a job with it still fits
    /// in an SQS message: decided on the serialized job, where JSON escaping can
    /// double the payload's size. Endpoint ids and times have one length, so the
    /// longest job (one with a time, if any has one) decides for all.
    pub fn for_endpoints(message: &Message, recipients: Vec<Recipient>) -> Vec<Self> {
        let job = |recipient: Recipient, payload| Self {
            message_id: message.id.clone(),
            endpoint_id: recipient.id,
            account: message.account.clone(),
            event_type: message.event_type.clone(),
            payload,
            endpoint_updated_at: recipient.updated_at,
            after_failing: false,
        };
        let longest = recipients.iter().max_by_key(|r| r.updated_at.is_some());
        let inline = longest.is_some_and(|longest| {
            job(longest.clone(), Some(message.payload.clone()))
                .to_body()
                .len()
                <= MAX_MESSAGE_BYTES
        });
        recipients
            .into_iter()
            .map(|recipient| job(recipient, inline.then(|| message.payload.clone())))
            .collect()
    }

    /// The job as a queue message body.
    pub fn to_body(&self) -> String {
        crate::queue::message_body(self)
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

/// The record of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: AttemptId,
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub account: Account,
    pub event_type: EventType,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub response_status: Option<u16>,
    pub response_body: String,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub timestamp: OffsetDateTime,
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// What unit tests build their values from.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// An enabled endpoint of `jane` at example.com, subscribed to `event_types`
    /// (all when empty) in `datasets` (all when `None`).
    pub fn endpoint(event_types: &[&str], datasets: Option<&[&str]>) -> Endpoint {
        let now = OffsetDateTime::now_utc();
        Endpoint {
            id: EndpointId::new(),
            account: "jane".parse().unwrap(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            version: 1,
            event_types: event_types.iter().map(|s| s.parse().unwrap()).collect(),
            datasets: datasets.map(|d| d.iter().map(|s| s.to_string()).collect()),
            format: Format::Standard,
            disabled: false,
            disabled_reason: None,
            failing_since: None,
            email: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// A failed attempt with every optional field set, so that each one is stored.
    pub fn attempt() -> Attempt {
        let now = OffsetDateTime::now_utc();
        Attempt {
            id: AttemptId::new(),
            message_id: MessageId::new(),
            endpoint_id: EndpointId::new(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            attempt: 2,
            status: AttemptStatus::Failed,
            response_status: Some(503),
            response_body: "busy".into(),
            error: Some("timed out".into()),
            duration_ms: 12,
            timestamp: now,
            next_attempt_at: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::fixtures::endpoint;
    use super::*;

    #[test]
    fn subscription_rules() {
        let all = endpoint(&[], None);
        assert!(all.subscribes(&"sample.created".parse().unwrap(), "jane/flowers"));
        let samples = endpoint(&["sample.created"], None);
        assert!(samples.subscribes(&"sample.created".parse().unwrap(), "jane/flowers"));
        assert!(!samples.subscribes(&"sample.deleted".parse().unwrap(), "jane/flowers"));
        let flowers = endpoint(&[], Some(&["jane/flowers"]));
        assert!(flowers.subscribes(&"issue.created".parse().unwrap(), "jane/flowers"));
        assert!(!flowers.subscribes(&"issue.created".parse().unwrap(), "jane/trees"));
        assert!(!all.subscribes(&"endpoint.disabled".parse().unwrap(), "jane/flowers"));
        let none = endpoint(&[], Some(&[]));
        assert!(!none.subscribes(&"issue.created".parse().unwrap(), "jane/flowers"));
        let mut disabled = endpoint(&[], None);
        disabled.disabled = true;
        assert!(!disabled.subscribes(&"sample.created".parse().unwrap(), "jane/flowers"));
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

    fn message(payload: String) -> Message {
        Message {
            id: MessageId::new(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            dataset: "jane/flowers".into(),
            created_at: "2021-08-09T14:40:19Z".into(),
            payload,
            received_at: OffsetDateTime::now_utc(),
        }
    }

    /// The largest payload of `unit` repeated whose job still fits an SQS message.
    fn largest_inline(unit: &str) -> usize {
        let fits = |n: usize| {
            DeliveryJob::new(&message(unit.repeat(n)), EndpointId::new())
                .payload
                .is_some()
        };
        let (mut low, mut high) = (0, MAX_MESSAGE_BYTES);
        while low + 1 < high {
            let middle = (low + high) / 2;
            if fits(middle) {
                low = middle
            } else {
                high = middle
            }
        }
        low * unit.len()
    }

    #[test]
    fn the_payload_goes_inline_while_the_serialized_job_fits_an_sqs_message() {
        let small = DeliveryJob::new(&message("{}".into()), EndpointId::new());
        assert_eq!(small.payload.as_deref(), Some("{}"));
        // Plain text takes its own size in a job; `"` and `\` take twice theirs, so the
        // limit in payload bytes is about half.
        let plain = largest_inline("x");
        let quotes = largest_inline("\"");
        let backslashes = largest_inline("\\");
        assert!(plain > MAX_MESSAGE_BYTES - 200, "{plain}");
        assert!((MAX_MESSAGE_BYTES / 2 - 200..=MAX_MESSAGE_BYTES / 2).contains(&quotes));
        assert_eq!(quotes, backslashes);
        // Non-ASCII stays as UTF-8: its bytes count once.
        let accents = largest_inline("é");
        assert!(accents > MAX_MESSAGE_BYTES - 200, "{accents}");
        for unit in ["x", "\"", "é", "\u{1}", "\u{ffff}"] {
            for n in [0, 1000, 100_000, 200_000] {
                let payload = unit.repeat(n);
                let job = DeliveryJob::new(&message(payload.clone()), EndpointId::new());
                if job.payload.is_some() {
                    assert!(job.to_body().len() <= MAX_MESSAGE_BYTES, "{unit:?} × {n}");
                }
                let back: DeliveryJob = serde_json::from_str(&job.to_body()).unwrap();
                assert_eq!(back, job, "{unit:?} × {n}");
            }
        }
    }

    #[test]
    fn one_decision_for_every_endpoint_of_a_message() {
        let big = message("\"".repeat(MAX_MESSAGE_BYTES / 2));
        let jobs = DeliveryJob::for_endpoints(
            &big,
            vec![EndpointId::new().into(), EndpointId::new().into()],
        );
        assert_eq!(jobs.len(), 2);
        assert!(
            jobs.iter()
                .all(|j| j.payload.is_none() && j.message_id == big.id)
        );
        assert!(DeliveryJob::for_endpoints(&big, vec![]).is_empty());
    }
}
