//! Who may do what, route by route: every route of `ingest` and `api`, each called
//! in-process against the emulator with a platform key, a portal token of the
//! account, one of another account, an expired one, a revoked one and none. Every
//! route the OpenAPI document lists must have its row.

use std::collections::BTreeSet;

use hookline_cli::local::gateway::is_ingest_path;
use hookline_tests::TestEnv;
use hookline_tests::openapi::Document;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

/// The credentials, in the order every row calls them: the platform key last,
/// so a row's own effects (a revocation) come after the tokens are tried.
const CREDENTIALS: [&str; 6] = ["own", "other", "expired", "revoked", "none", "platform"];

struct Env {
    env: TestEnv,
    ingest: ingest::Deps,
    api: api::Deps,
    /// The credentials, by name, in [`CREDENTIALS`] order.
    keys: Vec<(&'static str, Option<String>)>,
}

impl Env {
    async fn call(
        &self,
        key: Option<&str>,
        method: &Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut builder = lambda_http::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "hooks.example.com");
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let body = if body.is_null() {
            Body::Empty
        } else {
            builder = builder.header("content-type", "application/json");
            Body::Text(body.to_string())
        };
        let request: Request = builder.body(body).unwrap();
        let response = if is_ingest_path(path) {
            ingest::handle(&self.ingest, request).await
        } else {
            api::handle(&self.api, request).await
        };
        let status = response.status();
        let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        (status, body)
    }

    /// A new endpoint of jane's, for a route that uses one up.
    async fn fresh_endpoint(&self) -> String {
        let (endpoint, _) = self
            .env
            .add_endpoint("jane", "https://example.com/spare", |_| {})
            .await;
        endpoint.id.to_string()
    }
}

/// What each credential gets on a route whose success is `ok`, by what the route is.
fn expected(kind: Kind, ok: StatusCode) -> [StatusCode; 6] {
    use StatusCode as S;
    let (own, other) = match kind {
        Kind::Open => return [ok; 6],
        Kind::Account => (ok, S::NOT_FOUND),
        Kind::PortalSessions => (S::FORBIDDEN, S::NOT_FOUND),
        Kind::Catalog => (ok, ok),
        Kind::Platform => (S::FORBIDDEN, S::FORBIDDEN),
    };
    [
        own,
        other,
        S::UNAUTHORIZED,
        S::UNAUTHORIZED,
        S::UNAUTHORIZED,
        ok,
    ]
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Answers the same whatever the credential: no key needed, or no such route or method.
    Open,
    /// Under `/v1/accounts/jane/`.
    Account,
    PortalSessions,
    Catalog,
    Platform,
}

fn code_of(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::UNAUTHORIZED => Some("unauthorized"),
        StatusCode::FORBIDDEN => Some("forbidden"),
        StatusCode::NOT_FOUND => Some("not_found"),
        StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
        _ => None,
    }
}

#[tokio::test]
async fn every_route_with_every_kind_of_credential() {
    let env = TestEnv::new("1s").await;
    let platform = env.api_key().await;
    let hour = time::Duration::hours(1);
    // Made, then revoked with the rest of jane's tokens; the live one comes after.
    let revoked = env.portal_token("jane", hour).await;
    env.store
        .revoke_portal_tokens(&"jane".parse().unwrap())
        .await
        .unwrap();
    let own = env.portal_token("jane", hour).await;
    let other = env.portal_token("bob", hour).await;
    let expired = env.portal_token("jane", -time::Duration::seconds(1)).await;
    let env = Env {
        ingest: ingest::Deps {
            store: env.store.clone(),
            queues: env.queues.clone(),
            config: env.config.clone(),
        },
        api: api::Deps {
            store: env.store.clone(),
            queues: env.queues.clone(),
            config: env.config.clone(),
        },
        keys: vec![
            ("own", Some(own)),
            ("other", Some(other)),
            ("expired", Some(expired)),
            ("revoked", Some(revoked)),
            ("none", None),
            ("platform", Some(platform.clone())),
        ],
        env,
    };
    assert_eq!(
        env.keys.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        CREDENTIALS
    );

    let endpoint = env.fresh_endpoint().await;
    let event = json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}});
    let (status, accepted) = env
        .call(Some(&platform), &Method::POST, "/v1/events", &event)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let message = accepted["id"].as_str().unwrap();

    let (mailbox, _) = env
        .env
        .add_endpoint("jane", "", |endpoint| {
            endpoint.email = Some(shared::email::EmailSettings {
                emails: vec!["ops@example.com".into()],
                reactive: true,
                digest: None,
            })
        })
        .await;
    let at = |rest: &str| format!("/v1/accounts/jane/{rest}");
    let on = |rest: &str| at(&format!("endpoints/{endpoint}{rest}"));
    let null = Value::Null;
    use Kind::*;
    use StatusCode as S;
    // (method, path, body, what the route is, its success); `{fresh}` is a new endpoint per call.
    let rows: Vec<(Method, String, Value, Kind, StatusCode)> = vec![
        (Method::GET, "/health".into(), null.clone(), Open, S::OK),
        // 404 and 405 come before authentication: the same for every caller.
        (
            Method::GET,
            "/v1/nope".into(),
            null.clone(),
            Open,
            S::NOT_FOUND,
        ),
        (Method::GET, at("nope"), null.clone(), Open, S::NOT_FOUND),
        (
            Method::PUT,
            at("settings"),
            null.clone(),
            Open,
            S::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            at("portal-sessions"),
            null.clone(),
            Open,
            S::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            "/v1/events".into(),
            null.clone(),
            Open,
            S::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/portal".into(), null.clone(), Open, S::OK),
        (
            Method::GET,
            "/portal/portal.js".into(),
            null.clone(),
            Open,
            S::OK,
        ),
        (
            Method::GET,
            "/v1/openapi.json".into(),
            null.clone(),
            Open,
            S::OK,
        ),
        (
            Method::GET,
            "/v1/openapi.json".into(),
            null.clone(),
            Open,
            S::OK,
        ),
        (
            Method::GET,
            "/v1/event-types".into(),
            null.clone(),
            Catalog,
            S::OK,
        ),
        (
            Method::POST,
            "/v1/events".into(),
            event.clone(),
            Platform,
            S::ACCEPTED,
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            json!({"events": [event.clone()]}),
            Platform,
            S::ACCEPTED,
        ),
        (
            Method::POST,
            "/v1/event-types".into(),
            json!({"name": "task.access"}),
            Platform,
            S::CREATED,
        ),
        (
            Method::PATCH,
            "/v1/event-types/task.access".into(),
            json!({"description": "A task."}),
            Platform,
            S::OK,
        ),
        (
            Method::DELETE,
            "/v1/event-types/task.access".into(),
            null.clone(),
            Platform,
            S::NO_CONTENT,
        ),
        (
            Method::GET,
            "/v1/event-types/task.access".into(),
            null.clone(),
            Open,
            S::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/v1/dlq".into(), null.clone(), Platform, S::OK),
        (
            Method::POST,
            "/v1/dlq/replay".into(),
            json!({}),
            Platform,
            S::OK,
        ),
        (Method::GET, at("settings"), null.clone(), Account, S::OK),
        (
            Method::PATCH,
            at("settings"),
            json!({"webhooks_enabled": true}),
            Account,
            S::OK,
        ),
        (
            Method::POST,
            at("portal-sessions"),
            json!({"ttl_seconds": 60}),
            PortalSessions,
            S::CREATED,
        ),
        (Method::GET, at("endpoints"), null.clone(), Account, S::OK),
        (
            Method::POST,
            at("endpoints"),
            json!({"url": "https://example.com/new"}),
            Account,
            S::CREATED,
        ),
        (Method::GET, on(""), null.clone(), Account, S::OK),
        (
            Method::PATCH,
            on(""),
            json!({"description": "ops"}),
            Account,
            S::OK,
        ),
        (
            Method::DELETE,
            at("endpoints/{fresh}"),
            null.clone(),
            Account,
            S::NO_CONTENT,
        ),
        (Method::GET, on("/secret"), null.clone(), Account, S::OK),
        (
            Method::POST,
            on("/secret/rotate"),
            null.clone(),
            Account,
            S::OK,
        ),
        (Method::GET, on("/attempts"), null.clone(), Account, S::OK),
        (
            Method::POST,
            on("/test"),
            null.clone(),
            Account,
            S::ACCEPTED,
        ),
        (
            Method::POST,
            on(&format!("/messages/{message}/replay")),
            null.clone(),
            Account,
            S::ACCEPTED,
        ),
        (
            Method::POST,
            on("/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
            Account,
            S::ACCEPTED,
        ),
        (
            Method::POST,
            at(&format!("endpoints/{}/digest", mailbox.id)),
            null.clone(),
            Account,
            S::ACCEPTED,
        ),
        (
            Method::GET,
            at(&format!("messages/{message}")),
            null.clone(),
            Account,
            S::OK,
        ),
        // Last: the platform's call ends jane's tokens.
        (
            Method::DELETE,
            at("portal-sessions"),
            null.clone(),
            PortalSessions,
            S::NO_CONTENT,
        ),
    ];

    // Every route the API documents has its row.
    let document = Document::new(serde_json::from_str(api::openapi::DOCUMENT).unwrap());
    let tried: BTreeSet<(String, String)> = rows
        .iter()
        .filter_map(|(method, path, ..)| Some((method.to_string(), document.template_of(path)?)))
        .collect();
    for template in document.paths() {
        for method in document.methods(&template) {
            assert!(
                tried.contains(&(method.clone(), template.clone())),
                "no row tries {method} {template}"
            );
        }
    }

    let mut wrong = Vec::new();
    for (method, path, body, kind, ok) in &rows {
        for ((name, key), want) in env.keys.iter().zip(expected(*kind, *ok)) {
            let path = if path.contains("{fresh}") {
                path.replace("{fresh}", &env.fresh_endpoint().await)
            } else {
                path.clone()
            };
            let (status, answer) = env.call(key.as_deref(), method, &path, body).await;
            let code = answer["error"]["code"].as_str();
            if status != want || code != code_of(want) {
                wrong.push(format!(
                    "{method} {path} with {name}: {status} {answer}, not {want}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The platform's DELETE came last: jane's live token is revoked now, bob's is not.
    let (status, _) = env
        .call(
            env.keys[0].1.as_deref(),
            &Method::GET,
            &at("settings"),
            &null,
        )
        .await;
    assert_eq!(status, S::UNAUTHORIZED);
    let (status, _) = env
        .call(
            env.keys[1].1.as_deref(),
            &Method::GET,
            "/v1/accounts/bob/settings",
            &null,
        )
        .await;
    assert_eq!(status, S::OK);
}
