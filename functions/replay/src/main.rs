//! The Lambda entry for DLQ redrive: an operator or a schedule invokes it with a filter.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = shared::aws::from_env().await;
    let (_store, queues) = shared::aws::adapters(&sdk, &config);
    let queues = &queues;
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        let waiting = queues.dlq_depth().await?;
        Ok::<_, Error>(serde_json::json!({"approximate_messages": waiting}))
    }))
    .await
}
