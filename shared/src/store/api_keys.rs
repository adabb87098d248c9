//! Platform keys: stored by their hash, looked up with one GetItem, and listed
//! through `gsi1` under one partition (`KEYS`), oldest first. A key found is
//! trusted by the instance for [`KNOWN_KEY_TTL`] without reading it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::codec::{Item, api_key_from_item, api_key_item, s};
use super::keys::{API_KEY_SK, API_KEYS_INDEX_PK, api_key_pk};
use super::schema::{self, PARTITION_KEY as PK, SORT_KEY as SK};
use super::{Store, StoreError, aws_error};
use crate::ids::ApiKeyId;
use crate::keys::ApiKey;

/// How long an instance trusts a key it found: a revoked key stops working within
/// this, everywhere (at once on the instance that revoked it).
pub const KNOWN_KEY_TTL: Duration = Duration::from_secs(30);

/// The hashes of the keys an instance found, and when it read each. Keys not
/// found are not remembered, so a new key works at once.
#[derive(Debug, Default)]
pub(super) struct KnownKeys(Mutex<HashMap<String, Instant>>);

impl KnownKeys {
    fn is_known(&self, key_hash: &str, now: Instant) -> bool {
        let known = self.0.lock().expect("not poisoned");
        known
            .get(key_hash)
            .is_some_and(|&read| now.saturating_duration_since(read) < KNOWN_KEY_TTL)
    }

    fn remember(&self, key_hash: &str, now: Instant) {
        let mut known = self.0.lock().expect("not poisoned");
        // Expired entries go too, so the map holds only the keys in use.
        known.retain(|_, &mut read| now.saturating_duration_since(read) < KNOWN_KEY_TTL);
        known.insert(key_hash.to_string(), now);
    }

    fn forget(&self, key_hash: &str) {
        self.0.lock().expect("not poisoned").remove(key_hash);
    }
}

impl Store {
    /// Stores a platform key. Its hash and id are new, so writing it again (after an
    /// answer was lost) stores the same item.
    pub async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let (_, index_pk, index_sk) = schema::INDEXES[0];
        let mut item: Item = HashMap::from([
            (PK.into(), s(api_key_pk(&key.key_hash))),
            (SK.into(), s(API_KEY_SK)),
            (index_pk.into(), s(API_KEYS_INDEX_PK)),
            (index_sk.into(), s(key.id.as_str())),
        ]);
        item.extend(api_key_item(key));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// Whether a platform key of this hash exists: from the instance's memory when
    /// it was found less than [`KNOWN_KEY_TTL`] ago, else one consistent GetItem (a
    /// key created a moment ago works at once; read once a while, it costs little).
    pub async fn api_key_exists(&self, key_hash: &str) -> Result<bool, StoreError> {
        if self.known_keys.is_known(key_hash, Instant::now()) {
            return Ok(true);
        }
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(api_key_pk(key_hash)))
            .key(SK, s(API_KEY_SK))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        let exists = output.item.is_some();
        if exists {
            self.known_keys.remember(key_hash, Instant::now());
        }
        Ok(exists)
    }

    /// Every platform key, oldest first; `only` narrows the listing to one id.
    async fn query_api_keys(&self, only: Option<&ApiKeyId>) -> Result<Vec<ApiKey>, StoreError> {
        let (index, index_pk, index_sk) = schema::INDEXES[0];
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .expression_attribute_names("#h", index_pk)
            .expression_attribute_values(":h", s(API_KEYS_INDEX_PK));
        query = match only {
            Some(id) => query
                .key_condition_expression("#h = :h AND #r = :id")
                .expression_attribute_names("#r", index_sk)
                .expression_attribute_values(":id", s(id.as_str())),
            None => query.key_condition_expression("#h = :h"),
        };
        let mut pages = query.into_paginator().items().send();
        let mut keys = Vec::new();
        while let Some(item) = pages.next().await {
            keys.push(api_key_from_item(&item.map_err(aws_error("Query"))?)?);
        }
        Ok(keys)
    }

    /// Every platform key, oldest first (ids are time-sortable).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.query_api_keys(None).await
    }

    /// Ends the platform key `id`; `false` when there is none. Deleting is
    /// idempotent: a retry after a lost answer finds nothing more to do.
    pub async fn revoke_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        let Some(key) = self.query_api_keys(Some(id)).await?.pop() else {
            return Ok(false);
        };
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(api_key_pk(&key.key_hash)))
            .key(SK, s(API_KEY_SK))
            .send()
            .await
            .map_err(aws_error("DeleteItem"))?;
        self.known_keys.forget(&key.key_hash);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsi1_projects_every_attribute_a_listed_key_is_read_with() {
        let key = ApiKey::new("hlk_test", time::OffsetDateTime::now_utc());
        let projected = schema::projected_attributes(schema::INDEXES[0].0);
        for name in api_key_item(&key).keys() {
            assert!(projected.contains(&name.as_str()), "{name}");
        }
    }

    #[test]
    fn a_key_is_trusted_for_its_ttl_then_read_again() {
        let known = KnownKeys::default();
        let read = Instant::now();
        assert!(!known.is_known("h", read));
        known.remember("h", read);
        assert!(known.is_known("h", read + KNOWN_KEY_TTL - Duration::from_millis(1)));
        assert!(!known.is_known("h", read + KNOWN_KEY_TTL));
        assert!(!known.is_known("other", read));
        known.forget("h");
        assert!(!known.is_known("h", read));
    }

    #[test]
    fn remembering_drops_expired_keys() {
        let known = KnownKeys::default();
        let read = Instant::now();
        known.remember("old", read);
        known.remember("new", read + KNOWN_KEY_TTL);
        assert_eq!(known.0.lock().unwrap().len(), 1);
    }
}
