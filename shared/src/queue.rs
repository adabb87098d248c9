//! The SQS adapter: the only code that talks to the delivery queue and the DLQ.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use crate::model::DeliveryJob;

/// SendMessageBatch and DeleteMessageBatch take at most ten entries.
pub const MAX_BATCH: usize = 10;
/// SQS takes a message body of at most 256 KiB (in UTF-8 bytes)…
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// …and a SendMessageBatch whose bodies add up to at most 1 MiB.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Both queues keep a job 14 days, SQS's longest.
pub const RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;
/// Entries a batch call refused are tried again this many times before giving up…
const SEND_RETRIES: u32 = 3;
/// …after this pause, doubled each time: a refusal is mostly a moment's throttling.
const SEND_BACKOFF: Duration = Duration::from_millis(50);
/// Kept off the longest visibility SQS allows, which it counts from the receive:
/// the receive came before the handler started (by up to the event source's
/// batching window, 30 s in the template, and the invocation's latency), and the
/// change is sent a little after the delay was picked.
pub const VISIBILITY_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    /// Some messages of a send were not sent (or may not have been); the others were.
    #[error("SQS did not take {} of {total} messages: {reason}", unsent.len())]
    Unsent {
        /// Positions, in the slice given, of the messages not sent.
        unsent: Vec<usize>,
        total: usize,
        reason: String,
    },
    /// Some entries of a delete or a visibility change were not done; the others were.
    #[error("SQS {operation} left {} of {total} entries undone: {reason}", undone.len())]
    Undone {
        operation: &'static str,
        /// Positions, in the slice given, of the entries not done.
        undone: Vec<usize>,
        total: usize,
        reason: String,
    },
}

impl QueueError {
    /// The positions of the entries a batch operation did not get done (for a send:
    /// not onto the queue): those named for a partial failure, all of them for any
    /// other failure.
    pub fn unsent(&self, total: usize) -> Vec<usize> {
        match self {
            QueueError::Unsent { unsent, .. } => unsent.clone(),
            QueueError::Undone { undone, .. } => undone.clone(),
            QueueError::Aws { .. } => (0..total).collect(),
        }
    }
}

/// How a send splits into SendMessageBatch calls: each batch at most [`MAX_BATCH`]
/// entries and [`MAX_BATCH_BYTES`] in all, in the order given; and the bodies SQS
/// would refuse whatever we do (over [`MAX_MESSAGE_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchPlan {
    pub batches: Vec<Vec<usize>>,
    pub too_large: Vec<usize>,
}

/// A value as a queue message body: its JSON, with the two characters JSON allows
/// raw but SQS refuses (U+FFFE and U+FFFF) written as escapes, which read back the same.
pub fn message_body<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("queue bodies serialise");
    if !json.contains(['\u{fffe}', '\u{ffff}']) {
        return json;
    }
    // Outside strings JSON is ASCII, so these can only stand inside one.
    json.replace('\u{fffe}', "\\ufffe")
        .replace('\u{ffff}', "\\uffff")
}

/// How one batch failed: the positions still not sent, and why.
enum BatchFailure {
    /// SQS answered, refusing these entries each time.
    Refused(Vec<usize>, String),
    /// The call itself failed.
    Call(Vec<usize>, String),
}

/// Plans the batches for bodies of `sizes` bytes.
pub fn plan_batches(sizes: &[usize]) -> BatchPlan {
    let mut plan = BatchPlan::default();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0;
    for (index, &size) in sizes.iter().enumerate() {
        if size > MAX_MESSAGE_BYTES {
            plan.too_large.push(index);
            continue;
        }
        if current.len() == MAX_BATCH || current_bytes + size > MAX_BATCH_BYTES {
            plan.batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(index);
        current_bytes += size;
    }
    if !current.is_empty() {
        plan.batches.push(current);
    }
    plan
}

/// One batch call over the entries at `batch`, then its refused entries again after
/// a pause, up to [`SEND_RETRIES`] times. `call` sends the entries at the positions
/// given and returns SQS's refusals, whose ids are those positions.
async fn retry_refused<F, Fut, E>(
    operation: &'static str,
    batch: &[usize],
    mut call: F,
) -> Result<(), BatchFailure>
where
    F: FnMut(&[usize]) -> Fut,
    Fut: Future<Output = Result<Vec<BatchResultErrorEntry>, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut pending = batch.to_vec();
    let mut pause = SEND_BACKOFF;
    let mut retries = 0;
    loop {
        let failed = call(&pending).await.map_err(|e| {
            BatchFailure::Call(pending.clone(), aws_error(operation)(e).to_string())
        })?;
        let Some(first) = failed.first() else {
            return Ok(());
        };
        let reason = format!(
            "{} ({}): {}",
            first.code,
            if first.sender_fault { "ours" } else { "theirs" },
            first.message.as_deref().unwrap_or("")
        );
        // A refusal that is our fault (e.g. a malformed body) would be refused again.
        let hopeless = failed.iter().all(|f| f.sender_fault);
        pending.retain(|index| failed.iter().any(|f| f.id == index.to_string()));
        if hopeless || retries == SEND_RETRIES {
            return Err(BatchFailure::Refused(pending, reason));
        }
        retries += 1;
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// [`retry_refused`] over `count` entries, [`MAX_BATCH`] at a time. A call that
/// fails outright leaves its entries and every later one undone: its effect is
/// unknown (it may have taken effect with its answer lost), so the caller decides.
async fn each_batch<F, Fut, E>(
    operation: &'static str,
    count: usize,
    mut call: F,
) -> Result<(), QueueError>
where
    F: FnMut(&[usize]) -> Fut,
    Fut: Future<Output = Result<Vec<BatchResultErrorEntry>, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let all: Vec<usize> = (0..count).collect();
    let mut undone = Vec::new();
    let mut reason = String::new();
    for (position, batch) in all.chunks(MAX_BATCH).enumerate() {
        match retry_refused(operation, batch, &mut call).await {
            Ok(()) => {}
            Err(BatchFailure::Refused(refused, why)) => {
                undone.extend(refused);
                reason = why;
            }
            Err(BatchFailure::Call(pending, why)) => {
                undone.extend(pending);
                undone.extend(all.iter().skip((position + 1) * MAX_BATCH));
                reason = why;
                break;
            }
        }
    }
    if undone.is_empty() {
        return Ok(());
    }
    Err(QueueError::Undone {
        operation,
        undone,
        total: count,
        reason,
    })
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

/// The queue a delivery job was received from (ADR 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The delivery queue.
    Main,
    /// The slow lane: jobs of endpoints that hung lately, at a capped concurrency.
    Slow,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Main => "main",
            Lane::Slow => "slow",
        }
    }
}

/// A queue's name: the last segment of its URL or of its ARN.
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

#[derive(Clone)]
pub struct Queues {
    client: Client,
    delivery_url: String,
    dlq_url: String,
    slow_url: Option<String>,
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
            slow_url: None,
        }
    }

    /// With a slow lane to move the jobs of slow endpoints to.
    pub fn with_slow_lane(mut self, slow_url: Option<String>) -> Self {
        self.slow_url = slow_url;
        self
    }

    pub fn has_slow_lane(&self) -> bool {
        self.slow_url.is_some()
    }

    /// The lane of a record from the event source ARN `arn`: the slow lane when
    /// it names the slow lane's queue, else the delivery queue.
    pub fn lane_of(&self, arn: Option<&str>) -> Lane {
        match (&self.slow_url, arn) {
            (Some(slow), Some(arn)) if queue_name(arn) == queue_name(slow) => Lane::Slow,
            _ => Lane::Main,
        }
    }

    /// These queues with `lane`'s queue in the delivery queue's place: where its
    /// jobs are received, deleted, delayed and sent.
    pub fn lane(&self, lane: Lane) -> Queues {
        match (lane, &self.slow_url) {
            (Lane::Slow, Some(slow)) => Queues {
                delivery_url: slow.clone(),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    pub fn delivery_url(&self) -> &str {
        &self.delivery_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Enqueues one job per entry (see [`Queues::send_bodies`]).
    pub async fn send_jobs(&self, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let bodies: Vec<String> = jobs.iter().map(DeliveryJob::to_body).collect();
        self.send_bodies(&bodies).await
    }

    /// Enqueues message bodies as they are, so a job moved back from the DLQ is the
    /// same job: SendMessageBatch calls split by count and by bytes, the entries SQS
    /// refused sent again after a short pause. On failure, [`QueueError::Unsent`]
    /// names what did not go (a call that failed counts as not sent, though its
    /// answer may only have been lost).
    pub async fn send_bodies(&self, bodies: &[String]) -> Result<(), QueueError> {
        let sizes: Vec<usize> = bodies.iter().map(String::len).collect();
        let plan = plan_batches(&sizes);
        let mut unsent = plan.too_large.clone();
        let mut reason = match plan.too_large.first() {
            Some(&index) => format!(
                "a body of {} bytes is over SQS's {} KiB",
                sizes[index],
                MAX_MESSAGE_BYTES / 1024
            ),
            None => String::new(),
        };
        for (position, batch) in plan.batches.iter().enumerate() {
            match self.send_batch(bodies, batch).await {
                Ok(()) => {}
                Err(BatchFailure::Refused(refused, why)) => {
                    unsent.extend(refused);
                    reason = why;
                }
                Err(BatchFailure::Call(pending, why)) => {
                    // The SDK's own retries are spent: later calls would most likely fail alike.
                    unsent.extend(pending);
                    unsent.extend(plan.batches[position + 1..].iter().flatten());
                    reason = why;
                    break;
                }
            }
        }
        if unsent.is_empty() {
            return Ok(());
        }
        unsent.sort_unstable();
        Err(QueueError::Unsent {
            unsent,
            total: bodies.len(),
            reason,
        })
    }

    /// One batch of bodies (see [`retry_refused`]).
    async fn send_batch(&self, bodies: &[String], batch: &[usize]) -> Result<(), BatchFailure> {
        retry_refused("SendMessageBatch", batch, |pending| {
            let entries = pending
                .iter()
                .map(|&index| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(&bodies[index])
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let request = self
                .client
                .send_message_batch()
                .queue_url(&self.delivery_url)
                .set_entries(Some(entries));
            async move { request.send().await.map(|output| output.failed) }
        })
        .await
    }

    /// Hides received delivery jobs, each for its delay, before SQS offers them
    /// again: ten per ChangeMessageVisibilityBatch, entries SQS refused tried again.
    /// Delays are whole seconds, rounded up so a retry never comes sooner, and at
    /// most SQS's 12 hours. On failure, [`QueueError::Undone`] names the jobs whose
    /// visibility was not changed.
    pub async fn delay_retries(&self, delays: &[(&str, Duration)]) -> Result<(), QueueError> {
        let visibilities: Vec<(&str, i32)> = delays
            .iter()
            .map(|&(receipt_handle, delay)| (receipt_handle, visibility_seconds(delay)))
            .collect();
        self.change_visibility(&self.delivery_url, &visibilities)
            .await
    }

    /// Parks a received message in the DLQ, its body byte for byte. A lost answer
    /// means a second copy there, never none.
    pub async fn send_to_dlq(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .send()
            .await
            .map_err(aws_error("SendMessage"))?;
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

    /// Deletes handled delivery jobs, ten at a time. On failure,
    /// [`QueueError::Undone`] names the jobs not deleted.
    pub async fn delete_delivered(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        self.delete(&self.delivery_url, receipt_handles).await
    }

    /// Deletes jobs received from the DLQ, ten at a time. On failure,
    /// [`QueueError::Undone`] names the jobs not deleted.
    pub async fn delete_dead(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        self.delete(&self.dlq_url, receipt_handles).await
    }

    async fn delete(&self, url: &str, receipt_handles: &[String]) -> Result<(), QueueError> {
        each_batch("DeleteMessageBatch", receipt_handles.len(), |pending| {
            let entries = pending
                .iter()
                .map(|&index| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&receipt_handles[index])
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            let request = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries));
            async move { request.send().await.map(|output| output.failed) }
        })
        .await
    }

    /// Makes jobs received from the DLQ visible there again at once. On failure,
    /// [`QueueError::Undone`] names the jobs still hidden.
    pub async fn release_dead(&self, receipt_handles: &[String]) -> Result<(), QueueError> {
        let visibilities: Vec<(&str, i32)> =
            receipt_handles.iter().map(|h| (h.as_str(), 0)).collect();
        self.change_visibility(&self.dlq_url, &visibilities).await
    }

    /// Sets each received message's visibility, in seconds from now, ten at a time.
    async fn change_visibility(
        &self,
        url: &str,
        visibilities: &[(&str, i32)],
    ) -> Result<(), QueueError> {
        each_batch(
            "ChangeMessageVisibilityBatch",
            visibilities.len(),
            |pending| {
                let entries = pending
                    .iter()
                    .map(|&index| {
                        let (receipt_handle, seconds) = visibilities[index];
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(index.to_string())
                            .receipt_handle(receipt_handle)
                            .visibility_timeout(seconds)
                            .build()
                            .expect("id and handle are set")
                    })
                    .collect();
                let request = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(url)
                    .set_entries(Some(entries));
                async move { request.send().await.map(|output| output.failed) }
            },
        )
        .await
    }

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

/// The longest visibility a change may ask for `since_receive` after the message was
/// received: SQS refuses any that ends more than 12 hours after the receive.
pub fn max_visibility(since_receive: Duration) -> Duration {
    crate::retry::MAX_STEP.saturating_sub(since_receive + VISIBILITY_MARGIN)
}

/// A delay as SQS's whole-second visibility timeout: rounded up, at most 12 hours.
pub fn visibility_seconds(delay: Duration) -> i32 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(seconds.min(crate::retry::MAX_STEP.as_secs())).unwrap_or(i32::MAX)
}

/// Creates the slow lane's queue, redriving into the DLQ at `dlq_url` as the delivery
/// queue does, as `infra/template.yaml` defines it; for local runs and tests. Returns its URL.
pub async fn create_slow_lane(
    client: &Client,
    name: &str,
    dlq_url: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> Result<String, QueueError> {
    create_redriving_queue(client, name, dlq_url, max_receive_count, visibility_timeout).await
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
    let dlq_url = client
        .create_queue()
        .queue_name(dlq_name)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECONDS.to_string(),
        )
        .send()
        .await
        .map_err(aws_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    let delivery_url = create_redriving_queue(
        client,
        delivery_name,
        &dlq_url,
        max_receive_count,
        visibility_timeout,
    )
    .await?;
    Ok((delivery_url, dlq_url))
}

/// A queue that redrives into the DLQ at `dlq_url` after `max_receive_count` receives.
async fn create_redriving_queue(
    client: &Client,
    name: &str,
    dlq_url: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> Result<String, QueueError> {
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(dlq_url)
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
    Ok(client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION_SECONDS.to_string(),
        )
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(aws_error("CreateQueue"))?
        .queue_url
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn batches_hold_ten_entries_and_one_mebibyte_at_most() {
        /// Body sizes; the batches expected; the bodies too large to send.
        type Case = (
            &'static [usize],
            &'static [&'static [usize]],
            &'static [usize],
        );
        const KIB: usize = 1024;
        let cases: &[Case] = &[
            (&[], &[], &[]),
            (&[10; 3], &[&[0, 1, 2]], &[]),
            (
                &[1; 23],
                &[
                    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                    &[10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
                    &[20, 21, 22],
                ],
                &[],
            ),
            // Four messages at the limit are exactly 1 MiB; a fifth starts a new batch.
            (&[256 * KIB; 5], &[&[0, 1, 2, 3], &[4]], &[]),
            (
                &[256 * KIB, 256 * KIB, 256 * KIB, 256 * KIB + 1],
                &[&[0, 1, 2]],
                &[3],
            ),
            (
                &[200 * KIB, 250 * KIB, 250 * KIB, 250 * KIB, 100 * KIB, 1],
                &[&[0, 1, 2, 3], &[4, 5]],
                &[],
            ),
            (&[110 * KIB; 10], &[&[0, 1, 2, 3, 4, 5, 6, 7, 8], &[9]], &[]),
        ];
        for (sizes, batches, too_large) in cases {
            let plan = plan_batches(sizes);
            let expected: Vec<Vec<usize>> = batches.iter().map(|b| b.to_vec()).collect();
            assert_eq!(plan.batches, expected, "{sizes:?}");
            assert_eq!(plan.too_large, too_large.to_vec(), "{sizes:?}");
        }
    }

    #[test]
    fn every_planned_batch_is_within_both_limits_and_keeps_the_order() {
        let sizes: Vec<usize> = (0..500)
            .map(|i| (i * 7919) % (MAX_MESSAGE_BYTES + 1))
            .collect();
        let plan = plan_batches(&sizes);
        assert!(plan.too_large.is_empty());
        let order: Vec<usize> = plan.batches.iter().flatten().copied().collect();
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        for batch in &plan.batches {
            assert!(!batch.is_empty() && batch.len() <= MAX_BATCH);
            assert!(batch.iter().map(|&i| sizes[i]).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn a_queue_is_named_by_the_end_of_its_url_or_arn() {
        assert_eq!(
            queue_name("http://127.0.0.1:5000/123456789012/hookline-slow"),
            "hookline-slow"
        );
        assert_eq!(
            queue_name("arn:aws:sqs:us-east-1:123456789012:hookline-slow"),
            "hookline-slow"
        );
        assert_eq!(queue_name("hookline-slow"), "hookline-slow");
    }

    #[test]
    fn bodies_escape_what_sqs_refuses_and_read_back_the_same() {
        let text = "a\u{fffe}b\u{ffff}c\u{fffd}\u{10000}\"\\";
        let body = message_body(&text);
        assert!(!body.contains(['\u{fffe}', '\u{ffff}']), "{body}");
        assert!(body.contains('\u{fffd}') && body.contains('\u{10000}'));
        assert_eq!(serde_json::from_str::<String>(&body).unwrap(), text);
        assert_eq!(message_body(&"plain"), "\"plain\"");
    }

    #[test]
    fn a_failed_send_names_what_did_not_go() {
        let partial = QueueError::Unsent {
            unsent: vec![3, 4],
            total: 9,
            reason: "Throttled".into(),
        };
        assert_eq!(partial.unsent(9), vec![3, 4]);
        assert_eq!(
            partial.to_string(),
            "SQS did not take 2 of 9 messages: Throttled"
        );
        let failed = QueueError::Aws {
            operation: "SendMessageBatch",
            message: "timeout".into(),
        };
        assert_eq!(failed.unsent(3), vec![0, 1, 2]);
    }

    /// Runs [`each_batch`] over `count` entries with a call that refuses each
    /// position listed in `refusals` once per listing (as our fault when
    /// `ours`), and fails outright on a call that includes `fails_on`. Returns
    /// the calls made and the outcome.
    async fn run(
        count: usize,
        refusals: &[usize],
        ours: bool,
        fails_on: Option<usize>,
    ) -> (Vec<Vec<usize>>, Result<(), QueueError>) {
        let calls = RefCell::new(Vec::new());
        let refusals = RefCell::new(refusals.to_vec());
        let result = each_batch("Op", count, |pending: &[usize]| {
            calls.borrow_mut().push(pending.to_vec());
            let answer = if fails_on.is_some_and(|f| pending.contains(&f)) {
                Err(std::io::Error::other("throttled"))
            } else {
                let mut left = refusals.borrow_mut();
                let mut refused = Vec::new();
                for index in pending {
                    if let Some(at) = left.iter().position(|r| r == index) {
                        left.remove(at);
                        refused.push(
                            BatchResultErrorEntry::builder()
                                .id(index.to_string())
                                .code("Busy")
                                .message("again")
                                .sender_fault(ours)
                                .build()
                                .unwrap(),
                        );
                    }
                }
                Ok(refused)
            };
            async move { answer }
        })
        .await;
        (calls.into_inner(), result)
    }

    #[tokio::test]
    async fn batches_are_of_ten_and_refused_entries_go_again() {
        let (calls, result) = run(23, &[3, 12, 12], false, None).await;
        assert!(result.is_ok(), "{result:?}");
        let expected: Vec<Vec<usize>> = vec![
            (0..10).collect(),
            vec![3],
            (10..20).collect(),
            vec![12],
            vec![12],
            (20..23).collect(),
        ];
        assert_eq!(calls, expected);
    }

    #[tokio::test]
    async fn entries_refused_every_time_or_by_our_fault_are_named() {
        let (calls, result) = run(12, &[1; SEND_RETRIES as usize + 1], false, None).await;
        assert_eq!(calls.len(), SEND_RETRIES as usize + 2);
        let error = result.unwrap_err();
        assert_eq!(error.unsent(12), vec![1]);
        assert!(
            error.to_string().contains("Busy (theirs): again"),
            "{error}"
        );
        // A refusal that is our fault is not tried again.
        let (calls, result) = run(5, &[2, 4], true, None).await;
        assert_eq!(calls, vec![(0..5).collect::<Vec<_>>()]);
        assert_eq!(result.unwrap_err().unsent(5), vec![2, 4]);
    }

    #[tokio::test]
    async fn a_failed_call_leaves_its_entries_and_all_later_ones_undone() {
        let (calls, result) = run(35, &[2], false, Some(14)).await;
        assert_eq!(calls.len(), 3);
        let error = result.unwrap_err();
        assert_eq!(error.unsent(35), (10..35).collect::<Vec<_>>());
        assert!(error.to_string().contains("throttled"), "{error}");
        // The failed call is the last, short batch: nothing comes after it.
        let (_, result) = run(2, &[], false, Some(1)).await;
        assert_eq!(result.unwrap_err().unsent(2), vec![0, 1]);
        let (calls, result) = run(0, &[], false, None).await;
        assert!(calls.is_empty() && result.is_ok());
    }

    #[test]
    fn visibility_rounds_up_and_stops_at_twelve_hours() {
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(800)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(5000)), 5);
        assert_eq!(visibility_seconds(Duration::from_millis(5001)), 6);
        assert_eq!(visibility_seconds(Duration::from_secs(13 * 3600)), 43_200);
    }

    #[test]
    fn the_longest_visibility_shrinks_with_the_time_since_the_receive() {
        let twelve_hours = crate::retry::MAX_STEP;
        assert_eq!(
            max_visibility(Duration::ZERO),
            twelve_hours - VISIBILITY_MARGIN
        );
        let minute = Duration::from_secs(60);
        assert_eq!(
            max_visibility(minute),
            twelve_hours - VISIBILITY_MARGIN - minute
        );
        // Whole seconds, rounded up, still end before the 12 hours are out.
        let asked = visibility_seconds(max_visibility(Duration::from_millis(1500)));
        assert!(i64::from(asked) + 2 < twelve_hours.as_secs() as i64);
        assert_eq!(max_visibility(twelve_hours), Duration::ZERO);
        // Every step the schedule allows, jittered down, still fits.
        assert!(
            crate::retry::MAX_STEP.mul_f64(1.0 - crate::retry::JITTER)
                < max_visibility(Duration::from_secs(15 * 60))
        );
    }
}
