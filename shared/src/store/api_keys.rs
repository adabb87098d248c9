//! Platform keys: stored by their hash, looked up with one GetItem.

use time::OffsetDateTime;

use super::codec::{s, time_text};
use super::keys::{API_KEY_SK, api_key_pk};
use super::schema::{PARTITION_KEY as PK, SORT_KEY as SK};
use super::{Store, StoreError, aws_error};

impl Store {
    pub async fn put_api_key(&self, key_hash: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(api_key_pk(key_hash)))
            .item(SK, s(API_KEY_SK))
            .item("created_at", s(time_text(OffsetDateTime::now_utc())))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    pub async fn api_key_exists(&self, key_hash: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(api_key_pk(key_hash)))
            .key(SK, s(API_KEY_SK))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(aws_error("GetItem"))?;
        Ok(output.item.is_some())
    }
}
