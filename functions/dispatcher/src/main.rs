// The handler's future nests the AWS SDK's deeply: computing its layout goes past
// the compiler's default query depth of 128 on a clean build.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::Config;

// One thread: an instance serves one invocation at a time on a share of one core,
// where a work-stealing pool only adds wake-ups across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    let sdk = shared::aws::from_env().await;
    let (store, queues) = shared::aws::adapters(&sdk, &config);
    let deps = &dispatcher::Deps::new(store, queues, config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(dispatcher::handle(deps, event.payload).await)
    }))
    .await
}
