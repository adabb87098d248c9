//! Every key the table's items use, in one place; why they are shaped so:
//! `docs/adr/0001-single-table.md`.
//!
//! | item | `pk` | `sk` | index keys |
//! | --- | --- | --- | --- |
//! | platform key | `KEY#<sha256 hex>` | `KEY` | `gsi1pk = KEYS`, `gsi1sk = <key_id>` |
//! | endpoint | `ACCT#<account>` | `EP#<ep_id>` | while failing: `gsi1pk = FAILING`, `gsi1sk = <failing_since>` |
//! | endpoint count | `ACCT#<account>` | `COUNT` | |
//! | account settings | `ACCT#<account>` | `SETTINGS` | |
//! | registered event type | `EVENTTYPES` | `ET#<name>` | |
//! | portal token | `PORTAL#<sha256 hex>` | `PORTAL` | |
//! | message | `MSG#<msg_id>` | `MSG` | |
//! | idempotency record | `IDEM#<account>#<key>` | `IDEM` | |
//! | email endpoint's event | `EMAIL#<account>#<ep_id>` | `E#<window start>#<msg_id>` | |
//! | email's claim (a window, a digest) | `EMAIL#<account>#<ep_id>` | `W#<window start>`, `D#<period end>`, `N#<request id>` | |
//! | email due to be sent | `EMAILDUE` | `<due at>#<ep_id>#<claim sk>` | |
//! | attempt | `MSG#<msg_id>` | `ATT#<atmpt_id>` | `gsi1pk = EPATT#<account>#<ep_id>`, `gsi1sk = <atmpt_id>`; `gsi2pk = EPATT#<account>#<ep_id>#<status>`, `gsi2sk = <atmpt_id>` |

use std::collections::HashMap;

use super::codec::{Item, s};
use super::schema::{PARTITION_KEY as PK, SORT_KEY as SK};
use crate::account::Account;
use crate::event_type::EventType;
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::AttemptStatus;

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.into(), s(pk)), (SK.into(), s(sk))])
}

// --- platform keys ---

pub(super) fn api_key_pk(key_hash: &str) -> String {
    format!("KEY#{key_hash}")
}

pub(super) const API_KEY_SK: &str = "KEY";

/// `gsi1`'s partition of every platform key, for listing them.
pub(super) const API_KEYS_INDEX_PK: &str = "KEYS";

// --- endpoints ---

/// The partition of an account's endpoints.
pub(super) fn account_pk(account: &Account) -> String {
    format!("ACCT#{account}")
}

/// What every endpoint's sort key begins with.
pub(super) const ENDPOINT_SK_PREFIX: &str = "EP#";

pub(super) fn endpoint_key(account: &Account, id: &EndpointId) -> Item {
    key(account_pk(account), format!("{ENDPOINT_SK_PREFIX}{id}"))
}

/// The item that counts an account's endpoints: in their partition, outside
/// their sort keys.
pub(super) fn endpoint_count_key(account: &Account) -> Item {
    key(account_pk(account), ENDPOINT_COUNT_SK)
}

const ENDPOINT_COUNT_SK: &str = "COUNT";

/// The account's settings item sorts after every endpoint, with nothing between
/// (the account partition holds only `COUNT`, `EP#…` and `SETTINGS`), so the
/// fan-out reads the endpoints and the settings in one Query from
/// [`ENDPOINT_SK_PREFIX`] to here.
pub(super) const SETTINGS_SK: &str = "SETTINGS";

pub(super) fn account_settings_key(account: &Account) -> Item {
    key(account_pk(account), SETTINGS_SK)
}

// --- registered event types ---

/// Every registered event type shares one partition: the registry is one Query.
pub(super) const EVENT_TYPES_PK: &str = "EVENTTYPES";

pub(super) fn event_type_key(name: &EventType) -> Item {
    key(EVENT_TYPES_PK.to_string(), format!("ET#{name}"))
}

// --- portal tokens ---

pub(super) fn portal_token_key(token_hash: &str) -> Item {
    key(format!("PORTAL#{token_hash}"), "PORTAL")
}

// --- messages and their idempotency records ---

pub(super) fn message_pk(id: &MessageId) -> String {
    format!("MSG#{id}")
}

pub(super) const MESSAGE_SK: &str = "MSG";

pub(super) fn message_key(id: &MessageId) -> Item {
    key(message_pk(id), MESSAGE_SK)
}

pub(super) fn idempotency_pk(account: &Account, key: &str) -> String {
    format!("IDEM#{account}#{key}")
}

pub(super) const IDEMPOTENCY_SK: &str = "IDEM";

pub(super) fn idempotency_record_key(account: &Account, idempotency_key: &str) -> Item {
    key(idempotency_pk(account, idempotency_key), IDEMPOTENCY_SK)
}

// --- attempts ---

/// What every attempt's sort key (in its message's partition) begins with.
pub(super) const ATTEMPT_SK_PREFIX: &str = "ATT#";

pub(super) fn attempt_sk(id: &AttemptId) -> String {
    format!("{ATTEMPT_SK_PREFIX}{id}")
}

/// `gsi1`'s partition: the attempts to one endpoint.
pub(super) fn endpoint_attempts_pk(account: &Account, endpoint: &EndpointId) -> String {
    format!("EPATT#{account}#{endpoint}")
}

/// `gsi2`'s partition: the attempts to one endpoint with one status.
pub(super) fn endpoint_attempts_by_status_pk(
    account: &Account,
    endpoint: &EndpointId,
    status: AttemptStatus,
) -> String {
    format!(
        "{}#{}",
        endpoint_attempts_pk(account, endpoint),
        status.as_str()
    )
}

// --- email endpoints ---

/// An email endpoint's partition: the events it gathered and the claims of its emails.
pub(super) fn email_pk(account: &Account, endpoint: &EndpointId) -> String {
    format!("EMAIL#{account}#{endpoint}")
}

/// The one partition of every email due: the scheduler's Query, oldest first.
pub(super) const EMAIL_DUE_PK: &str = "EMAILDUE";

/// A time as a sort key: zero-padded epoch seconds, so text order is time order.
pub(super) fn time_sk(time: time::OffsetDateTime) -> String {
    format!("{:012}", time.unix_timestamp().max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_sort_after_every_endpoint_and_the_count_before() {
        let endpoint = format!("{ENDPOINT_SK_PREFIX}{}", EndpointId::new());
        assert!(
            ENDPOINT_COUNT_SK < ENDPOINT_SK_PREFIX,
            "the count is outside the range"
        );
        assert!(ENDPOINT_SK_PREFIX < endpoint.as_str());
        assert!(endpoint.as_str() < SETTINGS_SK);
    }
}
