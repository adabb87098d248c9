//! Reliable delivery end to end: `hookline dev` on an emulator of the test's own,
//! real receivers scripted to fail, hang, redirect or ramble, and the operator's
//! `hookline dlq` commands against the same queues.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hookline_cli::emulator::Emulator;
use hookline_tests::{Delivery, Dev, Receiver, Reply, binary, children_of, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::ids::{EndpointId, MessageId};
use shared::model::{Attempt, AttemptStatus, DeliveryJob};
use shared::queue::Queues;
use shared::store::Store;

/// Long enough for a few scheduled retries on a busy two-core machine.
const SETTLE: Duration = Duration::from_secs(60);

/// `hookline dev` over an emulator the test can reach too.
struct Stack {
    // Dropped first: dev stops before its emulator does.
    dev: Dev,
    http: reqwest::Client,
    store: Store,
    queues: Queues,
    sqs: aws_sdk_sqs::Client,
    emulator_url: String,
    _emulator: Emulator,
}

impl Stack {
    async fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[]).await
    }

    async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let emulator = Emulator::start().expect("the emulator starts");
        let emulator_url = emulator.url().to_string();
        let mut args = vec!["--emulator", emulator_url.as_str()];
        args.extend_from_slice(extra);
        let dev = Dev::start_with_env(&args, env);
        let sdk = shared::aws::for_emulator(&emulator_url).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queues = Queues::new(
            sqs.clone(),
            hookline_tests::queue_url(&sqs, hookline_cli::local::DELIVERY_QUEUE).await,
            hookline_tests::queue_url(&sqs, hookline_cli::local::DLQ).await,
        );
        let store = Store::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            hookline_cli::local::TABLE,
            Duration::from_secs(86_400),
        );
        Self {
            dev,
            http: reqwest::Client::new(),
            store,
            queues,
            sqs,
            emulator_url,
            _emulator: emulator,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.dev.request(&self.http, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// Creates an endpoint of `jane` and returns its id and secret.
    async fn endpoint(&self, body: Value) -> (EndpointId, String) {
        let (status, created) = self
            .call(Method::POST, "/v1/accounts/jane/endpoints", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (
            EndpointId::parse(created["id"].as_str().unwrap()).unwrap(),
            created["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Posts an event to `jane/<dataset>` and returns its message id.
    async fn event(&self, event_type: &str, dataset: &str) -> MessageId {
        let (status, accepted) = self
            .call(
                Method::POST,
                "/v1/events",
                Some(json!({
                    "event_type": event_type,
                    "dataset": format!("jane/{dataset}"),
                    "object": {"name": "rose.png"},
                })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        MessageId::parse(accepted["id"].as_str().unwrap()).unwrap()
    }

    async fn attempts(&self, message: &MessageId) -> Vec<Attempt> {
        let mut attempts = self
            .store
            .attempts_of_message(&"jane".parse().unwrap(), message)
            .await
            .unwrap();
        attempts.sort_by_key(|a| (a.timestamp, a.id.clone()));
        attempts
    }

    /// Waits for `count` attempts of `message`, and returns them oldest first.
    async fn wait_for_attempts(&self, message: &MessageId, count: usize) -> Vec<Attempt> {
        poll_until(
            SETTLE,
            &format!("{count} attempts of {message}"),
            || async {
                let attempts = self.attempts(message).await;
                (attempts.len() >= count).then_some(attempts)
            },
        )
        .await
    }

    /// Jobs visible or in flight on a queue.
    async fn depth(&self, url: &str) -> usize {
        hookline_tests::queue_depth(&self.sqs, url).await
    }

    /// Waits until the delivery queue holds nothing, visible or in flight, for a second.
    async fn wait_for_drain(&self, timeout: Duration) {
        let url = self.queues.delivery_url();
        assert!(
            hookline_tests::wait_until_empty(&self.sqs, url, timeout).await,
            "the delivery queue did not drain within {timeout:?}"
        );
    }

    async fn wait_for_dlq(&self, count: usize) {
        poll_until(SETTLE, &format!("{count} jobs in the DLQ"), || async {
            (self.depth(self.queues.dlq_url()).await == count).then_some(())
        })
        .await;
    }

    /// Runs `hookline dlq …` against this stack's queues; returns stdout and stderr.
    async fn dlq(&self, args: &[&str]) -> (String, String) {
        let output = tokio::process::Command::new(binary("hookline"))
            .arg("dlq")
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.emulator_url)
            .env("AWS_REGION", shared::aws::EMULATOR_REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env(
                shared::config::DELIVERY_QUEUE_URL,
                self.queues.delivery_url(),
            )
            .env(shared::config::DLQ_URL, self.queues.dlq_url())
            .output()
            .await
            .expect("hookline runs");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "hookline dlq {args:?}: {stderr}");
        (stdout, stderr)
    }

    async fn replay(&self, args: &[&str]) -> Value {
        let mut all = vec!["replay"];
        all.extend_from_slice(args);
        let (stdout, stderr) = self.dlq(&all).await;
        assert!(stderr.contains("replayed "), "progress is shown: {stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    }
}

fn verify(secret: &str, delivery: &Delivery) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&delivery.body, &delivery.headers)
        .unwrap_or_else(|e| panic!("{secret:.10}… does not verify the delivery: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_on_the_schedule_until_it_succeeds() {
    let stack = Stack::start(&["--retry-schedule", "1s,1s,1s"]).await;
    let receiver = Receiver::statuses(&[500, 503, 429]).await;
    let (_, secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let message = stack.event("sample.created", "flowers").await;

    let attempts = stack.wait_for_attempts(&message, 4).await;
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 4);
    for delivery in &deliveries {
        assert_eq!(delivery.header("webhook-id"), message.as_str());
        verify(&secret, delivery);
    }
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.status,
                a.response_status,
                a.next_attempt_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, AttemptStatus::Failed, Some(500), true),
            (2, AttemptStatus::Failed, Some(503), true),
            (3, AttemptStatus::Failed, Some(429), true),
            (4, AttemptStatus::Succeeded, Some(204), false),
        ]
    );
    assert!(attempts.iter().all(|a| a.error.is_none()));
    stack.wait_for_drain(SETTLE).await;
    assert_eq!(stack.depth(stack.queues.dlq_url()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_job_waits_in_the_dlq_and_a_replay_delivers_it_under_the_same_id() {
    let stack = Stack::start(&["--retry-schedule", "1s,1s,1s"]).await;
    let receiver = Receiver::statuses(&[500, 500, 500, 500]).await;
    let (_, secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let message = stack.event("sample.created", "flowers").await;

    stack.wait_for_dlq(1).await;
    let attempts = stack.attempts(&message).await;
    assert_eq!(attempts.len(), 4);
    assert_eq!(
        attempts[3].next_attempt_at, None,
        "the last attempt says none follows"
    );
    // The dispatcher parked it: dev's redrive waits for the margin's extra receives.
    use aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy;
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(stack.queues.delivery_url())
        .attribute_names(RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: Value =
        serde_json::from_str(&attributes.attributes().unwrap()[&RedrivePolicy]).unwrap();
    let schedule = shared::retry::RetrySchedule::parse("1s,1s,1s").unwrap();
    assert_eq!(policy["maxReceiveCount"], schedule.max_receive_count());
    let (stats, _) = stack.dlq(&["stats"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(stats.trim()).unwrap(),
        json!({"approximate_messages": 1})
    );

    assert_eq!(
        stack.replay(&[]).await,
        json!({"replayed": 1, "skipped": 0})
    );
    let delivered = receiver.wait_for(5, SETTLE).await;
    assert_eq!(delivered[4].header("webhook-id"), message.as_str());
    verify(&secret, &delivered[4]);
    let attempts = stack.wait_for_attempts(&message, 5).await;
    assert_eq!(attempts[4].status, AttemptStatus::Succeeded);
    assert_eq!(stack.depth(stack.queues.dlq_url()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_leave_the_other_jobs_in_the_dlq() {
    let stack = Stack::start(&["--retry-schedule", "1s"]).await;
    // Two events, two attempts each, fail at both receivers; replays then succeed.
    let a = Receiver::statuses(&[500; 4]).await;
    let b = Receiver::statuses(&[500; 4]).await;
    let (a_id, _) = stack.endpoint(json!({"url": a.url("/a")})).await;
    let (b_id, _) = stack.endpoint(json!({"url": b.url("/b")})).await;
    let sample = stack.event("sample.created", "flowers").await;
    let issue = stack.event("issue.created", "flowers").await;
    stack.wait_for_dlq(4).await;

    let replayed = stack
        .replay(&["--endpoint", a_id.as_str(), "--event-type", "issue.created"])
        .await;
    assert_eq!(replayed, json!({"replayed": 1, "skipped": 3}));
    let delivered = a.wait_for(5, SETTLE).await;
    assert_eq!(delivered[4].header("webhook-id"), issue.as_str());
    stack.wait_for_dlq(3).await;

    assert_eq!(
        stack.replay(&["--endpoint", a_id.as_str()]).await,
        json!({"replayed": 1, "skipped": 2})
    );
    let delivered = a.wait_for(6, SETTLE).await;
    assert_eq!(delivered[5].header("webhook-id"), sample.as_str());
    stack.wait_for_dlq(2).await;
    assert_eq!(b.deliveries().len(), 4, "b's jobs stayed in the DLQ");

    assert_eq!(stack.replay(&["--limit", "1"]).await["replayed"], 1);
    let delivered = b.wait_for(5, SETTLE).await;
    stack.wait_for_dlq(1).await;
    let first_back = delivered[4].header("webhook-id").to_string();
    assert!([sample.as_str(), issue.as_str()].contains(&first_back.as_str()));
    let _ = b_id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_endpoint_and_its_jobs_stop() {
    let stack = Stack::start(&["--retry-schedule", "1s,1s,1s"]).await;
    let receiver = Receiver::statuses(&[410]).await;
    let (id, _) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let message = stack.event("sample.created", "flowers").await;
    let attempts = stack.wait_for_attempts(&message, 1).await;
    assert_eq!(attempts[0].response_status, Some(410));
    assert_eq!(attempts[0].next_attempt_at, None);
    let (_, endpoint) = stack
        .call(
            Method::GET,
            &format!("/v1/accounts/jane/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(endpoint["disabled"], true, "{endpoint}");

    // A disabled endpoint takes no new jobs, and its queue drains without retries.
    let (_, accepted) = stack
        .call(
            Method::POST,
            "/v1/events",
            Some(json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}})),
        )
        .await;
    assert_eq!(accepted["endpoints"], 0);
    stack.wait_for_drain(SETTLE).await;
    assert_eq!(receiver.deliveries().len(), 1);
    assert_eq!(stack.depth(stack.queues.dlq_url()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_second_receiver_does_not_hold_up_ten_fast_deliveries() {
    // The attempt timeout is longer than the slow answer, so a dispatcher that waited
    // for it before the rest would let it answer first.
    let stack = Stack::start(&["--request-timeout-ms", "30000"]).await;
    let slow = Receiver::scripted(|_, _| Reply::status(204).after(Duration::from_secs(20))).await;
    let fast = Receiver::statuses(&[]).await;
    stack.endpoint(json!({"url": slow.url("/slow")})).await;
    for n in 0..10 {
        stack
            .endpoint(json!({"url": fast.url(&format!("/fast/{n}"))}))
            .await;
    }
    let message = stack.event("sample.created", "flowers").await;

    slow.wait_for(1, SETTLE).await;
    // Delivery is at least once, so wait for ten distinct endpoints, not ten requests.
    let fast_deliveries = poll_until(SETTLE, "all ten fast endpoints", || async {
        let deliveries = fast.deliveries();
        let paths: HashSet<_> = deliveries.iter().map(|d| d.path.clone()).collect();
        (paths.len() == 10).then_some(deliveries)
    })
    .await;
    assert_eq!(
        slow.answered(),
        0,
        "all ten fast deliveries came while the slow one hung"
    );
    assert!(
        fast_deliveries
            .iter()
            .all(|d| d.header("webhook-id") == message.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_long_answers_are_cut() {
    let stack = Stack::start(&["--retry-schedule", ""]).await;
    let elsewhere = Receiver::statuses(&[]).await;
    let target = elsewhere.url("/elsewhere");
    let redirecting =
        Receiver::scripted(move |_, _| Reply::status(307).header("location", target.clone())).await;
    let rambling = Receiver::scripted(|_, _| Reply::status(200).body_of(16 << 20)).await;
    stack
        .endpoint(json!({"url": redirecting.url("/hook"), "event_types": ["sample.created"]}))
        .await;
    stack
        .endpoint(json!({"url": rambling.url("/hook"), "event_types": ["issue.created"]}))
        .await;

    let redirected = stack.event("sample.created", "flowers").await;
    let attempts = stack.wait_for_attempts(&redirected, 1).await;
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
    assert_eq!(attempts[0].response_status, Some(307));
    // One attempt in the schedule: straight to the DLQ, and never to the redirect's target.
    stack.wait_for_dlq(1).await;
    assert!(elsewhere.deliveries().is_empty());

    let rambled = stack.event("issue.created", "flowers").await;
    let attempts = stack.wait_for_attempts(&rambled, 1).await;
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    assert_eq!(attempts[0].response_body.len(), 4096);
    assert!(attempts[0].response_body.bytes().all(|b| b == b'x'));

    // A Slack incoming webhook gets only the text, signed all the same.
    let slack = Receiver::statuses(&[]).await;
    let (_, secret) = stack
        .endpoint(json!({"url": slack.url("/slack"), "format": "slack", "event_types": ["release.created"]}))
        .await;
    stack.event("release.created", "flowers").await;
    let delivery = &slack.wait_for(1, SETTLE).await[0];
    let body = delivery.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert!(
        body["text"].as_str().unwrap().contains("jane/flowers"),
        "{body}"
    );
    verify(&secret, delivery);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_rotation_both_secrets_sign_and_an_independent_verifier_accepts_each() {
    let stack = Stack::start(&[]).await;
    let receiver = Receiver::statuses(&[]).await;
    let (id, old_secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    // Delivered before the rotation: the dispatcher instances keep the endpoint a
    // few seconds.
    for _ in 0..4 {
        stack.event("sample.created", "flowers").await;
    }
    for delivery in receiver.wait_for(4, SETTLE).await {
        verify(&old_secret, &delivery);
    }
    let (status, rotated) = stack
        .call(
            Method::POST,
            &format!("/v1/accounts/jane/endpoints/{id}/secret/rotate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);

    // Events accepted after the rotation are signed with the new secret at once.
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(stack.event("sample.created", "flowers").await);
    }
    let delivered = receiver.wait_for(7, SETTLE).await;
    for delivery in &delivered[4..] {
        assert!(
            messages
                .iter()
                .any(|m| delivery.header("webhook-id") == m.as_str())
        );
        assert_eq!(delivery.header("webhook-signature").split(' ').count(), 2);
        verify(&new_secret, delivery);
        verify(&old_secret, delivery);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_does_not_fail_the_good_ones_in_its_batch() {
    // Retried on a schedule of hours, the malformed record would not reach the DLQ in this test.
    let stack = Stack::start(&["--retry-schedule", "1h"]).await;
    let receiver = Receiver::statuses(&[]).await;
    let (id, secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let payload = r#"{"event_type":"sample.created","created_at":"2021-08-09T14:40:19Z","api_version":"2021-08-01","dataset":"jane/flowers","object":{},"text":"t"}"#;
    let good: Vec<DeliveryJob> = (0..3)
        .map(|_| DeliveryJob {
            message_id: MessageId::new(),
            endpoint_id: id.clone(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            payload: Some(payload.into()),
            endpoint_updated_at: None,
            after_failing: false,
        })
        .collect();
    let mut bodies = vec!["{\"message_id\": 42, oops".to_string()];
    bodies.extend(good.iter().map(|j| serde_json::to_string(j).unwrap()));
    // One SendMessageBatch, so the four travel together.
    stack.queues.send_bodies(&bodies).await.unwrap();

    let delivered = receiver.wait_for(3, SETTLE).await;
    let ids: HashSet<&str> = delivered.iter().map(|d| d.header("webhook-id")).collect();
    let expected: HashSet<&str> = good.iter().map(|j| j.message_id.as_str()).collect();
    assert_eq!(ids, expected);
    delivered.iter().for_each(|d| verify(&secret, d));
    // The malformed one went to the DLQ at its first receive.
    stack.wait_for_dlq(1).await;
    let dead = stack
        .queues
        .receive_dead(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, bodies[0]);
    assert_eq!(receiver.deliveries().len(), 3);
    stack.wait_for_drain(SETTLE).await;
}

/// The pids of `dev`'s dispatcher instances.
fn dispatchers(dev: &Dev) -> Vec<u32> {
    children_of(dev.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                cmd.split('\0')
                    .next()
                    .is_some_and(|p| p.ends_with("/dispatcher"))
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_dispatcher_dies_mid_run() {
    const EVENTS: usize = 300;
    let stack = Stack::start(&[
        "--retry-schedule",
        "1s,1s,1s",
        "--request-timeout-ms",
        "1000",
        "--visibility-timeout",
        "8",
    ])
    .await;
    // Each receiver fails about a third of its requests, at random.
    let flaky = || {
        Receiver::scripted(|_, _| {
            let roll = ulid::Ulid::new().random() % 3;
            Reply::status(if roll == 0 { 500 } else { 204 })
        })
    };
    let receivers = [flaky().await, flaky().await, flaky().await];
    let datasets = ["flowers", "trees", "birds"];
    for (receiver, dataset) in receivers.iter().zip(datasets) {
        stack
            .endpoint(
                json!({"url": receiver.url("/hook"), "datasets": [format!("jane/{dataset}")]}),
            )
            .await;
    }
    let mut accepted = HashSet::new();
    let mut killed = Vec::new();
    for n in 0..EVENTS {
        accepted.insert(
            stack
                .event("sample.created", datasets[n % 3])
                .await
                .to_string(),
        );
        if n == EVENTS / 2 {
            // Mid-run: every dispatcher instance dies, batches in hand.
            killed = dispatchers(&stack.dev);
            assert!(!killed.is_empty(), "dispatcher instances are running");
            for pid in &killed {
                // SAFETY: kill(2) on a process this test's dev started.
                unsafe {
                    libc::kill(*pid as i32, libc::SIGKILL);
                }
            }
        }
    }
    let restarted = poll_until(SETTLE, "the dispatchers to be replaced", || async {
        let now = dispatchers(&stack.dev);
        (!now.is_empty() && now.iter().all(|p| !killed.contains(p))).then_some(now)
    })
    .await;
    assert!(!restarted.is_empty());

    let delivered = |receivers: &[Receiver]| -> HashSet<String> {
        receivers
            .iter()
            .flat_map(|r| r.successes())
            .map(|d| d.header("webhook-id").to_string())
            .collect()
    };
    // Settled: nothing left on the delivery queue, visible or in flight.
    stack.wait_for_drain(Duration::from_secs(180)).await;
    let in_dlq = dlq_messages(&stack).await;
    let delivered_before = delivered(&receivers);
    let accounted: HashSet<String> = delivered_before.union(&in_dlq).cloned().collect();
    let missing: Vec<_> = accepted.difference(&accounted).collect();
    let requests: usize = receivers.iter().map(|r| r.deliveries().len()).sum();
    println!(
        "fault test: {} events accepted, {} requests made, {} delivered, {} in the DLQ ({} of them never delivered), {} missing",
        accepted.len(),
        requests,
        delivered_before.len(),
        in_dlq.len(),
        in_dlq.difference(&delivered_before).count(),
        missing.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");

    // Replays: the DLQ's jobs go back, and since the receivers still fail a third of the
    // time, a replayed job may land there again; a few rounds deliver every event.
    let mut rounds = Vec::new();
    let mut all = delivered(&receivers);
    for _ in 0..5 {
        if all.is_superset(&accepted) {
            break;
        }
        let waiting = dlq_messages(&stack).await;
        let replayed = stack.replay(&[]).await;
        assert_eq!(replayed["replayed"], waiting.len());
        rounds.push(waiting.len());
        poll_until(SETTLE, "the replayed jobs to settle", || async {
            (stack.depth(stack.queues.delivery_url()).await == 0).then_some(())
        })
        .await;
        all = delivered(&receivers);
    }
    println!(
        "fault test: replay rounds moved {rounds:?} jobs; {} of {} events delivered",
        accepted.intersection(&all).count(),
        accepted.len()
    );
    let still_missing: Vec<_> = accepted.difference(&all).collect();
    assert!(
        still_missing.is_empty(),
        "not delivered after the replays: {still_missing:?}"
    );
}

/// The message ids of the jobs in the DLQ, which stay there (made visible again).
async fn dlq_messages(stack: &Stack) -> HashSet<String> {
    let mut seen = HashMap::new();
    loop {
        let batch = stack
            .queues
            .receive_dead(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for received in batch {
            let job: DeliveryJob = serde_json::from_str(&received.body).unwrap();
            seen.insert(received.receipt_handle, job.message_id.to_string());
        }
    }
    let handles: Vec<String> = seen.keys().cloned().collect();
    stack.queues.release_dead(&handles).await.unwrap();
    seen.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_deleting_an_endpoint_stops_its_pending_retries() {
    // Retries come at least 4 s apart, longer than the dispatcher caches an endpoint.
    let stack = Stack::start(&["--retry-schedule", "5s,5s,5s"]).await;
    let receiver = Receiver::statuses(&[500; 8]).await;
    let (disabled, _) = stack
        .endpoint(json!({"url": receiver.url("/disabled"), "event_types": ["sample.created"]}))
        .await;
    let (deleted, _) = stack
        .endpoint(json!({"url": receiver.url("/deleted"), "event_types": ["issue.created"]}))
        .await;
    let first = stack.event("sample.created", "flowers").await;
    let second = stack.event("issue.created", "flowers").await;
    stack.wait_for_attempts(&first, 1).await;
    stack.wait_for_attempts(&second, 1).await;

    let (status, _) = stack
        .call(
            Method::PATCH,
            &format!("/v1/accounts/jane/endpoints/{disabled}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/accounts/jane/endpoints/{deleted}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let requests_before = receiver.deliveries().len();

    for (message, why) in [(&first, "endpoint disabled"), (&second, "endpoint deleted")] {
        let attempts = poll_until(SETTLE, why, || async {
            let attempts = stack.attempts(message).await;
            attempts
                .last()
                .is_some_and(|a| a.error.as_deref() == Some(why))
                .then_some(attempts)
        })
        .await;
        assert!(attempts.len() >= 2, "{why}: {attempts:?}");
    }
    stack.wait_for_drain(SETTLE).await;
    // A retry already under way when the change landed may still have gone out,
    // but none after a cache lifetime: at most one per job.
    let after = receiver.deliveries().len() - requests_before;
    assert!(after <= 2, "{after} requests after the change");
    assert_eq!(
        stack.depth(stack.queues.dlq_url()).await,
        0,
        "dropped, not dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_function_redrives_what_its_event_filters() {
    use hookline_cli::local::runtime::{self, FunctionSpec};

    let emulator = Emulator::start().expect("the emulator starts");
    let sdk = shared::aws::for_emulator(emulator.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (delivery_url, dlq_url) =
        shared::queue::create_queues(&sqs, "delivery", "dlq", 2, Duration::from_secs(30))
            .await
            .unwrap();
    let queues = Queues::new(sqs.clone(), &delivery_url, &dlq_url);
    let (a, b) = (EndpointId::new(), EndpointId::new());
    let jobs: Vec<DeliveryJob> = [&a, &b, &a]
        .into_iter()
        .map(|endpoint| DeliveryJob {
            message_id: MessageId::new(),
            endpoint_id: endpoint.clone(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            payload: None,
            endpoint_updated_at: None,
            after_failing: false,
        })
        .collect();
    for job in &jobs {
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(serde_json::to_string(job).unwrap())
            .send()
            .await
            .unwrap();
    }

    let env = [
        ("AWS_ENDPOINT_URL", emulator.url()),
        ("AWS_REGION", shared::aws::EMULATOR_REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        (shared::config::TABLE, "unused"),
        (shared::config::DELIVERY_QUEUE_URL, delivery_url.as_str()),
        (shared::config::DLQ_URL, dlq_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (replay, _tasks, _ready) = runtime::start(
        FunctionSpec {
            name: "replay",
            binary: binary("replay"),
            env,
            timeout: Duration::from_secs(60),
            instances: 1,
        },
        shutdown,
    )
    .await
    .unwrap();

    let answer = replay
        .invoke(json!({"endpoint_id": a.as_str()}))
        .await
        .expect("the replay function answers");
    assert_eq!(answer, json!({"replayed": 2, "skipped": 1}));
    let mut back = Vec::new();
    while let Ok(batch) = queues.receive_delivery(10, Duration::from_secs(1)).await {
        if batch.is_empty() {
            break;
        }
        back.extend(
            batch
                .into_iter()
                .map(|m| serde_json::from_str::<DeliveryJob>(&m.body).unwrap()),
        );
    }
    back.sort_by(|x, y| x.message_id.cmp(&y.message_id));
    let mut expected = vec![jobs[0].clone(), jobs[2].clone()];
    expected.sort_by(|x, y| x.message_id.cmp(&y.message_id));
    assert_eq!(back, expected);
    assert_eq!(
        replay.invoke(Value::Null).await.unwrap(),
        json!({"replayed": 1, "skipped": 0})
    );
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_recovers_an_outage_replays_a_message_and_sends_a_test_event() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // One attempt per job: what fails during the outage stays failed until recovered.
    let stack = Stack::start(&["--retry-schedule", ""]).await;
    let healthy = Arc::new(AtomicBool::new(true));
    let up = healthy.clone();
    let receiver = Receiver::scripted(move |_, _| {
        Reply::status(if up.load(Ordering::SeqCst) { 204 } else { 500 })
    })
    .await;
    let (id, secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let since = shared::timefmt::format(time::OffsetDateTime::now_utc());
    let delivered = stack.event("sample.created", "flowers").await;
    stack.wait_for_attempts(&delivered, 1).await;

    healthy.store(false, Ordering::SeqCst);
    let mut failed = Vec::new();
    for _ in 0..3 {
        failed.push(stack.event("issue.created", "flowers").await);
    }
    for message in &failed {
        stack.wait_for_attempts(message, 1).await;
    }
    healthy.store(true, Ordering::SeqCst);

    let (status, body) = stack
        .call(
            Method::POST,
            &format!("/v1/accounts/jane/endpoints/{id}/recover"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::ACCEPTED,
            json!({"queued": 3, "continuing": false})
        )
    );
    let recovered: HashSet<String> = receiver
        .wait_for(1 + 3 + 3, SETTLE)
        .await
        .iter()
        .skip(4)
        .map(|d| {
            verify(&secret, d);
            d.header("webhook-id").to_string()
        })
        .collect();
    let expected: HashSet<String> = failed.iter().map(|m| m.to_string()).collect();
    assert_eq!(recovered, expected);

    // One message again, under its own id.
    let (status, _) = stack
        .call(
            Method::POST,
            &format!("/v1/accounts/jane/endpoints/{id}/messages/{delivered}/replay"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let again = receiver.wait_for(8, SETTLE).await;
    assert_eq!(again[7].header("webhook-id"), delivered.as_str());

    // A test event, to this endpoint only, signed like any other.
    let (status, test) = stack
        .call(
            Method::POST,
            &format!("/v1/accounts/jane/endpoints/{id}/test"),
            Some(json!({"event_type": "release.created"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{test}");
    let sent = receiver.wait_for(9, SETTLE).await;
    assert_eq!(sent[8].header("webhook-id"), test["id"].as_str().unwrap());
    assert_eq!(sent[8].json()["event_type"], "release.created");
    verify(&secret, &sent[8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_routes_count_and_replay_with_a_filter() {
    let stack = Stack::start(&["--retry-schedule", ""]).await;
    let a = Receiver::statuses(&[500]).await;
    let b = Receiver::statuses(&[500]).await;
    let (a_id, _) = stack.endpoint(json!({"url": a.url("/a")})).await;
    stack.endpoint(json!({"url": b.url("/b")})).await;
    let message = stack.event("dataset.updated", "flowers").await;
    stack.wait_for_dlq(2).await;
    let (status, body) = stack.call(Method::GET, "/v1/dlq", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"approximate_messages": 2}))
    );

    let (status, body) = stack
        .call(
            Method::POST,
            "/v1/dlq/replay",
            Some(json!({"endpoint_id": a_id.as_str(), "limit": 5})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"replayed": 1, "skipped": 1}))
    );
    let delivered = a.wait_for(2, SETTLE).await;
    assert_eq!(delivered[1].header("webhook-id"), message.as_str());
    stack.wait_for_dlq(1).await;
    assert_eq!(b.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_names_a_secret_or_a_key_even_at_trace_level() {
    // Every line the functions can write, the AWS SDK's and the Lambda runtime's included.
    let mut stack =
        Stack::start_with_env(&["--retry-schedule", "1s"], &[("RUST_LOG", "trace")]).await;
    let receiver = Receiver::statuses(&[500]).await;
    let (id, first_secret) = stack.endpoint(json!({"url": receiver.url("/hook")})).await;
    let secret_path = format!("/v1/accounts/jane/endpoints/{id}/secret");
    let (status, read) = stack.call(Method::GET, &secret_path, None).await;
    assert_eq!(
        (status, &read["secret"]),
        (StatusCode::OK, &json!(first_secret))
    );
    let (status, rotated) = stack
        .call(Method::POST, &format!("{secret_path}/rotate"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second_secret = rotated["secret"].as_str().unwrap().to_string();
    let (status, _) = stack
        .call(
            Method::GET,
            &format!("/v1/accounts/bob/endpoints/{id}/secret"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let wrong_key = shared::keys::generate();
    let refused = stack
        .http
        .post(stack.dev.url("/v1/events"))
        .bearer_auth(&wrong_key)
        .json(&json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // One failed attempt and one success, each signed with both secrets.
    let message = stack.event("sample.created", "flowers").await;
    let delivered = receiver.wait_for(2, SETTLE).await;
    assert_eq!(receiver.successes().len(), 1);
    verify(&first_secret, &delivered[1]);
    verify(&second_secret, &delivered[1]);

    // Stopped, so every line the functions wrote has been passed on.
    assert!(stack.dev.interrupt(Duration::from_secs(15)).is_some());
    let log = stack.dev.log();
    assert!(log.contains(message.as_str()), "the log was captured");
    assert!(
        log.contains(r#"[api] {"level":"TRACE""#),
        "the functions logged at TRACE, as JSON lines"
    );
    let secret_bytes = |secret: &str| secret.trim_start_matches("whsec_").to_string();
    for (what, text) in [
        ("the first secret", secret_bytes(&first_secret)),
        ("the second secret", secret_bytes(&second_secret)),
        ("the platform key", stack.dev.api_key.clone()),
        ("the refused key", wrong_key),
    ] {
        assert!(!log.contains(&text), "the log names {what}");
    }
    assert!(!log.contains("whsec_"), "the log names a secret");
}
