//! What the records of one invocation leave to the end of it, to be done in batch
//! calls: their attempt records (25 per BatchWriteItem) and their retry delays (10
//! per ChangeMessageVisibilityBatch). Both are done before the handler answers, so
//! before the event source deletes a record or SQS can offer it again.

use std::sync::Mutex;
use std::time::Duration;

use shared::metrics;
use shared::model::Attempt;
use shared::queue::Lane;

use crate::Deps;

/// Tries of the attempt records' writes, and the pause after the first failure (doubling).
const SAVE_TRIES: u32 = 4;
const SAVE_PAUSE: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct Pending {
    attempts: Mutex<Vec<Attempt>>,
    /// Receipt handles and how long to hide each.
    delays: Mutex<Vec<(String, Duration)>>,
}

impl Pending {
    pub(crate) fn record(&self, attempt: Attempt) {
        self.attempts.lock().expect("not poisoned").push(attempt);
    }

    pub(crate) fn delay(&self, receipt_handle: &str, delay: Duration) {
        self.delays
            .lock()
            .expect("not poisoned")
            .push((receipt_handle.to_string(), delay));
    }

    /// Writes the attempt records and changes the visibilities. A record still not
    /// written is logged, and the deliveries' outcomes stand: they must not turn into
    /// redeliveries. A visibility not changed is logged too: SQS still offers the
    /// job again, after the queue's visibility timeout, and that early receive does
    /// not count as the next attempt (see [`crate::attempt_number`]). The delays
    /// are set on `lane`'s queue, which the records came from.
    pub(crate) async fn finish(self, deps: &Deps, lane: Lane) {
        let attempts = self.attempts.into_inner().expect("not poisoned");
        let delays = self.delays.into_inner().expect("not poisoned");
        let written = async {
            if attempts.is_empty() {
                return;
            }
            let written = shared::retry::with_backoff(SAVE_TRIES, SAVE_PAUSE, || {
                deps.store.put_attempts(&attempts)
            })
            .await;
            if let Err(error) = written {
                for attempt in &attempts {
                    deps.metrics.add(metrics::ATTEMPT_WRITE_FAILURES, None);
                    tracing::error!(
                        %error, message_id = %attempt.message_id, endpoint_id = %attempt.endpoint_id,
                        attempt = attempt.attempt, "could not record an attempt"
                    );
                }
            }
        };
        let delayed = async {
            if delays.is_empty() {
                return;
            }
            let handles: Vec<(&str, Duration)> =
                delays.iter().map(|(h, d)| (h.as_str(), *d)).collect();
            if let Err(error) = deps.queues.lane(lane).delay_retries(&handles).await {
                let undone = error.unsent(handles.len()).len();
                tracing::warn!(%error, undone, "could not set some retry delays");
            }
        };
        futures::future::join(written, delayed).await;
    }
}
