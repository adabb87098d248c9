//! The dispatcher handler in-process: real receivers on 127.0.0.1, the emulator's
//! DynamoDB and SQS, SQS events built as Lambda sends them.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use dispatcher::{Deps, handle, http_client};
use hookline_tests::{Receiver, TestEnv, poll_until};
use serde_json::json;
use shared::ids::{EndpointId, MessageId};
use shared::model::{AttemptStatus, DeliveryJob, Endpoint, EndpointSecrets, Format};
use shared::signing::Secret;

const PAYLOAD: &str = r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{"name":"rose.png"},"text":"Sample rose.png created in dataset jane/flowers."}"#;

async fn setup() -> (TestEnv, Deps) {
    let env = TestEnv::new("1s,1s").await;
    let deps = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        http: http_client(&env.config),
        config: env.config.clone(),
    };
    (env, deps)
}

async fn add_endpoint(env: &TestEnv, url: String, format: Format) -> (EndpointId, Secret) {
    let now = time::OffsetDateTime::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new(),
        account: "jane".into(),
        url,
        description: String::new(),
        version: 1,
        event_types: vec![],
        datasets: None,
        format,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let secret = Secret::generate();
    env.store
        .create_endpoint(&endpoint, &EndpointSecrets::new(secret.clone()))
        .await
        .unwrap();
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
    let failing = Receiver::answering(&[500]).await;
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
