//! A local stand-in for API Gateway's HTTP API: each request becomes a payload
//! format 2.0 event for `ingest` or `api`, and the function's answer the response.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::runtime::{Function, InvokeError};

/// Lambda's limit on a synchronous invocation's payload; API Gateway refuses larger bodies.
pub const MAX_EVENT_BODY: usize = 6 * 1024 * 1024;

/// Paths served by `ingest`, as `infra/template.yaml` writes them (`{name}` is one
/// path segment); everything else goes to `api`.
pub const INGEST_PATHS: &[&str] = &[
    "/v1/events",
    "/v1/events/batch",
    "/v1/event-types",
    "/v1/event-types/{name}",
    "/health",
];

/// Whether API Gateway routes `path` to `ingest`: it matches one of [`INGEST_PATHS`].
pub fn is_ingest_path(path: &str) -> bool {
    INGEST_PATHS.iter().any(|route| {
        let (route, path) = (route.split('/'), path.split('/'));
        route.clone().count() == path.clone().count()
            && route.zip(path).all(|(expected, given)| {
                expected == given || (expected.starts_with('{') && !given.is_empty())
            })
    })
}

#[derive(Clone)]
pub struct Gateway {
    pub ingest: Function,
    pub api: Function,
}

pub fn router(gateway: Gateway) -> Router {
    Router::new().fallback(forward).with_state(gateway)
}

async fn forward(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_EVENT_BODY).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let path = parts.uri.path();
    let function = if is_ingest_path(path) {
        &gateway.ingest
    } else {
        &gateway.api
    };
    let event = http_api_event(&parts, &body, peer);
    match function.invoke(event).await {
        Ok(answer) => response_from(&answer).unwrap_or_else(|| {
            tracing::error!(
                function = function.name(),
                "the function's answer is not an HTTP API response"
            );
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }),
        Err(InvokeError::Timeout(_)) => {
            gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(error) => {
            tracing::error!(function = function.name(), %error, "invocation failed");
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// What API Gateway itself answers when the function cannot.
fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// The payload format 2.0 event API Gateway's HTTP API sends a Lambda integration.
fn http_api_event(parts: &axum::http::request::Parts, body: &[u8], peer: SocketAddr) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_string()));
            continue;
        }
        headers
            .entry(name.as_str().to_string())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    // As API Gateway adds them; here the scheme is plain HTTP, which is how a
    // function learns to write this server's own address (a portal session's URL).
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert("x-forwarded-for".into(), peer.ip().to_string());
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(key.into_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let now = OffsetDateTime::now_utc();
    let request_id = ulid::Ulid::new().to_string();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or_default(),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": format!("{:?}", parts.version),
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format(time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            )).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        },
        "isBase64Encoded": false,
    });
    let object = event.as_object_mut().expect("built as an object");
    if !query.is_empty() {
        object.insert("queryStringParameters".into(), json!(query));
    }
    if !cookies.is_empty() {
        object.insert("cookies".into(), json!(cookies));
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => {
                object.insert("body".into(), json!(text));
            }
            Err(_) => {
                object.insert("body".into(), json!(BASE64.encode(body)));
                object.insert("isBase64Encoded".into(), json!(true));
            }
        }
    }
    event
}

/// The HTTP response a function's payload format 2.0 answer describes.
fn response_from(answer: &Value) -> Option<Response> {
    let status =
        StatusCode::from_u16(u16::try_from(answer.get("statusCode")?.as_u64()?).ok()?).ok()?;
    let body = match answer.get("body").and_then(Value::as_str) {
        None => Vec::new(),
        Some(text) if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) => {
            BASE64.decode(text).ok()?
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let empty = Map::new();
    for (name, value) in answer
        .get("headers")
        .and_then(Value::as_object)
        .unwrap_or(&empty)
    {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    for (name, values) in answer
        .get("multiValueHeaders")
        .and_then(Value::as_object)
        .unwrap_or(&empty)
    {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        headers.remove(&name);
        for value in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(name.clone(), value);
            }
        }
    }
    for cookie in answer
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(Ok(value)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append("set-cookie", value);
        }
    }
    Some(response)
}
