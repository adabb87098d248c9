//! Least privilege, proven: the function binaries run against an emulator that
//! enforces IAM, each signing with a key whose only policy is its template role's
//! statements, through every route and delivery path. A call a role does not
//! allow fails the path that made it; afterwards every recorded call is held to
//! the template exactly (tables, indexes, queues, per-item actions), and every
//! grant must have been used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use hookline_cli::emulator::Emulator;
use hookline_cli::local::runtime::{self, Function, FunctionSpec};
use hookline_cli::local::{DELIVERY_QUEUE, DLQ, SLOW_QUEUE, TABLE};
use hookline_tests::iam::{self, AccessKey, Authorization, Grant};
use hookline_tests::{Delivery, Dev, Receiver, Reply, binary, poll_until};
use ingest::LARGE_FAN_OUT;
use reqwest::Method;
use serde_json::{Value, json};
use shared::ids::{AttemptId, EndpointId};
use shared::task::{Recover, Task};
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);
/// Three attempts a second apart: failures reach the DLQ quickly.
const SCHEDULE: &str = "1s,1s";
const ATTEMPTS: usize = 3;
const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;
/// What dev's and the functions' logs must never say: a refused call, or any
/// warning or error (a refusal the SDK could not parse shows only as one), in
/// dev's text lines or the functions' JSON ones.
const REFUSALS: [&str; 8] = [
    "AccessDenied",
    "not authorized",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    " WARN ",
    " ERROR ",
    r#""level":"WARN""#,
    r#""level":"ERROR""#,
];

/// moto with IAM enforced and its requests recorded (to a file removed on drop),
/// an operator key that may do anything, and one key per function.
struct EnforcingEmulator {
    emulator: Emulator,
    recording: PathBuf,
    operator: AccessKey,
    keys: BTreeMap<String, AccessKey>,
}

impl EnforcingEmulator {
    async fn start(grants: &BTreeMap<String, Vec<Grant>>) -> Self {
        let recording = std::env::temp_dir().join(format!(
            "hookline-iam-{}.jsonl",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let path = recording.to_str().expect("a UTF-8 path");
        let emulator =
            Emulator::start_with_env(&[("MOTO_RECORDER_FILEPATH", path)]).expect("moto starts");
        let url = emulator.url();
        let everything = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
        ]});
        let operator = iam::create_user(url, "operator", &everything).await;
        let mut keys = BTreeMap::new();
        for (function, statements) in grants {
            let policy = iam::moto_policy(statements);
            keys.insert(
                function.clone(),
                iam::create_user(url, function, &policy).await,
            );
        }
        // From here on every call must be signed by a known key its policy allows.
        moto_api(url, "reset-auth", "0").await;
        moto_api(url, "recorder/start-recording", "").await;
        Self {
            emulator,
            recording,
            operator,
            keys,
        }
    }

    fn url(&self) -> &str {
        self.emulator.url()
    }

    /// `hookline dev`'s environment: the operator's key for dev, each function's own.
    fn dev_env(&self) -> Vec<(String, String)> {
        let pair = |prefix: String, key: &AccessKey| {
            [
                (
                    format!("{prefix}_AWS_ACCESS_KEY_ID"),
                    key.access_key_id.clone(),
                ),
                (
                    format!("{prefix}_AWS_SECRET_ACCESS_KEY"),
                    key.secret_access_key.clone(),
                ),
            ]
        };
        let mut env: Vec<_> = pair("HOOKLINE_DEV".into(), &self.operator).into();
        for (function, key) in &self.keys {
            env.extend(pair(
                format!("HOOKLINE_DEV_{}", function.to_uppercase()),
                key,
            ));
        }
        env
    }

    /// An SQS client signing as the operator.
    async fn operator_sqs(&self) -> aws_sdk_sqs::Client {
        let sdk = shared::aws::for_emulator_as(
            self.url(),
            &self.operator.access_key_id,
            &self.operator.secret_access_key,
        )
        .await;
        aws_sdk_sqs::Client::new(&sdk)
    }

    /// The table, as the operator.
    async fn operator_store(&self) -> shared::store::Store {
        let sdk = shared::aws::for_emulator_as(
            self.url(),
            &self.operator.access_key_id,
            &self.operator.secret_access_key,
        )
        .await;
        shared::store::Store::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            TABLE,
            Duration::from_secs(86_400),
        )
    }

    /// Puts `body` on the delivery queue, as the operator.
    async fn enqueue(&self, body: &str) {
        let sqs = self.operator_sqs().await;
        let found = sqs.get_queue_url().queue_name(DELIVERY_QUEUE).send().await;
        let url = found.expect("dev made the queue").queue_url;
        sqs.send_message()
            .queue_url(url.expect("a queue URL"))
            .message_body(body)
            .send()
            .await
            .expect("the operator may send");
    }

    /// The `replay` function behind the local Runtime API, with its own key.
    async fn start_replay(&self) -> (Function, watch::Sender<bool>) {
        let sqs = self.operator_sqs().await;
        let mut env = vec![
            ("AWS_ENDPOINT_URL".into(), self.url().to_string()),
            ("AWS_REGION".into(), shared::aws::EMULATOR_REGION.into()),
            (shared::config::TABLE.into(), TABLE.into()),
        ];
        for (variable, queue) in [
            (shared::config::DELIVERY_QUEUE_URL, DELIVERY_QUEUE),
            (shared::config::DLQ_URL, DLQ),
        ] {
            let found = sqs.get_queue_url().queue_name(queue).send().await;
            let url = found.expect("dev made the queue").queue_url;
            env.push((variable.into(), url.expect("a queue URL")));
        }
        let key = &self.keys["replay"];
        env.push(("AWS_ACCESS_KEY_ID".into(), key.access_key_id.clone()));
        env.push((
            "AWS_SECRET_ACCESS_KEY".into(),
            key.secret_access_key.clone(),
        ));
        let spec = FunctionSpec {
            name: "replay",
            binary: binary("replay"),
            env,
            timeout: WAIT,
            instances: 1,
        };
        let (stop, shutdown) = watch::channel(false);
        let (replay, _tasks, mut readiness) = runtime::start(spec, shutdown)
            .await
            .expect("the replay function starts");
        tokio::time::timeout(WAIT, readiness[0].wait_for(|up| *up))
            .await
            .expect("replay is ready in time")
            .expect("replay is ready");
        (replay, stop)
    }

    /// What AWS would check for the calls each function made.
    fn needed(&self) -> BTreeMap<String, BTreeSet<Authorization>> {
        let recorded = std::fs::read_to_string(&self.recording).expect("moto recorded the calls");
        let mut needed: BTreeMap<String, BTreeSet<Authorization>> = BTreeMap::new();
        for call in iam::recorded_calls(&recorded) {
            if call.access_key_id == self.operator.access_key_id {
                continue;
            }
            let function = self
                .keys
                .iter()
                .find(|(_, key)| key.access_key_id == call.access_key_id)
                .map(|(function, _)| function.clone())
                .unwrap_or_else(|| panic!("{} was signed by an unknown key", call.operation));
            needed
                .entry(function)
                .or_default()
                .extend(call.authorizations);
        }
        needed
    }
}

impl Drop for EnforcingEmulator {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.recording);
    }
}

async fn moto_api(url: &str, path: &str, body: &'static str) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/moto-api/{path}"))
        .body(body)
        .send()
        .await
        .expect("moto answers");
    assert!(answer.status().is_success(), "/moto-api/{path}");
}

/// A call to dev's HTTP API with the platform key (no body when `body` is null);
/// no path may answer 5xx, and nothing may have been refused before it.
async fn send(dev: &Dev, method: Method, path: &str, body: &Value) -> (u16, Value) {
    send_as(dev, None, method, path, body).await
}

/// [`send`] with `token` (a portal token) in place of the platform key, if given.
async fn send_as(
    dev: &Dev,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    assert_nothing_refused(dev);
    let client = reqwest::Client::new();
    let mut request = match token {
        Some(token) => client
            .request(method.clone(), dev.url(path))
            .bearer_auth(token),
        None => dev.request(&client, method.clone(), path),
    };
    if !body.is_null() {
        request = request.json(body);
    }
    let response = request.send().await.expect("dev answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert!(status < 500, "{method} {path} answered {status}: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// [`send`], expecting `status`.
async fn answer(dev: &Dev, method: Method, path: &str, body: Value, status: u16) -> Value {
    let (got, value) = send(dev, method.clone(), path, &body).await;
    assert_eq!(got, status, "{method} {path}: {value}");
    value
}

async fn dlq_depth(dev: &Dev) -> Value {
    send(dev, GET, "/v1/dlq", &Value::Null).await.1["approximate_messages"].clone()
}

/// Fails at the first log line that says a call was refused or went wrong.
fn assert_nothing_refused(dev: &Dev) {
    let log = dev.log();
    let found = log
        .lines()
        .find(|line| REFUSALS.iter().any(|refusal| line.contains(refusal)));
    assert!(found.is_none(), "a call failed: {found:?}");
}

/// Waits for `receiver` to have `count` requests, failing at once on a refusal.
async fn delivered(dev: &Dev, receiver: &Receiver, count: usize) -> Vec<Delivery> {
    poll_until(WAIT, &format!("{count} requests"), || async {
        assert_nothing_refused(dev);
        let deliveries = receiver.deliveries();
        (deliveries.len() >= count).then_some(deliveries)
    })
    .await
}

fn count(page: &Value) -> usize {
    page["data"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_path_runs_with_exactly_its_roles_grants() {
    let grants = iam::role_grants(&hookline_tests::template::template());
    let moto = EnforcingEmulator::start(&grants).await;
    let env = moto.dev_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dev = Dev::start_with_env(
        &[
            "--emulator",
            moto.url(),
            "--retry-schedule",
            SCHEDULE,
            "--instances",
            "1",
            "--email-window",
            "1s",
        ],
        &env,
    );

    let healthy = Receiver::start().await;
    let flaky = Receiver::statuses(&[500]).await;
    let gone = Receiver::statuses(&[410]).await;
    let failing = always_failing(3).await;
    let started = (time::OffsetDateTime::now_utc() - time::Duration::seconds(5))
        .format(&Rfc3339)
        .expect("a time");

    // Endpoints: create, list, read, change, delete; a secret read and rotated.
    let endpoints = "/v1/accounts/jane/endpoints";
    let mut receivers = vec![("healthy", &healthy), ("flaky", &flaky), ("gone", &gone)];
    receivers.extend(["a", "b", "c"].into_iter().zip(&failing));
    let mut paths = BTreeMap::new();
    for (name, receiver) in receivers {
        let body = json!({"url": receiver.url(&format!("/{name}"))});
        let created = answer(&dev, POST, endpoints, body, 201).await;
        paths.insert(
            name,
            format!("{endpoints}/{}", created["id"].as_str().expect("an id")),
        );
    }
    // An email endpoint: the dispatcher gathers its event, the scheduled function
    // sends its window and a digest asked for now.
    let mailbox = json!({"type": "email", "emails": ["ops@example.com"], "event_types": ["sample.created"],
                         "digest": {"every": "day", "at": "09:00"}});
    let mailbox = answer(&dev, POST, endpoints, mailbox, 201).await;
    let mailbox = format!("{endpoints}/{}", mailbox["id"].as_str().expect("an id"));
    let spare = json!({"url": healthy.url("/spare"), "event_types": ["dataset.created"]});
    let spare = answer(&dev, POST, endpoints, spare, 201).await;
    let spare = format!("{endpoints}/{}", spare["id"].as_str().expect("an id"));
    answer(&dev, GET, &spare, Value::Null, 200).await;
    let patched = answer(&dev, PATCH, &spare, json!({"description": "spare"}), 200).await;
    assert_eq!(patched["description"], "spare");
    assert_eq!(
        count(&answer(&dev, GET, endpoints, Value::Null, 200).await),
        8
    );
    answer(&dev, DELETE, &spare, Value::Null, 204).await;
    answer(&dev, GET, &spare, Value::Null, 404).await;
    let secret = format!("{}/secret", paths["healthy"]);
    let before = answer(&dev, GET, &secret, Value::Null, 200).await;
    let after = answer(&dev, POST, &format!("{secret}/rotate"), Value::Null, 200).await;
    assert_ne!(before["secret"], after["secret"]);

    // Ingest: one event to the seven endpoints, the same event again, and its key
    // with another event.
    answer(&dev, GET, "/v1/event-types", Value::Null, 200).await;
    let event = json!({
        "event_type": "sample.created",
        "dataset": "jane/flowers",
        "object": {"name": "rose.png"},
        "id": "evt_iam_1",
    });
    let accepted = answer(&dev, POST, "/v1/events", event.clone(), 202).await;
    assert_eq!(accepted["endpoints"], 7);
    let message = accepted["id"].as_str().expect("a message id").to_string();
    let again = answer(&dev, POST, "/v1/events", event.clone(), 202).await;
    assert_eq!(again["duplicate"], true);
    let mut other = event;
    other["object"]["name"] = json!("tulip.png");
    let reused = answer(&dev, POST, "/v1/events", other, 422).await;
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");

    // Delivery: a success, a retry through visibility, a 410, three jobs to the DLQ.
    delivered(&dev, &healthy, 1).await;
    emails_sent(&dev, &mailbox, 1).await;
    answer(
        &dev,
        POST,
        &format!("{mailbox}/digest"),
        json!({"since": started}),
        202,
    )
    .await;
    emails_sent(&dev, &mailbox, 2).await;
    delivered(&dev, &flaky, 2).await;
    delivered(&dev, &gone, 1).await;
    for receiver in &failing {
        delivered(&dev, receiver, ATTEMPTS).await;
    }
    poll_until(WAIT, "the 410 endpoint disabled", || async {
        let endpoint = send(&dev, GET, &paths["gone"], &Value::Null).await.1;
        (endpoint["disabled"] == true).then_some(())
    })
    .await;
    poll_until(WAIT, "three jobs in the DLQ", || async {
        (dlq_depth(&dev).await == 3).then_some(())
    })
    .await;

    // The scheduled function's auto-disable sweep: an endpoint whose failures
    // began six days ago (longer than the default five) is disabled and announced.
    let stale = json!({"url": healthy.url("/stale"), "event_types": ["dataset.deleted"]});
    let stale = answer(&dev, POST, endpoints, stale, 201).await;
    let stale_id = EndpointId::parse(stale["id"].as_str().expect("an id")).expect("an endpoint id");
    let six_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(6);
    let started_failing = moto
        .operator_store()
        .await
        .start_failing(&"jane".parse().unwrap(), &stale_id, six_days_ago)
        .await;
    assert_eq!(started_failing.ok(), Some(true));
    let stale = format!("{endpoints}/{stale_id}");
    poll_until(WAIT, "the stale endpoint disabled by the sweep", || async {
        let endpoint = send(&dev, GET, &stale, &Value::Null).await.1;
        (endpoint["disabled"] == true).then_some(())
    })
    .await;

    // What the API shows of it, once every attempt is recorded.
    let failed = format!("{}/attempts?status=failed", paths["a"]);
    assert_eq!(
        count(&answer(&dev, GET, &failed, Value::Null, 200).await),
        ATTEMPTS
    );
    let flaky_attempts = format!("{}/attempts", paths["flaky"]);
    let view = format!("/v1/accounts/jane/messages/{message}");
    poll_until(WAIT, "every attempt in the message view", || async {
        let flaky = count(&answer(&dev, GET, &flaky_attempts, Value::Null, 200).await);
        let viewed = answer(&dev, GET, &view, Value::Null, 200).await;
        let attempts = viewed["attempts"].as_array().map_or(0, Vec::len);
        // The mailbox's window email and its digest each carry the message first.
        (flaky == 2 && attempts == 1 + 2 + 1 + 3 * ATTEMPTS + 2).then_some(())
    })
    .await;

    // A test event and a replay of the message to the healthy endpoint.
    answer(
        &dev,
        POST,
        &format!("{}/test", paths["healthy"]),
        json!({}),
        202,
    )
    .await;
    let replay = format!("{}/messages/{message}/replay", paths["healthy"]);
    answer(&dev, POST, &replay, Value::Null, 202).await;
    let to_healthy = delivered(&dev, &healthy, 3).await;
    let with_id = to_healthy
        .iter()
        .filter(|d| d.header("webhook-id") == message);
    assert_eq!(with_id.count(), 2, "the event and its replay keep their id");

    // Recover: the failed message to `a`, again.
    let failed_until = time::OffsetDateTime::now_utc();
    let recover = format!("{}/recover", paths["a"]);
    let recovered = answer(&dev, POST, &recover, json!({"since": started}), 202).await;
    assert_eq!(recovered, json!({"queued": 1, "continuing": false}));
    delivered(&dev, &failing[0], ATTEMPTS + 1).await;

    // The rest of a recovery, as the API hands it on when its time runs short: the
    // dispatcher continues it (with nothing done yet but the window's last instant).
    let a_id = paths["a"].rsplit('/').next().expect("an id");
    let window_end = (failed_until.unix_timestamp_nanos() / 1_000_000) as u64;
    let rest = Task::Recover(Recover {
        account: "jane".parse().unwrap(),
        endpoint_id: EndpointId::parse(a_id).expect("an endpoint id"),
        since: time::OffsetDateTime::parse(&started, &Rfc3339).expect("a time"),
        until: failed_until,
        before: Some(AttemptId::from_ulid(ulid::Ulid::from_parts(
            window_end,
            u128::MAX,
        ))),
        endpoint_updated_at: None,
    });
    moto.enqueue(&rest.to_body()).await;
    delivered(&dev, &failing[0], ATTEMPTS + 2).await;

    // A filtered DLQ replay through the API: `a`'s job moves, the others stay.
    let filter = json!({"endpoint_id": a_id});
    let replayed = answer(&dev, POST, "/v1/dlq/replay", filter, 200).await;
    assert_eq!(replayed, json!({"replayed": 1, "skipped": 2}));
    let to_a = delivered(&dev, &failing[0], ATTEMPTS + 3).await;
    assert!(to_a.iter().all(|d| d.header("webhook-id") == message));

    // The replay function, with a filter, moves `b`'s job and leaves `c`'s.
    let (replay, stop) = moto.start_replay().await;
    let b_id = paths["b"].rsplit('/').next().expect("an id");
    let outcome = replay.invoke(json!({"endpoint_id": b_id})).await;
    let _ = stop.send(true);
    assert_eq!(outcome, Ok(json!({"replayed": 1, "skipped": 1})));
    delivered(&dev, &failing[1], ATTEMPTS + 1).await;

    // An unfiltered replay through the API moves the last one.
    let replayed = answer(&dev, POST, "/v1/dlq/replay", json!({}), 200).await;
    assert_eq!(replayed, json!({"replayed": 1, "skipped": 0}));
    delivered(&dev, &failing[2], ATTEMPTS + 1).await;
    poll_until(WAIT, "an empty DLQ", || async {
        (dlq_depth(&dev).await == 0).then_some(())
    })
    .await;

    // A batch to an account with more endpoints than ingest fans out inline: the
    // dispatcher enqueues their jobs from fan-out tasks.
    let bulk = Receiver::start().await;
    let subscribers = LARGE_FAN_OUT + 1;
    for _ in 0..subscribers {
        let body = json!({"url": bulk.url("/bulk")});
        answer(&dev, POST, "/v1/accounts/bulk/endpoints", body, 201).await;
    }
    let events: Vec<Value> = (1..=2)
        .map(|n| {
            json!({
                "event_type": "dataset.updated",
                "dataset": "bulk/set",
                "object": {"name": "set"},
                "id": format!("evt_bulk_{n}"),
            })
        })
        .collect();
    let batch = answer(
        &dev,
        POST,
        "/v1/events/batch",
        json!({"events": events}),
        202,
    )
    .await;
    let items = batch["data"].as_array().expect("one answer per event");
    assert!(
        items.iter().all(|item| item["endpoints"] == subscribers),
        "{batch}"
    );
    let deliveries = delivered(&dev, &bulk, 2 * subscribers).await;
    for item in items {
        let id = item["id"].as_str().expect("a message id");
        let to_each = deliveries.iter().filter(|d| d.header("webhook-id") == id);
        assert_eq!(to_each.count(), subscribers, "every endpoint gets {id}");
    }

    // Account settings: a disabled account stores its event and enqueues nothing.
    let settings = "/v1/accounts/bulk/settings";
    answer(&dev, GET, settings, Value::Null, 200).await;
    let off = json!({"webhooks_enabled": false});
    answer(&dev, PATCH, settings, off, 200).await;
    let quiet = json!({"event_type": "dataset.updated", "dataset": "bulk/set", "object": {}});
    let accepted = answer(&dev, POST, "/v1/events", quiet, 202).await;
    assert_eq!(accepted["endpoints"], 0);
    answer(
        &dev,
        PATCH,
        settings,
        json!({"webhooks_enabled": true}),
        200,
    )
    .await;

    // A portal session: its token opens its account through both functions, until revoked.
    let sessions = "/v1/accounts/jane/portal-sessions";
    let session = answer(&dev, POST, sessions, json!({"ttl_seconds": 600}), 201).await;
    let token = session["token"].as_str().expect("a token");
    for path in [endpoints, "/v1/event-types"] {
        let (status, _) = send_as(&dev, Some(token), GET, path, &Value::Null).await;
        assert_eq!(status, 200, "{path}");
    }
    answer(&dev, DELETE, sessions, Value::Null, 204).await;
    let (status, _) = send_as(&dev, Some(token), GET, endpoints, &Value::Null).await;
    assert_eq!(status, 401);

    // An endpoint that answers too slowly for the delivery queue: its job goes to
    // the slow lane, fails there once and is retried there (ADR 7).
    let slow = Receiver::scripted(|n, _| {
        Reply::status(if n < 2 { 500 } else { 204 }).after(Duration::from_millis(1500))
    })
    .await;
    answer(
        &dev,
        POST,
        "/v1/accounts/slow/endpoints",
        json!({"url": slow.url("/slow")}),
        201,
    )
    .await;
    let event = json!({"event_type": "dataset.updated", "dataset": "slow/set", "object": {}});
    answer(&dev, POST, "/v1/events", event, 202).await;
    let sqs = moto.operator_sqs().await;
    let slow_lane = hookline_tests::queue_url(&sqs, SLOW_QUEUE).await;
    poll_until(
        WAIT,
        "a success on the slow lane, deleted there",
        || async {
            assert_nothing_refused(&dev);
            let delivered = slow.successes().len() == 1 && slow.answered() >= 2;
            (delivered && hookline_tests::queue_depth(&sqs, &slow_lane).await == 0).then_some(())
        },
    )
    .await;

    // Nothing was refused on the way.
    assert_nothing_refused(&dev);

    // Every call, held to the template exactly; every grant used.
    let mut needed = moto.needed();
    let mut problems = Vec::new();
    println!("actions each function needed:");
    for (function, statements) in &grants {
        let needed = needed.remove(function).unwrap_or_default();
        let actions: BTreeSet<String> = needed
            .iter()
            .map(|n| {
                format!(
                    "{} on {}",
                    n.action,
                    n.resource.rsplit(':').next().unwrap_or_default()
                )
            })
            .collect();
        println!("  {function}: {}", Vec::from_iter(actions).join(", "));
        let (denied, unused) = iam::compare(function, statements, &needed);
        problems.extend(
            denied
                .iter()
                .map(|d| format!("{function} needs {} on {}", d.action, d.resource)),
        );
        problems.extend(
            unused
                .iter()
                .map(|u| format!("{function}'s grant {u} is never used")),
        );
    }
    assert!(
        problems.is_empty(),
        "the template is not exact:\n{}",
        problems.join("\n")
    );
    assert!(
        needed.is_empty(),
        "calls by functions without a role: {needed:?}"
    );
}

/// Waits for `count` emails sent by the email endpoint at `path`, as its attempt log shows them.
async fn emails_sent(dev: &Dev, path: &str, count: usize) {
    let attempts = format!("{path}/attempts?status=succeeded");
    poll_until(WAIT, "the email endpoint's emails", || async {
        let (_, page) = send(dev, GET, &attempts, &Value::Null).await;
        (self::count(&page) >= count).then_some(())
    })
    .await;
}

/// `n` receivers that fail every scheduled attempt, and answer 204 after.
async fn always_failing(n: usize) -> Vec<Receiver> {
    let mut receivers = Vec::new();
    for _ in 0..n {
        receivers.push(Receiver::statuses(&[500; ATTEMPTS]).await);
    }
    receivers
}
