//! Event types as data, through the ingest handler against the emulator: the
//! registry's routes, a type's schema and text template at ingest, and archiving.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use hookline_tests::{Receiver, TestEnv};
use ingest::{Deps, handle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::ids::MessageId;

fn request(method: Method, path: &str, key: &str, body: &Value) -> Request {
    let builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    let body = if body.is_null() {
        Body::Empty
    } else {
        Body::Text(body.to_string())
    };
    builder
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

async fn call(
    deps: &Deps,
    key: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = handle(deps, request(method, path, key, &body)).await;
    let status = response.status();
    let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
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

fn task_submitted() -> Value {
    json!({
        "name": "task.submitted",
        "description": "A task was submitted at a workflow stage.",
        "schema": {
            "type": "object",
            "required": ["task_id", "stage", "name"],
            "properties": {
                "task_id": {"type": "string"},
                "stage": {"type": "string"},
                "name": {"type": "string", "minLength": 1},
                "assignee": {"type": "string"}
            }
        },
        "text_template": "Task {object.name} submitted at {object.stage} in {dataset} by {object.assignee}"
    })
}

fn event(object: Value) -> Value {
    json!({"event_type": "task.submitted", "dataset": "jane/flowers", "object": object})
}

fn good_object() -> Value {
    json!({"task_id": "t1", "stage": "review", "name": "Label roses", "assignee": "ana"})
}

#[tokio::test]
async fn types_are_registered_changed_and_archived_by_platform_keys_only() {
    let (env, deps, key) = setup().await;
    let (status, created) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        task_submitted(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "task.submitted");
    assert_eq!(created["schema"], task_submitted()["schema"]);
    assert_eq!(
        (created["operational"].clone(), created["archived"].clone()),
        (json!(false), json!(false))
    );

    // The name is taken: by the type just registered, and by a built-in one.
    for name in ["task.submitted", "sample.created"] {
        let (status, body) = call(
            &deps,
            &key,
            Method::POST,
            "/v1/event-types",
            json!({"name": name}),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("conflict")),
            "{name}"
        );
    }

    let (status, listed) = call(&deps, &key, Method::GET, "/v1/event-types", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let data = listed["data"].as_array().unwrap();
    // The built-in types, hookline's operational ones, then the one registered.
    let builtin = shared::catalog::EVENT_TYPES.len() + shared::catalog::OPERATIONAL_TYPES.len();
    assert_eq!(data.len(), builtin + 1);
    assert_eq!(data[0]["name"], "dataset.created");
    assert_eq!(data[0]["schema"], Value::Null);
    assert_eq!(data[0]["text_template"], Value::Null);
    assert_eq!(data[builtin]["name"], "task.submitted");

    let path = "/v1/event-types/task.submitted";
    let (status, patched) = call(
        &deps,
        &key,
        Method::PATCH,
        path,
        json!({"description": "Submitted.", "text_template": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], "Submitted.");
    assert_eq!(patched["text_template"], Value::Null);
    assert_eq!(patched["schema"], task_submitted()["schema"]);

    // A built-in type is read-only; an unknown one is not there; a bad schema is named.
    let (status, body) = call(
        &deps,
        &key,
        Method::PATCH,
        "/v1/event-types/sample.created",
        json!({"description": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation_error"))
    );
    let (status, _) = call(
        &deps,
        &key,
        Method::DELETE,
        "/v1/event-types/sample.created",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &deps,
        &key,
        Method::PATCH,
        "/v1/event-types/task.never",
        json!({"description": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &deps,
        &key,
        Method::PATCH,
        path,
        json!({"schema": {"type": 12}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("schema: "),
        "{body}"
    );
    let (status, body) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        json!({"name": "task.bad", "schema": {"required": "name"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("schema: "),
        "{body}"
    );

    // A portal token reads the catalog, and changes none of it.
    let token = env.portal_token("jane", time::Duration::hours(1)).await;
    let (status, _) = call(&deps, &token, Method::GET, "/v1/event-types", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/event-types",
            json!({"name": "task.portal"}),
        ),
        (Method::PATCH, path, json!({"description": "mine"})),
        (Method::DELETE, path, Value::Null),
    ] {
        let (status, answer) = call(&deps, &token, method.clone(), path, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path}"
        );
    }

    // DELETE archives, and says so again; PATCH brings it back.
    for _ in 0..2 {
        let (status, _) = call(&deps, &key, Method::DELETE, path, Value::Null).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, listed) = call(&deps, &key, Method::GET, "/v1/event-types", Value::Null).await;
    assert_eq!(listed["data"][builtin]["archived"], true);
    assert_eq!(listed["data"][builtin]["description"], "Submitted.");
    let (status, restored) =
        call(&deps, &key, Method::PATCH, path, json!({"archived": false})).await;
    assert_eq!(
        (status, restored["archived"].clone()),
        (StatusCode::OK, json!(false))
    );
}

#[tokio::test]
async fn an_object_that_breaks_the_schema_is_refused_with_its_pointer() {
    let (env, deps, key) = setup().await;
    env.add_endpoint("jane", "https://example.com/hook", |_| {})
        .await;
    let (status, _) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        task_submitted(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut wrong_type = good_object();
    wrong_type["name"] = json!(7);
    let mut missing = good_object();
    missing.as_object_mut().unwrap().remove("stage");
    for (object, pointer) in [
        (wrong_type.clone(), "/object/name"),
        (missing.clone(), "/object/stage"),
    ] {
        let (status, body) = call(&deps, &key, Method::POST, "/v1/events", event(object)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("validation_error")),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{pointer}: ")), "{message}");
    }
    let (_, body) = call(&deps, &key, Method::POST, "/v1/events", event(missing)).await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("stage"),
        "{body}"
    );

    let (status, body) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/events/batch",
        json!({"events": [event(good_object()), event(wrong_type)]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["data"][0]["endpoints"], 1, "{body}");
    assert_eq!(body["data"][1]["error"]["code"], "validation_error");
    assert!(
        body["data"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("/object/name: "),
        "{body}"
    );
    // Only the good event was stored.
    assert_eq!(env.count_items("MSG#").await, 1);
}

#[tokio::test]
async fn the_text_comes_from_the_type_s_template_unless_the_event_has_one() {
    let (env, deps, key) = setup().await;
    call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        task_submitted(),
    )
    .await;
    let jane = "jane".parse().unwrap();
    let stored_text = |body: Value| {
        let (env, deps, key, jane) = (&env, &deps, &key, &jane);
        async move {
            let (status, accepted) = call(deps, key, Method::POST, "/v1/events", body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
            let id = MessageId::parse(accepted["id"].as_str().unwrap()).unwrap();
            let message = env.store.get_message(jane, &id).await.unwrap().unwrap();
            let payload: Value = serde_json::from_str(&message.payload).unwrap();
            payload["text"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(
        stored_text(event(good_object())).await,
        "Task Label roses submitted at review in jane/flowers by ana"
    );
    let mut without_assignee = good_object();
    without_assignee.as_object_mut().unwrap().remove("assignee");
    assert_eq!(
        stored_text(event(without_assignee)).await,
        "Task Label roses submitted at review in jane/flowers by "
    );
    let mut own_text = event(good_object());
    own_text["text"] = json!("Roses are ready.");
    assert_eq!(stored_text(own_text).await, "Roses are ready.");
    // A built-in type keeps its sentence.
    assert_eq!(
        stored_text(json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}})).await,
        "Sample rose.png created in dataset jane/flowers."
    );
}

/// `len` characters that DEFLATE cannot shrink much and JSON does not escape.
fn incompressible(len: usize) -> String {
    let alphabet: Vec<u8> = (b' '..=b'~').filter(|c| !b"\"\\".contains(c)).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            // xorshift64: fixed, so every run posts the same event.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(alphabet[(state % alphabet.len() as u64) as usize])
        })
        .collect()
}

/// `event` with its `object[field]` filled so that the body is exactly at the limit.
fn at_the_size_limit(mut event: Value, field: &str) -> Value {
    event["object"][field] = json!("");
    let room = shared::http::MAX_BODY_BYTES - event.to_string().len();
    event["object"][field] = json!(incompressible(room));
    assert_eq!(event.to_string().len(), shared::http::MAX_BODY_BYTES);
    event
}

#[tokio::test]
async fn an_event_at_the_size_limit_whose_text_would_repeat_its_object_is_stored() {
    let (env, deps, key) = setup().await;
    let (status, body) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        json!({"name": "task.echoed", "text_template": "{object.notes} ".repeat(20)}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jane = "jane".parse().unwrap();
    for event in [
        // The built-in sentence holds the name.
        at_the_size_limit(
            json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}}),
            "name",
        ),
        // The template holds the notes twenty times.
        at_the_size_limit(
            json!({"event_type": "task.echoed", "dataset": "jane/flowers", "object": {}}),
            "notes",
        ),
    ] {
        let (status, accepted) = call(&deps, &key, Method::POST, "/v1/events", event.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = MessageId::parse(accepted["id"].as_str().unwrap()).unwrap();
        let message = env.store.get_message(&jane, &id).await.unwrap().unwrap();
        let payload: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(payload["object"], event["object"]);
        let text = payload["text"].as_str().unwrap();
        assert!(
            text.len() <= shared::catalog::MAX_GENERATED_TEXT_BYTES && text.ends_with('…'),
            "{} bytes",
            text.len()
        );
    }
}

#[tokio::test]
async fn an_archived_type_is_refused_at_ingest_but_a_queued_delivery_still_goes() {
    let (env, deps, key) = setup().await;
    let receiver = Receiver::start().await;
    call(
        &deps,
        &key,
        Method::POST,
        "/v1/event-types",
        task_submitted(),
    )
    .await;
    env.add_endpoint("jane", &receiver.url("/tasks"), |e| {
        e.event_types = vec!["task.submitted".parse().unwrap()];
    })
    .await;
    // Another instance of ingest (Deps of its own), which accepts an event of the type
    // before the archive.
    let other = Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        config: env.config.clone(),
    };
    let (status, accepted) = call(
        &other,
        &key,
        Method::POST,
        "/v1/events",
        event(good_object()),
    )
    .await;
    assert_eq!(
        (status, accepted["endpoints"].clone()),
        (StatusCode::ACCEPTED, json!(1))
    );
    // And one with an idempotency key, whose answer the platform will not get.
    let mut keyed = event(good_object());
    keyed["id"] = json!("evt-before-the-archive");
    let (status, first) = call(&other, &key, Method::POST, "/v1/events", keyed.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    let (status, _) = call(
        &deps,
        &key,
        Method::DELETE,
        "/v1/event-types/task.submitted",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Its repeat is a duplicate, alone or in a batch, as any repeat is; another
    // event under that key is refused for its type.
    let (status, again) = call(&deps, &key, Method::POST, "/v1/events", keyed.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        (&again["id"], &again["duplicate"], &again["endpoints"]),
        (&first["id"], &json!(true), &json!(0))
    );
    let (_, batch) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/events/batch",
        json!({"events": [keyed.clone()]}),
    )
    .await;
    assert_eq!(batch["data"][0], again, "{batch}");
    let mut other_event = keyed.clone();
    other_event["object"]["name"] = json!("Label tulips");
    let (status, _) = call(&deps, &key, Method::POST, "/v1/events", other_event).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The second job, the keyed event's, is not delivered in this test.
    env.queues
        .receive_delivery(1, Duration::from_secs(1))
        .await
        .unwrap();
    let (status, body) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/events",
        event(good_object()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("event_type: "),
        "{body}"
    );

    // The job queued before the archive is delivered to the endpoint that subscribed.
    let received = env
        .queues
        .receive_delivery(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    let event_source: SqsEvent =
        serde_json::from_value(hookline_cli::local::event_source::sqs_event(
            &received,
            "arn:aws:sqs:us-east-1:123456789012:delivery",
        ))
        .unwrap();
    let dispatcher =
        dispatcher::Deps::new(env.store.clone(), env.queues.clone(), env.config.clone());
    assert!(
        dispatcher::handle(&dispatcher, event_source)
            .await
            .batch_item_failures
            .is_empty()
    );
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].json()["event_type"], "task.submitted");
    assert_eq!(
        delivered[0].json()["text"],
        "Task Label roses submitted at review in jane/flowers by ana"
    );

    // The other instance refuses it as well, at once.
    let (status, body) = call(
        &other,
        &key,
        Method::POST,
        "/v1/events",
        event(good_object()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// A registration or change whose answer was lost is sent again by the SDK; the
/// retry's condition fails on the first try's effect, and the write still reports
/// success, while another registration of the name is refused.
#[tokio::test]
async fn a_write_whose_answer_was_lost_knows_its_own_success() {
    use hookline_tests::intercept::{InjectAt, Injected};
    let (env, _, _) = setup().await;
    let lost = InjectAt::new("PutItem", &[0, 3], Injected::AnswerLost);
    let (store, _) = env.intercepted(lost.clone()).await;
    let now = time::OffsetDateTime::now_utc();
    let registered =
        shared::registry::parse_new(task_submitted().as_object().unwrap(), now).unwrap();
    assert!(store.register_event_type(&registered).await.unwrap());
    assert_eq!(lost.seen(), 2, "the SDK sent it again");
    assert!(!store.register_event_type(&registered).await.unwrap());
    assert_eq!(lost.seen(), 3);

    let stored = store.event_type(&registered.name).await.unwrap().unwrap();
    let changed =
        shared::registry::Change::archive().apply(&stored, now + time::Duration::seconds(1));
    assert!(
        store
            .update_event_type(&changed, stored.updated_at)
            .await
            .unwrap()
    );
    assert_eq!(lost.seen(), 5, "the SDK sent it again");
    // A change made from the version before is stale now.
    assert!(
        !store
            .update_event_type(&changed, stored.updated_at)
            .await
            .unwrap()
    );
    assert!(
        store
            .event_type(&registered.name)
            .await
            .unwrap()
            .unwrap()
            .archived
    );
}

/// An event names its types, and only those are read, by key: a key DynamoDB
/// leaves unprocessed is read again, so no event is refused for a type that is there.
#[tokio::test]
async fn the_named_types_are_read_by_key_and_what_is_left_unprocessed_read_again() {
    use hookline_tests::intercept::LeaveUnprocessed;
    let (env, deps, key) = setup().await;
    let mut review_done = task_submitted();
    review_done["name"] = json!("review.done");
    for registered in [task_submitted(), review_done] {
        let (status, body) = call(&deps, &key, Method::POST, "/v1/event-types", registered).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    env.add_endpoint("jane", "https://example.com/hook", |_| {})
        .await;
    let unprocessed = LeaveUnprocessed::keys();
    let sdk = shared::aws::for_emulator(hookline_tests::emulator_url()).await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(unprocessed.clone())
            .build(),
    );
    let deps = Deps {
        store: shared::store::Store::new(
            dynamodb,
            env.config.table.clone(),
            env.config.retention(),
        ),
        ..deps
    };
    let mut review = event(good_object());
    review["event_type"] = json!("review.done");
    let (status, body) = call(
        &deps,
        &key,
        Method::POST,
        "/v1/events/batch",
        json!({"events": [event(good_object()), review, event(json!({"stage": "review"}))]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"][0]["endpoints"], 1, "{body}");
    assert_eq!(body["data"][1]["endpoints"], 1, "{body}");
    assert_eq!(body["data"][2]["error"]["code"], "validation_error");
    assert_eq!(unprocessed.calls(), 2, "the key left over is read again");
}
