//! DLQ redrive: jobs move from the DLQ back to the delivery queue by receive →
//! send → delete (moto has no StartMessageMoveTask), filtered by endpoint and
//! event type. A job is sent back byte for byte, so its message id, and with it
//! the `webhook-id` its endpoint sees, never changes. The `replay` function, the
//! API and the CLI all call [`redrive`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::EndpointId;
use crate::model::DeliveryJob;
use crate::queue::{QueueError, Queues};

/// How long a received DLQ job stays hidden while a redrive looks at the rest;
/// skipped jobs are made visible again at the end, well before this runs out.
const HOLD: Duration = Duration::from_secs(120);
/// Long-poll wait of one DLQ receive: an empty answer ends the run.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Which DLQ jobs to replay. Absent fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub endpoint_id: Option<EndpointId>,
    #[serde(default)]
    pub event_type: Option<String>,
    /// At most this many jobs are replayed.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether a DLQ message body is a job this filter replays. A body that is not a
    /// job never matches: it stays in the DLQ for a person to look at.
    pub fn matches(&self, body: &str) -> bool {
        let Ok(job) = serde_json::from_str::<DeliveryJob>(body) else {
            return false;
        };
        self.endpoint_id
            .as_ref()
            .is_none_or(|id| *id == job.endpoint_id)
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| t == job.event_type)
    }

    fn room(&self, replayed: usize) -> bool {
        self.limit.is_none_or(|limit| replayed < limit)
    }
}

/// What a redrive did: jobs sent back, and jobs looked at and left in the DLQ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub replayed: usize,
    pub skipped: usize,
}

/// Moves the DLQ jobs `filter` matches back to the delivery queue, until the DLQ
/// has nothing more to show, the limit is reached, or `deadline` passes.
/// `progress` hears the running totals after each batch.
pub async fn redrive(
    queues: &Queues,
    filter: &Filter,
    deadline: Option<Instant>,
    mut progress: impl FnMut(Outcome),
) -> Result<Outcome, QueueError> {
    let mut outcome = Outcome::default();
    // Skipped jobs by SQS message id, with their latest receipt handle.
    let mut skipped: HashMap<String, String> = HashMap::new();
    let result = async {
        while filter.room(outcome.replayed) && deadline.is_none_or(|d| Instant::now() < d) {
            let batch = queues
                .receive_dead(crate::queue::MAX_BATCH, RECEIVE_WAIT, HOLD)
                .await?;
            if batch.is_empty() {
                break;
            }
            let mut seen_again = 0;
            let mut chosen = Vec::new();
            for received in batch {
                if let Some(handle) = skipped.get_mut(&received.message_id) {
                    // A skipped job whose hold ran out during a long run.
                    *handle = received.receipt_handle;
                    seen_again += 1;
                } else if filter.room(outcome.replayed + chosen.len())
                    && filter.matches(&received.body)
                {
                    chosen.push(received);
                } else {
                    skipped.insert(received.message_id, received.receipt_handle);
                }
            }
            if !chosen.is_empty() {
                let bodies: Vec<String> = chosen.iter().map(|r| r.body.clone()).collect();
                queues.send_bodies(&bodies).await?;
                // Deleted only once sent: a failure in between replays a job twice, never zero times.
                let handles: Vec<String> =
                    chosen.iter().map(|r| r.receipt_handle.clone()).collect();
                queues.delete_dead(&handles).await?;
                outcome.replayed += chosen.len();
            }
            outcome.skipped = skipped.len();
            progress(outcome);
            if chosen.is_empty() && seen_again > 0 {
                // Only jobs already looked at come back: the DLQ has been seen through.
                break;
            }
        }
        Ok(())
    }
    .await;
    let handles: Vec<String> = skipped.into_values().collect();
    let released = queues.release_dead(&handles).await;
    result?;
    released?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;

    fn job(endpoint: &EndpointId, event_type: &str) -> String {
        serde_json::to_string(&DeliveryJob {
            message_id: MessageId::new(),
            endpoint_id: endpoint.clone(),
            account: "jane".into(),
            event_type: event_type.into(),
            payload: None,
        })
        .unwrap()
    }

    #[test]
    fn filters_match_endpoint_and_event_type() {
        let a = EndpointId::new();
        let b = EndpointId::new();
        let everything = Filter::default();
        assert!(everything.matches(&job(&a, "sample.created")));
        let only_a = Filter {
            endpoint_id: Some(a.clone()),
            ..Filter::default()
        };
        assert!(only_a.matches(&job(&a, "sample.created")));
        assert!(!only_a.matches(&job(&b, "sample.created")));
        let a_issues = Filter {
            endpoint_id: Some(a.clone()),
            event_type: Some("issue.created".into()),
            limit: None,
        };
        assert!(a_issues.matches(&job(&a, "issue.created")));
        assert!(!a_issues.matches(&job(&a, "sample.created")));
        assert!(!a_issues.matches(&job(&b, "issue.created")));
    }

    #[test]
    fn a_body_that_is_not_a_job_is_never_replayed() {
        assert!(!Filter::default().matches("{not a job"));
        assert!(!Filter::default().matches(r#"{"message_id": 1}"#));
    }

    #[test]
    fn limits_count_replayed_jobs() {
        let two = Filter {
            limit: Some(2),
            ..Filter::default()
        };
        assert!(two.room(1));
        assert!(!two.room(2));
        assert!(Filter::default().room(usize::MAX - 1));
    }

    #[test]
    fn a_filter_reads_as_the_replay_functions_event() {
        let filter: Filter =
            serde_json::from_str(r#"{"event_type": "sample.created", "limit": 5}"#).unwrap();
        assert_eq!(filter.event_type.as_deref(), Some("sample.created"));
        assert_eq!(filter.limit, Some(5));
        assert_eq!(
            serde_json::from_str::<Filter>("{}").unwrap(),
            Filter::default()
        );
    }
}
