//! `hookline dev`: the shipped function binaries, run locally against the emulator,
//! behind a local API Gateway, Runtime API and SQS event source mapping.

pub mod event_source;
pub mod gateway;
pub mod runtime;
pub mod schedule;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::config::{self, Config, ConfigError};
use shared::queue::{self, Lane, QueueError, Queues};
use shared::retry::RetrySchedule;
use shared::store::{Store, StoreError};
use tokio::sync::watch;

use crate::emulator::{Emulator, EmulatorError};
use runtime::FunctionSpec;

pub const TABLE: &str = "hookline";
pub const DELIVERY_QUEUE: &str = "hookline-delivery";
pub const DLQ: &str = "hookline-dlq";
/// The slow lane's queue (ADR 7).
pub const SLOW_QUEUE: &str = "hookline-slow";
/// Dispatcher instances the slow lane may keep busy, as the template's
/// `SlowLaneMaxConcurrency` caps its event source mapping: its own instances, so
/// the delivery queue's keep theirs.
pub const SLOW_LANE_CONCURRENCY: usize = 2;
/// API Gateway's HTTP API waits at most this long for `ingest` and `api`.
pub const HTTP_FUNCTION_TIMEOUT: Duration = Duration::from_secs(29);
/// The dispatcher's timeout beyond one attempt's, for the table and queue calls around it.
pub const DISPATCHER_MARGIN: Duration = Duration::from_secs(5);
/// Lambda's advice: a queue's visibility timeout at least six times its consumer's timeout.
pub const VISIBILITY_FACTOR: u32 = 6;
/// The prefix of the variables that name dev's and each function's emulator credentials.
const CREDENTIALS_PREFIX: &str = "HOOKLINE_DEV";
/// Lambda's log format variable: the functions write JSON unless this environment says `Text`.
const LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";
/// The scheduled function's timeout, as in the template.
pub const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the schedule fires in AWS (`rate(1 minute)`); locally also at
/// least twice per email window, so a short window is sent on time.
pub const SCHEDULE_RATE: Duration = Duration::from_secs(60);
/// The sender of dev's email, unless HOOKLINE_EMAIL_FROM names another.
pub const DEV_EMAIL_FROM: &str = "hookline@example.com";
/// How long the functions may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `hookline dev`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Port of the HTTP API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Platform key to accept; a new one is made and printed when absent.
    #[arg(long)]
    pub api_key: Option<String>,
    /// A running emulator to use instead of starting moto's server.
    #[arg(long)]
    pub emulator: Option<String>,
    /// Delays after each failed attempt, e.g. 1s,2s.
    #[arg(long)]
    pub retry_schedule: Option<String>,
    /// Refuse loopback and private endpoint addresses, as in production.
    #[arg(long)]
    pub block_private_targets: bool,
    /// Instances of each function; more than one lets requests and batches overlap.
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// One delivery attempt's timeout (HOOKLINE_REQUEST_TIMEOUT_MS) for the functions,
    /// instead of this environment's.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// The delivery queue's visibility timeout in seconds: how soon a batch whose
    /// dispatcher died comes back. Default: six times the dispatcher's timeout, as in AWS.
    #[arg(long = "visibility-timeout", value_parser = seconds)]
    pub visibility_timeout: Option<Duration>,
    /// How long reactive emails gather events (HOOKLINE_EMAIL_WINDOW), e.g. 2s;
    /// the scheduled function then runs often enough to send each window on time.
    #[arg(long = "email-window")]
    pub email_window: Option<String>,
    /// Seconds the event source may wait to fill a dispatcher batch of ten, as the
    /// template's DispatcherBatchingWindow: fewer invocations and AWS calls per
    /// delivery when events trickle in, each delivery up to that much later.
    #[arg(long = "batching-window", value_parser = seconds, default_value = "0")]
    pub batching_window: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{text}` is not a whole number of seconds"))
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Mail(#[from] shared::mail::MailError),
    #[error("cannot serve the API on {address}: {source} (another `--port`?)")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} is missing: build the functions first (`cargo build --workspace --bins`)")]
    MissingBinary(PathBuf),
    #[error("the {0} function did not start within {READY_TIMEOUT:?}; its log above says why")]
    NotReady(&'static str),
    #[error("{0}_AWS_ACCESS_KEY_ID and {0}_AWS_SECRET_ACCESS_KEY go together: set both or neither")]
    HalfCredentials(String),
}

/// How `hookline dev`'s own calls and each function's are signed (shown by `--help`).
pub const CREDENTIALS_HELP: &str = "\
Credentials at the emulator: by default dev and every function sign with the dummy key \
`test`. Against an emulator that enforces IAM, HOOKLINE_DEV_AWS_ACCESS_KEY_ID and \
HOOKLINE_DEV_AWS_SECRET_ACCESS_KEY are dev's own (it creates the table and queues and \
stores the key), and HOOKLINE_DEV_<FUNCTION>_AWS_ACCESS_KEY_ID and \
HOOKLINE_DEV_<FUNCTION>_AWS_SECRET_ACCESS_KEY, for INGEST, API, DISPATCHER or SCHEDULER, are that \
function's, else dev's. The SQS event source polls with the dispatcher's, as Lambda polls \
with the function's role.";

/// A key pair the emulator knows a caller by. No `Debug`: it holds a secret.
#[derive(Clone)]
struct EmulatorCredentials {
    access_key_id: String,
    secret_access_key: String,
}

impl EmulatorCredentials {
    fn dummy() -> Self {
        Self {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        }
    }

    /// `<prefix>_AWS_ACCESS_KEY_ID` and `<prefix>_AWS_SECRET_ACCESS_KEY`, if set.
    fn from_env(prefix: &str) -> Result<Option<Self>, DevError> {
        let variable = |suffix: &str| std::env::var(format!("{prefix}_AWS_{suffix}")).ok();
        match (variable("ACCESS_KEY_ID"), variable("SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Self {
                access_key_id,
                secret_access_key,
            })),
            (None, None) => Ok(None),
            _ => Err(DevError::HalfCredentials(prefix.to_string())),
        }
    }

    /// `function`'s, from `HOOKLINE_DEV_<FUNCTION>_…`, else `dev`'s.
    fn of_function(function: &str, dev: &Self) -> Result<Self, DevError> {
        let prefix = format!("{CREDENTIALS_PREFIX}_{}", function.to_uppercase());
        Ok(Self::from_env(&prefix)?.unwrap_or_else(|| dev.clone()))
    }

    async fn sdk(&self, emulator_url: &str) -> shared::aws::SdkConfig {
        shared::aws::for_emulator_as(emulator_url, &self.access_key_id, &self.secret_access_key)
            .await
    }
}

/// The function binaries this runtime runs: `hookline dev` builds nothing.
const FUNCTIONS: [&str; 4] = ["ingest", "api", "dispatcher", "scheduler"];

/// Where the function binaries are: next to this executable, or else in the current
/// directory's `target/debug` or `target/release`.
fn binary_dir() -> Result<PathBuf, DevError> {
    let exe = std::env::current_exe()?;
    let beside = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        beside.clone(),
        PathBuf::from("target/debug"),
        PathBuf::from("target/release"),
    ];
    Ok(candidates
        .into_iter()
        .find(|dir| FUNCTIONS.iter().all(|name| dir.join(name).is_file()))
        .unwrap_or(beside))
}

/// Runs until SIGINT or SIGTERM, then stops everything it started.
pub async fn run(options: DevOptions) -> Result<(), DevError> {
    // Listening before anything starts: a signal during start-up stops it cleanly
    // instead of killing this process with its children half-started.
    let mut stop_signal = StopSignal::listen()?;
    let running = tokio::select! {
        started = start(&options) => started?,
        () = stop_signal.received() => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    println!("ready http://{}", running.address);
    stop_signal.received().await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

/// What `hookline dev` started, until it stops.
struct Running {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    emulator: Option<Emulator>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        drop(self.emulator);
    }
}

async fn start(options: &DevOptions) -> Result<Running, DevError> {
    // Taken first: a port in use is said at once, before anything is started.
    let address = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| DevError::Listen { address, source })?;
    // Started on this thread, which lives as long as the command: the emulator is tied to it.
    let emulator = match &options.emulator {
        Some(_) => None,
        None => Some(Emulator::start()?),
    };
    let emulator_url = options
        .emulator
        .clone()
        .or_else(|| emulator.as_ref().map(|e| e.url().to_string()))
        .expect("one of the two is set");
    tracing::info!(emulator = %emulator_url, "emulator up");

    let dev_credentials = EmulatorCredentials::from_env(CREDENTIALS_PREFIX)?
        .unwrap_or_else(EmulatorCredentials::dummy);
    let sdk = dev_credentials.sdk(&emulator_url).await;
    let schedule = match &options.retry_schedule {
        Some(text) => RetrySchedule::parse(text).map_err(|e| ConfigError::Invalid {
            var: config::RETRY_SCHEDULE,
            value: text.clone(),
            reason: e.to_string(),
        })?,
        None => RetrySchedule::default(),
    };
    // The rest of the configuration comes from this environment, as the functions will read it.
    let request_timeout_ms = options.request_timeout_ms.map(|ms| ms.to_string());
    let base = Config::from_lookup(|name| match name {
        config::TABLE => Some(TABLE.into()),
        config::DELIVERY_QUEUE_URL | config::DLQ_URL => Some("unset".into()),
        config::REQUEST_TIMEOUT_MS if request_timeout_ms.is_some() => request_timeout_ms.clone(),
        config::EMAIL_WINDOW if options.email_window.is_some() => options.email_window.clone(),
        config::EMAIL_FROM => {
            Some(std::env::var(config::EMAIL_FROM).unwrap_or_else(|_| DEV_EMAIL_FROM.into()))
        }
        other => std::env::var(other).ok(),
    })?;
    let dispatcher_timeout = base.request_timeout + DISPATCHER_MARGIN;
    let visibility_timeout = options
        .visibility_timeout
        .unwrap_or(dispatcher_timeout * VISIBILITY_FACTOR);
    if visibility_timeout < dispatcher_timeout {
        tracing::warn!(
            ?visibility_timeout,
            ?dispatcher_timeout,
            "a visibility timeout shorter than the dispatcher's lets a slow batch be delivered twice"
        );
    }

    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), TABLE, base.retention());
    store.create_table_if_missing().await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (delivery_url, dlq_url) = queue::create_queues(
        &sqs,
        DELIVERY_QUEUE,
        DLQ,
        schedule.max_receive_count(),
        visibility_timeout,
    )
    .await?;
    if let Some(mailer) = shared::aws::mailer(&sdk, &base) {
        mailer.create_sender_identity().await?;
    }
    let slow_url = queue::create_slow_lane(
        &sqs,
        SLOW_QUEUE,
        &dlq_url,
        schedule.max_receive_count(),
        visibility_timeout,
    )
    .await?;
    let dispatcher_credentials = EmulatorCredentials::of_function("dispatcher", &dev_credentials)?;
    let event_source_sqs =
        aws_sdk_sqs::Client::new(&dispatcher_credentials.sdk(&emulator_url).await);
    let event_source_queues = Queues::new(event_source_sqs, &delivery_url, &dlq_url)
        .with_slow_lane(Some(slow_url.clone()));

    let api_key = match &options.api_key {
        Some(key) => key.clone(),
        None => {
            let key = shared::keys::generate();
            println!("api key {key}");
            key
        }
    };
    store
        .put_api_key(&shared::keys::ApiKey::new(
            &api_key,
            time::OffsetDateTime::now_utc(),
        ))
        .await?;

    let schedule_text = schedule
        .delays()
        .iter()
        .map(|d| format!("{}ms", d.as_millis()))
        .collect::<Vec<_>>()
        .join(",");
    let log_format = std::env::var(LOG_FORMAT).unwrap_or_else(|_| "JSON".into());
    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", emulator_url.as_str()),
        ("AWS_REGION", shared::aws::EMULATOR_REGION),
        ("AWS_DEFAULT_REGION", shared::aws::EMULATOR_REGION),
        (config::TABLE, TABLE),
        (config::DELIVERY_QUEUE_URL, delivery_url.as_str()),
        (config::DLQ_URL, dlq_url.as_str()),
        (config::SLOW_QUEUE_URL, slow_url.as_str()),
        (config::RETRY_SCHEDULE, schedule_text.as_str()),
        // JSON lines, as the template's LogFormat has Lambda ask for.
        (LOG_FORMAT, log_format.as_str()),
        (
            config::ALLOW_PRIVATE_TARGETS,
            if options.block_private_targets {
                "0"
            } else {
                "1"
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(ms) = &request_timeout_ms {
        env.push((config::REQUEST_TIMEOUT_MS.into(), ms.clone()));
    }
    if let Some(from) = &base.email_from {
        env.push((config::EMAIL_FROM.into(), from.clone()));
    }
    env.push((
        config::EMAIL_WINDOW.into(),
        format!("{}ms", base.email_window.as_millis()),
    ));

    let binaries = binary_dir()?;
    let spec = |name: &'static str, timeout| -> Result<FunctionSpec, DevError> {
        let binary = binaries.join(name);
        if !binary.is_file() {
            return Err(DevError::MissingBinary(binary));
        }
        let credentials = EmulatorCredentials::of_function(name, &dev_credentials)?;
        let mut env = env.clone();
        env.push(("AWS_ACCESS_KEY_ID".into(), credentials.access_key_id));
        env.push((
            "AWS_SECRET_ACCESS_KEY".into(),
            credentials.secret_access_key,
        ));
        Ok(FunctionSpec {
            name,
            binary,
            env,
            timeout,
            instances: options.instances.max(1),
        })
    };
    let slow_lane = FunctionSpec {
        instances: SLOW_LANE_CONCURRENCY,
        ..spec("dispatcher", dispatcher_timeout)?
    };
    let specs = [
        spec("ingest", HTTP_FUNCTION_TIMEOUT)?,
        spec("api", HTTP_FUNCTION_TIMEOUT)?,
        spec("dispatcher", dispatcher_timeout)?,
        spec("scheduler", SCHEDULER_TIMEOUT)?,
        slow_lane,
    ];

    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut functions = Vec::new();
    for spec in specs {
        let name = spec.name;
        let (function, instance_tasks, readiness) = runtime::start(spec, shutdown.clone()).await?;
        tasks.extend(instance_tasks);
        functions.push((name, function, readiness));
    }
    for (name, _, readiness) in &mut functions {
        for ready in readiness.iter_mut() {
            let started = tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|up| *up)).await;
            if !matches!(started, Ok(Ok(_))) {
                let _ = stop.send(true);
                return Err(DevError::NotReady(name));
            }
        }
    }
    let [ingest, api, dispatcher, scheduler, slow_dispatcher] =
        [0, 1, 2, 3, 4].map(|i| functions[i].1.clone());

    let address = listener.local_addr()?;
    let app = gateway::router(gateway::Gateway { ingest, api })
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut gateway_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { runtime::stopped(&mut gateway_shutdown).await })
            .await;
    }));

    // One event source mapping per queue, each with as many pollers as its instances.
    let queue_arn = |name: &str| {
        format!(
            "arn:aws:sqs:{}:123456789012:{name}",
            shared::aws::EMULATOR_REGION
        )
    };
    let lanes = [
        (
            Lane::Main,
            DELIVERY_QUEUE,
            dispatcher,
            options.instances.max(1),
        ),
        (
            Lane::Slow,
            SLOW_QUEUE,
            slow_dispatcher,
            SLOW_LANE_CONCURRENCY,
        ),
    ];
    for (lane, queue, function, pollers) in lanes {
        for _ in 0..pollers {
            tasks.push(tokio::spawn(event_source::poll(
                event_source_queues.lane(lane),
                queue_arn(queue),
                function.clone(),
                options.batching_window,
                shutdown.clone(),
            )));
        }
    }

    let every = (base.email_window / 2).clamp(Duration::from_secs(1), SCHEDULE_RATE);
    tasks.push(tokio::spawn(schedule::run(
        scheduler,
        every,
        shutdown.clone(),
    )));

    Ok(Running {
        address,
        stop,
        tasks,
        emulator,
    })
}

/// SIGINT and SIGTERM, caught from the moment it is made.
struct StopSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
