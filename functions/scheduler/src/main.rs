//! The scheduled function: an EventBridge schedule invokes it (every minute);
//! each run does the work that has come due. Its event carries nothing it reads.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Config;

/// Time kept back from the invocation's deadline to answer.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    let sdk = shared::aws::from_env().await;
    let (store, queues) = shared::aws::adapters(&sdk, &config);
    let mailer = shared::aws::mailer(&sdk, &config);
    let deps = &scheduler::Deps {
        store,
        queues,
        mailer,
        config,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = shared::deadline::of_invocation(event.context.deadline(), MARGIN);
        Ok::<_, Error>(scheduler::run(deps, deadline).await)
    }))
    .await
}
