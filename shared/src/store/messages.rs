//! Messages and their idempotency records: a message is one item in its own
//! partition (`MSG#<id>`); with an idempotency key it is stored together with a
//! claim of `IDEM#<account>#<key>` in one transaction, and the claim holds a lease
//! while its request fans the message out (ADR 5).

use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use time::OffsetDateTime;

use super::codec::{Item, claim_from_item, message_from_item, message_item, n, s};
use super::keys::{idempotency_record_key, message_key};
use super::schema::{PARTITION_KEY as PK, TTL_ATTRIBUTE};
use super::{Store, StoreError, applied, aws_error};
use crate::account::Account;
use crate::ids::MessageId;
use crate::model::Message;

/// An idempotency key, and the fingerprint of the event it came with
/// ([`crate::event::NewEvent::fingerprint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// The outcome of storing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, by this request (perhaps by a try of it whose answer was lost).
    New,
    /// The key's first request fanned its message out; here is that message.
    Duplicate(MessageId),
    /// The key's first request is still at work; its lease runs this much longer.
    InProgress(Duration),
    /// The key came with a different event before.
    Reused,
    /// The key's first request stored this message but let go of it, or died, before
    /// its fan-out was done; this request now holds the lease and fans it out.
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

/// A claim's states: fanning out under a lease, or done.
const PENDING: &str = "pending";
const DONE: &str = "done";

impl Store {
    /// Stores a message once. Without a claim, a conditional put; with one, the claim
    /// and the message in one transaction, each put only if absent, so a failed write
    /// stores neither. When the condition fails, the claim says what to do: ours
    /// (its message id is this message's: an earlier try whose answer was lost),
    /// a duplicate, another event, still in progress, or abandoned.
    pub async fn insert_message(
        &self,
        message: &Message,
        claim: Option<Claim<'_>>,
    ) -> Result<Inserted, StoreError> {
        let mut item = message_key(&message.id);
        item.extend(message_item(message));
        item.insert(TTL_ATTRIBUTE.into(), self.expires_at());
        let Some(claim) = claim else {
            let stored = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
                .await;
            // Message ids are new ULIDs: the item can only be there from this
            // request's own earlier try, whose answer was lost.
            applied(stored, "PutItem")?;
            return Ok(Inserted::New);
        };
        let mut claim_item = idempotency_record_key(&message.account, claim.key);
        claim_item.extend([
            ("message_id".into(), s(message.id.as_str())),
            ("fingerprint".into(), s(claim.fingerprint)),
            ("state".into(), s(PENDING)),
            ("lease_until".into(), n(lease_until())),
            (TTL_ATTRIBUTE.into(), self.expires_at()),
        ]);
        let written = self
            .client
            .transact_write_items()
            .transact_items(self.put_if_absent(claim_item))
            .transact_items(self.put_if_absent(item))
            .send()
            .await;
        match written {
            Ok(_) => Ok(Inserted::New),
            Err(e) if is_claim_taken(&e) => {
                self.recheck_claim(&message.account, claim, &message.id)
                    .await
            }
            Err(e) => Err(aws_error("TransactWriteItems")(e)),
        }
    }

    fn put_if_absent(&self, item: Item) -> TransactWriteItem {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .expect("table and item are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// The message an earlier request with `claim.key` fanned out, if it did so for
    /// the same event (the same fingerprint): what a repeat of it is answered with
    /// even once the event would no longer be accepted (its type archived since).
    pub async fn finished_claim(
        &self,
        account: &Account,
        claim: Claim<'_>,
    ) -> Result<Option<MessageId>, StoreError> {
        let Some(item) = self
            .read_item(idempotency_record_key(account, claim.key))
            .await?
        else {
            return Ok(None);
        };
        let record = claim_from_item(&item)?;
        let same_event = record.fingerprint.is_none_or(|f| f == claim.fingerprint);
        Ok((same_event && record.state == DONE).then_some(record.message_id))
    }

    /// What the claim of `claim.key` says to a request storing message `ours`; an
    /// abandoned claim is taken over (a conditional write, so one request wins).
    pub async fn recheck_claim(
        &self,
        account: &Account,
        claim: Claim<'_>,
        ours: &MessageId,
    ) -> Result<Inserted, StoreError> {
        let item = self
            .read_item(idempotency_record_key(account, claim.key))
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("an idempotency claim refused a write but is not there".into())
            })?;
        let record = claim_from_item(&item)?;
        if record.message_id == *ours {
            return Ok(Inserted::New);
        }
        let original = record.message_id;
        // Claims written before fingerprints were kept cannot tell: taken as the same event.
        if record.fingerprint.is_some_and(|f| f != claim.fingerprint) {
            return Ok(Inserted::Reused);
        }
        let lease = match (record.state.as_str(), record.lease_until) {
            (DONE, _) => return Ok(Inserted::Duplicate(original)),
            (PENDING, Some(lease)) => lease,
            (state, _) => {
                return Err(StoreError::Corrupt(format!(
                    "an idempotency record in state `{state}` without a lease"
                )));
            }
        };
        let left = lease - now_millis();
        if left > 0 {
            return Ok(Inserted::InProgress(Duration::from_millis(
                left.unsigned_abs(),
            )));
        }
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_record_key(account, claim.key)))
            .update_expression("SET lease_until = :lease")
            .condition_expression("#state = :pending AND lease_until = :seen")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":lease", n(lease_until()))
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":seen", n(lease))
            .send()
            .await;
        if applied(taken, "UpdateItem")? {
            Ok(Inserted::Abandoned(original))
        } else {
            // Another retry took it over (or finished it) just now.
            Ok(Inserted::InProgress(FAN_OUT_LEASE))
        }
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
            .expression_attribute_values(":done", s(DONE))
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
        account: &Account,
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
        Ok((message.account == *account).then_some(message))
    }
}

/// Whether a claim transaction was refused because the claim (or the message) is
/// there already, or another request's transaction holds it this moment.
fn is_claim_taken<R>(
    error: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> bool {
    let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
        error.as_service_error()
    else {
        return false;
    };
    let reasons = canceled.cancellation_reasons();
    reasons.is_empty()
        || reasons.iter().any(|reason| {
            matches!(
                reason.code(),
                Some("ConditionalCheckFailed" | "TransactionConflict")
            )
        })
}
