//! What the platform posts to `POST /v1/events`, checked field by field.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::account::{Account, MAX_NAME_BYTES};
use crate::catalog::{self, Catalog};
use crate::event_type::EventType;
use crate::ids::MessageId;
use crate::model::Message;
use crate::payload;
use crate::timefmt;

pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
pub const MAX_API_VERSION_BYTES: usize = 64;

const FIELDS: &[&str] = &[
    "event_type",
    "dataset",
    "object",
    "text",
    "created_at",
    "api_version",
    "id",
];

/// A field that is missing, of the wrong type or out of range. Its text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A validated event, not yet stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    /// `owner/name`; the owner is the account whose endpoints receive it.
    pub dataset: String,
    pub account: Account,
    pub object: Map<String, Value>,
    pub text: Option<String>,
    pub created_at: Option<String>,
    pub api_version: Option<String>,
    pub idempotency_key: Option<String>,
    /// Its type's text template, for the text when the event has none.
    pub text_template: Option<String>,
}

fn unknown_event_type(field: &str, name: &str) -> FieldError {
    FieldError::new(
        field,
        format!("`{name}` is not a known event type (see GET /v1/event-types)"),
    )
}

/// `name` as an event type of `catalog` that is not archived; otherwise an error naming `field`.
pub fn known_event_type(
    field: &str,
    name: &str,
    catalog: &Catalog,
) -> Result<EventType, FieldError> {
    catalog
        .subscribable(name)
        .ok_or_else(|| unknown_event_type(field, name))
}

/// `name` as an event type `catalog` has or had (archived ones included), e.g. to
/// filter jobs that may still carry it; otherwise an error naming `field`.
pub fn any_event_type(field: &str, name: &str, catalog: &Catalog) -> Result<EventType, FieldError> {
    catalog
        .any(name)
        .ok_or_else(|| unknown_event_type(field, name))
}

fn optional_string(
    body: &Map<String, Value>,
    field: &str,
    max_bytes: usize,
) -> Result<Option<String>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(FieldError::new(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max_bytes => Err(FieldError::new(
            field,
            format!("must be at most {max_bytes} bytes"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// Checks a parsed body against the fields' rules and its type's schema.
/// `header_key` is the `Idempotency-Key` header, used when the body has no `id`.
pub fn parse(
    body: &Map<String, Value>,
    header_key: Option<&str>,
    catalog: &Catalog,
) -> Result<NewEvent, FieldError> {
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            unknown.as_str(),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        ));
    }

    let event_type = match body.get("event_type") {
        None | Some(Value::Null) => return Err(FieldError::new("event_type", "is required")),
        Some(Value::String(t)) if catalog::is_operational(t) => {
            return Err(FieldError::new(
                "event_type",
                format!(
                    "`{t}` is an operational type that hookline raises itself; it cannot be posted"
                ),
            ));
        }
        Some(Value::String(t)) => known_event_type("event_type", t, catalog)?,
        Some(_) => return Err(FieldError::new("event_type", "must be a string")),
    };

    let dataset = match body.get("dataset") {
        None | Some(Value::Null) => return Err(FieldError::new("dataset", "is required")),
        Some(Value::String(d)) => d.clone(),
        Some(_) => return Err(FieldError::new("dataset", "must be a string")),
    };
    let account = Account::of_dataset(&dataset).ok_or_else(|| {
        FieldError::new(
            "dataset",
            format!(
                "must be `owner/name`, each part letters, digits, `.`, `_` or `-`, at most {MAX_NAME_BYTES} bytes"
            ),
        )
    })?;

    let object = match body.get("object") {
        None | Some(Value::Null) => return Err(FieldError::new("object", "is required")),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(FieldError::new("object", "must be a JSON object")),
    };
    catalog.check_object(&event_type, &object)?;

    let text = match body.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(FieldError::new("text", "must be a string")),
    };

    let created_at = optional_string(body, "created_at", 64)?;
    if let Some(created_at) = &created_at {
        timefmt::parse(created_at).ok_or_else(|| {
            FieldError::new(
                "created_at",
                "must be an RFC 3339 time, e.g. 2021-08-09T14:40:19Z",
            )
        })?;
    }
    let api_version = optional_string(body, "api_version", MAX_API_VERSION_BYTES)?;

    let idempotency_key = match optional_string(body, "id", MAX_IDEMPOTENCY_KEY_BYTES)? {
        Some(id) => Some(id),
        None => match header_key.map(str::trim) {
            None | Some("") => None,
            Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                return Err(FieldError::new(
                    "Idempotency-Key",
                    format!("must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
            Some(key) => Some(key.to_string()),
        },
    };

    Ok(NewEvent {
        text_template: catalog.text_template(&event_type).map(str::to_string),
        event_type,
        dataset,
        account,
        object,
        text,
        created_at,
        api_version,
        idempotency_key,
    })
}

/// SHA-256 (hex) of an event as sent: type, dataset, object (keys in any order),
/// text, created_at and api_version. Two requests with one idempotency key are
/// the same event exactly when their fingerprints are equal.
fn fingerprint(
    event_type: &str,
    dataset: &str,
    object: &Map<String, Value>,
    text: Option<&str>,
    created_at: Option<&str>,
    api_version: Option<&str>,
) -> String {
    let canonical = serde_json::json!([
        event_type,
        dataset,
        sorted(&Value::Object(object.clone())),
        text,
        created_at,
        api_version,
    ]);
    hex::encode(Sha256::digest(canonical.to_string()))
}

/// An idempotency key's account, key and the event's fingerprint, from a body
/// [`parse`] refused, read without the catalog: a repeat of an event accepted
/// before is answered as such though its type (or its type's schema) has changed
/// since. `None` when the body has no key or is no event of some account at all.
pub fn refused_event_claim(
    body: &Map<String, Value>,
    header_key: Option<&str>,
) -> Option<(Account, String, String)> {
    let text_of = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.as_str())),
        Some(_) => None,
    };
    let key = match text_of("id")? {
        Some(id) => id.to_string(),
        None => header_key
            .map(str::trim)
            .filter(|k| !k.is_empty())?
            .to_string(),
    };
    let dataset = body.get("dataset")?.as_str()?;
    let fingerprint = fingerprint(
        body.get("event_type")?.as_str()?,
        dataset,
        body.get("object")?.as_object()?,
        text_of("text")?,
        text_of("created_at")?,
        text_of("api_version")?,
    );
    Some((Account::of_dataset(dataset)?, key, fingerprint))
}

impl NewEvent {
    /// See [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(
            self.event_type.as_str(),
            &self.dataset,
            &self.object,
            self.text.as_deref(),
            self.created_at.as_deref(),
            self.api_version.as_deref(),
        )
    }

    /// The message this event becomes, with defaults filled in and its payload built once.
    pub fn into_message(self, default_api_version: &str, now: OffsetDateTime) -> Message {
        // CONTRACT's times are in UTC; the fingerprint keeps the time as sent.
        let created_at = match self.created_at {
            Some(sent) => timefmt::in_utc(&sent).unwrap_or(sent),
            None => timefmt::format(now),
        };
        let text = self.text.unwrap_or_else(|| {
            catalog::text(
                self.text_template.as_deref(),
                self.event_type.as_str(),
                &self.dataset,
                &self.object,
            )
        });
        let api_version = self.api_version.as_deref().unwrap_or(default_api_version);
        let payload = payload::standard(&payload::Standard {
            event_type: self.event_type.as_str(),
            created_at: &created_at,
            api_version,
            dataset: Some(&self.dataset),
            object: &self.object,
            text: &text,
        });
        Message {
            id: MessageId::new(),
            account: self.account,
            event_type: self.event_type,
            dataset: self.dataset,
            created_at,
            payload,
            received_at: now,
        }
    }
}

/// `value` with every object's keys in sorted order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&object[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Events one `POST /v1/events/batch` takes at most.
pub const MAX_BATCH_EVENTS: usize = 100;
/// The largest event, alone or in a batch (as compact JSON).
pub const MAX_EVENT_BYTES: usize = crate::http::MAX_BODY_BYTES;

/// Why one event of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JSON object: what a single post's body would be 400 `invalid_json` for.
    NotAnObject,
    Invalid(FieldError),
    /// Its size in bytes, over [`MAX_EVENT_BYTES`].
    TooLarge(usize),
}

/// The events of a batch body `{"events": [...]}`, each checked on its own with its
/// own `id`; Err when the body is not such a batch of 1 to [`MAX_BATCH_EVENTS`].
pub fn parse_batch(
    body: &Map<String, Value>,
    catalog: &Catalog,
) -> Result<Vec<Result<NewEvent, Refusal>>, FieldError> {
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "events") {
        return Err(FieldError::new(
            unknown.as_str(),
            "unknown field; a batch is `{\"events\": [...]}`",
        ));
    }
    let events = match body.get("events") {
        None | Some(Value::Null) => return Err(FieldError::new("events", "is required")),
        Some(Value::Array(events)) => events,
        Some(_) => return Err(FieldError::new("events", "must be an array of events")),
    };
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(FieldError::new(
            "events",
            format!("must hold 1 to {MAX_BATCH_EVENTS} events"),
        ));
    }
    Ok(events
        .iter()
        .map(|event| {
            let Value::Object(object) = event else {
                return Err(Refusal::NotAnObject);
            };
            let bytes = event.to_string().len();
            if bytes > MAX_EVENT_BYTES {
                return Err(Refusal::TooLarge(bytes));
            }
            parse(object, None, catalog).map_err(Refusal::Invalid)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn minimal() -> Value {
        json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}})
    }

    #[test]
    fn accepts_the_minimal_event_and_fills_defaults() {
        let event = parse(&body(minimal()), None, &Catalog::default()).unwrap();
        assert_eq!(event.account, "jane");
        assert_eq!(event.idempotency_key, None);
        let now = OffsetDateTime::from_unix_timestamp(1_628_520_019).unwrap();
        let message = event.into_message("2021-08-01", now);
        assert_eq!(message.created_at, "2021-08-09T14:40:19.000000Z");
        assert_eq!(
            message.payload,
            r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19.000000Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{"name":"rose.png"},"text":"Sample rose.png created in dataset jane/flowers."}"#
        );
    }

    #[test]
    fn keeps_what_the_platform_sent() {
        let mut full = minimal();
        full["text"] = json!("Hi.");
        full["created_at"] = json!("2021-08-09T14:40:19.987691+00:00");
        full["api_version"] = json!("2020-01-01");
        full["id"] = json!("evt_123");
        full["object"] = json!({"z": 1, "a": {"y": 2, "b": 3}});
        let event = parse(
            &body(full),
            Some("ignored-when-id-is-set"),
            &Catalog::default(),
        )
        .unwrap();
        assert_eq!(event.idempotency_key.as_deref(), Some("evt_123"));
        let message = event.into_message("2021-08-01", OffsetDateTime::now_utc());
        assert_eq!(
            message.payload,
            r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19.987691+00:00","api_version":"2020-01-01","dataset":"jane/flowers","object":{"z":1,"a":{"y":2,"b":3}},"text":"Hi."}"#
        );
    }

    #[test]
    fn a_time_sent_with_another_offset_is_delivered_in_utc() {
        let mut sent = minimal();
        sent["created_at"] = json!("2021-08-09T16:40:19+02:00");
        let event = parse(&body(sent), None, &Catalog::default()).unwrap();
        let message = event.into_message("2021-08-01", OffsetDateTime::now_utc());
        assert_eq!(message.created_at, "2021-08-09T14:40:19.000000Z");
        let payload: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(payload["created_at"], "2021-08-09T14:40:19.000000Z");
    }

    #[test]
    fn a_refused_body_s_claim_is_read_as_its_accepted_event_s() {
        let mut sent = minimal();
        sent["id"] = json!("evt_1");
        sent["created_at"] = json!("2021-08-09T14:40:19Z");
        let accepted = parse(&body(sent.clone()), None, &Catalog::default()).unwrap();
        let (account, key, fingerprint) = refused_event_claim(&body(sent), None).unwrap();
        assert_eq!(
            (account.as_str(), key.as_str(), fingerprint),
            ("jane", "evt_1", accepted.fingerprint())
        );
        // The header's key, when the body names none.
        let by_header = refused_event_claim(&body(minimal()), Some(" k ")).unwrap();
        assert_eq!(by_header.1, "k");
        assert!(refused_event_claim(&body(minimal()), None).is_none());
        assert!(
            refused_event_claim(&body(json!({"id": "evt_1", "dataset": "jane/x"})), None).is_none()
        );
    }

    #[test]
    fn idempotency_key_header_is_used_without_an_id() {
        let event = parse(&body(minimal()), Some(" key-1 "), &Catalog::default()).unwrap();
        assert_eq!(event.idempotency_key.as_deref(), Some("key-1"));
    }

    #[test]
    fn refuses_each_bad_field_by_name() {
        let cases: &[(&str, Value)] = &[
            (
                "event_type",
                json!({"dataset": "jane/flowers", "object": {}}),
            ),
            (
                "event_type",
                json!({"event_type": 3, "dataset": "jane/flowers", "object": {}}),
            ),
            (
                "event_type",
                json!({"event_type": "sample.exploded", "dataset": "jane/flowers", "object": {}}),
            ),
            (
                "event_type",
                json!({"event_type": "endpoint.disabled", "dataset": "jane/flowers", "object": {}}),
            ),
            (
                "dataset",
                json!({"event_type": "sample.created", "object": {}}),
            ),
            (
                "dataset",
                json!({"event_type": "sample.created", "dataset": "flowers", "object": {}}),
            ),
            (
                "dataset",
                json!({"event_type": "sample.created", "dataset": "jane/", "object": {}}),
            ),
            (
                "dataset",
                json!({"event_type": "sample.created", "dataset": "ja#ne/flowers", "object": {}}),
            ),
            (
                "dataset",
                json!({"event_type": "sample.created", "dataset": ["jane/flowers"], "object": {}}),
            ),
            (
                "object",
                json!({"event_type": "sample.created", "dataset": "jane/flowers"}),
            ),
            (
                "object",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": "rose"}),
            ),
            (
                "text",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "text": 1}),
            ),
            (
                "created_at",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "created_at": "yesterday"}),
            ),
            (
                "api_version",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "api_version": ""}),
            ),
            (
                "id",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "id": 7}),
            ),
            (
                "id",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "id": "k".repeat(257)}),
            ),
            (
                "colour",
                json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "colour": "red"}),
            ),
        ];
        for (field, value) in cases {
            let error = parse(&body(value.clone()), None, &Catalog::default()).unwrap_err();
            assert_eq!(&error.field, field, "{value}");
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }

    #[test]
    fn the_fingerprint_is_the_event_as_sent_whatever_the_key_order() {
        let fingerprint = |value: Value| {
            parse(&body(value), None, &Catalog::default())
                .unwrap()
                .fingerprint()
        };
        let base = fingerprint(
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}}),
        );
        assert_eq!(base.len(), 64);
        // Key order, the key itself and JSON spacing do not count.
        assert_eq!(
            base,
            fingerprint(
                json!({"id": "k1", "object": {"b": {"y": 2, "x": [1, {"p": 2, "q": 1}]}, "a": 1}, "dataset": "jane/flowers", "event_type": "sample.created"})
            )
        );
        for changed in [
            json!({"event_type": "sample.updated", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}}),
            json!({"event_type": "sample.created", "dataset": "jane/trees", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}}),
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 2, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}}),
            // Array order counts.
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [{"q": 1, "p": 2}, 1], "y": 2}}}),
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}, "text": "t"}),
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}, "created_at": "2021-08-09T14:40:19Z"}),
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"a": 1, "b": {"x": [1, {"q": 1, "p": 2}], "y": 2}}, "api_version": "2020-01-01"}),
        ] {
            assert_ne!(base, fingerprint(changed.clone()), "{changed}");
        }
    }

    #[test]
    fn a_batch_is_checked_as_a_whole_then_event_by_event() {
        let good = minimal();
        let refused_as_a_whole = [
            json!({}),
            json!({"events": null}),
            json!({"events": {}}),
            json!({"events": []}),
            json!({"events": vec![good.clone(); MAX_BATCH_EVENTS + 1]}),
            json!({"events": [good.clone()], "extra": 1}),
        ];
        for batch in refused_as_a_whole {
            assert!(
                parse_batch(&body(batch.clone()), &Catalog::default()).is_err(),
                "{batch}"
            );
        }
        assert_eq!(
            parse_batch(
                &body(json!({"events": vec![good.clone(); MAX_BATCH_EVENTS]})),
                &Catalog::default()
            )
            .unwrap()
            .len(),
            MAX_BATCH_EVENTS
        );

        let huge = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"blob": "x".repeat(MAX_EVENT_BYTES)}});
        let items = parse_batch(&body(json!({"events": [
            good, 3, {"event_type": "sample.created"}, huge, {"event_type": "sample.created", "dataset": "jane/flowers", "object": {}, "id": "evt_1"}
        ]})), &Catalog::default())
        .unwrap();
        assert!(items[0].is_ok());
        assert!(matches!(&items[1], Err(Refusal::NotAnObject)));
        assert!(matches!(&items[2], Err(Refusal::Invalid(e)) if e.field == "dataset"));
        assert!(matches!(&items[3], Err(Refusal::TooLarge(n)) if *n > MAX_EVENT_BYTES));
        assert_eq!(
            items[4].as_ref().unwrap().idempotency_key.as_deref(),
            Some("evt_1")
        );
    }
}
