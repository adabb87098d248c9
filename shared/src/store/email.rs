//! Email endpoints' events, the emails due, and their claims.
//!
//! The dispatcher records each event of an email endpoint in the endpoint's
//! partition under the window it falls in, and registers the window as due at
//! its end in the one `EMAILDUE` partition; both in one transaction that also
//! checks the window is not claimed yet, so no event joins a window already
//! being sent (it goes to the next one). The scheduler Queries what is due,
//! claims each email (a conditional write that names its sender and a lease),
//! sends it, and marks it sent: a run that is retried finds the claim and sends
//! nothing twice, and a claim whose sender died is taken over once its lease ends.
//! Every write here is a put or an update of one key, safe to repeat when an
//! answer was lost.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::codec::{Item, s};
use super::keys::{EMAIL_DUE_PK, email_pk, key, time_sk};
use super::schema::{PARTITION_KEY as PK, SORT_KEY as SK, TTL_ATTRIBUTE};
use super::{Store, StoreError, applied, aws_error, cancelled, is_condition_failed};
use crate::account::Account;
use crate::email::render::EmailEvent;
use crate::ids::EndpointId;

/// One email to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmailWork {
    /// The reactive window that began at `start`.
    Window {
        #[serde(with = "crate::timefmt")]
        start: OffsetDateTime,
    },
    /// The scheduled digest of the period that ends at `until`.
    Digest {
        #[serde(with = "crate::timefmt")]
        until: OffsetDateTime,
    },
    /// A digest asked for through the API, of `[since, until)`.
    DigestNow {
        request: String,
        #[serde(with = "crate::timefmt")]
        since: OffsetDateTime,
        #[serde(with = "crate::timefmt")]
        until: OffsetDateTime,
    },
}

/// An email due at `due_at`: its `attempt`-th try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DueEmail {
    #[serde(with = "crate::timefmt")]
    pub due_at: OffsetDateTime,
    pub account: Account,
    pub endpoint_id: EndpointId,
    pub work: EmailWork,
    pub attempt: u32,
}

impl DueEmail {
    /// The scheduled digest of the period that ends (and is due) at `until`.
    pub fn digest(account: &Account, endpoint_id: &EndpointId, until: OffsetDateTime) -> Self {
        Self {
            due_at: until,
            account: account.clone(),
            endpoint_id: endpoint_id.clone(),
            work: EmailWork::Digest { until },
            attempt: 1,
        }
    }

    /// The sort key of the email's claim in the endpoint's partition.
    fn claim_sk(&self) -> String {
        match &self.work {
            EmailWork::Window { start } => window_claim_sk(*start),
            EmailWork::Digest { until } => format!("D#{}", time_sk(*until)),
            EmailWork::DigestNow { request, .. } => format!("N#{request}"),
        }
    }

    fn claim_key(&self) -> Item {
        key(email_pk(&self.account, &self.endpoint_id), self.claim_sk())
    }

    fn due_key(&self) -> Item {
        key(
            EMAIL_DUE_PK.into(),
            format!(
                "{}#{}#{}",
                time_sk(self.due_at),
                self.endpoint_id,
                self.claim_sk()
            ),
        )
    }
}

fn window_claim_sk(start: OffsetDateTime) -> String {
    format!("W#{}", time_sk(start))
}

/// What claiming an email found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailClaim {
    /// It is this sender's to send.
    Won,
    /// It was sent (or given up) already.
    Done,
    /// Another sender holds it and its lease runs.
    Held,
}

/// How a claimed email ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailEnd {
    Sent,
    /// Its last attempt failed.
    GivenUp,
}

const STATE: &str = "email_state";
const SENDING: &str = "sending";

/// Where an event is listed: its window, then its message id (time-ordered).
fn event_sk(window_start: OffsetDateTime, event: &EmailEvent) -> String {
    format!("E#{}#{}", time_sk(window_start), event.message_id)
}

impl Store {
    fn email_item(&self, key: Item) -> Item {
        let mut item = key;
        item.insert(TTL_ATTRIBUTE.into(), self.expires_at());
        item
    }

    /// Records `event` for the email endpoint in the window that began at
    /// `window_start`, and, for a `reactive` endpoint, registers the window as due
    /// at its end. `false` when the window was claimed already: the caller takes
    /// the next one.
    pub async fn gather_email_event(
        &self,
        account: &Account,
        endpoint_id: &EndpointId,
        window_start: OffsetDateTime,
        window_end: OffsetDateTime,
        event: &EmailEvent,
        reactive: bool,
    ) -> Result<bool, StoreError> {
        let pk = email_pk(account, endpoint_id);
        let mut event_item = self.email_item(key(pk.clone(), event_sk(window_start, event)));
        event_item.insert("event".into(), AttributeValue::M(to_item(event)));
        let unclaimed = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, window_claim_sk(window_start))))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(aws_error("TransactWriteItems"))?;
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(aws_error("TransactWriteItems"))
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .condition_check(unclaimed)
                .build(),
            TransactWriteItem::builder().put(put(event_item)?).build(),
        ];
        if reactive {
            let due = DueEmail {
                due_at: window_end,
                account: account.clone(),
                endpoint_id: endpoint_id.clone(),
                work: EmailWork::Window {
                    start: window_start,
                },
                attempt: 1,
            };
            items.push(
                TransactWriteItem::builder()
                    .put(put(due_item(&due))?)
                    .build(),
            );
        }
        let Some(reasons) = self.transact(items).await? else {
            return Ok(true);
        };
        match reasons.first() {
            Some(check) if is_condition_failed(check) => Ok(false),
            _ => Err(cancelled(&reasons)),
        }
    }

    /// The emails due at `now`, oldest first, at most `limit`: one Query.
    pub async fn due_emails(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<DueEmail>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk < :after_now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(EMAIL_DUE_PK))
            .expression_attribute_values(":after_now", s(time_sk(now + time::Duration::SECOND)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(aws_error("Query"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item(item)
                    .map_err(|e| StoreError::Corrupt(format!("a due email: {e}")))
            })
            .collect()
    }

    /// Registers an email as due (again, when it is a later attempt).
    pub async fn put_due_email(&self, due: &DueEmail) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(due_item(due)))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// Registers `next`, the next attempt of `due`, in its place: written before `due`
    /// goes, so that neither is ever missing. Both due within one second share a key
    /// (due times are kept to the second), and then the write replaced `due` already.
    pub async fn reschedule_due_email(
        &self,
        due: &DueEmail,
        next: &DueEmail,
    ) -> Result<(), StoreError> {
        self.put_due_email(next).await?;
        if next.due_key() != due.due_key() {
            self.delete_due_email(due).await?;
        }
        Ok(())
    }

    /// Takes an email off the due list.
    pub async fn delete_due_email(&self, due: &DueEmail) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(due.due_key()))
            .send()
            .await
            .map_err(aws_error("DeleteItem"))?;
        Ok(())
    }

    /// Claims `due` for the sender `token` until `now + lease`: won when nobody
    /// claimed it, when its earlier sender's lease ran out unsent, or when this
    /// sender claimed it already (a repeat whose answer was lost).
    pub async fn claim_email(
        &self,
        due: &DueEmail,
        token: &str,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<EmailClaim, StoreError> {
        let lease_until = now + lease;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(due.claim_key()))
            .update_expression(
                "SET #state = :sending, sender = :token, lease_until = :lease_until, #ttl = :ttl",
            )
            // A claim being sent without a lease was let go of (by a release that
            // left its state, as one did before it removed that too).
            .condition_expression(
                "attribute_not_exists(#state) OR sender = :token \
                 OR (#state = :sending AND (attribute_not_exists(lease_until) OR lease_until < :now))",
            )
            .expression_attribute_names("#state", STATE)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":sending", s(SENDING))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":lease_until", n_time(lease_until))
            .expression_attribute_values(":now", n_time(now))
            .expression_attribute_values(":ttl", self.expires_at())
            .send()
            .await;
        if applied(result, "UpdateItem")? {
            return Ok(EmailClaim::Won);
        }
        let state = self
            .read_item(due.claim_key())
            .await?
            .and_then(|item| item.get(STATE).and_then(|v| v.as_s().ok()).cloned());
        Ok(match state.as_deref() {
            Some(SENDING) => EmailClaim::Held,
            _ => EmailClaim::Done,
        })
    }

    /// Ends the claim of `token` on `due`: sent, or given up.
    pub async fn end_email(
        &self,
        due: &DueEmail,
        token: &str,
        end: EmailEnd,
    ) -> Result<(), StoreError> {
        let state = match end {
            EmailEnd::Sent => "sent",
            EmailEnd::GivenUp => "given_up",
        };
        self.update_claim(due, token, "SET #state = :state", Some(state))
            .await
    }

    /// Lets go of the claim of `token` on `due`, so its next attempt may claim it at
    /// once: as if never claimed (a claim left `sending` without its lease would hold
    /// the email off for good).
    pub async fn release_email(&self, due: &DueEmail, token: &str) -> Result<(), StoreError> {
        self.update_claim(due, token, "REMOVE #state, lease_until, sender", None)
            .await
    }

    async fn update_claim(
        &self,
        due: &DueEmail,
        token: &str,
        expression: &str,
        state: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(due.claim_key()))
            .update_expression(expression)
            .condition_expression("sender = :token")
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":token", s(token));
        if let Some(state) = state {
            request = request.expression_attribute_values(":state", s(state));
        }
        // A claim no longer ours (taken over after its lease) is left to its holder.
        applied(request.send().await, "UpdateItem")?;
        Ok(())
    }

    /// The events of the email endpoint gathered in windows that began within
    /// `[since, until)`, oldest first, each handed to `visit`.
    pub async fn email_events(
        &self,
        account: &Account,
        endpoint_id: &EndpointId,
        since: OffsetDateTime,
        until: OffsetDateTime,
        mut visit: impl FnMut(EmailEvent),
    ) -> Result<(), StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            // Consistent: an event gathered a moment before the window closed is in its email.
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(email_pk(account, endpoint_id)))
            .expression_attribute_values(":from", s(format!("E#{}", time_sk(since))))
            // `~` sorts after every id: the last window that began before `until`, whole.
            .expression_attribute_values(
                ":to",
                s(format!("E#{}~", time_sk(until - time::Duration::SECOND))),
            )
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let mut item = item.map_err(aws_error("Query"))?;
            let Some(AttributeValue::M(event)) = item.remove("event") else {
                return Err(StoreError::Corrupt(
                    "an email event without its event".into(),
                ));
            };
            visit(
                serde_dynamo::from_item(event)
                    .map_err(|e| StoreError::Corrupt(format!("an email event: {e}")))?,
            );
        }
        Ok(())
    }
}

fn to_item(value: impl Serialize) -> Item {
    serde_dynamo::to_item(value).expect("a record of strings and numbers serializes")
}

fn n_time(time: OffsetDateTime) -> AttributeValue {
    AttributeValue::N(time.unix_timestamp().to_string())
}

fn due_item(due: &DueEmail) -> Item {
    let mut item: Item = to_item(due);
    item.extend(due.due_key());
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_email_reads_back_and_sorts_by_its_time() {
        let due = DueEmail {
            due_at: OffsetDateTime::from_unix_timestamp(1_700_000_300).unwrap(),
            account: "jane".parse().unwrap(),
            endpoint_id: EndpointId::new(),
            work: EmailWork::Window {
                start: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            },
            attempt: 2,
        };
        let item = due_item(&due);
        let back: DueEmail = serde_dynamo::from_item(item.clone()).unwrap();
        assert_eq!(back, due);
        let sk = item[SK].as_s().unwrap();
        assert!(sk.starts_with("001700000300#ep_"), "{sk}");
        assert!(sk.ends_with("#W#001700000000"), "{sk}");
    }
}
