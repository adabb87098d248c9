use lambda_http::{Error, service_fn};
use shared::config::Config;

// One thread: an instance serves one invocation at a time on a share of one core,
// where a work-stealing pool only adds wake-ups across threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    let sdk = shared::aws::from_env().await;
    let (store, queues) = shared::aws::adapters(&sdk, &config);
    let deps = &ingest::Deps {
        store,
        queues,
        config,
    };
    lambda_http::run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(ingest::handle(deps, req).await)
    }))
    .await
}
