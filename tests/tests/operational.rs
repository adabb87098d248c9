//! hookline's operational events and auto-disable through `hookline dev` and the
//! shipped binaries: the types in the catalog, refused at ingest and for
//! registration, subscribable by name; raised where they happen and delivered like
//! any event, never to the endpoint concerned; a 410 or a long run of failures
//! disabling an endpoint with its reason, cleared when it is enabled again.

use hookline_tests::Dev;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPERATIONAL: [&str; 4] = [
    "endpoint.disabled",
    "message.attempt.failing",
    "message.attempt.exhausted",
    "message.attempt.recovered",
];

#[tokio::test]
async fn the_operational_types_are_listed_and_subscribable_but_never_posted_or_registered() {
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();

    let (status, listed) = dev
        .send(&client, Method::GET, "/v1/event-types", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    let operational: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["operational"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(operational, OPERATIONAL);

    for name in OPERATIONAL {
        let event = json!({"event_type": name, "dataset": "jane/flowers", "object": {}});
        let (status, refused) = dev.send(&client, Method::POST, "/v1/events", event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {refused}");
        assert_eq!(refused["error"]["code"], "validation_error");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operational"),
            "{refused}"
        );

        let registration = json!({"name": name, "description": "mine now"});
        let (status, _) = dev
            .send(&client, Method::POST, "/v1/event-types", registration)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}");
    }

    let endpoint = json!({"url": "http://127.0.0.1:9/hook", "event_types": OPERATIONAL});
    let (status, created) = dev
        .send(
            &client,
            Method::POST,
            "/v1/accounts/jane/endpoints",
            endpoint,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let mut sorted = OPERATIONAL;
    sorted.sort_unstable();
    assert_eq!(created["event_types"], json!(sorted));
    assert_eq!(created["disabled_reason"], Value::Null);
}
