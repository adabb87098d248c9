use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookline_cli::dlq::{self, DlqCommand};
use hookline_cli::local::{self, DevOptions};
use hookline_cli::manage::{self, EndpointsCommand, KeysCommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

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
    #[command(after_help = local::CREDENTIALS_HELP)]
    Dev(DevOptions),
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
        .finish()
        // With AWS credentials, the SDK's TRACE lines would show endpoint secrets.
        .with(shared::logging::without_wire_content())
        .init();
    let result = match Cli::parse().command {
        Command::Dev(options) => local::run(options).await.map_err(|e| e.to_string()),
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
