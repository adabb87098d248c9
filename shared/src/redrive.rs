//! DLQ redrive: jobs move from the DLQ back to the delivery queue by receive →
//! send → delete (moto has no StartMessageMoveTask), filtered by endpoint and
//! event type. A job is sent back byte for byte, so its message id, and with it
//! the `webhook-id` its endpoint sees, never changes. The `replay` function, the
//! API and the CLI all call [`redrive`].
//!
//! Each job moves once per run, whatever SQS refuses: a job is deleted from the
//! DLQ only once sent (so none is lost); one whose delete fails is remembered and,
//! when it shows up again, deleted rather than sent twice; one SQS would not take
//! stays in the DLQ and ends the run. Memory stays bounded on a DLQ of any size:
//! skipped jobs are remembered by id only, and a bounded number of their receipt
//! handles is kept to show them again at once when the run ends.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event_type::EventType;
use crate::ids::EndpointId;
use crate::model::DeliveryJob;
use crate::queue::{MAX_BATCH, QueueError, Queues, Received};
use crate::task::Task;

/// How long a received DLQ job stays hidden while a redrive looks at the rest;
/// held skipped jobs are made visible again at the end, well before this runs out.
const HOLD: Duration = Duration::from_secs(120);
/// Long-poll wait of one DLQ receive: an empty answer ends the run.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Skipped jobs whose receipt handles a run keeps to show them again at once when
/// it ends; later ones show up again by themselves when their hold runs out.
const MAX_HELD: usize = 1_000;
/// Skipped jobs a run remembers by id (to know them when they come back); a run
/// that would skip more ends early.
const MAX_SKIPPED: usize = 100_000;

/// Which DLQ jobs to replay. Absent fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub endpoint_id: Option<EndpointId>,
    #[serde(default)]
    pub event_type: Option<EventType>,
    /// At most this many jobs are replayed.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether a DLQ message body is a job this filter replays. A body that is not a
    /// job never matches: it stays in the DLQ for a person to look at.
    pub fn matches(&self, body: &str) -> bool {
        if let Some(task) = Task::from_body(body) {
            return task.is_ok_and(|task| self.matches_task(&task));
        }
        let Ok(job) = serde_json::from_str::<DeliveryJob>(body) else {
            return false;
        };
        self.endpoint_id
            .as_ref()
            .is_none_or(|id| *id == job.endpoint_id)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == job.event_type)
    }

    /// A task is work rather than one delivery: a replay that names an event type
    /// takes none, and one that names an endpoint takes that endpoint's recoveries
    /// only (a fan-out's jobs would go to other endpoints too).
    fn matches_task(&self, task: &Task) -> bool {
        if self.event_type.is_some() {
            return false;
        }
        match (&self.endpoint_id, task) {
            (None, _) => true,
            (Some(id), Task::Recover(part)) => part.endpoint_id == *id,
            // A raise's jobs go to the endpoints subscribed to it, not the one it is about.
            (Some(_), Task::FanOut(_) | Task::Raise(_)) => false,
        }
    }

    fn room(&self, replayed: usize) -> bool {
        self.limit.is_none_or(|limit| replayed < limit)
    }
}

/// What a redrive did: jobs sent back, and jobs looked at and left in the DLQ.
/// `complete` is false when the run stopped before it had seen the DLQ through
/// (its deadline passed, or it had skipped too many jobs to remember): another
/// run does the rest. It is written out only when false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub replayed: usize,
    pub skipped: usize,
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub complete: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            replayed: 0,
            skipped: 0,
            complete: true,
        }
    }
}

/// A run that an error stopped, and what it had done by then.
#[derive(Debug, thiserror::Error)]
#[error("the replay stopped after {} jobs: {error}", outcome.replayed)]
pub struct Interrupted {
    pub outcome: Outcome,
    pub error: QueueError,
}

impl Interrupted {
    /// What a caller reports: the jobs already moved, as an incomplete outcome;
    /// a run that moved none fails with its error.
    pub fn into_partial(self) -> Result<Outcome, QueueError> {
        if self.outcome.replayed > 0 {
            Ok(self.outcome)
        } else {
            Err(self.error)
        }
    }
}

/// What a run remembers between batches, bounded by [`MAX_SKIPPED`] and [`MAX_HELD`].
#[derive(Debug, Default)]
struct Memory {
    /// SQS message ids of the jobs looked at and left in the DLQ.
    skipped: HashSet<String>,
    /// Receipt handles of skipped jobs by SQS message id, shown again at the end.
    held: HashMap<String, String>,
    /// SQS message ids of jobs sent back whose delete from the DLQ failed.
    undeleted: HashSet<String>,
}

/// What to do with one received batch.
#[derive(Debug, Default)]
struct Plan {
    /// Jobs to send back, then delete.
    send: Vec<Received>,
    /// Jobs already sent back by this run whose delete failed: delete only.
    delete: Vec<Received>,
    /// Jobs this run had not seen before.
    new: usize,
}

impl Memory {
    fn plan(&mut self, batch: Vec<Received>, filter: &Filter, replayed: usize) -> Plan {
        let mut plan = Plan::default();
        for received in batch {
            if self.undeleted.contains(&received.message_id) {
                plan.delete.push(received);
                continue;
            }
            let known = self.skipped.contains(&received.message_id);
            if !known {
                plan.new += 1;
                if filter.room(replayed + plan.send.len()) && filter.matches(&received.body) {
                    plan.send.push(received);
                    continue;
                }
                self.skipped.insert(received.message_id.clone());
            }
            // A job seen again has a new handle; only the newest one works.
            if known || self.held.len() < MAX_HELD {
                self.held
                    .insert(received.message_id, received.receipt_handle);
            }
        }
        plan
    }

    /// Notes which of `sent` the DLQ still holds (their delete failed) and which it
    /// no longer does.
    fn deleted(&mut self, sent: &[Received], failed: &[usize]) {
        for (index, received) in sent.iter().enumerate() {
            if failed.contains(&index) {
                self.undeleted.insert(received.message_id.clone());
            } else {
                self.undeleted.remove(&received.message_id);
            }
        }
    }
}

fn handles(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.receipt_handle.clone()).collect()
}

/// Deletes `sent` from the DLQ, remembering the jobs whose delete failed.
async fn delete(queues: &Queues, memory: &mut Memory, sent: &[Received]) {
    let failed = match queues.delete_dead(&handles(sent)).await {
        Ok(()) => Vec::new(),
        Err(error) => {
            tracing::warn!(%error, "replayed jobs stay in the DLQ until seen again");
            error.unsent(sent.len())
        }
    };
    memory.deleted(sent, &failed);
}

/// Shows jobs received from the DLQ again at once. One SQS refuses shows up again
/// when its hold runs out: it is late, not lost.
async fn release(queues: &Queues, handles: &[String]) {
    if let Err(error) = queues.release_dead(handles).await {
        tracing::warn!(%error, hold = ?HOLD, "DLQ jobs stay hidden until their hold runs out");
    }
}

/// Moves the DLQ jobs `filter` matches back to the delivery queue, until the DLQ
/// has nothing more to show, the limit is reached, or `deadline` passes.
/// `progress` hears the running totals after each batch.
pub async fn redrive(
    queues: &Queues,
    filter: &Filter,
    deadline: Option<Instant>,
    mut progress: impl FnMut(Outcome),
) -> Result<Outcome, Interrupted> {
    let mut outcome = Outcome::default();
    let mut memory = Memory::default();
    let result = async {
        loop {
            if !filter.room(outcome.replayed) {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) || memory.skipped.len() >= MAX_SKIPPED
            {
                return Ok(false);
            }
            let batch = queues.receive_dead(MAX_BATCH, RECEIVE_WAIT, HOLD).await?;
            if batch.is_empty() {
                return Ok(true);
            }
            let plan = memory.plan(batch, filter, outcome.replayed);
            if !plan.delete.is_empty() {
                delete(queues, &mut memory, &plan.delete).await;
            }
            if !plan.send.is_empty() {
                let bodies: Vec<String> = plan.send.iter().map(|r| r.body.clone()).collect();
                let failure = queues.send_bodies(&bodies).await.err();
                let unsent = failure
                    .as_ref()
                    .map(|error| error.unsent(bodies.len()))
                    .unwrap_or_default();
                let (mut sent, mut refused) = (Vec::new(), Vec::new());
                for (index, received) in plan.send.into_iter().enumerate() {
                    if unsent.contains(&index) {
                        refused.push(received);
                    } else {
                        sent.push(received);
                    }
                }
                // Deleted only once sent, so no job is lost on the way.
                delete(queues, &mut memory, &sent).await;
                outcome.replayed += sent.len();
                if let Some(error) = failure {
                    // Not sent, so not deleted: they stay in the DLQ for the next run.
                    release(queues, &handles(&refused)).await;
                    return Err(error);
                }
            }
            outcome.skipped = memory.skipped.len();
            progress(outcome);
            if plan.new == 0 {
                // Only jobs already looked at come back: the DLQ has been seen through.
                return Ok(true);
            }
        }
    }
    .await;
    let held: Vec<String> = memory.held.into_values().collect();
    release(queues, &held).await;
    outcome.skipped = memory.skipped.len();
    if !memory.undeleted.is_empty() {
        tracing::error!(
            count = memory.undeleted.len(),
            "replayed jobs could not be deleted from the DLQ; a later replay sends them again"
        );
    }
    match result {
        Ok(complete) => Ok(Outcome {
            complete,
            ..outcome
        }),
        Err(error) => Err(Interrupted {
            outcome: Outcome {
                complete: false,
                ..outcome
            },
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;

    fn job(endpoint: &EndpointId, event_type: &str) -> String {
        serde_json::to_string(&DeliveryJob {
            message_id: MessageId::new(),
            endpoint_id: endpoint.clone(),
            account: "jane".parse().unwrap(),
            event_type: event_type.parse().unwrap(),
            payload: None,
            endpoint_updated_at: None,
            after_failing: false,
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
            event_type: Some("issue.created".parse().unwrap()),
            limit: None,
        };
        assert!(a_issues.matches(&job(&a, "issue.created")));
        assert!(!a_issues.matches(&job(&a, "sample.created")));
        assert!(!a_issues.matches(&job(&b, "issue.created")));
    }

    #[test]
    fn tasks_are_replayed_unless_the_filter_names_what_they_do_not_hold() {
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let recover = Task::Recover(crate::task::Recover {
            account: "jane".parse().unwrap(),
            endpoint_id: a.clone(),
            since: time::OffsetDateTime::UNIX_EPOCH,
            until: time::OffsetDateTime::UNIX_EPOCH,
            before: None,
            endpoint_updated_at: None,
        })
        .to_body();
        let fan_out = crate::task::FanOut::split(
            &MessageId::new(),
            &"jane".parse().unwrap(),
            &[a.clone().into()],
        )
        .remove(0)
        .to_body();
        let endpoint = |id: &EndpointId| Filter {
            endpoint_id: Some(id.clone()),
            ..Filter::default()
        };
        let event_type = Filter {
            event_type: Some("sample.created".parse().unwrap()),
            ..Filter::default()
        };
        assert!(Filter::default().matches(&recover) && Filter::default().matches(&fan_out));
        assert!(endpoint(&a).matches(&recover) && !endpoint(&b).matches(&recover));
        assert!(!endpoint(&a).matches(&fan_out));
        assert!(!event_type.matches(&recover) && !event_type.matches(&fan_out));
        assert!(!Filter::default().matches(r#"{"kind": "explode"}"#));
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
        assert_eq!(filter.event_type.unwrap(), "sample.created");
        assert_eq!(filter.limit, Some(5));
        assert_eq!(
            serde_json::from_str::<Filter>("{}").unwrap(),
            Filter::default()
        );
    }

    fn received(id: &str, handle: &str, body: String) -> Received {
        Received {
            message_id: id.into(),
            receipt_handle: handle.into(),
            body,
            md5_of_body: String::new(),
            attributes: Default::default(),
        }
    }

    fn ids(received: &[Received]) -> Vec<&str> {
        received.iter().map(|r| r.message_id.as_str()).collect()
    }

    #[test]
    fn a_plan_sends_what_matches_and_holds_the_rest_by_id() {
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let only_a = Filter {
            endpoint_id: Some(a.clone()),
            limit: Some(2),
            ..Filter::default()
        };
        let mut memory = Memory::default();
        let plan = memory.plan(
            vec![
                received("1", "h1", job(&a, "sample.created")),
                received("2", "h2", job(&b, "sample.created")),
                received("3", "h3", "{not a job".into()),
                received("4", "h4", job(&a, "sample.created")),
                // Over the limit: left in the DLQ like a job the filter skips.
                received("5", "h5", job(&a, "sample.created")),
            ],
            &only_a,
            0,
        );
        assert_eq!(ids(&plan.send), ["1", "4"]);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.new, 5);
        assert_eq!(memory.skipped.len(), 3);
        assert_eq!(memory.held.get("2").map(String::as_str), Some("h2"));

        // A skipped job seen again is not new, and its newest handle is kept.
        let plan = memory.plan(
            vec![received("2", "h2'", job(&b, "sample.created"))],
            &only_a,
            2,
        );
        assert_eq!((plan.new, plan.send.len()), (0, 0));
        assert_eq!(memory.held.get("2").map(String::as_str), Some("h2'"));
        assert_eq!(memory.skipped.len(), 3);
    }

    #[test]
    fn a_job_sent_back_whose_delete_failed_is_deleted_not_sent_again() {
        let a = EndpointId::new();
        let mut memory = Memory::default();
        let plan = memory.plan(
            vec![
                received("1", "h1", job(&a, "sample.created")),
                received("2", "h2", job(&a, "sample.created")),
            ],
            &Filter::default(),
            0,
        );
        memory.deleted(&plan.send, &[1]);
        let plan = memory.plan(
            vec![
                received("2", "h2'", job(&a, "sample.created")),
                received("3", "h3", job(&a, "sample.created")),
            ],
            &Filter::default(),
            2,
        );
        assert_eq!(ids(&plan.delete), ["2"]);
        assert_eq!(ids(&plan.send), ["3"]);
        assert_eq!(plan.new, 1);
        memory.deleted(&plan.delete, &[]);
        assert!(memory.undeleted.is_empty());
    }

    #[test]
    fn held_handles_are_bounded_and_skipped_ids_are_not() {
        let mut memory = Memory::default();
        let batch = (0..MAX_HELD + 5)
            .map(|n| received(&n.to_string(), "h", "{not a job".into()))
            .collect();
        let plan = memory.plan(batch, &Filter::default(), 0);
        assert_eq!(plan.new, MAX_HELD + 5);
        assert_eq!(memory.held.len(), MAX_HELD);
        assert_eq!(memory.skipped.len(), MAX_HELD + 5);
    }

    #[test]
    fn an_outcome_mentions_completeness_only_when_incomplete() {
        let done = Outcome {
            replayed: 2,
            skipped: 1,
            complete: true,
        };
        assert_eq!(
            serde_json::to_value(done).unwrap(),
            serde_json::json!({"replayed": 2, "skipped": 1})
        );
        let cut = Outcome {
            complete: false,
            ..done
        };
        assert_eq!(
            serde_json::to_value(cut).unwrap(),
            serde_json::json!({"replayed": 2, "skipped": 1, "complete": false})
        );
        let stopped = Interrupted {
            outcome: cut,
            error: QueueError::Aws {
                operation: "ReceiveMessage",
                message: "throttled".into(),
            },
        };
        assert_eq!(stopped.into_partial().unwrap(), cut);
        let nothing = Interrupted {
            outcome: Outcome::default(),
            error: QueueError::Aws {
                operation: "ReceiveMessage",
                message: "throttled".into(),
            },
        };
        assert!(nothing.into_partial().is_err());
    }
}
