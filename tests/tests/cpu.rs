//! `make bench-cpu`: the CPU time the release function binaries spend per event at
//! ingest and per delivery in the dispatcher, one endpoint, 1 KiB events, the
//! emulator excluded; their cold init; their sizes, plain and zipped. `hookline dev`
//! (the release build) runs against an emulator of the bench's own, so the only
//! children of dev that run `ingest` or `dispatcher` are the functions measured.
//! Their utime + stime (`/proc/<pid>/stat`) are read once they are ready (their init),
//! after a warm-up, and again once a burst of posts has been delivered and the
//! delivery queue has drained. Three times: single posts with the functions'
//! connections kept open through a proxy, as against AWS; the same events posted
//! through `POST /v1/events/batch`; and single posts straight to the emulator, which
//! closes each connection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookline_cli::emulator::Emulator;
use hookline_tests::faults::FaultProxy;
use hookline_tests::{
    Dev, Receiver, children_of, poll_until, queue_depth, sample_event, target_dir,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Events of the measured burst.
const EVENTS: usize = 1_000;
/// Events delivered before the first reading: connections, caches and clients warm.
const WARM_UP: usize = 40;
/// Bytes of one event's JSON.
const EVENT_BYTES: usize = 1024;
/// Posts in flight at once.
const POSTERS: usize = 4;
/// Events per `POST /v1/events/batch` in the batch burst.
const BATCH: usize = 10;
const SETTLE: Duration = Duration::from_secs(600);
/// The binaries deployed as functions.
const FUNCTIONS: [&str; 5] = ["ingest", "api", "dispatcher", "replay", "scheduler"];

/// Where the release binaries are.
fn release_dir() -> PathBuf {
    target_dir()
        .join("release")
        .canonicalize()
        .expect("a release build")
}

/// The binary `pid` runs, if it still runs.
fn program_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// User plus system CPU time `pid` has used, all its threads together.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // Fields after the parenthesised command name: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// CPU time `pid`'s live threads have used, to the nanosecond (`schedstat`): init
/// takes less than one of `stat`'s 10 ms ticks.
fn cpu_time_fine(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process runs");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}

/// The CPU time of each of dev's children that runs the release build of `program`, by pid.
fn cpu_of(dev: &Dev, program: &str) -> BTreeMap<u32, Duration> {
    times_of(dev, program, cpu_time)
}

fn times_of(dev: &Dev, program: &str, time: fn(u32) -> Duration) -> BTreeMap<u32, Duration> {
    let binary = release_dir().join(program);
    children_of(dev.pid())
        .into_iter()
        .filter(|&pid| program_of(pid).as_ref() == Some(&binary))
        .map(|pid| (pid, time(pid)))
        .collect()
}

/// CPU time used between two readings of the same processes.
fn used(before: &BTreeMap<u32, Duration>, after: &BTreeMap<u32, Duration>) -> Duration {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "an instance was replaced during the burst: its CPU time is lost"
    );
    after.values().sum::<Duration>() - before.values().sum::<Duration>()
}

/// Posts events `first..first + count`, `POSTERS` posts at a time, each until
/// accepted: one event per post, or `batch` per `POST /v1/events/batch`.
async fn post(dev: &Dev, http: &reqwest::Client, first: usize, count: usize, batch: Option<usize>) {
    let per_post = batch.unwrap_or(1);
    let request = |n: usize| match batch {
        None => dev
            .request(http, Method::POST, "/v1/events")
            .json(&sample_event(n, EVENT_BYTES)),
        Some(size) => {
            let events: Vec<_> = (n..(n + size).min(first + count))
                .map(|n| sample_event(n, EVENT_BYTES))
                .collect();
            dev.request(http, Method::POST, "/v1/events/batch")
                .json(&json!({ "events": events }))
        }
    };
    let mut posters = tokio::task::JoinSet::new();
    for poster in 0..POSTERS {
        let requests: Vec<_> = (first + poster * per_post..first + count)
            .step_by(POSTERS * per_post)
            .map(request)
            .collect();
        posters.spawn(async move {
            for request in requests {
                // A post CONTRACT says to retry (an invocation that failed) goes again.
                let mut tries = 0;
                loop {
                    let attempt = request.try_clone().expect("a buffered body");
                    let answer = attempt.send().await.expect("the gateway answers");
                    let status = answer.status();
                    if status == StatusCode::ACCEPTED {
                        // A batch's events are each accepted or refused on their own.
                        let body: serde_json::Value = answer.json().await.expect("a JSON answer");
                        let refused = body["data"]
                            .as_array()
                            .is_some_and(|items| items.iter().any(|item| item.get("id").is_none()));
                        assert!(!refused, "{body}");
                        break;
                    }
                    tries += 1;
                    assert!(status.is_server_error() && tries < 10, "{status}");
                }
            }
        });
    }
    posters.join_all().await;
}

/// Cold init of each instance dev started, from its log: `(function, ms)`.
fn init_times(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter(|line| line.contains("instance initialised"))
        .filter_map(|line| {
            let field = |name: &str| {
                let value = line.split(&format!("{name}=")).nth(1)?;
                let end = value.find([' ', '\n']).unwrap_or(value.len());
                Some(value[..end].trim_matches('"').to_string())
            };
            let micros: f64 = field("init_us")?.parse().ok()?;
            Some((field("function")?, micros / 1000.0))
        })
        .collect()
}

/// Bytes of `binary`, and of a Lambda zip holding it (deflated, as `zip` does by default).
fn sizes(binary: &Path) -> (u64, u64) {
    let zip = std::env::temp_dir().join(format!("hookline-bench-{}.zip", std::process::id()));
    let _ = std::fs::remove_file(&zip);
    let status = std::process::Command::new("zip")
        .arg("-qj")
        .arg(&zip)
        .arg(binary)
        .status()
        .expect("`zip` runs");
    assert!(status.success());
    let zipped = std::fs::metadata(&zip).unwrap().len();
    std::fs::remove_file(&zip).unwrap();
    (std::fs::metadata(binary).unwrap().len(), zipped)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What one burst measured.
struct Burst {
    per_event: f64,
    per_delivery: f64,
    /// Dev's log, for the instances' init times.
    log: String,
    /// Each function's instances' CPU time by their first poll.
    init_cpu: [(&'static str, BTreeMap<u32, Duration>); 3],
}

/// Runs dev on a fresh emulator, reached straight (moto closes every connection, so
/// each AWS call opens one) or, with `connections_kept`, through a proxy that keeps
/// the functions' connections open as AWS does; warms it up, then measures a burst
/// of single posts, or of `batch` events per post.
async fn burst(connections_kept: bool, batch: Option<usize>) -> Burst {
    let emulator = Emulator::start().expect("the emulator starts");
    let proxy = connections_kept.then(|| FaultProxy::start(emulator.url(), 0));
    let reached = proxy.as_ref().map_or(emulator.url(), |proxy| proxy.url());
    let dev = Dev::start_release(&["--emulator", reached], &[]);
    // Dev is ready once every instance has polled for its first invocation: what
    // they used so far is their init, a steadier figure than its wall time.
    let init_cpu =
        ["ingest", "api", "dispatcher"].map(|name| (name, times_of(&dev, name, cpu_time_fine)));
    let http = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let created = dev
        .request(&http, Method::POST, "/v1/accounts/jane/endpoints")
        .json(&json!({"url": receiver.url("/ep")}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(created.status(), StatusCode::CREATED);
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(emulator.url()).await);
    let delivery_queue = hookline_tests::queue_url(&sqs, hookline_cli::local::DELIVERY_QUEUE).await;
    let drained = async |wanted: usize| {
        poll_until(SETTLE, &format!("{wanted} deliveries"), || async {
            (receiver.successes().len() >= wanted && queue_depth(&sqs, &delivery_queue).await == 0)
                .then_some(())
        })
        .await
    };

    post(&dev, &http, 0, WARM_UP, batch).await;
    drained(WARM_UP).await;
    let ingest_before = cpu_of(&dev, "ingest");
    let dispatcher_before = cpu_of(&dev, "dispatcher");
    assert!(!ingest_before.is_empty() && !dispatcher_before.is_empty());

    let started = Instant::now();
    post(&dev, &http, WARM_UP, EVENTS, batch).await;
    let posted = started.elapsed();
    drained(WARM_UP + EVENTS).await;
    let delivered = started.elapsed();
    let ingest = used(&ingest_before, &cpu_of(&dev, "ingest"));
    let dispatcher = used(&dispatcher_before, &cpu_of(&dev, "dispatcher"));
    let deliveries = receiver.successes().len() - WARM_UP;

    let ms = |cpu: Duration, units: usize| cpu.as_secs_f64() * 1000.0 / units as f64;
    let (per_event, per_delivery) = (ms(ingest, EVENTS), ms(dispatcher, deliveries));
    let posts = match batch {
        None => "Single posts".to_string(),
        Some(size) => format!("Posts of {size} events through /v1/events/batch"),
    };
    let connections = if connections_kept {
        "connections kept open (through a keep-alive proxy, as against AWS)"
    } else {
        "a new connection per AWS call (the emulator straight)"
    };
    println!(
        "\n{posts}, {connections}: posted in {posted:.1?}, delivered in {delivered:.1?}; \
         {deliveries} successful deliveries"
    );
    println!(
        "  ingest      {per_event:.3} ms per event ({} instances, {ingest:.2?} in all)",
        ingest_before.len()
    );
    println!(
        "  dispatcher  {per_delivery:.3} ms per delivery ({} instances, {dispatcher:.2?} in all)",
        dispatcher_before.len()
    );
    println!(
        "  together    {:.3} ms per single-endpoint delivery",
        per_event + per_delivery
    );
    Burst {
        per_event,
        per_delivery,
        log: dev.log(),
        init_cpu,
    }
}

/// `make bench-cpu`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark of some minutes on the release build: run by `make bench-cpu`"]
async fn cpu_per_event_and_delivery_init_and_sizes() {
    println!(
        "\nCPU time of the release functions (utime + stime), one endpoint, {EVENT_BYTES}-byte \
         events, {EVENTS} of them {POSTERS} posts at a time after {WARM_UP} to warm up; \
         emulator excluded"
    );
    let kept = burst(true, None).await;
    let batched = burst(true, Some(BATCH)).await;
    let fresh = burst(false, None).await;
    let together = |burst: &Burst| burst.per_event + burst.per_delivery;
    println!(
        "\nPer single-endpoint delivery, ingest + dispatcher: {:.3} ms posted one by one with \
         connections kept, {:.3} ms posted {BATCH} per batch, {:.3} ms one by one with a \
         connection per call",
        together(&kept),
        together(&batched),
        together(&fresh)
    );
    let bursts = [&kept, &batched, &fresh];

    println!(
        "\nCold init (process start to its first Runtime API poll), each instance dev started"
    );
    let mut inits: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (function, ms) in bursts.iter().flat_map(|burst| init_times(&burst.log)) {
        inits.entry(function).or_default().push(ms);
    }
    for (function, times) in &inits {
        let times: Vec<String> = times.iter().map(|ms| format!("{ms:.1} ms")).collect();
        println!("  {function:<11} {}", times.join(", "));
    }
    assert!(inits.contains_key("ingest") && inits.contains_key("dispatcher"));
    println!("Their CPU time by then (schedstat)");
    for (position, (function, _)) in kept.init_cpu.iter().enumerate() {
        let times: Vec<String> = bursts
            .iter()
            .flat_map(|burst| burst.init_cpu[position].1.values())
            .map(|t| format!("{t:.1?}"))
            .collect();
        println!("  {function:<11} {}", times.join(", "));
    }

    println!(
        "\nRelease binaries ({}; zipped as a Lambda package)",
        std::env::consts::ARCH
    );
    for name in FUNCTIONS {
        let (plain, zipped) = sizes(&release_dir().join(name));
        println!("  {name:<11} {:>10}  zip {:>10}", mib(plain), mib(zipped));
    }
}
