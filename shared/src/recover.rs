//! Recovery of an endpoint: every message whose last attempt to it within a time
//! window failed is delivered again, each once, however many there are.
//!
//! The endpoint's attempts of the window are read newest first, a page at a time,
//! and jobs are queued as each page is read; only message ids are kept. The first
//! attempt met of a message is its last in the window: if it failed, the message
//! is queued (without its payload: the dispatcher reads the message when it
//! delivers). When a part's time runs short it hands the rest on as a
//! [`Task::Recover`] on the delivery queue, which the dispatcher continues the same
//! way, handing on again as often as needed.
//!
//! Each message is queued exactly once across the parts. A part covers the
//! attempts older than its `before` cursor, and hands on the id of the last attempt
//! it has read once the jobs of everything it read are on the queue; so the parts
//! cover the window's attempts in disjoint, consecutive ranges, newest first. A
//! message is queued by the part that reads its last attempt, and only there:
//! within a part, the ids of the messages met are kept; a later part asks the
//! table, for each failed attempt it would queue, whether the message has an
//! attempt in the earlier parts' range (from `before` to the window's end) — one
//! query per candidate, a few at a time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::try_join_all;

use crate::ids::{AttemptId, MessageId};
use crate::model::{AttemptStatus, DeliveryJob};
use crate::queue::{QueueError, Queues};
use crate::store::{AttemptOutcome, Store, StoreError, attempt_id_before, attempt_id_bounds};
use crate::task::{Recover, Task};

/// How long one part runs before it hands the rest on: API Gateway gives up after
/// 29 s, and the dispatcher's shortest timeout is 30 s.
pub const BUDGET: Duration = Duration::from_secs(20);
/// Attempts read per query.
const PAGE: usize = 500;
/// Messages one part may keep in mind; past that it hands the rest on.
const MAX_MET: usize = 100_000;
/// A page's jobs go in sends of this many, all at once.
const SEND_CHUNK: usize = 50;
/// Table queries a later part runs at once to check its candidates.
const CHECKS_AT_ONCE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one part did: messages it queued, and whether a later part continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub queued: usize,
    pub continuing: bool,
}

/// The attempts of `page` (newest first) that are the latest attempt of a message
/// not met before in this part, and failed. Every message of the page is met.
pub fn latest_failed<'a>(
    page: &'a [AttemptOutcome],
    met: &mut HashSet<MessageId>,
) -> Vec<&'a AttemptOutcome> {
    // Attempts made within one millisecond are ordered by chance, but attempts of
    // one message to one endpoint are a retry delay apart.
    page.iter()
        .filter(|attempt| met.insert(attempt.message_id.clone()))
        .filter(|attempt| attempt.status == AttemptStatus::Failed)
        .collect()
}

/// Runs one part of `part` until it is done or `deadline` passes, then hands the
/// rest on. A part reads at least one page, so the work always moves on.
pub async fn run(
    store: &Store,
    queues: &Queues,
    part: &Recover,
    deadline: Instant,
) -> Result<Progress, RecoverError> {
    let (first, last) = attempt_id_bounds(part.since, part.until);
    let mut met = HashSet::new();
    let mut queued = 0;
    let mut cursor = part.before.clone();
    let mut pages = 0;
    loop {
        if pages > 0 && (Instant::now() >= deadline || met.len() >= MAX_MET) {
            let rest = Task::Recover(Recover {
                before: cursor,
                ..part.clone()
            });
            queues.send_bodies(&[rest.to_body()]).await?;
            return Ok(Progress {
                queued,
                continuing: true,
            });
        }
        let upper = match &cursor {
            None => Some(last.clone()),
            Some(cursor) => attempt_id_before(cursor).map(|before| before.min(last.clone())),
        };
        let Some(upper) = upper else {
            break;
        };
        let page = store
            .attempt_outcomes(&part.account, &part.endpoint_id, (&first, &upper), PAGE)
            .await?;
        pages += 1;
        let mut candidates = latest_failed(&page.items, &mut met);
        if let Some(before) = &part.before {
            candidates = last_in_part(store, part, (before, &last), candidates).await?;
        }
        let jobs: Vec<DeliveryJob> = candidates
            .into_iter()
            .map(|attempt| DeliveryJob {
                message_id: attempt.message_id.clone(),
                endpoint_id: part.endpoint_id.clone(),
                account: part.account.clone(),
                event_type: attempt.event_type.clone(),
                payload: None,
                endpoint_updated_at: part.endpoint_updated_at,
                after_failing: false,
            })
            .collect();
        try_join_all(jobs.chunks(SEND_CHUNK).map(|chunk| queues.send_jobs(chunk))).await?;
        queued += jobs.len();
        match (page.next_cursor, page.items.last()) {
            (Some(_), Some(last_read)) => cursor = Some(last_read.id.clone()),
            _ => break,
        }
    }
    Ok(Progress {
        queued,
        continuing: false,
    })
}

/// The candidates whose message has no attempt within `earlier` (the earlier
/// parts' range): their last attempt is the one this part read.
async fn last_in_part<'a>(
    store: &Store,
    part: &Recover,
    earlier: (&AttemptId, &AttemptId),
    candidates: Vec<&'a AttemptOutcome>,
) -> Result<Vec<&'a AttemptOutcome>, StoreError> {
    let mut attempted = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(CHECKS_AT_ONCE) {
        let checks = chunk.iter().map(|attempt| {
            store.attempted_between(&attempt.message_id, &part.endpoint_id, earlier)
        });
        attempted.extend(try_join_all(checks).await?);
    }
    Ok(candidates
        .into_iter()
        .zip(attempted)
        .filter_map(|(attempt, attempted)| (!attempted).then_some(attempt))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(message: &MessageId, status: AttemptStatus) -> AttemptOutcome {
        AttemptOutcome {
            id: AttemptId::new(),
            message_id: message.clone(),
            status,
            event_type: "sample.created".parse().unwrap(),
        }
    }

    #[test]
    fn the_first_attempt_met_of_a_message_decides() {
        let (failed, delivered, retried, earlier) = (
            MessageId::new(),
            MessageId::new(),
            MessageId::new(),
            MessageId::new(),
        );
        // Newest first.
        let page = vec![
            outcome(&failed, AttemptStatus::Failed),
            outcome(&delivered, AttemptStatus::Succeeded),
            outcome(&failed, AttemptStatus::Failed),
            outcome(&retried, AttemptStatus::Failed),
            outcome(&delivered, AttemptStatus::Failed),
            outcome(&earlier, AttemptStatus::Failed),
        ];
        let mut met = HashSet::from([earlier.clone()]);
        let picked: Vec<&MessageId> = latest_failed(&page, &mut met)
            .into_iter()
            .map(|a| &a.message_id)
            .collect();
        assert_eq!(picked, [&failed, &retried]);
        assert_eq!(met.len(), 4);
        // The same messages on a later page are not picked again.
        assert!(latest_failed(&page, &mut met).is_empty());
        assert!(latest_failed(&[], &mut met).is_empty());
    }
}
