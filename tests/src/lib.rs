//! What the emulator-backed and end-to-end tests share: one emulator per test
//! process, fresh resources per test, real HTTP receivers, `hookline dev` as a
//! child process, and waiting with a deadline instead of sleeping.

pub mod capacity;
pub mod faults;
pub mod intercept;
pub mod openapi;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hookline_cli::emulator::Emulator;
use shared::config::Config;
use shared::queue::{self, Queues};
use shared::store::Store;

pub mod iam;
pub mod template;

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The URL of an emulator shared by this test process; started on first use.
pub fn emulator_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        // The emulator is tied to the thread that started it, so that thread lives
        // as long as the process, waiting on the emulator.
        std::thread::spawn(move || match Emulator::start() {
            Ok(mut emulator) => {
                sender
                    .send(Ok(emulator.url().to_string()))
                    .expect("the test waits");
                emulator.wait();
            }
            Err(error) => sender.send(Err(error.to_string())).expect("the test waits"),
        });
        receiver
            .recv()
            .expect("the emulator thread answers")
            .unwrap_or_else(|error| panic!("{error}"))
    })
}

/// Every email the shared emulator's SES recorded.
pub async fn sent_emails(client: &reqwest::Client) -> Vec<serde_json::Value> {
    let data: serde_json::Value = client
        .get(format!("{}/moto-api/data.json", emulator_url()))
        .send()
        .await
        .expect("the emulator answers")
        .json()
        .await
        .expect("JSON");
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The recorded emails with `address` among their recipients.
pub async fn emails_to(client: &reqwest::Client, address: &str) -> Vec<serde_json::Value> {
    sent_emails(client)
        .await
        .into_iter()
        .filter(|email| email.to_string().contains(&format!("\"{address}\"")))
        .collect()
}

/// A table and a pair of queues of their own on the shared emulator, for one test.
pub struct TestEnv {
    pub config: Config,
    pub store: Store,
    pub queues: Queues,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl TestEnv {
    /// Fresh resources; `schedule` is the retry schedule (`""` for none).
    pub async fn new(schedule: &str) -> Self {
        let sdk = shared::aws::for_emulator(emulator_url()).await;
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let table = format!("hookline-{suffix}");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let retry = shared::retry::RetrySchedule::parse(schedule).expect("a valid schedule");
        let (delivery_url, dlq_url) = queue::create_queues(
            &sqs,
            &format!("delivery-{suffix}"),
            &format!("dlq-{suffix}"),
            retry.max_receive_count(),
            Duration::from_secs(30),
        )
        .await
        .expect("queues are created");
        let config = Config::from_lookup(|name| match name {
            shared::config::TABLE => Some(table.clone()),
            shared::config::DELIVERY_QUEUE_URL => Some(delivery_url.clone()),
            shared::config::DLQ_URL => Some(dlq_url.clone()),
            shared::config::RETRY_SCHEDULE => Some(schedule.to_string()),
            shared::config::REQUEST_TIMEOUT_MS => Some("3000".into()),
            shared::config::ALLOW_PRIVATE_TARGETS => Some("1".into()),
            _ => None,
        })
        .expect("a valid configuration");
        let (store, queues) = shared::aws::adapters(&sdk, &config);
        store.create_table().await.expect("the table is created");
        Self {
            config,
            store,
            queues,
            sqs,
            dynamodb,
        }
    }

    /// The store and queues of these resources, on clients whose every call passes
    /// `interceptor` first.
    pub async fn intercepted(&self, interceptor: intercept::InjectAt) -> (Store, Queues) {
        self.adapters_via(emulator_url(), Some(interceptor)).await
    }

    /// The store and queues of these resources, reached at `endpoint_url` (the
    /// emulator, or a [`faults::FaultProxy`] before it), optionally through `interceptor`.
    pub async fn adapters_via(
        &self,
        endpoint_url: &str,
        interceptor: Option<intercept::InjectAt>,
    ) -> (Store, Queues) {
        let sdk = shared::aws::for_emulator(endpoint_url).await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk);
        if let Some(interceptor) = interceptor {
            dynamodb = dynamodb.interceptor(interceptor.clone());
            sqs = sqs.interceptor(interceptor);
        }
        let (dynamodb, sqs) = (dynamodb.build(), sqs.build());
        (
            Store::new(
                aws_sdk_dynamodb::Client::from_conf(dynamodb),
                self.config.table.clone(),
                self.config.retention(),
            ),
            Queues::new(
                aws_sdk_sqs::Client::from_conf(sqs),
                self.config.delivery_queue_url.clone(),
                self.config.dlq_url.clone(),
            ),
        )
    }

    /// Stores a new platform key and returns it.
    pub async fn api_key(&self) -> String {
        let key = shared::keys::generate();
        self.store
            .put_api_key(&shared::keys::ApiKey::new(
                &key,
                time::OffsetDateTime::now_utc(),
            ))
            .await
            .expect("the key is stored");
        key
    }

    /// Stores a portal token of `account` that expires `lifetime` from now (a
    /// negative one: already expired), in the account's current generation; returns it.
    pub async fn portal_token(&self, account: &str, lifetime: time::Duration) -> String {
        portal_token(&self.store, account, lifetime).await
    }

    /// The endpoint `id` of `account` as the store holds it now.
    pub async fn stored_endpoint(
        &self,
        account: &shared::account::Account,
        id: &shared::ids::EndpointId,
    ) -> shared::model::Endpoint {
        let found = self.store.get_endpoint(account, id).await;
        found
            .expect("the store answers")
            .expect("the endpoint is stored")
            .0
    }

    /// Stores an endpoint of `account` at `url` — every event type and dataset, the
    /// standard format — after `edit` has had its say; returns it and its secret.
    pub async fn add_endpoint(
        &self,
        account: &str,
        url: &str,
        edit: impl FnOnce(&mut shared::model::Endpoint),
    ) -> (shared::model::Endpoint, shared::signing::Secret) {
        let mut endpoint = endpoint(account, url, time::OffsetDateTime::now_utc());
        edit(&mut endpoint);
        let secret = shared::signing::Secret::generate();
        let created = self
            .store
            .create_endpoint(
                &endpoint,
                &shared::model::EndpointSecrets::new(secret.clone()),
            )
            .await
            .expect("the endpoint is stored");
        assert_eq!(
            created,
            shared::store::Creation::Created,
            "the account has room"
        );
        (endpoint, secret)
    }

    /// How many items of each kind the table holds, by the prefix of their partition key.
    pub async fn count_items(&self, pk_prefix: &str) -> usize {
        let output = self
            .dynamodb
            .scan()
            .table_name(&self.config.table)
            .send()
            .await
            .expect("the table scans");
        output
            .items()
            .iter()
            .filter(|item| {
                item.get("pk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.starts_with(pk_prefix))
            })
            .count()
    }

    /// Everything the delivery queue shows now, received (and so hidden for its
    /// visibility timeout), not deleted.
    pub async fn receive_all_delivery(&self) -> Vec<queue::Received> {
        let mut all = Vec::new();
        loop {
            let batch = self
                .queues
                .receive_delivery(10, Duration::ZERO)
                .await
                .expect("the delivery queue answers");
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// The delivery jobs the delivery queue shows now, received as
    /// [`TestEnv::receive_all_delivery`] does.
    pub async fn queued_jobs(&self) -> Vec<shared::model::DeliveryJob> {
        self.receive_all_delivery()
            .await
            .iter()
            .map(|received| serde_json::from_str(&received.body).expect("a delivery job"))
            .collect()
    }

    /// Visible plus in-flight messages of a queue.
    pub async fn queue_depth(&self, url: &str) -> usize {
        queue_depth(&self.sqs, url).await
    }
}

/// Stores in `store` a portal token of `account` that expires `lifetime` from now
/// (a negative one: already expired), in the account's current generation; returns it.
pub async fn portal_token(store: &Store, account: &str, lifetime: time::Duration) -> String {
    let account = account.parse().expect("an account name");
    let token = shared::portal::generate_token(&account);
    let generation = store
        .portal_generation(&account)
        .await
        .expect("the generation reads");
    let stored = shared::portal::PortalToken::new(
        &token,
        &account,
        generation,
        time::OffsetDateTime::now_utc(),
        lifetime,
    );
    store
        .put_portal_token(&stored)
        .await
        .expect("the token is stored");
    token
}

/// The URL of the queue named `name` (one `hookline dev` made, say).
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("the queue exists")
        .queue_url
        .expect("a queue URL")
}

/// Visible plus in-flight messages of the queue at `url`.
/// A new endpoint of `account` at `url`, not stored: every event type and dataset,
/// the standard format, created and last changed at `now`.
pub fn endpoint(account: &str, url: &str, now: time::OffsetDateTime) -> shared::model::Endpoint {
    shared::model::Endpoint {
        id: shared::ids::EndpointId::new(),
        account: account.parse().expect("an account name"),
        url: url.into(),
        description: String::new(),
        version: 1,
        event_types: vec![],
        datasets: None,
        format: shared::model::Format::Standard,
        disabled: false,
        disabled_reason: None,
        failing_since: None,
        email: None,
        created_at: now,
        updated_at: now,
    }
}

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("the queue answers");
    let attributes = output.attributes().cloned().unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|name| attributes.get(name)?.parse::<usize>().ok())
    .sum()
}

/// Waits until the queue at `url` holds nothing, visible or in flight, for a second
/// (a job between its receive and its retry is in flight throughout, but moto counts
/// its messages while other requests take some out of the same list, so one reading
/// can miss one); false if it still holds some after `timeout`.
pub async fn wait_until_empty(sqs: &aws_sdk_sqs::Client, url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut empty_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if queue_depth(sqs, url).await > 0 {
            empty_since = None;
        } else if empty_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(1) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Event `n` as a labelling platform sends one, exactly `bytes` of JSON: a sample
/// with labels (random ids, categories, boxes) and a note filling the rest. The
/// benchmarks post it rather than padding, since stored payloads are deflated and
/// padding would deflate to nothing.
pub fn sample_event(n: usize, bytes: usize) -> serde_json::Value {
    // splitmix64: ids that vary like real ones, the same on every run.
    let mut state = n as u64;
    let mut random = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut event = serde_json::json!({
        "event_type": "sample.created",
        "dataset": "jane/flowers",
        "object": {"name": format!("rose-{n}.png"), "seq": n, "labels": [], "note": ""},
    });
    loop {
        let r = random();
        let label = serde_json::json!({
            "id": format!("lbl_{:016x}", random()),
            "category": (["rose", "tulip", "daisy", "leaf"][(r % 4) as usize]),
            "box": [r % 640, (r >> 10) % 480, (r >> 20) % 200, (r >> 30) % 200],
            "score": (r >> 40) % 1000,
        });
        let grown = event.to_string().len() + label.to_string().len() + 1;
        if grown > bytes {
            break;
        }
        event["object"]["labels"]
            .as_array_mut()
            .unwrap()
            .push(label);
    }
    let words = "partly hidden by leaves, in the left corner, out of focus ";
    let padding = bytes - event.to_string().len();
    event["object"]["note"] = words
        .chars()
        .cycle()
        .take(padding)
        .collect::<String>()
        .into();
    assert_eq!(event.to_string().len(), bytes);
    event
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Delivery {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("the delivery has no {name} header"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// The workspace's `target` directory: its builds, and the tests' artifacts.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where the workspace's debug binaries are.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (`make test` does)",
        path.display()
    );
    path
}

/// `hookline dev` as a child process, stopped with SIGINT when dropped.
pub struct Dev {
    child: Child,
    pub url: String,
    pub api_key: String,
    /// Everything dev and its functions wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Dev {
    /// `hookline dev --port 0` with `api_key`, `extra` arguments and `env` added to
    /// its environment.
    fn command(hookline: &Path, api_key: &str, extra: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(hookline);
        command
            .args(["dev", "--port", "0", "--api-key", api_key])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `hookline dev --port 0` with `api_key`, `extra` arguments and `env` added
    /// to its environment, without waiting for it to be ready.
    pub fn spawn(api_key: &str, extra: &[&str], env: &[(&str, &str)]) -> Child {
        Self::command(&binary("hookline"), api_key, extra, env)
            .spawn()
            .expect("hookline dev starts")
    }

    /// Starts `hookline dev --port 0` with a fresh key and `extra` arguments, and waits for `ready`.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// [`Dev::start`] with variables added to the environment dev and its functions get.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let api_key = shared::keys::generate();
        let child = Self::spawn(&api_key, extra, env);
        Self::when_ready(child, api_key)
    }

    /// [`Dev::start_with_env`] from the release build, whose `hookline` runs the
    /// release function binaries beside it.
    pub fn start_release(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let hookline = target_dir().join("release").join("hookline");
        assert!(
            hookline.is_file(),
            "{} is missing: run `cargo build --release --workspace --bins` first",
            hookline.display()
        );
        let api_key = shared::keys::generate();
        let child = Self::command(&hookline, &api_key, extra, env)
            .spawn()
            .expect("hookline dev starts");
        Self::when_ready(child, api_key)
    }

    /// [`Dev::start`] in a network namespace of its own whose only interface is
    /// loopback, emulator included: whatever URLs its endpoints are given, no
    /// delivery can leave the machine. Reach it with [`Dev::command_inside`].
    pub fn start_isolated(extra: &[&str]) -> Self {
        let api_key = shared::keys::generate();
        let dev = Self::command(&binary("hookline"), &api_key, extra, &[]);
        // `unshare` and `sh` exec in turn, so the child's pid is dev's own.
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                r#"ip link set lo up && exec "$0" "$@""#,
            ])
            .arg(dev.get_program())
            .args(dev.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare starts (it needs CAP_SYS_ADMIN)");
        Self::when_ready(child, api_key)
    }

    /// `program` run in dev's network namespace, where its `url` answers.
    pub fn command_inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{}/ns/net", self.child.id()))
            .arg("--")
            .arg(program);
        command
    }

    /// Waits for a spawned dev's `ready` line.
    fn when_ready(mut child: Child, api_key: String) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped");
        let kept = log.clone();
        // Passed on as it comes, so a failing test still shows the functions' logs.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut log = kept.lock().expect("not poisoned");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("ready ") {
                        break url.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait();
                    panic!("hookline dev stopped before it was ready: {status:?}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url,
            api_key,
            log,
        }
    }

    /// What dev and its functions have logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("not poisoned").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends SIGINT, as Ctrl-C does, and waits for the exit (at most `timeout`).
    pub fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        interrupt(&mut self.child, timeout)
    }

    /// A request with the platform key.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
    }

    /// Sends `body` (none when null) with the platform key; the status and the JSON
    /// answer (null when there is none).
    pub async fn send(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self.request(client, method, path);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.expect("dev answers");
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none()
            && self.interrupt(Duration::from_secs(10)).is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `child` SIGINT, as Ctrl-C does, and waits for its exit (at most `timeout`).
pub fn interrupt(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The pids whose parent is `pid`, read from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // The parent pid is the second field after the parenthesised command name.
                    let after_name = stat.rsplit_once(')')?.1;
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether a process with `pid` still exists (and is not a zombie).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// How a [`Receiver`] answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes of body sent back (as `x`s), unless `text` is set.
    pub body_bytes: usize,
    /// A body to send back instead.
    pub text: Option<String>,
    /// How long the answer is held back.
    pub after: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body_bytes: 0,
            text: None,
            after: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// A body of `bytes` bytes of `x`.
    pub fn body_of(mut self, bytes: usize) -> Self {
        self.body_bytes = bytes;
        self
    }

    /// Answers with `text` as the body.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Answers only after `delay`: a slow receiver.
    pub fn after(mut self, delay: Duration) -> Self {
        self.after = delay;
        self
    }
}

type Script = Arc<dyn Fn(usize, &HeaderMap) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ScriptedState {
    deliveries: Arc<Mutex<Vec<(Delivery, u16)>>>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    script: Script,
    /// While false, requests are recorded but not answered.
    open: tokio::sync::watch::Sender<bool>,
}

/// A real HTTP server on 127.0.0.1 that records what it is sent and whose answers a
/// script picks, from the request's number (0-based, in arrival order) and headers:
/// healthy, failing, slow, hanging, redirecting, rate-limiting or long-winded receivers.
pub struct Receiver {
    address: std::net::SocketAddr,
    state: ScriptedState,
}

impl Receiver {
    /// Answers every request with 204.
    pub async fn start() -> Self {
        Self::statuses(&[]).await
    }

    /// Records requests but answers none until [`Receiver::open`]: a receiver that hangs.
    pub async fn closed() -> Self {
        let receiver = Self::start().await;
        receiver.state.open.send_replace(false);
        receiver
    }

    /// Lets a [`Receiver::closed`] receiver answer what it holds and what comes.
    pub fn open(&self) {
        self.state.open.send_replace(true);
    }

    pub async fn scripted(
        script: impl Fn(usize, &HeaderMap) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let state = ScriptedState {
            deliveries: Arc::default(),
            answered: Arc::default(),
            script: Arc::new(script),
            open: tokio::sync::watch::Sender::new(true),
        };
        let app = Router::new()
            .fallback(scripted_reply)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, state }
    }

    /// Answers the first requests with `statuses`, in order, and later ones with 204.
    pub async fn statuses(statuses: &[u16]) -> Self {
        let statuses = statuses.to_vec();
        Self::scripted(move |n, _| Reply::status(statuses.get(n).copied().unwrap_or(204))).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every request so far with the status it was (or is being) answered with.
    pub fn requests(&self) -> Vec<(Delivery, u16)> {
        self.state.deliveries.lock().unwrap().clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.requests().into_iter().map(|(d, _)| d).collect()
    }

    /// The requests answered with a 2xx.
    pub fn successes(&self) -> Vec<Delivery> {
        self.requests()
            .into_iter()
            .filter(|(_, status)| (200..300).contains(status))
            .map(|(d, _)| d)
            .collect()
    }

    /// How many answers have been sent back completely.
    pub fn answered(&self) -> usize {
        self.state
            .answered
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `count` requests arrived, and returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        poll_until(timeout, &format!("{count} requests"), || async {
            let deliveries = self.deliveries();
            (deliveries.len() >= count).then_some(deliveries)
        })
        .await
    }
}

async fn scripted_reply(
    State(state): State<ScriptedState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let reply = {
        let mut deliveries = state.deliveries.lock().unwrap();
        let reply = (state.script)(deliveries.len(), &headers);
        deliveries.push((
            Delivery {
                path: uri.path().to_string(),
                headers,
                body,
                at: Instant::now(),
            },
            reply.status,
        ));
        reply
    };
    let mut open = state.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    if !reply.after.is_zero() {
        tokio::time::sleep(reply.after).await;
    }
    let mut response = axum::response::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    let body = match reply.text {
        Some(text) => text.into_bytes(),
        None => vec![b'x'; reply.body_bytes],
    };
    let response = response
        .body(axum::body::Body::from(body))
        .expect("a valid reply");
    state
        .answered
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    response
}
