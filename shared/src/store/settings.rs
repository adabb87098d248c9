//! Account settings: one item in the account's partition, read by the fan-out in
//! the same Query as the endpoints (see [`Store::account_endpoints`]).

use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::account_settings_from_item;
use super::keys::account_settings_key;
use super::{Store, StoreError, aws_error};
use crate::account::Account;
use crate::settings::AccountSettings;

impl Store {
    /// An account's settings; the defaults for an account that never changed them.
    pub async fn account_settings(&self, account: &Account) -> Result<AccountSettings, StoreError> {
        self.read_item(account_settings_key(account))
            .await?
            .map_or(Ok(AccountSettings::default()), |item| {
                account_settings_from_item(&item)
            })
    }

    /// Writes an account's settings, leaving the item's other attributes be; the same
    /// write again changes nothing.
    pub async fn put_account_settings(
        &self,
        account: &Account,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(account_settings_key(account)))
            .update_expression("SET webhooks_enabled = :enabled")
            .expression_attribute_values(
                ":enabled",
                AttributeValue::Bool(settings.webhooks_enabled),
            )
            .send()
            .await
            .map_err(aws_error("UpdateItem"))?;
        Ok(())
    }
}
