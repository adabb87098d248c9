//! hookline's operational events and auto-disable through `hookline dev` and the
//! shipped binaries: the types in the catalog, refused at ingest and for
//! registration, subscribable by name; raised where they happen and delivered like
//! any event, never to the endpoint concerned; a 410 or a long run of failures
//! disabling an endpoint with its reason, cleared when it is enabled again.

use std::time::Duration;

use hookline_tests::{Dev, Receiver, Reply, TestEnv, emails_to, emulator_url, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const RAISE_TIMEOUT: Duration = Duration::from_secs(40);

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
    assert_eq!(created["event_types"], json!(OPERATIONAL));
    assert_eq!(created["disabled_reason"], Value::Null);
}

/// Creates an endpoint of jane at `url` for `event_types`; its id.
async fn endpoint(
    dev: &Dev,
    client: &reqwest::Client,
    url: String,
    event_types: &[&str],
) -> String {
    let body = json!({"url": url, "event_types": event_types});
    let (status, created) = dev
        .send(client, Method::POST, "/v1/accounts/jane/endpoints", body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// The operational events `receiver` got: (webhook-id, body), in arrival order.
fn operational(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .deliveries()
        .iter()
        .map(|d| (d.header("webhook-id").to_string(), d.json()))
        .filter(|(_, body)| OPERATIONAL.contains(&body["event_type"].as_str().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn failing_exhausted_and_recovered_reach_subscribers_once_and_never_the_endpoint_concerned() {
    let watcher = Receiver::start().await;
    let always_failing = Receiver::scripted(|_, _| Reply::status(500)).await;
    let recovering = Receiver::statuses(&[500, 500, 500, 500]).await;
    let dev = Dev::start(&["--retry-schedule", "1s,1s,1s,1s"]);
    let client = reqwest::Client::new();

    let watcher_id = endpoint(&dev, &client, watcher.url("/ops"), &OPERATIONAL).await;
    // It lists the operational types too: it gets those about the other endpoint
    // (and fails them, which raises nothing more), never those about itself.
    let mut types = OPERATIONAL.to_vec();
    types.push("sample.created");
    let failing_id = endpoint(&dev, &client, always_failing.url("/hook"), &types).await;
    let recovering_id = endpoint(&dev, &client, recovering.url("/hook"), &["sample.created"]).await;

    let event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}});
    let (status, accepted) = dev.send(&client, Method::POST, "/v1/events", event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let message_id = accepted["id"].as_str().unwrap();

    let seen = poll_until(
        RAISE_TIMEOUT,
        "four operational events at the watcher",
        || async {
            let seen = operational(&watcher);
            (seen.len() >= 4).then_some(seen)
        },
    )
    .await;
    let by_type = |event_type: &str, about: &str| -> Vec<&Value> {
        seen.iter()
            .map(|(_, body)| body)
            .filter(|b| b["event_type"] == event_type && b["object"]["endpoint_id"] == about)
            .collect()
    };
    let expected = [
        (
            "message.attempt.failing",
            &failing_id,
            json!({"endpoint_id": failing_id, "message_id": message_id, "attempt": 4, "error": null, "response_status": 500}),
        ),
        (
            "message.attempt.exhausted",
            &failing_id,
            json!({"endpoint_id": failing_id, "message_id": message_id, "attempts": 5}),
        ),
        (
            "message.attempt.failing",
            &recovering_id,
            json!({"endpoint_id": recovering_id, "message_id": message_id, "attempt": 4, "error": null, "response_status": 500}),
        ),
        (
            "message.attempt.recovered",
            &recovering_id,
            json!({"endpoint_id": recovering_id, "message_id": message_id, "attempt": 5}),
        ),
    ];
    for (event_type, about, object) in &expected {
        let found = by_type(event_type, about);
        assert_eq!(found.len(), 1, "{event_type} about {about}: {seen:?}");
        assert_eq!(found[0]["object"], *object);
        assert_eq!(found[0]["dataset"], Value::Null);
        assert!(found[0]["text"].as_str().unwrap().contains(message_id));
    }
    let mut ids: Vec<&String> = seen.iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one message each: {seen:?}");

    // The endpoint concerned got the ones about the other endpoint only.
    let about_others = poll_until(
        RAISE_TIMEOUT,
        "the failing endpoint's operational events",
        || async {
            let got = operational(&always_failing);
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    assert!(
        about_others
            .iter()
            .all(|(_, b)| b["object"]["endpoint_id"] == recovering_id.as_str()),
        "{about_others:?}"
    );

    // Ordinary messages of the account: in the attempt log like any other.
    let raised = &seen[0].0;
    let (status, message) = dev
        .send(
            &client,
            Method::GET,
            &format!("/v1/accounts/jane/messages/{raised}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["dataset"], Value::Null);
    assert!(
        message["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["endpoint_id"] == watcher_id.as_str() && a["status"] == "succeeded"),
        "{message}"
    );
}

#[tokio::test]
async fn a_410_disables_the_endpoint_with_its_reason_and_tells_the_subscribers() {
    let watcher = Receiver::start().await;
    let gone = Receiver::statuses(&[410]).await;
    let dev = Dev::start(&["--emulator", emulator_url(), "--email-window", "1s"]);
    let client = reqwest::Client::new();
    endpoint(&dev, &client, watcher.url("/ops"), &["endpoint.disabled"]).await;
    // How an owner learns their server is gone: by email.
    let owner = format!(
        "owner-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mailbox = json!({"type": "email", "emails": [owner], "event_types": ["endpoint.disabled"]});
    let (status, created) = dev
        .send(
            &client,
            Method::POST,
            "/v1/accounts/jane/endpoints",
            mailbox,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let gone_url = gone.url("/hook");
    let gone_id = endpoint(
        &dev,
        &client,
        gone_url.clone(),
        &["sample.created", "endpoint.disabled"],
    )
    .await;

    let event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}});
    let (status, _) = dev.send(&client, Method::POST, "/v1/events", event).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let told = watcher.wait_for(1, RAISE_TIMEOUT).await;
    let body = told[0].json();
    assert_eq!(body["event_type"], "endpoint.disabled");
    assert_eq!(body["dataset"], Value::Null);
    assert_eq!(
        body["object"],
        json!({"endpoint_id": gone_id, "url": gone_url, "reason": "the endpoint answered 410 Gone"})
    );

    let path = format!("/v1/accounts/jane/endpoints/{gone_id}");
    let (_, disabled) = dev.send(&client, Method::GET, &path, Value::Null).await;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        disabled["disabled_reason"],
        "the endpoint answered 410 Gone"
    );
    // Enabled again by its owner: the reason is gone with it.
    let (status, enabled) = dev
        .send(&client, Method::PATCH, &path, json!({"disabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["disabled"], false);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    // The endpoint concerned was told nothing: its only request was the 410.
    assert_eq!(gone.deliveries().len(), 1);

    let emails = poll_until(RAISE_TIMEOUT, "the owner's email", || async {
        let emails = emails_to(&client, &owner).await;
        (!emails.is_empty()).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let email = emails[0].to_string();
    assert!(
        email.contains("endpoint.disabled") && email.contains("410 Gone"),
        "{email}"
    );
}

#[tokio::test]
async fn failures_without_a_success_for_the_period_disable_the_endpoint_until_it_is_enabled() {
    let watcher = Receiver::start().await;
    let down = Receiver::scripted(|_, _| Reply::status(503)).await;
    let dev = Dev::start_with_env(
        &["--retry-schedule", "1s,1s,1s,1s,1s,1s,1s,1s"],
        &[("HOOKLINE_DISABLE_AFTER", "3s")],
    );
    let client = reqwest::Client::new();
    endpoint(&dev, &client, watcher.url("/ops"), &["endpoint.disabled"]).await;
    let down_id = endpoint(&dev, &client, down.url("/hook"), &[]).await;

    let event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {}});
    let (status, _) = dev.send(&client, Method::POST, "/v1/events", event).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let told = watcher.wait_for(1, RAISE_TIMEOUT).await;
    let body = told[0].json();
    assert_eq!(body["event_type"], "endpoint.disabled");
    let reason = body["object"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("failures without a success since "),
        "{reason}"
    );
    assert!(reason.ends_with("longer than 3s"), "{reason}");
    assert_eq!(body["object"]["endpoint_id"], down_id.as_str());

    let path = format!("/v1/accounts/jane/endpoints/{down_id}");
    let (_, disabled) = dev.send(&client, Method::GET, &path, Value::Null).await;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(disabled["disabled_reason"], reason);
    // Disabled before its schedule ran out: the rest of the job was dropped.
    let tried = down.deliveries().len();
    assert!((3..9).contains(&tried), "{tried} attempts");

    let (_, enabled) = dev
        .send(&client, Method::PATCH, &path, json!({"disabled": false}))
        .await;
    assert_eq!(enabled["disabled"], false);
    assert_eq!(enabled["disabled_reason"], Value::Null);
}

#[tokio::test]
async fn the_sweep_disables_only_endpoints_failing_past_the_period() {
    let env = TestEnv::new("1s").await;
    let now = time::OffsetDateTime::now_utc();
    let period = Duration::from_secs(60);
    let (long, _) = env
        .add_endpoint("jane", "https://long.example/hook", |_| {})
        .await;
    let (recent, _) = env
        .add_endpoint("jane", "https://recent.example/hook", |_| {})
        .await;
    let (recovered, _) = env
        .add_endpoint("jane", "https://back.example/hook", |_| {})
        .await;
    env.add_endpoint("jane", "https://fine.example/hook", |_| {})
        .await;
    let account = long.account.clone();
    let ago = |seconds| now - time::Duration::seconds(seconds);
    assert!(
        env.store
            .start_failing(&account, &long.id, ago(120))
            .await
            .unwrap()
    );
    // A run is noted once: a second start keeps the first.
    assert!(
        !env.store
            .start_failing(&account, &long.id, ago(5))
            .await
            .unwrap()
    );
    assert!(
        env.store
            .start_failing(&account, &recent.id, ago(30))
            .await
            .unwrap()
    );
    assert!(
        env.store
            .start_failing(&account, &recovered.id, ago(300))
            .await
            .unwrap()
    );
    env.store
        .end_failing(&account, &recovered.id)
        .await
        .unwrap();

    let failing = env.store.failing_endpoints(now - period).await.unwrap();
    assert_eq!(failing, [(account.clone(), long.id.clone())]);

    let disabled = shared::raise::sweep(&env.store, &env.queues, now, period)
        .await
        .unwrap();
    assert_eq!(disabled, 1);
    let stored = env.stored_endpoint(&account, &long.id).await;
    assert!(stored.disabled);
    assert!(stored.disabled_reason.unwrap().ends_with("longer than 1m"));
    // Disabled, it is no longer among the failing: the next sweep finds nothing.
    assert!(
        env.store
            .failing_endpoints(now - period)
            .await
            .unwrap()
            .is_empty()
    );
    let queued = env.receive_all_delivery().await;
    assert_eq!(queued.len(), 1);
    assert!(matches!(
        shared::task::Task::from_body(&queued[0].body),
        Some(Ok(shared::task::Task::Raise(raise))) if raise.endpoint_id == long.id
    ));
}

/// Ending a run of failures leaves `updated_at` as it is, so a disabling decided on
/// a run also checks that the run is still on: an endpoint that a success reached
/// meanwhile (at another dispatcher instance, or between the sweep's read and its
/// write) is not disabled.
#[tokio::test]
async fn a_disabling_for_a_run_of_failures_that_ended_meanwhile_does_not_happen() {
    let env = TestEnv::new("1s").await;
    let now = time::OffsetDateTime::now_utc();
    let period = Duration::from_secs(60);
    let since = now - time::Duration::seconds(300);
    let mut decided = Vec::new();
    for host in ["back.example", "down.example"] {
        let (endpoint, _) = env
            .add_endpoint("jane", &format!("https://{host}/hook"), |_| {})
            .await;
        let account = endpoint.account.clone();
        assert!(
            env.store
                .start_failing(&account, &endpoint.id, since)
                .await
                .unwrap()
        );
        let seen = env.stored_endpoint(&account, &endpoint.id).await;
        decided.push(shared::operational::Raise::failing_too_long(
            &seen, since, period, now,
        ));
    }
    // A success reaches the first endpoint after the decision.
    env.store
        .end_failing(&decided[0].account, &decided[0].endpoint_id)
        .await
        .unwrap();

    for (raise, expected) in decided.iter().zip([false, true]) {
        let disabled = shared::raise::disable_endpoint(&env.store, raise)
            .await
            .unwrap();
        assert_eq!(disabled, expected, "{}", raise.endpoint_id);
        let stored = env
            .stored_endpoint(&raise.account, &raise.endpoint_id)
            .await;
        assert_eq!(stored.disabled, expected);
    }
    // Done again (a raise task after the direct write), the disabling still holds.
    assert!(
        shared::raise::disable_endpoint(&env.store, &decided[1])
            .await
            .unwrap()
    );
}
