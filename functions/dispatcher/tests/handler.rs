//! The dispatcher handler in-process: real receivers on 127.0.0.1, the emulator's
//! DynamoDB and SQS, SQS events built as Lambda sends them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use dispatcher::{Deps, handle};
use hookline_tests::faults::FaultProxy;
use hookline_tests::intercept::LeaveUnprocessed;
use hookline_tests::{Receiver, Reply, TestEnv};
use serde_json::{Value, json};
use shared::ids::{EndpointId, MessageId};
use shared::isolation::MovedJob;
use shared::model::{AttemptStatus, DeliveryJob, EndpointSecrets, Format};
use shared::operational::{GONE, Raise};
use shared::queue::Received;
use shared::retry::{MAX_STEP, RetrySchedule};
use shared::signing::Secret;
use shared::task::Task;

const PAYLOAD: &str = r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{"name":"rose.png"},"text":"Sample rose.png created in dataset jane/flowers."}"#;

async fn setup() -> (TestEnv, Deps) {
    setup_with("1s,1s").await
}

/// A fresh table and queues with this retry schedule, and a handler over them.
async fn setup_with(schedule: &str) -> (TestEnv, Deps) {
    let env = TestEnv::new(schedule).await;
    let deps = Deps::new(env.store.clone(), env.queues.clone(), env.config.clone());
    (env, deps)
}

/// An endpoint at `url` and a job to it, sent to the delivery queue.
async fn queued_job(env: &TestEnv, url: String) -> DeliveryJob {
    let (endpoint_id, _) = add_endpoint(env, url, Format::Standard).await;
    let job = job(&endpoint_id);
    env.queues
        .send_jobs(std::slice::from_ref(&job))
        .await
        .unwrap();
    job
}

async fn add_endpoint(env: &TestEnv, url: String, format: Format) -> (EndpointId, Secret) {
    let (endpoint, secret) = env.add_endpoint("jane", &url, |e| e.format = format).await;
    (endpoint.id, secret)
}

fn job(endpoint: &EndpointId) -> DeliveryJob {
    DeliveryJob {
        message_id: MessageId::new(),
        endpoint_id: endpoint.clone(),
        account: "jane".parse().unwrap(),
        event_type: "sample.created".parse().unwrap(),
        payload: Some(PAYLOAD.into()),
        endpoint_updated_at: None,
        after_failing: false,
    }
}

/// An SQS event as Lambda builds it; `bodies` are (sqs message id, body).
fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
    sqs_event_with(
        bodies,
        json!({"ApproximateReceiveCount": "1", "SentTimestamp": "1"}),
    )
}

/// [`sqs_event`] with these system attributes on every record.
fn sqs_event_with(bodies: &[(&str, String)], attributes: Value) -> SqsEvent {
    let records: Vec<_> = bodies
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": format!("receipt-{id}"), "body": body,
                "attributes": attributes,
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:delivery", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The event of messages received from the delivery queue.
fn event_of(received: &[Received]) -> SqsEvent {
    let records: Vec<_> = received
        .iter()
        .map(|r| {
            json!({
                "messageId": r.message_id, "receiptHandle": r.receipt_handle,
                "body": r.body, "attributes": r.attributes,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Waits for `count` messages of the delivery queue, hidden for the queue's visibility timeout.
async fn receive(env: &TestEnv, count: usize) -> Vec<Received> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while received.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {count} jobs on the queue"
        );
        let batch = env
            .queues
            .receive_delivery(count - received.len(), Duration::from_secs(1))
            .await
            .unwrap();
        received.extend(batch);
    }
    received
}

/// Hands `received` to the handler and deletes what it did not report failed, as
/// Lambda's event source mapping does.
async fn dispatch(env: &TestEnv, deps: &Deps, received: &[Received]) -> SqsBatchResponse {
    let response = handle(deps, event_of(received)).await;
    let failed = failed_ids(&response);
    let done: Vec<String> = received
        .iter()
        .filter(|r| !failed.contains(&r.message_id))
        .map(|r| r.receipt_handle.clone())
        .collect();
    env.queues.delete_delivered(&done).await.unwrap();
    response
}

/// Sends `bodies` to the delivery queue and has the dispatcher take them; none may fail.
async fn dispatch_bodies(env: &TestEnv, deps: &Deps, bodies: &[String]) {
    env.queues.send_bodies(bodies).await.unwrap();
    let received = receive(env, bodies.len()).await;
    assert!(failed_ids(&dispatch(env, deps, &received).await).is_empty());
}

/// The bodies waiting in the DLQ.
async fn dlq_bodies(env: &TestEnv) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let batch = env
            .queues
            .receive_dead(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            return bodies;
        }
        bodies.extend(batch.into_iter().map(|r| r.body));
    }
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let value = serde_json::to_value(response).unwrap();
    value["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_malformed_record_is_parked_alone_and_the_rest_are_delivered_signed() {
    let (env, deps) = setup().await;
    let standard = Receiver::start().await;
    let slack = Receiver::start().await;
    let (standard_id, standard_secret) =
        add_endpoint(&env, standard.url("/hook"), Format::Standard).await;
    let (slack_id, _) = add_endpoint(&env, slack.url("/slack"), Format::Slack).await;
    let first = job(&standard_id);
    let second = job(&slack_id);

    let event = sqs_event(&[
        ("good-1", serde_json::to_string(&first).unwrap()),
        ("bad", "{not a job".to_string()),
        ("good-2", serde_json::to_string(&second).unwrap()),
    ]);
    let response = handle(&deps, event).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(dlq_bodies(&env).await, ["{not a job"]);

    let delivery = &standard.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(delivery.body.as_ref(), PAYLOAD.as_bytes());
    assert_eq!(delivery.header("webhook-id"), first.message_id.as_str());
    standardwebhooks::Webhook::new(standard_secret.expose())
        .unwrap()
        .verify(&delivery.body, &delivery.headers)
        .unwrap();
    let slack_delivery = &slack.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(
        slack_delivery.json(),
        json!({"text": "Sample rose.png created in dataset jane/flowers."})
    );

    let attempts = attempts_of(&env, &first.message_id).await;
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Succeeded);
    assert_eq!((attempt.attempt, attempt.response_status), (1, Some(204)));
    assert_eq!(attempt.next_attempt_at, None);
}

#[tokio::test]
async fn records_of_a_batch_are_delivered_concurrently() {
    let (env, deps) = setup().await;
    let hanging = Receiver::closed().await;
    let fast = Receiver::start().await;
    let (hanging_id, _) = add_endpoint(&env, hanging.url("/slow"), Format::Standard).await;
    let (fast_id, _) = add_endpoint(&env, fast.url("/fast"), Format::Standard).await;
    let event = sqs_event(&[
        ("slow", serde_json::to_string(&job(&hanging_id)).unwrap()),
        ("fast", serde_json::to_string(&job(&fast_id)).unwrap()),
    ]);
    let batch = tokio::spawn(async move { handle(&deps, event).await });

    // The fast endpoint is served while the slow one still holds its request.
    hanging.wait_for(1, Duration::from_secs(5)).await;
    fast.wait_for(1, Duration::from_secs(5)).await;
    assert!(!batch.is_finished());
    hanging.open();
    let response = batch.await.unwrap();
    assert!(failed_ids(&response).is_empty());
}

#[tokio::test]
async fn a_failed_attempt_is_recorded_and_reported_for_a_retry() {
    let (env, deps) = setup().await;
    let failing = Receiver::statuses(&[500]).await;
    let job = queued_job(&env, failing.url("/hook")).await;
    let received = receive(&env, 1).await;

    let response = handle(&deps, event_of(&received)).await;
    assert_eq!(failed_ids(&response), [received[0].message_id.clone()]);
    let attempts = attempts_of(&env, &job.message_id).await;
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Failed);
    assert_eq!(attempt.response_status, Some(500));
    assert_eq!(attempt.error, None);
    let next = attempt.next_attempt_at.expect("a retry is scheduled");
    // The schedule's 1 s, jittered by a fifth and rounded up to SQS's whole seconds,
    // from the attempt's end.
    let waits = next - attempt.timestamp - time::Duration::milliseconds(attempt.duration_ms as i64);
    assert!(
        waits >= time::Duration::seconds(1) && waits < time::Duration::milliseconds(2010),
        "{waits}"
    );

    // The job comes back once the delay has run out, as its second receive.
    let again = receive(&env, 1).await;
    assert_eq!(
        again[0]
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str),
        Some("2")
    );
}

#[tokio::test]
async fn a_job_for_a_missing_endpoint_is_dropped_with_a_reason() {
    let (env, deps) = setup().await;
    let job = job(&EndpointId::new());
    let response = handle(
        &deps,
        sqs_event(&[("gone", serde_json::to_string(&job).unwrap())]),
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    let attempts = attempts_of(&env, &job.message_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("endpoint deleted"));
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
}

/// The attempts recorded for a message of jane's.
async fn attempts_of(env: &TestEnv, message_id: &MessageId) -> Vec<shared::model::Attempt> {
    env.store
        .attempts_of_message(&"jane".parse().unwrap(), message_id)
        .await
        .unwrap()
}

/// Runs one job through the handler as its first attempt and returns its attempts.
async fn deliver_once(
    env: &TestEnv,
    deps: &Deps,
    job: &DeliveryJob,
) -> Vec<shared::model::Attempt> {
    handle(
        deps,
        sqs_event(&[("one", serde_json::to_string(job).unwrap())]),
    )
    .await;
    attempts_of(env, &job.message_id).await
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_stops_its_retries() {
    let (env, deps) = setup().await;
    let gone = Receiver::statuses(&[410]).await;
    let (endpoint_id, _) = add_endpoint(&env, gone.url("/hook"), Format::Standard).await;
    let first = job(&endpoint_id);
    let response = handle(
        &deps,
        sqs_event(&[("gone", serde_json::to_string(&first).unwrap())]),
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "a 410 is not retried");
    let attempts = attempts_of(&env, &first.message_id).await;
    assert_eq!(attempts[0].response_status, Some(410));
    assert_eq!(attempts[0].next_attempt_at, None);
    assert!(attempts[0].error.as_deref().unwrap().contains("disabled"));
    let endpoint = env
        .stored_endpoint(&"jane".parse().unwrap(), &endpoint_id)
        .await;
    assert!(endpoint.disabled);

    // The next job to it is dropped without a request, and says why.
    let second = job(&endpoint_id);
    let attempts = deliver_once(&env, &deps, &second).await;
    assert_eq!(attempts[0].error.as_deref(), Some("endpoint disabled"));
    assert_eq!(gone.deliveries().len(), 1);
}

#[tokio::test]
async fn retry_after_on_429_and_503_stretches_the_next_delay() {
    let (env, deps) = setup().await;
    for status in [429, 503] {
        let busy =
            Receiver::scripted(move |_, _| Reply::status(status).header("retry-after", "120"))
                .await;
        let (endpoint_id, _) = add_endpoint(&env, busy.url("/hook"), Format::Standard).await;
        let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
        let attempt = &attempts[0];
        assert_eq!(attempt.response_status, Some(status));
        let delay = attempt.next_attempt_at.unwrap() - attempt.timestamp;
        let past_the_attempt = delay - time::Duration::seconds(120);
        assert!(
            past_the_attempt >= time::Duration::milliseconds(attempt.duration_ms as i64)
                && past_the_attempt < time::Duration::milliseconds(attempt.duration_ms as i64 + 10),
            "{status}: {delay}"
        );
    }
}

#[tokio::test]
async fn failures_without_a_response_say_what_went_wrong() {
    let (env, deps) = setup().await;
    let refused = {
        // A port that was free a moment ago and has no listener now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/hook")
    };
    let plain = Receiver::start().await;
    let tls_to_plain_http = plain.url("/hook").replace("http://", "https://");
    for (url, expected) in [
        (refused, "connection refused"),
        (
            "http://no-such-host.invalid/hook".to_string(),
            "DNS failure",
        ),
        (tls_to_plain_http, "TLS error"),
    ] {
        let (endpoint_id, _) = add_endpoint(&env, url.clone(), Format::Standard).await;
        let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
        let attempt = &attempts[0];
        assert_eq!(attempt.status, AttemptStatus::Failed);
        assert_eq!(attempt.response_status, None);
        let error = attempt.error.as_deref().unwrap();
        assert!(error.starts_with(expected), "{url}: {error}");
        assert!(attempt.next_attempt_at.is_some(), "{url} is retried");
    }
}

#[tokio::test]
async fn a_timeout_costs_one_attempt_and_never_retries_sooner_than_the_schedule() {
    let (env, deps) = setup().await;
    let hanging = Receiver::closed().await;
    let (endpoint_id, _) = add_endpoint(&env, hanging.url("/hook"), Format::Standard).await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    hanging.open();
    let attempt = &attempts[0];
    assert_eq!(attempt.error.as_deref(), Some("timeout after 3000 ms"));
    let delay = attempt.next_attempt_at.unwrap() - attempt.timestamp;
    assert!(delay >= time::Duration::seconds(1), "{delay}");
}

#[tokio::test]
async fn redirects_are_failures_and_never_followed() {
    let (env, deps) = setup().await;
    let elsewhere = Receiver::start().await;
    let target = elsewhere.url("/elsewhere");
    let redirecting =
        Receiver::scripted(move |_, _| Reply::status(302).header("location", target.clone())).await;
    let (endpoint_id, _) = add_endpoint(&env, redirecting.url("/hook"), Format::Standard).await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
    assert_eq!(attempts[0].response_status, Some(302));
    assert!(elsewhere.deliveries().is_empty());
}

#[tokio::test]
async fn an_oversized_response_body_is_cut_to_4_kib() {
    let (env, deps) = setup().await;
    let verbose = Receiver::scripted(|_, _| Reply::status(200).body_of(8 << 20)).await;
    let (endpoint_id, _) = add_endpoint(&env, verbose.url("/hook"), Format::Standard).await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    assert_eq!(
        attempts[0].response_body.len(),
        dispatcher::KEPT_RESPONSE_BYTES
    );
}

#[tokio::test]
async fn during_rotation_both_secrets_sign_and_each_verifies() {
    let (env, deps) = setup().await;
    let receiver = Receiver::start().await;
    let now = time::OffsetDateTime::now_utc();
    let endpoint = hookline_tests::endpoint("jane", &receiver.url("/hook"), now);
    let (current, previous) = (Secret::generate(), Secret::generate());
    let secrets = EndpointSecrets {
        current: current.clone(),
        previous: Some((previous.clone(), now + time::Duration::hours(24))),
    };
    let created = env.store.create_endpoint(&endpoint, &secrets).await;
    assert_eq!(created.unwrap(), shared::store::Creation::Created);
    deliver_once(&env, &deps, &job(&endpoint.id)).await;
    let delivery = &receiver.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(delivery.header("webhook-signature").split(' ').count(), 2);
    for secret in [&current, &previous] {
        standardwebhooks::Webhook::new(secret.expose())
            .unwrap()
            .verify(&delivery.body, &delivery.headers)
            .expect("each secret verifies");
    }
}

/// A resolver that answers 127.0.0.1 for every name, as a DNS record changed after
/// the endpoint was saved would.
fn rebinding_resolver(allow_private_targets: bool) -> dispatcher::dns::CheckedResolver {
    dispatcher::dns::CheckedResolver::with_lookup(
        std::sync::Arc::new(|_host| {
            Box::pin(async { Ok(vec![std::net::IpAddr::from([127, 0, 0, 1])]) })
        }),
        allow_private_targets,
    )
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_at_delivery_is_refused() {
    let env = TestEnv::new("1s").await;
    let receiver = Receiver::start().await;
    let port = receiver.url("").rsplit(':').next().unwrap().to_string();
    let mut config = env.config.clone();
    config.allow_private_targets = false;
    let http = dispatcher::http_client_with(&config, rebinding_resolver(false));
    let deps = Deps::with_http(env.store.clone(), env.queues.clone(), config, http);
    let (endpoint_id, _) = add_endpoint(
        &env,
        format!("http://hooks.example.com:{port}/hook"),
        Format::Standard,
    )
    .await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    let error = attempts[0].error.as_deref().unwrap();
    assert!(error.starts_with("blocked address 127.0.0.1"), "{error}");
    assert!(attempts[0].next_attempt_at.is_some());

    // An address literal is refused before any connection too.
    let (literal_id, _) = add_endpoint(&env, receiver.url("/hook"), Format::Standard).await;
    let attempts = deliver_once(&env, &deps, &job(&literal_id)).await;
    let error = attempts[0].error.as_deref().unwrap();
    assert!(error.starts_with("blocked address 127.0.0.1"), "{error}");
    assert!(receiver.deliveries().is_empty());
}

#[tokio::test]
async fn the_connection_goes_to_the_checked_address_only() {
    // With private targets allowed, the same name reaches the receiver on 127.0.0.1:
    // the address the resolver checked, not a second lookup of a name that does not exist.
    let env = TestEnv::new("1s").await;
    let receiver = Receiver::start().await;
    let port = receiver.url("").rsplit(':').next().unwrap().to_string();
    let http = dispatcher::http_client_with(&env.config, rebinding_resolver(true));
    let deps = Deps::with_http(
        env.store.clone(),
        env.queues.clone(),
        env.config.clone(),
        http,
    );
    let (endpoint_id, _) = add_endpoint(
        &env,
        format!("http://hooks.example.com:{port}/hook"),
        Format::Standard,
    )
    .await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn an_attempt_is_kept_for_the_retention_period() {
    let (env, deps) = setup().await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = add_endpoint(&env, receiver.url("/hook"), Format::Standard).await;
    let job = job(&endpoint_id);
    let attempts = deliver_once(&env, &deps, &job).await;
    let item = env
        .dynamodb
        .get_item()
        .table_name(&env.config.table)
        .key("pk", AttributeValue::S(format!("MSG#{}", job.message_id)))
        .key("sk", AttributeValue::S(format!("ATT#{}", attempts[0].id)))
        .send()
        .await
        .unwrap()
        .item
        .expect("the attempt is stored");
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let expected = (attempts[0].timestamp + env.config.retention()).unix_timestamp();
    assert!(
        (expires_at - expected).abs() <= 60,
        "{expires_at} vs {expected}"
    );
    assert_eq!(
        env.config.retention_days,
        shared::config::DEFAULT_RETENTION_DAYS
    );
}

#[tokio::test]
async fn after_the_last_attempt_the_job_moves_to_the_dlq_byte_for_byte() {
    let (env, deps) = setup_with("1s").await;
    let failing = Receiver::statuses(&[500, 500]).await;
    let (endpoint_id, _) = add_endpoint(&env, failing.url("/hook"), Format::Standard).await;
    let message_id = MessageId::new();
    // Spacing, key order and escapes no serialiser would reproduce: only the bytes as sent compare equal.
    let body = format!(
        "{{ \"payload\": {},\n  \"message_id\":\"{message_id}\", \"endpoint_id\" : \"{endpoint_id}\",\"account\":\"jane\",\"event_type\":\"sample.created\"}}",
        serde_json::to_string(PAYLOAD)
            .unwrap()
            .replace("rose", "ros\\u00e9")
    );
    serde_json::from_str::<DeliveryJob>(&body).expect("the body is a job");
    env.queues
        .send_bodies(std::slice::from_ref(&body))
        .await
        .unwrap();

    let first = receive(&env, 1).await;
    assert_eq!(failed_ids(&dispatch(&env, &deps, &first).await).len(), 1);
    let last = receive(&env, 1).await;
    assert_eq!(last[0].attributes["ApproximateReceiveCount"], "2");
    let response = dispatch(&env, &deps, &last).await;
    assert!(failed_ids(&response).is_empty(), "parked, so deleted");

    assert_eq!(failing.deliveries().len(), 2);
    assert_eq!(dlq_bodies(&env).await, [body]);
    // What stays on the delivery queue is the announcement of it, once.
    let left = env.receive_all_delivery().await;
    assert_eq!(left.len(), 1);
    match shared::task::Task::from_body(&left[0].body) {
        Some(Ok(shared::task::Task::Raise(raise))) => {
            assert_eq!(raise.event_type.as_str(), "message.attempt.exhausted");
            assert_eq!(raise.object["message_id"], message_id.as_str());
            assert_eq!(raise.object["attempts"], 2);
        }
        other => panic!("expected the exhausted raise: {other:?}"),
    }
    let attempts = attempts_of(&env, &message_id).await;
    let numbers: BTreeSet<u32> = attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, BTreeSet::from([1, 2]));
    let last = attempts.iter().find(|a| a.attempt == 2).unwrap();
    assert_eq!(last.status, AttemptStatus::Failed);
    assert_eq!(last.next_attempt_at, None, "no attempt follows the last");
}

#[tokio::test]
async fn a_job_parked_after_failing_says_so_and_its_replay_s_success_raises_recovered() {
    let (env, deps) = setup_with("1s,1s,1s").await;
    // Four failures, the last of the schedule; then it answers.
    let receiver = Receiver::statuses(&[500, 500, 500, 500]).await;
    let job = queued_job(&env, receiver.url("/hook")).await;
    for _ in 0..4 {
        let received = receive(&env, 1).await;
        dispatch(&env, &deps, &received).await;
    }
    let parked = dlq_bodies(&env).await;
    assert_eq!(parked.len(), 1);
    let parked_job: DeliveryJob = serde_json::from_str(&parked[0]).unwrap();
    assert_eq!(
        parked_job,
        DeliveryJob {
            after_failing: true,
            ..job.clone()
        }
    );
    // `failing` and `exhausted` were raised; taken off the queue here.
    assert_eq!(env.receive_all_delivery().await.len(), 2);

    // Replayed as the DLQ's replay sends it back: delivered at its first attempt.
    dispatch_bodies(&env, &deps, &parked).await;
    let raised = env.receive_all_delivery().await;
    assert_eq!(raised.len(), 1);
    match Task::from_body(&raised[0].body) {
        Some(Ok(Task::Raise(raise))) => {
            assert_eq!(raise.event_type.as_str(), "message.attempt.recovered");
            assert_eq!(raise.object["message_id"], job.message_id.as_str());
            assert_eq!(raise.object["attempt"], 1);
        }
        other => panic!("expected the recovered raise: {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_job_goes_to_the_dlq_at_its_first_receive() {
    // A schedule of hours: a malformed job retried on it would still be on the delivery queue.
    let (env, deps) = setup_with("1h,1h").await;
    let bodies = [
        "{not json".to_string(),
        r#"{"message_id": 42}"#.to_string(),
        "[]".to_string(),
    ];
    env.queues.send_bodies(&bodies).await.unwrap();
    let received = receive(&env, 3).await;
    assert!(
        received
            .iter()
            .all(|r| r.attributes["ApproximateReceiveCount"] == "1")
    );

    let response = dispatch(&env, &deps, &received).await;
    assert!(failed_ids(&response).is_empty());
    let parked: BTreeSet<String> = dlq_bodies(&env).await.into_iter().collect();
    assert_eq!(parked, BTreeSet::from(bodies));
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 0);
}

#[tokio::test]
async fn receives_beyond_the_attempts_stay_below_max_receive_count_and_end_in_one_more_attempt() {
    // One attempt in all; SQS parks a job only after the margin's extra receives.
    let (env, deps) = setup_with("").await;
    let schedule = RetrySchedule::parse("").unwrap();
    let redrive = env
        .sqs
        .get_queue_attributes()
        .queue_url(env.queues.delivery_url())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(
        &redrive.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy],
    )
    .unwrap();
    assert_eq!(policy["maxReceiveCount"], schedule.max_receive_count());
    assert!(schedule.max_receive_count() > schedule.attempts());

    let failing = Receiver::statuses(&[500]).await;
    let job = queued_job(&env, failing.url("/hook")).await;
    // Three invocations die with the job in hand: it comes back each time.
    for _ in 0..3 {
        let received = receive(&env, 1).await;
        env.queues
            .delay_retries(&[(&received[0].receipt_handle, Duration::ZERO)])
            .await
            .unwrap();
    }
    let received = receive(&env, 1).await;
    assert_eq!(received[0].attributes["ApproximateReceiveCount"], "4");
    assert!(failed_ids(&dispatch(&env, &deps, &received).await).is_empty());

    // Delivered once more, as the last attempt, then parked.
    assert_eq!(failing.deliveries().len(), 1);
    let attempts = attempts_of(&env, &job.message_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].attempt, attempts[0].next_attempt_at),
        (1, None)
    );
    assert_eq!(dlq_bodies(&env).await, [received[0].body.clone()]);
}

#[tokio::test]
async fn a_job_back_early_after_crashes_does_not_use_up_its_schedule() {
    let (env, deps) = setup_with("1m,1m").await;
    let failing = Receiver::statuses(&[500]).await;
    let (endpoint_id, _) = add_endpoint(&env, failing.url("/hook"), Format::Standard).await;
    let job = job(&endpoint_id);
    // The fifth receive, yet first received a moment ago: four crashes in a row.
    let first_receive = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let event = sqs_event_with(
        &[("early", serde_json::to_string(&job).unwrap())],
        json!({"ApproximateReceiveCount": "5", "ApproximateFirstReceiveTimestamp": first_receive.to_string()}),
    );
    let response = handle(&deps, event).await;
    assert_eq!(failed_ids(&response), ["early"], "retried, not parked");
    let attempts = attempts_of(&env, &job.message_id).await;
    assert_eq!(attempts[0].attempt, 1);
    assert!(attempts[0].next_attempt_at.is_some());
    assert!(dlq_bodies(&env).await.is_empty());
}

#[tokio::test]
async fn no_retry_delay_passes_what_sqs_allows_from_the_receive() {
    let (env, deps) = setup().await;
    // A receiver that asks for two days.
    let busy = Receiver::scripted(|_, _| Reply::status(503).header("retry-after", "172800")).await;
    let (endpoint_id, _) = add_endpoint(&env, busy.url("/hook"), Format::Standard).await;
    let attempts = deliver_once(&env, &deps, &job(&endpoint_id)).await;
    let delay = attempts[0].next_attempt_at.unwrap() - attempts[0].timestamp;
    let longest = MAX_STEP - shared::queue::VISIBILITY_MARGIN;
    // From the attempt's start: its own time and the rounding to whole seconds on top.
    assert!(delay <= longest + Duration::from_secs(1), "{delay}");
    assert!(delay > longest - Duration::from_secs(60), "{delay}");

    // SQS refuses a visibility that ends 12 h after the receive, and takes the capped one.
    // (The emulator counts from the send, which came first: at least as strict.)
    env.queues.send_jobs(&[job(&endpoint_id)]).await.unwrap();
    let received = receive(&env, 1).await;
    let receipt = &received[0].receipt_handle;
    assert!(
        env.queues
            .delay_retries(&[(receipt, MAX_STEP)])
            .await
            .is_err()
    );
    let capped = shared::queue::max_visibility(Duration::from_secs(1));
    env.queues
        .delay_retries(&[(receipt, capped)])
        .await
        .unwrap();
}

/// Fails the first BatchWriteItem before it reaches the table and the second after it did
/// (its answer lost), the way DynamoDB and the network can.
#[derive(Debug, Default)]
struct FailingPuts {
    /// BatchWriteItem calls so far, shared with the test.
    puts: Arc<AtomicUsize>,
    lose_answer: AtomicBool,
}

impl aws_sdk_dynamodb::config::Intercept for FailingPuts {
    fn name(&self) -> &'static str {
        "FailingPuts"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context.request().headers().get("x-amz-target");
        if target != Some("DynamoDB_20120810.BatchWriteItem") {
            return Ok(());
        }
        match self.puts.fetch_add(1, Ordering::SeqCst) {
            0 => Err("injected: refused before sending".into()),
            1 => {
                self.lose_answer.store(true, Ordering::SeqCst);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn read_after_transmit(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.lose_answer.swap(false, Ordering::SeqCst) {
            return Err("injected: answer lost after the write".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_attempt_record_write_is_tried_again() {
    let env = TestEnv::new("1s").await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = add_endpoint(&env, receiver.url("/hook"), Format::Standard).await;
    let sdk = shared::aws::for_emulator(hookline_tests::emulator_url()).await;
    let faults = FailingPuts::default();
    let puts = faults.puts.clone();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(faults)
            // The SDK's own retries off: each injected failure reaches the dispatcher.
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build(),
    );
    let store =
        shared::store::Store::new(dynamodb, env.config.table.clone(), env.config.retention());
    let deps = Deps::new(store, env.queues.clone(), env.config.clone());

    let job = job(&endpoint_id);
    let attempts = deliver_once(&env, &deps, &job).await;
    assert_eq!(
        receiver.deliveries().len(),
        1,
        "one delivery, whatever the writes did"
    );
    assert_eq!(
        puts.load(Ordering::SeqCst),
        3,
        "refused, answer lost, written"
    );
    assert_eq!(
        attempts.len(),
        1,
        "the write that took effect and its retry are one record"
    );
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
}

/// The calls a batch makes, counted at a proxy: `SQS.`/`DynamoDB.` operation → calls.
fn calls_of(proxy: &FaultProxy) -> Vec<(String, u64)> {
    proxy.counts().calls.into_iter().collect()
}

#[tokio::test]
async fn a_batch_reads_its_endpoints_writes_its_attempts_and_delays_its_retries_at_once() {
    let env = TestEnv::new("1s,1s").await;
    let proxy = FaultProxy::start(hookline_tests::emulator_url(), 1);
    let (store, queues) = env.adapters_via(proxy.url(), None).await;
    let deps = Deps::new(store, queues, env.config.clone());
    let healthy = Receiver::start().await;
    let failing = Receiver::scripted(|_, _| Reply::status(500)).await;
    let (up, _) = add_endpoint(&env, healthy.url("/hook"), Format::Standard).await;
    let (down, _) = add_endpoint(&env, failing.url("/hook"), Format::Standard).await;
    let jobs: Vec<DeliveryJob> = [&up, &up, &up, &down, &down].map(job).into();
    env.queues.send_jobs(&jobs).await.unwrap();
    let received = receive(&env, jobs.len()).await;

    let response = handle(&deps, event_of(&received)).await;
    assert_eq!(failed_ids(&response).len(), 2);
    assert_eq!(healthy.successes().len(), 3);
    assert_eq!(
        calls_of(&proxy),
        [
            ("DynamoDB.BatchGetItem".to_string(), 1),
            ("DynamoDB.BatchWriteItem".to_string(), 1),
            // The failing endpoint's run of failures begins: noted once, whatever
            // its number of failed records.
            ("DynamoDB.UpdateItem".to_string(), 1),
            ("SQS.ChangeMessageVisibilityBatch".to_string(), 1),
        ]
    );
    for job in &jobs {
        assert_eq!(attempts_of(&env, &job.message_id).await.len(), 1);
    }
    // Every attempt is in gsi1, and the failing endpoint; only the failed attempts
    // are in the sparse gsi2.
    for (index, entries) in [("gsi1", 5 + 1), ("gsi2", 2)] {
        let scanned = env
            .dynamodb
            .scan()
            .table_name(&env.config.table)
            .index_name(index)
            .send()
            .await
            .unwrap();
        assert_eq!(scanned.count(), entries, "{index}");
    }
    // The failed jobs come back after their delay, not the queue's 30 s timeout.
    let again = receive(&env, 2).await;
    assert!(
        again
            .iter()
            .all(|r| r.attributes["ApproximateReceiveCount"] == "2")
    );

    // The endpoints are cached: the next batch reads none.
    env.queues.send_jobs(&[job(&up)]).await.unwrap();
    let received = receive(&env, 1).await;
    handle(&deps, event_of(&received)).await;
    assert_eq!(proxy.counts().calls_of("DynamoDB.BatchGetItem"), 1);
}

#[tokio::test]
async fn attempts_dynamodb_leaves_unprocessed_are_written_again() {
    let env = TestEnv::new("1s").await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = add_endpoint(&env, receiver.url("/hook"), Format::Standard).await;
    let sdk = shared::aws::for_emulator(hookline_tests::emulator_url()).await;
    let unprocessed = LeaveUnprocessed::writes();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(unprocessed.clone())
            .build(),
    );
    let store =
        shared::store::Store::new(dynamodb, env.config.table.clone(), env.config.retention());
    let deps = Deps::new(store, env.queues.clone(), env.config.clone());

    let jobs = [job(&endpoint_id), job(&endpoint_id), job(&endpoint_id)];
    let bodies: Vec<(String, String)> = jobs
        .iter()
        .enumerate()
        .map(|(n, job)| (n.to_string(), serde_json::to_string(job).unwrap()))
        .collect();
    let bodies: Vec<(&str, String)> = bodies
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    let response = handle(&deps, sqs_event(&bodies)).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(unprocessed.calls(), 2, "the write left over is sent again");
    for job in &jobs {
        let attempts = attempts_of(&env, &job.message_id).await;
        assert_eq!(attempts.len(), 1, "{}", job.message_id);
        assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    }
}

#[tokio::test]
async fn a_retry_delay_sqs_refuses_leaves_the_others_of_the_batch_set() {
    let (env, deps) = setup().await;
    let failing = Receiver::scripted(|_, _| Reply::status(500)).await;
    let (endpoint_id, _) = add_endpoint(&env, failing.url("/hook"), Format::Standard).await;
    env.queues.send_jobs(&[job(&endpoint_id)]).await.unwrap();
    let mut received = receive(&env, 1).await;
    // A second record whose receipt SQS does not know: its visibility change is refused.
    let mut stale = received[0].clone();
    stale.message_id = "stale".into();
    stale.receipt_handle = "not-a-receipt".into();
    received.push(stale);

    let response = handle(&deps, event_of(&received)).await;
    assert_eq!(
        failed_ids(&response).len(),
        2,
        "both come back to be tried again"
    );
    // The known one's delay was set: it comes back after 1 s, not the queue's 30 s.
    let again = receive(&env, 1).await;
    assert_eq!(again[0].attributes["ApproximateReceiveCount"], "2");
}

#[tokio::test]
async fn a_raise_done_twice_disables_once_and_is_one_message_to_its_subscribers_only() {
    let (env, deps) = setup().await;
    let (gone, _) = env
        .add_endpoint("jane", "https://gone.example/hook", |_| {})
        .await;
    let (watcher, _) = env
        .add_endpoint("jane", "https://watcher.example/hook", |e| {
            e.event_types = vec!["endpoint.disabled".parse().unwrap()];
        })
        .await;
    // Every non-operational type, and so not this one.
    env.add_endpoint("jane", "https://all.example/hook", |_| {})
        .await;

    let raise = Raise::disabled(&gone, GONE, time::OffsetDateTime::now_utc());
    // Sent twice, as a send whose answer was lost is sent again.
    let body = Task::Raise(raise.clone()).to_body();
    dispatch_bodies(&env, &deps, &[body.clone(), body.clone()]).await;

    let stored = env.stored_endpoint(&gone.account, &gone.id).await;
    assert!(stored.disabled);
    assert_eq!(stored.disabled_reason.as_deref(), Some(GONE));
    let message = env
        .store
        .get_message(&gone.account, &raise.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.dataset(), None);
    let jobs = env.queued_jobs().await;
    assert!(!jobs.is_empty());
    assert!(
        jobs.iter()
            .all(|j| j.endpoint_id == watcher.id && j.message_id == raise.message_id),
        "{jobs:?}"
    );

    // Enabled again by its owner: the same raise coming back changes nothing.
    let mut enabled = stored.clone();
    enabled.disabled = false;
    enabled.disabled_reason = None;
    enabled.updated_at = time::OffsetDateTime::now_utc();
    assert!(
        env.store
            .update_endpoint(&enabled, stored.updated_at)
            .await
            .unwrap()
    );
    let in_flight = env.queue_depth(env.queues.delivery_url()).await;
    dispatch_bodies(&env, &deps, &[body]).await;
    let after = env.stored_endpoint(&gone.account, &gone.id).await;
    assert!(!after.disabled && after.disabled_reason.is_none());
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, in_flight);
}

#[tokio::test]
async fn a_raise_about_a_slow_endpoint_is_done_here_while_its_jobs_move_to_the_slow_lane() {
    let (env, mut deps) = setup().await;
    let slow_url = shared::queue::create_slow_lane(
        &env.sqs,
        &format!("slow-{}", MessageId::new()),
        env.queues.dlq_url(),
        5,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    deps.queues = env.queues.clone().with_slow_lane(Some(slow_url));
    let (hanging, _) = env
        .add_endpoint("jane", "https://hanging.example/hook", |_| {})
        .await;
    let (watcher, _) = env
        .add_endpoint("jane", "https://watcher.example/hook", |e| {
            e.event_types = vec!["message.attempt.exhausted".parse().unwrap()];
        })
        .await;
    deps.slow.mark(&hanging.id, std::time::Instant::now());

    // A raise names the endpoint it is about, as a job to it does.
    let job = job(&hanging.id);
    let raise = Raise::exhausted(&job, 2, time::OffsetDateTime::now_utc());
    dispatch_bodies(
        &env,
        &deps,
        &[
            Task::Raise(raise.clone()).to_body(),
            serde_json::to_string(&job).unwrap(),
        ],
    )
    .await;

    let moved = deps
        .queues
        .lane(shared::queue::Lane::Slow)
        .receive_delivery(10, Duration::from_secs(1))
        .await
        .unwrap();
    let moved: Vec<MovedJob> = moved
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].job, job);
    // The raise was done: its message goes to the endpoint subscribed to it.
    let jobs = env.queued_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (&jobs[0].endpoint_id, &jobs[0].message_id),
        (&watcher.id, &raise.message_id)
    );
}

#[tokio::test]
async fn a_raise_no_endpoint_receives_disables_but_stores_and_enqueues_nothing() {
    let (env, deps) = setup().await;
    let (gone, _) = env
        .add_endpoint("jane", "https://gone.example/hook", |_| {})
        .await;
    // Every non-operational type, and so not this one.
    env.add_endpoint("jane", "https://all.example/hook", |_| {})
        .await;
    let raise = Raise::disabled(&gone, GONE, time::OffsetDateTime::now_utc());
    dispatch_bodies(&env, &deps, &[Task::Raise(raise.clone()).to_body()]).await;

    let stored = env.stored_endpoint(&gone.account, &gone.id).await;
    assert!(stored.disabled);
    let message = env
        .store
        .get_message(&gone.account, &raise.message_id)
        .await
        .unwrap();
    assert!(message.is_none(), "{message:?}");
    assert!(env.receive_all_delivery().await.is_empty());
}

#[tokio::test]
async fn a_raise_whose_answers_are_lost_or_refused_is_one_message_when_it_is_done_again() {
    use hookline_tests::intercept::{InjectAt, Injected};
    let env = TestEnv::new("1s,1s").await;
    let (watcher, _) = env
        .add_endpoint("jane", "https://watcher.example/hook", |e| {
            e.event_types = vec!["endpoint.disabled".parse().unwrap()];
        })
        .await;
    for (operation, what) in [
        ("UpdateItem", Injected::AnswerLost),
        ("PutItem", Injected::AnswerLost),
        ("SendMessageBatch", Injected::Refused),
    ] {
        let (gone, _) = env
            .add_endpoint("jane", "https://gone.example/hook", |_| {})
            .await;
        let fault = InjectAt::new(operation, &[0], what);
        let (store, queues) = env.intercepted(fault.clone()).await;
        let deps = Deps::new(store, queues, env.config.clone());
        let raise = Raise::disabled(&gone, GONE, time::OffsetDateTime::now_utc());
        env.queues
            .send_bodies(&[Task::Raise(raise.clone()).to_body()])
            .await
            .unwrap();
        // Refused part-way, the task comes back and is done again.
        for _ in 0..2 {
            let received = receive(&env, 1).await;
            if failed_ids(&dispatch(&env, &deps, &received).await).is_empty() {
                break;
            }
        }
        assert!(fault.seen() >= 1, "{operation} was called");

        let stored = env.stored_endpoint(&gone.account, &gone.id).await;
        assert_eq!(stored.disabled_reason.as_deref(), Some(GONE), "{operation}");
        let jobs = env.queued_jobs().await;
        assert_eq!(jobs.len(), 1, "{operation}: {jobs:?}");
        assert_eq!(jobs[0].endpoint_id, watcher.id);
        assert_eq!(jobs[0].message_id, raise.message_id);
        assert!(
            env.store
                .get_message(&gone.account, &raise.message_id)
                .await
                .unwrap()
                .is_some()
        );
    }
}
