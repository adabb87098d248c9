//! Stored items to and from the domain types. The attribute names here are the
//! table's: other code and tests read them, so they change only with a migration.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::StoreError;
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::{Attempt, AttemptStatus, Endpoint, EndpointSecrets, Format, Message};
use crate::signing::Secret;
use crate::timefmt;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn time_text(time: OffsetDateTime) -> String {
    timefmt::format(time)
}

pub(super) fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.as_str())).collect())
}

/// Reads typed attributes out of an item, naming what is missing.
pub(super) struct Reader<'a>(pub(super) &'a Item);

impl Reader<'_> {
    pub(super) fn string(&self, name: &str) -> Result<String, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt(format!("`{name}` is not a string"))),
        }
    }

    pub(super) fn optional_string(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        }
    }

    pub(super) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("`{name}` is out of range"))),
            _ => Err(StoreError::Corrupt(format!("`{name}` is not a number"))),
        }
    }

    pub(super) fn optional_number<T: std::str::FromStr>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(_) => self.number(name).map(Some),
        }
    }

    fn boolean(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(AttributeValue::Bool(true)))
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| match v {
                    AttributeValue::S(s) => Ok(s.clone()),
                    _ => Err(StoreError::Corrupt(format!("`{name}` holds a non-string"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(StoreError::Corrupt(format!("`{name}` is not a list"))),
        }
    }

    fn time(&self, name: &str) -> Result<OffsetDateTime, StoreError> {
        timefmt::parse(&self.string(name)?)
            .ok_or_else(|| StoreError::Corrupt(format!("`{name}` is not an RFC 3339 time")))
    }

    fn optional_time(&self, name: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(_) => self.time(name).map(Some),
        }
    }

    pub(super) fn id<T>(&self, name: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.string(name)?;
        parse(&text).ok_or_else(|| StoreError::Corrupt(format!("`{name}` is not an id: {text}")))
    }
}

// --- endpoints ---

/// An endpoint's attributes with its secrets, without its key.
pub(super) fn endpoint_item(endpoint: &Endpoint, secrets: &EndpointSecrets) -> Item {
    let mut item: Item = HashMap::from([
        ("id".into(), s(endpoint.id.as_str())),
        ("account".into(), s(endpoint.account.as_str())),
        ("url".into(), s(endpoint.url.as_str())),
        ("description".into(), s(endpoint.description.as_str())),
        ("version".into(), n(endpoint.version)),
        ("event_types".into(), list(&endpoint.event_types)),
        ("format".into(), s(endpoint.format.as_str())),
        ("disabled".into(), AttributeValue::Bool(endpoint.disabled)),
        ("created_at".into(), s(time_text(endpoint.created_at))),
        ("updated_at".into(), s(time_text(endpoint.updated_at))),
        ("secret".into(), s(secrets.current.expose())),
    ]);
    if let Some(datasets) = &endpoint.datasets {
        item.insert("datasets".into(), list(datasets));
    }
    if let Some((previous, expires_at)) = &secrets.previous {
        item.insert("previous_secret".into(), s(previous.expose()));
        item.insert(
            "previous_secret_expires_at".into(),
            s(time_text(*expires_at)),
        );
    }
    item
}

pub(super) fn endpoint_from_item(item: &Item) -> Result<Endpoint, StoreError> {
    let r = Reader(item);
    Ok(Endpoint {
        id: r.id("id", EndpointId::parse)?,
        account: r.string("account")?,
        url: r.string("url")?,
        description: r.optional_string("description").unwrap_or_default(),
        version: r.number("version")?,
        event_types: r.strings("event_types")?.unwrap_or_default(),
        datasets: r.strings("datasets")?,
        format: Format::parse(&r.string("format")?)
            .ok_or_else(|| StoreError::Corrupt("`format` is unknown".into()))?,
        disabled: r.boolean("disabled"),
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(super) fn secrets_from_item(item: &Item) -> Result<EndpointSecrets, StoreError> {
    let r = Reader(item);
    let parse = |text: String| {
        Secret::parse(&text).map_err(|e| StoreError::Corrupt(format!("a secret: {e}")))
    };
    let current = parse(r.string("secret")?)?;
    let previous = match (
        r.optional_string("previous_secret"),
        r.optional_time("previous_secret_expires_at")?,
    ) {
        (Some(secret), Some(expires_at)) => Some((parse(secret)?, expires_at)),
        _ => None,
    };
    Ok(EndpointSecrets { current, previous })
}

// --- messages ---

/// A message's attributes, without its key and expiry.
pub(super) fn message_item(message: &Message) -> Item {
    HashMap::from([
        ("id".into(), s(message.id.as_str())),
        ("account".into(), s(message.account.as_str())),
        ("event_type".into(), s(message.event_type.as_str())),
        ("dataset".into(), s(message.dataset.as_str())),
        ("created_at".into(), s(message.created_at.as_str())),
        ("payload".into(), s(message.payload.as_str())),
        ("received_at".into(), s(time_text(message.received_at))),
    ])
}

pub(super) fn message_from_item(item: &Item) -> Result<Message, StoreError> {
    let r = Reader(item);
    Ok(Message {
        id: r.id("id", MessageId::parse)?,
        account: r.string("account")?,
        event_type: r.string("event_type")?,
        dataset: r.string("dataset")?,
        created_at: r.string("created_at")?,
        payload: r.string("payload")?,
        received_at: r.time("received_at")?,
    })
}

// --- attempts ---

/// An attempt's attributes, without its keys and expiry.
pub(super) fn attempt_item(attempt: &Attempt) -> Item {
    let mut item: Item = HashMap::from([
        ("id".into(), s(attempt.id.as_str())),
        ("message_id".into(), s(attempt.message_id.as_str())),
        ("endpoint_id".into(), s(attempt.endpoint_id.as_str())),
        ("account".into(), s(attempt.account.as_str())),
        ("event_type".into(), s(attempt.event_type.as_str())),
        ("attempt".into(), n(attempt.attempt)),
        ("status".into(), s(attempt.status.as_str())),
        ("response_body".into(), s(attempt.response_body.as_str())),
        ("duration_ms".into(), n(attempt.duration_ms)),
        ("timestamp".into(), s(time_text(attempt.timestamp))),
    ]);
    if let Some(status) = attempt.response_status {
        item.insert("response_status".into(), n(status));
    }
    if let Some(error) = &attempt.error {
        item.insert("error".into(), s(error.as_str()));
    }
    if let Some(next) = attempt.next_attempt_at {
        item.insert("next_attempt_at".into(), s(time_text(next)));
    }
    item
}

pub(super) fn attempt_from_item(item: &Item) -> Result<Attempt, StoreError> {
    let r = Reader(item);
    Ok(Attempt {
        id: r.id("id", AttemptId::parse)?,
        message_id: r.id("message_id", MessageId::parse)?,
        endpoint_id: r.id("endpoint_id", EndpointId::parse)?,
        account: r.string("account")?,
        event_type: r.string("event_type")?,
        attempt: r.number("attempt")?,
        status: AttemptStatus::parse(&r.string("status")?)
            .ok_or_else(|| StoreError::Corrupt("`status` is unknown".into()))?,
        response_status: r.optional_number("response_status")?,
        response_body: r.optional_string("response_body").unwrap_or_default(),
        error: r.optional_string("error"),
        duration_ms: r.number("duration_ms")?,
        timestamp: r.time("timestamp")?,
        next_attempt_at: r.optional_time("next_attempt_at")?,
    })
}
