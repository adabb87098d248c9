//! Messages and their idempotency records: a message is one item in its own
//! partition (`MSG#<id>`); with an idempotency key it is stored once per key,
//! through a conditional claim of `IDEM#<account>#<key>` that holds a lease
//! while its request fans the message out.

use std::time::Duration;

use time::OffsetDateTime;

use super::codec::{claim_from_item, message_from_item, message_item, n, s};
use super::keys::{idempotency_record_key, message_key};
use super::schema::{PARTITION_KEY as PK, TTL_ATTRIBUTE};
use super::{Store, StoreError, applied, aws_error, is_condition_failure};
use crate::ids::MessageId;
use crate::model::Message;

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

impl Store {
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
                .set_item(Some(idempotency_record_key(&message.account, key)))
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
        let mut item = message_key(&message.id);
        item.extend(message_item(message));
        let stored = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
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
        let claim = claim_from_item(&item)?;
        let original = claim.message_id;
        let lease = claim.lease_until.unwrap_or(0);
        if claim.state != "pending" || lease > now_millis() {
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
            .set_key(Some(message_key(&message.id)))
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
            .set_key(Some(message_key(id)))
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let message = message_from_item(&item)?;
        Ok((message.account == account).then_some(message))
    }
}
