//! The scheduled function's work, each kind in its own module and all within
//! one run's deadline: email endpoints' windows and digests ([`emails`]), and the
//! auto-disable sweep ([`disable`]).

pub mod disable;
pub mod emails;

use std::time::Instant;

use serde::Serialize;
use shared::config::Config;
use shared::mail::Mailer;
use shared::queue::Queues;
use shared::store::Store;

/// What a run needs, built once per instance.
pub struct Deps {
    pub store: Store,
    /// The delivery queue, where the sweep's operational events go.
    pub queues: Queues,
    /// `None` where no sender is configured: emails then fail and retry.
    pub mailer: Option<Mailer>,
    pub config: Config,
}

/// What one run did, as the invocation answers it.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub emails: emails::Report,
    /// Endpoints the auto-disable sweep disabled.
    pub disabled: usize,
}

/// One scheduled run: everything due, until `deadline`. Other periodic work
/// (such as sweeps over endpoints) goes here too, as modules of its own, each
/// given what is left of the deadline.
pub async fn run(deps: &Deps, deadline: Instant) -> Report {
    let emails = emails::run(deps, deadline).await;
    let disabled = disable::run(deps).await;
    tracing::info!(?emails, disabled, "scheduled run done");
    Report { emails, disabled }
}
