//! `POST /v1/events`, `GET /v1/event-types`, `GET /health`: accept an event, store it
//! once, and enqueue one delivery job per subscribed endpoint.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::catalog::EVENT_TYPES;
use shared::config::Config;
use shared::event;
use shared::http::{ApiError, authenticate, header_value, json, json_object};
use shared::model::{DeliveryJob, Message};
use shared::queue::Queues;
use shared::store::{Inserted, Store};
use time::OffsetDateTime;

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
    let method = req.method();
    match req.uri().path() {
        "/health" if method == Method::GET => Ok(json(StatusCode::OK, &json!({"status": "ok"}))),
        "/health" => Err(ApiError::method_not_allowed("GET")),
        "/v1/event-types" if method == Method::GET => {
            authenticate(&deps.store, req).await?;
            Ok(json(StatusCode::OK, &json!({"data": EVENT_TYPES})))
        }
        "/v1/event-types" => Err(ApiError::method_not_allowed("GET")),
        "/v1/events" if method == Method::POST => {
            authenticate(&deps.store, req).await?;
            accept_event(deps, req).await
        }
        "/v1/events" => Err(ApiError::method_not_allowed("POST")),
        path => Err(ApiError::not_found(format!("no route {path}"))),
    }
}

fn internal(context: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> ApiError {
    move |error| {
        tracing::error!(%error, "{context}");
        ApiError::internal()
    }
}

async fn accept_event(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let event = event::parse(&body, header_value(req, "idempotency-key"))?;
    let key = event.idempotency_key.clone();
    let message = event.into_message(&deps.config.api_version, OffsetDateTime::now_utc());

    let inserted = deps
        .store
        .insert_message(&message, key.as_deref())
        .await
        .map_err(|e| internal("could not store a message")(&e))?;
    let message = match inserted {
        Inserted::New => message,
        Inserted::Duplicate(original) => {
            tracing::info!(message_id = %original, "duplicate event; nothing enqueued");
            return Ok(json(
                StatusCode::ACCEPTED,
                &json!({"id": original, "endpoints": 0, "duplicate": true}),
            ));
        }
        // An earlier request with this key stored its message but did not enqueue it:
        // this one finishes the job under the message's own id.
        Inserted::Abandoned(original) => deps
            .store
            .get_message(&message.account, &original)
            .await
            .map_err(|e| internal("could not read a message")(&e))?
            .ok_or_else(|| internal("an idempotency key names a missing message")(&original))?,
    };

    match fan_out(deps, &message).await {
        Ok(count) => {
            if let Err(error) = deps.store.complete_message(&message, key.as_deref()).await {
                // The jobs are on the queue; a retry would at worst enqueue them again.
                tracing::warn!(%error, message_id = %message.id, "could not mark a fan-out done");
            }
            tracing::info!(message_id = %message.id, event_type = %message.event_type, endpoints = count, "event accepted");
            Ok(json(
                StatusCode::ACCEPTED,
                &json!({"id": message.id, "endpoints": count}),
            ))
        }
        Err(error) => {
            if let Err(undo) = deps.store.abandon_message(&message, key.as_deref()).await {
                tracing::error!(error = %undo, message_id = %message.id, "could not let go of a message");
            }
            Err(internal("could not enqueue delivery jobs")(&error))
        }
    }
}

/// One delivery job per subscribed endpoint; the number enqueued.
async fn fan_out(deps: &Deps, message: &Message) -> Result<usize, String> {
    let endpoints = deps
        .store
        .subscribed_endpoints(&message.account, &message.event_type, &message.dataset)
        .await
        .map_err(|e| e.to_string())?;
    let jobs: Vec<DeliveryJob> = endpoints
        .into_iter()
        .map(|endpoint| DeliveryJob::new(message, endpoint.id))
        .collect();
    deps.queues
        .send_jobs(&jobs)
        .await
        .map_err(|e| e.to_string())?;
    Ok(jobs.len())
}
