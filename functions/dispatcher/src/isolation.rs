//! The slow lane's moves (ADR 7): jobs of endpoints this instance saw hang lately
//! leave the delivery queue for the slow lane before a batch is delivered, so no
//! batch of the delivery queue waits on them. A job is sent to the slow lane before
//! the event source deletes it here; one whose send failed is delivered here.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use shared::ids::EndpointId;
use shared::isolation::{MovedJob, is_slow_attempt};
use shared::metrics;
use shared::model::DeliveryJob;
use shared::queue::Lane;
use shared::task::Task;

use crate::cache::Addressee;
use crate::{Deps, attempt_number};

/// Moves the delivery queue's jobs of endpoints marked slow to the slow lane, in
/// one send; returns the records left to deliver here.
pub(crate) async fn move_slow_jobs<'r>(
    deps: &Deps,
    records: &'r [SqsMessage],
) -> Vec<&'r SqsMessage> {
    if !deps.queues.has_slow_lane() || deps.slow.is_empty() {
        return records.iter().collect();
    }
    let now = Instant::now();
    let mut kept = Vec::new();
    let mut moving = Vec::new();
    for record in records {
        let body = record.body.as_deref().unwrap_or_default();
        // A task is no delivery, even one naming the endpoint (a raise about it):
        // it is done here, as a job of the slow lane it would be lost.
        let slow = deps.queues.lane_of(record.event_source_arn.as_deref()) == Lane::Main
            && serde_json::from_str::<Addressee>(body)
                .is_ok_and(|target| deps.slow.is_slow(&target.endpoint_id, now))
            && Task::from_body(body).is_none();
        match slow.then(|| serde_json::from_str::<DeliveryJob>(body)) {
            Some(Ok(job)) => moving.push((record, job)),
            _ => kept.push(record),
        }
    }
    if moving.is_empty() {
        return kept;
    }
    let bodies: Vec<String> = moving
        .iter()
        .map(|(record, job)| {
            MovedJob {
                job: job.clone(),
                earlier_attempts: attempt_number(deps, record, 0) - 1,
            }
            .to_body()
        })
        .collect();
    let unsent = match deps.queues.lane(Lane::Slow).send_bodies(&bodies).await {
        Ok(()) => Vec::new(),
        Err(error) => {
            tracing::warn!(%error, "could not move jobs to the slow lane; delivering them here");
            error.unsent(bodies.len())
        }
    };
    for (index, (record, job)) in moving.into_iter().enumerate() {
        if unsent.binary_search(&index).is_ok() {
            kept.push(record);
            continue;
        }
        deps.metrics.add(
            metrics::ISOLATION_DECISIONS,
            Some((metrics::DECISION, "moved")),
        );
        tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, "job moved to the slow lane");
    }
    kept
}

/// Moves one record's job to the slow lane after its delivery here was given up
/// (see [`shared::isolation::SLOW_ATTEMPT`]): `true` once sent, after which the event source deletes it.
pub(crate) async fn move_job(deps: &Deps, job: &DeliveryJob, attempt: u32) -> bool {
    let moved = MovedJob {
        job: job.clone(),
        earlier_attempts: attempt - 1,
    };
    match deps
        .queues
        .lane(Lane::Slow)
        .send_bodies(&[moved.to_body()])
        .await
    {
        Ok(()) => {
            deps.metrics.add(
                metrics::ISOLATION_DECISIONS,
                Some((metrics::DECISION, "moved")),
            );
            tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, "no answer in time; job moved to the slow lane");
            true
        }
        Err(error) => {
            tracing::warn!(%error, message_id = %job.message_id, "could not move a job to the slow lane");
            false
        }
    }
}

/// Marks the endpoint of an attempt that took `took` slow if it was.
pub(crate) fn note_attempt(deps: &Deps, endpoint_id: &EndpointId, took: Duration, timed_out: bool) {
    if is_slow_attempt(took, timed_out) && deps.slow.mark(endpoint_id, Instant::now()) {
        deps.metrics.add(
            metrics::ISOLATION_DECISIONS,
            Some((metrics::DECISION, "marked")),
        );
        tracing::info!(%endpoint_id, took_ms = took.as_millis() as u64, "endpoint marked slow");
    }
}
