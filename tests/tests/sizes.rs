//! Events at the 256 KiB body limit — plain, full of characters JSON escapes, and
//! full of non-ASCII and control characters — reach 10, 100 (and, in the ignored
//! benchmark, 500) endpoints intact through `hookline dev`: every delivery signed
//! with its endpoint's secret and byte-equal to the event's standard body.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hookline_tests::{Dev, Receiver, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use shared::http::MAX_BODY_BYTES;

const CREATED_AT: &str = "2021-08-09T14:40:19.987691+00:00";

/// An event whose request body is exactly [`MAX_BODY_BYTES`]: `object.blob` made of
/// `units` in turn, topped up with `x`.
fn event_at_the_limit(units: &[&str]) -> (Value, Map<String, Value>) {
    let event = |blob: &str| {
        json!({
            "event_type": "sample.created", "dataset": "jane/flowers",
            "object": {"name": "big", "blob": blob},
            "text": "A big one.", "created_at": CREATED_AT, "api_version": "2021-08-01",
        })
    };
    // Grown by each unit's size inside a JSON string, not by serialising again.
    let mut size = event("").to_string().len();
    let mut blob = String::new();
    for unit in units.iter().cycle() {
        let unit_size = serde_json::to_string(unit).unwrap().len() - 2;
        if size + unit_size > MAX_BODY_BYTES {
            break;
        }
        blob.push_str(unit);
        size += unit_size;
    }
    blob.push_str(&"x".repeat(MAX_BODY_BYTES - size));
    let event = event(&blob);
    assert_eq!(event.to_string().len(), MAX_BODY_BYTES);
    let object = event["object"].as_object().unwrap().clone();
    (event, object)
}

/// What an endpoint must receive for an event with `object`: CONTRACT's standard body.
fn standard_body(object: &Map<String, Value>) -> String {
    format!(
        r#"{{"event_type":"sample.created","created_at":"{CREATED_AT}","api_version":"2021-08-01","dataset":"jane/flowers","object":{},"text":"A big one."}}"#,
        serde_json::to_string(object).unwrap()
    )
}

/// Posts three events at the size limit to `endpoints` endpoints and checks every
/// delivery; returns the slowest answer to a post, and how long from the first post
/// until the last delivery.
async fn deliver_at_the_limit(endpoints: usize) -> (Duration, Duration) {
    let dev = Dev::start(&["--instances", "2"]);
    let http = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let mut secrets = HashMap::new();
    for n in 0..endpoints {
        let path = format!("/ep/{n}");
        let created: Value = dev
            .request(&http, Method::POST, "/v1/accounts/jane/endpoints")
            .json(&json!({"url": receiver.url(&path)}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        secrets.insert(path, created["secret"].as_str().unwrap().to_string());
    }
    assert_eq!(secrets.len(), endpoints);

    let events = [
        event_at_the_limit(&["x"]),
        // Each takes two bytes in the request and the payload, four inside a job.
        event_at_the_limit(&["\"", "\\"]),
        event_at_the_limit(&["é", "😀", "\u{1}", "\u{ffff}", "\u{2028}", "<&'/>", "\t"]),
    ];
    let started = Instant::now();
    let mut slowest_answer = Duration::ZERO;
    let mut expected = HashMap::new();
    for (event, object) in &events {
        let posted = Instant::now();
        let response = dev
            .request(&http, Method::POST, "/v1/events")
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        slowest_answer = slowest_answer.max(posted.elapsed());
        let accepted: Value = response.json().await.unwrap();
        assert_eq!(accepted["endpoints"], endpoints);
        expected.insert(
            accepted["id"].as_str().unwrap().to_string(),
            standard_body(object),
        );
    }

    let wanted = endpoints * events.len();
    let deliveries = poll_until(
        Duration::from_secs(60 + 2 * wanted as u64 / 10),
        &format!("{wanted} distinct deliveries"),
        || async {
            let deliveries = receiver.deliveries();
            let distinct: HashSet<(String, String)> = deliveries
                .iter()
                .map(|d| (d.path.clone(), d.header("webhook-id").to_string()))
                .collect();
            (distinct.len() >= wanted).then_some(deliveries)
        },
    )
    .await;
    let took = started.elapsed();
    for delivery in &deliveries {
        let body = &expected[delivery.header("webhook-id")];
        assert!(
            delivery.body == body.as_bytes(),
            "the body to {} differs from the event's ({} bytes, {} expected)",
            delivery.path,
            delivery.body.len(),
            body.len()
        );
        standardwebhooks::Webhook::new(&secrets[&delivery.path])
            .unwrap()
            .verify(&delivery.body, &delivery.headers)
            .unwrap_or_else(|e| panic!("{} does not verify: {e:?}", delivery.path));
    }
    (slowest_answer, took)
}

fn report(endpoints: usize, (slowest_answer, took): (Duration, Duration)) {
    eprintln!(
        "3 events of 256 KiB to {endpoints} endpoints: slowest 202 after {slowest_answer:?}, \
         every delivery after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_size_limit_reach_ten_endpoints_intact() {
    report(10, deliver_at_the_limit(10).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_size_limit_reach_a_hundred_endpoints_intact() {
    report(100, deliver_at_the_limit(100).await);
}

/// A benchmark: `cargo test -p hookline-tests --test sizes -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark of some minutes; prints its time"]
async fn events_at_the_size_limit_reach_five_hundred_endpoints_intact() {
    report(500, deliver_at_the_limit(500).await);
}
