//! The work on the delivery queue that is not a delivery: fan-out tasks ingest
//! handed over and the rest of recoveries the API began, done here and deleted
//! only once every job is enqueued. A task that
//! fails comes back on the retry schedule and, after the last attempt, is parked
//! in the DLQ like a job, to be replayed from there.

use std::time::Instant;

use aws_lambda_events::event::sqs::SqsMessage;
use shared::model::DeliveryJob;
use shared::retry::FailureKind;
use shared::task::{FanOut, Recover, Task};

use crate::pending::Pending;
use crate::{Deps, Outcome, attempt_number, park, retry_after, retry_delay};

/// Does `task`, the body of `record`.
pub(crate) async fn run(
    deps: &Deps,
    pending: &Pending,
    received: Instant,
    record: &SqsMessage,
    task: &Task,
) -> Outcome {
    let done = match task {
        Task::FanOut(fan_out) => enqueue_jobs(deps, fan_out).await,
        Task::Recover(part) => recover(deps, received, part).await,
        Task::Raise(raise) => crate::raise::run(deps, raise).await,
    };
    let Err(error) = done else {
        return Outcome::Done;
    };
    tracing::warn!(sqs_message_id = ?record.message_id, %error, "task failed");
    let attempt = attempt_number(deps, record, 0);
    match retry_delay(deps, received, attempt, FailureKind::Other, None) {
        Some(delay) => retry_after(pending, record, delay),
        None => {
            let body = record.body.as_deref().unwrap_or_default();
            park(deps, pending, record, body, "exhausted").await
        }
    }
}

/// Continues a recovery for [`shared::recover::BUDGET`] from when the batch came,
/// handing the rest on again if need be. A repeat after a failure queues again
/// what this part had queued, under the same message ids.
async fn recover(deps: &Deps, received: Instant, part: &Recover) -> Result<(), String> {
    let deadline = received + shared::recover::BUDGET;
    let progress = shared::recover::run(&deps.store, &deps.queues, part, deadline)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(
        endpoint_id = %part.endpoint_id,
        queued = progress.queued,
        continuing = progress.continuing,
        "recovery continued"
    );
    Ok(())
}

/// Enqueues the delivery jobs a fan-out task names. A repeat after a partial send
/// enqueues some jobs twice, under the same message id, which receivers deduplicate.
async fn enqueue_jobs(deps: &Deps, task: &FanOut) -> Result<(), String> {
    let message = match deps
        .store
        .get_message(&task.account, &task.message_id)
        .await
    {
        Ok(Some(message)) => message,
        Ok(None) => {
            // Taken back by a request that answered 500, or expired: nothing to deliver.
            tracing::warn!(message_id = %task.message_id, "fan-out task without its message; dropped");
            return Ok(());
        }
        Err(error) => return Err(format!("could not read the message: {error}")),
    };
    let jobs = DeliveryJob::for_endpoints(&message, task.recipients.clone());
    deps.queues
        .send_jobs(&jobs)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(message_id = %task.message_id, endpoints = jobs.len(), "fan-out task done");
    Ok(())
}
