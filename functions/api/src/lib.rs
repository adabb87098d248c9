//! The management API under `/v1/accounts/{account}`: endpoints and their secrets.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::json;
use shared::config::Config;
use shared::endpoint::{self, EndpointIn};
use shared::event::is_valid_name;
use shared::http::{ApiError, authenticate, json, json_object};
use shared::ids::EndpointId;
use shared::model::{Endpoint, EndpointSecrets};
use shared::queue::Queues;
use shared::signing::Secret;
use shared::store::Store;
use time::OffsetDateTime;

/// Page sizes for listings: CONTRACT's bounds.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 250;

/// What the handler needs, built once per instance.
pub struct Deps {
    pub store: Store,
    pub queues: Queues,
    pub config: Config,
}

pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    route(deps, &req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn route(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method();
    match segments.as_slice() {
        ["v1", "accounts", account, "endpoints"] => {
            if !matches!(*method, Method::GET | Method::POST) {
                return Err(ApiError::method_not_allowed("GET, POST"));
            }
            authenticate(&deps.store, req).await?;
            let account = account_name(account)?;
            if method == Method::POST {
                create_endpoint(deps, account, req).await
            } else {
                list_endpoints(deps, account, req).await
            }
        }
        ["v1", "accounts", account, "endpoints", id] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed("GET"));
            }
            authenticate(&deps.store, req).await?;
            get_endpoint(deps, account_name(account)?, id).await
        }
        _ => Err(ApiError::not_found(format!("no route {path}"))),
    }
}

fn account_name(segment: &str) -> Result<&str, ApiError> {
    if is_valid_name(segment) {
        Ok(segment)
    } else {
        Err(ApiError::not_found(format!("no account {segment}")))
    }
}

fn internal(context: &'static str) -> impl FnOnce(shared::store::StoreError) -> ApiError {
    move |error| {
        tracing::error!(%error, "{context}");
        ApiError::internal()
    }
}

/// An endpoint as creation returns it: the only reply besides `GET …/secret` with the secret.
#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    endpoint: &'a Endpoint,
    secret: &'a str,
}

async fn create_endpoint(
    deps: &Deps,
    account: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let EndpointIn {
        url,
        description,
        version,
        event_types,
        datasets,
        format,
        disabled,
    } = endpoint::parse_new(&body, account, deps.config.allow_private_targets)?;
    let now = OffsetDateTime::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new(),
        account: account.to_string(),
        url,
        description,
        version,
        event_types,
        datasets,
        format,
        disabled,
        created_at: now,
        updated_at: now,
    };
    let secrets = EndpointSecrets::new(Secret::generate());
    deps.store
        .create_endpoint(&endpoint, &secrets)
        .await
        .map_err(internal("could not store an endpoint"))?;
    tracing::info!(endpoint_id = %endpoint.id, account, "endpoint created");
    Ok(json(
        StatusCode::CREATED,
        &Created {
            endpoint: &endpoint,
            secret: secrets.current.expose(),
        },
    ))
}

async fn get_endpoint(deps: &Deps, account: &str, id: &str) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::not_found(format!("no endpoint {id}"));
    let id = EndpointId::parse(id).ok_or_else(not_found)?;
    let (endpoint, _) = deps
        .store
        .get_endpoint(account, &id)
        .await
        .map_err(internal("could not read an endpoint"))?
        .ok_or_else(not_found)?;
    Ok(json(StatusCode::OK, &endpoint))
}

async fn list_endpoints(
    deps: &Deps,
    account: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let query = req.query_string_parameters();
    let limit = match query.first("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::validation(format!("limit: must be an integer from 1 to {MAX_PAGE}"))
            })?,
    };
    let cursor = match query.first("cursor") {
        None => None,
        Some(text) => Some(
            EndpointId::parse(text)
                .ok_or_else(|| ApiError::validation("cursor: not a cursor from a previous page"))?,
        ),
    };
    let page = deps
        .store
        .list_endpoints(account, limit, cursor.as_ref())
        .await
        .map_err(internal("could not list endpoints"))?;
    Ok(json(
        StatusCode::OK,
        &json!({"data": page.items, "next_cursor": page.next_cursor}),
    ))
}
