//! The operators' dead-letter queue routes: `GET /v1/dlq` and `POST /v1/dlq/replay`.

use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use shared::catalog::Catalog;
use shared::event::any_event_type;
use shared::http::{ApiError, json, json_object};
use shared::ids::EndpointId;
use shared::redrive::{self, Filter};

use crate::Deps;

/// A replay answers within API Gateway's 29 seconds; what is left waits for the next call.
pub const REPLAY_BUDGET: Duration = Duration::from_secs(20);

const REPLAY_FIELDS: &[&str] = &["endpoint_id", "event_type", "limit"];

/// `GET /v1/dlq` → `{"approximate_messages": n}`.
pub async fn stats(deps: &Deps) -> Result<Response<Body>, ApiError> {
    let waiting = deps.queues.dlq_depth().await.map_err(|error| {
        tracing::error!(%error, "could not read the DLQ's depth");
        ApiError::internal()
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({ "approximate_messages": waiting }),
    ))
}

/// `POST /v1/dlq/replay` with an optional filter → `{"replayed": n, "skipped": m}`,
/// and `"complete": false` when the run stopped early (its time ran out, or an
/// error stopped it after moving some jobs): calling again does the rest.
pub async fn replay(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let catalog = crate::endpoints::event_type_catalog(deps).await?;
    let filter = parse_filter(&body, &catalog)?;
    let deadline = Instant::now() + REPLAY_BUDGET;
    let outcome = redrive::redrive(&deps.queues, &filter, Some(deadline), |_| {})
        .await
        .or_else(|stopped| {
            tracing::error!(error = %stopped, "DLQ replay stopped early");
            stopped.into_partial()
        })
        .map_err(|_| ApiError::internal())?;
    tracing::info!(
        replayed = outcome.replayed,
        skipped = outcome.skipped,
        complete = outcome.complete,
        "DLQ replayed"
    );
    Ok(json(StatusCode::OK, &outcome))
}

/// The replay filter from a request body; every field optional.
/// The filter of a replay; its `event_type` may be archived: its jobs may still wait.
pub fn parse_filter(body: &Map<String, Value>, catalog: &Catalog) -> Result<Filter, ApiError> {
    if let Some(unknown) = body.keys().find(|k| !REPLAY_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "{unknown}: unknown field; expected one of {}",
            REPLAY_FIELDS.join(", ")
        )));
    }
    let endpoint_id = match body.get("endpoint_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(EndpointId::parse(text).ok_or_else(|| {
            ApiError::validation(format!("endpoint_id: `{text}` is not an endpoint id"))
        })?),
        Some(_) => return Err(ApiError::validation("endpoint_id: must be a string")),
    };
    let event_type = match body.get("event_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(any_event_type("event_type", name, catalog)?),
        Some(_) => return Err(ApiError::validation("event_type: must be a string")),
    };
    let limit = match body.get("limit") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| ApiError::validation("limit: must be an integer of at least 1"))?,
        ),
    };
    Ok(Filter {
        endpoint_id,
        event_type,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn reads_a_filter_and_refuses_bad_fields() {
        assert_eq!(
            parse_filter(&Map::new(), &Catalog::default()).unwrap(),
            Filter::default()
        );
        let id = EndpointId::new();
        let filter = parse_filter(
            &body(json!({
                "endpoint_id": id.as_str(), "event_type": "sample.created", "limit": 3
            })),
            &Catalog::default(),
        )
        .unwrap();
        assert_eq!(filter.endpoint_id, Some(id));
        assert_eq!(filter.event_type.unwrap(), "sample.created");
        assert_eq!(filter.limit, Some(3));
        for (refused, field) in [
            (json!({"endpoint_id": "nope"}), "endpoint_id"),
            (json!({"endpoint_id": 7}), "endpoint_id"),
            (json!({"event_type": "sample.exploded"}), "event_type"),
            (json!({"limit": 0}), "limit"),
            (json!({"limit": -1}), "limit"),
            (json!({"limit": "5"}), "limit"),
            (json!({"endpoint": "ep_1"}), "endpoint"),
        ] {
            let error = parse_filter(&body(refused.clone()), &Catalog::default()).unwrap_err();
            assert_eq!(error.code, "validation_error", "{refused}");
            assert!(
                error.message.starts_with(field),
                "{refused}: {}",
                error.message
            );
        }
    }
}
