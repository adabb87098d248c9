//! Noisy endpoints kept from slowing the others (ADR 7): an endpoint whose attempt
//! hung is marked slow on the instance that saw it, and while the mark lasts that
//! instance moves its jobs from the delivery queue to the slow lane, a second queue
//! whose event source runs at a small, capped concurrency. The rules are here; the
//! moves are the dispatcher's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::EndpointId;
use crate::model::DeliveryJob;

/// How long a mark lasts after the slow attempt that set it. Past it the next job
/// is tried on the delivery queue again, which marks the endpoint anew if it still hangs.
pub const SLOW_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long a delivery on the delivery queue may hold its batch back. An endpoint
/// that has not answered by then is slow: the job is handed to the slow lane, where
/// it gets the whole request timeout.
pub const SLOW_ATTEMPT: Duration = Duration::from_secs(1);

/// Whether an attempt that took `took` shows its endpoint slow.
pub fn is_slow_attempt(took: Duration, timed_out: bool) -> bool {
    timed_out || took >= SLOW_ATTEMPT
}

/// A job on the slow lane: the job as it was, and the attempts it had made on the
/// delivery queue, so the schedule goes on where it was (the slow lane's receive
/// count starts again at one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedJob {
    #[serde(flatten)]
    pub job: DeliveryJob,
    #[serde(default)]
    pub earlier_attempts: u32,
}

impl MovedJob {
    pub fn to_body(&self) -> String {
        crate::queue::message_body(self)
    }
}

/// The endpoints this instance saw hang lately. Instance-local: no call shares it,
/// so each instance pays for one slow attempt of an endpoint per [`SLOW_WINDOW`].
#[derive(Debug)]
pub struct SlowEndpoints {
    window: Duration,
    marks: Mutex<HashMap<EndpointId, Instant>>,
}

impl Default for SlowEndpoints {
    fn default() -> Self {
        Self::new(SLOW_WINDOW)
    }
}

impl SlowEndpoints {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            marks: Mutex::default(),
        }
    }

    /// Whether `endpoint` was marked less than the window before `now`.
    pub fn is_slow(&self, endpoint: &EndpointId, now: Instant) -> bool {
        self.lock()
            .get(endpoint)
            .is_some_and(|marked| now.saturating_duration_since(*marked) < self.window)
    }

    /// Whether no endpoint is marked (or ever was, since the expired ones went).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Marks `endpoint` slow from `now`; `true` when it was not marked already.
    pub fn mark(&self, endpoint: &EndpointId, now: Instant) -> bool {
        let mut marks = self.lock();
        // Expired marks go, so the map stays as small as the set of slow endpoints.
        marks.retain(|_, marked| now.saturating_duration_since(*marked) < self.window);
        marks.insert(endpoint.clone(), now).is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Instant>> {
        self.marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_or_a_long_attempt_is_slow() {
        assert!(is_slow_attempt(Duration::from_millis(10), true));
        assert!(is_slow_attempt(SLOW_ATTEMPT, false));
        assert!(!is_slow_attempt(
            SLOW_ATTEMPT - Duration::from_millis(1),
            false
        ));
    }

    #[test]
    fn a_mark_lasts_its_window() {
        let slow = SlowEndpoints::new(Duration::from_secs(60));
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let start = Instant::now();
        assert!(!slow.is_slow(&a, start));
        assert!(slow.mark(&a, start), "newly marked");
        assert!(!slow.mark(&a, start), "marked already");
        assert!(slow.is_slow(&a, start + Duration::from_secs(59)));
        assert!(!slow.is_slow(&b, start));
        assert!(!slow.is_slow(&a, start + Duration::from_secs(60)));
        assert!(
            slow.mark(&b, start + Duration::from_secs(61)),
            "an expired mark is dropped"
        );
        assert!(slow.mark(&a, start + Duration::from_secs(61)));
    }

    #[test]
    fn a_moved_job_reads_as_a_job_and_back_with_its_attempts() {
        let body = r#"{"message_id":"msg_01M85PDMCPDJ8RTGQR6V2H2JS2","endpoint_id":"ep_01M85PDM8KNF70YB5Y4GMAS2DQ","account":"jane","event_type":"sample.created","payload":"{}"}"#;
        let job: DeliveryJob = serde_json::from_str(body).unwrap();
        let moved = MovedJob {
            job: job.clone(),
            earlier_attempts: 2,
        };
        let moved_body = moved.to_body();
        assert_eq!(
            serde_json::from_str::<MovedJob>(&moved_body).unwrap(),
            moved
        );
        assert_eq!(
            serde_json::from_str::<DeliveryJob>(&moved_body).unwrap(),
            job
        );
        let unmoved: MovedJob = serde_json::from_str(body).unwrap();
        assert_eq!(unmoved.earlier_attempts, 0);
    }
}
