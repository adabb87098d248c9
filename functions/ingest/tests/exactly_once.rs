//! Exactly once per idempotency key, in-process against the emulator: the claim and
//! the message in one transaction, a lost answer recognised as our own, 409 while
//! the first request is at work, 422 for another event, duplicates once done, and a
//! claim whose request died taken over under the same message id.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_tests::TestEnv;
use hookline_tests::faults::FaultProxy;
use hookline_tests::intercept::{InjectAt, Injected};
use ingest::{Deps, handle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::model::Message;
use shared::store::{Claim, Inserted};
use time::OffsetDateTime;

const EVENT: &str = r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{"name":"rose.png"},"id":"evt_1"}"#;
const OTHER_EVENT: &str = r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{"name":"tulip.png"},"id":"evt_1"}"#;

fn post(key: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::Text(body.to_string()))
        .unwrap()
}

fn read(response: &Response<Body>) -> (StatusCode, Value) {
    (
        response.status(),
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

async fn call(deps: &Deps, req: Request) -> (StatusCode, Value) {
    read(&handle(deps, req).await)
}

async fn setup() -> (TestEnv, Deps, String) {
    let env = TestEnv::new("1s").await;
    let key = env.api_key().await;
    env.add_endpoint("jane", "https://example.com/hook", |_| {})
        .await;
    let deps = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        config: env.config.clone(),
    };
    (env, deps, key)
}

/// `body` as ingest makes it a message, and its fingerprint.
fn message_of(env: &TestEnv, body: &str) -> (Message, String) {
    let body: Value = serde_json::from_str(body).unwrap();
    let event = shared::event::parse(
        body.as_object().unwrap(),
        None,
        &shared::catalog::Catalog::default(),
    )
    .unwrap();
    let fingerprint = event.fingerprint();
    (
        event.into_message(&env.config.api_version, OffsetDateTime::now_utc()),
        fingerprint,
    )
}

/// A first request that has claimed `evt_1` for `EVENT` and stored its message, and is
/// still at work.
async fn claimed_by_a_first_request(env: &TestEnv) -> Message {
    let (message, fingerprint) = message_of(env, EVENT);
    let claim = Claim {
        key: "evt_1",
        fingerprint: &fingerprint,
    };
    let inserted = env
        .store
        .insert_message(&message, Some(claim))
        .await
        .unwrap();
    assert_eq!(inserted, Inserted::New);
    message
}

#[tokio::test]
async fn the_same_key_with_another_event_is_422_and_once_done_a_repeat_is_a_duplicate() {
    let (env, deps, key) = setup().await;
    let (status, first) = call(&deps, post(&key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["endpoints"], 1);

    let (status, body) = call(&deps, post(&key, OTHER_EVENT)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");

    // The same event with its keys in another order is the same event.
    let reordered = r#"{"id":"evt_1","object":{"name":"rose.png"},"dataset":"jane/flowers","event_type":"sample.created"}"#;
    let (status, again) = call(&deps, post(&key, reordered)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        again,
        json!({"id": first["id"], "endpoints": 0, "duplicate": true})
    );

    assert_eq!(env.count_items("MSG#").await, 1);
    assert_eq!(env.queued_jobs().await.len(), 1);
}

#[tokio::test]
async fn while_the_first_request_is_at_work_the_answer_is_409_with_retry_after() {
    let (env, deps, key) = setup().await;
    let first = claimed_by_a_first_request(&env).await;

    let response = handle(&deps, post(&key, EVENT)).await;
    let (status, body) = read(&response);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Another event under the key is still refused as such, not asked to wait.
    let (status, _) = call(&deps, post(&key, OTHER_EVENT)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(env.queued_jobs().await.is_empty());

    // A repeat that arrives while the first finishes waits for it and is a duplicate.
    let (answer, ()) = tokio::join!(call(&deps, post(&key, EVENT)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.store
            .complete_message(&first, Some("evt_1"))
            .await
            .unwrap();
    });
    assert_eq!(
        answer,
        (
            StatusCode::ACCEPTED,
            json!({"id": first.id, "endpoints": 0, "duplicate": true})
        )
    );
    assert!(env.queued_jobs().await.is_empty());
}

#[tokio::test]
async fn a_claim_whose_request_died_is_taken_over_and_finished_under_the_same_id() {
    let (env, deps, key) = setup().await;
    let first = claimed_by_a_first_request(&env).await;
    // Its lease ran out: the request that held it is gone.
    env.dynamodb
        .update_item()
        .table_name(&env.config.table)
        .key("pk", AttributeValue::S("IDEM#jane#evt_1".into()))
        .key("sk", AttributeValue::S("IDEM".into()))
        .update_expression("SET lease_until = :past")
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();

    let (status, body) = call(&deps, post(&key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"id": first.id, "endpoints": 1}));
    let jobs_now = env.queued_jobs().await;
    assert_eq!(jobs_now.len(), 1);
    assert_eq!(jobs_now[0].message_id, first.id);
    let (_, again) = call(&deps, post(&key, EVENT)).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(env.count_items("MSG#").await, 1);
}

#[tokio::test]
async fn a_lost_answer_is_recognised_as_our_own_write() {
    let (env, _, key) = setup().await;
    for (operation, body) in [
        ("TransactWriteItems", EVENT),
        (
            "PutItem",
            r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{}}"#,
        ),
    ] {
        // The first try reaches the table; its answer becomes a 500 and the SDK sends it again.
        let lose_first = InjectAt::new(operation, &[0], Injected::AnswerLost);
        let (store, queues) = env.intercepted(lose_first.clone()).await;
        let deps = Deps {
            store,
            queues,
            config: env.config.clone(),
        };
        let (status, accepted) = call(&deps, post(&key, body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{operation}: {accepted}");
        assert_eq!(lose_first.seen(), 2, "{operation} was sent again");
        assert_eq!(accepted.get("duplicate"), None, "{operation}");
        assert_eq!(accepted["endpoints"], 1);
        let jobs = env.queued_jobs().await;
        assert_eq!(jobs.len(), 1, "{operation}");
        assert_eq!(json!(jobs[0].message_id), accepted["id"]);
    }
    assert_eq!(env.count_items("MSG#").await, 2);
    assert_eq!(env.count_items("IDEM#").await, 1);
}

#[tokio::test]
async fn a_failed_claim_transaction_stores_nothing_and_the_key_stays_free() {
    let (env, _, key) = setup().await;
    let refuse = InjectAt::new("TransactWriteItems", &[0], Injected::Refused);
    let (store, queues) = env.intercepted(refuse).await;
    let broken = Deps {
        store,
        queues,
        config: env.config.clone(),
    };
    let (status, _) = call(&broken, post(&key, EVENT)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(env.count_items("MSG#").await, 0);
    assert_eq!(env.count_items("IDEM#").await, 0);

    let (status, body) = call(&broken, post(&key, EVENT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], 1);
}

/// The AWS calls one event costs, counted at a proxy before the emulator:
/// `cargo test -p hookline-ingest --test exactly_once calls -- --nocapture` prints them.
#[tokio::test]
async fn calls_per_event_with_and_without_a_key() {
    let (env, _, key) = setup().await;
    let proxy = FaultProxy::start(hookline_tests::emulator_url(), 1);
    let (store, queues) = env.adapters_via(proxy.url(), None).await;
    let deps = Deps {
        store,
        queues,
        config: env.config.clone(),
    };
    // Events of built-in types read no event-type catalog.
    let mut seen = proxy.counts();
    // The first event reads the platform key; the instance trusts it afterwards.
    for (label, body, expected) in [
        (
            "without a key",
            r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{}}"#,
            &[
                ("DynamoDB.GetItem", 1),
                ("DynamoDB.PutItem", 1),
                ("DynamoDB.Query", 1),
                ("SQS.SendMessageBatch", 1),
            ][..],
        ),
        (
            "with a key",
            EVENT,
            &[
                ("DynamoDB.TransactWriteItems", 1),
                ("DynamoDB.Query", 1),
                ("SQS.SendMessageBatch", 1),
                ("DynamoDB.UpdateItem", 1),
            ][..],
        ),
        (
            // The settings come in the fan-out's Query: stored, and nothing sent.
            "to a disabled account",
            r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{}}"#,
            &[("DynamoDB.PutItem", 1), ("DynamoDB.Query", 1)][..],
        ),
    ] {
        if label == "to a disabled account" {
            let disabled = shared::settings::AccountSettings {
                webhooks_enabled: false,
            };
            let jane = "jane".parse().unwrap();
            env.store
                .put_account_settings(&jane, &disabled)
                .await
                .unwrap();
        }
        let (status, _) = call(&deps, post(&key, body)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let now = proxy.counts();
        let calls: Vec<(String, u64)> = now
            .calls
            .iter()
            .map(|(op, n)| (op.clone(), n - seen.calls_of(op)))
            .filter(|(_, n)| *n > 0)
            .collect();
        eprintln!("one event {label}: {calls:?}");
        let mut wanted: Vec<(String, u64)> = expected
            .iter()
            .map(|(op, n)| (op.to_string(), *n))
            .collect();
        wanted.sort();
        assert_eq!(calls, wanted, "{label}");
        seen = now;
    }
}
