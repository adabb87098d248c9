//! The management API: an account's settings, portal sessions, endpoints, their
//! secrets and attempts, and messages under `/v1/accounts/{account}`, the
//! operators' DLQ routes under `/v1/dlq`, the portal page at `/portal`, and the
//! API's OpenAPI document at `/v1/openapi.json`.

mod accounts;
mod digests;
pub mod dlq;
pub mod openapi;
pub mod recovery;

mod endpoints;
mod messages;
pub mod portal;
pub mod views;

use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::access::Scope;
use shared::account::Account;
use shared::config::Config;
use shared::http::{ApiError, admit};
use shared::queue::Queues;
use shared::store::Store;

/// Page sizes for listings: CONTRACT's bounds.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 250;

/// What the handler needs, built once per instance.
pub struct Deps {
    pub store: Store,
    pub queues: Queues,
    pub config: Config,
}

pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    if let Some(page) = portal::serve(&req, &deps.config.portal_frame_ancestors) {
        return page;
    }
    route(deps, &req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// The routes, each with the path's parameters; the account is checked by [`Route::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Settings(Account),
    PortalSessions(Account),
    Endpoints(Account),
    Endpoint(Account, &'a str),
    Secret(Account, &'a str),
    RotateSecret(Account, &'a str),
    Attempts(Account, &'a str),
    Test(Account, &'a str),
    ReplayMessage(Account, &'a str, &'a str),
    Recover(Account, &'a str),
    Digest(Account, &'a str),
    Message(Account, &'a str),
    Dlq,
    DlqReplay,
    OpenApi,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match segments.as_slice() {
            ["v1", "accounts", account, rest @ ..] => {
                let Some(account) = Account::parse(account) else {
                    return Err(ApiError::not_found(format!("no account {account}")));
                };
                match rest {
                    ["settings"] => Route::Settings(account),
                    ["portal-sessions"] => Route::PortalSessions(account),
                    ["endpoints"] => Route::Endpoints(account),
                    ["endpoints", id] => Route::Endpoint(account, id),
                    ["endpoints", id, "secret"] => Route::Secret(account, id),
                    ["endpoints", id, "secret", "rotate"] => Route::RotateSecret(account, id),
                    ["endpoints", id, "attempts"] => Route::Attempts(account, id),
                    ["endpoints", id, "test"] => Route::Test(account, id),
                    ["endpoints", id, "messages", message, "replay"] => {
                        Route::ReplayMessage(account, id, message)
                    }
                    ["endpoints", id, "recover"] => Route::Recover(account, id),
                    ["endpoints", id, "digest"] => Route::Digest(account, id),
                    ["messages", id] => Route::Message(account, id),
                    _ => return Err(ApiError::not_found(format!("no route {path}"))),
                }
            }
            ["v1", "dlq"] => Route::Dlq,
            ["v1", "dlq", "replay"] => Route::DlqReplay,
            ["v1", "openapi.json"] => Route::OpenApi,
            _ => return Err(ApiError::not_found(format!("no route {path}"))),
        };
        Ok(route)
    }

    /// The methods the route takes, as an `Allow` header says them.
    fn allowed(&self) -> &'static str {
        match self {
            Route::Settings(_) => "GET, PATCH",
            Route::PortalSessions(_) => "POST, DELETE",
            Route::Endpoints(_) => "GET, POST",
            Route::Endpoint(..) => "GET, PATCH, DELETE",
            Route::Secret(..)
            | Route::Attempts(..)
            | Route::Message(..)
            | Route::Dlq
            | Route::OpenApi => "GET",
            Route::RotateSecret(..)
            | Route::Test(..)
            | Route::ReplayMessage(..)
            | Route::Recover(..)
            | Route::Digest(..)
            | Route::DlqReplay => "POST",
        }
    }

    /// What the route is to [`shared::access`]; `None` for the public document, which,
    /// like the portal page, needs no credential.
    fn scope(&self) -> Option<Scope<'_>> {
        let scope = match self {
            Route::PortalSessions(account) => Scope::PortalSessions(account),
            Route::Settings(account)
            | Route::Endpoints(account)
            | Route::Endpoint(account, _)
            | Route::Secret(account, _)
            | Route::RotateSecret(account, _)
            | Route::Attempts(account, _)
            | Route::Test(account, _)
            | Route::ReplayMessage(account, ..)
            | Route::Recover(account, _)
            | Route::Digest(account, _)
            | Route::Message(account, _) => Scope::Account(account),
            Route::Dlq | Route::DlqReplay => Scope::Platform,
            Route::OpenApi => return None,
        };
        Some(scope)
    }
}

async fn route(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let route = Route::parse(&path)?;
    let method = req.method().clone();
    if !route.allowed().split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::method_not_allowed(route.allowed()));
    }
    if let Some(scope) = route.scope() {
        admit(&deps.store, req, scope).await?;
    }
    match (route, method) {
        (Route::Settings(account), Method::PATCH) => {
            accounts::patch_settings(deps, &account, req).await
        }
        (Route::Settings(account), _) => accounts::settings(deps, &account).await,
        (Route::PortalSessions(account), Method::POST) => {
            accounts::create_portal_session(deps, &account, req).await
        }
        (Route::PortalSessions(account), _) => {
            accounts::revoke_portal_sessions(deps, &account).await
        }
        (Route::Endpoints(account), Method::POST) => endpoints::create(deps, &account, req).await,
        (Route::Endpoints(account), _) => endpoints::list(deps, &account, req).await,
        (Route::Endpoint(account, id), Method::GET) => endpoints::get(deps, &account, id).await,
        (Route::Endpoint(account, id), Method::PATCH) => {
            endpoints::patch(deps, &account, id, req).await
        }
        (Route::Endpoint(account, id), _) => endpoints::delete(deps, &account, id).await,
        (Route::Secret(account, id), _) => endpoints::secret(deps, &account, id).await,
        (Route::RotateSecret(account, id), _) => endpoints::rotate_secret(deps, &account, id).await,
        (Route::Attempts(account, id), _) => endpoints::attempts(deps, &account, id, req).await,
        (Route::Test(account, id), _) => recovery::send_test(deps, &account, id, req).await,
        (Route::ReplayMessage(account, id, message), _) => {
            recovery::replay_message(deps, &account, id, message).await
        }
        (Route::Recover(account, id), _) => {
            recovery::recover(deps, &account, id, req, shared::recover::BUDGET).await
        }
        (Route::Digest(account, id), _) => digests::send_now(deps, &account, id, req).await,
        (Route::Message(account, id), _) => messages::get(deps, &account, id).await,
        (Route::Dlq, _) => dlq::stats(deps).await,
        (Route::DlqReplay, _) => dlq::replay(deps, req).await,
        (Route::OpenApi, _) => Ok(openapi::document()),
    }
}

/// Logs a store failure and answers 500; the caller learns nothing of the inside.
fn internal<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> ApiError {
    move |error| {
        tracing::error!(%error, "{context}");
        ApiError::internal()
    }
}

/// `limit` from the query string: [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`].
fn page_limit(req: &Request) -> Result<usize, ApiError> {
    match req
        .query_string_parameters_ref()
        .and_then(|q| q.first("limit"))
    {
        None => Ok(DEFAULT_PAGE),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::validation(format!("limit: must be an integer from 1 to {MAX_PAGE}"))
            }),
    }
}

/// `cursor` from the query string, parsed as the id type the listing pages by.
fn page_cursor<T>(req: &Request, parse: fn(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
    match req
        .query_string_parameters_ref()
        .and_then(|q| q.first("cursor"))
    {
        None => Ok(None),
        Some(text) => parse(text)
            .map(Some)
            .ok_or_else(|| ApiError::validation("cursor: not a cursor from a previous page")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_their_methods() {
        assert_eq!(
            Route::parse("/v1/accounts/jane/endpoints").unwrap(),
            Route::Endpoints("jane".parse().unwrap())
        );
        assert_eq!(
            Route::parse("/v1/accounts/jane/endpoints/ep_1/secret/rotate").unwrap(),
            Route::RotateSecret("jane".parse().unwrap(), "ep_1")
        );
        assert_eq!(
            Route::parse("/v1/accounts/jane/messages/msg_1")
                .unwrap()
                .allowed(),
            "GET"
        );
        let sessions = Route::parse("/v1/accounts/jane/portal-sessions").unwrap();
        let jane = Account::parse("jane").unwrap();
        assert_eq!(sessions.scope(), Some(Scope::PortalSessions(&jane)));
        assert_eq!(
            Route::parse("/v1/accounts/jane/settings").unwrap().scope(),
            Some(Scope::Account(&jane))
        );
        assert_eq!(
            Route::parse("/v1/dlq/replay").unwrap().scope(),
            Some(Scope::Platform)
        );
        for path in [
            "/",
            "/v1",
            "/v1/accounts",
            "/v1/accounts/jane",
            "/v1/accounts/jane/endpoints/ep_1/nope",
            "/v1/accounts/ja%23ne/endpoints",
        ] {
            assert_eq!(Route::parse(path).unwrap_err().code, "not_found", "{path}");
        }
    }
}
