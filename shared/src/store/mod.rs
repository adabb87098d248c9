//! The DynamoDB adapter: the only code that reads or writes the table.
//! Key layout and why: `docs/adr/0001-single-table.md`.
//!
//! - [`schema`]: the table's names and its creation, for local runs and tests;
//! - `keys`: every partition and sort key the items use, in one place;
//! - `codec`: stored items to and from the domain types;
//! - one module per kind of item, each adding its methods to [`Store`]:
//!   - `api_keys`: a platform key is one GetItem by its hash;
//!   - `endpoints`: an account's endpoints share its partition, so fan-out
//!     and listing are one Query; updates are conditional on what was read;
//!   - `messages`: a message is one item in its own partition, stored once per
//!     idempotency key through a conditional claim;
//!   - `attempts`: an attempt sits in its message's partition and is indexed
//!     by endpoint (`gsi1`) and by endpoint and status (`gsi2`).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

mod api_keys;
mod attempts;
mod codec;
mod endpoints;
mod keys;
mod messages;
pub mod schema;

pub use messages::{FAN_OUT_LEASE, Inserted};

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
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
        }
    }

    fn expires_at(&self) -> AttributeValue {
        n((OffsetDateTime::now_utc() + self.retention).unix_timestamp())
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

fn is_condition_failure<E: ProvideErrorMetadata, R>(
    error: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}
