//! What delivery and recovery ask of the table beyond the basics: disabling an
//! endpoint that answered 410, and an endpoint's attempts within a time window.

use time::OffsetDateTime;
use ulid::Ulid;

use super::{
    PK, Store, StoreError, attempt_from_item, aws_error, endpoint_attempts_pk, endpoint_key,
    is_condition_failure, s, time_text,
};
use crate::ids::{AttemptId, EndpointId};
use crate::model::Attempt;

/// The smallest and largest attempt ids made within `[since, until]`: attempt ids
/// are ULIDs, so their order is their creation time's.
pub(super) fn attempt_id_bounds(
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> (AttemptId, AttemptId) {
    let millis =
        |t: OffsetDateTime| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    (
        AttemptId::from_ulid(Ulid::from_parts(millis(since), 0)),
        AttemptId::from_ulid(Ulid::from_parts(millis(until), u128::MAX)),
    )
}

impl Store {
    /// Marks an endpoint of `account` disabled; `false` when there is no such endpoint.
    pub async fn disable_endpoint(
        &self,
        account: &str,
        id: &EndpointId,
    ) -> Result<bool, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .update_expression("SET disabled = :yes, updated_at = :now")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(
                ":yes",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .expression_attribute_values(":now", s(time_text(OffsetDateTime::now_utc())))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("UpdateItem")(e)),
        }
    }

    /// The attempts to an endpoint of `account` made within `[since, until]`, oldest first.
    pub async fn attempts_of_endpoint_between(
        &self,
        account: &str,
        endpoint: &EndpointId,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (first, last) = attempt_id_bounds(since, until);
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :first AND :last")
            .expression_attribute_values(":pk", s(endpoint_attempts_pk(account, endpoint)))
            .expression_attribute_values(":first", s(first.as_str()))
            .expression_attribute_values(":last", s(last.as_str()))
            .into_paginator()
            .items()
            .send();
        let mut attempts = Vec::new();
        while let Some(item) = pages.next().await {
            attempts.push(attempt_from_item(&item.map_err(aws_error("Query"))?)?);
        }
        Ok(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_enclose_ids_made_within_it() {
        let since = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let until = since + time::Duration::minutes(5);
        let (first, last) = attempt_id_bounds(since, until);
        let inside = |t: OffsetDateTime| {
            let ms = u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap();
            AttemptId::from_ulid(Ulid::from_parts(ms, 12345))
        };
        for t in [since, since + time::Duration::minutes(1), until] {
            let id = inside(t);
            assert!(first <= id && id <= last, "{t}");
        }
        assert!(inside(since - time::Duration::milliseconds(1)) < first);
        assert!(inside(until + time::Duration::milliseconds(1)) > last);
    }
}
