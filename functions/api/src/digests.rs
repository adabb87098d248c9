//! Email endpoints' digests: registered when a schedule is set, and sent now on
//! `POST …/endpoints/{id}/digest`. The scheduled function sends them.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::account::Account;
use shared::http::{ApiError, json, json_object};
use shared::model::Endpoint;
use shared::store::{DueEmail, EmailWork};
use time::OffsetDateTime;

use crate::endpoints::load;
use crate::recovery::{in_order, window_bounds};
use crate::{Deps, internal};

/// Registers the first digest of `endpoint`'s schedule, if it has one. Done
/// before the endpoint is written: a digest registered for a write that then
/// failed is dropped when it comes due, as is one of a schedule changed since.
pub(crate) async fn register_first(
    deps: &Deps,
    endpoint: &Endpoint,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let Some(schedule) = endpoint.email.as_ref().and_then(|e| e.digest.as_ref()) else {
        return Ok(());
    };
    let first = DueEmail::digest(&endpoint.account, &endpoint.id, schedule.next_after(now));
    deps.store
        .put_due_email(&first)
        .await
        .map_err(internal("could not register a digest"))
}

/// `POST …/endpoints/{id}/digest`: the digest of `[since, until)`, sent by the
/// scheduled function's next run. Either bound left out is the schedule's last
/// period's (the last day's without a schedule), except that `until` is now
/// when only `since` is given.
pub async fn send_now(
    deps: &Deps,
    account: &Account,
    id: &str,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let body = json_object(req)?;
    let (endpoint, _) = load(deps, account, id).await?;
    let Some(settings) = &endpoint.email else {
        return Err(ApiError::not_found(format!(
            "{id} is a webhook endpoint, which has no digest"
        )));
    };
    let now = OffsetDateTime::now_utc();
    let (last_since, last_until) = match &settings.digest {
        Some(schedule) => schedule.last_period(now),
        None => (now - time::Duration::DAY, now),
    };
    let (since, until) = match window_bounds(&body)? {
        (None, until) => in_order(last_since, until.unwrap_or(last_until))?,
        (Some(since), until) => in_order(since, until.unwrap_or(now))?,
    };
    let due = DueEmail {
        due_at: now,
        account: account.clone(),
        endpoint_id: endpoint.id.clone(),
        work: EmailWork::DigestNow {
            request: ulid::Ulid::new().to_string(),
            since,
            until,
        },
        attempt: 1,
    };
    deps.store
        .put_due_email(&due)
        .await
        .map_err(internal("could not register a digest"))?;
    tracing::info!(endpoint_id = id, %account, "digest asked for");
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({
            "since": shared::timefmt::format(since),
            "until": shared::timefmt::format(until),
        }),
    ))
}
