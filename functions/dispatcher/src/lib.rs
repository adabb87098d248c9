//! Delivers SQS batches of delivery jobs: each record parsed on its own, all of a
//! batch's records delivered concurrently, every attempt recorded, failures handed
//! back to SQS with a backoff through their visibility, and a job whose last attempt
//! failed, or that is no job at all, parked in the DLQ (ADR 6).

pub mod cache;
pub mod dns;
mod email;
mod isolation;
mod pending;
mod raise;
mod send;
mod task;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use rand::Rng;
use shared::config::Config;
use shared::ids::AttemptId;
use shared::isolation::{MovedJob, SlowEndpoints};
use shared::metrics::{self, Tally};
use shared::model::{Attempt, AttemptStatus, DeliveryJob};
use shared::queue::{Lane, Queues, max_visibility};
use shared::retry::{FailureKind, next_delay};
use shared::store::Store;
use shared::task::Task;
use shared::{USER_AGENT, operational, payload, queue};
use time::OffsetDateTime;

use cache::EndpointCache;
use dns::CheckedResolver;
use pending::Pending;
pub use send::{Exchange, KEPT_RESPONSE_BYTES, READ_RESPONSE_BYTES};

/// How long an idle keep-alive connection to an endpoint is kept for the next delivery.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// What the handler needs, built once per instance.
pub struct Deps {
    pub store: Store,
    pub queues: Queues,
    pub config: Config,
    pub http: reqwest::Client,
    pub endpoints: EndpointCache,
    /// The current invocation's metrics, written as EMF lines at its end.
    pub metrics: Tally,
    /// Endpoints this instance saw hang lately (ADR 7).
    pub slow: SlowEndpoints,
}

impl Deps {
    pub fn new(store: Store, queues: Queues, config: Config) -> Self {
        let http = http_client(&config);
        Self::with_http(store, queues, config, http)
    }

    /// With a client of the caller's, e.g. one over a test's resolver.
    pub fn with_http(store: Store, queues: Queues, config: Config, http: reqwest::Client) -> Self {
        Self {
            store,
            queues,
            config,
            http,
            endpoints: EndpointCache::new(cache::ENDPOINT_TTL),
            metrics: Tally::default(),
            slow: SlowEndpoints::default(),
        }
    }
}

/// The one HTTP client of an instance: keep-alive across invocations, no redirects
/// (a 3xx is a failure), the attempt timeout over the whole exchange, every
/// name resolved through the SSRF check, and no proxy from the environment (a
/// proxy would resolve the name itself, around the check).
pub fn http_client(config: &Config) -> reqwest::Client {
    http_client_with(
        config,
        CheckedResolver::system(config.allow_private_targets),
    )
}

pub fn http_client_with(config: &Config, resolver: CheckedResolver) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.request_timeout)
        .pool_idle_timeout(IDLE_CONNECTION)
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
        .tls_certs_only(public_roots())
        .build()
        .expect("the TLS backend initialises")
}

/// Mozilla's root certificates, compiled in. Endpoints are public HTTPS hosts, whose
/// certificates chain to these; reading the system's store instead (a bundle, and
/// on some systems hundreds of files besides) was most of the dispatcher's init.
fn public_roots() -> impl Iterator<Item = reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|root| reqwest::Certificate::from_der(root).expect("a root certificate parses"))
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    // About when the event source received the batch: SQS counts a visibility's 12 hours from there.
    let received = Instant::now();
    let pending = Pending::default();
    // Boxed: the send's future nested in the handler's would overflow the compiler's layout depth.
    let here = Box::pin(isolation::move_slow_jobs(deps, &event.records)).await;
    cache::read_ahead(deps, &here).await;
    let outcomes = join_all(here.into_iter().map(|record| {
        let pending = &pending;
        async move {
            (
                record.message_id.as_deref(),
                process(deps, pending, received, record).await,
            )
        }
    }))
    .await;
    // One event source mapping per queue: a batch's records share their lane.
    let lane = deps.queues.lane_of(
        event
            .records
            .first()
            .and_then(|r| r.event_source_arn.as_deref()),
    );
    pending.finish(deps, lane).await;
    let mut response = SqsBatchResponse::default();
    for (message_id, outcome) in outcomes {
        if let (Outcome::Retry, Some(id)) = (outcome, message_id) {
            response.add_failure(id);
        }
    }
    deps.metrics.flush();
    response
}

/// How long a job whose DLQ send failed waits before it is tried again.
const PARK_RETRY_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Delivered, dropped on purpose or parked in the DLQ: the event source deletes it.
    Done,
    /// Report the record failed: SQS offers it again when its visibility runs out.
    Retry,
}

/// The number of the attempt a record makes, after `earlier` attempts on another
/// queue (see [`shared::retry::attempt_number_after`]).
fn attempt_number(deps: &Deps, record: &SqsMessage, earlier: u32) -> u32 {
    let attribute = |name: &str| {
        record
            .attributes
            .get(name)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let receive_count = attribute("ApproximateReceiveCount")
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or(1);
    let now_ms =
        u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let since_first_receive = attribute("ApproximateFirstReceiveTimestamp")
        .map(|first_ms| Duration::from_millis(now_ms.saturating_sub(first_ms)));
    shared::retry::attempt_number_after(
        &deps.config.retry_schedule,
        earlier,
        receive_count,
        since_first_receive,
    )
}

async fn process(
    deps: &Deps,
    pending: &Pending,
    received: Instant,
    record: &SqsMessage,
) -> Outcome {
    let body = record.body.as_deref().unwrap_or_default();
    if let Some(Ok(work)) = Task::from_body(body) {
        return task::run(deps, pending, received, record, &work).await;
    }
    let lane = deps.queues.lane_of(record.event_source_arn.as_deref());
    // A job on the slow lane carries the attempts it made before (ADR 7).
    let parsed = match lane {
        Lane::Main => serde_json::from_str::<DeliveryJob>(body).map(|job| (job, 0)),
        Lane::Slow => serde_json::from_str::<MovedJob>(body).map(|m| (m.job, m.earlier_attempts)),
    };
    let (job, earlier) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            // Trying again cannot make it a job: it goes where a person will look, at once.
            tracing::warn!(sqs_message_id = ?record.message_id, %error, "malformed delivery job");
            return park(deps, pending, record, body, "malformed").await;
        }
    };
    let attempt = attempt_number(deps, record, earlier);
    let enqueued_ms = record
        .attributes
        .get("SentTimestamp")
        .and_then(|ms| ms.parse().ok());
    match deliver(deps, pending, received, lane, &job, attempt, enqueued_ms).await {
        Verdict::Done => Outcome::Done,
        Verdict::Move if isolation::move_job(deps, &job, attempt).await => Outcome::Done,
        // Not moved: back here soon; the early receive uses up no attempt.
        Verdict::Move => retry_after(pending, record, PARK_RETRY_DELAY),
        Verdict::Retry(delay) => retry_after(pending, record, delay),
        // Parked as it first came, so a replay starts its schedule afresh, saying
        // whether `failing` was raised, so that the replay's success says `recovered`.
        Verdict::Dead => {
            let after_failing = operational::failing_raised_by(&job, attempt);
            if earlier == 0 && after_failing == job.after_failing {
                park(deps, pending, record, body, "exhausted").await
            } else {
                let parked = DeliveryJob {
                    after_failing,
                    ..job
                };
                park(deps, pending, record, &parked.to_body(), "exhausted").await
            }
        }
    }
}

/// Moves a record's body to the DLQ, after which the event source deletes it. If the
/// send fails, the record comes back soon and is tried again: never lost, never dropped.
/// `reason` is the metric's: `exhausted` or `malformed`.
async fn park(
    deps: &Deps,
    pending: &Pending,
    record: &SqsMessage,
    body: &str,
    reason: &'static str,
) -> Outcome {
    match deps.queues.send_to_dlq(body).await {
        Ok(()) => {
            deps.metrics
                .add(metrics::DEAD_LETTERED, Some((metrics::REASON, reason)));
            tracing::info!(sqs_message_id = ?record.message_id, reason, "job moved to the DLQ");
            Outcome::Done
        }
        Err(error) => {
            tracing::error!(%error, sqs_message_id = ?record.message_id, "could not move a job to the DLQ");
            retry_after(pending, record, PARK_RETRY_DELAY)
        }
    }
}

/// Hides a record for `delay` (with the batch's others, at the end of the
/// invocation: see [`Pending`]) and reports it failed.
fn retry_after(pending: &Pending, record: &SqsMessage, delay: Duration) -> Outcome {
    if let Some(receipt) = record.receipt_handle.as_deref() {
        pending.delay(receipt, delay);
    }
    Outcome::Retry
}

/// What became of one delivery.
enum Verdict {
    /// Delivered, or nothing is left to try.
    Done,
    /// Failed: retry after this delay.
    Retry(Duration),
    /// The last attempt failed: to the DLQ.
    Dead,
    /// No answer within [`shared::isolation::SLOW_ATTEMPT`] on the delivery queue:
    /// to the slow lane, which makes this attempt (ADR 7).
    Move,
}

impl Verdict {
    fn after(delay: Option<Duration>) -> Self {
        delay.map_or(Self::Dead, Self::Retry)
    }
}

/// The delay after failed attempt `attempt`, or `None` after the last; never longer
/// than SQS lets the visibility run from the receive.
fn retry_delay(
    deps: &Deps,
    received: Instant,
    attempt: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    next_delay(
        &deps.config.retry_schedule,
        attempt,
        kind,
        retry_after,
        rand::rng().random::<f64>(),
    )
    .map(|delay| delay.min(max_visibility(received.elapsed())))
}

/// Whether an answer is a success: any 2xx, nothing else (a redirect is not followed).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Delivers `job` once and records the attempt.
async fn deliver(
    deps: &Deps,
    pending: &Pending,
    received: Instant,
    lane: Lane,
    job: &DeliveryJob,
    attempt_number: u32,
    enqueued_ms: Option<u64>,
) -> Verdict {
    let started = Instant::now();
    let tally = |outcome, failure_kind| {
        let now_ms = metrics::now_ms();
        deps.metrics.delivery(metrics::Delivery {
            outcome,
            failure_kind,
            lane: lane.as_str(),
            attempt_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            latency_ms: (outcome == metrics::Outcome::Succeeded)
                .then(|| enqueued_ms.map(|sent| now_ms.saturating_sub(sent)))
                .flatten(),
        });
    };
    let now = OffsetDateTime::now_utc();
    let record = |status, exchange: Exchange, next_delay: Option<Duration>| Attempt {
        id: AttemptId::new(),
        message_id: job.message_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        account: job.account.clone(),
        event_type: job.event_type.clone(),
        attempt: attempt_number,
        status,
        response_status: exchange.status,
        response_body: exchange.body,
        error: exchange.error,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        timestamp: now,
        // The job comes back that long after its visibility is set, in SQS's whole
        // seconds, once this attempt has ended.
        next_attempt_at: next_delay.map(|delay| {
            let visible_in = u64::try_from(queue::visibility_seconds(delay)).unwrap_or(0);
            now + started.elapsed() + Duration::from_secs(visible_in)
        }),
    };
    let drop_with = |why: &str| {
        let attempt = record(AttemptStatus::Failed, Exchange::error(why), None);
        tally(metrics::Outcome::Dropped, None);
        tracing::info!(message_id = %attempt.message_id, endpoint_id = %attempt.endpoint_id, why = attempt.error.as_deref(), "job dropped");
        pending.record(attempt);
        Verdict::Done
    };

    // A read that failed reached no endpoint, so no attempt is recorded; the job comes back.
    let unread = || {
        Verdict::after(retry_delay(
            deps,
            received,
            attempt_number,
            FailureKind::Other,
            None,
        ))
    };
    let found = match deps
        .endpoints
        .get(
            &job.account,
            &job.endpoint_id,
            job.endpoint_updated_at,
            || deps.store.get_endpoint(&job.account, &job.endpoint_id),
        )
        .await
    {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, endpoint_id = %job.endpoint_id, "could not read an endpoint");
            return unread();
        }
    };
    let Some(found) = found else {
        return drop_with("endpoint deleted");
    };
    let (endpoint, secrets) = found.as_ref();
    if endpoint.disabled {
        return drop_with("endpoint disabled");
    }
    let payload = match &job.payload {
        Some(inline) => inline.clone(),
        None => match deps.store.get_message(&job.account, &job.message_id).await {
            Ok(Some(message)) => message.payload,
            Ok(None) => return drop_with("message expired or deleted"),
            Err(error) => {
                tracing::error!(%error, message_id = %job.message_id, "could not read a message");
                return unread();
            }
        },
    };
    if endpoint.email.is_some() {
        return email::gather(deps, received, job, endpoint, &payload, attempt_number).await;
    }
    let body = match payload::for_format(endpoint.format, &payload) {
        Ok(body) => body,
        Err(error) => return drop_with(&error.to_string()),
    };

    let posted = Instant::now();
    let post = send::post(deps, &endpoint.url, secrets, job, now, body);
    let hand_over = lane == Lane::Main
        && deps.queues.has_slow_lane()
        && deps.config.request_timeout > shared::isolation::SLOW_ATTEMPT;
    let mut exchange = if hand_over {
        // The batch waits for no endpoint longer than this: a slower one is given up
        // here (its request dropped) and tried again on the slow lane.
        match tokio::time::timeout(shared::isolation::SLOW_ATTEMPT, post).await {
            Ok(exchange) => exchange,
            Err(_) => {
                isolation::note_attempt(deps, &job.endpoint_id, posted.elapsed(), true);
                return Verdict::Move;
            }
        }
    } else {
        post.await
    };
    isolation::note_attempt(deps, &job.endpoint_id, posted.elapsed(), exchange.timed_out);
    match exchange.status {
        Some(status) if is_success(status) => {
            tally(metrics::Outcome::Succeeded, None);
            pending.record(record(AttemptStatus::Succeeded, exchange, None));
            tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number, "delivered");
            raise::after_success(deps, job, endpoint, attempt_number).await;
            Verdict::Done
        }
        Some(410) => {
            // The receiver says it is gone for good: stop delivering there at all. Not
            // announced, it is not disabled either: the job comes back for another 410.
            let gone =
                shared::operational::Raise::disabled(endpoint, shared::operational::GONE, now);
            let disabled = raise::disable(deps, &gone).await;
            tally(
                metrics::Outcome::Failed,
                Some(metrics::failure_kind(Some(410), false)),
            );
            exchange.error = Some(
                if disabled {
                    "410 Gone: endpoint disabled"
                } else {
                    "410 Gone"
                }
                .into(),
            );
            let again = (!disabled).then_some(PARK_RETRY_DELAY);
            pending.record(record(AttemptStatus::Failed, exchange, again));
            tracing::info!(endpoint_id = %job.endpoint_id, disabled, "410 Gone");
            again.map_or(Verdict::Done, Verdict::Retry)
        }
        status => {
            let kind = match status {
                Some(status) => FailureKind::of_status(status),
                None if exchange.timed_out => FailureKind::Timeout,
                None => FailureKind::Other,
            };
            tally(
                metrics::Outcome::Failed,
                Some(metrics::failure_kind(exchange.status, exchange.timed_out)),
            );
            let delay = retry_delay(deps, received, attempt_number, kind, exchange.retry_after);
            tracing::info!(
                message_id = %job.message_id, endpoint_id = %job.endpoint_id, attempt = attempt_number,
                status = exchange.status, error = exchange.error.as_deref(),
                next_delay_ms = delay.map(|delay| delay.as_millis() as u64), "delivery failed"
            );
            let attempt = record(AttemptStatus::Failed, exchange, delay);
            let raised = raise::after_failure(deps, job, endpoint, &attempt, delay.is_none()).await;
            pending.record(attempt);
            if !raised {
                return Verdict::Retry(PARK_RETRY_DELAY);
            }
            Verdict::after(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_is_success() {
        for status in [200, 201, 202, 204, 299] {
            assert!(is_success(status), "{status}");
        }
        for status in [
            100, 199, 300, 301, 302, 304, 307, 308, 400, 404, 410, 429, 500, 503,
        ] {
            assert!(!is_success(status), "{status}");
        }
    }

    #[test]
    fn the_https_client_trusts_the_public_roots() {
        // With no roots every HTTPS delivery would fail its handshake.
        assert!(public_roots().count() > 100);
    }
}
