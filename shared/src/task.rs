//! Queue bodies that are not delivery jobs: work the dispatcher does itself. They
//! travel on the delivery queue beside the jobs and carry a `kind`, which a job has not.

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::account::Account;
use crate::ids::{AttemptId, EndpointId, MessageId};
use crate::model::Recipient;
use crate::operational::Raise;

/// A queue body that is not a delivery job: work the dispatcher does itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    FanOut(FanOut),
    Recover(Recover),
    /// An operational event to store and fan out (see [`crate::operational`]).
    Raise(Raise),
}

/// Endpoints of one stored message whose delivery jobs are still to be enqueued:
/// the rest of a fan-out that stopped part-way, or a fan-out too large to do while
/// the platform waits. Done twice, it only enqueues jobs again under the same message id.
///
/// It never carries the payload: the dispatcher reads the message, so a task whose
/// message was taken back (a request answered 500) enqueues nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOut {
    pub message_id: MessageId,
    pub account: Account,
    /// The endpoints, each with the version its fan-out read, which the jobs name.
    #[serde(alias = "endpoint_ids")]
    pub recipients: Vec<Recipient>,
}

/// Endpoints one fan-out task names at most: a task is done (and on failure redone)
/// within one dispatcher invocation, and large fan-outs spread over several.
pub const FAN_OUT_TASK_ENDPOINTS: usize = 100;

impl FanOut {
    /// The tasks that enqueue `message_id`'s jobs for `recipients`, at most
    /// [`FAN_OUT_TASK_ENDPOINTS`] each.
    pub fn split(message_id: &MessageId, account: &Account, recipients: &[Recipient]) -> Vec<Task> {
        recipients
            .chunks(FAN_OUT_TASK_ENDPOINTS)
            .map(|chunk| {
                Task::FanOut(FanOut {
                    message_id: message_id.clone(),
                    account: account.clone(),
                    recipients: chunk.to_vec(),
                })
            })
            .collect()
    }
}

/// Recovery of an endpoint: deliver again every message whose last attempt to it
/// within `[since, until]` failed (see [`crate::recover`]). The attempts from
/// `before` on are done already; `None` before the first part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recover {
    pub account: Account,
    pub endpoint_id: EndpointId,
    #[serde(with = "crate::timefmt")]
    pub since: OffsetDateTime,
    #[serde(with = "crate::timefmt")]
    pub until: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<AttemptId>,
    /// The endpoint's `updated_at` as the recovery's request read it, which its jobs
    /// name: an endpoint mended (its URL, its secret) and then recovered is delivered
    /// to as mended.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub endpoint_updated_at: Option<OffsetDateTime>,
}

/// Only the field that tells a task from a delivery job; the rest is skipped unread.
#[derive(Deserialize)]
struct Kind {
    kind: Option<serde::de::IgnoredAny>,
}

impl Task {
    /// The task a queue body holds; `None` for a body without a `kind` (a delivery job).
    /// A body with a `kind` that is not a valid task is `Some(Err)`: malformed.
    pub fn from_body(body: &str) -> Option<Result<Task, serde_json::Error>> {
        let kind: Kind = serde_json::from_str(body).ok()?;
        kind.kind?;
        Some(serde_json::from_str(body))
    }

    pub fn to_body(&self) -> String {
        crate::queue::message_body(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliveryJob;

    #[test]
    fn a_task_reads_back_and_a_delivery_job_is_not_one() {
        let message = MessageId::new();
        let read = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let recipients: Vec<Recipient> = (0..250)
            .map(|_| Recipient {
                id: EndpointId::new(),
                updated_at: Some(read),
            })
            .collect();
        let tasks = FanOut::split(&message, &"jane".parse().unwrap(), &recipients);
        assert_eq!(tasks.len(), 3);
        let named: Vec<Recipient> = tasks
            .iter()
            .flat_map(|task| match task {
                Task::FanOut(f) => f.recipients.clone(),
                _ => unreachable!("a fan-out splits into fan-outs"),
            })
            .collect();
        assert_eq!(named, recipients);
        for task in &tasks {
            let body = task.to_body();
            assert!(
                body.starts_with(r#"{"kind":"fan_out","message_id":"msg_"#),
                "{body}"
            );
            assert_eq!(&Task::from_body(&body).unwrap().unwrap(), task);
            assert!(body.len() < 16 * 1024, "{}", body.len());
        }

        let job = DeliveryJob {
            message_id: message,
            endpoint_id: EndpointId::new(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            payload: Some(r#"{"kind":"fan_out"}"#.into()),
            endpoint_updated_at: None,
            after_failing: false,
        };
        assert!(Task::from_body(&job.to_body()).is_none());
        assert!(Task::from_body("{not json").is_none());
        assert!(Task::from_body(r#"{"kind":"fan_out"}"#).unwrap().is_err());
        assert!(Task::from_body(r#"{"kind":"explode"}"#).unwrap().is_err());
    }

    #[test]
    fn a_fan_out_task_that_names_bare_endpoint_ids_reads_back_without_versions() {
        let (message, endpoint) = (MessageId::new(), EndpointId::new());
        let body = format!(
            r#"{{"kind":"fan_out","message_id":"{message}","account":"jane","endpoint_ids":["{endpoint}"]}}"#
        );
        let Some(Ok(Task::FanOut(task))) = Task::from_body(&body) else {
            panic!("a fan-out task: {body}");
        };
        assert_eq!(task.recipients, vec![Recipient::from(endpoint.clone())]);
        // Versions, where read, go with the ids.
        let read = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let body = format!(
            r#"{{"kind":"fan_out","message_id":"{message}","account":"jane","recipients":[{{"id":"{endpoint}","updated_at":"2023-11-14T22:13:20.000000Z"}},{{"id":"{endpoint}"}}]}}"#
        );
        let Some(Ok(Task::FanOut(task))) = Task::from_body(&body) else {
            panic!("a fan-out task: {body}");
        };
        let versions: Vec<_> = task.recipients.iter().map(|r| r.updated_at).collect();
        assert_eq!(versions, [Some(read), None]);
    }

    #[test]
    fn a_recover_task_names_its_kind_and_reads_back_the_same() {
        let task = Task::Recover(Recover {
            account: "jane".parse().unwrap(),
            endpoint_id: EndpointId::new(),
            since: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            until: OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap(),
            before: Some(AttemptId::new()),
            endpoint_updated_at: Some(OffsetDateTime::from_unix_timestamp(1_699_999_000).unwrap()),
        });
        let body = task.to_body();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["kind"], "recover");
        assert_eq!(value["since"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(Task::from_body(&body).unwrap().unwrap(), task);
    }
}
