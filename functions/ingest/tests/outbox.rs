//! The outbox: a 202 always ends in delivery jobs. Ingest fans out inline; what
//! SQS did not take, and every large fan-out, goes to fan-out tasks that the
//! dispatcher (in-process here) turns into jobs under the same message id.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::SqsEvent;
use hookline_tests::TestEnv;
use hookline_tests::intercept::{InjectAt, Injected};
use ingest::{Deps, INLINE_JOBS, LARGE_FAN_OUT, handle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::ids::{EndpointId, MessageId};
use shared::model::{DeliveryJob, Recipient};
use shared::queue::Received;
use shared::task::{FAN_OUT_TASK_ENDPOINTS, FanOut, Task};

fn post(path: &str, key: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::Text(body.to_string()))
        .unwrap()
}

async fn call(deps: &Deps, req: Request) -> (StatusCode, Value) {
    let response = handle(deps, req).await;
    let status = response.status();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

async fn setup(endpoints: usize) -> (TestEnv, String, Vec<EndpointId>) {
    let env = TestEnv::new("1s").await;
    let key = env.api_key().await;
    let mut ids = Vec::new();
    for _ in 0..endpoints {
        ids.push(
            env.add_endpoint("jane", "https://example.com/hook", |_| {})
                .await
                .0
                .id,
        );
    }
    (env, key, ids)
}

fn deps(env: &TestEnv, (store, queues): (shared::store::Store, shared::queue::Queues)) -> Deps {
    Deps {
        store,
        queues,
        config: env.config.clone(),
    }
}

/// Everything the delivery queue holds now: delivery jobs, and tasks as received.
async fn drain(env: &TestEnv) -> (Vec<DeliveryJob>, Vec<(Task, Received)>) {
    let (mut jobs, mut tasks) = (Vec::new(), Vec::new());
    for received in env.receive_all_delivery().await {
        match Task::from_body(&received.body) {
            Some(task) => tasks.push((task.unwrap(), received)),
            None => jobs.push(serde_json::from_str(&received.body).unwrap()),
        }
    }
    (jobs, tasks)
}

/// Has the dispatcher do `tasks`, as Lambda would hand them over; none may fail.
async fn run_tasks(env: &TestEnv, tasks: &[(Task, Received)]) {
    let dispatcher =
        dispatcher::Deps::new(env.store.clone(), env.queues.clone(), env.config.clone());
    assert_eq!(dispatch(&dispatcher, tasks).await, 0);
}

/// Hands `tasks` to the dispatcher as Lambda would; how many it reported failed.
async fn dispatch(dispatcher: &dispatcher::Deps, tasks: &[(Task, Received)]) -> usize {
    let received: Vec<Received> = tasks.iter().map(|(_, r)| r.clone()).collect();
    let mut failed = 0;
    for batch in received.chunks(10) {
        let event: SqsEvent = serde_json::from_value(hookline_cli::local::event_source::sqs_event(
            batch,
            "arn:aws:sqs:us-east-1:123456789012:delivery",
        ))
        .unwrap();
        failed += dispatcher::handle(dispatcher, event)
            .await
            .batch_item_failures
            .len();
    }
    failed
}

/// Checks that each job names its endpoint's version as stored (and as the fan-out read
/// it), for the dispatcher to sign with nothing older.
async fn assert_name_versions_read(env: &TestEnv, jobs: &[DeliveryJob]) {
    for job in jobs {
        let stored = env.stored_endpoint(&job.account, &job.endpoint_id).await;
        assert_eq!(job.endpoint_updated_at, Some(stored.updated_at), "{job:?}");
    }
}

/// How many jobs each endpoint has, checking they all carry `message_id`.
fn per_endpoint(jobs: &[DeliveryJob], message_id: &Value) -> HashMap<EndpointId, usize> {
    let mut counts = HashMap::new();
    for job in jobs {
        assert_eq!(json!(job.message_id), *message_id);
        *counts.entry(job.endpoint_id.clone()).or_default() += 1;
    }
    counts
}

const EVENT: &str =
    r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{"name":"rose.png"}}"#;

#[tokio::test]
async fn a_fan_out_that_stops_part_way_is_finished_by_its_task() {
    let (env, key, endpoints) = setup(23).await;
    // The second SendMessageBatch call fails: ten jobs went out, thirteen did not.
    let refuse_second = InjectAt::new("SendMessageBatch", &[1], Injected::Refused);
    let ingest = deps(&env, env.intercepted(refuse_second.clone()).await);

    let (status, body) = call(&ingest, post("/v1/events", &key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], 23);
    let (jobs, tasks) = drain(&env).await;
    assert_eq!((jobs.len(), tasks.len()), (10, 1));
    let Task::FanOut(fan_out) = &tasks[0].0 else {
        panic!("a fan-out task: {:?}", tasks[0].0);
    };
    assert_eq!(fan_out.recipients.len(), 13);
    assert_eq!(json!(fan_out.message_id), body["id"]);

    run_tasks(&env, &tasks).await;
    let (rest, more_tasks) = drain(&env).await;
    assert!(more_tasks.is_empty());
    // The task's jobs name the endpoint versions the fan-out read, as the first ten do.
    assert_name_versions_read(&env, &[&jobs[..], &rest[..]].concat()).await;
    let counts = per_endpoint(&[jobs, rest].concat(), &body["id"]);
    assert_eq!(counts.len(), 23);
    assert!(endpoints.iter().all(|e| counts[e] == 1), "{counts:?}");
}

#[tokio::test]
async fn a_refused_task_is_sent_again_so_a_keyless_event_half_queued_is_still_accepted() {
    let (env, key, endpoints) = setup(23).await;
    // Ten jobs go out; the next batch and the task's first try are refused.
    let refuse = InjectAt::new("SendMessageBatch", &[1, 2], Injected::Refused);
    let ingest = deps(&env, env.intercepted(refuse.clone()).await);

    let (status, body) = call(&ingest, post("/v1/events", &key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        refuse.seen(),
        4,
        "two job batches and two tries of the task"
    );
    let (jobs, tasks) = drain(&env).await;
    assert_eq!((jobs.len(), tasks.len()), (10, 1));
    run_tasks(&env, &tasks).await;
    let (rest, _) = drain(&env).await;
    let counts = per_endpoint(&[jobs, rest].concat(), &body["id"]);
    assert!(endpoints.iter().all(|e| counts[e] == 1), "{counts:?}");
}

#[tokio::test]
async fn a_large_fan_out_is_handed_to_tasks_at_once() {
    let count = FAN_OUT_TASK_ENDPOINTS + 20;
    assert!(count > LARGE_FAN_OUT);
    let (env, key, endpoints) = setup(count).await;
    let counted = InjectAt::new("SendMessageBatch", &[], Injected::Refused);
    let ingest = deps(&env, env.intercepted(counted.clone()).await);

    let (status, body) = call(&ingest, post("/v1/events", &key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], count);
    assert_eq!(
        counted.seen(),
        1,
        "one SendMessageBatch call carries the tasks"
    );
    let (jobs, tasks) = drain(&env).await;
    assert_eq!((jobs.len(), tasks.len()), (0, 2));

    run_tasks(&env, &tasks).await;
    let (jobs, _) = drain(&env).await;
    let counts = per_endpoint(&jobs, &body["id"]);
    assert!(
        endpoints.iter().all(|e| counts.get(e) == Some(&1)),
        "{counts:?}"
    );
    assert!(jobs.iter().all(|j| j.payload.is_some()));
    assert_name_versions_read(&env, &jobs).await;
}

#[tokio::test]
async fn a_batch_enqueues_a_bounded_number_of_jobs_itself_and_hands_the_rest_to_tasks() {
    let endpoints_each = 30;
    let events = 10;
    assert!(endpoints_each <= LARGE_FAN_OUT && endpoints_each * events > INLINE_JOBS);
    let (env, key, endpoints) = setup(endpoints_each).await;
    let counted = InjectAt::new("SendMessageBatch", &[], Injected::Refused);
    let ingest = deps(&env, env.intercepted(counted.clone()).await);
    let batch = json!({"events": vec![serde_json::from_str::<Value>(EVENT).unwrap(); events]});

    let (status, body) = call(&ingest, post("/v1/events/batch", &key, &batch.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let answers = body["data"].as_array().unwrap();
    assert!(
        answers.iter().all(|a| a["endpoints"] == endpoints_each),
        "{body}"
    );
    // Whole events up to the budget go inline, ten jobs a call; the rest, one task
    // each, in one more call.
    let inline_events = INLINE_JOBS / endpoints_each;
    let inline_jobs = inline_events * endpoints_each;
    assert_eq!(counted.seen(), inline_jobs.div_ceil(10) + 1);
    let (jobs, tasks) = drain(&env).await;
    assert_eq!(
        (jobs.len(), tasks.len()),
        (inline_jobs, events - inline_events)
    );

    run_tasks(&env, &tasks).await;
    let (rest, _) = drain(&env).await;
    let all = [jobs, rest].concat();
    for answer in answers {
        let of_event: Vec<DeliveryJob> = all
            .iter()
            .filter(|job| json!(job.message_id) == answer["id"])
            .cloned()
            .collect();
        let counts = per_endpoint(&of_event, &answer["id"]);
        assert!(
            endpoints.iter().all(|e| counts.get(e) == Some(&1)),
            "{counts:?}"
        );
    }
}

#[tokio::test]
async fn when_not_even_a_task_can_be_sent_the_answer_is_500_and_the_retry_delivers_the_same_message()
 {
    let (env, key, endpoints) = setup(23).await;
    // Ten jobs go out; the next batch and then every try of the task are refused.
    let refuse = InjectAt::new("SendMessageBatch", &[1, 2, 3, 4], Injected::Refused);
    let broken = deps(&env, env.intercepted(refuse).await);
    let with_key =
        r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{},"id":"evt_half"}"#;
    let (status, body) = call(&broken, post("/v1/events", &key, with_key)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (first, _) = drain(&env).await;
    assert_eq!(first.len(), 10);

    // The platform retries at once: the key was let go, so the retry finishes the
    // same message rather than waiting for the lease or answering a duplicate.
    let healthy = deps(&env, (env.store.clone(), env.queues.clone()));
    let (status, retried) = call(&healthy, post("/v1/events", &key, with_key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried.get("duplicate"), None);
    assert_eq!(json!(first[0].message_id), retried["id"]);
    let (second, _) = drain(&env).await;
    let counts = per_endpoint(&second, &retried["id"]);
    assert!(endpoints.iter().all(|e| counts[e] == 1));

    // Without a key, a request that enqueued nothing takes its message back.
    let refuse_all = InjectAt::new("SendMessageBatch", &[0, 1, 2, 3, 4, 5], Injected::Refused);
    let broken = deps(&env, env.intercepted(refuse_all).await);
    let (status, _) = call(&broken, post("/v1/events", &key, EVENT)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(env.count_items("MSG#").await, 1);
    assert!(drain(&env).await.0.is_empty());
}

#[tokio::test]
async fn a_task_is_deleted_only_once_its_jobs_are_sent_and_never_revives_a_message_taken_back() {
    let (env, key, endpoints) = setup(3).await;
    let (status, body) = call(
        &deps(&env, (env.store.clone(), env.queues.clone())),
        post("/v1/events", &key, EVENT),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    drain(&env).await;
    let stored = MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    let recipients: Vec<Recipient> = endpoints.iter().cloned().map(Recipient::from).collect();
    let tasks: Vec<String> = [MessageId::new(), stored.clone()]
        .iter()
        .flat_map(|id| FanOut::split(id, &"jane".parse().unwrap(), &recipients))
        .map(|task| task.to_body())
        .collect();
    env.queues.send_bodies(&tasks).await.unwrap();
    let (_, received) = drain(&env).await;
    assert_eq!(received.len(), 2);

    // The jobs cannot be sent: the task with a message is reported failed, to come back.
    let unsendable = dispatcher::Deps::new(
        env.store.clone(),
        shared::queue::Queues::new(
            env.sqs.clone(),
            format!("{}-missing", env.queues.delivery_url()),
            env.queues.dlq_url(),
        ),
        env.config.clone(),
    );
    assert_eq!(dispatch(&unsendable, &received).await, 1);

    // Then it can: the jobs of the stored message go out; the other task finds no
    // message (taken back by a request that answered 500) and enqueues nothing.
    run_tasks(&env, &received).await;
    let (jobs, _) = drain(&env).await;
    let counts = per_endpoint(&jobs, &json!(stored));
    assert!(endpoints.iter().all(|e| counts[e] == 1), "{counts:?}");
    assert_eq!(jobs.len(), endpoints.len());
}
