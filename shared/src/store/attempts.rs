//! Attempts: each sits in its message's partition (`MSG#<id>`, `ATT#<id>`), so a
//! message with its attempts is one Query; `gsi1` indexes them by endpoint and
//! `gsi2` the failed ones only (a success, the common case, costs one index write
//! less). Attempt ids are ULIDs: newest first is a backwards Query, and a time
//! window is a range of ids.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use time::OffsetDateTime;
use ulid::Ulid;

use super::codec::{
    Item, attempt_endpoint_from_item, attempt_from_item, attempt_item, attempt_outcome_from_item, s,
};
use super::keys::{
    ATTEMPT_SK_PREFIX, attempt_sk, endpoint_attempts_by_status_pk, endpoint_attempts_pk, message_pk,
};
use super::schema::{self, PARTITION_KEY as PK, SORT_KEY as SK, TTL_ATTRIBUTE};
use super::{Page, Store, StoreError, UNPROCESSED_PAUSES, aws_error};
use crate::account::Account;
use crate::event_type::EventType;
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::{Attempt, AttemptStatus};

/// The smallest and largest attempt ids made within `[since, until]`: attempt ids
/// are ULIDs, so their order is their creation time's.
pub fn attempt_id_bounds(since: OffsetDateTime, until: OffsetDateTime) -> (AttemptId, AttemptId) {
    let millis =
        |t: OffsetDateTime| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    (
        AttemptId::from_ulid(Ulid::from_parts(millis(since), 0)),
        AttemptId::from_ulid(Ulid::from_parts(millis(until), u128::MAX)),
    )
}

/// BatchWriteItem takes at most 25 writes.
const BATCH_WRITE: usize = 25;

impl Store {
    /// An attempt's item, indexed under its endpoint for the attempt views.
    fn attempt_record(&self, attempt: &Attempt) -> Item {
        let (gsi1, gsi2) = (schema::INDEXES[0], schema::INDEXES[1]);
        let mut item: Item = HashMap::from([
            (PK.into(), s(message_pk(&attempt.message_id))),
            (SK.into(), s(attempt_sk(&attempt.id))),
            (
                gsi1.1.into(),
                s(endpoint_attempts_pk(&attempt.account, &attempt.endpoint_id)),
            ),
            (gsi1.2.into(), s(attempt.id.as_str())),
            (TTL_ATTRIBUTE.into(), self.expires_at()),
        ]);
        if attempt.status == AttemptStatus::Failed {
            item.insert(
                gsi2.1.into(),
                s(endpoint_attempts_by_status_pk(
                    &attempt.account,
                    &attempt.endpoint_id,
                    attempt.status,
                )),
            );
            item.insert(gsi2.2.into(), s(attempt.id.as_str()));
        }
        item.extend(attempt_item(attempt));
        item
    }

    /// Records an attempt: one write.
    pub async fn put_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.attempt_record(attempt)))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// Records many attempts, 25 per BatchWriteItem, writing again what DynamoDB
    /// left unprocessed after a pause: the attempts of one dispatcher invocation,
    /// or a history seeded at once. Each write is a put of one key, so a repeat
    /// after a lost answer is harmless.
    pub async fn put_attempts(&self, attempts: &[Attempt]) -> Result<(), StoreError> {
        for chunk in attempts.chunks(BATCH_WRITE) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|attempt| {
                    let put = PutRequest::builder()
                        .set_item(Some(self.attempt_record(attempt)))
                        .build()
                        .expect("the item is set");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            for pause in UNPROCESSED_PAUSES {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(aws_error("BatchWriteItem"))?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if !requests.is_empty() {
                return Err(StoreError::Aws {
                    operation: "BatchWriteItem",
                    message: format!("{} items left unprocessed", requests.len()),
                });
            }
        }
        Ok(())
    }

    /// A page of an endpoint's attempts, newest first, optionally of one status only.
    /// `before` is the last attempt id of the page before. Failed ones are `gsi2`'s;
    /// succeeded ones are `gsi1`'s less the failed, filtered out as they are read.
    pub async fn endpoint_attempts(
        &self,
        account: &Account,
        endpoint: &EndpointId,
        status: Option<AttemptStatus>,
        limit: usize,
        before: Option<&AttemptId>,
    ) -> Result<Page<Attempt>, StoreError> {
        let (index, partition) = match status {
            Some(AttemptStatus::Failed) => (
                schema::INDEXES[1],
                endpoint_attempts_by_status_pk(account, endpoint, AttemptStatus::Failed),
            ),
            _ => (schema::INDEXES[0], endpoint_attempts_pk(account, endpoint)),
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
        if status == Some(AttemptStatus::Succeeded) {
            request = request
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(AttemptStatus::Succeeded.as_str()));
        }
        let mut pages = request
            .key_condition_expression(condition)
            .into_paginator()
            .items()
            .send();
        let mut items = Vec::new();
        while items.len() <= limit {
            let Some(item) = pages.next().await else {
                break;
            };
            items.push(attempt_from_item(&item.map_err(aws_error("Query"))?)?);
        }
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
        account: &Account,
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
            .expression_attribute_values(":att", s(ATTEMPT_SK_PREFIX))
            .into_paginator()
            .items()
            .send();
        let mut attempts = Vec::new();
        while let Some(item) = pages.next().await {
            let attempt = attempt_from_item(&item.map_err(aws_error("Query"))?)?;
            if attempt.account == *account {
                attempts.push(attempt);
            }
        }
        Ok(attempts)
    }

    /// A page of the attempts to an endpoint of `account` with ids within
    /// `[first, last]`, newest first, with only what recovery reads of them.
    /// `next_cursor` (the last id read) is set when more may follow.
    pub async fn attempt_outcomes(
        &self,
        account: &Account,
        endpoint: &EndpointId,
        (first, last): (&AttemptId, &AttemptId),
        limit: usize,
    ) -> Result<Page<AttemptOutcome>, StoreError> {
        if last < first {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let (index, hash, range) = schema::INDEXES[0];
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h AND #r BETWEEN :first AND :last")
            .expression_attribute_names("#h", hash)
            .expression_attribute_names("#r", range)
            .expression_attribute_values(":h", s(endpoint_attempts_pk(account, endpoint)))
            .expression_attribute_values(":first", s(first.as_str()))
            .expression_attribute_values(":last", s(last.as_str()))
            .projection_expression("#id, message_id, #status, event_type")
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#status", "status")
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(aws_error("Query"))?;
        let items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(attempt_outcome_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = output
            .last_evaluated_key
            .and(items.last())
            .map(|last| last.id.to_string());
        Ok(Page { items, next_cursor })
    }

    /// Whether a message was attempted to an endpoint with an attempt id within
    /// `[first, last]`.
    pub async fn attempted_between(
        &self,
        message: &MessageId,
        endpoint: &EndpointId,
        (first, last): (&AttemptId, &AttemptId),
    ) -> Result<bool, StoreError> {
        if last < first {
            return Ok(false);
        }
        // A message has few attempts in a range: they are read and looked at here.
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :first AND :last")
            .projection_expression("endpoint_id")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(message_pk(message)))
            .expression_attribute_values(":first", s(attempt_sk(first)))
            .expression_attribute_values(":last", s(attempt_sk(last)))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(aws_error("Query"))?;
            if attempt_endpoint_from_item(&item)? == *endpoint {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// What recovery reads of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AttemptOutcome {
    pub id: AttemptId,
    pub message_id: MessageId,
    pub status: AttemptStatus,
    pub event_type: EventType,
}

/// The attempt id just before `id` in the table's order; `None` for the first
/// possible one or an id that is not ours.
pub fn attempt_id_before(id: &AttemptId) -> Option<AttemptId> {
    let ulid = Ulid::from_string(id.as_str().strip_prefix(AttemptId::PREFIX)?).ok()?;
    let previous = u128::from(ulid).checked_sub(1)?;
    Some(AttemptId::from_ulid(Ulid::from(previous)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item's size as DynamoDB bills it: attribute names and values.
    fn billed_size(item: &Item) -> usize {
        use aws_sdk_dynamodb::types::AttributeValue;
        item.iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::S(text) => text.len(),
                        AttributeValue::N(number) => number.len().div_ceil(2) + 1,
                        other => panic!("unexpected {other:?}"),
                    }
            })
            .sum()
    }

    #[test]
    fn a_typical_success_is_one_write_unit_in_the_table_and_one_in_gsi1_only() {
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .build(),
        );
        let retention = std::time::Duration::from_secs(30 * 86_400);
        let store = Store::new(client, "hookline", retention);
        let now = OffsetDateTime::now_utc();
        let success = Attempt {
            id: AttemptId::new(),
            message_id: MessageId::new(),
            endpoint_id: EndpointId::new(),
            account: "acme-production-eu".parse().unwrap(),
            event_type: "invoice.payment_succeeded".parse().unwrap(),
            attempt: 1,
            status: AttemptStatus::Succeeded,
            response_status: Some(200),
            response_body: r#"{"received":true}"#.into(),
            error: None,
            duration_ms: 142,
            timestamp: now,
            next_attempt_at: None,
        };
        let item = store.attempt_record(&success);
        assert!(billed_size(&item) <= 1024, "{} bytes", billed_size(&item));
        let (_, gsi2_pk, _) = schema::INDEXES[1];
        assert!(!item.contains_key(gsi2_pk), "a success is not in gsi2");
        let failure = Attempt {
            status: AttemptStatus::Failed,
            ..success
        };
        assert!(store.attempt_record(&failure).contains_key(gsi2_pk));
    }

    #[test]
    fn the_indexes_project_every_attribute_an_attempt_is_read_with() {
        let mut stored: Vec<String> = attempt_item(&crate::model::fixtures::attempt())
            .into_keys()
            .collect();
        stored.sort();
        for (index, _, _) in schema::INDEXES {
            let mut projected: Vec<String> = schema::projected_attributes(index)
                .into_iter()
                .filter(|name| stored.iter().any(|s| s == name))
                .map(str::to_string)
                .collect();
            projected.sort();
            assert_eq!(projected, stored, "{index}");
        }
    }

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

    #[test]
    fn the_id_just_before_is_the_greatest_smaller_one() {
        let id = AttemptId::from_ulid(Ulid::from_parts(1_700_000_000_000, 5));
        let previous = attempt_id_before(&id).unwrap();
        assert_eq!(
            previous,
            AttemptId::from_ulid(Ulid::from_parts(1_700_000_000_000, 4))
        );
        let carry = AttemptId::from_ulid(Ulid::from_parts(1_700_000_000_001, 0));
        let previous = attempt_id_before(&carry).unwrap();
        assert_eq!(
            previous,
            AttemptId::from_ulid(Ulid::from_parts(1_700_000_000_000, (1 << 80) - 1))
        );
        assert!(previous < carry);
        assert_eq!(
            attempt_id_before(&AttemptId::from_ulid(Ulid::from(0u128))),
            None
        );
        assert_eq!(
            attempt_id_before(&AttemptId::parse("atmpt_nope").unwrap()),
            None
        );
    }
}
