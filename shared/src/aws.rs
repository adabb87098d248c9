//! The AWS SDK configuration every binary builds once at start-up.

pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

use crate::config::Config;
use crate::queue::Queues;
use crate::store::Store;

/// From the environment, as in Lambda; `AWS_ENDPOINT_URL` points it at an emulator.
pub async fn from_env() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// For an emulator at `endpoint_url`, with the dummy credentials it accepts.
pub async fn for_emulator(endpoint_url: &str) -> SdkConfig {
    for_emulator_as(endpoint_url, "test", "test").await
}

/// For an emulator at `endpoint_url`, signing as the given key: an emulator that
/// enforces IAM tells callers apart by it.
pub async fn for_emulator_as(
    endpoint_url: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new(EMULATOR_REGION))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "emulator",
        ))
        .load()
        .await
}

pub const EMULATOR_REGION: &str = "us-east-1";

/// The mailer of `config`'s sender, where one is configured.
pub fn mailer(sdk: &SdkConfig, config: &Config) -> Option<crate::mail::Mailer> {
    let from = config.email_from.as_ref()?;
    Some(crate::mail::Mailer::new(
        aws_sdk_sesv2::Client::new(sdk),
        from,
    ))
}

/// The store and queues `config` names, on clients built from `sdk`.
pub fn adapters(sdk: &SdkConfig, config: &Config) -> (Store, Queues) {
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(sdk),
        config.table.clone(),
        config.retention(),
    );
    let queues = Queues::new(
        aws_sdk_sqs::Client::new(sdk),
        config.delivery_queue_url.clone(),
        config.dlq_url.clone(),
    )
    .with_slow_lane(config.slow_queue_url.clone());
    (store, queues)
}
