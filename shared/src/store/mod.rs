//! The DynamoDB adapter: the only code that reads or writes the table.
//! Key layout and why: `docs/adr/0001-single-table.md`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use time::OffsetDateTime;

use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::{Attempt, AttemptStatus, Endpoint, EndpointSecrets, Format, Message};
use crate::signing::Secret;
use crate::timefmt;

mod delivery;

/// Names the table's definition must use; `infra/template.yaml` is tested against them.
pub mod schema {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    pub const TTL_ATTRIBUTE: &str = "expires_at";
    /// `(index name, partition key, sort key)`: attempts of an endpoint; the same, by status.
    pub const INDEXES: &[(&str, &str, &str)] =
        &[("gsi1", "gsi1pk", "gsi1sk"), ("gsi2", "gsi2pk", "gsi2sk")];
}

use schema::{PARTITION_KEY as PK, SORT_KEY as SK, TTL_ATTRIBUTE};

type Item = HashMap<String, AttributeValue>;

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

/// The outcome of storing a message under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The key was seen before for this account; here is the message it made.
    Duplicate(MessageId),
    /// The key's first request stored this message but did not finish its fan-out;
    /// this request now holds the lease and fans it out again.
    Abandoned(MessageId),
}

/// How long a request holds an idempotency key while it fans its message out;
/// longer than an ingest invocation may run, so only an abandoned claim expires.
pub const FAN_OUT_LEASE: Duration = Duration::from_secs(60);

fn now_millis() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn lease_until() -> i64 {
    now_millis() + i64::try_from(FAN_OUT_LEASE.as_millis()).unwrap_or(i64::MAX)
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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn time_text(time: OffsetDateTime) -> String {
    timefmt::format(time)
}

fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.as_str())).collect())
}

fn endpoint_key(account: &str, id: &EndpointId) -> Item {
    HashMap::from([
        (PK.into(), s(format!("ACCT#{account}"))),
        (SK.into(), s(format!("EP#{id}"))),
    ])
}

fn message_pk(id: &MessageId) -> String {
    format!("MSG#{id}")
}

fn endpoint_attempts_pk(account: &str, endpoint: &EndpointId) -> String {
    format!("EPATT#{account}#{endpoint}")
}

/// Reads typed attributes out of an item, naming what is missing.
struct Reader<'a>(&'a Item);

impl Reader<'_> {
    fn string(&self, name: &str) -> Result<String, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt(format!("`{name}` is not a string"))),
        }
    }

    fn optional_string(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("`{name}` is out of range"))),
            _ => Err(StoreError::Corrupt(format!("`{name}` is not a number"))),
        }
    }

    fn optional_number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
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

    fn id<T>(&self, name: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.string(name)?;
        parse(&text).ok_or_else(|| StoreError::Corrupt(format!("`{name}` is not an id: {text}")))
    }
}

fn endpoint_from_item(item: &Item) -> Result<Endpoint, StoreError> {
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

fn secrets_from_item(item: &Item) -> Result<EndpointSecrets, StoreError> {
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

fn attempt_from_item(item: &Item) -> Result<Attempt, StoreError> {
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

    /// Creates the table as `infra/template.yaml` defines it; for local runs and tests.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let string_key = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and type are set")
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_key(PK))
            .attribute_definitions(string_key(SK))
            .key_schema(key(PK, KeyType::Hash))
            .key_schema(key(SK, KeyType::Range));
        for (index, hash, range) in schema::INDEXES {
            request = request
                .attribute_definitions(string_key(hash))
                .attribute_definitions(string_key(range))
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(*index)
                        .key_schema(key(hash, KeyType::Hash))
                        .key_schema(key(range, KeyType::Range))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .expect("name and keys are set"),
                );
        }
        request.send().await.map_err(aws_error("CreateTable"))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .expect("name and flag are set"),
            )
            .send()
            .await
            .map_err(aws_error("UpdateTimeToLive"))?;
        Ok(())
    }

    /// [`Store::create_table`], unless a table of that name is already there.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create_table().await
            }
            Err(e) => Err(aws_error("DescribeTable")(e)),
        }
    }

    // --- platform keys ---

    pub async fn put_api_key(&self, key_hash: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(format!("KEY#{key_hash}")))
            .item(SK, s("KEY"))
            .item("created_at", s(time_text(OffsetDateTime::now_utc())))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    pub async fn api_key_exists(&self, key_hash: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(format!("KEY#{key_hash}")))
            .key(SK, s("KEY"))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        Ok(output.item.is_some())
    }

    // --- endpoints ---

    /// Stores a new endpoint; fails rather than overwrite one with the same id.
    pub async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secrets: &EndpointSecrets,
    ) -> Result<(), StoreError> {
        let mut item = endpoint_key(&endpoint.account, &endpoint.id);
        item.extend([
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// An endpoint of `account` with its secrets; `None` when there is none, or it is another account's.
    pub async fn get_endpoint(
        &self,
        account: &str,
        id: &EndpointId,
    ) -> Result<Option<(Endpoint, EndpointSecrets)>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        output
            .item
            .map(|item| Ok((endpoint_from_item(&item)?, secrets_from_item(&item)?)))
            .transpose()
    }

    /// Writes `endpoint`'s settings (not its secrets) if it still exists and was last
    /// changed at `expected_updated_at`; `false` when either is no longer so.
    pub async fn update_endpoint(
        &self,
        endpoint: &Endpoint,
        expected_updated_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut set = "SET #url = :url, description = :description, version = :version, \
                       event_types = :event_types, #format = :format, disabled = :disabled, \
                       updated_at = :updated_at"
            .to_string();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(&endpoint.account, &endpoint.id)))
            .condition_expression("attribute_exists(#pk) AND updated_at = :expected")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#url", "url")
            .expression_attribute_names("#format", "format")
            .expression_attribute_values(":url", s(endpoint.url.as_str()))
            .expression_attribute_values(":description", s(endpoint.description.as_str()))
            .expression_attribute_values(":version", n(endpoint.version))
            .expression_attribute_values(":event_types", list(&endpoint.event_types))
            .expression_attribute_values(":format", s(endpoint.format.as_str()))
            .expression_attribute_values(":disabled", AttributeValue::Bool(endpoint.disabled))
            .expression_attribute_values(":updated_at", s(time_text(endpoint.updated_at)))
            .expression_attribute_values(":expected", s(time_text(expected_updated_at)));
        match &endpoint.datasets {
            Some(datasets) => {
                set.push_str(", datasets = :datasets");
                request = request.expression_attribute_values(":datasets", list(datasets));
            }
            None => set.push_str(" REMOVE datasets"),
        }
        applied(request.update_expression(set).send().await, "UpdateItem")
    }

    /// Stores rotated secrets if the endpoint still signs with `expected_current`;
    /// `false` when it is gone or was rotated meanwhile.
    pub async fn rotate_secret(
        &self,
        endpoint: &Endpoint,
        secrets: &EndpointSecrets,
        expected_current: &Secret,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (previous, expires_at) = secrets
            .previous
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("a rotation without a previous secret".into()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(&endpoint.account, &endpoint.id)))
            .update_expression(
                "SET secret = :secret, previous_secret = :previous, \
                 previous_secret_expires_at = :expires_at, updated_at = :now",
            )
            .condition_expression("attribute_exists(#pk) AND secret = :expected")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":secret", s(secrets.current.expose()))
            .expression_attribute_values(":previous", s(previous.expose()))
            .expression_attribute_values(":expires_at", s(time_text(*expires_at)))
            .expression_attribute_values(":now", s(time_text(now)))
            .expression_attribute_values(":expected", s(expected_current.expose()))
            .send()
            .await;
        applied(result, "UpdateItem")
    }

    /// Deletes an endpoint of `account`; `false` when there was none.
    pub async fn delete_endpoint(
        &self,
        account: &str,
        id: &EndpointId,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        applied(result, "DeleteItem")
    }

    /// A page of an account's endpoints, oldest first. `cursor` is the last id of the page before.
    pub async fn list_endpoints(
        &self,
        account: &str,
        limit: usize,
        cursor: Option<&EndpointId>,
    ) -> Result<Page<Endpoint>, StoreError> {
        let start = cursor.map(|id| endpoint_key(account, id));
        // One more than asked tells whether another page follows.
        let output = self
            .endpoint_query(account)
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(aws_error("Query"))?;
        let mut items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(endpoint_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|e| e.id.to_string())
        });
        Ok(Page {
            items,
            next_cursor: next_cursor.flatten(),
        })
    }

    fn endpoint_query(
        &self,
        account: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :ep)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(format!("ACCT#{account}")))
            .expression_attribute_values(":ep", s("EP#"))
    }

    /// The endpoints of `account` that take an event of `event_type` in `dataset`:
    /// one Query over the account's partition (followed across pages), without secrets.
    pub async fn subscribed_endpoints(
        &self,
        account: &str,
        event_type: &str,
        dataset: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let mut pages = self
            .endpoint_query(account)
            .projection_expression(
                "id, account, #url, description, version, event_types, datasets, #format, disabled, created_at, updated_at",
            )
            .expression_attribute_names("#url", "url")
            .expression_attribute_names("#format", "format")
            .into_paginator()
            .items()
            .send();
        let mut subscribed = Vec::new();
        while let Some(item) = pages.next().await {
            let endpoint = endpoint_from_item(&item.map_err(aws_error("Query"))?)?;
            if endpoint.subscribes(event_type, dataset) {
                subscribed.push(endpoint);
            }
        }
        Ok(subscribed)
    }

    // --- messages ---

    /// Stores a message once. With an idempotency key, the key is claimed first with a
    /// conditional put, so a repeat (or a racing twin) gets the first message's id back,
    /// and the claim holds a lease of [`FAN_OUT_LEASE`] until [`Store::complete_message`].
    pub async fn insert_message(
        &self,
        message: &Message,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        if let Some(key) = idempotency_key {
            let claimed = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(PK, s(idempotency_pk(&message.account, key)))
                .item(SK, s("IDEM"))
                .item("message_id", s(message.id.as_str()))
                .item("state", s("pending"))
                .item("lease_until", n(lease_until()))
                .item(TTL_ATTRIBUTE, self.expires_at())
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
                .await;
            match claimed {
                Ok(_) => {}
                Err(e) if is_condition_failure(&e) => {
                    return self.earlier_claim(&message.account, key).await;
                }
                Err(e) => return Err(aws_error("PutItem")(e)),
            }
        }
        let stored = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(message_pk(&message.id)))
            .item(SK, s("MSG"))
            .item("id", s(message.id.as_str()))
            .item("account", s(message.account.as_str()))
            .item("event_type", s(message.event_type.as_str()))
            .item("dataset", s(message.dataset.as_str()))
            .item("created_at", s(message.created_at.as_str()))
            .item("payload", s(message.payload.as_str()))
            .item("received_at", s(time_text(message.received_at)))
            .item(TTL_ATTRIBUTE, self.expires_at())
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        if let Err(e) = stored {
            if let Some(key) = idempotency_key {
                self.delete_idempotency_record(&message.account, key)
                    .await?;
            }
            return Err(aws_error("PutItem")(e));
        }
        Ok(Inserted::New)
    }

    /// What an earlier claim of `key` says: done, still in hand, or abandoned — in
    /// which case this request takes the lease over (a conditional write, so one wins).
    async fn earlier_claim(&self, account: &str, key: &str) -> Result<Inserted, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(account, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        let item = output
            .item
            .ok_or_else(|| StoreError::Corrupt("an idempotency record vanished".into()))?;
        let r = Reader(&item);
        let original = r.id("message_id", MessageId::parse)?;
        let lease: i64 = r.optional_number("lease_until")?.unwrap_or(0);
        if r.optional_string("state").as_deref() != Some("pending") || lease > now_millis() {
            return Ok(Inserted::Duplicate(original));
        }
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(account, key)))
            .update_expression("SET lease_until = :lease")
            .condition_expression("lease_until = :seen")
            .expression_attribute_values(":lease", n(lease_until()))
            .expression_attribute_values(":seen", n(lease))
            .send()
            .await;
        if applied(taken, "UpdateItem")? {
            Ok(Inserted::Abandoned(original))
        } else {
            Ok(Inserted::Duplicate(original))
        }
    }

    async fn delete_idempotency_record(&self, account: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(account, key)))
            .send()
            .await
            .map_err(aws_error("DeleteItem"))?;
        Ok(())
    }

    /// Marks a message's fan-out done: from now on its key only answers duplicates.
    pub async fn complete_message(
        &self,
        message: &Message,
        idempotency_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(key) = idempotency_key else {
            return Ok(());
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(&message.account, key)))
            .update_expression("SET #state = :done REMOVE lease_until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("done"))
            .send()
            .await
            .map_err(aws_error("UpdateItem"))?;
        Ok(())
    }

    /// After a failed fan-out: without a key the message is taken back, so the
    /// platform's retry is accepted afresh; with one, message and key stay and the
    /// lease is let go, so the retry fans the same message out again at once.
    pub async fn abandon_message(
        &self,
        message: &Message,
        idempotency_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(key) = idempotency_key else {
            return self.remove_message(message).await;
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(&message.account, key)))
            .update_expression("SET lease_until = :released")
            .expression_attribute_values(":released", n(0))
            .send()
            .await
            .map_err(aws_error("UpdateItem"))?;
        Ok(())
    }

    /// Deletes a message, for a request that failed before anything was enqueued.
    pub async fn remove_message(&self, message: &Message) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(message_pk(&message.id)))
            .key(SK, s("MSG"))
            .send()
            .await
            .map_err(aws_error("DeleteItem"))?;
        Ok(())
    }

    /// A message of `account`; `None` when there is none, or it is another account's.
    pub async fn get_message(
        &self,
        account: &str,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(message_pk(id)))
            .key(SK, s("MSG"))
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let r = Reader(&item);
        if r.string("account")? != account {
            return Ok(None);
        }
        Ok(Some(Message {
            id: r.id("id", MessageId::parse)?,
            account: r.string("account")?,
            event_type: r.string("event_type")?,
            dataset: r.string("dataset")?,
            created_at: r.string("created_at")?,
            payload: r.string("payload")?,
            received_at: r.time("received_at")?,
        }))
    }

    // --- attempts ---

    /// Records an attempt: one write, indexed under its endpoint for the attempt views.
    pub async fn put_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let by_endpoint = endpoint_attempts_pk(&attempt.account, &attempt.endpoint_id);
        let mut item: Item = HashMap::from([
            (PK.into(), s(message_pk(&attempt.message_id))),
            (SK.into(), s(format!("ATT#{}", attempt.id))),
            ("gsi1pk".into(), s(by_endpoint.as_str())),
            ("gsi1sk".into(), s(attempt.id.as_str())),
            (
                "gsi2pk".into(),
                s(format!("{by_endpoint}#{}", attempt.status.as_str())),
            ),
            ("gsi2sk".into(), s(attempt.id.as_str())),
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
            (TTL_ATTRIBUTE.into(), self.expires_at()),
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// A page of an endpoint's attempts, newest first, optionally of one status only.
    /// `before` is the last attempt id of the page before.
    pub async fn endpoint_attempts(
        &self,
        account: &str,
        endpoint: &EndpointId,
        status: Option<AttemptStatus>,
        limit: usize,
        before: Option<&AttemptId>,
    ) -> Result<Page<Attempt>, StoreError> {
        let by_endpoint = endpoint_attempts_pk(account, endpoint);
        let (index, partition) = match status {
            None => (schema::INDEXES[0], by_endpoint),
            Some(status) => (
                schema::INDEXES[1],
                format!("{by_endpoint}#{}", status.as_str()),
            ),
        };
        let (name, hash, range) = index;
        let mut condition = "#h = :h".to_string();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(name)
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":h", s(partition))
            .scan_index_forward(false)
            // One more than asked tells whether another page follows.
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        if let Some(before) = before {
            condition.push_str(" AND #r < :before");
            request = request
                .expression_attribute_names("#r", range)
                .expression_attribute_values(":before", s(before.as_str()));
        }
        let output = request
            .key_condition_expression(condition)
            .send()
            .await
            .map_err(aws_error("Query"))?;
        let mut items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(attempt_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Every attempt of a message of `account`, oldest first.
    pub async fn attempts_of_message(
        &self,
        account: &str,
        id: &MessageId,
    ) -> Result<Vec<Attempt>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :att)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(message_pk(id)))
            .expression_attribute_values(":att", s("ATT#"))
            .into_paginator()
            .items()
            .send();
        let mut attempts = Vec::new();
        while let Some(item) = pages.next().await {
            let attempt = attempt_from_item(&item.map_err(aws_error("Query"))?)?;
            if attempt.account == account {
                attempts.push(attempt);
            }
        }
        Ok(attempts)
    }
}

fn idempotency_record_key(account: &str, key: &str) -> Item {
    HashMap::from([
        (PK.into(), s(idempotency_pk(account, key))),
        (SK.into(), s("IDEM")),
    ])
}

fn idempotency_pk(account: &str, key: &str) -> String {
    format!("IDEM#{account}#{key}")
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
