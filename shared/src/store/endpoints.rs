//! Endpoints: an account's endpoints share its partition (`ACCT#<account>`), so
//! fan-out (with the account's settings) and listing are one Query; changes are
//! conditional on what was read.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::codec::{
    account_settings_from_item, email_settings, endpoint_from_item, endpoint_item,
    failing_endpoint_from_item, list, n, s, secrets_from_item, secrets_item, settings_item,
    time_text,
};
use super::keys::{ENDPOINT_SK_PREFIX, SETTINGS_SK, account_pk, endpoint_count_key, endpoint_key};
use super::schema::{self, PARTITION_KEY as PK, SORT_KEY as SK};
use super::{Page, Store, StoreError, applied, aws_error, cancelled, is_condition_failed};
use crate::account::Account;
use crate::endpoint::next_version;
use crate::ids::{EndpointId, MessageId};
use crate::model::{Endpoint, EndpointSecrets};
use crate::operational::Disable;
use crate::settings::AccountSettings;
use crate::signing::Secret;

/// The most endpoints one account may have.
pub const MAX_ENDPOINTS_PER_ACCOUNT: u32 = 500;

/// The attribute naming the `endpoint.disabled` message of hookline's disabling.
const DISABLED_BY: &str = "disabled_by";

/// The `gsi1pk` of endpoints during a run of failures: a sparse index the
/// auto-disable sweep queries by when the run began.
const FAILING_INDEX_PK: &str = "FAILING";
/// What ends an endpoint's run of failures removes: its start and its index keys.
const FAILING_RUN: &str = "failing_since, gsi1pk, gsi1sk";

/// The count item's attribute: how many endpoints the account has.
const ENDPOINT_COUNT: &str = "endpoints";

/// An account's endpoints and settings, as a fan-out reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEndpoints {
    pub settings: AccountSettings,
    pub endpoints: Vec<Endpoint>,
}

/// What creating an endpoint did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// The account already has [`MAX_ENDPOINTS_PER_ACCOUNT`]; nothing was stored.
    AccountFull,
}

impl Store {
    /// Stores a new endpoint, unless its account already has
    /// [`MAX_ENDPOINTS_PER_ACCOUNT`]. The endpoint and the account's count are
    /// written in one transaction, so concurrent creates cannot pass the limit. A
    /// transaction whose answer was lost and that is sent again finds the endpoint
    /// there and recognises it as its own: it counts once.
    pub async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secrets: &EndpointSecrets,
    ) -> Result<Creation, StoreError> {
        let mut item = endpoint_key(&endpoint.account, &endpoint.id);
        item.extend(endpoint_item(endpoint, secrets));
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(endpoint_count_key(&endpoint.account)))
            .update_expression("ADD #count :one")
            .condition_expression("attribute_not_exists(#count) OR #count < :max")
            .expression_attribute_names("#count", ENDPOINT_COUNT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(MAX_ENDPOINTS_PER_ACCOUNT))
            .build()
            .map_err(aws_error("TransactWriteItems"))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(aws_error("TransactWriteItems"))?;
        let Some(reasons) = self
            .transact(vec![
                TransactWriteItem::builder().update(count).build(),
                TransactWriteItem::builder().put(put).build(),
            ])
            .await?
        else {
            return Ok(Creation::Created);
        };
        match reasons.as_slice() {
            [_, put] if is_condition_failed(put) => {
                if self.holds(endpoint, Some(endpoint), Some(secrets)).await? {
                    Ok(Creation::Created)
                } else {
                    Err(StoreError::Corrupt(format!(
                        "another endpoint is stored under the new id {}",
                        endpoint.id
                    )))
                }
            }
            [count, _] if is_condition_failed(count) => Ok(Creation::AccountFull),
            _ => Err(cancelled(&reasons)),
        }
    }

    /// After a conditional write failed its condition: whether the endpoint is stored
    /// with these settings and secrets anyway — when the SDK retried this very write
    /// after its answer was lost, the first try took effect and the retry saw it.
    async fn holds(
        &self,
        endpoint: &Endpoint,
        settings: Option<&Endpoint>,
        secrets: Option<&EndpointSecrets>,
    ) -> Result<bool, StoreError> {
        let Some((stored, stored_secrets)) =
            self.get_endpoint(&endpoint.account, &endpoint.id).await?
        else {
            return Ok(false);
        };
        Ok(
            settings.is_none_or(|ours| settings_item(ours) == settings_item(&stored))
                && secrets.is_none_or(|ours| secrets_item(ours) == secrets_item(&stored_secrets)),
        )
    }

    /// An endpoint of `account` with its secrets; `None` when there is none, or it is another account's.
    pub async fn get_endpoint(
        &self,
        account: &Account,
        id: &EndpointId,
    ) -> Result<Option<(Endpoint, EndpointSecrets)>, StoreError> {
        self.read_item(endpoint_key(account, id))
            .await?
            .map(|item| Ok((endpoint_from_item(&item)?, secrets_from_item(&item)?)))
            .transpose()
    }

    /// The endpoints of `keys` that exist, with their secrets, read eventually
    /// consistently (a change shows within a second or so).
    pub async fn get_endpoints(
        &self,
        keys: &[(Account, EndpointId)],
    ) -> Result<Vec<(Endpoint, EndpointSecrets)>, StoreError> {
        let keys = keys.iter().map(|(account, id)| endpoint_key(account, id));
        self.read_items(keys.collect(), false)
            .await?
            .iter()
            .map(|item| Ok((endpoint_from_item(item)?, secrets_from_item(item)?)))
            .collect()
    }

    /// Writes `endpoint`'s settings (not its secrets) if it still exists and was last
    /// changed at `expected_updated_at` (or already holds them: see [`Store::holds`]);
    /// `false` when either is no longer so.
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
        let mut remove = Vec::new();
        if let Some(email) = &endpoint.email {
            set.push_str(", email = :email");
            request = request.expression_attribute_values(":email", email_settings(email));
        }
        match &endpoint.datasets {
            Some(datasets) => {
                set.push_str(", datasets = :datasets");
                request = request.expression_attribute_values(":datasets", list(datasets));
            }
            None => remove.push("datasets"),
        }
        match &endpoint.disabled_reason {
            Some(reason) => {
                set.push_str(", disabled_reason = :reason");
                request = request.expression_attribute_values(":reason", s(reason.as_str()));
            }
            None => remove.extend(["disabled_reason", DISABLED_BY]),
        }
        // Only the dispatcher starts a run of failures; a change may only end one
        // (re-enabling: see [`crate::endpoint::EndpointPatch::apply`]).
        if endpoint.failing_since.is_none() {
            remove.push(FAILING_RUN);
        }
        if !remove.is_empty() {
            set.push_str(" REMOVE ");
            set.push_str(&remove.join(", "));
        }
        let updated = applied(request.update_expression(set).send().await, "UpdateItem")?;
        Ok(updated || self.holds(endpoint, Some(endpoint), None).await?)
    }

    /// Stores rotated secrets if the endpoint still signs with `expected_current`
    /// and is still as read (`endpoint.updated_at`); `false` when it is gone, was
    /// rotated or was changed meanwhile. Conditioned on the version too, so that
    /// an edit landing between the read and this write, stamped by a clock ahead
    /// of this one, is never followed by a smaller version.
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
            .condition_expression(
                "attribute_exists(#pk) AND secret = :expected AND updated_at = :read",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":secret", s(secrets.current.expose()))
            .expression_attribute_values(":previous", s(previous.expose()))
            .expression_attribute_values(":expires_at", s(time_text(*expires_at)))
            .expression_attribute_values(
                ":now",
                s(time_text(next_version(endpoint.updated_at, now))),
            )
            .expression_attribute_values(":expected", s(expected_current.expose()))
            .expression_attribute_values(":read", s(time_text(endpoint.updated_at)))
            .send()
            .await;
        // A rotated secret is random: stored, it can only be this request's.
        Ok(applied(result, "UpdateItem")? || self.holds(endpoint, None, Some(secrets)).await?)
    }

    /// Deletes an endpoint of `account` and takes it off the account's count, in one
    /// transaction; `false` when there was none.
    pub async fn delete_endpoint(
        &self,
        account: &Account,
        id: &EndpointId,
    ) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(aws_error("TransactWriteItems"))?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(endpoint_count_key(account)))
            .update_expression("ADD #count :minus_one")
            .expression_attribute_names("#count", ENDPOINT_COUNT)
            .expression_attribute_values(":minus_one", n(-1))
            .build()
            .map_err(aws_error("TransactWriteItems"))?;
        let Some(reasons) = self
            .transact(vec![
                TransactWriteItem::builder().delete(delete).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await?
        else {
            return Ok(true);
        };
        match reasons.as_slice() {
            [delete, _] if is_condition_failed(delete) => Ok(false),
            _ => Err(cancelled(&reasons)),
        }
    }

    /// A page of an account's endpoints, oldest first. `cursor` is the last id of the page before.
    pub async fn list_endpoints(
        &self,
        account: &Account,
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
        account: &Account,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        // Consistent: an endpoint created or deleted a moment ago shows in the listing as it is.
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :ep)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(account_pk(account)))
            .expression_attribute_values(":ep", s(ENDPOINT_SK_PREFIX))
    }

    /// Every endpoint of `account` (without secrets) and the account's settings, for
    /// a fan-out to pick its subscribers from: one Query (followed across pages)
    /// over the account's partition, from its first endpoint to its settings item.
    pub async fn account_endpoints(
        &self,
        account: &Account,
    ) -> Result<AccountEndpoints, StoreError> {
        // Consistent: an endpoint created, edited or enabled a moment before the event
        // gets it, and the version its jobs name is the one the dispatcher must sign with.
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :first AND :settings")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(account_pk(account)))
            .expression_attribute_values(":first", s(ENDPOINT_SK_PREFIX))
            .expression_attribute_values(":settings", s(SETTINGS_SK))
            .projection_expression(
                "#sk, id, account, #url, description, version, event_types, datasets, #format, \
                 disabled, email, created_at, updated_at, webhooks_enabled",
            )
            .expression_attribute_names("#url", "url")
            .expression_attribute_names("#format", "format")
            .into_paginator()
            .items()
            .send();
        let mut found = AccountEndpoints {
            settings: AccountSettings::default(),
            endpoints: Vec::new(),
        };
        while let Some(item) = pages.next().await {
            let item = item.map_err(aws_error("Query"))?;
            match item.get(SK).and_then(|sk| sk.as_s().ok()) {
                Some(sk) if sk == SETTINGS_SK => {
                    found.settings = account_settings_from_item(&item)?
                }
                Some(sk) if sk.starts_with(ENDPOINT_SK_PREFIX) => {
                    found.endpoints.push(endpoint_from_item(&item)?);
                }
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "an item of account {account} between its endpoints and its settings: {other:?}"
                    )));
                }
            }
        }
        Ok(found)
    }

    /// Disables an endpoint for `disable.reason`, as the `endpoint.disabled` message
    /// `by` says, if it was not changed since `disable.seen_updated_at` (its owner may
    /// have enabled it again meanwhile) and the run of failures it is for, if any,
    /// is still on, or this very disabling is already done, by an earlier try or
    /// another raise of the same message. `false` when neither.
    pub async fn disable_endpoint(
        &self,
        account: &Account,
        id: &EndpointId,
        disable: &Disable,
        by: &MessageId,
    ) -> Result<bool, StoreError> {
        let unchanged = match disable.seen_failing_since {
            Some(_) => "updated_at = :seen AND failing_since = :run",
            None => "updated_at = :seen",
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .update_expression(format!(
                "SET disabled = :yes, disabled_reason = :reason, #by = :by, updated_at = :now \
                 REMOVE {FAILING_RUN}"
            ))
            .condition_expression(format!(
                "attribute_exists(#pk) AND (({unchanged}) OR #by = :by)"
            ))
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#by", DISABLED_BY)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":reason", s(disable.reason.as_str()))
            .expression_attribute_values(":by", s(by.as_str()))
            .expression_attribute_values(":seen", s(time_text(disable.seen_updated_at)))
            .expression_attribute_values(
                ":now",
                s(time_text(next_version(
                    disable.seen_updated_at,
                    OffsetDateTime::now_utc(),
                ))),
            );
        if let Some(run) = disable.seen_failing_since {
            update = update.expression_attribute_values(":run", s(time_text(run)));
        }
        applied(update.send().await, "UpdateItem")
    }

    /// Notes that an endpoint's run of failures began at `since`, unless one is on
    /// already; `false` when it was (or the endpoint is gone).
    pub async fn start_failing(
        &self,
        account: &Account,
        id: &EndpointId,
        since: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let since = s(time_text(since));
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .update_expression("SET failing_since = :since, gsi1pk = :failing, gsi1sk = :since")
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(failing_since)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":since", since)
            .expression_attribute_values(":failing", s(FAILING_INDEX_PK))
            .send()
            .await;
        applied(updated, "UpdateItem")
    }

    /// Ends an endpoint's run of failures: a success came.
    pub async fn end_failing(&self, account: &Account, id: &EndpointId) -> Result<(), StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(endpoint_key(account, id)))
            .update_expression(format!("REMOVE {FAILING_RUN}"))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        applied(updated, "UpdateItem").map(|_| ())
    }

    /// The endpoints whose run of failures began at `began_by` or before, oldest
    /// first: one Query of the sparse index of failing endpoints, followed across
    /// pages. The index holds their keys only; read each for the rest.
    pub async fn failing_endpoints(
        &self,
        began_by: OffsetDateTime,
    ) -> Result<Vec<(Account, EndpointId)>, StoreError> {
        let (index, index_pk, index_sk) = schema::INDEXES[0];
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h AND #r <= :by")
            .expression_attribute_names("#h", index_pk)
            .expression_attribute_names("#r", index_sk)
            .expression_attribute_values(":h", s(FAILING_INDEX_PK))
            .expression_attribute_values(":by", s(time_text(began_by)))
            .into_paginator()
            .items()
            .send();
        let mut failing = Vec::new();
        while let Some(item) = pages.next().await {
            failing.push(failing_endpoint_from_item(
                &item.map_err(aws_error("Query"))?,
            )?);
        }
        Ok(failing)
    }
}
