//! Every route of the running API against its OpenAPI document (`GET /v1/openapi.json`):
//! valid and refused requests of each route, each answer's status listed for its
//! operation and its body valid against the documented schema, and every answer the
//! document lists seen at least once.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use hookline_cli::emulator::Emulator;
use hookline_tests::faults::{FaultPlan, FaultProxy};
use hookline_tests::openapi::Document;
use hookline_tests::{Dev, Receiver, Reply, poll_until};
use reqwest::Method;
use serde_json::{Value, json};
use shared::http::MAX_BATCH_BODY_BYTES;
use shared::store::{Claim, Store};

/// A request's body.
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// Sends requests to `hookline dev`, checks each answer against the document, and
/// remembers which documented answers came.
struct Walk {
    dev: Dev,
    client: reqwest::Client,
    document: Document,
    seen: BTreeSet<(String, String, u16)>,
}

impl Walk {
    /// Starts dev with `args` and reads the document it serves (without a key).
    async fn start(args: &[&str]) -> Self {
        let dev = Dev::start(args);
        let client = reqwest::Client::new();
        let response = client
            .get(dev.url("/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let document = Document::new(response.json().await.unwrap());
        let mut walk = Self {
            dev,
            client,
            document,
            seen: BTreeSet::new(),
        };
        walk.call("GET", "/v1/openapi.json", false, Body::None, 200)
            .await;
        walk
    }

    /// Sends `method path` (with the platform key when `key`), expects `status`, and
    /// checks the answer against the document. Returns the JSON body (or null).
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        key: bool,
        body: Body,
        status: u16,
    ) -> Value {
        let key = key.then(|| self.dev.api_key.clone());
        self.call_as(key.as_deref(), method, path, body, status)
            .await
    }

    /// [`Walk::call`] with `bearer` as the key, if any.
    async fn call_as(
        &mut self,
        bearer: Option<&str>,
        method: &str,
        path: &str,
        body: Body,
        status: u16,
    ) -> Value {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method.clone(), self.dev.url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
        };
        let response = request.send().await.unwrap();
        let answered = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = response.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(answered, status, "{method} {path}: {text}");
        if let Err(problem) = self.document.check(
            method.as_str(),
            path,
            answered,
            content_type.as_deref(),
            &bytes,
        ) {
            panic!("{method} {path} → {answered}: {problem}");
        }
        let template = self.document.template_of(path).unwrap();
        self.seen
            .insert((method.as_str().to_string(), template, answered));
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn ok(&mut self, method: &str, path: &str, body: Value, status: u16) -> Value {
        self.call(method, path, true, Body::Json(body), status)
            .await
    }

    /// Each documented operation with its path made concrete by `concrete`.
    fn operations(&self, concrete: &dyn Fn(&str) -> String) -> Vec<(String, String, Value)> {
        let mut operations = Vec::new();
        for template in self.document.paths() {
            for method in self.document.methods(&template) {
                let operation = self.document.as_value()["paths"][&template]
                    [method.to_ascii_lowercase()]
                .clone();
                operations.push((method, concrete(&template), operation));
            }
        }
        operations
    }
}

fn is_public(operation: &Value) -> bool {
    operation["security"]
        .as_array()
        .is_some_and(|requirements| requirements.is_empty())
}

fn event(id: &str, name: &str) -> Value {
    json!({
        "event_type": "sample.created",
        "dataset": "jane/flowers",
        "object": {"name": name},
        "id": id,
    })
}

#[tokio::test]
async fn every_route_answers_as_the_document_says() {
    let emulator = Emulator::start().expect("the emulator starts");
    let mut walk = Walk::start(&["--emulator", emulator.url(), "--retry-schedule", "1s"]).await;
    // Each message's first delivery fails with a body, its retry succeeds.
    let delivered = Mutex::new(BTreeSet::new());
    let receiver = Receiver::scripted(move |_, headers| {
        let id = headers["webhook-id"].to_str().unwrap().to_string();
        if delivered.lock().unwrap().insert(id) {
            Reply::status(500).body_of(10)
        } else {
            Reply::status(204)
        }
    })
    .await;

    walk.call("GET", "/health", false, Body::None, 200).await;
    walk.call("GET", "/portal", false, Body::None, 200).await;
    for asset in ["portal.css", "portal.js?v=1"] {
        walk.call("GET", &format!("/portal/{asset}"), false, Body::None, 200)
            .await;
    }
    walk.call("GET", "/portal/nope.js", false, Body::None, 404)
        .await;
    walk.call("GET", "/v1/event-types", true, Body::None, 200)
        .await;

    // A registered event type: made, refused twice, changed, and archived.
    let types = "/v1/event-types";
    let walked = "/v1/event-types/task.walked";
    let registration = json!({"name": "task.walked", "schema": {"type": "object"}, "text_template": "Task {object.name}"});
    walk.ok("POST", types, registration.clone(), 201).await;
    walk.ok("POST", types, registration, 409).await;
    walk.ok("POST", types, json!({"name": "Task"}), 400).await;
    walk.ok("PATCH", walked, json!({"description": "Walked."}), 200)
        .await;
    walk.ok("PATCH", walked, json!({"schema": {"type": 1}}), 400)
        .await;
    walk.ok("PATCH", "/v1/event-types/task.never", json!({}), 404)
        .await;
    walk.call(
        "DELETE",
        "/v1/event-types/sample.created",
        true,
        Body::None,
        400,
    )
    .await;
    walk.call(
        "DELETE",
        "/v1/event-types/task.never",
        true,
        Body::None,
        404,
    )
    .await;
    walk.call("GET", types, true, Body::None, 200).await;

    // Endpoints: two, so a page of one has a next cursor.
    let endpoints = "/v1/accounts/jane/endpoints";
    let created = walk
        .ok(
            "POST",
            endpoints,
            json!({"url": receiver.url("/hook"), "event_types": ["sample.created"], "description": "walk"}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    walk.ok(
        "POST",
        endpoints,
        json!({"url": receiver.url("/other"), "event_types": ["release.created"], "format": "slack"}),
        201,
    )
    .await;
    walk.ok("POST", endpoints, json!({"url": "ftp://example.com"}), 400)
        .await;
    walk.ok("POST", "/v1/accounts/-jane/endpoints", json!({}), 404)
        .await;
    let page = walk
        .call(
            "GET",
            &format!("{endpoints}?limit=1"),
            true,
            Body::None,
            200,
        )
        .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    walk.call(
        "GET",
        &format!("{endpoints}?cursor={cursor}"),
        true,
        Body::None,
        200,
    )
    .await;
    walk.call(
        "GET",
        &format!("{endpoints}?limit=0"),
        true,
        Body::None,
        400,
    )
    .await;
    walk.call(
        "GET",
        &format!("{endpoints}?cursor=nope"),
        true,
        Body::None,
        400,
    )
    .await;
    walk.call("GET", "/v1/accounts/-jane/endpoints", true, Body::None, 404)
        .await;

    // Events: accepted, repeated, reused, refused, and held by a first request at work.
    let accepted = walk
        .ok("POST", "/v1/events", event("walk-1", "rose.png"), 202)
        .await;
    let message_id = accepted["id"].as_str().unwrap().to_string();
    let duplicate = walk
        .ok("POST", "/v1/events", event("walk-1", "rose.png"), 202)
        .await;
    assert_eq!(duplicate["duplicate"], true);
    walk.ok("POST", "/v1/events", event("walk-1", "tulip.png"), 422)
        .await;
    walk.ok("POST", "/v1/events", json!({"event_type": "nope"}), 400)
        .await;
    // No body where one is required is not JSON.
    let empty = walk.call("POST", "/v1/events", true, Body::None, 400).await;
    assert_eq!(empty["error"]["code"], "invalid_json", "{empty}");
    hold_idempotency_key(emulator.url(), "held", &event("held", "iris.png")).await;
    walk.ok("POST", "/v1/events", event("held", "iris.png"), 409)
        .await;
    let batch = walk
        .ok(
            "POST",
            "/v1/events/batch",
            json!({"events": [event("walk-2", "lily.png"), {"event_type": "nope"}]}),
            202,
        )
        .await;
    assert_eq!(batch["data"][1]["error"]["code"], "validation_error");
    walk.ok("POST", "/v1/events/batch", json!({"events": []}), 400)
        .await;

    // The message's first delivery fails, its retry succeeds.
    let message = format!("/v1/accounts/jane/messages/{message_id}");
    poll_until(
        Duration::from_secs(60),
        "a failed and a succeeded attempt",
        || async {
            let response = walk
                .dev
                .request(&walk.client, Method::GET, &message)
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            (body["attempts"].as_array()?.len() >= 2).then_some(())
        },
    )
    .await;
    let shown = walk.call("GET", &message, true, Body::None, 200).await;
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2, "{shown}");
    walk.call(
        "GET",
        "/v1/accounts/jane/messages/msg_0",
        true,
        Body::None,
        404,
    )
    .await;

    let endpoint = format!("{endpoints}/{id}");
    let unknown = format!("{endpoints}/ep_0");
    let attempts = format!("{endpoint}/attempts");
    for query in ["", "?status=failed", "?status=succeeded&limit=1"] {
        walk.call("GET", &format!("{attempts}{query}"), true, Body::None, 200)
            .await;
    }
    for query in ["?status=bogus", "?limit=251", "?cursor=nope"] {
        walk.call("GET", &format!("{attempts}{query}"), true, Body::None, 400)
            .await;
    }
    walk.call("GET", &format!("{unknown}/attempts"), true, Body::None, 404)
        .await;

    walk.call("GET", &endpoint, true, Body::None, 200).await;
    walk.call("GET", &unknown, true, Body::None, 404).await;
    walk.ok(
        "PATCH",
        &endpoint,
        json!({"description": "changed", "datasets": null}),
        200,
    )
    .await;
    walk.ok("PATCH", &endpoint, json!({"version": 0}), 400)
        .await;
    walk.ok("PATCH", &unknown, json!({}), 404).await;
    for path in [format!("{endpoint}/secret"), format!("{unknown}/secret")] {
        let status = if path.starts_with(&endpoint) {
            200
        } else {
            404
        };
        walk.call("GET", &path, true, Body::None, status).await;
        walk.call("POST", &format!("{path}/rotate"), true, Body::None, status)
            .await;
    }
    walk.ok("POST", &format!("{endpoint}/test"), json!({}), 202)
        .await;
    walk.ok(
        "POST",
        &format!("{endpoint}/test"),
        json!({"event_type": "nope"}),
        400,
    )
    .await;
    walk.ok("POST", &format!("{unknown}/test"), json!({}), 404)
        .await;
    let replay = format!("{endpoint}/messages/{message_id}/replay");
    walk.call("POST", &replay, true, Body::None, 202).await;
    walk.call(
        "POST",
        &format!("{endpoint}/messages/msg_0/replay"),
        true,
        Body::None,
        404,
    )
    .await;
    walk.call(
        "POST",
        &format!("{unknown}/messages/{message_id}/replay"),
        true,
        Body::None,
        404,
    )
    .await;
    let recover = format!("{endpoint}/recover");
    walk.ok(
        "POST",
        &recover,
        json!({"since": "2020-01-01T00:00:00Z"}),
        202,
    )
    .await;
    walk.ok(
        "POST",
        &recover,
        json!({"until": "2020-01-01T00:00:00Z"}),
        400,
    )
    .await;
    walk.ok(
        "POST",
        &format!("{unknown}/recover"),
        json!({"since": "2020-01-01T00:00:00Z"}),
        404,
    )
    .await;

    // An email endpoint, and its digest sent now; a webhook endpoint has no digest.
    let mailbox = json!({"type": "email", "emails": ["ops@example.com"],
                         "digest": {"every": "week", "at": "09:00", "weekday": "monday"}});
    let mailbox = walk.ok("POST", endpoints, mailbox, 201).await;
    let mailbox = format!("{endpoints}/{}", mailbox["id"].as_str().unwrap());
    walk.call("GET", &mailbox, true, Body::None, 200).await;
    walk.ok(
        "PATCH",
        &mailbox,
        json!({"url": "https://example.com"}),
        400,
    )
    .await;
    walk.call("GET", &format!("{mailbox}/secret"), true, Body::None, 404)
        .await;
    let digest = format!("{mailbox}/digest");
    walk.call("POST", &digest, true, Body::None, 202).await;
    let until = shared::timefmt::format(time::OffsetDateTime::now_utc());
    walk.ok("POST", &digest, json!({ "until": until }), 202)
        .await;
    walk.ok("POST", &digest, json!({"since": "yesterday"}), 400)
        .await;
    walk.ok("POST", &format!("{endpoint}/digest"), json!({}), 404)
        .await;
    walk.call("DELETE", &mailbox, true, Body::None, 204).await;

    walk.call("GET", "/v1/dlq", true, Body::None, 200).await;
    walk.ok("POST", "/v1/dlq/replay", json!({"limit": 10}), 200)
        .await;
    walk.ok("POST", "/v1/dlq/replay", json!({"limit": 0}), 400)
        .await;

    // While the account's webhooks are disabled, redelivery is refused.
    let settings = "/v1/accounts/jane/settings";
    walk.call("GET", settings, true, Body::None, 200).await;
    walk.ok("PATCH", settings, json!({"webhooks_enabled": 1}), 400)
        .await;
    walk.ok("PATCH", settings, json!({"webhooks_enabled": false}), 200)
        .await;
    walk.ok("POST", &format!("{endpoint}/test"), json!({}), 409)
        .await;
    walk.call("POST", &replay, true, Body::None, 409).await;
    walk.ok(
        "POST",
        &recover,
        json!({"since": "2020-01-01T00:00:00Z"}),
        409,
    )
    .await;
    walk.ok("PATCH", settings, json!({"webhooks_enabled": true}), 200)
        .await;

    // A portal token: its account's routes only, never the platform's.
    let sessions = "/v1/accounts/jane/portal-sessions";
    walk.ok("POST", sessions, json!({"ttl_seconds": 59}), 400)
        .await;
    let session = walk.ok("POST", sessions, json!({}), 201).await;
    let token = session["token"].as_str().unwrap().to_string();
    let token = Some(token.as_str());
    walk.call_as(token, "GET", &endpoint, Body::None, 200).await;
    walk.call_as(token, "GET", "/v1/accounts/bob/endpoints", Body::None, 404)
        .await;
    for (method, path) in [
        ("POST", "/v1/events"),
        ("POST", "/v1/events/batch"),
        ("POST", "/v1/event-types"),
        ("PATCH", "/v1/event-types/task.walked"),
        ("DELETE", "/v1/event-types/task.walked"),
        ("GET", "/v1/dlq"),
        ("POST", "/v1/dlq/replay"),
        ("POST", sessions),
        ("DELETE", sessions),
    ] {
        walk.call_as(token, method, path, Body::Json(json!({})), 403)
            .await;
    }
    walk.call("DELETE", sessions, true, Body::None, 204).await;
    walk.call_as(token, "GET", &endpoint, Body::None, 401).await;

    // What every operation refuses alike: no key; a path whose account is not an
    // account name; and of a body, one that is not JSON, not labelled JSON, or too large.
    let concrete = |template: &str| {
        template
            .replace("{account}", "jane")
            .replace("{endpoint_id}", &id)
            .replace("{message_id}", &message_id)
            .replace("{asset}", "portal.css")
            .replace("{name}", "task.walked")
    };
    let too_large = format!("{{\"x\": \"{}\"}}", "x".repeat(MAX_BATCH_BODY_BYTES));
    for (method, path, operation) in walk.operations(&concrete) {
        if !is_public(&operation) {
            walk.call(&method, &path, false, Body::None, 401).await;
        }
        if let Some(rest) = path.strip_prefix("/v1/accounts/jane/") {
            let path = format!("/v1/accounts/-jane/{rest}");
            walk.call(&method, &path, true, Body::None, 404).await;
        }
        if operation.get("requestBody").is_some() {
            let raw = |content_type, text: &str| Body::Raw(content_type, text.as_bytes().to_vec());
            walk.call(
                &method,
                &path,
                true,
                raw("application/json", "{\"a\":"),
                400,
            )
            .await;
            walk.call(&method, &path, true, raw("application/json", "[1]"), 400)
                .await;
            walk.call(&method, &path, true, raw("text/plain", "{}"), 415)
                .await;
            walk.call(
                &method,
                &path,
                true,
                raw("application/json", &too_large),
                413,
            )
            .await;
        }
    }

    walk.call("DELETE", &endpoint, true, Body::None, 204).await;
    walk.call(
        "DELETE",
        "/v1/event-types/task.walked",
        true,
        Body::None,
        204,
    )
    .await;
    walk.call("DELETE", &endpoint, true, Body::None, 404).await;

    // A wrong method is refused with the documented methods in `Allow`; an unknown
    // route is a 404; both with the error body.
    for template in walk.document.paths() {
        let path = concrete(&template);
        let response = walk
            .dev
            .request(&walk.client, Method::PUT, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "PUT {path}");
        let allow: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(String::from)
            .collect();
        assert_eq!(allow, walk.document.methods(&template), "{template}");
        let body: Value = response.json().await.unwrap();
        walk.document
            .validate("/components/schemas/Error", &body)
            .unwrap();
    }
    let response = walk
        .dev
        .request(&walk.client, Method::GET, "/v1/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    walk.document
        .validate("/components/schemas/Error", &body)
        .unwrap();

    // Every documented answer came, but the 500s, which the next test brings about.
    let missing: Vec<_> = walk
        .document
        .answers()
        .into_iter()
        .filter(|(_, _, status)| *status != 500)
        .filter(|answer| !walk.seen.contains(answer))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but never answered: {missing:?}"
    );
}

/// Stores a message under idempotency key `key` whose fan-out is still under way,
/// as a first request at work leaves it, so the next request with the key waits.
async fn hold_idempotency_key(emulator_url: &str, key: &str, body: &Value) {
    let sdk = shared::aws::for_emulator(emulator_url).await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        hookline_cli::local::TABLE,
        Duration::from_secs(24 * 60 * 60),
    );
    let event = shared::event::parse(
        body.as_object().unwrap(),
        None,
        &shared::catalog::Catalog::default(),
    )
    .unwrap();
    let fingerprint = event.fingerprint();
    let message = event.into_message("2021-08-01", time::OffsetDateTime::now_utc());
    store
        .insert_message(
            &message,
            Some(Claim {
                key,
                fingerprint: &fingerprint,
            }),
        )
        .await
        .expect("the message and its claim are stored");
}

/// With every AWS call failing, each operation that documents a 500 answers one.
#[tokio::test]
async fn every_route_answers_a_fault_as_the_document_says() {
    let emulator = Emulator::start().expect("the emulator starts");
    let proxy = FaultProxy::start(emulator.url(), 1);
    let mut walk = Walk::start(&["--emulator", proxy.url()]).await;
    proxy.arm(FaultPlan {
        share: 1.0,
        after_forwarding: 0.0,
        throttled: 0.0,
    });
    let concrete = |template: &str| {
        template
            .replace("{account}", "jane")
            .replace("{endpoint_id}", "ep_0")
            .replace("{message_id}", "msg_0")
            .replace("{asset}", "portal.css")
            .replace("{name}", "task.walked")
    };
    let mut faulted = 0;
    for (method, path, operation) in walk.operations(&concrete) {
        if operation["responses"].get("500").is_some() {
            walk.ok(&method, &path, json!({}), 500).await;
            faulted += 1;
        } else {
            walk.call(&method, &path, false, Body::None, 200).await;
        }
    }
    proxy.disarm();
    assert!(faulted > 0);
}
