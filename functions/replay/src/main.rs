//! The Lambda entry for DLQ redrive: an operator or a schedule invokes it with a
//! filter as its event (`{"endpoint_id": …, "event_type": …, "limit": …}`, all
//! optional) and gets `{"replayed": n, "skipped": m}` back, with `"complete": false`
//! when the run stopped before it had seen the DLQ through.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Config;
use shared::redrive::{self, Filter};

/// Time kept back from the invocation's deadline to answer.
const MARGIN: Duration = Duration::from_secs(5);

// One thread: an instance serves one invocation at a time on a share of one core,
// where a work-stealing pool only adds wake-ups across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    let sdk = shared::aws::from_env().await;
    let (_store, queues) = shared::aws::adapters(&sdk, &config);
    let queues = &queues;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // An empty or null event replays everything.
        let filter: Filter = match event.payload {
            Value::Null => Filter::default(),
            payload => serde_json::from_value(payload)?,
        };
        let deadline = shared::deadline::of_invocation(event.context.deadline(), MARGIN);
        let outcome = redrive::redrive(queues, &filter, Some(deadline), |_| {})
            .await
            .or_else(|stopped| {
                tracing::error!(error = %stopped, "DLQ replay stopped early");
                stopped.into_partial()
            })?;
        tracing::info!(
            replayed = outcome.replayed,
            skipped = outcome.skipped,
            complete = outcome.complete,
            "DLQ replayed"
        );
        Ok::<_, Error>(outcome)
    }))
    .await
}
