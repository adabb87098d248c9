//! Delivers SQS batches of delivery jobs: each record parsed on its own, all of a
//! batch's records delivered concurrently, every attempt recorded, failures handed
//! back to SQS with a backoff through their visibility.

pub mod cache;
pub mod dns;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use rand::Rng;
use shared::config::Config;
use shared::ids::AttemptId;
use shared::model::{Attempt, AttemptStatus, DeliveryJob};
use shared::queue::Queues;
use shared::retry::{FailureKind, next_delay};
use shared::store::Store;
use shared::{USER_AGENT, payload};
use time::OffsetDateTime;

use cache::EndpointCache;
use dns::CheckedResolver;
pub use send::{Exchange, KEPT_RESPONSE_BYTES, READ_RESPONSE_BYTES};

/// How long an idle keep-alive connection to an endpoint is kept for the next delivery.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// What the handler needs, built once per instance.
pub struct Deps {
    pub store: Store,
    pub queues: Queues,
    pub config: Config,
    pub http: reqwest::Client,
    pub endpoints: EndpointCache,
}

impl Deps {
    pub fn new(store: Store, queues: Queues, config: Config) -> Self {
        let http = http_client(&config);
        Self::with_http(store, queues, config, http)
    }

    /// With a client of the caller's, e.g. one over a test's resolver.
    pub fn with_http(store: Store, queues: Queues, config: Config, http: reqwest::Client) -> Self {
        Self {
            store,
            queues,
            config,
            http,
            endpoints: EndpointCache::new(cache::ENDPOINT_TTL),
        }
    }
}

/// The one HTTP client of an instance: keep-alive across invocations, no redirects
/// (a 3xx is a failure), the attempt timeout over the whole exchange, every
/// name resolved through the SSRF check, and no proxy from the environment (a
/// proxy would resolve the name itself, around the check).
pub fn http_client(config: &Config) -> reqwest::Client {
    http_client_with(
        config,
        CheckedResolver::system(config.allow_private_targets),
    )
}

pub fn http_client_with(config: &Config, resolver: CheckedResolver) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.request_timeout)
        .pool_idle_timeout(IDLE_CONNECTION)
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
        .build()
        .expect("the TLS backend initialises")
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let outcomes =
        join_all(event.records.iter().map(|record| async move {
            (record.message_id.as_deref(), process(deps, record).await)
        }))
        .await;
    let mut response = SqsBatchResponse::default();
    for (message_id, outcome) in outcomes {
        if let (Outcome::Retry, Some(id)) = (outcome, message_id) {
            response.add_failure(id);
        }
    }
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Delivered, or dropped on purpose: delete the job.
    Done,
    /// Report the record failed: SQS offers it again when its visibility runs out.
    Retry,
}

/// The receive count of a record: the number of this attempt.
fn attempt_number(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

async fn process(deps: &Deps, record: &SqsMessage) -> Outcome {
    let attempt = attempt_number(record);
    let delay = match record
        .body
        .as_deref()
        .map(serde_json::from_str::<DeliveryJob>)
    {
        Some(Ok(job)) => match deliver(deps, &job, attempt).await {
            Verdict::Done => return Outcome::Done,
            Verdict::Retry(delay) => delay,
        },
        Some(Err(error)) => {
            // Retried on the schedule like any failure, so it ends in the DLQ for a person to see.
            tracing::warn!(sqs_message_id = ?record.message_id, %error, "malformed delivery job");
            retry_delay(deps, attempt, FailureKind::Other, None)
        }
        None => {
            tracing::warn!(sqs_message_id = ?record.message_id, "delivery job without a body");
            retry_delay(deps, attempt, FailureKind::Other, None)
        }
    };
    if let Some(receipt) = record.receipt_handle.as_deref() {
        // After the last attempt, visibility 0 lets SQS move the job to the DLQ at once.
        if let Err(error) = deps
            .queues
            .delay_retry(receipt, delay.unwrap_or(Duration::ZERO))
            .await
        {
            tracing::warn!(%error, sqs_message_id = ?record.message_id, "could not set the retry delay");
        }
    }
    Outcome::Retry
}

/// What became of one delivery.
enum Verdict {
    /// Delivered, or nothing is left to try.
    Done,
    /// Failed: retry after this delay, or `None` after the last attempt (to the DLQ).
    Retry(Option<Duration>),
}

fn retry_delay(
    deps: &Deps,
    attempt: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    next_delay(
        &deps.config.retry_schedule,
        attempt,
        kind,
        retry_after,
        rand::rng().random::<f64>(),
    )
}

/// Whether an answer is a success: any 2xx, nothing else (a redirect is not followed).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Delivers `job` once and records the attempt.
async fn deliver(deps: &Deps, job: &DeliveryJob, attempt_number: u32) -> Verdict {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let record = |status, exchange: Exchange, next_delay: Option<Duration>| Attempt {
        id: AttemptId::new(),
        message_id: job.message_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        account: job.account.clone(),
        event_type: job.event_type.clone(),
        attempt: attempt_number,
        status,
        response_status: exchange.status,
        response_body: exchange.body,
        error: exchange.error,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        timestamp: now,
        next_attempt_at: next_delay.map(|d| now + d),
    };
    let drop_with = |why: &str| {
        let attempt = record(AttemptStatus::Failed, Exchange::error(why), None);
        async move {
            save(deps, &attempt).await;
            tracing::info!(message_id = %attempt.message_id, endpoint_id = %attempt.endpoint_id, why = ?attempt.error, "job dropped");
            Verdict::Done
        }
    };

    let found = match deps
        .endpoints
        .get(&job.account, &job.endpoint_id, || {
            deps.store.get_endpoint(&job.account, &job.endpoint_id)
        })
        .await
    {
        Ok(found) => found,
        Err(error) => {
            // No attempt reached the endpoint, so none is recorded; the job comes back.
            tracing::error!(%error, endpoint_id = %job.endpoint_id, "could not read an endpoint");
            return Verdict::Retry(retry_delay(deps, attempt_number, FailureKind::Other, None));
        }
    };
    let Some(found) = found else {
        return drop_with("endpoint deleted").await;
    };
    let (endpoint, secrets) = found.as_ref();
    if endpoint.disabled {
        return drop_with("endpoint disabled").await;
    }
    let payload = match &job.payload {
        Some(inline) => inline.clone(),
        None => match deps.store.get_message(&job.account, &job.message_id).await {
            Ok(Some(message)) => message.payload,
            Ok(None) => return drop_with("message expired or deleted").await,
            Err(error) => {
                tracing::error!(%error, message_id = %job.message_id, "could not read a message");
                return Verdict::Retry(retry_delay(deps, attempt_number, FailureKind::Other, None));
            }
        },
    };
    let body = match payload::for_format(endpoint.format, &payload) {
        Ok(body) => body,
        Err(error) => return drop_with(&error.to_string()).await,
    };

    let mut exchange = send::post(deps, &endpoint.url, secrets, job, now, body).await;
    match exchange.status {
        Some(status) if is_success(status) => {
            save(deps, &record(AttemptStatus::Succeeded, exchange, None)).await;
            tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number, "delivered");
            Verdict::Done
        }
        Some(410) => {
            // The receiver says it is gone for good: stop delivering there at all.
            match deps
                .store
                .disable_endpoint(&job.account, &job.endpoint_id)
                .await
            {
                Ok(_) => deps.endpoints.forget(&job.account, &job.endpoint_id),
                Err(error) => {
                    tracing::error!(%error, endpoint_id = %job.endpoint_id, "could not disable an endpoint after a 410");
                }
            }
            exchange.error = Some("410 Gone: endpoint disabled".into());
            save(deps, &record(AttemptStatus::Failed, exchange, None)).await;
            tracing::info!(endpoint_id = %job.endpoint_id, "endpoint disabled after 410 Gone");
            Verdict::Done
        }
        status => {
            let kind = match status {
                Some(status) => FailureKind::of_status(status),
                None if exchange.timed_out => FailureKind::Timeout,
                None => FailureKind::Other,
            };
            let delay = retry_delay(deps, attempt_number, kind, exchange.retry_after);
            tracing::info!(
                message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number,
                status = ?exchange.status, error = ?exchange.error, next_delay = ?delay, "delivery failed"
            );
            save(deps, &record(AttemptStatus::Failed, exchange, delay)).await;
            Verdict::Retry(delay)
        }
    }
}

/// A lost attempt record must not turn a delivery into a redelivery: it is logged, not retried.
async fn save(deps: &Deps, attempt: &Attempt) {
    if let Err(error) = deps.store.put_attempt(attempt).await {
        tracing::error!(%error, message_id = %attempt.message_id, "could not record an attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_is_success() {
        for status in [200, 201, 202, 204, 299] {
            assert!(is_success(status), "{status}");
        }
        for status in [
            100, 199, 300, 301, 302, 304, 307, 308, 400, 404, 410, 429, 500, 503,
        ] {
            assert!(!is_success(status), "{status}");
        }
    }
}
