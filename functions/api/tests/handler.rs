//! The management API in-process, against the emulator's DynamoDB and SQS: every
//! route, every error row, tenant isolation, pagination.

use std::time::Duration;

use api::{Deps, handle};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use hookline_tests::faults::{FaultKind, FaultPlan, FaultProxy};
use hookline_tests::{TestEnv, emulator_url};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use serde_json::{Value, json};
use shared::account::Account;
use shared::endpoint;
use shared::ids::{AttemptId, EndpointId, MessageId};
use shared::model::{Attempt, AttemptStatus};
use shared::store::{Creation, MAX_ENDPOINTS_PER_ACCOUNT, Store};
use time::OffsetDateTime;

struct Api {
    env: TestEnv,
    deps: Deps,
    key: String,
}

impl Api {
    async fn new() -> Self {
        let env = TestEnv::new("1s").await;
        let key = env.api_key().await;
        // As deployed: private and loopback endpoint addresses are refused.
        let mut config = env.config.clone();
        config.allow_private_targets = false;
        let deps = Deps {
            store: env.store.clone(),
            queues: env.queues.clone(),
            config,
        };
        Self { env, deps, key }
    }

    fn request(&self, method: Method, path_and_query: &str, body: Option<Value>) -> Request {
        self.request_as(&self.key, method, path_and_query, body)
    }

    /// A request with `key` (a platform key or a portal token) as its credential.
    fn request_as(
        &self,
        key: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let body = body.map_or(Body::Empty, |b| Body::Text(b.to_string()));
        let request = builder.body(body).unwrap();
        let params: std::collections::HashMap<String, Vec<String>> = url_pairs(query);
        request.with_query_string_parameters(params)
    }

    async fn send(&self, request: Request) -> (StatusCode, Value) {
        let response = handle(&self.deps, request).await;
        let status = response.status();
        let body = match response.body() {
            Body::Empty => Value::Null,
            body => serde_json::from_slice(body.as_ref()).unwrap(),
        };
        (status, body)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(self.request(method, path, body)).await
    }

    async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(self.request_as(key, method, path, body)).await
    }

    async fn create(&self, account: &str, body: Value) -> Value {
        let (status, created) = self
            .call(
                Method::POST,
                &format!("/v1/accounts/{account}/endpoints"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }
}

fn url_pairs(query: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut params = std::collections::HashMap::<String, Vec<String>>::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(k.to_string()).or_default().push(v.to_string());
    }
    params
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn endpoint_lifecycle_create_get_patch_rotate_delete() {
    let api = Api::new().await;
    let created = api
        .create("jane", json!({"url": "https://example.com/hook", "description": "ops", "event_types": ["sample.created"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/v1/accounts/jane/endpoints/{id}");
    let first_secret = created["secret"].as_str().unwrap().to_string();
    for key in [
        "id",
        "url",
        "description",
        "version",
        "event_types",
        "datasets",
        "format",
        "disabled",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(key).is_some(), "{key} missing from {created}");
    }
    assert_eq!(
        (created["version"].clone(), created["format"].clone()),
        (json!(1), json!("standard"))
    );

    let (status, fetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched.get("secret").is_none());

    let (status, patched) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"description": null, "datasets": ["jane/flowers"], "format": "slack"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], "");
    assert_eq!(patched["datasets"], json!(["jane/flowers"]));
    assert_eq!(patched["format"], "slack");
    assert_eq!(patched["event_types"], json!(["sample.created"]));
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_ne!(patched["updated_at"], created["updated_at"]);
    assert!(patched.get("secret").is_none());
    let (_, refetched) = api.call(Method::GET, &path, None).await;
    assert_eq!(refetched, patched);
    let (_, cleared) = api
        .call(Method::PATCH, &path, Some(json!({"datasets": null})))
        .await;
    assert_eq!(cleared["datasets"], Value::Null);

    let (status, secret) = api.call(Method::GET, &format!("{path}/secret"), None).await;
    assert_eq!(
        (status, secret["secret"].as_str()),
        (StatusCode::OK, Some(first_secret.as_str()))
    );
    let (status, rotated) = api
        .call(Method::POST, &format!("{path}/secret/rotate"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let second_secret = rotated["secret"].as_str().unwrap();
    assert!(second_secret.starts_with("whsec_") && second_secret != first_secret);
    let (_, secret) = api.call(Method::GET, &format!("{path}/secret"), None).await;
    assert_eq!(secret["secret"], second_secret);
    let endpoint_id = EndpointId::parse(&id).unwrap();
    let (_, secrets) = api
        .env
        .store
        .get_endpoint(&"jane".parse().unwrap(), &endpoint_id)
        .await
        .unwrap()
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let signing: Vec<&str> = secrets.signing(now).iter().map(|s| s.expose()).collect();
    assert_eq!(signing, [second_secret, first_secret.as_str()]);

    let (status, body) = api.call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listing_walks_every_endpoint_once_in_creation_order() {
    let api = Api::new().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let created = api
            .create("jane", json!({"url": format!("https://example.com/{n}")}))
            .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    api.create("bob", json!({"url": "https://example.com/bob"}))
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts/jane/endpoints?limit=3&cursor={c}"),
            None => "/v1/accounts/jane/endpoints?limit=3".to_string(),
        };
        let (status, page) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3 && !data.is_empty());
        assert!(data.iter().all(|e| e.get("secret").is_none()));
        seen.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    for bad in ["limit=0", "limit=251", "limit=ten", "cursor=nonsense"] {
        let (status, body) = api
            .call(
                Method::GET,
                &format!("/v1/accounts/jane/endpoints?{bad}"),
                None,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "validation_error"),
            "{bad}"
        );
    }
    let (_, all) = api
        .call(Method::GET, "/v1/accounts/jane/endpoints?limit=250", None)
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 7);
    assert_eq!(all["next_cursor"], Value::Null);
}

async fn record_attempt(
    api: &Api,
    endpoint: &EndpointId,
    message: &MessageId,
    status: AttemptStatus,
) -> AttemptId {
    let attempt = Attempt {
        id: AttemptId::new(),
        message_id: message.clone(),
        endpoint_id: endpoint.clone(),
        account: "jane".parse().unwrap(),
        event_type: "sample.created".parse().unwrap(),
        attempt: 1,
        status,
        response_status: Some(if status == AttemptStatus::Succeeded {
            200
        } else {
            500
        }),
        response_body: "ok".into(),
        error: None,
        duration_ms: 12,
        timestamp: time::OffsetDateTime::now_utc(),
        next_attempt_at: None,
    };
    api.env.store.put_attempt(&attempt).await.unwrap();
    attempt.id
}

#[tokio::test]
async fn attempts_newest_first_filtered_and_paged_and_the_message_view() {
    let api = Api::new().await;
    let created = api
        .create("jane", json!({"url": "https://example.com/hook"}))
        .await;
    let endpoint = EndpointId::parse(created["id"].as_str().unwrap()).unwrap();
    let message = shared::event::parse(
        json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}})
            .as_object()
            .unwrap(),
        None,
        &shared::catalog::Catalog::default(),
    )
    .unwrap()
    .into_message("2021-08-01", time::OffsetDateTime::now_utc());
    api.env.store.insert_message(&message, None).await.unwrap();
    let statuses = [
        AttemptStatus::Failed,
        AttemptStatus::Failed,
        AttemptStatus::Succeeded,
        AttemptStatus::Failed,
    ];
    let mut ids = Vec::new();
    for status in statuses {
        ids.push(record_attempt(&api, &endpoint, &message.id, status).await);
    }
    let attempts_path = format!("/v1/accounts/jane/endpoints/{endpoint}/attempts");

    let (status, page) = api.call(Method::GET, &attempts_path, None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(AttemptId::as_str).collect();
    assert_eq!(listed, newest_first);
    let first = &page["data"][0];
    for key in [
        "id",
        "message_id",
        "endpoint_id",
        "event_type",
        "attempt",
        "status",
        "response_status",
        "response_body",
        "error",
        "duration_ms",
        "timestamp",
        "next_attempt_at",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }

    let (_, failed) = api
        .call(
            Method::GET,
            &format!("{attempts_path}?status=failed&limit=2"),
            None,
        )
        .await;
    let failed_ids: Vec<&str> = failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed_ids, [ids[3].as_str(), ids[1].as_str()]);
    let cursor = failed["next_cursor"].as_str().unwrap();
    let (_, rest) = api
        .call(
            Method::GET,
            &format!("{attempts_path}?status=failed&limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, succeeded) = api
        .call(
            Method::GET,
            &format!("{attempts_path}?status=succeeded"),
            None,
        )
        .await;
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 1);
    let (status, body) = api
        .call(Method::GET, &format!("{attempts_path}?status=maybe"), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );

    let (status, view) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/jane/messages/{}", message.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["id"], message.id.as_str());
    assert_eq!(view["event_type"], "sample.created");
    assert_eq!(view["dataset"], "jane/flowers");
    assert_eq!(view["payload"]["object"], json!({"name": "rose.png"}));
    assert_eq!(view["attempts"].as_array().unwrap().len(), 4);

    // Another account sees none of it.
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/bob/messages/{}", message.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/bob/endpoints/{endpoint}/attempts"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_accounts_endpoint_is_not_found_on_every_route() {
    let api = Api::new().await;
    let created = api
        .create("jane", json!({"url": "https://example.com/hook"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let routes = [
        (
            Method::GET,
            format!("/v1/accounts/bob/endpoints/{id}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/accounts/bob/endpoints/{id}"),
            Some(json!({"disabled": true})),
        ),
        (
            Method::DELETE,
            format!("/v1/accounts/bob/endpoints/{id}"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/accounts/bob/endpoints/{id}/secret"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/accounts/bob/endpoints/{id}/secret/rotate"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/accounts/bob/endpoints/{id}/attempts"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/accounts/bob/endpoints/{id}/test"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/accounts/bob/endpoints/{id}/messages/msg_01ABC/replay"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/accounts/bob/endpoints/{id}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = api.call(method.clone(), &path, body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
        assert!(!answer.to_string().contains("whsec_"));
    }
    // Untouched for its owner.
    let (_, fetched) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/jane/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(fetched["disabled"], false);
    let (_, secret) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/jane/endpoints/{id}/secret"),
            None,
        )
        .await;
    assert_eq!(secret["secret"], created["secret"]);
    // And nothing was enqueued for it.
    assert_eq!(api.env.queue_depth(api.env.queues.delivery_url()).await, 0);
}

#[tokio::test]
async fn a_test_event_of_an_operational_type_is_shaped_as_hookline_raises_it() {
    let api = Api::new().await;
    let created = api
        .create("jane", json!({"url": "https://example.com/hook"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let test = format!("/v1/accounts/jane/endpoints/{id}/test");
    let jane = "jane".parse().unwrap();
    let stored_payload = |sent: Value| {
        let api = &api;
        let jane = &jane;
        async move {
            let message = MessageId::parse(sent["id"].as_str().unwrap()).unwrap();
            let message = api
                .env
                .store
                .get_message(jane, &message)
                .await
                .unwrap()
                .unwrap();
            serde_json::from_str::<Value>(&message.payload).unwrap()
        }
    };
    for (event_type, fields) in [
        ("endpoint.disabled", &["endpoint_id", "url", "reason"][..]),
        (
            "message.attempt.failing",
            &[
                "endpoint_id",
                "message_id",
                "attempt",
                "error",
                "response_status",
            ][..],
        ),
        (
            "message.attempt.exhausted",
            &["endpoint_id", "message_id", "attempts"][..],
        ),
        (
            "message.attempt.recovered",
            &["endpoint_id", "message_id", "attempt"][..],
        ),
    ] {
        let (status, sent) = api
            .call(Method::POST, &test, Some(json!({"event_type": event_type})))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        let payload = stored_payload(sent).await;
        assert_eq!(payload["event_type"], event_type);
        assert_eq!(payload["dataset"], Value::Null, "{payload}");
        assert_eq!(payload["object"]["endpoint_id"], id);
        assert_eq!(payload["object"]["test"], true);
        for field in fields {
            assert!(
                payload["object"].get(field).is_some(),
                "{event_type}: {field}"
            );
        }
    }
    // Any other type is about the account's test dataset.
    let (_, sent) = api
        .call(
            Method::POST,
            &test,
            Some(json!({"event_type": "sample.created"})),
        )
        .await;
    assert_eq!(stored_payload(sent).await["dataset"], "jane/hookline-test");
}

#[tokio::test]
async fn every_error_row_and_nothing_stored_for_a_refused_request() {
    let api = Api::new().await;
    let endpoints = "/v1/accounts/jane/endpoints";
    let mut no_key = api.request(Method::GET, endpoints, None);
    no_key.headers_mut().remove("authorization");
    let mut wrong_key = api.request(Method::GET, endpoints, None);
    wrong_key
        .headers_mut()
        .insert("authorization", "Bearer hlk_wrong".parse().unwrap());
    let mut text = api.request(Method::POST, endpoints, None);
    text.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    *text.body_mut() = Body::Text("url=https://example.com".into());
    let mut malformed = api.request(Method::POST, endpoints, Some(json!({})));
    *malformed.body_mut() = Body::Text("{\"url\":".into());
    let mut huge = api.request(Method::POST, endpoints, Some(json!({})));
    *huge.body_mut() = Body::Text(format!(
        "{{\"description\":\"{}\"}}",
        "x".repeat(300 * 1024)
    ));

    let cases: Vec<(Request, StatusCode, &str)> = vec![
        (no_key, StatusCode::UNAUTHORIZED, "unauthorized"),
        (wrong_key, StatusCode::UNAUTHORIZED, "unauthorized"),
        (malformed, StatusCode::BAD_REQUEST, "invalid_json"),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!(["https://example.com"])),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!({"url": "https://127.0.0.1/"})),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!({"url": "https://2130706433/"})),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!({"url": "https://[::ffff:127.0.0.1]/"})),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!({"url": "https://example.com", "event_types": ["nope"]})),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (
            api.request(
                Method::POST,
                endpoints,
                Some(json!({"url": "https://example.com", "colour": "red"})),
            ),
            StatusCode::BAD_REQUEST,
            "validation_error",
        ),
        (huge, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        (
            text,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            api.request(Method::PUT, endpoints, None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            api.request(
                Method::POST,
                "/v1/accounts/jane/endpoints/ep_1/secret",
                None,
            ),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            api.request(Method::GET, "/v1/accounts/jane/widgets", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            api.request(Method::GET, "/v1/accounts/jane/endpoints/ep_01NOPE", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            api.request(Method::GET, "/v1/accounts/jane/endpoints/not-an-id", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            api.request(Method::GET, "/v1/accounts/jane/messages/msg_01NOPE", None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (request, status, expected) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, body) = api.send(request).await;
        assert_eq!((got, code(&body)), (status, expected), "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    assert_eq!(
        api.env.count_items("ACCT#").await,
        0,
        "no endpoint was stored"
    );

    let response = handle(&api.deps, api.request(Method::PUT, endpoints, None)).await;
    assert_eq!(response.headers()["allow"], "GET, POST");
}

async fn endpoint_count(env: &TestEnv, account: &Account) -> usize {
    let page = env.store.list_endpoints(account, 1000, None).await.unwrap();
    page.items.len()
}

/// A store over the same table whose calls go through `proxy`, retried at once.
async fn store_through(proxy: &FaultProxy, env: &TestEnv) -> Store {
    let sdk = shared::aws::for_emulator(proxy.url()).await;
    let retry = RetryConfig::standard().with_initial_backoff(Duration::from_millis(5));
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .retry_config(retry)
            .build(),
    );
    Store::new(client, env.config.table.clone(), env.config.retention())
}

/// Creates an endpoint of `account`, sending the same create again while it fails.
async fn create_until_answered(store: &Store, account: &Account) {
    let input = endpoint::parse_new(
        json!({"url": "https://example.com/hook"})
            .as_object()
            .unwrap(),
        account,
        false,
        &shared::catalog::Catalog::default(),
    )
    .unwrap();
    let (endpoint, secrets) = endpoint::new_endpoint(account, input, OffsetDateTime::now_utc());
    for _ in 0..10 {
        if let Ok(created) = store.create_endpoint(&endpoint, &secrets).await {
            assert_eq!(created, Creation::Created, "the account has room");
            return;
        }
    }
    panic!("a create failed ten times over");
}

#[tokio::test]
async fn an_account_holds_at_most_500_endpoints_and_a_deletion_makes_room() {
    assert_eq!(MAX_ENDPOINTS_PER_ACCOUNT, 500);
    let api = Api::new().await;
    let endpoints = "/v1/accounts/jane/endpoints";
    let body = json!({"url": "https://example.com/hook"});
    // All but one through the store, with a tenth of its calls failing, a third of
    // those after taking effect: a create sent again after its answer was lost
    // recognises its own endpoint, and the count counts it once.
    let proxy = FaultProxy::start(emulator_url(), 500);
    let faulty = store_through(&proxy, &api.env).await;
    proxy.arm(FaultPlan::share(0.1));
    for _ in 1..MAX_ENDPOINTS_PER_ACCOUNT {
        create_until_answered(&faulty, &"jane".parse().unwrap()).await;
    }
    proxy.disarm();
    let counts = proxy.counts();
    println!("{counts}");
    assert!(counts.faults_of(FaultKind::AnswerLost) > 0);

    let last = api.create("jane", body.clone()).await;
    let (status, refused) = api.call(Method::POST, endpoints, Some(body.clone())).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 500 endpoints"), "{message}");
    assert_eq!(
        endpoint_count(&api.env, &"jane".parse().unwrap()).await,
        500
    );

    // Each account has a limit of its own.
    api.create("john", body.clone()).await;

    // A deletion makes room for one; a deletion of nothing makes none.
    let last = format!("{endpoints}/{}", last["id"].as_str().unwrap());
    let (status, _) = api.call(Method::DELETE, &last, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::DELETE, &last, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.create("jane", body.clone()).await;
    let (status, refused) = api.call(Method::POST, endpoints, Some(body)).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );
}

#[tokio::test]
async fn the_portal_page_needs_no_key_and_may_be_framed_only_where_configured() {
    let mut api = Api::new().await;
    api.deps.config.portal_frame_ancestors = "https://app.example.com".into();
    let request = lambda_http::http::Request::builder()
        .method(Method::GET)
        .uri("/portal")
        .body(Body::Empty)
        .unwrap();
    let response = handle(&api.deps, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        policy.ends_with("; frame-ancestors https://app.example.com"),
        "{policy}"
    );
    let page = std::str::from_utf8(response.body().as_ref()).unwrap();
    assert!(page.contains("Webhooks enabled"));
}

#[tokio::test]
async fn settings_start_enabled_and_a_disabled_account_refuses_redelivery() {
    let api = Api::new().await;
    let settings = "/v1/accounts/jane/settings";
    let (status, body) = api.call(Method::GET, settings, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"webhooks_enabled": true}))
    );
    for refused in [
        json!({"webhooks_enabled": "no"}),
        json!({"webhooks_enabled": null}),
        json!({"webhooks_enabled": 0}),
    ] {
        let (status, body) = api
            .call(Method::PATCH, settings, Some(refused.clone()))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "validation_error"),
            "{refused}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("webhooks_enabled")
        );
    }
    let (status, body) = api
        .call(Method::PATCH, settings, Some(json!({"enabled": false})))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );

    let created = api
        .create("jane", json!({"url": "https://example.com/hook"}))
        .await;
    let endpoint = format!(
        "/v1/accounts/jane/endpoints/{}",
        created["id"].as_str().unwrap()
    );
    let (status, sent) = api
        .call(Method::POST, &format!("{endpoint}/test"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let message = sent["id"].as_str().unwrap().to_string();
    let delivery = api.env.queues.delivery_url().to_string();
    assert_eq!(api.env.queue_depth(&delivery).await, 1);

    let (status, body) = api
        .call(
            Method::PATCH,
            settings,
            Some(json!({"webhooks_enabled": false})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"webhooks_enabled": false}))
    );
    let (_, body) = api.call(Method::GET, settings, None).await;
    assert_eq!(body, json!({"webhooks_enabled": false}));
    // Another account is not touched.
    let (_, body) = api
        .call(Method::GET, "/v1/accounts/bob/settings", None)
        .await;
    assert_eq!(body, json!({"webhooks_enabled": true}));

    let since = json!({"since": "2020-01-01T00:00:00Z"});
    let refused = [
        (format!("{endpoint}/test"), None),
        (format!("{endpoint}/messages/{message}/replay"), None),
        (format!("{endpoint}/recover"), Some(since.clone())),
    ];
    for (path, body) in &refused {
        let (status, answer) = api.call(Method::POST, path, body.clone()).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::CONFLICT, "conflict"),
            "{path}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("disabled"),
            "{answer}"
        );
    }
    // A message that does not exist is not found, whatever the settings.
    let (status, answer) = api
        .call(
            Method::POST,
            &format!("{endpoint}/messages/{}/replay", MessageId::new()),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(
        api.env.queue_depth(&delivery).await,
        1,
        "nothing more queued"
    );

    let (status, _) = api
        .call(
            Method::PATCH,
            settings,
            Some(json!({"webhooks_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::POST, &refused[0].0, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = api.call(Method::POST, &refused[1].0, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(api.env.queue_depth(&delivery).await, 3);
}

#[tokio::test]
async fn portal_sessions_open_one_account_until_revoked() {
    let api = Api::new().await;
    let sessions = "/v1/accounts/jane/portal-sessions";
    let mut request = api.request(Method::POST, sessions, None);
    request
        .headers_mut()
        .insert("host", "hooks.example.com".parse().unwrap());
    let before = OffsetDateTime::now_utc();
    let (status, session) = api.send(request).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("hlp_"));
    assert_eq!(
        session["url"],
        format!("https://hooks.example.com/portal#token={token}")
    );
    let expires_at = shared::timefmt::parse(session["expires_at"].as_str().unwrap()).unwrap();
    // An hour from the request, rounded up to the whole second.
    let hour = time::Duration::hours(1);
    assert!(expires_at >= before + hour, "{expires_at}");
    assert!(
        expires_at <= OffsetDateTime::now_utc() + hour + time::Duration::SECOND,
        "{expires_at}"
    );
    // Only its hash is stored.
    assert_eq!(api.env.count_items("PORTAL#").await, 1);
    assert!(api.env.store.portal_token(&token).await.unwrap().is_none());

    let (status, short) = api
        .call(Method::POST, sessions, Some(json!({"ttl_seconds": 60})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let short_expiry = shared::timefmt::parse(short["expires_at"].as_str().unwrap()).unwrap();
    assert!(short_expiry <= OffsetDateTime::now_utc() + time::Duration::seconds(61));
    for ttl in [json!(59), json!(86_401), json!("60"), json!(1.5)] {
        let (status, body) = api
            .call(Method::POST, sessions, Some(json!({ "ttl_seconds": ttl })))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "validation_error"),
            "{ttl}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("ttl_seconds")
        );
    }

    let (status, _) = api
        .call_as(&token, Method::GET, "/v1/accounts/jane/endpoints", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call_as(&token, Method::GET, "/v1/accounts/bob/endpoints", None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api.call_as(&token, Method::POST, sessions, None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let bob = api.env.portal_token("bob", time::Duration::hours(1)).await;

    let (status, body) = api.call(Method::DELETE, sessions, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    for revoked in [&token, short["token"].as_str().unwrap()] {
        let (status, body) = api
            .call_as(revoked, Method::GET, "/v1/accounts/jane/endpoints", None)
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
    // Another account's sessions live on; a new session of this one works.
    let (status, _) = api
        .call_as(&bob, Method::GET, "/v1/accounts/bob/endpoints", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, fresh) = api.call(Method::POST, sessions, None).await;
    let (status, _) = api
        .call_as(
            fresh["token"].as_str().unwrap(),
            Method::GET,
            "/v1/accounts/jane/settings",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
