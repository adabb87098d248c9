//! `make bench-calls`: the DynamoDB and SQS calls hookline makes per event at ingest,
//! per successful delivery, per failed attempt and per replayed DLQ job, for 1 and
//! 10 endpoints, 1 KiB events, with and without idempotency keys, single and batch
//! posts. `hookline dev` runs against the emulator through the counting proxy, each
//! function signing with an access key of its own, so the proxy tells their calls
//! apart; the event source polls with the dispatcher's key, and its calls are the
//! operations only it makes. The counts are read between phases: after the posts
//! are answered, after the delivery queue has drained, after a replay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookline_cli::emulator::Emulator;
use hookline_tests::capacity::Units;
use hookline_tests::faults::{FaultCounts, FaultProxy};
use hookline_tests::{Dev, Receiver, Reply, poll_until, queue_depth, sample_event};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Events posted per scenario.
const EVENTS: usize = 100;
/// Events posted and delivered before the counting starts, so that the figures are
/// of instances at steady state: the catalog read, the first key check and the
/// clients each instance sets up once are not in them.
const WARM_UP: usize = 8;
/// Events per `POST /v1/events/batch`.
const BATCH: usize = 20;
/// Bytes of one event's JSON.
const EVENT_BYTES: usize = 1024;
/// Single posts in flight at once.
const POSTERS: usize = 4;
/// Delivery jobs of a failure scenario: each fails every attempt, is parked, replayed.
const FAILED_JOBS: usize = 100;
/// Two attempts a second apart, then the DLQ.
const FAILURE_SCHEDULE: &str = "1s";
const SETTLE: Duration = Duration::from_secs(300);

/// The operations dev's event source makes, as Lambda's event source mapping does in AWS.
const EVENT_SOURCE_OPERATIONS: [&str; 2] = ["SQS.ReceiveMessage", "SQS.DeleteMessageBatch"];

/// Who made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Ingest,
    Api,
    Dispatcher,
    EventSource,
    /// `hookline dev` itself: tables, queues, the platform key.
    Dev,
}

impl Part {
    /// The part behind a call, from its caller's access key and its operation.
    fn of(access_key_id: &str, operation: &str) -> Self {
        match access_key_id {
            "ingest" => Self::Ingest,
            "api" => Self::Api,
            "dispatcher" if EVENT_SOURCE_OPERATIONS.contains(&operation) => Self::EventSource,
            "dispatcher" => Self::Dispatcher,
            _ => Self::Dev,
        }
    }
}

/// The variables that give dev and each function an access key named after it, and
/// keep their logs to warnings.
fn environment() -> Vec<(String, String)> {
    let keys = [
        ("HOOKLINE_DEV", "dev"),
        ("HOOKLINE_DEV_INGEST", "ingest"),
        ("HOOKLINE_DEV_API", "api"),
        ("HOOKLINE_DEV_DISPATCHER", "dispatcher"),
    ]
    .into_iter()
    .flat_map(|(prefix, key)| {
        [
            (format!("{prefix}_AWS_ACCESS_KEY_ID"), key.to_string()),
            (
                format!("{prefix}_AWS_SECRET_ACCESS_KEY"),
                "test".to_string(),
            ),
        ]
    });
    keys.chain([("RUST_LOG".to_string(), "warn".to_string())])
        .collect()
}

/// Calls between two readings of the proxy, by part and operation, and each
/// part's DynamoDB capacity units.
#[derive(Debug, Default)]
struct Tally(BTreeMap<Part, BTreeMap<String, u64>>, BTreeMap<Part, Units>);

impl Tally {
    fn between(before: &FaultCounts, after: &FaultCounts) -> Self {
        let mut tally = Self::default();
        for (caller, operations) in &after.by_caller {
            for (operation, &calls) in operations {
                let earlier = before
                    .by_caller
                    .get(caller)
                    .and_then(|o| o.get(operation))
                    .copied()
                    .unwrap_or(0);
                if calls > earlier {
                    *tally
                        .0
                        .entry(Part::of(caller, operation))
                        .or_default()
                        .entry(operation.clone())
                        .or_default() += calls - earlier;
                }
            }
        }
        for (caller, operations) in &after.units_by_caller {
            for (operation, &units) in operations {
                let earlier = before
                    .units_by_caller
                    .get(caller)
                    .and_then(|o| o.get(operation))
                    .copied()
                    .unwrap_or_default();
                *tally.1.entry(Part::of(caller, operation)).or_default() += units - earlier;
            }
        }
        tally
    }

    /// `part`'s write and read units per unit: `"w/r"`.
    fn units(&self, part: Part, units: usize) -> String {
        let spent = self.1.get(&part).copied().unwrap_or_default();
        format!(
            "{:.2}/{:.2}",
            spent.write / units as f64,
            spent.read / units as f64
        )
    }

    fn total(&self, part: Part) -> u64 {
        self.0.get(&part).map_or(0, |o| o.values().sum())
    }

    /// `part`'s calls of operations whose name starts with `prefix` (`SQS.`, say).
    fn calls_of(&self, part: Part, prefix: &str) -> u64 {
        self.0.get(&part).map_or(0, |o| {
            o.iter()
                .filter(|(operation, _)| operation.starts_with(prefix))
                .map(|(_, calls)| calls)
                .sum()
        })
    }

    fn spent(&self, part: Part) -> Units {
        self.1.get(&part).copied().unwrap_or_default()
    }

    /// `part`'s calls per unit, in all and by operation.
    fn per(&self, part: Part, units: usize) -> String {
        let per = |calls: u64| calls as f64 / units as f64;
        let operations: Vec<String> = self
            .0
            .get(&part)
            .into_iter()
            .flatten()
            .map(|(operation, &calls)| format!("{operation} {:.2}", per(calls)))
            .collect();
        format!(
            "{:.2} ({})",
            per(self.total(part)),
            if operations.is_empty() {
                "none".to_string()
            } else {
                operations.join(", ")
            }
        )
    }
}

/// `hookline dev` on an emulator of its own, behind the counting proxy.
struct Stack {
    // Dropped in this order: dev before the proxy it calls through, the emulator last.
    dev: Dev,
    proxy: FaultProxy,
    http: reqwest::Client,
    /// Straight to the emulator: the bench's own reads are not counted.
    sqs: aws_sdk_sqs::Client,
    delivery_url: String,
    dlq_url: String,
    _emulator: Emulator,
}

impl Stack {
    /// Dev with `retry_schedule` and a batching window of `batching_window` seconds.
    async fn start(retry_schedule: &str, batching_window: u64) -> Self {
        let emulator = Emulator::start().expect("the emulator starts");
        let proxy = FaultProxy::start(emulator.url(), 0);
        proxy.meter_capacity();
        let env = environment();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let window = batching_window.to_string();
        let dev = Dev::start_with_env(
            &[
                "--emulator",
                proxy.url(),
                "--retry-schedule",
                retry_schedule,
                "--batching-window",
                &window,
            ],
            &env,
        );
        let sdk = shared::aws::for_emulator(emulator.url()).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let url_of = |name: &'static str| {
            let sqs = sqs.clone();
            async move {
                sqs.get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .expect("dev made its queues")
                    .queue_url
                    .expect("a queue URL")
            }
        };
        let delivery_url = url_of(hookline_cli::local::DELIVERY_QUEUE).await;
        let dlq_url = url_of(hookline_cli::local::DLQ).await;
        Self {
            dev,
            proxy,
            http: reqwest::Client::new(),
            sqs,
            delivery_url,
            dlq_url,
            _emulator: emulator,
        }
    }

    /// `count` endpoints of `jane` at `receiver`, through the API.
    async fn endpoints(&self, receiver: &Receiver, count: usize) {
        for n in 0..count {
            let response = self
                .dev
                .request(&self.http, Method::POST, "/v1/accounts/jane/endpoints")
                .json(&json!({"url": receiver.url(&format!("/ep/{n}"))}))
                .send()
                .await
                .expect("the gateway answers");
            assert_eq!(response.status(), StatusCode::CREATED);
        }
    }

    /// Posts events `0..count` until each is accepted for `endpoints` endpoints:
    /// singly (`POSTERS` at a time) or in batches of `BATCH`. An event refused with
    /// an answer CONTRACT says to retry (5xx, 409) is posted again, under its key if
    /// it has one. Returns how many times events were refused.
    async fn post_events(&self, count: usize, batch: bool, keyed: bool, endpoints: usize) -> usize {
        let events: Vec<Value> = (0..count).map(|n| event(n, keyed && batch)).collect();
        let mut pending: Vec<usize> = (0..count).collect();
        let mut refused = 0;
        for _ in 0..10 {
            if pending.is_empty() {
                return refused;
            }
            let answers = if batch {
                self.post_batches(&events, &pending).await
            } else {
                self.post_singly(&events, &pending, keyed).await
            };
            pending.clear();
            for (n, answer) in answers {
                match answer {
                    // A repost of a refused event that had gone through after all.
                    Some(answer) if answer["duplicate"] == true => {}
                    Some(answer) => assert_eq!(answer["endpoints"], endpoints, "{answer}"),
                    None => {
                        refused += 1;
                        pending.push(n);
                    }
                }
            }
        }
        panic!(
            "{} events still refused after ten posts each",
            pending.len()
        );
    }

    /// Each of `which` events posted in batches; its answer, or `None` if refused.
    async fn post_batches(&self, events: &[Value], which: &[usize]) -> Vec<(usize, Option<Value>)> {
        let mut posts = tokio::task::JoinSet::new();
        for chunk in which.chunks(BATCH) {
            let request = self
                .dev
                .request(&self.http, Method::POST, "/v1/events/batch")
                .json(&json!({ "events": chunk.iter().map(|&n| &events[n]).collect::<Vec<_>>() }));
            let chunk = chunk.to_vec();
            posts.spawn(async move {
                // A batch refused as a whole (its invocation timed out, say) is posted again.
                let Ok(answer) = answer(request).await else {
                    return chunk.into_iter().map(|n| (n, None)).collect();
                };
                let items = answer["data"].as_array().expect("a data list").clone();
                assert_eq!(items.len(), chunk.len());
                chunk
                    .into_iter()
                    .zip(items)
                    .map(|(n, item)| (n, item.get("error").map_or(Some(item.clone()), refused)))
                    .collect::<Vec<_>>()
            });
        }
        posts.join_all().await.into_iter().flatten().collect()
    }

    /// Each of `which` events posted alone, `POSTERS` at a time; its answer, or
    /// `None` if refused.
    async fn post_singly(
        &self,
        events: &[Value],
        which: &[usize],
        keyed: bool,
    ) -> Vec<(usize, Option<Value>)> {
        let mut posts = tokio::task::JoinSet::new();
        for poster in 0..POSTERS {
            let requests: Vec<(usize, reqwest::RequestBuilder)> = which
                .iter()
                .skip(poster)
                .step_by(POSTERS)
                .map(|&n| {
                    let request = self
                        .dev
                        .request(&self.http, Method::POST, "/v1/events")
                        .json(&events[n]);
                    let request = if keyed {
                        request.header("idempotency-key", format!("bench-{n}"))
                    } else {
                        request
                    };
                    (n, request)
                })
                .collect();
            posts.spawn(async move {
                let mut answers = Vec::new();
                for (n, request) in requests {
                    answers.push((n, answer(request).await.ok()));
                }
                answers
            });
        }
        posts.join_all().await.into_iter().flatten().collect()
    }

    async fn depth(&self, url: &str) -> usize {
        queue_depth(&self.sqs, url).await
    }

    /// Waits until `done` holds and the delivery queue is empty: every job's
    /// attempt written and its message deleted.
    async fn drained(&self, what: &str, done: impl Fn() -> bool) {
        poll_until(SETTLE, what, || async {
            (done() && self.depth(&self.delivery_url).await == 0).then_some(())
        })
        .await;
    }
}

/// The 202 body of a post, or the error of one CONTRACT says to retry.
async fn answer(request: reqwest::RequestBuilder) -> Result<Value, Value> {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON answer");
    match status {
        StatusCode::ACCEPTED => Ok(body),
        StatusCode::CONFLICT => Err(body),
        status if status.is_server_error() => Err(body),
        status => panic!("{status}: {body}"),
    }
}

/// `None` for an error a batch item may be retried after; a panic for any other.
fn refused(error: &Value) -> Option<Value> {
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        ["internal_error", "conflict"].contains(&code),
        "an event was refused: {error}"
    );
    None
}

/// Event `n`, `EVENT_BYTES` of JSON, carrying its own idempotency key if `with_id`.
fn event(n: usize, with_id: bool) -> Value {
    let id = with_id.then(|| format!("bench-{n}"));
    // `,"id":"…"` added to the object: its JSON without the braces, plus a comma.
    let id_bytes = id
        .as_ref()
        .map_or(0, |id| json!({ "id": id }).to_string().len() - 1);
    let mut event = sample_event(n, EVENT_BYTES - id_bytes);
    if let Some(id) = id {
        event["id"] = json!(id);
    }
    assert_eq!(event.to_string().len(), EVENT_BYTES);
    event
}

/// One printed row: a scenario's name, its units, and each part's calls per unit.
struct Row {
    scenario: String,
    units: usize,
    figures: Vec<String>,
    breakdown: Vec<String>,
    /// What a delivery used of what AWS bills (delivery scenarios only).
    usage: Option<Usage>,
}

/// Per delivery: what AWS bills, as counted.
#[derive(Debug, Clone, Copy)]
struct Usage {
    api_requests: f64,
    ingest_invocations: f64,
    dispatcher_invocations: f64,
    sqs_requests: f64,
    write_units: f64,
    read_units: f64,
}

/// List prices, us-east-1, as of 2026-11-24 (the figures `docs/cost.md` states).
const PRICE_API_REQUEST: f64 = 1.00 / 1e6;
const PRICE_LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// arm64, per GB-second.
const PRICE_LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
const PRICE_WRITE_UNIT: f64 = 0.625 / 1e6;
const PRICE_READ_UNIT: f64 = 0.125 / 1e6;
const PRICE_SQS_REQUEST: f64 = 0.40 / 1e6;
/// The template's default memory of ingest and the dispatcher, in GB.
const FUNCTION_GB: f64 = 256.0 / 1024.0;
/// Billed milliseconds per invocation, as stated in `docs/cost.md` (`make bench-cpu`'s
/// CPU at 256 MB plus the calls' round trips, `docs/capacity.md`): ingest, for a
/// single post and for a batch of `BATCH`; the dispatcher, per batch of jobs to an
/// endpoint answering in about 30 ms.
const INGEST_MS_SINGLE: f64 = 25.0;
const INGEST_MS_BATCH: f64 = 90.0;
const DISPATCHER_MS: f64 = 64.0;

impl Usage {
    /// Dollars per million deliveries: API Gateway, Lambda requests, Lambda
    /// duration, DynamoDB, SQS, and in all.
    fn cost(&self, batch: bool) -> [f64; 6] {
        let ingest_ms = if batch {
            INGEST_MS_BATCH
        } else {
            INGEST_MS_SINGLE
        };
        let gb_seconds = (self.ingest_invocations * ingest_ms
            + self.dispatcher_invocations * DISPATCHER_MS)
            / 1000.0
            * FUNCTION_GB;
        let parts = [
            self.api_requests * PRICE_API_REQUEST,
            (self.ingest_invocations + self.dispatcher_invocations) * PRICE_LAMBDA_REQUEST,
            gb_seconds * PRICE_LAMBDA_GB_SECOND,
            self.write_units * PRICE_WRITE_UNIT + self.read_units * PRICE_READ_UNIT,
            self.sqs_requests * PRICE_SQS_REQUEST,
        ];
        let million = |dollars: f64| dollars * 1e6;
        [
            million(parts[0]),
            million(parts[1]),
            million(parts[2]),
            million(parts[3]),
            million(parts[4]),
            million(parts.iter().sum()),
        ]
    }
}

/// A titled table: a scenario's name, its units, and each column's figure.
fn table(title: &str, columns: &[&str], rows: &[(String, usize, Vec<String>)]) -> String {
    let mut text = format!("\n{title}\n");
    let mut header = format!("{:<34}{:>7}", "scenario", columns[0]);
    for column in &columns[1..] {
        header.push_str(&format!("  {column:>w$}", w = column.len().max(8)));
    }
    text.push_str(header.trim_end());
    text.push('\n');
    for (scenario, units, figures) in rows {
        let mut line = format!("{scenario:<34}{units:>7}");
        for (column, figure) in columns[1..].iter().zip(figures) {
            line.push_str(&format!("  {figure:>w$}", w = column.len().max(8)));
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn figures(rows: &[Row]) -> Vec<(String, usize, Vec<String>)> {
    rows.iter()
        .map(|row| (row.scenario.clone(), row.units, row.figures.clone()))
        .collect()
}

/// Dollars per million deliveries of each delivery scenario.
fn costs(rows: &[Row]) -> Vec<(String, usize, Vec<String>)> {
    rows.iter()
        .filter_map(|row| {
            let usage = row.usage?;
            let cost = usage.cost(row.scenario.contains("batch"));
            Some((
                row.scenario.clone(),
                row.units,
                cost.iter().map(|dollars| format!("{dollars:.2}")).collect(),
            ))
        })
        .collect()
}

/// Where the benchmark's tables go in `docs/cost.md`, between these lines.
const DOC_BEGIN: &str = "<!-- tables written by `make bench-calls`: begin -->";
const DOC_END: &str = "<!-- tables written by `make bench-calls`: end -->";

/// Puts `tables` between the markers of `docs/cost.md`, the prose around them kept.
fn write_doc(tables: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cost.md");
    let doc = std::fs::read_to_string(&path).expect("docs/cost.md is there");
    let (Some(begin), Some(end)) = (doc.find(DOC_BEGIN), doc.find(DOC_END)) else {
        panic!("docs/cost.md has no markers for the tables");
    };
    let written = format!(
        "{}{DOC_BEGIN}\n\n```{tables}```\n\n{}",
        &doc[..begin],
        &doc[end..]
    );
    std::fs::write(&path, written).expect("docs/cost.md is written");
}

fn print_breakdown(rows: &[Row]) {
    for row in rows {
        println!("\n{}", row.scenario);
        for line in &row.breakdown {
            println!("  {line}");
        }
    }
}

/// Ingest and delivery with a receiver that answers 204, the event source waiting up
/// to `batching_window` seconds to fill a batch.
async fn deliveries(endpoints: usize, batch: bool, keyed: bool, batching_window: u64) -> Row {
    let scenario = format!(
        "{endpoints} endpoint{}, {}, {}{}",
        if endpoints == 1 { "" } else { "s" },
        if batch { "batch" } else { "single" },
        if keyed { "key" } else { "no key" },
        if batching_window > 0 {
            format!(", window {batching_window}s")
        } else {
            String::new()
        },
    );
    let started = Instant::now();
    let stack = Stack::start("1s,1s,1s", batching_window).await;
    let receiver = Receiver::start().await;
    stack.endpoints(&receiver, endpoints).await;
    stack.post_events(WARM_UP, false, false, endpoints).await;
    let warm = WARM_UP * endpoints;
    stack
        .drained("the warm-up's deliveries", || {
            receiver.successes().len() >= warm
        })
        .await;
    let setup = stack.proxy.counts();
    let refused = stack.post_events(EVENTS, batch, keyed, endpoints).await;
    let ingested = stack.proxy.counts();
    let wanted = EVENTS * endpoints;
    stack
        .drained(&format!("{wanted} deliveries"), || {
            receiver.successes().len() >= warm + wanted
        })
        .await;
    let delivered = stack.proxy.counts();
    // At least once: a job now and then comes twice; the figures are per job.
    let requests = receiver.deliveries().len() - warm;
    let ingest = Tally::between(&setup, &ingested);
    // Deliveries start while the posts are still being answered.
    let delivery = Tally::between(&setup, &delivered);
    eprintln!("{scenario}: {:?}", started.elapsed());
    let posts = if batch {
        EVENTS.div_ceil(BATCH)
    } else {
        EVENTS
    } + refused;
    let per_delivery = |n: f64| n / wanted as f64;
    let (ingest_units, dispatcher_units) =
        (ingest.spent(Part::Ingest), delivery.spent(Part::Dispatcher));
    let usage = Usage {
        api_requests: per_delivery(posts as f64),
        ingest_invocations: per_delivery(posts as f64),
        // The event source deletes what each invocation delivered: one call per batch.
        dispatcher_invocations: per_delivery(
            delivery.calls_of(Part::EventSource, "SQS.DeleteMessageBatch") as f64,
        ),
        sqs_requests: per_delivery(
            (ingest.calls_of(Part::Ingest, "SQS.")
                + delivery.calls_of(Part::Dispatcher, "SQS.")
                + delivery.calls_of(Part::EventSource, "SQS.")) as f64,
        ),
        write_units: per_delivery(ingest_units.write + dispatcher_units.write),
        read_units: per_delivery(ingest_units.read + dispatcher_units.read),
    };
    Row {
        usage: Some(usage),
        units: EVENTS,
        figures: vec![
            format!("{:.2}", ingest.total(Part::Ingest) as f64 / EVENTS as f64),
            ingest.units(Part::Ingest, EVENTS),
            format!(
                "{:.2}",
                delivery.total(Part::Dispatcher) as f64 / wanted as f64
            ),
            delivery.units(Part::Dispatcher, wanted),
            format!(
                "{:.2}",
                delivery.total(Part::EventSource) as f64 / wanted as f64
            ),
        ],
        breakdown: vec![
            format!(
                "{wanted} jobs, {requests} requests to the receiver, {refused} posts refused and retried"
            ),
            format!("ingest per event: {}", ingest.per(Part::Ingest, EVENTS)),
            format!(
                "dispatcher per delivery: {}",
                delivery.per(Part::Dispatcher, wanted)
            ),
            format!(
                "esm per delivery: {}",
                delivery.per(Part::EventSource, wanted)
            ),
        ],
        scenario,
    }
}

/// Jobs that fail every attempt and are parked, then replayed from the DLQ to a
/// receiver that has recovered.
async fn failures_and_replay(endpoints: usize) -> Row {
    let scenario = format!(
        "{endpoints} endpoint{}, 500 then replay",
        if endpoints == 1 { "" } else { "s" }
    );
    let started = Instant::now();
    let stack = Stack::start(FAILURE_SCHEDULE, 0).await;
    let failing = Arc::new(AtomicBool::new(true));
    let status = failing.clone();
    let receiver = Receiver::scripted(move |_, _| {
        Reply::status(if status.load(Ordering::SeqCst) {
            500
        } else {
            204
        })
    })
    .await;
    stack.endpoints(&receiver, endpoints).await;
    let events = FAILED_JOBS / endpoints;
    let jobs = events * endpoints;
    let scheduled = jobs * (FAILURE_SCHEDULE.split(',').count() + 1);
    let setup = stack.proxy.counts();
    let refused = stack.post_events(events, false, false, endpoints).await;
    stack
        .drained(&format!("{scheduled} failed attempts"), || {
            receiver.requests().len() >= scheduled
        })
        .await;
    poll_until(SETTLE, &format!("{jobs} jobs in the DLQ"), || async {
        (stack.depth(&stack.dlq_url).await == jobs).then_some(())
    })
    .await;
    let parked = stack.proxy.counts();
    let attempts = receiver.requests().len();

    failing.store(false, Ordering::SeqCst);
    let mut replayed = 0;
    while replayed < jobs {
        let answer: Value = stack
            .dev
            .request(&stack.http, Method::POST, "/v1/dlq/replay")
            .json(&json!({}))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("a JSON answer");
        replayed += answer["replayed"].as_u64().expect("a count") as usize;
    }
    assert_eq!(replayed, jobs);
    let replay_answered = stack.proxy.counts();
    stack
        .drained(&format!("{jobs} replayed deliveries"), || {
            receiver.successes().len() >= jobs
        })
        .await;
    let redelivered = stack.proxy.counts();

    // The failed attempts begin while the posts are still being answered.
    let failed = Tally::between(&setup, &parked);
    let replay = Tally::between(&parked, &replay_answered);
    let again = Tally::between(&parked, &redelivered);
    eprintln!("{scenario}: {:?}", started.elapsed());
    let per = |tally: &Tally, part, units: usize| {
        format!("{:.2}", tally.total(part) as f64 / units as f64)
    };
    Row {
        usage: None,
        units: jobs,
        figures: vec![
            per(&failed, Part::Dispatcher, attempts),
            failed.units(Part::Dispatcher, attempts),
            per(&failed, Part::EventSource, attempts),
            per(&replay, Part::Api, jobs),
            replay.units(Part::Api, jobs),
            per(&again, Part::Dispatcher, jobs),
            again.units(Part::Dispatcher, jobs),
            per(&again, Part::EventSource, jobs),
        ],
        breakdown: vec![
            format!("{jobs} jobs, {refused} posts refused and retried"),
            format!(
                "dispatcher per failed attempt ({attempts} attempts): {}",
                failed.per(Part::Dispatcher, attempts)
            ),
            format!(
                "esm per failed attempt: {}",
                failed.per(Part::EventSource, attempts)
            ),
            format!(
                "api per replayed job (POST /v1/dlq/replay): {}",
                replay.per(Part::Api, jobs)
            ),
            format!(
                "dispatcher per replayed delivery: {}",
                again.per(Part::Dispatcher, jobs)
            ),
            format!(
                "esm per replayed delivery: {}",
                again.per(Part::EventSource, jobs)
            ),
        ],
        scenario,
    }
}

/// `make bench-calls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark of some minutes: run by `make bench-calls`"]
async fn aws_calls_per_event_delivery_failed_attempt_and_replayed_job() {
    let mut delivered = Vec::new();
    for endpoints in [1, 10] {
        for batch in [false, true] {
            for keyed in [false, true] {
                delivered.push(deliveries(endpoints, batch, keyed, 0).await);
            }
        }
    }
    // Single posts trickle in one job at a time; a batching window gathers them.
    delivered.push(deliveries(1, false, false, 1).await);
    let mut failed = Vec::new();
    for endpoints in [1, 10] {
        failed.push(failures_and_replay(endpoints).await);
    }

    let mut tables = format!(
        "\nAWS calls (DynamoDB and SQS) per unit; 1 KiB events; batches of {BATCH}; \
         esm = the SQS event source mapping's receives and deletes; \
         WU/RU = DynamoDB write/read capacity units\n"
    );
    tables.push_str(&table(
        "Ingest and successful delivery",
        &[
            "events",
            "ingest calls/event",
            "ingest WU/RU per event",
            "dispatcher calls/delivery",
            "dispatcher WU/RU per delivery",
            "esm calls/delivery",
        ],
        &figures(&delivered),
    ));
    tables.push_str(&table(
        &format!(
            "Failed attempts (receiver answers 500, schedule {FAILURE_SCHEDULE}) and DLQ replay"
        ),
        &[
            "jobs",
            "dispatcher calls/failed attempt",
            "WU/RU per failed attempt",
            "esm calls/failed attempt",
            "api calls/replayed job",
            "api WU/RU per replayed job",
            "dispatcher calls/replayed delivery",
            "WU/RU per replayed delivery",
            "esm calls/replayed delivery",
        ],
        &figures(&failed),
    ));
    tables.push_str(&table(
        "Dollars per million successful deliveries (list prices, us-east-1, 2026-11-24)",
        &[
            "events",
            "API Gateway",
            "Lambda requests",
            "Lambda duration",
            "DynamoDB",
            "SQS",
            "total",
        ],
        &costs(&delivered),
    ));
    print!("{tables}");
    write_doc(&tables);
    println!("\nBy operation, per unit");
    print_breakdown(&delivered);
    print_breakdown(&failed);
}
