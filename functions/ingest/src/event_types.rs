//! `GET` and `POST /v1/event-types`, `PATCH` and `DELETE /v1/event-types/{name}`:
//! the catalog, and the types the platform registers beside the built-in ones.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::catalog;
use shared::event_type::EventType;
use shared::http::{ApiError, MAX_BODY_BYTES, json, json_object, no_content, required_json_object};
use shared::registry::{self, Change, RegisteredType};
use shared::store::StoreError;
use time::OffsetDateTime;

use crate::Deps;

/// How often a change is tried against a type that keeps changing under it.
const WRITE_ATTEMPTS: usize = 3;

fn internal(context: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |error| {
        tracing::error!(%error, "{context}");
        ApiError::internal()
    }
}

/// `GET /v1/event-types` → 200 `{"data": [...]}`, read from the table.
pub async fn list(deps: &Deps) -> Result<Response<Body>, ApiError> {
    let catalog = deps
        .store
        .event_type_names()
        .await
        .map_err(internal("could not read the event types"))?;
    Ok(json(StatusCode::OK, &json!({"data": catalog.listing()})))
}

/// `POST /v1/event-types` → 201 the type; 409 when the name is taken, built-in included.
pub async fn register(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = required_json_object(req, MAX_BODY_BYTES)?;
    let registered = registry::parse_new(&body, OffsetDateTime::now_utc())?;
    let taken = || ApiError::conflict(format!("an event type `{}` exists", registered.name));
    if catalog::is_builtin(registered.name.as_str()) {
        return Err(taken());
    }
    let created = deps
        .store
        .register_event_type(&registered)
        .await
        .map_err(internal("could not store an event type"))?;
    if !created {
        return Err(taken());
    }
    tracing::info!(event_type = %registered.name, "event type registered");
    Ok(json(StatusCode::CREATED, &registered.view()))
}

/// `PATCH /v1/event-types/{name}` → 200 the type.
pub async fn patch(deps: &Deps, name: &str, req: &Request) -> Result<Response<Body>, ApiError> {
    let change = registry::parse_change(&json_object(req)?)?;
    let changed = change_type(deps, name, &change).await?;
    Ok(json(StatusCode::OK, &changed.view()))
}

/// `DELETE /v1/event-types/{name}` → 204: the type is archived.
pub async fn archive(deps: &Deps, name: &str) -> Result<Response<Body>, ApiError> {
    change_type(deps, name, &Change::archive()).await?;
    Ok(no_content())
}

async fn change_type(deps: &Deps, name: &str, change: &Change) -> Result<RegisteredType, ApiError> {
    if catalog::is_builtin(name) {
        return Err(ApiError::validation(format!(
            "`{name}` is a built-in event type; built-in types cannot be changed"
        )));
    }
    let not_found = || ApiError::not_found(format!("no event type {name}"));
    let name = EventType::parse(name).ok_or_else(not_found)?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = deps
            .store
            .event_type(&name)
            .await
            .map_err(internal("could not read an event type"))?
            .ok_or_else(not_found)?;
        // Never before the last change, so the optimistic check below stays meaningful.
        let now =
            OffsetDateTime::now_utc().max(current.updated_at + time::Duration::microseconds(1));
        let changed = change.apply(&current, now);
        if changed == current {
            return Ok(current);
        }
        let written = deps
            .store
            .update_event_type(&changed, current.updated_at)
            .await
            .map_err(internal("could not update an event type"))?;
        if written {
            tracing::info!(event_type = %name, archived = changed.archived, "event type changed");
            return Ok(changed);
        }
    }
    tracing::error!(event_type = %name, "an event type kept changing during a change");
    Err(ApiError::internal())
}
