//! What the API answers, as CONTRACT's objects: types of the API's own, built from
//! the domain's field by field, so a new domain field never extends the public
//! contract unless it is added here too.

use serde::Serialize;
use serde_json::Value;
use shared::email::DigestSchedule;
use shared::event_type::EventType;
use shared::ids::{AttemptId, EndpointId, MessageId};
use shared::model::{Attempt, AttemptStatus, Endpoint, Format, Message};
use time::OffsetDateTime;

/// CONTRACT's endpoint object, in its order. `url` and `emails`, the target, are
/// left out of the other kind of endpoint; the other fields are always there,
/// null where they do not apply (`format` for an email endpoint, `reactive` and
/// `digest` for a webhook).
#[derive(Serialize)]
pub struct EndpointOut<'a> {
    id: &'a EndpointId,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emails: Option<&'a [String]>,
    description: &'a str,
    version: u32,
    event_types: &'a [EventType],
    datasets: Option<&'a [String]>,
    format: Option<Format>,
    disabled: bool,
    disabled_reason: Option<&'a str>,
    reactive: Option<bool>,
    digest: Option<&'a DigestSchedule>,
    #[serde(with = "shared::timefmt")]
    created_at: OffsetDateTime,
    #[serde(with = "shared::timefmt")]
    updated_at: OffsetDateTime,
}

impl<'a> From<&'a Endpoint> for EndpointOut<'a> {
    fn from(endpoint: &'a Endpoint) -> Self {
        let email = endpoint.email.as_ref();
        let webhook = email.is_none();
        Self {
            id: &endpoint.id,
            kind: endpoint.kind(),
            url: webhook.then_some(endpoint.url.as_str()),
            emails: email.map(|e| e.emails.as_slice()),
            description: &endpoint.description,
            version: endpoint.version,
            event_types: &endpoint.event_types,
            datasets: endpoint.datasets.as_deref(),
            format: webhook.then_some(endpoint.format),
            disabled: endpoint.disabled,
            disabled_reason: endpoint.disabled_reason.as_deref(),
            reactive: email.map(|e| e.reactive),
            digest: email.and_then(|e| e.digest.as_ref()),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// An endpoint as creation answers it: a webhook endpoint with its secret, which
/// only creation, `GET …/secret` and rotation ever show. An email endpoint has none.
#[derive(Serialize)]
pub struct EndpointWithSecret<'a> {
    #[serde(flatten)]
    pub endpoint: EndpointOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
}

/// CONTRACT's attempt object, in its order.
#[derive(Serialize)]
pub struct AttemptOut<'a> {
    id: &'a AttemptId,
    message_id: &'a MessageId,
    endpoint_id: &'a EndpointId,
    event_type: &'a EventType,
    attempt: u32,
    status: AttemptStatus,
    response_status: Option<u16>,
    response_body: &'a str,
    error: Option<&'a str>,
    duration_ms: u64,
    #[serde(with = "shared::timefmt")]
    timestamp: OffsetDateTime,
    #[serde(with = "shared::timefmt::option")]
    next_attempt_at: Option<OffsetDateTime>,
}

impl<'a> From<&'a Attempt> for AttemptOut<'a> {
    fn from(attempt: &'a Attempt) -> Self {
        Self {
            id: &attempt.id,
            message_id: &attempt.message_id,
            endpoint_id: &attempt.endpoint_id,
            event_type: &attempt.event_type,
            attempt: attempt.attempt,
            status: attempt.status,
            response_status: attempt.response_status,
            response_body: &attempt.response_body,
            error: attempt.error.as_deref(),
            duration_ms: attempt.duration_ms,
            timestamp: attempt.timestamp,
            next_attempt_at: attempt.next_attempt_at,
        }
    }
}

/// `GET …/messages/{msg_id}`: a message with its payload as JSON and its attempts.
#[derive(Serialize)]
pub struct MessageOut<'a> {
    id: &'a MessageId,
    event_type: &'a EventType,
    /// `None` for hookline's operational events, which are about no dataset.
    dataset: Option<&'a str>,
    created_at: &'a str,
    payload: Value,
    attempts: Vec<AttemptOut<'a>>,
}

impl<'a> MessageOut<'a> {
    pub fn new(message: &'a Message, payload: Value, attempts: &'a [Attempt]) -> Self {
        Self {
            id: &message.id,
            event_type: &message.event_type,
            dataset: message.dataset(),
            created_at: &message.created_at,
            payload,
            attempts: attempts.iter().map(AttemptOut::from).collect(),
        }
    }
}

/// A page of a listing: `{"data": [...], "next_cursor": "…" or null}`.
#[derive(Serialize)]
pub struct PageOut<'a, T> {
    data: Vec<T>,
    next_cursor: Option<&'a str>,
}

impl<'a, T> PageOut<'a, T> {
    pub fn new<D: 'a>(page: &'a shared::store::Page<D>) -> Self
    where
        T: From<&'a D>,
    {
        Self {
            data: page.items.iter().map(T::from).collect(),
            next_cursor: page.next_cursor.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn an_endpoint_answers_contract_s_fields_in_contract_s_order() {
        let time = shared::timefmt::parse("2026-01-02T03:04:05.123456Z").unwrap();
        let endpoint = Endpoint {
            id: EndpointId::parse("ep_1").unwrap(),
            account: "jane".parse().unwrap(),
            url: "https://example.com/hook".into(),
            description: "orders".into(),
            version: 2,
            event_types: vec!["sample.created".parse().unwrap()],
            datasets: None,
            format: Format::Slack,
            disabled: false,
            disabled_reason: None,
            failing_since: None,
            email: None,
            created_at: time,
            updated_at: time,
        };
        let out = serde_json::to_value(EndpointOut::from(&endpoint)).unwrap();
        assert_eq!(
            out,
            json!({
                "id": "ep_1",
                "type": "webhook",
                "url": "https://example.com/hook",
                "description": "orders",
                "version": 2,
                "event_types": ["sample.created"],
                "datasets": null,
                "format": "slack",
                "disabled": false,
                "disabled_reason": null,
                "reactive": null,
                "digest": null,
                "created_at": "2026-01-02T03:04:05.123456Z",
                "updated_at": "2026-01-02T03:04:05.123456Z",
            })
        );
        assert_eq!(
            keys(&out),
            [
                "id",
                "type",
                "url",
                "description",
                "version",
                "event_types",
                "datasets",
                "format",
                "disabled",
                "disabled_reason",
                "reactive",
                "digest",
                "created_at",
                "updated_at"
            ]
        );
    }

    #[test]
    fn an_attempt_answers_contract_s_fields_in_contract_s_order() {
        let time = shared::timefmt::parse("2026-01-02T03:04:05.123456Z").unwrap();
        let attempt = Attempt {
            id: AttemptId::parse("atmpt_1").unwrap(),
            message_id: MessageId::parse("msg_1").unwrap(),
            endpoint_id: EndpointId::parse("ep_1").unwrap(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            attempt: 1,
            status: AttemptStatus::Failed,
            response_status: None,
            response_body: String::new(),
            error: Some("timeout".into()),
            duration_ms: 7,
            timestamp: time,
            next_attempt_at: None,
        };
        let out = serde_json::to_value(AttemptOut::from(&attempt)).unwrap();
        assert_eq!(
            keys(&out),
            [
                "id",
                "message_id",
                "endpoint_id",
                "event_type",
                "attempt",
                "status",
                "response_status",
                "response_body",
                "error",
                "duration_ms",
                "timestamp",
                "next_attempt_at"
            ]
        );
        assert_eq!(out["status"], "failed");
        assert_eq!(out["response_status"], Value::Null);
        assert_eq!(out["error"], "timeout");
        assert_eq!(out["next_attempt_at"], Value::Null);
        assert_eq!(out["timestamp"], "2026-01-02T03:04:05.123456Z");
    }
}
