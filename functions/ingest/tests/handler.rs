//! The ingest handler in-process, against the emulator's real DynamoDB and SQS.

use hookline_tests::TestEnv;
use ingest::{Deps, handle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::ids::EndpointId;
use shared::model::Endpoint;

fn request(method: Method, path: &str, key: Option<&str>, body: &str) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    builder.body(Body::Text(body.to_string())).unwrap()
}

async fn call(deps: &Deps, req: Request) -> (StatusCode, Value) {
    let response = handle(deps, req).await;
    let status = response.status();
    let body = match response.body() {
        Body::Empty => Value::Null,
        body => serde_json::from_slice(body.as_ref()).unwrap(),
    };
    (status, body)
}

async fn setup() -> (TestEnv, Deps, String) {
    let env = TestEnv::new("1s").await;
    let key = env.api_key().await;
    let deps = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        config: env.config.clone(),
    };
    (env, deps, key)
}

async fn add_endpoint(
    env: &TestEnv,
    account: &str,
    edit: impl FnOnce(&mut Endpoint),
) -> EndpointId {
    env.add_endpoint(account, "https://example.com/hook", edit)
        .await
        .0
        .id
}

const EVENT: &str =
    r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{"name":"rose.png"}}"#;

#[tokio::test]
async fn fans_out_to_the_subscribed_endpoints_only() {
    let (env, deps, key) = setup().await;
    let (every, _) = env
        .add_endpoint("jane", "https://example.com/hook", |_| {})
        .await;
    let (created, _) = env
        .add_endpoint("jane", "https://example.com/hook", |e| {
            e.event_types = vec!["sample.created".parse().unwrap()]
        })
        .await;
    add_endpoint(&env, "jane", |e| {
        e.event_types = vec!["sample.deleted".parse().unwrap()]
    })
    .await;
    add_endpoint(&env, "jane", |e| {
        e.datasets = Some(vec!["jane/trees".into()])
    })
    .await;
    add_endpoint(&env, "jane", |e| e.disabled = true).await;
    add_endpoint(&env, "bob", |_| {}).await;

    let (status, body) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), EVENT),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], 2);
    // Each job names its endpoint as the fan-out read it, for the dispatcher to
    // deliver with that version or a later one.
    let mut jobs: Vec<_> = env
        .queued_jobs()
        .await
        .into_iter()
        .map(|job| (job.endpoint_id, job.endpoint_updated_at))
        .collect();
    jobs.sort();
    let mut expected = Vec::new();
    for endpoint in [every, created] {
        let stored = env.stored_endpoint(&endpoint.account, &endpoint.id).await;
        expected.push((stored.id, Some(stored.updated_at)));
    }
    expected.sort();
    assert_eq!(jobs, expected);
    assert_eq!(env.count_items("MSG#").await, 1);
}

#[tokio::test]
async fn fans_out_past_one_send_batch() {
    let (env, deps, key) = setup().await;
    for _ in 0..23 {
        add_endpoint(&env, "jane", |_| {}).await;
    }
    let (status, body) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), EVENT),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], 23);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 23);
}

#[tokio::test]
async fn the_same_idempotency_key_fans_out_once_even_when_requests_race() {
    let (env, deps, key) = setup().await;
    add_endpoint(&env, "jane", |_| {}).await;
    let with_id =
        r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{},"id":"evt_123"}"#;

    let answers = futures::future::join_all((0..8).map(|_| {
        call(
            &deps,
            request(Method::POST, "/v1/events", Some(&key), with_id),
        )
    }))
    .await;
    // The twins wait for the first and answer duplicates; a 409 only if it were slow.
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .map(|(_, body)| body)
        .collect();
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == StatusCode::ACCEPTED
                || body["error"]["code"] == "conflict"),
        "{answers:?}"
    );
    let ids: std::collections::HashSet<&str> = accepted
        .iter()
        .map(|body| body["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every answer names the same message: {answers:?}"
    );
    let firsts = accepted
        .iter()
        .filter(|body| body.get("duplicate").is_none())
        .count();
    assert_eq!(firsts, 1, "{answers:?}");
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 1);

    // The header works as the key too (the same event without its `id`), and keys are per account.
    let mut by_header = request(
        Method::POST,
        "/v1/events",
        Some(&key),
        r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{}}"#,
    );
    by_header
        .headers_mut()
        .insert("idempotency-key", "evt_123".parse().unwrap());
    let (_, body) = call(&deps, by_header).await;
    assert_eq!(body["duplicate"], true);
    let other_account =
        r#"{"event_type":"sample.created","dataset":"bob/flowers","object":{},"id":"evt_123"}"#;
    let (_, body) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), other_account),
    )
    .await;
    assert_eq!(body.get("duplicate"), None);
}

#[tokio::test]
async fn an_idempotency_key_header_beyond_ascii_is_a_key_and_one_not_utf8_is_refused() {
    let (env, deps, key) = setup().await;
    add_endpoint(&env, "jane", |_| {}).await;
    let with_header = |value: &[u8]| {
        let mut req = request(Method::POST, "/v1/events", Some(&key), EVENT);
        req.headers_mut().insert(
            "idempotency-key",
            lambda_http::http::HeaderValue::from_bytes(value).unwrap(),
        );
        req
    };
    let (status, first) = call(&deps, with_header("ключ-1".as_bytes())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = call(&deps, with_header("ключ-1".as_bytes())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        (&again["id"], &again["duplicate"]),
        (&first["id"], &json!(true))
    );

    let (status, refused) = call(&deps, with_header(b"latin-1 \xe9")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "validation_error");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Idempotency-Key")
    );
    assert_eq!(env.count_items("MSG#").await, 1);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 1);
}

#[tokio::test]
async fn refused_requests_answer_the_contract_error_and_store_nothing() {
    let (env, deps, key) = setup().await;
    add_endpoint(&env, "jane", |_| {}).await;
    let huge = format!(
        r#"{{"event_type":"sample.created","dataset":"jane/flowers","object":{{"blob":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let mut plain_text = request(Method::POST, "/v1/events", Some(&key), EVENT);
    plain_text
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    let cases = [
        (
            request(Method::POST, "/v1/events", None, EVENT),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            request(Method::POST, "/v1/events", Some("hlk_wrong"), EVENT),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            request(Method::POST, "/v1/events", Some(&key), "{"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            request(Method::POST, "/v1/events", Some(&key), "[]"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            request(
                Method::POST,
                "/v1/events",
                Some(&key),
                r#"{"event_type":"sample.created"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(Method::POST, "/v1/events", Some(&key), &huge),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            plain_text,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            request(Method::GET, "/v1/events", Some(&key), ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            request(Method::POST, "/v1/nothing", Some(&key), EVENT),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (req, status, code) in cases {
        let path = req.uri().path().to_string();
        let (got, body) = call(&deps, req).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(env.count_items("MSG#").await, 0);
    assert_eq!(env.count_items("IDEM#").await, 0);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 0);
}

#[tokio::test]
async fn health_and_the_event_type_catalog() {
    let (_env, deps, key) = setup().await;
    let (status, body) = call(&deps, request(Method::GET, "/health", None, "")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = call(
        &deps,
        request(Method::GET, "/v1/event-types", Some(&key), ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        shared::catalog::EVENT_TYPES.len() + shared::catalog::OPERATIONAL_TYPES.len()
    );
    assert!(names.contains(&"issue.updated"));
    assert!(names.contains(&"endpoint.disabled"));
    assert!(body["data"][0]["description"].is_string());
    let (status, _) = call(&deps, request(Method::GET, "/v1/event-types", None, "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_retry_after_a_failed_fan_out_delivers_the_same_message() {
    let (env, deps, key) = setup().await;
    add_endpoint(&env, "jane", |_| {}).await;
    let broken = Deps {
        store: env.store.clone(),
        queues: shared::queue::Queues::new(
            env.sqs.clone(),
            format!("{}-missing", env.queues.delivery_url()),
            env.queues.dlq_url(),
        ),
        config: env.config.clone(),
    };
    let with_id =
        r#"{"event_type":"sample.created","dataset":"jane/flowers","object":{},"id":"evt_retry"}"#;
    let (status, body) = call(
        &broken,
        request(Method::POST, "/v1/events", Some(&key), with_id),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 0);

    // The platform retries: the stored message goes out under its first id, once.
    let (status, retried) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), with_id),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["endpoints"], 1);
    assert_eq!(retried.get("duplicate"), None);
    assert_eq!(env.count_items("MSG#").await, 1);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 1);
    let (_, again) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), with_id),
    )
    .await;
    assert_eq!(
        (again["id"].clone(), again["duplicate"].clone()),
        (retried["id"].clone(), json!(true))
    );
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 1);

    // Without a key the failed request leaves nothing behind.
    let (status, _) = call(
        &broken,
        request(Method::POST, "/v1/events", Some(&key), EVENT),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(env.count_items("MSG#").await, 1);
}

#[tokio::test]
async fn a_disabled_account_stores_its_events_and_enqueues_nothing() {
    let (env, deps, key) = setup().await;
    add_endpoint(&env, "jane", |_| {}).await;
    add_endpoint(&env, "bob", |_| {}).await;
    let jane = "jane".parse().unwrap();
    let disabled = shared::settings::AccountSettings {
        webhooks_enabled: false,
    };
    env.store
        .put_account_settings(&jane, &disabled)
        .await
        .unwrap();

    let (status, body) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), EVENT),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["endpoints"], 0);
    let stored = shared::ids::MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    assert!(
        env.store
            .get_message(&jane, &stored)
            .await
            .unwrap()
            .is_some()
    );
    let bob_event = EVENT.replace("jane/flowers", "bob/flowers");
    let batch = format!(r#"{{"events": [{EVENT}, {bob_event}]}}"#);
    let (status, body) = call(
        &deps,
        request(Method::POST, "/v1/events/batch", Some(&key), &batch),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"][0]["endpoints"], 0, "{body}");
    assert_eq!(body["data"][1]["endpoints"], 1, "another account fans out");
    assert_eq!(env.count_items("MSG#").await, 3);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 1);

    env.store
        .put_account_settings(&jane, &shared::settings::AccountSettings::default())
        .await
        .unwrap();
    let (_, body) = call(
        &deps,
        request(Method::POST, "/v1/events", Some(&key), EVENT),
    )
    .await;
    assert_eq!(body["endpoints"], 1, "enabled again: {body}");
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 2);
}
