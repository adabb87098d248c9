use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookline_cli::dlq::{self, DlqCommand};
use hookline_cli::local::{self, DevOptions};
use hookline_cli::manage::{self, EndpointsCommand, KeysCommand};
use tracing_subscriber::EnvFilter;

/// hookline: webhook delivery on AWS Lambda, SQS and DynamoDB.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run hookline locally: the emulator, the function binaries and the HTTP API.
    Dev {
        /// Port of the HTTP API on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// Platform key to accept; a new one is made and printed when absent.
        #[arg(long)]
        api_key: Option<String>,
        /// A running emulator to use instead of starting moto's server.
        #[arg(long)]
        emulator: Option<String>,
        /// Delays after each failed attempt, e.g. 1s,2s.
        #[arg(long)]
        retry_schedule: Option<String>,
        /// Refuse loopback and private endpoint addresses, as in production.
        #[arg(long)]
        block_private_targets: bool,
        /// Instances of each function.
        #[arg(long, default_value_t = 2)]
        instances: usize,
        /// One delivery attempt's timeout (HOOKLINE_REQUEST_TIMEOUT_MS) for the functions.
        #[arg(long)]
        request_timeout_ms: Option<u64>,
        /// The delivery queue's visibility timeout in seconds: how soon a batch whose
        /// dispatcher died comes back. Default: six times the dispatcher's timeout, as in AWS.
        #[arg(long)]
        visibility_timeout: Option<u64>,
    },
    /// Platform keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Endpoints of an account.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Check a delivery's signature: exit 0 when it is valid. The body is read from stdin.
    Verify {
        /// The endpoint's secret, whsec_…
        #[arg(long)]
        secret: String,
        /// A header of the delivery as `name: value`; give webhook-id, webhook-timestamp and webhook-signature.
        #[arg(long = "header", required = true)]
        headers: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match Cli::parse().command {
        Command::Dev {
            port,
            api_key,
            emulator,
            retry_schedule,
            block_private_targets,
            instances,
            request_timeout_ms,
            visibility_timeout,
        } => local::run(DevOptions {
            port,
            api_key,
            emulator,
            retry_schedule,
            block_private_targets,
            instances,
            request_timeout_ms,
            visibility_timeout: visibility_timeout.map(std::time::Duration::from_secs),
        })
        .await
        .map_err(|e| e.to_string()),
        Command::Keys { command } => manage::keys(command).await,
        Command::Endpoints { command } => manage::endpoints(command).await,
        Command::Dlq { command } => dlq::run(command).await,
        Command::Verify { secret, headers } => {
            let mut body = Vec::new();
            match std::io::stdin().read_to_end(&mut body) {
                Ok(_) => {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    hookline_cli::verify::verify(&secret, &headers, &body, now)
                        .map(|()| println!("valid"))
                        .map_err(|e| format!("invalid: {e}"))
                }
                Err(e) => Err(format!("could not read the body from stdin: {e}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hookline: {message}");
            ExitCode::FAILURE
        }
    }
}
