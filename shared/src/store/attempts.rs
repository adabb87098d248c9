//! Attempts: each sits in its message's partition (`MSG#<id>`, `ATT#<id>`), so a
//! message with its attempts is one Query; `gsi1` indexes them by endpoint and
//! `gsi2` by endpoint and status. Attempt ids are ULIDs: newest first is a
//! backwards Query, and a time window is a range of ids.

use std::collections::HashMap;

use time::OffsetDateTime;
use ulid::Ulid;

use super::codec::{Item, attempt_from_item, attempt_item, s};
use super::keys::{
    ATTEMPT_SK_PREFIX, attempt_sk, endpoint_attempts_by_status_pk, endpoint_attempts_pk, message_pk,
};
use super::schema::{self, PARTITION_KEY as PK, SORT_KEY as SK, TTL_ATTRIBUTE};
use super::{Page, Store, StoreError, aws_error};
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::{Attempt, AttemptStatus};

/// The smallest and largest attempt ids made within `[since, until]`: attempt ids
/// are ULIDs, so their order is their creation time's.
fn attempt_id_bounds(since: OffsetDateTime, until: OffsetDateTime) -> (AttemptId, AttemptId) {
    let millis =
        |t: OffsetDateTime| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    (
        AttemptId::from_ulid(Ulid::from_parts(millis(since), 0)),
        AttemptId::from_ulid(Ulid::from_parts(millis(until), u128::MAX)),
    )
}

impl Store {
    /// Records an attempt: one write, indexed under its endpoint for the attempt views.
    pub async fn put_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let (gsi1, gsi2) = (schema::INDEXES[0], schema::INDEXES[1]);
        let mut item: Item = HashMap::from([
            (PK.into(), s(message_pk(&attempt.message_id))),
            (SK.into(), s(attempt_sk(&attempt.id))),
            (
                gsi1.1.into(),
                s(endpoint_attempts_pk(&attempt.account, &attempt.endpoint_id)),
            ),
            (gsi1.2.into(), s(attempt.id.as_str())),
            (
                gsi2.1.into(),
                s(endpoint_attempts_by_status_pk(
                    &attempt.account,
                    &attempt.endpoint_id,
                    attempt.status,
                )),
            ),
            (gsi2.2.into(), s(attempt.id.as_str())),
            (TTL_ATTRIBUTE.into(), self.expires_at()),
        ]);
        item.extend(attempt_item(attempt));
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
        let (index, partition) = match status {
            None => (schema::INDEXES[0], endpoint_attempts_pk(account, endpoint)),
            Some(status) => (
                schema::INDEXES[1],
                endpoint_attempts_by_status_pk(account, endpoint, status),
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
            .expression_attribute_values(":att", s(ATTEMPT_SK_PREFIX))
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
