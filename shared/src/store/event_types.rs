//! Registered event types: one item each in one partition, so the whole registry
//! is one Query and named ones are read by key. Each write carries a new token
//! (`written_by`), so a conditional write whose answer was lost, finding its
//! condition failed when sent again, recognises its own version of the item.

use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::{Item, event_type_from_item, event_type_item, s, time_text};
use super::keys::{EVENT_TYPES_PK, event_type_key};
use super::schema::PARTITION_KEY as PK;
use super::{Store, StoreError, aws_error, is_condition_failure};
use crate::catalog::Catalog;
use crate::event_type::EventType;
use crate::registry::RegisteredType;

impl Store {
    /// Stores a new type: `false` when one of that name is there already.
    pub async fn register_event_type(
        &self,
        registered: &RegisteredType,
    ) -> Result<bool, StoreError> {
        self.put_event_type(registered, "attribute_not_exists(#pk)", None)
            .await
    }

    /// Writes `changed` over the version last updated at `previous_updated_at`:
    /// `false` when the type changed (or went) meanwhile.
    pub async fn update_event_type(
        &self,
        changed: &RegisteredType,
        previous_updated_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let previous = s(time_text(previous_updated_at));
        self.put_event_type(
            changed,
            "attribute_exists(#pk) AND updated_at = :previous",
            Some(previous),
        )
        .await
    }

    /// Puts `registered` under `condition` with a new token: `false` when the
    /// condition failed, unless the version there is this write's own.
    async fn put_event_type(
        &self,
        registered: &RegisteredType,
        condition: &str,
        previous: Option<AttributeValue>,
    ) -> Result<bool, StoreError> {
        let token = ulid::Ulid::new().to_string();
        let mut item = event_type_key(&registered.name);
        item.extend(event_type_item(registered, &token));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK);
        if let Some(previous) = previous {
            put = put.expression_attribute_values(":previous", previous);
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => self.written_by(&registered.name, &token).await,
            Err(e) => Err(aws_error("PutItem")(e)),
        }
    }

    /// Whether the stored version of `name` is the one the write `token` made.
    async fn written_by(&self, name: &EventType, token: &str) -> Result<bool, StoreError> {
        Ok(self
            .get_event_type_item(name)
            .await?
            .is_some_and(|(_, written_by)| written_by == token))
    }

    async fn get_event_type_item(
        &self,
        name: &EventType,
    ) -> Result<Option<(RegisteredType, String)>, StoreError> {
        self.read_item(event_type_key(name))
            .await?
            .map(|item| event_type_from_item(&item))
            .transpose()
    }

    /// The registered type `name`; `None` when there is none.
    pub async fn event_type(&self, name: &EventType) -> Result<Option<RegisteredType>, StoreError> {
        Ok(self.get_event_type_item(name).await?.map(|(t, _)| t))
    }

    /// Every registered type, by name.
    pub async fn event_types(&self) -> Result<Vec<RegisteredType>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(EVENT_TYPES_PK.into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut types = Vec::new();
        while let Some(item) = pages.next().await {
            let item: Item = item.map_err(aws_error("Query"))?;
            types.push(event_type_from_item(&item)?.0);
        }
        Ok(types)
    }

    /// The registered types among `names`, read consistently (a change just made
    /// is seen): one item each, not the whole registry.
    pub async fn event_types_named(
        &self,
        names: &[EventType],
    ) -> Result<Vec<RegisteredType>, StoreError> {
        let keys = names.iter().map(event_type_key).collect();
        self.read_items(keys, true)
            .await?
            .iter()
            .map(|item| Ok(event_type_from_item(item)?.0))
            .collect()
    }

    /// The built-in types with every registered one, for naming types only: no
    /// schema compiled ([`Catalog::names_only`]).
    pub async fn event_type_names(&self) -> Result<Catalog, StoreError> {
        Ok(Catalog::names_only(self.event_types().await?))
    }
}
