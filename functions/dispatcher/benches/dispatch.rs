//! `cargo bench -p hookline-dispatcher`: the dispatcher handler against a local
//! keep-alive receiver, next to a bare POST loop on the same receiver with the same
//! client settings and concurrency. Prints deliveries per second and their ratio.
//!
//! The handler's extra work per delivery is signing, the cached endpoint read and
//! one attempt write to the table (here: the emulator, far slower than DynamoDB),
//! so the ratio shows what recording every attempt costs on this machine.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use dispatcher::{Deps, handle, http_client};
use hookline_tests::{Receiver, TestEnv};
use serde_json::json;
use shared::ids::{EndpointId, MessageId};
use shared::model::DeliveryJob;

const DELIVERIES: usize = 500;
/// An SQS event source mapping's largest batch: the handler's concurrency.
const BATCH: usize = 10;
const PAYLOAD: &str = r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{"name":"rose.png"},"text":"Sample rose.png created in dataset jane/flowers."}"#;

fn batch_event(endpoint: &EndpointId, first: usize) -> SqsEvent {
    let records: Vec<_> = (first..first + BATCH)
        .map(|n| {
            let job = DeliveryJob {
                message_id: MessageId::new(),
                endpoint_id: endpoint.clone(),
                account: "jane".parse().unwrap(),
                event_type: "sample.created".parse().unwrap(),
                payload: Some(PAYLOAD.into()),
                endpoint_updated_at: None,
                after_failing: false,
            };
            json!({
                "messageId": format!("m{n}"), "receiptHandle": format!("r{n}"),
                "body": serde_json::to_string(&job).unwrap(),
                "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let env = TestEnv::new("1s").await;
    let receiver = Receiver::statuses(&[]).await;
    let (endpoint, _) = env
        .add_endpoint("jane", &receiver.url("/hook"), |_| {})
        .await;
    let deps = Deps::new(env.store.clone(), env.queues.clone(), env.config.clone());

    // Warm both paths: connections open, endpoint cached.
    handle(&deps, batch_event(&endpoint.id, 0)).await;
    let bare = http_client(&env.config);
    let post = || {
        bare.post(&endpoint.url)
            .header("content-type", "application/json")
            .body(PAYLOAD)
            .send()
    };
    futures::future::join_all((0..BATCH).map(|_| post())).await;

    let started = Instant::now();
    for first in (0..DELIVERIES).step_by(BATCH) {
        let answers = futures::future::join_all((first..first + BATCH).map(|_| post())).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|r| r.status().is_success()))
        );
    }
    let bare_rate = rate(DELIVERIES, started.elapsed());

    let before = receiver.successes().len();
    let started = Instant::now();
    for first in (0..DELIVERIES).step_by(BATCH) {
        let response = handle(&deps, batch_event(&endpoint.id, first)).await;
        assert!(
            serde_json::to_value(&response).unwrap()["batchItemFailures"]
                .as_array()
                .is_none_or(|failures| failures.is_empty())
        );
    }
    let handler_rate = rate(DELIVERIES, started.elapsed());
    assert_eq!(receiver.successes().len() - before, DELIVERIES);

    // The attempt writes alone, as concurrent as the handler makes them: its floor here.
    let started = Instant::now();
    for _ in (0..DELIVERIES).step_by(BATCH) {
        let writes = (0..BATCH).map(|_| {
            let attempt = shared::model::Attempt {
                id: shared::ids::AttemptId::new(),
                message_id: MessageId::new(),
                endpoint_id: endpoint.id.clone(),
                account: "jane".parse().unwrap(),
                event_type: "sample.created".parse().unwrap(),
                attempt: 1,
                status: shared::model::AttemptStatus::Succeeded,
                response_status: Some(204),
                response_body: String::new(),
                error: None,
                duration_ms: 1,
                timestamp: time::OffsetDateTime::now_utc(),
                next_attempt_at: None,
            };
            let store = env.store.clone();
            async move { store.put_attempt(&attempt).await.unwrap() }
        });
        futures::future::join_all(writes).await;
    }
    let write_rate = rate(DELIVERIES, started.elapsed());

    println!(
        "deliveries: {DELIVERIES} in batches of {BATCH}, one keep-alive receiver on 127.0.0.1"
    );
    println!("bare POST loop:     {bare_rate:>8.0} deliveries/s");
    println!(
        "dispatcher handler: {handler_rate:>8.0} deliveries/s (signed, cached endpoint, one attempt write each)"
    );
    println!("attempt writes:     {write_rate:>8.0} writes/s (the table alone, same concurrency)");
    println!("ratio handler/bare: {:>8.3}", handler_rate / bare_rate);
    println!("ratio handler/writes: {:>6.2}", handler_rate / write_rate);
}
