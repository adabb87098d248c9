//! A registered event type through `hookline dev` and the shipped binaries: its
//! schema refuses a bad object at ingest, its text template fills the text of a
//! webhook and of a Slack delivery, and archiving it stops new use only.

use std::time::Duration;

use hookline_tests::{Dev, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_registered_type_s_template_fills_webhook_and_slack_text() {
    let webhook = Receiver::start().await;
    let slack = Receiver::start().await;
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();

    let registration = json!({
        "name": "task.submitted",
        "description": "A task was submitted at a workflow stage.",
        "schema": {
            "type": "object",
            "required": ["task_id", "stage", "assignee", "submitted_at"],
            "properties": {
                "task_id": {"type": "string"},
                "stage": {"type": "string"},
                "assignee": {"type": "string"},
                "submitted_at": {"type": "string", "format": "date-time"}
            }
        },
        "text_template": "Task {object.task_id} submitted at {object.stage} by {object.assignee} in {dataset}"
    });
    let (status, created) = dev
        .send(&client, Method::POST, "/v1/event-types", registration)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let endpoints = "/v1/accounts/jane/endpoints";
    for (receiver, format) in [(&webhook, "standard"), (&slack, "slack")] {
        let body = json!({"url": receiver.url("/hook"), "event_types": ["task.submitted"], "format": format});
        let (status, endpoint) = dev.send(&client, Method::POST, endpoints, body).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    }

    let object = json!({"task_id": "t-17", "stage": "review", "assignee": "ana", "submitted_at": "2026-11-23T10:00:00Z"});
    let mut bad = object.clone();
    bad["task_id"] = json!(17);
    let (status, refused) = dev
        .send(
            &client,
            Method::POST,
            "/v1/events",
            json!({"event_type": "task.submitted", "dataset": "jane/flowers", "object": bad}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "validation_error");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("/object/task_id: "),
        "{refused}"
    );

    let (status, accepted) = dev
        .send(
            &client,
            Method::POST,
            "/v1/events",
            json!({"event_type": "task.submitted", "dataset": "jane/flowers", "object": object}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["endpoints"], 2);

    let text = "Task t-17 submitted at review by ana in jane/flowers";
    let delivered = webhook.wait_for(1, DELIVERY_TIMEOUT).await;
    assert_eq!(delivered[0].json()["event_type"], "task.submitted");
    assert_eq!(delivered[0].json()["text"], text);
    assert_eq!(delivered[0].json()["object"], object);
    let delivered = slack.wait_for(1, DELIVERY_TIMEOUT).await;
    assert_eq!(delivered[0].json(), json!({"text": text}));

    // Archived: refused at ingest and for a new subscription; the endpoints keep it.
    let (status, _) = dev
        .send(
            &client,
            Method::DELETE,
            "/v1/event-types/task.submitted",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Every ingest instance refuses it at once: several posts in a row, so that
    // each instance answers one.
    let archived =
        json!({"event_type": "task.submitted", "dataset": "jane/flowers", "object": object});
    for _ in 0..4 {
        let (status, body) = dev
            .send(&client, Method::POST, "/v1/events", archived.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let body = json!({"url": webhook.url("/new"), "event_types": ["task.submitted"]});
    let (status, refused) = dev.send(&client, Method::POST, endpoints, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (_, listed) = dev.send(&client, Method::GET, endpoints, Value::Null).await;
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let first = format!("{endpoints}/{}", listed[0]["id"].as_str().unwrap());
    let (status, patched) = dev
        .send(
            &client,
            Method::PATCH,
            &first,
            json!({"event_types": ["task.submitted", "sample.created"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["event_types"],
        json!(["task.submitted", "sample.created"])
    );
}
