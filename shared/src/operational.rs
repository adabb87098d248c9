//! hookline's own events (CONTRACT: Operational events): when each is raised, what
//! it carries, who receives it, and the message id it gets, derived from what
//! raised it so that raising it again writes the same message.
//!
//! A raise travels as a [`crate::task::Task::Raise`] on the delivery queue: the
//! dispatcher stores the message under that id and enqueues its jobs, and a raise
//! that stops part-way is done again, under the same id.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::account::Account;
use crate::catalog;
use crate::event_type::EventType;
use crate::ids::{EndpointId, MessageId};
use crate::model::{Attempt, AttemptStatus, DeliveryJob, Endpoint, Message};
use crate::{payload, timefmt};

pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
pub const ATTEMPT_FAILING: &str = "message.attempt.failing";
pub const ATTEMPT_EXHAUSTED: &str = "message.attempt.exhausted";
pub const ATTEMPT_RECOVERED: &str = "message.attempt.recovered";

/// The failed attempt of a message at an endpoint that raises `failing`.
pub const FAILING_AT: u32 = 4;

/// The reason of an endpoint disabled because it answered 410.
pub const GONE: &str = "the endpoint answered 410 Gone";

/// The reason of an endpoint disabled after failing without a success since `since`.
fn failing_too_long_reason(since: OffsetDateTime, after: Duration) -> String {
    format!(
        "failures without a success since {}, longer than {}",
        timefmt::format(since),
        duration_text(after)
    )
}

/// `after` in the largest whole unit the settings use: `5d`, `12h`, `90s`.
fn duration_text(after: Duration) -> String {
    let secs = after.as_secs();
    match secs {
        0 => format!("{}ms", after.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Which of `failing` and `exhausted` a failed attempt raises. Deliveries of
/// operational events raise none, so two failing subscribers cannot report on each
/// other's reports without end.
fn after_failure(event_type: &str, attempt: u32, last: bool) -> Vec<&'static str> {
    if catalog::is_operational(event_type) {
        return Vec::new();
    }
    let failing = (attempt == FAILING_AT).then_some(ATTEMPT_FAILING);
    let exhausted = last.then_some(ATTEMPT_EXHAUSTED);
    failing.into_iter().chain(exhausted).collect()
}

/// The raises a failed `attempt` of `job` makes (`last`: no attempt follows it):
/// `failing` at the [`FAILING_AT`]th, `exhausted` at the last.
pub fn raises_after_failure(
    job: &DeliveryJob,
    attempt: &Attempt,
    last: bool,
    now: OffsetDateTime,
) -> Vec<Raise> {
    after_failure(job.event_type.as_str(), attempt.attempt, last)
        .into_iter()
        .map(|event_type| match event_type {
            ATTEMPT_FAILING => Raise::failing(job, attempt, now),
            _ => Raise::exhausted(job, attempt.attempt, now),
        })
        .collect()
}

/// The raise a successful `attempt` of `job` makes: `recovered`, where `failing` was
/// raised before it, by its earlier attempts or before a replay of it.
pub fn raise_after_success(job: &DeliveryJob, attempt: u32, now: OffsetDateTime) -> Option<Raise> {
    failing_raised_by(job, attempt.saturating_sub(1)).then(|| Raise::recovered(job, attempt, now))
}

/// Whether `failing` has been raised for `job` by its failed attempt number
/// `attempt`, or before a replay of it: what a replay carries as
/// [`DeliveryJob::after_failing`].
pub fn failing_raised_by(job: &DeliveryJob, attempt: u32) -> bool {
    !catalog::is_operational(job.event_type.as_str())
        && (job.after_failing || attempt >= FAILING_AT)
}

/// Whether `failing` stands for a message at endpoint `endpoint`, raised and not
/// yet answered by `recovered`: among the message's `attempts` (oldest first), a
/// failure at or past [`FAILING_AT`] after its last success there. What a replay of
/// the message carries as [`DeliveryJob::after_failing`].
pub fn failing_stands(attempts: &[Attempt], endpoint: &EndpointId) -> bool {
    attempts
        .iter()
        .rev()
        .filter(|a| a.endpoint_id == *endpoint)
        .take_while(|a| a.status == AttemptStatus::Failed)
        .any(|a| a.attempt >= FAILING_AT && !catalog::is_operational(a.event_type.as_str()))
}

/// Whether a failure at `now` disables an endpoint failing since `failing_since`.
pub fn disable_due(
    failing_since: Option<OffsetDateTime>,
    now: OffsetDateTime,
    after: Duration,
) -> bool {
    failing_since.is_some_and(|since| now - since >= after)
}

/// Whether `endpoint` receives operational event `event_type` about endpoint
/// `about`: only when it lists the type, never about itself; datasets do not apply.
pub fn receives(endpoint: &Endpoint, event_type: &EventType, about: &EndpointId) -> bool {
    !endpoint.disabled && endpoint.id != *about && endpoint.event_types.contains(event_type)
}

/// An endpoint to disable before `endpoint.disabled` is raised about it: only if it
/// was not changed since the raise was decided (its owner may have re-enabled it)
/// and, for a run of failures gone on too long, that run is still on (a success
/// elsewhere may have ended it: ending a run does not change `updated_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disable {
    pub reason: String,
    #[serde(with = "crate::timefmt")]
    pub seen_updated_at: OffsetDateTime,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub seen_failing_since: Option<OffsetDateTime>,
}

/// One operational event to raise, in `account`, about endpoint `endpoint_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Raise {
    pub message_id: MessageId,
    pub account: Account,
    pub event_type: EventType,
    pub endpoint_id: EndpointId,
    pub object: Map<String, Value>,
    pub text: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<Disable>,
}

/// The id of the message raised for `parts`: the same parts, the same id. Its time
/// is `at_ms`, so it sorts about where what raised it does.
fn derived_id(at_ms: u64, parts: &[&str]) -> MessageId {
    let digest = Sha256::digest(parts.join("\n"));
    let random = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
    MessageId::from_ulid(Ulid::from_parts(at_ms, random))
}

/// The text of a test event sent to endpoint `id`.
pub fn test_text(id: &EndpointId) -> String {
    format!("Test event from hookline to endpoint {id}.")
}

/// The time of a message id, in ms since the epoch; 0 for one that is no ULID.
fn id_time_ms(id: &MessageId) -> u64 {
    Ulid::from_string(&id.as_str()[MessageId::PREFIX.len()..]).map_or(0, |u| u.timestamp_ms())
}

fn unix_ms(time: OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built from json!({{…}})"),
    }
}

impl Raise {
    fn about_message(
        job: &DeliveryJob,
        event_type: &'static str,
        object: Map<String, Value>,
        text: String,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            message_id: derived_id(
                id_time_ms(&job.message_id),
                &[
                    event_type,
                    job.message_id.as_str(),
                    job.endpoint_id.as_str(),
                ],
            ),
            account: job.account.clone(),
            event_type: EventType::parse(event_type).expect("an operational type"),
            endpoint_id: job.endpoint_id.clone(),
            object,
            text,
            created_at: timefmt::format(now),
            disable: None,
        }
    }

    /// `message.attempt.failing` after `attempt` failed.
    pub fn failing(job: &DeliveryJob, attempt: &Attempt, now: OffsetDateTime) -> Self {
        let why = match (&attempt.error, attempt.response_status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("status {status}"),
            (None, None) => "no answer".into(),
        };
        let object = object(json!({
            "endpoint_id": job.endpoint_id, "message_id": job.message_id,
            "attempt": attempt.attempt, "error": attempt.error,
            "response_status": attempt.response_status,
        }));
        let text = format!(
            "Message {} is failing at endpoint {}: attempt {} failed ({why}).",
            job.message_id, job.endpoint_id, attempt.attempt
        );
        Self::about_message(job, ATTEMPT_FAILING, object, text, now)
    }

    /// `message.attempt.exhausted` after the last of `attempts` failed.
    pub fn exhausted(job: &DeliveryJob, attempts: u32, now: OffsetDateTime) -> Self {
        let object = object(json!({
            "endpoint_id": job.endpoint_id, "message_id": job.message_id, "attempts": attempts,
        }));
        let text = format!(
            "Message {} was not delivered to endpoint {} in {attempts} attempts; its job went to the dead-letter queue.",
            job.message_id, job.endpoint_id
        );
        Self::about_message(job, ATTEMPT_EXHAUSTED, object, text, now)
    }

    /// `message.attempt.recovered` after `attempt` succeeded.
    pub fn recovered(job: &DeliveryJob, attempt: u32, now: OffsetDateTime) -> Self {
        let object = object(json!({
            "endpoint_id": job.endpoint_id, "message_id": job.message_id, "attempt": attempt,
        }));
        let text = format!(
            "Message {} reached endpoint {} at attempt {attempt}, after failing.",
            job.message_id, job.endpoint_id
        );
        Self::about_message(job, ATTEMPT_RECOVERED, object, text, now)
    }

    /// `endpoint.disabled` for `reason`, disabling `endpoint` as it was read first.
    /// Every raise decided on the same version of the endpoint is one message.
    pub fn disabled(endpoint: &Endpoint, reason: &str, now: OffsetDateTime) -> Self {
        Self::disabling(endpoint, reason, None, now)
    }

    /// `endpoint.disabled` for the run of failures that began at `since` and went on
    /// longer than `after`: it disables nothing if that run has ended.
    pub fn failing_too_long(
        endpoint: &Endpoint,
        since: OffsetDateTime,
        after: Duration,
        now: OffsetDateTime,
    ) -> Self {
        Self::disabling(
            endpoint,
            &failing_too_long_reason(since, after),
            Some(since),
            now,
        )
    }

    fn disabling(
        endpoint: &Endpoint,
        reason: &str,
        run: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        let object = object(json!({
            "endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason,
        }));
        let seen = timefmt::format(endpoint.updated_at);
        Self {
            message_id: derived_id(
                unix_ms(endpoint.updated_at),
                &[ENDPOINT_DISABLED, endpoint.id.as_str(), &seen],
            ),
            account: endpoint.account.clone(),
            event_type: EventType::parse(ENDPOINT_DISABLED).expect("an operational type"),
            endpoint_id: endpoint.id.clone(),
            object,
            text: format!("Endpoint {} was disabled: {reason}.", endpoint.url),
            created_at: timefmt::format(now),
            disable: Some(Disable {
                reason: reason.to_string(),
                seen_updated_at: endpoint.updated_at,
                seen_failing_since: run,
            }),
        }
    }

    /// A test event of the operational type `event_type` sent to `endpoint`, shaped as
    /// hookline raises that type (its object's fields, `"dataset": null`) with
    /// `"test": true`, about `endpoint` itself and a message that never was;
    /// `None` for a type that is not operational.
    pub fn test(event_type: &EventType, endpoint: &Endpoint, now: OffsetDateTime) -> Option<Self> {
        let (id, some_message) = (&endpoint.id, MessageId::new());
        let object = match event_type.as_str() {
            ENDPOINT_DISABLED => {
                json!({"endpoint_id": id, "url": endpoint.url, "reason": "a test", "test": true})
            }
            ATTEMPT_FAILING => json!({
                "endpoint_id": id, "message_id": some_message, "attempt": FAILING_AT,
                "error": null, "response_status": 500, "test": true,
            }),
            ATTEMPT_EXHAUSTED => {
                json!({"endpoint_id": id, "message_id": some_message, "attempts": 8, "test": true})
            }
            ATTEMPT_RECOVERED => json!({
                "endpoint_id": id, "message_id": some_message, "attempt": FAILING_AT + 1,
                "test": true,
            }),
            _ => return None,
        };
        Some(Self {
            message_id: MessageId::new(),
            account: endpoint.account.clone(),
            event_type: event_type.clone(),
            endpoint_id: id.clone(),
            object: self::object(object),
            text: test_text(id),
            created_at: timefmt::format(now),
            disable: None,
        })
    }

    /// The message this raise stores: `"dataset": null`, in the account concerned.
    pub fn message(&self, api_version: &str, now: OffsetDateTime) -> Message {
        let payload = payload::standard(&payload::Standard {
            event_type: self.event_type.as_str(),
            created_at: &self.created_at,
            api_version,
            dataset: None,
            object: &self.object,
            text: &self.text,
        });
        Message {
            id: self.message_id.clone(),
            account: self.account.clone(),
            event_type: self.event_type.clone(),
            dataset: String::new(),
            created_at: self.created_at.clone(),
            payload,
            received_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AttemptId;

    fn job(event_type: &str) -> DeliveryJob {
        DeliveryJob {
            message_id: MessageId::new(),
            endpoint_id: EndpointId::new(),
            account: "jane".parse().unwrap(),
            event_type: event_type.parse().unwrap(),
            payload: None,
            endpoint_updated_at: None,
            after_failing: false,
        }
    }

    /// Operational events have no dataset: an endpoint of no dataset still gets them.
    fn endpoint(event_types: &[&str]) -> Endpoint {
        crate::model::fixtures::endpoint(event_types, Some(&[]))
    }

    #[test]
    fn failing_stands_from_a_failure_at_the_fourth_attempt_until_a_success() {
        let endpoint = EndpointId::new();
        let attempt = |number, status| Attempt {
            endpoint_id: endpoint.clone(),
            attempt: number,
            status,
            ..crate::model::fixtures::attempt()
        };
        let (failed, succeeded) = (AttemptStatus::Failed, AttemptStatus::Succeeded);
        let three: Vec<Attempt> = (1..=3).map(|n| attempt(n, failed)).collect();
        assert!(!failing_stands(&three, &endpoint));
        let mut eight: Vec<Attempt> = (1..=8).map(|n| attempt(n, failed)).collect();
        assert!(failing_stands(&eight, &endpoint));
        assert!(
            !failing_stands(&eight, &EndpointId::new()),
            "another endpoint's"
        );
        // A replay that failed again, counted afresh: it still stands.
        eight.push(attempt(1, failed));
        assert!(failing_stands(&eight, &endpoint));
        // A success answered it.
        eight.push(attempt(2, succeeded));
        assert!(!failing_stands(&eight, &endpoint));
    }

    #[test]
    fn the_fourth_failure_is_failing_and_the_last_is_exhausted() {
        assert!(after_failure("sample.created", 3, false).is_empty());
        assert_eq!(after_failure("sample.created", 4, false), [ATTEMPT_FAILING]);
        assert!(after_failure("sample.created", 5, false).is_empty());
        assert_eq!(
            after_failure("sample.created", 8, true),
            [ATTEMPT_EXHAUSTED]
        );
        // A schedule of four attempts: the fourth is both.
        assert_eq!(
            after_failure("sample.created", 4, true),
            [ATTEMPT_FAILING, ATTEMPT_EXHAUSTED]
        );
        let now = OffsetDateTime::now_utc();
        let recovers =
            |job: &DeliveryJob, attempt| raise_after_success(job, attempt, now).is_some();
        for operational in [ATTEMPT_FAILING, ENDPOINT_DISABLED] {
            assert!(after_failure(operational, 4, true).is_empty());
            assert!(!recovers(&job(operational), 5));
            assert!(!failing_raised_by(&job(operational), 4));
        }
        let sample = job("sample.created");
        assert!(!recovers(&sample, 1) && !recovers(&sample, 4));
        assert!(recovers(&sample, 5));
        assert!(!failing_raised_by(&sample, 3) && failing_raised_by(&sample, 4));
        // A replay of a job whose `failing` was raised: its first success recovers.
        let replayed = DeliveryJob {
            after_failing: true,
            ..sample
        };
        assert!(recovers(&replayed, 1) && failing_raised_by(&replayed, 1));
    }

    #[test]
    fn an_endpoint_is_disabled_at_a_failure_past_its_period() {
        let since = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let day = Duration::from_secs(86_400);
        assert!(!disable_due(None, since + day * 9, day));
        assert!(!disable_due(
            Some(since),
            since + time::Duration::hours(23),
            day
        ));
        assert!(disable_due(Some(since), since + day, day));
        assert_eq!(
            failing_too_long_reason(since, day * 5),
            "failures without a success since 2023-11-14T22:13:20.000000Z, longer than 5d"
        );
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_text(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn only_listed_types_reach_an_endpoint_and_never_the_one_concerned() {
        let disabled: EventType = ENDPOINT_DISABLED.parse().unwrap();
        let about = EndpointId::new();
        // Its datasets (here none) do not apply.
        assert!(receives(&endpoint(&[ENDPOINT_DISABLED]), &disabled, &about));
        assert!(!receives(&endpoint(&[]), &disabled, &about));
        assert!(!receives(&endpoint(&[ATTEMPT_FAILING]), &disabled, &about));
        let mut itself = endpoint(&[ENDPOINT_DISABLED]);
        assert!(!receives(&itself, &disabled, &itself.id.clone()));
        itself.disabled = true;
        assert!(!receives(&itself, &disabled, &about));
    }

    #[test]
    fn a_raise_again_is_the_same_message_and_each_is_its_own() {
        let job = job("sample.created");
        let now = OffsetDateTime::now_utc();
        let later = now + time::Duration::seconds(30);
        assert_eq!(
            Raise::exhausted(&job, 8, now).message_id,
            Raise::exhausted(&job, 8, later).message_id
        );
        let ids = [
            Raise::exhausted(&job, 8, now).message_id,
            Raise::recovered(&job, 5, now).message_id,
            Raise::exhausted(&self::job("sample.created"), 8, now).message_id,
        ];
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
        assert_eq!(id_time_ms(&ids[0]), id_time_ms(&job.message_id));

        let mut endpoint = endpoint(&[]);
        let first = Raise::disabled(&endpoint, GONE, now);
        assert_eq!(
            first.message_id,
            Raise::disabled(&endpoint, GONE, later).message_id
        );
        // Re-enabled and disabled again: a new event.
        endpoint.updated_at = later;
        assert_ne!(
            first.message_id,
            Raise::disabled(&endpoint, GONE, later).message_id
        );
    }

    #[test]
    fn the_objects_are_contract_s_and_the_dataset_is_null() {
        let job = job("sample.created");
        let now = OffsetDateTime::now_utc();
        let attempt = Attempt {
            id: AttemptId::new(),
            message_id: job.message_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            account: job.account.clone(),
            event_type: job.event_type.clone(),
            attempt: 4,
            status: AttemptStatus::Failed,
            response_status: Some(503),
            response_body: String::new(),
            error: None,
            duration_ms: 3,
            timestamp: now,
            next_attempt_at: None,
        };
        let failing = Raise::failing(&job, &attempt, now);
        assert_eq!(
            Value::Object(failing.object.clone()),
            json!({"endpoint_id": job.endpoint_id, "message_id": job.message_id,
                   "attempt": 4, "error": null, "response_status": 503})
        );
        let message = failing.message("2021-08-01", now);
        assert_eq!(message.dataset(), None);
        let payload: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(payload["dataset"], Value::Null);
        assert_eq!(payload["event_type"], ATTEMPT_FAILING);
        assert!(payload["text"].as_str().unwrap().contains("status 503"));
        assert_eq!(
            Value::Object(Raise::exhausted(&job, 8, now).object),
            json!({"endpoint_id": job.endpoint_id, "message_id": job.message_id, "attempts": 8})
        );
        assert_eq!(
            Value::Object(Raise::recovered(&job, 6, now).object),
            json!({"endpoint_id": job.endpoint_id, "message_id": job.message_id, "attempt": 6})
        );
        let endpoint = endpoint(&[]);
        let disabled = Raise::disabled(&endpoint, GONE, now);
        assert_eq!(
            Value::Object(disabled.object.clone()),
            json!({"endpoint_id": endpoint.id, "url": endpoint.url, "reason": GONE})
        );
        assert_eq!(
            disabled.disable.unwrap().seen_updated_at,
            endpoint.updated_at
        );
    }
}
