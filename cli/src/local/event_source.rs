//! A local stand-in for Lambda's SQS event source mapping with ReportBatchItemFailures:
//! receive up to ten jobs (for at most the batching window, if there is one), invoke
//! the dispatcher with them, delete the ones it did not report failed, and leave the
//! rest to their visibility timeout.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use shared::queue::{Queues, Received};
use tokio::sync::watch;
use tokio::time::Instant;

use super::runtime::{Function, stopped};

/// Largest batch an SQS event source mapping hands a function.
pub const BATCH_SIZE: usize = 10;
/// Long-poll wait of one receive.
const RECEIVE_WAIT: Duration = Duration::from_secs(2);

/// Polls until `shutdown` turns true, gathering each batch for up to `batching_window`.
pub async fn poll(
    queues: Queues,
    queue_arn: String,
    dispatcher: Function,
    batching_window: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            received = queues.receive_delivery(BATCH_SIZE, RECEIVE_WAIT) => received,
            _ = stopped(&mut shutdown) => return,
        };
        let batch = match received {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => fill(&queues, batch, batching_window).await,
            Err(error) => {
                tracing::warn!(%error, "could not receive delivery jobs");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let event = sqs_event(&batch, &queue_arn);
        let failed: HashSet<String> = match dispatcher.invoke(event).await {
            Ok(answer) => match failed_ids(&answer) {
                Some(failed) => failed,
                None => {
                    tracing::error!(
                        "the dispatcher's answer is not a batch response; the batch will be retried"
                    );
                    continue;
                }
            },
            Err(error) => {
                if !*shutdown.borrow() {
                    tracing::warn!(%error, "dispatcher invocation failed; the batch returns to the queue when its visibility runs out");
                }
                continue;
            }
        };
        let done: Vec<String> = batch
            .iter()
            .filter(|m| !failed.contains(&m.message_id))
            .map(|m| m.receipt_handle.clone())
            .collect();
        if let Err(error) = queues.delete_delivered(&done).await {
            tracing::warn!(%error, "could not delete delivered jobs; they will be delivered again");
        }
    }
}

/// Receives more jobs into `batch` until it holds [`BATCH_SIZE`] or `window` has
/// passed since its first job came: the mapping's batching window. A receive waits in
/// whole seconds, so a window can run over by less than one when the queue is empty.
async fn fill(queues: &Queues, mut batch: Vec<Received>, window: Duration) -> Vec<Received> {
    let deadline = Instant::now() + window;
    while batch.len() < BATCH_SIZE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = Duration::from_secs(left.as_secs_f64().ceil() as u64);
        match queues
            .receive_delivery(BATCH_SIZE - batch.len(), wait)
            .await
        {
            Ok(more) => batch.extend(more),
            Err(error) => {
                tracing::warn!(%error, "could not receive more delivery jobs; invoking with those received");
                break;
            }
        }
    }
    batch
}

/// The `batchItemFailures` ids, or `None` if the answer is not a batch response.
fn failed_ids(answer: &Value) -> Option<HashSet<String>> {
    let failures = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(failures)) => failures,
        Some(_) => return None,
    };
    failures
        .iter()
        .map(|f| {
            f.get("itemIdentifier")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The event Lambda's SQS integration builds for a batch.
pub fn sqs_event(batch: &[Received], queue_arn: &str) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": m.attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": shared::aws::EMULATOR_REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_batch_item_failures() {
        let answer =
            json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]});
        assert_eq!(
            failed_ids(&answer).unwrap(),
            HashSet::from(["a".to_string(), "b".to_string()])
        );
        assert!(failed_ids(&json!({})).unwrap().is_empty());
        assert!(failed_ids(&json!({"batchItemFailures": [{}]})).is_none());
        assert!(failed_ids(&json!({"batchItemFailures": "all"})).is_none());
    }
}
