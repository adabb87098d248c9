//! The functions' log set-up. It reads Lambda's log controls as `lambda_runtime`'s
//! default subscriber does (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`; `AWS_LAMBDA_LOG_FORMAT`),
//! with one difference: no level lets the AWS SDK or the Lambda runtime write what they
//! carry, because at TRACE they log whole DynamoDB items (endpoint secrets) and whole
//! API Gateway events (the platform's bearer key).

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn, LevelFilter};
use tracing_subscriber::prelude::*;

/// Target prefixes of the crates whose TRACE output is wire content.
const WIRE_TARGETS: [&str; 2] = ["aws_smithy", "lambda_runtime"];

/// Installs the global subscriber, writing to stdout as Lambda expects.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        // Colour codes only garble CloudWatch and captured logs.
        .with_ansi(std::io::stdout().is_terminal());
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(without_wire_content());
    if json {
        // Fields at the top level, as CloudWatch Logs Insights reads them best.
        subscriber
            .with(format.json().flatten_event(true).with_current_span(false))
            .init();
    } else {
        subscriber.with(format).init();
    }
}

/// A filter for any subscriber that leaves out what [`is_loggable`] refuses.
pub fn without_wire_content() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    FilterFn::new(|metadata| is_loggable(metadata.level(), metadata.target()))
}

/// Whether an event may be written at all, whatever level is asked for.
pub fn is_loggable(level: &Level, target: &str) -> bool {
    *level != Level::TRACE || !WIRE_TARGETS.iter().any(|wire| target.starts_with(wire))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_content_is_never_traced() {
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_smithy_runtime_api::client::interceptors",
            "lambda_runtime::layers::api_response",
            "lambda_runtime_api_client",
        ] {
            assert!(!is_loggable(&Level::TRACE, target), "{target}");
            assert!(is_loggable(&Level::DEBUG, target), "{target}");
        }
        assert!(is_loggable(&Level::TRACE, "dispatcher::send"));
        assert!(is_loggable(&Level::TRACE, "hyper_util::client"));
    }
}
