//! `POST /v1/events`, `POST /v1/events/batch`, `GET /v1/event-types`, `GET /health`:
//! accept events, store each once, and enqueue one delivery job per subscribed endpoint.

mod accept;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::access::Scope;
use shared::catalog::EVENT_TYPES;
use shared::config::Config;
use shared::event::{self, Refusal};
use shared::http::{
    ApiError, MAX_BATCH_BODY_BYTES, admit, header_value, json, json_object, json_object_within,
};
use shared::queue::Queues;
use shared::store::Store;

pub use accept::{INLINE_JOBS, LARGE_FAN_OUT};

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
            admit(&deps.store, req, Scope::Catalog).await?;
            Ok(json(StatusCode::OK, &json!({"data": EVENT_TYPES})))
        }
        "/v1/event-types" => Err(ApiError::method_not_allowed("GET")),
        "/v1/events" if method == Method::POST => {
            admit(&deps.store, req, Scope::Platform).await?;
            accept_event(deps, req).await
        }
        "/v1/events" => Err(ApiError::method_not_allowed("POST")),
        "/v1/events/batch" if method == Method::POST => {
            admit(&deps.store, req, Scope::Platform).await?;
            accept_batch(deps, req).await
        }
        "/v1/events/batch" => Err(ApiError::method_not_allowed("POST")),
        path => Err(ApiError::not_found(format!("no route {path}"))),
    }
}

/// `POST /v1/events` → 202 `{"id", "endpoints"}` (with `"duplicate": true` for a repeat).
async fn accept_event(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let event = event::parse(&body, header_value(req, "idempotency-key"))?;
    let answer = accept::accept(deps, vec![event])
        .await
        .pop()
        .expect("one answer per event")?;
    Ok(json(StatusCode::ACCEPTED, &answer))
}

/// `POST /v1/events/batch` → 202 `{"data": [...]}`, one answer per event in order.
async fn accept_batch(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = json_object_within(req, MAX_BATCH_BODY_BYTES)?;
    let items = event::parse_batch(&body)?;
    let valid: Vec<event::NewEvent> = items.iter().filter_map(|i| i.clone().ok()).collect();
    let mut answers = accept::accept(deps, valid).await.into_iter();
    let data: Vec<Value> = items
        .into_iter()
        .map(|item| {
            let answer = match item {
                Ok(_) => answers.next().expect("one answer per valid event"),
                Err(Refusal::Invalid(error)) => Err(error.into()),
                Err(Refusal::TooLarge(_)) => Err(ApiError::payload_too_large(
                    "the event",
                    event::MAX_EVENT_BYTES,
                )),
            };
            match answer {
                Ok(accepted) => json!(accepted),
                Err(error) => error.body(),
            }
        })
        .collect();
    Ok(json(StatusCode::ACCEPTED, &json!({ "data": data })))
}
