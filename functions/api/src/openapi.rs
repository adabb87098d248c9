//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route, `ingest`'s too.
//!
//! The document is written once (`functions/api/openapi.json`) and compiled in,
//! not derived from the types by a crate such as `utoipa`: request bodies are read
//! field by field from JSON rather than into typed DTOs, so a derive would cover
//! only the answers; `ingest`'s routes live in another crate; and the derive
//! macros would add their compile time to every build of the function for a
//! document that is 34 KB of text. Tests hold it to the code instead: the routing
//! table and the views' output here, every answer of the running API in
//! `tests/tests/openapi.rs`, and a fuzzer driven by the document in
//! `tests/tests/fuzz.rs`.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

pub fn document() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(DOCUMENT.to_string()))
        .expect("a status and a static header make a valid response")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hookline_tests::openapi::Document;
    use serde_json::{Value, json};
    use shared::account::Account;
    use shared::ids::{AttemptId, EndpointId, MessageId};
    use shared::model::{Attempt, AttemptStatus, Endpoint, EndpointSecrets, Format, Message};
    use shared::signing::Secret;

    use super::*;
    use crate::Route;
    use crate::views::{AttemptOut, EndpointOut, EndpointWithSecret, MessageOut, PageOut};

    fn document() -> Document {
        Document::new(serde_json::from_str(DOCUMENT).expect("the document is JSON"))
    }

    /// Each route's path template as the document writes it. The match has no
    /// catch-all, so a new route does not compile here until it is documented.
    fn template(route: &Route) -> &'static str {
        match route {
            Route::Settings(_) => "/v1/accounts/{account}/settings",
            Route::PortalSessions(_) => "/v1/accounts/{account}/portal-sessions",
            Route::Endpoints(_) => "/v1/accounts/{account}/endpoints",
            Route::Endpoint(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}",
            Route::Secret(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}/secret",
            Route::RotateSecret(..) => {
                "/v1/accounts/{account}/endpoints/{endpoint_id}/secret/rotate"
            }
            Route::Attempts(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}/attempts",
            Route::Test(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}/test",
            Route::ReplayMessage(..) => {
                "/v1/accounts/{account}/endpoints/{endpoint_id}/messages/{message_id}/replay"
            }
            Route::Recover(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}/recover",
            Route::Digest(..) => "/v1/accounts/{account}/endpoints/{endpoint_id}/digest",
            Route::Message(..) => "/v1/accounts/{account}/messages/{message_id}",
            Route::Dlq => "/v1/dlq",
            Route::DlqReplay => "/v1/dlq/replay",
            Route::OpenApi => "/v1/openapi.json",
        }
    }

    #[test]
    fn is_openapi_3_1_of_this_version() {
        let document: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let response = super::document();
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    /// Every path of the document that `api` serves takes exactly the documented
    /// methods, and every route `api` has is in the document.
    #[test]
    fn documents_every_route_with_its_methods() {
        let document = document();
        let mut routed = BTreeSet::new();
        for path in document.paths() {
            let concrete = path
                .replace("{account}", "jane")
                .replace("{endpoint_id}", "ep_1")
                .replace("{message_id}", "msg_1");
            let Ok(route) = Route::parse(&concrete) else {
                continue; // ingest's and the portal page's, checked through the gateway
            };
            assert_eq!(template(&route), path);
            let allowed: BTreeSet<String> = route.allowed().split(", ").map(String::from).collect();
            assert_eq!(allowed, document.methods(&path), "{path}");
            routed.insert(path);
        }
        let jane = || Account::parse("jane").unwrap();
        for route in [
            Route::Settings(jane()),
            Route::PortalSessions(jane()),
            Route::Endpoints(jane()),
            Route::Endpoint(jane(), "ep_1"),
            Route::Secret(jane(), "ep_1"),
            Route::RotateSecret(jane(), "ep_1"),
            Route::Attempts(jane(), "ep_1"),
            Route::Test(jane(), "ep_1"),
            Route::ReplayMessage(jane(), "ep_1", "msg_1"),
            Route::Recover(jane(), "ep_1"),
            Route::Digest(jane(), "ep_1"),
            Route::Message(jane(), "msg_1"),
            Route::Dlq,
            Route::DlqReplay,
            Route::OpenApi,
        ] {
            assert!(
                routed.contains(template(&route)),
                "{route:?} is undocumented"
            );
        }
    }

    /// The views, serialised, against the schemas the document gives them.
    #[test]
    fn the_views_match_the_document_s_schemas() {
        let document = document();
        let time = shared::timefmt::parse("2026-01-02T03:04:05.123456Z").unwrap();
        let endpoint = Endpoint {
            id: EndpointId::new(),
            account: "jane".parse().unwrap(),
            url: "https://example.com/hook".into(),
            description: "orders".into(),
            version: 2,
            event_types: vec!["sample.created".parse().unwrap()],
            datasets: Some(vec!["jane/flowers".into()]),
            format: Format::Slack,
            disabled: true,
            disabled_reason: None,
            failing_since: None,
            email: None,
            created_at: time,
            updated_at: time,
        };
        let secrets = EndpointSecrets::new(Secret::generate());
        let email_endpoint = Endpoint {
            url: String::new(),
            email: Some(shared::email::EmailSettings {
                emails: vec!["ops@example.com".into()],
                reactive: true,
                digest: shared::email::digest_field(
                    &json!({"every": "week", "at": "09:00", "weekday": "monday"}),
                )
                .unwrap(),
            }),
            ..endpoint.clone()
        };
        let message = Message {
            id: MessageId::new(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            dataset: "jane/flowers".into(),
            created_at: "2021-08-09T14:40:19.987691+00:00".into(),
            payload: String::new(),
            received_at: time,
        };
        let attempts: Vec<Attempt> = [
            (AttemptStatus::Succeeded, None),
            (AttemptStatus::Failed, Some(time)),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, (status, next_attempt_at))| Attempt {
            id: AttemptId::new(),
            message_id: message.id.clone(),
            endpoint_id: endpoint.id.clone(),
            account: "jane".parse().unwrap(),
            event_type: "sample.created".parse().unwrap(),
            attempt: n as u32 + 1,
            status,
            response_status: (status == AttemptStatus::Succeeded).then_some(204),
            response_body: String::new(),
            error: (status == AttemptStatus::Failed).then(|| "timeout".into()),
            duration_ms: 12,
            timestamp: time,
            next_attempt_at,
        })
        .collect();
        let payload = json!({
            "event_type": "sample.created",
            "created_at": "2021-08-09T14:40:19.987691+00:00",
            "api_version": "2021-08-01",
            "dataset": "jane/flowers",
            "object": {"name": "rose.png"},
            "text": "Sample rose.png created in dataset jane/flowers."
        });
        let endpoint_page = shared::store::Page {
            items: vec![endpoint.clone()],
            next_cursor: Some(endpoint.id.to_string()),
        };
        let attempt_page = shared::store::Page {
            items: attempts.clone(),
            next_cursor: None,
        };
        let endpoint_path = "/v1/accounts/{account}/endpoints/{endpoint_id}";
        for (method, path, status, answer) in [
            (
                "get",
                endpoint_path,
                200,
                json!(EndpointOut::from(&endpoint)),
            ),
            (
                "post",
                "/v1/accounts/{account}/endpoints",
                201,
                json!(EndpointWithSecret {
                    endpoint: EndpointOut::from(&endpoint),
                    secret: Some(secrets.current.expose()),
                }),
            ),
            (
                "post",
                "/v1/accounts/{account}/endpoints",
                201,
                json!(EndpointWithSecret {
                    endpoint: EndpointOut::from(&email_endpoint),
                    secret: None,
                }),
            ),
            (
                "get",
                endpoint_path,
                200,
                json!(EndpointOut::from(&email_endpoint)),
            ),
            (
                "get",
                "/v1/accounts/{account}/endpoints",
                200,
                json!(PageOut::<EndpointOut>::new(&endpoint_page)),
            ),
            (
                "get",
                "/v1/accounts/{account}/endpoints/{endpoint_id}/attempts",
                200,
                json!(PageOut::<AttemptOut>::new(&attempt_page)),
            ),
            (
                "get",
                "/v1/accounts/{account}/messages/{message_id}",
                200,
                json!(MessageOut::new(&message, payload, &attempts)),
            ),
        ] {
            document
                .check_answer(method, path, status, &answer)
                .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        }
        // The schemas are strict: a secret in a plain endpoint is refused.
        let mut leaked = json!(EndpointOut::from(&endpoint));
        leaked["secret"] = json!(secrets.current.expose());
        assert!(
            document
                .check_answer("get", endpoint_path, 200, &leaked)
                .is_err()
        );
    }
}
