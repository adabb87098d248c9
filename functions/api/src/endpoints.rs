//! `/v1/accounts/{account}/endpoints…`: endpoints, their secrets and their attempts.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use shared::account::Account;
use shared::catalog::Catalog;
use shared::endpoint;
use shared::http::{ApiError, MAX_BODY_BYTES, json, json_object, no_content, required_json_object};
use shared::ids::{AttemptId, EndpointId};
use shared::model::{AttemptStatus, Endpoint, EndpointSecrets};
use shared::signing::Secret;
use shared::store::{Creation, MAX_ENDPOINTS_PER_ACCOUNT};
use time::OffsetDateTime;

use crate::views::{AttemptOut, EndpointOut, EndpointWithSecret, PageOut};
use crate::{Deps, internal, page_cursor, page_limit};

/// How often a PATCH or rotation re-reads an endpoint that changed under it.
const WRITE_ATTEMPTS: usize = 3;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no endpoint {id}"))
}

/// The endpoint `id` of `account`, or 404 when it is absent or another account's.
pub(crate) async fn load(
    deps: &Deps,
    account: &Account,
    id: &str,
) -> Result<(Endpoint, EndpointSecrets), ApiError> {
    let endpoint_id = EndpointId::parse(id).ok_or_else(|| not_found(id))?;
    deps.store
        .get_endpoint(account, &endpoint_id)
        .await
        .map_err(internal("could not read an endpoint"))?
        .ok_or_else(|| not_found(id))
}

/// The event types as stored now: endpoints subscribe to them rarely, and a type
/// registered or archived a moment ago counts. Names only: the api checks no event.
pub(crate) async fn event_type_catalog(deps: &Deps) -> Result<Catalog, ApiError> {
    deps.store
        .event_type_names()
        .await
        .map_err(internal("could not read the event types"))
}

pub async fn create(
    deps: &Deps,
    account: &Account,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body = required_json_object(req, MAX_BODY_BYTES)?;
    let catalog = event_type_catalog(deps).await?;
    let input = endpoint::parse_new(&body, account, deps.config.allow_private_targets, &catalog)?;
    if input.email.is_none() {
        endpoint::refuse_private_host(&input.url, deps.config.allow_private_targets).await?;
    }
    let now = OffsetDateTime::now_utc();
    let (endpoint, secrets) = endpoint::new_endpoint(account, input, now);
    crate::digests::register_first(deps, &endpoint, now).await?;
    let creation = deps
        .store
        .create_endpoint(&endpoint, &secrets)
        .await
        .map_err(internal("could not store an endpoint"))?;
    if creation == Creation::AccountFull {
        return Err(ApiError::validation(format!(
            "an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} endpoints; delete one to make room"
        )));
    }
    tracing::info!(endpoint_id = %endpoint.id, %account, "endpoint created");
    Ok(json(
        StatusCode::CREATED,
        &EndpointWithSecret {
            endpoint: EndpointOut::from(&endpoint),
            secret: endpoint.email.is_none().then(|| secrets.current.expose()),
        },
    ))
}

pub async fn list(
    deps: &Deps,
    account: &Account,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let limit = page_limit(req)?;
    let cursor = page_cursor(req, EndpointId::parse)?;
    let page = deps
        .store
        .list_endpoints(account, limit, cursor.as_ref())
        .await
        .map_err(internal("could not list endpoints"))?;
    Ok(json(StatusCode::OK, &PageOut::<EndpointOut>::new(&page)))
}

pub async fn get(deps: &Deps, account: &Account, id: &str) -> Result<Response<Body>, ApiError> {
    let (endpoint, _) = load(deps, account, id).await?;
    Ok(json(StatusCode::OK, &EndpointOut::from(&endpoint)))
}

pub async fn patch(
    deps: &Deps,
    account: &Account,
    id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let catalog = event_type_catalog(deps).await?;
    let changes =
        endpoint::parse_patch(&body, account, deps.config.allow_private_targets, &catalog)?;
    if let Some(url) = &changes.url {
        endpoint::refuse_private_host(url, deps.config.allow_private_targets).await?;
    }
    for _ in 0..WRITE_ATTEMPTS {
        let (current, _) = load(deps, account, id).await?;
        changes.refuse_fields_of_other_kind(&current)?;
        changes.refuse_archived_additions(&current, &catalog)?;
        if changes.is_empty() {
            return Ok(json(StatusCode::OK, &EndpointOut::from(&current)));
        }
        // Never before the last change, so the optimistic check below stays meaningful.
        let now =
            OffsetDateTime::now_utc().max(current.updated_at + time::Duration::microseconds(1));
        let changed = changes.apply(&current, now);
        if changes.digest.is_some() {
            crate::digests::register_first(deps, &changed, now).await?;
        }
        let written = deps
            .store
            .update_endpoint(&changed, current.updated_at)
            .await
            .map_err(internal("could not update an endpoint"))?;
        if written {
            tracing::info!(endpoint_id = %changed.id, %account, "endpoint updated");
            return Ok(json(StatusCode::OK, &EndpointOut::from(&changed)));
        }
    }
    tracing::error!(endpoint_id = id, "an endpoint kept changing during a PATCH");
    Err(ApiError::internal())
}

pub async fn delete(deps: &Deps, account: &Account, id: &str) -> Result<Response<Body>, ApiError> {
    let endpoint_id = EndpointId::parse(id).ok_or_else(|| not_found(id))?;
    let deleted = deps
        .store
        .delete_endpoint(account, &endpoint_id)
        .await
        .map_err(internal("could not delete an endpoint"))?;
    if !deleted {
        return Err(not_found(id));
    }
    tracing::info!(endpoint_id = id, %account, "endpoint deleted");
    Ok(no_content())
}

/// The endpoint `id` of `account` if it is a webhook endpoint: an email endpoint
/// signs nothing, so its secret routes are 404.
async fn load_webhook(
    deps: &Deps,
    account: &Account,
    id: &str,
) -> Result<(Endpoint, EndpointSecrets), ApiError> {
    let (endpoint, secrets) = load(deps, account, id).await?;
    if endpoint.email.is_some() {
        return Err(ApiError::not_found(format!(
            "{id} is an email endpoint, which has no secret"
        )));
    }
    Ok((endpoint, secrets))
}

pub async fn secret(deps: &Deps, account: &Account, id: &str) -> Result<Response<Body>, ApiError> {
    let (_, secrets) = load_webhook(deps, account, id).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"secret": secrets.current.expose()}),
    ))
}

pub async fn rotate_secret(
    deps: &Deps,
    account: &Account,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (endpoint, secrets) = load_webhook(deps, account, id).await?;
        let now = OffsetDateTime::now_utc();
        let rotated = endpoint::rotated(&secrets, Secret::generate(), now);
        let written = deps
            .store
            .rotate_secret(&endpoint, &rotated, &secrets.current, now)
            .await
            .map_err(internal("could not rotate a secret"))?;
        if written {
            tracing::info!(endpoint_id = id, %account, "secret rotated");
            return Ok(json(
                StatusCode::OK,
                &json!({"secret": rotated.current.expose()}),
            ));
        }
    }
    tracing::error!(
        endpoint_id = id,
        "an endpoint kept changing during a rotation"
    );
    Err(ApiError::internal())
}

pub async fn attempts(
    deps: &Deps,
    account: &Account,
    id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, _) = load(deps, account, id).await?;
    let status =
        match req
            .query_string_parameters_ref()
            .and_then(|q| q.first("status"))
        {
            None => None,
            Some(text) => Some(AttemptStatus::parse(text).ok_or_else(|| {
                ApiError::validation("status: must be \"succeeded\" or \"failed\"")
            })?),
        };
    let limit = page_limit(req)?;
    let cursor = page_cursor(req, AttemptId::parse)?;
    let page = deps
        .store
        .endpoint_attempts(account, &endpoint.id, status, limit, cursor.as_ref())
        .await
        .map_err(internal("could not list attempts"))?;
    Ok(json(StatusCode::OK, &PageOut::<AttemptOut>::new(&page)))
}
