//! Stored items to and from the domain types, through one record struct per kind of
//! item. The attribute names are the table's: other code and tests read them, so
//! they change only with a migration. A record's field is optional only where the
//! item may lack it by design; anything else missing or mistyped is
//! [`StoreError::Corrupt`], never a default.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::types::AttributeValue;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::{AttemptOutcome, StoreError};
use crate::account::Account;
use crate::email::EmailSettings;
use crate::event_type::EventType;
use crate::ids::{ApiKeyId, AttemptId, EndpointId, MessageId};
use crate::keys::ApiKey;
use crate::model::{Attempt, AttemptStatus, Endpoint, EndpointSecrets, Format, Message};
use crate::portal::PortalToken;
use crate::registry::RegisteredType;
use crate::settings::AccountSettings;
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

pub(super) fn list(values: &[impl ToString]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.to_string())).collect())
}

fn to_item(record: impl Serialize) -> Item {
    serde_dynamo::to_item(record).expect("a record of strings, numbers, lists and flags serializes")
}

/// Reads a record out of an item; `what` names the kind of item in the error.
fn from_item<'a, T: Deserialize<'a>>(item: &Item, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

// --- endpoints ---

/// An endpoint's settings as stored; its secrets are [`SecretsRecord`], in the same item.
#[derive(Serialize, Deserialize)]
struct EndpointRecord {
    id: EndpointId,
    account: Account,
    url: String,
    description: String,
    version: u32,
    event_types: Vec<EventType>,
    /// Absent: every dataset of the account (absent by design, not by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datasets: Option<Vec<String>>,
    format: Format,
    disabled: bool,
    /// Present only while hookline has the endpoint disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// Present only during a run of failures.
    #[serde(
        default,
        with = "crate::timefmt::option",
        skip_serializing_if = "Option::is_none"
    )]
    failing_since: Option<OffsetDateTime>,
    /// Present on email endpoints only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<EmailSettings>,
    #[serde(with = "crate::timefmt")]
    created_at: OffsetDateTime,
    #[serde(with = "crate::timefmt")]
    updated_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct SecretsRecord {
    secret: String,
    /// Present, with its expiry, only after a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_secret: Option<String>,
    #[serde(
        default,
        with = "crate::timefmt::option",
        skip_serializing_if = "Option::is_none"
    )]
    previous_secret_expires_at: Option<OffsetDateTime>,
}

/// An endpoint's attributes with its secrets, without its key.
pub(super) fn endpoint_item(endpoint: &Endpoint, secrets: &EndpointSecrets) -> Item {
    let mut item = settings_item(endpoint);
    item.extend(secrets_item(secrets));
    item
}

/// An email endpoint's settings as one map attribute.
pub(super) fn email_settings(settings: &EmailSettings) -> AttributeValue {
    AttributeValue::M(to_item(settings))
}

/// An endpoint's attributes without its secrets and key.
pub(super) fn settings_item(endpoint: &Endpoint) -> Item {
    to_item(EndpointRecord {
        id: endpoint.id.clone(),
        account: endpoint.account.clone(),
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        version: endpoint.version,
        event_types: endpoint.event_types.clone(),
        datasets: endpoint.datasets.clone(),
        format: endpoint.format,
        disabled: endpoint.disabled,
        disabled_reason: endpoint.disabled_reason.clone(),
        failing_since: endpoint.failing_since,
        email: endpoint.email.clone(),
        created_at: endpoint.created_at,
        updated_at: endpoint.updated_at,
    })
}

pub(super) fn secrets_item(secrets: &EndpointSecrets) -> Item {
    to_item(SecretsRecord {
        secret: secrets.current.expose().to_string(),
        previous_secret: secrets
            .previous
            .as_ref()
            .map(|(secret, _)| secret.expose().to_string()),
        previous_secret_expires_at: secrets.previous.as_ref().map(|(_, expires_at)| *expires_at),
    })
}

pub(super) fn endpoint_from_item(item: &Item) -> Result<Endpoint, StoreError> {
    let r: EndpointRecord = from_item(item, "an endpoint")?;
    Ok(Endpoint {
        id: r.id,
        account: r.account,
        url: r.url,
        description: r.description,
        version: r.version,
        event_types: r.event_types,
        datasets: r.datasets,
        format: r.format,
        disabled: r.disabled,
        disabled_reason: r.disabled_reason,
        failing_since: r.failing_since,
        email: r.email,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// A failing endpoint as the sparse index of them returns it: which one.
pub(super) fn failing_endpoint_from_item(item: &Item) -> Result<(Account, EndpointId), StoreError> {
    #[derive(Deserialize)]
    struct Projected {
        account: Account,
        id: EndpointId,
    }
    from_item::<Projected>(item, "a failing endpoint").map(|p| (p.account, p.id))
}

pub(super) fn secrets_from_item(item: &Item) -> Result<EndpointSecrets, StoreError> {
    let r: SecretsRecord = from_item(item, "an endpoint's secrets")?;
    let parse =
        |text: &str| Secret::parse(text).map_err(|e| StoreError::Corrupt(format!("a secret: {e}")));
    let previous = match (r.previous_secret, r.previous_secret_expires_at) {
        (Some(secret), Some(expires_at)) => Some((parse(&secret)?, expires_at)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(
                "a previous secret without its expiry, or an expiry without its secret".into(),
            ));
        }
    };
    Ok(EndpointSecrets {
        current: parse(&r.secret)?,
        previous,
    })
}

// --- messages ---

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    id: MessageId,
    account: Account,
    event_type: EventType,
    dataset: String,
    created_at: String,
    #[serde(with = "crate::timefmt")]
    received_at: OffsetDateTime,
}

/// The attribute holding a payload stored as text.
const PAYLOAD: &str = "payload";
/// The attribute holding a payload stored deflated (raw DEFLATE, RFC 1951).
const PAYLOAD_DEFLATE: &str = "payload_deflate";
/// Payloads shorter than this are stored as text: deflating them saves too little
/// to matter.
const DEFLATE_FROM: usize = 256;

/// A message's attributes, without its key and expiry. A payload of
/// [`DEFLATE_FROM`] bytes or more is stored deflated (JSON text always shrinks): a
/// typical 1 KiB event then fits an item under 1 KiB, one write unit, not two.
pub(super) fn message_item(message: &Message) -> Item {
    let mut item = to_item(MessageRecord {
        id: message.id.clone(),
        account: message.account.clone(),
        event_type: message.event_type.clone(),
        dataset: message.dataset.clone(),
        created_at: message.created_at.clone(),
        received_at: message.received_at,
    });
    let payload = &message.payload;
    if payload.len() >= DEFLATE_FROM {
        let deflated = deflate(payload.as_bytes());
        item.insert(PAYLOAD_DEFLATE.into(), AttributeValue::B(deflated.into()));
    } else {
        item.insert(PAYLOAD.into(), s(payload));
    }
    item
}

pub(super) fn message_from_item(item: &Item) -> Result<Message, StoreError> {
    let r: MessageRecord = from_item(item, "a message")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("a message: {what}"));
    let payload = match (item.get(PAYLOAD), item.get(PAYLOAD_DEFLATE)) {
        (Some(AttributeValue::S(text)), None) => text.clone(),
        (None, Some(AttributeValue::B(deflated))) => inflate(deflated.as_ref())
            .ok_or_else(|| corrupt("a payload that does not inflate to text"))?,
        _ => return Err(corrupt("not exactly one payload, as text or deflated")),
    };
    Ok(Message {
        id: r.id,
        account: r.account,
        event_type: r.event_type,
        dataset: r.dataset,
        created_at: r.created_at,
        payload,
        received_at: r.received_at,
    })
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    thread_local! {
        // An encoder's state is a few hundred KiB: allocated (and its pages faulted
        // in) once per thread, not once per payload. The fastest level: on event
        // JSON it deflates within a few percent of the default level's size.
        static ENCODER: RefCell<DeflateEncoder<Vec<u8>>> =
            RefCell::new(DeflateEncoder::new(Vec::new(), Compression::fast()));
    }
    ENCODER.with_borrow_mut(|encoder| {
        encoder
            .write_all(bytes)
            .expect("writing to a Vec does not fail");
        // Finishes this payload's stream and starts the next one afresh.
        encoder
            .reset(Vec::new())
            .expect("writing to a Vec does not fail")
    })
}

/// The text `deflated` holds, or `None` if it is not DEFLATE data of UTF-8 text.
fn inflate(deflated: &[u8]) -> Option<String> {
    let mut text = String::new();
    DeflateDecoder::new(deflated)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// An idempotency record as a repeat reads it: whose message, and whether its
/// fan-out is done (`state`) or still leased (`lease_until`, epoch milliseconds).
#[derive(Debug, Deserialize)]
pub(super) struct ClaimRecord {
    pub(super) message_id: MessageId,
    pub(super) state: String,
    /// Removed once the fan-out is done.
    #[serde(default)]
    pub(super) lease_until: Option<i64>,
    /// SHA-256 of the event the key came with; absent from claims written before
    /// fingerprints were kept.
    #[serde(default)]
    pub(super) fingerprint: Option<String>,
}

pub(super) fn claim_from_item(item: &Item) -> Result<ClaimRecord, StoreError> {
    from_item(item, "an idempotency record")
}

// --- platform keys ---

#[derive(Serialize, Deserialize)]
struct ApiKeyRecord {
    id: ApiKeyId,
    key_hash: String,
    prefix: String,
    #[serde(with = "crate::timefmt")]
    created_at: OffsetDateTime,
}

/// A platform key's attributes, without its keys.
pub(super) fn api_key_item(key: &ApiKey) -> Item {
    to_item(ApiKeyRecord {
        id: key.id.clone(),
        key_hash: key.key_hash.clone(),
        prefix: key.prefix.clone(),
        created_at: key.created_at,
    })
}

pub(super) fn api_key_from_item(item: &Item) -> Result<ApiKey, StoreError> {
    let r: ApiKeyRecord = from_item(item, "a platform key")?;
    Ok(ApiKey {
        id: r.id,
        key_hash: r.key_hash,
        prefix: r.prefix,
        created_at: r.created_at,
    })
}

// --- registered event types ---

#[derive(Serialize, Deserialize)]
struct EventTypeRecord {
    name: EventType,
    description: String,
    /// The schema as JSON text: DynamoDB's numbers and maps would not keep it as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text_template: Option<String>,
    archived: bool,
    #[serde(with = "crate::timefmt")]
    created_at: OffsetDateTime,
    #[serde(with = "crate::timefmt")]
    updated_at: OffsetDateTime,
    /// The write that made this version, so a write whose answer was lost knows its own.
    written_by: String,
}

/// A registered type's attributes, without its keys, as written by `written_by`.
pub(super) fn event_type_item(registered: &RegisteredType, written_by: &str) -> Item {
    to_item(EventTypeRecord {
        name: registered.name.clone(),
        description: registered.description.clone(),
        schema: registered.schema.as_ref().map(Value::to_string),
        text_template: registered.text_template.clone(),
        archived: registered.archived,
        created_at: registered.created_at,
        updated_at: registered.updated_at,
        written_by: written_by.to_string(),
    })
}

/// A registered type, and the write that made this version of it.
pub(super) fn event_type_from_item(item: &Item) -> Result<(RegisteredType, String), StoreError> {
    let r: EventTypeRecord = from_item(item, "an event type")?;
    let schema = r
        .schema
        .map(|text| serde_json::from_str::<Value>(&text))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("an event type's schema: {e}")))?;
    let registered = RegisteredType {
        name: r.name,
        description: r.description,
        schema,
        text_template: r.text_template,
        archived: r.archived,
        created_at: r.created_at,
        updated_at: r.updated_at,
    };
    Ok((registered, r.written_by))
}

// --- account settings ---

/// The account's settings item. It exists once a setting was changed or the
/// account's portal sessions were revoked, so either attribute may be absent.
#[derive(Serialize, Deserialize)]
struct AccountRecord {
    /// Absent until first changed: enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhooks_enabled: Option<bool>,
    /// Absent until the account's portal sessions are first revoked: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    portal_generation: Option<u64>,
}

pub(super) fn account_settings_from_item(item: &Item) -> Result<AccountSettings, StoreError> {
    let r: AccountRecord = from_item(item, "an account's settings")?;
    let defaults = AccountSettings::default();
    Ok(AccountSettings {
        webhooks_enabled: r.webhooks_enabled.unwrap_or(defaults.webhooks_enabled),
    })
}

pub(super) fn portal_generation_from_item(item: &Item) -> Result<u64, StoreError> {
    let r: AccountRecord = from_item(item, "an account's settings")?;
    Ok(r.portal_generation.unwrap_or(0))
}

// --- portal tokens ---

#[derive(Serialize, Deserialize)]
struct PortalTokenRecord {
    token_hash: String,
    account: Account,
    generation: u64,
    /// Epoch seconds: also the table's TTL attribute.
    expires_at: i64,
}

pub(super) fn portal_token_item(token: &PortalToken) -> Item {
    to_item(PortalTokenRecord {
        token_hash: token.token_hash.clone(),
        account: token.account.clone(),
        generation: token.generation,
        expires_at: token.expires_at.unix_timestamp(),
    })
}

pub(super) fn portal_token_from_item(item: &Item) -> Result<PortalToken, StoreError> {
    let r: PortalTokenRecord = from_item(item, "a portal token")?;
    Ok(PortalToken {
        token_hash: r.token_hash,
        account: r.account,
        generation: r.generation,
        expires_at: OffsetDateTime::from_unix_timestamp(r.expires_at)
            .map_err(|e| StoreError::Corrupt(format!("a portal token's expiry: {e}")))?,
    })
}

// --- attempts ---

#[derive(Serialize, Deserialize)]
struct AttemptRecord {
    id: AttemptId,
    message_id: MessageId,
    endpoint_id: EndpointId,
    account: Account,
    event_type: EventType,
    attempt: u32,
    status: AttemptStatus,
    /// Absent when no answer came (a refused connection, a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_status: Option<u16>,
    response_body: String,
    /// Absent when the endpoint answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: u64,
    #[serde(with = "crate::timefmt")]
    timestamp: OffsetDateTime,
    /// Absent after the last attempt, or a success.
    #[serde(
        default,
        with = "crate::timefmt::option",
        skip_serializing_if = "Option::is_none"
    )]
    next_attempt_at: Option<OffsetDateTime>,
}

/// An attempt's attributes, without its keys and expiry.
pub(super) fn attempt_item(attempt: &Attempt) -> Item {
    to_item(AttemptRecord {
        id: attempt.id.clone(),
        message_id: attempt.message_id.clone(),
        endpoint_id: attempt.endpoint_id.clone(),
        account: attempt.account.clone(),
        event_type: attempt.event_type.clone(),
        attempt: attempt.attempt,
        status: attempt.status,
        response_status: attempt.response_status,
        response_body: attempt.response_body.clone(),
        error: attempt.error.clone(),
        duration_ms: attempt.duration_ms,
        timestamp: attempt.timestamp,
        next_attempt_at: attempt.next_attempt_at,
    })
}

pub(super) fn attempt_from_item(item: &Item) -> Result<Attempt, StoreError> {
    let r: AttemptRecord = from_item(item, "an attempt")?;
    Ok(Attempt {
        id: r.id,
        message_id: r.message_id,
        endpoint_id: r.endpoint_id,
        account: r.account,
        event_type: r.event_type,
        attempt: r.attempt,
        status: r.status,
        response_status: r.response_status,
        response_body: r.response_body,
        error: r.error,
        duration_ms: r.duration_ms,
        timestamp: r.timestamp,
        next_attempt_at: r.next_attempt_at,
    })
}

/// What recovery reads of an attempt: a projection of its item.
pub(super) fn attempt_outcome_from_item(item: &Item) -> Result<AttemptOutcome, StoreError> {
    from_item(item, "an attempt")
}

/// The endpoint an attempt went to: a projection of its item.
pub(super) fn attempt_endpoint_from_item(item: &Item) -> Result<EndpointId, StoreError> {
    #[derive(Deserialize)]
    struct Projected {
        endpoint_id: EndpointId,
    }
    from_item::<Projected>(item, "an attempt").map(|p| p.endpoint_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> (Endpoint, EndpointSecrets) {
        let now = OffsetDateTime::now_utc();
        // Settings off their defaults, so that reading each back is checked.
        let endpoint = Endpoint {
            description: "orders".into(),
            format: Format::Slack,
            disabled: true,
            disabled_reason: Some("it answered 410 Gone".into()),
            failing_since: Some(now),
            ..crate::model::fixtures::endpoint(&["sample.created"], Some(&["jane/flowers"]))
        };
        let secrets = EndpointSecrets {
            current: Secret::generate(),
            previous: Some((Secret::generate(), now)),
        };
        (endpoint, secrets)
    }

    fn message() -> Message {
        Message {
            id: MessageId::new(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            dataset: "jane/flowers".into(),
            created_at: "2021-08-09T14:40:19.987691Z".into(),
            payload: "{}".into(),
            received_at: OffsetDateTime::now_utc(),
        }
    }

    /// Every way an attribute can be corrupt: missing, null, of another type, or
    /// (for a string) a word outside its domain.
    fn corruptions() -> Vec<Option<AttributeValue>> {
        vec![
            None,
            Some(AttributeValue::Null(true)),
            Some(n(1)),
            Some(AttributeValue::Bool(false)),
            Some(AttributeValue::L(vec![n(1)])),
            Some(s("enabled")),
        ]
    }

    /// Reading `item` with `name` corrupted is [`StoreError::Corrupt`], for every
    /// corruption but a value of the attribute's own type (which may be valid) and,
    /// for an `optional` attribute, absence or null.
    fn assert_refused<T: std::fmt::Debug>(
        item: &Item,
        name: &str,
        read: impl Fn(&Item) -> Result<T, StoreError>,
        optional: bool,
    ) {
        read(item).expect("the valid item reads");
        let own_type = std::mem::discriminant(&item[name]);
        for value in corruptions() {
            let valid = match &value {
                None | Some(AttributeValue::Null(_)) => optional,
                Some(value) => std::mem::discriminant(value) == own_type,
            };
            if valid {
                continue;
            }
            let mut corrupt = item.clone();
            match value.clone() {
                Some(value) => corrupt.insert(name.into(), value),
                None => corrupt.remove(name),
            };
            match read(&corrupt) {
                Err(StoreError::Corrupt(_)) => {}
                other => panic!("`{name}` as {value:?}: {other:?}"),
            }
        }
    }

    /// Reading `item` with `name` set to a string outside its domain is corrupt.
    fn assert_unknown_word_refused<T: std::fmt::Debug>(
        item: &Item,
        name: &str,
        read: impl Fn(&Item) -> Result<T, StoreError>,
    ) {
        let mut corrupt = item.clone();
        corrupt.insert(name.into(), s("enabled"));
        assert!(
            matches!(read(&corrupt), Err(StoreError::Corrupt(_))),
            "`{name}`"
        );
    }

    #[test]
    fn endpoints_round_trip_with_the_table_s_attribute_names() {
        let (endpoint, secrets) = endpoint();
        let item = endpoint_item(&endpoint, &secrets);
        let mut names: Vec<_> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "account",
                "created_at",
                "datasets",
                "description",
                "disabled",
                "disabled_reason",
                "event_types",
                "failing_since",
                "format",
                "id",
                "previous_secret",
                "previous_secret_expires_at",
                "secret",
                "updated_at",
                "url",
                "version"
            ]
        );
        assert_eq!(item["disabled"], AttributeValue::Bool(true));
        assert_eq!(item["format"], s("slack"));
        assert_eq!(item["event_types"], list(&endpoint.event_types));
        let read = endpoint_from_item(&item).unwrap();
        assert_eq!(settings_item(&read), settings_item(&endpoint));
        assert_eq!(
            secrets_item(&secrets_from_item(&item).unwrap()),
            secrets_item(&secrets)
        );
    }

    #[test]
    fn an_endpoint_without_datasets_or_rotation_stores_no_such_attribute() {
        let (mut endpoint, _) = endpoint();
        endpoint.datasets = None;
        endpoint.disabled_reason = None;
        endpoint.failing_since = None;
        let secrets = EndpointSecrets::new(Secret::generate());
        let item = endpoint_item(&endpoint, &secrets);
        for absent in [
            "datasets",
            "previous_secret",
            "previous_secret_expires_at",
            "disabled_reason",
            "failing_since",
        ] {
            assert!(!item.contains_key(absent), "{absent}");
        }
        assert_eq!(endpoint_from_item(&item).unwrap().datasets, None);
        assert_eq!(secrets_from_item(&item).unwrap().previous, None);
    }

    #[test]
    fn a_corrupt_endpoint_field_is_an_error_never_a_default() {
        let (endpoint, secrets) = endpoint();
        let item = endpoint_item(&endpoint, &secrets);
        for name in [
            "disabled",
            "format",
            "event_types",
            "version",
            "id",
            "account",
            "url",
            "description",
            "created_at",
            "updated_at",
        ] {
            assert_refused(&item, name, endpoint_from_item, false);
        }
        for name in ["format", "id", "created_at"] {
            assert_unknown_word_refused(&item, name, endpoint_from_item);
        }
        // Absent means every dataset, by design; anything but a list of strings is corrupt.
        assert_refused(&item, "datasets", endpoint_from_item, true);
        let mut mixed = item.clone();
        mixed.insert("event_types".into(), AttributeValue::L(vec![s("a"), n(1)]));
        assert!(matches!(
            endpoint_from_item(&mixed),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_corrupt_secret_is_an_error() {
        let (endpoint, secrets) = endpoint();
        let item = endpoint_item(&endpoint, &secrets);
        assert_refused(&item, "secret", secrets_from_item, false);
        // A previous secret comes with its expiry: one without the other is corrupt.
        assert_refused(&item, "previous_secret", secrets_from_item, false);
        assert_refused(
            &item,
            "previous_secret_expires_at",
            secrets_from_item,
            false,
        );
        for name in ["secret", "previous_secret", "previous_secret_expires_at"] {
            assert_unknown_word_refused(&item, name, secrets_from_item);
        }
    }

    #[test]
    fn a_corrupt_attempt_field_is_an_error() {
        let item = attempt_item(&crate::model::fixtures::attempt());
        assert_eq!(attempt_item(&attempt_from_item(&item).unwrap()), item);
        for name in [
            "id",
            "message_id",
            "endpoint_id",
            "account",
            "event_type",
            "attempt",
            "status",
            "response_body",
            "duration_ms",
            "timestamp",
        ] {
            assert_refused(&item, name, attempt_from_item, false);
        }
        assert_unknown_word_refused(&item, "status", attempt_from_item);
        // Absent when no answer came, or after the last attempt; never mistyped.
        for name in ["response_status", "next_attempt_at"] {
            assert_refused(&item, name, attempt_from_item, true);
        }
    }

    #[test]
    fn platform_keys_round_trip_and_a_corrupt_field_is_an_error() {
        let key = ApiKey::new(&crate::keys::generate(), OffsetDateTime::now_utc());
        let item = api_key_item(&key);
        assert_eq!(api_key_item(&api_key_from_item(&item).unwrap()), item);
        for name in ["id", "key_hash", "prefix", "created_at"] {
            assert_refused(&item, name, api_key_from_item, false);
        }
        for name in ["id", "created_at"] {
            assert_unknown_word_refused(&item, name, api_key_from_item);
        }
    }

    #[test]
    fn account_settings_read_absent_as_the_defaults_and_corrupt_as_errors() {
        let empty = Item::new();
        assert_eq!(
            account_settings_from_item(&empty).unwrap(),
            AccountSettings::default()
        );
        assert_eq!(portal_generation_from_item(&empty).unwrap(), 0);
        let item: Item = HashMap::from([
            ("webhooks_enabled".into(), AttributeValue::Bool(false)),
            ("portal_generation".into(), n(4)),
        ]);
        assert!(!account_settings_from_item(&item).unwrap().webhooks_enabled);
        assert_eq!(portal_generation_from_item(&item).unwrap(), 4);
        assert_refused(&item, "webhooks_enabled", account_settings_from_item, true);
        assert_refused(
            &item,
            "portal_generation",
            portal_generation_from_item,
            true,
        );
        let mut negative = item.clone();
        negative.insert("portal_generation".into(), n(-1));
        assert!(matches!(
            portal_generation_from_item(&negative),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn event_types_round_trip_and_a_corrupt_field_is_an_error() {
        let time = timefmt::parse("2026-01-02T03:04:05.123456Z").unwrap();
        let registered = RegisteredType {
            name: "task.submitted".parse().unwrap(),
            description: "Submitted.".into(),
            schema: Some(
                serde_json::json!({"type": "object", "properties": {"n": {"maximum": 1.5}}}),
            ),
            text_template: Some("Task {object.n}".into()),
            archived: true,
            created_at: time,
            updated_at: time,
        };
        let item = event_type_item(&registered, "w1");
        assert_eq!(
            item["schema"],
            s(r#"{"type":"object","properties":{"n":{"maximum":1.5}}}"#)
        );
        assert_eq!(
            event_type_from_item(&item).unwrap(),
            (registered.clone(), "w1".into())
        );
        let read = |item: &Item| event_type_from_item(item);
        for name in [
            "name",
            "description",
            "archived",
            "created_at",
            "updated_at",
            "written_by",
        ] {
            assert_refused(&item, name, read, false);
        }
        for name in ["schema", "text_template"] {
            assert_refused(&item, name, read, true);
        }
        let mut bad_schema = item.clone();
        bad_schema.insert("schema".into(), s("{not json"));
        assert!(matches!(read(&bad_schema), Err(StoreError::Corrupt(_))));
        let bare = event_type_item(
            &RegisteredType {
                schema: None,
                text_template: None,
                ..registered
            },
            "w2",
        );
        assert!(!bare.contains_key("schema") && !bare.contains_key("text_template"));
    }

    #[test]
    fn portal_tokens_round_trip_and_a_corrupt_field_is_an_error() {
        let token = PortalToken::new(
            "hlp_x",
            &Account::parse("jane").unwrap(),
            2,
            OffsetDateTime::now_utc(),
            time::Duration::hours(1),
        );
        let item = portal_token_item(&token);
        assert_eq!(item["expires_at"], n(token.expires_at.unix_timestamp()));
        assert_eq!(portal_token_from_item(&item).unwrap(), token);
        for name in ["token_hash", "account", "generation", "expires_at"] {
            assert_refused(&item, name, portal_token_from_item, false);
        }
    }

    #[test]
    fn a_corrupt_message_or_claim_is_an_error() {
        let item = message_item(&message());
        assert_eq!(message_item(&message_from_item(&item).unwrap()), item);
        for name in [
            "id",
            "account",
            "event_type",
            "dataset",
            "created_at",
            "payload",
            "received_at",
        ] {
            assert_refused(&item, name, message_from_item, false);
        }
        assert_unknown_word_refused(&item, "received_at", message_from_item);
        let claim: Item = HashMap::from([
            ("message_id".into(), s(MessageId::new().as_str())),
            ("state".into(), s("pending")),
            ("lease_until".into(), n(0)),
        ]);
        assert_refused(&claim, "message_id", claim_from_item, false);
        assert_refused(&claim, "state", claim_from_item, false);
        // Removed once the fan-out is done.
        assert_refused(&claim, "lease_until", claim_from_item, true);
    }

    /// Bytes DynamoDB bills for `item`: attribute names plus values (numbers and
    /// the rest approximated by their text).
    fn billed_size(item: &Item) -> usize {
        item.iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
                        AttributeValue::B(bytes) => bytes.as_ref().len(),
                        other => format!("{other:?}").len(),
                    }
            })
            .sum()
    }

    #[test]
    fn a_typical_payload_is_stored_deflated_and_reads_back() {
        // A 1 KiB label event as a platform sends it: ids, names, coordinates.
        let labels: Vec<Value> = (0..14)
            .map(|i| {
                serde_json::json!({
                    "id": format!("lbl_01HX{i:02}Q8Z3K5M7N9P2R4T6V8W"),
                    "category": (["rose", "tulip", "daisy"][i % 3]),
                    "box": [i * 37 % 640, i * 53 % 480, 40 + i, 30 + 2 * i],
                })
            })
            .collect();
        let payload =
            serde_json::json!({"type": "label.created", "data": {"labels": labels}}).to_string();
        assert!(payload.len() >= 1024, "{}", payload.len());
        let message = Message {
            payload,
            ..message()
        };
        let item = message_item(&message);
        assert!(item.contains_key(PAYLOAD_DEFLATE) && !item.contains_key(PAYLOAD));
        assert!(billed_size(&item) < 1024, "{} bytes", billed_size(&item));
        assert_eq!(message_from_item(&item).unwrap().payload, message.payload);
    }

    #[test]
    fn payloads_deflated_one_after_another_each_inflate_on_their_own() {
        // The encoder is reused: no payload may carry state over from the one before.
        let payloads: Vec<String> = ["rose", "tulip", "rose"]
            .iter()
            .enumerate()
            .map(|(i, name)| format!(r#"{{"n":{i},"names":"{}"}}"#, name.repeat(100 + i)))
            .collect();
        let deflated: Vec<Vec<u8>> = payloads.iter().map(|p| deflate(p.as_bytes())).collect();
        for (payload, deflated) in payloads.iter().zip(&deflated) {
            assert_eq!(inflate(deflated).as_ref(), Some(payload));
        }
        assert_eq!(deflated[0], deflate(payloads[0].as_bytes()));
    }

    #[test]
    fn a_short_payload_is_stored_as_text() {
        let message = Message {
            payload: r#"{"a":1}"#.into(),
            ..message()
        };
        let item = message_item(&message);
        assert_eq!(item[PAYLOAD], s(&message.payload));
        assert!(!item.contains_key(PAYLOAD_DEFLATE));
    }

    #[test]
    fn a_payload_that_does_not_inflate_or_is_stored_twice_is_corrupt() {
        let payload = "{\"blob\": \"".to_string() + &"ab".repeat(300) + "\"}";
        let item = message_item(&Message {
            payload,
            ..message()
        });
        let mut truncated = item.clone();
        let AttributeValue::B(deflated) = &item[PAYLOAD_DEFLATE] else {
            panic!("deflated")
        };
        let half = deflated.as_ref()[..deflated.as_ref().len() / 2].to_vec();
        truncated.insert(PAYLOAD_DEFLATE.into(), AttributeValue::B(half.into()));
        let mut both = item.clone();
        both.insert(PAYLOAD.into(), s("{}"));
        let mut as_text = item.clone();
        as_text.insert(PAYLOAD_DEFLATE.into(), s("{}"));
        for corrupt in [truncated, both, as_text] {
            assert!(matches!(
                message_from_item(&corrupt),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
