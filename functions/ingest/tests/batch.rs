//! `POST /v1/events/batch` in-process against the emulator: refusals of the whole
//! body, per-event answers in order, and the calls a batch shares.

use hookline_tests::TestEnv;
use hookline_tests::intercept::{InjectAt, Injected};
use ingest::{Deps, handle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::http::MAX_BATCH_BODY_BYTES;

fn request(method: Method, key: Option<&str>, body: &str) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri("/v1/events/batch")
        .header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    builder.body(Body::Text(body.to_string())).unwrap()
}

async fn call(deps: &Deps, req: Request) -> (StatusCode, Value) {
    let response = handle(deps, req).await;
    let status = response.status();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

fn event(dataset: &str, id: Option<&str>) -> Value {
    let mut event =
        json!({"event_type": "sample.created", "dataset": dataset, "object": {"name": "rose.png"}});
    if let Some(id) = id {
        event["id"] = json!(id);
    }
    event
}

#[tokio::test]
async fn a_body_that_is_not_a_batch_is_refused_as_a_whole_and_stores_nothing() {
    let env = TestEnv::new("1s").await;
    let key = env.api_key().await;
    env.add_endpoint("jane", "https://example.com/hook", |_| {})
        .await;
    let deps = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        config: env.config.clone(),
    };
    let one = event("jane/flowers", None);
    // A 1 MiB body of small events: 100 of them are the most a batch takes.
    let over_a_mebibyte = format!(
        r#"{{"events":[{}],"pad":"{}"}}"#,
        one,
        "x".repeat(MAX_BATCH_BODY_BYTES)
    );
    let cases: Vec<(Request, StatusCode, &str)> = vec![
        (
            request(Method::POST, Some(&key), &over_a_mebibyte),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            request(Method::POST, Some(&key), "[]"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            request(Method::POST, Some(&key), "{"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            request(Method::POST, Some(&key), "{}"),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(Method::POST, Some(&key), r#"{"events":{}}"#),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(Method::POST, Some(&key), r#"{"events":[]}"#),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(
                Method::POST,
                Some(&key),
                &json!({"events": vec![one.clone(); 101]}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(
                Method::POST,
                Some(&key),
                &json!({"events": [one.clone()], "more": []}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            request(
                Method::POST,
                None,
                &json!({"events": [one.clone()]}).to_string(),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            request(Method::GET, Some(&key), ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (req, status, code) in cases {
        let (got, body) = call(&deps, req).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert_eq!(env.count_items("MSG#").await, 0);
    assert_eq!(env.queue_depth(env.queues.delivery_url()).await, 0);
}

#[tokio::test]
async fn each_event_gets_the_answer_it_would_get_alone_in_order() {
    let env = TestEnv::new("1s").await;
    let key = env.api_key().await;
    for account in ["jane", "jane", "bob"] {
        env.add_endpoint(account, "https://example.com/hook", |_| {})
            .await;
    }
    let queries = InjectAt::new("Query", &[], Injected::Refused);
    let (store, queues) = env.intercepted(queries.clone()).await;
    let deps = Deps {
        store,
        queues,
        config: env.config.clone(),
    };
    // An event already accepted alone, with a key.
    let (status, earlier) = call(
        &deps,
        request(
            Method::POST,
            Some(&key),
            &json!({"events": [event("jane/flowers", Some("k-old"))]}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{earlier}");
    let earlier_id = earlier["data"][0]["id"].clone();
    let queries_before = queries.seen();

    let too_large = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"blob": "x".repeat(300 * 1024)}});
    let batch = json!({"events": [
        event("jane/flowers", None),                  // 0: two jane endpoints
        {"event_type": "sample.created"},             // 1: no dataset
        event("bob/trees", Some("k-1")),              // 2: bob's one endpoint
        too_large,                                    // 3
        event("jane/flowers", Some("k-old")),         // 4: a duplicate of the earlier event
        event("jane/trees", Some("k-old")),           // 5: the same key, another event
        event("bob/trees", Some("k-1")),              // 6: repeats 2 within the batch
        event("jane/flowers", Some("k-1")),           // 7: the same key, another account
        "not an event",                               // 8
        {"event_type": "sample.exploded", "dataset": "jane/flowers", "object": {}}, // 9
    ]});
    let (status, body) = call(&deps, request(Method::POST, Some(&key), &batch.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    let code = |i: usize| data[i]["error"]["code"].as_str();
    assert_eq!(data[0]["endpoints"], 2);
    assert_eq!(data[0].get("duplicate"), None);
    assert_eq!(code(1), Some("validation_error"));
    assert!(
        data[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("dataset")
    );
    assert_eq!(data[2]["endpoints"], 1);
    assert_eq!(code(3), Some("payload_too_large"));
    assert_eq!(
        (&data[4]["id"], &data[4]["duplicate"], &data[4]["endpoints"]),
        (&earlier_id, &json!(true), &json!(0))
    );
    assert_eq!(code(5), Some("idempotency_key_reused"));
    assert_eq!(
        (&data[6]["id"], &data[6]["duplicate"]),
        (&data[2]["id"], &json!(true))
    );
    assert_eq!(data[7]["endpoints"], 2);
    assert_ne!(data[7]["id"], data[2]["id"]);
    // As the same body alone would be answered.
    assert_eq!(code(8), Some("invalid_json"));
    assert_eq!(code(9), Some("validation_error"));

    // Stored: the earlier event, and 0, 2 and 7; one Query per account (9's unknown
    // type is looked up by its key, since it may have been registered meanwhile).
    assert_eq!(env.count_items("MSG#").await, 4);
    assert_eq!(queries.seen() - queries_before, 2);
    assert_eq!(
        env.queue_depth(env.queues.delivery_url()).await,
        2 + 2 + 1 + 2
    );
}
