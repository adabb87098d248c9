//! An email endpoint's job is no delivery: its event joins the endpoint's open
//! window (and its digest's record), and the scheduled function sends the
//! window's one email when the window ends.

use std::time::Instant;

use serde::Deserialize;
use shared::email::render::EmailEvent;
use shared::email::window_start;
use shared::model::{DeliveryJob, Endpoint};
use shared::retry::FailureKind;
use time::OffsetDateTime;

use crate::{Deps, Verdict, retry_delay};

/// An email lists each event's text; a longer one is cut here.
const MAX_TEXT_CHARS: usize = 2000;

/// The fields of the standard payload an email shows.
#[derive(Deserialize)]
struct Shown {
    event_type: String,
    /// null for hookline's operational events, which are about no dataset.
    dataset: Option<String>,
    created_at: String,
    text: String,
}

/// The event of `job` as an email shows it.
fn email_event(job: &DeliveryJob, payload: &str) -> Result<EmailEvent, serde_json::Error> {
    let shown: Shown = serde_json::from_str(payload)?;
    let mut text = shown.text;
    if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    Ok(EmailEvent {
        message_id: job.message_id.clone(),
        event_type: shown.event_type,
        dataset: shown.dataset.unwrap_or_default(),
        created_at: shown.created_at,
        text,
    })
}

/// Puts the event of `job` in `endpoint`'s open window. A window claimed for
/// sending meanwhile is closed: the event goes to the next one.
pub(crate) async fn gather(
    deps: &Deps,
    received: Instant,
    job: &DeliveryJob,
    endpoint: &Endpoint,
    payload: &str,
    attempt_number: u32,
) -> Verdict {
    let reactive = endpoint.email.as_ref().is_some_and(|e| e.reactive);
    let event = match email_event(job, payload) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(%error, message_id = %job.message_id, "a stored payload an email cannot show");
            return Verdict::Done;
        }
    };
    let window = deps.config.email_window;
    let mut start = window_start(OffsetDateTime::now_utc(), window);
    for _ in 0..3 {
        let end = start + window;
        match deps
            .store
            .gather_email_event(&job.account, &job.endpoint_id, start, end, &event, reactive)
            .await
        {
            Ok(true) => {
                tracing::info!(message_id = %job.message_id, endpoint_id = %job.endpoint_id, "gathered for email");
                return Verdict::Done;
            }
            Ok(false) => start = end,
            Err(error) => {
                tracing::error!(%error, endpoint_id = %job.endpoint_id, "could not gather an event for email");
                break;
            }
        }
    }
    Verdict::after(retry_delay(
        deps,
        received,
        attempt_number,
        FailureKind::Other,
        None,
    ))
}
