//! `GET /v1/accounts/{account}/messages/{msg_id}`: a message, its payload and its attempts.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::Value;
use shared::account::Account;
use shared::http::{ApiError, json};
use shared::ids::MessageId;

use crate::views::MessageOut;
use crate::{Deps, internal};

pub async fn get(deps: &Deps, account: &Account, id: &str) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::not_found(format!("no message {id}"));
    let message_id = MessageId::parse(id).ok_or_else(not_found)?;
    let message = deps
        .store
        .get_message(account, &message_id)
        .await
        .map_err(internal("could not read a message"))?
        .ok_or_else(not_found)?;
    let attempts = deps
        .store
        .attempts_of_message(account, &message_id)
        .await
        .map_err(internal("could not read a message's attempts"))?;
    let payload: Value = serde_json::from_str(&message.payload).map_err(|error| {
        tracing::error!(%error, message_id = id, "a stored payload is not JSON");
        ApiError::internal()
    })?;
    Ok(json(
        StatusCode::OK,
        &MessageOut::new(&message, payload, &attempts),
    ))
}
