//! The DynamoDB adapter: the only code that reads or writes the table.
//! Key layout and why: `docs/adr/0001-single-table.md`.
//!
//! - [`schema`]: the table's names and its creation, for local runs and tests;
//! - `keys`: every partition and sort key the items use, in one place;
//! - `codec`: stored items to and from the domain types;
//! - one module per kind of item, each adding its methods to [`Store`]:
//!   - `api_keys`: a platform key is one GetItem by its hash, trusted by the
//!     instance for a while after;
//!   - `endpoints`: an account's endpoints share its partition, so fan-out
//!     and listing are one Query; updates are conditional on what was read;
//!     a create or delete changes the account's endpoint count in the same
//!     transaction, which keeps an account within its limit;
//!   - `messages`: a message is one item in its own partition, stored once per
//!     idempotency key through a claim written in the same transaction;
//!   - `attempts`: an attempt sits in its message's partition and is indexed
//!     by endpoint (`gsi1`) and by endpoint and status (`gsi2`);
//!   - `settings`: an account's settings, one item after its endpoints, so the
//!     fan-out's Query reads them too;
//!   - `event_types`: the registered event types share one partition, so the
//!     registry is one Query; writes are conditional and carry a token;
//!   - `email`: an email endpoint's events by window, its emails' claims, and
//!     the one partition of emails due, which the scheduler Queries;
//!   - `portal`: portal tokens by their hash, and the account's portal
//!     generation (in its settings item) that revokes them all at once.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, TransactWriteItem,
};
use time::OffsetDateTime;

mod api_keys;
mod attempts;
mod codec;
mod email;
mod endpoints;
mod event_types;
mod keys;
mod messages;
mod portal;
pub mod schema;
mod settings;

pub use api_keys::KNOWN_KEY_TTL;
pub use attempts::{AttemptOutcome, attempt_id_before, attempt_id_bounds};
pub use email::{DueEmail, EmailClaim, EmailEnd, EmailWork};
pub use endpoints::{AccountEndpoints, Creation, MAX_ENDPOINTS_PER_ACCOUNT};
pub use messages::{Claim, FAN_OUT_LEASE, Inserted};

use codec::n;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    #[error("a stored item is malformed: {0}")]
    Corrupt(String),
}

fn aws_error<E>(operation: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |error| StoreError::Aws {
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// The pauses before what a batch call left unprocessed is sent again; after the
/// last (zero) the call gives up.
const UNPROCESSED_PAUSES: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
    Duration::ZERO,
];

/// BatchGetItem takes at most 100 keys.
const BATCH_GET: usize = 100;

/// How often a transaction that a concurrent one on the same items cancelled is sent.
const TRANSACTION_ATTEMPTS: usize = 3;

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
    retention: Duration,
    /// Shared by the clones of an instance's store.
    known_keys: Arc<api_keys::KnownKeys>,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            known_keys: Arc::default(),
        }
    }

    /// The item under `key`, read consistently (a write just made is seen); `None`
    /// when there is none.
    async fn read_item(&self, key: codec::Item) -> Result<Option<codec::Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        Ok(output.item)
    }

    /// The items of `keys` that exist, in no particular order: 100 keys per
    /// BatchGetItem, what DynamoDB left unprocessed read again after a pause.
    async fn read_items(
        &self,
        keys: Vec<codec::Item>,
        consistent: bool,
    ) -> Result<Vec<codec::Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(BATCH_GET) {
            let mut asked = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(consistent)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for pause in UNPROCESSED_PAUSES {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, asked)
                    .send()
                    .await
                    .map_err(aws_error("BatchGetItem"))?;
                found.extend(
                    output
                        .responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                match output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                {
                    Some(left) if !left.keys().is_empty() => asked = left,
                    _ => break,
                }
                if pause.is_zero() {
                    return Err(StoreError::Aws {
                        operation: "BatchGetItem",
                        message: format!("{} keys left unprocessed", asked.keys().len()),
                    });
                }
                tokio::time::sleep(pause).await;
            }
        }
        Ok(found)
    }

    fn expires_at(&self) -> AttributeValue {
        n((OffsetDateTime::now_utc() + self.retention).unix_timestamp())
    }

    /// Writes `items` in one transaction: `None` when written, else why it was
    /// cancelled (one reason per item, in order). One cancelled by a concurrent
    /// transaction on the same items is sent again. The SDK gives each call a
    /// `ClientRequestToken` and keeps it across its own retries, so in DynamoDB a
    /// call whose answer was lost takes effect once; the emulator ignores the
    /// token, so callers also recognise their own earlier write by its conditions.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<CancellationReason>>, StoreError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(None),
                Err(error) => match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                        cancelled.cancellation_reasons().to_vec()
                    }
                    _ => return Err(aws_error("TransactWriteItems")(error)),
                },
            };
            let conflict = reasons
                .iter()
                .any(|reason| reason.code() == Some("TransactionConflict"));
            if !conflict || attempts == TRANSACTION_ATTEMPTS {
                return Ok(Some(reasons));
            }
        }
    }
}

/// A conditional write's outcome: `true` when written, `false` when its condition did not hold.
fn applied<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    operation: &'static str,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(aws_error(operation)(e)),
    }
}

/// Whether a transaction's item was cancelled because its condition did not hold.
fn is_condition_failed(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

/// A cancelled transaction none of whose conditions explains the cancellation.
fn cancelled(reasons: &[CancellationReason]) -> StoreError {
    let codes: Vec<&str> = reasons
        .iter()
        .filter_map(CancellationReason::code)
        .collect();
    StoreError::Aws {
        operation: "TransactWriteItems",
        message: format!("the transaction was cancelled: {}", codes.join(", ")),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(
    error: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}
