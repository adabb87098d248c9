//! CPU time one AWS SDK call costs the caller, against a local server that answers
//! after a set delay: the functions' own client set-up (`shared::aws`), a DynamoDB
//! `PutItem` of a 1 KiB item on a kept connection, on a current-thread runtime as in
//! the functions; beside it, as a control, a request of about the same size written
//! and its answer read on a bare `TcpStream`. `make bench-cpu` runs it in the release
//! profile and it prints a table.
//!
//! Why a delay: moto takes milliseconds per call, DynamoDB and SQS a few, and on
//! this kind of virtual machine code that has slept runs slower when it wakes (cold
//! caches, a clocked-down core), so the same call costs more CPU against a slower
//! server, in proportion to the work the call does. The server runs on threads of
//! its own, left out of the count.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls measured per delay, after `WARM_UP` calls that are not.
const CALLS: u32 = 1_000;
const WARM_UP: u32 = 100;
/// How long the server waits before each answer.
const DELAYS_MS: [u64; 4] = [0, 1, 3, 10];
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}";

/// This thread's id, as `/proc/self/task` names it.
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("procfs");
    link.file_name()
        .expect("a task id")
        .to_string_lossy()
        .into_owned()
}

/// CPU time the process's threads, those in `excluded` aside, have used (`schedstat`,
/// to the nanosecond).
fn cpu_time_except(excluded: &Mutex<Vec<String>>) -> Duration {
    let excluded = excluded.lock().unwrap();
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .flatten()
        .filter(|task| !excluded.contains(&task.file_name().to_string_lossy().into_owned()))
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}

/// Answers every request on `stream` with `{}` after `delay`, keeping the connection.
fn answer(stream: TcpStream, delay: Duration) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        reader.read_exact(&mut vec![0; length])?;
        std::thread::sleep(delay);
        writer.write_all(ANSWER)?;
    }
}

/// A server on 127.0.0.1 answering after `delay`; its threads' ids go to `threads`.
fn serve(delay: Duration, threads: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        threads.lock().unwrap().push(thread_id());
        for stream in listener.incoming().flatten() {
            let threads = threads.clone();
            std::thread::spawn(move || {
                threads.lock().unwrap().push(thread_id());
                let _ = answer(stream, delay);
            });
        }
    });
    url
}

/// CPU and wall time per call of `calls` runs of `call`, the server's threads left out.
async fn measure<F: Future<Output = ()>>(
    server_threads: &Mutex<Vec<String>>,
    mut call: impl FnMut() -> F,
) -> (f64, f64) {
    for _ in 0..WARM_UP {
        call().await;
    }
    let (cpu_before, started) = (cpu_time_except(server_threads), Instant::now());
    for _ in 0..CALLS {
        call().await;
    }
    let cpu = cpu_time_except(server_threads) - cpu_before;
    let per_call = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(CALLS);
    (per_call(cpu), per_call(started.elapsed()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S("MSG#01K".into())),
        ("sk".to_owned(), AttributeValue::S("MSG".into())),
        ("payload".to_owned(), AttributeValue::S("x".repeat(1024))),
    ]);
    println!("CPU per call on a kept connection, by how long the server takes to answer:");
    println!("the SDK's DynamoDB PutItem (1 KiB item), and as a control the same size of");
    println!("request written and its answer read on a bare tokio TcpStream");
    println!(
        "{:>12}  {:>13}  {:>14}  {:>13}  {:>14}",
        "server delay", "SDK CPU/call", "SDK wall/call", "bare CPU/call", "bare wall/call"
    );
    // One list for every delay's server: a thread of an earlier one that is still
    // running, or ends mid-measurement, must not be counted as the caller's.
    let server_threads = Arc::new(Mutex::new(Vec::new()));
    for delay_ms in DELAYS_MS {
        let url = serve(Duration::from_millis(delay_ms), server_threads.clone());
        let client = aws_sdk_dynamodb::Client::new(&shared::aws::for_emulator(&url).await);
        let sdk = measure(&server_threads, || async {
            client
                .put_item()
                .table_name("hookline")
                .set_item(Some(item.clone()))
                .send()
                .await
                .expect("the server answers");
        })
        .await;

        let address = url.trim_start_matches("http://");
        let stream = tokio::sync::Mutex::new(
            tokio::net::TcpStream::connect(address)
                .await
                .expect("the server listens"),
        );
        let request = format!(
            "POST / HTTP/1.1\r\ncontent-length: 1200\r\n\r\n{}",
            "x".repeat(1200)
        );
        let bare = measure(&server_threads, || async {
            let mut stream = stream.lock().await;
            stream.write_all(request.as_bytes()).await.expect("sent");
            let mut answer = [0; ANSWER.len()];
            stream.read_exact(&mut answer).await.expect("answered");
        })
        .await;
        println!(
            "{:>9} ms  {:>10.3} ms  {:>11.3} ms  {:>10.3} ms  {:>11.3} ms",
            delay_ms, sdk.0, sdk.1, bare.0, bare.1
        );
    }
}
