//! Noisy endpoints isolated (ADR 7), through `hookline dev` with its default
//! instance count: twenty endpoints of their own accounts hang past a 3 s timeout
//! under a steady stream of their events, and a healthy endpoint of another account
//! still gets its events within 2 s (p95). The figures, alone and beside the hanging
//! ones, are printed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_tests::{Dev, Receiver, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HANGING: usize = 20;
/// One event to a hanging endpoint every this long, round the twenty: 5 a second.
const HANGING_EVERY: Duration = Duration::from_millis(200);
/// One event to the healthy endpoint every this long.
const HEALTHY_EVERY: Duration = Duration::from_millis(250);
const HEALTHY_ALONE: usize = 12;
const HEALTHY_BESIDE: usize = 48;
const P95_BOUND: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(30);

async fn endpoint(dev: &Dev, http: &reqwest::Client, account: &str, url: String) {
    let (status, answer) = dev
        .send(
            http,
            Method::POST,
            &format!("/v1/accounts/{account}/endpoints"),
            json!({"url": url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Posts an event of `account`'s dataset; its message id and when it was posted.
async fn post(dev: &Dev, http: &reqwest::Client, account: &str) -> (String, Instant) {
    let posted = Instant::now();
    let (status, answer) = dev
        .send(
            http,
            Method::POST,
            "/v1/events",
            json!({"event_type": "sample.created", "dataset": format!("{account}/data"), "object": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["endpoints"], 1, "{answer}");
    (answer["id"].as_str().unwrap().to_string(), posted)
}

/// Posts `count` healthy events, one every [`HEALTHY_EVERY`], and returns each
/// one's time from its post to its delivery.
async fn healthy_latencies(
    dev: &Dev,
    http: &reqwest::Client,
    receiver: &Receiver,
    count: usize,
) -> Vec<Duration> {
    let already = receiver.deliveries().len();
    let mut posted = HashMap::new();
    let mut tick = tokio::time::interval(HEALTHY_EVERY);
    for _ in 0..count {
        tick.tick().await;
        let (id, at) = post(dev, http, "calm").await;
        posted.insert(id, at);
    }
    let deliveries = receiver.wait_for(already + count, WAIT).await;
    deliveries[already..]
        .iter()
        .map(|delivery| {
            let sent = posted[delivery.header("webhook-id")];
            delivery.at.duration_since(sent)
        })
        .collect()
}

fn p95(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() * 95).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hanging_endpoints_do_not_delay_a_healthy_one() {
    let dev = Dev::start(&["--request-timeout-ms", "3000"]);
    let http = reqwest::Client::new();
    let healthy = Receiver::start().await;
    endpoint(&dev, &http, "calm", healthy.url("/hook")).await;
    let mut hanging = Vec::new();
    for n in 0..HANGING {
        let receiver = Receiver::closed().await;
        endpoint(&dev, &http, &format!("noisy{n}"), receiver.url("/hook")).await;
        hanging.push(receiver);
    }

    let alone = healthy_latencies(&dev, &http, &healthy, HEALTHY_ALONE).await;

    // The hanging endpoints' stream runs until the healthy events are all delivered.
    let stream_dev = Arc::new(dev);
    let streaming = tokio::spawn({
        let dev = stream_dev.clone();
        let http = http.clone();
        async move {
            let mut tick = tokio::time::interval(HANGING_EVERY);
            for n in 0.. {
                tick.tick().await;
                post(&dev, &http, &format!("noisy{}", n % HANGING)).await;
            }
        }
    });
    let beside = healthy_latencies(&stream_dev, &http, &healthy, HEALTHY_BESIDE).await;
    streaming.abort();
    let _ = streaming.await;

    let (alone_p95, beside_p95) = (p95(&alone), p95(&beside));
    println!(
        "healthy endpoint, event to delivery: p95 {} ms alone ({} events), {} ms beside {HANGING} endpoints hanging past 3 s ({} events; max {} ms)",
        alone_p95.as_millis(),
        alone.len(),
        beside_p95.as_millis(),
        beside.len(),
        beside.iter().max().unwrap().as_millis(),
    );

    // The hanging endpoints were tried (so they did hang a dispatcher), and their
    // jobs went to the slow lane.
    for receiver in &hanging {
        receiver.wait_for(1, WAIT).await;
    }
    let moved = poll_until(WAIT, "jobs moved to the slow lane", || async {
        let log = stream_dev.log();
        let moved = emf_count(&log, "moved");
        (moved > 0 && emf_count(&log, "marked") > 0).then_some(moved)
    })
    .await;
    println!("jobs moved to the slow lane: {moved}");
    assert!(
        beside_p95 < P95_BOUND,
        "p95 {beside_p95:?} beside hanging endpoints"
    );
}

/// The isolation decisions of one kind the dispatcher's EMF lines counted so far.
fn emf_count(log: &str, decision: &str) -> u64 {
    log.lines()
        .filter_map(|line| line.strip_prefix("[dispatcher] "))
        .filter_map(shared::metrics::parse)
        .map(|parsed| parsed.root)
        .filter(|root| root.get(shared::metrics::DECISION) == Some(&Value::from(decision)))
        .filter_map(|root| root[shared::metrics::ISOLATION_DECISIONS].as_f64())
        .map(|n| n as u64)
        .sum()
}
