//! The dispatcher handler in-process: real receivers on 127.0.0.1, the emulator's
//! DynamoDB and SQS, SQS events built as Lambda sends them.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use dispatcher::{Deps, handle};
use hookline_tests::{Receiver, Reply, TestEnv, poll_until};
use serde_json::json;
use shared::ids::{EndpointId, MessageId};
use shared::model::{AttemptStatus, DeliveryJob, Endpoint, EndpointSecrets, Format};
use shared::signing::Secret;

const PAYLOAD: &str = r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{"name":"rose.png"},"text":"Sample rose.png created in dataset jane/flowers."}"#;

async fn setup() -> (TestEnv, Deps) {
    let env = TestEnv::new("1s,1s").await;
    let deps = Deps::new(env.store.clone(), env.queues.clone(), env.config.clone());
    (env, deps)
}

async fn add_endpoint(env: &TestEnv, url: String, format: Format) -> (EndpointId, Secret) {
    let (endpoint, secret) = env.add_endpoint("jane", &url, |e| e.format = format).await;
    (endpoint.id, secret)
}

fn job(endpoint: &EndpointId) -> DeliveryJob {
    DeliveryJob {
        message_id: MessageId::new(),
        endpoint_id: endpoint.clone(),
        account: "jane".into(),
        event_type: "sample.created".into(),
        payload: Some(PAYLOAD.into()),
    }
}

/// An SQS event as Lambda builds it; `bodies` are (sqs message id, body).
fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
    let records: Vec<_> = bodies
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": format!("receipt-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:delivery", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    let value = serde_json::to_value(response).unwrap();
    value["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_malformed_record_fails_alone_and_the_rest_are_delivered_signed() {
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
    assert_eq!(failed_ids(&response), ["bad"]);

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

    let attempts = env
        .store
        .attempts_of_message("jane", &first.message_id)
        .await
        .unwrap();
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
    let (endpoint_id, _) = add_endpoint(&env, failing.url("/hook"), Format::Standard).await;
    let job = job(&endpoint_id);
    env.queues
        .send_jobs(std::slice::from_ref(&job))
        .await
        .unwrap();
    let received = poll_until(Duration::from_secs(5), "the job on the queue", || async {
        let batch = env
            .queues
            .receive_delivery(1, Duration::from_secs(1))
            .await
            .unwrap();
        (!batch.is_empty()).then_some(batch)
    })
    .await;
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": received[0].message_id, "receiptHandle": received[0].receipt_handle,
        "body": received[0].body, "attributes": received[0].attributes,
    }]}))
    .unwrap();

    let response = handle(&deps, event).await;
    assert_eq!(failed_ids(&response), [received[0].message_id.clone()]);
    let attempts = env
        .store
        .attempts_of_message("jane", &job.message_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Failed);
    assert_eq!(attempt.response_status, Some(500));
    assert_eq!(attempt.error, None);
    let next = attempt.next_attempt_at.expect("a retry is scheduled");
    let delay = next - attempt.timestamp;
    assert!(
        delay >= time::Duration::milliseconds(800) && delay <= time::Duration::milliseconds(1200),
        "{delay}"
    );

    // The job comes back once the delay has run out, as its second receive.
    let again = poll_until(Duration::from_secs(10), "the job to come back", || async {
        let batch = env
            .queues
            .receive_delivery(1, Duration::from_secs(1))
            .await
            .unwrap();
        (!batch.is_empty()).then_some(batch)
    })
    .await;
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
    let attempts = env
        .store
        .attempts_of_message("jane", &job.message_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("endpoint deleted"));
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
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
    env.store
        .attempts_of_message("jane", &job.message_id)
        .await
        .unwrap()
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
    let attempts = env
        .store
        .attempts_of_message("jane", &first.message_id)
        .await
        .unwrap();
    assert_eq!(attempts[0].response_status, Some(410));
    assert_eq!(attempts[0].next_attempt_at, None);
    assert!(attempts[0].error.as_deref().unwrap().contains("disabled"));
    let (endpoint, _) = env
        .store
        .get_endpoint("jane", &endpoint_id)
        .await
        .unwrap()
        .unwrap();
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
        assert_eq!(delay, time::Duration::seconds(120), "{status}");
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
    let endpoint = Endpoint {
        id: EndpointId::new(),
        account: "jane".into(),
        url: receiver.url("/hook"),
        description: String::new(),
        version: 1,
        event_types: vec![],
        datasets: None,
        format: Format::Standard,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let (current, previous) = (Secret::generate(), Secret::generate());
    let secrets = EndpointSecrets {
        current: current.clone(),
        previous: Some((previous.clone(), now + time::Duration::hours(24))),
    };
    env.store
        .create_endpoint(&endpoint, &secrets)
        .await
        .unwrap();
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
