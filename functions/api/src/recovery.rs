//! Redelivery on an endpoint owner's request: a test event, one message again, and
//! every message whose last attempt in a time window failed; none while the
//! account's webhooks are disabled.

use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use shared::account::Account;
use shared::catalog::Catalog;
use shared::event::{NewEvent, known_event_type};
use shared::event_type::EventType;
use shared::http::{ApiError, json, json_object};
use shared::ids::MessageId;
use shared::model::{DeliveryJob, Endpoint};
use shared::operational::{self, Raise};
use shared::task::Recover;
use shared::timefmt;
use time::OffsetDateTime;

use crate::accounts::require_webhooks_enabled;
use crate::{Deps, endpoints, internal};

/// The event type of a test event when the request names none and the endpoint
/// subscribes to everything.
pub const DEFAULT_TEST_EVENT: &str = "dataset.created";
/// The dataset name test events are about, under the endpoint's account.
pub const TEST_DATASET: &str = "hookline-test";

async fn enqueue(deps: &Deps, jobs: &[DeliveryJob]) -> Result<(), ApiError> {
    deps.queues.send_jobs(jobs).await.map_err(|error| {
        tracing::error!(%error, "could not enqueue delivery jobs");
        ApiError::internal()
    })
}

/// `POST …/endpoints/{id}/test` with an optional `event_type` → 202 `{"id": "msg_…"}`.
pub async fn send_test(
    deps: &Deps,
    account: &Account,
    endpoint_id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, _) = endpoints::load(deps, account, endpoint_id).await?;
    require_webhooks_enabled(deps, account).await?;
    let body = json_object(req)?;
    let catalog = endpoints::event_type_catalog(deps).await?;
    let event_type = test_event_type(&body, &endpoint, &catalog)?;
    let now = OffsetDateTime::now_utc();
    // An operational type's test looks as hookline raises it: about no dataset.
    let message = match Raise::test(&event_type, &endpoint, now) {
        Some(raise) => raise.message(&deps.config.api_version, now),
        None => {
            test_event(account, &endpoint, event_type).into_message(&deps.config.api_version, now)
        }
    };
    deps.store
        .insert_message(&message, None)
        .await
        .map_err(internal("could not store a test message"))?;
    if let Err(error) = enqueue(deps, &[DeliveryJob::new(&message, &endpoint)]).await {
        if let Err(undo) = deps.store.remove_message(&message).await {
            tracing::error!(error = %undo, message_id = %message.id, "could not take back a test message");
        }
        return Err(error);
    }
    tracing::info!(message_id = %message.id, endpoint_id = %endpoint.id, "test event queued");
    Ok(json(StatusCode::ACCEPTED, &json!({ "id": message.id })))
}

/// A test event of `event_type` to `endpoint`, about the account's [`TEST_DATASET`].
fn test_event(account: &Account, endpoint: &Endpoint, event_type: EventType) -> NewEvent {
    let mut object = Map::new();
    object.insert("name".into(), Value::String("test".into()));
    object.insert("test".into(), Value::Bool(true));
    NewEvent {
        text: Some(operational::test_text(&endpoint.id)),
        event_type,
        dataset: format!("{account}/{TEST_DATASET}"),
        account: account.clone(),
        object,
        created_at: None,
        api_version: None,
        idempotency_key: None,
        text_template: None,
    }
}

/// The requested event type, else the endpoint's first, else [`DEFAULT_TEST_EVENT`].
fn test_event_type(
    body: &Map<String, Value>,
    endpoint: &Endpoint,
    catalog: &Catalog,
) -> Result<EventType, ApiError> {
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "event_type") {
        return Err(ApiError::validation(format!(
            "{unknown}: unknown field; expected event_type"
        )));
    }
    match body.get("event_type") {
        None | Some(Value::Null) => {
            Ok(endpoint.event_types.first().cloned().unwrap_or_else(|| {
                shared::catalog::builtin(DEFAULT_TEST_EVENT).expect("a built-in type")
            }))
        }
        Some(Value::String(name)) => Ok(known_event_type("event_type", name, catalog)?),
        Some(_) => Err(ApiError::validation("event_type: must be a string")),
    }
}

/// `POST …/endpoints/{id}/messages/{msg_id}/replay` → 202 `{"id": "msg_…"}`: one more
/// delivery of the message, under its own id.
pub async fn replay_message(
    deps: &Deps,
    account: &Account,
    endpoint_id: &str,
    message_id: &str,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, _) = endpoints::load(deps, account, endpoint_id).await?;
    let not_found = || ApiError::not_found(format!("no message {message_id}"));
    let id = MessageId::parse(message_id).ok_or_else(not_found)?;
    let message = deps
        .store
        .get_message(account, &id)
        .await
        .map_err(internal("could not read a message"))?
        .ok_or_else(not_found)?;
    // What does not exist is 404 whatever the settings: they forbid only what could be done.
    require_webhooks_enabled(deps, account).await?;
    let attempts = deps
        .store
        .attempts_of_message(account, &message.id)
        .await
        .map_err(internal("could not read a message's attempts"))?;
    let job = DeliveryJob {
        // Its success after `failing` says `recovered`, though its attempts count afresh.
        after_failing: operational::failing_stands(&attempts, &endpoint.id),
        ..DeliveryJob::new(&message, &endpoint)
    };
    enqueue(deps, &[job]).await?;
    tracing::info!(message_id = %message.id, endpoint_id = %endpoint.id, "message replayed");
    Ok(json(StatusCode::ACCEPTED, &json!({ "id": message.id })))
}

/// `POST …/endpoints/{id}/recover` with `since` (and `until`, default now) →
/// 202 `{"queued": n, "continuing": bool}`: every message whose last attempt in
/// the window failed, queued within `budget`; what is left then is queued in the
/// background (see [`shared::recover`]).
pub async fn recover(
    deps: &Deps,
    account: &Account,
    endpoint_id: &str,
    req: &Request,
    budget: Duration,
) -> Result<Response<Body>, ApiError> {
    let deadline = Instant::now() + budget;
    let (endpoint, _) = endpoints::load(deps, account, endpoint_id).await?;
    require_webhooks_enabled(deps, account).await?;
    let (since, until) = parse_window(&json_object(req)?, OffsetDateTime::now_utc())?;
    let part = Recover {
        account: account.clone(),
        endpoint_id: endpoint.id.clone(),
        since,
        until,
        before: None,
        endpoint_updated_at: Some(endpoint.updated_at),
    };
    let progress = shared::recover::run(&deps.store, &deps.queues, &part, deadline)
        .await
        .map_err(internal("could not recover an endpoint"))?;
    tracing::info!(endpoint_id = %endpoint.id, queued = progress.queued, continuing = progress.continuing, "endpoint recovered");
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "queued": progress.queued, "continuing": progress.continuing }),
    ))
}

/// `since` and `until` (RFC 3339; `until` defaults to `now`), in order.
pub fn parse_window(
    body: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let (since, until) = window_bounds(body)?;
    let since = since.ok_or_else(|| ApiError::validation("since: is required"))?;
    if until.is_none() && since > now {
        return Err(ApiError::validation("since: must not be in the future"));
    }
    in_order(since, until.unwrap_or(now))
}

/// The window `[since, until)`; refused when `until` comes before `since`.
pub fn in_order(
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    if until < since {
        return Err(ApiError::validation("until: must not be before since"));
    }
    Ok((since, until))
}

/// The `since` and `until` a body gives (RFC 3339, null or absent: `None`), and
/// no other field.
pub fn window_bounds(
    body: &Map<String, Value>,
) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), ApiError> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "since" | "until"))
    {
        return Err(ApiError::validation(format!(
            "{unknown}: unknown field; expected since, until"
        )));
    }
    let time = |field: &str| -> Result<Option<OffsetDateTime>, ApiError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => timefmt::parse(text)
                .map(Some)
                .ok_or_else(|| ApiError::validation(format!("{field}: must be an RFC 3339 time"))),
            Some(_) => Err(ApiError::validation(format!(
                "{field}: must be an RFC 3339 time"
            ))),
        }
    };
    Ok((time("since")?, time("until")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_needs_since_and_keeps_its_order() {
        let now = OffsetDateTime::now_utc();
        let body = |value: Value| value.as_object().unwrap().clone();
        let (since, until) =
            parse_window(&body(json!({"since": "2026-01-01T00:00:00Z"})), now).unwrap();
        assert_eq!(since.unix_timestamp(), 1_767_225_600);
        assert_eq!(until, now);
        for (refused, field) in [
            (json!({}), "since"),
            (json!({"since": "yesterday"}), "since"),
            (json!({"since": 5}), "since"),
            // With `until` now, by default: the complaint is of `since`.
            (json!({"since": "2999-01-01T00:00:00Z"}), "since"),
            (
                json!({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
                "until",
            ),
            (
                json!({"since": "2026-01-01T00:00:00Z", "window": 1}),
                "window",
            ),
        ] {
            let error = parse_window(&body(refused.clone()), now).unwrap_err();
            assert_eq!(error.code, "validation_error", "{refused}");
            assert!(
                error.message.starts_with(field),
                "{refused}: {}",
                error.message
            );
        }
    }
}
