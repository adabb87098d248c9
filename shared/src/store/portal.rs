//! Portal tokens, each an item keyed by its hash (with the table's TTL), and the
//! account's portal generation, kept in the account's settings item.

use super::codec::{n, portal_generation_from_item, portal_token_from_item, portal_token_item};
use super::keys::{account_settings_key, portal_token_key};
use super::{Store, StoreError, aws_error};
use crate::account::Account;
use crate::portal::PortalToken;

impl Store {
    /// Stores a new token. Its hash is random, so writing it again (after an answer
    /// was lost) stores the same item.
    pub async fn put_portal_token(&self, token: &PortalToken) -> Result<(), StoreError> {
        let mut item = portal_token_key(&token.token_hash);
        item.extend(portal_token_item(token));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(aws_error("PutItem"))?;
        Ok(())
    }

    /// The token stored under `token_hash`, expired or not; `None` when there is none.
    pub async fn portal_token(&self, token_hash: &str) -> Result<Option<PortalToken>, StoreError> {
        self.read_item(portal_token_key(token_hash))
            .await?
            .map(|item| portal_token_from_item(&item))
            .transpose()
    }

    /// The account's portal generation: 0 until its sessions are first revoked.
    pub async fn portal_generation(&self, account: &Account) -> Result<u64, StoreError> {
        self.read_item(account_settings_key(account))
            .await?
            .map_or(Ok(0), |item| portal_generation_from_item(&item))
    }

    /// Ends every portal token of `account` at once by moving its generation on.
    /// Sent twice (an answer lost), it moves twice: tokens made in between end too,
    /// which errs on the closed side.
    pub async fn revoke_portal_tokens(&self, account: &Account) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(account_settings_key(account)))
            .update_expression("ADD portal_generation :one")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(aws_error("UpdateItem"))?;
        Ok(())
    }
}
