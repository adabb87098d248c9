//! The HTTP surface through `hookline dev`'s gateway, and the command line against
//! the same table: what a platform and an operator see.

use std::process::Command;
use std::time::Duration;

use hookline_cli::emulator::Emulator;
use hookline_tests::{Dev, Receiver, binary, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    dev: &Dev,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = dev.request(client, method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body)
}

#[tokio::test]
async fn every_route_answers_through_the_gateway() {
    let dev = Dev::start(&["--block-private-targets"]);
    let client = reqwest::Client::new();
    let (status, created) = call(
        &dev,
        &client,
        Method::POST,
        "/v1/accounts/jane/endpoints",
        Some(json!({"url": "https://example.com/hook"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let endpoint = format!("/v1/accounts/jane/endpoints/{id}");
    let (status, accepted) = call(
        &dev,
        &client,
        Method::POST,
        "/v1/events",
        Some(json!({"event_type": "dataset.created", "dataset": "jane/flowers", "object": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let message_id = accepted["id"].as_str().unwrap();
    let message = format!("/v1/accounts/jane/messages/{message_id}");

    let expectations = [
        (Method::GET, "/health".to_string(), None, StatusCode::OK),
        (
            Method::GET,
            "/v1/event-types".to_string(),
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/accounts/jane/endpoints?limit=1".to_string(),
            None,
            StatusCode::OK,
        ),
        (Method::GET, endpoint.clone(), None, StatusCode::OK),
        (
            Method::PATCH,
            endpoint.clone(),
            Some(json!({"description": "ops"})),
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("{endpoint}/secret"),
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("{endpoint}/secret/rotate"),
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("{endpoint}/attempts?status=failed"),
            None,
            StatusCode::OK,
        ),
        (Method::GET, message.clone(), None, StatusCode::OK),
        (
            Method::POST,
            format!("{endpoint}/test"),
            None,
            StatusCode::ACCEPTED,
        ),
        (
            Method::POST,
            format!("{endpoint}/messages/{message_id}/replay"),
            None,
            StatusCode::ACCEPTED,
        ),
        (
            Method::POST,
            format!("{endpoint}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
            StatusCode::ACCEPTED,
        ),
        (Method::GET, "/v1/dlq".to_string(), None, StatusCode::OK),
        (
            Method::POST,
            "/v1/dlq/replay".to_string(),
            Some(json!({"limit": 1})),
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/v1/accounts/bob/endpoints/{id}"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/nowhere".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/v1/events".to_string(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/v1/accounts/jane/endpoints".to_string(),
            Some(json!({"url": "https://2130706433/"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/accounts/jane/endpoints".to_string(),
            Some(json!({"url": "https://[::ffff:127.0.0.1]/"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            endpoint.clone(),
            None,
            StatusCode::NO_CONTENT,
        ),
        (Method::GET, endpoint.clone(), None, StatusCode::NOT_FOUND),
    ];
    for (method, path, body, expected) in expectations {
        let (status, answer) = call(&dev, &client, method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        if !status.is_success() {
            assert!(
                answer["error"]["code"].is_string(),
                "{method} {path}: {answer}"
            );
        }
        // Only the secret's own routes answer with it (creation did, above).
        let secret_route = path.ends_with("/secret") || path.ends_with("/secret/rotate");
        assert_eq!(
            answer.to_string().contains("whsec_"),
            secret_route,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_portal_session_s_url_is_this_server_s_page_and_its_token_opens_the_account() {
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();
    let sessions = "/v1/accounts/jane/portal-sessions";
    let (status, session) = call(&dev, &client, Method::POST, sessions, None).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let token = session["token"].as_str().unwrap();
    assert_eq!(session["url"], dev.url(&format!("/portal#token={token}")));
    for path in ["/v1/event-types", "/v1/accounts/jane/settings"] {
        let response = client
            .get(dev.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn an_oversized_or_non_json_body_is_refused_at_the_edge() {
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();
    let huge = format!(
        r#"{{"event_type":"sample.created","dataset":"jane/flowers","object":{{"blob":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let response = dev
        .request(&client, Method::POST, "/v1/events")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let response = dev
        .request(&client, Method::POST, "/v1/events")
        .header("content-type", "text/csv")
        .body("event_type,dataset\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_posts_a_batch_retries_it_and_each_keyed_event_arrives_once() {
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let (_, created) = call(
        &dev,
        &client,
        Method::POST,
        "/v1/accounts/jane/endpoints",
        Some(json!({"url": receiver.url("/hook")})),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let event = |name: &str, id: Option<&str>| {
        let mut event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": name}});
        if let Some(id) = id {
            event["id"] = json!(id);
        }
        event
    };
    let batch = json!({"events": [
        event("rose.png", Some("k1")),
        event("tulip.png", Some("k2")),
        {"event_type": "sample.created", "dataset": "jane"},
        event("daisy.png", None),
    ]});

    let (status, first) = call(
        &dev,
        &client,
        Method::POST,
        "/v1/events/batch",
        Some(batch.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first = first["data"].as_array().unwrap().clone();
    assert_eq!(first.len(), 4);
    assert!(
        first[..2]
            .iter()
            .all(|item| item["endpoints"] == 1 && item.get("duplicate").is_none())
    );
    assert_eq!(first[2]["error"]["code"], "validation_error");
    assert_eq!(first[3]["endpoints"], 1);

    // The platform did not see the answer and sends the batch again: the keyed
    // events are duplicates, the unkeyed one is a new event.
    let (status, again) = call(&dev, &client, Method::POST, "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let again = again["data"].as_array().unwrap().clone();
    for i in 0..2 {
        assert_eq!(
            again[i],
            json!({"id": first[i]["id"], "endpoints": 0, "duplicate": true})
        );
    }
    assert_eq!(again[2]["error"]["code"], "validation_error");
    assert_ne!(again[3]["id"], first[3]["id"]);

    // A key used for another event is refused, alone as in a batch.
    let (status, reused) = call(
        &dev,
        &client,
        Method::POST,
        "/v1/events",
        Some(event("lily.png", Some("k1"))),
    )
    .await;
    assert_eq!(
        (status, &reused["error"]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("idempotency_key_reused")
        )
    );

    let deliveries = receiver
        .wait_for(4, std::time::Duration::from_secs(30))
        .await;
    let mut ids: Vec<&str> = deliveries.iter().map(|d| d.header("webhook-id")).collect();
    ids.sort_unstable();
    let mut expected = vec![
        &first[0]["id"],
        &first[1]["id"],
        &first[3]["id"],
        &again[3]["id"],
    ]
    .into_iter()
    .map(|id| id.as_str().unwrap())
    .collect::<Vec<_>>();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for delivery in &deliveries {
        standardwebhooks::Webhook::new(&secret)
            .unwrap()
            .verify(&delivery.body, &delivery.headers)
            .unwrap();
    }
}

fn hookline(emulator: &Emulator, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("hookline"))
        .args(args)
        .env("AWS_ENDPOINT_URL", emulator.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("HOOKLINE_TABLE", "hookline")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn dev_on_a_port_in_use_says_so_at_once_and_starts_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(binary("hookline"))
        .args(["dev", "--port", &port])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!("127.0.0.1:{port}")) && said.contains("in use"),
        "{said}"
    );
    // Before the emulator was started.
    assert!(!said.contains("emulator up"), "{said}");
}

#[tokio::test]
async fn the_command_line_manages_keys_and_endpoints_in_the_same_table() {
    let emulator = Emulator::start().unwrap();
    let dev = Dev::start(&["--emulator", emulator.url()]);
    let client = reqwest::Client::new();

    let (ok, key, _) = hookline(&emulator, &["keys", "create"]);
    assert!(ok);
    let key = key.trim();
    assert!(key.starts_with("hlk_"));
    let with_new_key = client
        .get(dev.url("/v1/event-types"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(with_new_key.status(), StatusCode::OK);

    // Listed beside dev's own key, by id and first characters only.
    let (ok, listed, _) = hookline(&emulator, &["keys", "list"]);
    assert!(ok);
    let listed: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let ours = listed
        .iter()
        .find(|k| k["prefix"] == key[..12])
        .expect("the new key is listed");
    assert!(!listed.iter().any(|k| k.to_string().contains(key)));
    assert!(shared::timefmt::parse(ours["created_at"].as_str().unwrap()).is_some());
    let key_id = ours["id"].as_str().unwrap();
    assert!(key_id.starts_with("key_"));

    // Revoked: within a minute the key answers 401 (instances trust a key they
    // found for `KNOWN_KEY_TTL`), and at once it is no longer listed.
    let (ok, _, _) = hookline(&emulator, &["keys", "revoke", key_id]);
    assert!(ok);
    assert!(shared::store::KNOWN_KEY_TTL < Duration::from_secs(60));
    poll_until(
        Duration::from_secs(60),
        "the revoked key refused",
        || async {
            let answer = client
                .get(dev.url("/v1/event-types"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (answer.status() == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    let (ok, listed, _) = hookline(&emulator, &["keys", "list"]);
    assert!(ok && !listed.contains(key_id), "{listed}");
    assert_eq!(listed.lines().count(), 1);
    let (ok, _, error) = hookline(&emulator, &["keys", "revoke", key_id]);
    assert!(!ok && error.contains(key_id), "{error}");

    let (ok, created, _) = hookline(
        &emulator,
        &[
            "endpoints",
            "create",
            "--account",
            "jane",
            "--url",
            "https://example.com/cli",
            "--event-type",
            "sample.created",
        ],
    );
    assert!(ok);
    let created: Value = serde_json::from_str(&created).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let (status, fetched) = call(
        &dev,
        &client,
        Method::GET,
        &format!("/v1/accounts/jane/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["event_types"], json!(["sample.created"]));

    let (ok, listed, _) = hookline(&emulator, &["endpoints", "list", "--account", "jane"]);
    assert!(ok);
    let listed: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("secret").is_none());

    let (ok, _, error) = hookline(
        &emulator,
        &[
            "endpoints",
            "create",
            "--account",
            "jane",
            "--url",
            "ftp://example.com",
        ],
    );
    assert!(!ok);
    assert!(error.contains("url"), "{error}");

    let (ok, _, _) = hookline(&emulator, &["endpoints", "delete", "--account", "jane", id]);
    assert!(ok);
    let (status, _) = call(
        &dev,
        &client,
        Method::GET,
        &format!("/v1/accounts/jane/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (ok, _, error) = hookline(&emulator, &["endpoints", "delete", "--account", "jane", id]);
    assert!(!ok && error.contains("no endpoint"), "{error}");
}
