//! `/v1/accounts/{account}/settings` and `/v1/accounts/{account}/portal-sessions`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::account::Account;
use shared::http::{ApiError, json, json_object, no_content, request_origin};
use shared::portal::{self, PortalToken};
use shared::settings;
use time::OffsetDateTime;

use crate::{Deps, internal};

/// `GET …/settings` → 200 the settings.
pub async fn settings(deps: &Deps, account: &Account) -> Result<Response<Body>, ApiError> {
    let settings = deps
        .store
        .account_settings(account)
        .await
        .map_err(internal("could not read an account's settings"))?;
    Ok(json(StatusCode::OK, &settings))
}

/// `PATCH …/settings` with any of the settings → 200 the settings.
pub async fn patch_settings(
    deps: &Deps,
    account: &Account,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let patch = settings::parse_patch(&json_object(req)?)?;
    let current = deps
        .store
        .account_settings(account)
        .await
        .map_err(internal("could not read an account's settings"))?;
    let changed = patch.apply(current);
    if changed != current {
        deps.store
            .put_account_settings(account, &changed)
            .await
            .map_err(internal("could not store an account's settings"))?;
        tracing::info!(
            %account,
            webhooks_enabled = changed.webhooks_enabled,
            "account settings changed"
        );
    }
    Ok(json(StatusCode::OK, &changed))
}

/// The 409 of a delivery an account whose webhooks are disabled asks for.
pub(crate) async fn require_webhooks_enabled(
    deps: &Deps,
    account: &Account,
) -> Result<(), ApiError> {
    let settings = deps
        .store
        .account_settings(account)
        .await
        .map_err(internal("could not read an account's settings"))?;
    if settings.webhooks_enabled {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "webhooks are disabled for account {account}; enable them \
             (PATCH /v1/accounts/{account}/settings with \"webhooks_enabled\": true) first"
        )))
    }
}

/// `POST …/portal-sessions` with an optional `ttl_seconds` → 201 `{"token", "url", "expires_at"}`.
pub async fn create_portal_session(
    deps: &Deps,
    account: &Account,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let ttl = portal::parse_ttl(&json_object(req)?)?;
    // Read before the token is written: a revocation in between ends this token too.
    let generation = deps
        .store
        .portal_generation(account)
        .await
        .map_err(internal("could not read an account's portal generation"))?;
    let token = portal::generate_token(account);
    let stored = PortalToken::new(&token, account, generation, OffsetDateTime::now_utc(), ttl);
    deps.store
        .put_portal_token(&stored)
        .await
        .map_err(internal("could not store a portal token"))?;
    tracing::info!(%account, expires_at = %stored.expires_at, "portal session made");
    let url = portal::page_url(&request_origin(req).unwrap_or_default(), &token);
    Ok(json(
        StatusCode::CREATED,
        &json!({
            "token": token,
            "url": url,
            "expires_at": shared::timefmt::format(stored.expires_at),
        }),
    ))
}

/// `DELETE …/portal-sessions` → 204: every portal token of the account ends.
pub async fn revoke_portal_sessions(
    deps: &Deps,
    account: &Account,
) -> Result<Response<Body>, ApiError> {
    deps.store
        .revoke_portal_tokens(account)
        .await
        .map_err(internal("could not revoke an account's portal sessions"))?;
    tracing::info!(%account, "portal sessions revoked");
    Ok(no_content())
}
