//! The local EventBridge schedule: invokes the scheduled function at a fixed
//! rate, one run at a time, as a schedule with a rate does.

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::runtime::{self, Function};

/// Invokes `function` every `every` until shutdown. A run that fails is logged;
/// the next tick runs again, as the next scheduled invocation would.
pub async fn run(function: Function, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = runtime::stopped(&mut shutdown) => return,
        }
        // What EventBridge Scheduler sends; the function reads none of it.
        let event = json!({
            "source": "aws.scheduler",
            "detail-type": "Scheduled Event",
            "time": shared::timefmt::format(time::OffsetDateTime::now_utc()),
            "detail": {},
        });
        if let Err(error) = function.invoke(event).await {
            tracing::warn!(%error, function = function.name(), "a scheduled run failed");
        }
    }
}
