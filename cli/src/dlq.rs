//! `hookline dlq stats|replay`: the operators' DLQ commands, on the queues named by
//! `HOOKLINE_DELIVERY_QUEUE_URL` and `HOOKLINE_DLQ_URL` (an AWS account, or the
//! emulator through `AWS_ENDPOINT_URL`), through the same redrive as the API.

use clap::Subcommand;
use serde_json::json;
use shared::config;
use shared::ids::EndpointId;
use shared::queue::Queues;
use shared::redrive::{self, Filter, Outcome};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print about how many jobs wait in the DLQ.
    Stats,
    /// Move DLQ jobs back to the delivery queue, unchanged; jobs the filter skips stay.
    Replay {
        /// Only jobs for this endpoint.
        #[arg(long = "endpoint")]
        endpoint_id: Option<String>,
        /// Only jobs of this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// At most this many jobs.
        #[arg(long)]
        limit: Option<usize>,
    },
}

async fn queues_from_env() -> Result<Queues, String> {
    let required = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("{name} is required but not set"))
    };
    let (delivery_url, dlq_url) = (
        required(config::DELIVERY_QUEUE_URL)?,
        required(config::DLQ_URL)?,
    );
    let sdk = shared::aws::from_env().await;
    Ok(Queues::new(
        aws_sdk_sqs::Client::new(&sdk),
        delivery_url,
        dlq_url,
    ))
}

pub async fn run(command: DlqCommand) -> Result<(), String> {
    let queues = queues_from_env().await?;
    match command {
        DlqCommand::Stats => {
            let waiting = queues.dlq_depth().await.map_err(|e| e.to_string())?;
            println!("{}", json!({ "approximate_messages": waiting }));
            Ok(())
        }
        DlqCommand::Replay {
            endpoint_id,
            event_type,
            limit,
        } => {
            let endpoint_id = endpoint_id
                .map(|id| {
                    EndpointId::parse(&id).ok_or_else(|| format!("`{id}` is not an endpoint id"))
                })
                .transpose()?;
            let event_type = event_type
                // Only the queues are at hand here: a name no job carries skips them all.
                .map(|name| name.parse::<shared::event_type::EventType>())
                .transpose()?;
            if limit == Some(0) {
                return Err("--limit must be at least 1".into());
            }
            let filter = Filter {
                endpoint_id,
                event_type,
                limit,
            };
            let result = redrive::redrive(&queues, &filter, None, |so_far: Outcome| {
                eprintln!("replayed {}, skipped {}", so_far.replayed, so_far.skipped);
            })
            .await;
            // What moved is printed either way; an error also fails the command.
            let (outcome, error) = match result {
                Ok(outcome) => (outcome, None),
                Err(stopped) => (stopped.outcome, Some(stopped.error.to_string())),
            };
            println!("{}", serde_json::to_string(&outcome).expect("serialises"));
            error.map_or(Ok(()), Err)
        }
    }
}
