//! The auto-disable sweep: endpoints failing without a success for
//! `HOOKLINE_DISABLE_AFTER` are disabled and announced ([`shared::raise::sweep`]),
//! also those that no job reaches any more to be disabled by the dispatcher.

use time::OffsetDateTime;

use crate::Deps;

/// One sweep; how many endpoints it disabled. A sweep that failed is logged, and
/// the next run sweeps again.
pub async fn run(deps: &Deps) -> usize {
    let swept = shared::raise::sweep(
        &deps.store,
        &deps.queues,
        OffsetDateTime::now_utc(),
        deps.config.disable_after,
    )
    .await;
    swept.unwrap_or_else(|error| {
        tracing::error!(%error, "could not sweep the failing endpoints");
        0
    })
}
