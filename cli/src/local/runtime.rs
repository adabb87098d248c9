//! A local implementation of the Lambda Runtime API, and the instances behind it.
//!
//! Each function has a queue of invocations; each of its instances is a child
//! process (the shipped binary) with a Runtime API listener of its own, so an
//! instance that dies or overruns its timeout fails only the invocation it held,
//! and is replaced, as Lambda replaces a failed instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

const API_PREFIX: &str = "/2018-06-01/runtime";
/// Pause before replacing an instance that exited, so a binary that cannot start does not spin.
const RESTART_PAUSE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("the function returned an error: {0}")]
    Function(String),
    #[error("the function timed out after {0:?}")]
    Timeout(Duration),
    #[error("the instance died before it answered")]
    InstanceLost,
    #[error("the function is stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Value, InvokeError>>;

struct Invocation {
    event: Value,
    reply: Reply,
}

/// What is needed to run one function's instances.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub instances: usize,
}

/// A handle to invoke a function; cheap to clone.
#[derive(Clone)]
pub struct Function {
    name: &'static str,
    sender: mpsc::Sender<Invocation>,
    timeout: Duration,
}

impl Function {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Invokes the function synchronously, as the Lambda Invoke API with `RequestResponse` does.
    pub async fn invoke(&self, event: Value) -> Result<Value, InvokeError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Invocation { event, reply })
            .await
            .map_err(|_| InvokeError::Stopped)?;
        // The instance's watchdog enforces the timeout; this margin only guards against a lost reply.
        match tokio::time::timeout(self.timeout + Duration::from_secs(5), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::InstanceLost),
            Err(_) => Err(InvokeError::Timeout(self.timeout)),
        }
    }
}

/// One instance's Runtime API state.
#[derive(Clone)]
struct Instance {
    function: &'static str,
    queue: Arc<Mutex<mpsc::Receiver<Invocation>>>,
    in_flight: Arc<std::sync::Mutex<HashMap<String, Reply>>>,
    timeout: Duration,
    /// Told when an invocation overran its timeout: the process is replaced.
    overrun: Arc<Notify>,
    /// Set once the process asked for its first invocation: its init is done.
    ready: watch::Sender<bool>,
    /// When the current process was started, until its first poll reports its init time.
    spawned: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Instance {
    fn fail_in_flight(&self) {
        // Dropping the reply senders tells each waiting invoker the instance is gone.
        self.in_flight.lock().expect("not poisoned").clear();
    }

    fn finish(&self, request_id: &str, result: Result<Value, InvokeError>) -> bool {
        let reply = self
            .in_flight
            .lock()
            .expect("not poisoned")
            .remove(request_id);
        match reply {
            Some(reply) => {
                let _ = reply.send(result);
                true
            }
            None => false,
        }
    }
}

async fn next_invocation(State(instance): State<Instance>) -> Response {
    let first_poll = !instance.ready.send_replace(true);
    if first_poll && let Some(spawned) = instance.spawned.lock().expect("not poisoned").take() {
        // Cold init as Lambda bills it: from the process's start to its first poll.
        tracing::info!(
            function = instance.function,
            init_us = spawned.elapsed().as_micros() as u64,
            "instance initialised"
        );
    }
    let Some(invocation) = instance.queue.lock().await.recv().await else {
        // No more invocations: like Lambda, leave the process waiting until it is stopped
        // (the function's runtime client treats any answer as an invocation).
        return std::future::pending().await;
    };
    let request_id = ulid::Ulid::new().to_string().to_lowercase();
    let deadline = std::time::SystemTime::now() + instance.timeout;
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    instance
        .in_flight
        .lock()
        .expect("not poisoned")
        .insert(request_id.clone(), invocation.reply);

    let watchdog = instance.clone();
    let watched_id = request_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(watchdog.timeout).await;
        if watchdog.finish(&watched_id, Err(InvokeError::Timeout(watchdog.timeout))) {
            watchdog.overrun.notify_one();
        }
    });

    let mut headers = HeaderMap::new();
    let header = |text: &str| HeaderValue::from_str(text).expect("ASCII header value");
    headers.insert("lambda-runtime-aws-request-id", header(&request_id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{}",
            instance.function
        )),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header(&format!("Root=1-{request_id}")),
    );
    headers.insert("content-type", header("application/json"));
    (StatusCode::OK, headers, invocation.event.to_string()).into_response()
}

async fn invocation_response(
    State(instance): State<Instance>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let result = serde_json::from_slice(&body)
        .map_err(|e| InvokeError::Function(format!("the response is not JSON: {e}")));
    instance.finish(&request_id, result);
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(instance): State<Instance>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    tracing::warn!(function = instance.function, error = %text, "invocation failed");
    instance.finish(&request_id, Err(InvokeError::Function(text)));
    StatusCode::ACCEPTED
}

async fn init_error(State(instance): State<Instance>, body: Bytes) -> StatusCode {
    tracing::error!(
        function = instance.function,
        error = %String::from_utf8_lossy(&body),
        "the function failed to start"
    );
    StatusCode::ACCEPTED
}

fn runtime_api(instance: Instance) -> Router {
    Router::new()
        .route(
            &format!("{API_PREFIX}/invocation/next"),
            get(next_invocation),
        )
        .route(
            &format!("{API_PREFIX}/invocation/{{id}}/response"),
            post(invocation_response),
        )
        .route(
            &format!("{API_PREFIX}/invocation/{{id}}/error"),
            post(invocation_error),
        )
        .route(&format!("{API_PREFIX}/init/error"), post(init_error))
        .with_state(instance)
}

/// Starts a function's instances. They run until `shutdown` turns true; the
/// returned receivers turn true when each instance has finished its init.
pub async fn start(
    spec: FunctionSpec,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(
    Function,
    Vec<tokio::task::JoinHandle<()>>,
    Vec<watch::Receiver<bool>>,
)> {
    let (sender, receiver) = mpsc::channel(64);
    let queue = Arc::new(Mutex::new(receiver));
    let mut tasks = Vec::new();
    let mut readiness = Vec::new();
    for _ in 0..spec.instances {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (ready, ready_rx) = watch::channel(false);
        let instance = Instance {
            function: spec.name,
            queue: queue.clone(),
            in_flight: Arc::default(),
            timeout: spec.timeout,
            overrun: Arc::default(),
            ready,
            spawned: Arc::default(),
        };
        let server = axum::serve(listener, runtime_api(instance.clone()))
            .with_graceful_shutdown(wait_for(shutdown.clone()));
        tokio::spawn(async move {
            let _ = server.await;
        });
        readiness.push(ready_rx);
        tasks.push(tokio::spawn(supervise(
            spec.clone(),
            address.to_string(),
            instance,
            shutdown.clone(),
        )));
    }
    Ok((
        Function {
            name: spec.name,
            sender,
            timeout: spec.timeout,
        },
        tasks,
        readiness,
    ))
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    stopped(&mut shutdown).await;
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs one instance's process, replacing it whenever it exits or overruns, until shutdown.
async fn supervise(
    spec: FunctionSpec,
    runtime_api: String,
    instance: Instance,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut command = std::process::Command::new(&spec.binary);
        command
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", spec.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::process::detach_and_tie_to_parent(&mut command);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        *instance.spawned.lock().expect("not poisoned") = Some(Instant::now());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(function = spec.name, binary = %spec.binary.display(), %error, "could not start");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    _ = stopped(&mut shutdown) => return,
                }
            }
        };
        forward_output(spec.name, child.stdout.take());
        forward_output(spec.name, child.stderr.take());

        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = instance.overrun.notified() => {
                tracing::warn!(function = spec.name, "an invocation overran its timeout; replacing the instance");
                let _ = child.kill().await;
                None
            }
            _ = stopped(&mut shutdown) => {
                let _ = child.kill().await;
                instance.fail_in_flight();
                return;
            }
        };
        let stopping = *shutdown.borrow();
        if let Some(status) = exited
            && !stopping
        {
            tracing::warn!(function = spec.name, status = ?status.ok(), "instance exited; starting a new one");
        }
        instance.fail_in_flight();
        instance.ready.send_replace(false);
        tokio::select! {
            _ = tokio::time::sleep(RESTART_PAUSE) => {}
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Copies a child's output to ours, line by line, each line marked with the function's name.
fn forward_output<R>(function: &'static str, stream: Option<R>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{function}] {line}");
        }
    });
}
