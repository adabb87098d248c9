//! Names the table's definition must use; `infra/template.yaml` is tested against them.
//! Also the table's creation, for local runs and tests.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{Store, StoreError, aws_error};

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// `(index name, partition key, sort key)`: attempts of an endpoint (and the
/// platform keys); an endpoint's failed attempts only (sparse: a success has no
/// `gsi2` keys, so it costs no write there).
pub const INDEXES: &[(&str, &str, &str)] =
    &[("gsi1", "gsi1pk", "gsi1sk"), ("gsi2", "gsi2pk", "gsi2sk")];

/// An attempt's attributes, all of which its views show (`expires_at` and the
/// other index's keys stay out of the indexes).
const ATTEMPT_ATTRIBUTES: [&str; 13] = [
    "id",
    "message_id",
    "endpoint_id",
    "account",
    "event_type",
    "attempt",
    "status",
    "response_status",
    "response_body",
    "error",
    "duration_ms",
    "timestamp",
    "next_attempt_at",
];
/// A platform key's attributes besides `id`, which its listing (through `gsi1`) returns.
const API_KEY_ATTRIBUTES: [&str; 3] = ["key_hash", "prefix", "created_at"];
/// A failing endpoint's attribute besides `id` and `account`, which the auto-disable
/// sweep (through `gsi1`) reads.
const FAILING_ENDPOINT_ATTRIBUTES: [&str; 1] = ["failing_since"];

/// The attributes besides the keys each index of [`INDEXES`] projects: only what
/// the queries on it return, so an index entry stays small.
pub fn projected_attributes(index: &str) -> Vec<&'static str> {
    let mut attributes = ATTEMPT_ATTRIBUTES.to_vec();
    if index == INDEXES[0].0 {
        attributes.extend(API_KEY_ATTRIBUTES);
        attributes.extend(FAILING_ENDPOINT_ATTRIBUTES);
    }
    attributes
}

impl Store {
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
            .attribute_definitions(string_key(PARTITION_KEY))
            .attribute_definitions(string_key(SORT_KEY))
            .key_schema(key(PARTITION_KEY, KeyType::Hash))
            .key_schema(key(SORT_KEY, KeyType::Range));
        for (index, hash, range) in INDEXES {
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
                                .projection_type(ProjectionType::Include)
                                .set_non_key_attributes(Some(
                                    projected_attributes(index)
                                        .into_iter()
                                        .map(str::to_string)
                                        .collect(),
                                ))
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
}
