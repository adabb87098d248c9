//! Raising operational events (see [`crate::operational`]): a raise is handed to the
//! delivery queue as a task, and the dispatcher does it like any task — disabling
//! the endpoint concerned (for `endpoint.disabled`), storing the message under its
//! derived id, enqueueing a job per subscriber. Each step repeats harmlessly, so a
//! raise that stops part-way is finished when its task comes back.

use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{DeliveryJob, Recipient};
use crate::operational::{self, Raise};
use crate::queue::Queues;
use crate::retry::with_backoff;
use crate::store::{Store, StoreError};
use crate::task::Task;

/// Tries of a raise task's send, and the pause after the first failure (doubling).
/// The SDK already retries what it can; these cover a call that failed outright.
const SEND_TRIES: u32 = 3;
const SEND_PAUSE: Duration = Duration::from_millis(50);

/// Puts `raise` on the delivery queue; `false` when it could not be sent.
pub async fn enqueue(queues: &Queues, raise: &Raise) -> bool {
    let bodies = [Task::Raise(raise.clone()).to_body()];
    match with_backoff(SEND_TRIES, SEND_PAUSE, || queues.send_bodies(&bodies)).await {
        Ok(()) => {
            tracing::info!(message_id = %raise.message_id, event_type = %raise.event_type, endpoint_id = %raise.endpoint_id, "operational event raised");
            true
        }
        Err(error) => {
            tracing::error!(%error, message_id = %raise.message_id, event_type = %raise.event_type, "could not raise an operational event");
            false
        }
    }
}

/// The endpoint write of an `endpoint.disabled` raise (none for the others);
/// `Ok(false)` when its owner changed the endpoint since the raise was decided.
pub async fn disable_endpoint(store: &Store, raise: &Raise) -> Result<bool, StoreError> {
    match &raise.disable {
        Some(disable) => {
            store
                .disable_endpoint(
                    &raise.account,
                    &raise.endpoint_id,
                    disable,
                    &raise.message_id,
                )
                .await
        }
        None => Ok(true),
    }
}

/// Raises `endpoint.disabled` (`raise`, made by [`Raise::disabled`] or
/// [`Raise::failing_too_long`]) and disables its endpoint at once, so its next
/// deliveries stop; the task disables it too, should this write fail. `false`
/// when the raise could not be enqueued: the endpoint is then left as it is.
pub async fn disable(store: &Store, queues: &Queues, raise: &Raise) -> bool {
    if !enqueue(queues, raise).await {
        return false;
    }
    if let Err(error) = disable_endpoint(store, raise).await {
        tracing::warn!(%error, endpoint_id = %raise.endpoint_id, "could not disable an endpoint; its raise will");
    }
    true
}

/// Does a raise task: the endpoint disabled (for `endpoint.disabled`) and, if any
/// endpoint receives it, the message stored under its derived id and a job enqueued
/// for each such endpoint.
pub async fn run(
    store: &Store,
    queues: &Queues,
    api_version: &str,
    raise: &Raise,
) -> Result<(), String> {
    let disabled = disable_endpoint(store, raise)
        .await
        .map_err(|error| format!("could not disable the endpoint: {error}"))?;
    if !disabled {
        tracing::info!(endpoint_id = %raise.endpoint_id, "endpoint changed by its owner since; not disabled");
        return Ok(());
    }
    let account = store
        .account_endpoints(&raise.account)
        .await
        .map_err(|error| format!("could not read the endpoints: {error}"))?;
    if !account.settings.webhooks_enabled {
        tracing::info!(message_id = %raise.message_id, "the account's webhooks are disabled; nothing to enqueue");
        return Ok(());
    }
    let receivers: Vec<_> = account
        .endpoints
        .iter()
        .filter(|e| operational::receives(e, &raise.event_type, &raise.endpoint_id))
        .map(Recipient::from)
        .collect();
    // Most accounts subscribe no endpoint to operational events: no message to keep.
    if receivers.is_empty() {
        tracing::info!(message_id = %raise.message_id, event_type = %raise.event_type, "no endpoint receives this operational event");
        return Ok(());
    }
    let message = raise.message(api_version, OffsetDateTime::now_utc());
    // A message already there is this raise's own, stored by an earlier try.
    store
        .insert_message(&message, None)
        .await
        .map_err(|error| format!("could not store the message: {error}"))?;
    let jobs = DeliveryJob::for_endpoints(&message, receivers);
    queues
        .send_jobs(&jobs)
        .await
        .map_err(|error| format!("could not enqueue the jobs: {error}"))?;
    tracing::info!(message_id = %message.id, event_type = %message.event_type, endpoints = jobs.len(), "operational event fanned out");
    Ok(())
}

/// The auto-disable sweep: every endpoint failing without a success since before
/// `now - disable_after` is disabled and announced. One Query of the endpoints that
/// are failing (a sparse index), however many endpoints there are, and a read of
/// each found; the number disabled. An endpoint whose raise could not be enqueued is left for the next sweep.
pub async fn sweep(
    store: &Store,
    queues: &Queues,
    now: OffsetDateTime,
    disable_after: Duration,
) -> Result<usize, StoreError> {
    let mut disabled = 0;
    for (account, id) in store.failing_endpoints(now - disable_after).await? {
        let Some((endpoint, _)) = store.get_endpoint(&account, &id).await? else {
            continue;
        };
        let Some(since) = endpoint.failing_since else {
            continue;
        };
        if endpoint.disabled || !operational::disable_due(Some(since), now, disable_after) {
            continue;
        }
        let raise = Raise::failing_too_long(&endpoint, since, disable_after, now);
        if disable(store, queues, &raise).await {
            disabled += 1;
        }
    }
    Ok(disabled)
}
