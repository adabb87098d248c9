//! The SQS adapter: the only code that talks to the delivery queue and the DLQ.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use crate::model::DeliveryJob;

/// SendMessageBatch and DeleteMessageBatch take at most ten entries.
pub const MAX_BATCH: usize = 10;
/// Both queues keep a job 14 days, SQS's longest.
pub const RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;
/// Entries a batch call refused are sent again this many times before giving up.
const SEND_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    #[error("SQS refused {count} of the jobs: {reason}")]
    Refused { count: usize, reason: String },
}

fn aws_error<E>(operation: &'static str) -> impl FnOnce(E) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |error| QueueError::Aws {
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// A message as received, with what an event source mapping passes on.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    /// System attributes such as `ApproximateReceiveCount` and `SentTimestamp`.
    pub attributes: HashMap<String, String>,
}

#[derive(Clone)]
pub struct Queues {
    client: Client,
    delivery_url: String,
    dlq_url: String,
}

impl Queues {
    pub fn new(
        client: Client,
        delivery_url: impl Into<String>,
        dlq_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            delivery_url: delivery_url.into(),
            dlq_url: dlq_url.into(),
        }
    }

    pub fn delivery_url(&self) -> &str {
        &self.delivery_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Enqueues one job per entry with SendMessageBatch, ten at a time, sending
    /// again only the entries SQS refused.
    pub async fn send_jobs(&self, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let bodies: Vec<String> = jobs
            .iter()
            .map(|job| serde_json::to_string(job).expect("jobs serialise"))
            .collect();
        self.send_bodies(&bodies).await
    }

    /// Enqueues message bodies as they are, so a job moved back from the DLQ is the same job.
    pub async fn send_bodies(&self, bodies: &[String]) -> Result<(), QueueError> {
        for chunk in bodies.chunks(MAX_BATCH) {
            let mut pending: Vec<(String, &String)> = chunk
                .iter()
                .enumerate()
                .map(|(index, body)| (index.to_string(), body))
                .collect();
            let mut last_reason = String::new();
            for _ in 0..SEND_RETRIES {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(*body)
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                let output = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.delivery_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(aws_error("SendMessageBatch"))?;
                let refused: Vec<String> = output.failed.iter().map(|f| f.id.clone()).collect();
                if let Some(first) = output.failed.first() {
                    last_reason =
                        format!("{}: {}", first.code, first.message.as_deref().unwrap_or(""));
                }
                pending.retain(|(id, _)| refused.contains(id));
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(QueueError::Refused {
                    count: pending.len(),
                    reason: last_reason,
                });
            }
        }
        Ok(())
    }

    /// Hides a received delivery job for `delay` before SQS offers it again: whole
    /// seconds, rounded up so a retry never comes sooner, and at most SQS's 12 hours.
    pub async fn delay_retry(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.delivery_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_seconds(delay))
            .send()
            .await
            .map_err(aws_error("ChangeMessageVisibility"))?;
        Ok(())
    }

    /// Receives up to `max` delivery jobs, waiting up to `wait` for the first.
    pub async fn receive_delivery(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.receive(&self.delivery_url, max, wait, None).await
    }

    /// Receives up to `max` jobs from the DLQ, hiding them for `visibility`.
    pub async fn receive_dead(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.receive(&self.dlq_url, max, wait, Some(visibility))
            .await
    }

    async fn receive(
        &self,
        url: &str,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Received>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.min(MAX_BATCH)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .set_visibility_timeout(visibility.map(visibility_seconds))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(aws_error("ReceiveMessage"))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                md5_of_body: m.md5_of_body.unwrap_or_default(),
                attributes: m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_string(), v))
                    .collect(),
            })
            .collect())
    }

    /// Deletes handled delivery jobs, ten at a time.
    pub async fn delete_delivered(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        self.delete(&self.delivery_url, receipt_handles).await
    }

    /// Deletes jobs received from the DLQ, ten at a time.
    pub async fn delete_dead(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        self.delete(&self.dlq_url, receipt_handles).await
    }

    async fn delete(&self, url: &str, receipt_handles: &[String]) -> Result<(), QueueError> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            self.client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_error("DeleteMessageBatch"))?;
        }
        Ok(())
    }

    /// Makes jobs received from the DLQ visible there again at once.
    pub async fn release_dead(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        for chunk in receipt_handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_error("ChangeMessageVisibilityBatch"))?;
        }
        Ok(())
    }

    /// About how many jobs wait in the DLQ.
    pub async fn dlq_depth(&self) -> Result<u64, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(aws_error("GetQueueAttributes"))?;
        Ok(output
            .attributes
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

/// A delay as SQS's whole-second visibility timeout: rounded up, at most 12 hours.
pub fn visibility_seconds(delay: Duration) -> i32 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(seconds.min(crate::retry::MAX_STEP.as_secs())).unwrap_or(i32::MAX)
}

/// Creates the DLQ and the delivery queue that redrives into it after
/// `max_receive_count` receives, as `infra/template.yaml` defines them; for local runs and tests.
/// Returns the delivery queue's URL and the DLQ's.
pub async fn create_queues(
    client: &Client,
    delivery_name: &str,
    dlq_name: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> Result<(String, String), QueueError> {
    let retention = RETENTION_SECONDS.to_string();
    let dlq_url = client
        .create_queue()
        .queue_name(dlq_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
        .send()
        .await
        .map_err(aws_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_error("GetQueueAttributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    });
    let delivery_url = client
        .create_queue()
        .queue_name(delivery_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(aws_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    Ok((delivery_url, dlq_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_and_stops_at_twelve_hours() {
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(800)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(5000)), 5);
        assert_eq!(visibility_seconds(Duration::from_millis(5001)), 6);
        assert_eq!(visibility_seconds(Duration::from_secs(13 * 3600)), 43_200);
    }
}
