//! Email endpoints' emails that have come due: reactive windows that ended and
//! digests whose time came (or that the API asked for). Each is claimed before
//! it is sent and marked sent after, so a repeated run sends nothing twice; a
//! failed send is registered again for its next attempt on the retry schedule,
//! and each email sent or failed is an attempt in the attempt log, raising the
//! operational events a delivery's attempt would.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use shared::email::EmailSettings;
use shared::email::render::{DigestSummary, Email, EmailEvent, Sender, digest_email, window_email};
use shared::ids::{AttemptId, MessageId};
use shared::model::{Attempt, AttemptStatus, DeliveryJob, Endpoint};
use shared::operational;
use shared::retry::{FailureKind, next_delay, with_backoff};
use shared::store::{DueEmail, EmailClaim, EmailEnd, EmailWork, StoreError};
use time::OffsetDateTime;

use crate::Deps;

/// Due emails read per Query.
const PAGE: usize = 100;
/// Emails sent at once.
const CONCURRENCY: usize = 4;
/// How long a claim keeps other runs off an email: longer than a run.
const LEASE: Duration = Duration::from_secs(5 * 60);
/// A window's email lists this many events and counts the rest.
const MAX_LISTED: usize = 100;
/// Tries of a bookkeeping write, and the pause after the first failure (doubling).
const WRITE_TRIES: u32 = 3;
const WRITE_PAUSE: Duration = Duration::from_millis(100);

/// What a run did with the emails due.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub sent: u32,
    pub failed: u32,
    /// Nothing to send: an empty window, a deleted endpoint, a changed schedule.
    pub dropped: u32,
    /// Claimed by another run.
    pub held: u32,
    pub errors: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Failed,
    Dropped,
    Held,
}

/// Sends what is due, page by page, until nothing new is due or `deadline` passes.
pub async fn run(deps: &Deps, deadline: Instant) -> Report {
    let mut report = Report::default();
    // This run's name on its claims.
    let token = ulid::Ulid::new().to_string();
    let mut seen = HashSet::new();
    while Instant::now() < deadline {
        let due = match deps.store.due_emails(OffsetDateTime::now_utc(), PAGE).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "could not read the emails due");
                report.errors += 1;
                break;
            }
        };
        let full = due.len() == PAGE;
        // What this run already handled (held by another, or failed to book) waits for the next run.
        let new: Vec<DueEmail> = due
            .into_iter()
            .filter(|d| seen.insert(format!("{d:?}")))
            .collect();
        if new.is_empty() {
            break;
        }
        let outcomes: Vec<Result<Outcome, StoreError>> = futures::stream::iter(&new)
            .map(|due| send_due(deps, &token, due))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(Outcome::Sent) => report.sent += 1,
                Ok(Outcome::Failed) => report.failed += 1,
                Ok(Outcome::Dropped) => report.dropped += 1,
                Ok(Outcome::Held) => report.held += 1,
                Err(error) => {
                    tracing::error!(%error, "an email due could not be handled; the next run tries again");
                    report.errors += 1;
                }
            }
        }
        if !full {
            break;
        }
    }
    report
}

/// Handles one due email. An error leaves it due, for the next run.
async fn send_due(deps: &Deps, token: &str, due: &DueEmail) -> Result<Outcome, StoreError> {
    let store = &deps.store;
    let now = OffsetDateTime::now_utc();
    let endpoint = store
        .get_endpoint(&due.account, &due.endpoint_id)
        .await?
        .map(|(endpoint, _)| endpoint);
    let Some((endpoint, settings)) = endpoint.and_then(|e| e.email.clone().map(|s| (e, s))) else {
        // Deleted: nothing left to send to.
        store.delete_due_email(due).await?;
        return Ok(Outcome::Dropped);
    };
    let wanted = match &due.work {
        EmailWork::Window { .. } => settings.reactive,
        // A schedule changed since registered its own next digest.
        EmailWork::Digest { until } => settings
            .digest
            .as_ref()
            .is_some_and(|s| s.is_moment(*until)),
        EmailWork::DigestNow { .. } => true,
    };
    if !wanted || endpoint.disabled {
        if wanted {
            schedule_next_digest(deps, due, &settings, now).await?;
        }
        store.delete_due_email(due).await?;
        return Ok(Outcome::Dropped);
    }
    match store.claim_email(due, token, LEASE, now).await? {
        EmailClaim::Won => {}
        EmailClaim::Held => return Ok(Outcome::Held),
        EmailClaim::Done => {
            // Sent by an earlier run whose bookkeeping did not finish.
            schedule_next_digest(deps, due, &settings, now).await?;
            store.delete_due_email(due).await?;
            return Ok(Outcome::Dropped);
        }
    }
    let Some((email, first)) = compose(deps, &endpoint, &settings, due).await? else {
        book(|| store.end_email(due, token, EmailEnd::Sent)).await;
        store.delete_due_email(due).await?;
        return Ok(Outcome::Dropped);
    };

    let started = Instant::now();
    let sent = match &deps.mailer {
        Some(mailer) => mailer
            .send(&settings.emails, &email)
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!("{} is not set", shared::config::EMAIL_FROM)),
    };
    let delay = match &sent {
        Ok(_) => None,
        Err(_) => next_delay(
            &deps.config.retry_schedule,
            due.attempt,
            FailureKind::Other,
            None,
            rand::rng().random::<f64>(),
        ),
    };
    if let Some(first) = &first {
        let attempt = attempt(due, &endpoint, first, &sent, started, now, delay);
        book(|| store.put_attempt(&attempt)).await;
        raise_about(deps, &attempt, delay.is_none()).await;
    }
    match sent {
        Ok(ses_id) => {
            tracing::info!(endpoint_id = %due.endpoint_id, %ses_id, subject = %email.subject, "email sent");
            book(|| store.end_email(due, token, EmailEnd::Sent)).await;
            schedule_next_digest(deps, due, &settings, now).await?;
            store.delete_due_email(due).await?;
            Ok(Outcome::Sent)
        }
        Err(error) => {
            tracing::warn!(endpoint_id = %due.endpoint_id, attempt = due.attempt, %error, next_delay_ms = delay.map(|delay| delay.as_millis() as u64), "email failed");
            match delay {
                Some(delay) => {
                    let next = DueEmail {
                        due_at: now + delay,
                        attempt: due.attempt + 1,
                        ..due.clone()
                    };
                    book(|| store.release_email(due, token)).await;
                    store.reschedule_due_email(due, &next).await?;
                }
                None => {
                    book(|| store.end_email(due, token, EmailEnd::GivenUp)).await;
                    schedule_next_digest(deps, due, &settings, now).await?;
                    store.delete_due_email(due).await?;
                }
            }
            Ok(Outcome::Failed)
        }
    }
}

/// Writes a claim's end or an attempt, retrying a little; one still not written
/// is logged: the email's outcome stands, and a lease that ends lets a later run
/// see to the rest.
async fn book<F, Fut>(write: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    if let Err(error) = with_backoff(WRITE_TRIES, WRITE_PAUSE, write).await {
        tracing::error!(%error, "could not record an email's outcome");
    }
}

/// After a scheduled digest, the next one: its next moment from now on.
async fn schedule_next_digest(
    deps: &Deps,
    due: &DueEmail,
    settings: &EmailSettings,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let (EmailWork::Digest { until }, Some(schedule)) = (&due.work, &settings.digest) else {
        return Ok(());
    };
    let next = DueEmail::digest(
        &due.account,
        &due.endpoint_id,
        schedule.next_after(now.max(*until)),
    );
    deps.store.put_due_email(&next).await
}

/// The email `due` sends and the first event it carries; `None` for a window
/// with no events (a digest is sent even when empty).
async fn compose(
    deps: &Deps,
    endpoint: &Endpoint,
    settings: &EmailSettings,
    due: &DueEmail,
) -> Result<Option<(Email, Option<EmailEvent>)>, StoreError> {
    let sender = Sender {
        account: &endpoint.account,
        endpoint_id: &endpoint.id,
        description: &endpoint.description,
    };
    let events = |since, until| async move {
        let mut listed = Vec::new();
        let mut summary = DigestSummary::default();
        let mut more = 0;
        deps.store
            .email_events(&endpoint.account, &endpoint.id, since, until, |event| {
                summary.add(event.clone());
                if listed.len() < MAX_LISTED {
                    listed.push(event);
                } else {
                    more += 1;
                }
            })
            .await?;
        Ok::<_, StoreError>((listed, more, summary))
    };
    let (email, first) = match &due.work {
        EmailWork::Window { start } => {
            // The one window that began at `start`, whatever its length was.
            let (listed, more, _) = events(*start, *start + time::Duration::SECOND).await?;
            if listed.is_empty() {
                return Ok(None);
            }
            (
                window_email(&sender, &listed, more),
                listed.first().cloned(),
            )
        }
        EmailWork::Digest { until } => {
            let schedule = settings.digest.as_ref().expect("checked before the claim");
            let since = schedule.previous_before(*until);
            let (listed, _, summary) = events(since, *until).await?;
            (
                digest_email(&sender, &summary, since, *until),
                listed.first().cloned(),
            )
        }
        EmailWork::DigestNow { since, until, .. } => {
            let (listed, _, summary) = events(*since, *until).await?;
            (
                digest_email(&sender, &summary, *since, *until),
                listed.first().cloned(),
            )
        }
    };
    Ok(Some((email, first)))
}

/// Raises what an email's `attempt` raises, as a delivery's would: `failing` at its
/// 4th failure, `exhausted` when it is given up (`last`), `recovered` on a success
/// after `failing`. One that cannot be raised is logged; the email's outcome stands.
async fn raise_about(deps: &Deps, attempt: &Attempt, last: bool) {
    let job = DeliveryJob {
        message_id: attempt.message_id.clone(),
        endpoint_id: attempt.endpoint_id.clone(),
        account: attempt.account.clone(),
        event_type: attempt.event_type.clone(),
        payload: None,
        endpoint_updated_at: None,
        after_failing: false,
    };
    let now = OffsetDateTime::now_utc();
    let raises = match attempt.status {
        AttemptStatus::Failed => operational::raises_after_failure(&job, attempt, last, now),
        AttemptStatus::Succeeded => operational::raise_after_success(&job, attempt.attempt, now)
            .into_iter()
            .collect(),
    };
    for raise in &raises {
        shared::raise::enqueue(&deps.queues, raise).await;
    }
}

/// The attempt log's record of one email, under the first event it carries.
fn attempt(
    due: &DueEmail,
    endpoint: &Endpoint,
    first: &EmailEvent,
    sent: &Result<String, String>,
    started: Instant,
    now: OffsetDateTime,
    next_delay: Option<Duration>,
) -> Attempt {
    let message_id: MessageId = first.message_id.clone();
    let (status, response_body, error) = match sent {
        Ok(ses_id) => (
            AttemptStatus::Succeeded,
            format!(
                "sent to {} (SES message {ses_id})",
                endpoint_addresses(endpoint)
            ),
            None,
        ),
        Err(error) => (AttemptStatus::Failed, String::new(), Some(error.clone())),
    };
    Attempt {
        id: AttemptId::new(),
        message_id,
        endpoint_id: endpoint.id.clone(),
        account: endpoint.account.clone(),
        event_type: first
            .event_type
            .parse()
            .unwrap_or_else(|_| "email.sent".parse().expect("a valid name")),
        attempt: due.attempt,
        status,
        response_status: None,
        response_body,
        error,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        timestamp: now,
        next_attempt_at: next_delay.map(|d| now + d),
    }
}

fn endpoint_addresses(endpoint: &Endpoint) -> String {
    endpoint
        .email
        .as_ref()
        .map(|e| e.emails.join(", "))
        .unwrap_or_default()
}
