//! Where a delivery ends, the operational events it raises ([`shared::raise`]) and
//! the endpoint's run of failures, which auto-disable reads: its start written at
//! the first failure after a success, its end at the first success after failures.

use shared::model::{Attempt, DeliveryJob, Endpoint};
use shared::operational::{self, ATTEMPT_EXHAUSTED, Raise};
use shared::raise::enqueue;
use time::OffsetDateTime;

use crate::Deps;

/// Raises `endpoint.disabled` and disables the endpoint (see
/// [`shared::raise::disable`]); `false` when the raise could not be enqueued and
/// the endpoint is left enabled.
pub(crate) async fn disable(deps: &Deps, raise: &Raise) -> bool {
    let raised = shared::raise::disable(&deps.store, &deps.queues, raise).await;
    deps.endpoints.forget(&raise.account, &raise.endpoint_id);
    raised
}

/// Does a raise task; the endpoint concerned is read afresh afterwards.
pub(crate) async fn run(deps: &Deps, raise: &Raise) -> Result<(), String> {
    let done = shared::raise::run(&deps.store, &deps.queues, &deps.config.api_version, raise).await;
    deps.endpoints.forget(&raise.account, &raise.endpoint_id);
    done
}

/// After a failed `attempt` of `job` at `endpoint` (`last`: its job goes to the
/// DLQ): raises `failing` and `exhausted` where due, and notes or ends the
/// endpoint's run of failures. `false` when `exhausted` could not be raised, so the
/// job stays to raise it again rather than be parked unannounced.
pub(crate) async fn after_failure(
    deps: &Deps,
    job: &DeliveryJob,
    endpoint: &Endpoint,
    attempt: &Attempt,
    last: bool,
) -> bool {
    let now = OffsetDateTime::now_utc();
    let mut raised = true;
    for raise in operational::raises_after_failure(job, attempt, last, now) {
        let sent = enqueue(&deps.queues, &raise).await;
        raised &= sent || raise.event_type.as_str() != ATTEMPT_EXHAUSTED;
    }
    let after = deps.config.disable_after;
    match endpoint.failing_since {
        None if deps
            .endpoints
            .note_run(&endpoint.account, &endpoint.id, Some(now)) =>
        {
            let started = deps
                .store
                .start_failing(&endpoint.account, &endpoint.id, now)
                .await;
            if let Err(error) = started {
                tracing::warn!(%error, endpoint_id = %endpoint.id, "could not note the start of a run of failures");
            }
        }
        None => {}
        Some(since) if operational::disable_due(Some(since), now, after) => {
            disable(deps, &Raise::failing_too_long(endpoint, since, after, now)).await;
        }
        Some(_) => {}
    }
    raised
}

/// After a successful `attempt` of `job` at `endpoint`: raises `recovered` where
/// due, and ends the endpoint's run of failures.
pub(crate) async fn after_success(
    deps: &Deps,
    job: &DeliveryJob,
    endpoint: &Endpoint,
    attempt: u32,
) {
    if let Some(raise) = operational::raise_after_success(job, attempt, OffsetDateTime::now_utc()) {
        enqueue(&deps.queues, &raise).await;
    }
    if endpoint.failing_since.is_some()
        && deps
            .endpoints
            .note_run(&endpoint.account, &endpoint.id, None)
        && let Err(error) = deps
            .store
            .end_failing(&endpoint.account, &endpoint.id)
            .await
    {
        tracing::warn!(%error, endpoint_id = %endpoint.id, "could not note the end of a run of failures");
    }
}
