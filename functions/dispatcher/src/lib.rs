//! Delivers SQS batches of delivery jobs: each record parsed on its own, all of a
//! batch's records delivered concurrently, every attempt recorded, failures handed
//! back to SQS with a backoff through their visibility.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use shared::config::Config;
use shared::ids::AttemptId;
use shared::model::{Attempt, AttemptStatus, DeliveryJob, Endpoint, EndpointSecrets};
use shared::queue::Queues;
use shared::retry::jittered_random;
use shared::signing::signature_header;
use shared::store::Store;
use shared::{USER_AGENT, payload};
use time::OffsetDateTime;

/// How much of a response body an attempt keeps.
pub const KEPT_RESPONSE_BYTES: usize = 4096;
/// How much of a response body is read at all before the connection is dropped.
pub const READ_RESPONSE_BYTES: usize = 64 * 1024;

/// What the handler needs, built once per instance.
pub struct Deps {
    pub store: Store,
    pub queues: Queues,
    pub config: Config,
    pub http: reqwest::Client,
}

/// The one HTTP client of an instance: keep-alive across invocations, no redirects
/// (a 3xx is a failure), the attempt timeout over the whole exchange.
pub fn http_client(config: &Config) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.request_timeout)
        .user_agent(USER_AGENT)
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

async fn process(deps: &Deps, record: &SqsMessage) -> Outcome {
    let job = match record
        .body
        .as_deref()
        .map(serde_json::from_str::<DeliveryJob>)
    {
        Some(Ok(job)) => job,
        Some(Err(error)) => {
            // Reported failed, so after its receives it rests in the DLQ for a person to see.
            tracing::warn!(sqs_message_id = ?record.message_id, %error, "malformed delivery job");
            return Outcome::Retry;
        }
        None => {
            tracing::warn!(sqs_message_id = ?record.message_id, "delivery job without a body");
            return Outcome::Retry;
        }
    };
    let attempt_number = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let result = deliver(deps, &job, attempt_number).await;
    let Some(failure) = result else {
        return Outcome::Done;
    };
    if let Some(receipt) = record.receipt_handle.as_deref() {
        // After the last attempt, visibility 0 lets SQS move the job to the DLQ at once.
        let delay = failure.next_delay.unwrap_or(Duration::ZERO);
        if let Err(error) = deps.queues.delay_retry(receipt, delay).await {
            tracing::warn!(%error, message_id = %job.message_id, "could not set the retry delay");
        }
    }
    Outcome::Retry
}

/// A failed attempt and when the next one is due (`None` after the last).
struct Failure {
    next_delay: Option<Duration>,
}

/// What came back from one POST.
struct Exchange {
    status: Option<u16>,
    body: String,
    error: Option<String>,
}

/// Delivers `job` once and records the attempt; `None` when nothing is left to retry.
async fn deliver(deps: &Deps, job: &DeliveryJob, attempt_number: u32) -> Option<Failure> {
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
    let dropped = |why: &str| Exchange {
        status: None,
        body: String::new(),
        error: Some(why.to_string()),
    };

    let (endpoint, secrets) = match deps
        .store
        .get_endpoint(&job.account, &job.endpoint_id)
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => {
            save(
                deps,
                &record(AttemptStatus::Failed, dropped("endpoint deleted"), None),
            )
            .await;
            return None;
        }
        Err(error) => {
            tracing::error!(%error, endpoint_id = %job.endpoint_id, "could not read an endpoint");
            return Some(failure(deps, attempt_number));
        }
    };
    if endpoint.disabled {
        save(
            deps,
            &record(AttemptStatus::Failed, dropped("endpoint disabled"), None),
        )
        .await;
        return None;
    }
    let payload = match &job.payload {
        Some(inline) => inline.clone(),
        None => match deps.store.get_message(&job.account, &job.message_id).await {
            Ok(Some(message)) => message.payload,
            Ok(None) => {
                save(
                    deps,
                    &record(
                        AttemptStatus::Failed,
                        dropped("message expired or deleted"),
                        None,
                    ),
                )
                .await;
                return None;
            }
            Err(error) => {
                tracing::error!(%error, message_id = %job.message_id, "could not read a message");
                return Some(failure(deps, attempt_number));
            }
        },
    };
    let body = match payload::for_format(endpoint.format, &payload) {
        Ok(body) => body,
        Err(error) => {
            save(
                deps,
                &record(AttemptStatus::Failed, dropped(&error.to_string()), None),
            )
            .await;
            return None;
        }
    };

    let exchange = post(deps, &endpoint, &secrets, job, now, body).await;
    let succeeded = exchange.status.is_some_and(|s| (200..300).contains(&s));
    if succeeded {
        save(deps, &record(AttemptStatus::Succeeded, exchange, None)).await;
        tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number, "delivered");
        return None;
    }
    let failed = failure(deps, attempt_number);
    tracing::info!(
        message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number,
        status = ?exchange.status, error = ?exchange.error, "delivery failed"
    );
    save(
        deps,
        &record(AttemptStatus::Failed, exchange, failed.next_delay),
    )
    .await;
    Some(failed)
}

fn failure(deps: &Deps, attempt_number: u32) -> Failure {
    Failure {
        next_delay: deps
            .config
            .retry_schedule
            .delay_after(attempt_number)
            .map(jittered_random),
    }
}

/// A lost attempt record must not turn a delivery into a redelivery: it is logged, not retried.
async fn save(deps: &Deps, attempt: &Attempt) {
    if let Err(error) = deps.store.put_attempt(attempt).await {
        tracing::error!(%error, message_id = %attempt.message_id, "could not record an attempt");
    }
}

async fn post(
    deps: &Deps,
    endpoint: &Endpoint,
    secrets: &EndpointSecrets,
    job: &DeliveryJob,
    now: OffsetDateTime,
    body: Vec<u8>,
) -> Exchange {
    let timestamp = now.unix_timestamp();
    let signature = signature_header(
        secrets.signing(now),
        job.message_id.as_str(),
        timestamp,
        &body,
    );
    let sent = deps
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", job.message_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            return Exchange {
                status: None,
                body: String::new(),
                error: Some(describe(&error, deps.config.request_timeout)),
            };
        }
    };
    let status = response.status().as_u16();
    let mut kept = Vec::new();
    let mut read = 0usize;
    let mut error = None;
    while read < READ_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = KEPT_RESPONSE_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(describe(&e, deps.config.request_timeout));
                break;
            }
        }
    }
    // Dropping `response` here closes a connection whose body was not read to the end.
    Exchange {
        status: Some(status),
        body: truncate_utf8(kept),
        error,
    }
}

/// Keeps the longest valid UTF-8 prefix, so a cut in the middle of a character is dropped.
fn truncate_utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).expect("cut at a character boundary")
        }
    }
}

/// Why no response came, in words an endpoint owner can act on.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timeout after {} ms", timeout.as_millis());
    }
    let mut text = if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("héllo".as_bytes()[..2].to_vec()), "h");
        assert_eq!(truncate_utf8(b"ok".to_vec()), "ok");
    }
}
