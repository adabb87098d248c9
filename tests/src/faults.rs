//! A fault injector between the AWS SDK and the emulator: an HTTP proxy on 127.0.0.1
//! that forwards every call unchanged and, while armed, answers a share of the
//! DynamoDB and SQS calls with what AWS answers on a bad day — throttling, an
//! internal error, or an internal error *after* the call took effect (its answer
//! lost, so the SDK sends it again). The choices follow a seed, and every call and
//! fault is counted by operation and kind, and every call by its caller too.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;

use crate::capacity::{Tables, Units, get_item_request};

/// What an armed proxy does to the calls it faults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Share of calls answered with a fault, in `0.0..=1.0`.
    pub share: f64,
    /// Share of the faults forwarded first: the call takes effect, its answer is a 500.
    pub after_forwarding: f64,
    /// Share of the other faults answered with throttling; the rest get a 500.
    pub throttled: f64,
}

impl FaultPlan {
    /// `share` of the calls fail, a third of them after taking effect, the others
    /// half throttled and half internal errors.
    pub fn share(share: f64) -> Self {
        Self {
            share,
            after_forwarding: 1.0 / 3.0,
            throttled: 0.5,
        }
    }
}

/// How a faulted call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The service's own throttling error, not forwarded.
    Throttled,
    /// A 500, not forwarded.
    Failed,
    /// Forwarded and done, then answered with a 500.
    AnswerLost,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Throttled => "throttled",
            Self::Failed => "failed",
            Self::AnswerLost => "answer lost",
        })
    }
}

/// The counts so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultCounts {
    /// Every DynamoDB and SQS call, armed or not, by `Service.Operation`.
    pub calls: BTreeMap<String, u64>,
    /// Calls made while armed.
    pub armed_calls: u64,
    pub faults: BTreeMap<FaultKind, u64>,
    /// Faults by `Service.Operation`.
    pub faulted: BTreeMap<String, u64>,
    /// Every call by the access key id it was signed with, then by `Service.Operation`.
    pub by_caller: BTreeMap<String, BTreeMap<String, u64>>,
    /// DynamoDB capacity units by caller, then by `Service.Operation`, while metering
    /// (see [`FaultProxy::meter_capacity`]).
    pub units_by_caller: BTreeMap<String, BTreeMap<String, Units>>,
}

impl FaultCounts {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.faults.get(&kind).copied().unwrap_or(0)
    }

    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = if self.armed_calls == 0 {
            0.0
        } else {
            100.0 * self.total_faults() as f64 / self.armed_calls as f64
        };
        writeln!(
            f,
            "AWS calls: {} ({} while armed); injected faults: {} ({share:.1} % of the armed calls)",
            self.total_calls(),
            self.armed_calls,
            self.total_faults()
        )?;
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        writeln!(f, "  faults by kind: {}", kinds.join(", "))?;
        for (operation, calls) in &self.calls {
            let faulted = self.faulted.get(operation).copied().unwrap_or(0);
            writeln!(f, "  {operation:<40} {calls:>7} calls {faulted:>6} faulted")?;
        }
        Ok(())
    }
}

/// The proxy, listening until dropped.
pub struct FaultProxy {
    url: String,
    state: Arc<ProxyState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    seed: u64,
    /// Numbers the armed calls; each one's fate is drawn from the seed and its number.
    draws: AtomicU64,
    plan: Mutex<Option<FaultPlan>>,
    counts: Mutex<FaultCounts>,
    /// Whether DynamoDB capacity units are worked out, and the tables they need.
    metering: AtomicBool,
    tables: Tables,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 and forwards to the emulator at `upstream`; disarmed.
    /// It runs on a thread and runtime of its own, so a test that blocks its own
    /// threads (starting `hookline dev`, say) does not stall the calls it carries.
    pub fn start(upstream: &str, seed: u64) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a client"),
            seed,
            draws: AtomicU64::new(0),
            plan: Mutex::new(None),
            counts: Mutex::default(),
            metering: AtomicBool::new(false),
            tables: Tables::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let served = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a free port");
                bound
                    .send(listener.local_addr().expect("bound"))
                    .expect("the starter waits");
                let app = Router::new().fallback(relay).with_state(served);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = address.recv().expect("the proxy binds");
        Self {
            url: format!("http://{address}"),
            state,
            stop: Some(stop),
        }
    }

    /// The URL to give the SDK as its endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn arm(&self, plan: FaultPlan) {
        *self.state.plan.lock().expect("not poisoned") = Some(plan);
    }

    /// From now on, works out the capacity units of the DynamoDB calls it forwards
    /// unfaulted (see [`crate::capacity`]); it reads each written item from the
    /// emulator before and after the write, uncounted. Tables must be created later.
    pub fn meter_capacity(&self) {
        self.state.metering.store(true, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        *self.state.plan.lock().expect("not poisoned") = None;
    }

    pub fn counts(&self) -> FaultCounts {
        self.state.counts.lock().expect("not poisoned").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Which AWS service a call is for, read from what the SDK sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    Sqs,
}

/// The service and operation of a call: `X-Amz-Target` (`DynamoDB_20120810.PutItem`,
/// `AmazonSQS.SendMessageBatch`) or a form body's `Action=` (SQS's query protocol).
pub fn classify(headers: &HeaderMap, body: &[u8]) -> Option<(Service, String)> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = target.split_once('.')?;
        let service = if prefix.starts_with("DynamoDB") {
            Service::DynamoDb
        } else if prefix == "AmazonSQS" {
            Service::Sqs
        } else {
            return None;
        };
        return Some((service, operation.to_string()));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return None;
    }
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "Action")
        .map(|(_, action)| (Service::Sqs, action.into_owned()))
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::DynamoDb => "DynamoDB",
            Self::Sqs => "SQS",
        }
    }

    /// The service's own answer for `kind`: status, error code and message.
    fn error(self, kind: FaultKind, draw: f64) -> (StatusCode, &'static str, &'static str) {
        let second = draw >= 0.5;
        match (self, kind) {
            (Self::DynamoDb, FaultKind::Throttled) if second => (
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            ),
            (Self::DynamoDb, FaultKind::Throttled) => (
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            (Self::DynamoDb, _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
            ),
            (Self::Sqs, FaultKind::Throttled) if second => (
                StatusCode::BAD_REQUEST,
                "RequestThrottled",
                "Request is throttled.",
            ),
            (Self::Sqs, FaultKind::Throttled) => (
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded.",
            ),
            (Self::Sqs, _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "The request processing has failed because of an unknown error.",
            ),
        }
    }

    /// The error response the SDK parses for `kind`, in the JSON protocol both
    /// services speak (SQS also names the code in `x-amzn-query-error`).
    fn fault_response(self, kind: FaultKind, draw: f64) -> Response {
        let (status, code, message) = self.error(kind, draw);
        let namespace = match self {
            Self::DynamoDb => "com.amazonaws.dynamodb.v20120810",
            Self::Sqs => "com.amazonaws.sqs",
        };
        let body = serde_json::json!({"__type": format!("{namespace}#{code}"), "message": message});
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
            .header("x-amzn-requestid", ulid::Ulid::new().to_string());
        if self == Self::Sqs {
            let fault = if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            response = response.header("x-amzn-query-error", format!("{code};{fault}"));
        }
        response
            .body(Body::from(body.to_string()))
            .expect("a valid response")
    }
}

/// The access key id a SigV4-signed call names (`Credential=<id>/<date>/…`).
pub fn access_key_id(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (_, credential) = authorization.split_once("Credential=")?;
    credential.split('/').next()
}

/// A number in `0.0..1.0` drawn from `seed` and `n` (splitmix64): the same seed
/// gives the same sequence of fates.
fn draw(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The fate of one armed call: none, or a fault kind (with a draw that picks
/// between a service's throttling codes).
fn fate(plan: &FaultPlan, seed: u64, n: u64) -> Option<(FaultKind, f64)> {
    // Three draws per call, from disjoint parts of the sequence.
    let [faulted, kind, code] = [0, 1, 2].map(|i| draw(seed, 3 * n + i));
    if faulted >= plan.share {
        return None;
    }
    let after = plan.after_forwarding;
    let kind = if kind < after {
        FaultKind::AnswerLost
    } else if (kind - after) < plan.throttled * (1.0 - after) {
        FaultKind::Throttled
    } else {
        FaultKind::Failed
    };
    Some((kind, code))
}

async fn relay(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = classify(&headers, &body);
    let plan = *state.plan.lock().expect("not poisoned");
    let fault = match (&call, plan) {
        (Some(_), Some(plan)) => {
            let n = state.draws.fetch_add(1, Ordering::SeqCst);
            fate(&plan, state.seed, n)
        }
        _ => None,
    };
    if let Some((service, operation)) = &call {
        let name = format!("{}.{operation}", service.name());
        let caller = access_key_id(&headers).unwrap_or("unsigned").to_string();
        let mut counts = state.counts.lock().expect("not poisoned");
        *counts.calls.entry(name.clone()).or_default() += 1;
        *counts
            .by_caller
            .entry(caller)
            .or_default()
            .entry(name.clone())
            .or_default() += 1;
        if plan.is_some() {
            counts.armed_calls += 1;
        }
        if let Some((kind, _)) = fault {
            *counts.faults.entry(kind).or_default() += 1;
            *counts.faulted.entry(name).or_default() += 1;
        }
    }
    match (call, fault) {
        (Some((Service::DynamoDb, operation)), None) if state.metering.load(Ordering::SeqCst) => {
            metered(&state, &operation, method, &uri, &headers, body).await
        }
        (Some((service, _)), Some((kind, code))) => {
            if kind == FaultKind::AnswerLost {
                // Whatever the emulator answered, the caller never sees it.
                let _ = forward(&state, method, &uri, &headers, body).await;
            }
            service.fault_response(kind, code)
        }
        _ => forward(&state, method, &uri, &headers, body).await,
    }
}

/// Forwards a DynamoDB call and adds its capacity units to its caller's.
async fn metered(
    state: &ProxyState,
    operation: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if operation == "CreateTable" {
        state.tables.learn(&request);
    }
    let written = state.tables.written(operation, &request);
    let mut before = Vec::new();
    for item in &written {
        before.push(read_item(state, headers, &get_item_request(item)).await);
    }
    let response = forward(state, method, uri, headers, body).await;
    let (parts, answer) = response.into_parts();
    let answer = axum::body::to_bytes(answer, usize::MAX)
        .await
        .unwrap_or_default();
    let mut units = Units {
        read: Tables::read_units(
            operation,
            &request,
            &serde_json::from_slice(&answer).unwrap_or_default(),
        ),
        write: 0.0,
    };
    for (item, before) in written.iter().zip(&before) {
        let after = read_item(state, headers, &get_item_request(item)).await;
        units.write += state
            .tables
            .write_units(item, before.as_ref(), after.as_ref());
    }
    let caller = access_key_id(headers).unwrap_or("unsigned").to_string();
    *state
        .counts
        .lock()
        .expect("not poisoned")
        .units_by_caller
        .entry(caller)
        .or_default()
        .entry(format!("DynamoDB.{operation}"))
        .or_default() += units;
    Response::from_parts(parts, Body::from(answer))
}

/// An item as the emulator holds it now, read with the caller's credentials, uncounted.
async fn read_item(
    state: &ProxyState,
    headers: &HeaderMap,
    request: &Value,
) -> Option<serde_json::Map<String, Value>> {
    let mut call = state
        .client
        .post(format!("{}/", state.upstream))
        .header("x-amz-target", "DynamoDB_20120810.GetItem")
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
        .body(request.to_string());
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        call = call.header(header::AUTHORIZATION, authorization);
    }
    let answer: Value = call.send().await.ok()?.json().await.ok()?;
    answer["Item"].as_object().cloned()
}

/// Hop-by-hop headers and the ones the client sets itself.
fn forwardable(name: &header::HeaderName) -> bool {
    ![
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ]
    .contains(name)
}

async fn forward(
    state: &ProxyState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in headers.iter().filter(|(name, _)| forwardable(name)) {
        request = request.header(name, value);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("the emulator did not answer: {error}")))
                .expect("a valid response");
        }
    };
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer
        .headers()
        .iter()
        .filter(|(name, _)| forwardable(name))
    {
        response = response.header(name, value);
    }
    let body = answer.bytes().await.unwrap_or_default();
    response
        .header(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64))
        .body(Body::from(body))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_json_targets_and_query_actions() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.PutItem"),
        );
        assert_eq!(
            classify(&headers, b"{}"),
            Some((Service::DynamoDb, "PutItem".into()))
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.SendMessageBatch"),
        );
        assert_eq!(
            classify(&headers, b"{}"),
            Some((Service::Sqs, "SendMessageBatch".into()))
        );
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert_eq!(
            classify(&form, b"Action=ReceiveMessage&Version=2012-11-05"),
            Some((Service::Sqs, "ReceiveMessage".into()))
        );
        assert_eq!(classify(&HeaderMap::new(), b"{}"), None);
    }

    #[test]
    fn reads_the_caller_s_access_key_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(access_key_id(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=ingest/20261123/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(access_key_id(&headers), Some("ingest"));
    }

    #[test]
    fn fates_follow_the_seed_and_the_plan_s_shares() {
        let plan = FaultPlan::share(0.1);
        let fates = |seed| {
            (0..30_000)
                .map(|n| fate(&plan, seed, n))
                .collect::<Vec<_>>()
        };
        let first = fates(7);
        assert_eq!(first, fates(7));
        assert_ne!(first, fates(8));
        let count = |kind| first.iter().flatten().filter(|(k, _)| *k == kind).count() as f64;
        let faults = first.iter().flatten().count() as f64;
        assert!((faults / 30_000.0 - 0.1).abs() < 0.01, "{faults}");
        assert!((count(FaultKind::AnswerLost) / faults - 1.0 / 3.0).abs() < 0.05);
        assert!((count(FaultKind::Throttled) / faults - 1.0 / 3.0).abs() < 0.05);
        assert!((count(FaultKind::Failed) / faults - 1.0 / 3.0).abs() < 0.05);
        let never = FaultPlan::share(0.0);
        assert!((0..1000).all(|n| fate(&never, 7, n).is_none()));
    }
}
