//! `POST /v1/events`, `POST /v1/events/batch`, `GET /health`: accept events, store
//! each once, and enqueue one delivery job per subscribed endpoint; and the event
//! types they may have: `GET`/`POST /v1/event-types`, `PATCH`/`DELETE /v1/event-types/{name}`.

mod accept;
mod event_types;

use std::collections::BTreeSet;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use shared::access::Scope;
use shared::catalog::Catalog;
use shared::config::Config;
use shared::event::{self, FieldError, Refusal};
use shared::event_type::EventType;
use shared::http::{
    ApiError, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, admit, json, required_json_object,
};
use shared::queue::Queues;
use shared::store::{Claim, Store, StoreError};

use accept::Accepted;
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
            event_types::list(deps).await
        }
        "/v1/event-types" if method == Method::POST => {
            admit(&deps.store, req, Scope::Platform).await?;
            event_types::register(deps, req).await
        }
        "/v1/event-types" => Err(ApiError::method_not_allowed("GET, POST")),
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
        path => match path.strip_prefix("/v1/event-types/") {
            Some(name) if !name.is_empty() && !name.contains('/') => {
                if method == Method::PATCH {
                    admit(&deps.store, req, Scope::Platform).await?;
                    event_types::patch(deps, name, req).await
                } else if method == Method::DELETE {
                    admit(&deps.store, req, Scope::Platform).await?;
                    event_types::archive(deps, name).await
                } else {
                    Err(ApiError::method_not_allowed("PATCH, DELETE"))
                }
            }
            _ => Err(ApiError::not_found(format!("no route {path}"))),
        },
    }
}

/// The catalog the events naming `names` are checked against. Built-in types never
/// change, so events naming only those read nothing. An event naming any other type
/// reads the types it names as stored now (one consistent BatchGetItem), so a type
/// registered, changed or archived through any instance applies to the next event
/// at every instance; only the named types have their schemas compiled.
async fn catalog<'a>(
    deps: &Deps,
    names: impl Iterator<Item = &'a str>,
) -> Result<Catalog, ApiError> {
    // A name that is not a valid one is not looked up: parsing the event refuses it.
    let others: Vec<EventType> = names
        .filter(|name| !shared::catalog::is_builtin(name))
        .filter_map(EventType::parse)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if others.is_empty() {
        return Ok(Catalog::default());
    }
    let read = async {
        let named = deps.store.event_types_named(&others).await?;
        Catalog::new(named).map_err(StoreError::Corrupt)
    };
    read.await.map_err(|error| {
        tracing::error!(%error, "could not read the event types");
        ApiError::internal()
    })
}

/// The `Idempotency-Key` header as text: any UTF-8, not only the visible ASCII that
/// a header is read as elsewhere (a key read as absent would let a retry through).
fn idempotency_key_header(req: &Request) -> Result<Option<&str>, ApiError> {
    req.headers()
        .get("idempotency-key")
        .map(|value| {
            std::str::from_utf8(value.as_bytes())
                .map_err(|_| FieldError::new("Idempotency-Key", "must be UTF-8 text").into())
        })
        .transpose()
}

/// `POST /v1/events` → 202 `{"id", "endpoints"}` (with `"duplicate": true` for a repeat).
async fn accept_event(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = required_json_object(req, MAX_BODY_BYTES)?;
    let named = body.get("event_type").and_then(Value::as_str);
    let catalog = catalog(deps, named.into_iter()).await?;
    let header_key = idempotency_key_header(req)?;
    let answer = match event::parse(&body, header_key, &catalog) {
        Ok(event) => accept::accept(deps, vec![event])
            .await
            .pop()
            .expect("one answer per event")?,
        Err(refused) => refused_or_duplicate(deps, &body, header_key, refused).await?,
    };
    Ok(json(StatusCode::ACCEPTED, &answer))
}

/// The answer to an event refused as it stands that repeats, under its key, one
/// accepted before: a duplicate, as any repeat is (its type may have been archived,
/// or its schema changed, since). Otherwise the refusal.
async fn refused_or_duplicate(
    deps: &Deps,
    body: &Map<String, Value>,
    header_key: Option<&str>,
    refused: FieldError,
) -> Result<Accepted, ApiError> {
    let Some((account, key, fingerprint)) = event::refused_event_claim(body, header_key) else {
        return Err(refused.into());
    };
    let claim = Claim {
        key: &key,
        fingerprint: &fingerprint,
    };
    match deps.store.finished_claim(&account, claim).await {
        Ok(Some(id)) => Ok(Accepted {
            id,
            endpoints: 0,
            duplicate: true,
        }),
        Ok(None) => Err(refused.into()),
        Err(error) => {
            tracing::error!(%error, "could not read an idempotency claim");
            Err(ApiError::internal())
        }
    }
}

/// `POST /v1/events/batch` → 202 `{"data": [...]}`, one answer per event in order.
async fn accept_batch(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = required_json_object(req, MAX_BATCH_BODY_BYTES)?;
    let named = body
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|event| event.get("event_type").and_then(Value::as_str));
    let catalog = catalog(deps, named).await?;
    let items = event::parse_batch(&body, &catalog)?;
    let valid: Vec<event::NewEvent> = items.iter().filter_map(|i| i.clone().ok()).collect();
    let mut answers = accept::accept(deps, valid).await.into_iter();
    let sent = body.get("events").and_then(Value::as_array);
    let mut data = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let answer = match item {
            Ok(_) => answers.next().expect("one answer per valid event"),
            Err(Refusal::NotAnObject) => {
                Err(ApiError::invalid_json("an event must be a JSON object"))
            }
            Err(Refusal::Invalid(refused)) => {
                let event = sent
                    .and_then(|events| events.get(index))
                    .and_then(Value::as_object)
                    .expect("a refused event of the batch is an object");
                refused_or_duplicate(deps, event, None, refused).await
            }
            Err(Refusal::TooLarge(_)) => Err(ApiError::payload_too_large(
                "the event",
                event::MAX_EVENT_BYTES,
            )),
        };
        data.push(match answer {
            Ok(accepted) => json!(accepted),
            Err(error) => error.body(),
        });
    }
    Ok(json(StatusCode::ACCEPTED, &json!({ "data": data })))
}
