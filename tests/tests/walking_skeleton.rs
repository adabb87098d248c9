//! One event from `POST /v1/events` to a signed delivery, through `hookline dev`
//! and the shipped binaries, checked by an independent Standard Webhooks library.

use std::time::Duration;

use hookline_cli::emulator::Emulator;
use hookline_tests::{Dev, Receiver, children_of, interrupt, is_running, poll_until, queue_depth};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

async fn create_endpoint(dev: &Dev, client: &reqwest::Client, account: &str, body: Value) -> Value {
    let response = dev
        .request(
            client,
            Method::POST,
            &format!("/v1/accounts/{account}/endpoints"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_event_reaches_the_subscribed_endpoint_signed_as_the_contract_says() {
    let receiver = Receiver::start().await;
    let other_account = Receiver::start().await;
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();

    let endpoint =
        create_endpoint(&dev, &client, "jane", json!({"url": receiver.url("/hook")})).await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert!(endpoint["id"].as_str().unwrap().starts_with("ep_"));
    create_endpoint(
        &dev,
        &client,
        "bob",
        json!({"url": other_account.url("/hook")}),
    )
    .await;

    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let response = dev
        .request(&client, Method::POST, "/v1/events")
        .json(&json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    let message_id = accepted["id"].as_str().unwrap().to_string();
    assert!(message_id.starts_with("msg_"), "{accepted}");
    assert_eq!(accepted["endpoints"], 1);

    let deliveries = receiver.wait_for(1, DELIVERY_TIMEOUT).await;
    let delivery = &deliveries[0];
    assert_eq!(delivery.path, "/hook");
    assert_eq!(delivery.header("content-type"), "application/json");
    assert!(delivery.header("user-agent").starts_with("hookline/"));
    assert_eq!(delivery.header("webhook-id"), message_id);
    let timestamp: i64 = delivery.header("webhook-timestamp").parse().unwrap();
    assert!(timestamp >= before && timestamp <= before + 60);
    let signature = delivery.header("webhook-signature");
    assert!(
        signature.starts_with("v1,") && !signature.contains(' '),
        "{signature}"
    );

    // The exact body: CONTRACT's keys in CONTRACT's order, text generated.
    let body = delivery.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "event_type",
            "created_at",
            "api_version",
            "dataset",
            "object",
            "text"
        ]
    );
    let created_at = body["created_at"].as_str().unwrap();
    let expected = format!(
        r#"{{"event_type":"sample.created","created_at":"{created_at}","api_version":"2021-08-01","dataset":"jane/flowers","object":{{"name":"rose.png"}},"text":"Sample rose.png created in dataset jane/flowers."}}"#
    );
    assert_eq!(std::str::from_utf8(&delivery.body).unwrap(), expected);
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .unwrap();

    // Verified by the Standard Webhooks reference library, and by ours.
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&delivery.body, &delivery.headers)
        .expect("the reference library accepts the signature");
    let ours = shared::signing::Secret::parse(&secret).unwrap();
    shared::signing::verify(
        &ours,
        &message_id,
        delivery.header("webhook-timestamp"),
        signature,
        &delivery.body,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .unwrap();

    // Only the dataset owner's endpoint got a job (`endpoints` was 1 above), so bob's
    // receiver has nothing; the one job was delivered once.
    assert!(other_account.deliveries().is_empty());
    assert_eq!(receiver.deliveries().len(), 1);

    // The functions' logs carry its metrics as EMF lines: the fan-out at ingest, the
    // success with its latency at the dispatcher; the other lines are JSON too.
    let emf = |function: &str, log: &str| -> Vec<serde_json::Map<String, Value>> {
        log.lines()
            .filter_map(|line| line.strip_prefix(&format!("[{function}] ")))
            .filter_map(|line| shared::metrics::parse(line).map(|parsed| parsed.root))
            .collect()
    };
    let delivered = poll_until(DELIVERY_TIMEOUT, "the delivery's EMF line", || async {
        emf("dispatcher", &dev.log())
            .into_iter()
            .find(|root| root[shared::metrics::OUTCOME] == "succeeded")
    })
    .await;
    assert_eq!(delivered[shared::metrics::DELIVERIES], json!(1.0));
    assert!(
        delivered[shared::metrics::DELIVERY_LATENCY]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert!(
        delivered[shared::metrics::ATTEMPT_DURATION]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    let log = dev.log();
    assert!(
        emf("ingest", &log)
            .iter()
            .any(|root| root[shared::metrics::FAN_OUT_SIZE] == json!(1.0)),
        "ingest's fan-out size"
    );
    let dispatcher_lines: Vec<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("[dispatcher] "))
        .collect();
    assert!(!dispatcher_lines.is_empty());
    for line in dispatcher_lines {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
    }
}

#[tokio::test]
async fn the_endpoint_reads_back_without_its_secret() {
    let dev = Dev::start(&[]);
    let client = reqwest::Client::new();
    let created = create_endpoint(
        &dev,
        &client,
        "jane",
        json!({"url": "https://example.com/hook", "description": "ops", "event_types": ["sample.created"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let fetched: Value = dev
        .request(
            &client,
            Method::GET,
            &format!("/v1/accounts/jane/endpoints/{id}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(fetched, without_secret);

    let listed: Value = dev
        .request(&client, Method::GET, "/v1/accounts/jane/endpoints")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([without_secret]));
    assert_eq!(listed["next_cursor"], Value::Null);

    let elsewhere = dev
        .request(
            &client,
            Method::GET,
            &format!("/v1/accounts/bob/endpoints/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refused_requests_store_and_enqueue_nothing() {
    let emulator = Emulator::start().unwrap();
    let dev = Dev::start(&["--emulator", emulator.url()]);
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    create_endpoint(&dev, &client, "jane", json!({"url": receiver.url("/hook")})).await;
    let event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}});

    let no_key = client
        .post(dev.url("/v1/events"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    let wrong_key = client
        .post(dev.url("/v1/events"))
        .bearer_auth("hlk_not-a-key")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    let body: Value = wrong_key.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let malformed = dev
        .request(&client, Method::POST, "/v1/events")
        .header("content-type", "application/json")
        .body("{\"event_type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let missing = dev
        .request(&client, Method::POST, "/v1/events")
        .json(&json!({"event_type": "sample.created", "object": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dataset"),
        "{body}"
    );

    // Nothing was stored and nothing was enqueued.
    let sdk = shared::aws::for_emulator(emulator.url()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let items = dynamodb.scan().table_name("hookline").send().await.unwrap();
    let messages = items
        .items()
        .iter()
        .filter(|item| item["pk"].as_s().unwrap().starts_with("MSG#"))
        .count();
    assert_eq!(messages, 0);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .get_queue_url()
        .queue_name("hookline-delivery")
        .send()
        .await
        .unwrap();
    assert_eq!(queue_depth(&sqs, queue.queue_url().unwrap()).await, 0);
    assert!(receiver.deliveries().is_empty());

    // The same request with the key goes through, so the checks above were not vacuous.
    let accepted = dev
        .request(&client, Method::POST, "/v1/events")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    receiver.wait_for(1, DELIVERY_TIMEOUT).await;
}

#[tokio::test]
async fn interrupting_dev_stops_every_process_it_started() {
    let mut dev = Dev::start(&[]);
    let children = poll_until(Duration::from_secs(10), "dev's children", || async {
        let children = children_of(dev.pid());
        // The emulator and two instances each of ingest, api and dispatcher.
        (children.len() >= 7).then_some(children)
    })
    .await;
    let status = dev
        .interrupt(Duration::from_secs(15))
        .expect("dev exits after SIGINT");
    assert!(status.success(), "{status:?}");
    poll_until(Duration::from_secs(5), "every child to exit", || async {
        children.iter().all(|pid| !is_running(*pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn interrupting_dev_while_it_starts_stops_it_cleanly() {
    let mut dev = Dev::spawn(&shared::keys::generate(), &[], &[]);
    // The emulator is dev's first child; the functions are not up yet.
    let children = poll_until(Duration::from_secs(10), "dev's first child", || async {
        let children = children_of(dev.id());
        (!children.is_empty()).then_some(children)
    })
    .await;
    let status = interrupt(&mut dev, Duration::from_secs(15)).expect("dev exits after SIGINT");
    assert!(status.success(), "{status:?}");
    poll_until(Duration::from_secs(5), "every child to exit", || async {
        children.iter().all(|pid| !is_running(*pid)).then_some(())
    })
    .await;
}
