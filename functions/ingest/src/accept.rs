//! Accepting events: each stored once (under its idempotency key, if any), then
//! fanned out — inline with SendMessageBatch, or through a fan-out task the
//! dispatcher completes (the outbox), so every 202 ends in deliveries.
//!
//! A batch goes through the same steps as one event, sharing the calls it can:
//! one endpoint Query per account, and SendMessageBatch calls filled across events.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use shared::account::Account;
use shared::event::NewEvent;
use shared::http::ApiError;
use shared::ids::MessageId;
use shared::model::{DeliveryJob, Message, Recipient};
use shared::store::{AccountEndpoints, Claim, Inserted, StoreError};
use shared::task::FanOut;
use time::OffsetDateTime;

use crate::Deps;

/// A fan-out to more endpoints than this is handed to fan-out tasks at once, so
/// the platform is answered after a few calls, however many endpoints subscribe.
pub const LARGE_FAN_OUT: usize = 50;
/// The delivery jobs one request enqueues itself at most; a batch's events past
/// them are handed to fan-out tasks too, so a request's SQS calls stay few however
/// its events and their endpoints multiply (100 events × 50 endpoints would
/// otherwise be 500 calls in a row, longer than the gateway waits).
pub const INLINE_JOBS: usize = 2 * LARGE_FAN_OUT;
/// Events of a batch stored at the same time.
const CONCURRENT_WRITES: usize = 16;
/// How long a request waits for the first request with its key to finish before
/// answering 409, and how often it looks.
const IN_PROGRESS_WAIT: Duration = Duration::from_secs(2);
const IN_PROGRESS_POLL: Duration = Duration::from_millis(200);
/// The longest `Retry-After` of a 409: a first request that died is taken over
/// when its lease ends, one that lives ends sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Fan-out tasks are sent this many times in all, pausing [`TASK_PAUSE`] and then
/// twice as long. The queue already retries entries SQS refused; a call that failed
/// outright it leaves to the caller, since its effect is unknown. For a task a
/// repeat is harmless (jobs under the same message id), while giving up leaves an
/// event some of whose jobs are queued half delivered.
const TASK_TRIES: u32 = 3;
const TASK_PAUSE: Duration = Duration::from_millis(50);

/// The 202 body of one accepted event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: MessageId,
    /// Delivery jobs enqueued, or handed to fan-out tasks.
    pub endpoints: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// One event whose message is stored and whose fan-out is ours to do.
struct Pending {
    /// Its place among the events given.
    index: usize,
    message: Message,
    key: Option<String>,
    recipients: Vec<Recipient>,
    /// Whether any job or task of it may be on the queue.
    enqueued_any: bool,
    failed: bool,
}

fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(%error, "{context}");
    ApiError::internal()
}

/// Accepts `events`; one answer each, in order.
pub async fn accept(deps: &Deps, events: Vec<NewEvent>) -> Vec<Result<Accepted, ApiError>> {
    let now = OffsetDateTime::now_utc();
    let mut answers: Vec<Option<Result<Accepted, ApiError>>> = vec![None; events.len()];
    let repeats = repeated_keys(&events);
    let mut accounts: Vec<Account> = events.iter().map(|e| e.account.clone()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let firsts = events
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !repeats.iter().any(|r| r.index == *index));
    let stores = futures::stream::iter(firsts)
        .map(|(index, event)| async move { (index, store(deps, event, now).await) })
        .buffered(CONCURRENT_WRITES)
        .collect::<Vec<(usize, Result<Stored, ApiError>)>>();
    // The endpoints are read while the messages are written: one round trip less
    // before the answer. A read for events that turn out duplicates is wasted, but
    // it is only a read.
    let (stored, endpoints) = futures::join!(stores, read_endpoints(deps, accounts));
    let mut pending = Vec::new();
    for (index, outcome) in stored {
        match outcome {
            Ok(Stored::Ours(message, key)) => pending.push(Pending {
                index,
                message,
                key,
                recipients: Vec::new(),
                enqueued_any: false,
                failed: false,
            }),
            Ok(Stored::Duplicate(id)) => {
                tracing::info!(message_id = %id, "duplicate event; nothing enqueued");
                answers[index] = Some(Ok(Accepted {
                    id,
                    endpoints: 0,
                    duplicate: true,
                }));
            }
            Err(error) => answers[index] = Some(Err(error)),
        }
    }

    assign_endpoints(&endpoints, &mut pending);
    let sizes: Vec<usize> = pending
        .iter()
        .filter(|p| !p.failed)
        .map(|p| p.recipients.len())
        .collect();
    shared::metrics::emit(&shared::metrics::fan_out(shared::metrics::now_ms(), &sizes));
    fan_out(deps, &mut pending).await;

    let finished: Vec<(usize, Result<Accepted, ApiError>)> = futures::stream::iter(pending)
        .map(|event| async move { (event.index, finish(deps, event).await) })
        .buffered(CONCURRENT_WRITES)
        .collect()
        .await;
    for (index, answer) in finished {
        answers[index] = Some(answer);
    }
    for repeat in repeats {
        answers[repeat.index] = Some(if repeat.same_event {
            answers[repeat.first]
                .clone()
                .expect("the first is answered")
                .map(|first| Accepted {
                    endpoints: 0,
                    duplicate: true,
                    ..first
                })
        } else {
            Err(ApiError::idempotency_key_reused())
        });
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every event is answered"))
        .collect()
}

/// A later event of a batch with the idempotency key (and account) of an earlier one:
/// answered as if sent after it.
struct Repeat {
    index: usize,
    first: usize,
    same_event: bool,
}

fn repeated_keys(events: &[NewEvent]) -> Vec<Repeat> {
    let mut firsts: HashMap<(&str, &str), usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let Some(key) = event.idempotency_key.as_deref() else {
            continue;
        };
        match firsts.get(&(event.account.as_str(), key)) {
            Some(&first) => repeats.push(Repeat {
                index,
                first,
                same_event: events[first].fingerprint() == event.fingerprint(),
            }),
            None => {
                firsts.insert((event.account.as_str(), key), index);
            }
        }
    }
    repeats
}

/// What storing an event came to.
enum Stored {
    /// The message is stored and this request fans it out: a new one, or one whose
    /// first request died before its fan-out was done.
    Ours(Message, Option<String>),
    Duplicate(MessageId),
}

async fn store(deps: &Deps, event: NewEvent, now: OffsetDateTime) -> Result<Stored, ApiError> {
    let key = event.idempotency_key.clone();
    // Only a key's claim keeps the event's fingerprint, to tell a repeat from a reuse.
    let fingerprint = key.as_ref().map(|_| event.fingerprint());
    let claim = key
        .as_deref()
        .zip(fingerprint.as_deref())
        .map(|(key, fingerprint)| Claim { key, fingerprint });
    let message = event.into_message(&deps.config.api_version, now);
    let store_error = |e: StoreError| internal("could not store a message", &e);
    let mut inserted = deps
        .store
        .insert_message(&message, claim)
        .await
        .map_err(store_error)?;
    // The key's first request is still at work: wait a moment for it to finish.
    let deadline = tokio::time::Instant::now() + IN_PROGRESS_WAIT;
    while let (Inserted::InProgress(_), Some(claim)) = (&inserted, claim) {
        if tokio::time::Instant::now() + IN_PROGRESS_POLL > deadline {
            break;
        }
        tokio::time::sleep(IN_PROGRESS_POLL).await;
        inserted = deps
            .store
            .recheck_claim(&message.account, claim, &message.id)
            .await
            .map_err(store_error)?;
    }
    match inserted {
        Inserted::New => Ok(Stored::Ours(message, key)),
        Inserted::Duplicate(original) => Ok(Stored::Duplicate(original)),
        Inserted::Reused => Err(ApiError::idempotency_key_reused()),
        Inserted::InProgress(lease_left) => {
            Err(ApiError::in_progress(lease_left.min(MAX_RETRY_AFTER)))
        }
        // An earlier request with this key stored its message but did not finish:
        // this one fans it out under the message's own id.
        Inserted::Abandoned(original) => {
            let message = deps
                .store
                .get_message(&message.account, &original)
                .await
                .map_err(|e| internal("could not read a message", &e))?
                .ok_or_else(|| internal("an idempotency key names a missing message", &original))?;
            Ok(Stored::Ours(message, key))
        }
    }
}

/// The endpoints and settings of each account: one Query each.
async fn read_endpoints(
    deps: &Deps,
    accounts: Vec<Account>,
) -> HashMap<Account, Result<AccountEndpoints, StoreError>> {
    futures::future::join_all(accounts.into_iter().map(|account| async move {
        let endpoints = deps.store.account_endpoints(&account).await;
        (account, endpoints)
    }))
    .await
    .into_iter()
    .collect()
}

/// The subscribed endpoints of each pending event; an account whose webhooks are
/// disabled has none.
fn assign_endpoints(
    found: &HashMap<Account, Result<AccountEndpoints, StoreError>>,
    pending: &mut [Pending],
) {
    for event in pending {
        match &found[&event.message.account] {
            Ok(account) if !account.settings.webhooks_enabled => {
                tracing::info!(message_id = %event.message.id, "the account's webhooks are disabled; nothing to enqueue");
            }
            Ok(account) => {
                event.recipients = account
                    .endpoints
                    .iter()
                    .filter(|e| e.subscribes(&event.message.event_type, &event.message.dataset))
                    .map(Recipient::from)
                    .collect();
            }
            Err(error) => {
                tracing::error!(%error, message_id = %event.message.id, "could not read the endpoints");
                event.failed = true;
            }
        }
    }
}

/// Enqueues every pending event's jobs: small fan-outs inline, filling
/// SendMessageBatch calls across events, up to [`INLINE_JOBS`]; large ones, those
/// past that budget, and whatever SQS did not take, as fan-out tasks. An event
/// whose tasks could not be enqueued either is `failed`.
async fn fan_out(deps: &Deps, pending: &mut [Pending]) {
    let mut jobs = Vec::new();
    // (event, endpoint) of each job.
    let mut owners = Vec::new();
    let mut handed_over: Vec<Vec<Recipient>> = vec![Vec::new(); pending.len()];
    for (position, event) in pending.iter().enumerate() {
        if event.failed {
            continue;
        }
        let count = event.recipients.len();
        if count > LARGE_FAN_OUT || jobs.len() + count > INLINE_JOBS {
            handed_over[position] = event.recipients.clone();
            continue;
        }
        for job in DeliveryJob::for_endpoints(&event.message, event.recipients.clone()) {
            owners.push(position);
            jobs.push(job);
        }
    }
    let unsent = match deps.queues.send_jobs(&jobs).await {
        Ok(()) => Vec::new(),
        Err(error) => {
            tracing::warn!(%error, "fan-out stopped part-way; the rest goes to fan-out tasks");
            error.unsent(jobs.len())
        }
    };
    for (index, &position) in owners.iter().enumerate() {
        pending[position].enqueued_any |= unsent.binary_search(&index).is_err();
    }
    for index in unsent {
        let job = &jobs[index];
        handed_over[owners[index]].push(Recipient {
            id: job.endpoint_id.clone(),
            updated_at: job.endpoint_updated_at,
        });
    }

    let mut tasks = Vec::new();
    let mut task_owners = Vec::new();
    for (position, recipients) in handed_over.iter().enumerate() {
        let message = &pending[position].message;
        for task in FanOut::split(&message.id, &message.account, recipients) {
            task_owners.push(position);
            tasks.push(task.to_body());
        }
    }
    if tasks.is_empty() {
        return;
    }
    let unsent = send_tasks(deps, &tasks).await;
    for (index, &position) in task_owners.iter().enumerate() {
        if unsent.binary_search(&index).is_ok() {
            pending[position].failed = true;
        } else {
            pending[position].enqueued_any = true;
        }
    }
}

/// Sends `tasks`, sending again those that did not go; the indexes of those that never went.
async fn send_tasks(deps: &Deps, tasks: &[String]) -> Vec<usize> {
    let mut unsent: Vec<usize> = (0..tasks.len()).collect();
    let mut pause = TASK_PAUSE;
    for tried in 1..=TASK_TRIES {
        let bodies: Vec<String> = unsent.iter().map(|&i| tasks[i].clone()).collect();
        match deps.queues.send_bodies(&bodies).await {
            Ok(()) => return Vec::new(),
            Err(error) => {
                tracing::warn!(%error, tried, "could not enqueue fan-out tasks");
                unsent = error
                    .unsent(bodies.len())
                    .into_iter()
                    .map(|k| unsent[k])
                    .collect();
            }
        }
        if tried < TASK_TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!(tasks = unsent.len(), "gave up enqueueing fan-out tasks");
    unsent
}

/// The answer for one event: after a complete fan-out, its key marked done and
/// 202; otherwise 500, with the key let go (the platform's retry finishes the same
/// message) or, without a key, the message taken back if nothing of it was enqueued.
async fn finish(deps: &Deps, event: Pending) -> Result<Accepted, ApiError> {
    let Pending { message, key, .. } = &event;
    if event.failed {
        let undo = if key.is_some() || !event.enqueued_any {
            deps.store.abandon_message(message, key.as_deref()).await
        } else {
            Ok(())
        };
        if let Err(error) = undo {
            tracing::error!(%error, message_id = %message.id, "could not let go of a message");
        }
        return Err(internal(
            "could not enqueue an event's delivery jobs",
            &message.id,
        ));
    }
    if let Err(error) = deps.store.complete_message(message, key.as_deref()).await {
        // The jobs are on the queue; a retry with the key would at worst enqueue them again.
        tracing::warn!(%error, message_id = %message.id, "could not mark a fan-out done");
    }
    tracing::info!(message_id = %message.id, event_type = %message.event_type, endpoints = event.recipients.len(), "event accepted");
    Ok(Accepted {
        id: message.id.clone(),
        endpoints: event.recipients.len(),
        duplicate: false,
    })
}
