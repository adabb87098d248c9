//! The DLQ and recovery routes' handlers in-process, against the emulator's SQS and
//! DynamoDB: what they queue, what they leave, and their tenant checks.

use std::time::{Duration, Instant};

use api::{Deps, dlq, recovery};
use hookline_tests::{TestEnv, poll_until};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::ids::{AttemptId, EndpointId, MessageId};
use shared::model::{Attempt, AttemptStatus, DeliveryJob, Message};
use shared::recover::BUDGET;
use shared::task::Task;
use time::OffsetDateTime;

async fn setup() -> (TestEnv, Deps) {
    let env = TestEnv::new("1s").await;
    let deps = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        config: env.config.clone(),
    };
    (env, deps)
}

fn request(body: Option<Value>) -> Request {
    let builder = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/json");
    builder
        .body(body.map_or(Body::Empty, |b| Body::Text(b.to_string())))
        .unwrap()
}

fn read(response: Result<Response<Body>, shared::http::ApiError>) -> (StatusCode, Value) {
    let response = response.unwrap_or_else(|e| e.into_response());
    let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    (response.status(), body)
}

async fn add_endpoint(env: &TestEnv, account: &str) -> EndpointId {
    env.add_endpoint(account, "http://127.0.0.1:9/hook", |_| {})
        .await
        .0
        .id
}

async fn add_message(env: &TestEnv, account: &str) -> Message {
    let message = Message {
        id: MessageId::new(),
        account: account.parse().unwrap(),
        event_type: "sample.created".parse().unwrap(),
        dataset: format!("{account}/flowers"),
        created_at: "2021-08-09T14:40:19Z".into(),
        payload: r#"{"event_type":"sample.created","text":"hi"}"#.into(),
        received_at: OffsetDateTime::now_utc(),
    };
    env.store.insert_message(&message, None).await.unwrap();
    message
}

fn job(endpoint: &EndpointId, event_type: &str) -> DeliveryJob {
    DeliveryJob {
        message_id: MessageId::new(),
        endpoint_id: endpoint.clone(),
        account: "jane".parse().unwrap(),
        event_type: event_type.parse().unwrap(),
        payload: Some("{}".into()),
        endpoint_updated_at: None,
        after_failing: false,
    }
}

/// Every job waiting on the delivery queue (received, so hidden afterwards).
async fn queued_jobs(env: &TestEnv) -> Vec<DeliveryJob> {
    let mut jobs = Vec::new();
    loop {
        let batch = env
            .queues
            .receive_delivery(10, Duration::from_secs(1))
            .await
            .unwrap();
        if batch.is_empty() {
            return jobs;
        }
        jobs.extend(batch.iter().map(|m| serde_json::from_str(&m.body).unwrap()));
    }
}

/// The message ids of every job waiting on the delivery queue, sorted; duplicates kept.
async fn queued_ids(env: &TestEnv) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> = queued_jobs(env)
        .await
        .into_iter()
        .map(|j| j.message_id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<MessageId>) -> Vec<MessageId> {
    ids.sort();
    ids
}

async fn put_in_dlq(env: &TestEnv, jobs: &[&DeliveryJob]) {
    for job in jobs {
        env.sqs
            .send_message()
            .queue_url(env.queues.dlq_url())
            .message_body(serde_json::to_string(job).unwrap())
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn dlq_replay_moves_only_what_the_filter_names_and_keeps_message_ids() {
    let (env, deps) = setup().await;
    let (a, b) = (EndpointId::new(), EndpointId::new());
    let a_sample = job(&a, "sample.created");
    let a_issue = job(&a, "issue.created");
    let b_sample = job(&b, "sample.created");
    put_in_dlq(&env, &[&a_sample, &a_issue, &b_sample]).await;
    // A body that is not a job at all stays for a person to look at.
    env.sqs
        .send_message()
        .queue_url(env.queues.dlq_url())
        .message_body("{not a job")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read(dlq::stats(&deps).await),
        (StatusCode::OK, json!({"approximate_messages": 4}))
    );

    let (status, body) = read(
        dlq::replay(
            &deps,
            &request(Some(
                json!({"endpoint_id": a.as_str(), "event_type": "issue.created"}),
            )),
        )
        .await,
    );
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"replayed": 1, "skipped": 3}))
    );
    let replayed = queued_jobs(&env).await;
    assert_eq!(replayed, vec![a_issue.clone()]);
    // Skipped jobs are visible in the DLQ again at once.
    assert_eq!(
        read(dlq::stats(&deps).await).1,
        json!({"approximate_messages": 3})
    );

    let (_, body) = read(dlq::replay(&deps, &request(Some(json!({"limit": 1})))).await);
    assert_eq!(body["replayed"], 1);
    let (_, body) = read(dlq::replay(&deps, &request(None)).await);
    assert_eq!(body, json!({"replayed": 1, "skipped": 1}));
    assert_eq!(
        queued_ids(&env).await,
        sorted(vec![a_sample.message_id, b_sample.message_id])
    );

    let (status, body) = read(dlq::replay(&deps, &request(Some(json!({"limit": 0})))).await);
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("validation_error"))
    );
}

#[tokio::test]
async fn a_test_event_goes_to_that_endpoint_only() {
    let (env, deps) = setup().await;
    let endpoint = add_endpoint(&env, "jane").await;
    add_endpoint(&env, "jane").await;
    let (status, body) = read(
        recovery::send_test(
            &deps,
            &"jane".parse().unwrap(),
            endpoint.as_str(),
            &request(Some(json!({"event_type": "issue.created"}))),
        )
        .await,
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    let jobs = queued_jobs(&env).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (&jobs[0].message_id, &jobs[0].endpoint_id),
        (&id, &endpoint)
    );
    assert_eq!(jobs[0].event_type, "issue.created");
    let message = env
        .store
        .get_message(&"jane".parse().unwrap(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.dataset, "jane/hookline-test");

    let (status, body) = read(
        recovery::send_test(
            &deps,
            &"jane".parse().unwrap(),
            endpoint.as_str(),
            &request(Some(json!({"event_type": "nope"}))),
        )
        .await,
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("validation_error"))
    );
    // Another account's endpoint is not found.
    let (status, _) = read(
        recovery::send_test(
            &deps,
            &"john".parse().unwrap(),
            endpoint.as_str(),
            &request(None),
        )
        .await,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_message_is_replayed_under_its_own_id() {
    let (env, deps) = setup().await;
    let endpoint = add_endpoint(&env, "jane").await;
    let message = add_message(&env, "jane").await;
    let replay = || async {
        read(
            recovery::replay_message(
                &deps,
                &"jane".parse().unwrap(),
                endpoint.as_str(),
                message.id.as_str(),
            )
            .await,
        )
    };
    assert_eq!(
        replay().await,
        (StatusCode::ACCEPTED, json!({"id": message.id}))
    );
    let jobs = queued_jobs(&env).await;
    // The job names the endpoint as the api read it.
    let stored = env
        .stored_endpoint(&"jane".parse().unwrap(), &endpoint)
        .await;
    assert_eq!(jobs, vec![DeliveryJob::new(&message, &stored)]);

    // Failed four times there, so `failing` was raised: the replay says so, for its
    // success to say `recovered` though its attempts count afresh.
    let first = record(&env, &message, &endpoint, AttemptStatus::Failed).await;
    for number in 2..=4 {
        let failed = Attempt {
            id: AttemptId::new(),
            attempt: number,
            ..first.clone()
        };
        env.store.put_attempt(&failed).await.unwrap();
    }
    assert_eq!(replay().await.0, StatusCode::ACCEPTED);
    let jobs = queued_jobs(&env).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].after_failing);

    let johns = add_message(&env, "john").await;
    for (account, endpoint_id, message_id) in [
        ("jane", endpoint.as_str(), johns.id.as_str()),
        ("jane", endpoint.as_str(), "msg_missing"),
        ("jane", "ep_missing", message.id.as_str()),
        ("john", endpoint.as_str(), johns.id.as_str()),
    ] {
        let (status, _) = read(
            recovery::replay_message(&deps, &account.parse().unwrap(), endpoint_id, message_id)
                .await,
        );
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{account} {endpoint_id} {message_id}"
        );
    }
    assert!(queued_jobs(&env).await.is_empty());
}

async fn record(
    env: &TestEnv,
    message: &Message,
    endpoint: &EndpointId,
    status: AttemptStatus,
) -> Attempt {
    let attempt = Attempt {
        id: AttemptId::new(),
        message_id: message.id.clone(),
        endpoint_id: endpoint.clone(),
        account: "jane".parse().unwrap(),
        event_type: message.event_type.clone(),
        attempt: 1,
        status,
        response_status: Some(if status == AttemptStatus::Failed {
            500
        } else {
            204
        }),
        response_body: String::new(),
        error: None,
        duration_ms: 3,
        timestamp: OffsetDateTime::now_utc(),
        next_attempt_at: None,
    };
    env.store.put_attempt(&attempt).await.unwrap();
    attempt
}

#[tokio::test]
async fn recover_redelivers_what_last_failed_within_the_window() {
    let (env, deps) = setup().await;
    let endpoint = add_endpoint(&env, "jane").await;
    let other = add_endpoint(&env, "jane").await;
    let before = add_message(&env, "jane").await;
    let early = record(&env, &before, &endpoint, AttemptStatus::Failed).await;
    // The window starts after the first attempt's millisecond.
    let since = poll_until(Duration::from_secs(5), "the clock to move on", || async {
        let now = OffsetDateTime::now_utc();
        (now - early.timestamp >= time::Duration::milliseconds(2)).then_some(now)
    })
    .await;
    let failed = add_message(&env, "jane").await;
    let redelivered = add_message(&env, "jane").await;
    let elsewhere = add_message(&env, "jane").await;
    record(&env, &failed, &endpoint, AttemptStatus::Failed).await;
    record(&env, &redelivered, &endpoint, AttemptStatus::Failed).await;
    record(&env, &redelivered, &endpoint, AttemptStatus::Succeeded).await;
    record(&env, &failed, &endpoint, AttemptStatus::Failed).await;
    record(&env, &elsewhere, &other, AttemptStatus::Failed).await;

    let window = json!({"since": shared::timefmt::format(since)});
    let (status, body) = read(
        recovery::recover(
            &deps,
            &"jane".parse().unwrap(),
            endpoint.as_str(),
            &request(Some(window.clone())),
            BUDGET,
        )
        .await,
    );
    assert_eq!(
        (status, body),
        (
            StatusCode::ACCEPTED,
            json!({"queued": 1, "continuing": false})
        )
    );
    let jobs = queued_jobs(&env).await;
    // The dispatcher reads the message when it delivers, and delivers with the
    // endpoint as the recovery read it or newer.
    let stored = env
        .stored_endpoint(&"jane".parse().unwrap(), &endpoint)
        .await;
    let expected = DeliveryJob {
        payload: None,
        ..DeliveryJob::new(&failed, &stored)
    };
    assert_eq!(jobs, vec![expected]);

    let (status, body) = read(
        recovery::recover(
            &deps,
            &"jane".parse().unwrap(),
            endpoint.as_str(),
            &request(None),
            BUDGET,
        )
        .await,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = read(
        recovery::recover(
            &deps,
            &"john".parse().unwrap(),
            endpoint.as_str(),
            &request(Some(window)),
            BUDGET,
        )
        .await,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_filtered_replay_moves_each_match_once_past_many_skipped_jobs() {
    let (env, deps) = setup().await;
    let (a, b) = (EndpointId::new(), EndpointId::new());
    let mut wanted = Vec::new();
    let mut all = Vec::new();
    for n in 0..60 {
        // More skipped jobs than one receive returns lie ahead of and between the matches.
        let job = if n % 3 == 2 {
            let job = job(&a, "sample.created");
            wanted.push(job.message_id.clone());
            job
        } else {
            job(&b, "sample.created")
        };
        all.push(job);
    }
    put_in_dlq(&env, &all.iter().collect::<Vec<_>>()).await;

    let (status, body) =
        read(dlq::replay(&deps, &request(Some(json!({"endpoint_id": a.as_str()})))).await);
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"replayed": 20, "skipped": 40}))
    );
    assert_eq!(
        queued_ids(&env).await,
        sorted(wanted),
        "each match once, nothing else"
    );
    // The skipped jobs are all visible in the DLQ again at once.
    assert_eq!(env.queue_depth(env.queues.dlq_url()).await, 40);
}

#[tokio::test]
async fn a_replay_out_of_time_says_it_is_incomplete_and_the_next_does_the_rest() {
    let env = TestEnv::new("1s").await;
    let endpoint = EndpointId::new();
    let jobs: Vec<DeliveryJob> = (0..15).map(|_| job(&endpoint, "sample.created")).collect();
    put_in_dlq(&env, &jobs.iter().collect::<Vec<_>>()).await;
    let filter = shared::redrive::Filter::default();

    let late = shared::redrive::redrive(&env.queues, &filter, Some(Instant::now()), |_| {})
        .await
        .unwrap();
    assert_eq!((late.replayed, late.complete), (0, false));
    assert_eq!(
        serde_json::to_value(late).unwrap(),
        json!({"replayed": 0, "skipped": 0, "complete": false})
    );

    let rest = shared::redrive::redrive(&env.queues, &filter, None, |_| {})
        .await
        .unwrap();
    assert_eq!((rest.replayed, rest.skipped, rest.complete), (15, 0, true));
    assert_eq!(
        queued_ids(&env).await,
        sorted(jobs.into_iter().map(|j| j.message_id).collect())
    );
    assert_eq!(env.queue_depth(env.queues.dlq_url()).await, 0);
}

/// Attempts to `endpoint` in which `count` messages last failed, plus attempts that
/// must not change that: an earlier failure of every third message, and messages
/// whose last attempt succeeded. Written 25 at a time. Returns the failed ones.
async fn seed_failures(env: &TestEnv, endpoint: &EndpointId, count: usize) -> Vec<MessageId> {
    let attempt = |message: &MessageId, status| Attempt {
        id: AttemptId::new(),
        message_id: message.clone(),
        endpoint_id: endpoint.clone(),
        account: "jane".parse().unwrap(),
        event_type: "sample.created".parse().unwrap(),
        attempt: 1,
        status,
        response_status: Some(500),
        response_body: String::new(),
        error: None,
        duration_ms: 3,
        timestamp: OffsetDateTime::now_utc(),
        next_attempt_at: None,
    };
    let failed: Vec<MessageId> = (0..count).map(|_| MessageId::new()).collect();
    let delivered: Vec<MessageId> = (0..count / 10).map(|_| MessageId::new()).collect();
    let mut attempts: Vec<Attempt> = failed
        .iter()
        .step_by(3)
        .chain(&delivered)
        .map(|m| attempt(m, AttemptStatus::Failed))
        .collect();
    // Attempt ids are ULIDs, ordered by their millisecond only: those made a
    // millisecond later are the messages' last attempts.
    std::thread::sleep(Duration::from_millis(2));
    attempts.extend(failed.iter().map(|m| attempt(m, AttemptStatus::Failed)));
    attempts.extend(
        delivered
            .iter()
            .map(|m| attempt(m, AttemptStatus::Succeeded)),
    );
    env.store.put_attempts(&attempts).await.unwrap();
    failed
}

/// Drains the delivery queue, continuing every recover task found there as the
/// dispatcher does (within `budget` each); returns the message ids of every job,
/// duplicates kept, sorted, and the number of tasks run.
async fn drain_recovery(env: &TestEnv, budget: Duration) -> (Vec<MessageId>, usize) {
    let mut ids = Vec::new();
    let mut tasks = 0;
    loop {
        let batch = env
            .queues
            .receive_delivery(10, Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            ids.sort();
            return (ids, tasks);
        }
        let handles: Vec<String> = batch.iter().map(|r| r.receipt_handle.clone()).collect();
        env.queues.delete_delivered(&handles).await.unwrap();
        for received in batch {
            if let Some(task) = Task::from_body(&received.body) {
                let Ok(Task::Recover(part)) = task else {
                    panic!("not a recover task: {}", received.body);
                };
                assert!(
                    part.before.is_some(),
                    "a continuation starts after a cursor"
                );
                let deadline = Instant::now() + budget;
                shared::recover::run(&env.store, &env.queues, &part, deadline)
                    .await
                    .unwrap();
                tasks += 1;
            } else {
                let job: DeliveryJob = serde_json::from_str(&received.body).unwrap();
                assert_eq!(job.payload, None);
                assert!(job.endpoint_updated_at.is_some(), "continuations too");
                ids.push(job.message_id);
            }
        }
    }
}

/// What recovering many failed messages came to.
struct Recovered {
    /// The API's answer.
    answer: Value,
    /// The message ids of every job queued, duplicates kept, sorted.
    queued: Vec<MessageId>,
    /// The message ids that last failed, sorted.
    failed: Vec<MessageId>,
    /// Continuations run.
    tasks: usize,
    /// From the API call to the last job queued, seeding aside.
    took: Duration,
}

/// Recovers `count` failed messages with `budget` per part.
async fn recover_many(count: usize, budget: Duration) -> Recovered {
    let (env, deps) = setup().await;
    let endpoint = add_endpoint(&env, "jane").await;
    let since = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let failed = sorted(seed_failures(&env, &endpoint, count).await);
    let window = json!({"since": shared::timefmt::format(since)});
    let started = Instant::now();
    let (status, answer) = read(
        recovery::recover(
            &deps,
            &"jane".parse().unwrap(),
            endpoint.as_str(),
            &request(Some(window)),
            budget,
        )
        .await,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (queued, tasks) = drain_recovery(&env, budget).await;
    Recovered {
        answer,
        queued,
        failed,
        tasks,
        took: started.elapsed(),
    }
}

#[tokio::test]
async fn recover_queues_each_failed_message_once_across_continuations() {
    // No time at all: every part reads one page and hands the rest on.
    let run = recover_many(800, Duration::ZERO).await;
    assert_eq!(run.answer["continuing"], true, "{}", run.answer);
    assert!(
        run.tasks >= 2,
        "the rest went on in {} continuations",
        run.tasks
    );
    let first = usize::try_from(run.answer["queued"].as_u64().unwrap()).unwrap();
    assert!(0 < first && first < run.failed.len(), "{}", run.answer);
    assert_eq!(run.queued.len(), run.failed.len(), "none twice");
    assert_eq!(run.queued, run.failed, "every one once");
}

/// `make bench`: 10,000 failed messages with the API's own budget; prints the
/// time and the process's peak memory. moto answers each Query by reading every
/// item of the table (about 15,000 here), so on moto the run is moto's: a loaded
/// 2-core machine spent 52 min of moto's CPU on it in 75 min before it was
/// stopped, against 64 s of this process's CPU and a 28 MiB peak.
#[tokio::test]
#[ignore = "a benchmark: make bench"]
async fn recover_of_ten_thousand_failed_messages() {
    let run = recover_many(10_000, BUDGET).await;
    assert_eq!(run.queued, run.failed, "every one once");
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:").map(str::trim).map(String::from))
        .unwrap_or_default();
    println!(
        "recover of {} failed messages: {:.1?} in all, {} continuations; the API answered {}; \
         peak memory of the test process (VmHWM) {peak}",
        run.failed.len(),
        run.took,
        run.tasks,
        run.answer
    );
}
